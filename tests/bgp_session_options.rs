//! Per-peer session options against real daemons: 4-octet ASN with gobgpd, BIRD and FRR; TCP-MD5 with
//! FRR and gobgpd, and a wrong password that never establishes; eBGP multihop across a routed hop (and
//! no session without it, which shows the TTL is really set); source address selection.

mod common;

use common::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn wait_route(peer: &dyn BgpPeer, prefix: &str, name: &str) -> Route {
    wait_until(T, &format!("{prefix} at {name}"), || {
        peer.routes_for(prefix).into_iter().next().ok_or_else(|| format!("{:?}", peer.routes()))
    })
}

#[test]
fn four_octet_asn_with_gobgpd_bird_and_frr() {
    let Some(lab) = Lab::new_or_skip("asn4", &["gobgpd", "bird", "frr"]) else { return };
    let seg = lab.segment(&["spk", "gobgp", "bird", "frr"]);
    let (s, g, b, f) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2], &seg.hosts[3]);
    let asn: u32 = 4_200_000_000;
    let sp = Speakerd::builder(s).local_asn(asn).router_id(s.v4).start();
    let s4 = s.v4.to_string();
    let gobgp = Gobgpd::start(g, PeerConfig::new(4_200_000_002, g.v4).neighbor(Neighbor::new(&s4, asn).passive()));
    let bird = Bird::start(b, PeerConfig::new(4_200_000_003, b.v4).neighbor(Neighbor::new(&s4, asn).passive()));
    let frr = Frr::start(f, PeerConfig::new(65004, f.v4).neighbor(Neighbor::new(&s4, asn).passive()));
    for (h, n) in [(g, "4200000002"), (b, "4200000003"), (f, "65004")] {
        sp.ctl(&["peer", "add", &h.v4.to_string(), "--asn", n, "--connect-time", "1"]);
    }
    sp.ctl(&["announce", "add", "203.0.113.40/32", "2001:db8:40::/64", "--large-community", "4200000000:1:2"]);
    for (peer, name) in [(&gobgp as &dyn BgpPeer, "gobgpd"), (&bird, "BIRD"), (&frr, "FRR")] {
        for p in ["203.0.113.40/32", "2001:db8:40::/64"] {
            let r = wait_route(peer, p, name);
            assert_eq!((r.as_path.clone(), r.as_path_is_sequence), (vec![asn], true), "{name}: {r:#?}");
            assert_eq!(r.large_communities, vec!["4200000000:1:2"], "{name}: {r:#?}");
        }
    }
    // speakerd shows what was negotiated, with the peer's 4-octet ASN.
    let p = sp.speakerctl_json(&["peer", "show", &g.v4.to_string()]);
    assert_eq!(p["negotiated"]["four_octet_asn"], true, "{p}");
    assert_eq!(p["negotiated"]["peer_asn"], 4_200_000_002u64, "{p}");
}

#[test]
fn md5_with_frr_and_gobgpd_and_a_wrong_password_never_establishes() {
    let Some(lab) = Lab::new_or_skip("md5", &["gobgpd", "bird", "frr"]) else { return };
    let seg = lab.segment(&["spk", "gobgp", "frr", "bird"]);
    let (s, g, f, b) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2], &seg.hosts[3]);
    let sp = Speakerd::builder(s).local_asn(65001).router_id(s.v4).start();
    let (s4, s6) = (s.v4.to_string(), s.v6.to_string());
    // gobgpd waits for speakerd to connect; FRR (over IPv6) connects to speakerd, whose listening socket
    // must then hold the key for FRR's address.
    let gobgp = Gobgpd::start(g, PeerConfig::new(65002, g.v4).neighbor(Neighbor::new(&s4, 65001).passive().password("gobgp-secret")));
    let frr = Frr::start(f, PeerConfig::new(65003, f.v4).neighbor(Neighbor::new(&s6, 65001).password("frr-secret")));
    let bird = Bird::start(b, PeerConfig::new(65004, b.v4).neighbor(Neighbor::new(&s4, 65001).password("right-secret")));
    sp.ctl(&["peer", "add", &g.v4.to_string(), "--asn", "65002", "--password", "gobgp-secret", "--connect-time", "1"]);
    sp.ctl(&["peer", "add", &f.v6.to_string(), "--asn", "65003", "--password", "frr-secret", "--passive"]);
    sp.ctl(&["peer", "add", &b.v4.to_string(), "--asn", "65004", "--password", "wrong-secret", "--connect-time", "1"]);
    sp.ctl(&["announce", "add", "203.0.113.50/32"]);
    sp.wait_peer_state(&g.v4.to_string(), "established", T);
    sp.wait_peer_state(&f.v6.to_string(), "established", T);
    wait_route(&gobgp, "203.0.113.50/32", "gobgpd");
    wait_route(&frr, "203.0.113.50/32", "FRR");
    // The wrong key: BIRD and speakerd both keep trying, and no session ever comes up.
    assert_holds(Duration::from_secs(8), "session with a wrong TCP-MD5 key stays down", || {
        match (sp.peer_state(&b.v4.to_string()).as_deref(), bird.session_state(&s4).as_str()) {
            (Some("established"), _) | (_, "Established") => Err("established with a wrong key".into()),
            _ => Ok(()),
        }
    });
    assert!(bird.routes().is_empty());
    // Meanwhile the right ones never dropped.
    for a in [g.v4.to_string(), f.v6.to_string()] {
        let p = sp.speakerctl_json(&["peer", "show", &a]);
        assert_eq!((p["state"].as_str(), p["established_count"].as_u64()), (Some("established"), Some(1)), "{p}");
    }
    // Fixing the key brings it up.
    sp.ctl(&["peer", "update", &b.v4.to_string(), "--asn", "65004", "--password", "right-secret", "--connect-time", "1"]);
    sp.wait_peer_state(&b.v4.to_string(), "established", T);
    wait_route(&bird, "203.0.113.50/32", "BIRD");
}

#[test]
fn ebgp_multihop_across_a_routed_hop() {
    let Some(lab) = Lab::new_or_skip("multihop", &["frr"]) else { return };
    let net = lab.routed("spk", "rtr", "frr");
    let (s, f) = (&net.a, &net.b);
    let sp = Speakerd::builder(s).local_asn(65001).router_id(s.v4).start();
    let frr = Frr::start(f, PeerConfig::new(65002, f.v4).neighbor(Neighbor::new(s.v4.to_string(), 65001).passive().ebgp_multihop(2)));
    let fa = f.v4.to_string();
    // Without multihop our packets leave with TTL 1 and die at the router.
    sp.ctl(&["peer", "add", &fa, "--asn", "65002", "--connect-time", "1"]);
    sp.ctl(&["announce", "add", "203.0.113.60/32"]);
    assert_holds(Duration::from_secs(5), "no eBGP session across a hop with TTL 1", || {
        match sp.peer_state(&fa).as_deref() {
            Some("established") => Err("established with TTL 1".into()),
            _ => Ok(()),
        }
    });
    sp.ctl(&["peer", "update", &fa, "--asn", "65002", "--connect-time", "1", "--ebgp-multihop", "2"]);
    sp.wait_peer_state(&fa, "established", T);
    let r = wait_route(&frr, "203.0.113.60/32", "FRR");
    assert_eq!((r.next_hop.as_str(), r.as_path.as_slice()), (s.v4.to_string().as_str(), &[65001][..]), "{r:#?}");
}

#[test]
fn source_address_is_used_for_the_session_and_as_next_hop() {
    let Some(lab) = Lab::new_or_skip("srcaddr", &["bird"]) else { return };
    let (s, b) = lab.pair("spk", "bird");
    s.addr_add(&s.dev, "192.0.2.101/24");
    s.addr_add(&s.dev, "2001:db8::101/64");
    // BIRD knows speakerd only by its second addresses.
    let bird = Bird::start(
        &b,
        PeerConfig::new(65002, b.v4)
            .neighbor(Neighbor::new("192.0.2.101", 65001).passive())
            .neighbor(Neighbor::new("2001:db8::101", 65001).passive()),
    );
    let sp = Speakerd::builder(&s).local_asn(65001).router_id(s.v4).start();
    sp.ctl(&["peer", "add", &b.v4.to_string(), "--asn", "65002", "--source-address", "192.0.2.101", "--connect-time", "1", "--family", "ipv4"]);
    sp.ctl(&["peer", "add", &b.v6.to_string(), "--asn", "65002", "--source-address", "2001:db8::101", "--connect-time", "1", "--family", "ipv6"]);
    sp.ctl(&["announce", "add", "203.0.113.70/32", "2001:db8:70::/64"]);
    sp.wait_peer_state(&b.v4.to_string(), "established", T);
    sp.wait_peer_state(&b.v6.to_string(), "established", T);
    let r = wait_route(&bird, "203.0.113.70/32", "BIRD");
    assert_eq!(r.next_hop, "192.0.2.101", "{r:#?}");
    let r = wait_route(&bird, "2001:db8:70::/64", "BIRD");
    assert_eq!(r.next_hop, "2001:db8::101", "{r:#?}");
    let p = sp.speakerctl_json(&["peer", "show", &b.v4.to_string()]);
    assert_eq!(p["negotiated"]["local_address"], "192.0.2.101", "{p}");
}
