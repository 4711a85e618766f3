//! The parts of Services, EndpointSlices and Nodes that decide announcements, taken out of the
//! k8s-openapi types once so that the translation is plain data in, plain data out.
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Node label that keeps a node out of external load balancers (honoured as MetalLB does).
pub const EXCLUDE_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Svc {
    pub namespace: String,
    pub name: String,
    pub load_balancer: bool,
    pub lb_class: Option<String>,
    pub etp_local: bool,
    /// IPs from status.loadBalancer.ingress.
    pub ips: Vec<IpAddr>,
    pub annotations: BTreeMap<String, String>,
    /// For advertisements' serviceSelectors.
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    pub node: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// One EndpointSlice, keyed to its Service by the `kubernetes.io/service-name` label.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Slice {
    pub namespace: String,
    pub service: String,
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// The NetworkUnavailable condition is True.
    pub network_unavailable: bool,
    /// Cordoned (spec.unschedulable).
    pub unschedulable: bool,
    /// InternalIP addresses, for gossip seeds.
    pub internal_ips: Vec<IpAddr>,
}

impl NodeInfo {
    pub fn excluded(&self) -> bool {
        self.labels.contains_key(EXCLUDE_LB_LABEL)
    }
}

impl From<&Service> for Svc {
    fn from(s: &Service) -> Self {
        let spec = s.spec.clone().unwrap_or_default();
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
            load_balancer: spec.type_.as_deref() == Some("LoadBalancer"),
            lb_class: spec.load_balancer_class.clone(),
            etp_local: spec.external_traffic_policy.as_deref() == Some("Local"),
            ips,
            annotations: s.metadata.annotations.clone().unwrap_or_default(),
            labels: s.metadata.labels.clone().unwrap_or_default(),
        }
    }
}

impl From<&EndpointSlice> for Slice {
    fn from(s: &EndpointSlice) -> Self {
        let service =
            s.metadata.labels.as_ref().and_then(|l| l.get("kubernetes.io/service-name")).cloned().unwrap_or_default();
        let endpoints = s
            .endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                // API semantics: an unknown `ready` is to be read as ready; `serving` defaults to `ready`.
                let ready = c.ready.unwrap_or(true);
                Endpoint {
                    node: e.node_name.clone(),
                    ready,
                    serving: c.serving.unwrap_or(ready),
                    terminating: c.terminating.unwrap_or(false),
                }
            })
            .collect();
        Slice { namespace: s.metadata.namespace.clone().unwrap_or_default(), service, endpoints }
    }
}

impl From<&Node> for NodeInfo {
    fn from(n: &Node) -> Self {
        let status = n.status.clone().unwrap_or_default();
        let network_unavailable =
            status.conditions.unwrap_or_default().iter().any(|c| c.type_ == "NetworkUnavailable" && c.status == "True");
        let internal_ips = status
            .addresses
            .unwrap_or_default()
            .iter()
            .filter(|a| a.type_ == "InternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        NodeInfo {
            name: n.metadata.name.clone().unwrap_or_default(),
            labels: n.metadata.labels.clone().unwrap_or_default(),
            network_unavailable,
            unschedulable: n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
            internal_ips,
        }
    }
}

/// The cluster as the translation sees it.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub services: Vec<Svc>,
    pub slices: Vec<Slice>,
    pub nodes: Vec<NodeInfo>,
}
