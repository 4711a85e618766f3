//! One reconcile pass: the configuration and the cluster as the reflectors hold them now → a desired
//! state (translate) → pushed to speakerd → Events, status objects and the ConfigurationState. The
//! [`Reconciler`] keeps what passes share: the last good configuration, the last state pushed, what
//! was already reported, and the writer tasks of Events and status objects.
use super::reflect::{Reflectors, ServiceRefs};
use super::Settings;
use crate::apply::{self, Pushed};
use crate::config::{self, ObjRef, Problem, Severity};
use crate::config_state;
use crate::events::EventQueue;
use crate::incremental::{Delta, State};
use crate::metrics::Metrics;
use crate::status::{StatusApi, StatusQueue};
use crate::translate::{self, Desired, ServiceAnnouncement, Unannounceable};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::Client;
use speaker_api::v1 as pb;
use speaker_api::v1::speaker_client::SpeakerClient;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// The status objects and the announced series are synced at most this often.
pub const STATUS_EVERY: Duration = Duration::from_millis(200);

/// Events the loop has already published, so that a state is reported once and not on every pass.
#[derive(Default)]
struct Reported {
    problems: BTreeSet<Problem>,
    unannounceable: BTreeSet<Unannounceable>,
    assigned: BTreeSet<ServiceAnnouncement>,
    push_failed: bool,
}

/// Events go to the [`EventQueue`]: queuing never waits on the API server.
#[derive(Clone)]
struct Events {
    queue: Arc<EventQueue>,
    node: String,
}

impl Events {
    fn not_announced(&self, stores: &super::reflect::Stores, u: &Unannounceable) {
        tracing::warn!(service = %format!("{}/{}", u.namespace, u.name), ip = %u.ip, "not announced: {}", u.reason);
        if let Some(r) = stores.service_ref(&u.namespace, &u.name) {
            self.publish(EventType::Warning, "NotAnnounced", format!("{}: {}", u.ip, u.reason), "Announce", &r);
        }
    }

    fn publish(&self, type_: EventType, reason: &str, note: String, action: &str, regarding: &ObjectReference) {
        self.queue.publish(type_, reason, note, action, regarding);
    }

    fn reference(o: &ObjRef) -> ObjectReference {
        ObjectReference {
            api_version: Some(o.api_version.clone()),
            kind: Some(o.kind.clone()),
            namespace: Some(o.namespace.clone()).filter(|n| !n.is_empty()),
            name: Some(o.name.clone()),
            ..Default::default()
        }
    }
}

/// The ConfigurationState reports the problems that kept something out (warnings do not).
fn report<'a>(config_state: &config_state::Reporter, problems: impl Iterator<Item = &'a Problem>) {
    config_state.report(
        problems.filter(|p| p.severity != Severity::Warning).map(|p| format!("{}: {}", p.object, p.message)).collect(),
    );
}

/// The state reconcile passes share, and the writers they hand Events and status objects to.
pub struct Reconciler {
    settings: Settings,
    metrics: Arc<Metrics>,
    events: Events,
    config_state: config_state::Reporter,
    speakerd: SpeakerClient<Channel>,
    /// The last valid configuration: an invalid one never replaces it.
    good: Option<config::Config>,
    reported: Reported,
    /// The desired state, kept between passes and changed in place.
    state: Option<State>,
    /// speakerd holds `state` (false before the first push and after a failed one).
    in_sync: bool,
    /// When the last whole push completed.
    last_whole: Option<tokio::time::Instant>,
    /// When the status task was last handed a snapshot.
    last_status: Option<tokio::time::Instant>,
    status_tx: watch::Sender<Option<Arc<Snapshot>>>,
    /// What the last status sync cost (µs): the next comes no sooner than 10 times that.
    status_cost: Arc<AtomicU64>,
    /// The wait before pushing again after a failure.
    retry: Duration,
    /// The status objects need a sync even if the desired state did not change.
    status_due: bool,
    /// The Event and status writers: dropping the Reconciler stops them.
    _tasks: JoinSet<()>,
}

impl Reconciler {
    /// Starts the writers of Events, status objects and the ConfigurationState. Events and status
    /// objects are written by their own tasks: the push to speakerd never waits on an API server write.
    pub fn new(client: &Client, settings: Settings, metrics: Arc<Metrics>, speakerd: Channel) -> Reconciler {
        let mut tasks = JoinSet::new();
        let events = Events { queue: EventQueue::new(metrics.clone()), node: settings.options.node.clone() };
        tasks.spawn(events.queue.clone().run(
            Recorder::new(
                client.clone(),
                Reporter { controller: "metallb-speaker".into(), instance: Some(settings.options.node.clone()) },
            ),
            settings.event_writes,
        ));
        let status = StatusQueue::new(metrics.clone());
        tasks.spawn(status.clone().run(
            StatusApi::new(client.clone(), &settings.namespace, &settings.options.node, settings.pod.clone()),
            settings.status_writes,
        ));
        let (status_tx, status_rx) = watch::channel(None);
        let status_cost = Arc::new(AtomicU64::new(0));
        tasks.spawn(sync_status(
            status_rx,
            SpeakerClient::new(speakerd.clone()),
            settings.options.node.clone(),
            events.clone(),
            status.clone(),
            metrics.clone(),
            status_cost.clone(),
        ));
        // Its writer task ends when the Reporter is dropped.
        let config_state = config_state::Reporter::spawn(
            client.clone(),
            settings.namespace.clone(),
            config_state::Component::Speaker(settings.options.node.clone()),
            settings.pod.clone(),
        );
        Reconciler {
            settings,
            metrics,
            events,
            config_state,
            speakerd: SpeakerClient::new(speakerd),
            good: None,
            reported: Reported::default(),
            state: None,
            in_sync: false,
            last_status: None,
            last_whole: None,
            status_tx,
            status_cost,
            retry: Duration::from_secs(1),
            status_due: false,
            _tasks: tasks,
        }
    }

    /// The Layer 2 owners changed in speakerd: the next pass syncs the status objects.
    pub fn status_due(&mut self) {
        self.status_due = true;
    }

    /// After a failed push (with a valid configuration), how long to wait before the next pass.
    pub fn retry_after(&self) -> Option<Duration> {
        if !self.in_sync && self.state.is_some() && self.good.is_some() {
            Some(self.retry)
        } else {
            None
        }
    }

    /// When the last whole push to speakerd completed (None before the first, and after a failed push).
    pub fn last_whole_push(&self) -> Option<tokio::time::Instant> {
        self.last_whole.filter(|_| self.in_sync)
    }

    /// The configuration in force: the last valid one.
    pub fn config(&self) -> Option<&config::Config> {
        self.good.as_ref()
    }

    /// The desired state speakerd holds after the last successful push (None after a failure).
    pub fn pushed(&self) -> Option<Desired> {
        self.state.as_ref().filter(|_| self.in_sync).map(State::desired)
    }

    /// One pass over what changed since the last: rebuilds the configuration if its objects changed
    /// (an invalid one keeps the last good one in force); recomputes the desired state whole after a
    /// change of configuration or Nodes, a relist, a failed push or when `force`d, and otherwise only
    /// for the Services that changed ([`State::update`]); pushes to speakerd what differs (everything
    /// when `force`d or after a failed push); publishes Events; and hands the status objects to their
    /// writer, at most every [`STATUS_EVERY`]. The caller makes sure the reflectors are synced.
    pub async fn reconcile_once(&mut self, view: &Reflectors, force: bool) {
        let dirty = view.take_dirty();
        let pass_started = std::time::Instant::now();
        let stale = self.metrics.config_stale.load(Relaxed);
        // A refused configuration is looked at again when Services change: which IPs they hold is part
        // of what decides it.
        let mut whole = force || dirty.all || self.state.is_none() || !self.in_sync;
        if dirty.config || self.good.is_none() || (stale && (dirty.all || !dirty.services.is_empty())) {
            let before = self.good.clone();
            self.configure(view);
            whole |= self.good != before;
        }
        let Some(cfg) = &self.good else {
            // No valid configuration has ever been seen: nothing to announce, and nothing to withdraw.
            return;
        };
        let opts = &self.settings.options;
        let configured = pass_started.elapsed();
        if whole {
            // The index is locked only to copy its pointers: the watches wait on it.
            let cluster = view.index().cluster();
            let state = State::full(cfg, &cluster, opts);
            self.push_whole(view, state, force).await;
        } else if !dirty.services.is_empty() {
            let Some(state) = self.state.as_mut() else { return };
            let delta = state.update(cfg, &view.index(), &dirty.services, opts);
            self.push_delta(view, delta).await;
        }
        let translated = pass_started.elapsed();
        if self.status_at().is_some_and(|t| t <= tokio::time::Instant::now()) {
            if let Some(state) = &self.state {
                self.last_status = Some(tokio::time::Instant::now());
                self.status_due = false;
                let snap = Snapshot { desired: state.desired(), refs: view.stores.refs() };
                self.status_tx.send_replace(Some(Arc::new(snap)));
            }
        }
        tracing::trace!(
            config_ms = configured.as_millis() as u64,
            total_ms = translated.as_millis() as u64,
            whole,
            "reconcile pass"
        );
    }

    /// The configuration from the reflectors' objects: reports its problems, keeps the last good one
    /// when it is invalid.
    fn configure(&mut self, view: &Reflectors) {
        let settings = &self.settings;
        let metrics = &self.metrics;
        let events = &self.events;
        let reported = &mut self.reported;
        match config::build_with_previous(&view.stores.config_input(settings), self.good.as_ref()) {
            Ok((cfg, warnings)) => {
                if metrics.config_stale.swap(false, Relaxed) {
                    tracing::info!("configuration valid again");
                }
                metrics.config_loaded.store(true, Relaxed);
                if self.good.as_ref() != Some(&cfg) {
                    tracing::info!(source = ?cfg.source, pools = cfg.pools.len(), peers = cfg.peers.len(), "configuration loaded");
                }
                self.good = Some(cfg);
                report(&self.config_state, warnings.iter());
                // Forget what is fixed, so that it is reported again if it comes back.
                reported.problems.retain(|p| warnings.contains(p));
                // Objects left out (issue 18): InvalidConfig on each, the rest applies.
                metrics
                    .config_skipped
                    .store(warnings.iter().filter(|w| w.severity == Severity::Skipped).count() as u64, Relaxed);
                for w in warnings {
                    if reported.problems.insert(w.clone()) {
                        tracing::warn!(object = %w.object, "{}", w.message);
                        events.publish(
                            EventType::Warning,
                            if w.severity == Severity::Skipped { "InvalidConfig" } else { "ConfigWarning" },
                            w.message.clone(),
                            "Validate",
                            &Events::reference(&w.object),
                        );
                    }
                }
            }
            Err(problems) => {
                metrics.config_stale.store(true, Relaxed);
                metrics.update_errors.fetch_add(1, Relaxed);
                report(&self.config_state, problems.iter());
                for p in problems.iter().filter(|p| p.severity == Severity::Error) {
                    if reported.problems.insert(p.clone()) {
                        tracing::error!(object = %p.object, "invalid configuration, the last good one stays in force: {}", p.message);
                        events.publish(
                            EventType::Warning,
                            "InvalidConfig",
                            p.message.clone(),
                            "Validate",
                            &Events::reference(&p.object),
                        );
                    }
                }
            }
        }
    }

    /// A state computed whole: pushes what differs from what speakerd holds (everything when `force`d
    /// or when speakerd's state is unknown), and reports what differs from what was reported.
    async fn push_whole(&mut self, view: &Reflectors, state: State, force: bool) {
        let desired = state.desired();
        let stores = &view.stores;
        for u in &desired.unannounceable {
            if self.reported.unannounceable.insert(u.clone()) {
                self.events.not_announced(stores, u);
            }
        }
        self.reported.unannounceable.retain(|u| state.unannounceable.contains(u));
        let old = self.state.take().filter(|_| self.in_sync).map(|s| s.desired());
        self.count(&state);
        if !force && old.as_ref() == Some(&desired) {
            self.state = Some(state);
            return;
        }
        self.metrics.pushes.fetch_add(1, Relaxed);
        // Issue 25: a change sends only what differs from the last complete push; a resync, a
        // reconnection or a failed push before sends everything.
        let r = match (&old, force) {
            (Some(old), false) => {
                self.metrics.pushes_incremental.fetch_add(1, Relaxed);
                apply::push_changes(&mut self.speakerd, crate::OWNER, old, &desired).await
            }
            _ => {
                let r = apply::push(&mut self.speakerd, crate::OWNER, &desired).await;
                self.last_whole = Some(tokio::time::Instant::now());
                r
            }
        };
        let assigned: Vec<ServiceAnnouncement> =
            state.services.iter().filter(|s| !self.reported.assigned.contains(*s)).cloned().collect();
        self.state = Some(state);
        match r {
            Ok(p) => {
                log_push(&p, &desired, force);
                self.pushed_ok(&p, view, assigned);
                self.reported.assigned = desired.services.into_iter().collect();
            }
            Err(status) => self.push_failed(view, status),
        }
    }

    /// A change of some Services: pushes it, reports it.
    async fn push_delta(&mut self, view: &Reflectors, delta: Delta) {
        let stores = &view.stores;
        for u in &delta.unannounceable {
            if self.reported.unannounceable.insert(u.clone()) {
                self.events.not_announced(stores, u);
            }
        }
        for u in &delta.announceable {
            self.reported.unannounceable.remove(u);
        }
        if let Some(state) = &self.state {
            self.count(state);
        }
        for s in &delta.unassigned {
            self.reported.assigned.remove(s);
        }
        let assigned: Vec<ServiceAnnouncement> =
            delta.assigned.into_iter().filter(|s| !self.reported.assigned.contains(s)).collect();
        if delta.changes.is_empty() {
            self.pushed_events(view, assigned);
            return;
        }
        self.metrics.pushes.fetch_add(1, Relaxed);
        self.metrics.pushes_incremental.fetch_add(1, Relaxed);
        match apply::send_changes(&mut self.speakerd, crate::OWNER, delta.changes).await {
            Ok(p) => {
                if p.changed_anything() {
                    tracing::debug!(bgp_changed = ?p.bgp, l2_changed = ?p.l2, "change pushed to speakerd");
                }
                self.pushed_ok(&p, view, assigned);
            }
            Err(status) => self.push_failed(view, status),
        }
    }

    fn count(&self, state: &State) {
        self.metrics.bgp_announcements.store(state.bgp.len() as u64, Relaxed);
        self.metrics.l2_announcements.store(state.l2.len() as u64, Relaxed);
        self.metrics.peers.store(state.peers.len() as u64, Relaxed);
    }

    fn pushed_ok(&mut self, p: &Pushed, view: &Reflectors, assigned: Vec<ServiceAnnouncement>) {
        let metrics = &self.metrics;
        metrics.push_bytes.fetch_add(p.bytes, Relaxed);
        self.retry = Duration::from_secs(1);
        self.in_sync = true;
        metrics.push_ok.store(true, Relaxed);
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        metrics.last_push_unix.store(now, Relaxed);
        if self.reported.push_failed {
            tracing::info!("speakerd accepts the desired state again");
            self.reported.push_failed = false;
        }
        self.pushed_events(view, assigned);
        self.status_due = true;
    }

    /// nodeAssigned for Service IPs this node announces now and did not before.
    fn pushed_events(&mut self, view: &Reflectors, assigned: Vec<ServiceAnnouncement>) {
        for s in assigned {
            if let Some(r) = view.stores.service_ref(&s.namespace, &s.name) {
                let note = format!(
                    "announcing {} from node {:?} with protocol {:?}",
                    s.ip,
                    self.events.node,
                    s.protocol.as_str()
                );
                self.events.publish(EventType::Normal, "nodeAssigned", note, "Announce", &r);
            }
            self.reported.assigned.insert(s);
        }
    }

    fn push_failed(&mut self, view: &Reflectors, status: tonic::Status) {
        let metrics = &self.metrics;
        metrics.push_errors.fetch_add(1, Relaxed);
        metrics.update_errors.fetch_add(1, Relaxed);
        metrics.push_ok.store(false, Relaxed);
        self.in_sync = false;
        if !self.reported.push_failed {
            tracing::error!(code = ?status.code(), error = %status.message(), "speakerd refused or is unreachable; retrying");
            for s in self.state.iter().flat_map(|s| s.services.iter()) {
                if let Some(r) = view.stores.service_ref(&s.namespace, &s.name) {
                    let note =
                        format!("node {:?} cannot announce {}: speakerd: {}", self.events.node, s.ip, status.message());
                    self.events.publish(EventType::Warning, "announceFailed", note, "Announce", &r);
                }
            }
            self.reported.push_failed = true;
        }
        self.retry = (self.retry * 2).min(Duration::from_secs(30));
    }

    /// When the status objects may be synced next, if they are due: they are computed over every
    /// Service, so under churn they follow at most every [`STATUS_EVERY`] or ten times what the last
    /// sync cost, whichever is longer (a tenth of a core at most), never on the data path.
    pub fn status_at(&self) -> Option<tokio::time::Instant> {
        if !self.status_due || !self.in_sync {
            return None;
        }
        let cost = Duration::from_micros(self.status_cost.load(Relaxed)) * 10;
        Some(self.last_status.map_or_else(tokio::time::Instant::now, |t| t + STATUS_EVERY.max(cost)))
    }
}

/// What the status task needs of one pass: the desired state and the Services' references.
struct Snapshot {
    desired: Desired,
    refs: ServiceRefs,
}

/// The status task: for the latest snapshot, reads speakerd's Layer 2 state and hands the status
/// objects wanted now to their writer, publishes `announceFailed` for Layer 2 IPs this node owns but
/// cannot answer for, and sets the announced series. It works over every Service, so it runs beside
/// the reconcile loop, never in its way; a newer snapshot replaces one it has not started.
async fn sync_status(
    mut rx: watch::Receiver<Option<Arc<Snapshot>>>,
    mut speakerd: SpeakerClient<Channel>,
    node: String,
    events: Events,
    status: Arc<StatusQueue>,
    metrics: Arc<Metrics>,
    cost: Arc<AtomicU64>,
) {
    let mut l2_failed: BTreeSet<(std::net::IpAddr, String)> = BTreeSet::new();
    while rx.changed().await.is_ok() {
        let Some(snap) = rx.borrow_and_update().clone() else { continue };
        let l2 = loop {
            match speakerd.list_l2_announcements(pb::ListL2AnnouncementsRequest { owner: crate::OWNER.into() }).await {
                Ok(r) => break Some(r.into_inner().announcements),
                Err(e) => {
                    // Not "no Layer 2 announcements": that would delete every ServiceL2Status and
                    // drop the announced series. Keep both as they are and look again.
                    tracing::debug!(error = %e, "Layer 2 state not read from speakerd; status sync postponed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if rx.has_changed().unwrap_or(true) {
                        break None;
                    }
                }
            }
        };
        let Some(l2) = l2 else { continue };
        let d = &snap.desired;
        // As MetalLB's `announceFailed`: this node owns a Layer 2 IP it cannot answer for.
        let failed: BTreeSet<(std::net::IpAddr, String)> = l2
            .iter()
            .filter(|a| a.owner_node == node && !a.error.is_empty())
            .filter_map(|a| Some((a.ip.parse().ok()?, a.error.clone())))
            .collect();
        for (ip, error) in failed.difference(&l2_failed) {
            tracing::warn!(%ip, %error, "this node owns a Layer 2 IP it cannot answer for");
            for s in d.services.iter().filter(|s| s.ip == *ip && s.protocol == translate::Protocol::Layer2) {
                if let Some(r) = snap.refs.get(&s.namespace, &s.name) {
                    let note = format!("node {node:?} cannot answer for {ip} with protocol \"layer2\": {error}");
                    events.publish(EventType::Warning, "announceFailed", note, "Announce", &r);
                }
            }
        }
        l2_failed = failed;
        // The work over every Service runs on a blocking thread, so that it never holds a runtime
        // worker (the watches and the loop run there); its cost sets how soon the next one may come.
        let started = std::time::Instant::now();
        let (st, m, n, snap2) = (status.clone(), metrics.clone(), node.clone(), snap.clone());
        let _ = tokio::task::spawn_blocking(move || {
            st.set(crate::status::wanted(&n, &snap2.desired, &l2));
            *m.announced.lock().unwrap_or_else(|e| e.into_inner()) = crate::status::announced(&n, &snap2.desired, &l2);
        })
        .await;
        cost.store(started.elapsed().as_micros() as u64, Relaxed);
    }
}

fn log_push(p: &Pushed, d: &Desired, forced: bool) {
    for c in &p.peer_conflicts {
        tracing::warn!(conflict = %c, "peer not applied by speakerd");
    }
    if p.changed_anything() {
        tracing::info!(
            peers = d.peers.len(),
            bgp = d.bgp.len(),
            l2 = d.l2.len(),
            peers_changed = ?p.peers,
            bgp_changed = ?p.bgp,
            l2_changed = ?p.l2,
            "desired state pushed to speakerd"
        );
    } else if forced {
        tracing::debug!("resync: speakerd already had the desired state");
    }
}
