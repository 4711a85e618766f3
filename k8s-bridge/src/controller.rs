//! `k8s-bridge controller`: the allocator ([`crate::allocator`]) driven against the API server.
//! Reflectors keep Services, IPAddressPools and Namespaces in memory; after any change (debounced)
//! the whole allocation is recomputed from them and only the differences are written: a Service's
//! `status.loadBalancer.ingress` and its `metallb.io/ip-allocated-from-pool` annotation, the
//! pools' status counts, and Events on the Services.
//!
//! With `leading`, the reflectors fill at once (a standby keeps warm caches) but nothing is written
//! until this replica leads ([`crate::lease`]); the caller stops the process when it stops leading.
use crate::allocator::{self, Input, Pool, Port, ServiceAllocation};
use crate::metallb::LabelSelector;
use crate::selector::Selector;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Event as K8sEvent, Namespace, ObjectReference, Service};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, store::Writer, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct ControllerSettings {
    /// Namespace of the IPAddressPools.
    pub namespace: String,
    /// `--lb-class`.
    pub lb_class: Option<String>,
    pub debounce: Duration,
    /// This pod: owner of the `controller` ConfigurationState.
    pub pod: Option<crate::status::PodOwner>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PoolSpec {
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    auto_assign: Option<bool>,
    #[serde(default, rename = "avoidBuggyIPs")]
    avoid_buggy_ips: bool,
    #[serde(default)]
    service_allocation: Option<SaSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SaSpec {
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    namespace_selectors: Vec<LabelSelector>,
    #[serde(default)]
    service_selectors: Vec<LabelSelector>,
}

/// An IPAddressPool object as the allocator's [`Pool`], or why it is unusable.
pub fn pool_from_object(name: &str, spec: &serde_json::Value) -> Result<Pool, String> {
    let s: PoolSpec = serde_json::from_value(spec.clone()).map_err(|e| format!("spec: {e}"))?;
    if s.addresses.is_empty() {
        return Err("pool has no prefixes defined".into());
    }
    let addrs: Vec<&str> = s.addresses.iter().map(String::as_str).collect();
    let mut p = Pool::new(name, &addrs)?;
    p.auto_assign = s.auto_assign.unwrap_or(true);
    p.avoid_buggy_ips = s.avoid_buggy_ips;
    if let Some(sa) = s.service_allocation {
        let sels = |v: &[LabelSelector]| v.iter().map(Selector::new).collect::<Result<Vec<_>, _>>();
        p.service_allocation = Some(ServiceAllocation {
            priority: sa.priority,
            namespaces: sa.namespaces.into_iter().collect(),
            namespace_selectors: sels(&sa.namespace_selectors)?,
            service_selectors: sels(&sa.service_selectors)?,
        });
    }
    Ok(p)
}

/// A core/v1 Service as the allocator reads it.
pub fn service_from_k8s(s: &Service) -> allocator::Service {
    let spec = s.spec.clone().unwrap_or_default();
    let mut cluster_ips: Vec<String> = spec.cluster_ips.clone().unwrap_or_default();
    if cluster_ips.is_empty() {
        if let Some(c) = spec.cluster_ip.clone().filter(|c| !c.is_empty() && c != "None") {
            cluster_ips.push(c);
        }
    }
    cluster_ips.retain(|c| c != "None" && !c.is_empty());
    let ingress = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|v| v.iter().map(|i| i.ip.clone().unwrap_or_default()).collect())
        .unwrap_or_default();
    allocator::Service {
        namespace: s.namespace().unwrap_or_default(),
        name: s.name_any(),
        labels: s.labels().clone(),
        annotations: s.annotations().clone(),
        type_: spec.type_.clone().unwrap_or_else(|| "ClusterIP".into()),
        load_balancer_class: spec.load_balancer_class.clone(),
        load_balancer_ip: spec.load_balancer_ip.clone().unwrap_or_default(),
        cluster_ips,
        ip_family_policy: spec.ip_family_policy.clone(),
        external_traffic_policy_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        selector: spec.selector.clone().unwrap_or_default(),
        ports: spec
            .ports
            .unwrap_or_default()
            .iter()
            .map(|p| Port { proto: p.protocol.clone().unwrap_or_else(|| "TCP".into()), port: p.port })
            .collect(),
        ingress,
        created: s.metadata.creation_timestamp.as_ref().map_or(0, |t| t.0.as_second()),
    }
}

struct Hub {
    changed: Notify,
    synced: [AtomicBool; 3],
}

fn reflect<K>(api: Api<K>, dyntype: K::DynamicType, hub: Arc<Hub>, idx: usize, what: &'static str) -> Store<K>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Send + Sync,
{
    let writer = Writer::new(dyntype);
    let store = writer.as_reader();
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default().timeout(25)).default_backoff());
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::InitDone) => {
                    hub.synced[idx].store(true, Relaxed);
                    hub.changed.notify_one();
                }
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => hub.changed.notify_one(),
                Ok(_) => {}
                Err(e) => tracing::warn!(resource = what, error = %e, "watch failed; retrying"),
            }
        }
    });
    store
}

/// Runs the controller until an unrecoverable error. `leading`: None, always act (one replica);
/// Some, act only while it holds `true`.
pub async fn run(
    client: Client,
    settings: ControllerSettings,
    mut leading: Option<tokio::sync::watch::Receiver<bool>>,
) -> Result<(), crate::error::Error> {
    let hub = Arc::new(Hub { changed: Notify::new(), synced: Default::default() });
    let pool_ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metallb.io", "v1beta1", "IPAddressPool"),
        "ipaddresspools",
    );
    let svcs = reflect(Api::<Service>::all(client.clone()), (), hub.clone(), 0, "services");
    let pools = reflect(
        Api::<DynamicObject>::namespaced_with(client.clone(), &settings.namespace, &pool_ar),
        pool_ar.clone(),
        hub.clone(),
        1,
        "ipaddresspools",
    );
    let nss = reflect(Api::<Namespace>::all(client.clone()), (), hub.clone(), 2, "namespaces");
    // What this process wrote and the reflector may not show yet: uid → ingress IPs.
    let mut written: HashMap<String, Vec<String>> = HashMap::new();
    let mut last_pool_status: BTreeMap<String, allocator::PoolStatus> = BTreeMap::new();
    // Events of the previous pass: a condition that persists is reported once, not per pass.
    let mut last_events: Vec<allocator::Event> = vec![];
    let mut secret_checked = false;
    // Pools are all or nothing, as MetalLB: a pool that does not parse, or two that overlap, keep the
    // last good set in force (and before any good set, nothing is allocated or cleared).
    let mut good_pools: Option<Vec<Pool>> = None;
    let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
    let config_state = crate::config_state::Reporter::spawn(
        client.clone(),
        settings.namespace.clone(),
        crate::config_state::Component::Controller,
        settings.pod.clone(),
    );
    loop {
        hub.changed.notified().await;
        tokio::time::sleep(settings.debounce).await;
        if !hub.synced.iter().all(|s| s.load(Relaxed)) {
            continue;
        }
        if let Some(l) = leading.as_mut() {
            if !*l.borrow_and_update() {
                tracing::info!("standby: caches synced, waiting to lead");
                while !*l.borrow_and_update() {
                    if l.changed().await.is_err() {
                        return Err(crate::error::Error::LeaderElectionEnded);
                    }
                }
                // The caches have been filling all along: what the old leader wrote is in them (it
                // stopped writing at least lease_duration - renew_deadline ago).
                tracing::info!("leading: allocating");
            }
        }
        if !secret_checked {
            secret_checked = ensure_memberlist_secret(&client, &settings.namespace).await;
        }
        let mut input = Input { lb_class: settings.lb_class.clone(), ..Default::default() };
        let mut pool_objs = pools.state();
        pool_objs.sort_by_key(|p| p.name_any());
        // (pool, problem)
        let mut problems: BTreeSet<(String, String)> = BTreeSet::new();
        let mut parsed = Vec::new();
        for p in &pool_objs {
            let spec = p.data.get("spec").cloned().unwrap_or(json!({}));
            match pool_from_object(&p.name_any(), &spec) {
                Ok(pool) => parsed.push(pool),
                Err(e) => {
                    problems.insert((p.name_any(), e));
                }
            }
        }
        for (a, b) in allocator::overlapping(&parsed) {
            problems.insert((b.clone(), format!("overlaps with IPAddressPool {a:?}")));
        }
        for (pool, why) in problems.difference(&reported) {
            tracing::error!(pool = %pool, error = %why, "invalid IPAddressPool: the last good pools stay in force");
            if let Some(obj) = pool_objs.iter().find(|o| o.name_any() == *pool) {
                post_pool_event(&client, &settings.namespace, obj, why).await;
            }
        }
        reported = problems.clone();
        let errors: Vec<String> =
            problems.iter().map(|(p, why)| format!("IPAddressPool {}/{p}: {why}", settings.namespace)).collect();
        config_state.report(errors);
        if problems.is_empty() {
            good_pools = Some(parsed);
        }
        match &good_pools {
            Some(p) => input.pools = p.clone(),
            None => continue,
        }
        for n in nss.state() {
            input.namespaces.insert(n.name_any(), n.labels().clone());
        }
        let svc_objs = svcs.state();
        let mut by_key: HashMap<String, Arc<Service>> = HashMap::new();
        for s in &svc_objs {
            let mut a = service_from_k8s(s);
            let uid = s.uid().unwrap_or_default();
            if let Some(w) = written.get(&uid) {
                if *w == a.ingress {
                    written.remove(&uid);
                } else {
                    a.ingress = w.clone();
                }
            }
            by_key.insert(a.key(), s.clone());
            input.services.push(a);
        }
        written.retain(|uid, _| svc_objs.iter().any(|s| s.uid().as_deref() == Some(uid)));
        let out = allocator::reconcile(&input);
        for u in &out.updates {
            let Some(obj) = by_key.get(&u.service) else {
                continue;
            };
            let (ns, name) = (obj.namespace().unwrap_or_default(), obj.name_any());
            let api = Api::<Service>::namespaced(client.clone(), &ns);
            let ingress: Vec<_> = u.ingress.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
            let ann = json!({"metadata": {"annotations": {allocator::ANN_ALLOCATED_FROM_POOL: u.pool}}});
            if let Err(e) = api.patch(&name, &PatchParams::default(), &Patch::Merge(&ann)).await {
                tracing::warn!(service = %u.service, error = %e, "writing the pool annotation failed");
            }
            let st = json!({"status": {"loadBalancer": {"ingress": ingress}}});
            match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&st)).await {
                Ok(_) => {
                    tracing::info!(service = %u.service, ips = ?u.ingress, pool = ?u.pool, "service status written");
                    written.insert(obj.uid().unwrap_or_default(), u.ingress.iter().map(|i| i.to_string()).collect());
                }
                Err(e) => {
                    tracing::warn!(service = %u.service, error = %e, "writing the service status failed")
                }
            }
        }
        for e in &out.events {
            if last_events.contains(e) {
                continue;
            }
            if let Some(obj) = by_key.get(&e.service) {
                post_event(&client, obj, e).await;
            }
        }
        last_events = out.events.clone();
        let pool_api = |ns: &str| Api::<DynamicObject>::namespaced_with(client.clone(), ns, &pool_ar);
        for (name, st) in &out.pools {
            if last_pool_status.get(name) == Some(st) {
                continue;
            }
            let body = json!({"status": {
                "assignedIPv4": st.assigned_ipv4, "assignedIPv6": st.assigned_ipv6,
                "availableIPv4": st.available_ipv4, "availableIPv6": st.available_ipv6,
            }});
            match pool_api(&settings.namespace).patch_status(name, &PatchParams::default(), &Patch::Merge(&body)).await
            {
                Ok(_) => {
                    last_pool_status.insert(name.clone(), st.clone());
                }
                Err(e) => {
                    tracing::debug!(pool = %name, error = %e, "writing the pool status failed")
                }
            }
        }
        if !written.is_empty() {
            // Re-check once the writes have come back through the watch.
            hub.changed.notify_one();
        }
    }
}

/// As MetalLB's controller: creates the gossip Secret `memberlist` (key `secretkey`, 16 random bytes,
/// base64) when neither of MetalLB's names exists, so the speakers' gossip is encrypted from the
/// start. Returns whether the question is settled (exists or created).
async fn ensure_memberlist_secret(client: &Client, namespace: &str) -> bool {
    use k8s_openapi::api::core::v1::Secret;
    let api = Api::<Secret>::namespaced(client.clone(), namespace);
    for name in ["memberlist", "metallb-memberlist"] {
        match api.get_opt(name).await {
            Ok(Some(_)) => return true,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "gossip Secret not read; trying again later");
                return false;
            }
        }
    }
    let mut key = [0u8; 16];
    if let Err(e) = std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key)) {
        tracing::warn!(error = %e, "no randomness for the gossip key");
        return false;
    }
    let b64 = base64_raw(&key);
    let s = Secret {
        metadata: kube::api::ObjectMeta { name: Some("memberlist".into()), ..Default::default() },
        data: Some([("secretkey".to_string(), k8s_openapi::ByteString(b64.into_bytes()))].into()),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &s).await {
        Ok(_) => {
            tracing::info!(namespace, "gossip Secret memberlist created");
            true
        }
        Err(kube::Error::Api(s)) if s.code == 409 => true,
        Err(e) => {
            tracing::warn!(error = %e, "gossip Secret not created; trying again later");
            false
        }
    }
}

/// Standard base64 without padding (as MetalLB encodes the gossip key).
fn base64_raw(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A Warning `InvalidConfig` Event on an IPAddressPool.
async fn post_pool_event(client: &Client, namespace: &str, pool: &DynamicObject, why: &str) {
    let about = ObjectReference {
        api_version: Some("metallb.io/v1beta1".into()),
        kind: Some("IPAddressPool".into()),
        name: Some(pool.name_any()),
        namespace: Some(namespace.to_string()),
        uid: pool.uid(),
        ..Default::default()
    };
    let message = format!("{why}; the last good pools stay in force");
    post(client, about, "InvalidConfig", message, "Warning").await;
}

async fn post_event(client: &Client, svc: &Service, e: &allocator::Event) {
    let about = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        name: Some(svc.name_any()),
        namespace: svc.namespace(),
        uid: svc.uid(),
        ..Default::default()
    };
    let type_ = match e.type_ {
        allocator::EventType::Normal => "Normal",
        allocator::EventType::Warning => "Warning",
    };
    post(client, about, &e.reason, e.message.clone(), type_).await;
}

/// One core/v1 Event about `about`, from `k8s-bridge-controller`; a failure is logged and dropped.
async fn post(client: &Client, about: ObjectReference, reason: &str, message: String, type_: &str) {
    let ns = about.namespace.clone().unwrap_or_default();
    let name = about.name.clone().unwrap_or_default();
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let ev = K8sEvent {
        metadata: kube::api::ObjectMeta {
            generate_name: Some(format!("{name}.")),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: about,
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(type_.to_string()),
        first_timestamp: Some(now.clone()),
        last_timestamp: Some(now),
        count: Some(1),
        reporting_component: Some("k8s-bridge-controller".into()),
        source: Some(k8s_openapi::api::core::v1::EventSource {
            component: Some("k8s-bridge-controller".into()),
            host: None,
        }),
        ..Default::default()
    };
    if let Err(err) = Api::<K8sEvent>::namespaced(client.clone(), &ns).create(&PostParams::default(), &ev).await {
        tracing::debug!(object = %name, error = %err, "posting an Event failed");
    }
}

#[cfg(test)]
mod secret_tests {
    #[test]
    fn base64_without_padding() {
        assert_eq!(super::base64_raw(b"f"), "Zg");
        assert_eq!(super::base64_raw(b"fo"), "Zm8");
        assert_eq!(super::base64_raw(b"foo"), "Zm9v");
        assert_eq!(super::base64_raw(b"foobar"), "Zm9vYmFy");
        assert_eq!(super::base64_raw(&[0u8; 16]).len(), 22);
    }
}
