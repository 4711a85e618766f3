//! k8s-bridge: the sidecar of speakerd in the MetalLB-compatible DaemonSet.
use clap::Parser;
use k8s_bridge::events::Limits;
use k8s_bridge::metrics::Metrics;
use k8s_bridge::run::{run, Settings};
use k8s_bridge::status::PodOwner;
use k8s_bridge::translate::Options;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// jemalloc, not glibc's malloc: the bridge keeps tens of thousands of small objects for as long as
/// they exist in the cluster, and frees as many transient ones around them on every change. glibc
/// keeps the freed pages between live chunks (and a heap per thread); jemalloc's size classes pack the
/// small objects without headers, and it hands freed pages back to the kernel (docs/DESIGN.md, "What
/// the bridge keeps").
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read when it starts: one arena (the bridge is not allocation-bound; arenas per
/// CPU each keep their own free pages), freed pages returned to the kernel at once rather than after
/// 10 s, by jemalloc's own thread. `_RJEM_MALLOC_CONF` in the environment can override each.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 67] = b"narenas:1,dirty_decay_ms:0,muzzy_decay_ms:0,background_thread:true\0";

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
    about = "Allocates LoadBalancer IPs from IPAddressPools (MetalLB's controller role); replicas elect a leader through a Lease"
)]
struct ControllerArgs {
    /// Namespace of the IPAddressPools (and of the Lease).
    #[arg(long, env = "METALLB_NAMESPACE", default_value = "metallb-system")]
    namespace: String,
    /// Serve only Services with this spec.loadBalancerClass (default: only Services without one).
    #[arg(long)]
    lb_class: Option<String>,
    /// This replica's identity in the Lease (downward API `metadata.name`); default: the host name.
    #[arg(long, env = "METALLB_POD_NAME")]
    pod_name: Option<String>,
    /// This pod's UID (downward API `metadata.uid`): owner of the `controller` ConfigurationState.
    #[arg(long, env = "METALLB_POD_UID")]
    pod_uid: Option<String>,
    /// The coordination.k8s.io Lease the replicas elect their leader with.
    #[arg(long, default_value = "metallb-controller")]
    lease_name: String,
    /// Act without electing a leader: only for a single replica.
    #[arg(long)]
    no_leader_election: bool,
    /// A standby takes the Lease when the leader has not renewed it for this long.
    #[arg(long, default_value_t = 15)]
    lease_duration_secs: u64,
    /// The leader stops (the process exits) when it could not renew for this long; must be below
    /// the lease duration minus the retry period.
    #[arg(long, default_value_t = 10)]
    renew_deadline_secs: u64,
    /// How often the Lease is renewed or tried.
    #[arg(long, default_value_t = 2)]
    retry_period_secs: u64,
    /// Log format: text or json.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

async fn controller_main() -> anyhow::Result<()> {
    let a = ControllerArgs::parse_from(std::env::args().skip(1));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    if a.log_format == "json" {
        tracing_subscriber::fmt().json().with_env_filter(filter).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).init();
    }
    let lease_cfg = k8s_bridge::lease::LeaseConfig {
        lease_duration: Duration::from_secs(a.lease_duration_secs.max(1)),
        renew_deadline: Duration::from_secs(a.renew_deadline_secs.max(1)),
        retry_period: Duration::from_secs(a.retry_period_secs.max(1)),
        ..k8s_bridge::lease::LeaseConfig::new(
            &a.namespace,
            &a.lease_name,
            &a.pod_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| {
                std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_default()
            }),
        )
    };
    if lease_cfg.renew_deadline + lease_cfg.retry_period >= lease_cfg.lease_duration {
        anyhow::bail!("--renew-deadline-secs plus --retry-period-secs must be below --lease-duration-secs: a leader that lost the Lease must have stopped before another may take it");
    }
    if lease_cfg.identity.is_empty() {
        anyhow::bail!("no identity for the Lease: set METALLB_POD_NAME (--pod-name)");
    }
    let mut config =
        kube::Config::infer().await.map_err(|e| anyhow::anyhow!("Kubernetes client configuration: {e}"))?;
    config.read_timeout = Some(Duration::from_secs(30));
    config.connect_timeout = Some(Duration::from_secs(10));
    let client = kube::Client::try_from(config)?;
    let settings = k8s_bridge::controller::ControllerSettings {
        namespace: a.namespace,
        lb_class: a.lb_class,
        debounce: Duration::from_millis(100),
        pod: PodOwner::from_downward_api(a.pod_name, a.pod_uid),
    };
    tracing::info!(namespace = %settings.namespace, identity = %lease_cfg.identity, "k8s-bridge controller starting");
    if a.no_leader_election {
        return tokio::select! {
            r = k8s_bridge::controller::run(client, settings, None) => Ok(r?),
            _ = shutdown() => Ok(()),
        };
    }
    let leases =
        kube::Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), &lease_cfg.namespace);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let r = tokio::select! {
        r = k8s_bridge::controller::run(client, settings, Some(rx)) => r.map_err(anyhow::Error::from),
        r = k8s_bridge::lease::run(leases.clone(), lease_cfg.clone(), tx) => {
            // Lost the Lease: stop at once; the Deployment starts this replica again as a standby.
            let e = r.err().unwrap_or(k8s_bridge::error::Error::LeaderElectionEnded);
            tracing::error!(error = %e, "no longer leading; exiting");
            std::process::exit(1);
        }
        _ = shutdown() => Ok(()),
    };
    // The controller future is dropped: nothing more is written. Give the Lease up for the standby.
    k8s_bridge::lease::release(&leases, &lease_cfg).await;
    r
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
    // Watches are asked to end after 25 s (run/reflect.rs), so a healthy idle watch never hits it.
    config.read_timeout = Some(Duration::from_secs(30));
    config.reset_reader_on_write = true;
    config.connect_timeout = Some(Duration::from_secs(10));
    let client = kube::Client::try_from(config)?;
    let pod = PodOwner::from_downward_api(a.pod_name, a.pod_uid);
    if pod.is_none() {
        tracing::warn!("METALLB_POD_NAME or METALLB_POD_UID not set: status objects are written without an owner and outlive this pod");
    }
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
        pod,
    };
    tracing::info!(node = %settings.options.node, namespace = %settings.namespace, socket = %settings.socket.display(), "k8s-bridge starting");
    tokio::select! {
        r = run(client, settings, metrics) => Ok(r?),
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
