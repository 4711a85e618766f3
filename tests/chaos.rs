//! Chaos against real peers (issue 5): a peer killed and restarted 50 times (routes back every time;
//! speakerd's file descriptors and RSS flat); speakerd killed and restarted with graceful restart
//! negotiated (FRR and gobgpd keep the routes meanwhile, End-of-RIB removes exactly what is no longer
//! announced); 1000 rapid announce/withdraw toggles through the API from two owners end with the
//! peer's table equal to the final desired state.
mod common;

use common::*;
use speaker_api::v1 as pb;
use speaker_api::v1::speaker_client::SpeakerClient;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
const SPK_ASN: u32 = 65001;

/// Open file descriptors and resident set size (kB) of a process.
fn fds_and_rss(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (fds, rss)
}

#[test]
fn peer_killed_and_restarted_fifty_times() {
    let Some(lab) = Lab::new_or_skip("chaoskill", &["bird"]) else { return };
    let (s, b) = lab.pair("spk", "bird");
    let sp = Speakerd::builder(&s).local_asn(SPK_ASN).router_id(s.v4).no_bgp_listen().start();
    let mut bird = Bird::start(&b, PeerConfig::new(65002, b.v4).neighbor(Neighbor::new(s.v4, SPK_ASN).passive()));
    sp.ctl(&["peer", "add", &b.v4.to_string(), "--asn", "65002", "--connect-time", "1"]);
    let prefixes: Vec<String> = (0..20).map(|i| format!("203.0.113.{i}/32")).collect();
    let mut args = vec!["announce", "add"];
    args.extend(prefixes.iter().map(String::as_str));
    sp.ctl(&args);
    let all_there = |bird: &Bird| -> Result<(), String> {
        let have: BTreeSet<String> = bird.routes().into_iter().map(|r| r.prefix).collect();
        let missing: Vec<&String> = prefixes.iter().filter(|p| !have.contains(*p)).collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("missing {missing:?}"))
        }
    };
    wait_until(T, "all 20 prefixes at BIRD", || all_there(&bird));
    let mut samples = Vec::new();
    let t0 = Instant::now();
    for cycle in 1..=50 {
        bird.kill9();
        wait_until(T, "speakerd notices the dead peer", || match sp.peer_state(&b.v4.to_string()).as_deref() {
            Some("established") => Err("still established".into()),
            other => Ok(other.map(str::to_string)),
        });
        bird.restart();
        sp.wait_peer_state(&b.v4.to_string(), "established", T);
        wait_until(T, &format!("cycle {cycle}: all 20 prefixes back"), || all_there(&bird));
        if cycle == 5 || cycle == 50 {
            samples.push(fds_and_rss(sp.pid()));
        }
    }
    let ((fd5, rss5), (fd50, rss50)) = (samples[0], samples[1]);
    println!("50 kill/restart cycles in {:?}: fds {fd5} → {fd50}, RSS {rss5} kB → {rss50} kB", t0.elapsed());
    assert!(fd50 <= fd5 + 2, "file descriptors grew: {fd5} → {fd50}");
    assert!(rss50 <= rss5 + rss5 / 5 + 1024, "RSS grew: {rss5} kB → {rss50} kB");
}

#[test]
fn speakerd_restart_with_graceful_restart_keeps_routes_and_end_of_rib_cleans_up() {
    let Some(lab) = Lab::new_or_skip("chaosgr", &["gobgpd", "frr"]) else { return };
    let seg = lab.segment(&["spk", "gobgp", "frr"]);
    let (s, g, f) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2]);
    let config = |announce: &[&str]| {
        let mut c = String::new();
        for (addr, asn) in [(g.v4, 65002), (f.v4, 65003)] {
            c += &format!("[[peers]]\naddress = \"{addr}\"\npeer_asn = {asn}\nconnect_time_secs = 1\ngraceful_restart = true\nrestart_time_secs = 60\n\n");
        }
        for p in announce {
            c += &format!("[[announcements]]\nprefix = \"{p}\"\n\n");
        }
        c
    };
    let mut sp = Speakerd::builder(s)
        .local_asn(SPK_ASN)
        .router_id(s.v4)
        .no_bgp_listen()
        .config(&config(&["203.0.113.1/32", "203.0.113.2/32"]))
        .start();
    let gobgp = Gobgpd::start(
        g,
        PeerConfig::new(65002, g.v4).neighbor(Neighbor::new(s.v4, SPK_ASN).passive()).graceful_restart(),
    );
    let frr =
        Frr::start(f, PeerConfig::new(65003, f.v4).neighbor(Neighbor::new(s.v4, SPK_ASN).passive()).graceful_restart());
    let peers: [(&dyn BgpPeer, &str); 2] = [(&gobgp, "gobgpd"), (&frr, "FRR")];
    for (p, name) in peers {
        for pfx in ["203.0.113.1/32", "203.0.113.2/32"] {
            wait_until(T, &format!("{pfx} at {name}"), || {
                p.routes_for(pfx).into_iter().next().ok_or_else(|| format!("{:?}", p.routes()))
            });
        }
    }
    // The next incarnation announces only .1: .2 must go once it has sent End-of-RIB.
    std::fs::write(sp.dir().join("speakerd.toml"), config(&["203.0.113.1/32"])).unwrap();
    sp.kill9();
    // The helpers keep both routes (stale) while speakerd is away.
    assert_holds(Duration::from_secs(3), "routes kept by the graceful-restart helpers", || {
        for (p, name) in peers {
            for pfx in ["203.0.113.1/32", "203.0.113.2/32"] {
                if p.routes_for(pfx).is_empty() {
                    return Err(format!("{pfx} gone at {name}"));
                }
            }
        }
        Ok(())
    });
    sp.restart();
    for (p, name) in peers {
        wait_until(T, &format!("203.0.113.2/32 removed at {name} (End-of-RIB)"), || {
            if p.routes_for("203.0.113.2/32").is_empty() {
                Ok(())
            } else {
                Err("still there".to_string())
            }
        });
        assert_eq!(p.routes_for("203.0.113.1/32").len(), 1, "{name} keeps the re-announced route");
    }
    // FRR says it received End-of-RIB from us (not merely that the stale timer fired: that is 360 s).
    let nb = frr.vtysh(&[&format!("show bgp neighbors {} json", s.v4)]).unwrap();
    assert!(
        nb.contains("\"endOfRibRecv\":true") || nb.contains("\"endOfRibRecv\": true"),
        "FRR saw no End-of-RIB: {nb}"
    );
}

/// speakerd restarted with its config file and graceful restart: the helper must not flush the routes.
/// The file's announcements go in before its peers, so End-of-RIB follows the whole table. The other way
/// round the session came up while 20000 announcements were still loading: End-of-RIB went first, and
/// BIRD removed all 20000 stale routes, then took them again.
#[test]
fn a_restart_from_the_config_file_sends_end_of_rib_after_the_whole_table() {
    let Some(lab) = Lab::new_or_skip("chaosgrfile", &["bird"]) else { return };
    let (s, b) = lab.pair("spk", "bird");
    const N: u64 = 20_000;
    let mut cfg = format!(
        "[[peers]]\naddress = \"{}\"\npeer_asn = 65002\nconnect_time_secs = 1\ngraceful_restart = true\nrestart_time_secs = 60\n\n",
        b.v4
    );
    for i in 0..N as u32 {
        cfg += &format!("[[announcements]]\nprefix = \"{}/32\"\n", std::net::Ipv4Addr::from(0x0a00_0000 + i));
    }
    let bird = Bird::start(
        &b,
        PeerConfig::new(65002, b.v4).neighbor(Neighbor::new(s.v4, SPK_ASN).passive()).graceful_restart().trace(),
    );
    let mut sp = Speakerd::builder(&s).local_asn(SPK_ASN).router_id(s.v4).no_bgp_listen().config(&cfg).start();
    let log = bird.core().dir.join("bird.log");
    let all_held = || match bird.birdc(&["show", "route", "count"]) {
        Ok(out) if out.contains(&format!("{N} of {N} routes")) => Ok(()),
        Ok(out) => Err(out),
        Err(e) => Err(e),
    };
    wait_until(T, "BIRD holds every route", all_held);
    sp.kill9();
    std::fs::write(&log, "").unwrap(); // BIRD appends: what follows is the restart
    sp.restart();
    wait_until(T, "End-of-RIB from the new incarnation", || {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        if l.contains("Got END-OF-RIB") {
            Ok(())
        } else {
            Err(format!("{} lines of log", l.lines().count()))
        }
    });
    wait_until(T, "BIRD holds every route", all_held);
    let l = std::fs::read_to_string(&log).unwrap();
    let removed: Vec<&str> = l.lines().filter(|l| l.contains("> removed")).collect();
    assert!(
        removed.is_empty(),
        "BIRD removed {} routes during the restart (End-of-RIB before the table?), first: {:?}",
        removed.len(),
        removed.first()
    );
}

#[test]
fn a_thousand_api_toggles_end_in_the_desired_table() {
    let Some(lab) = Lab::new_or_skip("chaostoggle", &["bird"]) else { return };
    let (s, b) = lab.pair("spk", "bird");
    let sp = Speakerd::builder(&s).local_asn(SPK_ASN).router_id(s.v4).no_bgp_listen().start();
    let bird = Bird::start(&b, PeerConfig::new(65002, b.v4).neighbor(Neighbor::new(s.v4, SPK_ASN).passive()));
    sp.ctl(&["peer", "add", &b.v4.to_string(), "--asn", "65002", "--connect-time", "1"]);
    sp.wait_peer_state(&b.v4.to_string(), "established", T);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let socket = sp.socket().to_path_buf();
    let want: BTreeSet<String> = rt.block_on(async move {
        let ch = tonic::transport::Endpoint::from_static("http://[::]:50051")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let p = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(p).await?))
                }
            }))
            .await
            .unwrap();
        let mut c = SpeakerClient::new(ch);
        // A deterministic pseudo-random walk over 64 prefixes and two owners.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut model: [BTreeSet<String>; 2] = Default::default();
        for _ in 0..1000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let owner = (x % 2) as usize;
            let prefix = format!("198.51.100.{}/32", (x >> 8) % 64);
            let name = ["owner-a", "owner-b"][owner];
            if (x >> 20).is_multiple_of(2) {
                let a = pb::Announcement { prefix: prefix.clone(), ..Default::default() };
                c.announce(pb::AnnounceRequest { owner: name.into(), announcements: vec![a] }).await.unwrap();
                model[owner].insert(prefix);
            } else {
                c.withdraw(pb::WithdrawRequest { owner: name.into(), prefixes: vec![prefix.clone()] }).await.unwrap();
                model[owner].remove(&prefix);
            }
        }
        model[0].union(&model[1]).cloned().collect()
    });
    assert!(want.len() > 10 && want.len() < 64, "the walk should leave a mixed table: {}", want.len());
    let got = wait_until(T, "BIRD's table equals the final desired state", || {
        let have: BTreeSet<String> = bird.routes().into_iter().map(|r| r.prefix).collect();
        if have == want {
            Ok(have)
        } else {
            Err(format!(
                "{} at BIRD, {} wanted; extra {:?}, missing {:?}",
                have.len(),
                want.len(),
                have.difference(&want).collect::<Vec<_>>(),
                want.difference(&have).collect::<Vec<_>>()
            ))
        }
    });
    assert_holds(Duration::from_secs(2), "and stays so", || {
        let have: BTreeSet<String> = bird.routes().into_iter().map(|r| r.prefix).collect();
        if have == got {
            Ok(())
        } else {
            Err(format!("{have:?}"))
        }
    });
}

/// Runs `f` on a thread inside network namespace `ns` (sockets it opens live there).
fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let path = format!("/run/netns/{}", ns.name());
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a valid namespace fd affects only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

fn bgp_msg(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

/// A peer that completes the handshake and then writes full-size UPDATEs (about 800 /32s each,
/// announcing and withdrawing in turn) as fast as speakerd's socket takes them, for `secs`.
/// Returns the number of UPDATEs written.
fn flood(to: std::net::Ipv4Addr, my_asn: u32, my_id: [u8; 4], secs: u64) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect((to, 179)).expect("connect to speakerd");
    s.set_nodelay(true).ok();
    // OPEN: version 4, AS_TRANS, hold 90, id; capabilities MP IPv4 unicast and 4-octet AS.
    let mut caps = vec![1, 4, 0, 1, 0, 1, 65, 4];
    caps.extend_from_slice(&my_asn.to_be_bytes());
    let mut open = vec![4, 0x5b, 0xa0, 0, 90];
    open.extend_from_slice(&my_id);
    open.push((caps.len() + 2) as u8);
    open.extend_from_slice(&[2, caps.len() as u8]);
    open.extend_from_slice(&caps);
    s.write_all(&bgp_msg(1, &open)).unwrap();
    s.write_all(&bgp_msg(4, &[])).unwrap();
    // Read speakerd's OPEN and KEEPALIVE (and discard whatever comes later: a thread drains it).
    let mut r = s.try_clone().unwrap();
    let mut hdr = [0u8; 19];
    r.read_exact(&mut hdr).expect("speakerd's OPEN");
    assert_eq!(hdr[18], 1, "expected an OPEN, got type {}", hdr[18]);
    std::thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
    });
    let mut attrs = vec![0x40, 1, 1, 0, 0x40, 2, 6, 2, 1];
    attrs.extend_from_slice(&my_asn.to_be_bytes());
    attrs.extend_from_slice(&[0x40, 3, 4]);
    attrs.extend_from_slice(&my_id);
    let per = (4096 - 19 - 4 - attrs.len()) / 5;
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut sent = 0u64;
    let mut base = 0u32;
    while Instant::now() < deadline {
        let nlri: Vec<u8> = (0..per as u32)
            .flat_map(|i| {
                let a = 0x0a00_0000u32 + ((base + i) % 200_000);
                let mut v = vec![32];
                v.extend_from_slice(&a.to_be_bytes());
                v
            })
            .collect();
        let body = if sent.is_multiple_of(2) {
            let mut b = vec![0, 0];
            b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
            b.extend_from_slice(&attrs);
            b.extend_from_slice(&nlri);
            b
        } else {
            let mut b = (nlri.len() as u16).to_be_bytes().to_vec();
            b.extend_from_slice(&nlri);
            b.extend_from_slice(&[0, 0]);
            base = base.wrapping_add(per as u32);
            b
        };
        if s.write_all(&bgp_msg(2, &body)).is_err() {
            break;
        }
        sent += 1;
    }
    sent
}

#[test]
fn a_peer_flooding_updates_does_not_starve_other_sessions() {
    let Some(lab) = Lab::new_or_skip("chaosflood", &["bird"]) else { return };
    let seg = lab.segment(&["spk", "bird", "flood"]);
    let (s, b, fl) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2]);
    let sp = Speakerd::builder(s).local_asn(SPK_ASN).router_id(s.v4).start();
    let bird =
        Bird::start(b, PeerConfig::new(65002, b.v4).neighbor(Neighbor::new(s.v4, SPK_ASN).passive().hold_time(3)));
    sp.ctl(&["peer", "add", &b.v4.to_string(), "--asn", "65002", "--connect-time", "1", "--hold-time", "3"]);
    sp.ctl(&["peer", "add", &fl.v4.to_string(), "--asn", "65009", "--passive"]);
    sp.ctl(&["announce", "add", "203.0.113.1/32"]);
    sp.wait_peer_state(&b.v4.to_string(), "established", T);
    bird.wait_route("203.0.113.1/32");
    let established = |sp: &Speakerd, addr: &str| -> u64 {
        sp.peers()
            .iter()
            .find(|p| p["address"] == addr)
            .map(|p| p["established_count"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };
    let before = established(&sp, &b.v4.to_string());
    let id = fl.v4.octets();
    let to = s.v4;
    let flooder = in_netns(fl, move || flood(to, 65009, id, 15));
    // While the flood runs (speakerd has taken in a good part of it: over a second's worth), the BIRD
    // session (hold 3 s) never drops and a new announcement still reaches BIRD promptly.
    let received = |sp: &Speakerd| -> u64 {
        sp.peers()
            .iter()
            .find(|p| p["address"] == fl.v4.to_string())
            .and_then(|p| p["updates_received"].as_u64())
            .unwrap_or(0)
    };
    wait_until(T, "speakerd receives the flood", || match received(&sp) {
        n if n >= 1000 => Ok(()),
        n => Err(format!("{n} UPDATEs received so far")),
    });
    sp.ctl(&["announce", "add", "203.0.113.2/32"]);
    let t = Instant::now();
    bird.wait_route("203.0.113.2/32");
    let add_latency = t.elapsed();
    assert_holds(Duration::from_secs(8), "the BIRD session stays up during the flood", || {
        let st = sp.peer_state(&b.v4.to_string()).unwrap_or_default();
        if st == "established" {
            Ok(())
        } else {
            Err(st)
        }
    });
    let updates = flooder.join().unwrap();
    // What counts is what speakerd took in, not what the flooder wrote into its socket buffer: every
    // UPDATE written reaches speakerd's counters (TCP delivers all of it before the flooder's FIN).
    wait_until(T, "speakerd has read every UPDATE the flooder wrote", || match received(&sp) {
        n if n >= updates => Ok(()),
        n => Err(format!("{n} of {updates} received")),
    });
    let fl_state = sp.peers().into_iter().find(|p| p["address"] == fl.v4.to_string()).unwrap();
    println!(
        "flood: {updates} UPDATEs (~{} prefixes) in 15 s; speakerd received {} UPDATEs; an announcement reached BIRD in {add_latency:?} meanwhile",
        updates * 800,
        fl_state["updates_received"]
    );
    assert!(updates > 1000, "the flood was too small to mean anything: {updates} UPDATEs");
    assert_eq!(established(&sp, &b.v4.to_string()), before, "the BIRD session flapped");
    assert!(add_latency < Duration::from_secs(3), "an announcement took {add_latency:?} during the flood");
    assert!(bird.session_state(&s.v4.to_string()).to_lowercase().contains("established"), "BIRD's side");
}
