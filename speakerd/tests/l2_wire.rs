//! The Layer 2 announcer on real sockets. Two network namespaces joined by a veth pair: the node runs
//! `L2Handle` (its tokio runtime lives on a thread that entered the node namespace with setns, so its
//! AF_PACKET and netlink sockets are the namespace's); the client asks with the real `arping` and
//! `ndisc6` and captures with `tcpdump -e`. Checked: owned IPs resolve to the node's MAC; taking them
//! over puts exactly `garp_count` gratuitous ARPs and unsolicited NAs (Override, to ff02::1, checksum
//! verified by tcpdump) on the wire; after the claim is withdrawn nothing answers; link down and
//! interface deletion are noticed through netlink events.
//!
//! Needs root (skipped otherwise, with SKIPPED on stderr; with CI=true it fails instead). Namespaces,
//! the node thread and the tcpdump process are cleaned up by a guard, also on panic.
use speakerd::l2::{Claim, L2Config, L2Handle};
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

const GARP_COUNT: u32 = 3;

fn root_or_skip() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    test_skip::skip("l2_wire", "needs root (network namespaces, AF_PACKET)");
    false
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn ok(args: &[&str]) -> String {
    let o = run(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Polls `cond` until it returns Some or the deadline passes.
fn wait_for<T>(what: &str, limit: Duration, mut cond: impl FnMut() -> Option<T>, context: impl Fn() -> String) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}\n{}", context());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Everything the test creates; dropping it (also on panic) stops the node, kills the processes it
/// started by PID and deletes the namespaces.
#[derive(Default)]
struct Lab {
    namespaces: Vec<String>,
    children: Vec<Child>,
    node: Option<(CancellationToken, std::thread::JoinHandle<()>)>,
    files: Vec<std::path::PathBuf>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some((cancel, thread)) = self.node.take() {
            cancel.cancel();
            let _ = thread.join();
        }
        for c in &mut self.children {
            if let Ok(pid) = libc::pid_t::try_from(c.id()) {
                // SAFETY: signalling a child we spawned and have not reaped yet (its PID is ours).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            let _ = c.wait();
        }
        for n in &self.namespaces {
            let _ = run(&["ip", "netns", "del", n]);
        }
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
    }
}

impl Lab {
    fn netns(&mut self, name: String) -> String {
        let _ = run(&["ip", "netns", "del", &name]); // left over from a killed run
        ok(&["ip", "netns", "add", &name]);
        self.namespaces.push(name.clone());
        // No DAD: a link-local still tentative a second after link up made ndisc6 give up at once once
        // in CI (its output showed no reply and no retry).
        ok(&[
            "ip",
            "netns",
            "exec",
            &name,
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ]);
        name
    }

    /// Starts an L2Handle on a thread that has entered `ns`, with a current-thread runtime built there.
    fn start_node(&mut self, ns: &str, cfg: L2Config) -> L2Handle {
        let path = format!("/var/run/netns/{ns}");
        let cancel = CancellationToken::new();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let token = cancel.clone();
        let thread = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("namespace file");
            // SAFETY: setns affects only this thread; the descriptor is a valid netns file.
            let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let _ = tx.send(L2Handle::start(cfg, token.clone()));
                token.cancelled().await;
            });
        });
        let handle = rx.recv().expect("node thread").expect("L2Handle::start");
        self.node = Some((cancel, thread));
        handle
    }

    /// tcpdump in `ns`, returning once it has opened its capture ("listening on" on stderr).
    fn capture(&mut self, ns: &str, dev: &str, filter: &str) -> std::path::PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "l2_wire-{}-{}.txt",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        self.files.push(path.clone());
        let out = std::fs::File::create(&path).unwrap();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "tcpdump",
                "-i",
                dev,
                "--immediate-mode",
                "-l",
                "-n",
                "-t",
                "-e",
                "-vv",
                filter,
            ])
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump");
        let stderr = child.stderr.take().unwrap();
        self.children.push(child);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10)).expect("tcpdump did not start listening");
        path
    }

    /// Stops the last capture (SIGTERM, so it flushes) and returns what it printed, lowercased.
    fn stop_capture(&mut self, path: &std::path::Path) -> String {
        if let Some(c) = self.children.last_mut() {
            if let Ok(pid) = libc::pid_t::try_from(c.id()) {
                // SAFETY: signalling a child we spawned and have not reaped yet.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let _ = c.wait();
        }
        std::fs::read_to_string(path).unwrap_or_default().to_lowercase()
    }
}

fn mac_of(ns: &str, dev: &str) -> String {
    let out = ok(&["ip", "-n", ns, "-o", "link", "show", dev]);
    out.split("link/ether ").nth(1).and_then(|s| s.split_whitespace().next()).expect("link/ether").to_lowercase()
}

fn claim(ip: &str) -> Claim {
    Claim { ip: ip.parse().unwrap(), interfaces: vec![], exclude_interfaces: vec![], standby: false, view: 0 }
}

fn arping(client: &str, ip: &str, count: &str, deadline_secs: &str) -> (bool, String) {
    let o = run(&["ip", "netns", "exec", client, "arping", "-c", count, "-w", deadline_secs, "-I", "eth0", ip]);
    (o.status.success(), String::from_utf8_lossy(&o.stdout).to_lowercase())
}

#[test]
fn l2_wire_arping_and_ndisc6_resolve_owned_ips_to_the_node_mac_and_stop_after_unclaim() {
    if !root_or_skip() {
        return;
    }
    let id = std::process::id();
    let mut lab = Lab::default();
    let (n, c) = (lab.netns(format!("l2w-n-{id}")), lab.netns(format!("l2w-c-{id}")));
    ok(&["ip", "link", "add", "eth0", "netns", &n, "type", "veth", "peer", "name", "eth0", "netns", &c]);
    for (ns, v4, v6) in [(&n, "192.0.2.1/24", "2001:db8::1/64"), (&c, "192.0.2.9/24", "2001:db8::9/64")] {
        ok(&["ip", "-n", ns, "addr", "add", v4, "dev", "eth0"]);
        ok(&["ip", "-n", ns, "addr", "add", v6, "dev", "eth0", "nodad"]);
        ok(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
        ok(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    let node_mac = mac_of(&n, "eth0");
    let l2 = lab.start_node(&n, L2Config { garp_count: GARP_COUNT, garp_interval: Duration::from_millis(300) });
    let state = |l2: &L2Handle| {
        format!("status {:?}\nfailures {:?}\ncounters {:?}", l2.status(), *l2.failures().borrow(), l2.counters())
    };

    // The capture runs before the node takes the IPs over, so it sees the whole burst.
    let cap = lab.capture(&c, "eth0", "arp or icmp6");
    l2.set_claims(vec![claim("192.0.2.50"), claim("2001:db8::50")]);
    wait_for(
        "both IPs answered on eth0",
        Duration::from_secs(5),
        || {
            let s = l2.status();
            (s.len() == 2 && s.iter().all(|s| s.answering_on.iter().any(|(i, _)| i == "eth0"))).then_some(())
        },
        || state(&l2),
    );
    // The solicited-node group of 2001:db8::50 is joined on the node's eth0 (a veth delivers multicast
    // anyway, so this is checked in the kernel's list rather than through ndisc6).
    let group = "33:33:ff:00:00:50";
    assert!(ok(&["ip", "-n", &n, "maddr", "show", "dev", "eth0"]).contains(group), "solicited-node group not joined");
    let (answered, out) = arping(&c, "192.0.2.50", "2", "5");
    assert!(
        answered && out.contains(&format!("reply from 192.0.2.50 [{node_mac}]")) && out.contains("received 2 response"),
        "arping:\n{out}\n{}",
        state(&l2)
    );
    let nd = run(&["ip", "netns", "exec", &c, "ndisc6", "-r", "3", "2001:db8::50", "eth0"]);
    let nd_out = String::from_utf8_lossy(&nd.stdout).to_lowercase();
    assert!(
        nd.status.success() && nd_out.contains(&format!("target link-layer address: {node_mac}")),
        "ndisc6 ({}):\n{nd_out}{}\n{}",
        nd.status,
        String::from_utf8_lossy(&nd.stderr),
        state(&l2)
    );

    // The whole burst, on the wire.
    wait_for(
        "the bursts to finish",
        Duration::from_secs(5),
        || (l2.counters().gratuitous_sent == 2 * u64::from(GARP_COUNT)).then_some(()),
        || state(&l2),
    );
    let garp_line = |l: &str| l.contains("who-has 192.0.2.50 tell 192.0.2.50") && l.starts_with(&node_mac);
    let una_line =
        |l: &str| l.contains("> ff02::1:") && l.contains("neighbor advertisement") && l.contains("tgt is 2001:db8::50");
    let sna_line = |l: &str| l.contains("neighbor advertisement") && l.contains("flags [solicited, override]");
    // tcpdump -vv continues a packet on indented lines: one packet per line.
    let packets_of = |t: &str| t.to_lowercase().replace("\n\t", " ");
    wait_for(
        "the capture to show the bursts and the answers",
        Duration::from_secs(5),
        || {
            let p = packets_of(&std::fs::read_to_string(&cap).unwrap_or_default());
            let n = |f: &dyn Fn(&str) -> bool| p.lines().filter(|l| f(l)).count();
            (n(&garp_line) >= GARP_COUNT as usize
                && n(&una_line) >= GARP_COUNT as usize
                && n(&sna_line) >= 1
                && n(&|l| l.contains("reply 192.0.2.50 is-at")) >= 2)
                .then_some(())
        },
        || std::fs::read_to_string(&cap).unwrap_or_default(),
    );
    let capture = lab.stop_capture(&cap);
    let packets = packets_of(&capture);
    assert_eq!(packets.lines().filter(|l| garp_line(l)).count(), GARP_COUNT as usize, "gratuitous ARPs:\n{capture}");
    let unsolicited: Vec<&str> = packets.lines().filter(|l| una_line(l)).collect();
    assert_eq!(unsolicited.len(), GARP_COUNT as usize, "unsolicited NAs:\n{capture}");
    for l in &unsolicited {
        assert!(l.starts_with(&format!("{node_mac} > 33:33:00:00:00:01")), "{l}");
        assert!(l.contains("hlim 255") && l.contains("[icmp6 sum ok]"), "{l}");
        assert!(l.contains("flags [override]"), "unsolicited NA needs Override and not Solicited: {l}");
        assert!(l.contains(&format!("destination link-address option (2), length 8 (1): {node_mac}")), "{l}");
    }
    let solicited: Vec<&str> = packets.lines().filter(|l| sna_line(l)).collect();
    assert!(!solicited.is_empty(), "no solicited NA answering ndisc6:\n{capture}");
    // Answered to the solicitation's source: the client's link-local (valid at once without DAD).
    let client_ll = ok(&["ip", "-n", &c, "-6", "-o", "addr", "show", "dev", "eth0", "scope", "link"])
        .split_whitespace()
        .find_map(|w| w.strip_suffix("/64").map(str::to_string))
        .expect("client link-local");
    for l in &solicited {
        let to_source =
            l.contains(&format!("2001:db8::50 > {client_ll}:")) || l.contains("2001:db8::50 > 2001:db8::9:");
        assert!(l.starts_with(&node_mac) && to_source && l.contains("hlim 255") && l.contains("[icmp6 sum ok]"), "{l}");
    }
    for l in packets.lines().filter(|l| l.contains("reply 192.0.2.50 is-at")) {
        assert!(
            l.starts_with(&node_mac) && l.contains(&format!("is-at {node_mac}")),
            "an answer from another MAC: {l}"
        );
    }

    // Withdrawn: nothing answers, from the moment set_claims returns.
    l2.set_claims(vec![]);
    let (answered, out) = arping(&c, "192.0.2.50", "2", "3");
    assert!(!answered && out.contains("received 0 response"), "answered after unclaim:\n{out}");
    let nd = run(&["ip", "netns", "exec", &c, "ndisc6", "-r", "2", "-w", "500", "2001:db8::50", "eth0"]);
    assert!(!nd.status.success(), "NS answered after unclaim: {}", String::from_utf8_lossy(&nd.stdout));
    wait_for("the status to empty", Duration::from_secs(5), || l2.status().is_empty().then_some(()), || state(&l2));
    wait_for(
        "the group to be left",
        Duration::from_secs(5),
        || (!ok(&["ip", "-n", &n, "maddr", "show", "dev", "eth0"]).contains(group)).then_some(()),
        || state(&l2),
    );
    let counters = l2.counters();
    assert!(counters.requests_received >= 3 && counters.responses_sent == counters.requests_received, "{counters:?}");

    // Link down: the claim fails; link up: answered again. Only the netlink events can do this within
    // the deadlines: the burst is over (no send error to notice the link), and they are shorter than
    // the announcer's retry of failed interfaces.
    assert!(speakerd::l2::announcer::RETRY_FAILED > Duration::from_secs(3));
    let sent = l2.counters().gratuitous_sent;
    l2.set_claims(vec![claim("192.0.2.50")]);
    let want = sent + u64::from(GARP_COUNT);
    wait_for(
        "the new burst to finish",
        Duration::from_secs(5),
        || (l2.counters().gratuitous_sent == want).then_some(()),
        || state(&l2),
    );
    ok(&["ip", "-n", &n, "link", "set", "eth0", "down"]);
    let ip50: std::net::IpAddr = "192.0.2.50".parse().unwrap();
    wait_for(
        "link down to fail the claim",
        Duration::from_secs(3),
        || l2.failures().borrow().contains(&ip50).then_some(()),
        || state(&l2),
    );
    ok(&["ip", "-n", &n, "link", "set", "eth0", "up"]);
    let t = Instant::now();
    wait_for(
        "an answer after link up",
        Duration::from_secs(3),
        || arping(&c, "192.0.2.50", "1", "1").0.then_some(()),
        || state(&l2),
    );
    assert!(t.elapsed() < Duration::from_secs(3), "answered only after {:?}", t.elapsed());

    // Interface gone: reported as a failure with the reason.
    ok(&["ip", "-n", &n, "link", "del", "eth0"]);
    wait_for(
        "interface deletion to fail the claim",
        Duration::from_secs(5),
        || l2.failures().borrow().contains(&ip50).then_some(()),
        || state(&l2),
    );
    let st = l2.status();
    assert!(
        st[0].answering_on.is_empty() && st[0].error.as_deref().is_some_and(|e| e.contains("no usable interface")),
        "{st:?}"
    );
}
