//! The tokio driver of one peer: the only place that owns its TCP connections.
//!
//! It translates between the world and the sans-IO [`Fsm`]: socket bytes and timer expiries become
//! [`Input`]s, and [`Action`]s become writes, timers and state reports. Per connection there are two
//! small tasks: a reader that only frames bytes (bounded buffer, bounded channel), and a writer that
//! owns the write half, sends control messages (OPEN, KEEPALIVE, NOTIFICATION) first and pulls UPDATEs
//! from the [`AdjRibOut`] only when the socket takes more, in batches of bounded size.
use super::export::{Change, ExportTable, Selector};
use super::fsm::{Action, ConnId, Dir, DownReason, Fsm, FsmConfig, GrConfig, Input, Negotiated, State, Timer};
use super::rib_out::{self, AdjRibOut, BatchStats, Encoder};
use super::transport::{self, ConnectSpec};
use super::wire::{self, iana::err, DecodeCtx, Family, Message, Notification, Packer, Update, Verdict};
use crate::config::spec::PeerSpec;
use crate::events::{Event, PeerEvent};
use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// What the API and metrics can see of a peer, updated by its task.
#[derive(Debug, Clone)]
pub struct PeerStatus {
    pub state: State,
    pub since: Instant,
    pub negotiated: Option<SessionInfo>,
    pub received: [u64; 2],
    pub dropped_prefixes: u64,
    pub updates_received: u64,
    pub updates_sent: u64,
    pub keepalives_received: u64,
    pub keepalives_sent: u64,
    pub notifications_received: u64,
    pub notifications_sent: u64,
    pub treated_as_withdraw: u64,
    pub attributes_discarded: u64,
    pub established_count: u64,
    pub dropped_count: u64,
    pub last_notification_sent: Option<Notification>,
    pub last_notification_received: Option<Notification>,
    pub last_error: String,
    pub bfd: Option<crate::bfd::BfdStatus>,
}

impl Default for PeerStatus {
    fn default() -> Self {
        Self {
            state: State::Idle,
            since: Instant::now(),
            negotiated: None,
            received: [0; 2],
            dropped_prefixes: 0,
            updates_received: 0,
            updates_sent: 0,
            keepalives_received: 0,
            keepalives_sent: 0,
            notifications_received: 0,
            notifications_sent: 0,
            treated_as_withdraw: 0,
            attributes_discarded: 0,
            established_count: 0,
            dropped_count: 0,
            last_notification_sent: None,
            last_notification_received: None,
            last_error: String::new(),
            bfd: None,
        }
    }
}

/// An Established session, as shown to users.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub negotiated: Negotiated,
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The export table every peer reads (see [`super::export`]).
pub type Exports = RwLock<ExportTable>;

/// State shared between a peer's task, its writer, and the speaker (which owns it across task restarts).
#[derive(Debug)]
pub struct PeerShared {
    pub status: Mutex<PeerStatus>,
    pub rib: Mutex<AdjRibOut>,
    /// Wakes the writer when the Adj-RIB-Out has work.
    pub rib_notify: Notify,
    /// The writer's socket and encoder while it waits with nothing to send (see [`PeerShared::changed`]).
    idle: Mutex<IdleWriter>,
    exports: Arc<Exports>,
    /// The id of the newest task of this peer. A task replaced by another (a settings change that
    /// resets the session) may still be closing its connection; it no longer writes the status or the
    /// Adj-RIB-Out, which are the new session's.
    current_task: AtomicU64,
}

impl PeerShared {
    pub fn new(exports: Arc<Exports>, sel: Selector) -> Self {
        Self {
            status: Mutex::default(),
            rib: Mutex::new(AdjRibOut::new(sel)),
            rib_notify: Notify::new(),
            idle: Mutex::default(),
            exports,
            current_task: AtomicU64::new(0),
        }
    }
    pub fn status(&self) -> PeerStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }
    fn with_status(&self, f: impl FnOnce(&mut PeerStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }
    /// Edits the Adj-RIB-Out (the table read-locked first: the lock order is table, then rib) and wakes
    /// the writer.
    pub fn with_rib<R>(&self, f: impl FnOnce(&mut AdjRibOut, &ExportTable) -> R) -> Option<R> {
        let t = self.exports.read().ok()?;
        let r = self.rib.lock().ok().map(|mut r| f(&mut r, &t));
        drop(t);
        self.rib_notify.notify_one();
        r
    }
    /// Marks `changes` in the Adj-RIB-Out and gets them going to the peer. With `write_through`, and the
    /// writer waiting with nothing to send on an Established session, the first batch (at most
    /// [`rib_out::BATCH_FIRST`] prefixes) is written here, by the caller, and the writer is not woken: an
    /// API call's UPDATE is in the socket before the call returns. Waking the writer instead was a task
    /// hop, often to the other worker thread, about 25 µs of the 40–60 µs from call to wire, and the
    /// slow tail: the caller's reply went out first, and the writer then ran beside the caller's next
    /// work (docs/DESIGN.md). What the socket does not take, and anything beyond the first batch, is
    /// left to the writer, which writes the rest of a cut message before anything else.
    pub fn changed(&self, changes: &[Change], write_through: bool) {
        let Ok(t) = self.exports.read() else { return };
        let Ok(mut rib) = self.rib.lock() else { return };
        rib.changed(changes);
        let done = if write_through { self.write_through(&t, &mut rib) } else { None };
        drop(rib);
        drop(t);
        match done {
            Some((st, finished)) => {
                if st.updates > 0 {
                    self.with_status(|s| s.updates_sent += st.updates);
                }
                if !finished {
                    self.rib_notify.notify_one();
                }
            }
            None => self.rib_notify.notify_one(),
        }
    }

    /// The fast path of [`Self::changed`]. None: the writer is not idle at this epoch (or is another
    /// task's), and must be woken. Some((stats, finished)): what was written, and whether it was all
    /// (else the writer has been handed the rest, and must be woken).
    fn write_through(&self, t: &ExportTable, rib: &mut AdjRibOut) -> Option<(BatchStats, bool)> {
        let mut idle = self.idle.lock().ok()?;
        let current = self.current_task.load(Ordering::Acquire);
        // (A rest not yet taken by its writer, of a connection now closing, is not overwritten.)
        let a =
            idle.armed.as_ref().filter(|a| a.epoch == rib.epoch() && a.task == current && idle.leftover.is_empty())?;
        if !rib.pending() {
            return Some((BatchStats::default(), true));
        }
        let mut out = BytesMut::with_capacity(4096);
        let st = rib.take_batch(t, &a.enc, &mut out, rib_out::BATCH_FIRST);
        // Any error is the writer's to see: it gets the unwritten bytes and writes them, or fails to.
        let n = a.w.try_write(&out).unwrap_or(0);
        if n == out.len() && !rib.pending() {
            return Some((st, true));
        }
        let writer = a.writer;
        idle.leftover = out.split_off(n);
        idle.leftover_of = writer;
        idle.armed = None;
        Some((st, false))
    }

    /// The writer, about to wait with nothing to send: its socket and encoder, for [`Self::changed`].
    fn arm(&self, a: Armed) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.armed = Some(a);
        }
    }

    /// Writer `writer`, awake: takes its socket back, and what the fast path could not write of its.
    /// (Another writer of this peer, of a connection still closing or just made, is left alone.)
    fn disarm(&self, writer: u64) -> BytesMut {
        let Ok(mut idle) = self.idle.lock() else { return BytesMut::new() };
        if idle.armed.as_ref().is_some_and(|a| a.writer == writer) {
            idle.armed = None;
        }
        if idle.leftover_of == writer {
            std::mem::take(&mut idle.leftover)
        } else {
            BytesMut::new()
        }
    }

    /// The Adj-RIB-Out alone, for a caller that holds the table's write lock (lock order: table, then
    /// rib). A poisoned lock still gives the bits: they are what decides whether an id may be reused.
    pub fn rib_guard(&self) -> std::sync::MutexGuard<'_, AdjRibOut> {
        self.rib.lock().unwrap_or_else(|e| e.into_inner())
    }
    /// The writer's pull: the next batch of UPDATEs (at most `limit` prefixes) into `out`.
    fn take_batch(&self, e: &Encoder, out: &mut BytesMut, limit: usize) -> Option<BatchStats> {
        let t = self.exports.read().ok()?;
        let mut rib = self.rib.lock().ok()?;
        Some(rib.take_batch(&t, e, out, limit))
    }
}

/// Commands from the speaker to a peer task.
#[derive(Debug)]
pub enum PeerCmd {
    /// A connection from the peer's address arrived on a listening socket.
    Incoming(TcpStream),
    /// New settings that need no reset (name, next hops, keepalive, connect time, prefix limit).
    Tune(Box<PeerSpec>),
    /// Reset the session (Cease/Administrative Reset), or with `soft` re-send everything both ways.
    Reset { soft: bool },
    /// Send this NOTIFICATION (none: close silently) and end the task. `deleted`: the peer is gone, and
    /// the task's last event says so.
    Stop { notification: Option<Notification>, deleted: bool },
}

/// Everything a peer task needs from the speaker.
pub struct PeerContext {
    pub spec: PeerSpec,
    pub local_asn: u32,
    pub router_id: Ipv4Addr,
    pub shared: Arc<PeerShared>,
    pub events: broadcast::Sender<Event>,
    /// Set the Restart State bit in the first OPEN (graceful restart after our own restart).
    pub restarting: bool,
    pub seed: u64,
    /// The BFD session tied to this peer, if it has a BFD profile.
    pub bfd: Option<tokio::sync::watch::Receiver<crate::bfd::BfdStatus>>,
}

#[derive(Debug)]
enum ConnEvent {
    Frame(BytesMut),
    Bad(wire::WireError),
    Closed(String),
}

enum WriterMsg {
    Bytes(Bytes),
    /// UPDATEs from now on, with this encoder; the Adj-RIB-Out's epoch of the session (None: this task
    /// no longer owns the Adj-RIB-Out, so the writer never lends its socket to the fast path).
    StartUpdates(Box<Encoder>, Option<u64>),
    Close,
}

/// See [`PeerShared::changed`].
#[derive(Debug, Default)]
struct IdleWriter {
    armed: Option<Armed>,
    /// Bytes the fast path took from the Adj-RIB-Out but the socket did not take, and the writer they
    /// belong to: it writes them before anything else.
    leftover: BytesMut,
    leftover_of: u64,
}

/// A waiting writer's socket and encoder, valid for one task and one epoch of the Adj-RIB-Out.
#[derive(Debug)]
struct Armed {
    /// Unique per writer (a task has one per connection).
    writer: u64,
    task: u64,
    epoch: u64,
    w: Arc<OwnedWriteHalf>,
    enc: Arc<Encoder>,
}

struct ConnIo {
    ctl: mpsc::Sender<WriterMsg>,
    local: SocketAddr,
    remote: SocketAddr,
    /// The other addresses of the local address's interface, read when the connection was made: the
    /// next hop of the other family. Reading them (getifaddrs(3), two netlink dumps) at Established
    /// delayed the first UPDATE by up to 0.1 ms.
    local_others: Vec<IpAddr>,
    drain: Option<oneshot::Sender<()>>,
    _reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
}

/// Timer slots, with one sleep armed to the earliest deadline.
struct Timers {
    deadlines: HashMap<Timer, tokio::time::Instant>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Timers {
    fn new() -> Self {
        Self { deadlines: HashMap::new(), sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))) }
    }
    fn arm(&mut self, t: Timer, d: Duration) {
        self.deadlines.insert(t, tokio::time::Instant::now() + d);
    }
    fn disarm(&mut self, t: Timer) {
        self.deadlines.remove(&t);
    }
    /// Cancel-safe: all state is in `self`; a dropped call loses nothing.
    async fn next(&mut self) -> Timer {
        loop {
            let Some((&t, &at)) = self.deadlines.iter().min_by_key(|(_, at)| **at) else {
                return std::future::pending().await;
            };
            self.sleep.as_mut().reset(at);
            self.sleep.as_mut().await;
            if self.deadlines.get(&t) == Some(&at) {
                self.deadlines.remove(&t);
                return t;
            }
        }
    }
}

/// Received prefixes, counted per family up to a limit; nothing else of a peer's routes is kept.
struct AdjRibIn {
    sets: [HashSet<IpNet>; 2],
    max: u32,
    dropped: u64,
}

impl AdjRibIn {
    fn idx(p: &IpNet) -> usize {
        usize::from(matches!(p, IpNet::V6(_)))
    }
    fn add(&mut self, p: IpNet) {
        let s = &mut self.sets[Self::idx(&p)];
        if s.contains(&p) {
            return;
        }
        if s.len() as u64 >= u64::from(self.max) {
            self.dropped += 1;
            return;
        }
        s.insert(p);
    }
    fn remove(&mut self, p: &IpNet) {
        self.sets[Self::idx(p)].remove(p);
    }
    fn clear(&mut self) {
        self.sets = [HashSet::new(), HashSet::new()];
    }
    fn counts(&self) -> [u64; 2] {
        [self.sets[0].len() as u64, self.sets[1].len() as u64]
    }
}

/// Bounded queue of control messages per connection. When it is full the socket is not draining and
/// the hold timer on the other side is the judge; we drop the extra keepalive.
const CTL_QUEUE: usize = 16;
/// Frames buffered between a reader and the peer task (each ≤ 4096 bytes).
const FRAME_QUEUE: usize = 64;

/// One peer's task.
pub struct PeerTask {
    /// Unique per task; see [`PeerShared::current_task`].
    id: u64,
    spec: PeerSpec,
    local_asn: u32,
    fsm: Fsm,
    shared: Arc<PeerShared>,
    events: broadcast::Sender<Event>,
    cmds: mpsc::Receiver<PeerCmd>,
    conns: HashMap<ConnId, ConnIo>,
    conn_tx: mpsc::Sender<(ConnId, ConnEvent)>,
    conn_rx: mpsc::Receiver<(ConnId, ConnEvent)>,
    connecting: Option<(AbortOnDropHandle<()>, oneshot::Receiver<std::io::Result<TcpStream>>)>,
    timers: Timers,
    next_id: ConnId,
    adj_in: AdjRibIn,
    up: Option<(ConnId, DecodeCtx)>,
    /// The AS of the peer's OPEN on the Established connection (the configured one, or the one that a
    /// dynamic ASN took).
    up_peer_asn: u32,
    state: State,
    stop_after: bool,
    /// Set when a family passed max_received_prefixes with cease_on_max_prefixes: sent after the
    /// current input is handled.
    pending_cease: Option<Notification>,
    /// The peer was deleted: the next state event (or, if none, a final one) carries `deleted`.
    deleted: bool,
    deleted_sent: bool,
    bfd: Option<tokio::sync::watch::Receiver<crate::bfd::BfdStatus>>,
    bfd_state: crate::bfd::packet::BfdState,
    /// Stopped by BFD: start again when BFD is Up.
    bfd_hold: bool,
    /// Reader and writer tasks of closed connections, still flushing or draining.
    closing: Vec<tokio::task::JoinHandle<()>>,
}

impl PeerTask {
    pub fn new(ctx: PeerContext, cmds: mpsc::Receiver<PeerCmd>) -> Self {
        let s = &ctx.spec;
        let cfg = FsmConfig {
            local_asn: ctx.local_asn,
            peer_as: s.peer_as(),
            router_id: ctx.router_id,
            hold_time: s.hold_time,
            keepalive: s.keepalive,
            connect_retry: s.connect_time,
            passive: s.passive,
            families: s.families.clone(),
            graceful_restart: s.graceful_restart.map(|t| GrConfig { restart_time: t, restarting: ctx.restarting }),
            extended_next_hop: true,
        };
        let (conn_tx, conn_rx) = mpsc::channel(FRAME_QUEUE);
        static TASK_IDS: AtomicU64 = AtomicU64::new(1);
        let id = TASK_IDS.fetch_add(1, Ordering::Relaxed);
        ctx.shared.current_task.store(id, Ordering::Release);
        Self {
            id,
            adj_in: AdjRibIn { sets: [HashSet::new(), HashSet::new()], max: s.max_received_prefixes, dropped: 0 },
            spec: ctx.spec,
            local_asn: ctx.local_asn,
            fsm: Fsm::new(cfg, ctx.seed),
            shared: ctx.shared,
            events: ctx.events,
            cmds,
            conns: HashMap::new(),
            conn_tx,
            conn_rx,
            connecting: None,
            timers: Timers::new(),
            next_id: 1,
            up: None,
            up_peer_asn: 0,
            state: State::Idle,
            stop_after: false,
            pending_cease: None,
            deleted: false,
            deleted_sent: false,
            bfd: ctx.bfd,
            bfd_state: crate::bfd::packet::BfdState::Down,
            bfd_hold: false,
            closing: Vec::new(),
        }
    }

    /// Is this the peer's newest task? (See [`PeerShared::current_task`].)
    fn current(&self) -> bool {
        self.shared.current_task.load(Ordering::Acquire) == self.id
    }

    /// Edits the Adj-RIB-Out, unless a newer task has taken the peer over.
    fn rib(&self, f: impl FnOnce(&mut AdjRibOut, &ExportTable)) {
        if self.current() {
            self.shared.with_rib(f);
        }
    }

    /// [`Self::rib`] for a change that starts an epoch: the new epoch, None if this task is no longer
    /// the peer's.
    fn rib_epoch(&self, f: impl FnOnce(&mut AdjRibOut)) -> Option<u64> {
        let mut epoch = None;
        self.rib(|r, _| {
            f(r);
            epoch = Some(r.epoch());
        });
        epoch
    }

    /// Edits the status, unless a newer task has taken the peer over.
    fn status_mut(&self, f: impl FnOnce(&mut PeerStatus)) {
        if self.current() {
            self.shared.with_status(f);
        }
    }

    /// Runs until cancelled or stopped. On cancel, Cease/Administrative Shutdown is sent, or, when
    /// graceful restart is negotiated, the connection is closed silently so the peer keeps our routes.
    pub async fn run(mut self, cancel: CancellationToken) {
        // A task this one replaces may have left its session's state: this task has no session yet.
        self.rib(|r, _| r.session_down());
        self.status_mut(|s| {
            s.negotiated = None;
            s.received = [0; 2];
        });
        self.apply(Input::Start);
        loop {
            let input = tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    let gr = self.shared.status().negotiated.is_some_and(|n| n.negotiated.graceful_restart);
                    let n = (!gr).then(|| Notification::cease(err::cease::ADMINISTRATIVE_SHUTDOWN));
                    self.stop_after = true;
                    Input::Stop(n)
                }
                t = self.timers.next() => Input::Expired(t),
                Some(cmd) = self.cmds.recv() => match self.command(cmd) {
                    Some(i) => i,
                    None => continue,
                },
                r = async { self.connecting.as_mut().map(|c| &mut c.1).expect("guarded").await }, if self.connecting.is_some() => {
                    self.connecting = None;
                    match r {
                        Ok(Ok(stream)) => {
                            let id = self.register(stream);
                            Input::Connected(id, Dir::Outgoing)
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "connect failed");
                            self.status_mut(|s| s.last_error = format!("connect: {e}"));
                            Input::ConnectFailed
                        }
                        Err(_) => Input::ConnectFailed,
                    }
                }
                Some((id, ev)) = self.conn_rx.recv() => match self.conn_event(id, ev) {
                    Some(i) => i,
                    None => continue,
                },
                r = async { self.bfd.as_mut().expect("guarded").changed().await }, if self.bfd.is_some() => {
                    if r.is_err() {
                        self.bfd = None;
                        continue;
                    }
                    match self.bfd_changed() {
                        Some(i) => i,
                        None => continue,
                    }
                }
            };
            self.apply(input);
            if let Some(n) = self.pending_cease.take() {
                self.apply(Input::Stop(Some(n)));
            }
            if self.stop_after {
                break;
            }
        }
        self.finish().await;
    }

    /// Waits briefly for writers to flush their last NOTIFICATION.
    async fn finish(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.drop_conn(id);
        }
        let tasks = std::mem::take(&mut self.closing);
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            for t in tasks {
                let _ = t.await;
            }
        })
        .await;
        self.rib(|r, _| r.session_down());
        self.set_state(State::Idle, "stopped");
        if self.deleted && !self.deleted_sent {
            self.emit(State::Idle, State::Idle, "deleted".into());
        }
    }

    fn command(&mut self, cmd: PeerCmd) -> Option<Input> {
        match cmd {
            PeerCmd::Incoming(stream) => {
                let local_ok = match (self.spec.source_address, stream.local_addr()) {
                    (Some(src), Ok(l)) => crate::netif::canonical(l.ip()) == src,
                    _ => true,
                };
                if !local_ok {
                    tracing::info!("incoming connection to a local address other than source_address: rejected");
                    return None;
                }
                if let Err(e) =
                    transport::tune_accepted(&stream, self.spec.ttl(self.local_asn), self.spec.gtsm.then_some(255))
                {
                    tracing::warn!(error = %e, "cannot set TTL on accepted connection");
                }
                let id = self.register(stream);
                Some(Input::Connected(id, Dir::Incoming))
            }
            PeerCmd::Tune(spec) => {
                self.fsm.tune(spec.keepalive, spec.connect_time);
                self.adj_in.max = spec.max_received_prefixes;
                let nh_changed = spec.next_hop_v4 != self.spec.next_hop_v4 || spec.next_hop_v6 != self.spec.next_hop_v6;
                self.spec = *spec;
                if nh_changed {
                    self.restart_updates();
                }
                None
            }
            PeerCmd::Reset { soft: true } => {
                self.rib(|r, _| r.resend_all());
                // Inbound soft reset: ask the peer to send its routes again (RFC 2918).
                if let Some((id, _)) = self.up {
                    let info = self.shared.status().negotiated;
                    if let Some(n) = info.filter(|i| i.negotiated.route_refresh) {
                        for f in n.negotiated.families {
                            self.send(id, Message::RouteRefresh(wire::RouteRefresh { family: f, subtype: 0 }));
                        }
                    }
                }
                None
            }
            PeerCmd::Reset { soft: false } => {
                self.apply(Input::Stop(Some(Notification::cease(err::cease::ADMINISTRATIVE_RESET))));
                Some(Input::Start)
            }
            PeerCmd::Stop { notification, deleted } => {
                self.stop_after = true;
                self.deleted = deleted;
                Some(Input::Stop(notification))
            }
        }
    }

    /// BFD went from Up to down: the path is gone, so the session goes now (RFC 9384: Cease / BFD Down)
    /// instead of when the hold timer runs out; it reconnects as usual.
    fn bfd_changed(&mut self) -> Option<Input> {
        use crate::bfd::packet::BfdState;
        let st = *self.bfd.as_mut()?.borrow_and_update();
        let old = std::mem::replace(&mut self.bfd_state, st.state);
        self.status_mut(|s| s.bfd = Some(st));
        if old == st.state {
            return None;
        }
        let _ = self.events.send(Event::Bfd(crate::events::BfdEvent {
            address: self.spec.address,
            old,
            new: st.state,
            diag: st.diag,
            at: SystemTime::now(),
        }));
        if old == BfdState::Up && st.state != BfdState::Up {
            // The session stays down (Idle) until BFD is Up again: reconnecting over a path BFD calls
            // dead would only bring back routes that do not forward.
            tracing::warn!(diag = st.diag, "BFD session down: resetting the BGP session until BFD is up again");
            self.bfd_hold = true;
            self.status_mut(|s| s.last_error = "BFD session down".into());
            return Some(Input::Stop(Some(Notification::cease(err::cease::BFD_DOWN))));
        }
        if st.state == BfdState::Up && std::mem::take(&mut self.bfd_hold) {
            tracing::info!("BFD session up again: reconnecting");
            return Some(Input::Start);
        }
        None
    }

    fn conn_event(&mut self, id: ConnId, ev: ConnEvent) -> Option<Input> {
        if !self.conns.contains_key(&id) {
            return None; // a connection we already closed
        }
        match ev {
            ConnEvent::Frame(f) => {
                let ctx = self.up.filter(|(c, _)| *c == id).map(|(_, x)| x).unwrap_or_default();
                // The decoder never panics by design (fuzzed and property-tested). Should it ever, that
                // is a bug: the connection is dropped as if it had closed, and every other session goes on.
                let decoded = std::panic::catch_unwind(|| wire::decode(&f, &ctx));
                let Ok(decoded) = decoded else {
                    tracing::error!(bytes = f.len(), "BUG: decoder panicked on a message; closing this connection");
                    self.drop_conn(id);
                    return Some(Input::Closed(id));
                };
                Some(match decoded {
                    Ok(m) => {
                        self.count_in(&m);
                        Input::Msg(id, m)
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, bytes = f.len(), "malformed message from peer");
                        Input::Bad(id, e)
                    }
                })
            }
            ConnEvent::Bad(e) => {
                tracing::warn!(error = %e, "malformed message header from peer");
                Some(Input::Bad(id, e))
            }
            ConnEvent::Closed(why) => {
                tracing::debug!(%why, "connection closed");
                self.drop_conn(id);
                Some(Input::Closed(id))
            }
        }
    }

    fn count_in(&self, m: &Message) {
        self.status_mut(|s| match m {
            Message::Update(_) => s.updates_received += 1,
            Message::Keepalive => s.keepalives_received += 1,
            Message::Notification(n) => {
                s.notifications_received += 1;
                s.last_notification_received = Some(n.clone());
            }
            _ => {}
        });
        if let Message::Notification(n) = m {
            tracing::warn!(code = n.code, subcode = n.subcode, notification = %n.description(), "notification received");
        }
    }

    /// Splits a stream into reader and writer tasks and gives it an id.
    fn register(&mut self, stream: TcpStream) -> ConnId {
        let id = self.next_id;
        self.next_id += 1;
        let local = stream.local_addr().map(|a| SocketAddr::new(crate::netif::canonical(a.ip()), a.port()));
        let remote = stream.peer_addr().map(|a| SocketAddr::new(crate::netif::canonical(a.ip()), a.port()));
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let (r, w) = stream.into_split();
        let (ctl_tx, ctl_rx) = mpsc::channel(CTL_QUEUE);
        let (drain_tx, drain_rx) = oneshot::channel();
        let reader = tokio::spawn(run_reader(r, id, self.conn_tx.clone(), drain_rx));
        let writer = tokio::spawn(run_writer(w, ctl_rx, self.shared.clone(), self.id));
        self.conns.insert(
            id,
            ConnIo {
                ctl: ctl_tx,
                local_others: local.as_ref().map(|l| self.local_others(l.ip())).unwrap_or_default(),
                local: local.unwrap_or(unspecified),
                remote: remote.unwrap_or(unspecified),
                drain: Some(drain_tx),
                _reader: reader,
                writer,
            },
        );
        id
    }

    fn drop_conn(&mut self, id: ConnId) {
        if let Some(mut c) = self.conns.remove(&id) {
            let _ = c.ctl.try_send(WriterMsg::Close);
            if let Some(d) = c.drain.take() {
                let _ = d.send(());
            }
            // Kept so that `finish` can wait for the last NOTIFICATION to be written and the peer to
            // close, instead of the process exiting with a bare FIN (found by tests/bgp_failures.rs).
            self.closing.retain(|h| !h.is_finished());
            self.closing.push(c.writer);
            self.closing.push(c._reader);
        }
    }

    fn send(&mut self, id: ConnId, m: Message) {
        let four = self.up.map(|(_, c)| c.four_octet_as).unwrap_or(true);
        let bytes = match wire::to_bytes(&m, four) {
            Ok(b) => b.freeze(),
            Err(e) => {
                tracing::error!(error = %e, kind = m.kind(), "cannot encode message");
                return;
            }
        };
        let Some(c) = self.conns.get(&id) else { return };
        if c.ctl.try_send(WriterMsg::Bytes(bytes)).is_err() {
            tracing::warn!(kind = m.kind(), "control queue full: socket not draining; message dropped");
            return;
        }
        self.status_mut(|s| match &m {
            Message::Keepalive => s.keepalives_sent += 1,
            Message::Notification(n) => {
                s.notifications_sent += 1;
                s.last_notification_sent = Some(n.clone());
            }
            _ => {}
        });
        if let Message::Notification(n) = &m {
            tracing::warn!(code = n.code, subcode = n.subcode, notification = %n.description(), "notification sent");
        }
    }

    fn apply(&mut self, input: Input) {
        for action in self.fsm.handle(input) {
            match action {
                Action::Connect => self.start_connect(),
                Action::AbortConnect => self.connecting = None,
                Action::Send(id, m) => self.send(id, m),
                Action::Close(id) => self.drop_conn(id),
                Action::Arm(t, d) => self.timers.arm(t, d),
                Action::Disarm(t) => self.timers.disarm(t),
                Action::Up(n) => self.session_up(n),
                Action::Down(reason) => self.session_down(reason),
                Action::Deliver(m) => self.deliver(m),
                Action::Failed(reason) => {
                    tracing::info!(%reason, "session attempt failed");
                    self.status_mut(|s| s.last_error = reason.to_string());
                }
            }
        }
        let st = self.fsm.state();
        if st != self.state {
            self.set_state(st, "");
        }
    }

    fn set_state(&mut self, new: State, reason: &str) {
        let old = std::mem::replace(&mut self.state, new);
        if old == new {
            return;
        }
        let reason = if reason.is_empty() && new < old { self.shared.status().last_error } else { reason.to_string() };
        tracing::info!(from = old.name(), to = new.name(), "session state");
        if !self.current() && !self.deleted {
            return; // a replaced task's last states are not the peer's
        }
        self.status_mut(|s| {
            s.state = new;
            s.since = Instant::now();
        });
        self.emit(old, new, reason);
    }

    fn emit(&mut self, old: State, new: State, reason: String) {
        let deleted = self.deleted;
        self.deleted_sent |= deleted;
        let reason = if deleted { "deleted".to_string() } else { reason };
        let _ = self.events.send(Event::Peer(PeerEvent {
            address: self.spec.address,
            name: self.spec.name.clone(),
            old,
            new,
            reason,
            deleted,
            at: SystemTime::now(),
        }));
    }

    fn start_connect(&mut self) {
        let spec = ConnectSpec {
            peer: SocketAddr::new(self.spec.address, self.spec.port),
            source: self.spec.source_address,
            md5_key: self.spec.password.as_ref().map(|p| p.as_bytes().to_vec()),
            ttl: self.spec.ttl(self.local_asn),
            min_ttl: self.spec.gtsm.then_some(255),
            timeout: self.spec.connect_time.max(Duration::from_secs(1)),
        };
        let (tx, rx) = oneshot::channel();
        let h = tokio::spawn(async move {
            let _ = tx.send(transport::connect(&spec).await);
        });
        self.connecting = Some((AbortOnDropHandle::new(h), rx));
    }

    /// The addresses of `local`'s interface, when a next hop of the other family is not set.
    fn local_others(&self, local: IpAddr) -> Vec<IpAddr> {
        let set = match local {
            IpAddr::V4(_) => self.spec.next_hop_v6.is_some(),
            IpAddr::V6(_) => self.spec.next_hop_v4.is_some(),
        };
        if set {
            return Vec::new();
        }
        crate::netif::interface_addresses_of(local)
    }

    /// Next hops and families of this session, from its local address, the other addresses of its
    /// interface and the settings.
    fn encoder(&self, n: &Negotiated, local: IpAddr, local_others: &[IpAddr]) -> Encoder {
        let others = || local_others.iter().copied();
        let (next_hop_v4, v4_over_v6, next_hop_v6) = match local {
            IpAddr::V4(l4) => {
                let v6 = self.spec.next_hop_v6.or_else(|| {
                    others().find_map(|a| match a {
                        IpAddr::V6(v6) => Some(v6),
                        _ => None,
                    })
                });
                (Some(self.spec.next_hop_v4.unwrap_or(l4)), None, v6)
            }
            IpAddr::V6(l6) => {
                let v4 = self.spec.next_hop_v4.or_else(|| {
                    if n.extended_next_hop_v4 {
                        return None;
                    }
                    others().find_map(|a| match a {
                        IpAddr::V4(v4) => Some(v4),
                        _ => None,
                    })
                });
                let over = (v4.is_none() && n.extended_next_hop_v4).then_some(self.spec.next_hop_v6.unwrap_or(l6));
                (v4, over, Some(self.spec.next_hop_v6.unwrap_or(l6)))
            }
        };
        for (fam, ok) in [
            (Family::IPV4_UNICAST, next_hop_v4.is_some() || v4_over_v6.is_some()),
            (Family::IPV6_UNICAST, next_hop_v6.is_some()),
        ] {
            if n.families.contains(&fam) && !ok {
                tracing::warn!(family = %fam, "no next hop for this family on this session: its routes are not sent; set next_hop_ipv4/next_hop_ipv6");
            }
        }
        Encoder {
            local_asn: self.local_asn,
            ibgp: n.ibgp,
            four_octet_as: n.four_octet_as,
            families: n.families.clone(),
            next_hop_v4,
            v4_over_v6,
            next_hop_v6,
            packer: Packer::default(),
        }
    }

    fn restart_updates(&mut self) {
        let Some((id, _)) = self.up else { return };
        let Some(info) = self.shared.status().negotiated else { return };
        let local = info.local.ip();
        let enc = self.encoder(&info.negotiated, local, &self.local_others(local));
        let epoch = self.rib_epoch(|r| r.resend_all());
        if let Some(c) = self.conns.get(&id) {
            let _ = c.ctl.try_send(WriterMsg::StartUpdates(Box::new(enc), epoch));
        }
    }

    fn session_up(&mut self, n: Negotiated) {
        let Some(c) = self.conns.get(&n.conn) else { return };
        let (local, remote) = (c.local, c.remote);
        let enc = self.encoder(&n, local.ip(), &c.local_others);
        tracing::info!(
            hold_time = n.hold_time,
            families = ?n.families.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
            four_octet_as = n.four_octet_as,
            graceful_restart = n.graceful_restart,
            %local,
            "session established"
        );
        self.up = Some((n.conn, DecodeCtx { four_octet_as: n.four_octet_as, ibgp: n.ibgp }));
        self.up_peer_asn = n.peer_asn;
        self.fsm.set_restarting(false);
        let epoch = self.rib_epoch(|r| r.session_up(&n.families));
        let _ = c.ctl.try_send(WriterMsg::StartUpdates(Box::new(enc), epoch));
        // State and session info change together, so a reader never sees one without the other.
        self.status_mut(|s| {
            s.state = State::Established;
            s.since = Instant::now();
            s.established_count += 1;
            s.last_error.clear();
            s.negotiated = Some(SessionInfo { negotiated: n, local, remote });
        });
    }

    fn session_down(&mut self, reason: DownReason) {
        match &reason {
            DownReason::AdminStop(_) => tracing::info!(%reason, "session down"),
            _ => tracing::warn!(%reason, "session down"),
        }
        self.up = None;
        self.adj_in.clear();
        self.rib(|r, _| r.session_down());
        let state = self.fsm.state();
        self.status_mut(|s| {
            s.state = state;
            s.since = Instant::now();
            s.dropped_count += 1;
            s.negotiated = None;
            s.received = [0; 2];
            s.last_error = reason.to_string();
        });
    }

    fn deliver(&mut self, m: Message) {
        match m {
            Message::Update(u) => self.received_update(u),
            // RFC 7313 §4: subtype 0 asks for the table; 1 and 2 (BoRR/EoRR) mark the peer's own
            // re-advertisement and ask nothing of us; others are ignored.
            Message::RouteRefresh(rr) if rr.subtype == 0 => {
                tracing::debug!(family = %rr.family, "route refresh requested");
                self.rib(|r, _| r.resend_all());
            }
            Message::RouteRefresh(rr) => {
                tracing::debug!(family = %rr.family, subtype = rr.subtype, "route refresh marker ignored")
            }
            _ => {}
        }
    }

    /// Counts received prefixes. RFC 7606 verdicts: treat-as-withdraw removes every route of the UPDATE;
    /// attribute-discard changes nothing we keep. An eBGP path not starting with the peer's AS is
    /// treat-as-withdraw (RFC 4271 §6.3, RFC 7606 §7.2).
    fn received_update(&mut self, u: Update) {
        let dropped_before = self.adj_in.dropped;
        let mut withdraw_all = u.treat_as_withdraw();
        let ibgp = self.spec.peer_as().ibgp(self.local_asn);
        let reach: Vec<IpNet> = u
            .nlri
            .iter()
            .map(|p| IpNet::V4(*p))
            .chain(u.attrs.mp_reach.iter().flat_map(|m| m.nlri.iter().copied()))
            .collect();
        if !ibgp && !reach.is_empty() && !withdraw_all {
            let first = u.attrs.as_path.as_ref().and_then(|p| p.first_as());
            if first != Some(self.up_peer_asn) {
                tracing::warn!(first_as = ?first, "AS_PATH does not start with the peer's AS: treat-as-withdraw");
                withdraw_all = true;
            }
        }
        for f in &u.faults {
            tracing::warn!(attr = f.code, verdict = ?f.verdict, error = %f.error, "RFC 7606: malformed attribute");
        }
        let discarded = u.faults.iter().filter(|f| f.verdict == Verdict::AttributeDiscard).count() as u64;
        for p in u
            .withdrawn
            .iter()
            .map(|p| IpNet::V4(*p))
            .chain(u.attrs.mp_unreach.iter().flat_map(|m| m.withdrawn.iter().copied()))
        {
            self.adj_in.remove(&p);
        }
        for p in reach {
            if withdraw_all {
                self.adj_in.remove(&p);
            } else {
                self.adj_in.add(p);
            }
        }
        let counts = self.adj_in.counts();
        let dropped = self.adj_in.dropped;
        if dropped > dropped_before {
            if self.spec.cease_on_max_prefixes {
                if self.pending_cease.is_none() {
                    let v6 = self.adj_in.sets[1].len() as u64 >= u64::from(self.adj_in.max);
                    let mut data = vec![0, if v6 { 2 } else { 1 }, 1];
                    data.extend_from_slice(&self.adj_in.max.to_be_bytes());
                    tracing::warn!(
                        limit = self.adj_in.max,
                        "maximum received prefixes reached: Cease, the session stays down until reset"
                    );
                    self.status_mut(|s| {
                        s.last_error = format!(
                            "maximum received prefixes ({}) reached: Cease sent; reset the peer to retry",
                            self.adj_in.max
                        )
                    });
                    self.pending_cease = Some(Notification::new(6, err::cease::MAX_PREFIXES, data));
                }
            } else if dropped_before == 0 {
                tracing::warn!(
                    limit = self.adj_in.max,
                    "maximum received prefixes reached: further prefixes are dropped"
                );
            }
        }
        self.status_mut(|s| {
            s.received = counts;
            s.dropped_prefixes = dropped;
            s.attributes_discarded += discarded;
            if withdraw_all {
                s.treated_as_withdraw += 1;
            }
        });
    }
}

/// Reads, frames and forwards messages. Framing errors are reported and reading stops; after a drain
/// signal, reads and discards for a short while so that our last NOTIFICATION is not lost to a RST.
async fn run_reader(
    mut r: OwnedReadHalf,
    id: ConnId,
    tx: mpsc::Sender<(ConnId, ConnEvent)>,
    mut drain: oneshot::Receiver<()>,
) {
    let mut buf = BytesMut::with_capacity(2 * wire::MAX_MESSAGE_LEN);
    loop {
        loop {
            match wire::frame(&buf, wire::MAX_MESSAGE_LEN) {
                Ok(Some(n)) => {
                    let f = buf.split_to(n);
                    if tx.send((id, ConnEvent::Frame(f))).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = tx.send((id, ConnEvent::Bad(e))).await;
                    drain_for(&mut r, Duration::from_secs(3)).await;
                    return;
                }
            }
        }
        buf.reserve(wire::MAX_MESSAGE_LEN);
        tokio::select! {
            _ = &mut drain => {
                drain_for(&mut r, Duration::from_secs(3)).await;
                return;
            }
            res = r.read_buf(&mut buf) => match res {
                Ok(0) => {
                    let _ = tx.send((id, ConnEvent::Closed("end of stream".into()))).await;
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send((id, ConnEvent::Closed(e.to_string()))).await;
                    return;
                }
            },
        }
    }
}

async fn drain_for(r: &mut OwnedReadHalf, d: Duration) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(d, async {
        while let Ok(n) = r.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

/// Owns the write half. Control messages first; UPDATEs pulled from the Adj-RIB-Out between them.
/// While it waits with nothing to send, it lends the socket and encoder to [`PeerShared::changed`].
async fn run_writer(w: OwnedWriteHalf, mut ctl: mpsc::Receiver<WriterMsg>, shared: Arc<PeerShared>, task: u64) {
    static WRITER_IDS: AtomicU64 = AtomicU64::new(1);
    let me = WRITER_IDS.fetch_add(1, Ordering::Relaxed);
    let w = Arc::new(w);
    let mut enc: Option<(Arc<Encoder>, Option<u64>)> = None;
    // Allocated while there is something to send, dropped when the writer goes idle: 1000 idle sessions
    // would otherwise keep 1000 resident buffers of up to 128 KiB.
    let mut batch = BytesMut::new();
    // Bytes of UPDATEs written since the writer was last idle, and the size of the next batch: small
    // after idle, so the first UPDATE leaves at once, doubling while there is more.
    let mut burst = 0usize;
    let mut limit = rib_out::BATCH_FIRST;
    // A control message that woke the writer from its wait, handled at the top like any other.
    let mut woken_by: Option<WriterMsg> = None;
    loop {
        let msg = match woken_by.take() {
            Some(m) => Some(m),
            None => match ctl.try_recv() {
                Ok(m) => Some(m),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => None,
            },
        };
        match msg {
            Some(WriterMsg::Bytes(b)) => {
                if write_all(&w, &b).await.is_err() {
                    break;
                }
                if is_notification(&b) {
                    enc = None; // nothing may follow it (RFC 4271 §4.5)
                }
                continue;
            }
            Some(WriterMsg::StartUpdates(e, epoch)) => {
                enc = Some((Arc::from(e), epoch));
                continue;
            }
            Some(WriterMsg::Close) => break,
            None => {}
        }
        if let Some((e, _)) = &enc {
            batch.clear();
            if batch.capacity() == 0 {
                batch.reserve(128 * 1024);
            }
            let Some(st) = shared.take_batch(e, &mut batch, limit) else { break };
            if !batch.is_empty() {
                if write_all(&w, &batch).await.is_err() {
                    break;
                }
                burst += batch.len();
                limit = rib_out::next_batch_limit(limit);
                shared.with_status(|s| s.updates_sent += st.updates);
                continue;
            }
        }
        batch = BytesMut::new();
        if burst >= 64 << 10 {
            crate::mem::release_freed_memory_later();
        }
        burst = 0;
        limit = rib_out::BATCH_FIRST;
        if let Some((e, Some(epoch))) = &enc {
            shared.arm(Armed { writer: me, task, epoch: *epoch, w: w.clone(), enc: e.clone() });
        }
        // None: the Adj-RIB-Out has work; Some(None): the session task is gone.
        let woken = tokio::select! {
            biased;
            m = ctl.recv() => Some(m),
            _ = shared.rib_notify.notified(), if enc.is_some() => None,
        };
        // The rest of a message the fast path cut goes first.
        let rest = shared.disarm(me);
        if !rest.is_empty() && write_all(&w, &rest).await.is_err() {
            break;
        }
        match woken {
            Some(Some(m)) => woken_by = Some(m),
            Some(None) => break,
            None => {}
        }
    }
    shared.disarm(me);
    if let Ok(mut w) = Arc::try_unwrap(w) {
        let _ = w.shutdown().await;
    }
}

fn is_notification(b: &[u8]) -> bool {
    b.get(18) == Some(&3)
}

/// `write_all` on a write half that the fast path may borrow between writes.
async fn write_all(w: &OwnedWriteHalf, mut buf: &[u8]) -> std::io::Result<()> {
    while !buf.is_empty() {
        w.writable().await?;
        match w.try_write(buf) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use speaker_api::v1 as pb;

    fn task(shared: &Arc<PeerShared>, events: &broadcast::Sender<Event>) -> PeerTask {
        let cfg = pb::PeerConfig { address: "192.0.2.2".into(), peer_asn: 65002, ..Default::default() };
        let spec = PeerSpec::try_from(&cfg).expect("valid peer");
        let ctx = PeerContext {
            spec,
            local_asn: 65001,
            router_id: "192.0.2.1".parse().unwrap(),
            shared: shared.clone(),
            events: events.clone(),
            restarting: false,
            seed: 1,
            bfd: None,
        };
        PeerTask::new(ctx, mpsc::channel(1).1)
    }

    /// A connected pair on loopback: the writer's half (with `sndbuf` if given) and the peer's socket.
    async fn pair(sndbuf: Option<u32>) -> (OwnedWriteHalf, std::net::TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        if let Some(b) = sndbuf {
            sock.set_send_buffer_size(b).unwrap();
        }
        let (c, a) = tokio::join!(sock.connect(l.local_addr().unwrap()), l.accept());
        let peer = a.unwrap().0.into_std().unwrap();
        peer.set_nonblocking(false).unwrap();
        (c.unwrap().into_split().1, peer)
    }

    /// A writer on an Established session (IPv4), its table and its shared state, idle after the
    /// End-of-RIB, which `peer` has read.
    struct Rig {
        exports: Arc<Exports>,
        shared: Arc<PeerShared>,
        peer: std::net::TcpStream,
        ctl: mpsc::Sender<WriterMsg>,
        writer: tokio::task::JoinHandle<()>,
    }

    impl Rig {
        async fn new(sndbuf: Option<u32>) -> Rig {
            let exports = Arc::new(RwLock::new(ExportTable::new()));
            let sel = Selector { name: "p".into(), address: "192.0.2.2".parse().unwrap() };
            let shared = Arc::new(PeerShared::new(exports.clone(), sel));
            let task = 7;
            shared.current_task.store(task, Ordering::Release);
            let (w, mut peer) = pair(sndbuf).await;
            let (ctl, ctl_rx) = mpsc::channel(8);
            let writer = tokio::spawn(run_writer(w, ctl_rx, shared.clone(), task));
            let epoch = shared.with_rib(|r, _| {
                r.session_up(&[Family::IPV4_UNICAST]);
                r.epoch()
            });
            ctl.send(WriterMsg::StartUpdates(Box::new(rib_out::tests::enc(true)), epoch)).await.unwrap();
            // the writer sends the End-of-RIB, then waits with its socket lent
            while shared.idle.lock().unwrap().armed.is_none() {
                tokio::task::yield_now().await;
            }
            let eor = read_updates(&mut peer, 1).await;
            assert!(eor.len() == 1 && eor[0].nlri.is_empty() && eor[0].withdrawn.is_empty(), "{eor:?}");
            Rig { exports, shared, peer, ctl, writer }
        }

        /// The table change of announcing `prefixes`, as the speaker makes it.
        fn announce(&self, prefixes: impl IntoIterator<Item = IpNet>) -> Vec<Change> {
            let a: crate::bgp::export::Attrs = Arc::default();
            let mut t = self.exports.write().unwrap();
            prefixes.into_iter().filter_map(|p| t.set(p, Some(crate::bgp::export::Want::All(a.clone())))).collect()
        }
    }

    /// Reads whole messages from `peer` until `n` UPDATEs (blocking, the runtime's thread included: the
    /// writer task cannot run meanwhile). Gives up after 2 s with what it has.
    async fn read_updates(peer: &mut std::net::TcpStream, n: usize) -> Vec<Update> {
        use std::io::Read;
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        loop {
            let got = rib_out::tests::messages_prefix(&buf);
            if got.len() >= n {
                return got;
            }
            match peer.read(&mut chunk) {
                Ok(0) | Err(_) => return got,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
    }

    fn v4n(i: u32) -> ipnet::Ipv4Net {
        ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap()
    }

    fn v4(i: u32) -> IpNet {
        IpNet::V4(v4n(i))
    }

    #[tokio::test]
    async fn an_idle_writers_update_is_written_by_the_caller() {
        let mut rig = Rig::new(None).await;
        // The caller writes: the UPDATE is readable while this thread, the runtime's only one, has not
        // yielded once, so the writer task cannot have run.
        let c = rig.announce([v4(1)]);
        rig.shared.changed(&c, true);
        let got = read_updates(&mut rig.peer, 1).await;
        assert_eq!(got.len(), 1, "no UPDATE before the writer ran");
        assert_eq!(got[0].nlri, vec![v4n(1)]);
        assert_eq!(rig.shared.status().updates_sent, 2, "the End-of-RIB and this one");
        assert!(rig.shared.idle.lock().unwrap().armed.is_some(), "still lent: nothing left to the writer");
        // Without write-through it is the writer's, once it runs.
        let c = rig.announce([v4(2)]);
        rig.shared.changed(&c, false);
        {
            rig.peer.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
            let mut b = [0u8; 64];
            assert!(std::io::Read::read(&mut rig.peer, &mut b).is_err(), "written without the writer");
        }
        tokio::task::yield_now().await;
        let got = read_updates(&mut rig.peer, 1).await;
        assert_eq!(got.iter().map(|u| u.nlri.clone()).collect::<Vec<_>>(), vec![vec![v4n(2)]]);
        // A new epoch (the session went down and up again) and the lent socket is no longer used.
        let c = rig.announce([v4(3)]);
        rig.shared.with_rib(|r, _| r.session_down());
        rig.shared.changed(&c, true);
        assert!(rig.shared.idle.lock().unwrap().armed.is_some(), "the writer has not run");
        rig.peer.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut b = [0u8; 64];
        assert!(std::io::Read::read(&mut rig.peer, &mut b).is_err(), "written on a stale epoch");
        drop(rig.ctl);
        rig.writer.await.unwrap();
    }

    #[tokio::test]
    async fn what_the_socket_does_not_take_is_written_by_the_writer_in_order() {
        let mut rig = Rig::new(Some(4096)).await;
        // The peer does not read: the socket fills, a write-through is cut short, and from then on the
        // writer (blocked, not lent) has the rest. Every prefix must arrive once, in whole messages.
        let (mut next, mut cut) = (0u32, false);
        for _ in 0..400 {
            let c = rig.announce((next..next + 300).map(v4));
            next += 300;
            rig.shared.changed(&c, true);
            cut |= !rig.shared.idle.lock().unwrap().leftover.is_empty();
        }
        assert!(cut, "the socket always took the whole batch: no cut message was handed over");
        let reader = std::thread::spawn(move || {
            use std::io::Read;
            rig.peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            let mut seen = HashSet::new();
            while seen.len() < next as usize {
                match rig.peer.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
                let n = rib_out::tests::complete_len(&buf);
                for u in rib_out::tests::messages(&buf[..n]) {
                    for p in u.nlri {
                        assert!(seen.insert(p), "{p} sent twice");
                    }
                }
                buf.drain(..n);
            }
            seen.len()
        });
        // the writer runs while the reader drains
        let got = loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if reader.is_finished() {
                break reader.join().unwrap();
            }
        };
        assert_eq!(got, next as usize);
        drop(rig.ctl);
        rig.writer.await.unwrap();
    }

    #[tokio::test]
    async fn a_replaced_task_no_longer_writes_the_peer_state() {
        let exports = Arc::new(RwLock::new(ExportTable::new()));
        let sel = Selector { name: "p".into(), address: "192.0.2.2".parse().unwrap() };
        let shared = Arc::new(PeerShared::new(exports, sel));
        let (events, mut rx) = broadcast::channel(16);
        let mut old = task(&shared, &events);
        old.status_mut(|s| s.state = State::Established);
        assert_eq!(shared.status().state, State::Established, "the newest task writes");
        let new = task(&shared, &events);
        // the old task, still closing, goes through its last steps
        old.status_mut(|s| s.last_error = "stopped".into());
        old.rib(|r, _| r.session_up(&[Family::IPV4_UNICAST]));
        old.set_state(State::Idle, "stopped");
        assert_eq!(shared.status().state, State::Established, "{:?}", shared.status());
        assert!(shared.status().last_error.is_empty());
        assert!(!shared.rib.lock().unwrap().pending(), "the old task did not touch the Adj-RIB-Out");
        assert!(rx.try_recv().is_err(), "no event from the replaced task");
        new.status_mut(|s| s.state = State::Connect);
        assert_eq!(shared.status().state, State::Connect);
    }
}
