//! HTTP handling: the service entry point ([`handle`]: request log, failure
//! modes, slow writes), routing, request parsing, representation negotiation
//! and the verbs get, list, create, update, patch, delete and deletecollection.
//!
//! Watch streams are in [`watch`], kubectl's Table output in [`table`], and
//! the discovery and OpenAPI documents in [`discovery`].

mod discovery;
mod table;
mod watch;

use crate::patch::{apply_patch, parse_yaml_or_json, PatchType};
use crate::resources::ResourceDef;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{success_status, ApiError};
use crate::store::{at_version, parse_rv, Store, UpdateKind};
use crate::{Mode, RequestLog, WriteDelay};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use table::table_of;

pub type Body = BoxBody<Bytes, Infallible>;

/// State shared by the connections, the accept loop and the handle.
pub struct Shared {
    pub store: Store,
    pub mode: tokio::sync::watch::Sender<Mode>,
    pub write_delay: tokio::sync::watch::Sender<WriteDelay>,
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
        ["api"] if get => return Ok(json_resp(200, &discovery::api_versions(ctx.shared.addr))),
        ["api", "v1"] if get => return Ok(json_resp(200, &discovery::resource_list(&ctx.shared.store, "", "v1"))),
        ["apis"] if get => return Ok(json_resp(200, &discovery::group_list(&ctx.shared.store))),
        ["apis", g] if get => {
            return discovery::api_group(&ctx.shared.store, g)
                .map(|grp| json_resp(200, &grp))
                .ok_or_else(ApiError::resource_not_found);
        }
        ["apis", g, v] if get => {
            return discovery::group_version(&ctx.shared.store, g, v)
                .map(|l| json_resp(200, &l))
                .ok_or_else(ApiError::resource_not_found);
        }
        ["openapi", "v3"] if get => return Ok(json_resp(200, &discovery::openapi_v3_root(&ctx.shared.store))),
        ["openapi", "v3", rest @ ..] if get => {
            let gv = rest.join("/");
            return discovery::openapi_v3_gv(&ctx.shared.store, &gv).map(|v| json_resp(200, &v)).ok_or_else(|| {
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
        return watch::watch(ctx, &t);
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
    let after = start_after.as_ref().map(|(n, m)| (n.as_str(), m.as_str()));
    let (items, served_rv, remaining) = store.list_page(
        &t.def,
        t.ns.as_deref(),
        at,
        after,
        limit,
        |o| ls.matches_object(o) && fs.matches_object(o),
        |o| at_version(&t.def, &t.version, o.clone()),
    )?;
    let mut list_meta = json!({"resourceVersion": served_rv.to_string()});
    if remaining > 0 {
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

/// kubectl's Table for this request (`includeObject` from the query).
fn table(ctx: &Ctx, def: &ResourceDef, objs: &[Value], list_meta: Value) -> Value {
    table_of(def, objs, list_meta, ctx.query.get("includeObject").unwrap_or_default())
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
    fn query_parsing() {
        let q = Query::parse("&watch=true&labelSelector=a%3Db%2Cc+in+(x)&x");
        assert!(q.flag("watch"));
        assert_eq!(q.get("labelSelector"), Some("a=b,c in (x)"));
        assert_eq!(q.get("x"), Some(""));
    }
}
