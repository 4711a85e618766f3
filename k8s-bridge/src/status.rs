//! MetalLB's status objects, written by the node they are about: a ServiceBGPStatus per Service this
//! node advertises over BGP (with the peers it goes to) and a ServiceL2Status per Service whose IP this
//! node answers ARP/NDP for (with the interfaces). Names are derived from node and Service, labels
//! `metallb.io/node`, `metallb.io/service-name` and `metallb.io/service-namespace` as MetalLB sets them.
//! Objects of this node that no longer apply are deleted.
use crate::translate::{Desired, Protocol};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use serde_json::{json, Value};
use speaker_api::v1 as pb;
use std::collections::{BTreeMap, BTreeSet};

pub const NODE_LABEL: &str = "metallb.io/node";

/// One status object as it should be: (kind, name) → (labels, status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub kind: &'static str,
    pub name: String,
    pub service_namespace: String,
    pub service_name: String,
    pub status: Value,
}

/// 64-bit FNV-1a, hex: a short stable suffix for object names (names must be ≤ 253 characters and
/// Service names may be long).
fn short_hash(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The status objects this node should have. `l2` is speakerd's view of the Layer 2 announcements
/// (which node answers, on which interfaces).
pub fn wanted(node: &str, d: &Desired, l2: &[pb::L2Announcement]) -> Vec<Wanted> {
    let peer_names: Vec<String> = d
        .peers
        .iter()
        .map(|p| {
            if p.name.is_empty() {
                p.address.clone()
            } else {
                p.name.clone()
            }
        })
        .collect();
    let mut bgp: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut l2_ifs: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for s in &d.services {
        let key = (s.namespace.clone(), s.name.clone());
        match s.protocol {
            Protocol::Bgp => {
                let peers = bgp.entry(key).or_default();
                for a in d.bgp.iter().filter(|a| {
                    a.prefix
                        .parse::<ipnet::IpNet>()
                        .is_ok_and(|n| n.contains(&s.ip))
                }) {
                    if a.peers.is_empty() {
                        peers.extend(peer_names.iter().cloned());
                    } else {
                        peers.extend(a.peers.iter().filter(|p| peer_names.contains(p)).cloned());
                    }
                }
            }
            Protocol::Layer2 => {
                let ip = s.ip.to_string();
                if let Some(a) = l2
                    .iter()
                    .find(|a| a.ip == ip && a.owner_node == node && !a.answering_on.is_empty())
                {
                    let ifs = l2_ifs.entry(key).or_default();
                    ifs.extend(
                        a.answering_on
                            .iter()
                            .filter_map(|x| x.split_whitespace().next())
                            .map(str::to_string),
                    );
                }
            }
        }
    }
    let mut out = Vec::new();
    for ((ns, name), peers) in bgp {
        out.push(Wanted {
            kind: "ServiceBGPStatus",
            name: format!("bgp-{}", short_hash(&format!("{node}/{ns}/{name}"))),
            status: json!({"node": node, "serviceName": name, "serviceNamespace": ns, "peers": peers}),
            service_namespace: ns,
            service_name: name,
        });
    }
    for ((ns, name), ifs) in l2_ifs {
        let interfaces: Vec<Value> = ifs.iter().map(|i| json!({"name": i})).collect();
        out.push(Wanted {
            kind: "ServiceL2Status",
            name: format!("l2-{}", short_hash(&format!("{node}/{ns}/{name}"))),
            status: json!({"node": node, "serviceName": name, "serviceNamespace": ns, "interfaces": interfaces}),
            service_namespace: ns,
            service_name: name,
        });
    }
    out
}

/// Keeps this node's status objects equal to [`wanted`].
pub struct StatusWriter {
    node: String,
    apis: [(&'static str, Api<DynamicObject>); 2],
    /// What the API server has, as last written or listed: (kind, name) → status.
    known: Option<BTreeMap<(&'static str, String), Value>>,
}

impl StatusWriter {
    pub fn new(client: kube::Client, namespace: &str, node: &str) -> Self {
        let ar = |kind: &str, plural: &str| {
            ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("metallb.io", "v1beta1", kind),
                plural,
            )
        };
        let l2 = ar("ServiceL2Status", "servicel2statuses");
        let bgp = ar("ServiceBGPStatus", "servicebgpstatuses");
        StatusWriter {
            node: node.to_string(),
            apis: [
                (
                    "ServiceL2Status",
                    Api::namespaced_with(client.clone(), namespace, &l2),
                ),
                (
                    "ServiceBGPStatus",
                    Api::namespaced_with(client, namespace, &bgp),
                ),
            ],
            known: None,
        }
    }

    fn api(&self, kind: &str) -> &Api<DynamicObject> {
        &self
            .apis
            .iter()
            .find(|(k, _)| *k == kind)
            .expect("known kind")
            .1
    }

    /// Lists this node's objects once (after a start or an error), then writes only differences.
    pub async fn sync(&mut self, want: &[Wanted]) -> Result<(), kube::Error> {
        if self.known.is_none() {
            let mut known = BTreeMap::new();
            let lp = ListParams::default().labels(&format!("{NODE_LABEL}={}", self.node));
            for (kind, api) in &self.apis {
                for o in api.list(&lp).await? {
                    let status = o.data.get("status").cloned().unwrap_or(Value::Null);
                    known.insert((*kind, o.metadata.name.clone().unwrap_or_default()), status);
                }
            }
            self.known = Some(known);
        }
        let r = self.write(want).await;
        if r.is_err() {
            self.known = None;
        }
        r
    }

    async fn write(&mut self, want: &[Wanted]) -> Result<(), kube::Error> {
        let known = self.known.clone().unwrap_or_default();
        let wanted_keys: BTreeSet<(&'static str, String)> =
            want.iter().map(|w| (w.kind, w.name.clone())).collect();
        for w in want {
            let key = (w.kind, w.name.clone());
            if known.get(&key) == Some(&w.status) {
                continue;
            }
            let api = self.api(w.kind);
            if !known.contains_key(&key) {
                let obj = json!({
                    "apiVersion": "metallb.io/v1beta1",
                    "kind": w.kind,
                    "metadata": {"name": w.name, "labels": {
                        NODE_LABEL: self.node,
                        "metallb.io/service-name": w.service_name,
                        "metallb.io/service-namespace": w.service_namespace,
                    }},
                });
                let obj: DynamicObject = serde_json::from_value(obj).expect("static shape");
                match api.create(&PostParams::default(), &obj).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(e),
                }
            }
            api.patch_status(
                &w.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": w.status})),
            )
            .await?;
            if let Some(k) = self.known.as_mut() {
                k.insert(key, w.status.clone());
            }
        }
        for key in known.keys().filter(|k| !wanted_keys.contains(*k)) {
            match self
                .api(key.0)
                .delete(&key.1, &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
            if let Some(k) = self.known.as_mut() {
                k.remove(key);
            }
        }
        Ok(())
    }
}
