//! FRR 8 bgpd as a test peer: its config file, `vtysh`, and the parser of its per-prefix JSON.

use super::normalise::{norm_ip, norm_next_hop, norm_prefix, normalise_state};
use super::{Announce, BgpPeer, Notification, PeerConfig, PeerCore, Route};
use crate::common::lab::Netns;
use crate::common::run;
use serde_json::Value;
use std::fs;

/// FRR's bgpd (not in PATH).
pub const FRR_BGPD: &str = "/usr/lib/frr/bgpd";

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
