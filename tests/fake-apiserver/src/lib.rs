//! In-process fake Kubernetes API server for tests.
//!
//! Serves discovery, the REST verbs (get, list, watch, create, update, patch,
//! delete, deletecollection, `/status`) for a fixed set of built-in kinds and
//! for every served version of the CustomResourceDefinitions it stores, over
//! plain HTTP on loopback, so that a real `kube::Client` or `kubectl` can use
//! it. Tests manipulate the store directly, inspect requests, force history
//! compaction (410 Gone), end watches and inject outages ([`Mode`]).
//!
//! See README.md beside this crate for what deviates from a real API server.

pub mod cel;
mod patch;
mod resources;
pub mod selector;
mod server;
mod status;
mod store;

pub use patch::{strategic_merge, PatchType};
pub use resources::ResourceDef;
pub use status::ApiError;

use serde_json::{json, Value};
use server::Shared;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use store::{Store, UpdateKind};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Failure injection: how the server treats connections and requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Serve normally.
    #[default]
    Normal,
    /// Close the listening socket and every open connection (new connections
    /// are refused, open watches break). Leaving this mode binds the same port again.
    Refuse,
    /// Accept connections and read requests but never answer; open watch
    /// streams deliver nothing (events are held until the mode changes).
    Hang,
    /// Answer every new request with 500 and an InternalError Status.
    Error500,
    /// Answer every new request with 401 and an Unauthorized Status.
    Unauthorized,
}

/// How long each write (POST, PUT, PATCH, DELETE) waits before the server handles it; reads and
/// watches are not affected. Set with [`FakeApiServer::set_write_delay`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteDelay {
    #[default]
    None,
    /// Every write waits this long (a throttled or busy API server).
    Delay(Duration),
    /// Writes are held until the setting changes, then handled (a hanging API server).
    Hang,
}

/// One request as the server received it.
#[derive(Debug, Clone)]
pub struct RequestLog {
    pub method: String,
    pub path: String,
    /// The raw (still percent-encoded) query string.
    pub query: String,
    pub accept: String,
    pub content_type: String,
    pub user_agent: String,
    pub body: String,
    pub at: SystemTime,
}

impl RequestLog {
    /// A decoded query parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').filter(|p| !p.is_empty()).find_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k == name)
                .then(|| percent_encoding::percent_decode_str(&v.replace('+', " ")).decode_utf8_lossy().into_owned())
        })
    }

    /// True for watch requests (`watch=true` or a legacy `/watch/` path).
    pub fn is_watch(&self) -> bool {
        matches!(self.param("watch").as_deref(), Some("true") | Some("1")) || self.path.contains("/watch/")
    }

    /// True for list requests (GET on a collection, not a watch). Heuristic:
    /// the last path segment is a resource name when the path has an even
    /// number of segments after the group-version prefix.
    pub fn is_list(&self) -> bool {
        if self.method != "GET" || self.is_watch() {
            return false;
        }
        let segs: Vec<&str> = self.path.trim_matches('/').split('/').collect();
        let rest = match segs.first() {
            Some(&"api") if segs.len() >= 2 => &segs[2..],
            Some(&"apis") if segs.len() >= 3 => &segs[3..],
            _ => return false,
        };
        match rest {
            ["namespaces", _, "status" | "finalize"] if segs[0] == "api" => false,
            ["namespaces", _, _] | [_] => !(rest.len() == 1 && rest[0].is_empty()),
            _ => false,
        }
    }
}

/// Options for [`FakeApiServer::builder`].
#[derive(Debug, Clone)]
pub struct Builder {
    addr: SocketAddr,
    namespaces: Vec<String>,
    bookmark_interval: Option<Duration>,
    history_limit: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease", "metallb-system"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            bookmark_interval: Some(Duration::from_secs(1)),
            history_limit: store::DEFAULT_HISTORY_LIMIT,
        }
    }
}

impl Builder {
    /// Address to listen on (default 127.0.0.1:0).
    pub fn addr(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }
    /// Namespaces that exist at start (default: default, kube-system,
    /// kube-public, kube-node-lease, metallb-system).
    pub fn namespaces<I: IntoIterator<Item = S>, S: Into<String>>(mut self, ns: I) -> Self {
        self.namespaces = ns.into_iter().map(Into::into).collect();
        self
    }
    /// Period of BOOKMARK events on watches that allow them (default 1 s; None: only
    /// on [`FakeApiServer::send_bookmarks`]). A real server sends them about once a minute.
    pub fn bookmark_interval(mut self, every: Option<Duration>) -> Self {
        self.bookmark_interval = every;
        self
    }
    /// Number of changes kept for watches and consistent lists before the
    /// oldest are compacted away (default 10 000).
    pub fn history_limit(mut self, n: usize) -> Self {
        self.history_limit = n.max(1);
        self
    }
    pub async fn start(self) -> std::io::Result<FakeApiServer> {
        let listener = bind(self.addr)?;
        let addr = listener.local_addr()?;
        let ns: Vec<&str> = self.namespaces.iter().map(String::as_str).collect();
        let shared = Arc::new(Shared {
            store: Store::new(&ns, self.history_limit),
            mode: watch::Sender::new(Mode::Normal),
            write_delay: watch::Sender::new(WriteDelay::None),
            requests: Mutex::new(Vec::new()),
            addr,
            version: json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "gitCommit": "0000000000000000000000000000000000000000",
                "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.24.0",
                "compiler": "gc", "platform": "linux/amd64"
            }),
        });
        let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
        let accept = tokio::spawn(accept_loop(shared.clone(), listener, ctl_rx));
        let ticker = self.bookmark_interval.map(|every| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut iv = tokio::time::interval(every);
                iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                iv.tick().await;
                loop {
                    iv.tick().await;
                    shared.store.send_bookmarks();
                }
            })
        });
        Ok(FakeApiServer { shared, ctl: ctl_tx, accept: Some(accept), ticker })
    }
}

enum Ctl {
    Listen(TcpListener, oneshot::Sender<()>),
    Refuse(oneshot::Sender<()>),
    Shutdown(oneshot::Sender<()>),
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let sock = if addr.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(1024)
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, mut ctl: mpsc::UnboundedReceiver<Ctl>) {
    let mut listener = Some(listener);
    let mut conns = JoinSet::new();
    loop {
        let accept = async {
            match &listener {
                Some(l) => l.accept().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            c = ctl.recv() => match c {
                Some(Ctl::Listen(l, ack)) => {
                    listener = Some(l);
                    let _ = ack.send(());
                }
                Some(Ctl::Refuse(ack)) => {
                    listener = None;
                    conns.abort_all();
                    while conns.join_next().await.is_some() {}
                    let _ = ack.send(());
                }
                Some(Ctl::Shutdown(ack)) => {
                    drop(listener.take());
                    conns.abort_all();
                    while conns.join_next().await.is_some() {}
                    let _ = ack.send(());
                    return;
                }
                None => {
                    conns.abort_all();
                    return;
                }
            },
            r = accept => {
                let Ok((stream, _)) = r else { continue };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| server::handle(shared.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

/// A running fake API server. Dropping it stops the server (like [`FakeApiServer::shutdown`], without waiting).
pub struct FakeApiServer {
    shared: Arc<Shared>,
    ctl: mpsc::UnboundedSender<Ctl>,
    accept: Option<JoinHandle<()>>,
    ticker: Option<JoinHandle<()>>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        self.shared.store.close_watches();
    }
}

fn kind_of(obj: &Value) -> Result<(String, String), ApiError> {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    if av.is_empty() || kind.is_empty() {
        return Err(ApiError::bad_request("Object 'Kind' or 'apiVersion' is missing"));
    }
    Ok((av.to_string(), kind.to_string()))
}

impl FakeApiServer {
    /// Starts on 127.0.0.1 with an ephemeral port and default options. Panics if it cannot bind.
    pub async fn start() -> FakeApiServer {
        Builder::default().start().await.expect("fake-apiserver: bind 127.0.0.1:0")
    }

    /// Starts on a fixed address (e.g. to come back on the port of a stopped server).
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeApiServer> {
        Builder::default().addr(addr).start().await
    }

    pub fn builder() -> Builder {
        Builder::default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kubeconfig for this server: cluster `fake`, user `fake` (bearer token
    /// `fake-token`, not checked), context `fake` with namespace `default`.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\nusers:\n- name: fake\n  user:\n    token: fake-token\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes [`FakeApiServer::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig_yaml())
    }

    fn def_for(&self, api_version: &str, kind: &str) -> Result<ResourceDef, ApiError> {
        self.shared.store.lookup_kind(api_version, kind).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                format!("fake-apiserver: no resource serves {api_version}, Kind={kind}"),
                None,
            )
        })
    }

    fn version_of(api_version: &str) -> &str {
        store::split_api_version(api_version).1
    }

    fn ns_of<'a>(def: &ResourceDef, obj: &'a Value) -> Option<&'a str> {
        if def.namespaced {
            Some(obj.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or("default"))
        } else {
            None
        }
    }

    /// Creates an object (any served kind; apiVersion and kind pick the
    /// resource; namespace defaults to `default`). Status is stored as given.
    pub fn create(&self, obj: Value) -> Result<Value, ApiError> {
        let (av, kind) = kind_of(&obj)?;
        let def = self.def_for(&av, &kind)?;
        let ns = Self::ns_of(&def, &obj).map(str::to_string);
        let status = obj.get("status").cloned();
        let created = self.shared.store.create(&def, Self::version_of(&av), ns.as_deref(), obj)?;
        match status {
            // Creation defaults may have set a status; the test's one wins.
            Some(s) if created.get("status") != Some(&s) => {
                let name = created["metadata"]["name"].as_str().unwrap_or_default().to_string();
                let mut o = created.clone();
                o["status"] = s;
                self.shared.store.update(
                    &def,
                    Self::version_of(&av),
                    ns.as_deref().unwrap_or(""),
                    &name,
                    o,
                    UpdateKind::Raw,
                )
            }
            _ => Ok(created),
        }
    }

    /// Creates the object, or replaces the stored one (keeping its uid and
    /// creationTimestamp; status too is taken from `obj`). Emits ADDED or
    /// MODIFIED (nothing if unchanged). Panics on an invalid object or unknown kind.
    pub fn apply(&self, obj: Value) -> Value {
        self.try_apply(obj).unwrap_or_else(|e| panic!("fake-apiserver apply: {e}"))
    }

    /// [`FakeApiServer::apply`] returning errors.
    pub fn try_apply(&self, obj: Value) -> Result<Value, ApiError> {
        let (av, kind) = kind_of(&obj)?;
        let def = self.def_for(&av, &kind)?;
        let ns = Self::ns_of(&def, &obj).unwrap_or("").to_string();
        let name = obj.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        match self.shared.store.get(&def, &ns, &name) {
            Ok(_) => self.shared.store.update(&def, Self::version_of(&av), &ns, &name, obj, UpdateKind::Raw),
            Err(_) => self.create(obj),
        }
    }

    /// JSON-merge-patches an object (main resource: status is patched too).
    pub fn patch(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        merge_patch: Value,
    ) -> Result<Value, ApiError> {
        let def = self.def_for(api_version, kind)?;
        let body = serde_json::to_vec(&merge_patch).unwrap();
        self.shared.store.modify(
            &def,
            Self::version_of(api_version),
            namespace.unwrap_or(""),
            name,
            UpdateKind::Raw,
            false,
            |cur| patch::apply_patch(&cur, &body, PatchType::Merge).map_err(ApiError::bad_request),
        )
    }

    /// JSON-merge-patches `.status` with `status_patch` (e.g.
    /// `json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}]}})`).
    pub fn patch_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        status_patch: Value,
    ) -> Result<Value, ApiError> {
        self.patch(api_version, kind, namespace, name, json!({ "status": status_patch }))
    }

    /// Deletes an object (immediately); returns its last state.
    pub fn delete(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let def = self.def_for(api_version, kind)?;
        let out = self.shared.store.delete(&def, namespace.unwrap_or(""), name, None, None)?;
        Ok(store::at_version(&def, Self::version_of(api_version), out))
    }

    pub fn get(&self, api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Option<Value> {
        let def = self.def_for(api_version, kind).ok()?;
        let o = self.shared.store.get(&def, namespace.unwrap_or(""), name).ok()?;
        Some(store::at_version(&def, Self::version_of(api_version), o))
    }

    /// Objects of a kind, in one namespace or (None) all, sorted by namespace and name.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let Ok(def) = self.def_for(api_version, kind) else { return vec![] };
        let (items, _) = self.shared.store.list(&def, namespace, None).unwrap_or_default();
        items.into_iter().map(|o| store::at_version(&def, Self::version_of(api_version), o)).collect()
    }

    /// Every stored Event: core/v1 ones, then events.k8s.io/v1 ones (kept apart; see README).
    pub fn events(&self) -> Vec<Value> {
        let mut out = self.list("v1", "Event", None);
        out.extend(self.list("events.k8s.io/v1", "Event", None));
        out
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.resource_version()
    }

    /// Forgets all history: a watch from, a list at (Exact), or a continue
    /// token of any older resourceVersion gets 410 Gone ("too old resource version").
    pub fn compact(&self) {
        self.shared.store.compact();
    }

    /// Ends every open watch stream cleanly (as the server's watch timeout does).
    pub fn close_watches(&self) {
        self.shared.store.close_watches();
    }

    /// Sends a BOOKMARK now to every watch that allows bookmarks.
    pub fn send_bookmarks(&self) {
        self.shared.store.send_bookmarks();
    }

    /// Number of open watch streams.
    pub fn watch_count(&self) -> usize {
        self.shared.store.watch_count()
    }

    /// Number of open watch streams on one resource (`"" , "services"`, `"metallb.io", "ipaddresspools"`).
    pub fn watch_count_for(&self, group: &str, plural: &str) -> usize {
        self.shared.store.watch_count_for(&resources::ResKey { group: group.into(), plural: plural.into() })
    }

    /// The served resources (built-ins and CRD-defined).
    pub fn resources(&self) -> Vec<ResourceDef> {
        self.shared.store.defs()
    }

    pub fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }

    /// Switches the failure mode. Entering [`Mode::Refuse`] returns once the
    /// listener and all connections are closed; leaving it returns once the
    /// same address listens again (panics if it cannot be bound).
    pub async fn set_mode(&self, mode: Mode) {
        let prev = self.mode();
        if mode == prev {
            return;
        }
        if mode == Mode::Refuse {
            self.shared.mode.send_replace(mode);
            let (ack, done) = oneshot::channel();
            if self.ctl.send(Ctl::Refuse(ack)).is_ok() {
                let _ = done.await;
            }
            return;
        }
        if prev == Mode::Refuse {
            let mut tries = 0;
            let listener = loop {
                match bind(self.shared.addr) {
                    Ok(l) => break l,
                    Err(e) if tries < 50 => {
                        tries += 1;
                        tracing::debug!("fake-apiserver: rebind {}: {e}", self.shared.addr);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(e) => panic!("fake-apiserver: cannot listen on {} again: {e}", self.shared.addr),
                }
            };
            self.shared.mode.send_replace(mode);
            let (ack, done) = oneshot::channel();
            if self.ctl.send(Ctl::Listen(listener, ack)).is_ok() {
                let _ = done.await;
            }
            return;
        }
        self.shared.mode.send_replace(mode);
    }

    /// Makes writes slow ([`WriteDelay::Delay`]) or hang ([`WriteDelay::Hang`]) from now on; writes
    /// already waiting pick up the new setting when it leaves `Hang`.
    pub fn set_write_delay(&self, d: WriteDelay) {
        self.shared.write_delay.send_replace(d);
    }

    pub fn write_delay(&self) -> WriteDelay {
        *self.shared.write_delay.borrow()
    }

    /// Stops listening, closes every connection and watch.
    pub async fn shutdown(mut self) {
        if let Some(t) = self.ticker.take() {
            t.abort();
        }
        self.shared.store.close_watches();
        let (ack, done) = oneshot::channel();
        if self.ctl.send(Ctl::Shutdown(ack)).is_ok() {
            let _ = done.await;
        }
        if let Some(a) = self.accept.take() {
            let _ = a.await;
        }
    }
}
