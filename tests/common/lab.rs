//! Network namespaces, veth pairs, bridges, addresses and the processes started inside them.
//!
//! A [`Lab`] owns a set of uniquely named namespaces (`<test>-<pid>-<n>-<node>`) and a state dir
//! (`$TMPDIR/speakerd-lab/<test>-<pid>-<n>/`). Every [`Netns`], [`Proc`] and daemon handle keeps the lab
//! alive; when the last one is dropped (also during a panic) the processes are killed by the PID the
//! harness recorded and the namespaces are deleted. Processes also get `PR_SET_PDEATHSIG(SIGKILL)`, so a
//! test binary that is killed outright takes its daemons with it; the namespaces of such a dead run are
//! removed by the next lab that starts.

use super::{run, run_ok, tail, wait_until};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::Deref;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);
static STALE_CLEANUP: Once = Once::new();

/// Where labs keep their state: one subdirectory per lab.
pub fn base_dir() -> PathBuf {
    std::env::temp_dir().join("speakerd-lab")
}

struct LabInner {
    prefix: String,
    dir: PathBuf,
    namespaces: Mutex<Vec<String>>,
}

impl Drop for LabInner {
    fn drop(&mut self) {
        let nss = std::mem::take(&mut *self.namespaces.lock().unwrap_or_else(|e| e.into_inner()));
        for ns in nss.iter().rev() {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
        let _ = fs::remove_file(self.dir.join("namespaces"));
        // SPEAKERD_KEEP_LAB=1 keeps them after a passing test too (for reading daemon logs).
        if std::thread::panicking() || std::env::var_os("SPEAKERD_KEEP_LAB").is_some() {
            eprintln!("lab {}: logs and configs kept in {}", self.prefix, self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A set of namespaces owned by one test. Cheap to clone the handles it gives out; see the module doc.
pub struct Lab {
    inner: Arc<LabInner>,
}

impl Lab {
    /// Creates an empty lab. Panics if namespaces cannot be used here; tests should prefer
    /// [`Lab::new_or_skip`].
    pub fn new(test: &str) -> Lab {
        if let Some(why) = super::lab_unavailable(&[]) {
            panic!("{test}: cannot build a network lab: {why}");
        }
        STALE_CLEANUP.call_once(cleanup_stale_labs);
        let short: String =
            test.chars().filter(|c| c.is_ascii_alphanumeric()).take(8).collect::<String>().to_lowercase();
        let prefix = format!(
            "{}-{}-{}",
            if short.is_empty() { "lab" } else { &short },
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = base_dir().join(&prefix);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let me = std::process::id();
        fs::write(dir.join("owner"), format!("{me} {}\n", proc_start_time(me).unwrap_or_default()))
            .expect("write lab owner file");
        Lab { inner: Arc::new(LabInner { prefix, dir, namespaces: Mutex::new(Vec::new()) }) }
    }

    /// [`Lab::new`] if this machine can run it (root, `ip netns`, the `tools`: see
    /// [`super::lab_unavailable`]); otherwise prints why and returns `None` — or panics when `CI` is set.
    pub fn new_or_skip(test: &str, tools: &[&str]) -> Option<Lab> {
        super::should_run(test, tools).then(|| Lab::new(test))
    }

    /// The unique prefix of this lab's namespaces.
    pub fn name(&self) -> &str {
        &self.inner.prefix
    }

    /// The lab's state dir (daemon configs and logs live in subdirectories).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Creates namespace `<lab>-<short>` with `lo` up, IPv6 DAD off and IPv6 addresses kept on link down.
    pub fn ns(&self, short: &str) -> Netns {
        let name = format!("{}-{short}", self.inner.prefix);
        run_ok(&["ip", "netns", "add", &name]);
        self.inner.namespaces.lock().unwrap().push(name.clone());
        let mut f = OpenOptions::new().create(true).append(true).open(self.inner.dir.join("namespaces")).unwrap();
        writeln!(f, "{name}").unwrap();
        let ns = Netns { name, short: short.to_string(), lab: self.inner.clone() };
        ns.ip(&["link", "set", "lo", "up"]);
        ns.run_ok(&[
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.keep_addr_on_down=1",
            "net.ipv6.conf.default.keep_addr_on_down=1",
        ]);
        ns
    }

    /// A veth pair: `a_if` in `a`, `b_if` in `b`, both up (interface names ≤ 15 characters).
    pub fn veth(&self, a: &Netns, a_if: &str, b: &Netns, b_if: &str) {
        assert!(a_if.len() <= 15 && b_if.len() <= 15, "interface names must be at most 15 characters");
        run_ok(&["ip", "link", "add", a_if, "netns", &a.name, "type", "veth", "peer", "name", b_if, "netns", &b.name]);
        a.link_up(a_if);
        b.link_up(b_if);
    }

    /// Two hosts on one veth link: `a` = 192.0.2.1/24 + 2001:db8::1/64, `b` = .2 / ::2, device `eth0`.
    /// Returns once each answers the other's ping (IPv4 and IPv6).
    pub fn pair(&self, a: &str, b: &str) -> (Host, Host) {
        let (na, nb) = (self.ns(a), self.ns(b));
        self.veth(&na, "eth0", &nb, "eth0");
        let ha = Host::configure(na, "eth0", Ipv4Addr::new(192, 0, 2, 1), "2001:db8::1".parse().unwrap());
        let hb = Host::configure(nb, "eth0", Ipv4Addr::new(192, 0, 2, 2), "2001:db8::2".parse().unwrap());
        ha.wait_ping(hb.v4.into());
        ha.wait_ping(hb.v6.into());
        (ha, hb)
    }

    /// One L2 segment: a Linux bridge `br0` in its own namespace (`<lab>-sw`) and one host per name, each
    /// with `eth0` on the bridge; host i (0-based) gets 192.0.2.(i+1)/24 and 2001:db8::(i+1)/64.
    /// Returns once the first host gets ping replies from all others (IPv4 and IPv6).
    pub fn segment(&self, names: &[&str]) -> Segment {
        assert!(!names.is_empty() && names.len() < 250);
        let sw = self.ns("sw");
        sw.ip(&["link", "add", "br0", "type", "bridge"]);
        sw.link_up("br0");
        let mut hosts = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let n = self.ns(name);
            let port = format!("p{i}");
            self.veth(&n, "eth0", &sw, &port);
            sw.ip(&["link", "set", &port, "master", "br0"]);
            let v4 = Ipv4Addr::new(192, 0, 2, i as u8 + 1);
            let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1);
            hosts.push(Host::configure(n, "eth0", v4, v6));
        }
        for h in &hosts[1..] {
            hosts[0].wait_ping(h.v4.into());
            hosts[0].wait_ping(h.v6.into());
        }
        Segment { switch: sw, hosts }
    }

    /// A routed path for multihop sessions: `a` — `router` — `b`.
    /// a: eth0 192.0.2.1/24, 2001:db8:1::1/64; router: eth0 192.0.2.254, 2001:db8:1::fe and eth1
    /// 198.51.100.254, 2001:db8:2::fe, forwarding on; b: eth0 198.51.100.1/24, 2001:db8:2::1/64.
    /// a and b have default routes via the router. Returns once a pings b (IPv4 and IPv6).
    pub fn routed(&self, a: &str, router: &str, b: &str) -> Routed {
        let (na, nr, nb) = (self.ns(a), self.ns(router), self.ns(b));
        self.veth(&na, "eth0", &nr, "eth0");
        self.veth(&nb, "eth0", &nr, "eth1");
        nr.enable_forwarding();
        nr.addr_add("eth0", "192.0.2.254/24");
        nr.addr_add("eth0", "2001:db8:1::fe/64");
        nr.addr_add("eth1", "198.51.100.254/24");
        nr.addr_add("eth1", "2001:db8:2::fe/64");
        let ha = Host::configure(na, "eth0", Ipv4Addr::new(192, 0, 2, 1), "2001:db8:1::1".parse().unwrap());
        let hb = Host::configure(nb, "eth0", Ipv4Addr::new(198, 51, 100, 1), "2001:db8:2::1".parse().unwrap());
        ha.ip(&["route", "add", "default", "via", "192.0.2.254"]);
        ha.ip(&["-6", "route", "add", "default", "via", "2001:db8:1::fe"]);
        hb.ip(&["route", "add", "default", "via", "198.51.100.254"]);
        hb.ip(&["-6", "route", "add", "default", "via", "2001:db8:2::fe"]);
        ha.wait_ping(hb.v4.into());
        ha.wait_ping(hb.v6.into());
        Routed { a: ha, router: nr, b: hb }
    }
}

/// Result of [`Lab::segment`].
pub struct Segment {
    pub switch: Netns,
    pub hosts: Vec<Host>,
}

/// Result of [`Lab::routed`].
pub struct Routed {
    pub a: Host,
    pub router: Netns,
    pub b: Host,
}

/// A namespace with one configured interface. Derefs to its [`Netns`].
#[derive(Clone)]
pub struct Host {
    pub ns: Netns,
    pub dev: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
}

impl Host {
    fn configure(ns: Netns, dev: &str, v4: Ipv4Addr, v6: Ipv6Addr) -> Host {
        ns.addr_add(dev, &format!("{v4}/24"));
        ns.addr_add(dev, &format!("{v6}/64"));
        Host { ns, dev: dev.to_string(), v4, v6 }
    }
}

impl Host {
    /// The MAC address of this host's interface.
    pub fn mac(&self) -> String {
        let out = self.ip(&["-o", "link", "show", &self.dev]);
        out.split("link/ether ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_default().to_string()
    }

    /// One `arping` from this host for `ip`: the MAC that answered (lowercase), or arping's output.
    pub fn arping(&self, ip: &str) -> Result<String, String> {
        let out = self.exec(&["arping", "-c", "1", "-w", "2", "-I", &self.dev, ip]);
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        // "unicast reply from 192.0.2.100 [aa:bb:cc:dd:ee:ff]"
        text.split("reply from")
            .nth(1)
            .and_then(|r| r.split('[').nth(1))
            .and_then(|r| r.split(']').next())
            .map(str::to_string)
            .ok_or(text)
    }
}

/// A classic BPF program for tc's cls_bpf in direct-action mode that drops gossip (UDP port 7946,
/// IPv4 and IPv6) and passes everything else: tcpdump compiles the filter, and its "accept" return is
/// turned into TC_ACT_SHOT (2). (This kernel has cls_bpf but no tc action modules nor nftables.)
fn gossip_drop_program() -> String {
    let out = run_ok(&["tcpdump", "-ddd", "-i", "lo", "udp port 7946"]);
    let mut lines: Vec<String> = out.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_string).collect();
    for l in lines.iter_mut().skip(1) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() == 4 && f[0] == "6" && f[3] != "0" {
            *l = "6 0 0 2".into();
        }
    }
    lines.join(",")
}

impl Host {
    /// Drops gossip in and out of this host's interface (`on`), or stops dropping it: a partition of the
    /// gossip group that leaves ARP, NDP and everything else working. Needs `tc` and `tcpdump`.
    pub fn cut_gossip(&self, on: bool) {
        if on {
            let prog = gossip_drop_program();
            self.run_ok(&["tc", "qdisc", "add", "dev", &self.dev, "clsact"]);
            for dir in ["ingress", "egress"] {
                self.run_ok(&["tc", "filter", "add", "dev", &self.dev, dir, "bpf", "da", "bytecode", &prog]);
            }
        } else {
            self.run_ok(&["tc", "qdisc", "del", "dev", &self.dev, "clsact"]);
        }
    }
}

impl Deref for Host {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.ns
    }
}

/// One namespace of a lab. Clones share the lab; the namespace lives as long as any handle does.
#[derive(Clone)]
pub struct Netns {
    name: String,
    short: String,
    lab: Arc<LabInner>,
}

impl std::fmt::Debug for Netns {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Netns({})", self.name)
    }
}

impl Netns {
    /// The full namespace name (for `ip netns exec`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh state dir for something running here: `<lab dir>/<short>.<what>`, suffixed when taken.
    pub fn state_dir(&self, what: &str) -> PathBuf {
        let base = self.lab.dir.join(format!("{}.{what}", self.short));
        let mut d = base.clone();
        let mut i = 1;
        while d.exists() {
            i += 1;
            d = PathBuf::from(format!("{}.{i}", base.display()));
        }
        fs::create_dir_all(&d).unwrap_or_else(|e| panic!("create {}: {e}", d.display()));
        d
    }

    /// `ip -n NS ARGS…`; panics on failure, returns stdout.
    #[track_caller]
    pub fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip", "-n", &self.name];
        argv.extend_from_slice(args);
        run_ok(&argv)
    }

    /// Runs `argv` inside the namespace and returns its raw output.
    pub fn exec(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("ip netns exec {} {}: {e}", self.name, argv.join(" ")))
    }

    /// Runs `argv` inside the namespace: `Ok(stdout)` on exit 0, else `Err` with stderr.
    pub fn run(&self, argv: &[&str]) -> Result<String, String> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        run(&full)
    }

    /// [`Netns::run`] that panics on failure.
    #[track_caller]
    pub fn run_ok(&self, argv: &[&str]) -> String {
        self.run(argv).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A counter of `/proc/net/netstat` or `/proc/net/snmp` (e.g. `TcpExt` `TCPMD5Failure`, `Tcp`
    /// `OutRsts`, `Icmp` `OutTimeExcds`) or, with group `snmp6`, of `/proc/net/snmp6`
    /// (`Icmp6OutTimeExcds`) in this namespace.
    #[track_caller]
    pub fn net_counter(&self, group: &str, name: &str) -> u64 {
        if group == "snmp6" {
            let text = self.run_ok(&["cat", "/proc/net/snmp6"]);
            return text
                .lines()
                .find_map(|l| {
                    let mut it = l.split_whitespace();
                    (it.next() == Some(name)).then(|| it.next()?.parse().ok())?
                })
                .unwrap_or_else(|| panic!("no {name} in /proc/net/snmp6"));
        }
        let text = self.run_ok(&["cat", "/proc/net/netstat", "/proc/net/snmp"]);
        let prefix = format!("{group}:");
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(&prefix)).collect();
        for pair in lines.chunks(2) {
            if let [names, values] = pair {
                let names: Vec<&str> = names.split_whitespace().skip(1).collect();
                let values: Vec<&str> = values.split_whitespace().skip(1).collect();
                if let Some(i) = names.iter().position(|n| *n == name) {
                    return values[i].parse().unwrap_or_else(|e| panic!("{group} {name} = {:?}: {e}", values[i]));
                }
            }
        }
        panic!("no {group} {name} in /proc/net/netstat or /proc/net/snmp of {}", self.name());
    }

    /// `sysctl -w key=value` inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.run_ok(&["sysctl", "-qw", &format!("{key}={value}")]);
    }

    /// IPv4 and IPv6 forwarding on.
    pub fn enable_forwarding(&self) {
        self.run_ok(&["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    }

    /// Adds `cidr` (e.g. `192.0.2.1/24`, `2001:db8::1/64`) to `dev`; IPv6 with `nodad`.
    pub fn addr_add(&self, dev: &str, cidr: &str) {
        if cidr.contains(':') {
            self.ip(&["addr", "add", cidr, "dev", dev, "nodad"]);
        } else {
            self.ip(&["addr", "add", cidr, "dev", dev]);
        }
    }

    /// Adds `addr` as a /32 or /128 on `lo`.
    pub fn lo_addr(&self, addr: IpAddr) {
        let len = if addr.is_ipv4() { 32 } else { 128 };
        self.addr_add("lo", &format!("{addr}/{len}"));
    }

    /// `ip route add ARGS…` (IPv6 when the first argument contains a `:`), e.g. `&["203.0.113.0/24", "via", "192.0.2.2"]`.
    pub fn route_add(&self, args: &[&str]) {
        let mut argv = vec![if args.iter().any(|a| a.contains(':')) { "-6" } else { "-4" }, "route", "add"];
        argv.extend_from_slice(args);
        self.ip(&argv);
    }

    pub fn link_up(&self, dev: &str) {
        self.ip(&["link", "set", dev, "up"]);
    }

    /// Takes `dev` down (the way to cut a link here: the kernel has no netem).
    pub fn link_down(&self, dev: &str) {
        self.ip(&["link", "set", dev, "down"]);
    }

    /// One ping (1 s timeout) to `addr`.
    /// `GET /metrics` on 127.0.0.1:`port` in this namespace: the body of a 200 response (curl if
    /// installed, else bash's /dev/tcp; at most 5 s either way).
    pub fn metrics(&self, port: u16) -> Result<String, String> {
        let url = format!("http://127.0.0.1:{port}/metrics");
        if super::find_program("curl").is_some() {
            return self.run(&["curl", "-sS", "--fail", "--max-time", "5", &url]);
        }
        let script = format!(
            "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET /metrics HTTP/1.0\\r\\nHost: 127.0.0.1\\r\\n\\r\\n' >&3 && timeout 5 cat <&3"
        );
        let resp = self.run(&["bash", "-c", &script])?;
        match resp.split_once("\r\n\r\n") {
            Some((head, body)) if head.starts_with("HTTP/1.") && head.contains(" 200") => Ok(body.to_string()),
            _ => Err(format!("not a 200 response: {resp}")),
        }
    }

    pub fn ping(&self, addr: IpAddr) -> Result<(), String> {
        self.run(&["ping", "-c1", "-W1", "-q", &addr.to_string()]).map(|_| ())
    }

    /// Waits up to 10 s for `addr` to answer a ping.
    #[track_caller]
    pub fn wait_ping(&self, addr: IpAddr) {
        wait_until(Duration::from_secs(10), &format!("{} to ping {addr}", self.name), || self.ping(addr));
    }

    /// Starts `argv` inside the namespace with stdout+stderr appended to `log`; see [`Proc`].
    pub fn spawn(&self, label: &str, argv: &[&str], log: &Path, envs: &[(&str, &str)]) -> Proc {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(argv);
        Proc::spawn(label, &full, log, envs, Some(self.clone()))
    }
}

/// A process the harness started. Killed (SIGKILL, then reaped) on drop; if the thread is panicking the
/// tail of its log is printed first. Its PID cannot be reused while the handle lives (it is reaped only
/// here), so signals always reach the right process.
pub struct Proc {
    label: String,
    pid: u32,
    child: Option<Child>,
    status: Option<ExitStatus>,
    log: PathBuf,
    _ns: Option<Netns>,
}

impl Proc {
    /// Spawns `argv` (no namespace change) with stdout+stderr appended to `log`, stdin closed, in its own
    /// process group, with `PR_SET_PDEATHSIG(SIGKILL)`.
    pub fn spawn(label: &str, argv: &[&str], log: &Path, envs: &[(&str, &str)], ns: Option<Netns>) -> Proc {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        // The parent-death signal is set by `setpriv` (util-linux), which then execs the command in the
        // same process (kept across exec). Not a `pre_exec` hook: with one, the spawn forks the harness,
        // whose page tables grow with what it holds (a benchmark run's 2.4 GB made every spawn 42 ms
        // slower, inside the start timings); without one it is a `posix_spawn`.
        let mut cmd = Command::new("setpriv");
        cmd.args(["--pdeathsig", "KILL", "--"]).args(argv);
        cmd.stdin(Stdio::null()).stdout(f.try_clone().unwrap()).stderr(f).process_group(0);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap_or_else(|e| panic!("{label}: cannot start {}: {e}", argv.join(" ")));
        Proc {
            label: label.to_string(),
            pid: child.id(),
            child: Some(child),
            status: None,
            log: log.to_path_buf(),
            _ns: ns,
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The last `n` lines of the log.
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// Sends `sig` (e.g. `libc::SIGHUP`). Panics if the process was already reaped.
    pub fn signal(&self, sig: i32) {
        assert!(self.child.is_some(), "{}: signal {sig} to a process that already exited", self.label);
        // SAFETY: plain syscall; pid is our unreaped child.
        unsafe { libc::kill(self.pid as i32, sig) };
    }

    /// SIGSTOP: the process stops reading and sending (its sessions' hold timers run out at the peer).
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT.
    pub fn unfreeze(&self) {
        self.signal(libc::SIGCONT);
    }

    /// The exit status if the process has exited (reaping it), `None` while it runs.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    self.status = Some(st);
                    self.child = None;
                }
            }
        }
        self.status
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait().is_none()
    }

    /// Waits up to `timeout` for the process to exit; panics (with the log tail) if it does not.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let end = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_wait() {
                return st;
            }
            if Instant::now() >= end {
                panic!(
                    "{} (pid {}) still running after {timeout:?}; log tail:\n{}",
                    self.label,
                    self.pid,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL and reap (no-op if already exited). Returns the exit status.
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            self.status = c.wait().ok();
        }
        self.status
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SPEAKERD_KEEP_LAB=1 keeps them after a passing test too (for reading daemon logs).
        if std::thread::panicking() || std::env::var_os("SPEAKERD_KEEP_LAB").is_some() {
            eprintln!(
                "---- {} (pid {}) log {} (last 40 lines) ----\n{}\n----",
                self.label,
                self.pid,
                self.log.display(),
                self.log_tail(40)
            );
        }
        self.kill9();
    }
}

/// `starttime` of a process (field 22 of /proc/PID/stat), to tell a live owner from a reused PID.
fn proc_start_time(pid: u32) -> Option<String> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_string)
}

/// Deletes the namespaces of labs whose owning test process is gone (it was killed before its Drop ran).
/// Their processes already died with it (PDEATHSIG); their logs stay in the state dir.
fn cleanup_stale_labs() {
    let Ok(entries) = fs::read_dir(base_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let dir = e.path();
        let Ok(nss) = fs::read_to_string(dir.join("namespaces")) else {
            continue;
        };
        let owner = fs::read_to_string(dir.join("owner")).unwrap_or_default();
        let mut it = owner.split_whitespace();
        let pid: u32 = it.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let start = it.next().unwrap_or("");
        if pid != 0 && proc_start_time(pid).as_deref() == Some(start) {
            continue; // owner still running (maybe this very process)
        }
        for ns in nss.lines().filter(|l| !l.is_empty()) {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
        let _ = fs::remove_file(dir.join("namespaces"));
    }
}
