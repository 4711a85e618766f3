//! Which owned IP is answered on which interface, the gratuitous ARP / unsolicited NA bursts, and the
//! IPs that cannot be programmed. Sans IO: [`Announcer::handle`] takes an [`Input`] and the current
//! time and returns [`Action`]s; it owns no socket, no timer and no clock, and imports nothing from tokio.
//!
//! # The interface choice ("the right NIC")
//!
//! 1. The candidates are the usable interfaces (up with carrier, not loopback, with an Ethernet
//!    address, no socket failure pending) that the claim allows: matching one of `interfaces` if that
//!    list is not empty, and none of `exclude_interfaces`. A pattern is a name, or a prefix followed by
//!    `*` (`eth*`).
//! 2. The IP is answered on every candidate with a configured subnet (address/prefix) that contains it.
//! 3. If no candidate's subnet contains the IP, it is answered on the candidates when the claim lists
//!    interfaces explicitly (the operator said where: an IP routed to the node, like MetalLB's
//!    L2Advertisement.interfaces).
//! 4. If no allowed interface of this node has, or since this process started ever had, a subnet that
//!    contains the IP (an IP outside every node subnet, which clients reach through a route to the
//!    segment), it is answered on every candidate, as MetalLB answers every IP on every NIC: answered
//!    rather than silent.
//! 5. Otherwise (the IP's subnet is on an interface that is down, failed or gone) it is answered
//!    nowhere and reported as a failure, "no usable interface on the IP's subnet", which hands it to
//!    another node. Answering it on the other NICs is how MetalLB users end up with the wrong NIC's MAC.
//!
//! # Guarantees
//!
//! * Only owned IPs are answered, and only on their chosen interfaces.
//! * An IP removed from the claims is forgotten at once: no answer and no further burst frame.
//! * Each newly chosen (IP, interface) pair gets `garp_count` announcements `garp_interval` apart; the
//!   first goes out in the same `handle` call. Ownership is the claim set at the time of each repeat.
//! * An IPv6 Duplicate Address Detection probe (from `::`) is not answered, as MetalLB does not; an ARP
//!   probe (from 0.0.0.0) is answered like any request, as MetalLB and Linux answer it.
//!
//! # Address conflicts on the wire
//!
//! Two nodes that both think they own an IP (gossip cut between them, or the moment an ownership
//! change has reached one of them and not yet the other) both answer; on one segment they hear each
//! other's gratuitous ARPs / unsolicited Neighbor Advertisements and any broadcast or flooded replies.
//! When an owned IP is claimed (ARP reply, gratuitous ARP, Neighbor Advertisement: by its target
//! link-layer address, or Ethernet source without one) by a MAC that is not one of this node's, on an
//! interface the IP is answered on:
//!
//! * it is counted ([`L2Counters::conflicts_seen`]) and reported ([`Action::Conflict`], a warning log);
//! * the lower MAC wins: the winner re-announces at once (one gratuitous ARP / unsolicited NA, at most one per half
//!   `garp_interval` per IP and interface), so the clients' caches end on it;
//! * the loser stops answering the IP on that interface, and claims nothing for it there, for
//!   `garp_interval / 2` the first time, `garp_interval` at each further loss while it owns the IP.
//!   Then it asks before it claims: one probe (an ARP probe from 0.0.0.0, RFC 5227 §2.1.1, or a
//!   Neighbor Solicitation from its link-local address), and a wait of `garp_interval / 2`, at most
//!   250 ms. An answer from a lower MAC: quiet for another interval (counted, not logged again). An
//!   answer from a higher MAC: the winner has gone, answer again at once. No answer: the winner has
//!   released the IP (an ownership change that reached it first), answer again with a new burst; the
//!   IP was silent for at most one `garp_interval` and one wait. A probe is a question: no client cache
//!   learns the loser's MAC from it, so while the winner stays, the clients see no second answer after
//!   the first conflict, however long the gossip partition lasts. The price: one probe from the loser
//!   and one answer from the winner per IP and `garp_interval`. Losing does not make the IP a failure
//!   (no hand-off): the IP is answered, by the winner.
//! * A new ownership (the IP leaves the claims and comes back), or any change of this node's gossip
//!   view ([`Claim::view`]), ends the quiet period and starts from a clean slate. This is what makes
//!   the common case quick: a gossip partition heals, the other side releases the IP and this node
//!   answers again at the same moment, instead of when its quiet period ends.
//!
//! Across segments two owners never hear each other and do no harm.
use super::iface::Iface;
use super::{arp, ndp, Mac, Request};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long an interface whose socket failed is left alone before it is tried again (an interface
/// table change retries at once).
pub const RETRY_FAILED: Duration = Duration::from_secs(5);

/// Settings of the announcer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Config {
    /// Gratuitous ARPs / unsolicited NAs sent per interface on taking an IP over. 0 sends none.
    pub garp_count: u32,
    /// Time between two of them.
    pub garp_interval: Duration,
}

impl Default for L2Config {
    /// 5 × 1.1 s, as MetalLB.
    fn default() -> Self {
        Self { garp_count: 5, garp_interval: Duration::from_millis(1100) }
    }
}

/// An IP this node owns now, and where it may be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub ip: IpAddr,
    /// Interfaces to answer on; empty = any. A trailing `*` matches a prefix.
    pub interfaces: Vec<String>,
    /// Interfaces never to answer on. A trailing `*` matches a prefix.
    pub exclude_interfaces: Vec<String>,
    /// Not owned, only evaluated: could this node answer for it if it owned it? (An IP this node is
    /// a candidate for; see [`Announcer::standby_failures`].) Nothing is sent or answered for it.
    pub standby: bool,
    /// Changes whenever this node's gossip view of alive members changes: a lost address conflict's
    /// quiet period ends then (the view that made the other MAC's node the owner may be gone).
    pub view: u64,
}

/// Where an owned IP is answered now, or why it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimStatus {
    pub ip: IpAddr,
    /// (interface name, its MAC), in interface index order.
    pub answering_on: Vec<(String, Mac)>,
    /// Set when `answering_on` is empty: the reason.
    pub error: Option<String>,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L2Counters {
    /// ARP requests and Neighbor Solicitations for owned IPs, on the interface chosen for them.
    pub requests_received: u64,
    /// ARP replies and solicited Neighbor Advertisements sent.
    pub responses_sent: u64,
    /// Gratuitous ARPs and unsolicited Neighbor Advertisements sent.
    pub gratuitous_sent: u64,
    /// ARP / NS frames that were malformed or invalid (RFC 4861 §7.1.1) and dropped.
    pub malformed_dropped: u64,
    /// Another MAC claiming an IP this node answers for, on the interface it answers on.
    pub conflicts_seen: u64,
    /// Of those, the ones this node lost (it went quiet on that interface for a while).
    pub conflicts_lost: u64,
}

/// One IP's share of [`L2Counters`] (MetalLB labels its layer 2 counters by IP). Kept while the IP is
/// claimed (owned or standby); forgotten with the claim.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IpCounters {
    pub requests_received: u64,
    pub responses_sent: u64,
    pub gratuitous_sent: u64,
}

#[derive(Debug)]
pub enum Input {
    /// The complete set of IPs this node owns now.
    Claims(Vec<Claim>),
    /// The interface table, complete, after a change (also retries every failed interface).
    Ifaces(Vec<Iface>),
    /// A frame received on an interface (by index).
    Frame { iface: u32, frame: Vec<u8> },
    /// The driver could not program the interface (socket, membership or send error). It is not used
    /// for [`RETRY_FAILED`] or until the next interface table.
    IfaceFailed { iface: u32, reason: String },
    /// The instant of the last [`Action::ArmTimer`] has come.
    Timer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a packet socket on the interface (before any Join or Send on it).
    OpenSocket {
        iface: u32,
    },
    /// Close it; its multicast memberships go with it.
    CloseSocket {
        iface: u32,
    },
    /// Join a solicited-node multicast group (its Ethernet address) on the interface.
    Join {
        iface: u32,
        group: Mac,
    },
    Leave {
        iface: u32,
        group: Mac,
    },
    /// Send `frame`, which answers or announces `ip`, on the interface.
    Send {
        iface: u32,
        ip: IpAddr,
        frame: Vec<u8>,
    },
    /// Deliver [`Input::Timer`] at this instant. Every `handle` result ends with the next deadline if
    /// there is one; a result without `ArmTimer` means no timer is needed.
    ArmTimer(Instant),
    /// The owned IPs that cannot be answered anywhere now (complete set; emitted when it changes).
    Failures(BTreeSet<IpAddr>),
    /// The standby IPs that could not be answered if they were owned (complete set; on change).
    StandbyFailures(BTreeSet<IpAddr>),
    /// Another MAC claimed an owned IP on an interface it is answered on. `won`: this node keeps
    /// answering there and re-announces; otherwise it is quiet there until `quiet_until`.
    Conflict {
        ip: IpAddr,
        iface: u32,
        other: Mac,
        won: bool,
        quiet_until: Option<Instant>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Burst {
    left: u32,
    next: Instant,
    /// The last re-announcement after a won conflict (rate limit).
    reannounced: Option<Instant>,
}

impl Burst {
    fn new(left: u32, next: Instant) -> Self {
        Self { left, next, reannounced: None }
    }
}

/// An interface on which this node lost a conflict for an IP.
#[derive(Debug, Clone, Copy)]
struct Quiet {
    to: Mac,
    until: Instant,
    /// A probe went out at the end of the quiet period; `until` is then the end of the wait for an
    /// answer. No answer by then: this node answers the IP again.
    probing: bool,
}

/// How long a loser waits for an answer to its probe before it answers the IP again: half the
/// announcement interval, at most 250 ms (an owner on the segment answers within milliseconds).
fn probe_wait(garp_interval: Duration) -> Duration {
    (garp_interval / 2).min(Duration::from_millis(250))
}

/// The longest quiet period after a lost conflict, in multiples of the first one (`garp_interval / 2`):
/// it bounds the silence when the winner has released the IP meanwhile.
const MAX_QUIET_FACTOR: u32 = 2;

#[derive(Debug)]
struct ClaimState {
    claim: Claim,
    /// Chosen interfaces with their burst state.
    on: BTreeMap<u32, Burst>,
    error: Option<String>,
    /// Interfaces where a conflict was lost: not answered until `until`.
    quiet: BTreeMap<u32, Quiet>,
    /// Conflicts lost since this IP was claimed (the quiet period doubles with each).
    lost: u32,
}

#[derive(Debug)]
struct Failed {
    reason: String,
    retry_at: Instant,
}

/// The Layer 2 announcer as a value.
#[derive(Debug, Default)]
pub struct Announcer {
    cfg: L2Config,
    ifaces: BTreeMap<u32, Iface>,
    failed: BTreeMap<u32, Failed>,
    claims: BTreeMap<IpAddr, ClaimState>,
    counters: L2Counters,
    /// Open sockets as requested by our actions, with their joined groups.
    sockets: BTreeMap<u32, BTreeSet<Mac>>,
    reported: BTreeSet<IpAddr>,
    reported_standby: BTreeSet<IpAddr>,
    /// Every (interface name, subnet) seen since start: an IP whose subnet's interface went away is a
    /// failure to hand off, not an IP outside every subnet (rule 5, not 4).
    subnets_seen: BTreeSet<(String, IpNet)>,
    per_ip: BTreeMap<IpAddr, IpCounters>,
}

fn fmt_mac(m: Mac) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn glob(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

fn allowed(c: &Claim, name: &str) -> bool {
    (c.interfaces.is_empty() || c.interfaces.iter().any(|p| glob(p, name)))
        && !c.exclude_interfaces.iter().any(|p| glob(p, name))
}

/// The interface choice of the module documentation.
fn select(
    ifaces: &BTreeMap<u32, Iface>,
    failed: &BTreeMap<u32, Failed>,
    seen: &BTreeSet<(String, IpNet)>,
    c: &Claim,
) -> Result<Vec<u32>, String> {
    let permitted = || ifaces.values().filter(|i| allowed(c, &i.name));
    let candidates: Vec<&Iface> = permitted().filter(|i| i.usable() && !failed.contains_key(&i.index)).collect();
    let on_subnet: Vec<u32> =
        candidates.iter().filter(|i| i.nets.iter().any(|n| n.contains(&c.ip))).map(|i| i.index).collect();
    if !on_subnet.is_empty() {
        return Ok(on_subnet);
    }
    let subnet_known = seen.iter().any(|(name, net)| net.contains(&c.ip) && allowed(c, name));
    if (!c.interfaces.is_empty() || !subnet_known) && !candidates.is_empty() {
        return Ok(candidates.iter().map(|i| i.index).collect());
    }
    // Say why the interfaces that would have qualified did not.
    let why: Vec<String> = permitted()
        .filter(|i| {
            !i.loopback && (i.nets.iter().any(|n| n.contains(&c.ip)) || !c.interfaces.is_empty() || !subnet_known)
        })
        .filter_map(|i| match failed.get(&i.index) {
            Some(f) => Some(format!("{}: {}", i.name, f.reason)),
            None if !i.up => Some(format!("{}: down", i.name)),
            None => None,
        })
        .collect();
    let base = if c.interfaces.is_empty() && !subnet_known {
        "no usable interface".to_string()
    } else if c.interfaces.is_empty() {
        "no usable interface on the IP's subnet".to_string()
    } else {
        format!("no usable interface on the IP's subnet or among {:?}", c.interfaces)
    };
    Err(if why.is_empty() { base } else { format!("{base} ({})", why.join("; ")) })
}

impl Announcer {
    pub fn new(cfg: L2Config) -> Self {
        Self { cfg, ..Self::default() }
    }

    pub fn counters(&self) -> L2Counters {
        self.counters
    }

    /// The counters of each claimed IP that has counted anything.
    pub fn ip_counters(&self) -> &BTreeMap<IpAddr, IpCounters> {
        &self.per_ip
    }

    /// Every owned IP, in IP order.
    pub fn status(&self) -> Vec<ClaimStatus> {
        self.claims
            .values()
            .filter(|c| !c.claim.standby)
            .map(|c| ClaimStatus {
                ip: c.claim.ip,
                answering_on: c.on.keys().filter_map(|i| self.ifaces.get(i)).map(|i| (i.name.clone(), i.mac)).collect(),
                error: c.error.clone().or_else(|| {
                    // Answered nowhere because every interface lost a conflict: say so (not a failure).
                    let quiet: Vec<String> = c
                        .quiet
                        .iter()
                        .filter_map(|(i, q)| Some(format!("{} to {}", self.ifaces.get(i)?.name, fmt_mac(q.to))))
                        .collect();
                    (c.on.is_empty() && !quiet.is_empty())
                        .then(|| format!("quiet after an address conflict: lost on {}", quiet.join(", ")))
                }),
            })
            .collect()
    }

    /// The owned IPs that cannot be answered anywhere.
    pub fn failures(&self) -> BTreeSet<IpAddr> {
        self.claims.values().filter(|c| !c.claim.standby && c.error.is_some()).map(|c| c.claim.ip).collect()
    }

    /// The standby IPs this node could not answer for if it owned them.
    pub fn standby_failures(&self) -> BTreeSet<IpAddr> {
        self.claims.values().filter(|c| c.claim.standby && c.error.is_some()).map(|c| c.claim.ip).collect()
    }

    /// Is `ip` owned now? (The driver checks this again right before it sends.)
    pub fn owns(&self, ip: &IpAddr) -> bool {
        self.claims.get(ip).is_some_and(|c| !c.claim.standby)
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Frame { iface, frame } => {
                if !self.conflict(iface, &frame, now, &mut out) {
                    self.answer(iface, &frame, &mut out);
                }
            }
            Input::Claims(list) => {
                let mut new: BTreeMap<IpAddr, Claim> = list.into_iter().map(|c| (c.ip, c)).collect();
                // Removed IPs are forgotten here, with their bursts: nothing more goes out for them.
                self.claims.retain(|ip, _| new.contains_key(ip));
                self.per_ip.retain(|ip, _| new.contains_key(ip));
                for (ip, st) in self.claims.iter_mut() {
                    if let Some(c) = new.remove(ip) {
                        if c.standby != st.claim.standby || c.view != st.claim.view {
                            // Owned from standby or back, or a new gossip view: a new ownership (or
                            // a new look at it), lost conflicts forgotten.
                            st.quiet.clear();
                            st.lost = 0;
                        }
                        st.claim = c; // interfaces still chosen keep their burst state
                    }
                }
                for (ip, claim) in new {
                    self.claims.insert(
                        ip,
                        ClaimState { claim, on: BTreeMap::new(), error: None, quiet: BTreeMap::new(), lost: 0 },
                    );
                }
                self.reselect(now);
            }
            Input::Ifaces(list) => {
                self.ifaces = list.into_iter().filter(|i| i.index != 0).map(|i| (i.index, i)).collect();
                for i in self.ifaces.values().filter(|i| !i.loopback) {
                    self.subnets_seen.extend(i.nets.iter().map(|n| (i.name.clone(), n.trunc())));
                }
                self.failed.clear();
                self.reselect(now);
            }
            Input::IfaceFailed { iface, reason } => {
                self.failed.insert(iface, Failed { reason, retry_at: now + RETRY_FAILED });
                self.reselect(now);
            }
            Input::Timer => {
                let before = self.failed.len();
                self.failed.retain(|_, f| f.retry_at > now);
                let ended = self.quiet_timers(now, &mut out);
                if self.failed.len() != before || ended {
                    self.reselect(now);
                }
            }
        }
        // Sockets and groups before the frames that need them.
        self.program_sockets(&mut out);
        self.send_bursts(now, &mut out);
        let failures = self.failures();
        if failures != self.reported {
            self.reported = failures.clone();
            out.push(Action::Failures(failures));
        }
        let standby = self.standby_failures();
        if standby != self.reported_standby {
            self.reported_standby = standby.clone();
            out.push(Action::StandbyFailures(standby));
        }
        if let Some(t) = self.next_deadline() {
            out.push(Action::ArmTimer(t));
        }
        out
    }

    fn reselect(&mut self, now: Instant) {
        let garp_count = self.cfg.garp_count;
        for st in self.claims.values_mut() {
            if st.claim.standby {
                st.on.clear();
                st.error = select(&self.ifaces, &self.failed, &self.subnets_seen, &st.claim).err();
                continue;
            }
            match select(&self.ifaces, &self.failed, &self.subnets_seen, &st.claim) {
                Ok(chosen) => {
                    let quiet = &st.quiet;
                    st.on.retain(|i, _| chosen.contains(i) && !quiet.contains_key(i));
                    for i in chosen.into_iter().filter(|i| !quiet.contains_key(i)) {
                        // Newly chosen (or quiet no more): announce here from now on.
                        st.on.entry(i).or_insert(Burst::new(garp_count, now));
                    }
                    st.error = None;
                }
                Err(e) => {
                    st.on.clear();
                    st.error = Some(e);
                }
            }
        }
    }

    /// An owned IP claimed by another MAC on an interface it is answered on (module documentation).
    /// True if the frame was such a claim (it is then no question to answer).
    fn conflict(&mut self, iface: u32, frame: &[u8], now: Instant, out: &mut Vec<Action>) -> bool {
        let claim = arp::decode_claim(frame)
            .map(|(m, v4)| (m, IpAddr::V4(v4)))
            .or_else(|| ndp::decode_na_claim(frame).map(|(m, v6)| (m, IpAddr::V6(v6))));
        let Some((other, ip)) = claim else { return false };
        // Our own frames (looped back, or from another of our interfaces on the same segment).
        if self.ifaces.values().any(|i| i.mac == other) {
            return false;
        }
        let Some(i) = self.ifaces.get(&iface) else { return false };
        let ours = i.mac;
        let Some(st) = self.claims.get_mut(&ip) else { return false };
        if let Some(q) = st.quiet.get_mut(&iface) {
            // Quiet here after a lost conflict: the other side's answer to our probe, or its own
            // announcement. A lower MAC still there: quiet on (counted, not logged again). A higher
            // one: the lower MAC has gone and the IP is ours again here.
            if other < ours {
                self.counters.conflicts_seen += 1;
                self.counters.conflicts_lost += 1;
                q.to = other;
                q.until = now + self.cfg.garp_interval;
                q.probing = false;
                return true;
            }
            st.quiet.remove(&iface);
            self.counters.conflicts_seen += 1;
            // Answer here again only if this interface is still one the IP is answered on (it may
            // have gone down or failed meanwhile: the IP is then a failure, never answered there).
            let usable = !st.claim.standby
                && select(&self.ifaces, &self.failed, &self.subnets_seen, &st.claim).is_ok_and(|c| c.contains(&iface));
            if usable {
                let garp_count = self.cfg.garp_count;
                let b = st.on.entry(iface).or_insert(Burst::new(garp_count, now));
                b.reannounced = Some(now);
            }
            out.push(Action::Conflict { ip, iface, other, won: true, quiet_until: None });
            return true;
        }
        let Some(burst) = st.on.get_mut(&iface) else { return false };
        self.counters.conflicts_seen += 1;
        if ours < other {
            // Won: one re-announcement now, unless one went out very recently.
            let half = self.cfg.garp_interval / 2;
            if burst.reannounced.is_none_or(|t| now >= t + half) {
                burst.reannounced = Some(now);
                burst.left = burst.left.max(1);
                burst.next = now;
            }
            out.push(Action::Conflict { ip, iface, other, won: true, quiet_until: None });
        } else {
            self.counters.conflicts_lost += 1;
            let factor = if st.lost == 0 { 1 } else { MAX_QUIET_FACTOR };
            st.lost = st.lost.saturating_add(1);
            let until = now + (self.cfg.garp_interval / 2) * factor;
            st.on.remove(&iface);
            st.quiet.insert(iface, Quiet { to: other, until, probing: false });
            out.push(Action::Conflict { ip, iface, other, won: false, quiet_until: Some(until) });
        }
        true
    }

    /// Quiet periods that end now: a probe goes out (an ARP probe, RFC 5227 §2.1.1, or a Neighbor
    /// Solicitation from the interface's link-local address) and the wait for an answer starts; a wait
    /// that ends without an answer ends the quiet period. True if one ended (interfaces to reselect).
    /// The probe is a question, not a claim: clients' caches never learn this node's MAC from it, so a
    /// winner still there keeps the IP without a single double answer.
    fn quiet_timers(&mut self, now: Instant, out: &mut Vec<Action>) -> bool {
        let wait = probe_wait(self.cfg.garp_interval);
        let mut ended = false;
        for (ip, st) in self.claims.iter_mut() {
            st.quiet.retain(|idx, q| {
                if q.until > now {
                    return true;
                }
                if q.probing {
                    ended = true;
                    return false;
                }
                let probe = self.ifaces.get(idx).and_then(|i| match ip {
                    IpAddr::V4(v4) => Some(arp::build_probe(i.mac, *v4)),
                    IpAddr::V6(v6) => i.link_local().map(|ll| ndp::build_ns(i.mac, ll, *v6)),
                });
                let Some(frame) = probe else {
                    // Nothing to ask with (no link-local address): answer again.
                    ended = true;
                    return false;
                };
                out.push(Action::Send { iface: *idx, ip: *ip, frame });
                q.probing = true;
                q.until = now + wait;
                true
            });
        }
        ended
    }

    fn answer(&mut self, iface: u32, frame: &[u8], out: &mut Vec<Action>) {
        let req = match super::decode_request(frame) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(_) => {
                self.counters.malformed_dropped += 1;
                return;
            }
        };
        let ip = req.target();
        // Only owned IPs, and only on the interfaces chosen for them.
        let (Some(i), Some(st)) = (self.ifaces.get(&iface), self.claims.get(&ip)) else { return };
        if !st.on.contains_key(&iface) {
            return;
        }
        let frame = match req {
            Request::Arp(r) => {
                // Our own announcement looped back, or another host announcing the IP: not a question.
                if r.sender_mac == i.mac || r.is_announcement() {
                    return;
                }
                arp::build_reply(i.mac, r.target_ip, r.sender_mac, r.sender_ip)
            }
            Request::Ns(ns) => {
                if ns.is_dad() || ns.reply_mac() == i.mac {
                    return;
                }
                ndp::build_solicited_na(i.mac, &ns)
            }
        };
        self.counters.requests_received += 1;
        self.counters.responses_sent += 1;
        let c = self.per_ip.entry(ip).or_default();
        c.requests_received += 1;
        c.responses_sent += 1;
        out.push(Action::Send { iface, ip, frame });
    }

    fn send_bursts(&mut self, now: Instant, out: &mut Vec<Action>) {
        for (ip, st) in self.claims.iter_mut() {
            for (idx, b) in st.on.iter_mut() {
                if b.left == 0 || b.next > now {
                    continue;
                }
                let Some(i) = self.ifaces.get(idx) else { continue };
                let frame = match ip {
                    IpAddr::V4(v4) => arp::build_gratuitous(i.mac, *v4),
                    IpAddr::V6(v6) => ndp::build_unsolicited_na(i.mac, i.link_local().unwrap_or(*v6), *v6),
                };
                out.push(Action::Send { iface: *idx, ip: *ip, frame });
                self.counters.gratuitous_sent += 1;
                self.per_ip.entry(*ip).or_default().gratuitous_sent += 1;
                b.left -= 1;
                b.next = now + self.cfg.garp_interval;
            }
        }
    }

    fn program_sockets(&mut self, out: &mut Vec<Action>) {
        let mut want: BTreeMap<u32, BTreeSet<Mac>> = BTreeMap::new();
        for st in self.claims.values() {
            // A quiet interface keeps its socket: the probe goes out and the answer comes in there.
            for i in st.quiet.keys() {
                want.entry(*i).or_default();
            }
            for i in st.on.keys() {
                let groups = want.entry(*i).or_default();
                if let IpAddr::V6(v6) = st.claim.ip {
                    groups.insert(ndp::solicited_node_mac(v6));
                }
            }
        }
        for iface in self.sockets.keys().filter(|i| !want.contains_key(i)) {
            out.push(Action::CloseSocket { iface: *iface });
        }
        self.sockets.retain(|i, _| want.contains_key(i));
        for (iface, groups) in want {
            if !self.sockets.contains_key(&iface) {
                out.push(Action::OpenSocket { iface });
            }
            let have = self.sockets.entry(iface).or_default();
            for g in have.difference(&groups) {
                out.push(Action::Leave { iface, group: *g });
            }
            for g in groups.difference(have) {
                out.push(Action::Join { iface, group: *g });
            }
            *have = groups;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let bursts = self.claims.values().flat_map(|c| c.on.values()).filter(|b| b.left > 0).map(|b| b.next);
        let quiet = self.claims.values().flat_map(|c| c.quiet.values()).map(|q| q.until);
        bursts.chain(quiet).chain(self.failed.values().map(|f| f.retry_at)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pnet_packet::ethernet::EthernetPacket;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const M1: Mac = [2, 0, 0, 0, 0, 1];
    const M2: Mac = [2, 0, 0, 0, 0, 2];
    const HOST: Mac = [2, 0, 0, 0, 0, 0x99];
    const SEC: Duration = Duration::from_secs(1);

    fn ifaces() -> Vec<Iface> {
        vec![
            Iface {
                index: 1,
                name: "lo".into(),
                mac: [0; 6],
                up: true,
                loopback: true,
                nets: vec!["127.0.0.1/8".parse().unwrap()],
            },
            Iface {
                index: 2,
                name: "eth0".into(),
                mac: M1,
                up: true,
                loopback: false,
                nets: vec![
                    "192.0.2.1/24".parse().unwrap(),
                    "2001:db8::1/64".parse().unwrap(),
                    "fe80::1/64".parse().unwrap(),
                ],
            },
            Iface {
                index: 3,
                name: "eth1".into(),
                mac: M2,
                up: true,
                loopback: false,
                nets: vec!["198.51.100.1/24".parse().unwrap()],
            },
        ]
    }

    fn claim(ip: &str) -> Claim {
        Claim { ip: ip.parse().unwrap(), interfaces: vec![], exclude_interfaces: vec![], standby: false, view: 0 }
    }

    fn sends(a: &[Action]) -> Vec<(u32, IpAddr, Vec<u8>)> {
        a.iter()
            .filter_map(|x| match x {
                Action::Send { iface, ip, frame } => Some((*iface, *ip, frame.clone())),
                _ => None,
            })
            .collect()
    }

    fn timer(a: &[Action]) -> Option<Instant> {
        a.iter().find_map(|x| if let Action::ArmTimer(t) = x { Some(*t) } else { None })
    }

    fn arp_request(target: &str) -> Vec<u8> {
        arp::build_request(HOST, "192.0.2.9".parse().unwrap(), target.parse().unwrap())
    }

    fn eth_src(f: &[u8]) -> Mac {
        EthernetPacket::new(f).unwrap().get_source().octets()
    }

    fn setup(count: u32) -> (Announcer, Instant) {
        let mut a = Announcer::new(L2Config { garp_count: count, garp_interval: SEC });
        let t0 = Instant::now();
        assert_eq!(a.handle(Input::Ifaces(ifaces()), t0), vec![]);
        (a, t0)
    }

    #[test]
    fn claim_sends_garp_count_announcements_garp_interval_apart() {
        let (mut a, t0) = setup(3);
        let out = a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        assert_eq!(out[0], Action::OpenSocket { iface: 2 }, "socket before the first frame");
        let s = sends(&out);
        assert_eq!(s.len(), 1, "first announcement at once");
        assert_eq!(
            s[0].2,
            arp::build_gratuitous(M1, "192.0.2.50".parse().unwrap()),
            "from eth0, whose subnet holds the IP"
        );
        assert_eq!(timer(&out), Some(t0 + SEC));
        let early = a.handle(Input::Timer, t0 + SEC / 2);
        assert!(sends(&early).is_empty(), "not before the interval");
        assert_eq!(timer(&early), Some(t0 + SEC));
        let out = a.handle(Input::Timer, t0 + SEC);
        assert_eq!(sends(&out).len(), 1);
        assert_eq!(timer(&out), Some(t0 + 2 * SEC));
        let out = a.handle(Input::Timer, t0 + 2 * SEC);
        assert_eq!(sends(&out).len(), 1);
        assert_eq!(timer(&out), None, "burst of 3 done");
        assert!(sends(&a.handle(Input::Timer, t0 + 10 * SEC)).is_empty());
        assert_eq!(a.counters().gratuitous_sent, 3);
    }

    #[test]
    fn garp_count_zero_sends_no_announcement_but_answers() {
        let (mut a, t0) = setup(0);
        let out = a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        assert!(sends(&out).is_empty());
        assert_eq!(timer(&out), None);
        assert_eq!(sends(&a.handle(Input::Frame { iface: 2, frame: arp_request("192.0.2.50") }, t0)).len(), 1);
    }

    #[test]
    fn unclaim_stops_answers_and_the_burst_at_once() {
        let (mut a, t0) = setup(5);
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        let out = a.handle(Input::Frame { iface: 2, frame: arp_request("192.0.2.50") }, t0);
        let s = sends(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].2, arp::build_reply(M1, "192.0.2.50".parse().unwrap(), HOST, "192.0.2.9".parse().unwrap()));
        assert_eq!(timer(&out), Some(t0 + SEC), "an answer keeps the burst timer");

        let out = a.handle(Input::Claims(vec![]), t0 + SEC / 2);
        assert_eq!(out, vec![Action::CloseSocket { iface: 2 }], "no timer left, nothing sent");
        assert!(!a.owns(&"192.0.2.50".parse().unwrap()));
        assert!(sends(&a.handle(Input::Frame { iface: 2, frame: arp_request("192.0.2.50") }, t0 + SEC)).is_empty());
        assert!(sends(&a.handle(Input::Timer, t0 + SEC)).is_empty(), "no repeat for an IP not owned");
        assert_eq!(a.counters().gratuitous_sent, 1);
        assert_eq!(a.counters().responses_sent, 1);
    }

    #[test]
    fn reclaim_starts_a_new_burst() {
        let (mut a, t0) = setup(2);
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        a.handle(Input::Claims(vec![]), t0);
        let out = a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0 + SEC / 10);
        assert_eq!(sends(&out).len(), 1);
        assert_eq!(timer(&out), Some(t0 + SEC / 10 + SEC));
    }

    #[test]
    fn same_claims_again_send_nothing() {
        let (mut a, t0) = setup(1);
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        assert_eq!(a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0), vec![]);
        let mut c = claim("192.0.2.50");
        c.exclude_interfaces = vec!["eth1".into()];
        assert_eq!(a.handle(Input::Claims(vec![c]), t0), vec![], "eth0 still chosen: no new burst");
    }

    #[test]
    fn requests_for_ips_not_owned_are_never_answered() {
        let (mut a, t0) = setup(1);
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        assert!(sends(&a.handle(Input::Frame { iface: 2, frame: arp_request("192.0.2.51") }, t0)).is_empty());
        assert!(
            sends(&a.handle(Input::Frame { iface: 2, frame: arp_request("192.0.2.1") }, t0)).is_empty(),
            "the node's own address is the kernel's"
        );
        let ns = ndp::build_ns(HOST, "2001:db8::9".parse().unwrap(), "2001:db8::50".parse().unwrap());
        assert!(sends(&a.handle(Input::Frame { iface: 2, frame: ns }, t0)).is_empty());
        assert_eq!(a.counters().requests_received, 0);
    }

    #[test]
    fn two_interfaces_each_ip_answered_on_its_subnets_nic_with_its_mac() {
        let (mut a, t0) = setup(1);
        let out = a.handle(Input::Claims(vec![claim("192.0.2.50"), claim("198.51.100.77")]), t0);
        let s = sends(&out);
        assert_eq!(
            s.iter().map(|(i, ip, f)| (*i, ip.to_string(), eth_src(f))).collect::<Vec<_>>(),
            vec![(2, "192.0.2.50".to_string(), M1), (3, "198.51.100.77".to_string(), M2),]
        );
        let reply = sends(&a.handle(Input::Frame { iface: 3, frame: arp_request("198.51.100.77") }, t0));
        assert_eq!((reply[0].0, eth_src(&reply[0].2)), (3, M2));
        assert!(
            sends(&a.handle(Input::Frame { iface: 3, frame: arp_request("192.0.2.50") }, t0)).is_empty(),
            "eth1 is not on 192.0.2.0/24"
        );
        assert!(
            sends(&a.handle(Input::Frame { iface: 2, frame: arp_request("198.51.100.77") }, t0)).is_empty(),
            "eth0 is not on 198.51.100.0/24"
        );
        let st = a.status();
        assert_eq!(st[0].answering_on, vec![("eth0".to_string(), M1)]);
        assert_eq!(st[1].answering_on, vec![("eth1".to_string(), M2)]);
    }

    #[test]
    fn ip_outside_every_subnet_is_answered_on_every_allowed_nic_as_metallb_does() {
        let (mut a, t0) = setup(1);
        let out = a.handle(Input::Claims(vec![claim("203.0.113.5")]), t0);
        let on: Vec<u32> = sends(&out).iter().map(|s| s.0).collect();
        assert_eq!(on, vec![2, 3], "a GARP on eth0 and eth1, none on lo: {out:?}");
        assert!(a.failures().is_empty());
        // Excluded interfaces stay out.
        let mut c = claim("203.0.113.5");
        c.exclude_interfaces = vec!["eth0".into()];
        a.handle(Input::Claims(vec![c]), t0);
        assert_eq!(a.status()[0].answering_on, vec![("eth1".to_string(), M2)]);
        // Nothing usable: a failure that says so.
        let mut l = ifaces();
        l[1].up = false;
        l[2].up = false;
        a.handle(Input::Ifaces(l), t0);
        assert!(a.status()[0].error.as_deref().unwrap().starts_with("no usable interface ("), "{:?}", a.status());
    }

    #[test]
    fn an_ip_whose_subnets_nic_went_away_is_a_failure_not_answered_on_other_nics() {
        let (mut a, t0) = setup(1);
        a.handle(Input::Claims(vec![claim("198.51.100.77")]), t0);
        assert_eq!(a.status()[0].answering_on, vec![("eth1".to_string(), M2)]);
        // eth1 deleted (or its address removed): the IP's segment is not reachable from here any more.
        let out = a.handle(Input::Ifaces(ifaces()[..2].to_vec()), t0);
        assert!(sends(&out).is_empty(), "nothing on eth0: {out:?}");
        assert_eq!(a.failures(), ["198.51.100.77".parse().unwrap()].into());
        assert_eq!(a.status()[0].error.as_deref(), Some("no usable interface on the IP's subnet"));
        // The same NIC back: answered there again.
        a.handle(Input::Ifaces(ifaces()), t0);
        assert_eq!(a.status()[0].answering_on, vec![("eth1".to_string(), M2)]);
    }

    #[test]
    fn ip_outside_every_subnet_with_interfaces_listed() {
        let (mut a, t0) = setup(1);
        let mut c = claim("203.0.113.5");
        c.interfaces = vec!["eth*".into()];
        c.exclude_interfaces = vec!["eth0".into()];
        let out = a.handle(Input::Claims(vec![c.clone()]), t0);
        assert!(a.failures().is_empty(), "{out:?}");
        assert_eq!(sends(&out)[0].0, 3);
        assert_eq!(a.status()[0].answering_on, vec![("eth1".to_string(), M2)]);
        c.interfaces = vec!["bond*".into()];
        a.handle(Input::Claims(vec![c]), t0);
        assert!(a.status()[0].error.as_deref().unwrap().contains("among [\"bond*\"]"));
    }

    #[test]
    fn filters_apply_on_the_subnet_too() {
        let (mut a, t0) = setup(1);
        let mut c = claim("192.0.2.50");
        c.exclude_interfaces = vec!["eth*".into()];
        a.handle(Input::Claims(vec![c]), t0);
        assert_eq!(a.failures(), ["192.0.2.50".parse().unwrap()].into());
        let mut c = claim("192.0.2.50");
        c.interfaces = vec!["eth1".into()];
        a.handle(Input::Claims(vec![c]), t0);
        assert_eq!(
            a.status()[0].answering_on,
            vec![("eth1".to_string(), M2)],
            "listed interface when the subnet's is not allowed"
        );
    }

    #[test]
    fn ipv6_claim_joins_its_group_answers_ns_and_leaves() {
        let (mut a, t0) = setup(1);
        let target: Ipv6Addr = "2001:db8::50".parse().unwrap();
        let group = ndp::solicited_node_mac(target);
        let out = a.handle(Input::Claims(vec![claim("2001:db8::50"), claim("192.0.2.50")]), t0);
        assert_eq!(out[..2], [Action::OpenSocket { iface: 2 }, Action::Join { iface: 2, group }]);
        let s = sends(&out);
        assert_eq!(
            s[1].2,
            ndp::build_unsolicited_na(M1, "fe80::1".parse().unwrap(), target),
            "unsolicited NA from the link-local address"
        );

        let ns = ndp::build_ns(HOST, "2001:db8::9".parse().unwrap(), target);
        let s = sends(&a.handle(Input::Frame { iface: 2, frame: ns.clone() }, t0));
        assert_eq!(s[0].2, ndp::build_solicited_na(M1, &ndp::parse_ns(&ns).unwrap()));
        let dad = ndp::build_ns(HOST, Ipv6Addr::UNSPECIFIED, target);
        assert!(sends(&a.handle(Input::Frame { iface: 2, frame: dad }, t0)).is_empty(), "DAD probe");

        let out = a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        assert_eq!(out, vec![Action::Leave { iface: 2, group }], "socket stays for the IPv4 claim");
        assert!(sends(&a.handle(Input::Frame { iface: 2, frame: ns }, t0)).is_empty());
    }

    #[test]
    fn own_frames_announcements_and_malformed_frames_are_not_answered() {
        let (mut a, t0) = setup(1);
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        let own = arp::build_request(M1, "192.0.2.1".parse().unwrap(), "192.0.2.50".parse().unwrap());
        assert!(sends(&a.handle(Input::Frame { iface: 2, frame: own }, t0)).is_empty());
        // Another host announcing the IP is no question: not answered (it is a conflict, which this node
        // wins with the lower MAC: its only frame is a re-announcement; see conflict_table).
        let vip = "192.0.2.50".parse().unwrap();
        let announcement = arp::build_gratuitous(HOST, vip);
        let s = sends(&a.handle(Input::Frame { iface: 2, frame: announcement }, t0));
        assert_eq!(s, vec![(2, IpAddr::V4(vip), arp::build_gratuitous(M1, vip))]);
        let mut bad = arp_request("192.0.2.50");
        bad[18] = 8;
        assert!(sends(&a.handle(Input::Frame { iface: 2, frame: bad }, t0)).is_empty());
        assert!(sends(&a.handle(Input::Frame { iface: 2, frame: vec![1, 2, 3] }, t0)).is_empty());
        assert_eq!(a.counters().malformed_dropped, 2);
        assert_eq!(a.counters().requests_received, 0);
    }

    #[test]
    fn interface_down_fails_the_claim_and_up_announces_again() {
        let (mut a, t0) = setup(1);
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        let mut l = ifaces();
        l[1].up = false;
        let out = a.handle(Input::Ifaces(l), t0);
        assert_eq!(
            out,
            vec![Action::CloseSocket { iface: 2 }, Action::Failures(["192.0.2.50".parse().unwrap()].into())]
        );
        assert_eq!(a.status()[0].error.as_deref(), Some("no usable interface on the IP's subnet (eth0: down)"));
        let out = a.handle(Input::Ifaces(ifaces()), t0 + SEC);
        assert_eq!(sends(&out).len(), 1, "announced again on the way back");
        assert!(a.failures().is_empty());
    }

    #[test]
    fn socket_failure_is_reported_and_retried() {
        let (mut a, t0) = setup(1);
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        let out = a.handle(Input::IfaceFailed { iface: 2, reason: "socket: boom".into() }, t0);
        assert!(out.contains(&Action::CloseSocket { iface: 2 }));
        assert_eq!(timer(&out), Some(t0 + RETRY_FAILED));
        assert!(a.status()[0].error.as_deref().unwrap().contains("eth0: socket: boom"));
        let out = a.handle(Input::Timer, t0 + RETRY_FAILED / 2);
        assert_eq!(out, vec![Action::ArmTimer(t0 + RETRY_FAILED)], "still failed");
        let out = a.handle(Input::Timer, t0 + RETRY_FAILED);
        assert_eq!(out[0], Action::OpenSocket { iface: 2 });
        assert!(a.failures().is_empty());
    }

    #[test]
    fn interface_gone_fails_the_claim() {
        let (mut a, t0) = setup(1);
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        let mut l = ifaces();
        l.remove(1);
        a.handle(Input::Ifaces(l), t0);
        assert_eq!(a.failures(), ["192.0.2.50".parse().unwrap()].into());
        assert!(a.status()[0].answering_on.is_empty());
    }

    const LOWER: Mac = [2, 0, 0, 0, 0, 0]; // below M1
    const HIGHER: Mac = [2, 0, 0, 0, 0, 0x50];

    fn conflicts(a: &[Action]) -> Vec<(IpAddr, u32, Mac, bool)> {
        a.iter()
            .filter_map(|x| match x {
                Action::Conflict { ip, iface, other, won, .. } => Some((*ip, *iface, *other, *won)),
                _ => None,
            })
            .collect()
    }

    fn answered(a: &mut Announcer, now: Instant) -> bool {
        !sends(&a.handle(Input::Frame { iface: 2, frame: arp_request("192.0.2.50") }, now)).is_empty()
    }

    /// (who claims the IP on the wire, how) → do we keep answering, what do we send at once.
    #[test]
    fn conflict_table() {
        let vip: Ipv4Addr = "192.0.2.50".parse().unwrap();
        let client: Ipv4Addr = "192.0.2.9".parse().unwrap();
        struct Case {
            what: &'static str,
            frame: Vec<u8>,
            on: u32,
            seen: bool,
            won: bool,
        }
        let cases = [
            Case {
                what: "GARP from a higher MAC",
                frame: arp::build_gratuitous(HIGHER, vip),
                on: 2,
                seen: true,
                won: true,
            },
            Case {
                what: "GARP from a lower MAC",
                frame: arp::build_gratuitous(LOWER, vip),
                on: 2,
                seen: true,
                won: false,
            },
            Case {
                what: "reply from a higher MAC",
                frame: arp::build_reply(HIGHER, vip, HOST, client),
                on: 2,
                seen: true,
                won: true,
            },
            Case {
                what: "reply from a lower MAC",
                frame: arp::build_reply(LOWER, vip, HOST, client),
                on: 2,
                seen: true,
                won: false,
            },
            // Not conflicts: our own GARP looped back, one from our other interface, another segment,
            // an ordinary question, another IP.
            Case { what: "our own GARP", frame: arp::build_gratuitous(M1, vip), on: 2, seen: false, won: true },
            Case { what: "our other NIC", frame: arp::build_gratuitous(M2, vip), on: 2, seen: false, won: true },
            Case {
                what: "lower MAC on an interface not answering it",
                frame: arp::build_gratuitous(LOWER, vip),
                on: 3,
                seen: false,
                won: true,
            },
            Case { what: "a request", frame: arp::build_request(LOWER, client, vip), on: 2, seen: false, won: true },
            Case {
                what: "another IP",
                frame: arp::build_gratuitous(LOWER, "192.0.2.51".parse().unwrap()),
                on: 2,
                seen: false,
                won: true,
            },
        ];
        let vip6: Ipv6Addr = "2001:db8::50".parse().unwrap();
        let (mut a, t0) = setup(1);
        a.handle(Input::Claims(vec![claim("2001:db8::50")]), t0);
        let una = |m| Input::Frame { iface: 2, frame: ndp::build_unsolicited_na(m, "fe80::7".parse().unwrap(), vip6) };
        let out = a.handle(una(HIGHER), t0 + 10 * SEC);
        assert_eq!(conflicts(&out), vec![(vip6.into(), 2, HIGHER, true)]);
        assert_eq!(
            sends(&out),
            vec![(2, vip6.into(), ndp::build_unsolicited_na(M1, "fe80::1".parse().unwrap(), vip6))]
        );
        let out = a.handle(una(LOWER), t0 + 11 * SEC);
        assert_eq!(conflicts(&out), vec![(vip6.into(), 2, LOWER, false)]);
        assert!(a.status()[0].answering_on.is_empty());
        for c in cases {
            let (mut a, t0) = setup(1);
            a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
            let t = t0 + 10 * SEC; // burst over
            assert!(sends(&a.handle(Input::Timer, t)).is_empty(), "{}", c.what);
            let out = a.handle(Input::Frame { iface: c.on, frame: c.frame }, t);
            let got = conflicts(&out);
            assert_eq!(got.len(), usize::from(c.seen), "{}: {out:?}", c.what);
            assert_eq!(a.counters().conflicts_seen, u64::from(c.seen), "{}", c.what);
            assert_eq!(a.counters().conflicts_lost, u64::from(c.seen && !c.won), "{}", c.what);
            if c.seen {
                assert_eq!(got[0].3, c.won, "{}", c.what);
            }
            // The winner re-announces at once (one GARP), the loser sends nothing.
            let s = sends(&out);
            if c.seen {
                let expect = if c.won { vec![(2, vip.into(), arp::build_gratuitous(M1, vip))] } else { vec![] };
                assert_eq!(s, expect, "{}", c.what);
            } else {
                assert!(s.iter().all(|f| f.2 != arp::build_gratuitous(M1, vip)), "{}: no re-announcement", c.what);
            }
            assert_eq!(answered(&mut a, t), !c.seen || c.won, "{}: answers after", c.what);
            assert_eq!(a.status()[0].answering_on.is_empty(), c.seen && !c.won, "{}", c.what);
            assert!(a.failures().is_empty(), "{}: a lost conflict is no failure (no hand-off)", c.what);
        }
    }

    #[test]
    fn the_winner_reannounces_at_most_once_per_half_interval() {
        let (mut a, t0) = setup(0);
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        let garp = || Input::Frame { iface: 2, frame: arp::build_gratuitous(HIGHER, "192.0.2.50".parse().unwrap()) };
        assert_eq!(sends(&a.handle(garp(), t0)).len(), 1);
        assert_eq!(sends(&a.handle(garp(), t0 + SEC / 4)).len(), 0, "rate limited");
        assert_eq!(sends(&a.handle(garp(), t0 + SEC / 2)).len(), 1);
        assert_eq!(a.counters().conflicts_seen, 3);
        assert_eq!(a.counters().gratuitous_sent, 2);
    }

    #[test]
    fn the_loser_is_quiet_then_probes_and_answers_again_only_when_nobody_answers_the_probe() {
        let (mut a, t0) = setup(2);
        let vip: Ipv4Addr = "192.0.2.50".parse().unwrap();
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        let garp = || Input::Frame { iface: 2, frame: arp::build_gratuitous(LOWER, vip) };
        // The winner's answer to our probe: a reply to the probe's sender (MAC, 0.0.0.0).
        let reply = |m| Input::Frame { iface: 2, frame: arp::build_reply(m, vip, M1, Ipv4Addr::UNSPECIFIED) };
        let wait = Duration::from_millis(250);
        let out = a.handle(garp(), t0);
        assert!(!out.contains(&Action::CloseSocket { iface: 2 }), "the socket stays for the probe: {out:?}");
        assert_eq!(timer(&out), Some(t0 + SEC / 2), "the first quiet period is half an interval");
        assert!(!answered(&mut a, t0 + SEC / 4));
        assert!(a.status()[0].error.as_deref().unwrap().contains("02:00:00:00:00:00"), "{:?}", a.status());
        // Quiet over: a probe (a question nobody's cache learns from), nothing else, and a wait.
        let t = t0 + SEC / 2;
        let out = a.handle(Input::Timer, t);
        assert_eq!(sends(&out), vec![(2, IpAddr::V4(vip), arp::build_probe(M1, vip))]);
        assert!(arp::decode_claim(&arp::build_probe(M1, vip)).is_none());
        assert_eq!(timer(&out), Some(t + wait));
        assert!(!answered(&mut a, t));
        // The winner is still there and answers: quiet for a whole interval, not a frame sent.
        let t = t + Duration::from_millis(5);
        let out = a.handle(reply(LOWER), t);
        assert!(sends(&out).is_empty(), "{out:?}");
        assert_eq!(timer(&out), Some(t + SEC));
        assert_eq!(a.counters().conflicts_lost, 2);
        for _ in 0..5 {
            assert!(sends(&a.handle(Input::Timer, t + wait)).is_empty(), "the old wait ended nothing");
            assert!(!answered(&mut a, t + wait));
        }
        // Probe again; this time nobody answers (the winner released the IP): after the wait, answered
        // again with a new burst. The silence was at most one interval and one wait.
        let t = t + SEC;
        assert_eq!(sends(&a.handle(Input::Timer, t)), vec![(2, IpAddr::V4(vip), arp::build_probe(M1, vip))]);
        let out = a.handle(Input::Timer, t + wait);
        assert_eq!(sends(&out), vec![(2, IpAddr::V4(vip), arp::build_gratuitous(M1, vip))]);
        assert!(answered(&mut a, t + wait));
        // A higher MAC answering our probe means the lower one has gone: answer again at once.
        let t = t + 2 * SEC;
        a.handle(garp(), t);
        a.handle(Input::Timer, t + SEC);
        let out = a.handle(reply(HIGHER), t + SEC);
        assert_eq!(conflicts(&out), vec![(IpAddr::V4(vip), 2, HIGHER, true)]);
        assert_eq!(sends(&out), vec![(2, IpAddr::V4(vip), arp::build_gratuitous(M1, vip))]);
        assert!(answered(&mut a, t + SEC));
        // A new gossip view ends the quiet period at once (a healed partition: the winner's node
        // releases the IP at the same moment), and the next loss is half an interval again.
        let t = t + 3 * SEC;
        a.handle(garp(), t);
        assert!(!answered(&mut a, t));
        let out = a.handle(Input::Claims(vec![Claim { view: 1, ..claim("192.0.2.50") }]), t);
        assert_eq!(sends(&out).len(), 1, "announces again at once: {out:?}");
        assert!(answered(&mut a, t));
        assert_eq!(timer(&a.handle(garp(), t)), Some(t + SEC / 2));
        // A new ownership starts from a clean slate: quiet goes, half an interval again.
        a.handle(Input::Claims(vec![]), t);
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t);
        assert!(answered(&mut a, t));
        assert_eq!(timer(&a.handle(garp(), t)), Some(t + SEC / 2));
    }

    #[test]
    fn an_ipv6_loser_probes_with_a_neighbor_solicitation_from_its_link_local_address() {
        let (mut a, t0) = setup(1);
        let vip: Ipv6Addr = "2001:db8::50".parse().unwrap();
        a.handle(Input::Claims(vec![claim("2001:db8::50")]), t0);
        let una = ndp::build_unsolicited_na(LOWER, "fe80::7".parse().unwrap(), vip);
        a.handle(Input::Frame { iface: 2, frame: una }, t0);
        let out = a.handle(Input::Timer, t0 + SEC / 2);
        let probe = ndp::build_ns(M1, "fe80::1".parse().unwrap(), vip);
        assert_eq!(sends(&out), vec![(2, IpAddr::V6(vip), probe.clone())]);
        assert!(ndp::decode_na_claim(&probe).is_none(), "a question, not a claim");
        // The winner answers it (a solicited NA to us): quiet on.
        let ns = ndp::parse_ns(&probe).unwrap();
        let answer = ndp::build_solicited_na(LOWER, &ns);
        let out = a.handle(Input::Frame { iface: 2, frame: answer }, t0 + SEC / 2);
        assert!(sends(&out).is_empty(), "{out:?}");
        assert!(a.status()[0].answering_on.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Claims(Vec<(u8, u8)>),
        Ifaces(u8),
        Request(u8, u8),
        /// A gratuitous ARP from another MAC, lower (true) or higher than ours.
        Garp(u8, u8, bool),
        Failed(u8),
        Tick(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            proptest::collection::vec((0u8..6, 0u8..4), 0..4).prop_map(Op::Claims),
            any::<u8>().prop_map(Op::Ifaces),
            (0u8..4, 0u8..6).prop_map(|(i, ip)| Op::Request(i, ip)),
            (0u8..4, 0u8..6, any::<bool>()).prop_map(|(i, ip, lower)| Op::Garp(i, ip, lower)),
            (0u8..4).prop_map(Op::Failed),
            any::<u16>().prop_map(Op::Tick),
        ]
    }

    const IPS: [&str; 6] = ["192.0.2.50", "198.51.100.77", "203.0.113.5", "2001:db8::50", "2001:db8::51", "192.0.2.1"];
    const FILTERS: [&[&str]; 4] = [&[], &["eth0"], &["eth*"], &["eth1"]];

    proptest! {
        /// Whatever happens: every frame is for an IP owned at that moment, sent on an interface that is
        /// open and chosen for it; sockets are opened before use; the failure report matches status.
        #[test]
        fn sends_only_for_owned_ips_on_open_sockets(ops in proptest::collection::vec(op(), 1..40)) {
            let (mut a, mut now) = setup(3);
            let mut open: BTreeSet<u32> = BTreeSet::new();
            let mut owned: BTreeSet<IpAddr> = BTreeSet::new();
            let mut reported = BTreeSet::new();
            for op in ops {
                let input = match op {
                    Op::Claims(list) => {
                        let claims: Vec<Claim> = list.iter().map(|(ip, f)| Claim {
                            ip: IPS[usize::from(*ip)].parse().unwrap(),
                            interfaces: FILTERS[usize::from(*f)].iter().map(|s| s.to_string()).collect(),
                            exclude_interfaces: vec![],
                            // Some claims only evaluated: never a frame for them.
                            standby: *f % 3 == 2,
                            view: u64::from(list.len() as u8 % 2),
                        }).collect();
                        // A repeated IP: the last claim of it counts, as in the announcer.
                        let last: BTreeMap<IpAddr, bool> = claims.iter().map(|c| (c.ip, c.standby)).collect();
                        owned = last.into_iter().filter(|(_, standby)| !standby).map(|(ip, _)| ip).collect();
                        Input::Claims(claims)
                    }
                    Op::Ifaces(bits) => {
                        let mut l = ifaces();
                        l[1].up = bits & 1 == 0;
                        l[2].up = bits & 2 == 0;
                        if bits & 4 != 0 { l.remove(2); }
                        Input::Ifaces(l)
                    }
                    Op::Request(i, ip) => {
                        let frame = match IPS[usize::from(ip)].parse().unwrap() {
                            IpAddr::V4(v4) => arp::build_request(HOST, Ipv4Addr::new(192, 0, 2, 9), v4),
                            IpAddr::V6(v6) => ndp::build_ns(HOST, "2001:db8::9".parse().unwrap(), v6),
                        };
                        Input::Frame { iface: u32::from(i), frame }
                    }
                    Op::Garp(i, ip, lower) => {
                        let other = if lower { [0, 0, 0, 0, 0, 7] } else { [4, 0, 0, 0, 0, 7] };
                        let frame = match IPS[usize::from(ip)].parse().unwrap() {
                            IpAddr::V4(v4) => arp::build_gratuitous(other, v4),
                            IpAddr::V6(v6) => ndp::build_unsolicited_na(other, v6, v6),
                        };
                        Input::Frame { iface: u32::from(i), frame }
                    }
                    Op::Failed(i) => Input::IfaceFailed { iface: u32::from(i), reason: "x".into() },
                    Op::Tick(ms) => { now += Duration::from_millis(u64::from(ms)); Input::Timer }
                };
                for action in a.handle(input, now) {
                    match action {
                        Action::OpenSocket { iface } => prop_assert!(open.insert(iface), "opened twice"),
                        Action::CloseSocket { iface } => prop_assert!(open.remove(&iface), "closed unopened"),
                        Action::Join { iface, .. } | Action::Leave { iface, .. } => prop_assert!(open.contains(&iface)),
                        Action::Send { iface, ip, frame } => {
                            prop_assert!(owned.contains(&ip), "frame for {ip}, not owned");
                            prop_assert!(open.contains(&iface));
                            let st = a.status().into_iter().find(|s| s.ip == ip).unwrap();
                            let name = &ifaces().into_iter().find(|i| i.index == iface).unwrap().name;
                            // Answered there, or a probe after a lost conflict: a question, never a claim.
                            let probe = arp::decode_claim(&frame).is_none() && ndp::decode_na_claim(&frame).is_none();
                            prop_assert!(probe || st.answering_on.iter().any(|(n, _)| n == name));
                        }
                        Action::ArmTimer(t) => prop_assert!(t >= now),
                        Action::Failures(f) => reported = f,
                        Action::StandbyFailures(f) => prop_assert!(f.iter().all(|ip| !owned.contains(ip))),
                        Action::Conflict { ip, won, quiet_until, .. } => {
                            prop_assert!(owned.contains(&ip));
                            prop_assert_eq!(won, quiet_until.is_none());
                        }
                    }
                }
                prop_assert_eq!(&reported, &a.failures());
                // Every owned IP is answered, a failure, or quiet after lost conflicts (never two of these).
                let st = a.status();
                let answering = st.iter().filter(|s| !s.answering_on.is_empty()).count();
                let quiet = st.iter().filter(|s| s.answering_on.is_empty() && !reported.contains(&s.ip)).count();
                prop_assert!(st.iter().filter(|s| reported.contains(&s.ip)).all(|s| s.answering_on.is_empty()));
                prop_assert_eq!(answering + reported.len() + quiet, owned.len());
                prop_assert_eq!(st.len(), owned.len());
                prop_assert!(a.counters().conflicts_lost <= a.counters().conflicts_seen);
            }
        }
    }
}
