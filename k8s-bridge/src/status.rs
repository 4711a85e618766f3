//! MetalLB's status objects, written by the node they are about: a ServiceBGPStatus per Service this
//! node advertises over BGP (with the peers it goes to) and a ServiceL2Status per Service whose IP this
//! node answers ARP/NDP for (with the interfaces). Names are derived from node and Service, labels
//! `metallb.io/node`, `metallb.io/service-name` and `metallb.io/service-namespace` as MetalLB sets them.
//! Objects of this node that no longer apply are deleted.
use crate::metrics::Metrics;
use crate::translate::{Desired, Protocol};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use serde_json::{json, Value};
use speaker_api::v1 as pb;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub const NODE_LABEL: &str = "metallb.io/node";

/// The status writer lists this node's objects again this often, to see deletions it did not make.
pub const RELIST: Duration = Duration::from_secs(600);

pub const BGP_KIND: &str = "ServiceBGPStatus";
pub const L2_KIND: &str = "ServiceL2Status";

/// One status object as it should be: (kind, name) → (labels, status). Typed rather than JSON: a
/// node keeps one per Service it announces, and a JSON map allocates a node of eleven slots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub kind: &'static str,
    pub name: String,
    pub node: Arc<str>,
    pub service_namespace: String,
    pub service_name: String,
    /// ServiceBGPStatus: the peers; ServiceL2Status: the names of the interfaces.
    pub items: Vec<String>,
}

impl Wanted {
    /// The `status` of the object, as MetalLB writes it.
    pub fn status(&self) -> Value {
        let (node, name, ns) = (&*self.node, &self.service_name, &self.service_namespace);
        if self.kind == L2_KIND {
            let interfaces: Vec<Value> = self.items.iter().map(|i| json!({"name": i})).collect();
            json!({"node": node, "serviceName": name, "serviceNamespace": ns, "interfaces": interfaces})
        } else {
            json!({"node": node, "serviceName": name, "serviceNamespace": ns, "peers": self.items})
        }
    }
}

/// What the API server has for one object: a 64-bit digest of its status (object keys in sorted
/// order, so the order the server writes them in does not matter). Only compared with the digest of
/// the wanted status; two different statuses sharing a digest would leave one write undone, at odds
/// of about 1 in 10^15 for 10,000 objects.
fn digest(v: &Value) -> u64 {
    use std::hash::{Hash, Hasher};
    fn feed(v: &Value, h: &mut std::collections::hash_map::DefaultHasher) {
        match v {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, b).hash(h),
            Value::Number(n) => (2u8, n.to_string()).hash(h),
            Value::String(s) => (3u8, s).hash(h),
            Value::Array(a) => {
                (4u8, a.len()).hash(h);
                a.iter().for_each(|x| feed(x, h));
            }
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                (5u8, keys.len()).hash(h);
                for k in keys {
                    k.hash(h);
                    feed(&m[k], h);
                }
            }
        }
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    feed(v, &mut h);
    h.finish()
}

/// 64-bit FNV-1a, hex: a short stable suffix for object names (names must be ≤ 253 characters and
/// Service names may be long).
fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// One series of `metallb_speaker_announced`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AnnouncedLabels {
    pub ip: String,
    pub node: String,
    /// `bgp` or `layer2`, as MetalLB spells them.
    pub protocol: &'static str,
    /// `namespace/name`.
    pub service: String,
}

/// speakerd's Layer 2 announcements by IP (each lookup O(log n): thousands of Services per pass).
fn l2_index(l2: &[pb::L2Announcement]) -> BTreeMap<std::net::IpAddr, &pb::L2Announcement> {
    l2.iter().filter_map(|a| Some((a.ip.parse().ok()?, a))).collect()
}

/// The BGP announcements whose prefix contains `ip`, found by masking `ip` to each prefix length in use
/// (a handful) rather than by scanning every announcement for every Service.
struct BgpIndex<'a> {
    by_len: BTreeMap<(bool, u8), BTreeMap<ipnet::IpNet, Vec<&'a pb::Announcement>>>,
}

impl<'a> BgpIndex<'a> {
    fn new(bgp: &'a [pb::Announcement]) -> Self {
        let mut by_len: BTreeMap<(bool, u8), BTreeMap<ipnet::IpNet, Vec<&pb::Announcement>>> = BTreeMap::new();
        for a in bgp {
            if let Ok(n) = a.prefix.parse::<ipnet::IpNet>() {
                let n = n.trunc();
                by_len.entry((n.addr().is_ipv4(), n.prefix_len())).or_default().entry(n).or_default().push(a);
            }
        }
        BgpIndex { by_len }
    }

    fn containing(&self, ip: std::net::IpAddr) -> impl Iterator<Item = &'a pb::Announcement> + '_ {
        self.by_len
            .iter()
            .filter(move |((v4, _), _)| *v4 == ip.is_ipv4())
            .filter_map(move |((_, len), m)| m.get(&ipnet::IpNet::new(ip, *len).ok()?.trunc()))
            .flatten()
            .copied()
    }
}

/// What this node announces, as MetalLB's speaker sets `metallb_speaker_announced`: every Service IP it
/// announces over BGP, and every Layer 2 Service IP it is the elected owner of (`l2`: speakerd's view).
pub fn announced(node: &str, d: &Desired, l2: &[pb::L2Announcement]) -> BTreeSet<AnnouncedLabels> {
    let l2_by_ip = l2_index(l2);
    d.services
        .iter()
        .filter(|s| match s.protocol {
            Protocol::Bgp => true,
            Protocol::Layer2 => l2_by_ip.get(&s.ip).is_some_and(|a| a.owner_node == node),
        })
        .map(|s| AnnouncedLabels {
            ip: s.ip.to_string(),
            node: node.to_string(),
            protocol: match s.protocol {
                Protocol::Bgp => "bgp",
                Protocol::Layer2 => "layer2",
            },
            service: format!("{}/{}", s.namespace, s.name),
        })
        .collect()
}

/// The status objects this node should have. `l2` is speakerd's view of the Layer 2 announcements
/// (which node answers, on which interfaces).
pub fn wanted(node: &str, d: &Desired, l2: &[pb::L2Announcement]) -> Vec<Wanted> {
    let peer_names: Vec<String> =
        d.peers.iter().map(|p| if p.name.is_empty() { p.address.clone() } else { p.name.clone() }).collect();
    // A session that does not carry the IP's family does not get it (PeerConfig.families; empty: both).
    let carries = |name: &str, ip: &std::net::IpAddr| {
        let fam = if ip.is_ipv4() { pb::AddressFamily::Ipv4Unicast } else { pb::AddressFamily::Ipv6Unicast } as i32;
        d.peers
            .iter()
            .zip(&peer_names)
            .find(|(_, n)| n.as_str() == name)
            .is_none_or(|(p, _)| p.families.is_empty() || p.families.contains(&fam))
    };
    let mut bgp: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut l2_ifs: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let bgp_index = BgpIndex::new(&d.bgp);
    let l2_by_ip = l2_index(l2);
    for s in &d.services {
        let key = (s.namespace.clone(), s.name.clone());
        match s.protocol {
            Protocol::Bgp => {
                let peers = bgp.entry(key).or_default();
                for a in bgp_index.containing(s.ip) {
                    if a.peers.is_empty() {
                        peers.extend(peer_names.iter().filter(|p| carries(p, &s.ip)).cloned());
                    } else {
                        peers.extend(a.peers.iter().filter(|p| peer_names.contains(p) && carries(p, &s.ip)).cloned());
                    }
                }
            }
            Protocol::Layer2 => {
                if let Some(a) = l2_by_ip.get(&s.ip).filter(|a| a.owner_node == node && !a.answering_on.is_empty()) {
                    let ifs = l2_ifs.entry(key).or_default();
                    ifs.extend(a.answering_on.iter().filter_map(|x| x.split_whitespace().next()).map(str::to_string));
                }
            }
        }
    }
    let mut out = Vec::with_capacity(bgp.len() + l2_ifs.len());
    let node_name: Arc<str> = node.into();
    for ((ns, name), peers) in bgp {
        out.push(Wanted {
            kind: BGP_KIND,
            name: format!("bgp-{}", short_hash(&format!("{node}/{ns}/{name}"))),
            node: node_name.clone(),
            service_namespace: ns,
            service_name: name,
            items: peers.into_iter().collect(),
        });
    }
    for ((ns, name), ifs) in l2_ifs {
        out.push(Wanted {
            kind: L2_KIND,
            name: format!("l2-{}", short_hash(&format!("{node}/{ns}/{name}"))),
            node: node_name.clone(),
            service_namespace: ns,
            service_name: name,
            items: ifs.into_iter().collect(),
        });
    }
    out
}

type Key = (&'static str, String);

#[derive(Default)]
struct Inner {
    /// The latest wanted set (the reconcile loop replaces it; latest wins).
    want: BTreeMap<Key, Wanted>,
    /// What the API server has ([`digest`] of the status), as last listed or written; None until
    /// listed (again, after an error).
    written: Option<BTreeMap<Key, u64>>,
    /// Keys whose wanted state differs from `written`, with the time since when.
    dirty: BTreeMap<Key, Instant>,
    in_flight: BTreeSet<Key>,
}

impl Inner {
    fn recheck(&mut self, k: &Key, now: Instant) {
        let differs = match &self.written {
            None => true,
            Some(w) => w.get(k).copied() != self.want.get(k).map(|x| digest(&x.status())),
        };
        if differs {
            self.dirty.entry(k.clone()).or_insert(now);
        } else {
            self.dirty.remove(k);
        }
    }

    fn recheck_all(&mut self, now: Instant) {
        let mut keys: BTreeSet<Key> = self.want.keys().cloned().collect();
        if let Some(w) = &self.written {
            keys.extend(w.keys().cloned());
        }
        keys.extend(self.dirty.keys().cloned());
        for k in keys {
            self.recheck(&k, now);
        }
    }
}

/// This node's status objects, kept equal to [`wanted`] by one writer task ([`StatusQueue::run`]).
/// The reconcile loop hands over the whole wanted set ([`StatusQueue::set`], never waits); the writer
/// lists this node's objects once (at start and after an error) and then writes only the objects whose
/// wanted state differs from what it last wrote, oldest difference first. Memory is bounded by the
/// number of objects, not by the number of changes: a key holds only its latest wanted state. Nothing
/// is dropped: a failed write stays pending and is retried with backoff until the API server answers.
/// The bridge does not watch these kinds, so its own writes never wake the reconcile loop.
pub struct StatusQueue {
    inner: Mutex<Inner>,
    notify: Notify,
    metrics: Arc<Metrics>,
}

/// The speaker pod: owner of this node's status objects, so that the API server's garbage collector
/// deletes them with the pod, as MetalLB's speaker sets it (`SetOwnerReference`: not a controller
/// reference, no `blockOwnerDeletion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodOwner {
    pub name: String,
    pub uid: String,
}

impl PodOwner {
    /// The pod as the downward API names it (`METALLB_POD_NAME`, `METALLB_POD_UID`): None unless both
    /// are given and not empty.
    pub fn from_downward_api(name: Option<String>, uid: Option<String>) -> Option<PodOwner> {
        match (name.filter(|n| !n.is_empty()), uid.filter(|u| !u.is_empty())) {
            (Some(name), Some(uid)) => Some(PodOwner { name, uid }),
            _ => None,
        }
    }

    /// `metadata.ownerReferences` naming the pod.
    pub fn references(&self) -> Value {
        json!([{"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}])
    }

    fn owns(&self, meta: &kube::api::ObjectMeta) -> bool {
        meta.owner_references.as_ref().is_some_and(|rs| rs.iter().any(|r| r.uid == self.uid))
    }
}

/// Handles on the API server for one node's status objects.
#[derive(Clone)]
pub struct StatusApi {
    node: String,
    l2: Api<DynamicObject>,
    bgp: Api<DynamicObject>,
    owner: Option<PodOwner>,
    /// Listed objects not owned by this pod yet (written by a previous pod, or by MetalLB's speaker):
    /// their next write sets the owner first.
    adopt: Arc<Mutex<BTreeSet<Key>>>,
}

impl StatusApi {
    pub fn new(client: kube::Client, namespace: &str, node: &str, owner: Option<PodOwner>) -> Self {
        let ar = |kind: &str, plural: &str| {
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("metallb.io", "v1beta1", kind), plural)
        };
        StatusApi {
            node: node.to_string(),
            l2: Api::namespaced_with(client.clone(), namespace, &ar("ServiceL2Status", "servicel2statuses")),
            bgp: Api::namespaced_with(client, namespace, &ar("ServiceBGPStatus", "servicebgpstatuses")),
            owner,
            adopt: Arc::default(),
        }
    }

    fn api(&self, kind: &str) -> &Api<DynamicObject> {
        if kind == L2_KIND {
            &self.l2
        } else {
            &self.bgp
        }
    }

    async fn list(&self) -> Result<BTreeMap<Key, u64>, kube::Error> {
        let mut known = BTreeMap::new();
        let mut adopt = BTreeSet::new();
        let lp = ListParams::default().labels(&format!("{NODE_LABEL}={}", self.node));
        for (kind, api) in [(L2_KIND, &self.l2), (BGP_KIND, &self.bgp)] {
            for o in api.list(&lp).await? {
                let key = (kind, o.metadata.name.clone().unwrap_or_default());
                // Not ours yet: recorded as having no status, so that the next pass writes it (and adopts it).
                let status = match &self.owner {
                    Some(owner) if !owner.owns(&o.metadata) => {
                        adopt.insert(key.clone());
                        Value::Null
                    }
                    _ => o.data.get("status").cloned().unwrap_or(Value::Null),
                };
                known.insert(key, digest(&status));
            }
        }
        *self.adopt.lock().unwrap_or_else(|e| e.into_inner()) = adopt;
        Ok(known)
    }

    /// One write: `w` Some → create if `exists` is false, then set the status; None → delete.
    async fn write(&self, key: &Key, w: Option<&Wanted>, exists: bool) -> Result<Option<u64>, kube::Error> {
        let api = self.api(key.0);
        let Some(w) = w else {
            match api.delete(&key.1, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
            return Ok(None);
        };
        if exists && self.adopt.lock().unwrap_or_else(|e| e.into_inner()).contains(key) {
            if let Some(o) = &self.owner {
                let p = json!({"metadata": {"ownerReferences": o.references()}});
                api.patch(&key.1, &PatchParams::default(), &Patch::Merge(p)).await?;
            }
            self.adopt.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
        }
        if !exists {
            let mut obj = json!({
                "apiVersion": "metallb.io/v1beta1",
                "kind": w.kind,
                "metadata": {"name": w.name, "labels": {
                    NODE_LABEL: self.node,
                    "metallb.io/service-name": w.service_name,
                    "metallb.io/service-namespace": w.service_namespace,
                }},
            });
            if let Some(o) = &self.owner {
                obj["metadata"]["ownerReferences"] = o.references();
            }
            let obj: DynamicObject = serde_json::from_value(obj).expect("static shape");
            match api.create(&PostParams::default(), &obj).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        let status = w.status();
        let written = digest(&status);
        api.patch_status(&w.name, &PatchParams::default(), &Patch::Merge(json!({"status": status}))).await?;
        Ok(Some(written))
    }
}

fn unix_ms(at: Instant) -> u64 {
    let ago = Instant::now().saturating_duration_since(at);
    std::time::SystemTime::now()
        .checked_sub(ago)
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl StatusQueue {
    pub fn new(metrics: Arc<Metrics>) -> Arc<StatusQueue> {
        Arc::new(StatusQueue { inner: Mutex::new(Inner::default()), notify: Notify::new(), metrics })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gauges(&self, i: &Inner) {
        self.metrics.status_pending.store(i.dirty.len() as u64, Relaxed);
        let oldest = i.dirty.values().min().map(|t| unix_ms(*t)).unwrap_or(0);
        self.metrics.status_oldest_pending_unix_ms.store(oldest, Relaxed);
    }

    /// Hands over the whole wanted set; never waits on the API server.
    pub fn set(&self, want: Vec<Wanted>) {
        let now = Instant::now();
        let mut i = self.lock();
        let new: BTreeMap<Key, Wanted> = want.into_iter().map(|w| ((w.kind, w.name.clone()), w)).collect();
        if new == i.want {
            return;
        }
        // Only keys whose wanted state changed need a new look (plus those already pending).
        let mut touched: BTreeSet<Key> = BTreeSet::new();
        for (k, w) in &new {
            if i.want.get(k) != Some(w) {
                touched.insert(k.clone());
            }
        }
        for k in i.want.keys() {
            if !new.contains_key(k) {
                touched.insert(k.clone());
            }
        }
        i.want = new;
        for k in touched {
            i.recheck(&k, now);
        }
        self.gauges(&i);
        drop(i);
        self.notify.notify_one();
    }

    /// Whether every wanted state has been written (for tests and logs).
    pub fn settled(&self) -> bool {
        let i = self.lock();
        i.written.is_some() && i.dirty.is_empty() && i.in_flight.is_empty()
    }

    /// Up to `n` pending keys not in flight, oldest first, with what to write.
    fn take(&self, n: usize) -> Vec<(Key, Option<Wanted>, bool)> {
        let mut i = self.lock();
        let Some(written) = &i.written else { return Vec::new() };
        let mut ks: Vec<(&Key, &Instant)> = i.dirty.iter().filter(|(k, _)| !i.in_flight.contains(*k)).collect();
        ks.sort_by_key(|(_, t)| **t);
        let out: Vec<(Key, Option<Wanted>, bool)> =
            ks.into_iter().take(n).map(|(k, _)| (k.clone(), i.want.get(k).cloned(), written.contains_key(k))).collect();
        for (k, _, _) in &out {
            i.in_flight.insert(k.clone());
        }
        out
    }

    fn done(&self, key: Key, r: Result<Option<u64>, ()>) {
        let now = Instant::now();
        let mut i = self.lock();
        i.in_flight.remove(&key);
        match r {
            Ok(v) => {
                if let Some(w) = i.written.as_mut() {
                    match v {
                        Some(v) => w.insert(key.clone(), v),
                        None => w.remove(&key),
                    };
                }
            }
            // What the server has is unknown now: list again before the next writes.
            Err(()) => i.written = None,
        }
        if i.written.is_some() {
            i.recheck(&key, now);
        }
        self.gauges(&i);
    }

    /// The writer task: runs until the process ends.
    pub async fn run(self: Arc<Self>, api: StatusApi, limits: crate::events::Limits) {
        use crate::events::{Limiter, WRITE_TIMEOUT};
        let mut limiter = Limiter::new(limits.qps);
        let mut running: JoinSet<(Key, Result<Option<u64>, ()>)> = JoinSet::new();
        let mut retry = Duration::from_secs(1);
        let mut failing = false;
        let mut listed_at = Instant::now();
        loop {
            if running.is_empty() && listed_at.elapsed() >= RELIST {
                // Objects deleted behind the writer's back (by a user, or by the garbage collector after
                // a pod it did not adopt in time) are seen and written again.
                let mut i = self.lock();
                if i.written.is_some() {
                    i.written = None;
                }
            }
            let listed = self.lock().written.is_some();
            if !listed && running.is_empty() {
                limiter.acquire().await;
                match tokio::time::timeout(WRITE_TIMEOUT, api.list()).await {
                    Ok(Ok(known)) => {
                        listed_at = Instant::now();
                        let mut i = self.lock();
                        i.written = Some(known);
                        i.recheck_all(Instant::now());
                        self.gauges(&i);
                    }
                    r => {
                        self.metrics.status_write_errors.fetch_add(1, Relaxed);
                        if !failing {
                            match r {
                                Ok(Err(e)) => {
                                    tracing::warn!(error = %e, "status objects (ServiceL2Status/ServiceBGPStatus) not listed; retrying")
                                }
                                _ => tracing::warn!(
                                    "status objects not listed: the API server did not answer in time; retrying"
                                ),
                            }
                        }
                        failing = true;
                        tokio::time::sleep(retry).await;
                        retry = (retry * 2).min(Duration::from_secs(30));
                        continue;
                    }
                }
            }
            let free = limits.concurrency.max(1).saturating_sub(running.len());
            let batch = if free > 0 { self.take(free) } else { Vec::new() };
            if batch.is_empty() {
                if running.is_empty() {
                    let notified = self.notify.notified();
                    if self.take_peek() {
                        continue;
                    }
                    let _ = tokio::time::timeout(RELIST.saturating_sub(listed_at.elapsed()), notified).await;
                    continue;
                }
                tokio::select! {
                    r = running.join_next() => {
                        if let Some(Ok((key, r))) = r {
                            if r.is_ok() {
                                self.metrics.status_writes.fetch_add(1, Relaxed);
                                if failing {
                                    tracing::info!("status objects written again");
                                }
                                failing = false;
                                retry = Duration::from_secs(1);
                            } else {
                                self.metrics.status_write_errors.fetch_add(1, Relaxed);
                            }
                            let err = r.is_err();
                            self.done(key, r);
                            if err {
                                // Back off before the next writes; the pending ones stay pending.
                                tokio::time::sleep(retry).await;
                                retry = (retry * 2).min(Duration::from_secs(30));
                            }
                        }
                    }
                    _ = self.notify.notified() => {}
                }
                continue;
            }
            for (key, w, exists) in batch {
                limiter.acquire().await;
                let api = api.clone();
                running.spawn(async move {
                    let r = match tokio::time::timeout(WRITE_TIMEOUT, api.write(&key, w.as_ref(), exists)).await {
                        Ok(Ok(v)) => Ok(v),
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, object = %key.1, "status write failed");
                            Err(())
                        }
                        Err(_) => Err(()),
                    };
                    (key, r)
                });
            }
        }
    }

    /// Is there work that `take` would hand out (checked after arming the notification)?
    fn take_peek(&self) -> bool {
        let i = self.lock();
        i.written.is_none() || i.dirty.keys().any(|k| !i.in_flight.contains(k))
    }
}

#[cfg(test)]
mod queue_tests {
    use super::*;
    use crate::translate::ServiceAnnouncement;

    #[test]
    fn pod_owner_needs_a_name_and_a_uid() {
        let some = |s: &str| Some(s.to_string());
        let cases = [
            (some("speaker-x"), some("u1"), Some(("speaker-x", "u1"))),
            (some("speaker-x"), None, None),
            (None, some("u1"), None),
            (some(""), some("u1"), None),
            (some("speaker-x"), some(""), None),
            (None, None, None),
        ];
        for (name, uid, want) in cases {
            let got = PodOwner::from_downward_api(name.clone(), uid.clone());
            let got = got.as_ref().map(|o| (o.name.as_str(), o.uid.as_str()));
            assert_eq!(got, want, "{name:?} {uid:?}");
        }
    }

    #[test]
    fn announced_is_every_bgp_ip_and_the_layer2_ips_this_node_owns_as_metallb_sets_it() {
        let svc = |name: &str, ip: &str, protocol| ServiceAnnouncement {
            namespace: "default".into(),
            name: name.into(),
            ip: ip.parse().unwrap(),
            protocol,
            pool: "p".into(),
        };
        let d = Desired {
            services: vec![
                svc("web", "203.0.113.10", Protocol::Bgp),
                svc("lan", "192.0.2.200", Protocol::Layer2),
                svc("other", "192.0.2.201", Protocol::Layer2),
            ],
            ..Desired::default()
        };
        let l2 = |ip: &str, owner: &str| pb::L2Announcement {
            ip: ip.into(),
            owner_node: owner.into(),
            ..Default::default()
        };
        let a = announced("n1", &d, &[l2("192.0.2.200", "n1"), l2("192.0.2.201", "n2")]);
        let got: Vec<(&str, &str, &str)> = a.iter().map(|x| (x.ip.as_str(), x.protocol, x.service.as_str())).collect();
        assert_eq!(got, vec![("192.0.2.200", "layer2", "default/lan"), ("203.0.113.10", "bgp", "default/web")]);
        assert!(a.iter().all(|x| x.node == "n1"));
        let m = Metrics::default();
        *m.announced.lock().unwrap() = a;
        let text = m.render();
        assert!(
            text.contains("metallb_speaker_announced{ip=\"203.0.113.10\",node=\"n1\",protocol=\"bgp\",service=\"default/web\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE metallb_speaker_announced gauge\n"));
        assert!(!text.contains("192.0.2.201"), "owned by n2: not announced from here");
    }

    #[test]
    fn bgp_status_names_only_the_peers_whose_session_carries_the_family() {
        let peer =
            |name: &str, fams: Vec<i32>| pb::PeerConfig { name: name.into(), families: fams, ..Default::default() };
        let d = Desired {
            services: vec![ServiceAnnouncement {
                namespace: "default".into(),
                name: "v6".into(),
                ip: "2001:db8::10".parse().unwrap(),
                protocol: Protocol::Bgp,
                pool: "p".into(),
            }],
            peers: vec![peer("v4only", vec![pb::AddressFamily::Ipv4Unicast as i32]), peer("both", vec![])],
            bgp: vec![pb::Announcement { prefix: "2001:db8::10/128".into(), ..Default::default() }],
            ..Desired::default()
        };
        let st = wanted("n1", &d, &[]);
        assert_eq!(st.len(), 1);
        assert_eq!(st[0].status()["peers"], json!(["both"]));
    }

    fn w(name: &str, v: i64) -> Wanted {
        Wanted {
            kind: BGP_KIND,
            name: name.into(),
            node: "n1".into(),
            service_namespace: "default".into(),
            service_name: name.into(),
            items: vec![format!("peer{v}")],
        }
    }

    #[test]
    fn a_digest_ignores_key_order_and_sees_every_difference() {
        let base: Value = serde_json::from_str(r#"{"node":"n1","peers":["a","b"],"serviceName":"s"}"#).unwrap();
        let reordered: Value = serde_json::from_str(r#"{"serviceName":"s","peers":["a","b"],"node":"n1"}"#).unwrap();
        assert_eq!(digest(&base), digest(&reordered));
        for other in [
            json!({"node": "n1", "peers": ["b", "a"], "serviceName": "s"}),
            json!({"node": "n1", "peers": ["a"], "serviceName": "s"}),
            json!({"node": "n1", "peers": ["a", "b"], "serviceName": "s", "x": null}),
            json!({"node": "n1", "peers": "a,b", "serviceName": "s"}),
            json!({"node": "n2", "peers": ["a", "b"], "serviceName": "s"}),
            json!(null),
        ] {
            assert_ne!(digest(&base), digest(&other), "{other}");
        }
    }

    #[test]
    fn statuses_are_written_as_metallb_writes_them() {
        let mut x = w("s", 1);
        assert_eq!(
            x.status(),
            json!({"node": "n1", "serviceName": "s", "serviceNamespace": "default", "peers": ["peer1"]})
        );
        x.kind = L2_KIND;
        x.items = vec!["eth0".into(), "eth1".into()];
        assert_eq!(
            x.status(),
            json!({"node": "n1", "serviceName": "s", "serviceNamespace": "default",
                "interfaces": [{"name": "eth0"}, {"name": "eth1"}]})
        );
    }

    fn key(name: &str) -> Key {
        ("ServiceBGPStatus", name.to_string())
    }

    fn listed(q: &StatusQueue, have: &[(&str, i64)]) {
        let mut i = q.lock();
        i.written = Some(have.iter().map(|(n, v)| (key(n), digest(&w(n, *v).status()))).collect());
        i.recheck_all(Instant::now());
    }

    #[test]
    fn only_differences_are_written_latest_wins_and_a_failure_relists() {
        let m = Arc::new(Metrics::default());
        let q = StatusQueue::new(m.clone());
        // Nothing is handed out before the first list.
        q.set(vec![w("a", 1), w("b", 1), w("c", 1)]);
        assert!(q.take(10).is_empty());
        // The server already has a=1 and a stale d: b and c to create, d to delete, a untouched.
        listed(&q, &[("a", 1), ("d", 9)]);
        assert_eq!(m.status_pending.load(Relaxed), 3);
        let batch = q.take(2);
        assert_eq!(batch.len(), 2, "bounded by the free slots");
        assert!(
            batch.iter().all(|(k, ..)| k != &key("a")),
            "a already as wanted: {:?}",
            batch.iter().map(|b| &b.0).collect::<Vec<_>>()
        );
        // While b is in flight its wanted state changes twice: only the latest is kept (no queue of
        // changes), and it is written after the current write completes.
        q.set(vec![w("a", 1), w("b", 2), w("c", 1)]);
        q.set(vec![w("a", 1), w("b", 3), w("c", 1)]);
        for (k, want, exists) in batch {
            assert!(!exists || k == key("d"));
            q.done(k.clone(), Ok(want.map(|x| digest(&x.status()))));
        }
        let rest = q.take(10);
        let names: Vec<&str> = rest.iter().map(|(k, ..)| k.1.as_str()).collect();
        assert!(names.contains(&"b"), "b written again with its latest state: {names:?}");
        let b = rest.iter().find(|(k, ..)| k == &key("b")).unwrap();
        assert_eq!(b.1.as_ref().map(|x| x.items.clone()), Some(vec!["peer3".to_string()]));
        // A failed write: what the server has is unknown, nothing is handed out until listed again,
        // and the key stays pending (never lost).
        for (k, ..) in rest {
            q.done(k, Err(()));
        }
        assert!(q.take(10).is_empty());
        assert!(!q.settled());
        listed(&q, &[("a", 1), ("b", 2)]);
        let again = q.take(10);
        for (k, want, _) in again {
            q.done(k, Ok(want.map(|x| digest(&x.status()))));
        }
        assert!(q.settled(), "every wanted state written, d deleted");
        assert_eq!(m.status_pending.load(Relaxed), 0);
        // Setting the same set again wakes nothing.
        q.set(vec![w("a", 1), w("b", 3), w("c", 1)]);
        assert!(q.take(10).is_empty());
    }
}
