//! The served resource types: the built-in ones and those derived from
//! CustomResourceDefinitions in the store.

use serde_json::{json, Value};
use std::cmp::Ordering;

/// A printer column of a CRD (`additionalPrinterColumns`).
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    pub type_: String,
    pub json_path: String,
    pub priority: i64,
    pub description: String,
    pub format: String,
}

/// One served resource (group + plural), with every version it is served at.
#[derive(Debug, Clone)]
pub struct ResourceDef {
    pub group: String,
    /// Served versions (each served the same stored object; no conversion).
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub namespaced: bool,
    pub status_subresource: bool,
    /// True for custom resources (generation bumps, CR-style validation).
    pub custom: bool,
    pub printer_columns: Vec<PrinterColumn>,
    /// Extra field selectors supported besides metadata.name/metadata.namespace.
    pub field_labels: Vec<String>,
    /// CRD structural schemas (`openAPIV3Schema`) by version.
    pub schemas: Vec<(String, Value)>,
}

impl ResourceDef {
    pub fn key(&self) -> ResKey {
        ResKey { group: self.group.clone(), plural: self.plural.clone() }
    }

    /// `services` or `ipaddresspools.metallb.io`, as used in Status messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{}", self.group, version)
        }
    }

    pub fn supports_field(&self, f: &str) -> bool {
        f == "metadata.name" || f == "metadata.namespace" || self.field_labels.iter().any(|x| x == f)
    }

    pub fn has_generation(&self) -> bool {
        self.custom || (self.group == "apiextensions.k8s.io")
    }

    /// For custom resources with a schema at `version`: applies the schema's
    /// defaults and prunes unknown fields (as the real server does), returning
    /// the pruned fields' paths (`spec.foo`).
    pub fn normalize(&self, version: &str, obj: &mut Value) -> Vec<String> {
        let mut unknown = Vec::new();
        if let Some((_, schema)) = self.schemas.iter().find(|(v, _)| v == version) {
            if let (Some(props), Some(m)) = (schema.get("properties").and_then(Value::as_object), obj.as_object_mut()) {
                for (k, v) in m.iter_mut() {
                    if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                        continue;
                    }
                    if let Some(ps) = props.get(k) {
                        prune_and_default(ps, v, k, &mut unknown);
                    }
                }
                if schema.get("x-kubernetes-preserve-unknown-fields") != Some(&Value::Bool(true)) {
                    let extra: Vec<String> = m
                        .keys()
                        .filter(|k| {
                            !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") && !props.contains_key(*k)
                        })
                        .cloned()
                        .collect();
                    for k in extra {
                        m.remove(&k);
                        unknown.push(k);
                    }
                }
                for (k, ps) in props {
                    if let (None, Some(d)) = (m.get(k), ps.get("default")) {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
        }
        unknown
    }

    pub fn verbs(&self) -> Vec<&'static str> {
        vec!["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
    }

    /// APIResource entries (main resource and `/status`) for discovery.
    pub fn api_resources(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": self.verbs(),
        })];
        if !self.short_names.is_empty() {
            out[0]["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            out[0]["categories"] = json!(self.categories);
        }
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

fn prune_and_default(schema: &Value, v: &mut Value, path: &str, unknown: &mut Vec<String>) {
    if schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true)) {
        return;
    }
    match v {
        Value::Object(m) => {
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let sub = format!("{path}.{k}");
                match (props.and_then(|p| p.get(&k)), additional) {
                    (Some(ps), _) => prune_and_default(ps, m.get_mut(&k).unwrap(), &sub, unknown),
                    (None, Some(Value::Bool(true))) => {}
                    (None, Some(a @ Value::Object(_))) => prune_and_default(a, m.get_mut(&k).unwrap(), &sub, unknown),
                    (None, _) if preserve || props.is_none() && schema.get("type").is_none() => {}
                    (None, _) => {
                        m.remove(&k);
                        unknown.push(sub);
                    }
                }
            }
            if let Some(props) = props {
                for (k, ps) in props {
                    if let (None, Some(d)) = (m.get(k), ps.get("default")) {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
        }
        Value::Array(a) => {
            if let Some(items) = schema.get("items") {
                for (i, x) in a.iter_mut().enumerate() {
                    prune_and_default(items, x, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

/// Storage identity of a resource: objects are shared by all its versions.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResKey {
    pub group: String,
    pub plural: String,
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    status: bool,
    short: &[&str],
    categories: &[&str],
    fields: &[&str],
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        versions: vec![version.into()],
        plural: plural.into(),
        singular: kind.to_lowercase(),
        kind: kind.into(),
        short_names: short.iter().map(|s| s.to_string()).collect(),
        categories: categories.iter().map(|s| s.to_string()).collect(),
        namespaced,
        status_subresource: status,
        custom: false,
        printer_columns: vec![],
        field_labels: fields.iter().map(|s| s.to_string()).collect(),
        schemas: vec![],
    }
}

const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

/// The built-in resources this server serves.
pub fn builtins() -> Vec<ResourceDef> {
    vec![
        builtin("", "v1", "namespaces", "Namespace", false, true, &["ns"], &[], &["status.phase"]),
        builtin("", "v1", "services", "Service", true, true, &["svc"], &["all"], &["spec.clusterIP", "spec.type"]),
        builtin("", "v1", "endpoints", "Endpoints", true, false, &["ep"], &[], &[]),
        builtin("", "v1", "configmaps", "ConfigMap", true, false, &["cm"], &[], &[]),
        builtin("", "v1", "secrets", "Secret", true, false, &[], &[], &["type"]),
        builtin("", "v1", "nodes", "Node", false, true, &["no"], &[], &["spec.unschedulable"]),
        builtin(
            "",
            "v1",
            "pods",
            "Pod",
            true,
            true,
            &["po"],
            &["all"],
            &[
                "spec.nodeName",
                "spec.restartPolicy",
                "spec.schedulerName",
                "spec.serviceAccountName",
                "spec.hostNetwork",
                "status.phase",
                "status.podIP",
                "status.nominatedNodeName",
            ],
        ),
        builtin("", "v1", "events", "Event", true, false, &["ev"], &[], EVENT_FIELDS),
        builtin("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", true, false, &[], &[], &[]),
        builtin("events.k8s.io", "v1", "events", "Event", true, false, &["ev"], &[], EVENT_FIELDS),
        builtin("coordination.k8s.io", "v1", "leases", "Lease", true, false, &[], &[], &[]),
        builtin(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            false,
            true,
            &["crd", "crds"],
            &[],
            &[],
        ),
    ]
}

/// Derives the served resource from a CRD object; None if it serves nothing.
pub fn from_crd(crd: &Value) -> Option<ResourceDef> {
    let spec = crd.get("spec")?;
    let group = spec.get("group")?.as_str()?.to_string();
    let names = spec.get("names")?;
    let plural = names.get("plural")?.as_str()?.to_string();
    let kind = names.get("kind")?.as_str()?.to_string();
    let singular =
        names.get("singular").and_then(Value::as_str).map(str::to_string).unwrap_or_else(|| kind.to_lowercase());
    let strs = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut versions = Vec::new();
    let mut status = false;
    let mut printer_columns = Vec::new();
    let mut field_labels = Vec::new();
    let mut schemas = Vec::new();
    for v in spec.get("versions")?.as_array()? {
        if v.get("served").and_then(Value::as_bool) != Some(true) {
            continue;
        }
        let name = v.get("name")?.as_str()?.to_string();
        if v.pointer("/subresources/status").is_some() {
            status = true;
        }
        // Printer columns and selectable fields of the preferred (first listed storage) version.
        if printer_columns.is_empty() {
            if let Some(cols) = v.get("additionalPrinterColumns").and_then(Value::as_array) {
                for c in cols {
                    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                    printer_columns.push(PrinterColumn {
                        name: s("name"),
                        type_: s("type"),
                        json_path: s("jsonPath"),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                        description: s("description"),
                        format: s("format"),
                    });
                }
            }
        }
        if let Some(sf) = v.get("selectableFields").and_then(Value::as_array) {
            for f in sf {
                if let Some(p) = f.get("jsonPath").and_then(Value::as_str) {
                    field_labels.push(p.trim_start_matches('.').to_string());
                }
            }
        }
        if let Some(sch) = v.pointer("/schema/openAPIV3Schema") {
            schemas.push((name.clone(), sch.clone()));
        }
        versions.push(name);
    }
    if versions.is_empty() {
        return None;
    }
    versions.sort_by(|a, b| version_priority(a, b));
    Some(ResourceDef {
        group,
        versions,
        plural,
        singular,
        kind,
        short_names: strs(names.get("shortNames")),
        categories: strs(names.get("categories")),
        namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
        status_subresource: status,
        custom: true,
        printer_columns,
        field_labels,
        schemas,
    })
}

/// Orders Kubernetes version names by priority (v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > other),
/// highest first.
pub fn version_priority(a: &str, b: &str) -> Ordering {
    fn parse(v: &str) -> Option<(u64, u8, u64)> {
        let rest = v.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let major: u64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 3, 0));
        }
        let (level, n) = if let Some(n) = tail.strip_prefix("beta") {
            (2, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (1, n)
        } else {
            return None;
        };
        Some((major, level, n.parse().ok()?))
    }
    match (parse(a), parse(b)) {
        (Some((ma, la, na)), Some((mb, lb, nb))) => lb.cmp(&la).then(mb.cmp(&ma)).then(nb.cmp(&na)),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_order() {
        let mut v = vec!["v1alpha1", "v1beta1", "foo", "v1", "v1beta2", "v2"];
        v.sort_by(|a, b| version_priority(a, b));
        assert_eq!(v, vec!["v2", "v1", "v1beta2", "v1beta1", "v1alpha1", "foo"]);
    }

    #[test]
    fn schema_defaults_and_pruning() {
        let crd = json!({"spec": {"group": "g.io", "scope": "Namespaced",
        "names": {"plural": "things", "kind": "Thing"},
        "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "port": {"type": "integer", "default": 179},
                    "sel": {"type": "object", "additionalProperties": {"type": "string"}},
                    "list": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                }},
                "status": {"type": "object"}
            }}}}]}});
        let d = from_crd(&crd).unwrap();
        let mut o = json!({"apiVersion": "g.io/v1", "kind": "Thing", "metadata": {"name": "n", "whatever": 1},
            "spec": {"sel": {"k": "v"}, "list": [{"b": 1}], "free": {"z": 1}, "bogus": true}, "top": 1});
        let mut unknown = d.normalize("v1", &mut o);
        unknown.sort();
        assert_eq!(unknown, vec!["spec.bogus", "spec.list[0].b", "top"]);
        assert_eq!(o["spec"], json!({"port": 179, "sel": {"k": "v"}, "list": [{"a": "x"}], "free": {"z": 1}}));
        assert_eq!(o["metadata"]["whatever"], 1);
    }

    #[test]
    fn crd_to_def() {
        let crd = json!({"spec": {"group": "metallb.io", "scope": "Namespaced",
        "names": {"plural": "bgppeers", "singular": "bgppeer", "kind": "BGPPeer", "shortNames": ["bp"]},
        "versions": [
            {"name": "v1beta1", "served": true, "storage": false},
            {"name": "v1beta2", "served": true, "storage": true, "subresources": {"status": {}}},
            {"name": "v1alpha1", "served": false}
        ]}});
        let d = from_crd(&crd).unwrap();
        assert_eq!(d.versions, vec!["v1beta2", "v1beta1"]);
        assert!(d.status_subresource && d.namespaced && d.custom);
        assert_eq!(d.qualified(), "bgppeers.metallb.io");
        assert_eq!(d.short_names, vec!["bp"]);
    }
}
