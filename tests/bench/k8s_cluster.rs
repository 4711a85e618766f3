//! k8s-bridge at cluster scale (section 10 of docs/BENCHMARKS.md, issue 21): a cluster of Nodes, LoadBalancer Services and
//! EndpointSlices shaped like a real cluster's, all in the fake API server before k8s-bridge starts;
//! the initial sync (k8s-bridge start → every route at the router), then a churn of API writes that
//! each change exactly one route, each timed from the write to the UPDATE on speakerd's link.

use super::*;
use crate::wire::{self, Sniffer};
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

/// The sizes of the workload.
#[derive(Clone, Debug)]
pub struct ClusterPlan {
    pub nodes: usize,
    pub services: usize,
    /// Endpoints per EndpointSlice (one slice per Service).
    pub endpoints: usize,
    /// Changes per second during the churn, and for how long.
    pub rate: usize,
    pub churn: Duration,
    /// Routes down at any moment of the churn: a change that takes a route down is undone `2 × lag`
    /// changes later, so that the two never fall in one reconcile pass of a bridge that keeps up.
    pub lag: usize,
}

impl ClusterPlan {
    pub fn preset(full: bool) -> ClusterPlan {
        if full {
            ClusterPlan {
                nodes: 100,
                services: 10_000,
                endpoints: 10,
                rate: 100,
                churn: Duration::from_secs(30),
                lag: 150,
            }
        } else {
            ClusterPlan { nodes: 3, services: 50, endpoints: 5, rate: 20, churn: Duration::from_secs(2), lag: 15 }
        }
    }

    pub fn changes(&self) -> usize {
        (self.rate as f64 * self.churn.as_secs_f64()).round() as usize
    }
}

/// What one change writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    /// The EndpointSlice: every endpoint not ready (withdrawal), or ready again (announcement).
    Slice,
    /// The Service: externalTrafficPolicy Local with no endpoint on this node (withdrawal), or Cluster
    /// again (announcement).
    Service,
}

/// One change of the churn.
#[derive(Clone, Debug)]
pub struct ChangeSample {
    /// Seconds from the start of the churn to the write.
    pub at: f64,
    pub kind: ChangeKind,
    pub announce: bool,
    /// Write → UPDATE carrying the prefix on speakerd's link; None: never seen.
    pub latency: Option<Duration>,
}

/// The figures of one run.
#[derive(Default)]
pub struct ClusterRow {
    pub nodes: usize,
    pub services: usize,
    pub endpoints: usize,
    pub rate: usize,
    pub lag: usize,
    /// Average JSON bytes of one Node, Service and EndpointSlice as written, and of all objects.
    pub json_bytes: (usize, usize, usize, usize),
    /// The fake API server kept the managedFields the objects were written with.
    pub managed_fields_kept: bool,
    /// From k8s-bridge's start: its `k8s_bridge_synced` metric is 1 (every list in), the first and the
    /// last expected route on the wire, gobgpd holds every route (polled).
    pub to_synced: Option<Duration>,
    pub to_first_route: Option<Duration>,
    pub to_last_route: Option<Duration>,
    pub to_router: Option<Duration>,
    /// The fake API server alone serving the same lists ([`time_lists`]), just before k8s-bridge starts.
    pub fake_lists: Option<Duration>,
    pub routes_initial: usize,
    /// (VmRSS, VmHWM) of k8s-bridge after the initial sync (its peak since start).
    pub bridge_sync_mem: (u64, u64),
    /// speakerd's peak during the initial sync, its RSS just before the churn.
    pub speakerd_sync_peak: u64,
    /// k8s-bridge's CPU seconds from its start to the end of the initial sync.
    pub sync_cpu: f64,
    pub speakerd_before_churn: u64,
    /// k8s_bridge_push_bytes_total, k8s_bridge_pushes_total and k8s_bridge_pushes_incremental_total
    /// after the initial sync.
    pub sync_push: (f64, f64, f64),
    /// Event and status writes k8s-bridge still had queued when the churn started.
    pub pending_at_churn: (f64, f64),
    pub changes: Vec<ChangeSample>,
    /// Seconds from the first write of the churn to its last.
    pub written_in: f64,
    /// Prefix changes on the wire during the churn that no change asked for.
    pub spurious: usize,
    /// Routes at gobgpd after the churn, and how many there should be.
    pub routes_end: (u64, u64),
    /// k8s-bridge: RSS after the churn and its peak during it; the same for speakerd.
    pub bridge_churn_mem: (u64, u64),
    pub speakerd_churn_mem: (u64, u64),
    /// During the churn: push bytes, pushes, incremental pushes; k8s-bridge CPU seconds.
    pub churn_push: (f64, f64, f64),
    pub churn_cpu: f64,
    /// Frames the capture lost (PACKET_STATISTICS): the wire figures are not to be trusted if any.
    pub capture_drops: u32,
    pub err: Option<String>,
}

impl ClusterRow {
    pub fn latencies(&self, pick: impl Fn(&ChangeSample) -> bool) -> Vec<Duration> {
        self.changes.iter().filter(|c| pick(c)).filter_map(|c| c.latency).collect()
    }

    pub fn missed(&self) -> usize {
        self.changes.iter().filter(|c| c.latency.is_none()).count()
    }

    /// Bytes of one full push during the initial sync (the bridge may push the whole set more than
    /// once then; none of those pushes may be incremental for this to be a full push's size).
    fn full_push(&self) -> Option<f64> {
        let (bytes, pushes, incremental) = self.sync_push;
        (bytes > 0.0 && pushes >= 1.0 && incremental == 0.0).then(|| bytes / pushes)
    }

    /// One route's share of a full push, in bytes.
    fn route_share(&self) -> Option<f64> {
        Some(self.full_push()? / self.routes_initial.max(1) as f64)
    }

    /// k8s-bridge's lists in → every route at the router: the bridge's and speakerd's part of the sync.
    fn lists_to_router(&self) -> Option<Duration> {
        Some(self.to_router?.saturating_sub(self.to_synced?))
    }

    fn bytes_per_change(&self) -> Option<f64> {
        (!self.changes.is_empty()).then(|| self.churn_push.0 / self.changes.len() as f64)
    }
}

pub fn k8s_cluster(plan: &Plan, res: &mut Results) {
    let cp = plan.k8sc.clone();
    let mut row = ClusterRow {
        nodes: cp.nodes,
        services: cp.services,
        endpoints: cp.endpoints,
        rate: cp.rate,
        lag: cp.lag,
        ..ClusterRow::default()
    };
    if let Err(e) = cluster_run(&cp, plan.full, &mut row) {
        row.err = Some(e);
    }
    res.k8sc = Some(row);
}

const NODE0: &str = "node-000";
/// k8s-bridge's metrics port: a free one, picked once (a fixed port collided with other runs on the
/// machine).
fn metrics_port() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(|| {
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(17497)
    })
}

// ---------------------------------------------------------------------------------------------------
// The objects

/// A deterministic 64-bit hash (splitmix64) for uids, digests and pod names.
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b.wrapping_add(0x6a09_e667_f3bc_c909);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hex(seed: u64, len: usize) -> String {
    let mut s = String::with_capacity(len + 16);
    let mut k = 0;
    while s.len() < len {
        let _ = write!(s, "{:016x}", mix(seed, k));
        k += 1;
    }
    s.truncate(len);
    s
}

fn uid(seed: u64) -> String {
    let h = hex(seed, 32);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// Lower-case letters and digits as Kubernetes' generated name suffixes.
fn suffix(seed: u64, len: usize) -> String {
    const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..len).map(|k| A[(mix(seed, k as u64) % A.len() as u64) as usize] as char).collect()
}

/// An RFC 3339 time `secs` after a fixed day.
fn stamp(secs: u64) -> String {
    format!("2026-11-{:02}T{:02}:{:02}:{:02}Z", 2 + secs / 86_400 % 27, secs / 3600 % 24, secs / 60 % 60, secs % 60)
}

const ZONES: [&str; 3] = ["zone-a", "zone-b", "zone-c"];

fn svc_name(i: usize) -> String {
    format!("web-{i:05}")
}

fn svc_ns(i: usize) -> String {
    format!("app-{:02}", i % 20)
}

fn svc_uid(i: usize) -> String {
    uid(0x5e_0000_0000 + i as u64)
}

fn node_name(k: usize) -> String {
    format!("node-{k:03}")
}

/// The LoadBalancer IP of Service i (pool 10.64.0.0/16).
pub fn svc_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 64, (i / 250) as u8, (1 + i % 250) as u8)
}

/// The node of endpoint j of Service i: this node (node-000) runs pods of every tenth Service only,
/// the others are spread over the other nodes.
fn endpoint_node(i: usize, j: usize, cp: &ClusterPlan) -> usize {
    if cp.nodes == 1 || (i.is_multiple_of(10) && j == 0) {
        0
    } else {
        1 + (i * cp.endpoints + j) % (cp.nodes - 1)
    }
}

fn fields(keys: &[&str]) -> Value {
    let mut m = serde_json::Map::new();
    m.insert(".".into(), json!({}));
    for k in keys {
        m.insert(format!("f:{k}"), json!({}));
    }
    Value::Object(m)
}

/// A Node as a kubelet, kubeadm, the controller manager and a CNI leave it: labels, annotations,
/// managedFields, podCIDRs, and a status with addresses, conditions, capacity, nodeInfo and 40 images.
fn node_obj(k: usize, ip: &str) -> Value {
    let name = node_name(k);
    let zone = ZONES[k % ZONES.len()];
    let seed = 0x40de_0000 + k as u64;
    let t = stamp(3600 + k as u64 * 7);
    let images: Vec<Value> = (0..40)
        .map(|m| {
            let repo = format!("registry.example.com/platform/component-{m:02}");
            json!({"names": [format!("{repo}@sha256:{}", hex(seed * 64 + m, 64)), format!("{repo}:v1.{}.{}", m % 9, k % 5)],
                   "sizeBytes": 12_000_000 + m * 3_456_789})
        })
        .collect();
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "lastHeartbeatTime": t, "lastTransitionTime": stamp(60 + k as u64),
               "reason": reason, "message": message})
    };
    let resources = json!({"cpu": "16", "ephemeral-storage": "203056560Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0",
                           "memory": "65842348Ki", "pods": "110"});
    let labels = json!({
        "beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "node.kubernetes.io/instance-type": "m6i.4xlarge",
        "topology.kubernetes.io/region": "region-1", "topology.kubernetes.io/zone": zone,
        "failure-domain.beta.kubernetes.io/region": "region-1", "failure-domain.beta.kubernetes.io/zone": zone,
        "node-role.kubernetes.io/worker": ""});
    let label_keys: Vec<String> = labels.as_object().unwrap().keys().cloned().collect();
    let label_refs: Vec<&str> = label_keys.iter().map(String::as_str).collect();
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": uid(seed), "creationTimestamp": stamp(k as u64),
            "labels": labels,
            "annotations": {
                "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "projectcalico.org/IPv4Address": format!("{ip}/24"),
                "projectcalico.org/IPv4VXLANTunnelAddr": format!("10.244.{k}.0"),
                "csi.volume.kubernetes.io/nodeid": format!("{{\"ebs.csi.aws.com\":\"i-{}\"}}", hex(seed, 17))},
            "managedFields": [
                {"manager": "kubeadm", "operation": "Update", "apiVersion": "v1", "time": stamp(k as u64), "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:kubeadm.alpha.kubernetes.io/cri-socket": {}},
                              "f:labels": {"f:node-role.kubernetes.io/worker": {}}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": stamp(k as u64), "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": fields(&["volumes.kubernetes.io/controller-managed-attach-detach", "csi.volume.kubernetes.io/nodeid"]),
                              "f:labels": fields(&label_refs)}, "f:spec": {"f:providerID": {}}}},
                {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1", "time": stamp(30 + k as u64), "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:node.alpha.kubernetes.io/ttl": {}}},
                              "f:spec": {"f:podCIDR": {}, "f:podCIDRs": {".": {}, "v:\"10.244.0.0/24\"": {}}}}},
                {"manager": "calico-node", "operation": "Update", "apiVersion": "v1", "time": stamp(60 + k as u64), "fieldsType": "FieldsV1",
                 "subresource": "status",
                 "fieldsV1": {"f:metadata": {"f:annotations": {"f:projectcalico.org/IPv4Address": {}, "f:projectcalico.org/IPv4VXLANTunnelAddr": {}}},
                              "f:status": {"f:conditions": {"k:{\"type\":\"NetworkUnavailable\"}": fields(&["lastHeartbeatTime", "lastTransitionTime", "message", "reason", "status", "type"])}}}},
                {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": t, "fieldsType": "FieldsV1",
                 "subresource": "status",
                 "fieldsV1": {"f:status": {
                     "f:allocatable": fields(&["cpu", "ephemeral-storage", "memory", "pods"]),
                     "f:capacity": fields(&["cpu", "ephemeral-storage", "memory", "pods"]),
                     "f:conditions": {
                         "k:{\"type\":\"DiskPressure\"}": fields(&["lastHeartbeatTime", "lastTransitionTime", "message", "reason", "status"]),
                         "k:{\"type\":\"MemoryPressure\"}": fields(&["lastHeartbeatTime", "lastTransitionTime", "message", "reason", "status"]),
                         "k:{\"type\":\"PIDPressure\"}": fields(&["lastHeartbeatTime", "lastTransitionTime", "message", "reason", "status"]),
                         "k:{\"type\":\"Ready\"}": fields(&["lastHeartbeatTime", "lastTransitionTime", "message", "reason", "status"])},
                     "f:daemonEndpoints": {"f:kubeletEndpoint": {"f:Port": {}}},
                     "f:images": {}, "f:nodeInfo": fields(&["architecture", "bootID", "containerRuntimeVersion", "kernelVersion", "kubeProxyVersion", "kubeletVersion", "machineID", "operatingSystem", "osImage", "systemUUID"])}}}
            ]},
        "spec": {"podCIDR": format!("10.244.{k}.0/24"), "podCIDRs": [format!("10.244.{k}.0/24")],
                 "providerID": format!("aws:///{zone}/i-{}", hex(seed, 17))},
        "status": {
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "allocatable": resources, "capacity": resources,
            "conditions": [
                cond("NetworkUnavailable", "False", "CalicoIsUp", "Calico is running on this node"),
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "images": images,
            "nodeInfo": {"architecture": "amd64", "bootID": uid(seed + 1), "containerRuntimeVersion": "containerd://1.7.22",
                         "kernelVersion": "6.1.0-27-amd64", "kubeProxyVersion": "v1.31.2", "kubeletVersion": "v1.31.2",
                         "machineID": hex(seed + 2, 32), "operatingSystem": "linux", "osImage": "Debian GNU/Linux 12 (bookworm)",
                         "systemUUID": uid(seed + 3)}}})
}

/// A LoadBalancer Service as `kubectl apply` and the IP controller leave it: the applied manifest in
/// the last-applied-configuration annotation, the API server's defaults, managedFields, and its IP in
/// status.loadBalancer.ingress. `local`: externalTrafficPolicy Local (with its healthCheckNodePort).
/// `at`: seconds since the day of [`stamp`] of the last write.
fn service_obj(i: usize, local: bool, at: u64) -> Value {
    let (name, ns) = (svc_name(i), svc_ns(i));
    let labels = json!({"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name,
                        "app.kubernetes.io/part-of": "shop", "app.kubernetes.io/version": "1.4.2"});
    let selector = json!({"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name});
    let etp = if local { "Local" } else { "Cluster" };
    let ports = json!([{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                       {"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]);
    let applied = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"annotations": {}, "labels": labels, "name": name, "namespace": ns},
        "spec": {"externalTrafficPolicy": etp, "ports": ports, "selector": selector, "type": "LoadBalancer"}});
    let cluster_ip = format!("10.96.{}.{}", 10 + i / 250, 1 + i % 250);
    let mut full_ports = ports.clone();
    for (k, p) in full_ports.as_array_mut().unwrap().iter_mut().enumerate() {
        p["nodePort"] = json!(30000 + (i * 2 + k) % 2768);
    }
    let port_fields = |port: u16| {
        (format!("k:{{\"port\":{port},\"protocol\":\"TCP\"}}"), fields(&["name", "port", "protocol", "targetPort"]))
    };
    let (p80, p443) = (port_fields(80), port_fields(443));
    let mut spec = json!({"allocateLoadBalancerNodePorts": true, "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
        "externalTrafficPolicy": etp, "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack", "ports": full_ports, "selector": selector, "sessionAffinity": "None",
        "type": "LoadBalancer"});
    if local {
        spec["healthCheckNodePort"] = json!(32000 + i % 767);
    }
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": name, "namespace": ns, "uid": svc_uid(i), "creationTimestamp": stamp(7200 + i as u64 / 10),
            "labels": labels,
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": format!("{applied}\n")},
            "managedFields": [
                {"manager": "kubectl-client-side-apply", "operation": "Update", "apiVersion": "v1", "time": stamp(at),
                 "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:annotations": fields(&["kubectl.kubernetes.io/last-applied-configuration"]),
                                             "f:labels": fields(&["app.kubernetes.io/instance", "app.kubernetes.io/name", "app.kubernetes.io/part-of", "app.kubernetes.io/version"])},
                              "f:spec": {"f:allocateLoadBalancerNodePorts": {}, "f:externalTrafficPolicy": {}, "f:internalTrafficPolicy": {},
                                         "f:ports": {".": {}, p80.0: p80.1, p443.0: p443.1},
                                         "f:selector": {}, "f:sessionAffinity": {}, "f:type": {}}}},
                {"manager": "metallb-controller", "operation": "Update", "apiVersion": "v1", "time": stamp(7260 + i as u64 / 10),
                 "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:loadBalancer": {"f:ingress": {}}}}}]},
        "spec": spec,
        "status": {"loadBalancer": {"ingress": [{"ip": svc_ip(i).to_string(), "ipMode": "VIP"}]}}})
}

/// The EndpointSlice of Service i as the EndpointSlice controller writes it: `endpoints` pods spread
/// over the nodes ([`endpoint_node`]), all ready or all not ready.
fn slice_obj(i: usize, cp: &ClusterPlan, ready: bool, at: u64) -> Value {
    let (svc, ns) = (svc_name(i), svc_ns(i));
    let seed = 0x51ce_0000_0000 + i as u64;
    let rs = suffix(seed, 10);
    let endpoints: Vec<Value> = (0..cp.endpoints)
        .map(|j| {
            let node = endpoint_node(i, j, cp);
            json!({"addresses": [format!("10.244.{node}.{}", 2 + (i * cp.endpoints + j) % 250)],
                   "conditions": {"ready": ready, "serving": ready, "terminating": false},
                   "nodeName": node_name(node),
                   "targetRef": {"kind": "Pod", "namespace": ns, "name": format!("{svc}-{rs}-{}", suffix(seed + 1 + j as u64, 5)),
                                 "uid": uid(seed * 64 + j as u64)},
                   "zone": ZONES[node % ZONES.len()]})
        })
        .collect();
    let svc_uid = svc_uid(i);
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{svc}-{}", suffix(seed, 5)), "generateName": format!("{svc}-"), "namespace": ns,
            "uid": uid(seed), "creationTimestamp": stamp(7200 + i as u64 / 10), "generation": 1,
            "labels": {"app.kubernetes.io/instance": svc, "app.kubernetes.io/name": svc, "app.kubernetes.io/part-of": "shop",
                       "app.kubernetes.io/version": "1.4.2", "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                       "kubernetes.io/service-name": svc},
            "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": stamp(at)},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc, "uid": svc_uid,
                                 "controller": true, "blockOwnerDeletion": true}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "discovery.k8s.io/v1",
                "time": stamp(at), "fieldsType": "FieldsV1",
                "fieldsV1": {"f:addressType": {}, "f:endpoints": {},
                    "f:metadata": {"f:annotations": fields(&["endpoints.kubernetes.io/last-change-trigger-time"]),
                                   "f:generateName": {},
                                   "f:labels": fields(&["app.kubernetes.io/instance", "app.kubernetes.io/name", "app.kubernetes.io/part-of",
                                                        "app.kubernetes.io/version", "endpointslice.kubernetes.io/managed-by", "kubernetes.io/service-name"]),
                                   "f:ownerReferences": {".": {}, format!("k:{{\"uid\":\"{svc_uid}\"}}"): {}}},
                    "f:ports": {}}}]},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "https", "port": 8443, "protocol": "TCP"}]})
}

// ---------------------------------------------------------------------------------------------------
// The changes

/// The churn in units: unit m is one Service whose route goes down and, 2·lag changes later, up again.
/// Units 0..lag start down (their objects are written so before k8s-bridge starts). Change 2m brings
/// unit m up, change 2m+1 takes unit m+lag down: withdrawals and announcements alternate, and every
/// change changes exactly one route.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Change {
    unit: usize,
    announce: bool,
}

fn change(c: usize, lag: usize) -> Change {
    if c.is_multiple_of(2) {
        Change { unit: c / 2, announce: true }
    } else {
        Change { unit: c / 2 + lag, announce: false }
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The Service of unit m: a stride through all of them, so that the changed Services are spread over
/// the namespaces and the IP range.
fn unit_service(m: usize, services: usize) -> usize {
    let mut stride = 7919;
    while gcd(stride, services) != 1 {
        stride += 1;
    }
    (m * stride) % services
}

/// A quarter of the units change their Service (those with no endpoint on this node), the rest their
/// EndpointSlice.
fn unit_kind(m: usize, services: usize) -> ChangeKind {
    if m % 4 == 1 && !unit_service(m, services).is_multiple_of(10) {
        ChangeKind::Service
    } else {
        ChangeKind::Slice
    }
}

/// The object a change writes: Service or EndpointSlice i, down (`!up`) or up.
fn unit_object(m: usize, up: bool, cp: &ClusterPlan, at: u64) -> Value {
    let i = unit_service(m, cp.services);
    match unit_kind(m, cp.services) {
        ChangeKind::Slice => slice_obj(i, cp, up, at),
        ChangeKind::Service => service_obj(i, !up, at),
    }
}

// ---------------------------------------------------------------------------------------------------
// The capture: every IPv4 /32 that speakerd announces or withdraws, with when its UPDATE left.

/// A prefix change seen on the wire: when, the /32 (as u32), announced (true) or withdrawn.
type WireEvent = (Instant, u32, bool);

/// The batches of (prefix, announced) the matcher found, one per matched frame, in frame order: the
/// sniffer's timestamps come in the same order, one per matched frame.
type Batches = Arc<Mutex<VecDeque<Vec<(u32, bool)>>>>;

/// Source and destination ports, sequence number and payload of an IPv4 TCP segment from `src`.
fn tcp4_from(f: &[u8], src: Ipv4Addr) -> Option<(u16, u16, u32, &[u8])> {
    if f.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = f.get(14..)?;
    if ip.len() < 20 || ip[9] != 6 || ip[12..16] != src.octets() {
        return None;
    }
    let ihl = (ip[0] & 0x0f) as usize * 4;
    let total = (u16::from_be_bytes([ip[2], ip[3]]) as usize).min(ip.len());
    let tcp = ip.get(ihl..total)?;
    if tcp.len() < 20 {
        return None;
    }
    let (sport, dport) = (u16::from_be_bytes([tcp[0], tcp[1]]), u16::from_be_bytes([tcp[2], tcp[3]]));
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    Some((sport, dport, seq, tcp.get((tcp[12] >> 4) as usize * 4..)?))
}

/// IPv4 prefixes of `b` (length byte, then the significant bytes); /32s only.
fn host_routes(mut b: &[u8], announce: bool, out: &mut Vec<(u32, bool)>) {
    while let Some(&len) = b.first() {
        let n = (len as usize).div_ceil(8);
        if n > 4 || b.len() < 1 + n {
            return;
        }
        if len == 32 {
            out.push((u32::from_be_bytes([b[1], b[2], b[3], b[4]]), announce));
        }
        b = &b[1 + n..];
    }
}

/// The IPv4 unicast /32s an UPDATE's body withdraws and announces: the withdrawn routes and NLRI
/// fields, and MP_REACH_NLRI / MP_UNREACH_NLRI for AFI 1 SAFI 1.
fn update_routes(b: &[u8], out: &mut Vec<(u32, bool)>) {
    let Some(wl) = b.get(0..2).map(|x| u16::from_be_bytes([x[0], x[1]]) as usize) else { return };
    let Some(w) = b.get(2..2 + wl) else { return };
    host_routes(w, false, out);
    let Some(al) = b.get(2 + wl..4 + wl).map(|x| u16::from_be_bytes([x[0], x[1]]) as usize) else { return };
    let Some(mut attrs) = b.get(4 + wl..4 + wl + al) else { return };
    while attrs.len() >= 3 {
        let (flags, code) = (attrs[0], attrs[1]);
        let (hdr, len) = if flags & 0x10 != 0 {
            let Some(l) = attrs.get(2..4) else { return };
            (4, u16::from_be_bytes([l[0], l[1]]) as usize)
        } else {
            (3, attrs[2] as usize)
        };
        let Some(v) = attrs.get(hdr..hdr + len) else { return };
        match code {
            14 if v.len() >= 5 && v[0..3] == [0, 1, 1] => {
                let nh = v[3] as usize;
                if let Some(nlri) = v.get(4 + nh + 1..) {
                    host_routes(nlri, true, out);
                }
            }
            15 if v.len() >= 3 && v[0..3] == [0, 1, 1] => host_routes(&v[3..], false, out),
            _ => {}
        }
        attrs = &attrs[hdr + len..];
    }
    if let Some(nlri) = b.get(4 + wl + al..) {
        host_routes(nlri, true, out);
    }
}

/// The byte stream of one TCP connection, put back in order from its segments.
#[derive(Default)]
struct Stream {
    next_seq: Option<u32>,
    buf: Vec<u8>,
}

impl Stream {
    /// Takes a segment; returns the /32s of the UPDATE messages it completes.
    fn segment(&mut self, seq: u32, payload: &[u8]) -> Vec<(u32, bool)> {
        let mut found = vec![];
        let data = match self.next_seq {
            Some(n) => {
                let off = seq.wrapping_sub(n) as i32;
                if !(-(1 << 30)..=0).contains(&off) {
                    // frames lost, or a new connection: start again at the next marker
                    self.buf.clear();
                    payload
                } else if (-off) as usize >= payload.len() {
                    return found; // a retransmission of what was seen
                } else {
                    &payload[(-off) as usize..]
                }
            }
            None => payload,
        };
        self.next_seq = Some(seq.wrapping_add(payload.len() as u32));
        self.buf.extend_from_slice(data);
        let mut at = 0;
        while self.buf.len() - at >= 19 {
            let m = &self.buf[at..];
            let len = u16::from_be_bytes([m[16], m[17]]) as usize;
            if m[..16].iter().any(|b| *b != 0xff) || !(19..=4096).contains(&len) {
                at += 1; // not at a message: look for the next marker
                continue;
            }
            if m.len() < len {
                break;
            }
            if m[18] == 2 {
                update_routes(&m[19..len], &mut found);
            }
            at += len;
        }
        self.buf.drain(..at);
        found
    }
}

/// The matcher of the capture on speakerd's link: its BGP segments (from `src`, port 179 at either
/// end), reassembled; every frame that completes UPDATEs with /32s is matched and its routes queued.
fn update_matcher(src: Ipv4Addr, batches: Batches) -> wire::Matcher {
    let streams = Mutex::new(HashMap::<(u16, u16), Stream>::new());
    Box::new(move |f: &[u8]| {
        let Some((sport, dport, seq, payload)) = tcp4_from(f, src) else { return false };
        if payload.is_empty() || (sport != 179 && dport != 179) {
            return false;
        }
        let found = streams.lock().unwrap().entry((sport, dport)).or_default().segment(seq, payload);
        if found.is_empty() {
            return false;
        }
        batches.lock().unwrap().push_back(found);
        true
    })
}

/// Moves what the capture saw so far into `events`.
fn drain(sniff: &Sniffer, batches: &Batches, events: &mut Vec<WireEvent>) {
    while let Some(t) = sniff.first(Duration::ZERO) {
        let batch = batches.lock().unwrap().pop_front().unwrap_or_default();
        events.extend(batch.into_iter().map(|(p, a)| (t, p, a)));
    }
}

// ---------------------------------------------------------------------------------------------------
// The run

/// The fake API server alone serving the lists k8s-bridge starts with (Services, EndpointSlices and
/// Nodes, in pages of 500 as kube's watcher asks for them, each kind on its own thread as the bridge's
/// watches run): how much of the bridge's wait for its lists is the fake API server's.
fn time_lists(addr: std::net::SocketAddr) -> Result<Duration, String> {
    let paths = ["/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/nodes"];
    let t = Instant::now();
    let threads: Vec<_> = paths.into_iter().map(|p| std::thread::spawn(move || list_all(addr, p))).collect();
    for h in threads {
        h.join().map_err(|_| "list thread panicked".to_string())??;
    }
    Ok(t.elapsed())
}

/// Every page of the list at `path`; the number of pages.
fn list_all(addr: std::net::SocketAddr, path: &str) -> Result<usize, String> {
    use std::io::{Read, Write};
    let (mut cont, mut pages) = (String::new(), 0);
    loop {
        let q = if cont.is_empty() { format!("{path}?limit=500") } else { format!("{path}?limit=500&continue={cont}") };
        let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("{path}: {e}"))?;
        write!(s, "GET {q} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\n\r\n").map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).map_err(|e| format!("{path}: {e}"))?;
        if !buf.starts_with(b"HTTP/1.0 200") && !buf.starts_with(b"HTTP/1.1 200") {
            return Err(format!("{path}: {}", String::from_utf8_lossy(&buf[..buf.len().min(200)])));
        }
        pages += 1;
        // the list's metadata (with the continue token) comes after its items
        let tail = String::from_utf8_lossy(&buf[buf.len().saturating_sub(2000)..]).into_owned();
        match tail.rfind("\"continue\":\"").map(|i| &tail[i + 12..]).and_then(|t| t.split('"').next()) {
            Some(t) if !t.is_empty() => cont = t.to_string(),
            _ => return Ok(pages),
        }
    }
}

/// k8s-bridge for this node, in the host namespace, with its default flags and logs at info (as in
/// production).
fn spawn_bridge(api: &common::k8s::Api, sp: &Speakerd) -> Proc {
    let kubeconfig = api.kubeconfig.display().to_string();
    let socket = sp.socket().display().to_string();
    let metrics = format!("127.0.0.1:{}", metrics_port());
    Proc::spawn(
        "k8s-bridge",
        &[bin_path("k8s-bridge").to_str().unwrap(), "--node-name", NODE0, "--socket", &socket, "--metrics", &metrics],
        &sp.dir().join("k8s-bridge.log"),
        &[
            ("KUBECONFIG", &kubeconfig),
            ("RUST_LOG", "info"),
            ("METALLB_POD_NAME", "speaker-node-000"),
            ("METALLB_POD_UID", "uid-speaker-node-000"),
        ],
        None,
    )
}

fn bridge_metric(name: &str) -> f64 {
    common::k8s::metric(metrics_port(), name).unwrap_or(-1.0)
}

fn cluster_run(cp: &ClusterPlan, full: bool, row: &mut ClusterRow) -> Result<(), String> {
    const ASN: u32 = 64500;
    const ROUTER_ASN: u32 = 64510;
    let changes = cp.changes();
    if changes / 2 + cp.lag + 1 > cp.services {
        return Err(format!("{changes} changes with lag {} need more than {} Services", cp.lag, cp.services));
    }
    // `lab` first: the processes are dropped (killed) before the namespaces go.
    let lab = Lab::new("k8scluster");
    let (n1, g) = lab.pair("n1", "gobgp");
    let api = common::k8s::Api::start(lab.dir());
    api.install_crds();
    let gobgp =
        Gobgpd::start(&g, common::PeerConfig::new(ROUTER_ASN, g.v4).neighbor(Neighbor::new(n1.v4, ASN).passive()));
    api.apply_yaml(&format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: pool, namespace: metallb-system}}\nspec: {{addresses: [10.64.0.0/16]}}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: adv, namespace: metallb-system}}\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: router, namespace: metallb-system}}\nspec: {{myASN: {ASN}, peerASN: {ROUTER_ASN}, peerAddress: \"{}\"}}\n",
        g.v4
    ));
    // The cluster, before k8s-bridge starts.
    for k in 0..20.min(cp.services) {
        api.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": svc_ns(k)}}));
    }
    let mut sizes = (0usize, 0usize, 0usize);
    for k in 0..cp.nodes {
        let ip = if k == 0 { n1.v4.to_string() } else { format!("10.250.{}.{}", k / 250, 1 + k % 250) };
        let o = node_obj(k, &ip);
        sizes.0 += serde_json::to_vec(&o).unwrap().len();
        api.apply(o);
    }
    let down_at_start: BTreeSet<usize> = (0..cp.lag).map(|m| unit_service(m, cp.services)).collect();
    for i in 0..cp.services {
        // a unit down at the start is written down; its Service or slice comes up in the churn
        let m = (0..cp.lag).find(|m| unit_service(*m, cp.services) == i);
        let local = m.is_some_and(|m| unit_kind(m, cp.services) == ChangeKind::Service);
        let ready = !m.is_some_and(|m| unit_kind(m, cp.services) == ChangeKind::Slice);
        let (s, e) = (service_obj(i, local, 7230 + i as u64 / 10), slice_obj(i, cp, ready, 7240 + i as u64 / 10));
        sizes.1 += serde_json::to_vec(&s).unwrap().len();
        sizes.2 += serde_json::to_vec(&e).unwrap().len();
        api.apply(s);
        api.apply(e);
    }
    row.json_bytes =
        (sizes.0 / cp.nodes.max(1), sizes.1 / cp.services, sizes.2 / cp.services, sizes.0 + sizes.1 + sizes.2);
    row.managed_fields_kept = api
        .server
        .get("v1", "Service", Some(&svc_ns(1)), &svc_name(1))
        .is_some_and(|s| s["metadata"]["managedFields"].as_array().is_some_and(|a| a.len() == 2));
    let want_initial: BTreeSet<u32> =
        (0..cp.services).filter(|i| !down_at_start.contains(i)).map(|i| u32::from(svc_ip(i))).collect();
    row.routes_initial = want_initial.len();

    row.fake_lists = Some(time_lists(api.server.addr())?);
    let sp = common::k8s::start_node(&n1, NODE0);
    let batches: Batches = Arc::default();
    let sniff = Sniffer::start(n1.name(), "eth0", update_matcher(n1.v4, batches.clone()));
    let mut events: Vec<WireEvent> = vec![];
    reset_peak(sp.pid())?;

    // Initial sync: k8s-bridge start → every route at the router.
    let t0 = Instant::now();
    let mut bridge = spawn_bridge(&api, &sp);
    let deadline = t0 + Duration::from_secs(if full { 900 } else { 60 });
    loop {
        drain(&sniff, &batches, &mut events);
        if row.to_synced.is_none() && bridge_metric("k8s_bridge_synced") == 1.0 {
            row.to_synced = Some(t0.elapsed());
        }
        let n = gobgp.rib_count("ipv4").unwrap_or(0);
        if n == want_initial.len() as u64 {
            row.to_router = Some(t0.elapsed());
            break;
        }
        if let Some(st) = bridge.try_wait() {
            return Err(format!("k8s-bridge exited with {st}: {}", bridge.log_tail(5)));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "initial sync: gobgpd holds {n} of {} routes after {:?}",
                want_initial.len(),
                t0.elapsed()
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    drain(&sniff, &batches, &mut events);
    let mut first_seen: HashMap<u32, Instant> = HashMap::new();
    for (t, p, a) in &events {
        if *a {
            first_seen.entry(*p).or_insert(*t);
        }
    }
    let on_wire: BTreeSet<u32> = first_seen.keys().copied().collect();
    if on_wire != want_initial {
        return Err(format!(
            "initial sync: {} routes announced on the wire, {} expected ({} missing, {} unexpected)",
            on_wire.len(),
            want_initial.len(),
            want_initial.difference(&on_wire).count(),
            on_wire.difference(&want_initial).count()
        ));
    }
    row.to_first_route = first_seen.values().min().map(|t| t.saturating_duration_since(t0));
    row.to_last_route = first_seen.values().max().map(|t| t.saturating_duration_since(t0));
    row.bridge_sync_mem = rss(bridge.pid());
    row.speakerd_sync_peak = rss(sp.pid()).1;
    row.sync_cpu = cpu_secs(bridge.pid());
    // What followed the sync (its last pushes, the first Event and status writes) settles.
    std::thread::sleep(Duration::from_secs(if full { 5 } else { 1 }));
    row.sync_push = (
        bridge_metric("k8s_bridge_push_bytes_total"),
        bridge_metric("k8s_bridge_pushes_total"),
        bridge_metric("k8s_bridge_pushes_incremental_total"),
    );
    row.pending_at_churn = (bridge_metric("k8s_bridge_events_pending"), bridge_metric("k8s_bridge_status_pending"));

    // Churn: every write built before the clock starts.
    let writes: Vec<(Change, Value)> = (0..changes)
        .map(|c| {
            let ch = change(c, cp.lag);
            let o = unit_object(ch.unit, ch.announce, cp, 90_000 + c as u64 / cp.rate.max(1) as u64);
            (ch, o)
        })
        .collect();
    drain(&sniff, &batches, &mut events);
    events.clear();
    reset_peak(bridge.pid())?;
    reset_peak(sp.pid())?;
    row.speakerd_before_churn = rss(sp.pid()).0;
    let pushes0 = (bridge_metric("k8s_bridge_pushes_total"), bridge_metric("k8s_bridge_pushes_incremental_total"));
    let bytes0 = bridge_metric("k8s_bridge_push_bytes_total");
    let cpu0 = cpu_secs(bridge.pid());
    let start = Instant::now();
    let mut written: Vec<Instant> = Vec::with_capacity(changes);
    let mut down: BTreeSet<usize> = down_at_start.clone();
    let mut meta: Vec<(u32, ChangeKind, bool)> = Vec::with_capacity(changes);
    for (c, (ch, obj)) in writes.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(c as f64 / cp.rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let i = unit_service(ch.unit, cp.services);
        meta.push((u32::from(svc_ip(i)), unit_kind(ch.unit, cp.services), ch.announce));
        let t = Instant::now();
        api.apply(obj);
        written.push(t);
        if ch.announce {
            down.remove(&i);
        } else {
            down.insert(i);
        }
        drain(&sniff, &batches, &mut events);
    }
    row.written_in = written.last().map_or(0.0, |t| (*t - start).as_secs_f64());
    // Every change on the wire, or the wait runs out.
    let mut by_prefix: HashMap<u32, Vec<(Instant, bool)>> = HashMap::new();
    let mut matched: Vec<Option<Duration>> = vec![None; meta.len()];
    let mut used: BTreeSet<(u32, u128)> = BTreeSet::new();
    let wait_until = Instant::now() + Duration::from_secs(if full { 60 } else { 15 });
    loop {
        drain(&sniff, &batches, &mut events);
        for (t, p, a) in events.drain(..) {
            by_prefix.entry(p).or_default().push((t, a));
        }
        for (c, (p, _, announce)) in meta.iter().enumerate() {
            if matched[c].is_some() {
                continue;
            }
            let t = written[c];
            if let Some((seen, _)) =
                by_prefix.get(p).and_then(|v| v.iter().find(|(at, a)| a == announce && *at >= t).copied())
            {
                matched[c] = Some(seen - t);
                used.insert((*p, (seen - start).as_nanos()));
            }
        }
        if matched.iter().all(Option::is_some) || Instant::now() > wait_until {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Quiet a moment longer: anything else on the wire is counted.
    std::thread::sleep(Duration::from_millis(500));
    drain(&sniff, &batches, &mut events);
    for (t, p, a) in events.drain(..) {
        by_prefix.entry(p).or_default().push((t, a));
    }
    row.spurious = by_prefix
        .iter()
        .flat_map(|(p, v)| v.iter().filter(|(t, _)| *t >= start).map(move |(t, _)| (*p, (*t - start).as_nanos())))
        .filter(|k| !used.contains(k))
        .count();
    row.capture_drops = sniff.drops();
    row.changes = meta
        .iter()
        .zip(&written)
        .zip(&matched)
        .map(|(((_, kind, announce), t), l)| ChangeSample {
            at: (*t - start).as_secs_f64(),
            kind: *kind,
            announce: *announce,
            latency: *l,
        })
        .collect();
    row.bridge_churn_mem = rss(bridge.pid());
    row.speakerd_churn_mem = rss(sp.pid());
    row.churn_cpu = cpu_secs(bridge.pid()) - cpu0;
    row.churn_push = (
        bridge_metric("k8s_bridge_push_bytes_total") - bytes0,
        bridge_metric("k8s_bridge_pushes_total") - pushes0.0,
        bridge_metric("k8s_bridge_pushes_incremental_total") - pushes0.1,
    );
    let want_end = (cp.services - down.len()) as u64;
    let got = try_wait_until(Duration::from_secs(10), || match gobgp.rib_count("ipv4") {
        Ok(n) if n == want_end => Ok(n),
        r => Err(format!("{r:?}")),
    });
    row.routes_end = (got.clone().unwrap_or_else(|_| gobgp.rib_count("ipv4").unwrap_or(0)), want_end);
    if let Some(st) = bridge.try_wait() {
        return Err(format!("k8s-bridge exited during the churn with {st}: {}", bridge.log_tail(5)));
    }
    if row.missed() > 0 {
        return Err(format!("{} of {} changes never showed on the wire", row.missed(), row.changes.len()));
    }
    got.map_err(|e| format!("after the churn gobgpd holds {e}, want {want_end}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// The report

/// A target row: (what, measured, met?, the failed runs it depends on).
pub type TargetRow = (String, String, Option<bool>, Vec<String>);

/// Milliseconds to one decimal (the churn's figures are a few ms; report.rs writes two decimals).
fn ms(d: Option<Duration>) -> String {
    match d {
        Some(d) if d.as_secs_f64() >= 1.0 => format!("{:.2} s", d.as_secs_f64()),
        Some(d) => format!("{:.1} ms", d.as_secs_f64() * 1000.0),
        None => "–".into(),
    }
}

impl Results {
    /// The Targets table's rows of this workload (none if it did not run).
    pub fn k8s_cluster_targets(&self) -> Vec<TargetRow> {
        let Some(r) = &self.k8sc else { return vec![] };
        let failed: Vec<String> = r.err.iter().map(|e| format!("k8s-bridge at cluster scale: {e}")).collect();
        let scale = format!("{} Services, {} Nodes", r.services, r.nodes);
        let mut out = vec![(
            format!("k8s-bridge at cluster scale ({scale}): k8s-bridge start → every route at the router ≤ 2 s"),
            format!(
                "{} (lists in {}, the fake API server alone lists in {}; lists in → every route {})",
                ms(r.to_router),
                ms(r.to_synced),
                ms(r.fake_lists),
                ms(r.lists_to_router())
            ),
            r.to_router.map(|d| d.as_secs_f64() <= 2.0),
            failed.clone(),
        )];
        let all = r.latencies(|_| true);
        let (p50, p99) = (pct(&all, 50.0), pct(&all, 99.0));
        let mut lat_failed = failed.clone();
        if r.missed() > 0 && r.err.is_none() {
            lat_failed.push(format!("{} of {} changes never on the wire", r.missed(), r.changes.len()));
        }
        out.push((
            format!(
                "k8s-bridge at cluster scale: one EndpointSlice or Service change → UPDATE on the wire p50 ≤ 10 ms, p99 ≤ 50 ms under {} changes/s",
                r.rate
            ),
            format!("p50 {} p99 {} ({} changes, {} missed)", ms(p50), ms(p99), r.changes.len(), r.missed()),
            p50.zip(p99).map(|(a, b)| a.as_secs_f64() <= 0.010 && b.as_secs_f64() <= 0.050),
            lat_failed,
        ));
        let rss_max = r.bridge_sync_mem.0.max(r.bridge_churn_mem.0);
        out.push((
            "k8s-bridge at cluster scale: k8s-bridge RSS ≤ 64 MB (after the initial sync and after the churn)".into(),
            format!("{} / {}", mb(r.bridge_sync_mem.0), mb(r.bridge_churn_mem.0)),
            (rss_max > 0).then_some(rss_max as f64 <= 64e6),
            failed.clone(),
        ));
        let (per, share) = (r.bytes_per_change(), r.route_share());
        out.push((
            "k8s-bridge at cluster scale: bytes to speakerd per change ≤ 3× one route's share of a full push".into(),
            match (per, share) {
                (Some(p), Some(s)) => {
                    format!(
                        "{p:.0} B per change, {s:.1} B per route of a {:.0} B full push",
                        r.full_push().unwrap_or(0.0)
                    )
                }
                _ => "–".into(),
            },
            per.zip(share).map(|(p, s)| p <= 3.0 * s),
            failed.clone(),
        ));
        let (before, peak) = (r.speakerd_before_churn, r.speakerd_churn_mem.1);
        out.push((
            "k8s-bridge at cluster scale: speakerd's peak during the churn ≤ 1.1× its RSS before it".into(),
            if before > 0 && peak > 0 {
                format!("{} vs {} ({:.2}×)", mb(peak), mb(before), peak as f64 / before as f64)
            } else {
                "–".into()
            },
            (before > 0 && peak > 0).then_some(peak as f64 <= 1.1 * before as f64),
            failed,
        ));
        out
    }

    /// Section 10 of the report.
    pub fn render_k8s_cluster(&self, d: &mut String) {
        let Some(r) = &self.k8sc else { return };
        let (nb, sb, eb, total) = r.json_bytes;
        let _ = writeln!(d, "## 10. k8s-bridge at cluster scale

speakerd and k8s-bridge (its default flags, logs at info) on one node of a cluster of {} Nodes held by the project's fake API server (writes answered at once), gobgpd as the router. {} LoadBalancer Services, their IPs already in `status.loadBalancer.ingress` as the controller writes them (one IPAddressPool, one BGPPeer, one BGPAdvertisement), and one EndpointSlice of {} endpoints per Service spread over the Nodes (this node has endpoints of every tenth Service). The objects are shaped like a real cluster's, since k8s-bridge's memory is measured: Services with ports, nodePorts, clusterIPs, ipFamilies, selector, labels, the `kubectl.kubernetes.io/last-applied-configuration` annotation and managedFields; EndpointSlices with addresses, conditions, nodeName, targetRef, zone, ports, ownerReferences and managedFields; Nodes with labels, annotations, managedFields, addresses, conditions, capacity, nodeInfo and 40 images. As JSON: a Node {:.1} KB, a Service {:.1} KB, an EndpointSlice {:.1} KB, {:.1} MB in all; the fake API server {} the managedFields.
",
            r.nodes, r.services, r.endpoints, nb as f64 / 1e3, sb as f64 / 1e3, eb as f64 / 1e3, total as f64 / 1e6,
            if r.managed_fields_kept { "keeps" } else { "**dropped**" });
        let _ = writeln!(d, "**Initial sync.** Every object exists before k8s-bridge starts. First the harness times the fake API server alone serving the lists k8s-bridge starts with (Services, EndpointSlices and Nodes, pages of 500 as kube's watcher asks, the three at once): the fake API server is part of the harness (it reads each page in place, but encodes every object of it anew), so this much of the wait is the fake's. Then k8s-bridge starts, timed from its start until its `k8s_bridge_synced` metric is 1 (every list in; polled), the first and the last route in an UPDATE on speakerd's link (AF_PACKET capture), and gobgpd holds every route (`gobgp global rib summary` polled every 10 ms). The session to gobgpd comes up during it (speakerd learns the peer from k8s-bridge). {} Services start with their route down (they come up in the churn).\n", r.lag);
        let _ = writeln!(d, "| routes | the fake API server alone lists in | lists in | first route on the wire | last route on the wire | every route at the router | lists in → every route | k8s-bridge RSS / peak | k8s-bridge CPU | speakerd peak | pushes (incremental) | a full push |\n|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|");
        let _ = writeln!(
            d,
            "| {} | {} | {} | {} | {} | {} | {} | {} / {} | {:.1} s | {} | {:.0} ({:.0}) | {} B, {} per route |{}",
            r.routes_initial,
            ms(r.fake_lists),
            ms(r.to_synced),
            ms(r.to_first_route),
            ms(r.to_last_route),
            ms(r.to_router),
            ms(r.lists_to_router()),
            mb(r.bridge_sync_mem.0),
            mb(r.bridge_sync_mem.1),
            r.sync_cpu,
            mb(r.speakerd_sync_peak),
            r.sync_push.1,
            r.sync_push.2,
            r.full_push().map_or("–".into(), |b| format!("{b:.0}")),
            r.route_share().map_or("–".into(), |s| format!("{s:.1} B")),
            r.err.as_ref().map(|e| format!(" a run failed: {e}")).unwrap_or_default()
        );
        let secs = r.changes.len() as f64 / r.rate.max(1) as f64;
        let _ = writeln!(d, "\n**Churn.** {} changes/s for {secs:.0} s, paced by the harness, each one API write (the whole object, as its controller writes it) that changes exactly one route: an EndpointSlice whose endpoints all go not ready (withdrawal) or ready again (announcement), or, for a quarter of them, a Service whose externalTrafficPolicy becomes Local with none of its endpoints on this node (withdrawal) or Cluster again (announcement). Withdrawals and announcements alternate; a route taken down comes back {} changes ({:.2} s) later. Each change is timed from just before its write (in process, into the fake API server's store, which k8s-bridge watches over HTTP) until the UPDATE carrying its prefix left speakerd, captured on its link; a change never seen on the wire fails the run. Event and status writes k8s-bridge still had queued when the churn started: {:.0} / {:.0}. Memory peaks are reset (`/proc/PID/clear_refs`) at the start of the churn. Bytes to speakerd: the growth of k8s-bridge's `k8s_bridge_push_bytes_total` (protobuf bytes of its requests) over the churn, divided by the changes; a full push is that counter after the initial sync divided by the pushes then (all full).\n",
            r.rate, 2 * r.lag - 1, (2 * r.lag - 1) as f64 / r.rate.max(1) as f64, r.pending_at_churn.0, r.pending_at_churn.1);
        let all = r.latencies(|_| true);
        let speakerd_ratio = if r.speakerd_before_churn > 0 && r.speakerd_churn_mem.1 > 0 {
            format!("{:.2}×", r.speakerd_churn_mem.1 as f64 / r.speakerd_before_churn as f64)
        } else {
            "–".into()
        };
        let _ = writeln!(d, "| changes | written in | p50 | p99 | max | never on the wire | other route changes on the wire | routes at the router after (want) | k8s-bridge RSS / churn peak | speakerd RSS before / churn peak | bytes to speakerd per change | pushes (incremental) | k8s-bridge CPU per change |\n|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|");
        let _ = writeln!(
            d,
            "| {} | {:.2} s | {} | {} | {} | {} | {} | {} ({}) | {} / {} | {} / {} ({speakerd_ratio}) | {} | {:.0} ({:.0}) | {:.2} ms |{}",
            r.changes.len(),
            r.written_in,
            ms(pct(&all, 50.0)),
            ms(pct(&all, 99.0)),
            ms(all.iter().max().copied()),
            r.missed(),
            r.spurious,
            r.routes_end.0,
            r.routes_end.1,
            mb(r.bridge_churn_mem.0),
            mb(r.bridge_churn_mem.1),
            mb(r.speakerd_before_churn),
            mb(r.speakerd_churn_mem.1),
            r.bytes_per_change().map_or("–".into(), |b| format!("{b:.0} B")),
            r.churn_push.1,
            r.churn_push.2,
            if r.changes.is_empty() { 0.0 } else { r.churn_cpu * 1000.0 / r.changes.len() as f64 },
            if r.capture_drops > 0 { format!(" the capture lost {} frames", r.capture_drops) } else { String::new() }
        );
        let _ =
            writeln!(d, "\n| change | count | p50 | p99 | max | never on the wire |\n|---|---:|---:|---:|---:|---:|");
        for (kind, what) in [(ChangeKind::Slice, "EndpointSlice"), (ChangeKind::Service, "Service")] {
            for (announce, dir) in [(false, "withdrawal"), (true, "announcement")] {
                let pick = |c: &ChangeSample| c.kind == kind && c.announce == announce;
                let l = r.latencies(pick);
                let n = r.changes.iter().filter(|c| pick(c)).count();
                let _ = writeln!(
                    d,
                    "| {what}, {dir} | {n} | {} | {} | {} | {} |",
                    ms(pct(&l, 50.0)),
                    ms(pct(&l, 99.0)),
                    ms(l.iter().max().copied()),
                    n - l.len()
                );
            }
        }
        let _ = writeln!(d, "\n![k8s-bridge change latency under churn](bench/k8s-cluster-latency.svg)\n");
        let _ = writeln!(d, "Targets (issue 21): every route at the router ≤ 2 s after k8s-bridge starts; change → UPDATE p50 ≤ 10 ms and p99 ≤ 50 ms under the churn, none missed; k8s-bridge RSS ≤ 64 MB; bytes per change proportional to the change (≤ 3× one route's share of a full push), not to the whole set; speakerd's peak unaffected by the churn (≤ 1.1× its RSS before it).\n");
    }

    /// The plot of this workload: (file name, SVG).
    pub fn k8s_cluster_plots(&self) -> Vec<(String, String)> {
        let Some(r) = &self.k8sc else { return vec![] };
        let series = |kind: ChangeKind| -> Vec<(f64, f64)> {
            r.changes
                .iter()
                .filter(|c| c.kind == kind)
                .filter_map(|c| Some((c.at, c.latency?.as_secs_f64() * 1000.0)))
                .collect()
        };
        vec![(
            "k8s-cluster-latency.svg".into(),
            scatter(
                &format!("k8s-bridge: change → UPDATE on the wire, {} changes/s, {} Services", r.rate, r.services),
                "seconds into the churn (write)",
                "ms",
                vec![
                    ("EndpointSlice".into(), series(ChangeKind::Slice)),
                    ("Service".into(), series(ChangeKind::Service)),
                ],
                &[(10.0, "p50 target"), (50.0, "p99 target")],
            ),
        )]
    }

    /// What is missing for this workload's figures to be real (empty: nothing).
    pub fn k8s_cluster_missing(&self, plan: &Plan) -> Vec<String> {
        if !plan.wants("k8sc") {
            return vec![];
        }
        let Some(r) = &self.k8sc else { return vec!["k8s-bridge at cluster scale: did not run".into()] };
        let mut out = vec![];
        if let Some(e) = &r.err {
            out.push(format!("k8s-bridge at cluster scale: {e}"));
        }
        if r.changes.len() != plan.k8sc.changes() || r.missed() > 0 {
            out.push(format!(
                "k8s-bridge at cluster scale: {} of {} changes written, {} never on the wire",
                r.changes.len(),
                plan.k8sc.changes(),
                r.missed()
            ));
        }
        if r.routes_end.0 != r.routes_end.1 || r.to_router.is_none() || r.sync_push.0 <= 0.0 || r.bridge_sync_mem.0 == 0
        {
            out.push(format!(
                "k8s-bridge at cluster scale: routes at the router after the churn {:?}, initial sync {:?}, push bytes {} B, RSS {}",
                r.routes_end, r.to_router, r.sync_push.0, r.bridge_sync_mem.0
            ));
        }
        out
    }
}

/// A scatter plot with a linear x axis from 0 and a logarithmic y axis, with dashed horizontal lines
/// at `marks`.
fn scatter(
    title: &str,
    xlabel: &str,
    ylabel: &str,
    series: Vec<(String, Vec<(f64, f64)>)>,
    marks: &[(f64, &str)],
) -> String {
    const COLORS: [&str; 4] = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a"];
    let (w, h, l, r, t, b) = (720.0, 420.0, 70.0, 190.0, 40.0, 50.0);
    let pts: Vec<(f64, f64)> = series.iter().flat_map(|s| s.1.iter().copied()).filter(|p| p.1 > 0.0).collect();
    let x1 = pts.iter().map(|p| p.0).fold(1.0f64, f64::max).ceil();
    let ys = pts.iter().map(|p| p.1).chain(marks.iter().map(|m| m.0));
    let (mut y0, mut y1) = (f64::MAX, f64::MIN);
    for y in ys {
        y0 = y0.min(y.log10());
        y1 = y1.max(y.log10());
    }
    let (y0, y1) = (y0.floor(), y1.ceil().max(y0.floor() + 1.0));
    let px = |x: f64| l + x / x1 * (w - l - r);
    let py = |y: f64| h - b - (y.log10() - y0) / (y1 - y0) * (h - t - b);
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n");
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{title}</text>",
        (w - r + l) / 2.0
    );
    let step = if x1 > 20.0 { 5.0 } else { 1.0 };
    let mut x = 0.0;
    while x <= x1 {
        let xp = px(x);
        let _ = writeln!(s, "<line x1=\"{xp:.1}\" y1=\"{t}\" x2=\"{xp:.1}\" y2=\"{}\" stroke=\"#ddd\"/><text x=\"{xp:.1}\" y=\"{}\" text-anchor=\"middle\">{x}</text>", h - b, h - b + 16.0);
        x += step;
    }
    for e in y0 as i32..=y1 as i32 {
        let y = py(10f64.powi(e));
        let _ = writeln!(s, "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>", w - r, l - 6.0, y + 4.0, 10f64.powi(e));
    }
    let _ = writeln!(s, "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xlabel}</text>", (w - r + l) / 2.0, h - 12.0);
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\">{ylabel} (log)</text>",
        (h - b + t) / 2.0
    );
    for (v, name) in marks {
        let y = py(*v);
        let _ = writeln!(s, "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#c00\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{:.1}\" fill=\"#c00\">{name}</text>", w - r, w - r + 6.0, y + 4.0);
    }
    for (i, (name, p)) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        // one path of zero-length round-capped segments: a dot per point at a fifth of the bytes of
        // a <circle> each
        let mut d = String::new();
        for (x, y) in p.iter().filter(|p| p.1 > 0.0) {
            let _ = write!(d, "M{:.1} {:.1}h0", px(*x), py(*y));
        }
        let _ = writeln!(
            s,
            "<path d=\"{d}\" stroke=\"{c}\" stroke-width=\"3.2\" stroke-linecap=\"round\" stroke-opacity=\"0.7\" fill=\"none\"/>"
        );
        let ly = t + 50.0 + i as f64 * 18.0;
        let _ = writeln!(s, "<rect x=\"{}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{c}\"/><text x=\"{}\" y=\"{ly}\">{name} ({})</text>", w - r + 12.0, ly - 10.0, w - r + 30.0, p.len());
    }
    s + "</svg>\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_alternates_and_each_route_changes_once_per_direction() {
        // (lag, changes): every unit goes up after it went down (or started down), never twice in a row
        for (lag, n) in [(15, 40), (150, 3000), (1, 10)] {
            let mut down: BTreeSet<usize> = (0..lag).collect();
            for c in 0..n {
                let ch = change(c, lag);
                assert_eq!(ch.announce, c % 2 == 0, "lag {lag} change {c}: alternates");
                if ch.announce {
                    assert!(down.remove(&ch.unit), "lag {lag} change {c}: unit {} comes up while down", ch.unit);
                } else {
                    assert!(down.insert(ch.unit), "lag {lag} change {c}: unit {} goes down while up", ch.unit);
                }
            }
            assert_eq!(down.len(), lag, "lag {lag}: {lag} routes down at any time");
        }
    }

    #[test]
    fn units_are_distinct_services_and_service_changes_avoid_this_node() {
        for (services, endpoints, nodes) in [(50, 5, 3), (10_000, 10, 100), (7, 2, 2)] {
            let cp = ClusterPlan { nodes, services, endpoints, rate: 1, churn: Duration::ZERO, lag: 1 };
            let all: BTreeSet<usize> = (0..services).map(|m| unit_service(m, services)).collect();
            assert_eq!(all.len(), services, "{services}: the stride visits every Service once");
            for m in 0..services {
                let i = unit_service(m, services);
                let here = (0..endpoints).any(|j| endpoint_node(i, j, &cp) == 0);
                assert_eq!(here, i.is_multiple_of(10), "{services}: Service {i} has an endpoint on this node");
                if unit_kind(m, services) == ChangeKind::Service {
                    assert!(!here, "{services}: a Service change must withdraw (no endpoint here)");
                }
                assert!((0..endpoints).all(|j| endpoint_node(i, j, &cp) < nodes));
            }
        }
    }

    #[test]
    fn update_routes_found_across_segments() {
        let p = |a: [u8; 4]| u32::from_be_bytes(a);
        let ann = wire::updates(
            &[IpAddr::V4(Ipv4Addr::new(10, 64, 0, 1)), IpAddr::V4(Ipv4Addr::new(10, 64, 0, 255))],
            64500,
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv6Addr::LOCALHOST,
        );
        // a withdrawal of 10.64.1.7/32: withdrawn routes length 5, no attributes
        let mut wd = vec![0xff; 16];
        wd.extend_from_slice(&(19u16 + 2 + 5 + 2).to_be_bytes());
        wd.extend_from_slice(&[2, 0, 5, 32, 10, 64, 1, 7, 0, 0]);
        let ka = wire::keepalive();
        let stream = [ka.clone(), ann.clone(), wd.clone(), ka.clone()].concat();
        let want = vec![(p([10, 64, 0, 1]), true), (p([10, 64, 0, 255]), true), (p([10, 64, 1, 7]), false)];
        // (case, cut points of the stream into segments, a segment sent twice)
        let cases: Vec<(&str, Vec<usize>, Option<usize>)> = vec![
            ("one segment", vec![], None),
            ("cut in a marker", vec![ka.len() + 7], None),
            ("cut in every message", vec![3, ka.len() + 20, ka.len() + ann.len() + 21], None),
            ("byte by byte", (1..stream.len()).collect(), None),
            ("a retransmission", vec![ka.len() + 10, ka.len() + ann.len() + 4], Some(1)),
        ];
        for (case, cuts, again) in cases {
            let mut s = Stream::default();
            let mut got = vec![];
            let mut bounds = vec![0];
            bounds.extend(cuts);
            bounds.push(stream.len());
            for (k, w) in bounds.windows(2).enumerate() {
                let seq = 1000u32.wrapping_add(w[0] as u32);
                got.extend(s.segment(seq, &stream[w[0]..w[1]]));
                if again == Some(k) {
                    got.extend(s.segment(seq, &stream[w[0]..w[1]]));
                }
            }
            assert_eq!(got, want, "{case}");
        }
    }

    #[test]
    fn target_rows_never_met_on_a_failed_or_incomplete_run() {
        let sample = |ms: u64, seen: bool| ChangeSample {
            at: 0.0,
            kind: ChangeKind::Slice,
            announce: true,
            latency: seen.then(|| Duration::from_millis(ms)),
        };
        let good = || ClusterRow {
            services: 50,
            nodes: 3,
            rate: 20,
            routes_initial: 35,
            to_router: Some(Duration::from_millis(500)),
            bridge_sync_mem: (30_000_000, 31_000_000),
            bridge_churn_mem: (32_000_000, 33_000_000),
            sync_push: (700.0, 1.0, 0.0),
            churn_push: (40.0 * 25.0, 30.0, 30.0),
            speakerd_before_churn: 25_000_000,
            speakerd_churn_mem: (25_000_000, 26_000_000),
            changes: (0..40).map(|k| sample(5 + k % 3, true)).collect(),
            ..ClusterRow::default()
        };
        // (case, the row, want met? per target: sync, latency, RSS, bytes, speakerd; want failed runs named)
        type Case = (&'static str, ClusterRow, [Option<bool>; 5], [bool; 5]);
        let cases: Vec<Case> = vec![
            ("all met", good(), [Some(true); 5], [false; 5]),
            (
                "slow and big",
                ClusterRow {
                    to_router: Some(Duration::from_secs(3)),
                    changes: (0..40).map(|_| sample(60, true)).collect(),
                    bridge_churn_mem: (65_000_000, 70_000_000),
                    churn_push: (40.0 * 700.0, 1.0, 0.0),
                    speakerd_churn_mem: (25_000_000, 40_000_000),
                    ..good()
                },
                [Some(false); 5],
                [false; 5],
            ),
            (
                "a change never on the wire",
                ClusterRow {
                    changes: [sample(5, true), sample(0, false)].to_vec(),
                    churn_push: (2.0 * 25.0, 2.0, 2.0),
                    ..good()
                },
                [Some(true); 5],
                [false, true, false, false, false],
            ),
            ("the run failed", ClusterRow { err: Some("boom".into()), ..good() }, [Some(true); 5], [true; 5]),
            (
                "the sync pushed incrementally: no full push to compare with",
                ClusterRow { sync_push: (700.0, 2.0, 1.0), ..good() },
                [Some(true), Some(true), Some(true), None, Some(true)],
                [false; 5],
            ),
        ];
        for (case, row, want_ok, want_failed) in cases {
            let plan = Plan::preset(false, vec![]);
            let mut res = Results::new(&plan);
            res.k8sc = Some(row);
            let rows = res.k8s_cluster_targets();
            assert_eq!(rows.len(), 5, "{case}");
            for (k, (what, got, ok, failed)) in rows.into_iter().enumerate() {
                assert_eq!(ok, want_ok[k], "{case}: {what}: {got}");
                assert_eq!(!failed.is_empty(), want_failed[k], "{case}: {what}: {failed:?}");
            }
        }
    }

    #[test]
    fn objects_look_like_a_real_cluster() {
        let cp = ClusterPlan::preset(true);
        let size = |v: &Value| serde_json::to_vec(v).unwrap().len();
        let node = node_obj(7, "10.250.0.8");
        assert!((10_000..=20_000).contains(&size(&node)), "a Node is {} bytes", size(&node));
        let s = service_obj(42, false, 0);
        assert_eq!(s["status"]["loadBalancer"]["ingress"][0]["ip"], "10.64.0.43");
        assert_eq!(s["metadata"]["managedFields"].as_array().map(Vec::len), Some(2));
        let applied: Value = serde_json::from_str(
            s["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(applied["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(service_obj(42, true, 0)["spec"]["externalTrafficPolicy"], "Local");
        let e = slice_obj(42, &cp, false, 0);
        assert_eq!(e["metadata"]["labels"]["kubernetes.io/service-name"], "web-00042");
        assert_eq!(e["endpoints"].as_array().map(Vec::len), Some(10));
        assert_eq!(e["endpoints"][3]["conditions"]["ready"], false);
        assert_eq!(e["metadata"]["ownerReferences"][0]["uid"], s["metadata"]["uid"]);
    }
}
