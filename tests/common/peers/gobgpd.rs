//! gobgpd 3.x as a test peer: its TOML config, the `gobgp` CLI, and the parsers of its RIB JSON and log.

use super::normalise::{norm_ip, norm_next_hop, norm_prefix, normalise_state};
use super::{Announce, BgpPeer, Notification, PeerConfig, PeerCore, Route};
use crate::common::lab::Netns;
use serde_json::Value;
use std::fs;
use std::sync::atomic::{AtomicU16, Ordering};

/// The gRPC API port of the next gobgpd (every gobgpd of a test process gets its own).
static GOBGP_API_PORT: AtomicU16 = AtomicU16::new(50051);

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
