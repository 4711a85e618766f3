//! The RFC 4271 §8 session state machine of one peer, sans IO: `handle(Input) -> Vec<Action>`.
//!
//! No tokio, no sockets, no clock. Timers are named in [`Timer`]; the driver arms them and feeds their
//! expiry back as [`Input::Expired`]. Randomness (connect jitter) comes from a seeded generator in the
//! value, so a test replays exactly.
//!
//! A peer may have two TCP connections at once (ours and theirs) until the collision is resolved
//! (RFC 4271 §6.8); each is a [`ConnId`] with its own phase, and the session state is derived from them.
use super::wire::{iana::err, Capability, Family, GrFamily, Message, Notification, Open, WireError};
use std::net::Ipv4Addr;
use std::time::Duration;

/// The driver's name for one TCP connection.
pub type ConnId = u64;

/// Who opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Outgoing,
    Incoming,
}

/// RFC 4271 §8.2.2 session states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "Idle",
            Self::Connect => "Connect",
            Self::Active => "Active",
            Self::OpenSent => "OpenSent",
            Self::OpenConfirm => "OpenConfirm",
            Self::Established => "Established",
        }
    }
}

/// Timers the FSM asks the driver to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// ConnectRetryTimer: when it fires, try to connect again.
    ConnectRetry,
    /// HoldTimer of one connection.
    Hold(ConnId),
    /// KeepaliveTimer of one connection.
    Keepalive(ConnId),
}

/// Graceful restart settings (RFC 4724).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrConfig {
    /// Restart Time we advertise, seconds (≤ 4095).
    pub restart_time: u16,
    /// Set the Restart State bit: this speaker has restarted and the peer should wait for our End-of-RIB.
    pub restarting: bool,
}

/// Which AS the peer's OPEN must carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAs {
    /// This AS number.
    Fixed(u32),
    /// Whatever the peer's OPEN says, as long as it is our own AS (MetalLB's `dynamicASN: internal`).
    Internal,
    /// Whatever the peer's OPEN says, as long as it is not our own AS (`dynamicASN: external`).
    External,
}

impl PeerAs {
    /// Does an OPEN from AS `asn` match, when our AS is `local_asn`?
    pub fn accepts(self, asn: u32, local_asn: u32) -> bool {
        match self {
            PeerAs::Fixed(a) => asn == a,
            PeerAs::Internal => asn == local_asn,
            PeerAs::External => asn != local_asn,
        }
    }

    /// Is the session iBGP? Known before the OPEN in every case.
    pub fn ibgp(self, local_asn: u32) -> bool {
        match self {
            PeerAs::Fixed(a) => a == local_asn,
            PeerAs::Internal => true,
            PeerAs::External => false,
        }
    }
}

/// What the FSM needs to know about the peer's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmConfig {
    pub local_asn: u32,
    pub peer_as: PeerAs,
    pub router_id: Ipv4Addr,
    /// Hold time we offer: 0 or ≥ 3 (validated by the caller).
    pub hold_time: u16,
    /// Configured keepalive interval; `None` = a third of the negotiated hold time.
    pub keepalive: Option<u16>,
    /// Base delay between connection attempts.
    pub connect_retry: Duration,
    /// Never connect; wait for the peer.
    pub passive: bool,
    pub families: Vec<Family>,
    pub graceful_restart: Option<GrConfig>,
    /// Advertise RFC 8950 Extended Next Hop for IPv4 unicast over IPv6 next hops.
    pub extended_next_hop: bool,
}

/// The outcome of OPEN negotiation, handed to the driver when the session is Established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    pub conn: ConnId,
    pub dir: Dir,
    pub hold_time: u16,
    pub keepalive: u16,
    /// Families both sides announced.
    pub families: Vec<Family>,
    pub four_octet_as: bool,
    pub route_refresh: bool,
    /// Both sides announced Graceful Restart.
    pub graceful_restart: bool,
    /// The peer may receive IPv4 unicast NLRI with an IPv6 next hop (both sides announced it, RFC 8950).
    pub extended_next_hop_v4: bool,
    pub peer_router_id: Ipv4Addr,
    pub peer_asn: u32,
    pub ibgp: bool,
    /// The peer's OPEN, for display.
    pub peer_open: Open,
}

/// Why a session left Established, or a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    HoldTimerExpired,
    NotificationReceived(Notification),
    NotificationSent(Notification),
    /// The TCP connection closed or failed.
    ConnectionClosed,
    /// Stopped by the operator (or deleted), with the NOTIFICATION sent if any.
    AdminStop(Option<Notification>),
    /// A new connection of a graceful-restarting peer replaced the old session (RFC 4724 §4.2).
    PeerRestarted,
    /// Our connection attempt failed (the driver has the OS's error text).
    ConnectFailed(ConnectFailure),
}

impl std::fmt::Display for DownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::HoldTimerExpired => f.write_str("hold timer expired"),
            Self::NotificationReceived(n) => write!(f, "notification received: {n}"),
            Self::NotificationSent(n) => write!(f, "notification sent: {n}"),
            Self::ConnectionClosed => f.write_str("connection closed by peer or network"),
            Self::AdminStop(Some(n)) => write!(f, "stopped: {n}"),
            Self::AdminStop(None) => f.write_str("stopped without notification (graceful restart)"),
            Self::PeerRestarted => f.write_str("peer restarted (graceful restart)"),
            Self::ConnectFailed(ConnectFailure::Refused) => f.write_str("connection refused by the peer's host"),
            Self::ConnectFailed(ConnectFailure::Other) => f.write_str("connection attempt failed"),
        }
    }
}

/// How a connection attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    /// The peer's host answered the SYN with a reset: it is up, but nothing listens on the port yet
    /// (its BGP daemon is starting or restarting; BIRD closes its listening socket for a moment
    /// between two sessions). Retried soon, see [`REFUSED_RETRY`].
    Refused,
    /// Anything else: a timeout, an unreachable network, a local error.
    Other,
}

/// Inputs from the driver.
// An input is built once and moved into `handle`; boxing the message would add an allocation per
// received message on the hot path for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// ManualStart (RFC 4271 §8.1.2 event 1, or event 4 if passive).
    Start,
    /// ManualStop: send this NOTIFICATION on every open connection (none: close silently) and go Idle.
    Stop(Option<Notification>),
    /// A TCP connection is up (event 16/17).
    Connected(ConnId, Dir),
    /// Our connection attempt failed (event 18), and how.
    ConnectFailed(ConnectFailure),
    /// A connection closed or failed.
    Closed(ConnId),
    /// A whole message arrived on a connection.
    Msg(ConnId, Message),
    /// Bytes on a connection did not decode; the error carries its NOTIFICATION.
    Bad(ConnId, WireError),
    Expired(Timer),
}

/// What the driver must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer.
    Connect,
    /// Abandon a connection attempt in progress.
    AbortConnect,
    /// Queue a message on a connection (control messages go ahead of UPDATEs).
    Send(ConnId, Message),
    /// Close a connection after what is queued on it has been written.
    Close(ConnId),
    Arm(Timer, Duration),
    Disarm(Timer),
    /// The session is Established.
    Up(Negotiated),
    /// The session left Established.
    Down(DownReason),
    /// A message for the session layer (UPDATE, ROUTE-REFRESH) arrived in Established.
    Deliver(Message),
    /// A connection that never reached Established failed, and why (for "last error").
    Failed(DownReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Debug, Clone)]
struct Conn {
    id: ConnId,
    dir: Dir,
    phase: Phase,
    peer_open: Option<Open>,
}

/// RFC 4271 §8: "HoldTimer to a large value ... 4 minutes" while waiting for the peer's OPEN.
pub const OPEN_HOLD: Duration = Duration::from_secs(240);
/// Upper bound of the connect backoff.
pub const MAX_BACKOFF: Duration = Duration::from_secs(120);
/// The retry delay after a first refused attempt, doubled per consecutive refusal and used while it is
/// shorter than the usual backoff. A refusal costs the peer one SYN and one RST, and it is what a
/// restarting peer, or a peer still closing our previous session, answers: waiting the whole connect
/// time (5 s by default) after it is what kept routes away for 4–5 s after a restart of speakerd.
pub const REFUSED_RETRY: Duration = Duration::from_millis(100);

/// The state machine of one peer.
#[derive(Debug, Clone)]
pub struct Fsm {
    cfg: FsmConfig,
    started: bool,
    connecting: bool,
    conns: Vec<Conn>,
    /// Failed attempts since the last Established, for the backoff.
    failures: u32,
    /// Consecutive attempts refused by the peer's host, for the shorter backoff.
    refused: u32,
    rng: u64,
}

impl Fsm {
    /// `seed` drives the jitter of the connect backoff; any value works (0 is replaced).
    pub fn new(cfg: FsmConfig, seed: u64) -> Self {
        Self { cfg, started: false, connecting: false, conns: Vec::new(), failures: 0, refused: 0, rng: seed | 1 }
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// Replaces settings that need no reset (keepalive, connect retry). The caller resets for the rest.
    pub fn tune(&mut self, keepalive: Option<u16>, connect_retry: Duration) {
        self.cfg.keepalive = keepalive;
        self.cfg.connect_retry = connect_retry;
    }

    /// Sets or clears the Restart State bit for OPENs sent from now on.
    pub fn set_restarting(&mut self, restarting: bool) {
        if let Some(gr) = &mut self.cfg.graceful_restart {
            gr.restarting = restarting;
        }
    }

    /// The session state, derived from the connections (RFC 4271 §8.2.2 names).
    pub fn state(&self) -> State {
        let best = self.conns.iter().map(|c| c.phase).max_by_key(|p| match p {
            Phase::OpenSent => 0,
            Phase::OpenConfirm => 1,
            Phase::Established => 2,
        });
        match best {
            Some(Phase::Established) => State::Established,
            Some(Phase::OpenConfirm) => State::OpenConfirm,
            Some(Phase::OpenSent) => State::OpenSent,
            None if self.connecting => State::Connect,
            None if self.started => State::Active,
            None => State::Idle,
        }
    }

    /// The connection of the Established session, if any.
    pub fn established_conn(&self) -> Option<ConnId> {
        self.conns.iter().find(|c| c.phase == Phase::Established).map(|c| c.id)
    }

    /// The OPEN we send.
    pub fn our_open(&self) -> Open {
        let c = &self.cfg;
        let mut caps: Vec<Capability> = c.families.iter().map(|f| Capability::Multiprotocol(*f)).collect();
        caps.push(Capability::RouteRefresh);
        if c.extended_next_hop && c.families.contains(&Family::IPV4_UNICAST) {
            caps.push(Capability::ExtendedNextHop(vec![(Family::IPV4_UNICAST, super::wire::iana::afi::IPV6)]));
        }
        if let Some(gr) = c.graceful_restart {
            caps.push(Capability::GracefulRestart {
                restart_state: gr.restarting,
                notification: false,
                restart_time: gr.restart_time.min(4095),
                // Forwarding is done by the node, which survives a restart of speakerd (RFC 4724 §3 F bit).
                families: c.families.iter().map(|f| GrFamily { family: *f, forwarding_preserved: true }).collect(),
            });
        }
        caps.push(Capability::FourOctetAs(c.local_asn));
        Open::new(c.local_asn, c.hold_time, c.router_id, caps)
    }

    /// Handles one input. Every (state, input) pair has a defined result.
    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Start => self.start(&mut out),
            Input::Stop(n) => self.stop(n, &mut out),
            Input::Connected(id, dir) => self.connected(id, dir, &mut out),
            Input::ConnectFailed(how) => {
                if self.connecting {
                    self.connecting = false;
                    self.failures = self.failures.saturating_add(1);
                    self.refused = match how {
                        ConnectFailure::Refused => self.refused.saturating_add(1),
                        ConnectFailure::Other => 0,
                    };
                    out.push(Action::Failed(DownReason::ConnectFailed(how)));
                    self.schedule_retry(&mut out);
                }
            }
            Input::Closed(id) => {
                if let Some(c) = self.remove(id, &mut out) {
                    let reason = DownReason::ConnectionClosed;
                    self.lost(c, reason, &mut out);
                }
            }
            Input::Msg(id, m) => self.message(id, m, &mut out),
            Input::Bad(id, e) => {
                let n = e.notification();
                self.fail(id, Some(n.clone()), DownReason::NotificationSent(n), &mut out);
            }
            Input::Expired(t) => self.expired(t, &mut out),
        }
        out
    }

    fn start(&mut self, out: &mut Vec<Action>) {
        if self.started {
            return;
        }
        self.started = true;
        self.failures = 0;
        self.refused = 0;
        if !self.cfg.passive {
            // The first attempt is made at once.
            self.connecting = true;
            out.push(Action::Connect);
        }
    }

    fn stop(&mut self, n: Option<Notification>, out: &mut Vec<Action>) {
        let was_up = self.established_conn().is_some();
        for c in std::mem::take(&mut self.conns) {
            if let Some(n) = &n {
                out.push(Action::Send(c.id, n.clone().into()));
            }
            self.disarm_conn(c.id, out);
            out.push(Action::Close(c.id));
        }
        if self.connecting {
            self.connecting = false;
            out.push(Action::AbortConnect);
        }
        out.push(Action::Disarm(Timer::ConnectRetry));
        self.started = false;
        if was_up {
            out.push(Action::Down(DownReason::AdminStop(n)));
        }
    }

    fn connected(&mut self, id: ConnId, dir: Dir, out: &mut Vec<Action>) {
        if dir == Dir::Outgoing {
            self.connecting = false;
        }
        if !self.started {
            out.push(Action::Send(id, Notification::cease(err::cease::CONNECTION_REJECTED).into()));
            out.push(Action::Close(id));
            return;
        }
        let established = self.conns.iter().find(|c| c.phase == Phase::Established);
        let gr_up = established.is_some_and(|c| {
            self.cfg.graceful_restart.is_some() && c.peer_open.as_ref().is_some_and(|o| o.graceful_restart().is_some())
        });
        // RFC 4271 §6.8: a new connection while Established is closed, unless the peer does graceful
        // restart: then it is the restarted peer coming back (RFC 4724 §4.2) and the new one proceeds.
        if (established.is_some() && !gr_up) || self.conns.len() >= 2 {
            out.push(Action::Send(id, Notification::cease(err::cease::CONNECTION_COLLISION_RESOLUTION).into()));
            out.push(Action::Close(id));
            return;
        }
        self.conns.push(Conn { id, dir, phase: Phase::OpenSent, peer_open: None });
        out.push(Action::Disarm(Timer::ConnectRetry));
        out.push(Action::Send(id, Message::Open(self.our_open())));
        out.push(Action::Arm(Timer::Hold(id), OPEN_HOLD));
    }

    fn message(&mut self, id: ConnId, m: Message, out: &mut Vec<Action>) {
        let Some(phase) = self.conns.iter().find(|c| c.id == id).map(|c| c.phase) else {
            return; // a message on a connection we already dropped
        };
        match (phase, m) {
            (_, Message::Notification(n)) => {
                // RFC 4271 §6.4: close the connection; no NOTIFICATION in reply.
                if let Some(c) = self.remove(id, out) {
                    self.lost(c, DownReason::NotificationReceived(n), out);
                }
            }
            (Phase::OpenSent, Message::Open(o)) => self.open_received(id, o, out),
            (Phase::OpenConfirm, Message::Keepalive) => self.establish(id, out),
            (Phase::Established, Message::Keepalive) => self.restart_hold(id, out),
            (Phase::Established, m @ (Message::Update(_) | Message::RouteRefresh(_))) => {
                self.restart_hold(id, out);
                out.push(Action::Deliver(m));
            }
            // RFC 6608: any other message is an FSM error, with the state it arrived in as subcode.
            (p, _) => {
                let sub = match p {
                    Phase::OpenSent => err::fsm::OPEN_SENT,
                    Phase::OpenConfirm => err::fsm::OPEN_CONFIRM,
                    Phase::Established => err::fsm::ESTABLISHED,
                };
                let n = Notification::fsm_error(sub);
                self.fail(id, Some(n.clone()), DownReason::NotificationSent(n), out);
            }
        }
    }

    /// RFC 4271 §6.2 checks, then OpenConfirm, then collision detection (§6.8).
    fn open_received(&mut self, id: ConnId, o: Open, out: &mut Vec<Action>) {
        if let Err(e) = self.check_open(&o) {
            let n = e.notification();
            self.fail(id, Some(n.clone()), DownReason::NotificationSent(n), out);
            return;
        }
        let hold = self.cfg.hold_time.min(o.hold_time);
        let peer_id = o.router_id;
        if let Some(c) = self.conns.iter_mut().find(|c| c.id == id) {
            c.phase = Phase::OpenConfirm;
            c.peer_open = Some(o);
        }
        out.push(Action::Send(id, Message::Keepalive));
        self.arm_session_timers(id, hold, out);

        // Collision: another connection that has also exchanged OPENs (or is Established with a peer
        // that is not restarting gracefully; that case was closed on connect).
        let other = self.conns.iter().find(|c| c.id != id).map(|c| (c.id, c.dir, c.phase));
        if let Some((other_id, other_dir, other_phase)) = other {
            if other_phase == Phase::Established {
                // The graceful-restart case: the new connection replaces the old session.
                if let Some(c) = self.remove(other_id, out) {
                    out.push(Action::Close(c.id));
                    out.push(Action::Down(DownReason::PeerRestarted));
                }
                return;
            }
            if other_phase == Phase::OpenConfirm {
                // RFC 4271 §6.8: if our BGP Identifier is lower, close the connection we initiated;
                // otherwise close the one the peer initiated.
                let ours_lower = u32::from(self.cfg.router_id) < u32::from(peer_id);
                let this_dir = self.conns.iter().find(|c| c.id == id).map(|c| c.dir).unwrap_or(Dir::Incoming);
                let close_dir = if ours_lower { Dir::Outgoing } else { Dir::Incoming };
                let victim = if this_dir == close_dir { id } else { other_id };
                let _ = other_dir;
                let n = Notification::cease(err::cease::CONNECTION_COLLISION_RESOLUTION);
                if let Some(c) = self.remove(victim, out) {
                    out.push(Action::Send(c.id, n.into()));
                    out.push(Action::Close(c.id));
                }
            }
        }
    }

    fn check_open(&self, o: &Open) -> Result<(), WireError> {
        // Version was checked by the decoder.
        let asn = o.asn();
        if !self.cfg.peer_as.accepts(asn, self.cfg.local_asn) {
            return Err(WireError::BadPeerAs(asn));
        }
        if o.hold_time == 1 || o.hold_time == 2 {
            return Err(WireError::UnacceptableHoldTime(o.hold_time));
        }
        // RFC 6286 §2.2: the BGP Identifier is a non-zero 4-octet value; on iBGP it must differ from ours.
        let ibgp = self.cfg.peer_as.ibgp(self.cfg.local_asn);
        if o.router_id.is_unspecified() || (ibgp && o.router_id == self.cfg.router_id) {
            return Err(WireError::BadBgpIdentifier(o.router_id));
        }
        Ok(())
    }

    fn keepalive_for(&self, hold: u16) -> u16 {
        let third = hold / 3;
        self.cfg.keepalive.map_or(third, |k| k.min(third)).max(1)
    }

    fn arm_session_timers(&self, id: ConnId, hold: u16, out: &mut Vec<Action>) {
        if hold == 0 {
            out.push(Action::Disarm(Timer::Hold(id)));
            out.push(Action::Disarm(Timer::Keepalive(id)));
        } else {
            out.push(Action::Arm(Timer::Hold(id), Duration::from_secs(u64::from(hold))));
            let ka = self.keepalive_for(hold);
            out.push(Action::Arm(Timer::Keepalive(id), Duration::from_secs(u64::from(ka))));
        }
    }

    fn negotiated_hold(&self, id: ConnId) -> u16 {
        let peer = self.conns.iter().find(|c| c.id == id).and_then(|c| c.peer_open.as_ref()).map_or(0, |o| o.hold_time);
        self.cfg.hold_time.min(peer)
    }

    fn restart_hold(&self, id: ConnId, out: &mut Vec<Action>) {
        let hold = self.negotiated_hold(id);
        if hold > 0 {
            out.push(Action::Arm(Timer::Hold(id), Duration::from_secs(u64::from(hold))));
        }
    }

    fn establish(&mut self, id: ConnId, out: &mut Vec<Action>) {
        // Any other connection is a collision the Established one wins (RFC 4271 §6.8).
        let others: Vec<ConnId> = self.conns.iter().filter(|c| c.id != id).map(|c| c.id).collect();
        for o in others {
            if let Some(c) = self.remove(o, out) {
                out.push(Action::Send(c.id, Notification::cease(err::cease::CONNECTION_COLLISION_RESOLUTION).into()));
                out.push(Action::Close(c.id));
            }
        }
        let Some(c) = self.conns.iter_mut().find(|c| c.id == id) else { return };
        c.phase = Phase::Established;
        let dir = c.dir;
        let Some(peer) = c.peer_open.clone() else { return };
        self.failures = 0;
        self.refused = 0;
        self.restart_hold(id, out);
        let ours = self.our_open();
        let hold = self.cfg.hold_time.min(peer.hold_time);
        let peer_families = peer.families();
        let families: Vec<Family> = self.cfg.families.iter().copied().filter(|f| peer_families.contains(f)).collect();
        let four = peer.has(|c| matches!(c, Capability::FourOctetAs(_)));
        let enh = ours.extended_next_hop().iter().any(|(f, _)| *f == Family::IPV4_UNICAST)
            && peer
                .extended_next_hop()
                .iter()
                .any(|(f, nh)| *f == Family::IPV4_UNICAST && *nh == super::wire::iana::afi::IPV6);
        out.push(Action::Up(Negotiated {
            conn: id,
            dir,
            hold_time: hold,
            keepalive: if hold == 0 { 0 } else { self.keepalive_for(hold) },
            families,
            four_octet_as: four,
            route_refresh: peer.has(|c| matches!(c, Capability::RouteRefresh)),
            graceful_restart: self.cfg.graceful_restart.is_some() && peer.graceful_restart().is_some(),
            extended_next_hop_v4: enh,
            peer_router_id: peer.router_id,
            peer_asn: peer.asn(),
            ibgp: self.cfg.peer_as.ibgp(self.cfg.local_asn),
            peer_open: peer,
        }));
    }

    fn expired(&mut self, t: Timer, out: &mut Vec<Action>) {
        match t {
            Timer::ConnectRetry => {
                if self.started && !self.cfg.passive && !self.connecting && self.conns.is_empty() {
                    self.connecting = true;
                    out.push(Action::Connect);
                }
            }
            Timer::Hold(id) => {
                if self.conns.iter().any(|c| c.id == id) {
                    let n = Notification::hold_timer_expired();
                    self.fail(id, Some(n), DownReason::HoldTimerExpired, out);
                }
            }
            Timer::Keepalive(id) => {
                let hold = self.negotiated_hold(id);
                let live = self.conns.iter().any(|c| c.id == id && c.phase != Phase::OpenSent);
                if live && hold > 0 {
                    out.push(Action::Send(id, Message::Keepalive));
                    let ka = self.keepalive_for(hold);
                    out.push(Action::Arm(Timer::Keepalive(id), Duration::from_secs(u64::from(ka))));
                }
            }
        }
    }

    /// Sends `n` (if any) on `id`, closes it, and reports why.
    fn fail(&mut self, id: ConnId, n: Option<Notification>, reason: DownReason, out: &mut Vec<Action>) {
        if let Some(c) = self.remove(id, out) {
            if let Some(n) = n {
                out.push(Action::Send(id, n.into()));
            }
            out.push(Action::Close(id));
            self.lost(c, reason, out);
        }
    }

    fn remove(&mut self, id: ConnId, out: &mut Vec<Action>) -> Option<Conn> {
        let i = self.conns.iter().position(|c| c.id == id)?;
        self.disarm_conn(id, out);
        Some(self.conns.remove(i))
    }

    fn disarm_conn(&self, id: ConnId, out: &mut Vec<Action>) {
        out.push(Action::Disarm(Timer::Hold(id)));
        out.push(Action::Disarm(Timer::Keepalive(id)));
    }

    /// A connection went away: report it and, if nothing is left, back off before the next attempt.
    fn lost(&mut self, c: Conn, reason: DownReason, out: &mut Vec<Action>) {
        if c.phase == Phase::Established {
            out.push(Action::Down(reason));
        } else {
            out.push(Action::Failed(reason));
        }
        // The peer accepted this connection: whatever comes next is not a refusal streak.
        self.refused = 0;
        if self.conns.is_empty() && !self.connecting {
            if c.phase != Phase::Established {
                self.failures = self.failures.saturating_add(1);
            }
            self.schedule_retry(out);
        }
    }

    /// Exponential backoff from the connect retry time, capped at [`MAX_BACKOFF`], ±25 % jitter; after
    /// refused attempts, exponential from [`REFUSED_RETRY`] while that is shorter.
    fn schedule_retry(&mut self, out: &mut Vec<Action>) {
        if !self.started || self.cfg.passive {
            return;
        }
        let base = self.cfg.connect_retry.max(REFUSED_RETRY);
        let exp = self.failures.saturating_sub(1).min(10);
        let mut d = base.saturating_mul(1 << exp).min(MAX_BACKOFF);
        if self.refused > 0 {
            d = d.min(REFUSED_RETRY.saturating_mul(1 << (self.refused - 1).min(16)));
        }
        let jitter = (self.next_rand() % 501) as f64 / 1000.0 + 0.75; // 0.75 ..= 1.25
        out.push(Action::Arm(Timer::ConnectRetry, d.mul_f64(jitter)));
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

#[cfg(test)]
mod tests;
