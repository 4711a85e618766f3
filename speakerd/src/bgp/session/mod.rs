//! The tokio driver of one peer: the only place that owns its TCP connections.
//!
//! It translates between the world and the sans-IO [`Fsm`]: socket bytes and timer expiries become
//! [`Input`]s, and [`Action`]s become writes, timers and state reports. What it decides is decided by
//! pure modules: the FSM, the next hops ([`crate::bgp::next_hop`]), what a received UPDATE does
//! ([`crate::bgp::adj_rib_in`]), what to send ([`crate::bgp::rib_out`]).
//!
//! - [`handle`]: what the speaker and the API see and send (status, shared state, commands), every
//!   message between this peer's tasks, and the exceptions to one-way data flow.
//! - [`conn`]: per connection, a reader task and a writer task.
//! - [`timers`]: the FSM's timers.
//! - here: [`PeerTask`], the loop that owns the FSM.
use crate::bgp::adj_rib_in::{self, AdjRibIn, MaxPrefix};
use crate::bgp::export::ExportTable;
use crate::bgp::fsm::{
    Action, ConnId, ConnectFailure, Dir, DownReason, Fsm, FsmConfig, GrConfig, Input, Negotiated, State,
};
use crate::bgp::next_hop;
use crate::bgp::rib_out::{AdjRibOut, Encoder};
use crate::bgp::transport::{self, ConnectSpec};
use crate::bgp::wire::{self, iana::err, DecodeCtx, Message, Notification, Packer, Update};
use crate::config::spec::PeerSpec;
use crate::events::{Event, PeerEvent};
use conn::{run_reader, run_writer, ConnIo, CTL_QUEUE, FRAME_QUEUE};
use handle::{ConnEvent, WriterMsg};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use timers::Timers;
use tokio::net::TcpStream;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

mod conn;
mod handle;
mod timers;

pub use handle::{Exports, PeerCmd, PeerContext, PeerShared, PeerStatus, SessionInfo};

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
            adj_in: AdjRibIn::new(s.max_received_prefixes),
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
                            tracing::info!(error = %e, "connect failed");
                            self.status_mut(|s| s.last_error = format!("connect: {e}"));
                            Input::ConnectFailed(if e.kind() == std::io::ErrorKind::ConnectionRefused {
                                ConnectFailure::Refused
                            } else {
                                ConnectFailure::Other
                            })
                        }
                        Err(_) => {
                            // the connect task ended without sending (it panicked): still a failed attempt
                            tracing::warn!("connect attempt ended without a result");
                            self.status_mut(|s| s.last_error = "connect: attempt ended without a result".into());
                            Input::ConnectFailed(ConnectFailure::Other)
                        }
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
                self.adj_in.set_max(spec.max_received_prefixes);
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
                // Logged, with the OS's text as the last error, where the attempt ended.
                Action::Failed(DownReason::ConnectFailed(_)) => {}
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
        if !next_hop::needs_interface_addresses(local, self.spec.next_hop_v4, self.spec.next_hop_v6) {
            return Vec::new();
        }
        crate::netif::interface_addresses_of(local)
    }

    /// The encoder of this session: its families, and its next hops (see [`next_hop::select`]) from its
    /// local address, the other addresses of its interface and the settings.
    fn encoder(&self, n: &Negotiated, local: IpAddr, local_others: &[IpAddr]) -> Encoder {
        let nh =
            next_hop::select(local, local_others, self.spec.next_hop_v4, self.spec.next_hop_v6, n.extended_next_hop_v4);
        for fam in nh.missing(&n.families) {
            tracing::warn!(family = %fam, "no next hop for this family on this session: its routes are not sent; set next_hop_ipv4/next_hop_ipv6");
        }
        Encoder {
            local_asn: self.local_asn,
            ibgp: n.ibgp,
            four_octet_as: n.four_octet_as,
            families: n.families.clone(),
            next_hop_v4: nh.v4,
            v4_over_v6: nh.v4_over_v6,
            next_hop_v6: nh.v6,
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

    /// Counts received prefixes and acts on the verdict ([`adj_rib_in`]): log lines, status counters, a
    /// Cease at the prefix limit when so configured.
    fn received_update(&mut self, u: Update) {
        let from = adj_rib_in::Session {
            ibgp: self.spec.peer_as().ibgp(self.local_asn),
            peer_asn: self.up_peer_asn,
            cease_on_max_prefixes: self.spec.cease_on_max_prefixes,
        };
        let v = self.adj_in.receive(&u, from);
        if let Some(first) = v.wrong_first_as {
            tracing::warn!(first_as = ?first, "AS_PATH does not start with the peer's AS: treat-as-withdraw");
        }
        for f in &u.faults {
            tracing::warn!(attr = f.code, verdict = ?f.verdict, error = %f.error, "RFC 7606: malformed attribute");
        }
        match v.max_prefix {
            MaxPrefix::Cease { limit, notification } => {
                if self.pending_cease.is_none() {
                    tracing::warn!(
                        limit,
                        "maximum received prefixes reached: Cease, the session stays down until reset"
                    );
                    self.status_mut(|s| {
                        s.last_error =
                            format!("maximum received prefixes ({limit}) reached: Cease sent; reset the peer to retry")
                    });
                    self.pending_cease = Some(notification);
                }
            }
            MaxPrefix::Dropping { limit } => {
                tracing::warn!(limit, "maximum received prefixes reached: further prefixes are dropped");
            }
            MaxPrefix::Quiet => {}
        }
        self.status_mut(|s| {
            s.received = v.received;
            s.dropped_prefixes = v.dropped;
            s.attributes_discarded += v.attributes_discarded;
            if v.treat_as_withdraw {
                s.treated_as_withdraw += 1;
            }
        });
    }
}

#[cfg(test)]
mod tests;
