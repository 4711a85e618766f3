//! Patch flavours: JSON merge patch (RFC 7386), JSON patch (RFC 6902),
//! an approximation of strategic merge patch, and server-side apply
//! (approximated as a strategic merge of the applied configuration).

use serde_json::{Map, Value};

/// The patch types the API server accepts (by Content-Type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" | "application/apply-patch+cbor" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// Applies a patch body to `target`. Errors are human-readable messages (the
/// caller turns them into 422/400 Status objects).
pub fn apply_patch(target: &Value, body: &[u8], pt: PatchType) -> Result<Value, String> {
    let mut out = target.clone();
    match pt {
        PatchType::Merge => {
            let p: Value = serde_json::from_slice(body).map_err(|e| format!("error decoding patch: {e}"))?;
            if !p.is_object() {
                return Err("json: cannot unmarshal into Go value of type map[string]interface {}".into());
            }
            json_patch::merge(&mut out, &p);
        }
        PatchType::Json => {
            let p: json_patch::Patch =
                serde_json::from_slice(body).map_err(|e| format!("error decoding patch: {e}"))?;
            json_patch::patch(&mut out, &p)
                .map_err(|e| format!("the server rejected our request due to an error in our request: {e}"))?;
        }
        PatchType::Strategic => {
            let p: Value = serde_json::from_slice(body).map_err(|e| format!("error decoding patch: {e}"))?;
            if !p.is_object() {
                return Err("unable to find api field in struct for the patch".into());
            }
            strategic_merge(&mut out, &p);
        }
        PatchType::Apply => {
            let p = parse_yaml_or_json(body)?;
            strategic_merge(&mut out, &p);
        }
    }
    Ok(out)
}

/// Parses a YAML (or JSON, which is YAML) document into JSON.
pub fn parse_yaml_or_json(body: &[u8]) -> Result<Value, String> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let v: Value = serde_yaml::from_slice(body).map_err(|e| format!("error decoding YAML: {e}"))?;
    Ok(v)
}

/// The merge key of a list of objects, by field name (a subset of the
/// `patchMergeKey` tags of the Kubernetes types). None: the list is replaced.
fn merge_key(field: &str, sample: &Value) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "secrets"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "ports" => {
            if sample.get("containerPort").is_some() {
                "containerPort"
            } else {
                "port"
            }
        }
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" | "addresses" => "type",
        "ownerReferences" => "uid",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    })
}

/// Lists of scalars merged as sets rather than replaced.
fn is_merged_primitive_list(field: &str) -> bool {
    field == "finalizers"
}

/// Strategic merge patch. Handles `$patch: replace|delete|merge`,
/// `$retainKeys`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`, and
/// merges lists of objects by the merge keys known to [`merge_key`].
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(pm) = patch.as_object() else {
        *target = strip_directives(patch);
        return;
    };
    match pm.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = strip_directives(patch);
            return;
        }
        Some("delete") => {
            *target = Value::Object(Map::new());
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let tm = target.as_object_mut().unwrap();
    let mut orders: Vec<(String, Vec<Value>)> = Vec::new();
    for (k, v) in pm {
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            if let Some(a) = v.as_array() {
                orders.push((field.to_string(), a.clone()));
            }
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(cur)), Some(del)) = (tm.get_mut(field), v.as_array()) {
                cur.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                tm.remove(k);
            }
            Value::Object(o) => {
                if o.get("$patch").and_then(Value::as_str) == Some("delete") {
                    tm.remove(k);
                    continue;
                }
                let slot = tm.entry(k.clone()).or_insert(Value::Null);
                strategic_merge(slot, v);
            }
            Value::Array(items) => {
                let sample = items.iter().find(|x| x.is_object()).cloned().unwrap_or(Value::Null);
                let key = if sample.is_object() { merge_key(k, &sample) } else { None };
                match (key, tm.get_mut(k)) {
                    (Some(key), Some(Value::Array(cur))) => merge_list(cur, items, key),
                    (None, Some(Value::Array(cur))) if is_merged_primitive_list(k) => {
                        for it in items {
                            if !cur.contains(it) {
                                cur.push(it.clone());
                            }
                        }
                    }
                    _ => {
                        let items: Vec<Value> = items
                            .iter()
                            .filter(|x| x.get("$patch").and_then(Value::as_str) != Some("delete"))
                            .map(strip_directives)
                            .collect();
                        tm.insert(k.clone(), Value::Array(items));
                    }
                }
            }
            scalar => {
                tm.insert(k.clone(), scalar.clone());
            }
        }
    }
    for (field, order) in orders {
        if let Some(Value::Array(cur)) = tm.get_mut(&field) {
            reorder(cur, &order);
        }
    }
    if let Some(Value::Array(keep)) = pm.get("$retainKeys") {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        tm.retain(|k, _| keep.contains(&k.as_str()));
    }
}

fn merge_list(cur: &mut Vec<Value>, items: &[Value], key: &str) {
    if items.iter().any(|x| x.get("$patch").and_then(Value::as_str) == Some("replace")) {
        *cur = items.iter().filter(|x| x.get("$patch").is_none()).map(strip_directives).collect();
        return;
    }
    for it in items {
        let Some(kv) = it.get(key) else {
            cur.push(strip_directives(it));
            continue;
        };
        let pos = cur.iter().position(|c| c.get(key) == Some(kv));
        let delete = it.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                cur.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut cur[i], it),
            (None, false) => cur.push(strip_directives(it)),
        }
    }
}

/// Orders `cur` like `order` (elements compared by the keys present in the
/// order entries); elements not mentioned keep their relative order, after.
fn reorder(cur: &mut Vec<Value>, order: &[Value]) {
    let matches = |c: &Value, o: &Value| match o {
        Value::Object(om) => om.iter().all(|(k, v)| c.get(k) == Some(v)),
        other => c == other,
    };
    let mut out = Vec::with_capacity(cur.len());
    let mut rest = std::mem::take(cur);
    for o in order {
        if let Some(i) = rest.iter().position(|c| matches(c, o)) {
            out.push(rest.remove(i));
        }
    }
    out.extend(rest);
    *cur = out;
}

/// Removes `$`-directives and null values (a patch's nulls mean "delete",
/// which for a new value is "absent").
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smp(t: Value, p: Value) -> Value {
        let mut t = t;
        strategic_merge(&mut t, &p);
        t
    }

    #[test]
    fn merge_patch_nulls_delete() {
        let out =
            apply_patch(&json!({"a": 1, "b": {"c": 2, "d": 3}}), br#"{"a": null, "b": {"c": 5}}"#, PatchType::Merge)
                .unwrap();
        assert_eq!(out, json!({"b": {"c": 5, "d": 3}}));
    }

    #[test]
    fn json_patch_ops() {
        let out = apply_patch(
            &json!({"a": [1, 2]}),
            br#"[{"op":"add","path":"/a/-","value":3},{"op":"replace","path":"/b","value":1}]"#,
            PatchType::Json,
        );
        assert!(out.is_err(), "replace of a missing path fails");
        let out =
            apply_patch(&json!({"a": [1, 2]}), br#"[{"op":"add","path":"/a/-","value":3}]"#, PatchType::Json).unwrap();
        assert_eq!(out, json!({"a": [1, 2, 3]}));
    }

    #[test]
    fn strategic_ports_merge_by_port() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let out = smp(
            svc,
            json!({"spec": {"$setElementOrder/ports": [{"port": 443}, {"port": 80}], "ports": [{"port": 80, "targetPort": 8080}]}}),
        );
        assert_eq!(
            out,
            json!({"spec": {"ports": [{"port": 443, "name": "https"}, {"port": 80, "name": "http", "targetPort": 8080}]}})
        );
    }

    #[test]
    fn strategic_directives() {
        let t = json!({"spec": {"ports": [{"port": 80}, {"port": 81}], "x": {"a": 1, "b": 2}}, "metadata": {"finalizers": ["a"]}});
        let out = smp(
            t,
            json!({"spec": {"ports": [{"port": 81, "$patch": "delete"}], "x": {"$patch": "replace", "c": 3}},
                   "metadata": {"finalizers": ["b"]}}),
        );
        assert_eq!(
            out,
            json!({"spec": {"ports": [{"port": 80}], "x": {"c": 3}}, "metadata": {"finalizers": ["a", "b"]}})
        );
        // unknown lists are replaced; directives never stored
        let out = smp(json!({"l": [1, 2]}), json!({"l": [3], "$retainKeys": ["l"], "other": 1}));
        assert_eq!(out, json!({"l": [3]}));
    }
}
