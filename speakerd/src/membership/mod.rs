//! Gossip membership between speakerd nodes (SWIM, via the sans-IO `foca` crate), used by Layer 2 mode
//! to agree who is alive without the Kubernetes API (MetalLB's memberlist, in Rust).
//!
//! * [`swim`]: the protocol as a value: foca, its tuning for a LAN, the node identity, the seed
//!   (re)join and the [`View`]. Time is an input; no tokio in there.
//! * `net`: the tokio driver: the UDP socket, the clock, the counters, the view channel.
//! * `crypto`: the shared-secret envelope (ChaCha20-Poly1305, key SHA-256(secret), random nonce in
//!   front): every datagram authenticated and encrypted; what does not open is dropped and counted.
//!
//! Failover timing: a killed node is declared Dead by every survivor within a few probe periods (the
//! bound is derived in [`swim::foca_config`]; docs/LAYER2.md and BENCHMARKS.md have the measured
//! times); a node that leaves (cancel) is
//! Dead everywhere as soon as its datagram arrives; a restarted node (same name, new process) is
//! alive again one round trip after it announces itself to a seed.
//!
//! Suspect members still count as alive in [`View::alive`] (a transient suspicion moves no IP); Dead
//! ones do not, and stay listed in [`View::members`] for 10 minutes.
mod crypto;
mod net;
pub mod swim;

pub use crypto::{load_secret_file, Envelope, EnvelopeError, SECRET_MISSING};
pub use swim::{foca_config, NodeId, PacketError};

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Node names longer than this are refused (a Kubernetes node name is a DNS subdomain, ≤ 253).
pub const MAX_NODE_NAME: usize = 253;

/// How to run this node's membership.
#[derive(Clone)]
pub struct MembershipConfig {
    /// The node's unique name (the Kubernetes node name). Two processes with one name are one node:
    /// the newer replaces the older.
    pub node_name: String,
    /// UDP address to bind (default `0.0.0.0:7946`; port 0 picks a free port).
    pub bind: SocketAddr,
    /// Address the other members send to. `None`: the bound address; if that is unspecified
    /// (`0.0.0.0`, `::`), the host's first non-loopback IPv4 address with the bound port.
    pub advertise: Option<SocketAddr>,
    /// Members to join through (any of them suffices). Seeds equal to this node's address are skipped.
    pub seeds: Vec<SocketAddr>,
    /// Shared secret: authenticates and encrypts every datagram. All members need the same one.
    pub secret: Option<Vec<u8>>,
    /// Instead of `secret`: an envelope shared with the caller, which may key it later (a secret
    /// file that appears after start; see [`Envelope::pending`]).
    pub envelope: Option<Envelope>,
    /// SWIM probe period (default 150 ms); every other timing is derived from it. 10 ms – 60 s.
    pub probe_period: Duration,
}

/// The default SWIM probe period, ms: a crash is declared within about 5 periods at worst (750 ms),
/// a live node survives a stall of 2 (300 ms); see `swim::foca_config`.
pub const DEFAULT_PROBE_MS: u64 = 150;

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            node_name: hostname(),
            bind: SocketAddr::from(([0, 0, 0, 0], 7946)),
            advertise: None,
            seeds: vec![],
            secret: None,
            envelope: None,
            probe_period: Duration::from_millis(DEFAULT_PROBE_MS),
        }
    }
}

/// The secret is never printed.
impl std::fmt::Debug for MembershipConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MembershipConfig")
            .field("node_name", &self.node_name)
            .field("bind", &self.bind)
            .field("advertise", &self.advertise)
            .field("seeds", &self.seeds)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("probe_period", &self.probe_period)
            .finish()
    }
}

/// The host name (the default node name), or `localhost` if it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// A member's state as this node sees it (SWIM with suspicion).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberState {
    /// Answers probes.
    Alive,
    /// Missed a probe; declared Dead unless it refutes within 1.5 probe periods. Counts as alive.
    Suspect,
    /// Failed to refute a suspicion, or left.
    Dead,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Its gossip address.
    pub addr: SocketAddr,
    pub state: MemberState,
    /// The member's generation: its start time in ms since the Unix epoch, + 1 h (in ms) each time it
    /// renews itself after being declared Dead while alive. Higher means newer.
    pub incarnation: u64,
    /// This node.
    pub local: bool,
}

/// The group as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// Names of the members that count as alive (Alive or Suspect), this node included.
    pub alive: BTreeSet<String>,
    /// Every member known, one per name: this node first, then by name, recently Dead ones included.
    pub members: Vec<Member>,
    /// Layer 2 IPs that alive members (this node included) report they cannot answer for: the
    /// election passes them over for those IPs (docs/LAYER2.md, "Hand-off").
    pub unservable: BTreeMap<String, BTreeSet<std::net::IpAddr>>,
}

/// Datagram counters since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MembershipCounters {
    /// Datagrams handed to the socket.
    pub sent: u64,
    /// Datagrams read from the socket, dropped ones included.
    pub received: u64,
    /// Dropped: did not authenticate with the shared secret (or had no envelope while one is set).
    pub dropped_bad_auth: u64,
    /// Dropped: too big, does not decode, or inconsistent (claims to be from this node, …).
    pub dropped_malformed: u64,
    /// Datagrams the socket refused (buffer full, no route); SWIM treats them as lost.
    pub send_errors: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("binding gossip socket {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("node name must not be empty")]
    EmptyName,
    #[error("node name is {0} bytes, longer than {MAX_NODE_NAME}")]
    NameTooLong(usize),
    #[error("gossip secret must not be empty")]
    EmptySecret,
    #[error("probe period {0:?} outside 10 ms – 60 s")]
    ProbePeriod(Duration),
    #[error("advertise address {0} is unspecified")]
    UnspecifiedAdvertise(SocketAddr),
    #[error("no address to advertise: the bind address is unspecified and the host has no non-loopback IPv4 address; set the advertise address")]
    NoAdvertiseAddress,
}

impl MembershipError {
    /// Metric / log label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Bind(..) => "bind",
            Self::EmptyName => "empty_name",
            Self::NameTooLong(_) => "name_too_long",
            Self::EmptySecret => "empty_secret",
            Self::ProbePeriod(_) => "probe_period",
            Self::UnspecifiedAdvertise(_) => "unspecified_advertise",
            Self::NoAdvertiseAddress => "no_advertise_address",
        }
    }
}

/// A running membership. Cheap to clone.
///
/// Cancelling the token given to [`Membership::start`] leaves the group: the other members mark this
/// node Dead at once. Dropping the last handle without cancelling stops the task silently, as a crash
/// would: the others detect it by probing.
#[derive(Clone)]
pub struct Membership {
    inner: Arc<Inner>,
}

struct Inner {
    _task: tokio_util::task::AbortOnDropHandle<()>,
    view: watch::Receiver<Arc<View>>,
    seeds: watch::Sender<Vec<SocketAddr>>,
    unservable: watch::Sender<BTreeSet<std::net::IpAddr>>,
    counters: Arc<net::Counters>,
    local: SocketAddr,
}

impl Membership {
    /// Binds the gossip socket, announces this node to the seeds and runs until `cancel`.
    ///
    /// Fails on an invalid configuration or when the socket cannot be bound; never after that
    /// (unreachable seeds are retried every second while this node is alone).
    pub async fn start(cfg: MembershipConfig, cancel: CancellationToken) -> Result<Membership, MembershipError> {
        if cfg.node_name.is_empty() {
            return Err(MembershipError::EmptyName);
        }
        if cfg.node_name.len() > MAX_NODE_NAME {
            return Err(MembershipError::NameTooLong(cfg.node_name.len()));
        }
        if cfg.secret.as_ref().is_some_and(|s| s.is_empty()) {
            return Err(MembershipError::EmptySecret);
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&cfg.probe_period) {
            return Err(MembershipError::ProbePeriod(cfg.probe_period));
        }
        if let Some(a) = cfg.advertise.filter(|a| a.ip().is_unspecified()) {
            return Err(MembershipError::UnspecifiedAdvertise(a));
        }
        let bind_err = |e| MembershipError::Bind(cfg.bind, e);
        let std_sock = std::net::UdpSocket::bind(cfg.bind).map_err(bind_err)?;
        std_sock.set_nonblocking(true).map_err(bind_err)?;
        let send = std_sock.try_clone().map_err(bind_err)?;
        let sock = UdpSocket::from_std(std_sock).map_err(bind_err)?;
        let bound = sock.local_addr().map_err(bind_err)?;
        let advertise = match cfg.advertise {
            // Port 0 in the advertise address: the port actually bound.
            Some(a) if a.port() == 0 => SocketAddr::new(a.ip(), bound.port()),
            Some(a) => a,
            None if !bound.ip().is_unspecified() => bound,
            None => {
                let ip = crate::netif::default_router_id().ok_or(MembershipError::NoAdvertiseAddress)?;
                SocketAddr::new(ip.into(), bound.port())
            }
        };
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(1);
        let me = NodeId { name: cfg.node_name.clone(), addr: advertise, generation };
        let envelope = cfg.envelope.clone().or_else(|| cfg.secret.as_deref().map(Envelope::new));
        let swim = swim::Swim::new(me, foca_config(cfg.probe_period), envelope, rand::random());
        let (view_tx, view_rx) = watch::channel(swim.view());
        let (seeds_tx, seeds_rx) = watch::channel(cfg.seeds.clone());
        let (unservable_tx, unservable_rx) = watch::channel(BTreeSet::new());
        let counters = Arc::new(net::Counters::default());
        let driver = net::Driver {
            swim,
            sock,
            send,
            seeds: seeds_rx,
            unservable: unservable_rx,
            view: view_tx,
            counters: counters.clone(),
            v6_socket: bound.is_ipv6(),
        };
        let span = tracing::info_span!("member", node = %cfg.node_name);
        let task = tokio::spawn(driver.run(cancel).instrument(span));
        let inner = Inner {
            _task: tokio_util::task::AbortOnDropHandle::new(task),
            view: view_rx,
            seeds: seeds_tx,
            unservable: unservable_tx,
            counters,
            local: advertise,
        };
        Ok(Membership { inner: Arc::new(inner) })
    }

    /// The current view; `changed()` fires on every change of any member's state. After the task
    /// stopped (cancelled), `changed()` answers an error and the last view stays readable.
    pub fn view(&self) -> watch::Receiver<Arc<View>> {
        self.inner.view.clone()
    }

    /// Replaces the seeds and announces this node to them at once (and again every second while it
    /// knows no other member). Idempotent.
    pub fn set_seeds(&self, seeds: Vec<SocketAddr>) {
        self.inner.seeds.send_replace(seeds);
    }

    /// Replaces the set of Layer 2 IPs this node cannot answer for; the others learn it by gossip and
    /// elect another owner for them. Idempotent.
    pub fn set_unservable(&self, ips: BTreeSet<std::net::IpAddr>) {
        self.inner.unservable.send_if_modified(|cur| {
            if *cur == ips {
                return false;
            }
            *cur = ips;
            true
        });
    }

    pub fn counters(&self) -> MembershipCounters {
        let c = &self.inner.counters;
        MembershipCounters {
            sent: c.sent.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            dropped_bad_auth: c.dropped_bad_auth.load(Ordering::Relaxed),
            dropped_malformed: c.dropped_malformed.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
        }
    }

    /// The address this node advertises (what the others send to, and what to give them as a seed).
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local
    }
}

#[cfg(test)]
mod tests;
