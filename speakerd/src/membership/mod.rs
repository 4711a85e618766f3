//! Gossip membership between speakerd nodes (SWIM, via the sans-IO `foca` crate), used by Layer 2 mode
//! to agree who is alive without the Kubernetes API.
//!
//! Why foca: it is SWIM as a state machine (time and I/O are inputs), which is the shape of the rest of
//! speakerd; memberlist exists only for Go, and our own SWIM would repeat foca's tested logic.
//!
//! * Identity: the gossip socket address (the unique key, as foca wants it), the node name, and a
//!   generation taken from the start time, so that a restarted node wins over the identity it had
//!   before (and a node declared down while alive renews itself and rejoins).
//! * Timing (LAN): probe every 200 ms, 80 ms for a direct ack, 2 indirect probes, suspicion turns into
//!   Down after 300 ms, gossip to 3 members every 100 ms. A killed node is probed by each survivor within
//!   2 periods (3 nodes), then suspected and declared Down: about 0.5–0.8 s, measured in the tests.
//! * Suspect members still count as alive (a transient suspicion moves no IP); Down ones do not.
//! * While a node sees no other member it re-announces itself to the seeds every second, so restarts
//!   rejoin and partitions heal.
//! * With a shared secret every datagram is sealed with ChaCha20-Poly1305 (key SHA-256 of the secret,
//!   random 96-bit nonce in front): authenticated and encrypted. Anything that does not open, or does
//!   not decode, is dropped and counted.
mod envelope;

use foca::{AccumulatingRuntime, Config, Foca, Identity, OwnedNotification, PostcardCodec, State, Timer};
use rand::rngs::StdRng;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use envelope::Envelope;

/// A member's identity on the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeId {
    pub name: String,
    pub addr: SocketAddr,
    pub generation: u64,
}

/// The gossip socket address is the unique key (as foca expects: a message is for us if it is for our
/// address); the name rides along. A node restarted on the same address wins by its newer generation.
impl Identity for NodeId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Self { generation: self.generation.wrapping_add(1), ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.generation > adversary.generation
    }
}

#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// The node's unique name (the Kubernetes node name).
    pub node_name: String,
    /// UDP address to bind.
    pub bind: SocketAddr,
    /// Address others reach us at; `None`: the bind address, or if that is unspecified the host's first
    /// non-loopback IPv4 address with the bind port.
    pub advertise: Option<SocketAddr>,
    pub seeds: Vec<SocketAddr>,
    pub secret: Option<Vec<u8>>,
    pub probe_period: Duration,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            node_name: hostname(),
            bind: SocketAddr::from(([0, 0, 0, 0], 7946)),
            advertise: None,
            seeds: vec![],
            secret: None,
            probe_period: Duration::from_millis(200),
        }
    }
}

/// The host name, the default node name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_else(|_| "localhost".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MemberState {
    Alive,
    Suspect,
    Dead,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub addr: SocketAddr,
    pub state: MemberState,
    /// The identity's generation: it changes when the node restarts or rejoins after being declared down.
    pub incarnation: u64,
    pub local: bool,
}

/// The group as this node sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// Names of the members that count as alive (Alive or Suspect), this node included.
    pub alive: BTreeSet<String>,
    /// Every member known, this node first, then by name.
    pub members: Vec<Member>,
}

#[derive(Debug, Default)]
pub struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub dropped_auth: AtomicU64,
    pub dropped_malformed: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MembershipCounters {
    pub sent: u64,
    pub received: u64,
    pub dropped_auth: u64,
    pub dropped_malformed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("binding gossip socket {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("no address to advertise: bind to a specific address or set the advertise address")]
    NoAdvertiseAddress,
    #[error("node name must not be empty")]
    EmptyName,
}

/// A running membership. Cheap to clone. Cancelling its token leaves the group (the others drop this
/// node at once); dropping the last handle stops it without a word, as a crash would.
#[derive(Clone)]
pub struct Membership {
    _task: Arc<tokio_util::task::AbortOnDropHandle<()>>,
    view: watch::Receiver<Arc<View>>,
    seeds: mpsc::Sender<Vec<SocketAddr>>,
    counters: Arc<Counters>,
    local: SocketAddr,
}

impl Membership {
    pub async fn start(cfg: MembershipConfig, cancel: CancellationToken) -> Result<Membership, MembershipError> {
        if cfg.node_name.is_empty() {
            return Err(MembershipError::EmptyName);
        }
        let sock = UdpSocket::bind(cfg.bind).await.map_err(|e| MembershipError::Bind(cfg.bind, e))?;
        let bound = sock.local_addr().map_err(|e| MembershipError::Bind(cfg.bind, e))?;
        let advertise = match cfg.advertise {
            Some(a) => a,
            None if !bound.ip().is_unspecified() => bound,
            None => {
                let ip = crate::bgp::transport::default_router_id().ok_or(MembershipError::NoAdvertiseAddress)?;
                SocketAddr::new(ip.into(), bound.port())
            }
        };
        let generation = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        let me = NodeId { name: cfg.node_name.clone(), addr: advertise, generation };
        let counters = Arc::new(Counters::default());
        let (view_tx, view_rx) = watch::channel(Arc::new(View::default()));
        let (seeds_tx, seeds_rx) = mpsc::channel(8);
        let envelope = cfg.secret.as_deref().map(Envelope::new);
        let driver = Driver::new(me, &cfg, envelope, counters.clone(), view_tx);
        let task = tokio::spawn(driver.run(sock, cfg.seeds.clone(), seeds_rx, cancel));
        let _task = Arc::new(tokio_util::task::AbortOnDropHandle::new(task));
        Ok(Membership { _task, view: view_rx, seeds: seeds_tx, counters, local: advertise })
    }

    /// The current view; `changed()` fires on every change of any member's state.
    pub fn view(&self) -> watch::Receiver<Arc<View>> {
        self.view.clone()
    }

    /// Replaces the seeds and announces this node to them.
    pub fn set_seeds(&self, seeds: Vec<SocketAddr>) {
        let _ = self.seeds.try_send(seeds);
    }

    pub fn counters(&self) -> MembershipCounters {
        let c = &self.counters;
        MembershipCounters {
            sent: c.sent.load(Ordering::Relaxed),
            received: c.received.load(Ordering::Relaxed),
            dropped_auth: c.dropped_auth.load(Ordering::Relaxed),
            dropped_malformed: c.dropped_malformed.load(Ordering::Relaxed),
        }
    }

    /// The address this node advertises.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }
}

fn foca_config(probe_period: Duration) -> Config {
    let mut c = Config::new_lan(NonZeroU32::new(32).unwrap_or(NonZeroU32::MIN));
    c.probe_period = probe_period;
    c.probe_rtt = (probe_period * 2 / 5).max(Duration::from_millis(20));
    c.num_indirect_probes = NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN);
    c.suspect_to_down_after = probe_period * 3 / 2;
    c.periodic_gossip = Some(foca::PeriodicParams {
        frequency: probe_period / 2,
        num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
    });
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(5),
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: Duration::from_secs(2),
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    c
}

struct Driver {
    foca: Foca<NodeId, PostcardCodec, StdRng, foca::NoCustomBroadcast>,
    rt: AccumulatingRuntime<NodeId>,
    timers: BinaryHeap<std::cmp::Reverse<(tokio::time::Instant, u64, TimerSlot)>>,
    seq: u64,
    envelope: Option<Envelope>,
    counters: Arc<Counters>,
    view_tx: watch::Sender<Arc<View>>,
    me: NodeId,
}

/// foca's timers are not `Ord`; they wait in this wrapper, ordered only by the heap's (time, seq).
struct TimerSlot(Timer<NodeId>);
impl PartialEq for TimerSlot {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for TimerSlot {}
impl PartialOrd for TimerSlot {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for TimerSlot {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Driver {
    fn new(me: NodeId, cfg: &MembershipConfig, envelope: Option<Envelope>, counters: Arc<Counters>, view_tx: watch::Sender<Arc<View>>) -> Self {
        let foca = Foca::new(me.clone(), foca_config(cfg.probe_period), rand::make_rng::<StdRng>(), PostcardCodec);
        Self { foca, rt: AccumulatingRuntime::new(), timers: BinaryHeap::new(), seq: 0, envelope, counters, view_tx, me }
    }

    async fn run(mut self, sock: UdpSocket, mut seeds: Vec<SocketAddr>, mut seeds_rx: mpsc::Receiver<Vec<SocketAddr>>, cancel: CancellationToken) {
        let mut buf = vec![0u8; 65536];
        let mut rejoin = tokio::time::interval(Duration::from_secs(1));
        self.publish();
        self.announce_to(&seeds, &sock).await;
        loop {
            let next = self.timers.peek().map(|std::cmp::Reverse((t, _, _))| *t);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    // Leaving: gossip that this node is down, so the others need not detect it.
                    let r = self.foca.leave_cluster(&mut self.rt);
                    self.flush(&sock, r).await;
                    return;
                }
                Some(s) = seeds_rx.recv() => {
                    seeds = s;
                    self.announce_to(&seeds, &sock).await;
                }
                _ = async { tokio::time::sleep_until(next.unwrap_or_else(tokio::time::Instant::now)).await }, if next.is_some() => {
                    if let Some(std::cmp::Reverse((_, _, TimerSlot(t)))) = self.timers.pop() {
                        let r = self.foca.handle_timer(t, &mut self.rt);
                        self.flush(&sock, r).await;
                    }
                }
                _ = rejoin.tick() => {
                    if self.foca.num_members() == 0 {
                        self.announce_to(&seeds, &sock).await;
                    }
                }
                r = sock.recv_from(&mut buf) => {
                    let Ok((n, _from)) = r else { continue };
                    self.counters.received.fetch_add(1, Ordering::Relaxed);
                    let data = match &self.envelope {
                        Some(e) => match e.open(&buf[..n]) {
                            Some(d) => d,
                            None => {
                                self.counters.dropped_auth.fetch_add(1, Ordering::Relaxed);
                                continue;
                            }
                        },
                        None => buf[..n].to_vec(),
                    };
                    let r = self.foca.handle_data(&data, &mut self.rt);
                    if r.is_err() {
                        self.counters.dropped_malformed.fetch_add(1, Ordering::Relaxed);
                    }
                    self.flush(&sock, Ok(())).await;
                }
            }
        }
    }

    async fn announce_to(&mut self, seeds: &[SocketAddr], sock: &UdpSocket) {
        let me = self.me.addr;
        for s in seeds.iter().filter(|s| **s != me) {
            // The seed's name is not known yet; foca only needs its address to send the announcement.
            let dst = NodeId { name: String::new(), addr: *s, generation: 0 };
            let r = self.foca.announce(dst, &mut self.rt);
            self.flush(sock, r).await;
        }
    }

    /// Sends what foca produced, schedules its timers, and publishes the view if membership changed.
    async fn flush(&mut self, sock: &UdpSocket, r: Result<(), foca::Error>) {
        if let Err(e) = r {
            tracing::debug!(error = ?e, "gossip input ignored");
        }
        while let Some((dst, data)) = self.rt.to_send() {
            let out = match &self.envelope {
                Some(e) => e.seal(&data),
                None => data.to_vec(),
            };
            if sock.send_to(&out, dst.addr).await.is_ok() {
                self.counters.sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        let now = tokio::time::Instant::now();
        while let Some((delay, t)) = self.rt.to_schedule() {
            self.seq += 1;
            self.timers.push(std::cmp::Reverse((now + delay, self.seq, TimerSlot(t))));
        }
        let mut changed = false;
        while let Some(n) = self.rt.to_notify() {
            match n {
                OwnedNotification::MemberUp(id) => {
                    tracing::info!(member = %id.name, addr = %id.addr, "member up");
                    changed = true;
                }
                OwnedNotification::MemberDown(id) => {
                    tracing::info!(member = %id.name, "member down");
                    changed = true;
                }
                OwnedNotification::Rename(old, new) => {
                    tracing::info!(member = %new.name, old = old.generation, new = new.generation, "member renewed");
                    changed = true;
                }
                OwnedNotification::Rejoin(id) => {
                    tracing::info!(generation = id.generation, "this node was declared down; rejoined");
                    self.me = id;
                    changed = true;
                }
                _ => {}
            }
        }
        // Suspicions notify nothing; the view is compared, so publishing every time is cheap and exact.
        let _ = changed;
        self.publish();
    }

    fn publish(&self) {
        let mut members = vec![Member {
            name: self.me.name.clone(),
            addr: self.me.addr,
            state: MemberState::Alive,
            incarnation: self.me.generation,
            local: true,
        }];
        let mut others: Vec<Member> = self
            .foca
            .iter_membership_state()
            .filter(|m| m.id().name != self.me.name)
            .map(|m| Member {
                name: m.id().name.clone(),
                addr: m.id().addr,
                state: match m.state() {
                    State::Alive => MemberState::Alive,
                    State::Suspect => MemberState::Suspect,
                    State::Down => MemberState::Dead,
                },
                incarnation: m.id().generation,
                local: false,
            })
            .collect();
        others.sort_by(|a, b| a.name.cmp(&b.name));
        members.extend(others);
        let alive = members.iter().filter(|m| m.state != MemberState::Dead).map(|m| m.name.clone()).collect();
        let view = View { alive, members };
        self.view_tx.send_if_modified(|v| {
            let changed = **v != view;
            if changed {
                *v = Arc::new(view);
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests;
