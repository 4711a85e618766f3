//! The reflectors: kube-runtime watchers (never polling) that keep an in-memory copy of every resource
//! that matters and tell the reconcile loop when something changed. A watch that fails keeps its
//! store's last content and retries with backoff.
use super::Settings;
use crate::cluster::{Cluster, NodeInfo, Slice, Svc};
use crate::config::{self, ConfigInput, Obj};
use crate::metrics::Metrics;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
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

/// Starts a reflector for one resource; its store is filled by a task (in `tasks`) that also tells
/// the hub.
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
    // kube's default backoff grows to 30 s; after an outage that would delay reconciling by up to 30 s.
    // 0.5 s doubling to 5 s (with jitter) costs an idle API server one request per 5 s per watch.
    let backoff = kube::runtime::utils::ResetTimerBackoff::new(WatchBackoff::default(), Duration::from_secs(60));
    let stream = reflector::reflector(writer, watcher(api, cfg).backoff(backoff));
    tasks.spawn(async move {
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

pub(super) struct Stores {
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

    pub(super) fn cluster(&self) -> Cluster {
        Cluster {
            services: self.services.state().iter().map(|s| Svc::from(s.as_ref())).collect(),
            slices: self.slices.state().iter().map(|s| Slice::from(s.as_ref())).collect(),
            nodes: self.nodes.state().iter().map(|n| NodeInfo::from(n.as_ref())).collect(),
        }
    }

    /// The Service's reference for Events: a keyed lookup in the store, not a scan of every Service.
    pub(super) fn service_ref(&self, ns: &str, name: &str) -> Option<ObjectReference> {
        self.services.get(&reflector::ObjectRef::new(name).within(ns)).map(|s| s.object_ref(&()))
    }
}

fn starts(settings: &Settings, client: &Client, hub: &Arc<Hub>, tasks: &mut JoinSet<()>) -> Stores {
    let ns = settings.namespace.as_str();
    let h = |i| (hub.clone(), i);
    let (hb, i) = h(0);
    let services = reflect(Api::<Service>::all(client.clone()), watch_config(), (), "services", hb, i, tasks);
    let (hb, i) = h(1);
    let slices = reflect(
        Api::<EndpointSlice>::all(client.clone()),
        watch_config().labels("kubernetes.io/service-name"),
        (),
        "endpointslices",
        hb,
        i,
        tasks,
    );
    let (hb, i) = h(2);
    let nodes = reflect(Api::<Node>::all(client.clone()), watch_config(), (), "nodes", hb, i, tasks);
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
pub(super) const STREAMS: usize = 11;
