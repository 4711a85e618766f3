//! SWIM membership as a value: foca (SWIM with suspicion, sans IO) plus the secret envelope, the seed
//! (re)join and the projection of foca's member table into a [`View`].
//!
//! [`Swim::handle`] takes one [`Input`] and the current time and answers with [`Action`]s: datagrams
//! to send, datagrams dropped (and why), a new view. It owns foca's timers as absolute deadlines;
//! the driver wakes it at [`Swim::next_deadline`] with [`Input::Tick`]. No async runtime, no socket
//! and no clock in here (`now` is an argument), so the tests below run whole groups in simulated time,
//! deterministically (seeded RNG).
//!
//! Identity ([`NodeId`]): node name + gossip address + generation. foca keys members on the address
//! ([`Identity::addr`]), because a seed is known only by its address and foca accepts an Announce only
//! when it is addressed to one of its possible identities. The generation is the start time in ms,
//! so a restarted process (same name, same address) beats its old identity in foca's address conflict
//! and is taken back at once, even while the old identity is still Down everywhere; a node wrongly
//! declared Down renews itself (generation + [`RENEW_STEP_MS`]) and rejoins. The view is keyed on the name: when one
//! name appears under several addresses (a node restarted on another address), the newest generation
//! is shown.
use super::crypto::{Envelope, OVERHEAD};
use super::{Member, MemberState, View};
use foca::{
    AccumulatingRuntime, BroadcastHandler, Codec, Config, Foca, Identity, Invalidates, Message, OwnedNotification,
    PeriodicParams, PostcardCodec, State, Timer,
};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::borrow::Cow;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::num::{NonZeroU8, NonZeroUsize};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The largest datagram foca writes or reads (before the envelope): below any LAN MTU with room for
/// IPv6, UDP and the envelope (1400 + 28 + 48 < 1500), so gossip never fragments.
pub const MAX_PACKET: usize = 1400;
/// The largest datagram accepted from the socket: [`MAX_PACKET`] plus the envelope.
pub const MAX_DATAGRAM: usize = MAX_PACKET + OVERHEAD;
/// While this node knows no other member, it announces itself to the seeds this often.
pub const JOIN_RETRY_ALONE: Duration = Duration::from_secs(1);
/// While connected, seeds that are not active members get an Announce this often, so that two groups
/// that formed apart (seeds down at start) merge.
pub const JOIN_RETRY_CONNECTED: Duration = Duration::from_secs(30);
/// How long a Down member stays in the view (and in foca's table) before it is forgotten.
pub const REMOVE_DOWN_AFTER: Duration = Duration::from_secs(10 * 60);
/// What a renewal adds to the generation: one hour in ms. Generations come from the wall clock; a
/// process restarted after the clock stepped back starts below its old identity, loses the address
/// conflict, is told it is Down, and one renewal puts it above any identity of the last hour.
pub const RENEW_STEP_MS: u64 = 3_600_000;

/// At most this many IPs in one node's "cannot answer" set (a bound on the broadcast's size).
pub const MAX_UNSERVABLE: usize = 64;
/// While a node's set is not empty it is broadcast again this often, so that members that joined
/// later, or were on the other side of a partition, learn it too. Until a member knows the set it may
/// elect this node for an IP that this node passes over (nobody answers it), so this bounds that
/// window; a broadcast of a few dozen bytes per second piggybacked on the gossip is the price.
pub const UNSERVABLE_REBROADCAST: Duration = Duration::from_secs(1);

/// One node's set of Layer 2 IPs it cannot answer for (no usable interface, socket errors), carried
/// by foca's custom broadcasts. Tied to the node's identity generation: a restarted process starts
/// with nothing to report, and what its previous life reported stops counting.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unservable {
    pub name: String,
    pub generation: u64,
    /// Increases with every change (and every re-broadcast) of this node's set.
    pub version: u64,
    pub ips: Vec<IpAddr>,
}

/// Which broadcast replaces which: the newer (generation, version) of the same node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnservableKey {
    name: String,
    stamp: (u64, u64),
}

impl Invalidates for UnservableKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.name == other.name && self.stamp >= other.stamp
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed Layer 2 broadcast")]
pub struct BadBroadcast;

/// The latest set of every node, filled by foca as broadcasts arrive (shared with [`Swim`]).
#[derive(Debug, Clone, Default)]
pub struct UnservableTable(Arc<Mutex<BTreeMap<String, Unservable>>>);

/// Decodes one broadcast item, bounded: a malformed item is an error (the datagram is dropped and
/// counted), never a panic or an unbounded allocation.
pub fn decode_unservable(data: &[u8]) -> Result<Unservable, BadBroadcast> {
    let u: Unservable = postcard::from_bytes(data).map_err(|_| BadBroadcast)?;
    if u.name.is_empty() || u.name.len() > super::MAX_NODE_NAME || u.ips.len() > MAX_UNSERVABLE {
        return Err(BadBroadcast);
    }
    Ok(u)
}

impl BroadcastHandler<NodeId> for UnservableTable {
    type Key = UnservableKey;
    type Error = BadBroadcast;

    fn receive_item(&mut self, data: &[u8], _sender: Option<&NodeId>) -> Result<Option<UnservableKey>, BadBroadcast> {
        let u = decode_unservable(data)?;
        let mut t = self.0.lock().map_err(|_| BadBroadcast)?;
        let stamp = (u.generation, u.version);
        if t.get(&u.name).is_some_and(|o| (o.generation, o.version) >= stamp) {
            return Ok(None);
        }
        let key = UnservableKey { name: u.name.clone(), stamp };
        t.insert(u.name.clone(), u);
        Ok(Some(key))
    }
}

/// A member's identity on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct NodeId {
    /// The node name (Kubernetes node name). Empty only in the placeholder used to announce to a seed
    /// whose name is not known yet.
    pub name: String,
    /// The address others send this node's gossip to.
    pub addr: SocketAddr,
    /// Milliseconds since the Unix epoch when this process started, + [`RENEW_STEP_MS`] per renewal.
    pub generation: u64,
}

impl Identity for NodeId {
    type Addr = SocketAddr;

    /// Declared Down while alive (a partition, a long pause, or a restart whose generation lost
    /// against the old one): come back as a newer generation, which wins the address conflict against
    /// the Down identity everywhere.
    fn renew(&self) -> Option<Self> {
        self.generation.checked_add(RENEW_STEP_MS).map(|generation| Self { generation, ..self.clone() })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The newer generation wins: a restarted process beats the identity it had before. The name breaks
    /// ties, so that two misconfigured nodes sharing an address settle on one instead of flapping.
    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.generation, &self.name) > (adversary.generation, &adversary.name)
    }
}

/// foca's settings for a LAN group, from the probe period `p` (default 150 ms).
///
/// Failure detection in foca: every `p` a member pings the next member of its shuffled round-robin;
/// without an ack after `probe_rtt` it asks `num_indirect_probes` others to ping it too; at its next
/// probe (`p` after the first ping) a probe without any ack makes the target Suspect, and
/// `suspect_to_down_after` later the prober declares it Down and gossips that. Only the prober runs the
/// Suspect → Down timer; the others learn Down from its gossip.
///
/// So after a kill -9 the first survivor to probe the dead node does so within 0–2 `p` (each survivor
/// probes a random member each period; in a group of 3 each period has a 1/2 chance per survivor), then
/// `p` of probe, `suspect_to_down_after` = 1.5 `p`, and gossip within `p` / 2 (periodic gossip, plus the
/// Down piggybacked on the next probe):
///
/// * so in a group of 3, about 3 `p` expected and 5 `p` at worst for both survivors (200 simulated
///   crashes: median 466 ms, p99 676 ms, max 751 ms at 150 ms; see
///   `crash_is_declared_down_by_every_survivor_within_a_second`). At the former default of 200 ms the
///   worst was 1.02 s, which missed the sub-second failover target.
/// * A false suspicion (a slow node) is refuted if the suspect hears of it within 1.5 `p` (225 ms): it
///   is told by periodic gossip (every `p` / 2) and answers with a higher incarnation. A live node
///   that stalls for 2 `p` is never declared Down; from about 2.5 `p` (380 ms) it can be
///   (`a_stall_of_two_periods_is_survived_and_the_limit_is_about_two_and_a_half`).
pub fn foca_config(p: Duration) -> Config {
    // Start from memberlist's DefaultLANConfig as foca translates it, then scale its 1 s probe period
    // down to `p`. The group-size argument only sets max_transmissions (log10(n + 1) * 4 → 6 for 32).
    let mut c = Config::new_lan(std::num::NonZeroU32::new(32).unwrap_or(std::num::NonZeroU32::MIN));
    // SWIM protocol period: one direct probe per member per `p`.
    c.probe_period = p;
    // Direct ack deadline before the indirect probes go out: 2/5 of the period (60 ms at 150 ms) is
    // far above a LAN round trip, and leaves 3/5 for the indirect ping-req → ping → ack → forward.
    c.probe_rtt = (p * 2 / 5).max(Duration::from_millis(1));
    // Members asked to ping a silent target (memberlist's IndirectChecks = 3). Also the fan-out of an
    // explicit gossip (a refutation).
    c.num_indirect_probes = NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN);
    // Suspect → Down after 1.5 periods: long enough for the suspect to hear the suspicion via periodic
    // gossip (every p / 2) and refute it, short enough for sub-second failover.
    c.suspect_to_down_after = p * 3 / 2;
    // Forget Down members after 10 minutes; renewed identities never need the slot freed, this only
    // bounds how long a dead node is listed.
    c.remove_down_after = Some(REMOVE_DOWN_AFTER);
    c.max_packet_size = NonZeroUsize::new(MAX_PACKET).unwrap_or(NonZeroUsize::MIN);
    // A member declared Down while alive is told so (TurnUndead) and renews itself at once.
    c.notify_down_members = true;
    // Push updates (Suspect, Down, joins) to 3 random members every p / 2 when there are any, besides
    // piggybacking them on probes: a Down reaches every survivor within ~p / 2.
    c.periodic_gossip =
        Some(PeriodicParams { frequency: p / 2, num_members: NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN) });
    // Ask a random member for its member list every 5 s: members learned late still get known.
    c.periodic_announce = Some(PeriodicParams { frequency: Duration::from_secs(5), num_members: NonZeroUsize::MIN });
    // Announce to 2 Down members every 2 s: a healed partition, or a node declared Down by mistake,
    // is told it is Down (TurnUndead), renews itself and rejoins within seconds.
    c.periodic_announce_to_down_members = Some(PeriodicParams {
        frequency: Duration::from_secs(2),
        num_members: NonZeroUsize::new(2).unwrap_or(NonZeroUsize::MIN),
    });
    c
}

/// Why a received datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Longer than [`MAX_DATAGRAM`] (possibly truncated by the socket).
    #[error("datagram of {0} bytes is over the limit")]
    TooBig(usize),
    /// The envelope did not open: another secret, a changed bit, or a member without the secret.
    #[error("datagram does not authenticate with the shared secret")]
    BadAuth,
    /// foca could not decode it (header, member list, trailing bytes) or found it inconsistent.
    #[error("datagram does not decode as gossip")]
    Malformed,
    /// Claims to come from this node's address: a loop (a seed that is this node under another
    /// address) or a forgery.
    #[error("datagram claims to come from this node")]
    FromOurselves,
    /// An indirect probe naming this node as the one to probe: crafted, since nobody probes itself.
    #[error("indirect probe names this node as its target")]
    IndirectForOurselves,
    /// Decodes, but is addressed to another member's address.
    #[error("datagram addressed to another member")]
    NotForUs,
}

impl PacketError {
    /// Metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::TooBig(_) => "too_big",
            Self::BadAuth => "bad_auth",
            Self::Malformed => "malformed",
            Self::FromOurselves => "from_ourselves",
            Self::IndirectForOurselves => "indirect_for_ourselves",
            Self::NotForUs => "not_for_us",
        }
    }

    /// Counted as `dropped_bad_auth` (the others as `dropped_malformed`).
    pub fn is_auth(&self) -> bool {
        matches!(self, Self::BadAuth)
    }
}

/// What the driver feeds in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input<'a> {
    /// A datagram as received from the socket (sealed, when there is a secret).
    Datagram(&'a [u8]),
    /// Time passed: timers due at `now` fire. Harmless at any time.
    Tick,
    /// (Re)join through these seeds now, and keep them for later retries.
    SetSeeds(Vec<SocketAddr>),
    /// Graceful shutdown: tell every active member that this node leaves. Later inputs are ignored.
    Leave,
    /// This node's complete set of Layer 2 IPs it cannot answer for (at most [`MAX_UNSERVABLE`]).
    SetUnservable(BTreeSet<IpAddr>),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this datagram (already sealed) to `to`. UDP: losing it is tolerated.
    Send { to: SocketAddr, data: Vec<u8> },
    /// The datagram of this input was dropped.
    Dropped(PacketError),
    /// The view changed (any member's state, a member added or forgotten).
    View(Arc<View>),
}

/// One member's SWIM state machine.
pub struct Swim {
    foca: Foca<NodeId, PostcardCodec, StdRng, UnservableTable>,
    table: UnservableTable,
    /// This node's own set, its version, and when to broadcast it again.
    unservable: BTreeSet<IpAddr>,
    unservable_version: u64,
    /// The identity generation the set was last broadcast under: a renewal broadcasts it again at
    /// once, since the others only count a set of the generation they see alive.
    unservable_generation: u64,
    next_rebroadcast: Option<Instant>,
    config: Config,
    rt: AccumulatingRuntime<NodeId>,
    /// foca's timers by absolute deadline; the sequence number keeps equal deadlines in order.
    timers: BTreeMap<(Instant, u64), Timer<NodeId>>,
    seq: u64,
    envelope: Option<Envelope>,
    seeds: Vec<SocketAddr>,
    next_join: Option<Instant>,
    view: Arc<View>,
    left: bool,
}

impl std::fmt::Debug for Swim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Swim")
            .field("me", self.foca.identity())
            .field("view", &self.view)
            .field("left", &self.left)
            .finish_non_exhaustive()
    }
}

impl Swim {
    /// A member that knows nobody yet. `rng_seed` drives foca's random choices (tests replay exactly).
    pub fn new(me: NodeId, config: Config, envelope: Option<Envelope>, rng_seed: u64) -> Self {
        let table = UnservableTable::default();
        let foca = Foca::with_custom_broadcast(
            me,
            config.clone(),
            StdRng::seed_from_u64(rng_seed),
            PostcardCodec,
            table.clone(),
        );
        let mut s = Self {
            foca,
            table,
            unservable: BTreeSet::new(),
            unservable_version: 0,
            unservable_generation: 0,
            next_rebroadcast: None,
            config,
            rt: AccumulatingRuntime::new(),
            timers: BTreeMap::new(),
            seq: 0,
            envelope,
            seeds: Vec::new(),
            next_join: None,
            view: Arc::new(View::default()),
            left: false,
        };
        s.view = Arc::new(s.project());
        s
    }

    /// This node's current identity (it changes when the node renews itself).
    pub fn identity(&self) -> &NodeId {
        self.foca.identity()
    }

    /// The current view.
    pub fn view(&self) -> Arc<View> {
        self.view.clone()
    }

    /// When the driver must call back with [`Input::Tick`]; `None`: only input can wake it.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.left {
            return None;
        }
        let timer = self.timers.keys().next().map(|(t, _)| *t);
        let join = self.next_join.filter(|_| !self.seeds.is_empty());
        [timer, join, self.next_rebroadcast].into_iter().flatten().min()
    }

    pub fn handle(&mut self, input: Input<'_>, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.left {
            return out;
        }
        match input {
            Input::Datagram(data) => {
                if let Err(e) = self.receive(data, now, &mut out) {
                    out.push(Action::Dropped(e));
                }
                // The last other member left or was declared Down (Idle): announce to the seeds at once.
                self.join_if_due(now, &mut out);
            }
            Input::Tick => {
                while let Some(entry) = self.timers.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    let timer = entry.remove();
                    if let Err(e) = self.foca.handle_timer(timer, &mut self.rt) {
                        tracing::debug!(error = %e, "gossip timer");
                    }
                    // Timers scheduled by this one count from now; they may be due already.
                    self.absorb(now, &mut out);
                }
                self.join_if_due(now, &mut out);
                if self.next_rebroadcast.is_some_and(|t| t <= now) {
                    self.broadcast_unservable(now);
                }
            }
            Input::SetUnservable(set) => {
                let set: BTreeSet<IpAddr> = set.into_iter().take(MAX_UNSERVABLE).collect();
                if set != self.unservable {
                    self.unservable = set;
                    self.broadcast_unservable(now);
                }
            }
            Input::SetSeeds(seeds) => {
                let me = self.foca.identity().addr;
                let mut seeds: Vec<SocketAddr> = seeds.into_iter().filter(|s| *s != me).collect();
                seeds.sort();
                seeds.dedup();
                self.seeds = seeds;
                self.next_join = Some(now);
                self.join_if_due(now, &mut out);
            }
            Input::Leave => self.leave(now, &mut out),
        }
        if !self.unservable.is_empty() && self.foca.identity().generation != self.unservable_generation {
            self.broadcast_unservable(now);
        }
        self.publish(now, &mut out);
        out
    }

    fn receive(&mut self, data: &[u8], now: Instant, out: &mut Vec<Action>) -> Result<(), PacketError> {
        if data.len() > MAX_DATAGRAM {
            return Err(PacketError::TooBig(data.len()));
        }
        let plain = match &self.envelope {
            Some(e) => Cow::Owned(e.open(data).map_err(|_| PacketError::BadAuth)?),
            None => Cow::Borrowed(data),
        };
        let plain = self.check_destination(plain)?;
        let r = self.foca.handle_data(&plain, &mut self.rt);
        // Whatever foca did before an error (it applies updates one by one) is still sent and shown.
        self.absorb(now, out);
        match r {
            Ok(()) => Ok(()),
            Err(foca::Error::DataTooBig) => Err(PacketError::TooBig(plain.len())),
            // Encode: the reply did not fit in a packet, which only oversized identities in the
            // datagram can cause.
            Err(
                foca::Error::MalformedPacket
                | foca::Error::Decode(_)
                | foca::Error::CustomBroadcast(_)
                | foca::Error::Encode(_),
            ) => Err(PacketError::Malformed),
            Err(foca::Error::DataFromOurselves) => Err(PacketError::FromOurselves),
            Err(foca::Error::IndirectForOurselves) => Err(PacketError::IndirectForOurselves),
            // Not about the datagram (foca answers these only from timers and explicit calls).
            Err(
                e @ (foca::Error::NotConnected
                | foca::Error::IncompleteProbeCycle
                | foca::Error::NotUndead
                | foca::Error::SameIdentity
                | foca::Error::InvalidConfig),
            ) => {
                tracing::debug!(error = %e, "gossip state while handling a datagram");
                Ok(())
            }
        }
    }

    /// Checks the header's destination before foca sees the datagram.
    ///
    /// foca accepts an Announce only when addressed to an identity with its own address. A seed may
    /// be reached at another of its addresses than the one it advertises (a multi-homed node, a
    /// service IP), and the joiner does not know the seed's name: so the placeholder destination
    /// (empty name) of an Announce is rewritten to this node.
    ///
    /// Anything else addressed to another address than ours is garbage that happened to decode (foca
    /// would ignore it silently): dropped as [`PacketError::NotForUs`]. Datagrams for an older identity
    /// of ours (same address) are normal after a renewal and go to foca, which ignores them.
    fn check_destination<'a>(&self, plain: Cow<'a, [u8]>) -> Result<Cow<'a, [u8]>, PacketError> {
        let mut rest: &[u8] = &plain;
        let Ok(mut header) = Codec::<NodeId>::decode_header(&mut PostcardCodec, &mut rest) else {
            return Err(PacketError::Malformed);
        };
        let me = self.foca.identity();
        if header.message == Message::Announce && header.dst.name.is_empty() {
            header.dst = me.clone();
            let mut buf = Vec::with_capacity(plain.len() + 64);
            Codec::<NodeId>::encode_header(&mut PostcardCodec, &header, &mut buf)
                .map_err(|_| PacketError::Malformed)?;
            buf.extend_from_slice(rest);
            return Ok(Cow::Owned(buf));
        }
        if header.dst.addr != me.addr {
            return Err(PacketError::NotForUs);
        }
        Ok(plain)
    }

    fn join_if_due(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.seeds.is_empty() || self.next_join.is_none_or(|t| t > now) {
            return;
        }
        let alone = self.foca.num_members() == 0;
        let active: Vec<SocketAddr> = self.foca.iter_members().map(|m| m.id().addr).collect();
        for seed in self.seeds.clone() {
            if alone || !active.contains(&seed) {
                // The seed's name is not known: an empty name marks the placeholder (see
                // `check_destination`); foca only uses it as the header's destination.
                let dst = NodeId { name: String::new(), addr: seed, generation: 0 };
                if let Err(e) = self.foca.announce(dst, &mut self.rt) {
                    tracing::warn!(error = %e, %seed, "announce to seed");
                }
            }
        }
        self.next_join = Some(now + if alone { JOIN_RETRY_ALONE } else { JOIN_RETRY_CONNECTED });
        self.absorb(now, out);
    }

    /// foca's leave gossips this node's Down to `num_indirect_probes` members, and each update rides
    /// along at most `max_transmissions` times. For the whole group to drop this node at once, both
    /// are raised to the number of active members first; the leave goes out twice to each of them
    /// (UDP may lose one).
    fn leave(&mut self, now: Instant, out: &mut Vec<Action>) {
        let n = self.foca.num_members();
        if n > 0 {
            let mut c = self.config.clone();
            c.num_indirect_probes = NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN);
            c.max_transmissions =
                NonZeroU8::new(u8::try_from(n.saturating_mul(2)).unwrap_or(u8::MAX)).unwrap_or(NonZeroU8::MIN);
            if let Err(e) = self.foca.set_config(c) {
                tracing::warn!(error = %e, "widening the leave gossip");
            }
        }
        if let Err(e) = self.foca.leave_cluster(&mut self.rt) {
            tracing::warn!(error = %e, "leaving the gossip group");
        }
        if n > 0 {
            if let Err(e) = self.foca.gossip(&mut self.rt) {
                tracing::warn!(error = %e, "repeating the leave");
            }
        }
        tracing::info!(members = n, "left the gossip group");
        self.absorb(now, out);
        self.left = true;
        self.timers.clear();
    }

    /// Moves what foca produced into actions and timers.
    fn absorb(&mut self, now: Instant, out: &mut Vec<Action>) {
        while let Some((dst, data)) = self.rt.to_send() {
            let data = match &self.envelope {
                Some(e) => match e.seal(&data) {
                    Ok(d) => d,
                    Err(err) => {
                        tracing::warn!(error = %err, "sealing a gossip datagram");
                        continue;
                    }
                },
                None => data.to_vec(),
            };
            out.push(Action::Send { to: dst.addr, data });
        }
        while let Some((delay, timer)) = self.rt.to_schedule() {
            self.seq += 1;
            self.timers.insert((now + delay, self.seq), timer);
        }
        while let Some(n) = self.rt.to_notify() {
            match n {
                OwnedNotification::MemberUp(id) => {
                    tracing::info!(member = %id.name, addr = %id.addr, generation = id.generation, "member up")
                }
                OwnedNotification::MemberDown(id) => {
                    tracing::info!(member = %id.name, addr = %id.addr, generation = id.generation, "member down")
                }
                OwnedNotification::Rename(old, new) => {
                    tracing::info!(member = %new.name, addr = %new.addr, old = old.generation, new = new.generation, "member restarted")
                }
                OwnedNotification::Rejoin(id) => tracing::warn!(
                    generation = id.generation,
                    "this node was declared down; rejoined as a new generation"
                ),
                OwnedNotification::Active => tracing::info!("joined the gossip group"),
                OwnedNotification::Idle => {
                    tracing::info!("no other member is alive; announcing to the seeds");
                    self.next_join = Some(now);
                }
                OwnedNotification::Defunct => tracing::debug!("gossip identity is down"),
            }
        }
    }

    /// Hands this node's set to foca for dissemination (piggybacked on the next probes and gossip), with
    /// a new version; schedules the next re-broadcast while the set is not empty.
    fn broadcast_unservable(&mut self, now: Instant) {
        let me = self.foca.identity();
        // Versions only grow within a generation: wall-clock ms, or one more than the last.
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        self.unservable_version = ms.max(self.unservable_version + 1);
        self.unservable_generation = me.generation;
        let u = Unservable {
            name: me.name.clone(),
            generation: me.generation,
            version: self.unservable_version,
            ips: self.unservable.iter().copied().collect(),
        };
        match postcard::to_allocvec(&u) {
            Ok(data) => {
                if let Err(e) = self.foca.add_broadcast(&data) {
                    tracing::warn!(error = %e, "cannot broadcast the unservable set");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode the unservable set"),
        }
        self.next_rebroadcast = (!self.unservable.is_empty()).then(|| now + UNSERVABLE_REBROADCAST);
    }

    /// Publishes the view if it changed. Suspicions notify nothing in foca, so the view is recomputed
    /// after every input and compared (a few dozen members: cheap).
    fn publish(&mut self, now: Instant, out: &mut Vec<Action>) {
        let view = self.project();
        if view != *self.view {
            // A member alive now that was not before (a join, a healed partition, this node back from
            // isolation): it has not heard this node's set, or heard it too long ago (what was broadcast
            // while it was cut off was used up on datagrams it never got). Tell it now, not at the next
            // periodic re-broadcast, or it may elect this node for an IP that this node passes over and
            // the IP stays unanswered until then.
            let newcomer = view.alive.iter().any(|n| !self.view.alive.contains(n));
            self.view = Arc::new(view);
            out.push(Action::View(self.view.clone()));
            if newcomer && !self.unservable.is_empty() {
                self.broadcast_unservable(now);
            }
        }
    }

    fn project(&self) -> View {
        let me = self.foca.identity();
        let mut by_name: BTreeMap<&str, Member> = BTreeMap::new();
        for m in self.foca.iter_membership_state() {
            let id = m.id();
            // Older identities of this very node (a restart on another address) are not members.
            if id.name == me.name || id.name.is_empty() {
                continue;
            }
            let state = match m.state() {
                State::Alive => MemberState::Alive,
                State::Suspect => MemberState::Suspect,
                State::Down => MemberState::Dead,
            };
            let member =
                Member { name: id.name.clone(), addr: id.addr, state, incarnation: id.generation, local: false };
            match by_name.entry(&id.name) {
                Entry::Vacant(v) => {
                    v.insert(member);
                }
                Entry::Occupied(mut o) => {
                    // The newest generation of a name is the node; on a tie prefer the livelier state.
                    let old = o.get();
                    if (member.incarnation, std::cmp::Reverse(member.state))
                        > (old.incarnation, std::cmp::Reverse(old.state))
                    {
                        o.insert(member);
                    }
                }
            }
        }
        let local = Member {
            name: me.name.clone(),
            addr: me.addr,
            state: MemberState::Alive,
            incarnation: me.generation,
            local: true,
        };
        let members: Vec<Member> = std::iter::once(local).chain(by_name.into_values()).collect();
        let alive: BTreeSet<String> =
            members.iter().filter(|m| m.state != MemberState::Dead).map(|m| m.name.clone()).collect();
        // What alive members say they cannot answer for, as of their current generation.
        let mut unservable: BTreeMap<String, BTreeSet<IpAddr>> = BTreeMap::new();
        if !self.unservable.is_empty() {
            unservable.insert(me.name.clone(), self.unservable.clone());
        }
        // Read under the lock (the view is projected after every input: no copy of the whole table).
        if let Ok(table) = self.table.0.lock() {
            for (name, u) in table.iter() {
                let current = members
                    .iter()
                    .any(|m| !m.local && &m.name == name && m.incarnation == u.generation && alive.contains(&m.name));
                if current && !u.ips.is_empty() {
                    unservable.insert(name.clone(), u.ips.iter().copied().collect());
                }
            }
        }
        View { alive, members, unservable }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, VecDeque};

    const P: Duration = Duration::from_millis(150);
    /// One-way latency of the simulated LAN.
    const LATENCY: Duration = Duration::from_millis(1);

    fn id(name: &str, port: u16, generation: u64) -> NodeId {
        NodeId { name: name.into(), addr: SocketAddr::from(([10, 0, 0, 1], port)), generation }
    }

    /// A group of cores wired by a lossless simulated network, in simulated time.
    struct Sim {
        now: Instant,
        start: Instant,
        nodes: Vec<Option<Swim>>,
        wire: VecDeque<(Instant, SocketAddr, Vec<u8>)>,
        dropped: Vec<(usize, PacketError)>,
        /// Nodes cut off the network: what they send and what is sent to them is lost.
        isolated: BTreeSet<usize>,
        /// A stalled node (taken out of `nodes`), until when, and what was sent to it meanwhile (it
        /// waits in its socket's buffer).
        stalled: Option<(usize, Swim, Instant, Vec<Vec<u8>>)>,
    }

    impl Sim {
        fn new() -> Self {
            let now = Instant::now();
            Self {
                now,
                start: now,
                nodes: Vec::new(),
                wire: VecDeque::new(),
                dropped: Vec::new(),
                isolated: BTreeSet::new(),
                stalled: None,
            }
        }

        /// Node `i` stops for `d` (a pause of the process: no timers, no reads); then it reads what
        /// arrived meanwhile and its late timers fire.
        fn stall(&mut self, i: usize, d: Duration) {
            let node = self.nodes[i].take().expect("node running");
            self.stalled = Some((i, node, self.now + d, Vec::new()));
        }

        fn add(&mut self, me: NodeId, secret: Option<&[u8]>, seeds: Vec<SocketAddr>, rng: u64) -> usize {
            let mut s = Swim::new(me, foca_config(P), secret.map(Envelope::new), rng);
            let i = self.nodes.len();
            let out = s.handle(Input::SetSeeds(seeds), self.now);
            self.nodes.push(Some(s));
            self.apply(i, out);
            i
        }

        fn apply(&mut self, i: usize, out: Vec<Action>) {
            for a in out {
                match a {
                    Action::Send { .. } if self.isolated.contains(&i) => {}
                    Action::Send { to, data } => self.wire.push_back((self.now + LATENCY, to, data)),
                    Action::Dropped(e) => self.dropped.push((i, e)),
                    Action::View(_) => {}
                }
            }
        }

        fn input(&mut self, i: usize, input: Input<'_>) {
            let now = self.now;
            let out = self.nodes[i].as_mut().map(|s| s.handle(input, now)).unwrap_or_default();
            self.apply(i, out);
        }

        /// Advances to the next event (a delivery or a deadline) and handles it.
        fn step(&mut self) {
            let wire = self.wire.front().map(|w| w.0);
            let resume = self.stalled.as_ref().map(|s| s.2);
            let timer = self.nodes.iter().flatten().filter_map(|s| s.next_deadline()).chain(resume).min();
            let next = match (wire, timer) {
                (Some(a), Some(b)) => a.min(b),
                (a, b) => a.or(b).expect("nothing left to happen"),
            };
            self.now = self.now.max(next);
            if wire == Some(next) {
                let (_, to, data) = self.wire.pop_front().unwrap();
                if let Some(i) = self.nodes.iter().position(|s| s.as_ref().is_some_and(|s| s.identity().addr == to)) {
                    if !self.isolated.contains(&i) {
                        self.input(i, Input::Datagram(&data));
                    }
                } else if let Some((_, node, _, held)) = &mut self.stalled {
                    if node.identity().addr == to {
                        held.push(data);
                    }
                }
            } else if resume.is_some_and(|t| t <= self.now) {
                let (i, node, _, held) = self.stalled.take().expect("checked");
                self.nodes[i] = Some(node);
                for d in held {
                    self.input(i, Input::Datagram(&d));
                }
                self.input(i, Input::Tick);
            } else {
                for i in 0..self.nodes.len() {
                    if self.nodes[i].as_ref().and_then(|s| s.next_deadline()).is_some_and(|t| t <= self.now) {
                        self.input(i, Input::Tick);
                    }
                }
            }
        }

        /// Runs until `f` holds (answers the simulated time it took from now) or `limit` passes.
        fn run_until(&mut self, limit: Duration, mut f: impl FnMut(&Sim) -> bool) -> Option<Duration> {
            let from = self.now;
            while !f(self) {
                if self.now - from > limit {
                    return None;
                }
                self.step();
            }
            Some(self.now - from)
        }

        fn run_for(&mut self, d: Duration) {
            let until = self.now + d;
            while self.now < until {
                self.step();
            }
        }

        fn view(&self, i: usize) -> Arc<View> {
            self.nodes[i].as_ref().expect("node running").view()
        }

        fn state_of(&self, i: usize, name: &str) -> Option<MemberState> {
            self.view(i).members.iter().find(|m| m.name == name).map(|m| m.state)
        }

        fn all_see(&self, who: &[usize], names: &[&str]) -> bool {
            let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
            who.iter().all(|&i| self.view(i).alive == want)
        }
    }

    fn three(sim: &mut Sim, rng: u64) -> [usize; 3] {
        let a = sim.add(id("a", 1, 1), None, vec![], rng);
        let seed = vec![sim.nodes[a].as_ref().unwrap().identity().addr];
        let b = sim.add(id("b", 2, 1), None, seed.clone(), rng + 1);
        let c = sim.add(id("c", 3, 1), None, seed, rng + 2);
        let t = sim.run_until(Duration::from_secs(3), |s| s.all_see(&[a, b, c], &["a", "b", "c"]));
        assert!(t.is_some(), "no full group: {:?} {:?} {:?}", sim.view(a), sim.view(b), sim.view(c));
        [a, b, c]
    }

    #[test]
    fn three_members_join_through_one_seed() {
        let mut sim = Sim::new();
        let [a, b, c] = three(&mut sim, 7);
        let t = sim.now - sim.start;
        assert!(t < Duration::from_millis(500), "joined after {t:?}");
        for i in [a, b, c] {
            assert_eq!(sim.view(i).members.len(), 3);
            assert!(sim.view(i).members[0].local);
        }
        // Steady state: nobody is suspected on a lossless network.
        sim.run_for(Duration::from_secs(5));
        assert!(sim.all_see(&[a, b, c], &["a", "b", "c"]));
        assert!(sim.dropped.is_empty(), "{:?}", sim.dropped);
    }

    /// Lets a new group settle (0.5 s), then moves to phase `phase` (of 13) of three probe periods.
    fn settle_then_phase(sim: &mut Sim, phase: u32) {
        sim.run_for(Duration::from_millis(500) + P * 3 * phase / 13);
    }

    #[test]
    fn crash_is_declared_down_by_every_survivor_within_a_second() {
        let mut times = Vec::new();
        for run in 0..200 {
            let mut sim = Sim::new();
            let [a, b, c] = three(&mut sim, 1000 * run);
            // Crash at any of the 13 phases, after the group settled.
            settle_then_phase(&mut sim, (run % 13) as u32);
            sim.nodes[c] = None;
            let t = sim.run_until(Duration::from_secs(5), |s| {
                [a, b].iter().all(|&i| s.state_of(i, "c") == Some(MemberState::Dead))
            });
            let t = t.unwrap_or_else(|| panic!("run {run}: c not Dead: {:?} {:?}", sim.view(a), sim.view(b)));
            assert!(sim.all_see(&[a, b], &["a", "b"]));
            times.push(t);
        }
        times.sort();
        let (min, median, max) = (times[0], times[times.len() / 2], times[times.len() - 1]);
        let p99 = times[times.len() * 99 / 100];
        eprintln!(
            "simulated crash detection by both survivors, p = {P:?}: min {min:?} median {median:?} p99 {p99:?} max {max:?}"
        );
        // About 3 periods typical, 5 at worst (see foca_config); under a second at the default.
        assert!(max <= P * 11 / 2 && max < Duration::from_secs(1), "slowest detection {max:?}");
        assert!(median <= P * 7 / 2, "median detection {median:?}");
    }

    /// How long a live member may stall (a paused process: no timers, no reads; what is sent to it
    /// waits) before it is declared Down: a stall of 2 periods never is, at any of 13 phases of the
    /// probe cycle; the shortest stall that ever is, found by 10 ms steps, is printed (LAYER2.md).
    #[test]
    fn a_stall_of_two_periods_is_survived_and_the_limit_is_about_two_and_a_half() {
        let run = |stall: Duration, phase: u32, seed: u64| -> bool {
            let mut sim = Sim::new();
            let [a, b, c] = three(&mut sim, seed);
            settle_then_phase(&mut sim, phase);
            sim.stall(c, stall);
            let mut down = false;
            let until = sim.now + stall + P * 10;
            while sim.now < until {
                sim.step();
                down |= [a, b].iter().any(|&i| sim.state_of(i, "c") == Some(MemberState::Dead));
            }
            assert!(sim.all_see(&[a, b], &["a", "b", "c"]), "c not back after a stall of {stall:?}");
            down
        };
        for phase in 0..13 {
            assert!(!run(P * 2, phase, 50 + u64::from(phase)), "a stall of 2 periods at phase {phase}/13 made c Down");
        }
        let limit = (0..100)
            .map(|k| P * 2 + Duration::from_millis(10 * k))
            .find(|&d| (0..13).any(|phase| run(d, phase, 50 + u64::from(phase))))
            .expect("some stall makes c Down");
        eprintln!("p = {P:?}: the shortest stall declared Down is {limit:?}");
        assert!(limit <= P * 3, "{limit:?}");
    }

    #[test]
    fn leave_is_seen_by_every_member_at_once() {
        // Six members: more than foca's leave fan-out (num_indirect_probes = 3) would reach directly.
        let mut sim = Sim::new();
        let names = ["a", "b", "c", "d", "e", "f"];
        let seed = id("a", 1, 1).addr;
        let all: Vec<usize> = names
            .iter()
            .zip(1u16..)
            .map(|(n, port)| {
                sim.add(id(n, port, 1), None, if port == 1 { vec![] } else { vec![seed] }, 80 + u64::from(port))
            })
            .collect();
        sim.run_until(Duration::from_secs(5), |s| s.all_see(&all, &names)).expect("no full group");
        sim.run_for(Duration::from_millis(300));
        let (leaver, rest) = all.split_last().unwrap();
        sim.input(*leaver, Input::Leave);
        assert_eq!(sim.nodes[*leaver].as_ref().unwrap().next_deadline(), None);
        let t = sim.run_until(Duration::from_secs(2), |s| s.all_see(rest, &names[..5])).expect("leave not seen");
        assert!(t <= 2 * LATENCY, "leave took {t:?}");
        assert!(rest.iter().all(|&i| sim.state_of(i, "f") == Some(MemberState::Dead)));
    }

    #[test]
    fn restart_on_the_same_address_is_taken_back_at_once() {
        let mut sim = Sim::new();
        let [a, b, c] = three(&mut sim, 21);
        let seed = sim.nodes[a].as_ref().unwrap().identity().addr;
        sim.nodes[c] = None;
        sim.run_until(Duration::from_secs(5), |s| {
            s.state_of(a, "c") == Some(MemberState::Dead) && s.state_of(b, "c") == Some(MemberState::Dead)
        })
        .unwrap();
        let c2 = sim.add(id("c", 3, 2), None, vec![seed], 99);
        let t = sim
            .run_until(Duration::from_secs(3), |s| s.all_see(&[a, b, c2], &["a", "b", "c"]))
            .expect("restarted c not back");
        assert!(t < Duration::from_millis(300), "took {t:?}");
        for i in [a, b] {
            let m = sim.view(i).members.iter().find(|m| m.name == "c").cloned().unwrap();
            assert_eq!((m.state, m.incarnation), (MemberState::Alive, 2));
        }
    }

    #[test]
    fn restart_after_the_clock_stepped_back_renews_and_is_taken_back_at_once() {
        let mut sim = Sim::new();
        let a = sim.add(id("a", 1, 1_000_000), None, vec![], 71);
        let seed = id("a", 1, 0).addr;
        let b = sim.add(id("b", 2, 1_000_000), None, vec![seed], 72);
        let c = sim.add(id("c", 3, 1_000_000), None, vec![seed], 73);
        sim.run_until(Duration::from_secs(3), |s| s.all_see(&[a, b, c], &["a", "b", "c"])).unwrap();
        // c restarts before anyone noticed, with a generation 10 s older than its old one.
        sim.nodes[c] = None;
        let c2 = sim.add(id("c", 3, 990_000), None, vec![seed], 74);
        let t = sim.run_until(Duration::from_secs(3), |s| {
            s.all_see(&[a, b, c2], &["a", "b", "c"])
                && [a, b].iter().all(|&i| s.view(i).members.iter().any(|m| m.name == "c" && m.incarnation > 1_000_000))
        });
        let t = t.unwrap_or_else(|| panic!("{:?} {:?} {:?}", sim.view(a), sim.view(b), sim.view(c2)));
        assert!(t < Duration::from_millis(300), "took {t:?}");
        assert_eq!(sim.nodes[c2].as_ref().unwrap().identity().generation, 990_000 + RENEW_STEP_MS);
        sim.run_for(Duration::from_secs(3));
        assert!(sim.all_see(&[a, b, c2], &["a", "b", "c"]), "{:?}", sim.view(a));
    }

    #[test]
    fn restart_before_detection_replaces_the_old_identity() {
        let mut sim = Sim::new();
        let [a, b, c] = three(&mut sim, 31);
        let seed = sim.nodes[a].as_ref().unwrap().identity().addr;
        sim.nodes[c] = None;
        let c2 = sim.add(id("c", 3, 2), None, vec![seed], 98);
        sim.run_until(Duration::from_secs(3), |s| s.all_see(&[a, b, c2], &["a", "b", "c"])).unwrap();
        // The old identity never comes back to haunt: c stays alive for many probe periods.
        sim.run_for(Duration::from_secs(3));
        assert!(sim.all_see(&[a, b, c2], &["a", "b", "c"]), "{:?}", sim.view(a));
        assert_eq!(sim.view(b).members.iter().find(|m| m.name == "c").unwrap().incarnation, 2);
    }

    #[test]
    fn restart_on_another_address_shows_one_member_per_name() {
        let mut sim = Sim::new();
        let [a, b, c] = three(&mut sim, 41);
        let seed = sim.nodes[a].as_ref().unwrap().identity().addr;
        sim.nodes[c] = None;
        let c2 = sim.add(id("c", 33, 2), None, vec![seed], 97);
        sim.run_until(Duration::from_secs(3), |s| s.all_see(&[a, b, c2], &["a", "b", "c"])).unwrap();
        // The old address is declared Down underneath; the view still shows c once, alive.
        sim.run_for(Duration::from_secs(3));
        for i in [a, b] {
            let v = sim.view(i);
            let cs: Vec<_> = v.members.iter().filter(|m| m.name == "c").collect();
            assert_eq!(cs.len(), 1, "{v:?}");
            assert_eq!((cs[0].state, cs[0].addr.port(), cs[0].incarnation), (MemberState::Alive, 33, 2));
        }
        assert!(sim.all_see(&[a, b, c2], &["a", "b", "c"]));
    }

    #[test]
    fn member_cut_off_and_back_renews_and_rejoins() {
        let mut sim = Sim::new();
        let [a, b, c] = three(&mut sim, 51);
        // Partition c away (its timers stop too, as in a long pause), until both others call it Dead.
        let parked = sim.nodes[c].take();
        sim.run_until(Duration::from_secs(5), |s| {
            s.state_of(a, "c") == Some(MemberState::Dead) && s.state_of(b, "c") == Some(MemberState::Dead)
        })
        .unwrap();
        sim.nodes[c] = parked;
        // c learns it was declared Down (its probes are answered with TurnUndead, a and b announce to
        // Down members), renews its generation and is alive again everywhere.
        let t = sim
            .run_until(Duration::from_secs(10), |s| s.all_see(&[a, b, c], &["a", "b", "c"]))
            .expect("c never rejoined");
        eprintln!("partitioned member back after {t:?}");
        assert!(sim.view(a).members.iter().find(|m| m.name == "c").unwrap().incarnation > 1);
    }

    #[test]
    fn partition_of_two_heals_through_the_seed() {
        let mut sim = Sim::new();
        let a = sim.add(id("a", 1, 1), None, vec![], 1);
        let b = sim.add(id("b", 2, 1), None, vec![id("a", 1, 1).addr], 2);
        sim.run_until(Duration::from_secs(2), |s| s.all_see(&[a, b], &["a", "b"])).unwrap();
        sim.isolated.insert(b);
        sim.run_until(Duration::from_secs(5), |s| {
            s.state_of(a, "b") == Some(MemberState::Dead) && s.state_of(b, "a") == Some(MemberState::Dead)
        })
        .unwrap();
        sim.run_for(Duration::from_millis(1234));
        sim.isolated.clear();
        // Both are alone, only b has a seed. b's next retry is told it is Down (TurnUndead); it renews
        // and announces again at once as the new generation.
        let t =
            sim.run_until(Duration::from_secs(5), |s| s.all_see(&[a, b], &["a", "b"])).expect("partition never healed");
        eprintln!("partition healed after {t:?}");
        assert!(t <= JOIN_RETRY_ALONE + Duration::from_millis(50), "healed after {t:?}");
        assert!(sim.view(a).members.iter().any(|m| m.name == "b" && m.incarnation == 1 + RENEW_STEP_MS));
    }

    /// Two members, each the other's seed: the crash of one is detected by the other as fast in a pair
    /// as in a group (no indirect probes to wait for), and as fast after a partition has healed as
    /// before it (a renewed identity must not leave stale state that slows the next detection).
    #[test]
    fn pair_crash_detection_before_and_after_a_healed_partition() {
        let mut fresh = Vec::new();
        let mut healed = Vec::new();
        for run in 0..30u64 {
            for after_partition in [false, true] {
                let mut sim = Sim::new();
                let (ia, ib) = (id("a", 1, 1), id("b", 2, 1));
                let a = sim.add(ia.clone(), None, vec![ib.addr], 10 * run);
                let b = sim.add(ib, None, vec![ia.addr], 10 * run + 1);
                sim.run_until(Duration::from_secs(3), |s| s.all_see(&[a, b], &["a", "b"])).unwrap();
                if after_partition {
                    sim.isolated.insert(a);
                    sim.run_until(Duration::from_secs(5), |s| {
                        s.state_of(a, "b") == Some(MemberState::Dead) && s.state_of(b, "a") == Some(MemberState::Dead)
                    })
                    .unwrap();
                    sim.run_for(Duration::from_millis(500));
                    sim.isolated.clear();
                    sim.run_until(Duration::from_secs(5), |s| s.all_see(&[a, b], &["a", "b"])).expect("no rejoin");
                }
                sim.run_for(Duration::from_millis(500 + 37 * (run % 11)));
                sim.nodes[b] = None;
                let t = sim
                    .run_until(Duration::from_secs(5), |s| s.state_of(a, "b") == Some(MemberState::Dead))
                    .unwrap_or_else(|| panic!("run {run}: b not Dead: {:?}", sim.view(a)));
                if after_partition {
                    healed.push(t)
                } else {
                    fresh.push(t)
                }
            }
        }
        for (what, v) in [("fresh pair", &mut fresh), ("after a healed partition", &mut healed)] {
            v.sort();
            eprintln!(
                "pair crash detection, {what}: min {:?} median {:?} max {:?}",
                v[0],
                v[v.len() / 2],
                v[v.len() - 1]
            );
            assert!(v[v.len() - 1] <= Duration::from_millis(800), "{what}: slowest {:?}", v[v.len() - 1]);
        }
    }

    /// A node that gives an IP up while cut off (its link is down) tells the others as soon as it is
    /// back, not at the next periodic re-broadcast: until they know, they elect it for the IP while it
    /// passes itself over, and nobody answers.
    #[test]
    fn a_set_changed_while_cut_off_reaches_the_others_as_soon_as_they_meet_again() {
        for run in 0..10u64 {
            let mut sim = Sim::new();
            let [a, b, c] = three(&mut sim, 100 + 7 * run);
            sim.isolated.insert(c);
            sim.run_until(Duration::from_secs(5), |s| {
                s.state_of(a, "c") == Some(MemberState::Dead) && s.state_of(c, "a") == Some(MemberState::Dead)
            })
            .unwrap();
            let ip: IpAddr = "192.0.2.203".parse().unwrap();
            sim.input(c, Input::SetUnservable([ip].into()));
            sim.run_for(Duration::from_millis(300 + 100 * run));
            sim.isolated.clear();
            let knows = |s: &Sim| {
                [a, b].iter().all(|&i| {
                    s.view(i).alive.contains("c") && s.view(i).unservable.get("c").is_some_and(|u| u.contains(&ip))
                })
            };
            let t = sim.run_until(Duration::from_secs(10), knows).expect("set never arrived");
            // Back in the group within a seed retry (1 s); the set with it, long before a re-broadcast.
            let back = sim.run_until(Duration::ZERO, |s| s.all_see(&[a, b, c], &["a", "b", "c"]));
            assert!(back.is_some());
            assert!(t < JOIN_RETRY_ALONE + Duration::from_millis(500), "run {run}: the set arrived after {t:?}");
        }
    }

    /// The same for a cut too short for anyone to be declared down: no renewal, no new member, only the
    /// periodic re-broadcast (every second) brings the set.
    #[test]
    fn a_set_changed_during_a_short_cut_arrives_within_a_rebroadcast() {
        for run in 0..10u64 {
            let mut sim = Sim::new();
            let [a, b, c] = three(&mut sim, 300 + 7 * run);
            sim.run_for(Duration::from_millis(37 * run));
            sim.isolated.insert(c);
            let ip: IpAddr = "192.0.2.203".parse().unwrap();
            sim.input(c, Input::SetUnservable([ip].into()));
            sim.run_for(Duration::from_millis(250));
            sim.isolated.clear();
            let t = sim
                .run_until(Duration::from_secs(10), |s| {
                    [a, b].iter().all(|&i| s.view(i).unservable.get("c").is_some_and(|u| u.contains(&ip)))
                })
                .expect("set never arrived");
            assert!(t <= Duration::from_millis(1300), "run {run}: the set arrived after {t:?}");
        }
    }

    #[test]
    fn member_left_alone_announces_to_its_seeds_at_once() {
        let mut sim = Sim::new();
        let a = sim.add(id("a", 1, 1), None, vec![], 1);
        let b = sim.add(id("b", 2, 1), None, vec![id("a", 1, 1).addr], 2);
        sim.run_until(Duration::from_secs(2), |s| s.all_see(&[a, b], &["a", "b"])).unwrap();
        // Long after joining (b's next seed retry is 30 s away), a crashes and restarts without seeds.
        sim.run_for(Duration::from_secs(5));
        sim.nodes[a] = None;
        sim.run_until(Duration::from_secs(5), |s| s.state_of(b, "a") == Some(MemberState::Dead)).unwrap();
        let a2 = sim.add(id("a", 1, 2), None, vec![], 3);
        let t = sim.run_until(Duration::from_secs(5), |s| s.all_see(&[a2, b], &["a", "b"])).expect("never rejoined");
        assert!(t <= JOIN_RETRY_ALONE + Duration::from_millis(50), "rejoined after {t:?}");
    }

    #[test]
    fn view_shows_each_name_once_newest_generation_and_never_an_old_self() {
        let down = |name: &str, port, generation| foca::Member::new(id(name, port, generation), 0, State::Down);
        let alive = |name: &str, port, generation| foca::Member::new(id(name, port, generation), 0, State::Alive);
        let updates = [down("c", 3, 1), alive("c", 33, 2), down("me", 9, 0), alive("d", 4, 5)];
        for order in [[0, 1, 2, 3], [1, 0, 3, 2], [3, 2, 1, 0]] {
            let mut s = Swim::new(id("me", 1, 7), foca_config(P), None, 1);
            let ups = order.iter().map(|&i| updates[i].clone());
            s.foca.apply_many(ups, false, &mut s.rt).unwrap();
            let v = s.project();
            let got: Vec<_> =
                v.members.iter().map(|m| (m.name.as_str(), m.addr.port(), m.state, m.incarnation, m.local)).collect();
            assert_eq!(
                got,
                [
                    ("me", 1, MemberState::Alive, 7, true),
                    ("c", 33, MemberState::Alive, 2, false),
                    ("d", 4, MemberState::Alive, 5, false)
                ],
                "order {order:?}"
            );
            assert_eq!(v.alive, ["c", "d", "me"].iter().map(|s| s.to_string()).collect());
        }
    }

    #[test]
    fn lone_member_keeps_announcing_to_its_seeds() {
        let mut sim = Sim::new();
        // b starts first, its seed a is not up yet.
        let b = sim.add(id("b", 2, 1), None, vec![SocketAddr::from(([10, 0, 0, 1], 1))], 1);
        sim.run_for(Duration::from_millis(2500));
        let a = sim.add(id("a", 1, 1), None, vec![], 2);
        let t = sim.run_until(Duration::from_secs(3), |s| s.all_see(&[a, b], &["a", "b"])).expect("b never joined");
        assert!(t <= JOIN_RETRY_ALONE + Duration::from_millis(50), "{t:?}");
    }

    #[test]
    fn announce_to_a_seed_address_that_is_not_advertised_is_accepted() {
        let mut sim = Sim::new();
        let a = sim.add(id("a", 1, 1), None, vec![], 1);
        // b knows a by another address (say a service IP) that the simulated wire maps to a.
        let b = sim.add(id("b", 2, 1), None, vec![SocketAddr::from(([192, 0, 2, 1], 1))], 2);
        for w in sim.wire.iter_mut() {
            w.1 = SocketAddr::from(([10, 0, 0, 1], 1));
        }
        let t = sim.run_until(Duration::from_secs(1), |s| s.all_see(&[a, b], &["a", "b"]));
        assert!(t.is_some(), "{:?} {:?}", sim.view(a), sim.view(b));
    }

    #[test]
    fn members_with_the_same_secret_join_and_others_are_dropped_as_bad_auth() {
        let mut sim = Sim::new();
        let seed = id("a", 1, 1).addr;
        let a = sim.add(id("a", 1, 1), Some(b"k1"), vec![], 1);
        let b = sim.add(id("b", 2, 1), Some(b"k1"), vec![seed], 2);
        let x = sim.add(id("x", 3, 1), Some(b"k2"), vec![seed], 3);
        let y = sim.add(id("y", 4, 1), None, vec![seed], 4);
        sim.run_for(Duration::from_secs(3));
        assert!(sim.all_see(&[a, b], &["a", "b"]), "{:?}", sim.view(a));
        assert!(sim.all_see(&[x], &["x"]) && sim.all_see(&[y], &["y"]));
        assert!(
            sim.dropped.iter().filter(|(i, e)| *i == a && *e == PacketError::BadAuth).count() >= 4,
            "{:?}",
            sim.dropped
        );
    }

    /// Random bytes and single-bit flips of real datagrams: never a panic, each dropped or accepted.
    #[test]
    fn garbage_and_mutated_datagrams_never_panic() {
        use rand::RngExt;
        let mut sim = Sim::new();
        let [a, _, _] = three(&mut sim, 61);
        // Capture real datagrams to mutate.
        let mut real: Vec<Vec<u8>> = Vec::new();
        for _ in 0..200 {
            if let Some(w) = sim.wire.front() {
                real.push(w.2.clone());
            }
            sim.step();
        }
        assert!(real.len() > 20);
        let mut rng = StdRng::seed_from_u64(5);
        let mut victim = Swim::new(id("a", 1, 1), foca_config(P), None, 9);
        let now = sim.now;
        let mut dropped = 0;
        for i in 0..20_000 {
            let data: Vec<u8> = if i % 2 == 0 {
                let n = rng.random_range(0..1500usize);
                (0..n).map(|_| rng.random()).collect()
            } else {
                let mut d = real[rng.random_range(0..real.len())].clone();
                match rng.random_range(0..3u8) {
                    0 if !d.is_empty() => {
                        let at = rng.random_range(0..d.len());
                        d[at] ^= 1 << rng.random_range(0..8u8);
                    }
                    1 => d.truncate(rng.random_range(0..=d.len())),
                    _ => d.extend((0..rng.random_range(1..8usize)).map(|_| rng.random::<u8>())),
                }
                d
            };
            let out = victim.handle(Input::Datagram(&data), now);
            dropped += out.iter().filter(|a| matches!(a, Action::Dropped(_))).count();
        }
        assert!(dropped > 10_000, "only {dropped} of 20000 dropped");
        let out = sim.nodes[a].as_mut().unwrap().handle(Input::Datagram(&[0xff; 2000]), now);
        assert_eq!(out, vec![Action::Dropped(PacketError::TooBig(2000))]);
        let out = sim.nodes[a].as_mut().unwrap().handle(Input::Datagram(&[]), now);
        assert_eq!(out, vec![Action::Dropped(PacketError::Malformed)]);
    }

    #[test]
    fn identity_conflicts_go_to_the_newer_generation() {
        let old = id("c", 3, 5);
        let new = old.renew().unwrap();
        assert_eq!(new.generation, 5 + RENEW_STEP_MS);
        assert!(new.win_addr_conflict(&old) && !old.win_addr_conflict(&new));
        let (x, y) = (id("x", 3, 5), id("y", 3, 5));
        assert!(x.win_addr_conflict(&y) != y.win_addr_conflict(&x), "ties must have one winner");
        assert_eq!(id("c", 3, u64::MAX).renew(), None);
    }

    #[test]
    fn foca_config_is_valid_for_small_and_large_periods() {
        for p in [Duration::from_millis(10), P, Duration::from_secs(5)] {
            let c = foca_config(p);
            assert!(c.probe_rtt < c.probe_period && !c.probe_rtt.is_zero(), "{c:?}");
            assert!(c.suspect_to_down_after > c.probe_period);
        }
    }
}
