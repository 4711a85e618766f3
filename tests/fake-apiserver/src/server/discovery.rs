//! Discovery and OpenAPI documents: `/api`, `/api/v1`, `/apis`,
//! `/apis/{group}[/{version}]` (the legacy APIVersions, APIGroupList, APIGroup
//! and APIResourceList types) and the minimal `/openapi/v3` index and
//! per-group-version documents kubectl reads. They are built from the store's
//! served resources, so a stored CRD shows up at once. `/openapi/v2` is not
//! served (a 404, which kubectl handles).

use crate::resources::version_priority;
use crate::store::Store;
use serde_json::{json, Value};
use std::net::SocketAddr;

/// `/api`: the core group's versions and the address clients should use.
pub(super) fn api_versions(addr: SocketAddr) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string()}]})
}

/// `/apis/{group}`: one entry of the group list, or None for an unknown group.
pub(super) fn api_group(store: &Store, group: &str) -> Option<Value> {
    group_list(store)["groups"].as_array().and_then(|gs| gs.iter().find(|x| x["name"] == *group).cloned()).map(
        |mut grp| {
            grp["kind"] = json!("APIGroup");
            grp["apiVersion"] = json!("v1");
            grp
        },
    )
}

/// `/apis/{group}/{version}`: its resources, or None when nothing serves that group-version.
pub(super) fn group_version(store: &Store, group: &str, version: &str) -> Option<Value> {
    let defs = store.defs();
    if !defs.iter().any(|d| d.group == group && d.versions.iter().any(|x| x == version)) {
        return None;
    }
    let mut l = resource_list(store, group, version);
    l["apiVersion"] = json!("v1");
    Some(l)
}

/// The APIResourceList of one group-version (`/api/v1` and under `/apis`).
pub(super) fn resource_list(store: &Store, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = store
        .defs()
        .iter()
        .filter(|d| d.group == group && d.versions.iter().any(|v| v == version))
        .flat_map(|d| d.api_resources())
        .collect();
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "groupVersion": gv, "resources": resources})
}

/// `/apis`: every non-core group with its versions, the preferred one first.
pub(super) fn group_list(store: &Store) -> Value {
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
pub(super) fn openapi_v3_root(store: &Store) -> Value {
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
pub(super) fn openapi_v3_gv(store: &Store, gv: &str) -> Option<Value> {
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
    use crate::store::DEFAULT_HISTORY_LIMIT;

    #[test]
    fn groups_and_versions_are_found_or_not() {
        let store = Store::new(&[], DEFAULT_HISTORY_LIMIT);
        // (group, version or None for the group document, served?)
        let cases = [
            ("coordination.k8s.io", None, true),
            ("apiextensions.k8s.io", None, true),
            ("metallb.io", None, false),
            ("discovery.k8s.io", Some("v1"), true),
            ("discovery.k8s.io", Some("v2"), false),
        ];
        for (group, version, served) in cases {
            let doc = match version {
                None => api_group(&store, group),
                Some(v) => group_version(&store, group, v),
            };
            assert_eq!(doc.is_some(), served, "{group} {version:?}");
            if let (Some(doc), None) = (&doc, version) {
                assert_eq!((doc["kind"].as_str(), doc["name"].as_str()), (Some("APIGroup"), Some(group)));
            }
            if let (Some(doc), Some(v)) = (&doc, version) {
                assert_eq!(doc["groupVersion"], json!(format!("{group}/{v}")));
            }
        }
    }

    #[test]
    fn openapi_documents_list_item_paths() {
        let store = Store::new(&[], DEFAULT_HISTORY_LIMIT);
        assert!(openapi_v3_root(&store)["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .is_some_and(|u| u.starts_with("/openapi/v3/api/v1?hash=")));
        // (document, path, operation present in it)
        let cases = [
            ("api/v1", "/api/v1/namespaces/{namespace}/services/{name}", "patch"),
            ("api/v1", "/api/v1/namespaces/{namespace}/services/{name}/status", "patch"),
            ("api/v1", "/api/v1/namespaces/{namespace}/services", "post"),
            ("api/v1", "/api/v1/nodes/{name}", "patch"),
            (
                "apis/coordination.k8s.io/v1",
                "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}",
                "patch",
            ),
        ];
        for (gv, path, op) in cases {
            let doc = openapi_v3_gv(&store, gv).unwrap();
            assert!(doc["paths"][path][op].is_object(), "{gv} {path} {op}");
        }
        assert!(openapi_v3_gv(&store, "apis/metallb.io/v1beta1").is_none());
    }
}
