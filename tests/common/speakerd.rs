//! The speakerd binary under test, started inside a namespace, and speakerctl talking to it over its
//! unix socket.
//!
//! Binaries come from the cargo target dir of the running test (`target/<profile>/`), which
//! `cargo build --workspace` fills (scripts/test.sh runs it before `cargo test`). A binary older than
//! one of the sources it was built from (per cargo's `.d` file) is refused, so a test never silently
//! runs old code.

use super::lab::{Netns, Proc};
use super::{tail, try_wait_until};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::Duration;

/// How long [`SpeakerdBuilder::start`] waits for the control socket to answer.
pub const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// Path of a workspace binary (`speakerd`, `speakerctl`) built for the profile of this test.
/// Panics with a clear message if it is missing or older than its sources.
pub fn bin_path(name: &str) -> PathBuf {
    let mut candidates = vec![];
    // current_exe() is target/<profile>/deps/<test>-<hash>
    if let Some(profile_dir) = std::env::current_exe().ok().and_then(|e| e.parent()?.parent().map(Path::to_path_buf)) {
        candidates.push(profile_dir.join(name));
    }
    if let Some(t) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(&t).join("debug").join(name));
        candidates.push(PathBuf::from(&t).join("release").join(name));
    }
    let Some(bin) = candidates.iter().find(|p| p.is_file()).cloned() else {
        panic!("binary `{name}` not found (looked at {candidates:?}): run `cargo build --workspace` first (scripts/test.sh does)");
    };
    if let Some(newer) = newer_source(&bin) {
        panic!(
            "{} is older than its source {}: run `cargo build --workspace` first (scripts/test.sh does)",
            bin.display(),
            newer.display()
        );
    }
    bin
}

/// A source listed in cargo's dep-info file `<bin>.d` that is newer than `bin`.
fn newer_source(bin: &Path) -> Option<PathBuf> {
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok()?;
    let dep_info = std::fs::read_to_string(bin.with_extension("d")).ok()?;
    let (_, deps) = dep_info.lines().next()?.split_once(": ")?;
    // paths are space-separated, spaces inside a path escaped as "\ "
    let deps = deps.replace("\\ ", "\u{0}");
    deps.split_whitespace().map(|p| PathBuf::from(p.replace('\u{0}', " "))).find(|p| {
        std::fs::metadata(p).and_then(|m| m.modified()).map(|t| t > built).unwrap_or(false)
            && p.extension().is_some_and(|e| e == "rs" || e == "proto")
    })
}

/// Options of a speakerd instance; see `speakerd --help`.
#[derive(Clone)]
pub struct SpeakerdBuilder {
    ns: Netns,
    router_id: Option<String>,
    local_asn: Option<u32>,
    bgp_listen: Vec<String>,
    no_bgp_listen: bool,
    config: Option<String>,
    metrics: Option<String>,
    log_format: Option<String>,
    env: Vec<(String, String)>,
    extra: Vec<String>,
}

impl SpeakerdBuilder {
    pub fn router_id(mut self, id: impl ToString) -> Self {
        self.router_id = Some(id.to_string());
        self
    }
    pub fn local_asn(mut self, asn: u32) -> Self {
        self.local_asn = Some(asn);
        self
    }
    /// `--bgp-listen ADDR:PORT` (repeatable; IPv6 as `[2001:db8::1]:179`).
    pub fn bgp_listen(mut self, addr: impl ToString) -> Self {
        self.bgp_listen.push(addr.to_string());
        self
    }
    pub fn no_bgp_listen(mut self) -> Self {
        self.no_bgp_listen = true;
        self
    }
    /// Contents of the `--config` file (written to the state dir as `speakerd.toml`).
    pub fn config(mut self, text: &str) -> Self {
        self.config = Some(text.to_string());
        self
    }
    /// `--metrics ADDR:PORT` (inside the namespace).
    pub fn metrics(mut self, addr: impl ToString) -> Self {
        self.metrics = Some(addr.to_string());
        self
    }
    /// `--log-format text|json`.
    pub fn log_format(mut self, f: &str) -> Self {
        self.log_format = Some(f.to_string());
        self
    }
    /// An environment variable for speakerd (e.g. `RUST_LOG`; default: the test's `RUST_LOG`, else `info`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
    /// A Layer 2 node: named `name`, gossip bound to `addr`:7946, joining through `seed` if given,
    /// gratuitous ARP repeats every 200 ms, no BGP listener.
    pub fn l2_node(self, name: &str, addr: impl std::fmt::Display, seed: Option<&str>) -> Self {
        let mut b = self.no_bgp_listen().arg("--node-name").arg(name).arg("--gossip-bind").arg(&format!("{addr}:7946"));
        if let Some(s) = seed {
            b = b.arg("--gossip-seed").arg(s);
        }
        b.arg("--garp-interval-ms").arg("200")
    }

    /// Any further argument, passed as is.
    pub fn arg(mut self, a: &str) -> Self {
        self.extra.push(a.to_string());
        self
    }

    /// Starts speakerd and waits until `speakerctl peer list` answers. Panics (with the log tail) if it
    /// exits or does not answer within [`READY_TIMEOUT`].
    pub fn start(self) -> Speakerd {
        let mut s = self.spawn();
        s.wait_ready();
        s
    }

    /// Starts speakerd without waiting (for tests that expect it to fail at start-up).
    pub fn spawn(self) -> Speakerd {
        let dir = self.ns.state_dir("speakerd");
        let socket = dir.join("speakerd.sock");
        let mut argv = vec![
            bin_path("speakerd").to_str().unwrap().to_string(),
            "--socket".into(),
            socket.to_str().unwrap().into(),
        ];
        if let Some(r) = &self.router_id {
            argv.extend(["--router-id".into(), r.clone()]);
        }
        if let Some(a) = self.local_asn {
            argv.extend(["--local-asn".into(), a.to_string()]);
        }
        for l in &self.bgp_listen {
            argv.extend(["--bgp-listen".into(), l.clone()]);
        }
        if self.no_bgp_listen {
            argv.push("--no-bgp-listen".into());
        }
        if let Some(c) = &self.config {
            let p = dir.join("speakerd.toml");
            std::fs::write(&p, c).unwrap();
            argv.extend(["--config".into(), p.to_str().unwrap().into()]);
        }
        if let Some(m) = &self.metrics {
            argv.extend(["--metrics".into(), m.clone()]);
        }
        if let Some(f) = &self.log_format {
            argv.extend(["--log-format".into(), f.clone()]);
        }
        argv.extend(self.extra.iter().cloned());
        let mut env = vec![
            ("RUST_LOG".to_string(), std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into())),
            ("NO_COLOR".to_string(), "1".to_string()),
        ];
        for (k, v) in &self.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        // BENCH_HEAPTRACK_DIR=DIR: each speakerd records its heap to DIR/speakerd.PID-ish.raw (heaptrack's
        // preload library writing straight to a file), for finding where a peak comes from.
        if let Some(d) = std::env::var_os("BENCH_HEAPTRACK_DIR") {
            static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let out = PathBuf::from(d).join(format!("speakerd.{n}.raw"));
            let pre = [
                "env".to_string(),
                "LD_PRELOAD=/usr/lib/heaptrack/libheaptrack_preload.so".into(),
                format!("DUMP_HEAPTRACK_OUTPUT={}", out.display()),
            ];
            argv.splice(0..0, pre);
        }
        let mut s = Speakerd { ns: self.ns.clone(), dir, socket, argv, env, proc: None };
        s.spawn_process();
        s
    }
}

/// A running speakerd. Killed (SIGKILL) when dropped; on a panic its log tail is printed.
pub struct Speakerd {
    ns: Netns,
    dir: PathBuf,
    socket: PathBuf,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    proc: Option<Proc>,
}

impl Speakerd {
    /// Options for a speakerd in `ns`; finish with [`SpeakerdBuilder::start`].
    pub fn builder(ns: &Netns) -> SpeakerdBuilder {
        SpeakerdBuilder {
            ns: ns.clone(),
            router_id: None,
            local_asn: None,
            bgp_listen: vec![],
            no_bgp_listen: false,
            config: None,
            metrics: None,
            log_format: None,
            env: vec![],
            extra: vec![],
        }
    }

    fn spawn_process(&mut self) {
        let _ = std::fs::remove_file(&self.socket); // "socket exists" must mean this instance made it
        let argv: Vec<&str> = self.argv.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let label = format!("speakerd in {}", self.ns.name());
        self.proc = Some(self.ns.spawn(&label, &argv, &self.log_path(), &env));
    }

    fn wait_ready(&mut self) {
        let r = try_wait_until(READY_TIMEOUT, || {
            if let Some(st) = self.proc.as_mut().and_then(|p| p.try_wait()) {
                return Ok(Err(format!("speakerd exited with {st}")));
            }
            if !self.socket.exists() {
                return Err(format!("no socket {}", self.socket.display()));
            }
            let out = self.speakerctl(&["peer", "list"]);
            if out.status.success() {
                Ok(Ok(()))
            } else {
                Err(format!("speakerctl peer list: {}", String::from_utf8_lossy(&out.stderr).trim()))
            }
        });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(e)) | Err(e) => panic!(
                "speakerd in {} did not become ready: {e}\ncommand: {}\nlog tail:\n{}",
                self.ns.name(),
                self.argv.join(" "),
                self.log_tail(40)
            ),
        }
    }

    /// Kill -9 (if running), then start again with the same arguments and wait until ready.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn_process();
        self.wait_ready();
    }

    pub fn ns(&self) -> &Netns {
        &self.ns
    }
    pub fn socket(&self) -> &Path {
        &self.socket
    }
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Starts `speakerctl -o json watch --initial`, writing one event per line to `log`, and returns once
    /// the initial state has arrived (so no later event can be missed). The process lives as long as the
    /// returned handle.
    #[track_caller]
    pub fn watch_json(&self, log: &Path) -> Proc {
        let ctl = bin_path("speakerctl");
        let argv = [
            ctl.to_str().unwrap_or_default(),
            "--socket",
            self.socket.to_str().unwrap_or_default(),
            "-o",
            "json",
            "watch",
            "--initial",
        ];
        let p = Proc::spawn("speakerctl watch", &argv, log, &[], None);
        self.wait(Duration::from_secs(20), "the watch to receive the initial state", || match std::fs::read_to_string(
            log,
        ) {
            Ok(t) if t.contains("\"synced\":true") => Ok(()),
            other => Err(format!("{other:?}")),
        });
        p
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("speakerd.log")
    }
    /// All of speakerd's stdout+stderr so far.
    pub fn log(&self) -> String {
        std::fs::read(self.log_path()).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }
    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log_path(), n)
    }
    fn proc(&self) -> &Proc {
        self.proc.as_ref().expect("speakerd is not running")
    }
    pub fn pid(&self) -> u32 {
        self.proc().pid()
    }

    /// Runs `speakerctl --socket SOCKET ARGS…` (from the root namespace: the socket is a file).
    pub fn speakerctl(&self, args: &[&str]) -> Output {
        Command::new(bin_path("speakerctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run speakerctl")
    }

    /// `speakerctl -o json watch --initial`, running: its events as they come, from after the current
    /// state (returns once speakerd has sent "synced").
    #[track_caller]
    pub fn watch(&self) -> Watch {
        let mut child = Command::new(bin_path("speakerctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(["-o", "json", "watch", "--initial"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("run speakerctl watch");
        let out = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send(v).is_err() {
                        break;
                    }
                }
            }
        });
        let w = Watch { child, rx };
        while w
            .next(Duration::from_secs(10))
            .expect("speakerctl watch: no \"synced\" within 10 s")
            .get("synced")
            .is_none()
        {}
        w
    }

    /// [`Speakerd::speakerctl`] that must succeed; returns stdout. Panics with stderr and speakerd's log tail.
    #[track_caller]
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = self.speakerctl(args);
        if !out.status.success() {
            panic!(
                "speakerctl {} failed ({}):\nstdout: {}\nstderr: {}\n---- speakerd log tail ----\n{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail(30)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `speakerctl -o json ARGS…`, parsed. Panics if it fails or prints no JSON.
    #[track_caller]
    pub fn speakerctl_json(&self, args: &[&str]) -> Value {
        let mut full = vec!["-o", "json"];
        full.extend_from_slice(args);
        let out = self.ctl(&full);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("speakerctl -o json {}: {e}: {out}", args.join(" ")))
    }

    /// `peer list -o json` as an array.
    #[track_caller]
    pub fn peers(&self) -> Vec<Value> {
        match self.speakerctl_json(&["peer", "list"]) {
            Value::Array(a) => a,
            other => panic!("peer list -o json is not an array: {other}"),
        }
    }

    /// The `state` of the peer with this address (`"established"`, `"idle"`, …), `None` if unknown.
    pub fn peer_state(&self, address: &str) -> Option<String> {
        let want = super::peers::norm_ip(address);
        self.peers()
            .into_iter()
            .find(|p| p["address"].as_str().map(super::peers::norm_ip).as_deref() == Some(&want))
            .and_then(|p| p["state"].as_str().map(str::to_string))
    }

    /// Waits until the peer with this address is in `state` (e.g. `"established"`).
    #[track_caller]
    pub fn wait_peer_state(&self, address: &str, state: &str, timeout: Duration) {
        self.wait(timeout, &format!("peer {address} to be {state}"), || match self.peer_state(address) {
            Some(s) if s == state => Ok(()),
            other => Err(format!("{other:?}")),
        });
    }

    /// `speakerctl -o json peer show ADDR`.
    #[track_caller]
    pub fn peer_show(&self, address: &str) -> Value {
        self.speakerctl_json(&["peer", "show", address])
    }

    /// Polls [`Speakerd::peer_show`] until `pred` holds for it and returns that status; on timeout
    /// panics with `what`, the last status and speakerd's log tail.
    #[track_caller]
    pub fn wait_peer(&self, timeout: Duration, address: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait(timeout, what, || {
            let p = self.peer_show(address);
            if pred(&p) {
                Ok(p)
            } else {
                Err(p.to_string())
            }
        })
    }

    /// [`super::assert_holds`] over [`Speakerd::peer_show`]: `pred` must hold for the peer's status for
    /// the whole of `period`.
    #[track_caller]
    pub fn assert_peer_holds(&self, period: Duration, address: &str, what: &str, pred: impl Fn(&Value) -> bool) {
        super::assert_holds(period, what, || {
            let p = self.peer_show(address);
            if pred(&p) {
                Ok(())
            } else {
                Err(p.to_string())
            }
        });
    }

    /// [`super::wait_until`] whose panic message also carries speakerd's log tail.
    #[track_caller]
    pub fn wait<T>(&self, timeout: Duration, what: &str, f: impl FnMut() -> Result<T, String>) -> T {
        match try_wait_until(timeout, f) {
            Ok(v) => v,
            Err(last) => panic!(
                "timed out after {timeout:?} waiting for {what} (speakerd in {}); last observed: {last}\n---- speakerd log tail ----\n{}",
                self.ns.name(),
                self.log_tail(40)
            ),
        }
    }

    pub fn signal(&self, sig: i32) {
        self.proc().signal(sig);
    }
    pub fn sigterm(&self) {
        self.signal(libc::SIGTERM);
    }
    pub fn sighup(&self) {
        self.signal(libc::SIGHUP);
    }
    /// SIGSTOP.
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }
    /// SIGCONT.
    pub fn unfreeze(&self) {
        self.signal(libc::SIGCONT);
    }
    /// SIGKILL and reap; returns the exit status (None if it was not running).
    pub fn kill9(&mut self) -> Option<ExitStatus> {
        self.proc.as_mut().and_then(|p| p.kill9())
    }
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| p.is_running())
    }
    /// Waits for speakerd to exit (e.g. after SIGTERM) and returns its status.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        self.proc.as_mut().expect("speakerd was never started").wait_exit(timeout)
    }
}

/// A running `speakerctl watch` (see [`Speakerd::watch`]); killed when dropped.
pub struct Watch {
    child: std::process::Child,
    rx: std::sync::mpsc::Receiver<Value>,
}

impl Watch {
    /// The next event (one JSON object of `speakerctl -o json watch`), if one comes within `within`.
    pub fn next(&self, within: Duration) -> Option<Value> {
        self.rx.recv_timeout(within).ok()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
