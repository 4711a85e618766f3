//! The running bridge: reflectors (kube-runtime watchers, never polling) keep an in-memory copy of
//! every resource that matters; a reconcile loop turns a change into a new desired state and pushes it
//! to speakerd. Nothing is withdrawn because the API server is unreachable: the reflectors keep their
//! last content, the loop keeps the last good configuration, and speakerd keeps what it was told.
use crate::apply::{self, Pushed};
use crate::cluster::{Cluster, NodeInfo, Slice, Svc};
use crate::config::{self, ConfigInput, Obj, ObjRef, Problem, Severity};
use crate::events::EventQueue;
use crate::metrics::Metrics;
use crate::status::{StatusApi, StatusQueue};
use crate::translate::{self, Desired, Options, ServiceAnnouncement, Unannounceable};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use speaker_api::v1 as pb;
use speaker_api::v1::speaker_client::SpeakerClient;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;

/// How the bridge runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub options: Options,
    /// Namespace of the MetalLB configuration objects (and of the legacy ConfigMap).
    pub namespace: String,
    /// Name of the legacy ConfigMap.
    pub configmap: String,
    pub socket: PathBuf,
    /// Push the whole state this often even when nothing changed.
    pub resync: Duration,
    /// Wait this long after a change for more before reconciling.
    pub debounce: Duration,
    /// Limits of the Event writer and of the status writer (both off the data path).
    pub event_writes: crate::events::Limits,
    pub status_writes: crate::events::Limits,
    /// The speaker pod, owner of the status objects and the ConfigurationState (None: no owner).
    pub pod: Option<crate::status::PodOwner>,
}

/// Signals from the watch tasks to the reconcile loop.
struct Hub {
    changed: Notify,
    metrics: Arc<Metrics>,
    synced: Vec<AtomicBool>,
}

impl Hub {
    fn all_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Relaxed))
    }
}

fn metallb(version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("metallb.io", version, kind), plural)
}

/// Every watch asks the server to end it after 25 s (a cheap re-watch from the same resourceVersion),
/// below the client's 30 s read timeout, so only a hanging server trips the timeout.
fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(25)
}

/// Backoff of the watches: 0.5 s doubling to 5 s, each delay with up to 25 % random jitter.
#[derive(Debug, Clone)]
struct WatchBackoff {
    next: Duration,
    seed: u64,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        let seed =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos() as u64 | 1).unwrap_or(1);
        WatchBackoff { next: Duration::from_millis(500), seed }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        // xorshift64: enough to keep the nodes' retries apart.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let d = self.next;
        self.next = (self.next * 2).min(Duration::from_secs(5));
        Some(d + d.mul_f64((self.seed % 1000) as f64 / 4000.0))
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Duration::from_millis(500);
    }
}

/// Starts a reflector for one resource; its store is filled by a task that also tells the hub.
fn reflect<K>(
    api: Api<K>,
    cfg: watcher::Config,
    dyntype: K::DynamicType,
    what: &'static str,
    hub: Arc<Hub>,
    idx: usize,
) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let writer = Writer::new(dyntype);
    let store = writer.as_reader();
    // kube's default backoff grows to 30 s; after an outage that would delay reconciling by up to 30 s.
    // 0.5 s doubling to 5 s (with jitter) costs an idle API server one request per 5 s per watch.
    let backoff = kube::runtime::utils::ResetTimerBackoff::new(WatchBackoff::default(), Duration::from_secs(60));
    let stream = reflector::reflector(writer, watcher(api, cfg).backoff(backoff));
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        let mut failing = false;
        while let Some(ev) = stream.next().await {
            let m = &hub.metrics;
            match ev {
                Ok(e) => {
                    m.api_up.store(true, Relaxed);
                    if failing {
                        tracing::info!(resource = what, "watch working again");
                        failing = false;
                    }
                    match e {
                        watcher::Event::Init | watcher::Event::InitApply(_) => {}
                        watcher::Event::InitDone => {
                            hub.synced[idx].store(true, Relaxed);
                            hub.changed.notify_one();
                        }
                        watcher::Event::Apply(_) | watcher::Event::Delete(_) => {
                            m.updates.fetch_add(1, Relaxed);
                            hub.changed.notify_one();
                        }
                    }
                }
                Err(e) => {
                    m.api_errors.fetch_add(1, Relaxed);
                    // A resource the API server does not have (a MetalLB CRD not installed, when only
                    // the legacy ConfigMap is used) counts as empty; the watcher keeps retrying.
                    let not_found =
                        matches!(&e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404);
                    if not_found {
                        if !hub.synced[idx].swap(true, Relaxed) {
                            tracing::info!(resource = what, "not served by the API server; treated as empty");
                            hub.changed.notify_one();
                        }
                        m.api_up.store(true, Relaxed);
                        continue;
                    }
                    m.api_up.store(false, Relaxed);
                    if !failing {
                        tracing::warn!(resource = what, error = %e, "watch failed; keeping the last known state and retrying with backoff");
                        failing = true;
                    } else {
                        tracing::debug!(resource = what, error = %e, "watch still failing");
                    }
                }
            }
        }
    });
    store
}

fn labels_of(m: &kube::api::ObjectMeta) -> BTreeMap<String, String> {
    m.labels.clone().unwrap_or_default()
}

fn objs<T: serde::de::DeserializeOwned>(store: &Store<DynamicObject>) -> Vec<Obj<T>> {
    let mut v: Vec<Obj<T>> = store
        .state()
        .iter()
        .map(|o| {
            let spec = o.data.get("spec").cloned().unwrap_or_else(|| serde_json::json!({}));
            Obj {
                name: o.name_any(),
                namespace: o.namespace().unwrap_or_default(),
                labels: labels_of(&o.metadata),
                spec: serde_json::from_value(spec).map_err(|e| e.to_string()),
            }
        })
        .collect();
    v.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    v
}

struct Stores {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    nodes: Store<Node>,
    configmaps: Store<ConfigMap>,
    secrets: Store<Secret>,
    pools: Store<DynamicObject>,
    peers: Store<DynamicObject>,
    bgp_ads: Store<DynamicObject>,
    l2_ads: Store<DynamicObject>,
    communities: Store<DynamicObject>,
    bfd: Store<DynamicObject>,
}

impl Stores {
    fn config_input(&self, s: &Settings) -> ConfigInput {
        let legacy = self.configmaps.state().iter().find(|c| c.name_any() == s.configmap).map(|c| {
            (c.namespace().unwrap_or_default(), c.name_any(), c.data.as_ref().and_then(|d| d.get("config")).cloned())
        });
        let secrets = self
            .secrets
            .state()
            .iter()
            .map(|sec| {
                let data = sec.data.clone().unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                ((sec.namespace().unwrap_or_default(), sec.name_any()), data)
            })
            .collect();
        // MetalLB requires passwordSecret to be of type basic-auth.
        let secret_types = self
            .secrets
            .state()
            .iter()
            .map(|sec| {
                let t = sec.type_.clone().unwrap_or_else(|| "Opaque".into());
                ((sec.namespace().unwrap_or_default(), sec.name_any()), t)
            })
            .collect();
        let exclude_l2 =
            self.configmaps.state().iter().find(|c| c.name_any() == config::EXCLUDE_L2_CONFIGMAP).map(|c| {
                (
                    c.namespace().unwrap_or_default(),
                    c.name_any(),
                    c.data.as_ref().and_then(|d| d.get(config::EXCLUDE_L2_KEY)).cloned(),
                )
            });
        // Issue 18: a configuration taking the pool from a Service's IP is refused (as MetalLB).
        let service_ips = self
            .services
            .state()
            .iter()
            .map(|s| Svc::from(s.as_ref()))
            .filter(|s| s.load_balancer)
            .flat_map(|s| s.ips.iter().map(|ip| (s.namespace.clone(), s.name.clone(), *ip)).collect::<Vec<_>>())
            .collect();
        let memberlist_secret = Some((
            s.namespace.clone(),
            self.secrets.state().iter().any(|sec| {
                config::MEMBERLIST_SECRETS.contains(&sec.name_any().as_str())
                    && sec.data.as_ref().is_some_and(|d| d.contains_key(config::MEMBERLIST_KEY))
            }),
        ));
        ConfigInput {
            pools: objs(&self.pools),
            peers: objs(&self.peers),
            bgp_advertisements: objs(&self.bgp_ads),
            l2_advertisements: objs(&self.l2_ads),
            communities: objs(&self.communities),
            bfd_profiles: objs(&self.bfd),
            legacy,
            secrets,
            secret_types,
            exclude_l2,
            service_ips,
            memberlist_secret,
        }
    }

    fn cluster(&self) -> Cluster {
        Cluster {
            services: self.services.state().iter().map(|s| Svc::from(s.as_ref())).collect(),
            slices: self.slices.state().iter().map(|s| Slice::from(s.as_ref())).collect(),
            nodes: self.nodes.state().iter().map(|n| NodeInfo::from(n.as_ref())).collect(),
        }
    }

    /// The Service's reference for Events: a keyed lookup in the store, not a scan of every Service.
    fn service_ref(&self, ns: &str, name: &str) -> Option<ObjectReference> {
        self.services.get(&reflector::ObjectRef::new(name).within(ns)).map(|s| s.object_ref(&()))
    }
}

fn starts(settings: &Settings, client: &Client, hub: &Arc<Hub>) -> Stores {
    let ns = settings.namespace.as_str();
    let h = |i| (hub.clone(), i);
    let (hb, i) = h(0);
    let services = reflect(Api::<Service>::all(client.clone()), watch_config(), (), "services", hb, i);
    let (hb, i) = h(1);
    let slices = reflect(
        Api::<EndpointSlice>::all(client.clone()),
        watch_config().labels("kubernetes.io/service-name"),
        (),
        "endpointslices",
        hb,
        i,
    );
    let (hb, i) = h(2);
    let nodes = reflect(Api::<Node>::all(client.clone()), watch_config(), (), "nodes", hb, i);
    let (hb, i) = h(3);
    // Every ConfigMap of the namespace (issue 18): the legacy `config` one and `metallb-excludel2`
    // (a field selector cannot name two); the namespace holds few.
    let cm_cfg = watch_config();
    let configmaps = reflect(Api::<ConfigMap>::namespaced(client.clone(), ns), cm_cfg, (), "configmaps", hb, i);
    let (hb, i) = h(4);
    let secrets = reflect(Api::<Secret>::namespaced(client.clone(), ns), watch_config(), (), "secrets", hb, i);
    let dynamic = |ar: ApiResource, what: &'static str, i: usize| {
        reflect(
            Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar),
            watch_config(),
            ar,
            what,
            hub.clone(),
            i,
        )
    };
    Stores {
        services,
        slices,
        nodes,
        configmaps,
        secrets,
        pools: dynamic(metallb("v1beta1", "IPAddressPool", "ipaddresspools"), "ipaddresspools", 5),
        peers: dynamic(metallb("v1beta2", "BGPPeer", "bgppeers"), "bgppeers", 6),
        bgp_ads: dynamic(metallb("v1beta1", "BGPAdvertisement", "bgpadvertisements"), "bgpadvertisements", 7),
        l2_ads: dynamic(metallb("v1beta1", "L2Advertisement", "l2advertisements"), "l2advertisements", 8),
        communities: dynamic(metallb("v1beta1", "Community", "communities"), "communities", 9),
        bfd: dynamic(metallb("v1beta1", "BFDProfile", "bfdprofiles"), "bfdprofiles", 10),
    }
}
const STREAMS: usize = 11;

/// Every resource the bridge lists and watches: (API group, resource, namespaced in the MetalLB
/// namespace). The RBAC in deploy/ must allow `list` and `watch` of each (a test checks it).
pub const WATCHED: [(&str, &str, bool); STREAMS] = [
    ("", "services", false),
    ("discovery.k8s.io", "endpointslices", false),
    ("", "nodes", false),
    ("", "configmaps", true),
    ("", "secrets", true),
    ("metallb.io", "ipaddresspools", true),
    ("metallb.io", "bgppeers", true),
    ("metallb.io", "bgpadvertisements", true),
    ("metallb.io", "l2advertisements", true),
    ("metallb.io", "communities", true),
    ("metallb.io", "bfdprofiles", true),
];

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

/// Runs until the process is stopped.
pub async fn run(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Result<(), crate::error::Error> {
    let hub = Arc::new(Hub {
        changed: Notify::new(),
        metrics: metrics.clone(),
        synced: (0..STREAMS).map(|_| AtomicBool::new(false)).collect(),
    });
    let stores = starts(&settings, &client, &hub);
    // A watch that resumes from its resourceVersion after an outage yields no event until something
    // changes, so the way back is seen by asking the server's version, only while it is thought down.
    {
        let (client, metrics) = (client.clone(), metrics.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if !metrics.api_up.load(Relaxed) && client.apiserver_version().await.is_ok() {
                    tracing::info!("API server reachable again");
                    metrics.api_up.store(true, Relaxed);
                }
            }
        });
    }
    // Events and status objects are written by their own tasks: the push to speakerd never waits on
    // an API server write.
    let events = Events { queue: EventQueue::new(metrics.clone()), node: settings.options.node.clone() };
    tokio::spawn(events.queue.clone().run(
        Recorder::new(
            client.clone(),
            Reporter { controller: "metallb-speaker".into(), instance: Some(settings.options.node.clone()) },
        ),
        settings.event_writes,
    ));
    let channel = apply::unix_channel(settings.socket.clone());
    // A (re)connection to speakerd means a possibly new process: push everything again.
    let reconnected = Arc::new(Notify::new());
    let owners_changed = Arc::new(Notify::new());
    tokio::spawn(watch_speakerd(SpeakerClient::new(channel.clone()), reconnected.clone(), owners_changed.clone()));
    let status = StatusQueue::new(metrics.clone());
    tokio::spawn(status.clone().run(
        StatusApi::new(client.clone(), &settings.namespace, &settings.options.node, settings.pod.clone()),
        settings.status_writes,
    ));
    let config_state = crate::config_state::Reporter::spawn(
        client.clone(),
        settings.namespace.clone(),
        crate::config_state::Component::Speaker(settings.options.node.clone()),
        settings.pod.clone(),
    );
    let report = |problems: &mut dyn Iterator<Item = &Problem>| {
        config_state.report(
            problems
                .filter(|p| p.severity != Severity::Warning)
                .map(|p| format!("{}: {}", p.object, p.message))
                .collect(),
        );
    };
    let mut status_due = false;
    let mut speakerd = SpeakerClient::new(channel);

    let mut good: Option<config::Config> = None;
    let mut reported = Reported::default();
    let mut pushed: Option<Desired> = None;
    let mut retry = Duration::from_secs(1);
    let mut next_resync = tokio::time::Instant::now() + settings.resync;
    let mut waited_for_sync = false;
    loop {
        let mut force = false;
        let retry_at =
            if pushed.is_none() && good.is_some() { Some(tokio::time::Instant::now() + retry) } else { None };
        tokio::select! {
            _ = hub.changed.notified() => {
                tokio::time::sleep(settings.debounce).await;
            }
            _ = reconnected.notified() => { force = true; }
            _ = owners_changed.notified() => { status_due = true; }
            _ = tokio::time::sleep_until(next_resync) => { force = true; }
            _ = async { match retry_at { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => {}
        }
        if !hub.all_synced() {
            // Never act on a partial picture: an unsynced store would read as "no Services".
            if !waited_for_sync {
                tracing::info!("waiting for the initial list of every watched resource");
                waited_for_sync = true;
            }
            continue;
        }
        metrics.synced.store(true, Relaxed);
        if force {
            next_resync = tokio::time::Instant::now() + settings.resync;
        }

        let pass_started = std::time::Instant::now();
        match config::build_with_previous(&stores.config_input(&settings), good.as_ref()) {
            Ok((cfg, warnings)) => {
                if metrics.config_stale.swap(false, Relaxed) {
                    tracing::info!("configuration valid again");
                }
                metrics.config_loaded.store(true, Relaxed);
                if good.as_ref() != Some(&cfg) {
                    tracing::info!(source = ?cfg.source, pools = cfg.pools.len(), peers = cfg.peers.len(), "configuration loaded");
                }
                good = Some(cfg);
                report(&mut warnings.iter());
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
                report(&mut problems.iter());
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
        let Some(cfg) = &good else {
            // No valid configuration has ever been seen: nothing to announce, and nothing to withdraw.
            continue;
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
        let unchanged = !force && pushed.as_ref() == Some(&desired);
        if !unchanged {
            metrics.pushes.fetch_add(1, Relaxed);
            // Issue 25: a change sends only what differs from the last complete push; a resync, a
            // reconnection or a failed push before sends everything.
            let r = match (&pushed, force) {
                (Some(old), false) => {
                    metrics.pushes_incremental.fetch_add(1, Relaxed);
                    apply::push_changes(&mut speakerd, crate::OWNER, old, &desired).await
                }
                _ => apply::push(&mut speakerd, crate::OWNER, &desired).await,
            };
            tracing::debug!(push_ms = (pass_started.elapsed() - translated).as_millis() as u64, "pushed");
            match r {
                Ok(p) => {
                    retry = Duration::from_secs(1);
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
                    pushed = Some(desired);
                }
                Err(status) => {
                    metrics.push_errors.fetch_add(1, Relaxed);
                    metrics.update_errors.fetch_add(1, Relaxed);
                    metrics.push_ok.store(false, Relaxed);
                    pushed = None;
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
                    retry = (retry * 2).min(Duration::from_secs(30));
                }
            }
        }
        if status_due || !unchanged {
            status_due = false;
            if let Some(d) = &pushed {
                let l2 = match speakerd
                    .list_l2_announcements(pb::ListL2AnnouncementsRequest { owner: crate::OWNER.into() })
                    .await
                {
                    Ok(r) => r.into_inner().announcements,
                    Err(e) => {
                        // Not "no Layer 2 announcements": that would delete every ServiceL2Status and
                        // drop the announced series. Keep both as they are and look again next round.
                        tracing::debug!(error = %e, "Layer 2 state not read from speakerd; status sync postponed");
                        status_due = true;
                        continue;
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
                status.set(want);
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

/// Keeps a Watch stream open on speakerd and signals every successful (re)connection.
async fn watch_speakerd(
    mut client: SpeakerClient<tonic::transport::Channel>,
    reconnected: Arc<Notify>,
    owners_changed: Arc<Notify>,
) {
    let mut first = true;
    loop {
        match client.watch(pb::WatchRequest::default()).await {
            Ok(stream) => {
                if !first {
                    tracing::info!("reconnected to speakerd; pushing the whole state");
                }
                first = false;
                reconnected.notify_one();
                let mut s = stream.into_inner();
                while let Some(Ok(ev)) = s.next().await {
                    if matches!(ev.event, Some(pb::watch_event::Event::L2Owner(_))) {
                        owners_changed.notify_one();
                    }
                }
                tracing::warn!("lost the connection to speakerd");
            }
            Err(e) => tracing::debug!(error = %e.message(), "speakerd not reachable yet"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
