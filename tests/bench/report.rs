//! Results of one run and their rendering: docs/BENCHMARKS.md and SVG plots, every figure from this run.

use super::*;
use std::fmt::Write as _;

#[derive(Default, Clone)]
pub struct ConvRow {
    pub fam: Option<Fam>,
    pub n: usize,
    pub k: usize,
    pub sender: &'static str,
    /// Runs this row is the median of (by `est_to_all`), and every run's `est_to_all` (the spread).
    pub runs: usize,
    pub run_times: Vec<Duration>,
    /// The largest over the receivers of (that session's Established → that receiver holds N).
    pub est_to_all: Option<Duration>,
    /// Last session Established − first session Established.
    pub spread: Option<Duration>,
    /// From the first Established until the sender's first UPDATE, and its last segment, left it.
    pub first_update: Option<Duration>,
    pub last_sent: Option<Duration>,
    /// Sessions down: from the start of the load (API call; BIRD: its start) until the call returned
    /// and the sender holds all N.
    pub load: Option<Duration>,
    /// Sessions up and empty: from the start of one API load until every receiver holds all N.
    pub bulk: Option<Duration>,
    /// UPDATE messages per receiver during an untimed sessions-up load (captured), where counted.
    pub bulk_updates: Option<f64>,
    /// VmRSS once every receiver holds N (steady), and the VmHWM of each phase: the load with sessions
    /// down, the convergence, the load with sessions up (the peak reset before each).
    pub rss: u64,
    pub peak_load: u64,
    pub peak_conv: u64,
    pub peak_bulk: u64,
    /// speakerd only, the first run of a row: the peaks of the other ways of loading.
    pub other_loads: Option<OtherLoads>,
    pub err: Option<String>,
}

/// The VmHWM of speakerd's other ways of loading N announcements, each its own phase.
#[derive(Clone, Copy, Debug, Default)]
pub struct OtherLoads {
    /// A speakerd that reads them from its config file (sessions down), from its start.
    pub file: u64,
    /// AddPathStream through the GoBGP API, 1000 paths per message (sessions down).
    pub stream: u64,
    /// [`REPEATED_PUSHES`] full SetAnnouncements of the same set, sessions up and holding it.
    pub repeated: u64,
}

impl ConvRow {
    /// The highest of the phases' peaks, every way of loading included.
    pub fn peak(&self) -> u64 {
        let o = self.other_loads.unwrap_or_default();
        self.peak_load.max(self.peak_conv).max(self.peak_bulk).max(o.file).max(o.stream).max(o.repeated)
    }
}

pub struct LatRow {
    pub sender: &'static str,
    pub method: &'static str,
    pub background: usize,
    pub p: Probes,
    pub err: Option<String>,
}

/// What one run of probes measured.
#[derive(Default)]
pub struct Probes {
    pub adds: Vec<Duration>,
    pub dels: Vec<Duration>,
    /// From the call until the UPDATE left the sender (captured on its link), adds and withdrawals.
    pub wire: Vec<Duration>,
    /// The first add of each turn (not in the others): until the receiver holds it, and on the wire.
    pub first: Vec<Duration>,
    pub first_wire: Vec<Duration>,
    /// Turns that started without the other sender having gone quiet (workloads.rs, `Side::turn`).
    pub not_quiet: usize,
}

impl Probes {
    /// Adds and withdrawals together.
    pub fn all(&self) -> Vec<Duration> {
        [self.adds.as_slice(), self.dels.as_slice()].concat()
    }

    pub fn extend(&mut self, p: Probes) {
        self.adds.extend(p.adds);
        self.dels.extend(p.dels);
        self.wire.extend(p.wire);
        self.first.extend(p.first);
        self.first_wire.extend(p.first_wire);
        self.not_quiet += p.not_quiet;
    }
}

impl LatRow {
    pub fn from(sender: &'static str, method: &'static str, background: usize, r: Result<Probes, String>) -> LatRow {
        let (p, err) = match r {
            Ok(p) => (p, None),
            Err(e) => (Probes::default(), Some(e)),
        };
        // BENCH_LAT_DUMP=DIR: every sample in ms, in call order (adds, withdrawals, on the wire), for
        // looking at when the slow ones happen
        if let Some(dir) = std::env::var_os("BENCH_LAT_DUMP") {
            let line = |v: &[Duration]| {
                v.iter().map(|d| format!("{:.3}", d.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(" ")
            };
            let slug: String = method.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
            let file = std::path::Path::new(&dir).join(format!("{sender}-{slug}-{background}.txt"));
            let _ = std::fs::write(file, format!("{}\n{}\n{}\n", line(&p.adds), line(&p.dels), line(&p.wire)));
        }
        LatRow { sender, method, background, p, err }
    }
}

#[derive(Default)]
pub struct StartRow {
    pub sender: &'static str,
    pub open: Vec<Duration>,
    pub est: Vec<Duration>,
    pub err: Option<String>,
}

#[derive(Default)]
pub struct ScaleRow {
    pub sessions: usize,
    pub prefixes: usize,
    pub establish_all: Option<Duration>,
    pub idle_cpu_pct: Option<f64>,
    pub distribute: Option<Duration>,
    pub distribute_cpu: Option<f64>,
    pub rss: u64,
    /// RSS after the sessions have idled a few hold times.
    pub rss_settled: u64,
    pub still_established: usize,
    pub drops: u64,
    pub hold_expiries: u64,
    pub err: Option<String>,
}

/// What a Layer 2 run does to the owner of the IP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum L2Fault {
    /// kill -9; the sample is the time to the first gratuitous ARP from another MAC.
    #[default]
    Kill,
    /// Gossip cut for 3 s, then healed; the sample is the longest double answer the client saw.
    Partition,
}

#[derive(Default)]
pub struct L2Row {
    pub nodes: usize,
    pub fault: L2Fault,
    /// `--gossip-probe-ms`; None: the default.
    pub probe_ms: Option<u64>,
    pub samples: Vec<Duration>,
    pub err: Option<String>,
}

/// One size of the k8s-bridge workload (section 8).
#[derive(Default)]
pub struct K8sRow {
    pub n: usize,
    pub write_delay: Duration,
    /// Seconds the test took to create the 2N objects (Services and EndpointSlices).
    pub create_secs: f64,
    pub routes_after_last: Option<Duration>,
    /// Not-ready → withdrawn at the router, one per flip.
    pub flips: Vec<Duration>,
    /// Event and status writes still pending after the flips.
    pub pending_after_flips: (f64, f64),
    pub hung_flip: Option<Duration>,
    pub status_converged: Option<Duration>,
    /// (VmRSS, VmHWM) of k8s-bridge and speakerd at the end; k8s-bridge's CPU seconds.
    pub bridge_mem: (u64, u64),
    pub bridge_cpu: f64,
    pub speakerd_mem: (u64, u64),
    pub err: Option<String>,
}

/// One size of the controller's allocation workload (section 9).
#[derive(Default)]
pub struct CtlRow {
    pub n: usize,
    pub create_secs: f64,
    /// First Service created → every Service shows an IP.
    pub all_allocated: Option<Duration>,
    /// The controller's (VmRSS, VmHWM) and CPU seconds at the end.
    pub mem: (u64, u64),
    pub cpu: f64,
    pub err: Option<String>,
}

pub struct Results {
    pub conv: Vec<ConvRow>,
    pub lat: Vec<LatRow>,
    /// The machine's wake floor between the latency turns, per background size (workloads.rs,
    /// `WakeFloor`): an idle thread woken by a Unix-socket write.
    pub lat_floor: Vec<(usize, Result<Vec<Duration>, String>)>,
    pub start: Vec<StartRow>,
    pub restart: Option<(usize, Result<Duration, String>)>,
    pub scale: Option<ScaleRow>,
    pub l2: Vec<L2Row>,
    /// speakerd's default `--gossip-probe-ms` (read from its `--help`).
    pub l2_default_probe_ms: u64,
    pub k8s: Vec<K8sRow>,
    pub ctl: Vec<CtlRow>,
    /// Service created → route at the router, one sample per Service.
    pub ctl_route: Option<(Vec<Duration>, Option<String>)>,
    /// k8s-bridge at cluster scale (section 10).
    pub k8sc: Option<crate::k8s_cluster::ClusterRow>,
    pub total: Duration,
}

pub fn pct(v: &[Duration], p: f64) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort();
    let i = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[i.clamp(1, s.len()) - 1])
}

fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) if d.as_secs_f64() >= 10.0 => format!("{:.1} s", d.as_secs_f64()),
        Some(d) if d.as_secs_f64() >= 1.0 => format!("{:.2} s", d.as_secs_f64()),
        Some(d) => format!("{:.2} ms", d.as_secs_f64() * 1000.0),
        None => "–".into(),
    }
}

pub fn mb(b: u64) -> String {
    if b == 0 {
        "–".into()
    } else {
        format!("{:.1} MB", b as f64 / 1e6)
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".into(),
    }
}

fn secs(d: Option<Duration>) -> Option<f64> {
    d.map(|d| d.as_secs_f64())
}

fn sh(cmd: &str) -> String {
    std::process::Command::new("sh")
        .args(["-c", cmd])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

impl Results {
    pub fn new(_plan: &Plan) -> Results {
        Results {
            conv: vec![],
            lat: vec![],
            lat_floor: vec![],
            start: vec![],
            restart: None,
            l2_default_probe_ms: 0,
            scale: None,
            l2: vec![],
            k8s: vec![],
            ctl: vec![],
            ctl_route: None,
            k8sc: None,
            total: Duration::ZERO,
        }
    }

    fn conv_row(&self, fam: Fam, n: usize, k: usize, sender: &str) -> Option<&ConvRow> {
        self.conv.iter().find(|r| r.fam == Some(fam) && r.n == n && r.k == k && r.sender == sender && r.err.is_none())
    }

    pub fn render(&self, plan: &Plan) -> String {
        let mut d = String::new();
        let _ = writeln!(d, "# Benchmarks: speakerd, gobgpd and BIRD side by side\n");
        let _ = writeln!(d, "Written by `scripts/bench.sh` (`BENCH=full cargo test --release --test bench`) from one run on {}; every figure below comes from that run. Do not edit by hand: change `tests/bench/` and run it again. The method and what each column means are at the end.\n", sh("date -u +'%Y-%m-%d %H:%M UTC'"));
        let _ = writeln!(d, "## Machine and versions\n");
        let _ = writeln!(d, "| | |\n|---|---|");
        let _ = writeln!(d, "| CPU | {} × {} |", sh("nproc"), sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"));
        let _ = writeln!(d, "| memory | {} |", sh("free -h | awk '/Mem:/ {print $2}'"));
        let _ = writeln!(d, "| kernel | {} |", sh("uname -r"));
        let _ = writeln!(
            d,
            "| speakerd | {} ({} build) |",
            sh("git -C \"$CARGO_MANIFEST_DIR\" describe --always --dirty 2>/dev/null || echo unknown"),
            if cfg!(debug_assertions) { "debug" } else { "release" }
        );
        let _ = writeln!(d, "| gobgpd | {} |", sh("gobgpd --version 2>&1 | head -1"));
        let _ = writeln!(d, "| BIRD | {} |", sh("bird --version 2>&1 | head -1"));
        let _ = writeln!(
            d,
            "| run | {} mode, {:.0} s |",
            if plan.full { "full" } else { "smoke" },
            self.total.as_secs_f64()
        );
        if let Ok(note) = std::env::var("BENCH_NOTE") {
            let _ = writeln!(d, "| note | {note} |");
        }
        d.push('\n');

        self.render_targets(&mut d, plan);
        self.render_convergence(&mut d, plan);
        self.render_memory(&mut d, plan);
        self.render_latency(&mut d);
        self.render_scale(&mut d);
        self.render_start(&mut d);
        self.render_l2(&mut d);
        self.render_k8s(&mut d);
        self.render_ctl(&mut d);
        self.render_k8s_cluster(&mut d);
        d += METHOD;
        d
    }

    /// Failed convergence rows among `senders` (at `fam`, `n`, `k` where given), named.
    fn conv_failed(&self, senders: &[&str], at: impl Fn(&ConvRow) -> bool) -> Vec<String> {
        self.conv
            .iter()
            .filter(|r| senders.contains(&r.sender) && at(r))
            .filter_map(|r| {
                let e = r.err.as_ref()?;
                Some(format!("convergence {} {} n={} k={}: {e}", r.sender, r.fam.map_or("", Fam::name), r.n, r.k))
            })
            .collect()
    }

    fn render_targets(&self, d: &mut String, plan: &Plan) {
        let _ = writeln!(d, "## Targets\n\nA target whose rows include a failed run is not evaluated (never \"met\"); the failed row is named.\n\n| target | measured | |\n|---|---|---|");
        // `failed`: the rows this target depends on that failed; any makes the target unevaluated
        let mut line = |what: &str, got: String, ok: Option<bool>, failed: Vec<String>| {
            let _ = writeln!(d, "| {what} | {got} | {} |", verdict(ok, &failed));
        };
        let worst = |of: &str, min_n: usize| {
            self.conv
                .iter()
                .filter(|r| r.sender == "speakerd" && r.n >= min_n)
                .filter_map(|r| Some(secs(r.est_to_all)? / secs(self.conv_row(r.fam?, r.n, r.k, of)?.est_to_all)?))
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))))
        };
        let worst_ref = worst(REFERENCE, 0);
        line(
            "convergence ≤ 1.2× the reference sender at every N and receiver count",
            worst_ref.map_or("–".into(), |w| format!("worst {w:.2}×")),
            worst_ref.map(|w| w <= 1.2),
            self.conv_failed(&["speakerd", REFERENCE], |_| true),
        );
        // the smoke run's N are tiny: there every N counts
        let min_n = if plan.full { 10_000 } else { 0 };
        let worst_gobgp = worst("gobgpd", min_n);
        line(
            &if plan.full {
                format!("convergence ≤ 0.2× gobgpd at every N ≥ {min_n} and receiver count")
            } else {
                "convergence ≤ 0.2× gobgpd at every N and receiver count".to_string()
            },
            worst_gobgp.map_or("–".into(), |w| format!("worst {w:.2}×")),
            worst_gobgp.map(|w| w <= 0.2),
            self.conv_failed(&["speakerd", "gobgpd"], |r| r.n >= min_n),
        );
        let n100 = if plan.full { 100_000 } else { plan.sizes[0] };
        let at = |n: usize, k: usize| move |r: &ConvRow| r.fam == Some(Fam::V4) && r.n == n && r.k == k;
        let bulk = self.conv_row(Fam::V4, n100, 1, "speakerd").and_then(|r| r.bulk);
        line(
            &format!("load of {n100} into established sessions (bulk) + convergence ≤ 0.25 s (IPv4, 1 receiver)"),
            ms(bulk),
            bulk.map(|b| b.as_secs_f64() <= 0.25),
            self.conv_failed(&["speakerd"], at(n100, 1)),
        );
        let k_max = *plan.receivers.iter().max().unwrap();
        let mem_points = if plan.full {
            vec![(100_000, 4), (1_000_000, 1)]
        } else {
            vec![(plan.sizes[0], k_max), (plan.sizes[0], 1)]
        };
        for (n, k) in mem_points {
            let (s, b) = (self.conv_row(Fam::V4, n, k, "speakerd"), self.conv_row(Fam::V4, n, k, "BIRD (awake)"));
            let failed = self.conv_failed(&["speakerd", "BIRD (awake)"], at(n, k));
            let (sp, bp) = (s.map(ConvRow::peak), b.map(ConvRow::peak));
            line(
                &format!("peak RSS (highest of every phase and way of loading: gRPC bulk, config file, GoBGP AddPathStream, {REPEATED_PUSHES} full pushes) at {n} × {k} receivers ≤ BIRD's peak"),
                format!("{} vs BIRD {}", mb(sp.unwrap_or(0)), mb(bp.unwrap_or(0))),
                sp.zip(bp).filter(|(s, b)| *s > 0 && *b > 0).map(|(s, b)| s <= b),
                failed.clone(),
            );
            let (ss, bs) = (s.map(|r| r.rss), b.map(|r| r.rss));
            line(
                &format!("steady RSS (after convergence) at {n} × {k} receivers ≤ BIRD's steady RSS"),
                format!("{} vs BIRD {}", mb(ss.unwrap_or(0)), mb(bs.unwrap_or(0))),
                ss.zip(bs).filter(|(s, b)| *s > 0 && *b > 0).map(|(s, b)| s <= b),
                failed,
            );
        }
        let lat_failed = |senders: &[&str], method: &str, bg: usize| -> Vec<String> {
            self.lat
                .iter()
                .filter(|l| senders.contains(&l.sender) && l.method.starts_with(method) && l.background == bg)
                .filter_map(|l| Some(format!("latency {} {} bg={bg}: {}", l.sender, l.method, l.err.as_ref()?)))
                .collect()
        };
        for bg in &plan.latency_background {
            let (l, g) = (self.persistent_row("speakerd", *bg), self.persistent_row("gobgpd", *bg));
            let all = l.map(|l| l.p.all()).unwrap_or_default();
            let (p50, p99) = (pct(&all, 50.0), pct(&all, 99.0));
            line(
                &format!("persistent client p50 ≤ 0.6 ms, p99 ≤ 1 ms ({bg} announced)"),
                format!("p50 {} p99 {}", ms(p50), ms(p99)),
                p50.zip(p99).map(|(a, b)| a.as_secs_f64() <= 0.0006 && b.as_secs_f64() <= 0.001),
                lat_failed(&["speakerd"], "gRPC", *bg),
            );
            // the receiver's part (BIRD's import, the poll) is the same for both: compare on the wire
            let show = |r: Option<f64>| r.map_or("–".into(), |r| format!("{r:.2}×"));
            for (what, pick) in [
                ("back-to-back calls", (|p: &Probes| p.wire.clone()) as fn(&Probes) -> Vec<Duration>),
                ("first call after ≥ 20 ms idle", |p: &Probes| p.first_wire.clone()),
            ] {
                let ratio = |q: f64| Some(secs(pct(&pick(&l?.p), q))? / secs(pct(&pick(&g?.p), q))?);
                let (r50, r99) = (ratio(50.0), ratio(99.0));
                // after idle, the machine's own wake-up (paid by both senders) is shown beside the ratio
                let floor = self
                    .floor_p50(*bg)
                    .filter(|_| what.starts_with("first"))
                    .map_or(String::new(), |f| format!(" (machine's wake floor p50 {})", ms(Some(f))));
                line(
                    &format!("persistent client, {what}: ≤ 0.5× gobgpd's gRPC, call → UPDATE on the wire, p50 and p99 ({bg} announced)"),
                    format!("p50 {} p99 {}{floor}", show(r50), show(r99)),
                    r50.zip(r99).map(|(a, b)| a <= 0.5 && b <= 0.5),
                    lat_failed(&["speakerd", "gobgpd"], "gRPC", *bg),
                );
            }
        }
        let ctl = self.lat.iter().find(|l| l.sender == "speakerd" && l.method.contains("speakerctl"));
        let p50 = ctl.and_then(|l| pct(&l.p.all(), 50.0));
        line(
            "one speakerctl call ≤ 4 ms end to end (p50)",
            ms(p50),
            p50.map(|p| p.as_secs_f64() <= 0.004),
            self.lat
                .iter()
                .filter(|l| l.sender == "speakerd" && l.method.contains("speakerctl"))
                .filter_map(|l| Some(format!("latency speakerctl bg={}: {}", l.background, l.err.as_ref()?)))
                .collect(),
        );
        let sp_start = self.start.iter().find(|s| s.sender == "speakerd");
        let est = sp_start.and_then(|s| pct(&s.est, 50.0));
        line(
            "start → Established ≤ 100 ms (median)",
            ms(est),
            est.map(|e| e.as_secs_f64() <= 0.1),
            sp_start.and_then(|s| Some(format!("start speakerd: {}", s.err.as_ref()?))).into_iter().collect(),
        );
        // Only the sections that ran have rows (a partial run printed "0 sessions ..." before).
        if let Some(s) = self.scale.as_ref() {
            line(
                &format!("{} sessions with zero missed keepalives", s.sessions),
                format!("{} hold-timer expiries, {} drops", s.hold_expiries, s.drops),
                Some(s.hold_expiries == 0 && s.drops == 0 && s.still_established == s.sessions),
                s.err.iter().map(|e| format!("scale: {e}")).collect(),
            );
        }
        for r in &self.k8s {
            let failed: Vec<String> = r.err.iter().map(|e| format!("k8s-bridge at {}: {e}", r.n)).collect();
            line(
                &format!(
                    "k8s-bridge, {} Services, API writes at {} ms: every route ≤ 2 s after the last object",
                    r.n,
                    r.write_delay.as_millis()
                ),
                ms(r.routes_after_last),
                r.routes_after_last.map(|d| d.as_secs_f64() <= 2.0),
                failed.clone(),
            );
            let p99 = pct(&r.flips, 99.0);
            line(
                &format!(
                    "k8s-bridge, {} Services: not-ready → withdrawn p99 ≤ 1 s while the write backlog drains",
                    r.n
                ),
                ms(p99),
                p99.map(|d| d.as_secs_f64() <= 1.0),
                failed,
            );
        }
        for (what, got, ok, failed) in self.k8s_cluster_targets() {
            line(&what, got, ok, failed);
        }
        for l in self.l2.iter().filter(|l| l.probe_ms.is_none() && l.fault == L2Fault::Kill) {
            let p99 = pct(&l.samples, 99.0);
            line(
                &format!("Layer 2 failover p99 < 1 s at {} nodes (gossip defaults)", l.nodes),
                ms(p99),
                p99.map(|p| p.as_secs_f64() < 1.0),
                l.err.iter().map(|e| format!("Layer 2 at {} nodes: {e}", l.nodes)).collect(),
            );
        }
        d.push('\n');
    }

    /// The (fam, n, k) that have any convergence row, in plan order.
    fn conv_points(&self, plan: &Plan, fam: Fam) -> Vec<(usize, usize)> {
        let mut out = vec![];
        for &n in &plan.sizes {
            for &k in &plan.receivers {
                if self.conv.iter().any(|r| r.fam == Some(fam) && r.n == n && r.k == k) {
                    out.push((n, k));
                }
            }
        }
        out
    }

    fn render_convergence(&self, d: &mut String, plan: &Plan) {
        let _ = writeln!(d, "## 1–2. Convergence and the reference sender\n");
        let mut runs: Vec<(usize, usize)> =
            self.conv.iter().filter(|r| r.sender == "speakerd").map(|r| (r.runs, r.n)).collect();
        runs.sort();
        runs.dedup_by_key(|r| r.0);
        if runs.iter().any(|r| r.0 > 1) {
            let counts: Vec<String> = runs
                .iter()
                .map(|(k, n)| match runs.len() {
                    1 => format!("{k} runs"),
                    _ if *n > LARGE_N => format!("{k} runs for N > {LARGE_N}"),
                    _ => format!("{k} runs for N ≤ {LARGE_N}"),
                })
                .collect();
            let _ = writeln!(d, "The reference sender and speakerd columns (and speakerd's load and memory figures) are each the run with the median convergence time of {}, taken alternately (reference, speakerd, reference, ...), with the fastest and slowest of those runs in brackets; the other senders ran once.\n", counts.join(", "));
        }
        let _ = writeln!(d, "Per session: from that session's Established (taken from the wire) until that receiver holds all N routes (the sender had them before the sessions came up); each cell is the slowest session's. When the sessions came up (a sender's connect timers) does not count; how far apart they came up is the bring-up spread, in the next table.\n");
        let cell = |r: Option<&ConvRow>| match r {
            Some(r) if r.run_times.len() > 1 => format!(
                "{} ({}–{})",
                ms(r.est_to_all),
                ms(r.run_times.iter().min().copied()),
                ms(r.run_times.iter().max().copied())
            ),
            r => ms(r.and_then(|r| r.est_to_all)),
        };
        for fam in [Fam::V4, Fam::V6] {
            let _ = writeln!(d, "### {}\n", fam.name());
            let _ = writeln!(d, "| N | receivers | reference sender | speakerd | speakerd ÷ reference | gobgpd | speakerd ÷ gobgpd | BIRD (default) | BIRD (awake) |");
            let _ = writeln!(d, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            for (n, k) in self.conv_points(plan, fam) {
                let get = |s: &str| self.conv_row(fam, n, k, s);
                let t = |s: &str| get(s).and_then(|r| r.est_to_all);
                let _ = writeln!(
                    d,
                    "| {n} | {k} | {} | {} | {} | {} | {} | {} | {} |",
                    cell(get(REFERENCE)),
                    cell(get("speakerd")),
                    ratio(secs(t("speakerd")), secs(t(REFERENCE))),
                    ms(t("gobgpd")),
                    ratio(secs(t("speakerd")), secs(t("gobgpd"))),
                    ms(t("BIRD (default)")),
                    ms(t("BIRD (awake)")),
                );
            }
            d.push('\n');
        }
        let _ = writeln!(d, "### Loading the routes: sessions down, sessions up\n\n\"Sessions down\": the routes loaded before any peer exists, from the start of the load until the API call returned and the sender holds all N (speakerd: `SetAnnouncements` returns once it holds them; gobgpd: `AddPathStream` of 1000 paths per message, then `GetTable` polled until it counts N; BIRD: from its start until its static protocol holds N, as BIRD reads its routes from its config). \"Sessions up\": the sessions established and empty, one API load (speakerd `SetAnnouncements`, gobgpd `AddPathStream`), timed from its start until every receiver holds all N; no capture runs during it. \"UPDATEs per receiver\": the UPDATE messages the sender sent during a second, untimed sessions-up load of the same routes, captured on its link and divided by the receivers (counted at the smallest N only).\n");
        let _ = writeln!(d, "| family | N | receivers | speakerd, sessions down | speakerd, sessions up | gobgpd, sessions down | gobgpd, sessions up | BIRD, sessions down | speakerd UPDATEs per receiver | gobgpd UPDATEs per receiver |");
        let _ = writeln!(d, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        let upd = |r: Option<&ConvRow>| r.and_then(|r| r.bulk_updates).map_or("–".into(), |u| format!("{u:.0}"));
        for fam in [Fam::V4, Fam::V6] {
            for (n, k) in self.conv_points(plan, fam) {
                let get = |s: &str| self.conv_row(fam, n, k, s);
                let _ = writeln!(
                    d,
                    "| {} | {n} | {k} | {} | {} | {} | {} | {} | {} | {} |",
                    fam.name(),
                    ms(get("speakerd").and_then(|r| r.load)),
                    ms(get("speakerd").and_then(|r| r.bulk)),
                    ms(get("gobgpd").and_then(|r| r.load)),
                    ms(get("gobgpd").and_then(|r| r.bulk)),
                    ms(get("BIRD (awake)").and_then(|r| r.load)),
                    upd(get("speakerd")),
                    upd(get("gobgpd")),
                );
            }
        }
        d.push('\n');
        if let Some(g) = self.conv.iter().find(|r| r.sender == "gobgpd" && r.bulk_updates.is_some()) {
            let u = g.bulk_updates.unwrap_or(0.0);
            let per_path = u / g.n as f64;
            let _ = writeln!(d, "Counted in this run: with its sessions up, gobgpd sent {u:.0} UPDATE messages per receiver for {} paths ({per_path:.2} per path){}.\n", g.n, if per_path >= 0.99 { ", one UPDATE per path" } else { "" });
        }
        let _ = writeln!(d, "### The sender's part\n\nThe same runs, split on the sender's link: from the first session's Established until the sender's first UPDATE left it, and until its last segment of data did (the rest of the convergence time is the receivers' work after that segment); the bring-up spread is the last session's Established − the first's. The reference sender sends pre-encoded UPDATEs in one write.\n");
        let _ = writeln!(d, "| family | N | receivers | sender | bring-up spread | first UPDATE | last segment | slowest session: Established → all held |");
        let _ = writeln!(d, "|---|---:|---:|---|---:|---:|---:|---:|");
        for r in self.conv.iter().filter(|r| r.err.is_none()) {
            let Some(fam) = r.fam else { continue };
            let _ = writeln!(
                d,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                fam.name(),
                r.n,
                r.k,
                r.sender,
                ms(r.spread),
                ms(r.first_update),
                ms(r.last_sent),
                ms(r.est_to_all)
            );
        }
        d.push('\n');
        let errs: Vec<_> = self
            .conv
            .iter()
            .filter_map(|r| Some(format!("{} {} n={} k={}: {}", r.sender, r.fam?.name(), r.n, r.k, r.err.as_ref()?)))
            .collect();
        if !errs.is_empty() {
            let _ = writeln!(
                d,
                "Failed runs:\n\n{}\n",
                errs.iter().map(|e| format!("- {e}")).collect::<Vec<_>>().join("\n")
            );
        }
        let _ = writeln!(d, "![convergence, IPv4, 1 receiver](bench/convergence-1.svg)\n![convergence, IPv4, {} receivers](bench/convergence-{}.svg)\n", plan.receivers.get(1).unwrap_or(&1), plan.receivers.get(1).unwrap_or(&1));
    }

    fn render_memory(&self, d: &mut String, plan: &Plan) {
        let _ = writeln!(d, "## 3. Memory\n\nThe same runs. \"Steady\": VmRSS once every receiver holds all N. Peaks: VmHWM at the end of each phase, reset (`5` into /proc/PID/clear_refs) at its start, so each is that phase's own: \"down\" the load with sessions down, \"conv\" the convergence, \"up\" the load into established sessions (BIRD has none). speakerd's other ways of loading, each its own phase: \"file\" a speakerd that reads the N announcements from its config file (no peers), from its start until it answers; \"stream\" the N paths through its GoBGP API (`--gobgp-api`, `AddPathStream` of 1000 paths per message, no peers), the peak reset before it; \"{REPEATED_PUSHES}×\" {REPEATED_PUSHES} full `SetAnnouncements` of the unchanged set in a row, sessions up and holding it (what k8s-bridge's resyncs send), the peak reset before them. The ratios compare steady with steady and the highest peak (every phase and way of loading) with the highest peak.\n");
        let _ = writeln!(d, "| family | N | receivers | speakerd steady | speakerd peak down / conv / up | speakerd peak file / stream / {REPEATED_PUSHES}× | gobgpd steady | gobgpd peak down / conv / up | BIRD steady | BIRD peak down / conv | speakerd ÷ gobgpd steady, peak | speakerd ÷ BIRD steady, peak |");
        let _ = writeln!(d, "|---|---:|---:|---:|---|---|---:|---|---:|---|---:|---:|");
        for fam in [Fam::V4, Fam::V6] {
            for (n, k) in self.conv_points(plan, fam) {
                let get = |s: &str| self.conv_row(fam, n, k, s);
                let Some(s) = get("speakerd") else { continue };
                let peaks = |r: Option<&ConvRow>, up: bool| {
                    r.map_or("–".into(), |r| {
                        let mut v = vec![mb(r.peak_load), mb(r.peak_conv)];
                        if up {
                            v.push(mb(r.peak_bulk));
                        }
                        v.join(" / ")
                    })
                };
                let steady = |r: Option<&ConvRow>| r.map(|r| r.rss as f64);
                let peak = |r: Option<&ConvRow>| r.map(|r| r.peak() as f64);
                let (g, b) = (get("gobgpd"), get("BIRD (awake)"));
                let _ = writeln!(
                    d,
                    "| {} | {n} | {k} | {} | {} | {} | {} | {} | {} | {} | {}, {} | {}, {} |",
                    fam.name(),
                    mb(s.rss),
                    peaks(Some(s), true),
                    s.other_loads.map_or("–".into(), |o| format!(
                        "{} / {} / {}",
                        mb(o.file),
                        mb(o.stream),
                        mb(o.repeated)
                    )),
                    mb(g.map_or(0, |r| r.rss)),
                    peaks(g, true),
                    mb(b.map_or(0, |r| r.rss)),
                    peaks(b, false),
                    ratio(steady(Some(s)), steady(g)),
                    ratio(peak(Some(s)), peak(g)),
                    ratio(steady(Some(s)), steady(b)),
                    ratio(peak(Some(s)), peak(b)),
                );
            }
        }
        let _ = writeln!(d, "\n![peak and steady RSS against N, IPv4](bench/rss.svg)\n");
    }

    fn render_latency(&self, d: &mut String) {
        let _ = writeln!(d, "## 4. Announce latency\n\nOne prefix added, then withdrawn, while the background routes are announced: from the call until the receiver holds it (no longer holds it), polled on the receiver's control socket in a tight loop. Each row is one sender and one way of calling it. speakerd and gobgpd are up at the same time, each with its own receiver, and their persistent clients take turns of 11 adds and 11 withdrawals, who goes first alternating from turn to turn, so that the machine's drift falls on both alike (the other rows run one after the other), after one turn each that is not counted; a turn begins once the other sender has used less than 0.5 ms of CPU in 10 ms (both are up at once, and gobgpd's runtime kept both CPUs busy for about 4 ms after some of its turns, which delayed whichever turn came next: `perf sched` showed speakerd's worker woken, then 4.03 ms waiting for a CPU); the two receivers swap senders from one background size to the next, and the CLI and BIRD rows use speakerd's receiver of that size. Every call's request (gRPC message, CLI arguments and command, BIRD's config text) is built before its clock starts. The first pair of a turn comes after at least 20 ms without calls to that sender (how k8s-bridge calls: after idling): its add is shown apart, in the table after this one, and not counted in this one; it has its own target. \"On the wire\": from the call until the UPDATE left the sender, captured on its link (AF_PACKET), which separates the sender's part from the receiver's.\n");
        let _ = writeln!(d, "| sender | call | background | samples | add p50 | add p99 | withdraw p50 | withdraw p99 | all p50 | all p99 | on the wire p50 | on the wire p99 |");
        let _ = writeln!(d, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        for l in &self.lat {
            let all = l.p.all();
            let _ = writeln!(
                d,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |{}",
                l.sender,
                l.method,
                l.background,
                all.len(),
                ms(pct(&l.p.adds, 50.0)),
                ms(pct(&l.p.adds, 99.0)),
                ms(pct(&l.p.dels, 50.0)),
                ms(pct(&l.p.dels, 99.0)),
                ms(pct(&all, 50.0)),
                ms(pct(&all, 99.0)),
                ms(pct(&l.p.wire, 50.0)),
                ms(pct(&l.p.wire, 99.0)),
                l.err.as_ref().map(|e| format!(" failed: {e}")).unwrap_or_default()
            );
        }
        d.push('\n');
        let _ = writeln!(d, "The first add of each turn of the persistent clients, after at least 20 ms without calls to that sender:\n");
        let _ = writeln!(
            d,
            "| sender | background | turns | p50 | max | on the wire p50 | on the wire p99 | on the wire max | turns begun with the other sender busy |"
        );
        let _ = writeln!(d, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for l in self.lat.iter().filter(|l| !l.p.first.is_empty()) {
            let _ = writeln!(
                d,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                l.sender,
                l.background,
                l.p.first.len(),
                ms(pct(&l.p.first, 50.0)),
                ms(l.p.first.iter().max().copied()),
                ms(pct(&l.p.first_wire, 50.0)),
                ms(pct(&l.p.first_wire, 99.0)),
                ms(l.p.first_wire.iter().max().copied()),
                l.p.not_quiet,
            );
        }
        for (bg, f) in &self.lat_floor {
            match f {
                Ok(f) => {
                    let _ = writeln!(
                        d,
                        "| machine's wake floor (no sender: an idle thread woken by a Unix-socket write) | {bg} | {} | – | – | {} | {} | {} | – |",
                        f.len(),
                        ms(pct(f, 50.0)),
                        ms(pct(f, 99.0)),
                        ms(f.iter().max().copied()),
                    );
                }
                Err(e) => {
                    let _ = writeln!(d, "| machine's wake floor | {bg} | failed: {e} | | | | | | |");
                }
            }
        }
        d.push('\n');
        self.render_floor_note(d);
    }

    /// What the wake floor means for the after-idle ratio, with this run's medians.
    fn render_floor_note(&self, d: &mut String) {
        let _ = writeln!(
            d,
            "The machine's wake floor is measured between the turns, under the same quiet rule: a thread of the bench blocked reading a Unix socket for at least 20 ms, woken by a 1-byte write; from just before the write until the reader runs. No gRPC and no BGP are involved: it is what any sender's first call after idle pays before its own work begins. On a virtual machine whose idle CPUs halt, as this one, it is mostly the virtual CPU leaving halt, which the hypervisor decides, not the guest. Both senders pay it once per first call, so it pulls their ratio toward 1: for speakerd's first call to take at most half of gobgpd's, speakerd's own part must be at most half of gobgpd's whole time less the floor. With this run's medians:\n"
        );
        let _ = writeln!(
            d,
            "| background | gobgpd p50 | floor p50 | ≤ 0.5× needs speakerd's own part ≤ | speakerd p50 − floor |"
        );
        let _ = writeln!(d, "|---:|---:|---:|---:|---:|");
        for (bg, _) in &self.lat_floor {
            let first = |s: &str| self.persistent_row(s, *bg).and_then(|l| pct(&l.p.first_wire, 50.0));
            let (Some(g), Some(f), Some(sp)) = (first("gobgpd"), self.floor_p50(*bg), first("speakerd")) else {
                continue;
            };
            let room = (g / 2).checked_sub(f);
            let _ = writeln!(
                d,
                "| {bg} | {} | {} | {} | {} |",
                ms(Some(g)),
                ms(Some(f)),
                room.map_or("none (the floor alone is more than half)".into(), |r| ms(Some(r))),
                ms(Some(sp.saturating_sub(f))),
            );
        }
        d.push('\n');
    }

    /// `sender`'s persistent gRPC client row at background size `bg`.
    fn persistent_row(&self, sender: &str, bg: usize) -> Option<&LatRow> {
        self.lat.iter().find(|l| l.sender == sender && l.method.starts_with("gRPC") && l.background == bg)
    }

    /// The machine's wake floor at background size `bg`, p50.
    fn floor_p50(&self, bg: usize) -> Option<Duration> {
        self.lat_floor.iter().find(|(b, _)| *b == bg).and_then(|(_, f)| pct(f.as_ref().ok()?, 50.0))
    }

    fn render_scale(&self, d: &mut String) {
        let Some(s) = &self.scale else { return };
        let _ = writeln!(d, "## 5. Session scale\n\nOne speakerd, {} eBGP sessions (hold time 9 s, so a keepalive every 3 s) to one BIRD with {} protocols on as many addresses of its loopback (`import none`), then {} prefixes to every session.\n", s.sessions, s.sessions, s.prefixes);
        let _ = writeln!(d, "| | |\n|---|---|");
        let _ = writeln!(d, "| SetPeers → all {} Established at BIRD | {} |", s.sessions, ms(s.establish_all));
        let _ = writeln!(
            d,
            "| speakerd CPU while idle with {} sessions | {} |",
            s.sessions,
            s.idle_cpu_pct.map_or("–".into(), |c| format!("{c:.2} % of one core"))
        );
        let _ = writeln!(
            d,
            "| {} prefixes to all sessions, until BIRD counted {} updates | {} (speakerd CPU {}) |",
            s.prefixes,
            s.sessions * s.prefixes,
            ms(s.distribute),
            s.distribute_cpu.map_or("–".into(), |c| format!("{c:.1} s"))
        );
        let _ = writeln!(d, "| speakerd RSS when BIRD has counted them all | {} |", mb(s.rss));
        let _ = writeln!(
            d,
            "| speakerd RSS at the end, the sessions idle since (30 s in the full run) | {} |",
            mb(s.rss_settled)
        );
        let _ = writeln!(d, "| sessions Established at the end | {} of {} |", s.still_established, s.sessions);
        let _ = writeln!(d, "| hold-timer expiries (both sides' logs) | {} |", s.hold_expiries);
        let _ = writeln!(d, "| sessions dropped (speakerd's counters) | {} |", s.drops);
        if let Some(e) = &s.err {
            let _ = writeln!(d, "| error | {e} |");
        }
        d.push('\n');
    }

    fn render_start(&self, d: &mut String) {
        let _ = writeln!(d, "## 6. Start and restart\n\nProcess start (the spawn) → its first OPEN on the receiver's wire (AF_PACKET capture in the receiver's namespace) and → the receiver reports Established. The receiver BIRD is already listening. Median and maximum over the runs.\n");
        let _ = writeln!(d, "| sender | runs | start → first OPEN (median) | start → Established (median) | start → Established (max) |");
        let _ = writeln!(d, "|---|---:|---:|---:|---:|");
        for s in &self.start {
            let _ = writeln!(
                d,
                "| {} | {} | {} | {} | {} |{}",
                s.sender,
                s.est.len(),
                ms(pct(&s.open, 50.0)),
                ms(pct(&s.est, 50.0)),
                ms(pct(&s.est, 100.0)),
                s.err.as_ref().map(|e| format!(" failed: {e}")).unwrap_or_default()
            );
        }
        if let Some((n, r)) = &self.restart {
            let _ = writeln!(d, "\nspeakerd restart (kill -9, start, peers from its config file, the client pushes its {n} announcements again as soon as the socket answers) → the receiver holds all {n} again: **{}**{}\n", ms(r.as_ref().ok().copied()), r.as_ref().err().map(|e| format!(" failed: {e}")).unwrap_or_default());
        }
    }

    fn render_l2(&self, d: &mut String) {
        if self.l2.is_empty() {
            return;
        }
        let _ = writeln!(d, "## 7. Layer 2 failover\n\nn speakerd nodes (every one the others' gossip seed) and a client on one bridge, the default election (availability first), one IP 192.0.2.100. The group settles (every node sees all alive and names the same owner) before each run.\n");
        let _ = writeln!(d, "**Kill.** The owner is killed (kill -9); measured until the client's capture sees the first gratuitous ARP for the IP from another MAC; the node is started again. With the gossip defaults (probe period {} ms), and at 3 nodes with `--gossip-probe-ms 100` on every node.\n", self.l2_default_probe_ms);
        let _ =
            writeln!(d, "| nodes | probe period | runs | p50 | p99 | min | max |\n|---:|---|---:|---:|---:|---:|---:|");
        let row = |d: &mut String, l: &L2Row, period: String| {
            let _ = writeln!(
                d,
                "| {} | {} | {} | {} | {} | {} | {} |{}",
                l.nodes,
                period,
                l.samples.len(),
                ms(pct(&l.samples, 50.0)),
                ms(pct(&l.samples, 99.0)),
                ms(l.samples.iter().min().copied()),
                ms(l.samples.iter().max().copied()),
                l.err.as_ref().map(|e| format!(" a run failed: {e}")).unwrap_or_default()
            );
        };
        for l in self.l2.iter().filter(|l| l.fault == L2Fault::Kill) {
            row(d, l, l.probe_ms.map_or(format!("{} ms (default)", self.l2_default_probe_ms), |m| format!("{m} ms")));
        }
        let _ = writeln!(d, "\n**Gossip partition.** The owner's gossip is cut (tc drops UDP 7946 both ways; ARP still flows) for 3 s, then healed. Both sides then own the IP; the wire conflict rule (lower MAC wins, the loser probes before it answers again; docs/LAYER2.md) bounds the double answers. The client asks for the IP every 20 ms; the sample is the longest stretch of one run, from the cut until 3 s after the heal, in which two MACs answered (replies of different MACs less than 25 ms apart, plus 25 ms).\n");
        let _ =
            writeln!(d, "| nodes | probe period | runs | p50 | p99 | min | max |\n|---:|---|---:|---:|---:|---:|---:|");
        for l in self.l2.iter().filter(|l| l.fault == L2Fault::Partition) {
            row(d, l, format!("{} ms (default)", self.l2_default_probe_ms));
        }
        d.push('\n');
    }

    fn render_k8s(&self, d: &mut String) {
        if self.k8s.is_empty() {
            return;
        }
        let delay = self.k8s[0].write_delay.as_millis();
        let _ = writeln!(d, "## 8. k8s-bridge at Kubernetes scale

speakerd and k8s-bridge (its default flags: Events and status objects written, 10 and 20 writes/s at most) on one node, the project's fake API server answering every write after {delay} ms (a throttled API server), gobgpd as the router. N LoadBalancer Services with one ready endpoint each are created as fast as the harness can (one Event and one ServiceBGPStatus per Service: a backlog of 2N writes at {delay} ms each); then, while that backlog drains, one EndpointSlice at a time is flipped to not-ready (measured until gobgpd no longer holds the route, polled every 2 ms) and back; then one flip while every write hangs; then writes are fast again and every ServiceBGPStatus must be right.
");
        let _ = writeln!(d, "| N | objects created in | all routes at the router after the last object | not-ready → withdrawn p50 | p99 | max | flips | Event / status writes pending after the flips | flip while writes hang | status right after recovery | k8s-bridge RSS / peak | k8s-bridge CPU | speakerd RSS / peak |\n|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|---|");
        for r in &self.k8s {
            let _ = writeln!(
                d,
                "| {} | {:.1} s | {} | {} | {} | {} | {} | {:.0} / {:.0} | {} | {} | {} / {} | {:.1} s | {} / {} |{}",
                r.n,
                r.create_secs,
                ms(r.routes_after_last),
                ms(pct(&r.flips, 50.0)),
                ms(pct(&r.flips, 99.0)),
                ms(r.flips.iter().max().copied()),
                r.flips.len(),
                r.pending_after_flips.0,
                r.pending_after_flips.1,
                ms(r.hung_flip),
                ms(r.status_converged),
                mb(r.bridge_mem.0),
                mb(r.bridge_mem.1),
                r.bridge_cpu,
                mb(r.speakerd_mem.0),
                mb(r.speakerd_mem.1),
                r.err.as_ref().map(|e| format!(" a run failed: {e}")).unwrap_or_default()
            );
        }
        let _ = writeln!(d, "\nTargets (issue 25): every route within 2 s of the last object; a flip withdrawn within 1 s (p99) while the backlog drains and while writes hang; the status right once writes work again.\n");
    }

    fn render_ctl(&self, d: &mut String) {
        if self.ctl.is_empty() && self.ctl_route.is_none() {
            return;
        }
        let _ = writeln!(d, "## 9. The controller role (k8s-bridge controller)\n\n**Allocation.** `k8s-bridge controller` (its defaults, one replica, leading) and the fake API server; one IPAddressPool of a /16; N LoadBalancer Services without an IP created as fast as the harness can; measured from the first create until every Service shows an IP in `status.loadBalancer.ingress` (polled every 100 ms).\n");
        let _ = writeln!(d, "| N | objects created in | all allocated after the first create | controller RSS / peak | controller CPU |\n|---:|---:|---:|---|---:|");
        for r in &self.ctl {
            let _ = writeln!(
                d,
                "| {} | {:.1} s | {} | {} / {} | {:.1} s |{}",
                r.n,
                r.create_secs,
                ms(r.all_allocated),
                mb(r.mem.0),
                mb(r.mem.1),
                r.cpu,
                r.err.as_ref().map(|e| format!(" a run failed: {e}")).unwrap_or_default()
            );
        }
        if let Some((s, err)) = &self.ctl_route {
            let _ = writeln!(d, "\n**Service created → route at the router.** The controller, speakerd and k8s-bridge on one node, gobgpd as the router; the Service's EndpointSlice exists first; measured from the Service's creation until gobgpd holds its /32 (polled every 2 ms).\n");
            let _ = writeln!(d, "| runs | p50 | p99 | min | max |\n|---:|---:|---:|---:|---:|");
            let _ = writeln!(
                d,
                "| {} | {} | {} | {} | {} |{}",
                s.len(),
                ms(pct(s, 50.0)),
                ms(pct(s, 99.0)),
                ms(s.iter().min().copied()),
                ms(s.iter().max().copied()),
                err.as_ref().map(|e| format!(" a run failed: {e}")).unwrap_or_default()
            );
        }
        d.push('\n');
    }

    /// (file name, SVG) of each plot.
    pub fn plots(&self) -> Vec<(String, String)> {
        let mut out = vec![];
        let mut ks: Vec<usize> = self.conv.iter().map(|r| r.k).collect();
        ks.sort();
        ks.dedup();
        for k in ks.iter().take(2) {
            let series = SENDERS
                .iter()
                .map(|s| {
                    (
                        s.to_string(),
                        self.conv
                            .iter()
                            .filter(|r| r.fam == Some(Fam::V4) && r.k == *k && r.sender == *s && r.err.is_none())
                            .filter_map(|r| Some((r.n as f64, secs(r.est_to_all)?)))
                            .collect(),
                    )
                })
                .collect();
            out.push((
                format!("convergence-{k}.svg"),
                plot::chart(&format!("Convergence, IPv4 /32, {k} receiver(s)"), "prefixes (N)", "seconds", series),
            ));
        }
        let mut series = vec![];
        let k = ks.first().copied().unwrap_or(1);
        for s in ["speakerd", "gobgpd", "BIRD (awake)"] {
            for (what, f) in [("peak", ConvRow::peak as fn(&ConvRow) -> u64), ("steady", |r: &ConvRow| r.rss)] {
                series.push((
                    format!("{s}, {what}"),
                    self.conv
                        .iter()
                        .filter(|r| r.fam == Some(Fam::V4) && r.k == k && r.sender == s && r.err.is_none())
                        .map(|r| (r.n as f64, f(r) as f64 / 1e6))
                        .collect(),
                ));
            }
        }
        out.push((
            "rss.svg".into(),
            plot::chart(&format!("Sender peak and steady RSS, IPv4 /32, {k} receivers"), "prefixes (N)", "MB", series),
        ));
        out.extend(self.k8s_cluster_plots());
        out
    }

    /// Every workload of the plan produced real samples; panics with what is missing.
    pub fn check_complete(&self, plan: &Plan) {
        let mut missing = vec![];
        for r in &self.conv {
            if let Some(e) = &r.err {
                missing.push(format!("convergence {} {:?} n={} k={}: {e}", r.sender, r.fam, r.n, r.k));
            }
        }
        for l in &self.lat {
            let ops = if l.method.starts_with("gRPC") { plan.latency_turns * (LAT_TURN - 1) } else { plan.latency_ops };
            if l.p.adds.len() != ops || l.p.dels.len() != ops {
                missing.push(format!("latency {} {}: {:?}", l.sender, l.method, l.err));
            }
        }
        for s in &self.start {
            if s.est.len() != plan.start_runs {
                missing.push(format!("start {}: {:?}", s.sender, s.err));
            }
        }
        if let Some((_, Err(e))) = &self.restart {
            missing.push(format!("restart: {e}"));
        }
        if let Some(s) = &self.scale {
            if s.err.is_some() || s.still_established != s.sessions || s.drops != 0 || s.hold_expiries != 0 {
                missing.push(format!(
                    "scale: {:?}, {} of {} established, {} drops, {} expiries",
                    s.err, s.still_established, s.sessions, s.drops, s.hold_expiries
                ));
            }
        }
        for l in &self.l2 {
            if l.samples.len() != plan.l2_runs {
                missing.push(format!("l2 {:?} at {} nodes (probe {:?} ms): {:?}", l.fault, l.nodes, l.probe_ms, l.err));
            }
        }
        for r in &self.ctl {
            if r.err.is_some() {
                missing.push(format!("controller at {}: {:?}", r.n, r.err));
            }
        }
        if let Some((s, err)) = &self.ctl_route {
            if err.is_some() || s.len() != plan.ctl_route_runs {
                missing.push(format!("controller create → route: {err:?}"));
            }
        }
        for r in &self.k8s {
            if r.err.is_some() || r.flips.len() != plan.k8s_flips {
                missing.push(format!("k8s-bridge at {}: {:?}", r.n, r.err));
            }
        }
        missing.extend(self.k8s_cluster_missing(plan));
        assert!(missing.is_empty(), "benchmark runs failed:\n{}", missing.join("\n"));
    }
}

/// A target's last cell: never "met" when a row it depends on failed (`failed` names them).
fn verdict(ok: Option<bool>, failed: &[String]) -> String {
    if !failed.is_empty() {
        return format!("**not evaluated, failed run:** {}", failed.join("; ").replace('|', "/"));
    }
    match ok {
        Some(true) => "met".into(),
        Some(false) => "**missed**".into(),
        None => "not measured".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(sender: &'static str, ms: u64, failed: bool) -> ConvRow {
        ConvRow {
            fam: Some(Fam::V4),
            n: 300,
            k: 1,
            sender,
            runs: 1,
            est_to_all: Some(Duration::from_millis(ms)),
            err: failed.then(|| "boom".to_string()),
            ..Default::default()
        }
    }

    #[test]
    fn a_failed_row_never_makes_its_target_met() {
        // (case, speakerd fails, reference fails, gobgpd fails, reference target verdict, gobgpd target verdict)
        let cases = [
            ("all ran", false, false, false, "| met |", "| met |"),
            ("reference failed", false, true, false, "not evaluated", "| met |"),
            ("gobgpd failed", false, false, true, "| met |", "not evaluated"),
            ("speakerd failed", true, false, false, "not evaluated", "not evaluated"),
        ];
        for (case, sp, rf, go, want_ref, want_go) in cases {
            let plan = Plan::preset(false, vec![]);
            let mut res = Results::new(&plan);
            res.conv = vec![conv("speakerd", 1, sp), conv(REFERENCE, 1, rf), conv("gobgpd", 10, go)];
            let mut d = String::new();
            res.render_targets(&mut d, &plan);
            let find = |what: &str| d.lines().find(|l| l.contains(what)).unwrap_or_default().to_string();
            let (r, g) = (find("the reference sender"), find("0.2× gobgpd"));
            assert!(r.contains(want_ref), "{case}: {r}");
            assert!(g.contains(want_go), "{case}: {g}");
            if sp || rf {
                assert!(r.contains("boom"), "{case}: the failed row is named: {r}");
            }
        }
    }

    #[test]
    fn the_wake_floor_is_shown_and_sets_what_is_left_for_speakerd() {
        let first = |sender: &'static str, us: u64| LatRow {
            sender,
            method: "gRPC, persistent client",
            background: 100,
            p: Probes { first_wire: vec![Duration::from_micros(us); 10], ..Default::default() },
            err: None,
        };
        let plan = Plan::preset(false, vec![]);
        let mut res = Results::new(&plan);
        res.lat = vec![first("speakerd", 250), first("gobgpd", 340)];
        let floor = |us: u64| vec![(100, Ok(vec![Duration::from_micros(us); 10]))];
        // a floor of 0.15 ms leaves speakerd 0.17 − 0.15 = 0.02 ms of its own; it spends 0.10
        res.lat_floor = floor(150);
        let mut d = String::new();
        res.render_floor_note(&mut d);
        assert!(d.contains("| 100 | 0.34 ms | 0.15 ms | 0.02 ms | 0.10 ms |"), "{d}");
        let mut t = String::new();
        res.render_targets(&mut t, &plan);
        let row = t.lines().find(|l| l.contains("after ≥ 20 ms idle")).unwrap_or_default();
        assert!(
            row.contains("p50 0.74×") && row.contains("wake floor p50 0.15 ms") && row.contains("**missed**"),
            "{row}"
        );
        // a floor above half of gobgpd's time leaves nothing
        res.lat_floor = floor(200);
        let mut d = String::new();
        res.render_floor_note(&mut d);
        assert!(d.contains("| 0.20 ms | none"), "{d}");
    }

    #[test]
    fn verdicts() {
        let failed = vec!["convergence gobgpd: boom | x".to_string()];
        let cases: [(Option<bool>, &[String], &str); 5] = [
            (Some(true), &[], "met"),
            (Some(false), &[], "**missed**"),
            (None, &[], "not measured"),
            (Some(true), &failed, "**not evaluated, failed run:** convergence gobgpd: boom / x"),
            (None, &failed, "**not evaluated, failed run:** convergence gobgpd: boom / x"),
        ];
        for (ok, f, want) in cases {
            assert_eq!(verdict(ok, f), want, "{ok:?} {f:?}");
        }
    }
}

const METHOD: &str = r#"## Method

What these figures led to, what was changed and what is left: docs/DESIGN.md, section "Memory and speed
of the announcement path".

* **Topology.** One namespace for the sender (192.0.2.1, 2001:db8::1) and one per receiver, all on one
  Linux bridge. Each receiver is its own BIRD 2 process with two passive sessions, `s4` (IPv4 unicast over
  IPv4) and `s6` (IPv6 unicast over IPv6), `import all`. Senders take turns: a fresh process per run,
  killed after it, and the harness waits until every receiver is idle and empty before the next run.
* **Each sender in its best documented configuration.** gobgpd gets its peers with `AddPeer` and the
  timers the project's end-to-end tests give it (connect-retry 1 s, idle-hold-time-after-reset 1 s;
  hold time and keepalive at GoBGP's defaults); BIRD gets `connect delay time 1`; speakerd a connect time
  of 1 s. None of these waits is measured: the clock below starts at each session's Established.
* **The clock (convergence).** Per session. A capture on the sender's link timestamps, for each
  receiver, the first KEEPALIVE the sender sends it and the first it receives from it; the later of the
  two completes that session's handshake (its Established). The harness keeps one connection to each
  receiver's control socket and asks `show protocols all s4` about every 0.5 ms (`Routes: N imported`),
  each receiver in the same loop, and notes when each one first holds all N. A row's convergence is the
  largest, over the receivers, of (that receiver holds N − its session's Established): a sender that
  brings its sessions up late is not charged for the wait, and one whose sessions come up together gains
  nothing. The bring-up spread (last Established − first) is reported in its own column. The same for
  every sender. Polling keeps the receivers' main loops awake, the same for every sender. The capture is
  stopped once the row has converged, before anything else is measured.
* **Loads.** Sessions down: before any peer exists, from the start of the load until the call returned
  and the sender holds all N (speakerd: `SetAnnouncements` returns once it holds them; gobgpd:
  `AddPathStream` with 1000 paths per message, then `GetTable` polled until it counts N; BIRD: from its
  start until its static protocol holds N). Sessions up: sessions established and empty (the previous
  routes withdrawn and gone at every receiver), one API load, from its start until every receiver holds
  all N, with no capture running. Requests are built before their clock starts. The UPDATE messages of
  a sessions-up load are counted on a second, untimed load of the same routes at the smallest N (a
  capture on the sender's link that counts BGP message headers of type UPDATE, across segment
  boundaries); the count is printed with the table, so what is said about how a sender packs its
  UPDATEs is what this run saw.
* **The reference sender** is the harness's own minimal speaker, not a limit: OPEN, KEEPALIVE, then
  every UPDATE pre-encoded (same attributes as the others send: ORIGIN, AS_PATH, NEXT_HOP or
  MP_REACH_NLRI; as many prefixes per 4096-byte message as fit) and written with one `write_all` per
  session, one thread per receiver. What remains is the receivers' time to read and import. It and
  speakerd run 31 times per row of up to 100,000 routes and 11 times per row of 1,000,000 (full run),
  alternately; the median is shown with the fastest and slowest run beside it. With 5 runs per row,
  the median ratio of one row moved between 0.90× and 1.56× from one run of the bench to the next.
* **BIRD as a sender** has its routes as static blackhole routes and its sessions `disabled` until they
  are loaded; "default" leaves it alone, "awake" asks `show status` on its control socket every
  0.5 ms, the receivers' poll rate (every 50 ms before issue 21), which keeps its main loop from
  sleeping after the session comes up.
* **gobgpd** gets its paths over its gRPC API (`AddPathStream`, 1000 paths per message) before its
  peers are added; `gobgp mrt inject` is not used (it loses prefixes).
* **Latency** clients: speakerd's `Announce`/`Withdraw` over its Unix socket on a kept connection, and
  `speakerctl announce add|withdraw`; gobgpd's `AddPath`/`DeletePath` on a kept connection, and
  `gobgp global rib add|del`; both CLIs are started the same way, through `nsenter --net` into the
  sender's namespace (speakerctl needs only the socket, a file), by `posix_spawn`: no fork of the
  harness, whose page tables grow over a full run (a fork of its 2.4 GB took 42 ms); BIRD has no call to add one route, so its config is rewritten with one more
  static protocol and re-read with `configure` on its control socket. Every request (message, CLI
  arguments and command, config text) is built before its clock starts. speakerd's and gobgpd's
  persistent clients take turns of 11 pairs, who goes first alternating, each turn's first call after
  at least 20 ms without calls to that sender (counted apart, with its own target: k8s-bridge calls
  after idling) and once the other sender is quiet (< 0.5 ms of CPU, all threads, in 10 ms; at most
  2 s, counted in the table); the receivers swap senders from one background size to the next.
* **Memory**: VmRSS once every receiver holds N ("steady"), and VmHWM at the end of each phase, reset
  by writing `5` to /proc/PID/clear_refs at its start (so each phase's peak is its own): the load with
  sessions down, the convergence, the load with sessions up. Targets compare peak with peak (the highest
  of the phases) and steady with steady.
* **Targets**: a target whose rows include a failed run is marked "not evaluated" with the failed row
  named, never "met".
* **Layer 2**: gossip with the defaults, then with `--gossip-probe-ms 100`; the clock starts just before the SIGKILL and stops at the
  receive time of the first matching frame in the client's AF_PACKET capture.
"#;

mod plot {
    //! A small SVG line chart with logarithmic axes.
    use std::fmt::Write as _;

    const COLORS: [&str; 8] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"];

    pub fn chart(title: &str, xlabel: &str, ylabel: &str, series: Vec<(String, Vec<(f64, f64)>)>) -> String {
        let (w, h, l, r, t, b) = (720.0, 420.0, 70.0, 190.0, 40.0, 50.0);
        let pts: Vec<(f64, f64)> =
            series.iter().flat_map(|s| s.1.iter().copied()).filter(|p| p.0 > 0.0 && p.1 > 0.0).collect();
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (x, y) in &pts {
            x0 = x0.min(x.log10());
            x1 = x1.max(x.log10());
            y0 = y0.min(y.log10());
            y1 = y1.max(y.log10());
        }
        if pts.is_empty() {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let (x0, x1, y0, y1) =
            (x0.floor(), x1.ceil().max(x0.floor() + 1.0), y0.floor(), y1.ceil().max(y0.floor() + 1.0));
        let px = |x: f64| l + (x.log10() - x0) / (x1 - x0) * (w - l - r);
        let py = |y: f64| h - b - (y.log10() - y0) / (y1 - y0) * (h - t - b);
        let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">{title}</text>",
            (w - r + l) / 2.0
        );
        for e in x0 as i32..=x1 as i32 {
            let x = px(10f64.powi(e));
            let _ = writeln!(s, "<line x1=\"{x}\" y1=\"{t}\" x2=\"{x}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">1e{e}</text>", h - b, h - b + 16.0);
        }
        for e in y0 as i32..=y1 as i32 {
            let y = py(10f64.powi(e));
            let _ = writeln!(s, "<line x1=\"{l}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">1e{e}</text>", w - r, l - 6.0, y + 4.0);
        }
        let _ =
            writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xlabel}</text>", (w - r + l) / 2.0, h - 12.0);
        let _ = writeln!(
            s,
            "<text x=\"16\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {})\">{ylabel} (log)</text>",
            (h - b + t) / 2.0,
            (h - b + t) / 2.0
        );
        for (i, (name, p)) in series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            let p: Vec<_> = p.iter().filter(|p| p.0 > 0.0 && p.1 > 0.0).collect();
            let path: Vec<String> = p.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
            if !path.is_empty() {
                let _ = writeln!(
                    s,
                    "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
                    path.join(" ")
                );
            }
            for (x, y) in &p {
                let _ = writeln!(s, "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>", px(*x), py(*y));
            }
            let ly = t + 10.0 + i as f64 * 18.0;
            let _ = writeln!(s, "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{}\">{name}</text>", w - r + 12.0, ly - 10.0, w - r + 30.0, ly);
        }
        s + "</svg>\n"
    }
}
