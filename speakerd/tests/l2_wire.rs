//! The Layer 2 driver on a real segment: a node namespace runs the announcer, a client namespace asks
//! with the real `arping` and `ndisc6` and captures with `tcpdump`. Owned IPs resolve to the node's MAC,
//! taking an IP over puts gratuitous ARP and an unsolicited NA (Override) on the wire, and after the
//! claim is withdrawn nothing answers. Also: a link that goes down fails the claim (netlink event).
use speakerd::l2::{Claim, L2Config, L2Handle};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn root_or_skip() -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI must run this test as root");
    eprintln!("SKIPPED: not root");
    false
}

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) -> String {
    let o = sh(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

struct Netns(Vec<String>);
impl Drop for Netns {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}

fn mac_of(ns: &str, dev: &str) -> String {
    let out = ok(&["ip", "-n", ns, "-o", "link", "show", dev]);
    out.split("link/ether ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap().to_string()
}

enum Cmd {
    Claim(Vec<Claim>),
    Stop,
}

/// Runs an L2Handle on a thread that has entered `ns`.
fn node(ns: &str) -> (mpsc::Sender<Cmd>, mpsc::Receiver<String>, std::thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<Cmd>();
    let (st_tx, st_rx) = mpsc::channel::<String>();
    let path = format!("/var/run/netns/{ns}");
    let h = std::thread::spawn(move || {
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: setns on this thread only, with a valid namespace descriptor.
        assert_eq!(unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) }, 0);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let cancel = tokio_util::sync::CancellationToken::new();
            let cfg = L2Config { garp_count: 3, garp_interval: Duration::from_millis(300) };
            let l2 = L2Handle::start(cfg, cancel.clone()).unwrap();
            loop {
                match rx.try_recv() {
                    Ok(Cmd::Claim(c)) => l2.set_claims(c),
                    Ok(Cmd::Stop) | Err(mpsc::TryRecvError::Disconnected) => break,
                    Err(mpsc::TryRecvError::Empty) => {}
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = st_tx.send(format!("{:?} failures={:?} {:?}", l2.status(), *l2.failures().borrow(), l2.counters()));
            }
            cancel.cancel();
        });
    });
    (tx, st_rx, h)
}

fn last(rx: &mpsc::Receiver<String>) -> String {
    let mut s = String::new();
    while let Ok(x) = rx.try_recv() {
        s = x;
    }
    s
}

fn claim(ip: &str) -> Claim {
    Claim { ip: ip.parse().unwrap(), interfaces: vec![], exclude_interfaces: vec![] }
}

#[test]
fn arping_and_ndisc6_resolve_owned_ips_to_the_node_mac() {
    if !root_or_skip() {
        return;
    }
    let (n, c) = (format!("l2n-{}", std::process::id()), format!("l2c-{}", std::process::id()));
    let _guard = Netns(vec![n.clone(), c.clone()]);
    ok(&["ip", "netns", "add", &n]);
    ok(&["ip", "netns", "add", &c]);
    ok(&["ip", "link", "add", "eth0", "netns", &n, "type", "veth", "peer", "name", "eth0", "netns", &c]);
    for (ns, v4, v6) in [(&n, "192.0.2.1/24", "2001:db8::1/64"), (&c, "192.0.2.9/24", "2001:db8::9/64")] {
        ok(&["ip", "-n", ns, "addr", "add", v4, "dev", "eth0"]);
        ok(&["ip", "-n", ns, "addr", "add", v6, "dev", "eth0", "nodad"]);
        ok(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    let node_mac = mac_of(&n, "eth0");
    let (tx, status, h) = node(&n);

    // Capture in the client before the node takes the IPs over.
    let cap = std::env::temp_dir().join(format!("l2cap-{}.txt", std::process::id()));
    let capf = std::fs::File::create(&cap).unwrap();
    let mut tcpdump = Command::new("ip")
        .args(["netns", "exec", &c, "tcpdump", "-i", "eth0", "-n", "-e", "-l", "-vv", "arp or icmp6"])
        .stdout(capf)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok(&["ip", "netns", "pids", &c]).trim().lines().any(|_| true) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500)); // tcpdump needs its socket open before the burst

    tx.send(Cmd::Claim(vec![claim("192.0.2.50"), claim("2001:db8::50")])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = last(&status);
        if s.matches("answering_on: [(\"eth0\"").count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "claims not programmed: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }

    let arp = sh(&["ip", "netns", "exec", &c, "arping", "-c", "2", "-w", "5", "-I", "eth0", "192.0.2.50"]);
    let arp_out = String::from_utf8_lossy(&arp.stdout).to_lowercase();
    assert!(arp_out.contains(&format!("reply from 192.0.2.50 [{node_mac}]")) && arp_out.contains("received 2 response"), "arping: {arp_out}\nnode: {}", last(&status));
    let nd = sh(&["ip", "netns", "exec", &c, "ndisc6", "-r", "3", "2001:db8::50", "eth0"]);
    let nd_out = String::from_utf8_lossy(&nd.stdout).to_lowercase();

    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill").arg(tcpdump.id().to_string()).status();
    let _ = tcpdump.wait();
    let capture = std::fs::read_to_string(&cap).unwrap().to_lowercase();
    let _ = std::fs::remove_file(&cap);
    assert!(nd.status.success() && nd_out.contains(&node_mac), "ndisc6: {nd_out}\nnode: {}\ncapture:\n{capture}", last(&status));
    let garp = capture.lines().filter(|l| l.contains("who-has 192.0.2.50 tell 192.0.2.50") && l.contains(&node_mac)).count();
    assert!(garp >= 1, "no gratuitous ARP from {node_mac}:\n{capture}");
    let una = capture.lines().filter(|l| l.contains("neighbor advertisement") && l.contains("tgt is 2001:db8::50") && l.contains("ff02::1")).count();
    assert!(una >= 1, "no unsolicited NA to all nodes:\n{capture}");
    assert!(capture.contains("override"), "NA without the Override flag:\n{capture}");
    // Only this node's MAC ever answered for the IPs.
    for l in capture.lines().filter(|l| l.contains("reply 192.0.2.50 is-at")) {
        assert!(l.contains(&node_mac), "{l}");
    }

    // Withdrawn: no more answers.
    tx.send(Cmd::Claim(vec![])).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let arp = sh(&["ip", "netns", "exec", &c, "arping", "-c", "2", "-w", "3", "-I", "eth0", "192.0.2.50"]);
    assert!(!arp.status.success(), "answered after unclaim: {}", String::from_utf8_lossy(&arp.stdout));

    // Link down: the claim fails (netlink event, no polling); link up: answered again.
    tx.send(Cmd::Claim(vec![claim("192.0.2.50")])).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    ok(&["ip", "-n", &n, "link", "set", "eth0", "down"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = last(&status);
        if s.contains("failures={192.0.2.50}") {
            break;
        }
        assert!(Instant::now() < deadline, "link down not noticed: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    ok(&["ip", "-n", &n, "link", "set", "eth0", "up"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let arp = sh(&["ip", "netns", "exec", &c, "arping", "-c", "1", "-w", "1", "-I", "eth0", "192.0.2.50"]);
        if arp.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "not answered after link up: {}", last(&status));
    }
    tx.send(Cmd::Stop).unwrap();
    h.join().unwrap();
}
