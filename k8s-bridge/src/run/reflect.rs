//! The reflectors: kube-runtime watchers (never polling) that keep an in-memory copy of every resource
//! that matters and tell the reconcile loop when something changed. A watch that fails keeps its
//! store's last content and retries with backoff.
use super::Settings;
use crate::cluster::{Index, Key, NodeInfo, Slice, Svc};
use crate::config::{self, ConfigInput, Obj};
use crate::metrics::Metrics;
use crate::slim::Reduced;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// The stores of every watched resource, the signals of their watch tasks, and the tasks themselves:
/// dropping it stops every watch.
pub struct Reflectors {
    hub: Arc<Hub>,
    pub(super) stores: Stores,
    _tasks: JoinSet<()>,
}

impl Reflectors {
    /// Starts a watch of every resource in [`super::WATCHED`], and the probe that notices the API
    /// server is back after an outage.
    pub fn start(settings: &Settings, client: &Client, metrics: Arc<Metrics>) -> Reflectors {
        let mut tasks = JoinSet::new();
        let hub = Arc::new(Hub {
            changed: Notify::new(),
            metrics: metrics.clone(),
            synced: (0..STREAMS).map(|_| AtomicBool::new(false)).collect(),
            index: Mutex::new(Index::default()),
            dirty: Mutex::new(Dirty::default()),
        });
        let stores = starts(settings, client, &hub, &mut tasks);
        // A watch that resumes from its resourceVersion after an outage yields no event until something
        // changes, so the way back is seen by asking the server's version, only while it is thought down.
        let client = client.clone();
        tasks.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                if !metrics.api_up.load(Relaxed) && client.apiserver_version().await.is_ok() {
                    tracing::info!("API server reachable again");
                    metrics.api_up.store(true, Relaxed);
                }
            }
        });
        Reflectors { hub, stores, _tasks: tasks }
    }

    /// Whether every store holds its initial list (or its resource is not served): before that, a
    /// store would read as "nothing there".
    pub fn all_synced(&self) -> bool {
        self.hub.all_synced()
    }

    /// Resolves when a watch saw a change (or a store got its initial list) since the last call.
    pub async fn changed(&self) {
        self.hub.changed.notified().await
    }

    /// Whether the next pass is a whole one (configuration objects, Nodes or a relist changed).
    pub fn whole_pending(&self) -> bool {
        let d = self.hub.dirty.lock().unwrap_or_else(|e| e.into_inner());
        d.config || d.all
    }

    /// What changed since the last call.
    pub fn take_dirty(&self) -> Dirty {
        std::mem::take(&mut self.hub.dirty.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The reduced Services, EndpointSlices and Nodes, locked: hold it briefly, the watches wait.
    pub fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.hub.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Signals from the watch tasks to the reconcile loop, and the reduced Services, EndpointSlices and
/// Nodes they keep.
struct Hub {
    changed: Notify,
    metrics: Arc<Metrics>,
    synced: Vec<AtomicBool>,
    index: Mutex<Index>,
    dirty: Mutex<Dirty>,
}

/// What changed since the reconcile loop last looked.
#[derive(Debug, Default)]
pub struct Dirty {
    /// The configuration objects (MetalLB's, the ConfigMaps, the Secrets).
    pub config: bool,
    /// Something every Service depends on: a Node, or a relist of Services or EndpointSlices.
    pub all: bool,
    /// Services whose own object or EndpointSlices changed.
    pub services: BTreeSet<Key>,
}

impl Hub {
    fn all_synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Relaxed))
    }

    fn mark(&self, f: impl FnOnce(&mut Dirty)) {
        f(&mut self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        self.changed.notify_one();
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

/// Starts a reflector for one resource (a configuration object); its store is filled by a task (in
/// `tasks`) that also tells the hub.
fn reflect<K>(
    api: Api<K>,
    cfg: watcher::Config,
    dyntype: K::DynamicType,
    what: &'static str,
    hub: Arc<Hub>,
    idx: usize,
    tasks: &mut JoinSet<()>,
) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let writer = Writer::new(dyntype);
    let store = writer.as_reader();
    let stream = reflector::reflector(writer, watcher(api, cfg).backoff(backoff()));
    let h = hub.clone();
    tasks.spawn(watch(stream, what, hub, idx, move |e| match e {
        watcher::Event::Init | watcher::Event::InitApply(_) => {}
        watcher::Event::InitDone | watcher::Event::Apply(_) | watcher::Event::Delete(_) => h.mark(|d| d.config = true),
    }));
    store
}

/// How one kind of object goes into the index: `reduce` keeps what the translation reads, `put`
/// stores it and says which Services changed, `remove` forgets it, `relist` replaces them all.
struct Reducer<K, T> {
    reduce: fn(K) -> T,
    put: fn(&mut Index, T) -> Touched,
    remove: fn(&mut Index, &K) -> Touched,
    relist: fn(&mut Index, Vec<T>),
}

/// Starts a watch of Services, EndpointSlices or Nodes that keeps them reduced in the hub's index
/// (`put` stores an object and says which Services changed, `relist` replaces them all).
fn index<K, T>(
    api: Api<K>,
    cfg: watcher::Config,
    what: &'static str,
    hub: Arc<Hub>,
    idx: usize,
    tasks: &mut JoinSet<()>,
    r: Reducer<K, T>,
) where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    T: Send + 'static,
{
    let stream = watcher(api, cfg).backoff(backoff());
    let h = hub.clone();
    let mut listed: Vec<T> = Vec::new();
    tasks.spawn(watch(stream, what, hub, idx, move |e| {
        let touched = match e {
            watcher::Event::Init => {
                listed.clear();
                return;
            }
            watcher::Event::InitApply(o) => {
                listed.push((r.reduce)(o));
                return;
            }
            watcher::Event::InitDone => {
                (r.relist)(&mut h.index.lock().unwrap_or_else(|e| e.into_inner()), std::mem::take(&mut listed));
                Touched::All
            }
            watcher::Event::Apply(o) => {
                let t = (r.reduce)(o);
                (r.put)(&mut h.index.lock().unwrap_or_else(|e| e.into_inner()), t)
            }
            watcher::Event::Delete(o) => (r.remove)(&mut h.index.lock().unwrap_or_else(|e| e.into_inner()), &o),
        };
        match touched {
            Touched::None => {}
            Touched::All => h.mark(|d| d.all = true),
            Touched::Services(keys) => h.mark(|d| d.services.extend(keys)),
        }
    }));
}

/// Which Services a change of one object reaches.
enum Touched {
    None,
    All,
    Services(Vec<Key>),
}

/// kube's default backoff grows to 30 s; after an outage that would delay reconciling by up to 30 s.
/// 0.5 s doubling to 5 s (with jitter) costs an idle API server one request per 5 s per watch.
fn backoff() -> impl kube::runtime::utils::Backoff {
    kube::runtime::utils::ResetTimerBackoff::new(WatchBackoff::default(), Duration::from_secs(60))
}

/// The task of one watch: hands each event to `seen`, marks the resource synced after its first
/// list, counts updates and errors, and keeps going through failures (a resource the API server does
/// not serve counts as empty).
async fn watch<K, S>(
    stream: S,
    what: &'static str,
    hub: Arc<Hub>,
    idx: usize,
    mut seen: impl FnMut(watcher::Event<K>) + Send,
) where
    S: futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
{
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
                let done = matches!(e, watcher::Event::InitDone);
                if matches!(e, watcher::Event::Apply(_) | watcher::Event::Delete(_)) {
                    m.updates.fetch_add(1, Relaxed);
                }
                seen(e);
                if done {
                    // Synced once its content is in place, then the loop is told (again). A list after
                    // the first (the watch's resourceVersion was too old: 410 Gone) costs a whole pass.
                    if hub.synced[idx].load(Relaxed) {
                        tracing::info!(resource = what, "listed again");
                    }
                    hub.synced[idx].store(true, Relaxed);
                    hub.changed.notify_one();
                }
            }
            Err(e) => {
                m.api_errors.fetch_add(1, Relaxed);
                // A resource the API server does not have (a MetalLB CRD not installed, when only
                // the legacy ConfigMap is used) counts as empty; the watcher keeps retrying.
                let not_found = matches!(&e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404);
                if not_found {
                    if !hub.synced[idx].swap(true, Relaxed) {
                        tracing::info!(resource = what, "not served by the API server; treated as empty");
                        hub.mark(|d| d.all = true);
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

pub(super) struct Stores {
    hub: Arc<Hub>,
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
    pub(super) fn config_input(&self, s: &Settings) -> ConfigInput {
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
            .hub
            .index
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .services
            .values()
            .filter(|s| s.load_balancer)
            .flat_map(|s| s.ips.iter().map(|ip| (s.namespace.clone(), s.name.clone(), *ip)))
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

    /// The Service's reference for Events: a keyed lookup, not a scan of every Service.
    pub(super) fn service_ref(&self, ns: &str, name: &str) -> Option<ObjectReference> {
        self.refs().get(ns, name)
    }

    /// A handle on the Services' references that other tasks can keep.
    pub(super) fn refs(&self) -> ServiceRefs {
        ServiceRefs(self.hub.clone())
    }
}

/// Looks up the reference of a Service for its Events.
#[derive(Clone)]
pub(super) struct ServiceRefs(Arc<Hub>);

impl ServiceRefs {
    pub(super) fn get(&self, ns: &str, name: &str) -> Option<ObjectReference> {
        let index = self.0.index.lock().unwrap_or_else(|e| e.into_inner());
        let uid = index.uids.get(&(ns.to_string(), name.to_string()))?;
        Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: Some(uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        })
    }
}

fn put_service(index: &mut Index, s: (Svc, String)) -> Touched {
    let key = (s.0.namespace.clone(), s.0.name.clone());
    if index.put_service(s.0, s.1) {
        Touched::Services(vec![key])
    } else {
        Touched::None
    }
}

fn remove_service(index: &mut Index, s: &Reduced<Svc>) -> Touched {
    let key = (s.namespace().unwrap_or_default(), s.name_any());
    if index.remove_service(&key) {
        Touched::Services(vec![key])
    } else {
        Touched::None
    }
}

fn put_slice(index: &mut Index, s: (String, Slice)) -> Touched {
    Touched::Services(index.put_slice(s.0, s.1))
}

fn remove_slice(index: &mut Index, s: &Reduced<Slice>) -> Touched {
    match index.remove_slice(&(s.namespace().unwrap_or_default(), s.name_any())) {
        Some(owner) => Touched::Services(vec![owner]),
        None => Touched::None,
    }
}

fn put_node(index: &mut Index, n: NodeInfo) -> Touched {
    if index.put_node(n) {
        Touched::All
    } else {
        Touched::None
    }
}

fn remove_node(index: &mut Index, n: &Reduced<NodeInfo>) -> Touched {
    if index.remove_node(&n.name_any()) {
        Touched::All
    } else {
        Touched::None
    }
}

fn starts(settings: &Settings, client: &Client, hub: &Arc<Hub>, tasks: &mut JoinSet<()>) -> Stores {
    let ns = settings.namespace.as_str();
    let h = |i| (hub.clone(), i);
    let (hb, i) = h(0);
    index(
        Api::<Reduced<Svc>>::all(client.clone()),
        watch_config(),
        "services",
        hb,
        i,
        tasks,
        Reducer {
            reduce: |s: Reduced<Svc>| (s.data, s.metadata.uid.unwrap_or_default()),
            put: put_service,
            remove: remove_service,
            relist: Index::set_services,
        },
    );
    let (hb, i) = h(1);
    index(
        Api::<Reduced<Slice>>::all(client.clone()),
        watch_config().labels("kubernetes.io/service-name"),
        "endpointslices",
        hb,
        i,
        tasks,
        Reducer {
            reduce: |s: Reduced<Slice>| (s.metadata.name.unwrap_or_default(), s.data),
            put: put_slice,
            remove: remove_slice,
            relist: Index::set_slices,
        },
    );
    let (hb, i) = h(2);
    index(
        Api::<Reduced<NodeInfo>>::all(client.clone()),
        watch_config(),
        "nodes",
        hb,
        i,
        tasks,
        Reducer { reduce: |n: Reduced<NodeInfo>| n.data, put: put_node, remove: remove_node, relist: Index::set_nodes },
    );
    let (hb, i) = h(3);
    // Every ConfigMap of the namespace (issue 18): the legacy `config` one and `metallb-excludel2`
    // (a field selector cannot name two); the namespace holds few.
    let cm_cfg = watch_config();
    let configmaps = reflect(Api::<ConfigMap>::namespaced(client.clone(), ns), cm_cfg, (), "configmaps", hb, i, tasks);
    let (hb, i) = h(4);
    let secrets = reflect(Api::<Secret>::namespaced(client.clone(), ns), watch_config(), (), "secrets", hb, i, tasks);
    let mut dynamic = |ar: ApiResource, what: &'static str, i: usize| {
        reflect(
            Api::<DynamicObject>::namespaced_with(client.clone(), ns, &ar),
            watch_config(),
            ar,
            what,
            hub.clone(),
            i,
            tasks,
        )
    };
    Stores {
        hub: hub.clone(),
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
pub(super) const STREAMS: usize = 11;
