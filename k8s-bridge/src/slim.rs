//! Services, EndpointSlices and Nodes decoded straight into what the bridge reads.
//!
//! A Service of a real cluster is mostly what the bridge never reads: `managedFields`, kubectl's
//! last-applied annotation, a Node's list of images. Decoding those into k8s-openapi's types and then
//! reducing them costs the time and the transient memory of every initial list. Here the watches
//! decode into [`Reduced`], whose JSON reading keeps only the fields named below and skips the rest
//! without building it (serde's `IgnoredAny`: no string, map or vector is allocated for it).
//!
//! The meaning of each field read is the API's (an unknown `ready` condition is ready, `serving`
//! defaults to `ready`); the tests compare the result with the reduction of the k8s-openapi objects.
use crate::cluster::{read_annotation, Endpoint, NodeInfo, Pairs, Slice, Svc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

/// One object as the bridge keeps it: the identity the watcher needs (name, namespace, uid,
/// resourceVersion) and the reduced content.
#[derive(Debug, Clone)]
pub struct Reduced<T> {
    pub metadata: ObjectMeta,
    pub data: T,
}

/// A reduced kind: which API type it stands for and how its wire form is read.
pub trait Slim: Sized {
    /// The API type (for its group, version, kind and plural).
    type Api: k8s_openapi::Resource;
    /// The fields read, as they are on the wire.
    type Wire: for<'de> Deserialize<'de>;
    /// The metadata read, and the reduced object (labels and annotations moved into it).
    fn reduce(wire: Self::Wire) -> (Meta, Self);
}

impl<'de, T: Slim> Deserialize<'de> for Reduced<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (meta, data) = T::reduce(T::Wire::deserialize(d)?);
        let metadata = ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            uid: meta.uid,
            resource_version: meta.resource_version,
            ..Default::default()
        };
        Ok(Reduced { metadata, data })
    }
}

impl<T: Slim> kube::Resource for Reduced<T> {
    type DynamicType = ();
    type Scope = <T::Api as k8s_openapi::Resource>::Scope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<T::Api as k8s_openapi::Resource>::KIND)
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<T::Api as k8s_openapi::Resource>::GROUP)
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<T::Api as k8s_openapi::Resource>::VERSION)
    }
    fn api_version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<T::Api as k8s_openapi::Resource>::API_VERSION)
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed(<T::Api as k8s_openapi::Resource>::URL_PATH_SEGMENT)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The metadata fields read; labels and annotations are moved into the reduced object.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Meta {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    labels: Option<Pairs>,
    annotations: Option<MetallbAnnotations>,
}

/// A map of strings (labels), read straight into [`Pairs`].
impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(Keeping(|_| true))
    }
}

/// The annotations the bridge reads ([`read_annotation`]); the others are skipped unread.
#[derive(Debug, Default)]
struct MetallbAnnotations(Pairs);

impl<'de> Deserialize<'de> for MetallbAnnotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(Keeping(read_annotation)).map(MetallbAnnotations)
    }
}

/// Reads a map of strings into [`Pairs`], keeping the keys it accepts; the values of the others are
/// skipped unread, and their keys are not copied.
#[derive(Clone, Copy)]
struct Keeping(fn(&str) -> bool);

impl<'de> Visitor<'de> for Keeping {
    type Value = Pairs;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of strings")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
        let mut kept = Vec::with_capacity(map.size_hint().unwrap_or(0).min(16));
        while let Some(key) = map.next_key_seed(self)? {
            match key {
                Some(k) => kept.push((k, map.next_value::<String>()?)),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(kept.into_iter().collect())
    }
}

/// One key: Some (copied) if kept.
impl<'de> DeserializeSeed<'de> for Keeping {
    type Value = Option<String>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        struct Key(fn(&str) -> bool);
        impl<'de> Visitor<'de> for Key {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E: serde::de::Error>(self, k: &str) -> Result<Option<String>, E> {
                Ok((self.0)(k).then(|| k.to_string()))
            }
        }
        d.deserialize_str(Key(self.0))
    }
}

/// The object's top level: its metadata and the one or two parts a kind reads.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Top<S, T> {
    metadata: Meta,
    spec: Option<S>,
    status: Option<T>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceSpec {
    #[serde(rename = "type")]
    type_: Option<String>,
    load_balancer_class: Option<String>,
    external_traffic_policy: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ServiceStatus {
    load_balancer: Option<LoadBalancerStatus>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LoadBalancerStatus {
    ingress: Option<Vec<Ingress>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Ingress {
    ip: Option<String>,
}

impl Slim for Svc {
    type Api = k8s_openapi::api::core::v1::Service;
    type Wire = Top<ServiceSpec, ServiceStatus>;

    fn reduce(wire: Self::Wire) -> (Meta, Svc) {
        let Top { metadata: mut meta, spec, status } = wire;
        let spec = spec.unwrap_or_default();
        let ips = status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .into_iter()
            .flatten()
            .filter_map(|i| i.ip?.parse().ok())
            .collect();
        let svc = Svc {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            load_balancer: spec.type_.as_deref() == Some("LoadBalancer"),
            lb_class: spec.load_balancer_class,
            etp_local: spec.external_traffic_policy.as_deref() == Some("Local"),
            ips,
            annotations: meta.annotations.take().map(|a| a.0).unwrap_or_default(),
            labels: meta.labels.take().unwrap_or_default(),
        };
        (meta, svc)
    }
}

/// An EndpointSlice's top level: its endpoints are not under `spec`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SliceWire {
    metadata: Meta,
    endpoints: Option<Vec<EndpointWire>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct EndpointWire {
    conditions: Option<Conditions>,
    node_name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Conditions {
    ready: Option<bool>,
    serving: Option<bool>,
    terminating: Option<bool>,
}

impl Slim for Slice {
    type Api = k8s_openapi::api::discovery::v1::EndpointSlice;
    type Wire = SliceWire;

    fn reduce(wire: Self::Wire) -> (Meta, Slice) {
        let SliceWire { metadata: mut meta, endpoints } = wire;
        let service = meta.labels.take().and_then(|l| l.get("kubernetes.io/service-name").map(str::to_string));
        let endpoints = endpoints
            .into_iter()
            .flatten()
            .map(|e| {
                let c = e.conditions.unwrap_or_default();
                // API semantics: an unknown `ready` is to be read as ready; `serving` defaults to `ready`.
                let ready = c.ready.unwrap_or(true);
                Endpoint {
                    node: e.node_name.as_deref().map(node_name),
                    ready,
                    serving: c.serving.unwrap_or(ready),
                    terminating: c.terminating.unwrap_or(false),
                }
            })
            .collect();
        let namespace = meta.namespace.clone().unwrap_or_default();
        (meta, Slice { namespace, service: service.unwrap_or_default(), endpoints })
    }
}

/// Node names, interned: every EndpointSlice names the nodes of its endpoints, and a cluster has far
/// fewer nodes than endpoints. Bounded: past [`MAX_NODE_NAMES`] names a name is no longer shared.
static NODE_NAMES: Mutex<BTreeSet<Arc<str>>> = Mutex::new(BTreeSet::new());
const MAX_NODE_NAMES: usize = 1 << 16;

fn node_name(name: &str) -> Arc<str> {
    let mut names = NODE_NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(n) = names.get(name) {
        return n.clone();
    }
    let n: Arc<str> = name.into();
    if names.len() < MAX_NODE_NAMES {
        names.insert(n.clone());
    }
    n
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NodeSpec {
    unschedulable: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NodeStatus {
    conditions: Option<Vec<NodeCondition>>,
    addresses: Option<Vec<NodeAddress>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeCondition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeAddress {
    #[serde(rename = "type")]
    type_: String,
    address: String,
}

impl Slim for NodeInfo {
    type Api = k8s_openapi::api::core::v1::Node;
    type Wire = Top<NodeSpec, NodeStatus>;

    fn reduce(wire: Self::Wire) -> (Meta, NodeInfo) {
        let Top { metadata: mut meta, spec, status } = wire;
        let status = status.unwrap_or_default();
        let node = NodeInfo {
            name: meta.name.clone().unwrap_or_default(),
            labels: meta.labels.take().unwrap_or_default(),
            network_unavailable: status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "NetworkUnavailable" && c.status == "True"),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            internal_ips: status
                .addresses
                .into_iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP")
                .filter_map(|a| a.address.parse().ok())
                .collect(),
        };
        (meta, node)
    }
}

/// Reads one object's JSON (an API object, or a document of the offline input) as the bridge keeps it.
pub fn from_value<T: Slim>(v: &serde_json::Value) -> Result<Reduced<T>, serde_json::Error> {
    Reduced::<T>::deserialize(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Node, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use kube::Resource;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// The reduction of the k8s-openapi objects (what the bridge did before it decoded slim): the
    /// oracle the slim decoding is compared with.
    mod oracle {
        use crate::cluster::{read_annotation, Endpoint, NodeInfo, Slice, Svc};
        use k8s_openapi::api::core::v1::{Node, Service};
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        pub(super) fn svc(s: &Service) -> Svc {
            let spec = s.spec.as_ref();
            let ips = s
                .status
                .as_ref()
                .and_then(|st| st.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .map(|ing| ing.iter().filter_map(|i| i.ip.as_deref()).filter_map(|ip| ip.parse().ok()).collect())
                .unwrap_or_default();
            Svc {
                namespace: s.metadata.namespace.clone().unwrap_or_default(),
                name: s.metadata.name.clone().unwrap_or_default(),
                load_balancer: spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"),
                lb_class: spec.and_then(|s| s.load_balancer_class.clone()),
                etp_local: spec.and_then(|s| s.external_traffic_policy.as_deref()) == Some("Local"),
                ips,
                annotations: s
                    .metadata
                    .annotations
                    .iter()
                    .flatten()
                    .filter(|(k, _)| read_annotation(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                labels: s.metadata.labels.clone().unwrap_or_default().into(),
            }
        }

        pub(super) fn slice(s: &EndpointSlice) -> Slice {
            let service = s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
                .cloned()
                .unwrap_or_default();
            let endpoints = s
                .endpoints
                .iter()
                .map(|e| {
                    let c = e.conditions.as_ref();
                    // API semantics: an unknown `ready` is to be read as ready; `serving` defaults to `ready`.
                    let ready = c.and_then(|c| c.ready).unwrap_or(true);
                    Endpoint {
                        node: e.node_name.as_deref().map(Into::into),
                        ready,
                        serving: c.and_then(|c| c.serving).unwrap_or(ready),
                        terminating: c.and_then(|c| c.terminating).unwrap_or(false),
                    }
                })
                .collect();
            Slice { namespace: s.metadata.namespace.clone().unwrap_or_default(), service, endpoints }
        }

        pub(super) fn node(n: &Node) -> NodeInfo {
            let status = n.status.as_ref();
            let network_unavailable = status
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "NetworkUnavailable" && c.status == "True"));
            let internal_ips = status
                .and_then(|s| s.addresses.as_ref())
                .into_iter()
                .flatten()
                .filter(|a| a.type_ == "InternalIP")
                .filter_map(|a| a.address.parse().ok())
                .collect();
            NodeInfo {
                name: n.metadata.name.clone().unwrap_or_default(),
                labels: n.metadata.labels.clone().unwrap_or_default().into(),
                network_unavailable,
                unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
                internal_ips,
            }
        }
    }

    fn managed_fields() -> Value {
        json!([{"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1",
                "time": "2026-12-01T00:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:metadata": {"f:annotations": {".": {}, "f:x": {}}}, "f:spec": {"f:ports": {}}}}])
    }

    /// Each case is decoded both ways; the reduced objects must be equal.
    fn same_as_oracle(v: &Value) {
        match v["kind"].as_str() {
            Some("Service") => {
                let o: Service = serde_json::from_value(v.clone()).unwrap();
                assert_eq!(from_value::<Svc>(v).unwrap().data, oracle::svc(&o), "{v}");
            }
            Some("EndpointSlice") => {
                let o: EndpointSlice = serde_json::from_value(v.clone()).unwrap();
                assert_eq!(from_value::<Slice>(v).unwrap().data, oracle::slice(&o), "{v}");
            }
            Some("Node") => {
                let o: Node = serde_json::from_value(v.clone()).unwrap();
                assert_eq!(from_value::<NodeInfo>(v).unwrap().data, oracle::node(&o), "{v}");
            }
            k => panic!("no case for {k:?}"),
        }
    }

    #[test]
    fn a_real_clusters_objects_reduce_as_before() {
        let last_applied = r#"{"apiVersion":"v1","kind":"Service","metadata":{"annotations":{}}}"#;
        for v in [
            json!({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "web", "namespace": "prod", "uid": "u-1", "resourceVersion": "42",
                    "labels": {"app": "web", "tier": "front"},
                    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": last_applied,
                        "metallb.io/address-pool": "blue", "metallb.universe.tf/loadBalancerIPs": "192.0.2.1",
                        "metallb.io/allow-shared-ip": "k", "other.io/x": "y"},
                    "managedFields": managed_fields()},
                "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Local", "loadBalancerClass": "c",
                    "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}], "clusterIP": "10.0.0.1",
                    "selector": {"app": "web"}},
                "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "lb.example"},
                    {"ip": "2001:db8::1", "ipMode": "VIP"}, {"ip": "not-an-ip"}]}}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bare"}}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "n", "namespace": "d",
                "labels": null, "annotations": null}, "spec": null, "status": null}),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c"},
                "spec": {"type": "ClusterIP", "externalTrafficPolicy": "Cluster"},
                "status": {"loadBalancer": {}}}),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": {"name": "web-abc", "namespace": "prod",
                    "labels": {"kubernetes.io/service-name": "web", "endpointslice.kubernetes.io/managed-by": "x"},
                    "managedFields": managed_fields()},
                "endpoints": [
                    {"addresses": ["10.1.0.1"], "nodeName": "n1", "conditions": {"ready": true, "serving": true, "terminating": false}},
                    {"addresses": ["10.1.0.2"], "nodeName": "n2", "conditions": {}},
                    {"addresses": ["10.1.0.3"], "conditions": {"ready": false}},
                    {"addresses": ["10.1.0.4"], "nodeName": "n3", "conditions": {"ready": false, "serving": true, "terminating": true}},
                    {"addresses": ["10.1.0.5"], "nodeName": "n4"}],
                "ports": [{"port": 8080}]}),
            json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv6",
                "metadata": {"name": "orphan", "namespace": "x"}, "endpoints": null}),
            json!({"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1",
                    "node.kubernetes.io/exclude-from-external-load-balancers": ""},
                    "managedFields": managed_fields()},
                "spec": {"unschedulable": true, "podCIDR": "10.244.0.0/24"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "NetworkUnavailable", "status": "True"}],
                    "addresses": [{"type": "InternalIP", "address": "192.168.1.1"}, {"type": "Hostname", "address": "n1"},
                        {"type": "InternalIP", "address": "fd00::1"}, {"type": "ExternalIP", "address": "203.0.113.1"}],
                    "images": [{"names": ["registry/a@sha256:0", "registry/a:1"], "sizeBytes": 1}]}}),
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"},
                "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]}}),
        ] {
            same_as_oracle(&v);
        }
    }

    #[test]
    fn only_metallbs_annotations_are_kept() {
        let v = json!({"metadata": {"name": "a", "annotations": {
            "metallb.io/loadBalancerIPs": "192.0.2.7", "metallb.universe.tf/address-pool": "p",
            "kubectl.kubernetes.io/last-applied-configuration": "{}", "metallb.iox/no": "n", "x": "y"}}});
        let svc = from_value::<Svc>(&v).unwrap().data;
        let kept: Vec<&str> = svc.annotations.iter().map(|(k, _)| k).collect();
        assert_eq!(kept, ["metallb.io/loadBalancerIPs", "metallb.universe.tf/address-pool"]);
    }

    #[test]
    fn escaped_keys_are_read_from_text_as_the_api_sends_it() {
        let text =
            r#"{"metadata": {"name": "a", "annotations": {"metallb.io\u002fip": "192.0.2.9", "x\u002fy": "z"}}}"#;
        let svc = serde_json::from_str::<Reduced<Svc>>(text).unwrap().data;
        assert_eq!(svc.annotations.get("metallb.io/ip"), Some("192.0.2.9"));
        assert_eq!(svc.annotations.len(), 1);
    }

    #[test]
    fn the_watchers_identity_is_kept_and_the_rest_dropped() {
        let v = json!({"metadata": {"name": "a", "namespace": "b", "uid": "u", "resourceVersion": "7",
            "labels": {"l": "v"}, "managedFields": managed_fields(), "generation": 3}});
        let r = from_value::<Svc>(&v).unwrap();
        let m = &r.metadata;
        assert_eq!(
            (m.name.as_deref(), m.namespace.as_deref(), m.uid.as_deref(), m.resource_version.as_deref()),
            (Some("a"), Some("b"), Some("u"), Some("7"))
        );
        assert!(m.labels.is_none() && m.annotations.is_none() && m.managed_fields.is_none() && m.generation.is_none());
        assert_eq!(r.data.labels.get("l"), Some("v"));
    }

    #[test]
    fn a_field_read_with_the_wrong_type_is_an_error_and_one_not_read_is_not() {
        let bad_read = json!({"metadata": {"name": "a"}, "spec": {"type": 5}});
        assert!(from_value::<Svc>(&bad_read).is_err());
        let bad_annotation = json!({"metadata": {"name": "a", "annotations": {"metallb.io/x": 5}}});
        assert!(from_value::<Svc>(&bad_annotation).is_err());
        let bad_unread = json!({"metadata": {"name": "a", "annotations": {"other/x": 5}}, "spec": {"ports": "x"}});
        assert_eq!(from_value::<Svc>(&bad_unread).unwrap().data.name, "a");
    }

    #[test]
    fn the_paths_are_the_api_types_paths() {
        assert_eq!(Reduced::<Svc>::url_path(&(), None), Service::url_path(&(), None));
        assert_eq!(Reduced::<Slice>::url_path(&(), Some("ns")), EndpointSlice::url_path(&(), Some("ns")));
        assert_eq!(Reduced::<NodeInfo>::url_path(&(), None), Node::url_path(&(), None));
        assert_eq!(Reduced::<Slice>::api_version(&()), "discovery.k8s.io/v1");
        assert_eq!(Reduced::<NodeInfo>::kind(&()), "Node");
    }

    /// A value that is absent, null, or one of the given ones.
    fn field(values: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
        prop_oneof![Just(None), Just(Some(Value::Null)), proptest::sample::select(values).prop_map(Some)]
    }

    fn object(fields: Vec<(&'static str, Option<Value>)>) -> Value {
        Value::Object(fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect())
    }

    fn endpoint() -> impl Strategy<Value = Value> {
        let b = || field(vec![json!(true), json!(false)]);
        (b(), b(), b(), field(vec![json!("n1"), json!("n2")]), any::<bool>()).prop_map(|(r, s, t, n, c)| {
            let conditions = c.then(|| object(vec![("ready", r), ("serving", s), ("terminating", t)]));
            object(vec![("addresses", Some(json!(["10.0.0.1"]))), ("conditions", conditions), ("nodeName", n)])
        })
    }

    proptest! {
        #[test]
        fn random_services_reduce_as_the_oracle(
            ty in field(vec![json!("LoadBalancer"), json!("ClusterIP"), json!("NodePort")]),
            etp in field(vec![json!("Local"), json!("Cluster")]),
            class in field(vec![json!("metallb"), json!("other")]),
            ips in proptest::collection::vec(field(vec![json!("192.0.2.1"), json!("2001:db8::5"), json!("x")]), 0..4),
            labels in field(vec![json!({"a": "b"}), json!({})]),
            annotations in field(vec![json!({"metallb.io/ip-allocated-from-pool": "p", "k": "v"}), json!({})]),
        ) {
            let ingress: Vec<Value> = ips.into_iter().map(|ip| object(vec![("ip", ip)])).collect();
            let v = json!({"kind": "Service", "metadata": object(vec![("name", Some(json!("s"))), ("namespace", Some(json!("n"))),
                    ("labels", labels), ("annotations", annotations), ("managedFields", Some(managed_fields()))]),
                "spec": object(vec![("type", ty), ("externalTrafficPolicy", etp), ("loadBalancerClass", class)]),
                "status": {"loadBalancer": {"ingress": ingress}}});
            same_as_oracle(&v);
        }

        #[test]
        fn random_slices_reduce_as_the_oracle(
            eps in proptest::collection::vec(endpoint(), 0..5),
            svc in field(vec![json!("web"), json!("db")]),
        ) {
            // a null label value is not a valid object: null stands for no labels at all
            let labels = svc.map(|s| if s.is_null() { s } else { json!({"kubernetes.io/service-name": s}) });
            let v = json!({"kind": "EndpointSlice", "addressType": "IPv4",
                "metadata": object(vec![("name", Some(json!("e"))), ("namespace", Some(json!("n"))), ("labels", labels)]),
                "endpoints": eps});
            same_as_oracle(&v);
        }

        #[test]
        fn random_nodes_reduce_as_the_oracle(
            unsched in field(vec![json!(true), json!(false)]),
            net in proptest::sample::select(vec!["True", "False", "Unknown"]),
            addrs in proptest::collection::vec(proptest::sample::select(vec![
                ("InternalIP", "10.0.0.1"), ("InternalIP", "fd00::2"), ("ExternalIP", "203.0.113.9"),
                ("Hostname", "n"), ("InternalIP", "bad")]), 0..4),
        ) {
            let addresses: Vec<Value> = addrs.iter().map(|(t, a)| json!({"type": t, "address": a})).collect();
            let v = json!({"kind": "Node", "metadata": {"name": "n", "labels": {"x": "y"}},
                "spec": object(vec![("unschedulable", unsched)]),
                "status": {"conditions": [{"type": "NetworkUnavailable", "status": net}], "addresses": addresses,
                    "images": [{"names": ["i"], "sizeBytes": 1}]}});
            same_as_oracle(&v);
        }
    }
}
