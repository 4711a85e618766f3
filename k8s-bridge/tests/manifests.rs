//! deploy/: every manifest parses into its k8s-openapi type without losing a field; the MetalLB-style
//! examples (and the objects the other tests use) validate against our CRD schemas, and broken ones do
//! not; the DaemonSet and RBAC give exactly what the bridge and speakerd need.
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .filter(|v| !v.is_null())
        .collect()
}

/// Drops nulls so that a round trip through a typed struct compares equal.
fn normalise(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), normalise(v))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(normalise).collect()),
        // The typed schema holds bounds as f64: compare numbers as numbers.
        Value::Number(n) => serde_json::json!(n.as_f64()),
        v => v.clone(),
    }
}

/// Parses `v` as `T` and checks that writing it back gives the same object: a misspelt or misplaced
/// field would be dropped by the typed parse and show up here.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(v: &Value, what: &str) -> T {
    let t: T = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{what}: {e}"));
    let back = serde_json::to_value(&t).unwrap();
    assert_eq!(normalise(&back), normalise(v), "{what}: a field was lost in the typed round trip");
    t
}

/// The base's resources, in kustomization order.
fn base() -> Vec<(String, Value)> {
    let dir = deploy().join("base");
    let k = &docs(&dir.join("kustomization.yaml"))[0];
    let mut out = Vec::new();
    for r in k["resources"].as_array().expect("resources") {
        let p = dir.join(r.as_str().unwrap());
        for d in docs(&p) {
            out.push((p.display().to_string(), d));
        }
    }
    out
}

fn crds() -> BTreeMap<String, CustomResourceDefinition> {
    base()
        .iter()
        .filter(|(_, v)| v["kind"] == "CustomResourceDefinition")
        .map(|(p, v)| {
            let c: CustomResourceDefinition = typed(v, p);
            (c.spec.names.kind.clone(), c)
        })
        .collect()
}

#[test]
fn every_manifest_parses_into_its_type() {
    let mut kinds = Vec::new();
    for (p, v) in base() {
        let kind = v["kind"].as_str().unwrap().to_string();
        let what = format!("{p}: {kind}");
        match kind.as_str() {
            "Namespace" => drop(typed::<Namespace>(&v, &what)),
            "ServiceAccount" => drop(typed::<ServiceAccount>(&v, &what)),
            "ClusterRole" => drop(typed::<ClusterRole>(&v, &what)),
            "ClusterRoleBinding" => drop(typed::<ClusterRoleBinding>(&v, &what)),
            "Role" => drop(typed::<Role>(&v, &what)),
            "RoleBinding" => drop(typed::<RoleBinding>(&v, &what)),
            "DaemonSet" => drop(typed::<DaemonSet>(&v, &what)),
            "Deployment" => drop(typed::<k8s_openapi::api::apps::v1::Deployment>(&v, &what)),
            "CustomResourceDefinition" => drop(typed::<CustomResourceDefinition>(&v, &what)),
            other => panic!("{p}: unexpected kind {other}"),
        }
        kinds.push(kind);
    }
    assert_eq!(kinds.iter().filter(|k| *k == "CustomResourceDefinition").count(), 9, "MetalLB's nine kinds");
    for (p, v) in docs(&deploy().join("examples/legacy-configmap.yaml")).iter().map(|v| ("legacy", v)) {
        typed::<ConfigMap>(v, p);
    }
    typed::<Service>(&docs(&deploy().join("examples/service.yaml"))[0], "service.yaml");
    let names: Vec<String> = crds().values().map(|c| c.metadata.name.clone().unwrap()).collect();
    for n in &names {
        assert!(n.ends_with(".metallb.io"), "{n}");
    }
}

/// Our CRD's openAPIV3Schema of `kind` at `version`, as a JSON Schema validator.
fn validator(crds: &BTreeMap<String, CustomResourceDefinition>, kind: &str, version: &str) -> jsonschema::Validator {
    let c = crds.get(kind).unwrap_or_else(|| panic!("no CRD for {kind}"));
    let v =
        c.spec.versions.iter().find(|v| v.name == version).unwrap_or_else(|| panic!("{kind} has no version {version}"));
    let schema = serde_json::to_value(&v.schema.as_ref().unwrap().open_api_v3_schema).unwrap();
    jsonschema::validator_for(&schema).expect("schema compiles")
}

fn validate(crds: &BTreeMap<String, CustomResourceDefinition>, obj: &Value) -> Result<(), String> {
    let (group, version) = obj["apiVersion"].as_str().unwrap().split_once('/').unwrap();
    assert_eq!(group, "metallb.io");
    let v = validator(crds, obj["kind"].as_str().unwrap(), version);
    let errs: Vec<String> = v.iter_errors(obj).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

#[test]
fn metallb_examples_validate_against_the_crd_schemas() {
    let crds = crds();
    let mut n = 0;
    for f in ["examples/bgp.yaml", "examples/l2.yaml"] {
        for obj in docs(&deploy().join(f)) {
            validate(&crds, &obj).unwrap_or_else(|e| panic!("{f}: {} {}: {e}", obj["kind"], obj["metadata"]["name"]));
            n += 1;
        }
    }
    // MetalLB's documentation examples, as users have them in their clusters.
    let metallb_docs = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: first-pool, namespace: metallb-system}
spec:
  addresses: [192.168.10.0/24, 192.168.9.1-192.168.9.5, "fc00:f853:0ccd:e799::/124"]
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: sample, namespace: metallb-system}
spec: {myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.1, passwordSecret: {name: secretname, namespace: metallb-system}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: local, namespace: metallb-system}
spec: {ipAddressPools: [bgp-pool], aggregationLength: 32, localPref: 100, communities: [vpn-only]}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2advertisement1, namespace: metallb-system}
spec: {ipAddressPools: [first-pool], interfaces: [eth0, eth1]}
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: communities, namespace: metallb-system}
spec: {communities: [{name: vpn-only, value: "1234:1"}, {name: NO_ADVERTISE, value: "65535:65282"}]}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: testbfdprofile, namespace: metallb-system}
spec: {receiveInterval: 380, transmitInterval: 270, echoMode: false, passiveMode: false, minimumTtl: 254}
"#;
    for obj in serde_yaml::Deserializer::from_str(metallb_docs).map(|d| Value::deserialize(d).unwrap()) {
        validate(&crds, &obj).unwrap_or_else(|e| panic!("{}: {e}", obj["kind"]));
        n += 1;
    }
    assert_eq!(n, 13);
    // Broken objects are refused, naming the field.
    let bad = [
        (
            r#"{"apiVersion":"metallb.io/v1beta2","kind":"BGPPeer","metadata":{"name":"x"},"spec":{"myASN":"64500","peerAddress":"10.0.0.1"}}"#,
            "/spec/myASN",
        ),
        (
            r#"{"apiVersion":"metallb.io/v1beta2","kind":"BGPPeer","metadata":{"name":"x"},"spec":{"myASN":4294967296}}"#,
            "/spec/myASN",
        ),
        (
            r#"{"apiVersion":"metallb.io/v1beta2","kind":"BGPPeer","metadata":{"name":"x"},"spec":{"peerASN":1}}"#,
            "myASN",
        ),
        (
            r#"{"apiVersion":"metallb.io/v1beta2","kind":"BGPPeer","metadata":{"name":"x"},"spec":{"myASN":1,"holdTime":"90"}}"#,
            "/spec/holdTime",
        ),
        (
            r#"{"apiVersion":"metallb.io/v1beta1","kind":"BGPAdvertisement","metadata":{"name":"x"},"spec":{"aggregationLength":33}}"#,
            "/spec/aggregationLength",
        ),
        (
            r#"{"apiVersion":"metallb.io/v1beta1","kind":"IPAddressPool","metadata":{"name":"x"},"spec":{"addresses":"10.0.0.0/24"}}"#,
            "/spec/addresses",
        ),
        (
            r#"{"apiVersion":"metallb.io/v1beta1","kind":"BFDProfile","metadata":{"name":"x"},"spec":{"detectMultiplier":1}}"#,
            "/spec/detectMultiplier",
        ),
    ];
    for (text, field) in bad {
        let obj: Value = serde_json::from_str(text).unwrap();
        let e = validate(&crds, &obj).expect_err(text);
        assert!(e.contains(field), "{text}: {e}");
    }
}

fn rules_allow(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    rules.iter().any(|r| {
        r.api_groups.as_ref().is_some_and(|g| g.iter().any(|x| x == group))
            && r.resources.as_ref().is_some_and(|x| x.iter().any(|x| x == resource))
            && r.verbs.iter().any(|v| v == verb)
    })
}

#[test]
fn rbac_covers_exactly_what_the_bridge_watches() {
    let mut cluster_rules = Vec::new();
    let mut ns_rules = Vec::new();
    for (_, v) in base() {
        // The speaker pod's roles (the controller's have their own test).
        if !matches!(v["metadata"]["name"].as_str(), Some("metallb-system:speakerd" | "speakerd")) {
            continue;
        }
        match v["kind"].as_str().unwrap() {
            "ClusterRole" => cluster_rules.extend(typed::<ClusterRole>(&v, "ClusterRole").rules.unwrap_or_default()),
            "Role" => ns_rules.extend(typed::<Role>(&v, "Role").rules.unwrap_or_default()),
            _ => {}
        }
    }
    // The speaker pod writes nothing on Services (issue 20).
    for verb in ["create", "update", "patch", "delete"] {
        for res in ["services", "services/status"] {
            assert!(!rules_allow(&cluster_rules, "", res, verb), "the speaker may {verb} {res}");
        }
    }
    for (group, resource, namespaced) in k8s_bridge::run::WATCHED {
        let rules = if namespaced { &ns_rules } else { &cluster_rules };
        for verb in ["list", "watch"] {
            assert!(rules_allow(rules, group, resource, verb), "{verb} {group}/{resource} not allowed");
        }
        if !namespaced {
            assert!(!rules_allow(&ns_rules, group, resource, "list"), "{resource} listed twice");
        }
    }
    for g in ["", "events.k8s.io"] {
        assert!(rules_allow(&cluster_rules, g, "events", "create"), "events in {g:?}");
    }
    // Least privilege: no wildcard, no write outside events and the status objects.
    for r in cluster_rules.iter().chain(&ns_rules) {
        assert!(!r.verbs.iter().any(|v| v == "*") && !r.resources.as_ref().unwrap().iter().any(|x| x == "*"), "{r:?}");
        let writes = r.verbs.iter().any(|v| matches!(v.as_str(), "create" | "update" | "patch" | "delete"));
        if writes {
            assert!(
                r.resources.as_ref().unwrap().iter().all(|x| x == "events"
                    || x.starts_with("service") && x.contains("status")
                    || x.starts_with("configurationstates")),
                "{r:?}"
            );
        }
        if r.resources.as_ref().unwrap().iter().any(|x| x.starts_with("configurationstates")) {
            assert!(!r.verbs.iter().any(|v| matches!(v.as_str(), "delete" | "update" | "list" | "watch")), "{r:?}");
        }
    }
    // The node's ConfigurationState: created, then its status patched.
    for (res, verb) in
        [("configurationstates", "create"), ("configurationstates", "patch"), ("configurationstates/status", "patch")]
    {
        assert!(rules_allow(&ns_rules, "metallb.io", res, verb), "{verb} {res}");
    }
}

#[test]
fn daemonset_shares_the_socket_and_grants_only_the_needed_capabilities() {
    let ds: DaemonSet = base().iter().find(|(_, v)| v["kind"] == "DaemonSet").map(|(p, v)| typed(v, p)).unwrap();
    let pod = ds.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let c = |name: &str| {
        pod.containers.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("container {name}")).clone()
    };
    let (speakerd, bridge) = (c("speakerd"), c("k8s-bridge"));
    let caps = |c: &k8s_openapi::api::core::v1::Container| {
        let caps = c.security_context.as_ref().unwrap().capabilities.clone().unwrap();
        (caps.drop.unwrap_or_default(), caps.add.unwrap_or_default())
    };
    assert_eq!(caps(&speakerd), (vec!["ALL".to_string()], vec!["NET_RAW".to_string(), "NET_BIND_SERVICE".to_string()]));
    assert_eq!(caps(&bridge), (vec!["ALL".to_string()], vec![]));
    let run_volume = pod.volumes.as_ref().unwrap().iter().find(|v| v.name == "run").unwrap();
    assert!(run_volume.empty_dir.is_some(), "the socket lives in an emptyDir");
    for ctr in [&speakerd, &bridge] {
        let m = ctr.volume_mounts.as_ref().unwrap().iter().find(|m| m.name == "run").expect("run mounted");
        assert_eq!(m.mount_path, "/run/speakerd");
        assert!(ctr.args.as_ref().unwrap().contains(&"--socket=/run/speakerd/speakerd.sock".to_string()));
        let env = ctr.env.as_ref().unwrap().iter().find(|e| e.name == "NODE_NAME").expect("NODE_NAME");
        assert_eq!(env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "spec.nodeName");
    }
    // The bridge knows its pod, owner of what it writes (as MetalLB's speaker: METALLB_POD_NAME).
    for (name, path) in [("METALLB_POD_NAME", "metadata.name"), ("METALLB_POD_UID", "metadata.uid")] {
        let env = bridge.env.as_ref().unwrap().iter().find(|e| e.name == name).unwrap_or_else(|| panic!("{name}"));
        assert_eq!(env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, path);
    }
    // Only the bridge holds API credentials.
    assert!(bridge
        .volume_mounts
        .as_ref()
        .unwrap()
        .iter()
        .any(|m| m.mount_path == "/var/run/secrets/kubernetes.io/serviceaccount"));
    assert!(!speakerd.volume_mounts.as_ref().unwrap().iter().any(|m| m.name == "token"));
}

/// Field paths under `spec`/`status` of a JSON schema (arrays as `[]`).
/// Every field path of `schema`, and `PATH <rules=N>` where the schema has N CEL rules.
fn field_paths(schema: &Value, prefix: &str, out: &mut std::collections::BTreeSet<String>) {
    if let Some(rules) = schema["x-kubernetes-validations"].as_array() {
        let at = if prefix.is_empty() { "<root>" } else { prefix };
        out.insert(format!("{at} <rules={}>", rules.len()));
    }
    if let Some(props) = schema["properties"].as_object() {
        for (k, v) in props {
            let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            out.insert(p.clone());
            field_paths(v, &p, out);
        }
    }
    if schema["items"].is_object() {
        field_paths(&schema["items"], &format!("{prefix}[]"), out);
    }
}

/// Our CRDs have exactly MetalLB's fields, versions (served, storage), status subresources and places
/// of CEL rules, so
/// that `kubectl apply -k deploy/base` over a MetalLB install never prunes a field MetalLB's
/// controller writes, and every MetalLB object keeps every field.
#[test]
fn crds_have_exactly_upstreams_fields() {
    let want: std::collections::BTreeSet<String> =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/upstream_crd_fields.txt"))
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(str::to_string)
            .collect();
    let mut got = std::collections::BTreeSet::new();
    for (_, v) in base().iter().filter(|(_, v)| v["kind"] == "CustomResourceDefinition") {
        let kind = v["spec"]["names"]["kind"].as_str().unwrap();
        for ver in v["spec"]["versions"].as_array().unwrap() {
            let name = ver["name"].as_str().unwrap();
            let mut paths = std::collections::BTreeSet::new();
            field_paths(&ver["schema"]["openAPIV3Schema"], "", &mut paths);
            for p in paths.iter().filter(|p| p.starts_with("spec") || p.starts_with("status")) {
                got.insert(format!("{kind} {name} {p}"));
            }
            if ver["subresources"]["status"].is_object() {
                got.insert(format!("{kind} {name} <status subresource>"));
            }
            got.insert(format!(
                "{kind} {name} <served={} storage={}>",
                ver["served"].as_bool().unwrap_or(false),
                ver["storage"].as_bool().unwrap_or(false)
            ));
        }
    }
    let missing: Vec<&String> = want.difference(&got).collect();
    let extra: Vec<&String> = got.difference(&want).collect();
    assert!(missing.is_empty() && extra.is_empty(), "missing: {missing:#?}\nextra: {extra:#?}");
    assert!(want.len() > 150, "the upstream list is read ({} rows)", want.len());
}

/// The controller's RBAC: exactly what `k8s-bridge controller` reads and writes, nothing of the
/// speaker's; its Deployment runs two replicas with a Lease identity from the downward API.
#[test]
fn controller_rbac_and_deployment() {
    let mut cluster_rules = Vec::new();
    let mut ns_rules = Vec::new();
    let mut deployment = None;
    for (p, v) in base() {
        match (v["kind"].as_str().unwrap(), v["metadata"]["name"].as_str().unwrap_or_default()) {
            ("ClusterRole", "metallb-system:controller") => {
                cluster_rules.extend(typed::<ClusterRole>(&v, "ClusterRole").rules.unwrap_or_default())
            }
            ("Role", "controller") => ns_rules.extend(typed::<Role>(&v, "Role").rules.unwrap_or_default()),
            ("Deployment", _) => deployment = Some(typed::<k8s_openapi::api::apps::v1::Deployment>(&v, &p)),
            _ => {}
        }
    }
    for (group, res, verbs) in [
        ("", "services", &["list", "watch", "patch"][..]),
        ("", "namespaces", &["list", "watch"]),
        ("", "services/status", &["patch"]),
        ("", "events", &["create"]),
    ] {
        for verb in verbs {
            assert!(rules_allow(&cluster_rules, group, res, verb), "{verb} {res}");
        }
    }
    for (group, res, verbs) in [
        ("metallb.io", "ipaddresspools", &["list", "watch"][..]),
        ("metallb.io", "ipaddresspools/status", &["patch"]),
        ("coordination.k8s.io", "leases", &["get", "create", "update"]),
        ("", "secrets", &["get", "create"]),
    ] {
        for verb in verbs {
            assert!(rules_allow(&ns_rules, group, res, verb), "{verb} {res}");
        }
    }
    for r in cluster_rules.iter().chain(&ns_rules) {
        assert!(!r.verbs.iter().any(|v| v == "*" || v == "delete"), "{r:?}");
        assert!(
            !r.resources
                .as_ref()
                .unwrap()
                .iter()
                .any(|x| x == "*" || x.contains("servicel2") || x.contains("servicebgp")),
            "{r:?}"
        );
    }
    assert!(!rules_allow(&ns_rules, "", "secrets", "list"), "the controller reads only the gossip Secret by name");
    let d = deployment.expect("the controller Deployment");
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some("controller"));
    let c = &pod.containers[0];
    assert_eq!(c.args.as_ref().unwrap()[0], "controller");
    let env = c.env.as_ref().unwrap().iter().find(|e| e.name == "METALLB_POD_NAME").expect("METALLB_POD_NAME");
    assert_eq!(env.value_from.as_ref().unwrap().field_ref.as_ref().unwrap().field_path, "metadata.name");
}
