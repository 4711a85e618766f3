//! Real BGP peers inside a namespace: gobgpd 3.x, BIRD 2, FRR 8 bgpd (alone, `-Z`).
//!
//! Each runs in its own state dir (config, control socket, log) with its PID recorded; it is killed when
//! its handle is dropped. Every neighbor gets IPv4 and IPv6 unicast. Build one with [`PeerConfig`] and
//! [`Neighbor`], then `Gobgpd::start(&ns, cfg)` / `Bird::start` / `Frr::start`; read it through the
//! [`BgpPeer`] trait: [`BgpPeer::session_state`], [`BgpPeer::routes`] (only routes received from
//! neighbors, normalised into [`Route`]), [`BgpPeer::last_notification_received`].
//!
//! Timing facts worth knowing (see shared/netlab/README.md): an active gobgpd waits 5–9 s before its
//! first connect, so make gobgpd passive when the other side is active; BIRD and FRR here connect within
//! about a second.

use super::lab::{Netns, Proc};
use super::{run, tail, try_wait_until};
use serde_json::Value;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// FRR's bgpd (not in PATH).
pub const FRR_BGPD: &str = "/usr/lib/frr/bgpd";

/// How long [`BgpPeer::wait_established`] waits by default (covers gobgpd's 5–9 s first connect).
pub const ESTABLISH_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the route waits wait by default.
pub const ROUTE_TIMEOUT: Duration = Duration::from_secs(15);

static GOBGP_API_PORT: AtomicU16 = AtomicU16::new(50051);

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

// ---------------------------------------------------------------------------------------------------
// gobgpd

/// gobgpd 3.x. CLI: [`Gobgpd::cli`] (`gobgp -p PORT …` inside the namespace).
pub struct Gobgpd {
    core: PeerCore,
    api_port: u16,
}

impl Gobgpd {
    pub fn start(ns: &Netns, cfg: PeerConfig) -> Gobgpd {
        let mut g =
            Gobgpd { core: PeerCore::new("gobgpd", ns, cfg), api_port: GOBGP_API_PORT.fetch_add(1, Ordering::Relaxed) };
        g.start_process();
        g
    }

    /// Runs `gobgp -p PORT ARGS…` in the namespace.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let port = self.api_port.to_string();
        let mut argv = vec!["gobgp", "-p", &port];
        argv.extend_from_slice(args);
        self.core.ns.run(&argv)
    }

    #[track_caller]
    fn cli_ok(&self, args: &[&str]) -> String {
        self.cli(args).unwrap_or_else(|e| panic!("gobgpd in {}: {e}", self.core.ns.name()))
    }

    fn config(&self) -> String {
        assert!(self.core().cfg.bfd.is_none(), "the harness sets up BFD for BIRD only, not gobgpd");
        let c = &self.core.cfg;
        let mut s = format!("[global.config]\n  as = {}\n  router-id = \"{}\"\n", c.asn, c.router_id);
        if let Some(p) = c.listen_port {
            s += &format!("  port = {p}\n");
        }
        for n in &c.neighbors {
            assert!(!n.no_as4, "gobgpd cannot be configured without the 4-octet AS capability");
            s += &format!(
                "[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{}\"\n    peer-as = {}\n",
                n.address, n.remote_asn
            );
            if let Some(pw) = &n.password {
                s += &format!("    auth-password = \"{pw}\"\n");
            }
            s += &format!(
                "  [neighbors.timers.config]\n    hold-time = {}\n    keepalive-interval = {}\n    connect-retry = 1\n    idle-hold-time-after-reset = 1\n",
                n.hold(),
                n.keepalive()
            );
            s += "  [neighbors.transport.config]\n";
            if n.passive {
                s += "    passive-mode = true\n";
            }
            if let Some(p) = n.port {
                s += &format!("    remote-port = {p}\n");
            }
            if let Some(a) = &n.source_address {
                s += &format!("    local-address = \"{a}\"\n");
            }
            if let Some(ttl) = n.ebgp_multihop {
                s += &format!("  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = {ttl}\n");
            }
            if c.graceful_restart {
                s += "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 120\n";
            }
            for af in ["ipv4-unicast", "ipv6-unicast"] {
                s += &format!(
                    "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{af}\"\n"
                );
                if c.graceful_restart {
                    s += "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n";
                }
            }
        }
        s
    }

    fn rib_add(&self, a: &Announce) {
        let mut args: Vec<String> = vec!["global".into(), "rib".into(), "add".into(), a.prefix.clone()];
        if !a.communities.is_empty() {
            args.extend(["community".into(), a.communities.join(",")]);
        }
        if !a.large_communities.is_empty() {
            args.extend(["large-community".into(), a.large_communities.join(",")]);
        }
        if let Some(m) = a.med {
            args.extend(["med".into(), m.to_string()]);
        }
        if let Some(lp) = a.local_pref {
            args.extend(["local-pref".into(), lp.to_string()]);
        }
        args.extend(["-a".into(), a.afi().into()]);
        self.cli_ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    }

    /// Destinations in the global RIB of `afi` ("ipv4"/"ipv6"), from `gobgp global rib summary`
    /// (cheap at any table size, unlike listing every route).
    pub fn rib_count(&self, afi: &str) -> Result<u64, String> {
        let out = self.cli(&["global", "rib", "summary", "-a", afi])?;
        out.split("Destination:")
            .nth(1)
            .and_then(|r| r.trim_start().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .ok_or_else(|| format!("gobgp global rib summary: {out}"))
    }

    fn neighbor_json(&self, neighbor: &str) -> Result<Value, String> {
        let out = self.cli(&["neighbor", &norm_ip(neighbor), "-j"])?;
        serde_json::from_str(&out).map_err(|e| format!("gobgp neighbor json: {e}: {out}"))
    }
}

impl BgpPeer for Gobgpd {
    fn core(&self) -> &PeerCore {
        &self.core
    }
    fn core_mut(&mut self) -> &mut PeerCore {
        &mut self.core
    }

    fn start_process(&mut self) {
        let conf = self.core.dir.join("gobgpd.toml");
        fs::write(&conf, self.config()).unwrap();
        let api = format!("127.0.0.1:{}", self.api_port);
        let conf = conf.to_str().unwrap().to_string();
        self.core.spawn(&["gobgpd", "-f", &conf, "-l", "info", "--api-hosts", &api, "--pprof-disable"]);
        let port = self.api_port.to_string();
        self.core.wait_ready(|c| c.ns.run(&["gobgp", "-p", &port, "global"]).map(|_| ()));
        for a in self.core.cfg.announce.clone() {
            self.rib_add(&a);
        }
    }

    fn session_state(&self, neighbor: &str) -> String {
        match self.neighbor_json(neighbor) {
            Ok(v) => match &v["state"]["session_state"] {
                Value::Number(n) => match n.as_u64() {
                    Some(1) => "Idle",
                    Some(2) => "Connect",
                    Some(3) => "Active",
                    Some(4) => "OpenSent",
                    Some(5) => "OpenConfirm",
                    Some(6) => "Established",
                    _ => "Unknown",
                }
                .to_string(),
                Value::String(s) => normalise_state(s),
                _ => "Unknown".to_string(),
            },
            Err(e) => format!("(error: {e})"),
        }
    }

    fn routes(&self) -> Vec<Route> {
        let mut out = vec![];
        for af in ["ipv4", "ipv6"] {
            let text = self.cli_ok(&["global", "rib", "-a", af, "-j"]);
            out.extend(parse_gobgp_rib(&text));
        }
        out.sort();
        out
    }

    fn last_notification_received(&self, neighbor: &str) -> Option<Notification> {
        parse_gobgp_log(&fs::read_to_string(self.core.log()).unwrap_or_default(), &norm_ip(neighbor))
    }

    fn announce(&mut self, a: Announce) {
        if self.core.cfg.announce.iter().any(|x| x.prefix == a.prefix) {
            self.cli_ok(&["global", "rib", "del", &a.prefix, "-a", a.afi()]);
        }
        self.rib_add(&a);
        self.core.remember(&a);
    }

    fn withdraw(&mut self, prefix: &str) {
        let a = self.core.forget(prefix);
        self.cli_ok(&["global", "rib", "del", &a.prefix, "-a", a.afi()]);
    }

    fn disable_neighbor(&self, neighbor: &str) {
        self.cli_ok(&["neighbor", &norm_ip(neighbor), "disable"]);
    }

    fn enable_neighbor(&self, neighbor: &str) {
        self.cli_ok(&["neighbor", &norm_ip(neighbor), "enable"]);
    }

    fn status_dump(&self) -> String {
        self.cli(&["neighbor"]).unwrap_or_else(|e| e)
    }
}

pub fn parse_gobgp_rib(text: &str) -> Vec<Route> {
    let text = text.trim();
    if text.is_empty() || text == "null" {
        return vec![];
    }
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("gobgp rib json: {e}: {text}"));
    let mut out = vec![];
    let Some(map) = v.as_object() else { return out };
    for (pfx, paths) in map {
        for p in paths.as_array().into_iter().flatten() {
            let Some(peer) = p.get("neighbor-ip").and_then(Value::as_str) else {
                continue;
            }; // self-originated
            let mut r = Route {
                prefix: norm_prefix(pfx),
                as_path_is_sequence: true,
                peer: norm_ip(peer),
                ..Default::default()
            };
            for a in p["attrs"].as_array().into_iter().flatten() {
                match a["type"].as_u64() {
                    Some(1) => {
                        r.origin = match a["value"].as_u64() {
                            Some(1) => "egp",
                            Some(2) => "incomplete",
                            _ => "igp",
                        }
                        .to_string()
                    }
                    Some(2) => {
                        for seg in a["as_paths"].as_array().into_iter().flatten() {
                            if seg["segment_type"].as_u64() != Some(2) {
                                r.as_path_is_sequence = false;
                            }
                            r.as_path.extend(
                                seg["asns"]
                                    .as_array()
                                    .into_iter()
                                    .flatten()
                                    .filter_map(|x| x.as_u64())
                                    .map(|x| x as u32),
                            );
                        }
                    }
                    Some(3) => r.next_hop = a["nexthop"].as_str().unwrap_or_default().to_string(),
                    Some(14) if r.next_hop.is_empty() => {
                        r.next_hop = a["nexthop"].as_str().unwrap_or_default().to_string()
                    }
                    Some(4) => r.med = Some(a["metric"].as_u64().unwrap_or(0) as u32),
                    Some(5) => r.local_pref = Some(a["value"].as_u64().unwrap_or(0) as u32),
                    Some(8) => {
                        r.communities = a["communities"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_u64)
                            .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                            .collect()
                    }
                    Some(32) => {
                        r.large_communities = a["value"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|l| {
                                format!(
                                    "{}:{}:{}",
                                    l["ASN"].as_u64().unwrap_or(0),
                                    l["LocalData1"].as_u64().unwrap_or(0),
                                    l["LocalData2"].as_u64().unwrap_or(0)
                                )
                            })
                            .collect()
                    }
                    _ => {}
                }
            }
            r.next_hop = norm_next_hop(&r.prefix, &r.next_hop);
            out.push(r);
        }
    }
    out
}

/// gobgpd logs (JSON lines) `"msg":"Peer Down"` with `"Reason":"notification-received code 6(cease) subcode 2(…)"`.
pub fn parse_gobgp_log(log: &str, neighbor: &str) -> Option<Notification> {
    let mut last = None;
    for line in log.lines() {
        if !line.contains("notification-received") {
            continue;
        }
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        if v["msg"] != "Peer Down" || v["Key"].as_str().map(norm_ip).as_deref() != Some(neighbor) {
            continue;
        }
        let reason = v["Reason"].as_str().unwrap_or_default();
        let num_after = |key: &str| -> u8 {
            reason
                .split(key)
                .nth(1)
                .map(|s| s.chars().take_while(|c| c.is_ascii_digit()).collect::<String>())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
        last =
            Some(Notification { code: num_after(" code "), subcode: num_after(" subcode "), text: reason.to_string() });
    }
    last
}

// ---------------------------------------------------------------------------------------------------
// BIRD

/// BIRD 2. Control socket `DIR/bird.ctl`, log `DIR/bird.log`; protocol `n<i>` is neighbor i (1-based).
pub struct Bird {
    core: PeerCore,
}

impl Bird {
    pub fn start(ns: &Netns, cfg: PeerConfig) -> Bird {
        let mut b = Bird { core: PeerCore::new("bird", ns, cfg) };
        b.start_process();
        b
    }

    fn ctl(&self) -> PathBuf {
        self.core.dir.join("bird.ctl")
    }

    /// Runs `birdc -s SOCKET ARGS…` (a unix socket: no namespace needed) and returns its output.
    pub fn birdc(&self, args: &[&str]) -> Result<String, String> {
        let ctl = self.ctl();
        let mut argv = vec!["birdc", "-s", ctl.to_str().unwrap()];
        argv.extend_from_slice(args);
        let out = run(&argv)?;
        if out.lines().any(|l| l.contains("syntax error") || l.starts_with("Unable to")) {
            return Err(format!("birdc {}: {out}", args.join(" ")));
        }
        Ok(out)
    }

    /// The BIRD protocol name of `neighbor`.
    pub fn protocol(&self, neighbor: &str) -> String {
        format!("n{}", self.core.cfg.neighbor_index(neighbor) + 1)
    }

    fn config(&self) -> String {
        let c = &self.core.cfg;
        let d = &self.core.dir;
        // a next hop of the other family for routes exported over a session of one family
        let first_addr = |fam: &str| -> Option<String> {
            let out = self.core.ns.ip(&[fam, "-o", "addr", "show", "scope", "global"]);
            out.lines()
                .filter_map(|l| l.split_whitespace().nth(3))
                .next()
                .map(|a| a.split('/').next().unwrap().to_string())
        };
        let (v4nh, v6nh) = (first_addr("-4"), first_addr("-6"));
        let mut s = format!(
            "log \"{}\" all;\nrouter id {};\nprotocol device {{ scan time 10; }}\n",
            d.join("bird.log").display(),
            c.router_id
        );
        for (name, v6) in [("static4", false), ("static6", true)] {
            s += &format!("protocol static {name} {{\n  {};\n", if v6 { "ipv6" } else { "ipv4" });
            for a in c.announce.iter().filter(|a| a.is_v6() == v6) {
                let mut attrs = String::new();
                for comm in &a.communities {
                    attrs += &format!(" bgp_community.add(({})); ", comm.replace(':', ","));
                }
                for l in &a.large_communities {
                    attrs += &format!(" bgp_large_community.add(({})); ", l.replace(':', ","));
                }
                if let Some(m) = a.med {
                    attrs += &format!(" bgp_med = {m}; ");
                }
                if let Some(lp) = a.local_pref {
                    attrs += &format!(" bgp_local_pref = {lp}; ");
                }
                s += &format!("  route {} blackhole {{{attrs}}};\n", a.prefix);
            }
            s += "}\n";
        }
        // BIRD sends MED over eBGP only when the export filter sets it
        s += "filter ann_export {\n";
        for a in c.announce.iter().filter(|a| a.med.is_some()) {
            s += &format!("  if source = RTS_STATIC && net = {} then bgp_med = {};\n", a.prefix, a.med.unwrap());
        }
        s += "  accept;\n}\n";
        if let Some((rx, tx, mult)) = c.bfd {
            let mut opts = format!("min rx interval {rx} ms; min tx interval {tx} ms; multiplier {mult};");
            if let Some((kind, id, pw)) = &c.bfd_auth {
                opts += &format!(" authentication {kind}; password \"{pw}\" {{ id {id}; }};");
            }
            s += &format!("protocol bfd {{\n  interface \"*\" {{ {opts} }};\n  multihop {{ {opts} }};\n}}\n");
        }
        for (i, n) in c.neighbors.iter().enumerate() {
            s += &format!("protocol bgp n{} {{\n", i + 1);
            if c.bfd.is_some() {
                s += "  bfd on;\n";
            }
            s += &format!("  graceful restart {};\n", if c.graceful_restart { "on" } else { "off" });
            s += &format!("  local{} as {};\n", c.listen_port.map(|p| format!(" port {p}")).unwrap_or_default(), c.asn);
            // With `enable as4 off` BIRD refuses a neighbor AS above 65535 (and AS_TRANS would not do: it
            // checks the AS of the peer's 4-octet AS capability all the same), so such a neighbor is
            // `external`: any AS but ours.
            let remote =
                if n.no_as4 && n.remote_asn > 0xffff { "external".to_string() } else { format!("as {}", n.remote_asn) };
            s += &format!(
                "  neighbor {}{} {remote};\n",
                n.address,
                n.port.map(|p| format!(" port {p}")).unwrap_or_default(),
            );
            if let Some(a) = &n.source_address {
                s += &format!("  source address {a};\n");
            }
            s += "  connect delay time 0; connect retry time 1; error wait time 1, 2;\n";
            if c.trace {
                s += "  debug { states, routes, packets };\n";
            }
            s += &format!("  hold time {}; keepalive time {};\n", n.hold(), n.keepalive());
            if n.passive {
                s += "  passive on;\n";
            }
            if let Some(pw) = &n.password {
                s += &format!("  password \"{pw}\";\n");
            }
            if n.gtsm {
                s += "  ttl security yes;\n";
            }
            if let Some(ttl) = n.ebgp_multihop {
                s += &format!("  multihop {ttl};\n");
            }
            if n.no_as4 {
                s += "  enable as4 off;\n";
            }
            // The family of the session as is; the other one with a next hop of its own family for exports,
            // extended next hop, and recursive gateways so that foreign next hops (gobgpd's IPv4-mapped
            // ::ffff:a.b.c.d) are kept (unreachable) instead of dropped.
            let (same, other, other_nh) = if n.is_v6() { ("ipv6", "ipv4", &v4nh) } else { ("ipv4", "ipv6", &v6nh) };
            s += &format!("  {same} {{ import all; export filter ann_export; }};\n");
            let nh = other_nh.as_ref().map(|a| format!(" next hop address {a};")).unwrap_or_default();
            s += &format!(
                "  {other} {{ import all; export filter ann_export;{nh} extended next hop on; gateway recursive; }};\n"
            );
            s += "}\n";
        }
        s
    }

    fn write_config(&self) {
        fs::write(self.core.dir.join("bird.conf"), self.config()).unwrap();
    }

    fn reconfigure(&self) {
        self.write_config();
        let out = self.birdc(&["configure"]).unwrap_or_else(|e| panic!("bird in {}: {e}", self.core.ns.name()));
        assert!(out.contains("Reconfigured") || out.contains("Reconfiguration"), "birdc configure: {out}");
    }
}

impl BgpPeer for Bird {
    fn core(&self) -> &PeerCore {
        &self.core
    }
    fn core_mut(&mut self) -> &mut PeerCore {
        &mut self.core
    }

    fn start_process(&mut self) {
        self.write_config();
        let conf = self.core.dir.join("bird.conf").to_str().unwrap().to_string();
        let ctl = self.ctl().to_str().unwrap().to_string();
        self.core.spawn(&["bird", "-f", "-c", &conf, "-s", &ctl]);
        self.core.wait_ready(|c| {
            run(&["birdc", "-s", c.dir.join("bird.ctl").to_str().unwrap(), "show", "status"]).map(|_| ())
        });
    }

    fn session_state(&self, neighbor: &str) -> String {
        match self.birdc(&["show", "protocols", "all", &self.protocol(neighbor)]) {
            Ok(out) => out
                .lines()
                .find_map(|l| l.trim().strip_prefix("BGP state:"))
                .map(|s| normalise_state(s.trim()))
                .unwrap_or_else(|| format!("(no BGP state in: {out})")),
            Err(e) => format!("(error: {e})"),
        }
    }

    fn routes(&self) -> Vec<Route> {
        let out =
            self.birdc(&["show", "route", "all"]).unwrap_or_else(|e| panic!("bird in {}: {e}", self.core.ns.name()));
        let names: Vec<(String, String)> = self
            .core
            .cfg
            .neighbors
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("n{}", i + 1), n.address.clone()))
            .collect();
        let mut r = parse_bird_routes(&out, &names);
        r.sort();
        r
    }

    fn last_notification_received(&self, neighbor: &str) -> Option<Notification> {
        let log = fs::read_to_string(self.core.dir.join("bird.log")).unwrap_or_default();
        parse_bird_log(&log, &self.protocol(neighbor))
    }

    fn announce(&mut self, a: Announce) {
        self.core.remember(&a);
        self.reconfigure();
    }

    fn withdraw(&mut self, prefix: &str) {
        self.core.forget(prefix);
        self.reconfigure();
    }

    fn disable_neighbor(&self, neighbor: &str) {
        self.birdc(&["disable", &self.protocol(neighbor)]).unwrap_or_else(|e| panic!("{e}"));
    }

    fn enable_neighbor(&self, neighbor: &str) {
        self.birdc(&["enable", &self.protocol(neighbor)]).unwrap_or_else(|e| panic!("{e}"));
    }

    fn status_dump(&self) -> String {
        self.birdc(&["show", "protocols", "all"]).unwrap_or_else(|e| e)
    }
}

/// `birdc show route all` text → received BGP paths. `names`: protocol name → neighbor address.
pub fn parse_bird_routes(text: &str, names: &[(String, String)]) -> Vec<Route> {
    struct Cur {
        r: Route,
        bgp: bool,
    }
    let mut out = vec![];
    let mut cur: Option<Cur> = None;
    let mut prefix = String::new();
    let flush = |cur: &mut Option<Cur>, out: &mut Vec<Route>| {
        if let Some(mut c) = cur.take() {
            if c.bgp {
                c.r.next_hop = norm_next_hop(&c.r.prefix, &c.r.next_hop);
                out.push(c.r);
            }
        }
    };
    for line in text.lines() {
        if line.starts_with('\t') {
            let Some(c) = cur.as_mut() else { continue };
            let l = line.trim();
            let (key, val) = l.split_once(':').map(|(k, v)| (k, v.trim())).unwrap_or((l, ""));
            match key {
                "Type" => c.bgp = val.starts_with("BGP"),
                "BGP.origin" => c.r.origin = val.to_lowercase(),
                "BGP.as_path" => {
                    c.r.as_path_is_sequence = !val.contains('{');
                    c.r.as_path =
                        val.replace(['{', '}'], " ").split_whitespace().filter_map(|x| x.parse().ok()).collect();
                }
                "BGP.next_hop" => c.r.next_hop = val.split_whitespace().next().unwrap_or_default().to_string(),
                "BGP.med" => c.r.med = val.parse().ok(),
                "BGP.local_pref" => c.r.local_pref = val.parse().ok(),
                "BGP.community" => c.r.communities = bird_tuples(val).into_iter().map(|t| t.join(":")).collect(),
                "BGP.large_community" => {
                    c.r.large_communities = bird_tuples(val).into_iter().map(|t| t.join(":")).collect()
                }
                _ => {}
            }
            continue;
        }
        // A route line: "PREFIX  TYPE [PROTO TIME …] …" or, for further routes of that prefix, "   TYPE [PROTO …]".
        let Some(open) = line.find('[') else { continue };
        let mut head = line[..open].split_whitespace();
        if !line.starts_with(' ') {
            match head.next() {
                Some(p) if p.contains('/') => prefix = norm_prefix(p),
                _ => continue,
            }
        }
        if prefix.is_empty() {
            continue;
        }
        flush(&mut cur, &mut out);
        let proto = line[open + 1..].split_whitespace().next().unwrap_or_default();
        let peer = names.iter().find(|(n, _)| n == proto).map(|(_, a)| a.clone()).unwrap_or_default();
        cur = Some(Cur {
            r: Route { prefix: prefix.clone(), as_path_is_sequence: true, peer, ..Default::default() },
            bgp: false,
        });
    }
    flush(&mut cur, &mut out);
    out
}

/// `(65000,1) (65000,2)` / `(1, 2, 3)` → [["65000","1"], …]
fn bird_tuples(s: &str) -> Vec<Vec<String>> {
    s.split('(')
        .skip(1)
        .filter_map(|t| t.split(')').next())
        .map(|t| t.split(',').map(|x| x.trim().to_string()).collect())
        .collect()
}

/// BIRD's descriptions of NOTIFICATION (code, subcode), as in its proto/bgp/packets.c.
const BIRD_ERRORS: &[(u8, u8, &str)] = &[
    (1, 0, "Invalid message header"),
    (1, 1, "Connection not synchronized"),
    (1, 2, "Bad message length"),
    (1, 3, "Bad message type"),
    (2, 0, "Invalid OPEN message"),
    (2, 1, "Unsupported version number"),
    (2, 2, "Bad peer AS"),
    (2, 3, "Bad BGP identifier"),
    (2, 4, "Unsupported optional parameter"),
    (2, 5, "Authentication failure"),
    (2, 6, "Unacceptable hold time"),
    (2, 7, "Required capability missing"),
    (2, 8, "No supported AFI/SAFI"),
    (2, 11, "Role mismatch"),
    (3, 0, "Invalid UPDATE message"),
    (3, 1, "Malformed attribute list"),
    (3, 2, "Unrecognized well-known attribute"),
    (3, 3, "Missing mandatory attribute"),
    (3, 4, "Invalid attribute flags"),
    (3, 5, "Invalid attribute length"),
    (3, 6, "Invalid ORIGIN attribute"),
    (3, 7, "AS routing loop"),
    (3, 8, "Invalid NEXT_HOP attribute"),
    (3, 9, "Optional attribute error"),
    (3, 10, "Invalid network field"),
    (3, 11, "Malformed AS_PATH"),
    (4, 0, "Hold timer expired"),
    (5, 0, "Finite state machine error"),
    (5, 1, "Unexpected message in OpenSent state"),
    (5, 2, "Unexpected message in OpenConfirm state"),
    (5, 3, "Unexpected message in Established state"),
    (6, 0, "Cease"),
    (6, 1, "Maximum number of prefixes reached"),
    (6, 2, "Administrative shutdown"),
    (6, 3, "Peer de-configured"),
    (6, 4, "Administrative reset"),
    (6, 5, "Connection rejected"),
    (6, 6, "Other configuration change"),
    (6, 7, "Connection collision resolution"),
    (6, 8, "Out of Resources"),
    (7, 0, "Invalid ROUTE-REFRESH message"),
    (7, 1, "Invalid ROUTE-REFRESH message length"),
];

/// BIRD logs `<RMT> n1: Received: Administrative shutdown` (unknown ones as `… Received: Unknown error 6.9`)
/// and maps the text back to (code, subcode).
pub fn parse_bird_log(log: &str, proto: &str) -> Option<Notification> {
    let key = format!(" {proto}: Received: ");
    let text = log.lines().rev().find_map(|l| l.split_once(&key).map(|(_, t)| t.trim().to_string()))?;
    let (code, subcode) = BIRD_ERRORS
        .iter()
        .filter(|(_, _, d)| text.starts_with(d))
        .max_by_key(|(_, _, d)| d.len())
        .map(|(c, s, _)| (*c, *s))
        .or_else(|| {
            // BIRD's "Unknown error %u.%u", possibly followed by data
            let code: String =
                text.strip_prefix("Unknown error ")?.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            let nums: Vec<u8> = code.split('.').map(|x| x.parse().ok()).collect::<Option<Vec<u8>>>()?;
            (nums.len() == 2).then(|| (nums[0], nums[1]))
        })
        .unwrap_or((0, 0));
    Some(Notification { code, subcode, text })
}

// ---------------------------------------------------------------------------------------------------
// FRR

/// FRR 8 bgpd alone (`-Z`: no zebra). vty socket dir = state dir; query with [`Frr::vtysh`].
pub struct Frr {
    core: PeerCore,
}

impl Frr {
    pub fn start(ns: &Netns, cfg: PeerConfig) -> Frr {
        let mut f = Frr { core: PeerCore::new("frr", ns, cfg) };
        f.start_process();
        f
    }

    /// Runs `vtysh --vty_socket DIR -c CMD …` (unix socket: no namespace needed).
    pub fn vtysh(&self, cmds: &[&str]) -> Result<String, String> {
        let dir = self.core.dir.to_str().unwrap().to_string();
        let mut argv = vec!["vtysh", "--vty_socket", &dir];
        for c in cmds {
            argv.push("-c");
            argv.push(c);
        }
        let out = run(&argv)?;
        if let Some(l) = out.lines().find(|l| l.trim_start().starts_with('%')) {
            return Err(format!("vtysh {cmds:?}: {l}"));
        }
        Ok(out)
    }

    #[track_caller]
    fn vtysh_ok(&self, cmds: &[&str]) -> String {
        self.vtysh(cmds).unwrap_or_else(|e| panic!("frr in {}: {e}", self.core.ns.name()))
    }

    fn route_map_name(prefix: &str) -> String {
        format!("ANN-{}", prefix.replace(|c: char| !c.is_ascii_alphanumeric(), "_"))
    }

    fn route_map(a: &Announce) -> Vec<String> {
        let mut v = vec![format!("route-map {} permit 10", Self::route_map_name(&a.prefix))];
        if !a.communities.is_empty() {
            v.push(format!(" set community {}", a.communities.join(" ")));
        }
        if !a.large_communities.is_empty() {
            v.push(format!(" set large-community {}", a.large_communities.join(" ")));
        }
        if let Some(m) = a.med {
            v.push(format!(" set metric {m}"));
        }
        if let Some(lp) = a.local_pref {
            v.push(format!(" set local-preference {lp}"));
        }
        v.push("exit".into());
        v
    }

    fn config(&self) -> String {
        assert!(self.core().cfg.bfd.is_none(), "the harness sets up BFD for BIRD only, not FRR");
        let c = &self.core.cfg;
        let mut s = format!("frr defaults traditional\nlog file {}/bgpd.log\n!\n", self.core.dir.display());
        for a in &c.announce {
            s += &(Self::route_map(a).join("\n") + "\n");
        }
        s += &format!(
            "router bgp {}\n bgp router-id {}\n no bgp ebgp-requires-policy\n no bgp default ipv4-unicast\n no bgp network import-check\n",
            c.asn, c.router_id
        );
        s += if c.graceful_restart { " bgp graceful-restart\n" } else { " bgp graceful-restart-disable\n" };
        for n in &c.neighbors {
            assert!(!n.no_as4, "FRR cannot be configured without the 4-octet AS capability");
            let a = &n.address;
            s += &format!(" neighbor {a} remote-as {}\n", n.remote_asn);
            s += &format!(" neighbor {a} timers connect 1\n neighbor {a} timers {} {}\n", n.keepalive(), n.hold());
            s += &format!(" neighbor {a} advertisement-interval 0\n");
            if n.passive {
                s += &format!(" neighbor {a} passive\n");
            }
            if let Some(pw) = &n.password {
                s += &format!(" neighbor {a} password {pw}\n");
            }
            if n.gtsm {
                s += &format!(" neighbor {a} ttl-security hops 1\n");
            }
            if let Some(ttl) = n.ebgp_multihop {
                s += &format!(" neighbor {a} ebgp-multihop {ttl}\n");
            }
            if let Some(p) = n.port {
                s += &format!(" neighbor {a} port {p}\n");
            }
            if let Some(src) = &n.source_address {
                s += &format!(" neighbor {a} update-source {src}\n");
            }
            if n.is_v6() {
                // accept IPv4 routes with an IPv6 next hop (RFC 8950) over this session
                s += &format!(" neighbor {a} capability extended-nexthop\n");
            }
        }
        for af in ["ipv4", "ipv6"] {
            s += &format!(" address-family {af} unicast\n");
            for n in &c.neighbors {
                s += &format!("  neighbor {} activate\n", n.address);
            }
            for a in c.announce.iter().filter(|a| a.afi() == af) {
                s += &format!("  network {} route-map {}\n", a.prefix, Self::route_map_name(&a.prefix));
            }
            s += " exit-address-family\n";
        }
        s
    }

    fn write_config(&self) {
        fs::write(self.core.dir.join("bgpd.conf"), self.config()).unwrap();
    }

    fn neighbor_json(&self, neighbor: &str) -> Result<Value, String> {
        let n = norm_ip(neighbor);
        let out = self.vtysh(&[&format!("show bgp neighbors {n} json")])?;
        let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        v.get(&n).cloned().ok_or_else(|| format!("no neighbor {n} in {out}"))
    }
}

impl BgpPeer for Frr {
    fn core(&self) -> &PeerCore {
        &self.core
    }
    fn core_mut(&mut self) -> &mut PeerCore {
        &mut self.core
    }

    fn start_process(&mut self) {
        self.write_config();
        let d = self.core.dir.to_str().unwrap().to_string();
        let port = self.core.cfg.listen_port.unwrap_or(179).to_string();
        let (conf, pidf) = (format!("{d}/bgpd.conf"), format!("{d}/bgpd.pid"));
        self.core.spawn(&[FRR_BGPD, "-Z", "-S", "-f", &conf, "-i", &pidf, "--vty_socket", &d, "-P", "0", "-p", &port]);
        self.core.wait_ready(|c| {
            run(&["vtysh", "--vty_socket", c.dir.to_str().unwrap(), "-c", "show bgp summary json"]).map(|_| ())
        });
    }

    fn session_state(&self, neighbor: &str) -> String {
        match self.neighbor_json(neighbor) {
            Ok(v) => normalise_state(v["bgpState"].as_str().unwrap_or("Unknown")),
            Err(e) => format!("(error: {e})"),
        }
    }

    fn routes(&self) -> Vec<Route> {
        let mut out = vec![];
        for af in ["ipv4", "ipv6"] {
            let table: Value = serde_json::from_str(&self.vtysh_ok(&[&format!("show bgp {af} unicast json")])).unwrap();
            // prefixes with at least one received path; FRR 8.4 has communities and AS_PATH segment types only
            // in the per-prefix form, so ask for each of them (several -c per vtysh call).
            let received: Vec<String> = table["routes"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, paths)| {
                    paths.as_array().into_iter().flatten().any(|p| !frr_local_peer(p["peerId"].as_str()))
                })
                .map(|(p, _)| p.clone())
                .collect();
            for chunk in received.chunks(200) {
                let cmds: Vec<String> = chunk.iter().map(|p| format!("show bgp {af} unicast {p} json")).collect();
                let text = self.vtysh_ok(&cmds.iter().map(String::as_str).collect::<Vec<_>>());
                for doc in serde_json::Deserializer::from_str(&text).into_iter::<Value>() {
                    let doc = doc.unwrap_or_else(|e| panic!("frr per-prefix json: {e}: {text}"));
                    out.extend(parse_frr_prefix(&doc));
                }
            }
        }
        out.sort();
        out
    }

    fn last_notification_received(&self, neighbor: &str) -> Option<Notification> {
        let v = self.neighbor_json(neighbor).ok()?;
        if v["lastResetDueTo"].as_str() != Some("BGP Notification received") {
            return None;
        }
        let cs = v["lastErrorCodeSubcode"].as_str().unwrap_or("0000");
        let hex = |r: std::ops::Range<usize>| cs.get(r).and_then(|x| u8::from_str_radix(x, 16).ok()).unwrap_or(0);
        let mut text = v["lastNotificationReason"].as_str().unwrap_or_default().to_string();
        if let Some(d) = v["lastShutdownDescription"].as_str() {
            text += &format!(": {d}");
        }
        Some(Notification { code: hex(0..2), subcode: hex(2..4), text })
    }

    fn announce(&mut self, a: Announce) {
        let again = self.core.cfg.announce.iter().any(|x| x.prefix == a.prefix);
        self.core.remember(&a);
        self.write_config();
        let rm = Self::route_map_name(&a.prefix);
        let mut cmds = vec!["configure terminal".to_string()];
        if again {
            cmds.extend([
                format!("router bgp {}", self.core.cfg.asn),
                format!("address-family {} unicast", a.afi()),
                format!("no network {}", a.prefix),
                "end".into(),
                "configure terminal".into(),
                format!("no route-map {rm}"),
            ]);
        }
        cmds.extend(Self::route_map(&a));
        cmds.extend([
            format!("router bgp {}", self.core.cfg.asn),
            format!("address-family {} unicast", a.afi()),
            format!("network {} route-map {rm}", a.prefix),
            "end".into(),
        ]);
        self.vtysh_ok(&cmds.iter().map(String::as_str).collect::<Vec<_>>());
    }

    fn withdraw(&mut self, prefix: &str) {
        let a = self.core.forget(prefix);
        self.write_config();
        self.vtysh_ok(&[
            "configure terminal",
            &format!("router bgp {}", self.core.cfg.asn),
            &format!("address-family {} unicast", a.afi()),
            &format!("no network {}", a.prefix),
            "end",
            "configure terminal",
            &format!("no route-map {}", Self::route_map_name(&a.prefix)),
            "end",
        ]);
    }

    fn disable_neighbor(&self, neighbor: &str) {
        self.vtysh_ok(&[
            "configure terminal",
            &format!("router bgp {}", self.core.cfg.asn),
            &format!("neighbor {} shutdown", norm_ip(neighbor)),
            "end",
        ]);
    }

    fn enable_neighbor(&self, neighbor: &str) {
        self.vtysh_ok(&[
            "configure terminal",
            &format!("router bgp {}", self.core.cfg.asn),
            &format!("no neighbor {} shutdown", norm_ip(neighbor)),
            "end",
        ]);
    }

    fn status_dump(&self) -> String {
        self.vtysh(&["show bgp summary"]).unwrap_or_else(|e| e)
    }
}

/// FRR marks locally originated paths with peerId "(unspec)" (table) or "0.0.0.0" (per prefix).
fn frr_local_peer(peer: Option<&str>) -> bool {
    matches!(peer, None | Some("(unspec)") | Some("0.0.0.0") | Some("::") | Some(""))
}

/// One `show bgp AFI unicast PREFIX json` document → its received paths.
pub fn parse_frr_prefix(doc: &Value) -> Vec<Route> {
    let Some(pfx) = doc["prefix"].as_str() else {
        return vec![];
    };
    let prefix = norm_prefix(pfx);
    let mut out = vec![];
    for p in doc["paths"].as_array().into_iter().flatten() {
        let peer = p["peer"]["peerId"].as_str();
        if frr_local_peer(peer) {
            continue;
        }
        let mut r = Route {
            prefix: prefix.clone(),
            as_path_is_sequence: true,
            peer: norm_ip(peer.unwrap()),
            ..Default::default()
        };
        for seg in p["aspath"]["segments"].as_array().into_iter().flatten() {
            if seg["type"].as_str() != Some("as-sequence") {
                r.as_path_is_sequence = false;
            }
            r.as_path.extend(seg["list"].as_array().into_iter().flatten().filter_map(Value::as_u64).map(|x| x as u32));
        }
        r.origin = p["origin"].as_str().unwrap_or_default().to_lowercase();
        let nhs: Vec<&Value> = p["nexthops"].as_array().into_iter().flatten().collect();
        let nh = nhs.iter().find(|n| n["scope"].as_str() != Some("link-local")).or(nhs.first());
        r.next_hop = nh.and_then(|n| n["ip"].as_str()).unwrap_or_default().to_string();
        r.next_hop = norm_next_hop(&r.prefix, &r.next_hop);
        let list = |v: &Value| -> Vec<String> {
            v["list"].as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_string)).collect()
        };
        // FRR prints well-known communities by name; the other daemons print ASN:VALUE.
        r.communities = list(&p["community"]).iter().map(|c| frr_well_known(c)).collect();
        r.large_communities = list(&p["largeCommunity"]);
        r.med = p["metric"].as_u64().map(|x| x as u32);
        r.local_pref = p["locPrf"].as_u64().or(p["localpref"].as_u64()).map(|x| x as u32);
        out.push(r);
    }
    out
}

// ---------------------------------------------------------------------------------------------------
// normalisation

/// FRR's names of well-known communities (RFC 1997, 3765, 7999, 8326) → "ASN:VALUE".
fn frr_well_known(c: &str) -> String {
    match c {
        "gshut" | "gracefulShutdown" => "65535:0",
        "blackhole" => "65535:666",
        "noExport" => "65535:65281",
        "noAdvertise" => "65535:65282",
        "localAs" | "noExportSubconfed" => "65535:65283",
        "noPeer" => "65535:65284",
        other => other,
    }
    .to_string()
}

/// "established" / "ESTABLISHED" / "BGP_FSM_ESTABLISHED" → "Established", etc.
fn normalise_state(s: &str) -> String {
    let l = s.to_ascii_lowercase();
    let l = l.trim_start_matches("bgp_fsm_").trim_start_matches("session_state_");
    match l {
        "idle" => "Idle",
        "connect" => "Connect",
        "active" => "Active",
        "opensent" | "open_sent" => "OpenSent",
        "openconfirm" | "open_confirm" => "OpenConfirm",
        "established" => "Established",
        _ => return s.to_string(),
    }
    .to_string()
}

/// Canonical text of an address (input returned unchanged if it is not one).
pub fn norm_ip(s: &str) -> String {
    s.parse::<IpAddr>().map(|a| a.to_string()).unwrap_or_else(|_| s.to_string())
}

/// Canonical `addr/len`.
pub fn norm_prefix(s: &str) -> String {
    match s.split_once('/') {
        Some((a, l)) => format!("{}/{l}", norm_ip(a)),
        None => s.to_string(),
    }
}

/// Canonical next hop; an IPv4 next hop of an IPv6 route is shown IPv4-mapped.
pub fn norm_next_hop(prefix: &str, nh: &str) -> String {
    match nh.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) if prefix.contains(':') => v4.to_ipv6_mapped().to_string(),
        Ok(a) => a.to_string(),
        Err(_) => nh.to_string(),
    }
}
