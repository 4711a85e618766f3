//! Self-test of the end-to-end harness (tests/common) against real gobgpd, BIRD and FRR, without speakerd:
//! if these fail, the harness or the machine is broken, not speakerd.

mod common;

use common::peers::{
    norm_ip, norm_next_hop, norm_prefix, normalise_state, parse_bird_log, parse_bird_routes, parse_gobgp_log,
};
use common::*;
use std::time::Duration;

/// gobgpd (passive) with BIRD over IPv4 and FRR over IPv6 on one bridge segment: routes with communities
/// both ways and across gobgpd, both address families over each session, withdraw, Cease.
#[test]
fn gobgpd_exchanges_routes_with_bird_and_frr() {
    let Some(lab) = Lab::new_or_skip("gobgpd_exchanges_routes_with_bird_and_frr", &["gobgpd", "bird", "frr"]) else {
        return;
    };
    let seg = lab.segment(&["gobgp", "bird", "frr"]);
    let (g, b, f) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2]);
    let (g4, g6, b4, f6) = (g.v4.to_string(), g.v6.to_string(), b.v4.to_string(), f.v6.to_string());

    let mut gobgp = Gobgpd::start(
        g,
        PeerConfig::new(65001, &g4)
            .neighbor(Neighbor::new(&b4, 65002).passive())
            .neighbor(Neighbor::new(&f6, 65003).passive())
            .announce(Announce::new("203.0.113.0/24").community("65001:100").large_community("65001:1:2").med(10))
            .announce(Announce::new("2001:db8:ff::/48").community("65001:6")),
    );
    let mut bird = Bird::start(b, PeerConfig::new(65002, &b4).neighbor(Neighbor::new(&g4, 65001)));
    let mut frr = Frr::start(f, PeerConfig::new(65003, f.v4).neighbor(Neighbor::new(&g6, 65001)));

    bird.wait_established(&g4);
    frr.wait_established(&g6);
    assert_eq!(gobgp.session_state(&b4), "Established");
    gobgp.wait_established(&f6);

    // gobgpd → BIRD (IPv4 session): both families; IPv6 with an IPv4-mapped next hop
    let r = bird.wait_route("203.0.113.0/24");
    assert_eq!(r.as_path, vec![65001], "{r:#?}");
    assert!(r.as_path_is_sequence);
    assert_eq!(r.next_hop, g4);
    assert_eq!(r.peer, g4);
    assert_eq!(r.origin, "incomplete", "gobgp's CLI originates with ORIGIN incomplete");
    assert_eq!(r.communities, vec!["65001:100"]);
    assert_eq!(r.large_communities, vec!["65001:1:2"]);
    assert_eq!(r.med, Some(10));
    let r6 = bird.wait_route("2001:db8:ff::/48");
    assert_eq!(r6.next_hop, format!("::ffff:{g4}"));
    assert_eq!(r6.communities, vec!["65001:6"]);

    // gobgpd → FRR (IPv6 session): both families; IPv4 with an IPv6 next hop (RFC 8950)
    let r = frr.wait_route("203.0.113.0/24");
    assert_eq!((r.as_path.clone(), r.as_path_is_sequence), (vec![65001], true), "{r:#?}");
    assert_eq!(r.next_hop, g6);
    assert_eq!(r.peer, g6);
    assert_eq!(r.communities, vec!["65001:100"]);
    assert_eq!(r.large_communities, vec!["65001:1:2"]);
    assert_eq!(r.med, Some(10));
    assert_eq!(frr.wait_route("2001:db8:ff::/48").next_hop, g6);

    // BIRD → gobgpd → FRR, FRR → gobgpd
    bird.announce(Announce::new("198.51.100.0/25").community("65002:7").large_community("65002:7:9").med(42));
    frr.announce(Announce::new("198.51.100.128/25").community("65003:8").local_pref(300));
    let r = gobgp.wait_route("198.51.100.0/25");
    assert_eq!(
        (r.as_path.clone(), r.next_hop.clone(), r.peer.clone()),
        (vec![65002], b4.clone(), b4.clone()),
        "{r:#?}"
    );
    assert_eq!(r.communities, vec!["65002:7"]);
    assert_eq!(r.large_communities, vec!["65002:7:9"]);
    assert_eq!(r.med, Some(42));
    let r = frr.wait_route("198.51.100.0/25");
    assert_eq!(r.as_path, vec![65001, 65002], "{r:#?}");
    assert_eq!(r.communities, vec!["65002:7"]);
    let r = gobgp.wait_route("198.51.100.128/25");
    assert_eq!((r.as_path.clone(), r.peer.clone()), (vec![65003], f6.clone()), "{r:#?}");
    assert_eq!(r.communities, vec!["65003:8"]);
    assert_eq!(r.local_pref, None, "LOCAL_PREF is not sent over eBGP");
    assert_eq!(r.origin, "igp", "FRR's network statement originates with ORIGIN igp");
    // only received routes: nobody lists its own prefixes
    assert!(gobgp.routes_for("203.0.113.0/24").is_empty());
    assert!(bird.routes_for("198.51.100.0/25").is_empty());
    assert!(frr.routes_for("198.51.100.128/25").is_empty());

    // re-announce with other attributes, then withdraw
    frr.announce(Announce::new("198.51.100.128/25").community("65003:9"));
    gobgp.wait_route_matching("198.51.100.128/25 with 65003:9", |r| r.communities == ["65003:9"]);
    gobgp.withdraw("203.0.113.0/24");
    bird.wait_no_route("203.0.113.0/24");
    frr.wait_no_route("203.0.113.0/24");
    bird.withdraw("198.51.100.0/25");
    gobgp.wait_no_route("198.51.100.0/25");
    frr.wait_no_route("198.51.100.0/25");
    frr.withdraw("198.51.100.128/25");
    gobgp.wait_no_route("198.51.100.128/25");

    // administrative shutdown: the other side records a Cease
    assert_eq!(bird.last_notification_received(&g4), None);
    gobgp.disable_neighbor(&b4);
    let n = bird.wait_notification(&g4);
    assert!(n.is_cease() && n.subcode == 2, "{n:?}");
    frr.disable_neighbor(&g6);
    let n = gobgp.wait_notification(&f6);
    assert_eq!((n.code, n.subcode), (6, 2), "{n:?}");
    gobgp.enable_neighbor(&b4);
    bird.wait_established(&g4);
    // routes still originated come back after the session does
    assert_eq!(bird.wait_route("2001:db8:ff::/48").communities, vec!["65001:6"]);
}

/// BIRD (active) and FRR (passive) with a 3 s hold time: SIGSTOP of FRR brings the session down, SIGCONT
/// lets it come back, kill -9 + restart of either side restores the session and FRR's announcements.
#[test]
fn freeze_kill_and_restart_peers() {
    let Some(lab) = Lab::new_or_skip("freeze_kill_and_restart_peers", &["bird", "frr"]) else {
        return;
    };
    let (a, b) = lab.pair("bird", "frr");
    let (a4, b4) = (a.v4.to_string(), b.v4.to_string());
    let mut bird = Bird::start(&a, PeerConfig::new(65002, &a4).neighbor(Neighbor::new(&b4, 65003).hold_time(3)));
    let mut frr =
        Frr::start(&b, PeerConfig::new(65003, &b4).neighbor(Neighbor::new(&a4, 65002).passive().hold_time(3)));
    frr.wait_established(&a4);
    frr.announce(Announce::new("2001:db8:aa::/48").large_community("65003:1:1"));
    let r = bird.wait_route("2001:db8:aa::/48");
    assert_eq!(r.next_hop, format!("::ffff:{b4}"), "FRR sends IPv6 routes over IPv4 with a mapped next hop");

    frr.freeze();
    let state = bird.wait_not_established(&b4, Duration::from_secs(10));
    eprintln!("BIRD with FRR frozen: {state}");
    bird.wait_no_route("2001:db8:aa::/48");
    frr.unfreeze();
    bird.wait_established(&b4);
    bird.wait_route("2001:db8:aa::/48");

    bird.kill9();
    assert!(!bird.is_running());
    frr.wait_not_established(&a4, Duration::from_secs(10));
    bird.restart();
    frr.wait_established(&a4);
    bird.wait_route("2001:db8:aa::/48");

    frr.restart(); // the runtime announcement must survive (it is written to bgpd.conf)
    bird.wait_established(&b4);
    assert_eq!(bird.wait_route("2001:db8:aa::/48").large_communities, vec!["65003:1:1"]);
}

/// eBGP multihop between loopback addresses across a router namespace: FRR on host a, BIRD on host b
/// with its session sourced from an extra address on lo.
#[test]
fn multihop_session_over_routed_path() {
    let Some(lab) = Lab::new_or_skip("multihop_session_over_routed_path", &["bird", "frr"]) else {
        return;
    };
    let t = lab.routed("a", "r", "b");
    let (a4, blo) = (t.a.v4.to_string(), "203.0.113.9");
    t.b.lo_addr(blo.parse().unwrap());
    t.router.route_add(&["203.0.113.9/32", "via", &t.b.v4.to_string()]);
    t.a.wait_ping(blo.parse().unwrap());

    let frr = Frr::start(&t.a, PeerConfig::new(65010, &a4).neighbor(Neighbor::new(blo, 65020).ebgp_multihop(3)));
    let mut bird = Bird::start(
        &t.b,
        PeerConfig::new(65020, blo).neighbor(Neighbor::new(&a4, 65010).ebgp_multihop(3).source_address(blo).passive()),
    );
    frr.wait_established(blo);
    bird.wait_established(&a4);
    bird.announce(Announce::new("198.51.100.128/25").community("65020:1"));
    let r = frr.wait_route("198.51.100.128/25");
    assert_eq!((r.as_path.clone(), r.next_hop.clone()), (vec![65020], blo.to_string()), "{r:#?}");
}

/// Parsers and normalisation (no root needed).
#[test]
fn outputs_are_normalised() {
    let text = [
        "BIRD 2.0.12 ready.",
        "Table master4:",
        "198.51.100.0/25      blackhole [static4 06:29:29.878] * (200)",
        "\tType: static univ",
        "203.0.113.0/24       unreachable [n1 06:29:30.802 from 2001:db8::1] * (100) [AS4200000001?]",
        "\tType: BGP univ",
        "\tBGP.origin: Incomplete",
        "\tBGP.as_path: 4200000001 {1 2}",
        "\tBGP.next_hop: 2001:db8::1",
        "\tBGP.local_pref: 100",
        "\tBGP.community: (65010,1) (65010,2)",
        "\tBGP.large_community: (1, 2, 3)",
        "                     unicast [n2 06:29:30.900] (100) [AS65001i]",
        "\tvia 192.0.2.3 on eth0",
        "\tType: BGP univ",
        "\tBGP.origin: IGP",
        "\tBGP.as_path: 65001",
        "\tBGP.next_hop: 192.0.2.3",
        "\tBGP.med: 7",
    ]
    .join("\n");
    let names = vec![("n1".to_string(), "2001:db8::1".to_string()), ("n2".to_string(), "192.0.2.3".to_string())];
    let r = parse_bird_routes(&text, &names);
    assert_eq!(r.len(), 2, "{r:#?}");
    assert_eq!(r[0].as_path, vec![4200000001, 1, 2]);
    assert!(!r[0].as_path_is_sequence);
    assert_eq!(r[0].communities, vec!["65010:1", "65010:2"]);
    assert_eq!(r[0].large_communities, vec!["1:2:3"]);
    assert_eq!((r[0].origin.as_str(), r[0].peer.as_str(), r[0].local_pref), ("incomplete", "2001:db8::1", Some(100)));
    assert_eq!((r[1].prefix.as_str(), r[1].med, r[1].peer.as_str()), ("203.0.113.0/24", Some(7), "192.0.2.3"));

    let g = r#"{"Key":"192.0.2.13","Reason":"notification-received code 6(cease) subcode 2(administrative shutdown)","State":"BGP_FSM_ESTABLISHED","Topic":"Peer","level":"info","msg":"Peer Down"}"#;
    assert_eq!(parse_gobgp_log(g, "192.0.2.13").map(|n| (n.code, n.subcode)), Some((6, 2)));
    assert_eq!(parse_gobgp_log(g, "192.0.2.14"), None);
    let b = "2026-11-25 06:30:31.733 <RMT> n1: Received: Administrative shutdown\nx <RMT> n3: Received: Hold timer expired\n";
    assert_eq!(parse_bird_log(b, "n1").map(|n| (n.code, n.subcode)), Some((6, 2)));
    assert_eq!(parse_bird_log(b, "n3").map(|n| (n.code, n.subcode)), Some((4, 0)));
    assert_eq!(parse_bird_log(b, "n2"), None);
    let b = "x <RMT> n2: Received: Unknown error 6.12: 01 02\n";
    assert_eq!(parse_bird_log(b, "n2").map(|n| (n.code, n.subcode)), Some((6, 12)));

    assert_eq!(norm_next_hop("2001:db8::/64", "192.0.2.1"), "::ffff:192.0.2.1");
    assert_eq!(norm_next_hop("2001:db8::/64", "::ffff:c000:201"), "::ffff:192.0.2.1");
    assert_eq!(norm_prefix("2001:0db8:00::/48"), "2001:db8::/48");
}

/// The spellings every daemon's output is mapped onto (no root needed).
#[test]
fn normalisation_cases() {
    type Norm = fn(&str) -> String;
    // (name, function, input, expected)
    let cases: &[(&str, Norm, &str, &str)] = &[
        ("norm_ip", norm_ip, "2001:0db8:0000::0001", "2001:db8::1"),
        ("norm_ip", norm_ip, "192.0.2.1", "192.0.2.1"),
        ("norm_ip", norm_ip, "not-an-address", "not-an-address"),
        ("norm_prefix", norm_prefix, "2001:0db8:00::/48", "2001:db8::/48"),
        ("norm_prefix", norm_prefix, "198.51.100.0/25", "198.51.100.0/25"),
        ("norm_prefix", norm_prefix, "no-slash", "no-slash"),
        ("normalise_state", normalise_state, "BGP_FSM_ESTABLISHED", "Established"),
        ("normalise_state", normalise_state, "SESSION_STATE_OPENSENT", "OpenSent"),
        ("normalise_state", normalise_state, "open_confirm", "OpenConfirm"),
        ("normalise_state", normalise_state, "Idle", "Idle"),
        ("normalise_state", normalise_state, "active", "Active"),
        ("normalise_state", normalise_state, "connect", "Connect"),
        ("normalise_state", normalise_state, "Passive", "Passive"),
    ];
    for (name, f, input, want) in cases {
        assert_eq!(f(input), *want, "{name}({input:?})");
    }
    // (prefix, next hop, expected): an IPv4 next hop of an IPv6 route is shown IPv4-mapped
    let next_hops = [
        ("2001:db8::/64", "192.0.2.1", "::ffff:192.0.2.1"),
        ("2001:db8::/64", "::ffff:c000:201", "::ffff:192.0.2.1"),
        ("2001:db8::/64", "2001:0db8::1", "2001:db8::1"),
        ("192.0.2.0/24", "192.0.2.1", "192.0.2.1"),
        ("192.0.2.0/24", "", ""),
    ];
    for (prefix, nh, want) in next_hops {
        assert_eq!(norm_next_hop(prefix, nh), want, "norm_next_hop({prefix:?}, {nh:?})");
    }
}
