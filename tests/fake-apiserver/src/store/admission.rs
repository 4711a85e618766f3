//! Admission: what is checked and changed on an object on its way into the
//! store, before it is committed. Names (and `generateName`), the defaults a
//! real API server fills in on create (Namespaces, Services with their
//! clusterIP and nodePort allocation, Secrets' `stringData`, CRDs' accepted
//! names and conditions), CRD validation, and a custom resource's structural
//! schema (defaults, pruning, strict field validation) followed by its
//! `x-kubernetes-validations` CEL rules (see [`crate::cel`]).
//!
//! Storage concerns (preconditions, generation, no-op detection, history) stay
//! in the parent module.

use super::{crd_key, meta, meta_mut, UpdateKind};
use crate::resources::{self, ResourceDef};
use crate::status::{rfc3339, ApiError};
use serde_json::{json, Map, Value};

/// Hands out Service clusterIPs and nodePorts (monotonic counters, never reused).
#[derive(Debug, Default)]
pub(super) struct Allocator {
    next_cluster_ip: u32,
    next_node_port: u32,
}

/// The name of an object being created: `metadata.name`, or else
/// `generateName` plus a random suffix (written back into `m`). Either way it
/// must be valid for the kind.
pub(super) fn name_on_create(def: &ResourceDef, m: &mut Map<String, Value>) -> Result<String, ApiError> {
    let mut name = m.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    if name.is_empty() {
        match m.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                name = format!("{prefix}{}", random_suffix());
                m.insert("name".into(), json!(name));
            }
            _ => {
                return Err(ApiError::invalid(
                    &def.group,
                    &def.kind,
                    "",
                    "metadata.name",
                    "FieldValueRequired",
                    "Required value: name or generateName is required",
                ))
            }
        }
    }
    validate_name(def, &name)?;
    Ok(name)
}

/// A create: the kind's defaults, then the CRD schema and its rules.
pub(super) fn on_create(
    alloc: &mut Allocator,
    def: &ResourceDef,
    version: &str,
    obj: &mut Value,
    name: &str,
    strict: bool,
) -> Result<(), ApiError> {
    defaults_on_create(alloc, def, obj, name);
    check_schema(def, version, obj, strict, None)
}

/// An update of `old` to `new` (already merged as `kind` says): Service
/// defaults keeping `old`'s allocations, Secrets' `stringData`, CRD validation
/// and defaults (keeping the stored status), then the CRD schema and its rules
/// (transition rules see `old`).
#[allow(clippy::too_many_arguments)]
pub(super) fn on_update(
    alloc: &mut Allocator,
    def: &ResourceDef,
    version: &str,
    kind: UpdateKind,
    new: &mut Value,
    old: &Value,
    name: &str,
    strict: bool,
) -> Result<(), ApiError> {
    if def.group.is_empty() && def.plural == "services" && kind != UpdateKind::Status {
        alloc.service_defaults(new, Some(old));
    }
    if def.group.is_empty() && def.plural == "secrets" {
        secret_string_data(new);
    }
    if def.key() == crd_key() && kind != UpdateKind::Status {
        validate_crd(new, name)?;
        let status = old.get("status").cloned();
        crd_defaults(new);
        if let Some(s) = status {
            new["status"] = s;
        }
    }
    check_schema(def, version, new, strict, Some(old))
}

fn dns_subdomain_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
}

fn dns_label_ok(s: &str, must_start_alpha: bool) -> bool {
    dns_subdomain_ok(s)
        && s.len() <= 63
        && !s.contains('.')
        && (!must_start_alpha || s.as_bytes()[0].is_ascii_lowercase())
}

fn validate_name(def: &ResourceDef, name: &str) -> Result<(), ApiError> {
    let (ok, what) = match def.plural.as_str() {
        "services" if def.group.is_empty() => (
            dns_label_ok(name, true),
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
        ),
        "namespaces" if def.group.is_empty() => (
            dns_label_ok(name, false),
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
        ),
        _ => (
            dns_subdomain_ok(name),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        ),
    };
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            &def.group,
            &def.kind,
            name,
            "metadata.name",
            "FieldValueInvalid",
            &format!("Invalid value: {name:?}: {what}"),
        ))
    }
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char).collect()
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

fn defaults_on_create(alloc: &mut Allocator, def: &ResourceDef, obj: &mut Value, name: &str) {
    if !def.group.is_empty() {
        if def.key() == crd_key() {
            crd_defaults(obj);
        }
        return;
    }
    match def.plural.as_str() {
        "namespaces" => {
            let m = meta_mut(obj);
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
            if obj.pointer("/spec/finalizers").is_none() {
                obj["spec"] = json!({"finalizers": ["kubernetes"]});
            }
            if obj.pointer("/status/phase").is_none() {
                obj["status"] = json!({"phase": "Active"});
            }
        }
        "services" => alloc.service_defaults(obj, None),
        "secrets" => {
            if obj.get("type").is_none() {
                obj["type"] = json!("Opaque");
            }
            secret_string_data(obj);
        }
        _ => {}
    }
}

impl Allocator {
    /// Service defaulting and allocation (clusterIP, nodePorts), keeping
    /// allocated values of `old` on update.
    fn service_defaults(&mut self, obj: &mut Value, old: Option<&Value>) {
        if !obj.get("spec").is_some_and(Value::is_object) {
            obj["spec"] = json!({});
        }
        let spec = obj["spec"].as_object_mut().unwrap();
        let type_ = spec.get("type").and_then(Value::as_str).unwrap_or("ClusterIP").to_string();
        spec.insert("type".into(), json!(type_));
        spec.entry("sessionAffinity").or_insert(json!("None"));
        if type_ != "ExternalName" {
            let old_ip = old.and_then(|o| o.pointer("/spec/clusterIP")).cloned();
            if spec.get("clusterIP").and_then(Value::as_str).unwrap_or_default().is_empty() {
                let ip = match old_ip {
                    Some(ip) => ip,
                    None => {
                        self.next_cluster_ip += 1;
                        let n = self.next_cluster_ip;
                        json!(format!("10.96.{}.{}", (n >> 8) & 0xff, n & 0xff))
                    }
                };
                spec.insert("clusterIP".into(), ip);
            }
            let ip = spec["clusterIP"].clone();
            spec.entry("clusterIPs").or_insert(json!([ip]));
            spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
            spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
            spec.entry("internalTrafficPolicy").or_insert(json!("Cluster"));
        }
        let node_ports = type_ == "NodePort" || type_ == "LoadBalancer";
        if node_ports {
            spec.entry("externalTrafficPolicy").or_insert(json!("Cluster"));
        }
        if type_ == "LoadBalancer" {
            spec.entry("allocateLoadBalancerNodePorts").or_insert(json!(true));
        }
        let old_ports: Vec<Value> =
            old.and_then(|o| o.pointer("/spec/ports")).and_then(Value::as_array).cloned().unwrap_or_default();
        let allocate = node_ports && spec.get("allocateLoadBalancerNodePorts").and_then(Value::as_bool) != Some(false);
        if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
            for p in ports.iter_mut() {
                let Some(pm) = p.as_object_mut() else { continue };
                pm.entry("protocol").or_insert(json!("TCP"));
                if let Some(port) = pm.get("port").cloned() {
                    pm.entry("targetPort").or_insert(port.clone());
                    if allocate && pm.get("nodePort").is_none() {
                        let prev =
                            old_ports.iter().find(|o| o.get("port") == Some(&port)).and_then(|o| o.get("nodePort"));
                        let np = match prev {
                            Some(np) => np.clone(),
                            None => {
                                self.next_node_port += 1;
                                json!(30000 + (self.next_node_port % 2768))
                            }
                        };
                        pm.insert("nodePort".into(), np);
                    }
                }
            }
        }
        if obj.get("status").is_none() {
            obj["status"] = json!({"loadBalancer": {}});
        }
    }
}

/// Applies a CRD schema's defaults and pruning; with `strict`, pruned fields are an error. Then the
/// schema's `x-kubernetes-validations` rules (`old`: the stored object, on an update).
fn check_schema(
    def: &ResourceDef,
    version: &str,
    obj: &mut Value,
    strict: bool,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if !def.custom {
        return Ok(());
    }
    let unknown = def.normalize(version, obj);
    if strict && !unknown.is_empty() {
        let list: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
        return Err(ApiError::bad_request(format!(
            "{k} in version {version:?} cannot be handled as a {k}: strict decoding error: {}",
            list.join(", "),
            k = def.kind
        )));
    }
    let Some((_, schema)) = def.schemas.iter().find(|(v, _)| v == version) else { return Ok(()) };
    let violations = crate::cel::validate(schema, obj, old);
    if violations.is_empty() {
        return Ok(());
    }
    let name = meta(obj, "name").unwrap_or_default();
    Err(ApiError::invalid_fields(&def.group, &def.kind, &name, &violations))
}

fn crd_defaults(obj: &mut Value) {
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let mut accepted = names.clone();
    if accepted.get("singular").is_none() {
        if let Some(k) = names.get("kind").and_then(Value::as_str) {
            accepted["singular"] = json!(k.to_lowercase());
        }
    }
    if accepted.get("listKind").is_none() {
        if let Some(k) = names.get("kind").and_then(Value::as_str) {
            accepted["listKind"] = json!(format!("{k}List"));
        }
    }
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("conversion").or_insert(json!({"strategy": "None"}));
        if let Some(n) = spec.get_mut("names").and_then(Value::as_object_mut) {
            n.insert("singular".into(), accepted["singular"].clone());
            n.insert("listKind".into(), accepted["listKind"].clone());
        }
    }
    let now = rfc3339(std::time::SystemTime::now());
    let stored: Vec<Value> = obj
        .pointer("/spec/versions")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage") == Some(&json!(true)))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    obj["status"] = json!({
        "acceptedNames": accepted,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
            {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"}
        ],
        "storedVersions": stored,
    });
}

fn secret_string_data(obj: &mut Value) {
    if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
        if !obj.get("data").is_some_and(Value::is_object) {
            obj["data"] = json!({});
        }
        for (k, v) in sd {
            obj["data"][k] = json!(base64(v.as_str().unwrap_or_default().as_bytes()));
        }
    }
}

pub(super) fn validate_crd(obj: &Value, name: &str) -> Result<(), ApiError> {
    let plural = obj.pointer("/spec/names/plural").and_then(Value::as_str).unwrap_or_default();
    let group = obj.pointer("/spec/group").and_then(Value::as_str).unwrap_or_default();
    let want = format!("{plural}.{group}");
    if plural.is_empty() || group.is_empty() || name != want {
        return Err(ApiError::invalid(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            name,
            "metadata.name",
            "FieldValueInvalid",
            &format!("Invalid value: {name:?}: must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    if resources::from_crd(obj).is_none()
        && obj.pointer("/spec/versions").and_then(Value::as_array).is_none_or(|v| v.is_empty())
    {
        return Err(ApiError::invalid(
            "apiextensions.k8s.io",
            "CustomResourceDefinition",
            name,
            "spec.versions",
            "FieldValueRequired",
            "Required value: must have exactly one version marked as storage version",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtin(plural: &str) -> ResourceDef {
        resources::builtins().into_iter().find(|d| d.group.is_empty() && d.plural == plural).unwrap()
    }

    #[test]
    fn names_are_checked_per_kind() {
        let long_label = "a".repeat(64);
        // (plural, metadata, Ok(name) or Err(cause type))
        let cases: &[(&str, Value, Result<&str, &str>)] = &[
            ("configmaps", json!({"name": "a.b-c"}), Ok("a.b-c")),
            ("configmaps", json!({"name": "A"}), Err("FieldValueInvalid")),
            ("configmaps", json!({"name": "a-"}), Err("FieldValueInvalid")),
            ("configmaps", json!({"name": long_label}), Ok(long_label.as_str())),
            ("configmaps", json!({}), Err("FieldValueRequired")),
            ("configmaps", json!({"name": "", "generateName": ""}), Err("FieldValueRequired")),
            ("namespaces", json!({"name": "1abc"}), Ok("1abc")),
            ("namespaces", json!({"name": "a.b"}), Err("FieldValueInvalid")),
            ("namespaces", json!({"name": long_label}), Err("FieldValueInvalid")),
            ("services", json!({"name": "web-1"}), Ok("web-1")),
            ("services", json!({"name": "1web"}), Err("FieldValueInvalid")),
            ("services", json!({"name": "a.b"}), Err("FieldValueInvalid")),
        ];
        for (plural, metadata, want) in cases {
            let mut m = metadata.as_object().unwrap().clone();
            let got = name_on_create(&builtin(plural), &mut m);
            match (want, got) {
                (Ok(n), Ok(got)) => {
                    assert_eq!(got, *n, "{plural} {metadata}");
                    assert_eq!(m["name"], json!(n));
                }
                (Err(cause), Err(e)) => {
                    assert_eq!((e.code, e.status["details"]["causes"][0]["reason"].as_str()), (422, Some(*cause)));
                }
                (want, got) => panic!("{plural} {metadata}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn generate_name_adds_a_suffix() {
        let mut m = json!({"generateName": "web-"}).as_object().unwrap().clone();
        let name = name_on_create(&builtin("services"), &mut m).unwrap();
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        assert_eq!(m["name"], json!(name));
    }

    #[test]
    fn base64_encodes_with_padding() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("hello world", "aGVsbG8gd29ybGQ="),
        ];
        for (input, want) in cases {
            assert_eq!(base64(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn secret_string_data_moves_into_data() {
        let cases = [
            (json!({"type": "Opaque"}), json!({"type": "Opaque"})),
            (json!({"stringData": {"k": "v"}}), json!({"data": {"k": "dg=="}})),
            (json!({"data": {"a": "YQ=="}, "stringData": {"k": "v"}}), json!({"data": {"a": "YQ==", "k": "dg=="}})),
            (json!({"data": {"k": "old"}, "stringData": {"k": "new"}}), json!({"data": {"k": "bmV3"}})),
        ];
        for (mut obj, want) in cases {
            let input = obj.clone();
            secret_string_data(&mut obj);
            assert_eq!(obj, want, "{input}");
        }
    }

    #[test]
    fn service_defaults_allocate_and_keep() {
        // (spec, old spec on update, expected values by JSON pointer; null: absent)
        let cases = [
            (
                json!({}),
                None,
                vec![
                    ("/spec/type", json!("ClusterIP")),
                    ("/spec/clusterIP", json!("10.96.0.1")),
                    ("/spec/clusterIPs", json!(["10.96.0.1"])),
                    ("/spec/externalTrafficPolicy", Value::Null),
                    ("/status", json!({"loadBalancer": {}})),
                ],
            ),
            (
                json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
                None,
                vec![
                    ("/spec/allocateLoadBalancerNodePorts", json!(true)),
                    ("/spec/externalTrafficPolicy", json!("Cluster")),
                    ("/spec/ports/0", json!({"port": 80, "targetPort": 80, "protocol": "TCP", "nodePort": 30001})),
                ],
            ),
            (
                json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}),
                None,
                vec![("/spec/ports/0/nodePort", Value::Null)],
            ),
            (
                json!({"type": "NodePort", "ports": [{"port": 80, "protocol": "UDP", "targetPort": 8080}]}),
                Some(json!({"clusterIP": "10.96.0.7", "ports": [{"port": 80, "nodePort": 31000}]})),
                vec![
                    ("/spec/clusterIP", json!("10.96.0.7")),
                    ("/spec/ports/0", json!({"port": 80, "targetPort": 8080, "protocol": "UDP", "nodePort": 31000})),
                ],
            ),
            (
                json!({"type": "ExternalName", "externalName": "example.com"}),
                None,
                vec![("/spec/clusterIP", Value::Null), ("/spec/sessionAffinity", json!("None"))],
            ),
        ];
        for (spec, old, want) in cases {
            let mut obj = json!({"spec": spec});
            let old = old.map(|o| json!({"spec": o}));
            Allocator::default().service_defaults(&mut obj, old.as_ref());
            for (ptr, v) in want {
                assert_eq!(obj.pointer(ptr).cloned().unwrap_or(Value::Null), v, "{spec} {ptr}: {obj}");
            }
        }
    }

    #[test]
    fn crd_names_must_match() {
        let crd = |name: &str, versions: Value| json!({"metadata": {"name": name}, "spec": {"group": "metallb.io", "names": {"plural": "ipaddresspools", "kind": "IPAddressPool"}, "versions": versions}});
        let v1 = json!([{"name": "v1beta1", "served": true, "storage": true}]);
        let cases = [
            (crd("ipaddresspools.metallb.io", v1.clone()), None),
            (crd("pools.metallb.io", v1), Some("metadata.name")),
            (crd("ipaddresspools.metallb.io", json!([])), Some("spec.versions")),
        ];
        for (obj, want) in cases {
            let name = obj["metadata"]["name"].as_str().unwrap().to_string();
            let got = validate_crd(&obj, &name).err().map(|e| e.status["details"]["causes"][0]["field"].clone());
            assert_eq!(got, want.map(Value::from), "{name}");
        }
    }
}
