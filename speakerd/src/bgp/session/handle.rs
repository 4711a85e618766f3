//! The one door between a peer's session and the rest of speakerd (the speaker, the API, metrics):
//! what they see of it ([`PeerStatus`]), the state they share with it ([`PeerShared`]), what they send
//! it ([`PeerContext`] at spawn, [`PeerCmd`] after), and every message between the session's own tasks
//! ([`ConnEvent`] from a reader, [`WriterMsg`] to a writer, the writer's loan [`Armed`]).
//!
//! # Exceptions to one-way data flow
//!
//! Data flows one way: the speaker marks changes in a peer's Adj-RIB-Out and wakes its writer; the peer
//! task drives the FSM and sends control messages to the writer; the writer writes the socket; readers
//! feed the peer task; the peer task writes the status that the API and metrics read. Three measured
//! optimisations make data flow back across that line. They are kept, and kept here, so that there is
//! one place to read them:
//!
//! 1. **Write-through from the API call** ([`PeerShared::changed`], [`IdleWriter`], [`Armed`]). While a
//!    writer waits with nothing to send, it lends its socket and encoder to the shared state, tagged
//!    with its task and the Adj-RIB-Out's epoch. The API call that marks a change then encodes the first
//!    batch and writes it itself, on the caller's thread, and does not wake the writer. What the socket
//!    does not take goes back to the writer, which writes it before anything else; a stale loan (another
//!    epoch, a replaced task) is never used. Why: waking the writer was a task hop, often to the other
//!    worker thread, taken after the API reply had gone out, so the writer ran beside the caller's next
//!    work; that hop was most of the time from call to wire, and its slow tail.
//! 2. **Slot collection over the peers' `sent` bits** ([`PeerShared::rib_guard`]). The speaker, holding
//!    the export table's write lock, asks every peer's Adj-RIB-Out whether a `sent` bit still refers to
//!    a slot before the slot (and its id) is dropped. Why: the alternative, a count per slot that the
//!    writers raise and lower for every prefix and session, took a sizeable share of the encoding time,
//!    and a session going down had to walk its bits to lower the counts.
//! 3. **Counters written from two tasks** ([`PeerShared::status`]). The peer task writes the state and
//!    most counters; the writer, and an API call that wrote through, add `updates_sent`. Why: they are
//!    the ones that know what left; sending the count to the peer task would be one more message per
//!    batch for a number only the API and metrics read. A task replaced by a newer one of the same peer
//!    no longer writes (see [`PeerShared::current_task`]).
use crate::bgp::export::{Change, ExportTable, Selector};
use crate::bgp::fsm::{Negotiated, State};
use crate::bgp::rib_out::{self, AdjRibOut, BatchStats, Encoder};
use crate::bgp::wire::{self, Notification};
use crate::config::spec::PeerSpec;
use crate::events::Event;
use bytes::{Bytes, BytesMut};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, Notify};

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

/// The export table every peer reads (see [`crate::bgp::export`]).
pub type Exports = RwLock<ExportTable>;

/// State shared between a peer's task, its writer, and the speaker (which owns it across task restarts).
#[derive(Debug)]
pub struct PeerShared {
    pub status: Mutex<PeerStatus>,
    pub rib: Mutex<AdjRibOut>,
    /// Wakes the writer when the Adj-RIB-Out has work.
    pub rib_notify: Notify,
    /// The writer's socket and encoder while it waits with nothing to send (see [`PeerShared::changed`]).
    pub(super) idle: Mutex<IdleWriter>,
    exports: Arc<Exports>,
    /// The id of the newest task of this peer. A task replaced by another (a settings change that
    /// resets the session) may still be closing its connection; it no longer writes the status or the
    /// Adj-RIB-Out, which are the new session's.
    pub(super) current_task: AtomicU64,
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
    pub(super) fn with_status(&self, f: impl FnOnce(&mut PeerStatus)) {
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
    /// hop, often to the other worker thread, most of the time from call to wire, and the slow tail: the
    /// caller's reply went out first, and the writer then ran beside the caller's next work (the module
    /// header, docs/DESIGN.md). What the socket does not take, and anything beyond the first batch, is
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
    pub(super) fn arm(&self, a: Armed) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.armed = Some(a);
        }
    }

    /// Writer `writer`, awake: takes its socket back, and what the fast path could not write of its.
    /// (Another writer of this peer, of a connection still closing or just made, is left alone.)
    pub(super) fn disarm(&self, writer: u64) -> BytesMut {
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
    pub(super) fn take_batch(&self, e: &Encoder, out: &mut BytesMut, limit: usize) -> Option<BatchStats> {
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

/// From a connection's reader to the peer task.
#[derive(Debug)]
pub(super) enum ConnEvent {
    Frame(BytesMut),
    Bad(wire::WireError),
    Closed(String),
}

/// From the peer task to a connection's writer.
pub(super) enum WriterMsg {
    Bytes(Bytes),
    /// UPDATEs from now on, with this encoder; the Adj-RIB-Out's epoch of the session (None: this task
    /// no longer owns the Adj-RIB-Out, so the writer never lends its socket to the fast path).
    StartUpdates(Box<Encoder>, Option<u64>),
    Close,
}

/// See [`PeerShared::changed`].
#[derive(Debug, Default)]
pub(super) struct IdleWriter {
    pub(super) armed: Option<Armed>,
    /// Bytes the fast path took from the Adj-RIB-Out but the socket did not take, and the writer they
    /// belong to: it writes them before anything else.
    pub(super) leftover: BytesMut,
    pub(super) leftover_of: u64,
}

/// A waiting writer's socket and encoder, valid for one task and one epoch of the Adj-RIB-Out.
#[derive(Debug)]
pub(super) struct Armed {
    /// Unique per writer (a task has one per connection).
    pub(super) writer: u64,
    pub(super) task: u64,
    pub(super) epoch: u64,
    pub(super) w: Arc<OwnedWriteHalf>,
    pub(super) enc: Arc<Encoder>,
}
