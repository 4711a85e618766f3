//! BIRD 2 as a test peer: its config file, `birdc`, and the parsers of `show route all` and its log.

use super::normalise::{norm_next_hop, norm_prefix, normalise_state};
use super::{Announce, BgpPeer, Notification, PeerConfig, PeerCore, Route};
use crate::common::lab::Netns;
use crate::common::run;
use std::fs;
use std::path::PathBuf;

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
