//! The object store: objects, the global resourceVersion counter (like etcd's
//! revision), the event history that watches replay, and the open watches.
//!
//! Everything that checks or changes an object on its way in (names, defaults,
//! CRD schemas and CEL rules) is in [`admission`]; this module keeps the
//! versioned storage: commits, preconditions, generation, snapshots from
//! history, compaction and watch registration.

mod admission;

use crate::resources::{self, ResKey, ResourceDef};
use crate::status::{new_uid, rfc3339, ApiError};
use admission::Allocator;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// How many history events are kept before the oldest are compacted away.
pub const DEFAULT_HISTORY_LIMIT: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change in the history. `obj` is the state after the change (for a
/// delete: the last state, carrying the deletion's resourceVersion); `prev` the
/// state before it.
#[derive(Debug, Clone)]
pub struct HistEvent {
    pub rv: u64,
    pub res: ResKey,
    pub namespace: String,
    pub type_: EventType,
    pub obj: Value,
    pub prev: Option<Value>,
}

/// What a watch stream receives.
#[derive(Debug, Clone)]
pub enum WatchItem {
    Event(Arc<HistEvent>),
    /// A progress notification: every event up to this resourceVersion was sent.
    Bookmark(u64),
}

struct WatcherReg {
    res: ResKey,
    namespace: Option<String>,
    bookmarks: bool,
    tx: UnboundedSender<WatchItem>,
}

type ObjKey = (String, String);

struct Inner {
    rv: u64,
    /// History covers (compacted, rv]; older resourceVersions are gone.
    compacted: u64,
    history_limit: usize,
    builtins: Vec<ResourceDef>,
    crd_defs: Vec<ResourceDef>,
    objects: BTreeMap<ResKey, BTreeMap<ObjKey, Value>>,
    history: VecDeque<Arc<HistEvent>>,
    watchers: HashMap<u64, WatcherReg>,
    next_watcher: u64,
    /// Service clusterIPs and nodePorts handed out so far.
    alloc: Allocator,
}

/// How an update treats the incoming object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    /// PUT/PATCH of the main resource: status kept from the stored object when
    /// the kind has a status subresource; resourceVersion precondition checked.
    Main,
    /// PUT/PATCH of `/status`: only `.status` taken from the incoming object.
    Status,
    /// Test back door: the incoming object replaces everything but uid and
    /// creationTimestamp; no precondition.
    Raw,
}

/// Where a watch starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchStart {
    /// Synthetic ADDED events for the current objects, then live events.
    Current,
    /// Replay history after this resourceVersion, then live events.
    After(u64),
}

pub struct WatchHandle {
    pub id: u64,
    pub initial: Vec<WatchItem>,
    pub rx: UnboundedReceiver<WatchItem>,
    /// The store's resourceVersion when the watch was registered.
    pub rv: u64,
}

pub struct Store {
    inner: Mutex<Inner>,
}

fn meta(obj: &Value, field: &str) -> Option<String> {
    obj.get("metadata")?.get(field)?.as_str().map(str::to_string)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"].as_object_mut().unwrap()
}

/// Returns the object as seen at `version` of `def` (apiVersion and kind set).
pub fn at_version(def: &ResourceDef, version: &str, mut obj: Value) -> Value {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(def.api_version(version)));
        m.insert("kind".into(), json!(def.kind));
    }
    obj
}

/// Parses a resourceVersion string.
pub fn parse_rv(s: &str) -> Result<u64, ApiError> {
    s.parse::<u64>().map_err(|_| {
        ApiError::bad_request(format!("invalid resource version: strconv.ParseUint: parsing {s:?}: invalid syntax"))
    })
}

/// Content that counts for `metadata.generation` (everything but metadata,
/// and but status when the kind has a status subresource).
fn generation_content(def: &ResourceDef, obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("apiVersion");
        m.remove("kind");
        if def.status_subresource {
            m.remove("status");
        }
    }
    o
}

/// The object without the fields that a no-op update may differ in.
fn comparable(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    if let Some(m) = o.as_object_mut() {
        m.remove("apiVersion");
    }
    o
}

impl Inner {
    fn all_defs(&self) -> impl Iterator<Item = &ResourceDef> {
        self.builtins.iter().chain(self.crd_defs.iter())
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .get(&ResKey { group: String::new(), plural: "namespaces".into() })
            .is_some_and(|m| m.contains_key(&(String::new(), ns.to_string())))
    }

    /// Records a change: bumps the revision, stores, logs and fans out.
    fn commit(
        &mut self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        type_: EventType,
        new: Value,
        prev: Option<Value>,
    ) -> Value {
        self.rv += 1;
        let rv = self.rv;
        let mut obj = new;
        meta_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let key = (ns.to_string(), name.to_string());
        let coll = self.objects.entry(def.key()).or_default();
        if type_ == EventType::Deleted {
            coll.remove(&key);
        } else {
            coll.insert(key, obj.clone());
        }
        let ev = Arc::new(HistEvent { rv, res: def.key(), namespace: ns.to_string(), type_, obj: obj.clone(), prev });
        self.history.push_back(ev.clone());
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
        self.watchers.retain(|_, w| {
            if w.res != ev.res || w.namespace.as_ref().is_some_and(|n| *n != ev.namespace) {
                return !w.tx.is_closed();
            }
            w.tx.send(WatchItem::Event(ev.clone())).is_ok()
        });
        if def.key() == crd_key() {
            self.refresh_crds();
        }
        obj
    }

    fn refresh_crds(&mut self) {
        let crds: Vec<Value> = self.objects.get(&crd_key()).map(|m| m.values().cloned().collect()).unwrap_or_default();
        self.crd_defs = crds.iter().filter_map(resources::from_crd).collect();
    }

    /// Objects of `res` as they were at revision `at` (reconstructed by
    /// undoing the history after it).
    fn snapshot(&self, res: &ResKey, at: u64) -> Result<BTreeMap<ObjKey, Value>, ApiError> {
        let mut objs = self.objects.get(res).cloned().unwrap_or_default();
        if at >= self.rv {
            return Ok(objs);
        }
        if at < self.compacted {
            return Err(too_old(at, self.compacted));
        }
        for ev in self.history.iter().rev().take_while(|e| e.rv > at) {
            if ev.res != *res {
                continue;
            }
            let key = (ev.namespace.clone(), meta(&ev.obj, "name").unwrap_or_default());
            match (&ev.type_, &ev.prev) {
                (EventType::Added, _) => {
                    objs.remove(&key);
                }
                (_, Some(p)) => {
                    objs.insert(key, p.clone());
                }
                (_, None) => {}
            }
        }
        Ok(objs)
    }

    fn find_def(&self, api_version: &str, kind: &str) -> Option<ResourceDef> {
        let (group, version) = split_api_version(api_version);
        self.all_defs().find(|d| d.group == group && d.kind == kind && d.versions.iter().any(|v| v == version)).cloned()
    }
}

pub fn split_api_version(av: &str) -> (&str, &str) {
    match av.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", av),
    }
}

fn crd_key() -> ResKey {
    ResKey { group: "apiextensions.k8s.io".into(), plural: "customresourcedefinitions".into() }
}

fn ns_key() -> ResKey {
    ResKey { group: String::new(), plural: "namespaces".into() }
}

fn too_old(rv: u64, compacted: u64) -> ApiError {
    ApiError::gone(format!("too old resource version: {rv} ({compacted})"))
}

impl Store {
    pub fn new(namespaces: &[&str], history_limit: usize) -> Store {
        let store = Store {
            inner: Mutex::new(Inner {
                rv: 0,
                compacted: 0,
                history_limit,
                builtins: resources::builtins(),
                crd_defs: Vec::new(),
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                watchers: HashMap::new(),
                next_watcher: 0,
                alloc: Allocator::default(),
            }),
        };
        let nsdef = store.lock().builtins[0].clone();
        for ns in namespaces {
            store
                .create(&nsdef, "v1", None, json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}))
                .expect("initial namespace");
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// All served resources (built-ins first, then CRD-defined).
    pub fn defs(&self) -> Vec<ResourceDef> {
        self.lock().all_defs().cloned().collect()
    }

    /// Resolves a REST path's group/version/plural.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<ResourceDef> {
        self.lock()
            .all_defs()
            .find(|d| d.group == group && d.plural == plural && d.versions.iter().any(|v| v == version))
            .cloned()
    }

    /// Resolves apiVersion + kind.
    pub fn lookup_kind(&self, api_version: &str, kind: &str) -> Option<ResourceDef> {
        self.lock().find_def(api_version, kind)
    }

    pub fn get(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<Value, ApiError> {
        self.lock()
            .objects
            .get(&def.key())
            .and_then(|m| m.get(&(ns.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, name))
    }

    /// Objects of `def` (in namespace `ns`, or all) at revision `at` (None:
    /// current), sorted by namespace and name, with the revision served.
    pub fn list(&self, def: &ResourceDef, ns: Option<&str>, at: Option<u64>) -> Result<(Vec<Value>, u64), ApiError> {
        let g = self.lock();
        let at = at.unwrap_or(g.rv);
        let snap = g.snapshot(&def.key(), at)?;
        let items = snap.into_iter().filter(|((n, _), _)| ns.is_none_or(|x| x == n)).map(|(_, v)| v).collect();
        Ok((items, at.min(g.rv)))
    }

    /// One page of a list: the objects of `def` (in namespace `ns`, or all) at revision `at` (None:
    /// current) that come after `after` in (namespace, name) order and that `keep` accepts, at most
    /// `limit` of them (0: all), each passed through `out`; with the revision served and how many more
    /// would follow. Only the page's objects are copied: the collection is read in place and the
    /// history after `at` overlays it, so listing N objects in pages costs O(N), not O(N²/limit).
    #[allow(clippy::too_many_arguments)]
    pub fn list_page(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        at: Option<u64>,
        after: Option<(&str, &str)>,
        limit: usize,
        keep: impl Fn(&Value) -> bool,
        out: impl Fn(&Value) -> Value,
    ) -> Result<(Vec<Value>, u64, usize), ApiError> {
        let g = self.lock();
        let at = at.unwrap_or(g.rv).min(g.rv);
        if at < g.rv && at < g.compacted {
            return Err(too_old(at, g.compacted));
        }
        let res = def.key();
        // Each object changed after `at` as it was at `at` (None: it did not exist).
        let mut was: BTreeMap<ObjKey, Option<&Value>> = BTreeMap::new();
        for ev in g.history.iter().rev().take_while(|e| e.rv > at).filter(|e| e.res == res) {
            let key = (ev.namespace.clone(), meta(&ev.obj, "name").unwrap_or_default());
            match (&ev.type_, &ev.prev) {
                (EventType::Added, _) => {
                    was.insert(key, None);
                }
                (_, Some(p)) => {
                    was.insert(key, Some(p));
                }
                (_, None) => {}
            }
        }
        let empty = BTreeMap::new();
        let now = g.objects.get(&res).unwrap_or(&empty);
        let from = |k: &ObjKey| after.is_none_or(|(n, m)| (k.0.as_str(), k.1.as_str()) > (n, m));
        let current = now.iter().filter(|(k, _)| !was.contains_key(*k)).map(|(k, v)| (k, Some(v)));
        let past = was.iter().map(|(k, v)| (k, *v));
        let mut all: Vec<(&ObjKey, Option<&Value>)> = Vec::new();
        // Both are in key order: merge them.
        let (mut a, mut b) = (current.peekable(), past.peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => {
                    if x.0 <= y.0 {
                        a.next()
                    } else {
                        b.next()
                    }
                }
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            if let Some((k, Some(v))) = next {
                if from(k) && ns.is_none_or(|x| x == k.0) && keep(v) {
                    all.push((k, Some(v)));
                }
            }
        }
        let cut = if limit > 0 { limit.min(all.len()) } else { all.len() };
        let items = all[..cut].iter().filter_map(|(_, v)| v.map(&out)).collect();
        Ok((items, at, all.len() - cut))
    }

    /// The revision below which history is gone.
    pub fn compacted(&self) -> u64 {
        self.lock().compacted
    }

    pub fn create(&self, def: &ResourceDef, version: &str, ns: Option<&str>, obj: Value) -> Result<Value, ApiError> {
        self.create_checked(def, version, ns, obj, false)
    }

    /// [`Store::create`]; with `strict`, fields unknown to a CRD schema are an
    /// error (fieldValidation=Strict) instead of being pruned.
    pub fn create_checked(
        &self,
        def: &ResourceDef,
        version: &str,
        ns: Option<&str>,
        mut obj: Value,
        strict: bool,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body of the request was not a JSON object"));
        }
        let mut g = self.lock();
        let m = meta_mut(&mut obj);
        let name = admission::name_on_create(def, m)?;
        let ns = if def.namespaced {
            let ns = ns
                .map(str::to_string)
                .or_else(|| m.get("namespace").and_then(Value::as_str).map(str::to_string))
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".to_string());
            m.insert("namespace".into(), json!(ns));
            if !g.namespace_exists(&ns) {
                return Err(ApiError::not_found("", "namespaces", &ns));
            }
            ns
        } else {
            m.remove("namespace");
            String::new()
        };
        if def.key() == crd_key() {
            admission::validate_crd(&obj, &name)?;
        }
        if g.objects.get(&def.key()).is_some_and(|c| c.contains_key(&(ns.clone(), name.clone()))) {
            return Err(ApiError::already_exists(&def.group, &def.plural, &name));
        }
        let m = meta_mut(&mut obj);
        m.insert("uid".into(), json!(new_uid()));
        m.insert("creationTimestamp".into(), json!(rfc3339(std::time::SystemTime::now())));
        m.remove("resourceVersion");
        m.remove("deletionTimestamp");
        if def.has_generation() {
            m.insert("generation".into(), json!(1));
        } else {
            m.remove("generation");
        }
        admission::on_create(&mut g.alloc, def, version, &mut obj, &name, strict)?;
        let obj = at_version(def, version, obj);
        Ok(g.commit(def, &ns, &name, EventType::Added, obj, None))
    }

    /// Updates an existing object (see [`UpdateKind`]). A no-op update
    /// returns the stored object without a new resourceVersion or event.
    pub fn update(
        &self,
        def: &ResourceDef,
        version: &str,
        ns: &str,
        name: &str,
        obj: Value,
        kind: UpdateKind,
    ) -> Result<Value, ApiError> {
        self.modify(def, version, ns, name, kind, false, |_| Ok(obj))
    }

    /// Like [`Store::update`], with the new object computed from the stored one
    /// (as seen at `version`) under the store lock: how patches are applied.
    #[allow(clippy::too_many_arguments)]
    pub fn modify(
        &self,
        def: &ResourceDef,
        version: &str,
        ns: &str,
        name: &str,
        kind: UpdateKind,
        strict: bool,
        f: impl FnOnce(Value) -> Result<Value, ApiError>,
    ) -> Result<Value, ApiError> {
        let mut g = self.lock();
        let key = (ns.to_string(), name.to_string());
        let old = g
            .objects
            .get(&def.key())
            .and_then(|m| m.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, name))?;
        let mut obj = f(at_version(def, version, old.clone()))?;
        if !obj.is_object() {
            return Err(ApiError::bad_request("the body of the request was not a JSON object"));
        }
        if kind != UpdateKind::Raw {
            let want = meta(&obj, "resourceVersion").unwrap_or_default();
            if !want.is_empty() && Some(&want) != meta(&old, "resourceVersion").as_ref() {
                return Err(ApiError::conflict(&def.group, &def.plural, name));
            }
            if let Some(uid) = meta(&obj, "uid").filter(|u| !u.is_empty()) {
                if Some(&uid) != meta(&old, "uid").as_ref() {
                    return Err(ApiError::new(
                        409,
                        "Conflict",
                        format!(
                            "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            def.qualified(),
                            meta(&old, "uid").unwrap_or_default()
                        ),
                        None,
                    ));
                }
            }
        }
        let mut new = match kind {
            UpdateKind::Status => {
                let mut n = old.clone();
                match obj.get("status") {
                    Some(s) => n["status"] = s.clone(),
                    None => {
                        n.as_object_mut().unwrap().remove("status");
                    }
                }
                n
            }
            UpdateKind::Main | UpdateKind::Raw => {
                if kind == UpdateKind::Main && def.status_subresource {
                    match old.get("status") {
                        Some(s) => obj["status"] = s.clone(),
                        None => {
                            obj.as_object_mut().unwrap().remove("status");
                        }
                    }
                }
                let m = meta_mut(&mut obj);
                for f in ["uid", "creationTimestamp"] {
                    match old["metadata"].get(f) {
                        Some(v) => m.insert(f.into(), v.clone()),
                        None => m.remove(f),
                    };
                }
                m.insert("name".into(), json!(name));
                if def.namespaced {
                    m.insert("namespace".into(), json!(ns));
                } else {
                    m.remove("namespace");
                }
                obj
            }
        };
        admission::on_update(&mut g.alloc, def, version, kind, &mut new, &old, name, strict)?;
        let old_gen = old.pointer("/metadata/generation").and_then(Value::as_i64);
        if def.has_generation() {
            let g0 = old_gen.unwrap_or(1);
            let bump = generation_content(def, &old) != generation_content(def, &new);
            meta_mut(&mut new).insert("generation".into(), json!(if bump { g0 + 1 } else { g0 }));
        } else {
            meta_mut(&mut new).remove("generation");
        }
        let new = at_version(def, version, new);
        if comparable(&new) == comparable(&old) {
            return Ok(old);
        }
        Ok(g.commit(def, ns, name, EventType::Modified, new, Some(old)))
    }

    /// Deletes an object (immediately: no finalizers, no graceful deletion).
    /// Deleting a namespace deletes its objects; deleting a CRD deletes its
    /// custom resources.
    pub fn delete(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        precondition_rv: Option<&str>,
        precondition_uid: Option<&str>,
    ) -> Result<Value, ApiError> {
        let mut g = self.lock();
        let key = (ns.to_string(), name.to_string());
        let old = g
            .objects
            .get(&def.key())
            .and_then(|m| m.get(&key))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&def.group, &def.plural, name))?;
        if let Some(rv) = precondition_rv.filter(|s| !s.is_empty()) {
            if Some(rv.to_string()) != meta(&old, "resourceVersion") {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        def.qualified(),
                        meta(&old, "resourceVersion").unwrap_or_default()
                    ),
                    None,
                ));
            }
        }
        if let Some(uid) = precondition_uid.filter(|s| !s.is_empty()) {
            if Some(uid.to_string()) != meta(&old, "uid") {
                return Err(ApiError::new(
                    409,
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {} \"{name}\": Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        def.qualified(),
                        meta(&old, "uid").unwrap_or_default()
                    ),
                    None,
                ));
            }
        }
        // Cascades first, so watchers see the contents go before the container.
        if def.key() == ns_key() {
            let namespaced: Vec<ResourceDef> = g.all_defs().filter(|d| d.namespaced).cloned().collect();
            let mut seen = std::collections::HashSet::new();
            for d in namespaced {
                if !seen.insert(d.key()) {
                    continue;
                }
                let victims: Vec<(ObjKey, Value)> = g
                    .objects
                    .get(&d.key())
                    .map(|m| m.iter().filter(|((n, _), _)| n == name).map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                for ((n, nm), v) in victims {
                    g.commit(&d, &n, &nm, EventType::Deleted, v.clone(), Some(v));
                }
            }
        }
        if def.key() == crd_key() {
            if let Some(d) = resources::from_crd(&old) {
                let victims: Vec<(ObjKey, Value)> = g
                    .objects
                    .get(&d.key())
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                    .unwrap_or_default();
                for ((n, nm), v) in victims {
                    g.commit(&d, &n, &nm, EventType::Deleted, v.clone(), Some(v));
                }
            }
        }
        Ok(g.commit(def, ns, name, EventType::Deleted, old.clone(), Some(old)))
    }

    /// Registers a watch on `def` (namespace `ns` or all). Fails with 410 when
    /// `start` is older than the compacted revision.
    pub fn watch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        start: WatchStart,
        bookmarks: bool,
    ) -> Result<WatchHandle, ApiError> {
        let mut g = self.lock();
        let res = def.key();
        let in_ns = |n: &str| ns.is_none_or(|x| x == n);
        let initial = match start {
            WatchStart::Current => g
                .objects
                .get(&res)
                .map(|m| {
                    m.iter()
                        .filter(|((n, _), _)| in_ns(n))
                        .map(|((n, _), v)| {
                            WatchItem::Event(Arc::new(HistEvent {
                                rv: meta(v, "resourceVersion").and_then(|s| s.parse().ok()).unwrap_or(0),
                                res: res.clone(),
                                namespace: n.clone(),
                                type_: EventType::Added,
                                obj: v.clone(),
                                prev: None,
                            }))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            WatchStart::After(rv) => {
                if rv < g.compacted {
                    return Err(too_old(rv, g.compacted));
                }
                g.history
                    .iter()
                    .filter(|e| e.rv > rv && e.res == res && in_ns(&e.namespace))
                    .map(|e| WatchItem::Event(e.clone()))
                    .collect()
            }
        };
        let (tx, rx) = unbounded_channel();
        g.next_watcher += 1;
        let id = g.next_watcher;
        g.watchers.insert(id, WatcherReg { res, namespace: ns.map(str::to_string), bookmarks, tx });
        Ok(WatchHandle { id, initial, rx, rv: g.rv })
    }

    pub fn unwatch(&self, id: u64) {
        self.lock().watchers.remove(&id);
    }

    /// Number of open watches (on any resource).
    pub fn watch_count(&self) -> usize {
        let mut g = self.lock();
        g.watchers.retain(|_, w| !w.tx.is_closed());
        g.watchers.len()
    }

    /// Number of open watches on one resource.
    pub fn watch_count_for(&self, res: &ResKey) -> usize {
        let mut g = self.lock();
        g.watchers.retain(|_, w| !w.tx.is_closed());
        g.watchers.values().filter(|w| w.res == *res).count()
    }

    /// Sends a BOOKMARK at the current revision to every watch that asked for them.
    pub fn send_bookmarks(&self) {
        let mut g = self.lock();
        let rv = g.rv;
        g.watchers.retain(|_, w| !w.bookmarks || w.tx.send(WatchItem::Bookmark(rv)).is_ok());
    }

    /// Forgets all history: watches and lists from any older revision get 410.
    pub fn compact(&self) {
        let mut g = self.lock();
        g.compacted = g.rv;
        g.history.clear();
    }

    /// Ends every open watch stream.
    pub fn close_watches(&self) {
        self.lock().watchers.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str, v: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"v": v}})
    }

    fn setup() -> (Store, ResourceDef) {
        let s = Store::new(&["default"], DEFAULT_HISTORY_LIMIT);
        let d = s.lookup("", "v1", "configmaps").unwrap();
        (s, d)
    }

    fn drain(h: &mut WatchHandle) -> Vec<(EventType, String, u64)> {
        let mut out: Vec<WatchItem> = std::mem::take(&mut h.initial);
        while let Ok(i) = h.rx.try_recv() {
            out.push(i);
        }
        out.into_iter()
            .filter_map(|i| match i {
                WatchItem::Event(e) => Some((e.type_, meta(&e.obj, "name").unwrap(), e.rv)),
                WatchItem::Bookmark(_) => None,
            })
            .collect()
    }

    #[test]
    fn resource_versions_are_global_and_monotonic() {
        let (s, d) = setup();
        let rv0 = s.resource_version();
        let a = s.create(&d, "v1", Some("default"), cm("a", "1")).unwrap();
        let b = s.create(&d, "v1", Some("default"), cm("b", "1")).unwrap();
        assert_eq!(meta(&a, "resourceVersion").unwrap(), (rv0 + 1).to_string());
        assert_eq!(meta(&b, "resourceVersion").unwrap(), (rv0 + 2).to_string());
        // no-op update: no new revision
        let same = s.update(&d, "v1", "default", "a", cm("a", "1"), UpdateKind::Main).unwrap();
        assert_eq!(meta(&same, "resourceVersion"), meta(&a, "resourceVersion"));
        assert_eq!(s.resource_version(), rv0 + 2);
    }

    #[test]
    fn watch_replays_history_after_rv() {
        let (s, d) = setup();
        let a = s.create(&d, "v1", Some("default"), cm("a", "1")).unwrap();
        let rv_a: u64 = meta(&a, "resourceVersion").unwrap().parse().unwrap();
        s.update(&d, "v1", "default", "a", cm("a", "2"), UpdateKind::Main).unwrap();
        s.create(&d, "v1", Some("default"), cm("b", "1")).unwrap();
        s.delete(&d, "default", "a", None, None).unwrap();
        let mut h = s.watch(&d, None, WatchStart::After(rv_a), false).unwrap();
        let evs = drain(&mut h);
        let kinds: Vec<_> = evs.iter().map(|(t, n, _)| (*t, n.as_str())).collect();
        assert_eq!(kinds, vec![(EventType::Modified, "a"), (EventType::Added, "b"), (EventType::Deleted, "a")]);
        assert!(evs.windows(2).all(|w| w[0].2 < w[1].2), "increasing resourceVersions");
        // live events follow
        s.create(&d, "v1", Some("default"), cm("c", "1")).unwrap();
        assert_eq!(drain(&mut h), vec![(EventType::Added, "c".to_string(), s.resource_version())]);
    }

    #[test]
    fn compaction_makes_old_versions_gone() {
        let (s, d) = setup();
        let a = s.create(&d, "v1", Some("default"), cm("a", "1")).unwrap();
        let rv_a: u64 = meta(&a, "resourceVersion").unwrap().parse().unwrap();
        s.update(&d, "v1", "default", "a", cm("a", "2"), UpdateKind::Main).unwrap();
        // before compaction: the exact old state is still listable
        let (old, at) = s.list(&d, Some("default"), Some(rv_a)).unwrap();
        assert_eq!(at, rv_a);
        assert_eq!(old[0]["data"]["v"], "1");
        s.compact();
        let err = s.watch(&d, None, WatchStart::After(rv_a), false).err().unwrap();
        assert_eq!(err.code, 410);
        assert!(err.message.starts_with("too old resource version"), "{}", err.message);
        assert_eq!(s.list(&d, None, Some(rv_a)).err().unwrap().code, 410);
        // watching from the current revision still works
        let now = s.resource_version();
        let mut h = s.watch(&d, None, WatchStart::After(now), false).unwrap();
        assert!(drain(&mut h).is_empty());
        s.create(&d, "v1", Some("default"), cm("b", "1")).unwrap();
        assert_eq!(drain(&mut h).len(), 1);
    }

    #[test]
    fn history_limit_compacts_oldest() {
        let s = Store::new(&["default"], 3);
        let d = s.lookup("", "v1", "configmaps").unwrap();
        for i in 0..5 {
            s.create(&d, "v1", Some("default"), cm(&format!("c{i}"), "x")).unwrap();
        }
        let rv = s.resource_version();
        assert_eq!(s.compacted(), rv - 3);
        assert!(s.watch(&d, None, WatchStart::After(rv - 3), false).is_ok());
        assert_eq!(s.watch(&d, None, WatchStart::After(rv - 4), false).err().unwrap().code, 410);
    }

    /// Pages read in place equal the snapshot, at the current revision and at an older one (objects
    /// added, changed and deleted since, some of them inside a page already served).
    #[test]
    fn pages_equal_the_snapshot() {
        let s = Store::new(&["default", "kube-system"], DEFAULT_HISTORY_LIMIT);
        let d = s.lookup("", "v1", "configmaps").unwrap();
        for i in 0..7 {
            s.create(&d, "v1", Some("default"), cm(&format!("c{i}"), "1")).unwrap();
        }
        s.create(&d, "v1", Some("kube-system"), cm("k", "1")).unwrap();
        let at = s.resource_version();
        s.update(&d, "v1", "default", "c1", cm("c1", "2"), UpdateKind::Main).unwrap();
        s.delete(&d, "default", "c4", None, None).unwrap();
        s.create(&d, "v1", Some("default"), cm("c35", "1")).unwrap();
        s.update(&d, "v1", "default", "c6", cm("c6", "2"), UpdateKind::Main).unwrap();
        s.update(&d, "v1", "default", "c6", cm("c6", "3"), UpdateKind::Main).unwrap();
        let name =
            |v: &Value| format!("{}/{}={}", meta(v, "namespace").unwrap(), meta(v, "name").unwrap(), v["data"]["v"]);
        for (rv, ns) in [(Some(at), None), (None, None), (Some(at), Some("default")), (None, Some("default"))] {
            let (want, _) = s.list(&d, ns, rv).unwrap();
            let want: Vec<String> = want.iter().map(name).collect();
            for limit in [0, 1, 2, 3, 100] {
                let mut got = Vec::new();
                let mut after: Option<(String, String)> = None;
                loop {
                    let a = after.as_ref().map(|(n, m)| (n.as_str(), m.as_str()));
                    let (page, served, more) = s.list_page(&d, ns, rv, a, limit, |_| true, |v| v.clone()).unwrap();
                    assert_eq!(served, rv.unwrap_or(s.resource_version()));
                    assert!(limit == 0 || page.len() <= limit);
                    got.extend(page.iter().map(name));
                    if more == 0 {
                        break;
                    }
                    assert_eq!(more, want.len() - got.len(), "remaining count");
                    let last = page.last().unwrap();
                    after = Some((meta(last, "namespace").unwrap(), meta(last, "name").unwrap()));
                }
                assert_eq!(got, want, "rv {rv:?} ns {ns:?} limit {limit}");
            }
        }
        // `keep` filters before the limit counts.
        let (page, _, more) =
            s.list_page(&d, None, Some(at), None, 2, |v| v["data"]["v"] == "1", |v| v.clone()).unwrap();
        assert_eq!(page.len(), 2);
        assert_eq!(more, 6);
    }

    #[test]
    fn snapshot_undoes_later_changes() {
        let (s, d) = setup();
        s.create(&d, "v1", Some("default"), cm("a", "1")).unwrap();
        let at = s.resource_version();
        s.create(&d, "v1", Some("default"), cm("b", "1")).unwrap();
        s.update(&d, "v1", "default", "a", cm("a", "2"), UpdateKind::Main).unwrap();
        s.delete(&d, "default", "a", None, None).unwrap();
        let (items, _) = s.list(&d, None, Some(at)).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["data"]["v"], "1");
        let (now, _) = s.list(&d, None, None).unwrap();
        assert_eq!(now.len(), 1);
        assert_eq!(meta(&now[0], "name").unwrap(), "b");
    }

    #[test]
    fn conflicts_and_missing_namespace() {
        let (s, d) = setup();
        let a = s.create(&d, "v1", Some("default"), cm("a", "1")).unwrap();
        assert_eq!(s.create(&d, "v1", Some("default"), cm("a", "1")).err().unwrap().code, 409);
        s.update(&d, "v1", "default", "a", cm("a", "2"), UpdateKind::Main).unwrap();
        let stale = a.clone();
        let mut stale = stale;
        stale["data"]["v"] = json!("3");
        let e = s.update(&d, "v1", "default", "a", stale, UpdateKind::Main).err().unwrap();
        assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
        let e = s.create(&d, "v1", Some("nope"), cm("x", "1")).err().unwrap();
        assert_eq!(e.code, 404);
        assert_eq!(e.message, "namespaces \"nope\" not found");
    }

    #[test]
    fn bookmarks_and_close() {
        let (s, d) = setup();
        let mut h = s.watch(&d, None, WatchStart::Current, true).unwrap();
        let mut quiet = s.watch(&d, None, WatchStart::Current, false).unwrap();
        s.send_bookmarks();
        assert!(matches!(h.rx.try_recv(), Ok(WatchItem::Bookmark(rv)) if rv == s.resource_version()));
        assert!(quiet.rx.try_recv().is_err());
        assert_eq!(s.watch_count(), 2);
        s.close_watches();
        assert!(matches!(h.rx.try_recv(), Err(tokio::sync::mpsc::error::TryRecvError::Disconnected)));
        assert_eq!(s.watch_count(), 0);
    }
}
