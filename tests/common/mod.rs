//! Test harness shared by the end-to-end tests in `tests/*.rs`: network namespaces (`lab`), real BGP
//! peers (`peers`: gobgpd, BIRD, FRR bgpd) and the speakerd/speakerctl binaries (`speakerd`).
//!
//! Every test that uses it starts with
//! `let Some(lab) = Lab::new_or_skip("my_test", &["gobgpd", "bird"]) else { return };`
//! which skips without root, `ip netns` or the named tools: it prints one `SKIPPED <test>: <why>` line,
//! which `scripts/test.sh` counts as skipped (never as passed), and fails instead under CI (see the
//! `test-skip` crate), so a broken CI machine cannot pass silently.
//!
//! Nothing here sleeps for a fixed time: use [`wait_until`] to poll a condition with a deadline.
#![allow(dead_code, unused_imports)]

pub mod arp_probe;
pub mod k8s;
pub mod lab;
pub mod peers;
pub mod speakerd;

pub use arp_probe::ArpProbe;
pub use lab::{Host, Lab, Netns, Proc, Routed, Segment};
pub use peers::{Announce, BgpPeer, Bird, Frr, Gobgpd, Neighbor, Notification, PeerConfig, Route};
pub use speakerd::{bin_path, Speakerd, SpeakerdBuilder};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How often [`wait_until`] polls.
pub const POLL: Duration = Duration::from_millis(100);

/// Polls `f` every 100 ms until it returns `Ok`, for at most `timeout`; returns the value.
/// On timeout panics with `what` and the last `Err` that `f` returned (the last observed value).
#[track_caller]
pub fn wait_until<T>(timeout: Duration, what: &str, f: impl FnMut() -> Result<T, String>) -> T {
    match try_wait_until(timeout, f) {
        Ok(v) => v,
        Err(last) => {
            panic!("timed out after {timeout:?} waiting for {what}; last observed: {last}")
        }
    }
}

/// Like [`wait_until`] but returns the last error instead of panicking.
pub fn try_wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Result<T, String>) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(POLL),
        }
    }
}

/// Checks that `f` keeps returning `Ok` for the whole of `period` (polling every 100 ms): for
/// "this must not happen" assertions, such as a session that must stay down. Panics at the first `Err`.
#[track_caller]
pub fn assert_holds(period: Duration, what: &str, mut f: impl FnMut() -> Result<(), String>) {
    let end = Instant::now() + period;
    loop {
        if let Err(e) = f() {
            panic!("{what} stopped holding: {e}");
        }
        if Instant::now() >= end {
            return;
        }
        std::thread::sleep(POLL);
    }
}

pub use test_skip::in_ci;

/// Why a lab cannot run here (not root, no `ip netns`, a tool missing), or `None` if it can.
/// `tools`: `"gobgpd"`, `"bird"`, `"frr"` (expanded to their daemon and CLI) or any program name
/// looked up in `PATH` (`"tshark"`, `"arping"`, …).
pub fn lab_unavailable(tools: &[&str]) -> Option<String> {
    if unsafe { libc::geteuid() } != 0 {
        return Some("not running as root".into());
    }
    match Command::new("ip").args(["netns", "list"]).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Some(format!("`ip netns list` failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => return Some(format!("cannot run `ip`: {e}")),
    }
    for tool in tools {
        let progs = match *tool {
            "gobgpd" | "gobgp" => vec!["gobgpd", "gobgp"],
            "bird" => vec!["bird", "birdc"],
            "frr" => vec![peers::FRR_BGPD, "vtysh"],
            other => vec![other],
        };
        for p in progs {
            if find_program(p).is_none() {
                return Some(format!("`{p}` not installed (run scripts/install-test-deps.sh)"));
            }
        }
    }
    None
}

/// `prog` as given if it contains a `/` and exists, else its first match in `PATH`.
pub fn find_program(prog: &str) -> Option<std::path::PathBuf> {
    if prog.contains('/') {
        return Path::new(prog).exists().then(|| prog.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(prog)).find(|p| p.is_file())
}

/// Decides whether a test runs: `true` if it can; `false` (after recording the skip with
/// [`test_skip::skip`]) if it cannot. Panics instead of skipping when [`in_ci`].
pub fn should_run(test: &str, tools: &[&str]) -> bool {
    match lab_unavailable(tools) {
        None => true,
        Some(why) => {
            test_skip::skip(test, &why);
            false
        }
    }
}

/// Runs `argv` (no namespace); `Ok(stdout)` on exit 0, else `Err` with the command, status and stderr.
pub fn run(argv: &[&str]) -> Result<String, String> {
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{}: cannot start: {e}", argv.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{}` failed ({}): {} {}",
            argv.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }
}

/// [`run`] that panics on failure.
#[track_caller]
pub fn run_ok(argv: &[&str]) -> String {
    run(argv).unwrap_or_else(|e| panic!("{e}"))
}

/// The last `n` lines of a file (empty if it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
