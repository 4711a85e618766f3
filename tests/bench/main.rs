//! Benchmarks side by side: speakerd, gobgpd, BIRD and a minimal reference sender, each in turn as the
//! sender in one namespace, against the same independent receivers (one BIRD per namespace on one
//! bridge). See docs/BENCHMARKS.md (written by a full run) and docs/TESTING.md.
//!
//! `cargo test --test bench` runs the smoke mode: tiny N, every workload once, checks that each figure
//! is a real measurement (every receiver held exactly N, every latency sample saw the route come and
//! go), and writes its report under the lab dir only. `scripts/bench.sh` runs the full mode
//! (`BENCH=full`, release build) and regenerates docs/BENCHMARKS.md and its plots.

#[path = "../common/mod.rs"]
mod common;

mod birdctl;
mod k8s_cluster;
mod report;
mod senders;
mod wire;
mod workloads;

use birdctl::BirdCtl;
use common::*;
use report::*;
use senders::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};
use workloads::*;

/// How often the receivers are polled while a figure is timed; BIRD as a sender is woken as often
/// ("BIRD (awake)"), so that neither side's clock is coarser than the other's.
pub const POLL: Duration = Duration::from_micros(500);

pub const SND_ASN: u32 = 65001;
pub const RCV_ASN: u32 = 65002;
pub const SND_V4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const SND_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);

/// What one run measures; the smoke plan keeps every workload but makes each tiny.
#[derive(Clone, Debug)]
pub struct Plan {
    pub full: bool,
    pub sizes: Vec<usize>,
    pub receivers: Vec<usize>,
    /// The largest N also run to the largest receiver count (memory table).
    pub max_n_widest: usize,
    pub latency_ops: usize,
    /// Turns of each persistent client (workloads.rs, `LAT_TURN` pairs each: the first after idling,
    /// the others counted).
    pub latency_turns: usize,
    pub latency_background: Vec<usize>,
    pub scale_sessions: usize,
    pub scale_prefixes: usize,
    pub start_runs: usize,
    pub restart_n: usize,
    pub l2_runs: usize,
    /// Services in the k8s-bridge workload, and EndpointSlice flips per size.
    pub k8s_sizes: Vec<usize>,
    pub k8s_flips: usize,
    /// Services allocated by the controller per size; Service created → route samples.
    pub ctl_sizes: Vec<usize>,
    pub ctl_route_runs: usize,
    /// k8s-bridge at cluster scale (`k8sc`).
    pub k8sc: k8s_cluster::ClusterPlan,
    pub only: Vec<String>,
    /// Runs per convergence row of the reference sender and speakerd (the median is reported), for N
    /// up to 100,000; rows of more take [`Plan::conv_runs`].
    pub conv_repeat: usize,
}

/// Convergence rows of more routes than this are "large": fewer runs ([`Plan::conv_runs`]).
pub const LARGE_N: usize = 100_000;

impl Plan {
    /// Runs of the reference sender and of speakerd for a convergence row of `n` routes. Rows of
    /// milliseconds need many: with 5 runs, one row's median ratio moved between 0.90× and 1.56× from
    /// one run of the bench to the next; with 31, three runs of the bench gave 0.96–1.09×. Rows of more
    /// than [`LARGE_N`] take a third (their runs last seconds and spread less).
    pub fn conv_runs(&self, n: usize) -> usize {
        if n > LARGE_N {
            (self.conv_repeat / 3).max(1) | 1
        } else {
            self.conv_repeat.max(1)
        }
    }

    fn from_env() -> Plan {
        let full = std::env::var("BENCH").is_ok_and(|v| v == "full");
        let only = std::env::var("BENCH_ONLY").map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default();
        let mut plan = Plan::preset(full, only);
        // for working on one workload: BENCH_SIZES=100000 BENCH_RECEIVERS=1,4 (the report then goes to /tmp)
        let list = |k: &str| {
            std::env::var(k)
                .ok()
                .map(|v| v.split(',').filter_map(|x| x.trim().parse::<usize>().ok()).collect::<Vec<_>>())
        };
        if let Some(s) = list("BENCH_SIZES") {
            // the sizes asked for run at every receiver count asked for
            plan.max_n_widest = s.iter().copied().max().unwrap_or(0);
            plan.sizes = s;
            plan.only.push("custom".into());
        }
        if let Some(k) = list("BENCH_RECEIVERS") {
            plan.receivers = k;
            plan.only.push("custom".into());
        }
        // BENCH_REPEAT=N: runs per convergence row of the reference sender and speakerd (median reported)
        if let Some(r) = std::env::var("BENCH_REPEAT").ok().and_then(|v| v.parse::<usize>().ok()) {
            plan.conv_repeat = r.max(1);
        }
        if std::env::var_os("BENCH_SENDERS").is_some() {
            plan.only.push("custom".into());
        }
        plan
    }

    fn preset(full: bool, only: Vec<String>) -> Plan {
        if full {
            Plan {
                full,
                sizes: vec![10_000, 100_000, 1_000_000],
                receivers: vec![1, 4, 16],
                max_n_widest: 100_000,
                latency_ops: 200,
                latency_turns: 100,
                latency_background: vec![10_000, 100_000],
                scale_sessions: 1000,
                scale_prefixes: 100_000,
                start_runs: 5,
                restart_n: 100_000,
                l2_runs: 20,
                k8s_sizes: vec![2_000, 10_000],
                k8s_flips: 20,
                ctl_sizes: vec![1_000, 10_000],
                ctl_route_runs: 20,
                k8sc: k8s_cluster::ClusterPlan::preset(true),
                only,
                conv_repeat: 31,
            }
        } else {
            Plan {
                full,
                sizes: vec![300],
                receivers: vec![1, 2],
                max_n_widest: 300,
                latency_ops: 6,
                latency_turns: 2,
                latency_background: vec![100],
                scale_sessions: 8,
                scale_prefixes: 200,
                start_runs: 1,
                restart_n: 300,
                l2_runs: 2,
                k8s_sizes: vec![100],
                k8s_flips: 3,
                ctl_sizes: vec![50],
                ctl_route_runs: 3,
                k8sc: k8s_cluster::ClusterPlan::preset(false),
                only,
                conv_repeat: 1,
            }
        }
    }

    fn wants(&self, section: &str) -> bool {
        self.only.iter().all(|o| o == "custom") || self.only.iter().any(|o| o == section)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fam {
    V4,
    V6,
}

impl Fam {
    pub fn proto(self) -> &'static str {
        match self {
            Fam::V4 => "s4",
            Fam::V6 => "s6",
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Fam::V4 => "IPv4 /32",
            Fam::V6 => "IPv6 /128",
        }
    }
    /// The n host routes of a bulk load: 10.0.0.0 + i, or fd00:100:: + i.
    pub fn prefixes(self, n: usize) -> Vec<IpAddr> {
        (0..n as u32)
            .map(|i| match self {
                Fam::V4 => IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + i)),
                Fam::V6 => {
                    IpAddr::V6(Ipv6Addr::from(u128::from("fd00:100::".parse::<Ipv6Addr>().unwrap()) + i as u128))
                }
            })
            .collect()
    }
    pub fn host_len(self) -> u8 {
        match self {
            Fam::V4 => 32,
            Fam::V6 => 128,
        }
    }
}

/// The i-th latency probe prefix (IPv4, outside every bulk load).
pub fn probe(i: usize) -> String {
    format!("{}/32", Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 200, 0, 0)) + i as u32))
}

// ---------------------------------------------------------------------------------------------------
// Receivers

pub struct Receiver {
    pub host: Host,
    pub ctl: BirdCtl,
    pub dir: std::path::PathBuf,
    _proc: Proc,
}

impl Receiver {
    /// A BIRD on `host` with two passive sessions towards the sender: `s4` (IPv4 unicast over IPv4)
    /// and `s6` (IPv6 unicast over IPv6), importing everything into its tables.
    pub fn start(host: &Host) -> Receiver {
        let conf = format!(
            "router id {v4};\nprotocol device {{ scan time 60; }}\n\
             protocol bgp s4 {{ local {v4} as {RCV_ASN}; neighbor {SND_V4} as {SND_ASN}; passive on; ipv4 {{ import all; export none; }}; }}\n\
             protocol bgp s6 {{ local {v6} as {RCV_ASN}; neighbor {SND_V6} as {SND_ASN}; passive on; ipv6 {{ import all; export none; }}; }}\n",
            v4 = host.v4,
            v6 = host.v6
        );
        Receiver::start_with(host, &conf)
    }

    pub fn start_with(host: &Host, body: &str) -> Receiver {
        let dir = host.state_dir("bird");
        std::fs::create_dir_all(&dir).unwrap();
        let conf = format!("log \"{}\" {{ info, warning, error, fatal }};\n{body}", dir.join("bird.log").display());
        std::fs::write(dir.join("bird.conf"), conf).unwrap();
        let (c, s) = (dir.join("bird.conf"), dir.join("bird.ctl"));
        let proc = host.spawn(
            "bird receiver",
            &["bird", "-f", "-c", c.to_str().unwrap(), "-s", s.to_str().unwrap()],
            &dir.join("stdout.log"),
            &[],
        );
        let ctl = BirdCtl::connect(&s).unwrap_or_else(|e| panic!("receiver BIRD control socket: {e}"));
        Receiver { host: host.clone(), ctl, dir, _proc: proc }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }
}

/// Polls every receiver's session `proto` until it is Established and then holds exactly `n` routes,
/// all receivers in the same loop, so that each one's time is its own. Returns (the first Established
/// the control sockets showed, when each receiver was seen holding n, in receiver order).
pub fn wait_converged(
    rcv: &mut [Receiver],
    proto: &str,
    n: u64,
    timeout: Duration,
) -> Result<(Instant, Vec<Instant>), String> {
    let deadline = Instant::now() + timeout;
    let mut first_est: Option<Instant> = None;
    let mut est = vec![false; rcv.len()];
    let mut done: Vec<Option<Instant>> = vec![None; rcv.len()];
    loop {
        for (i, r) in rcv.iter_mut().enumerate() {
            if !est[i] && r.ctl.established(proto).map_err(|e| e.to_string())? {
                est[i] = true;
                first_est.get_or_insert_with(Instant::now);
            }
            if est[i] && done[i].is_none() && r.ctl.imported(proto).map_err(|e| e.to_string())? == n {
                done[i] = Some(Instant::now());
            }
        }
        if let (Some(first), Some(all)) = (first_est, done.iter().copied().collect::<Option<Vec<_>>>()) {
            return Ok((first, all));
        }
        if Instant::now() > deadline {
            if !est.iter().all(|e| *e) {
                return Err(format!("not Established within {timeout:?}: {est:?}"));
            }
            let counts: Vec<u64> = rcv.iter_mut().map(|r| r.ctl.imported(proto).unwrap_or(0)).collect();
            return Err(format!("receivers hold {counts:?}, want {n}, after {timeout:?}"));
        }
        std::thread::sleep(POLL);
    }
}

/// Polls until every receiver holds exactly `n` routes on `proto` (sessions already up); returns when
/// each receiver was seen holding them, in receiver order.
pub fn wait_count(rcv: &mut [Receiver], proto: &str, n: u64, timeout: Duration) -> Result<Vec<Instant>, String> {
    let deadline = Instant::now() + timeout;
    let mut done: Vec<Option<Instant>> = vec![None; rcv.len()];
    loop {
        for (i, r) in rcv.iter_mut().enumerate() {
            if done[i].is_none() && r.ctl.imported(proto).map_err(|e| e.to_string())? == n {
                done[i] = Some(Instant::now());
            }
        }
        if let Some(all) = done.iter().copied().collect::<Option<Vec<_>>>() {
            return Ok(all);
        }
        if Instant::now() > deadline {
            let counts: Vec<u64> = rcv.iter_mut().map(|r| r.ctl.imported(proto).unwrap_or(0)).collect();
            return Err(format!("receivers hold {counts:?}, want {n}, after {timeout:?}"));
        }
        std::thread::sleep(POLL);
    }
}

/// The latest of `times` (every receiver done).
pub fn last(times: &[Instant]) -> Instant {
    times.iter().copied().max().expect("at least one receiver")
}

/// Waits until no receiver has `proto` up and none holds a route from it (between runs).
pub fn wait_idle(rcv: &mut [Receiver], proto: &str) -> Result<(), String> {
    try_wait_until(Duration::from_secs(120), || {
        for r in rcv.iter_mut() {
            let up = r.ctl.established(proto).map_err(|e| e.to_string())?;
            let n = r.ctl.imported(proto).map_err(|e| e.to_string())?;
            if up || n != 0 {
                return Err(format!("{} still up={up} with {n} routes", r.host.name()));
            }
        }
        Ok(Ok(()))
    })
    .and_then(|r| r)
}

/// VmRSS and VmHWM of `pid`, in bytes.
pub fn rss(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let get = |k: &str| {
        s.lines().find(|l| l.starts_with(k)).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()).unwrap_or(0)
            * 1024
    };
    (get("VmRSS:"), get("VmHWM:"))
}

/// Resets the peak RSS (VmHWM) of `pid` to its current RSS (`5` into /proc/PID/clear_refs, Linux
/// 4.0+), so that the VmHWM read at the end of a phase is that phase's own peak.
pub fn reset_peak(pid: u32) -> Result<(), String> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").map_err(|e| format!("reset peak of {pid}: {e}"))
}

/// utime + stime of `pid` in seconds.
pub fn cpu_secs(pid: u32) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = s.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// CPU time of every thread of process `pid` so far, from the scheduler's own accounting
/// (`/proc/PID/task/*/schedstat`, nanoseconds: `/proc/PID/stat` counts in 10 ms ticks).
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return Duration::ZERO };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(ns)
}

#[test]
fn benchmarks() {
    if !should_run("bench", &["bird", "gobgpd", "gobgp"]) {
        return;
    }
    let plan = Plan::from_env();
    let started = Instant::now();
    let mut res = Results::new(&plan);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    if plan.wants("conv") || plan.wants("lat") || plan.wants("scale") || plan.wants("start") {
        let lab = Lab::new("bench");
        // the latency workload has speakerd and gobgpd up at once, each with its receiver
        let max_k = (*plan.receivers.iter().max().unwrap()).max(if plan.wants("lat") { 2 } else { 1 });
        let mut names = vec!["snd".to_string()];
        names.extend((1..=max_k).map(|i| format!("r{i}")));
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let seg = lab.segment(&refs);
        let snd = seg.hosts[0].clone();
        let mut rcv: Vec<Receiver> = seg.hosts[1..].iter().map(Receiver::start).collect();
        let ctx = Ctx { snd: &snd, rt: &rt, plan: &plan };
        if plan.wants("conv") {
            convergence(&ctx, &mut rcv, &mut res);
        }
        if plan.wants("lat") {
            latency(&ctx, &mut rcv[..2], &mut res);
        }
        if plan.wants("start") {
            start_times(&ctx, &mut rcv[..1], &mut res);
        }
        if plan.wants("scale") {
            let r1 = seg.hosts[1].clone();
            drop(rcv);
            scale(&ctx, &r1, &mut res);
        }
    }
    if plan.wants("l2") {
        l2_failover(&plan, &mut res);
    }
    if plan.wants("k8s") {
        k8s_scale(&plan, &mut res);
    }
    if plan.wants("ctl") {
        controller_bench(&plan, &mut res);
    }
    if plan.wants("k8sc") {
        k8s_cluster::k8s_cluster(&plan, &mut res);
    }
    res.total = started.elapsed();
    let doc = res.render(&plan);
    let (md, svg_dir) = if plan.full && plan.only.is_empty() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        (root.join("docs/BENCHMARKS.md"), root.join("docs/bench"))
    } else {
        let d = std::env::temp_dir().join(format!("speakerd-bench-{}", if plan.full { "partial" } else { "smoke" }));
        (d.join("BENCHMARKS.md"), d.clone())
    };
    std::fs::create_dir_all(&svg_dir).unwrap();
    for (name, svg) in res.plots() {
        std::fs::write(svg_dir.join(name), svg).unwrap();
    }
    std::fs::write(&md, &doc).unwrap();
    eprintln!("bench: report written to {} ({:.0} s)", md.display(), res.total.as_secs_f64());
    res.check_complete(&plan);
}
