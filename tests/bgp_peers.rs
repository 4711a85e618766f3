//! speakerd against real gobgpd, BIRD 2 and FRR 8 on one L2 segment: eBGP and iBGP, speakerd active and
//! passive, IPv4 and IPv6 sessions. Prefixes announced with speakerctl must appear at every peer with
//! the right next hop, AS_PATH (one AS_SEQUENCE), ORIGIN, communities, large communities, MED and, on
//! iBGP, LOCAL_PREF; a withdraw must remove them, and only them.

mod common;

use common::*;
use std::time::Duration;

const SPK_ASN: u32 = 65001;
const V4: &str = "203.0.113.10/32";
const V6: &str = "2001:db8:100::10/128";

struct Case {
    name: &'static str,
    ibgp: bool,
    speakerd_active: bool,
    /// Which daemon peers over IPv6 addresses (the others over IPv4).
    v6_session: &'static str,
}

fn run(case: Case) {
    let Some(lab) = Lab::new_or_skip(case.name, &["gobgpd", "bird", "frr"]) else { return };
    let seg = lab.segment(&["spk", "gobgp", "bird", "frr"]);
    let (s, g, b, f) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2], &seg.hosts[3]);
    let asn = |n: u32| if case.ibgp { SPK_ASN } else { n };
    let (g_asn, b_asn, f_asn) = (asn(65002), asn(65003), asn(65004));
    // The address each side uses for the session, and speakerd's address as seen by that peer.
    let addr = |h: &Host, who: &str| if case.v6_session == who { h.v6.to_string() } else { h.v4.to_string() };
    let (g_addr, b_addr, f_addr) = (addr(g, "gobgp"), addr(b, "bird"), addr(f, "frr"));
    let (s_for_g, s_for_b, s_for_f) = (addr(s, "gobgp"), addr(s, "bird"), addr(s, "frr"));

    let sp = Speakerd::builder(s).local_asn(SPK_ASN).router_id(s.v4).start();
    // The side that does not connect waits; gobgpd as the active side takes 5-9 s to connect.
    let nb = |a: &str, n: u32| {
        let n = Neighbor::new(a, n);
        if case.speakerd_active {
            n.passive()
        } else {
            n
        }
    };
    let gobgp = Gobgpd::start(g, PeerConfig::new(g_asn, g.v4).neighbor(nb(&s_for_g, SPK_ASN)));
    let bird = Bird::start(b, PeerConfig::new(b_asn, b.v4).neighbor(nb(&s_for_b, SPK_ASN)));
    let frr = Frr::start(f, PeerConfig::new(f_asn, f.v4).neighbor(nb(&s_for_f, SPK_ASN)));

    for (a, n, name) in [(&g_addr, g_asn, "gobgp"), (&b_addr, b_asn, "bird"), (&f_addr, f_asn, "frr")] {
        let mut args = vec!["peer", "add", a.as_str(), "--name", name, "--connect-time", "1"];
        let n = n.to_string();
        args.extend(["--asn", &n]);
        if !case.speakerd_active {
            args.push("--passive");
        }
        sp.ctl(&args);
    }
    sp.ctl(&[
        "announce",
        "add",
        V4,
        V6,
        "--community",
        "65000:100",
        "--community",
        "no-peer",
        "--large-community",
        "65001:1:2",
        "--med",
        "50",
        "--local-pref",
        "300",
    ]);
    let timeout = Duration::from_secs(30);
    for a in [&g_addr, &b_addr, &f_addr] {
        sp.wait_peer_state(a, "established", timeout);
    }

    let peers: [(&dyn BgpPeer, &str, &str); 3] =
        [(&gobgp, "gobgpd", &s_for_g), (&bird, "BIRD", &s_for_b), (&frr, "FRR", &s_for_f)];
    for (peer, name, spk_addr) in peers {
        let session_v6 = spk_addr.contains(':');
        for prefix in [V4, V6] {
            let r = wait_until(timeout, &format!("{prefix} at {name}"), || {
                peer.routes_for(prefix).into_iter().next().ok_or_else(|| format!("{:?}", peer.routes()))
            });
            let ctx =
                format!("{name} ({}, session over {}): {r:#?}", if case.ibgp { "iBGP" } else { "eBGP" }, spk_addr);
            let want_path: Vec<u32> = if case.ibgp { vec![] } else { vec![SPK_ASN] };
            assert_eq!(r.as_path, want_path, "{ctx}");
            assert!(r.as_path_is_sequence, "AS_PATH must be an AS_SEQUENCE: {ctx}");
            assert_eq!(r.origin, "igp", "{ctx}");
            assert_eq!(r.communities, vec!["65000:100", "65535:65284"], "{ctx}");
            assert_eq!(r.large_communities, vec!["65001:1:2"], "{ctx}");
            assert_eq!(r.med, Some(50), "{ctx}");
            if case.ibgp {
                assert_eq!(r.local_pref, Some(300), "{ctx}");
            }
            // Next hop: the session's own address for its family; for the other family a real address of
            // speakerd's interface (never IPv4-mapped): over IPv4 sessions IPv6 routes get s.v6, and over
            // IPv6 sessions IPv4 routes get s.v6 as an RFC 8950 next hop (both peers negotiate it).
            let want_nh = match (prefix == V4, session_v6) {
                (true, false) => s.v4.to_string(),
                (false, _) | (true, true) => s.v6.to_string(),
            };
            assert_eq!(r.next_hop, want_nh, "{ctx}");
            assert!(!r.next_hop.starts_with("::ffff:"), "{ctx}");
        }
    }

    // speakerctl reports the sessions and what each was sent.
    for p in sp.peers() {
        assert_eq!(p["state"], "established", "{p}");
        assert_eq!(p["advertised"], 2, "{p}");
    }

    // Withdraw the IPv4 prefix: gone everywhere, the IPv6 one stays.
    sp.ctl(&["announce", "withdraw", V4]);
    for (peer, name, _) in peers {
        wait_until(timeout, &format!("{V4} withdrawn at {name}"), || {
            if peer.routes_for(V4).is_empty() {
                Ok(())
            } else {
                Err(format!("{:?}", peer.routes()))
            }
        });
        assert_eq!(peer.routes_for(V6).len(), 1, "{name} lost {V6}");
    }
    sp.ctl(&["announce", "withdraw", V6]);
    for (peer, name, _) in peers {
        wait_until(timeout, &format!("{V6} withdrawn at {name}"), || {
            if peer.routes().is_empty() {
                Ok(())
            } else {
                Err(format!("{:?}", peer.routes()))
            }
        });
    }
}

#[test]
fn ebgp_speakerd_active_to_gobgpd_bird_frr() {
    run(Case { name: "ebgp_active", ibgp: false, speakerd_active: true, v6_session: "frr" });
}

#[test]
fn ebgp_speakerd_passive_to_gobgpd_bird_frr() {
    run(Case { name: "ebgp_passive", ibgp: false, speakerd_active: false, v6_session: "bird" });
}

#[test]
fn ibgp_speakerd_active_to_gobgpd_bird_frr() {
    run(Case { name: "ibgp_active", ibgp: true, speakerd_active: true, v6_session: "gobgp" });
}

#[test]
fn ibgp_speakerd_passive_to_gobgpd_bird_frr() {
    run(Case { name: "ibgp_passive", ibgp: true, speakerd_active: false, v6_session: "frr" });
}
