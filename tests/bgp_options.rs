//! Per-peer BGP options of speakerd against real gobgpd, BIRD 2 and FRR 8, driven with speakerctl:
//!
//! * 4-octet ASN 4200000000 with gobgpd, BIRD and FRR (4-octet peers, one of them over IPv6), and with a
//!   2-octet-only ("OLD", RFC 6793) BIRD: on the wire AS_TRANS in the OPEN and AS_PATH, the real AS in
//!   the capability and AS4_PATH, and BIRD reconstructs AS_PATH 4200000000;
//! * TCP-MD5 with gobgpd (speakerd connects) and FRR over IPv6 (FRR connects: the key is on speakerd's
//!   listener); a wrong key in either direction never establishes (and the kernel counts MD5 failures),
//!   while the right ones stay up; fixing the key brings the session up;
//! * eBGP multihop across a router over IPv4 (speakerd active) and IPv6 (speakerd passive): no session
//!   with the default TTL 1 (the router answers Time Exceeded), sessions with `--ebgp-multihop 2`;
//! * source address: a second address on speakerd's interface is used for the IPv4 and the IPv6 session
//!   and as the next hop; the peer knows speakerd only by those addresses.

mod common;

use common::*;
use std::path::PathBuf;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const V4: &str = "203.0.113.40/32";
const V6: &str = "2001:db8:40::/64";
const COMMUNITY: &str = "65000:100";

// ---------------------------------------------------------------------------------------------------
// helpers

/// Waits until `peer` has a path for `prefix` received from the neighbor `from`, and returns it.
#[track_caller]
fn path_from<P: BgpPeer>(peer: &P, prefix: &str, from: &str) -> Route {
    let (p, f) = (norm(prefix), norm(from));
    peer.wait(T, &format!("{prefix} from {from}"), || {
        let all = peer.routes();
        all.iter().find(|r| r.prefix == p && r.peer == f).cloned().ok_or_else(|| format!("routes: {all:#?}"))
    })
}

fn norm(s: &str) -> String {
    common::peers::norm_prefix(&common::peers::norm_ip(s))
}

/// The session state (speakerctl's word) of every peer, keyed by address.
fn states(sp: &Speakerd) -> Vec<(String, String, u64)> {
    sp.peers()
        .iter()
        .map(|p| {
            (
                p["address"].as_str().unwrap_or_default().to_string(),
                p["state"].as_str().unwrap_or_default().to_string(),
                p["established_count"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// A tcpdump capture to a pcap file in the namespace's state dir; read it with [`tshark_fields`].
struct Capture {
    proc: Proc,
    file: PathBuf,
}

impl Capture {
    /// Starts `tcpdump -i DEV --immediate-mode -U -w FILE FILTER…` and waits until it listens. The file
    /// can be read while tcpdump runs (every packet is flushed).
    fn start(ns: &Netns, dev: &str, filter: &str) -> Capture {
        let dir = ns.state_dir("tcpdump");
        let file = dir.join("capture.pcap");
        let log = dir.join("tcpdump.log");
        let f = file.to_str().unwrap().to_string();
        let mut argv = vec!["tcpdump", "-i", dev, "-n", "--immediate-mode", "-U", "-s", "0", "-Z", "root", "-w", &f];
        argv.extend(filter.split_whitespace());
        let proc = ns.spawn("tcpdump", &argv, &log, &[]);
        wait_until(Duration::from_secs(10), "tcpdump to listen", || {
            let t = common::tail(&log, 5);
            if t.contains("listening on") {
                Ok(())
            } else {
                Err(t)
            }
        });
        Capture { proc, file }
    }

    /// SIGINT, waits for tcpdump to flush and exit; returns the pcap file.
    fn stop(mut self) -> PathBuf {
        self.proc.signal(libc::SIGINT);
        self.proc.wait_exit(Duration::from_secs(10));
        self.file.clone()
    }
}

/// `tshark -r PCAP -Y FILTER -T fields -e F…`: one row per frame, one `Vec` of values per field (a field
/// that occurs several times in the frame — several BGP messages or attributes — has several values).
fn tshark_fields(pcap: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<Vec<Vec<String>>> {
    let mut argv = vec!["tshark", "-n", "-r", pcap.to_str().unwrap(), "-Y", filter, "-T", "fields"];
    argv.extend(["-E", "occurrence=a", "-E", "aggregator=,", "-E", "separator=\t"]);
    for f in fields {
        argv.extend(["-e", f]);
    }
    run_ok(&argv)
        .lines()
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            (0..fields.len())
                .map(|i| {
                    cols.get(i)
                        .filter(|c| !c.is_empty())
                        .map(|c| c.split(',').map(str::to_string).collect())
                        .unwrap_or_default()
                })
                .collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------------
// 4-octet ASN

/// speakerd with local AS 4200000000 and eBGP to gobgpd (AS 4200000002), BIRD (AS 4200000003), FRR
/// (AS 4200000004, over IPv6) and a second BIRD that does not announce the 4-octet AS capability
/// (AS 65005, `enable as4 off`). RFC 6793: towards that OLD speaker, speakerd must put AS_TRANS (23456)
/// in the OPEN's My Autonomous System and in AS_PATH, and the real path in AS4_PATH; a NEW receiver (BIRD
/// is one internally, only the session is 2-octet) must rebuild AS_PATH 4200000000 from the two (§4.2.3).
#[test]
fn four_byte_asn_with_gobgpd_bird_and_frr() {
    let Some(lab) =
        Lab::new_or_skip("four_byte_asn_with_gobgpd_bird_and_frr", &["gobgpd", "bird", "frr", "tcpdump", "tshark"])
    else {
        return;
    };
    const ASN: u32 = 4_200_000_000;
    let seg = lab.segment(&["spk", "gobgp", "bird", "frr", "old"]);
    let (s, g, b, f, o) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2], &seg.hosts[3], &seg.hosts[4]);
    let (s4, s6) = (s.v4.to_string(), s.v6.to_string());
    let (g4, b4, f6, o4) = (g.v4.to_string(), b.v4.to_string(), f.v6.to_string(), o.v4.to_string());

    // speakerd's side of the wire, from before any session starts.
    let cap = Capture::start(s, "eth0", "tcp port 179");
    let sp = Speakerd::builder(s).local_asn(ASN).router_id(s.v4).start();
    // speakerd connects (connect time 1 s); the daemons wait.
    let gobgp = Gobgpd::start(g, PeerConfig::new(4_200_000_002, g.v4).neighbor(Neighbor::new(&s4, ASN).passive()));
    let bird = Bird::start(b, PeerConfig::new(4_200_000_003, b.v4).neighbor(Neighbor::new(&s4, ASN).passive()));
    let frr = Frr::start(f, PeerConfig::new(4_200_000_004, f.v4).neighbor(Neighbor::new(&s6, ASN).passive()));
    let old = Bird::start(o, PeerConfig::new(65005, o.v4).neighbor(Neighbor::new(&s4, ASN).passive().no_as4()));
    for (addr, asn) in [(&g4, "4200000002"), (&b4, "4200000003"), (&f6, "4200000004"), (&o4, "65005")] {
        sp.ctl(&["peer", "add", addr, "--asn", asn, "--connect-time", "1"]);
    }
    sp.ctl(&["announce", "add", V4, V6, "--community", COMMUNITY, "--large-community", "4200000000:1:2"]);
    for a in [&g4, &b4, &f6, &o4] {
        sp.wait_peer_state(a, "established", T);
    }

    // Every peer sees AS_PATH = one AS_SEQUENCE [4200000000], the communities, and the next hop of the
    // family: over IPv4 sessions s.v4 / s.v6; over FRR's IPv6 session s.v6 for both (RFC 8950 for IPv4).
    let mut seen = vec![];
    for (name, from, v4_nh) in [("gobgpd", &s4, &s4), ("BIRD", &s4, &s4), ("FRR", &s6, &s6), ("BIRD as4 off", &s4, &s4)]
    {
        for (prefix, nh) in [(V4, v4_nh.as_str()), (V6, s6.as_str())] {
            let r = match name {
                "gobgpd" => path_from(&gobgp, prefix, from),
                "BIRD" => path_from(&bird, prefix, from),
                "FRR" => path_from(&frr, prefix, from),
                _ => path_from(&old, prefix, from),
            };
            let ctx = format!("{prefix} at {name}: {r:#?}");
            assert_eq!((r.as_path.as_slice(), r.as_path_is_sequence), (&[ASN][..], true), "{ctx}");
            assert_eq!(r.origin, "igp", "{ctx}");
            assert_eq!(r.next_hop, nh, "{ctx}");
            assert_eq!(r.communities, [COMMUNITY], "{ctx}");
            assert_eq!(r.large_communities, ["4200000000:1:2"], "{ctx}");
            seen.push(r);
        }
    }

    // What speakerd says it negotiated.
    for (addr, peer_asn, four) in
        [(&g4, 4_200_000_002u64, true), (&b4, 4_200_000_003, true), (&f6, 4_200_000_004, true), (&o4, 65005, false)]
    {
        let p = sp.peer_show(addr);
        let n = &p["negotiated"];
        assert_eq!(
            (n["four_octet_asn"].as_bool(), n["peer_asn"].as_u64()),
            (Some(four), Some(peer_asn)),
            "{addr}: {p:#}"
        );
    }
    // The 2-octet BIRD really is one (no 4-octet AS capability of its own), and knows speakerd by its real
    // AS (from the capability, which speakerd always sends).
    let proto = old.birdc(&["show", "protocols", "all", "n1"]).unwrap();
    let (local_caps, neighbor_caps) = proto
        .split_once("Local capabilities")
        .and_then(|(_, rest)| rest.split_once("Neighbor capabilities"))
        .unwrap_or_else(|| panic!("BIRD (as4 off) protocol status: {proto}"));
    let neighbor_as = proto.lines().find_map(|l| l.trim().strip_prefix("Neighbor AS:")).map(str::trim);
    assert!(
        !local_caps.contains("4-octet")
            && neighbor_caps.contains("4-octet AS numbers")
            && neighbor_as == Some("4200000000"),
        "BIRD (as4 off) protocol status: {proto}"
    );

    // The wire (RFC 6793 §4.2.2). Towards the OLD speaker: OPEN My AS = AS_TRANS with the 4-octet AS
    // capability carrying 4200000000; UPDATEs with a 2-octet AS_PATH of AS_TRANS and an AS4_PATH (type
    // 17) of 4200000000. Towards the NEW speakers: a 4-octet AS_PATH and no AS4_PATH (§4.1: MUST NOT).
    // Per destination: (attribute type codes, 2-octet ASNs, 4-octet ASNs) of all UPDATEs from speakerd.
    let updates = |pcap: &std::path::Path, dst: &str| {
        let rows = tshark_fields(
            pcap,
            &format!("{} == {dst} && bgp.type == 2", if dst.contains(':') { "ipv6.dst" } else { "ip.dst" }),
            &[
                "bgp.update.path_attribute.type_code",
                "bgp.update.path_attribute.as_path_segment.as2",
                "bgp.update.path_attribute.as_path_segment.as4",
            ],
        );
        let (mut types, mut as2, mut as4) = (vec![], vec![], vec![]);
        for u in rows {
            types.extend(u[0].clone());
            as2.extend(u[1].clone());
            as4.extend(u[2].clone());
        }
        (types, as2, as4)
    };
    // Every peer has both routes, so both UPDATEs went out; wait until the capture has them too.
    wait_until(Duration::from_secs(10), "two UPDATEs with routes to each peer in the capture", || {
        for dst in [&g4, &b4, &f6, &o4] {
            let u = updates(&cap.file, dst);
            if u.0.iter().filter(|t| *t == "2").count() < 2 {
                return Err(format!("to {dst}: {u:?}"));
            }
        }
        Ok(())
    });
    let pcap = cap.stop();
    let opens = tshark_fields(&pcap, &format!("ip.dst == {o4} && bgp.type == 1"), &["bgp.open.myas", "bgp.cap.4as"]);
    assert!(!opens.is_empty(), "no OPEN to {o4} in {}", pcap.display());
    for o in &opens {
        assert_eq!(
            (o[0].as_slice(), o[1].as_slice()),
            (&["23456".to_string()][..], &["4200000000".to_string()][..]),
            "OPEN from speakerd to the 2-octet BIRD"
        );
    }
    let (types, as2, as4) = updates(&pcap, &o4);
    let ctx = format!("UPDATEs to the 2-octet BIRD, in {}", pcap.display());
    // two UPDATEs with routes (IPv4, IPv6), each with one AS_PATH and one AS4_PATH
    assert_eq!(types.iter().filter(|t| *t == "2").count(), 2, "AS_PATH attributes: {types:?}; {ctx}");
    assert_eq!(types.iter().filter(|t| *t == "17").count(), 2, "AS4_PATH attributes: {types:?}; {ctx}");
    assert_eq!(as2, ["23456", "23456"], "the 2-octet AS_PATH must hold AS_TRANS only; {ctx}");
    assert_eq!(as4, ["4200000000", "4200000000"], "AS4_PATH must hold the real AS; {ctx}");
    for dst in [&g4, &b4, &f6] {
        let (types, as2, as4) = updates(&pcap, dst);
        let ctx = format!("UPDATEs to the 4-octet peer {dst}, in {}", pcap.display());
        assert!(!types.iter().any(|t| t == "17"), "AS4_PATH sent to a NEW speaker: {types:?}; {ctx}");
        assert_eq!(
            (as2.len(), as4.as_slice()),
            (0, &["4200000000".to_string(), "4200000000".to_string()][..]),
            "{ctx}"
        );
    }
    let opens = tshark_fields(&pcap, &format!("ip.dst == {g4} && bgp.type == 1"), &["bgp.open.myas", "bgp.cap.4as"]);
    assert_eq!(
        opens.first().map(|o| (o[0].as_slice(), o[1].as_slice())),
        Some((&["23456".to_string()][..], &["4200000000".to_string()][..])),
        "OPEN to gobgpd"
    );
    eprintln!(
        "4-octet ASN: {} paths checked; BIRD with as4 off rebuilt AS_PATH {:?}",
        seen.len(),
        seen.last().map(|r| &r.as_path)
    );
}

// ---------------------------------------------------------------------------------------------------
// TCP-MD5

/// gobgpd waits and speakerd connects (IPv4); FRR connects to speakerd over IPv6, so the key must be on
/// speakerd's listening socket. A wrong key in each direction (a second gobgpd that speakerd connects to,
/// a second FRR that connects to speakerd) never establishes — the receiving kernel counts MD5 failures —
/// while the right sessions stay up the whole time. Fixing the keys brings them up.
#[test]
fn md5_with_frr_and_gobgpd_and_wrong_password_never_establishes() {
    let Some(lab) =
        Lab::new_or_skip("md5_with_frr_and_gobgpd_and_wrong_password_never_establishes", &["gobgpd", "frr"])
    else {
        return;
    };
    let seg = lab.segment(&["spk", "gobgp", "frr", "badgobgp", "badfrr"]);
    let (s, g, f, bg, bf) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2], &seg.hosts[3], &seg.hosts[4]);
    let (s4, s6) = (s.v4.to_string(), s.v6.to_string());
    let (g4, f6, bg4, bf4) = (g.v4.to_string(), f.v6.to_string(), bg.v4.to_string(), bf.v4.to_string());

    let sp = Speakerd::builder(s).local_asn(65001).router_id(s.v4).start();
    let gobgp = Gobgpd::start(
        g,
        PeerConfig::new(65002, g.v4).neighbor(Neighbor::new(&s4, 65001).passive().password("gobgp-s3cret")),
    );
    let frr = Frr::start(f, PeerConfig::new(65003, f.v4).neighbor(Neighbor::new(&s6, 65001).password("frr-s3cret")));
    let bad_gobgp = Gobgpd::start(
        bg,
        PeerConfig::new(65004, bg.v4).neighbor(Neighbor::new(&s4, 65001).passive().password("right-key")),
    );
    let bad_frr =
        Frr::start(bf, PeerConfig::new(65005, bf.v4).neighbor(Neighbor::new(&s4, 65001).password("badfrr-key")));

    sp.ctl(&["peer", "add", &g4, "--asn", "65002", "--password", "gobgp-s3cret", "--connect-time", "1"]);
    sp.ctl(&["peer", "add", &f6, "--asn", "65003", "--password", "frr-s3cret", "--passive"]);
    sp.ctl(&["peer", "add", &bg4, "--asn", "65004", "--password", "wrong-key", "--connect-time", "1"]);
    sp.ctl(&["peer", "add", &bf4, "--asn", "65005", "--password", "not-badfrr-key", "--passive"]);
    sp.ctl(&["announce", "add", V4, V6, "--community", COMMUNITY]);

    sp.wait_peer_state(&g4, "established", T);
    sp.wait_peer_state(&f6, "established", T);
    gobgp.wait_established(&s4);
    frr.wait_established(&s6);
    let r = path_from(&gobgp, V4, &s4);
    assert_eq!((r.next_hop.as_str(), r.communities.as_slice()), (s4.as_str(), &[COMMUNITY.to_string()][..]), "{r:#?}");
    let r = path_from(&frr, V6, &s6);
    assert_eq!((r.next_hop.as_str(), r.as_path.as_slice()), (s6.as_str(), &[65001][..]), "{r:#?}");
    path_from(&frr, V4, &s6);

    // The key is never shown.
    let p = sp.peer_show(&g4);
    assert_eq!(p["config"]["password"], "<set>", "{p:#}");

    // The wrong keys really are tried and rejected by TCP-MD5: speakerd's SYNs at the second gobgpd, the
    // second FRR's SYNs at speakerd.
    wait_until(T, "MD5 failures at the gobgpd that speakerd connects to with a wrong key", || {
        match bg.net_counter("TcpExt", "TCPMD5Failure") {
            0 => Err(format!("0; speakerd: {:?}", states(&sp))),
            n => Ok(n),
        }
    });
    wait_until(T, "MD5 failures at speakerd from the FRR with a wrong key", || {
        match s.net_counter("TcpExt", "TCPMD5Failure") {
            0 => Err(format!("0; FRR: {}", bad_frr.session_state(&s4))),
            n => Ok(n),
        }
    });
    let before = (bg.net_counter("TcpExt", "TCPMD5Failure"), s.net_counter("TcpExt", "TCPMD5Failure"));

    assert_holds(Duration::from_secs(8), "wrong keys stay down, right ones stay up", || {
        let st = states(&sp);
        for (addr, state, count) in &st {
            let good = *addr == g4 || *addr == f6;
            if good && (state != "established" || *count != 1) {
                return Err(format!("good session {addr} {state} (established {count} times): {st:?}"));
            }
            if !good && (state == "established" || *count != 0) {
                return Err(format!("session {addr} with a wrong key is {state} (established {count} times)"));
            }
        }
        for (who, state) in [("gobgpd", bad_gobgp.session_state(&s4)), ("FRR", bad_frr.session_state(&s4))] {
            if state == "Established" {
                return Err(format!("{who} with a wrong key is Established"));
            }
        }
        Ok(())
    });
    let after = (bg.net_counter("TcpExt", "TCPMD5Failure"), s.net_counter("TcpExt", "TCPMD5Failure"));
    assert!(
        after.0 > before.0 && after.1 > before.1,
        "both sides kept trying during the 8 s: MD5 failures {before:?} -> {after:?}"
    );
    assert!(bad_gobgp.routes().is_empty() && bad_frr.routes().is_empty());

    // Right keys: both come up and get the routes; the good sessions were never touched.
    sp.ctl(&["peer", "update", &bg4, "--asn", "65004", "--password", "right-key", "--connect-time", "1"]);
    sp.ctl(&["peer", "update", &bf4, "--asn", "65005", "--password", "badfrr-key", "--passive"]);
    sp.wait_peer_state(&bg4, "established", T);
    sp.wait_peer_state(&bf4, "established", T);
    path_from(&bad_gobgp, V4, &s4);
    path_from(&bad_frr, V6, &s4);
    for a in [&g4, &f6] {
        assert_eq!(sp.peer_show(a)["established_count"], 1, "{a}");
    }
}

// ---------------------------------------------------------------------------------------------------
// eBGP multihop

/// speakerd in `spk`, FRR in `frr` one router away (multihop 2 on FRR's side). Over IPv4 speakerd
/// connects, over IPv6 FRR connects to a passive speakerd. With the default TTL 1 neither session comes up
/// and the router counts Time Exceeded for IPv4 and IPv6; with `--ebgp-multihop 2` both do, and FRR has
/// the routes with speakerd's address on its side as next hop.
#[test]
fn ebgp_multihop_across_a_routed_hop() {
    let Some(lab) = Lab::new_or_skip("ebgp_multihop_across_a_routed_hop", &["frr"]) else {
        return;
    };
    let net = lab.routed("spk", "rtr", "frr");
    let (s, f, r) = (&net.a, &net.b, &net.router);
    let (s4, s6, f4, f6) = (s.v4.to_string(), s.v6.to_string(), f.v4.to_string(), f.v6.to_string());

    let sp = Speakerd::builder(s).local_asn(65001).router_id(s.v4).start();
    let frr = Frr::start(
        f,
        PeerConfig::new(65002, f.v4)
            .neighbor(Neighbor::new(&s4, 65001).passive().ebgp_multihop(2))
            .neighbor(Neighbor::new(&s6, 65001).ebgp_multihop(2)),
    );
    let exceeded = || (r.net_counter("Icmp", "OutTimeExcds"), r.net_counter("snmp6", "Icmp6OutTimeExcds"));
    let before = exceeded();
    sp.ctl(&["peer", "add", &f4, "--asn", "65002", "--connect-time", "1"]);
    sp.ctl(&["peer", "add", &f6, "--asn", "65002", "--passive"]);
    sp.ctl(&["announce", "add", V4, V6, "--community", COMMUNITY]);

    // TTL 1: the router drops speakerd's packets and says so, over both families.
    wait_until(T, "Time Exceeded from the router for IPv4 and IPv6", || {
        let now = exceeded();
        if now.0 > before.0 && now.1 > before.1 {
            Ok(())
        } else {
            Err(format!("{before:?} -> {now:?}; speakerd: {:?}", states(&sp)))
        }
    });
    assert_holds(Duration::from_secs(4), "no eBGP session across a router with TTL 1", || {
        for (addr, state, _) in states(&sp) {
            if state == "established" {
                return Err(format!("{addr} established with TTL 1"));
            }
        }
        for n in [&s4, &s6] {
            if frr.session_state(n) == "Established" {
                return Err(format!("FRR's session with {n} is Established"));
            }
        }
        Ok(())
    });

    eprintln!(
        "multihop: with TTL 1 speakerd shows {:?}, FRR {:?}",
        states(&sp),
        [frr.session_state(&s4), frr.session_state(&s6)]
    );

    sp.ctl(&["peer", "update", &f4, "--asn", "65002", "--connect-time", "1", "--ebgp-multihop", "2"]);
    sp.ctl(&["peer", "update", &f6, "--asn", "65002", "--passive", "--ebgp-multihop", "2"]);
    // FRR's IPv6 connection from the TTL-1 phase is half-open: speakerd accepted it, but its OPEN, and
    // then its Cease and FIN, all died at the router, so FRR sits in OpenSent (hold time 240 s there).
    // Drop it on FRR's side so that FRR connects again.
    frr.disable_neighbor(&s6);
    frr.enable_neighbor(&s6);
    sp.wait_peer_state(&f4, "established", T);
    sp.wait_peer_state(&f6, "established", T);
    frr.wait_established(&s4);
    frr.wait_established(&s6);
    for p in [&f4, &f6] {
        let v = sp.peer_show(p);
        assert_eq!(v["config"]["ebgp_multihop_ttl"], 2, "{v:#}");
    }
    // Over IPv4: s4 / s6 (the interface's IPv6 address). Over IPv6: s6 for both (RFC 8950 for IPv4).
    for (from, prefix, nh) in [(&s4, V4, &s4), (&s4, V6, &s6), (&s6, V6, &s6), (&s6, V4, &s6)] {
        let r = path_from(&frr, prefix, from);
        let ctx = format!("{prefix} from {from}: {r:#?}");
        assert_eq!(r.next_hop, *nh, "{ctx}");
        assert_eq!(r.as_path, [65001], "{ctx}");
        assert_eq!(r.communities, [COMMUNITY], "{ctx}");
    }
}

// ---------------------------------------------------------------------------------------------------
// source address

/// speakerd's interface has a second IPv4 and IPv6 address; FRR (passive) knows speakerd only by those.
/// With `--source-address` the sessions come up from them, speakerd reports them as local addresses, and
/// they are the next hops of routes of the session's family.
#[test]
fn source_address_is_used() {
    let Some(lab) = Lab::new_or_skip("source_address_is_used", &["frr"]) else {
        return;
    };
    let (s, f) = lab.pair("spk", "frr");
    let (src4, src6) = ("192.0.2.101", "2001:db8::101");
    s.addr_add(&s.dev, &format!("{src4}/24"));
    s.addr_add(&s.dev, &format!("{src6}/64"));
    let (f4, f6) = (f.v4.to_string(), f.v6.to_string());
    let frr = Frr::start(
        &f,
        PeerConfig::new(65002, f.v4)
            .neighbor(Neighbor::new(src4, 65001).passive())
            .neighbor(Neighbor::new(src6, 65001).passive()),
    );
    let sp = Speakerd::builder(&s).local_asn(65001).router_id(s.v4).start();
    sp.ctl(&["peer", "add", &f4, "--asn", "65002", "--source-address", src4, "--connect-time", "1"]);
    sp.ctl(&["peer", "add", &f6, "--asn", "65002", "--source-address", src6, "--connect-time", "1"]);
    sp.ctl(&["announce", "add", V4, V6, "--community", COMMUNITY]);
    sp.wait_peer_state(&f4, "established", T);
    sp.wait_peer_state(&f6, "established", T);
    frr.wait_established(src4);
    frr.wait_established(src6);
    for (peer, src) in [(&f4, src4), (&f6, src6)] {
        let p = sp.peer_show(peer);
        assert_eq!(p["negotiated"]["local_address"], src, "{p:#}");
        assert_eq!(p["config"]["source_address"], src, "{p:#}");
    }
    for (from, prefix, nh) in [(src4, V4, src4), (src6, V6, src6), (src6, V4, src6)] {
        let r = path_from(&frr, prefix, from);
        assert_eq!(r.next_hop, nh, "{prefix} from {from}: {r:#?}");
        assert_eq!(r.as_path, [65001], "{r:#?}");
    }
    // IPv6 over the IPv4 session: a global IPv6 address of the interface holding 192.0.2.101.
    let r = path_from(&frr, V6, src4);
    assert!(
        [s.v6.to_string(), src6.to_string()].contains(&r.next_hop),
        "IPv6 route over the session from {src4}: {r:#?}"
    );
    eprintln!("source address: IPv6 next hop over the IPv4 session sourced from {src4} is {}", r.next_hop);
}

/// GTSM (RFC 5082): with BIRD and FRR both configured for it the sessions come up, and speakerd's
/// packets arrive with TTL 255 (BIRD and FRR drop anything lower); a BIRD without it (TTL 1 for a
/// directly connected eBGP peer) never gets a session with a GTSM speakerd.
#[test]
fn gtsm_with_bird_and_frr_and_a_peer_without_it_never_establishes() {
    let Some(lab) = Lab::new_or_skip("gtsm", &["bird", "frr"]) else { return };
    let seg = lab.segment(&["spk", "bird", "frr", "plain"]);
    let (s, b, f, p) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2], &seg.hosts[3]);
    let sp = Speakerd::builder(s).local_asn(65001).router_id(s.v4).start();
    let _bird = Bird::start(b, PeerConfig::new(65002, b.v4).neighbor(Neighbor::new(s.v4, 65001).passive().gtsm()));
    let _frr = Frr::start(f, PeerConfig::new(65003, f.v4).neighbor(Neighbor::new(s.v4, 65001).passive().gtsm()));
    let plain = Bird::start(p, PeerConfig::new(65004, p.v4).neighbor(Neighbor::new(s.v4, 65001)));
    for (a, asn) in [(b.v4, "65002"), (f.v4, "65003"), (p.v4, "65004")] {
        sp.ctl(&["peer", "add", &a.to_string(), "--asn", asn, "--gtsm", "--connect-time", "1"]);
    }
    sp.wait_peer_state(&b.v4.to_string(), "established", Duration::from_secs(30));
    sp.wait_peer_state(&f.v4.to_string(), "established", Duration::from_secs(30));
    // The plain BIRD connects to us (and we to it) with TTL 1: IP_MINTTL drops its segments.
    assert_holds(Duration::from_secs(5), "no session with a peer that does not send TTL 255", || {
        let st = sp.peer_state(&p.v4.to_string()).unwrap_or_default();
        if st == "established" {
            Err(st)
        } else {
            Ok(())
        }
    });
    assert!(!plain.session_state(&s.v4.to_string()).to_lowercase().contains("established"));
    let e = sp.speakerctl(&["peer", "add", "192.0.2.99", "--asn", "65009", "--gtsm", "--ebgp-multihop", "3"]);
    assert!(!e.status.success(), "--gtsm with --ebgp-multihop must be refused");
}

/// Past max_received_prefixes with cease_on_max_received_prefixes: Cease / Maximum Number of Prefixes
/// Reached (6/1) goes to the peer, and the session stays down until reset.
#[test]
fn max_received_prefixes_cease() {
    let Some(lab) = Lab::new_or_skip("maxpfx", &["bird"]) else { return };
    let (s, b) = lab.pair("spk", "bird");
    let sp = Speakerd::builder(&s).local_asn(65001).router_id(s.v4).no_bgp_listen().start();
    let mut cfg = PeerConfig::new(65002, b.v4).neighbor(Neighbor::new(s.v4, 65001).passive());
    for i in 0..10 {
        cfg = cfg.announce(Announce::new(&format!("198.51.100.{i}/32")));
    }
    let bird = Bird::start(&b, cfg);
    sp.ctl(&[
        "peer",
        "add",
        &b.v4.to_string(),
        "--asn",
        "65002",
        "--connect-time",
        "1",
        "--max-received-prefixes",
        "5",
        "--cease-on-max-prefixes",
    ]);
    let n = wait_until(Duration::from_secs(30), "BIRD receives Cease / Maximum Number of Prefixes Reached", || {
        bird.last_notification_received(&s.v4.to_string())
            .filter(|n| n.code == 6 && n.subcode == 1)
            .ok_or_else(|| "none yet".to_string())
    });
    println!("BIRD got {n:?}");
    let show = sp.peer_show(&b.v4.to_string());
    assert_eq!(show["last_notification_sent"]["subcode"], 1, "{show}");
    assert_eq!(show["last_notification_sent"]["data_hex"], "00010100000005", "AFI 1, SAFI 1, limit 5: {show}");
    assert!(show["last_error"].as_str().unwrap_or_default().contains("Maximum Number of Prefixes"), "{show}");
    assert_holds(Duration::from_secs(4), "the session stays down until reset", || {
        match sp.peer_state(&b.v4.to_string()).as_deref() {
            Some("established") => Err("re-established".into()),
            _ => Ok(()),
        }
    });
}

/// MetalLB's `dynamicASN`: a peer added with `--dynamic-asn external` establishes with whatever
/// other AS its OPEN carries (BIRD, AS 65002: eBGP, our AS in the path), one with `internal` with our own
/// AS (FRR, AS 65001: iBGP, LOCAL_PREF sent, empty path), and an OPEN of the wrong kind (BIRD in AS
/// 65004 for an `internal` peer) gets OPEN Message Error / Bad Peer AS and never establishes.
#[test]
fn dynamic_asn_takes_the_peers_as_of_the_right_kind() {
    let Some(lab) = Lab::new_or_skip("dynasn", &["bird", "frr"]) else { return };
    let seg = lab.segment(&["spk", "bird", "frr", "wrong"]);
    let (s, b, f, w) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2], &seg.hosts[3]);
    let sp = Speakerd::builder(s).local_asn(65001).router_id(s.v4).start();
    let bird = Bird::start(b, PeerConfig::new(65002, b.v4).neighbor(Neighbor::new(s.v4, 65001).passive()));
    let frr = Frr::start(f, PeerConfig::new(65001, f.v4).neighbor(Neighbor::new(s.v4, 65001).passive()));
    let wrong = Bird::start(w, PeerConfig::new(65004, w.v4).neighbor(Neighbor::new(s.v4, 65001).passive()));
    let (b4, f4, w4) = (b.v4.to_string(), f.v4.to_string(), w.v4.to_string());
    sp.ctl(&["peer", "add", &b4, "--dynamic-asn", "external", "--connect-time", "1"]);
    sp.ctl(&["peer", "add", &f4, "--dynamic-asn", "internal", "--connect-time", "1"]);
    sp.ctl(&["peer", "add", &w4, "--dynamic-asn", "internal", "--connect-time", "1"]);
    sp.ctl(&["announce", "add", V4, "--local-pref", "250"]);
    sp.wait_peer_state(&b4, "established", T);
    sp.wait_peer_state(&f4, "established", T);
    let r = path_from(&bird, V4, &s.v4.to_string());
    assert_eq!(r.as_path, [65001], "eBGP to the external peer: {r:#?}");
    let r = path_from(&frr, V4, &s.v4.to_string());
    assert_eq!((r.as_path.len(), r.local_pref), (0, Some(250)), "iBGP to the internal peer: {r:#?}");
    // The AS each peer's OPEN carried is what the API and `peer list` show.
    for (addr, asn) in [(&b4, 65002), (&f4, 65001)] {
        let p = sp.peer_show(addr);
        assert_eq!(p["negotiated"]["peer_asn"], asn, "{p:#}");
        assert_eq!(p["peer_asn"], asn, "{p:#}");
    }
    assert_eq!(sp.peer_show(&b4)["config"]["dynamic_asn"], "external");
    // The wrong kind: Bad Peer AS (2/2) at BIRD, and never Established.
    let n = wait_until(T, "BIRD in AS 65004 receives OPEN Message Error / Bad Peer AS", || {
        wrong
            .last_notification_received(&s.v4.to_string())
            .filter(|n| n.code == 2 && n.subcode == 2)
            .ok_or_else(|| "none yet".to_string())
    });
    println!("the wrong kind got {n:?}");
    assert_holds(Duration::from_secs(3), "the wrong kind never establishes", || match sp.peer_state(&w4).as_deref() {
        Some("established") => Err("established".into()),
        _ => Ok(()),
    });
    // Refused combinations: an AS with --dynamic-asn, neither.
    assert!(!sp
        .speakerctl(&["peer", "add", "192.0.2.99", "--asn", "65009", "--dynamic-asn", "external"])
        .status
        .success());
    assert!(!sp.speakerctl(&["peer", "add", "192.0.2.99"]).status.success());
}
