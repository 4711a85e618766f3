//! The workloads of docs/BENCHMARKS.md, each sender in turn against the same receivers.

use super::*;
use crate::senders::*;
use crate::wire::{self, Replay, Sniffer};
use speaker_api::gobgp::apipb;
use speaker_api::v1::{AnnounceRequest, Announcement, PeerConfig, WithdrawRequest};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------------------
// 1–3. Convergence, the reference sender, memory

pub fn convergence(ctx: &Ctx, rcv: &mut [Receiver], res: &mut Results) {
    let max_k = *ctx.plan.receivers.iter().max().unwrap();
    for fam in [Fam::V4, Fam::V6] {
        for &n in &ctx.plan.sizes {
            let prefixes = fam.prefixes(n);
            // the UPDATE messages of a sessions-up load are counted at the plan's first size only
            let count_updates = n == ctx.plan.sizes[0];
            for &k in &ctx.plan.receivers {
                if k == max_k && n > ctx.plan.max_n_widest && k > 1 {
                    continue;
                }
                // for working on one sender: BENCH_SENDERS=speakerd (the reference sender always runs)
                let senders: Vec<&'static str> = SENDERS
                    .into_iter()
                    .filter(|s| {
                        std::env::var("BENCH_SENDERS")
                            .map_or(true, |v| *s == REFERENCE || v.split(',').any(|x| x == *s))
                    })
                    .collect();
                // The reference sender and speakerd take milliseconds per row, where one run's noise is of
                // the same size: their rows are the median of `Plan::conv_runs` runs. The runs alternate
                // (reference, speakerd, reference, ...) so that a drift of the machine or of the receivers
                // weighs on both alike.
                let repeat = ctx.plan.conv_runs(n);
                let runs_of = |s: &str| if matches!(s, REFERENCE | "speakerd") { repeat } else { 1 };
                let mut rows: Vec<Vec<ConvRow>> = senders.iter().map(|_| Vec::new()).collect();
                for run in 0..repeat {
                    for (si, &sender) in senders.iter().enumerate() {
                        let runs = runs_of(sender);
                        if run >= runs {
                            continue;
                        }
                        eprintln!("bench: convergence {} n={n} k={k} {sender} (run {} of {runs})", fam.name(), run + 1);
                        let mut row = ConvRow { fam: Some(fam), n, k, sender, runs, ..Default::default() };
                        let count = count_updates && run == 0;
                        let r = match sender {
                            REFERENCE => conv_reference(ctx, &mut rcv[..k], fam, &prefixes, &mut row),
                            // the other ways of loading are measured in the first run of a row only
                            "speakerd" => conv_speakerd(ctx, &mut rcv[..k], fam, &prefixes, count, run == 0, &mut row),
                            "gobgpd" => conv_gobgpd(ctx, &mut rcv[..k], fam, &prefixes, count, &mut row),
                            _ => conv_bird(ctx, &mut rcv[..k], fam, &prefixes, sender.contains("awake"), &mut row),
                        };
                        match r {
                            Err(e) => {
                                eprintln!("bench: {sender} failed: {e}");
                                row.err = Some(e);
                            }
                            Ok(()) => eprintln!(
                                "bench:   first UPDATE {:?}, last segment {:?}, slowest session held all {:?} after its Established, bring-up spread {:?}",
                                row.first_update, row.last_sent, row.est_to_all, row.spread
                            ),
                        }
                        if let Err(e) = wait_idle(&mut rcv[..k], fam.proto()) {
                            panic!("receivers did not go idle after {sender}: {e}");
                        }
                        rows[si].push(row);
                    }
                }
                for mut rows in rows {
                    let times: Vec<Duration> =
                        rows.iter().filter(|r| r.err.is_none()).filter_map(|r| r.est_to_all).collect();
                    let counted = rows.iter().find_map(|r| r.bulk_updates);
                    let other_loads = rows.iter().find_map(|r| r.other_loads);
                    // a failed run counts as the slowest, and the row keeps its error
                    rows.sort_by_key(|r| r.est_to_all.filter(|_| r.err.is_none()).unwrap_or(Duration::MAX));
                    let failed = rows.iter().find_map(|r| r.err.clone());
                    let mut row = rows.swap_remove(rows.len() / 2);
                    row.run_times = times;
                    row.bulk_updates = row.bulk_updates.or(counted);
                    row.other_loads = row.other_loads.or(other_loads);
                    if row.err.is_none() {
                        row.err = failed.map(|e| format!("one of its runs failed: {e}"));
                    }
                    res.conv.push(row);
                }
            }
        }
    }
}

fn addrs(rcv: &[Receiver], fam: Fam) -> Vec<IpAddr> {
    rcv.iter()
        .map(|r| match fam {
            Fam::V4 => IpAddr::V4(r.host.v4),
            Fam::V6 => IpAddr::V6(r.host.v6),
        })
        .collect()
}

/// When each session came up, from the wire: a capture on the sender's link takes, per receiver, the
/// first KEEPALIVE the sender sends to it and the first it receives from it; the later of the two
/// completes that session's handshake (RFC 4271 §8.2.2: KEEPALIVE received in OpenConfirm). The same
/// clock for every sender, independent of how quickly a receiver's control socket answers while it is
/// busy importing, and of when the sender chose to connect. The same capture (one thread) splits the
/// sender's part from the receivers': its first UPDATE and its last segment of data. It is dropped
/// (the capture stops) before anything else is measured.
struct EstClock {
    sniffer: Sniffer,
    sessions: usize,
}

const FIRST_UPDATE: usize = 0;
const DATA: usize = 1;
/// Matchers 2 + 2i and 3 + 2i: KEEPALIVE sent to receiver i, received from it.
const PER_SESSION: usize = 2;

impl EstClock {
    fn start(ctx: &Ctx, fam: Fam, remotes: &[IpAddr]) -> EstClock {
        let me = if fam == Fam::V4 { IpAddr::V4(SND_V4) } else { IpAddr::V6(SND_V6) };
        let mut m = vec![wire::is_bgp_update(me, None), wire::is_tcp_data_from(me)];
        for r in remotes {
            m.push(wire::is_bgp_keepalive_between(me, *r));
            m.push(wire::is_bgp_keepalive_between(*r, me));
        }
        EstClock { sniffer: Sniffer::start_many(ctx.snd.name(), "eth0", m), sessions: remotes.len() }
    }

    /// Each session's Established, in receiver order.
    fn established(&self) -> Result<Vec<Instant>, String> {
        let s = Duration::from_secs(5);
        (0..self.sessions)
            .map(|i| {
                let base = PER_SESSION + 2 * i;
                match (self.sniffer.first_of(base, s), self.sniffer.first_of(base + 1, s)) {
                    (Some(a), Some(b)) => Ok(a.max(b)),
                    (a, b) => Err(format!(
                        "session {i}: KEEPALIVE not captured (sent: {}, received: {})",
                        a.is_some(),
                        b.is_some()
                    )),
                }
            })
            .collect()
    }

    /// Once converged (`done`: when each receiver held all N): the slowest session's Established → its
    /// receiver holds all, the bring-up spread, and the sender's part (first Established → its first
    /// UPDATE, → its last segment). Call before the sender sends anything else; drops the capture.
    fn converged(self, done: &[Instant], row: &mut ConvRow) -> Result<(), String> {
        let est = self.established()?;
        let q = Duration::from_millis(100);
        row.est_to_all = est.iter().zip(done).map(|(e, d)| d.saturating_duration_since(*e)).max();
        let (first, last) = (*est.iter().min().unwrap(), *est.iter().max().unwrap());
        row.spread = Some(last - first);
        row.first_update = self.sniffer.first_of(FIRST_UPDATE, q).map(|t| t.saturating_duration_since(first));
        row.last_sent = self.sniffer.last_of(DATA, q).map(|t| t.saturating_duration_since(first));
        let drops = self.sniffer.drops();
        if drops > 0 {
            eprintln!("bench:   the capture dropped {drops} frames: no last segment for this run");
            row.last_sent = None;
        }
        Ok(())
    }
}

/// Counts the UPDATE messages the sender sends from `start` until `stop` (a capture on its link).
struct UpdateCounter {
    sniffer: Sniffer,
    count: Arc<std::sync::atomic::AtomicU64>,
}

impl UpdateCounter {
    fn start(ctx: &Ctx, fam: Fam) -> UpdateCounter {
        let me = if fam == Fam::V4 { IpAddr::V4(SND_V4) } else { IpAddr::V6(SND_V6) };
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sniffer = Sniffer::start_many(ctx.snd.name(), "eth0", vec![wire::count_bgp_updates(me, count.clone())]);
        UpdateCounter { sniffer, count }
    }

    /// UPDATE messages per receiver, after a quiet 200 ms; None when the capture dropped frames.
    fn stop(self, receivers: usize) -> Option<f64> {
        std::thread::sleep(Duration::from_millis(200));
        let drops = self.sniffer.drops();
        drop(self.sniffer);
        (drops == 0).then(|| self.count.load(Ordering::Relaxed) as f64 / receivers as f64)
    }
}

/// The VmHWM of `pid` (the peak since the last [`reset_peak`]).
fn peak(pid: u32) -> u64 {
    rss(pid).1
}

fn conv_reference(
    ctx: &Ctx,
    rcv: &mut [Receiver],
    fam: Fam,
    prefixes: &[IpAddr],
    row: &mut ConvRow,
) -> Result<(), String> {
    let updates = Arc::new(wire::updates(prefixes, SND_ASN, SND_V4, SND_V6));
    let stop = Arc::new(AtomicBool::new(false));
    let remotes = addrs(rcv, fam);
    let clock = EstClock::start(ctx, fam, &remotes);
    let local = if fam == Fam::V4 { IpAddr::V4(SND_V4) } else { IpAddr::V6(SND_V6) };
    let threads: Vec<_> = remotes
        .into_iter()
        .map(|remote| {
            let (u, s, ns) = (updates.clone(), stop.clone(), ctx.snd.name().to_string());
            std::thread::spawn(move || Replay::start(&ns, local, remote, SND_ASN, u, s))
        })
        .collect();
    let r = wait_converged(rcv, fam.proto(), prefixes.len() as u64, CONVERGE);
    stop.store(true, Ordering::Relaxed);
    let replays: Vec<_> = threads.into_iter().map(|t| t.join().expect("replay thread")).collect();
    for rp in &replays {
        rp.as_ref().map_err(|e| e.to_string())?;
    }
    let (_, done) = r?;
    clock.converged(&done, row)?;
    drop(replays);
    Ok(())
}

/// Times `load` (sessions down or up): from its start until the call returned and `holds` says yes
/// (polled every 0.5 ms, for at most [`CONVERGE`]).
fn timed_load(
    mut load: impl FnMut() -> Result<(), String>,
    mut holds: impl FnMut() -> Result<bool, String>,
) -> Result<Duration, String> {
    let t0 = Instant::now();
    load()?;
    while !holds()? {
        if t0.elapsed() > CONVERGE {
            return Err("the sender did not hold all N".into());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    Ok(t0.elapsed())
}

/// Full pushes of one unchanged set in a row, as k8s-bridge's resyncs and reconnects send them.
pub const REPEATED_PUSHES: usize = 100;

/// speakerd's GoBGP API port in the loading phases ([`other_loads`]).
const SPEAKERD_GOBGP_PORT: u16 = 50152;

#[allow(clippy::too_many_arguments)]
fn conv_speakerd(
    ctx: &Ctx,
    rcv: &mut [Receiver],
    fam: Fam,
    prefixes: &[IpAddr],
    count: bool,
    other: bool,
    row: &mut ConvRow,
) -> Result<(), String> {
    let n = prefixes.len() as u64;
    let sp = start_speakerd(ctx.snd);
    let mut c = speakerd_client(ctx.rt, &sp);
    let all = announcements(prefixes, fam.host_len());
    // sessions down: SetAnnouncements returns once speakerd holds the set
    let mut a = Some(all.clone());
    reset_peak(sp.pid())?;
    row.load =
        Some(timed_load(|| set_announcements(ctx.rt, &mut c, "bench", a.take().unwrap_or_default()), || Ok(true))?);
    row.peak_load = peak(sp.pid());
    let remotes = addrs(rcv, fam);
    reset_peak(sp.pid())?;
    let clock = EstClock::start(ctx, fam, &remotes);
    set_peers(ctx.rt, &mut c, remotes.into_iter().map(|a| peer_config(a, None)).collect())?;
    let (_, done) = wait_converged(rcv, fam.proto(), n, CONVERGE)?;
    clock.converged(&done, row)?;
    (row.rss, row.peak_conv) = rss(sp.pid());
    // sessions up and empty: one bulk API load, no capture running
    set_announcements(ctx.rt, &mut c, "bench", vec![])?;
    wait_count(rcv, fam.proto(), 0, CONVERGE)?;
    reset_peak(sp.pid())?;
    let a = all.clone();
    let t0 = Instant::now();
    set_announcements(ctx.rt, &mut c, "bench", a)?;
    let done = wait_count(rcv, fam.proto(), n, CONVERGE)?;
    row.bulk = Some(last(&done) - t0);
    row.peak_bulk = peak(sp.pid());
    if count {
        // the same load again, untimed, its UPDATE messages counted
        set_announcements(ctx.rt, &mut c, "bench", vec![])?;
        wait_count(rcv, fam.proto(), 0, CONVERGE)?;
        let counter = UpdateCounter::start(ctx, fam);
        set_announcements(ctx.rt, &mut c, "bench", all.clone())?;
        wait_count(rcv, fam.proto(), n, CONVERGE)?;
        row.bulk_updates = counter.stop(rcv.len());
    }
    if other {
        // sessions up and holding all N: the same set pushed again and again, which changes nothing
        let mut pushes: Vec<Vec<Announcement>> = (0..REPEATED_PUSHES).map(|_| all.clone()).collect();
        reset_peak(sp.pid())?;
        while let Some(a) = pushes.pop() {
            set_announcements(ctx.rt, &mut c, "bench", a)?;
        }
        let repeated = peak(sp.pid());
        wait_count(rcv, fam.proto(), n, CONVERGE)?;
        drop(c);
        drop(sp);
        let (file, stream) = other_loads(ctx, fam, prefixes)?;
        row.other_loads = Some(OtherLoads { file, stream, repeated });
    }
    Ok(())
}

/// The peaks of the loads that need a speakerd of their own (sessions down): the whole life of one
/// that reads the N announcements from its config file until it answers, and an AddPathStream of the N
/// paths through the GoBGP API in messages of 1000 (as gobgpd gets them), the peak reset before it.
/// Returns (config file, AddPathStream).
fn other_loads(ctx: &Ctx, fam: Fam, prefixes: &[IpAddr]) -> Result<(u64, u64), String> {
    let mut conf = String::with_capacity(prefixes.len() * 48);
    for p in prefixes {
        let _ = writeln!(conf, "[[announcements]]\nprefix = \"{p}/{}\"", fam.host_len());
    }
    let log = std::env::var("BENCH_SPEAKERD_LOG").unwrap_or_else(|_| "warn".into());
    let builder =
        || Speakerd::builder(ctx.snd).local_asn(SND_ASN).router_id(SND_V4).no_bgp_listen().env("RUST_LOG", &log);
    // the config file is read and applied before the API answers
    let sp = builder().config(&conf).start();
    drop(conf);
    let file = peak(sp.pid());
    drop(sp);
    let port = SPEAKERD_GOBGP_PORT.to_string();
    let sp = builder().arg("--gobgp-api").arg(&format!("127.0.0.1:{port}")).start();
    let mut c = gobgp_client(ctx.rt, ctx.snd.name(), SPEAKERD_GOBGP_PORT);
    let paths: Vec<_> = prefixes.iter().map(|p| gobgp_path(*p)).collect();
    let reqs = GobgpSender::stream_requests(&paths, 1000);
    drop(paths);
    reset_peak(sp.pid())?;
    ctx.rt.block_on(c.add_path_stream(tokio_stream::iter(reqs))).map_err(|e| format!("AddPathStream: {e}"))?;
    let stream = peak(sp.pid());
    let held = ctx
        .rt
        .block_on(c.get_table(apipb::GetTableRequest {
            table_type: apipb::TableType::Global as i32,
            family: Some(apipb::Family { afi: if fam == Fam::V4 { 1 } else { 2 }, safi: 1 }),
            ..Default::default()
        }))
        .map_err(|e| format!("GetTable: {e}"))?
        .into_inner()
        .num_destination;
    if held != prefixes.len() as u64 {
        return Err(format!("after AddPathStream speakerd holds {held} paths, want {}", prefixes.len()));
    }
    Ok((file, stream))
}

fn conv_gobgpd(
    ctx: &Ctx,
    rcv: &mut [Receiver],
    fam: Fam,
    prefixes: &[IpAddr],
    count: bool,
    row: &mut ConvRow,
) -> Result<(), String> {
    let n = prefixes.len() as u64;
    let g = std::cell::RefCell::new(GobgpSender::start(ctx, &[]));
    let pid = g.borrow().pid();
    let paths: Vec<_> = prefixes.iter().map(|p| gobgp_path(*p)).collect();
    let stream = || GobgpSender::stream_requests(&paths, 1000);
    // sessions down: AddPathStream, then until GetTable counts all N destinations
    let mut reqs = Some(stream());
    reset_peak(pid)?;
    row.load = Some(timed_load(
        || g.borrow_mut().add_path_stream(ctx.rt, reqs.take().unwrap_or_default()),
        || Ok(g.borrow_mut().table_count(ctx.rt, fam)? == n),
    )?);
    row.peak_load = peak(pid);
    let remotes = addrs(rcv, fam);
    reset_peak(pid)?;
    let clock = EstClock::start(ctx, fam, &remotes);
    g.borrow_mut().add_peers(ctx.rt, &remotes)?;
    let (_, done) = wait_converged(rcv, fam.proto(), n, CONVERGE)?;
    clock.converged(&done, row)?;
    (row.rss, row.peak_conv) = rss(pid);
    let mut g = g.into_inner();
    // sessions up and empty: one bulk API load, no capture running
    g.delete_all(ctx.rt, fam)?;
    wait_count(rcv, fam.proto(), 0, CONVERGE)?;
    let reqs = stream();
    reset_peak(pid)?;
    let t0 = Instant::now();
    g.add_path_stream(ctx.rt, reqs)?;
    let done = wait_count(rcv, fam.proto(), n, CONVERGE)?;
    row.bulk = Some(last(&done) - t0);
    row.peak_bulk = peak(pid);
    if count {
        g.delete_all(ctx.rt, fam)?;
        wait_count(rcv, fam.proto(), 0, CONVERGE)?;
        let counter = UpdateCounter::start(ctx, fam);
        g.add_path_stream(ctx.rt, stream())?;
        wait_count(rcv, fam.proto(), n, CONVERGE)?;
        row.bulk_updates = counter.stop(rcv.len());
    }
    Ok(())
}

fn conv_bird(
    ctx: &Ctx,
    rcv: &mut [Receiver],
    fam: Fam,
    prefixes: &[IpAddr],
    awake: bool,
    row: &mut ConvRow,
) -> Result<(), String> {
    let neighbors = addrs(rcv, fam);
    // sessions down: from BIRD's start until its static protocol holds all N (BIRD reads its routes
    // from its config; there is no API load). `connect delay time 1` only shortens the wait before
    // the first connect; convergence is timed from each session's Established.
    let t0 = Instant::now();
    let mut b = BirdSender::start(ctx.snd, fam, prefixes, &neighbors, false, Some(1));
    try_wait_until(CONVERGE, || match b.ctl.imported("st") {
        Ok(n) if n == prefixes.len() as u64 => Ok(()),
        Ok(n) => Err(format!("static routes loaded: {n}")),
        Err(e) => Err(e.to_string()),
    })?;
    row.load = Some(t0.elapsed());
    row.peak_load = peak(b.pid());
    if awake {
        b.keep_awake();
    }
    reset_peak(b.pid())?;
    let clock = EstClock::start(ctx, fam, &neighbors);
    for i in 0..neighbors.len() {
        b.ctl.cmd(&format!("enable n{i}")).map_err(|e| e.to_string())?;
    }
    let (_, done) = wait_converged(rcv, fam.proto(), prefixes.len() as u64, CONVERGE)?;
    clock.converged(&done, row)?;
    (row.rss, row.peak_conv) = rss(b.pid());
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// 4. Latency: one announce (and one withdrawal) until the receiver holds (no longer holds) it

fn poll_route(r: &mut Receiver, net: &str, present: bool) -> Result<Instant, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if r.ctl.has_route(net).map_err(|e| e.to_string())? == present {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            return Err(format!("{net} present={present} not seen within 30 s"));
        }
    }
}

/// One way of calling a sender for the latency probes: `prepare` builds the call for probe prefix `p`
/// (an add, or with `false` a withdrawal) before the clock starts, `send` makes it. Every sender's
/// request is built outside the measurement alike.
struct Calls<'a, R> {
    prepare: Prepare<'a, R>,
    send: Box<dyn FnMut(R) -> Result<(), String> + 'a>,
}

type Prepare<'a, R> = Box<dyn FnMut(&str, bool) -> R + 'a>;

impl<'a, R> Calls<'a, R> {
    fn new(prepare: impl FnMut(&str, bool) -> R + 'a, send: impl FnMut(R) -> Result<(), String> + 'a) -> Self {
        Calls { prepare: Box::new(prepare), send: Box::new(send) }
    }
}

/// `ops` adds and withdrawals of probe prefixes through `calls`, each timed until the receiver sees
/// it, and until its UPDATE left the sender towards `r` (the only UPDATEs once the background is in).
fn probe_loop<R>(ctx: &Ctx, r: &mut Receiver, ops: usize, calls: &mut Calls<R>) -> Result<Probes, String> {
    let sniff = updates_to(ctx, r);
    probe_block(&sniff, r, 0..ops, false, calls)
}

/// Captures the UPDATEs from the sender to `r`.
fn updates_to(ctx: &Ctx, r: &Receiver) -> Sniffer {
    Sniffer::start(ctx.snd.name(), "eth0", wire::is_bgp_update(IpAddr::V4(SND_V4), Some(IpAddr::V4(r.host.v4))))
}

/// [`probe_loop`] over the probe prefixes `range`, with `sniff` capturing the UPDATEs to `r` (started
/// once for all turns: a capture thread and its ring made per turn slowed the turn's first calls).
fn probe_block<R>(
    sniff: &Sniffer,
    r: &mut Receiver,
    range: std::ops::Range<usize>,
    first_apart: bool,
    calls: &mut Calls<R>,
) -> Result<Probes, String> {
    let mut out = Probes::default();
    let on_wire = |t0: Instant, out: &mut Probes| {
        if let Some(t) = sniff.first(Duration::from_millis(200)).filter(|t| *t >= t0) {
            out.wire.push(t - t0);
        }
    };
    let start = range.start;
    for i in range {
        let p = probe(i);
        let req = (calls.prepare)(&p, true);
        sniff.drain();
        let n0 = out.wire.len();
        let t0 = Instant::now();
        (calls.send)(req)?;
        out.adds.push(poll_route(r, &p, true)? - t0);
        on_wire(t0, &mut out);
        let add_wire = out.wire.get(n0).copied();
        let req = (calls.prepare)(&p, false);
        sniff.drain();
        let t0 = Instant::now();
        (calls.send)(req)?;
        out.dels.push(poll_route(r, &p, false)? - t0);
        on_wire(t0, &mut out);
        if first_apart && i == start {
            // the turn's first pair: its add shown apart, its withdrawal not at all
            out.first.extend(out.adds.pop());
            out.dels.pop();
            out.first_wire.extend(add_wire);
            out.wire.truncate(n0);
        }
    }
    Ok(out)
}

/// Add/withdraw pairs per turn when speakerd's and gobgpd's persistent clients take turns: the first
/// pair comes after at least [`LAT_IDLE`] without calls and is apart (see the report), the other 10
/// counted. The full run takes 100 turns (`Plan::latency_turns`), so that the after-idle calls have 100
/// samples (with 20, their p99 was the slowest one).
pub const LAT_TURN: usize = 11;
/// How long a sender has had no call before its turn's first pair (k8s-bridge calls after idling).
const LAT_IDLE: Duration = Duration::from_millis(20);

/// The window in which the other sender must stay under [`QUIET_CPU`] before a turn starts.
const QUIET_WINDOW: Duration = Duration::from_millis(10);
/// CPU time (all threads) the other sender may use in [`QUIET_WINDOW`] and count as quiet (5 %).
const QUIET_CPU: Duration = Duration::from_micros(500);
/// How long a turn waits at most for the other sender to go quiet; it then starts anyway, counted.
const QUIET_MAX: Duration = Duration::from_secs(2);

/// One sender's side of the persistent-client turns.
struct Side<'a, 'r, R> {
    acc: Result<Probes, String>,
    sniff: Sniffer,
    rcv: &'r mut Receiver,
    calls: Calls<'a, R>,
    last_call: Instant,
    /// The other sender's process: each turn waits until it is quiet (see [`Side::turn`]).
    other: u32,
    /// Turns that started after [`QUIET_MAX`] without the other sender going quiet.
    not_quiet: usize,
}

impl<R> Side<'_, '_, R> {
    /// What this side measured, with its count of turns begun while the other sender was busy.
    fn probes(self) -> Result<Probes, String> {
        let not_quiet = self.not_quiet;
        self.acc.map(|p| Probes { not_quiet, ..p })
    }

    /// One turn over the probe prefixes `range`, after [`LAT_IDLE`] at least since this side's last
    /// call and once the other sender has used less than [`QUIET_CPU`] in the last [`QUIET_WINDOW`]; a
    /// failure stays. Both senders are up at once, and gobgpd's runtime kept both CPUs busy for ~4 ms
    /// after some of its turns (`perf sched`: speakerd's worker woken, then waiting 4.03 ms for a CPU),
    /// which fell on the next turn, of whichever sender that was.
    fn turn(&mut self, range: std::ops::Range<usize>) {
        let Ok(a) = &mut self.acc else { return };
        if !wait_quiet(&[self.other], self.last_call) {
            self.not_quiet += 1;
        }
        let r = probe_block(&self.sniff, self.rcv, range, true, &mut self.calls);
        self.last_call = Instant::now();
        match r {
            Ok(p) => a.extend(p),
            Err(e) => self.acc = Err(e),
        }
    }
}

/// Waits until at least [`LAT_IDLE`] has passed since `last` and the processes `others` have used
/// less than [`QUIET_CPU`] in the last [`QUIET_WINDOW`]; false if [`QUIET_MAX`] passed first.
fn wait_quiet(others: &[u32], last: Instant) -> bool {
    let t0 = Instant::now();
    let cpu_all = || others.iter().map(|p| cpu_time(*p)).sum::<Duration>();
    let mut cpu = cpu_all();
    loop {
        std::thread::sleep(QUIET_WINDOW);
        let now = cpu_all();
        let quiet = now.saturating_sub(cpu) < QUIET_CPU;
        cpu = now;
        if quiet && last.elapsed() >= LAT_IDLE {
            return true;
        }
        if t0.elapsed() > QUIET_MAX {
            return false;
        }
    }
}

/// The machine's part of a first call after idle, measured between the turns: a thread of the bench,
/// blocked reading a Unix socket for at least [`LAT_IDLE`], woken by a 1-byte write from this thread;
/// from just before the write until the reader runs. No gRPC and no BGP: what any sender's first call
/// after idle pays before its own work begins (here, mostly a virtual CPU leaving halt).
struct WakeFloor {
    tx: std::os::unix::net::UnixStream,
    /// When the reader last ran, in nanoseconds since `base`.
    woke: Arc<std::sync::atomic::AtomicU64>,
    base: Instant,
    last: Instant,
    samples: Vec<Duration>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl WakeFloor {
    fn start() -> std::io::Result<WakeFloor> {
        use std::io::{Read, Write};
        let (tx, mut rx) = std::os::unix::net::UnixStream::pair()?;
        let base = Instant::now();
        let woke = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let w = woke.clone();
        let reader = std::thread::Builder::new().name("wake-floor".into()).spawn(move || {
            let mut b = [0u8; 1];
            while matches!(rx.read(&mut b), Ok(1)) {
                w.store(base.elapsed().as_nanos() as u64, Ordering::Release);
                if rx.write_all(&b).is_err() {
                    break;
                }
            }
        })?;
        Ok(WakeFloor { tx, woke, base, last: Instant::now(), samples: vec![], reader: Some(reader) })
    }

    /// One sample, once the senders `others` are quiet (as a turn begins, [`wait_quiet`]); a sample
    /// taken without them quiet is not kept.
    fn probe(&mut self, others: &[u32]) -> std::io::Result<()> {
        use std::io::{Read, Write};
        let quiet = wait_quiet(others, self.last);
        let t0 = self.base.elapsed();
        self.tx.write_all(&[1])?;
        let mut b = [0u8; 1];
        self.tx.read_exact(&mut b)?;
        self.last = Instant::now();
        let woke = Duration::from_nanos(self.woke.load(Ordering::Acquire));
        if quiet {
            self.samples.push(woke.saturating_sub(t0));
        }
        Ok(())
    }
}

impl Drop for WakeFloor {
    fn drop(&mut self) {
        let _ = self.tx.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

enum SpReq {
    Add(AnnounceRequest),
    Del(WithdrawRequest),
}

enum GoReq {
    Add(speaker_api::gobgp::apipb::AddPathRequest),
    Del(speaker_api::gobgp::apipb::DeletePathRequest),
}

/// speakerd and gobgpd are up at once, each with its own receiver (`rcv[0]` and `rcv[1]`, swapped
/// every other background size, so that neither sender keeps the same receiver), and their persistent
/// clients take turns of [`LAT_TURN`] pairs, who goes first alternating from turn to turn, so that
/// whatever else the machine does meanwhile falls on both alike (run one after the other, their
/// medians moved by up to 1.6× between runs, and the ratio with them). The CLI rows and BIRD use
/// speakerd's receiver of that round.
pub fn latency(ctx: &Ctx, rcv: &mut [Receiver], res: &mut Results) {
    let ops = ctx.plan.latency_ops;
    assert!(rcv.len() >= 2, "latency: one receiver per sender");
    for (round, &bg) in ctx.plan.latency_background.iter().enumerate() {
        let (r0, r1) = rcv.split_at_mut(1);
        let (rs, rg) = if round % 2 == 0 { (&mut r0[..1], &mut r1[..1]) } else { (&mut r1[..1], &mut r0[..1]) };
        let prefixes = Fam::V4.prefixes(bg);
        eprintln!("bench: latency speakerd ({}) and gobgpd ({}) bg={bg}", rs[0].host.name(), rg[0].host.name());
        let sp = start_speakerd(ctx.snd);
        let mut c = speakerd_client(ctx.rt, &sp);
        let sp_up = set_announcements(ctx.rt, &mut c, "bench", announcements(&prefixes, 32))
            .and_then(|_| set_peers(ctx.rt, &mut c, addrs(rs, Fam::V4).iter().map(|a| peer_config(*a, None)).collect()))
            .and_then(|_| wait_converged(rs, "s4", bg as u64, CONVERGE).map(|_| ()));
        let g = std::cell::RefCell::new(GobgpSender::start(ctx, &[]));
        let loaded = g.borrow_mut().add_paths(ctx.rt, prefixes.iter().map(|p| gobgp_path(*p)).collect(), 1000);
        let go_up = loaded
            .and_then(|_| g.borrow_mut().add_peers(ctx.rt, &addrs(rg, Fam::V4)))
            .and_then(|_| wait_converged(rg, "s4", bg as u64, CONVERGE).map(|_| ()));
        // the persistent clients, taking turns
        let c2 = std::cell::RefCell::new(c.clone());
        let (sp_r, go_r) = {
            let sp_calls = Calls::new(
                |p: &str, add: bool| {
                    if add {
                        SpReq::Add(AnnounceRequest {
                            owner: "lat".into(),
                            announcements: vec![Announcement { prefix: p.into(), ..Default::default() }],
                        })
                    } else {
                        SpReq::Del(WithdrawRequest { owner: "lat".into(), prefixes: vec![p.into()] })
                    }
                },
                |req: SpReq| {
                    let mut c = c2.borrow_mut();
                    match req {
                        SpReq::Add(r) => ctx.rt.block_on(c.announce(r)).map(|_| ()),
                        SpReq::Del(r) => ctx.rt.block_on(c.withdraw(r)).map(|_| ()),
                    }
                    .map_err(|e| e.to_string())
                },
            );
            let path = |p: &str| gobgp_path(p.trim_end_matches("/32").parse().unwrap());
            let go_calls = Calls::new(
                |p: &str, add: bool| {
                    if add {
                        GoReq::Add(GobgpSender::add_path_request(path(p)))
                    } else {
                        GoReq::Del(GobgpSender::delete_path_request(path(p)))
                    }
                },
                |req: GoReq| match req {
                    GoReq::Add(r) => g.borrow_mut().add_path(ctx.rt, r),
                    GoReq::Del(r) => g.borrow_mut().delete_path(ctx.rt, r),
                },
            );
            let (sniff_s, sniff_g) = (updates_to(ctx, &rs[0]), updates_to(ctx, &rg[0]));
            let now = Instant::now();
            let mut s = Side {
                acc: sp_up.clone().map(|_| Probes::default()),
                sniff: sniff_s,
                rcv: &mut rs[0],
                calls: sp_calls,
                last_call: now,
                other: g.borrow().pid(),
                not_quiet: 0,
            };
            let mut o = Side {
                acc: go_up.clone().map(|_| Probes::default()),
                sniff: sniff_g,
                rcv: &mut rg[0],
                calls: go_calls,
                last_call: now,
                other: sp.pid(),
                not_quiet: 0,
            };
            // One turn each first, not counted: the first calls after the set-up's seconds without any were
            // up to 8× slower for speakerd, and the first few for gobgpd (the turns' first adds stay shown).
            s.turn(0..LAT_TURN);
            o.turn(0..LAT_TURN);
            for p in [&mut s.acc, &mut o.acc].into_iter().flatten() {
                *p = Probes::default(); // a failure stays
            }
            (s.not_quiet, o.not_quiet) = (0, 0);
            let mut floor = WakeFloor::start();
            let pids = [sp.pid(), g.borrow().pid()];
            for t in 0..ctx.plan.latency_turns {
                let range = t * LAT_TURN..(t + 1) * LAT_TURN;
                if t % 2 == 0 {
                    s.turn(range.clone());
                    o.turn(range);
                } else {
                    o.turn(range.clone());
                    s.turn(range);
                }
                if let Ok(f) = &mut floor {
                    if let Err(e) = f.probe(&pids) {
                        floor = Err(e);
                    }
                }
            }
            let floor = floor.as_mut().map(|f| std::mem::take(&mut f.samples)).map_err(|e| format!("wake floor: {e}"));
            res.lat_floor.push((bg, floor));
            (s.probes(), o.probes())
        };
        res.lat.push(LatRow::from("speakerd", "gRPC, persistent client", bg, sp_r));
        res.lat.push(LatRow::from("gobgpd", "gRPC, persistent client", bg, go_r));
        // one process per call: speakerctl, then the gobgp CLI, both spawned the same way (through
        // `nsenter` into the sender's namespace; speakerctl needs only the socket, a file)
        let ctl_bin = bin_path("speakerctl");
        let ctl_bin = ctl_bin.to_str().expect("speakerctl path");
        let socket = sp.socket().to_str().expect("socket path").to_string();
        let cli_command = |p: &str, add: bool| {
            let verb = if add { "add" } else { "withdraw" };
            command_in_netns(ctx.snd.name(), ctl_bin, &["--socket", &socket, "announce", verb, p])
        };
        let mut ctl = Calls::new(cli_command, |mut cmd: std::process::Command| {
            let o = cmd.output().map_err(|e| e.to_string())?;
            if o.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&o.stderr).into_owned())
            }
        });
        let r = sp_up.and_then(|_| probe_loop(ctx, &mut rs[0], ops, &mut ctl));
        drop(ctl);
        res.lat.push(LatRow::from("speakerd", "one `speakerctl` call", bg, r));
        let mut cli = Calls::new(
            |p: &str, add: bool| {
                g.borrow().cli_command(&["global", "rib", if add { "add" } else { "del" }, p, "-a", "ipv4"])
            },
            |mut cmd: std::process::Command| {
                let out = cmd.output().map_err(|e| e.to_string())?;
                if out.status.success() {
                    Ok(())
                } else {
                    Err(String::from_utf8_lossy(&out.stderr).into_owned())
                }
            },
        );
        let r = go_up.and_then(|_| probe_loop(ctx, &mut rg[0], ops, &mut cli));
        res.lat.push(LatRow::from("gobgpd", "one `gobgp` CLI call", bg, r));
        drop(cli);
        drop(sp);
        drop(g);
        let _ = wait_idle(rs, "s4");
        let _ = wait_idle(rg, "s4");
        let me = addrs(rs, Fam::V4);
        // BIRD: no call adds one route; the config is rewritten and re-read over the control socket
        {
            eprintln!("bench: latency BIRD bg={bg}");
            let b = std::cell::RefCell::new(BirdSender::start(ctx.snd, Fam::V4, &prefixes, &me, true, Some(1)));
            let mut calls = Calls::new(
                |p: &str, add: bool| b.borrow().config_text(add.then_some(p)),
                |conf: String| b.borrow_mut().reconfigure(&conf),
            );
            let r = wait_converged(rs, "s4", bg as u64, CONVERGE)
                .and_then(|_| probe_loop(ctx, &mut rs[0], ops, &mut calls));
            res.lat.push(LatRow::from("BIRD", "config rewrite + `configure`", bg, r));
            drop(calls);
            drop(b);
            let _ = wait_idle(rs, "s4");
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// 6. Start → first OPEN → Established; speakerd restart → all routes back

pub fn start_times(ctx: &Ctx, rcv: &mut [Receiver], res: &mut Results) {
    let peer = rcv[0].host.v4;
    let me = [IpAddr::V4(peer)];
    let kinds = ["speakerd", "gobgpd", "BIRD (default)", "BIRD (connect delay time 0)"];
    for kind in kinds {
        let mut row = StartRow { sender: kind, ..Default::default() };
        for _ in 0..ctx.plan.start_runs {
            eprintln!("bench: start {kind}");
            let sniff = Sniffer::start(rcv[0].host.name(), "eth0", wire::is_bgp_open_from(IpAddr::V4(SND_V4)));
            let t0 = Instant::now();
            let handle: Box<dyn std::any::Any> = match kind {
                "speakerd" => Box::new(
                    Speakerd::builder(ctx.snd)
                        .local_asn(SND_ASN)
                        .router_id(SND_V4)
                        .no_bgp_listen()
                        .env("RUST_LOG", "warn")
                        .config(&format!("[[peers]]\naddress = \"{peer}\"\npeer_asn = {RCV_ASN}\n"))
                        .spawn(),
                ),
                "gobgpd" => Box::new(GobgpSender::start(ctx, &me)),
                "BIRD (default)" => Box::new(BirdSender::start(ctx.snd, Fam::V4, &[], &me, true, None)),
                _ => Box::new(BirdSender::start(ctx.snd, Fam::V4, &[], &me, true, Some(0))),
            };
            let open = sniff.first(Duration::from_secs(60));
            let est = wait_converged(rcv, "s4", 0, Duration::from_secs(60));
            match (open, est) {
                (Some(o), Ok((e, _))) => {
                    row.open.push(o - t0);
                    row.est.push(e - t0);
                }
                (o, e) => row.err = Some(format!("OPEN seen: {}, Established: {:?}", o.is_some(), e.err())),
            }
            drop(handle);
            let _ = wait_idle(rcv, "s4");
        }
        res.start.push(row);
    }
    // speakerd restart: peers from its config file, announcements pushed again by the client (as
    // k8s-bridge does when speakerd comes back)
    eprintln!("bench: speakerd restart");
    let n = ctx.plan.restart_n;
    let all = announcements(&Fam::V4.prefixes(n), 32);
    let r = (|| -> Result<Duration, String> {
        let mut sp = Speakerd::builder(ctx.snd)
            .local_asn(SND_ASN)
            .router_id(SND_V4)
            .no_bgp_listen()
            .env("RUST_LOG", "warn")
            .config(&format!("[[peers]]\naddress = \"{peer}\"\npeer_asn = {RCV_ASN}\n"))
            .start();
        let mut c = speakerd_client(ctx.rt, &sp);
        set_announcements(ctx.rt, &mut c, "bench", all.clone())?;
        wait_converged(rcv, "s4", n as u64, CONVERGE)?;
        let before = rcv[0].ctl.cmd("show protocols s4").map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        sp.restart();
        let mut c = speakerd_client(ctx.rt, &sp);
        set_announcements(ctx.rt, &mut c, "bench", all)?;
        // the old session must be gone (its state line, with its "since", changed) before counts mean anything
        try_wait_until(Duration::from_secs(30), || match rcv[0].ctl.cmd("show protocols s4") {
            Ok(o) if o != before => Ok(()),
            Ok(o) => Err(o),
            Err(e) => Err(e.to_string()),
        })?;
        let (_, done) = wait_converged(rcv, "s4", n as u64, CONVERGE)?;
        Ok(last(&done) - t0)
    })();
    res.restart = Some((n, r));
    let _ = wait_idle(rcv, "s4");
}

// ---------------------------------------------------------------------------------------------------
// 5. Session scale

pub fn scale(ctx: &Ctx, r1: &Host, res: &mut Results) {
    let n = ctx.plan.scale_sessions;
    let p = ctx.plan.scale_prefixes;
    eprintln!("bench: scale {n} sessions, {p} prefixes");
    // one address per session on each side's loopback: BIRD tells its protocols apart by neighbor address
    let addr = |net: u8, i: usize| std::net::Ipv4Addr::new(10, net, (i / 250) as u8, (i % 250 + 1) as u8);
    for (host, net) in [(r1, 100), (ctx.snd, 101)] {
        let batch = host.state_dir("addrs").join("batch");
        let cmds: String = (0..n).map(|i| format!("addr add {}/32 dev lo\n", addr(net, i))).collect();
        std::fs::write(&batch, cmds).unwrap();
        host.ip(&["-batch", batch.to_str().unwrap()]);
    }
    ctx.snd.ip(&["route", "add", "10.100.0.0/16", "via", &r1.v4.to_string()]);
    r1.ip(&["route", "add", "10.101.0.0/16", "via", &ctx.snd.v4.to_string()]);
    let mut conf = format!("router id {};\nprotocol device {{ scan time 60; }}\n", r1.v4);
    for i in 0..n {
        conf += &format!(
            "protocol bgp p{i} {{ local {} as {RCV_ASN}; neighbor {} as {SND_ASN}; multihop 2; passive on; ipv4 {{ import none; export none; }}; }}\n",
            addr(100, i),
            addr(101, i)
        );
    }
    let mut rcv = Receiver::start_with(r1, &conf);
    let mut row = ScaleRow { sessions: n, prefixes: p, ..Default::default() };
    let r = (|| -> Result<(), String> {
        let sp = start_speakerd(ctx.snd);
        let mut c = speakerd_client(ctx.rt, &sp);
        let peers = (0..n)
            .map(|i| PeerConfig {
                source_address: addr(101, i).to_string(),
                ebgp_multihop_ttl: 2,
                ..peer_config(IpAddr::V4(addr(100, i)), Some(9))
            })
            .collect();
        let t0 = Instant::now();
        set_peers(ctx.rt, &mut c, peers)?;
        let up = try_wait_until(Duration::from_secs(300), || match rcv.ctl.established_count() {
            Ok(k) if k == n => Ok(Instant::now()),
            Ok(k) => Err(format!("{k} of {n} established")),
            Err(e) => Err(e.to_string()),
        })?;
        row.establish_all = Some(up - t0);
        let cpu0 = cpu_secs(sp.pid());
        let idle = if ctx.plan.full { 10.0 } else { 2.0 };
        std::thread::sleep(Duration::from_secs_f64(idle));
        row.idle_cpu_pct = Some((cpu_secs(sp.pid()) - cpu0) / idle * 100.0);
        let cpu1 = cpu_secs(sp.pid());
        let t1 = Instant::now();
        set_announcements(ctx.rt, &mut c, "bench", announcements(&Fam::V4.prefixes(p), 32))?;
        try_wait_until(Duration::from_secs(1800), || {
            let out = rcv.ctl.cmd("show protocols all").map_err(|e| e.to_string())?;
            let got: u64 = out
                .lines()
                .filter_map(|l| l.split("Import updates:").nth(1)?.split_whitespace().next()?.parse::<u64>().ok())
                .sum();
            if got >= (n * p) as u64 {
                Ok(())
            } else {
                std::thread::sleep(Duration::from_millis(200));
                Err(format!("{got} of {} updates received", n * p))
            }
        })?;
        row.distribute = Some(t1.elapsed());
        row.distribute_cpu = Some(cpu_secs(sp.pid()) - cpu1);
        (row.rss, _) = rss(sp.pid());
        // keep the sessions a few hold times more, then count what went wrong
        std::thread::sleep(Duration::from_secs(if ctx.plan.full { 30 } else { 3 }));
        (row.rss_settled, _) = rss(sp.pid());
        // for finding where the memory is (which mappings: heap arenas, stacks, code)
        if std::env::var_os("BENCH_SMAPS").is_some() {
            let _ = std::fs::copy(format!("/proc/{}/smaps", sp.pid()), "/tmp/speakerd-smaps");
        }
        let peers = ctx
            .rt
            .block_on(c.list_peers(speaker_api::v1::ListPeersRequest::default()))
            .map_err(|e| e.to_string())?
            .into_inner()
            .peers;
        row.still_established = rcv.ctl.established_count().map_err(|e| e.to_string())?;
        row.drops = peers.iter().filter_map(|p| p.state.as_ref()).map(|s| s.dropped_count).sum();
        row.hold_expiries = (rcv.log().matches("Hold timer expired").count()
            + sp.log().to_lowercase().matches("hold timer expired").count()) as u64;
        Ok(())
    })();
    if let Err(e) = r {
        row.err = Some(e);
    }
    res.scale = Some(row);
}

// ---------------------------------------------------------------------------------------------------
// 7. Layer 2 failover

/// speakerd's default `--gossip-probe-ms`, read from its `--help` (the report names it).
fn default_probe_ms() -> u64 {
    let out = std::process::Command::new(bin_path("speakerd")).arg("--help").output().expect("speakerd --help");
    let text = String::from_utf8_lossy(&out.stdout);
    let after = text.split("--gossip-probe-ms").nth(1).expect("--gossip-probe-ms in speakerd --help");
    let n = after.split("[default: ").nth(1).and_then(|t| t.split(']').next()).expect("its default");
    n.parse().unwrap_or_else(|e| panic!("--gossip-probe-ms default {n:?}: {e}"))
}

pub fn l2_failover(plan: &Plan, res: &mut Results) {
    res.l2_default_probe_ms = default_probe_ms();
    // Kill -9 of the owner at 2, 3 and 5 nodes with the gossip defaults, then 3 nodes with a shorter
    // probe period (docs/LAYER2.md); then a gossip-only partition of the owner at 2, 3 and 5 nodes.
    for (nodes, probe_ms) in [(2, None), (3, None), (5, None), (3, Some(100))] {
        res.l2.push(l2_failover_with(plan, nodes, probe_ms, L2Fault::Kill));
    }
    for nodes in [2, 3, 5] {
        res.l2.push(l2_failover_with(plan, nodes, None, L2Fault::Partition));
    }
}

/// `n` speakerd nodes answering one IP, every node seeding every other one.
struct L2Group<'a> {
    seg: &'a Segment,
    names: Vec<String>,
    probe_ms: Option<u64>,
    nodes: Vec<Speakerd>,
}

const L2_IP: &str = "192.0.2.100";

impl<'a> L2Group<'a> {
    fn start(seg: &'a Segment, n: usize, probe_ms: Option<u64>) -> Self {
        let names = (1..=n).map(|i| format!("n{i}")).collect();
        let mut g = L2Group { seg, names, probe_ms, nodes: Vec::new() };
        g.nodes = (0..n).map(|i| g.node(i)).collect();
        g
    }

    fn node(&self, i: usize) -> Speakerd {
        let h = &self.seg.hosts[i];
        let mut b = Speakerd::builder(h).l2_node(&self.names[i], h.v4, None).env("RUST_LOG", "warn");
        if let Some(ms) = self.probe_ms {
            b = b.arg("--gossip-probe-ms").arg(&ms.to_string());
        }
        for (j, o) in self.seg.hosts[..self.names.len()].iter().enumerate() {
            if j != i {
                b = b.arg("--gossip-seed").arg(&format!("{}:7946", o.v4));
            }
        }
        let sp = b.start();
        let mut args = vec!["l2", "add", L2_IP];
        for n in &self.names {
            args.extend(["--node", n.as_str()]);
        }
        sp.ctl(&args);
        sp
    }

    /// Every node sees all alive and names the same owner: its index.
    fn agreed(&self) -> Result<usize, String> {
        let n = self.names.len();
        let owner = try_wait_until(Duration::from_secs(30), || {
            let mut owners = std::collections::BTreeSet::new();
            for sp in &self.nodes {
                let v = sp.speakerctl_json(&["members"]);
                let alive = v["members"].as_array().map_or(0, |m| m.iter().filter(|x| x["state"] == "alive").count());
                if alive != n {
                    return Err(format!("{alive} alive members"));
                }
                owners.insert(sp.ctl(&["l2", "owner", L2_IP]).trim().to_string());
            }
            match owners.len() {
                1 if !owners.contains("(none)") => Ok(owners.into_iter().next().unwrap_or_default()),
                _ => Err(format!("owners {owners:?}")),
            }
        })?;
        self.names.iter().position(|x| *x == owner).ok_or(format!("unknown owner {owner}"))
    }
}

fn l2_failover_with(plan: &Plan, n: usize, probe_ms: Option<u64>, fault: L2Fault) -> L2Row {
    let lab = Lab::new("bench-l2");
    let mut hosts: Vec<String> = (1..=n).map(|i| format!("n{i}")).collect();
    hosts.push("client".into());
    let seg = lab.segment(&hosts.iter().map(String::as_str).collect::<Vec<_>>());
    let client = &seg.hosts[n];
    let mut g = L2Group::start(&seg, n, probe_ms);
    let mut row = L2Row { nodes: n, probe_ms, fault, ..L2Row::default() };
    for run in 0..plan.l2_runs {
        let r = (|| -> Result<Duration, String> {
            let i = g.agreed()?;
            std::thread::sleep(Duration::from_millis(500)); // let the owner's own GARPs pass
            match fault {
                L2Fault::Kill => {
                    let mac = wire::parse_mac(&seg.hosts[i].mac());
                    let sniff = Sniffer::start(client.name(), "eth0", wire::is_garp(L2_IP.parse().unwrap(), mac));
                    let t0 = Instant::now();
                    g.nodes[i].kill9();
                    let first =
                        sniff.first(Duration::from_secs(10)).ok_or("no gratuitous ARP from a survivor within 10 s")?;
                    g.nodes[i] = g.node(i);
                    Ok(first - t0)
                }
                L2Fault::Partition => {
                    // The client asks every 20 ms; the longest stretch in which two MACs answered, from
                    // the cut until 3 s after the heal.
                    let probe = ArpProbe::start(client, &[L2_IP], Duration::from_millis(20));
                    seg.hosts[i].cut_gossip(true);
                    std::thread::sleep(Duration::from_secs(3));
                    seg.hosts[i].cut_gossip(false);
                    std::thread::sleep(Duration::from_secs(3));
                    let replies = probe.stop();
                    if replies.len() < 100 {
                        return Err(format!("{} answers in 6 s", replies.len()));
                    }
                    Ok(longest_double_answer(&replies, 0.025))
                }
            }
        })();
        eprintln!("bench: l2 {fault:?} {n} nodes run {run}: {r:?}");
        match r {
            Ok(d) => row.samples.push(d),
            Err(e) => row.err = Some(e),
        }
    }
    row
}

/// The longest time two MACs answered: replies of different MACs less than `window` s apart open or
/// extend an episode; one ends when the next such pair is more than `window` later. Each episode counts
/// from its first double reply to its last.
fn longest_double_answer(replies: &[(f64, String, String)], window: f64) -> Duration {
    let mut longest = 0f64;
    let mut episode: Option<(f64, f64)> = None;
    for (k, (t, _, m)) in replies.iter().enumerate() {
        let clash = replies[k + 1..].iter().take_while(|(u, ..)| u - t < window).any(|(_, _, o)| o != m);
        if !clash {
            continue;
        }
        episode = match episode {
            Some((a, b)) if t - b < window => Some((a, *t)),
            _ => Some((*t, *t)),
        };
        if let Some((a, b)) = episode {
            longest = longest.max(b - a + window);
        }
    }
    Duration::from_secs_f64(longest)
}

// ---------------------------------------------------------------------------------------------------
// 8. k8s-bridge at Kubernetes scale (issue 25)

/// speakerd + k8s-bridge (its defaults) on one node, the fake API server answering every write after
/// `K8S_WRITE_DELAY` (a throttled API server), gobgpd as the router. For each N: N LoadBalancer
/// Services with one ready endpoint each are created; then EndpointSlices are flipped to not-ready
/// and back while the Event/status backlog drains; then writes hang for one flip; then writes are
/// fast and the status objects must converge.
pub fn k8s_scale(plan: &Plan, res: &mut Results) {
    for &n in &plan.k8s_sizes {
        let mut row = K8sRow { n, write_delay: K8S_WRITE_DELAY, ..K8sRow::default() };
        if let Err(e) = k8s_scale_run(plan, n, &mut row) {
            row.err = Some(e);
        }
        res.k8s.push(row);
    }
}

pub const K8S_WRITE_DELAY: Duration = Duration::from_millis(200);

/// One Kubernetes node for the k8s workloads: the fake API server with the CRDs and a Node, gobgpd as
/// the router, one IPAddressPool `pool_cidr` advertised over BGP to it, speakerd and k8s-bridge (its
/// default flags, metrics on `port`), the session Established.
struct K8sNode {
    api: common::k8s::Api,
    gobgp: Gobgpd,
    sp: Speakerd,
    bridge: Proc,
    lab: Lab,
}

impl K8sNode {
    fn start(lab_name: &str, pool_cidr: &str, port: u16) -> Result<K8sNode, String> {
        use common::k8s::{bridge_with, node, start_node, Api};
        const ASN: u32 = 64500;
        const ROUTER_ASN: u32 = 64510;
        let lab = Lab::new(lab_name);
        let (n1, g) = lab.pair("n1", "gobgp");
        let api = Api::start(lab.dir());
        api.install_crds();
        api.apply(node("n1", &n1.v4.to_string(), "a"));
        let gobgp =
            Gobgpd::start(&g, common::PeerConfig::new(ROUTER_ASN, g.v4).neighbor(Neighbor::new(n1.v4, ASN).passive()));
        api.apply_yaml(&format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: pool, namespace: metallb-system}}\nspec: {{addresses: [{pool_cidr}]}}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: adv, namespace: metallb-system}}\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: router, namespace: metallb-system}}\nspec: {{myASN: {ASN}, peerASN: {ROUTER_ASN}, peerAddress: \"{}\"}}\n",
            g.v4
        ));
        let sp = start_node(&n1, "n1");
        let bridge = bridge_with(&api, "n1", &sp, port, &[]);
        try_wait_until(Duration::from_secs(60), || match sp.peer_state(&g.v4.to_string()) {
            Some(s) if s == "established" => Ok(()),
            s => Err(format!("{s:?}")),
        })
        .map_err(|e| format!("session to gobgpd: {e}"))?;
        Ok(K8sNode { api, gobgp, sp, bridge, lab })
    }
}

fn k8s_scale_run(plan: &Plan, n: usize, row: &mut K8sRow) -> Result<(), String> {
    use common::k8s::{endpoints, endpoints_with, metric, service};
    use fake_apiserver::WriteDelay;
    const PORT: u16 = 17499;
    // 10.64.0.0/16: room for 65,000 Services.
    // `lab` first: the processes are dropped (killed) before the namespaces go.
    let K8sNode { lab: _lab, api, gobgp, sp, bridge } =
        K8sNode::start(&format!("bench-k8s-{n}"), "10.64.0.0/16", PORT)?;
    let count = || gobgp.rib_count("ipv4").unwrap_or(0) as usize;
    let ip = |i: usize| format!("10.64.{}.{}", i / 250, 1 + i % 250);
    api.server.set_write_delay(WriteDelay::Delay(K8S_WRITE_DELAY));
    let created = Instant::now();
    for i in 0..n {
        let name = format!("s{i}");
        api.apply(service(&name, &ip(i), "Cluster"));
        api.apply(endpoints(&name, "n1"));
    }
    let last_object = Instant::now();
    row.create_secs = (last_object - created).as_secs_f64();
    try_wait_until(Duration::from_secs(300), || if count() == n { Ok(()) } else { Err(format!("{} of {n}", count())) })
        .map_err(|e| format!("all routes at gobgpd: {e}"))?;
    row.routes_after_last = Some(last_object.elapsed());
    // Flips while the backlog drains.
    for round in 0..plan.k8s_flips {
        let k = 7 + round * 13;
        let (name, prefix) = (format!("s{k}"), format!("{}/32", ip(k)));
        let t = Instant::now();
        api.apply(endpoints_with(&name, &[("n1", false, false, false)]));
        k8s_wait_prefix(&gobgp, &prefix, false).map_err(|e| format!("flip {round}: withdrawal: {e}"))?;
        row.flips.push(t.elapsed());
        api.apply(endpoints(&name, "n1"));
        k8s_wait_prefix(&gobgp, &prefix, true).map_err(|e| format!("flip {round}: back: {e}"))?;
    }
    row.pending_after_flips = (
        metric(PORT, "k8s_bridge_events_pending").unwrap_or(-1.0),
        metric(PORT, "k8s_bridge_status_pending").unwrap_or(-1.0),
    );
    // Writes hang: one flip.
    api.server.set_write_delay(WriteDelay::Hang);
    let prefix = format!("{}/32", ip(9));
    let t = Instant::now();
    api.apply(endpoints_with("s9", &[("n1", false, false, false)]));
    k8s_wait_prefix(&gobgp, &prefix, false).map_err(|e| format!("flip while writes hang: {e}"))?;
    row.hung_flip = Some(t.elapsed());
    api.apply(endpoints("s9", "n1"));
    k8s_wait_prefix(&gobgp, &prefix, true).map_err(|e| format!("back while writes hang: {e}"))?;
    // Writes fast: every status object right.
    api.server.set_write_delay(WriteDelay::None);
    let healed = Instant::now();
    try_wait_until(Duration::from_secs(600), || {
        let l = api.server.list("metallb.io/v1beta1", "ServiceBGPStatus", Some("metallb-system"));
        let ok = l
            .iter()
            .filter(|o| o["status"]["node"] == "n1" && o["status"]["peers"] == serde_json::json!(["router"]))
            .count();
        if l.len() == n && ok == n {
            Ok(())
        } else {
            Err(format!("{} objects, {ok} right", l.len()))
        }
    })
    .map_err(|e| format!("status after recovery: {e}"))?;
    row.status_converged = Some(healed.elapsed());
    row.bridge_mem = rss(bridge.pid());
    row.bridge_cpu = cpu_secs(bridge.pid());
    row.speakerd_mem = rss(sp.pid());
    Ok(())
}

/// Polls gobgpd for one prefix (present or gone) every 2 ms, for at most 30 s.
fn k8s_wait_prefix(g: &Gobgpd, prefix: &str, present: bool) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let has = g
            .cli(&["global", "rib", prefix, "-a", "ipv4"])
            .map(|o| o.contains(prefix.trim_end_matches("/32")))
            .unwrap_or(false);
        if has == present {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{prefix} present={has} after 30 s"));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

// ---------------------------------------------------------------------------------------------------
// 9. The controller role (issue 20)

/// `k8s-bridge controller` against the fake API server: N Services created without an IP as fast as
/// the harness can, timed until every one shows an IP in its status; then, with speakerd + k8s-bridge
/// on a node and gobgpd as the router, single Services created → their route at the router.
pub fn controller_bench(plan: &Plan, res: &mut Results) {
    for &n in &plan.ctl_sizes {
        let mut row = CtlRow { n, ..CtlRow::default() };
        if let Err(e) = ctl_alloc_run(n, &mut row) {
            row.err = Some(e);
        }
        res.ctl.push(row);
    }
    let mut samples = Vec::new();
    let err = ctl_route_run(plan.ctl_route_runs, &mut samples).err();
    res.ctl_route = Some((samples, err));
}

fn ctl_service(i: usize, name: &str) -> serde_json::Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster",
                 "clusterIP": format!("10.96.{}.{}", i / 250, 1 + i % 250),
                 "clusterIPs": [format!("10.96.{}.{}", i / 250, 1 + i % 250)],
                 "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": name}}})
}

fn ctl_proc(api: &common::k8s::Api, dir: &std::path::Path) -> Proc {
    let kubeconfig = api.kubeconfig.display().to_string();
    Proc::spawn(
        "controller",
        &[bin_path("k8s-bridge").to_str().unwrap(), "controller"],
        &dir.join("controller.log"),
        &[("KUBECONFIG", &kubeconfig), ("METALLB_POD_NAME", "controller-0"), ("RUST_LOG", "warn")],
        None,
    )
}

fn ctl_alloc_run(n: usize, row: &mut CtlRow) -> Result<(), String> {
    use common::k8s::Api;
    let lab = Lab::new(&format!("bench-ctl-{n}"));
    let api = Api::start(lab.dir());
    api.install_crds();
    api.apply_yaml("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: pool, namespace: metallb-system}\nspec: {addresses: [10.128.0.0/16]}\n");
    let ctl = ctl_proc(&api, lab.dir());
    try_wait_until(Duration::from_secs(30), || {
        api.server
            .get("coordination.k8s.io/v1", "Lease", Some("metallb-system"), "metallb-controller")
            .ok_or_else(String::new)
    })
    .map_err(|_| "the controller never took its Lease".to_string())?;
    let t0 = Instant::now();
    for i in 0..n {
        api.apply(ctl_service(i, &format!("s{i}")));
    }
    row.create_secs = t0.elapsed().as_secs_f64();
    let allocated = || {
        api.server
            .list("v1", "Service", Some("default"))
            .iter()
            .filter(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"].is_string())
            .count()
    };
    try_wait_until(Duration::from_secs(900), || {
        let a = allocated();
        if a == n {
            Ok(())
        } else {
            Err(format!("{a} of {n}"))
        }
    })
    .map_err(|e| format!("allocation: {e}"))?;
    row.all_allocated = Some(t0.elapsed());
    row.mem = rss(ctl.pid());
    row.cpu = cpu_secs(ctl.pid());
    Ok(())
}

fn ctl_route_run(runs: usize, samples: &mut Vec<Duration>) -> Result<(), String> {
    use common::k8s::endpoints;
    let K8sNode { lab, api, gobgp, sp: _sp, bridge: _bridge } =
        K8sNode::start("bench-ctl-route", "10.128.0.0/16", 17498)?;
    let _ctl = ctl_proc(&api, lab.dir());
    for i in 0..runs {
        let name = format!("r{i}");
        // The endpoint first: the Service is then announceable the moment it has an IP.
        api.apply(endpoints(&name, "n1"));
        let t = Instant::now();
        api.apply(ctl_service(i, &name));
        let ip = try_wait_until(Duration::from_secs(30), || {
            api.server
                .get("v1", "Service", Some("default"), &name)
                .and_then(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().map(str::to_string))
                .ok_or_else(String::new)
        })
        .map_err(|_| format!("{name}: no IP"))?;
        let prefix = format!("{ip}/32");
        loop {
            let has = gobgp.cli(&["global", "rib", &prefix, "-a", "ipv4"]).map(|o| o.contains(&ip)).unwrap_or(false);
            if has {
                break;
            }
            if t.elapsed() > Duration::from_secs(30) {
                return Err(format!("{prefix} not at gobgpd after 30 s"));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        samples.push(t.elapsed());
    }
    Ok(())
}
