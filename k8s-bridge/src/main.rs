//! k8s-bridge: the sidecar of speakerd in the MetalLB-compatible DaemonSet.
use clap::Parser;
use k8s_bridge::events::Limits;
use k8s_bridge::metrics::Metrics;
use k8s_bridge::run::{run, Settings};
use k8s_bridge::translate::Options;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Watches MetalLB configuration, Services, EndpointSlices and Nodes and drives the local speakerd"
)]
struct Args {
    /// This node's name (from the downward API).
    #[arg(long, env = "NODE_NAME")]
    node_name: String,
    /// Namespace of the MetalLB configuration objects.
    #[arg(long, env = "METALLB_NAMESPACE", default_value = "metallb-system")]
    namespace: String,
    /// Name of the legacy MetalLB ConfigMap (used when no IPAddressPool exists).
    #[arg(long, default_value = "config")]
    configmap: String,
    /// speakerd's Unix socket. Default: $SPEAKERD_SOCKET, else speakerd's own default.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Serve only Services with this spec.loadBalancerClass (default: only Services without one).
    #[arg(long)]
    lb_class: Option<String>,
    /// Gossip port of the other nodes' speakerd (for membership seeds).
    #[arg(long, default_value_t = 7946)]
    gossip_port: u16,
    /// Also announce from nodes labelled node.kubernetes.io/exclude-from-external-load-balancers.
    #[arg(long)]
    ignore_exclude_lb: bool,
    /// Address for /metrics, /readyz and /healthz (off when not given).
    #[arg(long)]
    metrics: Option<SocketAddr>,
    /// Seconds between full pushes of the desired state when nothing changed.
    #[arg(long, default_value_t = 60)]
    resync_secs: u64,
    /// Status objects (ServiceL2Status/ServiceBGPStatus) written per second at most.
    #[arg(long, default_value_t = 20.0)]
    status_write_qps: f64,
    /// Status object writes in flight at once.
    #[arg(long, default_value_t = 4)]
    status_write_concurrency: usize,
    /// Events written per second at most (after aggregation and the spam filter).
    #[arg(long, default_value_t = 10.0)]
    event_write_qps: f64,
    /// Event writes in flight at once.
    #[arg(long, default_value_t = 4)]
    event_write_concurrency: usize,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// This pod's name (downward API), owner of the status objects and the ConfigurationState.
    #[arg(long, env = "METALLB_POD_NAME")]
    pod_name: Option<String>,
    /// This pod's UID (downward API `metadata.uid`); without it the objects have no owner.
    #[arg(long, env = "METALLB_POD_UID")]
    pod_uid: Option<String>,
}

/// `k8s-bridge controller`: the IP allocator (MetalLB's controller role).
#[derive(Parser, Debug)]
#[command(
    name = "k8s-bridge controller",
    version,
    about = "Allocates LoadBalancer IPs from IPAddressPools (MetalLB's controller role); one replica, no leader election yet"
)]
struct ControllerArgs {
    /// Namespace of the IPAddressPools.
    #[arg(long, env = "METALLB_NAMESPACE", default_value = "metallb-system")]
    namespace: String,
    /// Serve only Services with this spec.loadBalancerClass (default: only Services without one).
    #[arg(long)]
    lb_class: Option<String>,
}

async fn controller_main() -> anyhow::Result<()> {
    let a = ControllerArgs::parse_from(std::env::args().skip(1));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let mut config =
        kube::Config::infer().await.map_err(|e| anyhow::anyhow!("Kubernetes client configuration: {e}"))?;
    config.read_timeout = Some(Duration::from_secs(30));
    config.connect_timeout = Some(Duration::from_secs(10));
    let client = kube::Client::try_from(config)?;
    let settings = k8s_bridge::controller::ControllerSettings {
        namespace: a.namespace,
        lb_class: a.lb_class,
        debounce: Duration::from_millis(100),
    };
    tracing::info!(namespace = %settings.namespace, "k8s-bridge controller starting");
    tokio::select! {
        r = k8s_bridge::controller::run(client, settings) => r,
        _ = shutdown() => Ok(()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `k8s-bridge controller ...` is the allocator; anything else is the per-node bridge as before.
    if std::env::args().nth(1).as_deref() == Some("controller") {
        return controller_main().await;
    }
    let a = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if a.log_format == "json" {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    if a.node_name.is_empty() {
        anyhow::bail!("--node-name (or NODE_NAME) must not be empty");
    }
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = a.metrics {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("--metrics {addr}: {e}"))?;
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = k8s_bridge::metrics::serve(l, m).await {
                tracing::error!(%addr, error = %e, "metrics endpoint stopped");
            }
        });
    }
    let mut config =
        kube::Config::infer().await.map_err(|e| anyhow::anyhow!("Kubernetes client configuration: {e}"))?;
    // A hanging API server (accepted, never answers) must not hold a list forever: 30 s per read.
    // Watches are asked to end after 25 s (run.rs), so a healthy idle watch never hits it.
    config.read_timeout = Some(Duration::from_secs(30));
    config.reset_reader_on_write = true;
    config.connect_timeout = Some(Duration::from_secs(10));
    let client = kube::Client::try_from(config)?;
    let settings = Settings {
        options: Options {
            node: a.node_name,
            lb_class: a.lb_class,
            gossip_port: a.gossip_port,
            ignore_exclude_lb: a.ignore_exclude_lb,
        },
        namespace: a.namespace,
        configmap: a.configmap,
        socket: a.socket.unwrap_or_else(speaker_api::default_socket_path),
        resync: Duration::from_secs(a.resync_secs.max(1)),
        debounce: Duration::from_millis(100),
        event_writes: Limits { concurrency: a.event_write_concurrency.max(1), qps: a.event_write_qps.max(0.1) },
        status_writes: Limits { concurrency: a.status_write_concurrency.max(1), qps: a.status_write_qps.max(0.1) },
        pod: match (a.pod_name.filter(|n| !n.is_empty()), a.pod_uid.filter(|u| !u.is_empty())) {
            (Some(name), Some(uid)) => Some(k8s_bridge::status::PodOwner { name, uid }),
            _ => {
                tracing::warn!("METALLB_POD_NAME or METALLB_POD_UID not set: status objects are written without an owner and outlive this pod");
                None
            }
        },
    };
    tracing::info!(node = %settings.options.node, namespace = %settings.namespace, socket = %settings.socket.display(), "k8s-bridge starting");
    tokio::select! {
        r = run(client, settings, metrics) => r,
        _ = shutdown() => {
            // Nothing is withdrawn on exit: speakerd keeps announcing what it was told, so a bridge
            // restart (an upgrade of the sidecar) costs no route.
            tracing::info!("k8s-bridge stopping; speakerd keeps the current state");
            Ok(())
        }
    }
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
