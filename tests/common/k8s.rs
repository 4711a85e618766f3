//! Kubernetes side of the end-to-end tests: the in-process fake API server (from `tests/fake-apiserver`)
//! on its own runtime, object builders, and k8s-bridge processes.
use super::lab::{Host, Proc};
use super::peers::{Gobgpd, Neighbor, PeerConfig};
use super::speakerd::{bin_path, Speakerd};
use fake_apiserver::FakeApiServer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The fake API server on its own runtime (the test body is synchronous and blocks in waits).
pub struct Api {
    pub server: FakeApiServer,
    pub rt: tokio::runtime::Runtime,
    pub kubeconfig: PathBuf,
}

impl Api {
    pub fn start(dir: &Path) -> Api {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let server = rt.block_on(FakeApiServer::start());
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        Api { server, rt, kubeconfig }
    }

    pub fn apply(&self, obj: Value) {
        let _g = self.rt.enter();
        self.server.apply(obj);
    }

    pub fn apply_yaml(&self, text: &str) {
        use serde::Deserialize;
        for d in serde_yaml::Deserializer::from_str(text) {
            let v = Value::deserialize(d).unwrap();
            if !v.is_null() {
                self.apply(v);
            }
        }
    }

    pub fn install_crds(&self) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/base/crds");
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "yaml") {
                self.apply_yaml(&std::fs::read_to_string(&p).unwrap());
            }
        }
    }

    /// Changes how the server answers (refuse, hang, 500, 401, normal) and returns once it does.
    pub fn set_mode(&self, m: fake_apiserver::Mode) {
        self.rt.block_on(self.server.set_mode(m));
    }

    pub fn delete(&self, api_version: &str, kind: &str, ns: Option<&str>, name: &str) {
        let _g = self.rt.enter();
        self.server.delete(api_version, kind, ns, name).unwrap_or_else(|e| panic!("delete {kind} {name}: {e:?}"));
    }

    /// Events whose `regarding` (events.k8s.io) or `involvedObject` (core) is `kind`/`name`.
    pub fn events_about(&self, kind: &str, name: &str) -> Vec<Value> {
        self.server
            .events()
            .into_iter()
            .filter(|e| {
                let r = if e["regarding"].is_object() { &e["regarding"] } else { &e["involvedObject"] };
                r["kind"] == kind && r["name"] == name
            })
            .collect()
    }
}

pub fn node(name: &str, ip: &str, zone: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "zone": zone}},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}],
                   "conditions": [{"type": "Ready", "status": "True"}]}})
}

pub fn service(name: &str, ip: &str, etp: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "externalTrafficPolicy": etp, "ports": [{"port": 80, "protocol": "TCP"}]},
        "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})
}

/// An EndpointSlice of `svc` with endpoints (node, ready, serving, terminating).
pub fn endpoints_with(svc: &str, eps: &[(&str, bool, bool, bool)]) -> Value {
    let list: Vec<Value> = eps
        .iter()
        .enumerate()
        .map(|(i, (n, r, s, t))| json!({"addresses": [format!("10.244.9.{}", i + 1)], "nodeName": n, "conditions": {"ready": r, "serving": s, "terminating": t}}))
        .collect();
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-abc"), "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4", "endpoints": list, "ports": [{"port": 8080, "protocol": "TCP"}]})
}

pub fn endpoints(svc: &str, on_node: &str) -> Value {
    json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{svc}-abc"), "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.1.5"], "nodeName": on_node, "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"port": 8080, "protocol": "TCP"}]})
}

/// k8s-bridge for one node, in the host namespace (it reaches the API server on loopback and speakerd
/// through the socket file).
pub fn bridge(api: &Api, node: &str, sp: &Speakerd, metrics_port: u16) -> Proc {
    bridge_with(api, node, sp, metrics_port, &["--resync-secs", "5"])
}

/// [`bridge`] with other flags (the benchmark runs it with its defaults: `&[]`).
pub fn bridge_with(api: &Api, node: &str, sp: &Speakerd, metrics_port: u16, extra: &[&str]) -> Proc {
    let bin = bin_path("k8s-bridge");
    let log = sp.dir().join("k8s-bridge.log");
    let socket = sp.socket().display().to_string();
    let metrics = format!("127.0.0.1:{metrics_port}");
    let kubeconfig = api.kubeconfig.display().to_string();
    // Each bridge is a new pod: owner of what it writes ([`pod_uid`]).
    let (pod, uid) = (format!("speaker-{node}-{metrics_port}"), pod_uid(node, metrics_port));
    Proc::spawn(
        &format!("k8s-bridge {node}"),
        &[&[bin.to_str().unwrap(), "--node-name", node, "--socket", &socket, "--metrics", &metrics][..], extra]
            .concat(),
        &log,
        &[
            ("KUBECONFIG", &kubeconfig),
            ("RUST_LOG", "info,k8s_bridge=debug"),
            ("METALLB_POD_NAME", &pod),
            ("METALLB_POD_UID", &uid),
        ],
        None,
    )
}

/// The pod UID [`bridge`] gives the bridge of `node` with metrics on `metrics_port`.
pub fn pod_uid(node: &str, metrics_port: u16) -> String {
    format!("uid-{node}-{metrics_port}")
}

/// The UIDs in `obj`'s ownerReferences.
pub fn owner_uids(obj: &Value) -> Vec<String> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .map(|rs| rs.iter().filter_map(|r| r["uid"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

pub fn metric(port: u16, name: &str) -> Result<f64, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(|e| e.to_string())?;
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .ok_or_else(|| format!("{name} not in {body}"))
}

/// speakerd for a Kubernetes node: named, gossip on its eth0 address (seeds come from k8s-bridge),
/// fast GARP repeats, active BGP only.
pub fn start_node(h: &Host, name: &str) -> Speakerd {
    Speakerd::builder(h).l2_node(name, h.v4, None).start()
}

/// The AS of speakerd on every node.
pub const SPK_ASN: u32 = 64500;
/// The AS of the cluster's router, gobgpd ([`gobgpd_router`]).
pub const GOBGP_ASN: u32 = 64510;

/// gobgpd on `host` as the cluster's router: AS [`GOBGP_ASN`], one passive session per node (AS
/// [`SPK_ASN`]), in the order given. Passive because speakerd connects (the nodes' BGPPeers say so) and
/// an active gobgpd waits seconds before its first connect.
pub fn gobgpd_router<'a>(host: &Host, nodes: impl IntoIterator<Item = &'a Host>) -> Gobgpd {
    let cfg = nodes
        .into_iter()
        .fold(PeerConfig::new(GOBGP_ASN, host.v4), |cfg, n| cfg.neighbor(Neighbor::new(n.v4, SPK_ASN).passive()));
    Gobgpd::start(host, cfg)
}
