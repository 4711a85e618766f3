//! Real BGP peers inside a namespace: gobgpd 3.x, BIRD 2, FRR 8 bgpd (alone, `-Z`).
//!
//! Each runs in its own state dir (config, control socket, log) with its PID recorded; it is killed when
//! its handle is dropped. Every neighbor gets IPv4 and IPv6 unicast. Build one with [`PeerConfig`] and
//! [`Neighbor`], then `Gobgpd::start(&ns, cfg)` / `Bird::start` / `Frr::start`; read it through the
//! [`BgpPeer`] trait: [`BgpPeer::session_state`], [`BgpPeer::routes`] (only routes received from
//! neighbors, normalised into [`Route`]), [`BgpPeer::last_notification_received`].
//!
//! Layout: this file holds what every daemon shares (the configuration builders, [`Route`],
//! [`Notification`], [`PeerCore`] and the [`BgpPeer`] trait with its waits); `gobgpd.rs`, `bird.rs` and
//! `frr.rs` each hold one daemon (its config file, CLI and the parsers of its output); `normalise.rs`
//! holds the address and state spellings they all map onto.
//!
//! Timing facts worth knowing (see shared/netlab/README.md): an active gobgpd waits 5–9 s before its
//! first connect, so make gobgpd passive when the other side is active; BIRD and FRR here connect within
//! about a second.

mod bird;
mod frr;
mod gobgpd;
mod normalise;

pub use bird::{parse_bird_log, parse_bird_routes, Bird};
pub use frr::{parse_frr_prefix, Frr, FRR_BGPD};
pub use gobgpd::{parse_gobgp_log, parse_gobgp_rib, Gobgpd};
pub use normalise::{norm_ip, norm_next_hop, norm_prefix, normalise_state};

use super::lab::{Netns, Proc};
use super::{tail, try_wait_until};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long [`BgpPeer::wait_established`] waits by default (covers gobgpd's 5–9 s first connect).
pub const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the route waits wait by default.
pub const ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

/// One configured BGP neighbor of a peer daemon.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbor {
    /// Normalised address text.
    pub address: String,
    pub remote_asn: u32,
    /// Never connect, only accept.
    pub passive: bool,
    /// TCP-MD5 password.
    pub password: Option<String>,
    /// Hold time in seconds (default 90); keepalive is a third of it.
    pub hold_time: Option<u16>,
    /// eBGP multihop TTL.
    pub ebgp_multihop: Option<u8>,
    /// The neighbor's TCP port (default 179).
    pub port: Option<u16>,
    /// Local address to connect from.
    pub source_address: Option<String>,
    /// Do not announce the 4-octet AS capability (RFC 6793): an "OLD" 2-octet speaker. BIRD only.
    pub no_as4: bool,
    /// GTSM (RFC 5082): TTL 255 out, only 255 accepted. BIRD and FRR.
    pub gtsm: bool,
}

impl Neighbor {
    /// Panics if `address` is not an IP address.
    pub fn new(address: impl ToString, remote_asn: u32) -> Neighbor {
        Neighbor {
            address: norm_ip(&address.to_string()),
            remote_asn,
            passive: false,
            password: None,
            hold_time: None,
            ebgp_multihop: None,
            gtsm: false,
            port: None,
            source_address: None,
            no_as4: false,
        }
    }
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self
    }
    pub fn password(mut self, pw: &str) -> Self {
        self.password = Some(pw.to_string());
        self
    }
    pub fn hold_time(mut self, secs: u16) -> Self {
        self.hold_time = Some(secs);
        self
    }
    pub fn gtsm(mut self) -> Self {
        self.gtsm = true;
        self
    }

    pub fn ebgp_multihop(mut self, ttl: u8) -> Self {
        self.ebgp_multihop = Some(ttl);
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    pub fn source_address(mut self, addr: impl ToString) -> Self {
        self.source_address = Some(norm_ip(&addr.to_string()));
        self
    }
    /// Behave as a 2-octet-only ("OLD", RFC 6793) speaker on this session: BIRD's `enable as4 off`.
    /// gobgpd and FRR cannot be configured so and panic.
    pub fn no_as4(mut self) -> Self {
        self.no_as4 = true;
        self
    }
    fn is_v6(&self) -> bool {
        self.address.contains(':')
    }
    fn hold(&self) -> u16 {
        self.hold_time.unwrap_or(90)
    }
    fn keepalive(&self) -> u16 {
        (self.hold() / 3).max(1)
    }
}

/// A prefix a peer originates, with optional attributes.
#[derive(Clone, Debug, PartialEq)]
pub struct Announce {
    pub prefix: String,
    /// `"65000:100"`
    pub communities: Vec<String>,
    /// `"1:2:3"`
    pub large_communities: Vec<String>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
}

impl Announce {
    pub fn new(prefix: &str) -> Announce {
        Announce {
            prefix: norm_prefix(prefix),
            communities: vec![],
            large_communities: vec![],
            med: None,
            local_pref: None,
        }
    }
    pub fn community(mut self, c: &str) -> Self {
        self.communities.push(c.to_string());
        self
    }
    pub fn large_community(mut self, l: &str) -> Self {
        self.large_communities.push(l.to_string());
        self
    }
    pub fn med(mut self, med: u32) -> Self {
        self.med = Some(med);
        self
    }
    pub fn local_pref(mut self, lp: u32) -> Self {
        self.local_pref = Some(lp);
        self
    }
    fn is_v6(&self) -> bool {
        self.prefix.contains(':')
    }
    fn afi(&self) -> &'static str {
        if self.is_v6() {
            "ipv6"
        } else {
            "ipv4"
        }
    }
}

/// Configuration of a peer daemon.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    pub asn: u32,
    pub router_id: String,
    pub neighbors: Vec<Neighbor>,
    /// TCP port the daemon listens on (default 179).
    pub listen_port: Option<u16>,
    /// Prefixes originated from the start (and kept across restarts together with later `announce`s).
    pub announce: Vec<Announce>,
    /// Graceful restart (RFC 4724) on every session. Off by default, so that a session that goes down
    /// takes its routes with it (BIRD would otherwise keep FRR's routes as stale).
    pub graceful_restart: bool,
    /// BFD on every session: (min rx ms, min tx ms, multiplier). BIRD only.
    pub bfd: Option<(u32, u32, u8)>,
    /// BFD authentication: (BIRD's type words, e.g. "meticulous keyed sha1", key id, password).
    pub bfd_auth: Option<(String, u8, String)>,
    /// BIRD only: every session logs its state changes, packets and each route added or removed
    /// (`debug { states, routes, packets }`) to bird.log.
    pub trace: bool,
}

impl PeerConfig {
    pub fn new(asn: u32, router_id: impl ToString) -> PeerConfig {
        PeerConfig {
            asn,
            router_id: router_id.to_string(),
            neighbors: vec![],
            listen_port: None,
            announce: vec![],
            graceful_restart: false,
            bfd: None,
            bfd_auth: None,
            trace: false,
        }
    }
    pub fn neighbor(mut self, n: Neighbor) -> Self {
        self.neighbors.push(n);
        self
    }
    pub fn listen_port(mut self, port: u16) -> Self {
        self.listen_port = Some(port);
        self
    }
    pub fn announce(mut self, a: Announce) -> Self {
        self.announce.push(a);
        self
    }
    /// BFD on every session (BIRD only): min rx / min tx intervals in ms and the detect multiplier.
    pub fn bfd(mut self, rx_ms: u32, tx_ms: u32, mult: u8) -> Self {
        self.bfd = Some((rx_ms, tx_ms, mult));
        self
    }
    /// BFD authentication (BIRD only): type as BIRD spells it, key id, password.
    pub fn bfd_auth(mut self, kind: &str, id: u8, password: &str) -> Self {
        self.bfd_auth = Some((kind.to_string(), id, password.to_string()));
        self
    }
    /// Enable graceful restart (restart time 120 s) on every session.
    pub fn graceful_restart(mut self) -> Self {
        self.graceful_restart = true;
        self
    }
    /// See [`PeerConfig::trace`].
    pub fn trace(mut self) -> Self {
        self.trace = true;
        self
    }
    fn neighbor_index(&self, addr: &str) -> usize {
        let a = norm_ip(addr);
        self.neighbors
            .iter()
            .position(|n| n.address == a)
            .unwrap_or_else(|| panic!("{addr} is not a configured neighbor"))
    }
}

/// A path received from a BGP neighbor, normalised across daemons.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// Canonical `addr/len`.
    pub prefix: String,
    /// Canonical address; an IPv4 next hop of an IPv6 route is shown IPv4-mapped (`::ffff:192.0.2.1`).
    pub next_hop: String,
    pub as_path: Vec<u32>,
    /// False if the AS_PATH has any AS_SET.
    pub as_path_is_sequence: bool,
    /// `"igp"`, `"egp"` or `"incomplete"`.
    pub origin: String,
    /// `"65000:100"`
    pub communities: Vec<String>,
    /// `"1:2:3"`
    pub large_communities: Vec<String>,
    /// Note: BIRD shows a LOCAL_PREF (default 100) on eBGP routes too.
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    /// Address of the neighbor it came from (empty if the daemon does not say).
    pub peer: String,
}

/// A NOTIFICATION the daemon received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    /// The daemon's own words.
    pub text: String,
}

impl Notification {
    pub fn is_cease(&self) -> bool {
        self.code == 6
    }
}

/// What every peer daemon handle has.
pub struct PeerCore {
    pub ns: Netns,
    pub dir: PathBuf,
    pub cfg: PeerConfig,
    proc: Option<Proc>,
    kind: &'static str,
}

impl PeerCore {
    fn new(kind: &'static str, ns: &Netns, cfg: PeerConfig) -> PeerCore {
        let dir = ns.state_dir(kind);
        PeerCore { ns: ns.clone(), dir, cfg, proc: None, kind }
    }
    fn log(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }
    fn spawn(&mut self, argv: &[&str]) {
        let label = format!("{} in {}", self.kind, self.ns.name());
        self.proc = Some(self.ns.spawn(&label, argv, &self.log(), &[]));
    }
    fn proc(&self) -> &Proc {
        self.proc.as_ref().unwrap_or_else(|| panic!("{} is not running", self.kind))
    }
    /// Waits until `ready` succeeds; panics early (with the log) if the process exits.
    fn wait_ready(&mut self, ready: impl Fn(&PeerCore) -> Result<(), String>) {
        let r = try_wait_until(Duration::from_secs(15), || {
            if let Some(st) = self.proc.as_mut().and_then(|p| p.try_wait()) {
                return Ok(Err(format!("exited with {st}")));
            }
            ready(self).map(Ok)
        });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => panic!(
                "{} in {} did not become ready: {e}\nconfig dir {}\nlog tail:\n{}",
                self.kind,
                self.ns.name(),
                self.dir.display(),
                tail(&self.log(), 30)
            ),
        }
    }
    /// Replaces (same prefix) or adds `a` in the kept announcements.
    fn remember(&mut self, a: &Announce) {
        self.cfg.announce.retain(|x| x.prefix != a.prefix);
        self.cfg.announce.push(a.clone());
    }
    fn forget(&mut self, prefix: &str) -> Announce {
        let p = norm_prefix(prefix);
        let i = self
            .cfg
            .announce
            .iter()
            .position(|a| a.prefix == p)
            .unwrap_or_else(|| panic!("{prefix} was not announced"));
        self.cfg.announce.remove(i)
    }
}

/// The operations tests use on any peer daemon.
pub trait BgpPeer {
    fn core(&self) -> &PeerCore;
    fn core_mut(&mut self) -> &mut PeerCore;
    /// Starts the daemon from `core().cfg` (including its announcements) and waits until it answers.
    fn start_process(&mut self);
    /// Normalised FSM state of the session with `neighbor`: `"Established"`, `"Idle"`, `"Connect"`,
    /// `"Active"`, `"OpenSent"`, `"OpenConfirm"` (or the daemon's own word for anything else).
    fn session_state(&self, neighbor: &str) -> String;
    /// IPv4 + IPv6 unicast paths received from neighbors (not self-originated), sorted.
    fn routes(&self) -> Vec<Route>;
    /// The last NOTIFICATION received from `neighbor`, where the daemon tells (BIRD, gobgpd: from the
    /// daemon's log; FRR: `show bgp neighbors` — only if it caused the last reset).
    fn last_notification_received(&self, neighbor: &str) -> Option<Notification>;
    /// Originates (or re-originates with new attributes) a prefix.
    fn announce(&mut self, a: Announce);
    /// Stops originating `prefix`.
    fn withdraw(&mut self, prefix: &str);
    /// Administrative shutdown of one session (the daemon sends a Cease).
    fn disable_neighbor(&self, neighbor: &str);
    /// Undo [`BgpPeer::disable_neighbor`].
    fn enable_neighbor(&self, neighbor: &str);
    /// The daemon's own status text, for failure messages.
    fn status_dump(&self) -> String;

    fn kind(&self) -> &'static str {
        self.core().kind
    }
    fn ns(&self) -> &Netns {
        &self.core().ns
    }
    fn dir(&self) -> &Path {
        &self.core().dir
    }
    fn pid(&self) -> u32 {
        self.core().proc().pid()
    }
    fn log_tail(&self, n: usize) -> String {
        tail(&self.core().log(), n)
    }
    /// SIGSTOP.
    fn freeze(&self) {
        self.core().proc().freeze();
    }
    /// SIGCONT.
    fn unfreeze(&self) {
        self.core().proc().unfreeze();
    }
    /// SIGKILL (and reap).
    fn kill9(&mut self) {
        if let Some(mut p) = self.core_mut().proc.take() {
            p.kill9();
        }
    }
    fn is_running(&mut self) -> bool {
        self.core_mut().proc.as_mut().is_some_and(|p| p.is_running())
    }
    /// kill -9 (if running) and start again with the same config and current announcements.
    fn restart(&mut self) {
        self.kill9();
        self.start_process();
    }

    /// [`super::wait_until`] whose panic message also carries this daemon's status and log tail.
    #[track_caller]
    fn wait<T>(&self, timeout: Duration, what: &str, f: impl FnMut() -> Result<T, String>) -> T
    where
        Self: Sized,
    {
        match try_wait_until(timeout, f) {
            Ok(v) => v,
            Err(last) => panic!(
                "timed out after {timeout:?} waiting for {what} at {} in {}; last observed: {last}\n\
                 ---- status ----\n{}\n---- log tail ----\n{}",
                self.kind(),
                self.ns().name(),
                self.status_dump(),
                self.log_tail(20)
            ),
        }
    }
    #[track_caller]
    fn wait_established(&self, neighbor: &str)
    where
        Self: Sized,
    {
        self.wait_state(neighbor, "Established", ESTABLISH_TIMEOUT);
    }
    #[track_caller]
    fn wait_state(&self, neighbor: &str, state: &str, timeout: Duration)
    where
        Self: Sized,
    {
        self.wait(timeout, &format!("session with {neighbor} to be {state}"), || {
            let s = self.session_state(neighbor);
            if s == state {
                Ok(())
            } else {
                Err(s)
            }
        });
    }
    /// Waits until the session with `neighbor` is in any state other than Established.
    #[track_caller]
    fn wait_not_established(&self, neighbor: &str, timeout: Duration) -> String
    where
        Self: Sized,
    {
        self.wait(timeout, &format!("session with {neighbor} to leave Established"), || {
            let s = self.session_state(neighbor);
            if s != "Established" {
                Ok(s)
            } else {
                Err(s)
            }
        })
    }
    /// Received paths for `prefix`.
    fn routes_for(&self, prefix: &str) -> Vec<Route> {
        let p = norm_prefix(prefix);
        self.routes().into_iter().filter(|r| r.prefix == p).collect()
    }
    /// Waits until a path for `prefix` is received and returns it (the first if several).
    #[track_caller]
    fn wait_route(&self, prefix: &str) -> Route
    where
        Self: Sized,
    {
        self.wait(ROUTE_TIMEOUT, &format!("a route for {prefix}"), || {
            let all = self.routes();
            let p = norm_prefix(prefix);
            all.iter().find(|r| r.prefix == p).cloned().ok_or_else(|| format!("routes: {all:#?}"))
        })
    }
    /// Waits until a received path satisfies `pred` and returns it.
    #[track_caller]
    fn wait_route_matching(&self, what: &str, pred: impl Fn(&Route) -> bool) -> Route
    where
        Self: Sized,
    {
        self.wait(ROUTE_TIMEOUT, what, || {
            let all = self.routes();
            all.iter().find(|r| pred(r)).cloned().ok_or_else(|| format!("routes: {all:#?}"))
        })
    }
    /// Waits until no path for `prefix` is left.
    #[track_caller]
    fn wait_no_route(&self, prefix: &str)
    where
        Self: Sized,
    {
        self.wait(ROUTE_TIMEOUT, &format!("{prefix} to be withdrawn"), || {
            let left = self.routes_for(prefix);
            if left.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:#?}"))
            }
        })
    }
    /// Waits until a NOTIFICATION from `neighbor` has been recorded and returns it.
    #[track_caller]
    fn wait_notification(&self, neighbor: &str) -> Notification
    where
        Self: Sized,
    {
        self.wait(ROUTE_TIMEOUT, &format!("a NOTIFICATION from {neighbor}"), || {
            self.last_notification_received(neighbor).ok_or_else(|| "none".to_string())
        })
    }
}
