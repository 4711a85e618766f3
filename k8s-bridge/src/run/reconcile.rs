//! One reconcile pass: the configuration and the cluster as the reflectors hold them now → a desired
//! state (translate) → pushed to speakerd → Events, status objects and the ConfigurationState. The
//! [`Reconciler`] keeps what passes share: the last good configuration, the last state pushed, what
//! was already reported, and the writer tasks of Events and status objects.
use super::reflect::Reflectors;
use super::Settings;
use crate::apply::{self, Pushed};
use crate::config::{self, ObjRef, Problem, Severity};
use crate::config_state;
use crate::events::EventQueue;
use crate::metrics::Metrics;
use crate::status::{StatusApi, StatusQueue};
use crate::translate::{self, Desired, ServiceAnnouncement, Unannounceable};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::Client;
use speaker_api::v1 as pb;
use speaker_api::v1::speaker_client::SpeakerClient;
use std::collections::BTreeSet;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::task::JoinSet;
use tonic::transport::Channel;

/// Events the loop has already published, so that a state is reported once and not on every pass.
#[derive(Default)]
struct Reported {
    problems: BTreeSet<Problem>,
    unannounceable: BTreeSet<Unannounceable>,
    assigned: BTreeSet<ServiceAnnouncement>,
    push_failed: bool,
    /// Layer 2 IPs this node owns but cannot answer for, with speakerd's reason.
    l2_failed: BTreeSet<(std::net::IpAddr, String)>,
}

/// Events go to the [`EventQueue`]: queuing never waits on the API server.
struct Events {
    queue: Arc<EventQueue>,
    node: String,
}

impl Events {
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
    status: Arc<StatusQueue>,
    config_state: config_state::Reporter,
    speakerd: SpeakerClient<Channel>,
    /// The last valid configuration: an invalid one never replaces it.
    good: Option<config::Config>,
    reported: Reported,
    /// What speakerd holds after the last successful push; None after a failed one.
    pushed: Option<Desired>,
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
            status,
            config_state,
            speakerd: SpeakerClient::new(speakerd),
            good: None,
            reported: Reported::default(),
            pushed: None,
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
        if self.pushed.is_none() && self.good.is_some() {
            Some(self.retry)
        } else {
            None
        }
    }

    /// The configuration in force: the last valid one.
    pub fn config(&self) -> Option<&config::Config> {
        self.good.as_ref()
    }

    /// The desired state speakerd holds after the last successful push (None after a failure).
    pub fn pushed(&self) -> Option<&Desired> {
        self.pushed.as_ref()
    }

    /// One pass over what the reflectors hold now: builds the configuration (an invalid one keeps the
    /// last good one in force), translates, pushes to speakerd what changed (everything when `force`,
    /// or after a failed push), then publishes Events and hands the status objects to their writer.
    /// The caller makes sure the reflectors are synced.
    pub async fn reconcile_once(&mut self, view: &Reflectors, force: bool) {
        let stores = &view.stores;
        let settings = &self.settings;
        let metrics = &self.metrics;
        let events = &self.events;
        let reported = &mut self.reported;
        let pass_started = std::time::Instant::now();
        match config::build_with_previous(&stores.config_input(settings), self.good.as_ref()) {
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
        let Some(cfg) = &self.good else {
            // No valid configuration has ever been seen: nothing to announce, and nothing to withdraw.
            return;
        };
        let configured = pass_started.elapsed();
        let desired = translate::translate(cfg, &stores.cluster(), &settings.options);
        let translated = pass_started.elapsed();
        metrics.bgp_announcements.store(desired.bgp.len() as u64, Relaxed);
        metrics.l2_announcements.store(desired.l2.len() as u64, Relaxed);
        metrics.peers.store(desired.peers.len() as u64, Relaxed);
        for u in &desired.unannounceable {
            if reported.unannounceable.insert(u.clone()) {
                tracing::warn!(service = %format!("{}/{}", u.namespace, u.name), ip = %u.ip, "not announced: {}", u.reason);
                if let Some(r) = stores.service_ref(&u.namespace, &u.name) {
                    events.publish(
                        EventType::Warning,
                        "NotAnnounced",
                        format!("{}: {}", u.ip, u.reason),
                        "Announce",
                        &r,
                    );
                }
            }
        }
        reported.unannounceable.retain(|u| desired.unannounceable.contains(u));
        let unchanged = !force && self.pushed.as_ref() == Some(&desired);
        if !unchanged {
            metrics.pushes.fetch_add(1, Relaxed);
            // Issue 25: a change sends only what differs from the last complete push; a resync, a
            // reconnection or a failed push before sends everything.
            let r = match (&self.pushed, force) {
                (Some(old), false) => {
                    metrics.pushes_incremental.fetch_add(1, Relaxed);
                    apply::push_changes(&mut self.speakerd, crate::OWNER, old, &desired).await
                }
                _ => apply::push(&mut self.speakerd, crate::OWNER, &desired).await,
            };
            tracing::debug!(push_ms = (pass_started.elapsed() - translated).as_millis() as u64, "pushed");
            match r {
                Ok(p) => {
                    metrics.push_bytes.fetch_add(p.bytes, Relaxed);
                    self.retry = Duration::from_secs(1);
                    metrics.push_ok.store(true, Relaxed);
                    let now =
                        SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
                    metrics.last_push_unix.store(now, Relaxed);
                    log_push(&p, &desired, force);
                    if reported.push_failed {
                        tracing::info!("speakerd accepts the desired state again");
                        reported.push_failed = false;
                    }
                    for s in desired.services.iter().filter(|s| !reported.assigned.contains(*s)) {
                        if let Some(r) = stores.service_ref(&s.namespace, &s.name) {
                            let note = format!(
                                "announcing {} from node {:?} with protocol {:?}",
                                s.ip,
                                events.node,
                                s.protocol.as_str()
                            );
                            events.publish(EventType::Normal, "nodeAssigned", note, "Announce", &r);
                        }
                    }
                    reported.assigned = desired.services.iter().cloned().collect();
                    self.pushed = Some(desired);
                }
                Err(status) => {
                    metrics.push_errors.fetch_add(1, Relaxed);
                    metrics.update_errors.fetch_add(1, Relaxed);
                    metrics.push_ok.store(false, Relaxed);
                    self.pushed = None;
                    if !reported.push_failed {
                        tracing::error!(code = ?status.code(), error = %status.message(), "speakerd refused or is unreachable; retrying");
                        for s in &desired.services {
                            if let Some(r) = stores.service_ref(&s.namespace, &s.name) {
                                let note = format!(
                                    "node {:?} cannot announce {}: speakerd: {}",
                                    events.node,
                                    s.ip,
                                    status.message()
                                );
                                events.publish(EventType::Warning, "announceFailed", note, "Announce", &r);
                            }
                        }
                        reported.push_failed = true;
                    }
                    self.retry = (self.retry * 2).min(Duration::from_secs(30));
                }
            }
        }
        if self.status_due || !unchanged {
            self.status_due = false;
            if let Some(d) = &self.pushed {
                let l2 = match self
                    .speakerd
                    .list_l2_announcements(pb::ListL2AnnouncementsRequest { owner: crate::OWNER.into() })
                    .await
                {
                    Ok(r) => r.into_inner().announcements,
                    Err(e) => {
                        // Not "no Layer 2 announcements": that would delete every ServiceL2Status and
                        // drop the announced series. Keep both as they are and look again next round.
                        tracing::debug!(error = %e, "Layer 2 state not read from speakerd; status sync postponed");
                        self.status_due = true;
                        return;
                    }
                };
                // As MetalLB's `announceFailed`: this node owns a Layer 2 IP it cannot answer for.
                let failed: BTreeSet<(std::net::IpAddr, String)> = l2
                    .iter()
                    .filter(|a| a.owner_node == settings.options.node && !a.error.is_empty())
                    .filter_map(|a| Some((a.ip.parse().ok()?, a.error.clone())))
                    .collect();
                for (ip, error) in failed.difference(&reported.l2_failed) {
                    tracing::warn!(%ip, %error, "this node owns a Layer 2 IP it cannot answer for");
                    for s in d.services.iter().filter(|s| s.ip == *ip && s.protocol == translate::Protocol::Layer2) {
                        if let Some(r) = stores.service_ref(&s.namespace, &s.name) {
                            let note = format!(
                                "node {:?} cannot answer for {ip} with protocol \"layer2\": {error}",
                                settings.options.node
                            );
                            events.publish(EventType::Warning, "announceFailed", note, "Announce", &r);
                        }
                    }
                }
                reported.l2_failed = failed;
                let want = crate::status::wanted(&settings.options.node, d, &l2);
                self.status.set(want);
                let announced = crate::status::announced(&settings.options.node, d, &l2);
                *metrics.announced.lock().unwrap_or_else(|e| e.into_inner()) = announced;
                tracing::debug!(
                    config_ms = configured.as_millis() as u64,
                    translate_ms = (translated - configured).as_millis() as u64,
                    total_ms = pass_started.elapsed().as_millis() as u64,
                    "reconcile pass with status sync"
                );
            }
        }
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
