//! The parts of Services, EndpointSlices and Nodes that decide announcements, decoded once from the
//! API's JSON ([`crate::slim`]) so that the translation is plain data in, plain data out.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

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
    pub annotations: Pairs,
    /// For advertisements' serviceSelectors.
    pub labels: Pairs,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Endpoint {
    /// Shared between the endpoints on one node ([`crate::slim`] interns node names).
    pub node: Option<Arc<str>>,
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
    pub labels: Pairs,
    /// The NetworkUnavailable condition is True.
    pub network_unavailable: bool,
    /// Cordoned (spec.unschedulable).
    pub unschedulable: bool,
    /// InternalIP addresses, for gossip seeds.
    pub internal_ips: Vec<IpAddr>,
}

impl NodeInfo {
    pub fn excluded(&self) -> bool {
        self.labels.get(EXCLUDE_LB_LABEL).is_some()
    }
}

/// A few string pairs (labels, annotations), sorted by key, held in one exact-sized allocation: a
/// B-tree map allocates a node of eleven slots for a single entry, and every Service has a few.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pairs(Box<[(String, String)]>);

impl Pairs {
    pub fn get(&self, key: &str) -> Option<&str> {
        let i = self.0.binary_search_by(|(k, _)| k.as_str().cmp(key)).ok()?;
        Some(&self.0[i].1)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A key given twice keeps its last value, as a map would.
impl FromIterator<(String, String)> for Pairs {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(it: I) -> Self {
        let mut v: Vec<(String, String)> = it.into_iter().collect();
        // stable: of equal keys the last given stays last, and dedup keeps the first of a run
        v.reverse();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.dedup_by(|a, b| a.0 == b.0);
        Pairs(v.into_boxed_slice())
    }
}

impl From<BTreeMap<String, String>> for Pairs {
    fn from(m: BTreeMap<String, String>) -> Self {
        Pairs(m.into_iter().collect::<Vec<_>>().into_boxed_slice())
    }
}

impl<const N: usize> From<[(&str, &str); N]> for Pairs {
    fn from(a: [(&str, &str); N]) -> Self {
        a.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

/// Whether the bridge reads an annotation: MetalLB's own (`metallb.io/…`, `metallb.universe.tf/…`).
/// The rest (kubectl's last-applied-configuration above all) is not kept.
pub fn read_annotation(key: &str) -> bool {
    key.starts_with("metallb.io/") || key.starts_with("metallb.universe.tf/")
}

/// The cluster as the translation sees it (shared with the index the watches keep: a whole translation
/// copies pointers, not objects).
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    pub services: Vec<Arc<Svc>>,
    pub slices: Vec<Arc<Slice>>,
    pub nodes: Vec<Arc<NodeInfo>>,
}

/// (namespace, name) of a Service, or of an EndpointSlice.
pub type Key = (String, String);

/// The Services, EndpointSlices and Nodes as the watches deliver them, reduced on arrival (the API
/// objects are never kept), with what a change touches: the watch tasks put and remove objects, each
/// call says whether the reduced object changed and which Services that affects.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Index {
    pub services: BTreeMap<Key, Arc<Svc>>,
    /// UID of each Service, for the references of Events.
    pub uids: BTreeMap<Key, String>,
    /// EndpointSlices by (namespace, slice name).
    pub slices: BTreeMap<Key, Arc<Slice>>,
    /// (namespace, Service) → names of its EndpointSlices (usually one: a list, not a set).
    pub slices_of: BTreeMap<Key, Vec<String>>,
    pub nodes: BTreeMap<String, Arc<NodeInfo>>,
}

impl Index {
    /// Stores a Service; whether what the translation reads changed.
    pub fn put_service(&mut self, svc: Svc, uid: String) -> bool {
        let key = (svc.namespace.clone(), svc.name.clone());
        self.uids.insert(key.clone(), uid);
        let svc = Arc::new(svc);
        self.services.insert(key, svc.clone()).as_deref() != Some(&*svc)
    }

    pub fn remove_service(&mut self, key: &Key) -> bool {
        self.uids.remove(key);
        self.services.remove(key).is_some()
    }

    /// Stores an EndpointSlice named `name`; the Services whose endpoints changed (the slice's old
    /// Service too, if its label moved it).
    pub fn put_slice(&mut self, name: String, slice: Slice) -> Vec<Key> {
        let key = (slice.namespace.clone(), name.clone());
        let owner = (slice.namespace.clone(), slice.service.clone());
        let slice = Arc::new(slice);
        let old = self.slices.insert(key.clone(), slice.clone());
        let mut touched = Vec::new();
        match &old {
            Some(o) if **o == *slice => return touched,
            Some(o) if o.service != slice.service => {
                let old_owner = (o.namespace.clone(), o.service.clone());
                self.unlink(&old_owner, &name);
                touched.push(old_owner);
            }
            _ => {}
        }
        let names = self.slices_of.entry(owner.clone()).or_default();
        if let Err(at) = names.binary_search(&name) {
            names.insert(at, name);
        }
        touched.push(owner);
        touched
    }

    /// Forgets an EndpointSlice; the Service it belonged to, if it was known.
    pub fn remove_slice(&mut self, key: &Key) -> Option<Key> {
        let old = self.slices.remove(key)?;
        let owner = (old.namespace.clone(), old.service.clone());
        self.unlink(&owner, &key.1);
        Some(owner)
    }

    fn unlink(&mut self, owner: &Key, slice: &str) {
        if let Some(names) = self.slices_of.get_mut(owner) {
            names.retain(|n| n != slice);
            if names.is_empty() {
                self.slices_of.remove(owner);
            }
        }
    }

    /// Stores a Node; whether what the translation reads changed.
    pub fn put_node(&mut self, node: NodeInfo) -> bool {
        let node = Arc::new(node);
        self.nodes.insert(node.name.clone(), node.clone()).as_deref() != Some(&*node)
    }

    pub fn remove_node(&mut self, name: &str) -> bool {
        self.nodes.remove(name).is_some()
    }

    /// Replaces every Service (a relist); the previous ones go.
    pub fn set_services(&mut self, all: Vec<(Svc, String)>) {
        self.services.clear();
        self.uids.clear();
        for (s, uid) in all {
            self.put_service(s, uid);
        }
    }

    /// Replaces every EndpointSlice (a relist).
    pub fn set_slices(&mut self, all: Vec<(String, Slice)>) {
        self.slices.clear();
        self.slices_of.clear();
        for (name, s) in all {
            self.put_slice(name, s);
        }
    }

    /// Replaces every Node (a relist).
    pub fn set_nodes(&mut self, all: Vec<NodeInfo>) {
        self.nodes = all.into_iter().map(|n| (n.name.clone(), Arc::new(n))).collect();
    }

    /// Everything, for a whole translation.
    pub fn cluster(&self) -> Cluster {
        Cluster {
            services: self.services.values().cloned().collect(),
            slices: self.slices.values().cloned().collect(),
            nodes: self.nodes.values().cloned().collect(),
        }
    }

    /// The given Services (those that exist), their EndpointSlices and every Node.
    pub fn part(&self, services: &BTreeSet<Key>) -> Cluster {
        let mut c = Cluster { nodes: self.nodes.values().cloned().collect(), ..Default::default() };
        for k in services {
            if let Some(s) = self.services.get(k) {
                c.services.push(s.clone());
            }
            for name in self.slices_of.get(k).into_iter().flatten() {
                if let Some(sl) = self.slices.get(&(k.0.clone(), name.clone())) {
                    c.slices.push(sl.clone());
                }
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::Pairs;

    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [(&'a str, Option<&'a str>)], usize);

    #[test]
    fn pairs_read_as_a_map() {
        let cases: &[Case] = &[
            (&[], &[("a", None)], 0),
            (&[("b", "2"), ("a", "1")], &[("a", Some("1")), ("b", Some("2")), ("c", None)], 2),
            // a key given twice keeps its last value
            (&[("k", "old"), ("x", "y"), ("k", "new")], &[("k", Some("new")), ("x", Some("y"))], 2),
            (&[("z", ""), ("a", "v")], &[("z", Some("")), ("", None)], 2),
        ];
        for (given, lookups, len) in cases {
            let p: Pairs = given.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            assert_eq!(p.len(), *len, "{given:?}");
            let keys: Vec<&str> = p.iter().map(|(k, _)| k).collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "{given:?}: sorted, no repeats");
            for (k, want) in *lookups {
                assert_eq!(p.get(k), *want, "{given:?}: {k}");
            }
        }
    }
}
