//! HTTP handling: routing, discovery, the REST verbs, watch streams, tables.

use crate::patch::{apply_patch, parse_yaml_or_json, PatchType};
use crate::resources::{version_priority, ResourceDef};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{parse_rfc3339, success_status, ApiError};
use crate::store::{at_version, parse_rv, EventType, HistEvent, Store, UpdateKind, WatchItem, WatchStart};
use crate::{Mode, RequestLog, WriteDelay};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

pub type Body = BoxBody<Bytes, Infallible>;

/// State shared by the connections, the accept loop and the handle.
pub struct Shared {
    pub store: Store,
    pub mode: watch::Sender<Mode>,
    pub write_delay: watch::Sender<WriteDelay>,
    pub requests: Mutex<Vec<RequestLog>>,
    pub addr: SocketAddr,
    pub version: Value,
}

const MAX_BODY: usize = 16 << 20;

fn full(code: u16, ct: &str, body: impl Into<Bytes>) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", ct)
        .header("cache-control", "no-cache, private")
        .body(Full::new(body.into()).boxed())
        .unwrap()
}

fn json_resp(code: u16, v: &Value) -> Response<Body> {
    full(code, "application/json", serde_json::to_vec(v).unwrap())
}

fn err_resp(e: &ApiError) -> Response<Body> {
    json_resp(e.code, &e.status)
}

/// Query parameters (last value wins; empty pairs ignored).
struct Query(HashMap<String, String>);

impl Query {
    fn parse(q: &str) -> Query {
        let mut m = HashMap::new();
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            m.insert(decode(k), decode(v));
        }
        Query(m)
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true") | Some("1"))
    }
}

fn decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_encoding::percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

/// What representation the client asked for (Accept header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum As {
    Plain,
    Table,
    Metadata,
}

fn negotiate(accept: &str) -> As {
    // The first acceptable media type wins; we serve JSON in every form.
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=Table") {
            return As::Table;
        }
        if p.contains("as=PartialObjectMetadata") {
            return As::Metadata;
        }
        if p.starts_with("application/json") || p.starts_with("*/*") || p.starts_with("application/*") {
            return As::Plain;
        }
    }
    As::Plain
}

pub async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = match http_body_util::Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Ok(err_resp(&ApiError::new(413, "RequestEntityTooLarge", "request entity too large", None))),
    };
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    shared.requests.lock().unwrap_or_else(|e| e.into_inner()).push(RequestLog {
        method: parts.method.to_string(),
        path: path.clone(),
        query: query.clone(),
        accept: header("accept"),
        content_type: header("content-type"),
        user_agent: header("user-agent"),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: SystemTime::now(),
    });
    let mode = *shared.mode.borrow();
    match mode {
        Mode::Hang => {
            // Never answer; the connection is closed by the client or by shutdown.
            std::future::pending::<()>().await;
        }
        Mode::Error500 => {
            return Ok(err_resp(&ApiError::internal("fake-apiserver: injected failure (Mode::Error500)")))
        }
        Mode::Unauthorized => return Ok(err_resp(&ApiError::unauthorized())),
        Mode::Normal | Mode::Refuse => {}
    }
    // Slow or hanging writes (create, update, patch, delete): reads and watches stay fast.
    if matches!(parts.method, Method::POST | Method::PUT | Method::PATCH | Method::DELETE) {
        let mut rx = shared.write_delay.subscribe();
        loop {
            let d = *rx.borrow_and_update();
            match d {
                WriteDelay::None => break,
                WriteDelay::Delay(t) => {
                    tokio::time::sleep(t).await;
                    break;
                }
                // Held until the setting changes, then applied (a later delay still counts).
                WriteDelay::Hang => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }
    let ctx = Ctx {
        shared: shared.clone(),
        method: parts.method.clone(),
        query: Query::parse(&query),
        accept: header("accept"),
        content_type: header("content-type"),
        body,
    };
    let resp = match route(&ctx, &path).await {
        Ok(r) => r,
        Err(e) => err_resp(&e),
    };
    Ok(resp)
}

struct Ctx {
    shared: Arc<Shared>,
    method: Method,
    query: Query,
    accept: String,
    content_type: String,
    body: Bytes,
}

/// A parsed resource path.
struct Target {
    def: ResourceDef,
    version: String,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
    legacy_watch: bool,
}

async fn route(ctx: &Ctx, path: &str) -> Result<Response<Body>, ApiError> {
    let segs: Vec<String> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).map(decode).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = ctx.method == Method::GET;
    match s.as_slice() {
        ["version"] if get => return Ok(json_resp(200, &ctx.shared.version)),
        ["healthz"] | ["readyz"] | ["livez"] if get => return Ok(full(200, "text/plain; charset=utf-8", "ok")),
        ["api"] if get => {
            return Ok(json_resp(
                200,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ctx.shared.addr.to_string()}]}),
            ))
        }
        ["api", "v1"] if get => return Ok(json_resp(200, &resource_list(&ctx.shared.store, "", "v1"))),
        ["apis"] if get => return Ok(json_resp(200, &group_list(&ctx.shared.store))),
        ["apis", g] if get => {
            return group_list(&ctx.shared.store)["groups"]
                .as_array()
                .and_then(|gs| gs.iter().find(|x| x["name"] == *g).cloned())
                .map(|mut grp| {
                    grp["kind"] = json!("APIGroup");
                    grp["apiVersion"] = json!("v1");
                    json_resp(200, &grp)
                })
                .ok_or_else(ApiError::resource_not_found);
        }
        ["apis", g, v] if get => {
            let defs = ctx.shared.store.defs();
            if !defs.iter().any(|d| d.group == *g && d.versions.iter().any(|x| x == v)) {
                return Err(ApiError::resource_not_found());
            }
            let mut l = resource_list(&ctx.shared.store, g, v);
            l["apiVersion"] = json!("v1");
            return Ok(json_resp(200, &l));
        }
        ["openapi", "v3"] if get => return Ok(json_resp(200, &openapi_v3_root(&ctx.shared.store))),
        ["openapi", "v3", rest @ ..] if get => {
            let gv = rest.join("/");
            return openapi_v3_gv(&ctx.shared.store, &gv).map(|v| json_resp(200, &v)).ok_or_else(|| {
                ApiError::new(404, "NotFound", format!("the server could not find the requested resource: {gv}"), None)
            });
        }
        _ => {}
    }
    let (group, version, rest) = match s.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Ok(full(404, "text/plain; charset=utf-8", "404 page not found\n")),
    };
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let (ns, plural, name, sub) = match rest {
        ["namespaces", n, sub @ ("status" | "finalize")] if group.is_empty() => {
            (None, "namespaces", Some(*n), Some(*sub))
        }
        ["namespaces", ns, plural] => (Some(*ns), *plural, None, None),
        ["namespaces", ns, plural, name] => (Some(*ns), *plural, Some(*name), None),
        ["namespaces", ns, plural, name, sub] => (Some(*ns), *plural, Some(*name), Some(*sub)),
        [plural] => (None, *plural, None, None),
        [plural, name] => (None, *plural, Some(*name), None),
        [plural, name, sub] => (None, *plural, Some(*name), Some(*sub)),
        _ => return Err(ApiError::resource_not_found()),
    };
    let def = ctx.shared.store.lookup(group, version, plural).ok_or_else(ApiError::resource_not_found)?;
    if ns.is_some() && !def.namespaced {
        return Err(ApiError::resource_not_found());
    }
    if let Some(sub) = sub {
        if sub != "status" || !def.status_subresource {
            return Err(ApiError::resource_not_found());
        }
    }
    let t = Target {
        def,
        version: version.to_string(),
        ns: ns.map(str::to_string),
        name: name.map(str::to_string),
        sub: sub.map(str::to_string),
        legacy_watch,
    };
    dispatch(ctx, t).await
}

async fn dispatch(ctx: &Ctx, t: Target) -> Result<Response<Body>, ApiError> {
    if ctx.query.get("dryRun").is_some_and(|v| !v.is_empty()) {
        return Err(ApiError::bad_request("fake-apiserver: dryRun is not supported"));
    }
    let m = &ctx.method;
    let item = t.name.is_some();
    // A namespaced item needs a namespace in the path.
    if item && t.def.namespaced && t.ns.is_none() {
        return Err(ApiError::resource_not_found());
    }
    if *m == Method::GET && (t.legacy_watch || ctx.query.flag("watch")) {
        return watch(ctx, &t);
    }
    match (m.as_str(), item) {
        ("GET", false) => list(ctx, &t),
        ("GET", true) => get(ctx, &t),
        ("POST", false) => create(ctx, &t),
        ("PUT", true) => update(ctx, &t),
        ("PATCH", true) => patch(ctx, &t),
        ("DELETE", true) => delete(ctx, &t),
        ("DELETE", false) => delete_collection(ctx, &t),
        _ => Err(ApiError::method_not_allowed(m.as_str())),
    }
}

fn ns_str(t: &Target) -> &str {
    t.ns.as_deref().unwrap_or("")
}

fn selectors(ctx: &Ctx, def: &ResourceDef) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let ls = LabelSelector::parse(ctx.query.get("labelSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
    let fs = FieldSelector::parse(ctx.query.get("fieldSelector").unwrap_or_default()).map_err(ApiError::bad_request)?;
    if let Some(f) = fs.unsupported(&|f| def.supports_field(f)) {
        return Err(ApiError::bad_request(format!("field label not supported: {f}")));
    }
    Ok((ls, fs))
}

/// The object as returned to this request (version, and Table/metadata forms).
fn present_one(ctx: &Ctx, t: &Target, obj: Value) -> Value {
    let obj = at_version(&t.def, &t.version, obj);
    match negotiate(&ctx.accept) {
        As::Plain => obj,
        As::Metadata => partial_meta(&obj),
        As::Table => table(ctx, &t.def, &[obj], json!({"resourceVersion": ""})),
    }
}

fn partial_meta(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

fn get(ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    let obj = ctx.shared.store.get(&t.def, ns_str(t), t.name.as_deref().unwrap())?;
    Ok(json_resp(200, &present_one(ctx, t, obj)))
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    let raw = serde_json::to_vec(&json!({"rv": rv, "ns": ns, "name": name})).unwrap();
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(tok: &str) -> Option<(u64, String, String)> {
    if !tok.len().is_multiple_of(2) {
        return None;
    }
    let raw: Option<Vec<u8>> =
        (0..tok.len()).step_by(2).map(|i| u8::from_str_radix(tok.get(i..i + 2)?, 16).ok()).collect();
    let v: Value = serde_json::from_slice(&raw?).ok()?;
    Some((v["rv"].as_u64()?, v["ns"].as_str()?.to_string(), v["name"].as_str()?.to_string()))
}

fn list(ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    let q = &ctx.query;
    let (ls, fs) = selectors(ctx, &t.def)?;
    let rv = q.get("resourceVersion").unwrap_or_default();
    let rvm = q.get("resourceVersionMatch").unwrap_or_default();
    let cont = q.get("continue").unwrap_or_default();
    let limit: usize = match q.get("limit") {
        Some(l) if !l.is_empty() => l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
        _ => 0,
    };
    if !rvm.is_empty() && rv.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
            None,
        ));
    }
    let store = &ctx.shared.store;
    let (at, start_after) = if !cont.is_empty() {
        if !rv.is_empty() && rv != "0" {
            return Err(ApiError::bad_request("specifying resource version is not allowed when using continue"));
        }
        let (crv, cns, cname) = decode_continue(cont)
            .ok_or_else(|| ApiError::bad_request("continue key is not valid: invalid continue token"))?;
        if crv < store.compacted() {
            return Err(ApiError::gone("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list."));
        }
        (Some(crv), Some((cns, cname)))
    } else {
        match (rv, rvm) {
            ("", _) | ("0", _) => (None, None),
            (r, "Exact") => (Some(parse_rv(r)?), None),
            (r, "NotOlderThan") | (r, "") => {
                parse_rv(r)?;
                (None, None)
            }
            (_, other) => {
                return Err(ApiError::bad_request(format!(
                    "resourceVersionMatch: Unsupported value: {other:?}: supported values: \"Exact\", \"NotOlderThan\""
                )))
            }
        }
    };
    let (items, served_rv) = store.list(&t.def, t.ns.as_deref(), at)?;
    let mut items: Vec<Value> = items
        .into_iter()
        .filter(|o| {
            let key = (
                o["metadata"]["namespace"].as_str().unwrap_or_default(),
                o["metadata"]["name"].as_str().unwrap_or_default(),
            );
            start_after.as_ref().is_none_or(|(n, m)| key > (n.as_str(), m.as_str()))
        })
        .filter(|o| ls.matches_object(o) && fs.matches_object(o))
        .map(|o| at_version(&t.def, &t.version, o))
        .collect();
    let mut list_meta = json!({"resourceVersion": served_rv.to_string()});
    if limit > 0 && items.len() > limit {
        let remaining = items.len() - limit;
        items.truncate(limit);
        let last = items.last().unwrap();
        list_meta["continue"] = json!(encode_continue(
            served_rv,
            last["metadata"]["namespace"].as_str().unwrap_or_default(),
            last["metadata"]["name"].as_str().unwrap_or_default()
        ));
        list_meta["remainingItemCount"] = json!(remaining);
    }
    let body = match negotiate(&ctx.accept) {
        As::Plain => json!({
            "kind": format!("{}List", t.def.kind),
            "apiVersion": t.def.api_version(&t.version),
            "metadata": list_meta,
            "items": items,
        }),
        As::Metadata => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": list_meta,
            "items": items.iter().map(partial_meta).collect::<Vec<_>>(),
        }),
        As::Table => table(ctx, &t.def, &items, list_meta),
    };
    Ok(json_resp(200, &body))
}

fn read_body(ctx: &Ctx) -> Result<Value, ApiError> {
    let ct = ctx.content_type.split(';').next().unwrap_or_default().trim();
    let v = match ct {
        "" | "application/json" | "*/*" => serde_json::from_slice(&ctx.body)
            .map_err(|e| ApiError::bad_request(format!("the body of the request was in an unknown format: {e}")))?,
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            parse_yaml_or_json(&ctx.body).map_err(ApiError::bad_request)?
        }
        other => return Err(ApiError::unsupported_media_type(other, false)),
    };
    if !v.is_object() {
        return Err(ApiError::bad_request("the body of the request was not a JSON object"));
    }
    Ok(v)
}

/// Checks apiVersion/kind and namespace of a request body against the path.
fn check_body(t: &Target, obj: &Value) -> Result<(), ApiError> {
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        if av != t.def.api_version(&t.version) {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                t.def.api_version(&t.version)
            )));
        }
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str) {
        if k != t.def.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                t.def.kind
            )));
        }
    }
    if let (Some(pns), Some(bns)) = (t.ns.as_deref(), obj.pointer("/metadata/namespace").and_then(Value::as_str)) {
        if !bns.is_empty() && bns != pns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    if let (Some(pn), Some(bn)) = (t.name.as_deref(), obj.pointer("/metadata/name").and_then(Value::as_str)) {
        if !bn.is_empty() && bn != pn {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({bn}) does not match the name on the URL ({pn})"
            )));
        }
    }
    Ok(())
}

/// `fieldValidation=Strict` (kubectl's default): unknown CR fields are errors.
fn strict(ctx: &Ctx) -> bool {
    ctx.query.get("fieldValidation") == Some("Strict")
}

fn create(ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    let obj = read_body(ctx)?;
    check_body(t, &obj)?;
    let created = ctx.shared.store.create_checked(&t.def, &t.version, t.ns.as_deref(), obj, strict(ctx))?;
    Ok(json_resp(201, &present_one(ctx, t, created)))
}

fn update(ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    let obj = read_body(ctx)?;
    check_body(t, &obj)?;
    let kind = if t.sub.is_some() { UpdateKind::Status } else { UpdateKind::Main };
    let out = ctx.shared.store.modify(
        &t.def,
        &t.version,
        ns_str(t),
        t.name.as_deref().unwrap(),
        kind,
        strict(ctx),
        |_| Ok(obj),
    )?;
    Ok(json_resp(200, &present_one(ctx, t, out)))
}

fn patch(ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    let pt = PatchType::from_content_type(&ctx.content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(&ctx.content_type, true))?;
    let name = t.name.as_deref().unwrap();
    let store = &ctx.shared.store;
    let kind = if t.sub.is_some() { UpdateKind::Status } else { UpdateKind::Main };
    let invalid = |msg: String| ApiError::new(422, "Invalid", msg, None);
    if pt == PatchType::Apply {
        if ctx.query.get("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::new(
                422,
                "Invalid",
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                None,
            ));
        }
        let applied = parse_yaml_or_json(&ctx.body).map_err(ApiError::bad_request)?;
        if !applied.is_object() {
            return Err(ApiError::bad_request("the body of the request was not a YAML/JSON object"));
        }
        check_body(t, &applied)?;
        if store.get(&t.def, ns_str(t), name).is_err() {
            if t.sub.is_some() {
                return Err(ApiError::not_found(&t.def.group, &t.def.plural, name));
            }
            let mut obj = applied;
            obj["metadata"]["name"] = json!(name);
            let created = store.create_checked(&t.def, &t.version, t.ns.as_deref(), obj, strict(ctx))?;
            return Ok(json_resp(201, &present_one(ctx, t, created)));
        }
    }
    let body = ctx.body.clone();
    let out = store.modify(&t.def, &t.version, ns_str(t), name, kind, strict(ctx), |cur| {
        let rv_before = cur.pointer("/metadata/resourceVersion").cloned();
        let mut patched = apply_patch(&cur, &body, pt).map_err(invalid)?;
        if patched.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
            return Err(ApiError::invalid(
                &t.def.group,
                &t.def.kind,
                name,
                "metadata.name",
                "FieldValueInvalid",
                "Invalid value: field is immutable",
            ));
        }
        // The stored revision is the precondition only if the patch set one.
        if patched.pointer("/metadata/resourceVersion").cloned() == rv_before {
            if let Some(m) = patched.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
        }
        Ok(patched)
    })?;
    Ok(json_resp(200, &present_one(ctx, t, out)))
}

fn delete_options(ctx: &Ctx) -> (Option<String>, Option<String>) {
    let opts: Value = serde_json::from_slice(&ctx.body).unwrap_or(Value::Null);
    let rv = opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str).map(str::to_string);
    let uid = opts.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string);
    (rv, uid)
}

/// Kinds whose delete returns the deleted object rather than a Status
/// (`ReturnDeletedObject` / graceful deletion in the real registry).
fn returns_deleted_object(def: &ResourceDef) -> bool {
    def.custom
        || def.group == "apiextensions.k8s.io"
        || (def.group.is_empty() && matches!(def.plural.as_str(), "services" | "namespaces" | "pods"))
}

fn delete(ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    if t.sub.is_some() {
        return Err(ApiError::method_not_allowed("DELETE"));
    }
    let (rv, uid) = delete_options(ctx);
    let name = t.name.as_deref().unwrap();
    let old = ctx.shared.store.delete(&t.def, ns_str(t), name, rv.as_deref(), uid.as_deref())?;
    if returns_deleted_object(&t.def) {
        Ok(json_resp(200, &at_version(&t.def, &t.version, old)))
    } else {
        let uid = old.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default();
        Ok(json_resp(200, &success_status(&t.def.group, &t.def.plural, name, uid)))
    }
}

fn delete_collection(ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    let (ls, fs) = selectors(ctx, &t.def)?;
    let store = &ctx.shared.store;
    let (items, _) = store.list(&t.def, t.ns.as_deref(), None)?;
    let mut deleted = Vec::new();
    for o in items.into_iter().filter(|o| ls.matches_object(o) && fs.matches_object(o)) {
        let ns = o["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
        let name = o["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if let Ok(d) = store.delete(&t.def, &ns, &name, None, None) {
            deleted.push(at_version(&t.def, &t.version, d));
        }
    }
    Ok(json_resp(
        200,
        &json!({"kind": format!("{}List", t.def.kind), "apiVersion": t.def.api_version(&t.version),
                "metadata": {"resourceVersion": store.resource_version().to_string()}, "items": deleted}),
    ))
}

// ---------------------------------------------------------------- watch

fn watch_line(type_: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": type_, "object": obj})).unwrap();
    v.push(b'\n');
    Bytes::from(v)
}

/// Applies the watch's selectors to a change, as the real watch cache does:
/// an object that starts matching is ADDED, one that stops is DELETED (with
/// its previous content and the new resourceVersion).
fn filter_event(ev: &HistEvent, ls: &LabelSelector, fs: &FieldSelector) -> Option<(EventType, Value)> {
    let m = |o: &Value| ls.matches_object(o) && fs.matches_object(o);
    match ev.type_ {
        EventType::Added => m(&ev.obj).then(|| (EventType::Added, ev.obj.clone())),
        EventType::Deleted => m(&ev.obj).then(|| (EventType::Deleted, ev.obj.clone())),
        EventType::Modified => {
            let was = ev.prev.as_ref().is_some_and(m);
            let is = m(&ev.obj);
            match (was, is) {
                (true, true) => Some((EventType::Modified, ev.obj.clone())),
                (false, true) => Some((EventType::Added, ev.obj.clone())),
                (true, false) => {
                    let mut o = ev.prev.clone().unwrap();
                    o["metadata"]["resourceVersion"] = json!(ev.rv.to_string());
                    Some((EventType::Deleted, o))
                }
                (false, false) => None,
            }
        }
    }
}

fn watch(ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    let q = &ctx.query;
    let (ls, mut fs) = selectors(ctx, &t.def)?;
    if let Some(n) = &t.name {
        fs.reqs.push(crate::selector::FieldReq { field: "metadata.name".into(), equal: true, value: n.clone() });
    }
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.get("sendInitialEvents").map(|v| v == "true");
    let rv = q.get("resourceVersion").unwrap_or_default();
    let rvm = q.get("resourceVersionMatch").unwrap_or_default();
    if send_initial.is_some() {
        if rvm != "NotOlderThan" {
            return Err(ApiError::new(
                422,
                "Invalid",
                "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                None,
            ));
        }
        if !bookmarks {
            return Err(ApiError::new(
                422,
                "Invalid",
                "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
                None,
            ));
        }
    } else if !rvm.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            None,
        ));
    }
    let start = match (send_initial, rv) {
        (Some(true), _) | (None, "") | (None, "0") => WatchStart::Current,
        (Some(false), "") | (Some(false), "0") => WatchStart::After(ctx.shared.store.resource_version()),
        (_, r) => WatchStart::After(parse_rv(r)?),
    };
    let timeout =
        q.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).filter(|s| *s > 0).map(Duration::from_secs);
    let form = negotiate(&ctx.accept);
    let def = t.def.clone();
    let version = t.version.clone();
    let shared = ctx.shared.clone();
    let include = ctx.query.get("includeObject").unwrap_or_default().to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let api_version = def.api_version(&version);
    let kind_name = def.kind.clone();
    let present = move |o: Value| -> Value {
        let o = at_version(&def, &version, o);
        match form {
            As::Plain => o,
            As::Metadata => partial_meta(&o),
            As::Table => table_of(&def, &[o], json!({"resourceVersion": ""}), &include),
        }
    };
    let bookmark = move |rv: u64, end: bool| -> Option<Value> {
        let (kind, av) = match form {
            As::Plain => (kind_name.clone(), api_version.clone()),
            As::Metadata => ("PartialObjectMetadata".to_string(), "meta.k8s.io/v1".to_string()),
            As::Table => return None,
        };
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        Some(json!({"kind": kind, "apiVersion": av, "metadata": meta}))
    };
    match shared.store.watch(&t.def, t.ns.as_deref(), start, bookmarks) {
        Err(e) => {
            // As the real server: the watch is accepted, then ends with an ERROR event.
            let line = watch_line("ERROR", &e.status);
            let _ = tx.try_send(line);
        }
        Ok(mut h) => {
            let mut mode = shared.mode.subscribe();
            let store_shared = shared.clone();
            tokio::spawn(async move {
                let id = h.id;
                let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
                let mut initial: std::collections::VecDeque<WatchItem> = std::mem::take(&mut h.initial).into();
                let mut end_marker = (send_initial == Some(true)).then_some(h.rv);
                loop {
                    let item = if let Some(i) = initial.pop_front() {
                        Some(i)
                    } else if let Some(rv) = end_marker.take() {
                        if let Some(b) = bookmark(rv, true) {
                            if tx.send(watch_line("BOOKMARK", &b)).await.is_err() {
                                break;
                            }
                        }
                        continue;
                    } else {
                        let sleep = async {
                            match deadline {
                                Some(d) => tokio::time::sleep_until(d).await,
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            i = h.rx.recv() => i,
                            _ = sleep => None,
                            _ = tx.closed() => None,
                        }
                    };
                    let Some(item) = item else { break };
                    // A hanging server delivers nothing until service resumes.
                    while *mode.borrow() == Mode::Hang {
                        tokio::select! {
                            r = mode.changed() => if r.is_err() { return },
                            _ = tx.closed() => { store_shared.store.unwatch(id); return },
                        }
                    }
                    let line = match item {
                        WatchItem::Event(ev) => match filter_event(&ev, &ls, &fs) {
                            Some((ty, obj)) => watch_line(ty.as_str(), &present(obj)),
                            None => continue,
                        },
                        WatchItem::Bookmark(rv) => match bookmark(rv, false) {
                            Some(b) => watch_line("BOOKMARK", &b),
                            None => continue,
                        },
                    };
                    if tx.send(line).await.is_err() {
                        break;
                    }
                }
                store_shared.store.unwatch(id);
            });
        }
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let ct = match form {
        As::Plain => "application/json",
        As::Metadata => "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        As::Table => "application/json;as=Table;g=meta.k8s.io;v=v1",
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", ct)
        .header("cache-control", "no-cache, private")
        .header("transfer-encoding", "chunked")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap())
}

// ---------------------------------------------------------------- tables

/// `kubectl`-style age (`45s`, `3m20s`, `5h`, `2d3h`).
pub fn human_age(created: &str) -> String {
    let Some(c) = parse_rfc3339(created) else { return "<unknown>".into() };
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let s = now - c;
    if s < -1 {
        return "<invalid>".into();
    }
    let s = s.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 730 {
        format!("{d}d")
    } else {
        format!("{}y{}d", d / 365, d % 365)
    }
}

/// Evaluates a simple JSONPath (`.spec.a.b`, `.status.x[0].y`, `.spec.list[*].f`).
fn json_path(obj: &Value, path: &str) -> Vec<Value> {
    let mut cur = vec![obj.clone()];
    let path = path.trim().trim_start_matches('{').trim_end_matches('}').trim_start_matches('.');
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (field, idx) = match part.split_once('[') {
            Some((f, i)) => (f, Some(i.trim_end_matches(']'))),
            None => (part, None),
        };
        let mut next = Vec::new();
        for c in &cur {
            let v = if field.is_empty() { Some(c) } else { c.get(field) };
            let Some(v) = v else { continue };
            match idx {
                None => next.push(v.clone()),
                Some("*") => next.extend(v.as_array().cloned().unwrap_or_default()),
                Some(i) => {
                    if let (Ok(i), Some(a)) = (i.parse::<usize>(), v.as_array()) {
                        if let Some(x) = a.get(i) {
                            next.push(x.clone());
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

fn cell_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn service_cells(o: &Value) -> Vec<Value> {
    let spec = &o["spec"];
    let type_ = spec["type"].as_str().unwrap_or("ClusterIP");
    let cluster_ip = spec["clusterIP"].as_str().filter(|s| !s.is_empty()).unwrap_or("<none>");
    let mut ext: Vec<String> = o
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| i.get("ip").or(i.get("hostname")).and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(e) = spec["externalIPs"].as_array() {
        ext.extend(e.iter().filter_map(|x| x.as_str().map(str::to_string)));
    }
    let external = if !ext.is_empty() {
        ext.join(",")
    } else if type_ == "LoadBalancer" {
        "<pending>".into()
    } else if type_ == "ExternalName" {
        spec["externalName"].as_str().unwrap_or("<none>").to_string()
    } else {
        "<none>".into()
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p.get("nodePort") {
                        Some(np) => format!("{}:{}/{}", p["port"], np, proto),
                        None => format!("{}/{}", p["port"], proto),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let ports = if ports.is_empty() { "<none>".to_string() } else { ports.join(",") };
    vec![json!(type_), json!(cluster_ip), json!(external), json!(ports)]
}

fn col(name: &str, type_: &str, format: &str, desc: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": desc, "priority": priority})
}

fn table(ctx: &Ctx, def: &ResourceDef, objs: &[Value], list_meta: Value) -> Value {
    table_of(def, objs, list_meta, ctx.query.get("includeObject").unwrap_or_default())
}

/// A meta.k8s.io/v1 Table: Name, the kind's columns (Services' or a CRD's
/// additionalPrinterColumns), Age.
fn table_of(def: &ResourceDef, objs: &[Value], list_meta: Value, include: &str) -> Value {
    let mut cols = vec![col("Name", "string", "name", "Name must be unique within a namespace.", 0)];
    let is_svc = def.group.is_empty() && def.plural == "services";
    if is_svc {
        cols.push(col("Type", "string", "", "The type of the service.", 0));
        cols.push(col("Cluster-IP", "string", "", "The cluster IP of the service.", 0));
        cols.push(col("External-IP", "string", "", "The external IPs of the service.", 0));
        cols.push(col("Port(s)", "string", "", "The ports of the service.", 0));
    }
    let custom_age = def.printer_columns.iter().any(|c| c.json_path.trim() == ".metadata.creationTimestamp");
    for c in &def.printer_columns {
        cols.push(col(&c.name, &c.type_, &c.format, &c.description, c.priority));
    }
    if !custom_age {
        cols.push(col(
            "Age",
            "string",
            "",
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
            0,
        ));
    }
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut cells = vec![json!(o["metadata"]["name"].as_str().unwrap_or_default())];
            if is_svc {
                cells.extend(service_cells(o));
            }
            for c in &def.printer_columns {
                let vals = json_path(o, &c.json_path);
                let cell = if c.type_ == "date" {
                    vals.first().and_then(Value::as_str).map(human_age).map(Value::from).unwrap_or(Value::Null)
                } else if vals.is_empty() {
                    Value::Null
                } else if vals.len() == 1 && c.type_ != "string" {
                    vals[0].clone()
                } else {
                    json!(vals.iter().map(cell_string).collect::<Vec<_>>().join(","))
                };
                cells.push(cell);
            }
            if !custom_age {
                cells.push(json!(human_age(o["metadata"]["creationTimestamp"].as_str().unwrap_or_default())));
            }
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => row["object"] = partial_meta(o),
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": cols, "rows": rows})
}

// ---------------------------------------------------------------- discovery

fn resource_list(store: &Store, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = store
        .defs()
        .iter()
        .filter(|d| d.group == group && d.versions.iter().any(|v| v == version))
        .flat_map(|d| d.api_resources())
        .collect();
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "groupVersion": gv, "resources": resources})
}

fn group_list(store: &Store) -> Value {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for d in store.defs().iter().filter(|d| !d.group.is_empty()) {
        let entry = match groups.iter_mut().find(|(g, _)| *g == d.group) {
            Some(e) => e,
            None => {
                groups.push((d.group.clone(), Vec::new()));
                groups.last_mut().unwrap()
            }
        };
        for v in &d.versions {
            if !entry.1.contains(v) {
                entry.1.push(v.clone());
            }
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(g, mut vs)| {
            vs.sort_by(|a, b| version_priority(a, b));
            let versions: Vec<Value> =
                vs.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect();
            json!({"name": g, "versions": versions, "preferredVersion": versions[0].clone()})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn gv_paths(store: &Store) -> Vec<(String, String, String)> {
    // (openapi path key, group, version)
    let mut out: Vec<(String, String, String)> = vec![("api/v1".into(), String::new(), "v1".into())];
    for d in store.defs() {
        for v in &d.versions {
            if d.group.is_empty() {
                continue;
            }
            let key = format!("apis/{}/{}", d.group, v);
            if !out.iter().any(|(k, _, _)| *k == key) {
                out.push((key, d.group.clone(), v.clone()));
            }
        }
    }
    out
}

/// `/openapi/v3`: the index of group-version documents.
fn openapi_v3_root(store: &Store) -> Value {
    let rv = store.resource_version();
    let mut paths = serde_json::Map::new();
    for (key, _, _) in gv_paths(store) {
        paths.insert(key.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash=FAKE{rv}")}));
    }
    json!({"paths": paths})
}

/// A minimal OpenAPI v3 document for one group-version: the item paths with
/// their PATCH operation (tagged with `x-kubernetes-group-version-kind` and
/// listing the `fieldValidation` parameter), which is what kubectl reads to
/// decide that the server validates fields itself. No schemas.
fn openapi_v3_gv(store: &Store, gv: &str) -> Option<Value> {
    let (_, group, version) = gv_paths(store).into_iter().find(|(k, _, _)| k == gv)?;
    let mut paths = serde_json::Map::new();
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
    ]);
    for d in store.defs().iter().filter(|d| d.group == group && d.versions.contains(&version)) {
        let prefix = if group.is_empty() { "/api/v1".to_string() } else { format!("/apis/{group}/{version}") };
        let item = if d.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", d.plural)
        } else {
            format!("{prefix}/{}/{{name}}", d.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": d.kind});
        let op = |verb: &str| {
            json!({"operationId": format!("{verb}{}", d.kind), "x-kubernetes-action": verb,
                   "x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {"200": {"description": "OK"}}})
        };
        paths.insert(
            item.clone(),
            json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}),
        );
        if d.status_subresource {
            paths.insert(format!("{item}/status"), json!({"get": op("get"), "put": op("put"), "patch": op("patch")}));
        }
        let coll = item.trim_end_matches("/{name}").to_string();
        paths.insert(coll, json!({"get": op("list"), "post": op("post")}));
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (fake-apiserver)", "version": "unversioned"},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_negotiation() {
        assert_eq!(negotiate("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"), As::Table);
        assert_eq!(negotiate("application/json"), As::Plain);
        assert_eq!(negotiate(""), As::Plain);
        assert_eq!(negotiate("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"), As::Metadata);
        assert_eq!(negotiate("application/json, application/json;as=Table;v=v1;g=meta.k8s.io"), As::Plain);
    }

    #[test]
    fn continue_tokens_roundtrip() {
        let t = encode_continue(42, "ns", "name");
        assert_eq!(decode_continue(&t), Some((42, "ns".into(), "name".into())));
        assert_eq!(decode_continue("zz"), None);
    }

    #[test]
    fn json_paths() {
        let o = json!({"spec": {"addresses": ["a", "b"], "peers": [{"ip": "1"}, {"ip": "2"}]}});
        assert_eq!(json_path(&o, ".spec.addresses"), vec![json!(["a", "b"])]);
        assert_eq!(json_path(&o, ".spec.peers[*].ip"), vec![json!("1"), json!("2")]);
        assert_eq!(json_path(&o, ".spec.peers[1].ip"), vec![json!("2")]);
        assert!(json_path(&o, ".spec.nope").is_empty());
    }

    #[test]
    fn query_parsing() {
        let q = Query::parse("&watch=true&labelSelector=a%3Db%2Cc+in+(x)&x");
        assert!(q.flag("watch"));
        assert_eq!(q.get("labelSelector"), Some("a=b,c in (x)"));
        assert_eq!(q.get("x"), Some(""));
    }
}
