//! speakerd: flags, tracing, runtime, signals → cancel. Nothing else lives here.
use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use speakerd::config::file;
use speakerd::speaker::{Speaker, SpeakerConfig, SpeakerError};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// BGP speaker for Kubernetes LoadBalancer services. Starts with no peers; add them over the API
/// (speakerctl) or with --config.
/// `--l2-election`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum L2ElectionArg {
    Available,
    Strict,
}

#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// gRPC Unix socket (mode 0600). Default: $SPEAKERD_SOCKET, else /run/speakerd/speakerd.sock as root,
    /// else $XDG_RUNTIME_DIR/speakerd.sock, else /tmp/speakerd-<uid>.sock.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Also serve gRPC on this TCP address. Plaintext: loopback only unless --grpc-tcp-insecure.
    #[arg(long)]
    grpc_tcp: Option<SocketAddr>,
    /// Allow plaintext gRPC on a non-loopback --grpc-tcp address (anyone who reaches it controls routing).
    #[arg(long)]
    grpc_tcp_insecure: bool,
    /// TLS certificate chain (PEM) for --grpc-tcp, with --grpc-tls-key: the TCP API speaks TLS
    /// (rustls) and may listen on any address.
    #[arg(long, value_name = "PEM", requires_all = ["grpc_tls_key", "grpc_tcp"])]
    grpc_tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --grpc-tls-cert.
    #[arg(long, value_name = "PEM", requires = "grpc_tls_cert")]
    grpc_tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that clients must present a certificate from: mutual TLS. Without it any
    /// client that trusts the server may call.
    #[arg(long, value_name = "PEM", requires = "grpc_tls_cert")]
    grpc_tls_client_ca: Option<PathBuf>,
    /// Also serve the GoBGP v3 compatible API (apipb.GobgpApi, for the gobgp CLI and GoBGP clients) on
    /// this TCP address, e.g. 127.0.0.1:50051 (GoBGP's port). Plaintext: loopback only unless
    /// --gobgp-api-insecure. See docs/GOBGP_API.md.
    #[arg(long)]
    gobgp_api: Option<SocketAddr>,
    /// Allow a non-loopback --gobgp-api address (anyone who reaches it controls routing).
    #[arg(long)]
    gobgp_api_insecure: bool,
    /// Static peers and announcements (TOML, or YAML for .yaml/.yml). SIGHUP reloads it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Local AS for peers that do not set local_asn.
    #[arg(long)]
    local_asn: Option<u32>,
    /// BGP Identifier for peers that do not set router_id. Default: the host's first non-loopback IPv4.
    #[arg(long)]
    router_id: Option<Ipv4Addr>,
    /// Addresses to accept BGP connections on (repeatable). [::]:179 accepts IPv4 too.
    #[arg(long = "bgp-listen", default_value = "[::]:179")]
    bgp_listen: Vec<SocketAddr>,
    /// Do not listen for BGP connections (active peers only).
    #[arg(long)]
    no_bgp_listen: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    metrics: Option<SocketAddr>,
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// This node's name (the Kubernetes node name): the identity in the gossip group and in Layer 2
    /// candidate lists. Default: $NODE_NAME, else the host name.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// UDP address of the gossip group (Layer 2 membership).
    #[arg(long, default_value = "0.0.0.0:7946")]
    gossip_bind: std::net::SocketAddr,
    /// Address other nodes reach our gossip socket at. Default: the bind address, or the host's first
    /// non-loopback IPv4 address.
    #[arg(long)]
    gossip_advertise: Option<std::net::SocketAddr>,
    /// Other nodes' gossip addresses to join through (repeatable; IP or IP:PORT).
    #[arg(long = "gossip-seed")]
    gossip_seeds: Vec<String>,
    /// File holding a shared secret that authenticates and encrypts gossip (repeatable: the first
    /// that exists is used). None existing is not fatal: gossip runs unencrypted, with a warning, until
    /// one appears.
    #[arg(long)]
    gossip_secret_file: Vec<PathBuf>,
    /// SWIM probe period in milliseconds (10–60000). A dead node is declared down after about 3–5
    /// periods, and a live node that stalls for about 2.5 periods is too, so this sets the Layer 2
    /// failover time (docs/LAYER2.md). Every node must use the same.
    #[arg(long, default_value_t = speakerd::membership::DEFAULT_PROBE_MS)]
    gossip_probe_ms: u64,
    /// No gossip: this node sees only itself (Layer 2 without failover).
    #[arg(long)]
    no_gossip: bool,
    /// Layer 2 election of announcements that do not choose one: `available` (the first live candidate
    /// answers, at every cluster size, as MetalLB) or `strict` (only while this node sees a majority of
    /// the candidates: silence rather than two answers; docs/LAYER2.md).
    #[arg(long, value_enum, default_value_t = L2ElectionArg::Available)]
    l2_election: L2ElectionArg,
    /// Announce a default route (0.0.0.0/0, ::/0) when a client asks. Without it such an
    /// announcement is refused (InvalidArgument), whichever API or the config file asks.
    #[arg(long)]
    allow_default_route: bool,
    /// Gratuitous ARPs / unsolicited NAs sent when taking an IP over.
    #[arg(long, default_value_t = 5)]
    garp_count: u32,
    /// Milliseconds between them.
    #[arg(long, default_value_t = 1100)]
    garp_interval_ms: u64,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
    }
}

/// Binds the API socket: parent directory created, a stale socket (nobody listening) replaced, mode 0600.
fn bind_socket(path: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.exists() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{} is in use by a running speakerd", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
    }
    // Create it private from the start: no window in which others could connect.
    let old = unsafe { libc::umask(0o177) };
    let l = tokio::net::UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let l = l.with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(l)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    speakerd::mem::fix_mmap_threshold();
    let args = Args::parse();
    init_tracing(args.log_format);
    // Before anything can be reached (the API socket first of all): a SIGTERM that arrives as soon as
    // the socket answers must find the handler in place, not the default action.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    if let Some(asn) = args.local_asn {
        if asn == 0 || asn == 23456 {
            bail!("--local-asn {asn}: not a usable AS number");
        }
    }
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let speaker = Speaker::new(
        SpeakerConfig {
            local_asn: args.local_asn,
            router_id: args.router_id,
            allow_default_route: args.allow_default_route,
            ..SpeakerConfig::default()
        },
        cancel.child_token(),
        tracker.clone(),
    );

    if !args.no_bgp_listen {
        for addr in &args.bgp_listen {
            if let Err(e) = speaker.listen(*addr) {
                tracing::warn!(%addr, error = %e, "cannot listen for BGP: passive peers will not connect");
            }
        }
    }

    start_layer2(&args, &speaker, &cancel).await?;
    match speakerd::bfd::BfdManager::start(cancel.child_token()) {
        Ok(m) => speaker.attach_bfd(m),
        Err(e) => tracing::warn!(error = %e, "BFD not available: peers with a BFD profile run without it"),
    }

    if let Some(path) = &args.config {
        let new = file::load(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        apply_file(&speaker, new).await?;
    }

    let socket = args.socket.clone().unwrap_or_else(speaker_api::default_socket_path);
    let listener = bind_socket(&socket)?;
    let router = speakerd::api::router(speaker.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let api_cancel = cancel.clone();
    let uds = tokio_stream::wrappers::UnixListenerStream::new(listener);
    let api = tokio::spawn(router.serve_with_incoming_shutdown(uds, async move { api_cancel.cancelled().await }));
    tracing::info!(socket = %socket.display(), "gRPC API listening");

    let tcp_api = match args.grpc_tcp {
        Some(addr) => {
            let tls = match (&args.grpc_tls_cert, &args.grpc_tls_key) {
                (Some(cert), Some(key)) => {
                    let read = |p: &PathBuf, what: &str| {
                        std::fs::read(p).with_context(|| format!("--grpc-tls-{what} {}", p.display()))
                    };
                    let mut t = tonic::transport::ServerTlsConfig::new()
                        .identity(tonic::transport::Identity::from_pem(read(cert, "cert")?, read(key, "key")?));
                    if let Some(ca) = &args.grpc_tls_client_ca {
                        t = t
                            .client_ca_root(tonic::transport::Certificate::from_pem(read(ca, "client-ca")?))
                            .client_auth_optional(false);
                    }
                    Some(t)
                }
                _ => None,
            };
            if tls.is_none() && !addr.ip().is_loopback() && !args.grpc_tcp_insecure {
                bail!("--grpc-tcp {addr}: plaintext gRPC only on loopback (give --grpc-tls-cert/--grpc-tls-key, or pass --grpc-tcp-insecure)");
            }
            let mode = match (&tls, &args.grpc_tls_client_ca) {
                (None, _) => "plaintext",
                (Some(_), None) => "TLS",
                (Some(_), Some(_)) => "mutual TLS",
            };
            let r = speakerd::api::router_with(speaker.clone(), tls).map_err(|e| anyhow::anyhow!("TLS set-up: {e}"))?;
            let c = cancel.clone();
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
            tracing::info!(addr = %l.local_addr()?, mode, "gRPC API listening on TCP");
            let inc = tokio_stream::wrappers::TcpListenerStream::new(l);
            Some(tokio::spawn(r.serve_with_incoming_shutdown(inc, async move { c.cancelled().await })))
        }
        None => None,
    };

    let gobgp_api = match args.gobgp_api {
        Some(addr) => {
            if !addr.ip().is_loopback() && !args.gobgp_api_insecure {
                bail!("--gobgp-api {addr}: plaintext gRPC only on loopback (or pass --gobgp-api-insecure)");
            }
            let listen = (!args.no_bgp_listen).then(|| args.bgp_listen.clone());
            let r = speakerd::api::gobgp_router(speaker.clone(), listen);
            let c = cancel.clone();
            let l = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
            tracing::info!(addr = %l.local_addr()?, "GoBGP compatible API listening on TCP (plaintext)");
            let inc = tokio_stream::wrappers::TcpListenerStream::new(l);
            Some(tokio::spawn(r.serve_with_incoming_shutdown(inc, async move { c.cancelled().await })))
        }
        None => None,
    };

    if let Some(addr) = args.metrics {
        let (s, c) = (speaker.clone(), cancel.clone());
        tokio::spawn(async move {
            if let Err(e) = speakerd::metrics::serve(addr, s, c).await {
                tracing::error!(%addr, error = %e, "metrics server failed");
            }
        });
    }

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => reload(&speaker, args.config.as_deref()).await,
        }
    }

    tracing::info!("shutting down: notifying peers");
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await.is_err() {
        tracing::warn!("tasks still running at the shutdown deadline");
    }
    let _ = api.await;
    for t in [tcp_api, gobgp_api].into_iter().flatten() {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

async fn start_layer2(args: &Args, speaker: &Arc<Speaker>, cancel: &CancellationToken) -> anyhow::Result<()> {
    use speakerd::l2::{control::L2Control, L2Config, L2Handle};
    use speakerd::membership::{Membership, MembershipConfig};
    let node = args.node_name.clone().filter(|n| !n.is_empty()).unwrap_or_else(speakerd::membership::hostname);
    let l2cfg = L2Config { garp_count: args.garp_count, garp_interval: Duration::from_millis(args.garp_interval_ms) };
    let handle = L2Handle::start(l2cfg, cancel.child_token()).map_err(|e| anyhow::anyhow!("layer 2: {e}"))?;
    let membership = if args.no_gossip {
        None
    } else {
        let mut seeds = Vec::new();
        for s in &args.gossip_seeds {
            seeds.push(
                speakerd::api::v1::parse_seed(s)
                    .ok_or_else(|| anyhow::anyhow!("--gossip-seed {s:?}: not IP or IP:PORT"))?,
            );
        }
        let envelope = match args.gossip_secret_file.is_empty() {
            false => Some(gossip_envelope(&args.gossip_secret_file, cancel.child_token())?),
            true => None,
        };
        let cfg = MembershipConfig {
            node_name: node.clone(),
            bind: args.gossip_bind,
            advertise: args.gossip_advertise,
            seeds,
            envelope,
            probe_period: Duration::from_millis(args.gossip_probe_ms),
            ..MembershipConfig::default()
        };
        match Membership::start(cfg, cancel.child_token()).await {
            Ok(m) => {
                tracing::info!(node = %node, addr = %m.local_addr(), "gossip membership started");
                Some(m)
            }
            Err(e) => {
                tracing::warn!(error = %e, "gossip not started: this node sees only itself (no Layer 2 failover)");
                None
            }
        }
    };
    let mode = match args.l2_election {
        L2ElectionArg::Available => speakerd::election::Mode::Available,
        L2ElectionArg::Strict => speakerd::election::Mode::Strict,
    };
    let ctl = L2Control::start(node, handle, membership, speaker.events(), mode, cancel.child_token());
    speaker.attach_l2(ctl);
    Ok(())
}

/// How often missing gossip secret files are looked for again.
const SECRET_POLL: Duration = Duration::from_secs(2);

/// The gossip envelope of the `--gossip-secret-file`s. The DaemonSet mounts the memberlist Secret as
/// optional, so a missing (or empty) file is not fatal: gossip runs unencrypted, loudly, with
/// `speakerd_gossip_secret_missing 1`, and the secret is picked up as soon as the file appears.
/// Only a file that exists but cannot be read stops start-up.
fn gossip_envelope(paths: &[PathBuf], cancel: CancellationToken) -> anyhow::Result<speakerd::membership::Envelope> {
    use speakerd::membership::{Envelope, SECRET_MISSING};
    use std::sync::atomic::Ordering::Relaxed;
    // The first file present, or None; an unreadable file is an error.
    fn first(paths: &[PathBuf]) -> anyhow::Result<Option<Vec<u8>>> {
        for p in paths {
            if let Some(s) =
                speakerd::membership::load_secret_file(p).with_context(|| format!("reading {}", p.display()))?
            {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }
    let shown = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    if let Some(s) = first(paths)? {
        SECRET_MISSING.store(false, Relaxed);
        return Ok(Envelope::new(&s));
    }
    tracing::warn!(
        files = %shown,
        "GOSSIP IS UNENCRYPTED AND UNAUTHENTICATED: no gossip secret file exists or all are empty (create the memberlist or metallb-memberlist Secret, key \"secretkey\"); the secret is picked up when it appears"
    );
    SECRET_MISSING.store(true, Relaxed);
    let env = Envelope::pending();
    let (e, paths) = (env.clone(), paths.to_vec());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SECRET_POLL);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match first(&paths) {
                Ok(Some(s)) => {
                    e.set_secret(&s);
                    SECRET_MISSING.store(false, Relaxed);
                    tracing::info!(files = %shown, "gossip secret found: gossip is encrypted from now on");
                    return;
                }
                Ok(None) => {}
                Err(err) => tracing::warn!(error = %format!("{err:#}"), "reading the gossip secret file"),
            }
        }
    });
    Ok(env)
}

/// Makes the file's peers and announcements the `config-file` owner's (as SetPeers and
/// SetAnnouncements do: unchanged peers keep their sessions). Consumes the file: the speaker keeps its
/// own copy, and the parsed file would otherwise stay in memory beside it.
///
/// Announcements first: a new peer's session then comes up with the whole table, and its End-of-RIB
/// follows the routes. The other way round, a session could come up while a large table was still
/// being loaded: End-of-RIB went out first, and a graceful-restart helper that got it flushed every
/// stale route until the table followed (seen with BIRD).
async fn apply_file(speaker: &Speaker, new: file::Loaded) -> Result<(), SpeakerError> {
    let n = new.announcements.len();
    // The file's list gives its memory back as the owner's set is built from it.
    let announcements = speakerd::mem::drain_shrinking(new.announcements).map(Ok);
    speaker.set_announcements_from(file::OWNER, announcements).await?;
    speakerd::mem::release_after_bulk(n);
    let out = speaker.set_peers(file::OWNER, new.peers.into_values().collect()).await?;
    for (addr, why) in &out.conflicts {
        tracing::error!(peer = %addr, error = %why, "config file: peer not applied");
    }
    Ok(())
}

async fn reload(speaker: &Arc<Speaker>, path: Option<&Path>) {
    let Some(path) = path else {
        tracing::info!("SIGHUP: no --config file to reload");
        return;
    };
    match file::load(path) {
        Ok(new) => {
            if let Err(e) = apply_file(speaker, new).await {
                tracing::error!(error = %e, "config reload: announcements rejected; previous ones stay");
                return;
            }
            tracing::info!(file = %path.display(), "config reloaded");
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "config reload rejected; the last good config stays in force")
        }
    }
}
