//! BFD with BIRD's BFD: the session comes Up with the configured intervals, the BGP session is tied to
//! it, and cutting the peer's link tears the BGP session down in about detect multiplier × interval
//! instead of the 90 s hold time. Malformed BFD packets from a scripted peer are dropped and counted.

mod common;

use common::*;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

#[test]
fn bird_bfd_session_up_and_link_cut_resets_bgp_fast() {
    let Some(lab) = Lab::new_or_skip("bfd", &["bird"]) else { return };
    let (s, b) = lab.pair("spk", "bird");
    let s4 = s.v4.to_string();
    let bird =
        Bird::start(&b, PeerConfig::new(65002, b.v4).bfd(100, 100, 3).neighbor(Neighbor::new(&s4, 65001).passive()));
    let sp = Speakerd::builder(&s).local_asn(65001).router_id(s.v4).metrics("127.0.0.1:9474").start();
    let ba = b.v4.to_string();
    sp.ctl(&[
        "peer",
        "add",
        &ba,
        "--asn",
        "65002",
        "--connect-time",
        "1",
        "--bfd",
        "--bfd-receive-interval",
        "100",
        "--bfd-transmit-interval",
        "100",
        "--bfd-detect-multiplier",
        "3",
    ]);
    sp.ctl(&["announce", "add", "203.0.113.110/32"]);
    sp.wait_peer_state(&ba, "established", T);
    let p = sp.wait_peer(T, &ba, "BFD Up at the fast rate", |p| {
        p["bfd"]["state"] == "Up" && p["bfd"]["tx_interval_ms"] == 100
    });
    assert_eq!(p["bfd"]["detect_time_ms"], 300, "{p}");
    let sessions = wait_until(T, "BIRD's BFD session Up", || {
        let out = bird.birdc(&["show", "bfd", "sessions"])?;
        if out.contains(&s4) && out.contains("Up") {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert!(sessions.contains("0.100"), "BIRD uses the 100 ms intervals: {sessions}");
    // MetalLB's metallb_bfd_* names, by peer IP: up, one up event, packets both ways.
    sp.wait(T, "metallb_bfd_* metrics", || {
        let m = s.metrics(9474)?;
        let v = |series: String| m.lines().find_map(|l| l.strip_prefix(series.as_str())?.trim().parse::<u64>().ok());
        let lbl = format!("{{peer=\"{ba}\"}}");
        match (
            v(format!("metallb_bfd_session_up{lbl}")),
            v(format!("metallb_bfd_session_up_events{lbl}")),
            v(format!("metallb_bfd_control_packet_input{lbl}")),
            v(format!("metallb_bfd_control_packet_output{lbl}")),
        ) {
            (Some(1), Some(1), Some(i), Some(o)) if i > 0 && o > 0 => Ok(()),
            other => Err(format!("{other:?}\n{m}")),
        }
    });
    wait_until(T, "route at BIRD", || {
        bird.routes_for("203.0.113.110/32").into_iter().next().ok_or_else(|| "none".to_string())
    });

    // The watch stream reports BFD state changes.
    let watch_log = lab.dir().join("watch.ndjson");
    let _watch = sp.watch_json(&watch_log);

    // Cut the link on the peer's side: no more BFD packets arrive.
    let cut = Instant::now();
    b.link_down(&b.dev);
    let p =
        sp.wait_peer(Duration::from_secs(10), &ba, "the BGP session torn down by BFD", |p| p["state"] != "established");
    let took = cut.elapsed();
    eprintln!("link cut -> BGP session down after {took:?} (BFD 3 x 100 ms; hold time 90 s)");
    assert!(took < Duration::from_secs(3), "took {took:?}: BFD did not act");
    assert_eq!(p["last_notification_sent"]["code"], 6, "{p}");
    assert_eq!(p["last_notification_sent"]["subcode"], 10, "Cease / BFD Down: {p}");
    assert!(sp.log().contains("BFD session down"), "{}", sp.log_tail(20));
    wait_until(T, "a BFD Up -> Down event on the watch stream", || {
        let t = std::fs::read_to_string(&watch_log).unwrap_or_default();
        let hit = t.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).any(|v| {
            v["bfd"]["address"] == ba.as_str()
                && v["bfd"]["old_state"] == "Up"
                && v["bfd"]["new_state"] == "Down"
                && v["bfd"]["diagnostic"] == 1
        });
        if hit {
            Ok(())
        } else {
            Err(t)
        }
    });

    // Link back: BFD and BGP come back, and the route is there again.
    b.link_up(&b.dev);
    sp.wait_peer_state(&ba, "established", T);
    wait_until(T, "route at BIRD again", || {
        bird.routes_for("203.0.113.110/32").into_iter().next().ok_or_else(|| "none".to_string())
    });

    // Malformed packets from a scripted sender in BIRD's namespace: dropped and counted, no panic.
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.setsockopt(socket.IPPROTO_IP,socket.IP_TTL,255)\n\
         for p in [b'\\x20'*10, bytes([0x40,0xc0,3,24])+bytes(20), bytes([0x20,0x40,0,24])+bytes(20), bytes([0x20,0xc0,3,24])+b'\\0\\0\\0\\1'+b'\\x99'*16]:\n    s.sendto(p,('{s4}',3784))\n\
         t=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nt.setsockopt(socket.IPPROTO_IP,socket.IP_TTL,7)\nt.sendto(bytes([0x20,0x40,3,24])+b'\\0\\0\\0\\5'+bytes(16),('{s4}',3784))\n"
    );
    b.run_ok(&["python3", "-c", &script]);
    sp.wait(T, "drops counted in the metrics", || {
        let m = s.metrics(9474)?;
        let want = ["bad_length", "bad_version", "zero_detect_mult", "unknown_discriminator", "bad_ttl"];
        if want.iter().all(|w| m.contains(&format!("speakerd_bfd_dropped_packets_total{{reason=\"{w}\"}}"))) {
            Ok(())
        } else {
            Err(m)
        }
    });
    let p = sp.peer_show(&ba);
    assert_eq!(p["state"], "established", "malformed packets must not disturb the session: {p}");
}

/// FRR: bgpd registers its BFD sessions through zebra, so zebra, bfdd and bgpd run together here.
#[test]
fn frr_bfdd_session_up_and_bfdd_killed_resets_bgp_fast() {
    let Some(lab) = Lab::new_or_skip("bfdfrr", &["frr"]) else { return };
    let (s, f) = lab.pair("spk", "frr");
    let (s4, fa) = (s.v4.to_string(), f.v4.to_string());
    let dir = lab.dir().join("frr-bfd");
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap().to_string();
    std::fs::write(dir.join("zebra.conf"), "hostname zebra\n").unwrap();
    std::fs::write(
        dir.join("bfdd.conf"),
        format!("bfd\n peer {s4}\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n exit\n!\n"),
    )
    .unwrap();
    std::fs::write(
        dir.join("bgpd.conf"),
        format!(
            "router bgp 65002\n bgp router-id {fa}\n no bgp ebgp-requires-policy\n neighbor {s4} remote-as 65001\n neighbor {s4} passive\n neighbor {s4} bfd\n address-family ipv4 unicast\n  neighbor {s4} activate\n exit-address-family\n!\n"
        ),
    )
    .unwrap();
    run_ok(&["chown", "-R", "frr:frr", &d]);
    let zsock = format!("{d}/zserv.api");
    let _zebra = f.spawn(
        "zebra",
        &[
            "/usr/lib/frr/zebra",
            "-z",
            &zsock,
            "-i",
            &format!("{d}/zebra.pid"),
            "--vty_socket",
            &d,
            "-f",
            &format!("{d}/zebra.conf"),
        ],
        &dir.join("zebra.log"),
        &[],
    );
    wait_until(
        T,
        "zebra's socket",
        || if std::path::Path::new(&zsock).exists() { Ok(()) } else { Err("absent".into()) },
    );
    let mut bfdd = f.spawn(
        "bfdd",
        &[
            "/usr/lib/frr/bfdd",
            "-z",
            &zsock,
            "-i",
            &format!("{d}/bfdd.pid"),
            "--vty_socket",
            &d,
            "-f",
            &format!("{d}/bfdd.conf"),
            "--bfdctl",
            &format!("{d}/bfdd.sock"),
        ],
        &dir.join("bfdd.log"),
        &[],
    );
    let _bgpd = f.spawn(
        "bgpd",
        &[
            "/usr/lib/frr/bgpd",
            "-z",
            &zsock,
            "-i",
            &format!("{d}/bgpd.pid"),
            "--vty_socket",
            &d,
            "-f",
            &format!("{d}/bgpd.conf"),
            "-A",
            "127.0.0.1",
            "-p",
            "179",
        ],
        &dir.join("bgpd.log"),
        &[],
    );
    let vtysh = |cmd: &str| run(&["vtysh", "--vty_socket", &d, "-c", cmd]);

    let sp = Speakerd::builder(&s).local_asn(65001).router_id(s.v4).start();
    sp.ctl(&[
        "peer",
        "add",
        &fa,
        "--asn",
        "65002",
        "--connect-time",
        "1",
        "--bfd",
        "--bfd-receive-interval",
        "100",
        "--bfd-transmit-interval",
        "100",
        "--bfd-detect-multiplier",
        "3",
    ]);
    sp.wait_peer_state(&fa, "established", T);
    sp.wait_peer(T, &fa, "BFD Up on speakerd", |p| p["bfd"]["state"] == "Up" && p["bfd"]["tx_interval_ms"] == 100);
    let peers = wait_until(T, "FRR bfdd session up", || {
        let out = vtysh("show bfd peers json")?;
        if out.contains("\"status\":\"up\"") {
            Ok(out)
        } else {
            Err(out)
        }
    });
    assert!(peers.contains("\"transmit-interval\":100") && peers.contains("\"receive-interval\":100"), "{peers}");
    let nbr = vtysh(&format!("show bgp neighbors {s4} json")).unwrap_or_default();
    assert!(nbr.contains("peerBfdInfo") || nbr.contains("bfdInfo"), "FRR's BGP session is tied to BFD: {nbr}");

    // The peer's BFD process dies: its packets stop, speakerd's BFD and then BGP go down at once.
    let cut = Instant::now();
    bfdd.kill9();
    sp.wait_peer(Duration::from_secs(10), &fa, "the BGP session torn down by BFD", |p| {
        p["state"] != "established" && p["last_notification_sent"]["subcode"] == 10
    });
    let took = cut.elapsed();
    eprintln!("FRR bfdd killed -> BGP session down after {took:?}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // BFD stays down (bfdd is dead), so BGP must not come back over TCP alone.
    sp.assert_peer_holds(Duration::from_secs(3), &fa, "BGP held down while BFD is down", |p| {
        p["state"] != "established"
    });
}

#[test]
fn bfd_meticulous_keyed_sha1_with_bird() {
    let Some(lab) = Lab::new_or_skip("bfdauth", &["bird"]) else { return };
    let (s, b) = lab.pair("spk", "bird");
    let s4 = s.v4.to_string();
    let bird = Bird::start(
        &b,
        PeerConfig::new(65002, b.v4)
            .bfd(100, 100, 3)
            .bfd_auth("meticulous keyed sha1", 7, "bfd-s3cret")
            .neighbor(Neighbor::new(&s4, 65001).passive()),
    );
    let sp = Speakerd::builder(&s).local_asn(65001).router_id(s.v4).metrics("127.0.0.1:9475").start();
    let ba = b.v4.to_string();
    let add = |key: &str| {
        let args = [
            "--asn",
            "65002",
            "--connect-time",
            "1",
            "--bfd",
            "--bfd-receive-interval",
            "100",
            "--bfd-transmit-interval",
            "100",
            "--bfd-auth-type",
            "meticulous-keyed-sha1",
            "--bfd-auth-key-id",
            "7",
            "--bfd-auth-password",
            key,
        ];
        let verb = if sp.peer_state(&ba).is_some() { "update" } else { "add" };
        let mut a = vec!["peer", verb, ba.as_str()];
        a.extend(args);
        sp.ctl(&a);
    };
    add("bfd-s3cret");
    sp.wait_peer(T, &ba, "authenticated BFD Up", |p| p["bfd"]["state"] == "Up" && p["state"] == "established");
    wait_until(T, "BIRD's authenticated BFD session Up", || {
        let out = bird.birdc(&["show", "bfd", "sessions"])?;
        if out.contains(" Up ") {
            Ok(())
        } else {
            Err(out)
        }
    });
    // A wrong key: BIRD's packets no longer authenticate; BFD never comes up again.
    add("wrong-key");
    let m = sp.wait(T, "bad_auth drops", || {
        let m = s.metrics(9475)?;
        if m.contains("reason=\"bad_auth\"") {
            Ok(m)
        } else {
            Err(m)
        }
    });
    assert!(m.contains("speakerd_bfd_session_up"), "{m}");
    sp.assert_peer_holds(Duration::from_secs(2), &ba, "BFD down with the wrong key", |p| p["bfd"]["state"] != "Up");
}

#[test]
fn multihop_bfd_across_a_router_with_bird() {
    let Some(lab) = Lab::new_or_skip("bfdmh", &["bird"]) else { return };
    let net = lab.routed("spk", "rtr", "bird");
    let (s, b) = (&net.a, &net.b);
    let s4 = s.v4.to_string();
    let bird = Bird::start(
        b,
        PeerConfig::new(65002, b.v4)
            .bfd(100, 100, 3)
            .neighbor(Neighbor::new(&s4, 65001).passive().ebgp_multihop(2).source_address(b.v4)),
    );
    let sp = Speakerd::builder(s).local_asn(65001).router_id(s.v4).start();
    let ba = b.v4.to_string();
    // BIRD sends multihop BFD with its default TTL (64), not 255, so the minimum accepted TTL (254 by
    // default, as in MetalLB) is lowered for it; RFC 5883 leaves this check to configuration.
    sp.ctl(&[
        "peer",
        "add",
        &ba,
        "--asn",
        "65002",
        "--connect-time",
        "1",
        "--ebgp-multihop",
        "2",
        "--bfd",
        "--bfd-receive-interval",
        "100",
        "--bfd-transmit-interval",
        "100",
        "--bfd-minimum-ttl",
        "32",
    ]);
    sp.wait_peer(T, &ba, "multihop BFD Up and BGP established", |p| {
        p["bfd"]["state"] == "Up" && p["state"] == "established"
    });
    wait_until(T, "BIRD's multihop BFD session Up", || {
        let out = bird.birdc(&["show", "bfd", "sessions"])?;
        if out.contains(" Up ") {
            Ok(())
        } else {
            Err(out)
        }
    });
    // Cut BIRD's side: the router still answers, but BFD packets stop.
    let cut = Instant::now();
    b.link_down(&b.dev);
    sp.wait_peer(Duration::from_secs(10), &ba, "multihop BFD tears BGP down", |p| {
        p["state"] != "established" && p["last_notification_sent"]["subcode"] == 10
    });
    eprintln!("multihop: link cut -> BGP session down after {:?}", cut.elapsed());
}
