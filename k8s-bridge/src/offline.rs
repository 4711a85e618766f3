//! The same inputs the reflectors give, read from YAML manifests instead of the API server: for the
//! `plan` command (what would this node announce, given these manifests?) and for tests.
use crate::cluster::{Cluster, NodeInfo, Slice, Svc};
use crate::config::{ConfigInput, Obj};
use crate::slim;
use serde::Deserialize;
use std::collections::BTreeMap;

fn obj<T: serde::de::DeserializeOwned>(v: &serde_json::Value) -> Obj<T> {
    let md = &v["metadata"];
    let s = |k: &str| md[k].as_str().unwrap_or_default().to_string();
    let labels = md["labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default();
    let spec = v.get("spec").cloned().unwrap_or_else(|| serde_json::json!({}));
    Obj {
        name: s("name"),
        namespace: s("namespace"),
        labels,
        spec: serde_json::from_value(spec).map_err(|e| e.to_string()),
    }
}

/// Reads `---`-separated manifests. MetalLB objects and the legacy ConfigMap named `configmap` in
/// `namespace` become configuration (MetalLB objects elsewhere are left out, as the bridge's watches
/// leave them); Services, EndpointSlices and Nodes become the cluster; other
/// kinds are ignored.
pub fn load(text: &str, namespace: &str, configmap: &str) -> Result<(ConfigInput, Cluster), String> {
    let mut input = ConfigInput::default();
    let mut cluster = Cluster::default();
    for (i, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let v = serde_json::Value::deserialize(doc).map_err(|e| format!("document {i}: {e}"))?;
        if v.is_null() {
            continue;
        }
        let kind = v["kind"].as_str().unwrap_or_default();
        let api = v["apiVersion"].as_str().unwrap_or_default();
        let ns = v["metadata"]["namespace"].as_str().unwrap_or(namespace);
        let metallb = api.starts_with("metallb.io/");
        let bad = |e: serde_json::Error| format!("document {i} ({kind}): {e}");
        match (metallb, kind) {
            // The bridge watches MetalLB objects in its namespace only.
            (true, _) if ns != namespace => {}
            (true, "IPAddressPool") => input.pools.push(obj(&v)),
            (true, "BGPPeer") => input.peers.push(obj(&v)),
            (true, "BGPAdvertisement") => input.bgp_advertisements.push(obj(&v)),
            (true, "L2Advertisement") => input.l2_advertisements.push(obj(&v)),
            (true, "Community") => input.communities.push(obj(&v)),
            (true, "BFDProfile") => input.bfd_profiles.push(obj(&v)),
            (false, "ConfigMap") if ns == namespace && v["metadata"]["name"] == crate::config::EXCLUDE_L2_CONFIGMAP => {
                let text = v["data"][crate::config::EXCLUDE_L2_KEY].as_str().map(str::to_string);
                input.exclude_l2 = Some((ns.to_string(), crate::config::EXCLUDE_L2_CONFIGMAP.to_string(), text));
            }
            (false, "ConfigMap") if ns == namespace && v["metadata"]["name"] == configmap => {
                let text = v["data"]["config"].as_str().map(str::to_string);
                input.legacy = Some((ns.to_string(), configmap.to_string(), text));
            }
            (false, "Secret") => {
                let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(v.clone()).map_err(bad)?;
                let mut data: BTreeMap<String, Vec<u8>> =
                    s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
                for (k, v) in s.string_data.unwrap_or_default() {
                    data.insert(k, v.into_bytes());
                }
                let key = (ns.to_string(), s.metadata.name.unwrap_or_default());
                input.secret_types.insert(key.clone(), s.type_.unwrap_or_else(|| "Opaque".into()));
                input.secrets.insert(key, data);
            }
            (false, "Service") => {
                let mut svc = slim::from_value::<Svc>(&v).map_err(bad)?.data;
                if svc.namespace.is_empty() {
                    svc.namespace = "default".into();
                }
                cluster.services.push(svc.into());
            }
            (false, "EndpointSlice") => {
                let mut slice = slim::from_value::<Slice>(&v).map_err(bad)?.data;
                if slice.namespace.is_empty() {
                    slice.namespace = "default".into();
                }
                cluster.slices.push(slice.into());
            }
            (false, "Node") => {
                cluster.nodes.push(slim::from_value::<NodeInfo>(&v).map_err(bad)?.data.into());
            }
            _ => {}
        }
    }
    input.service_ips = cluster
        .services
        .iter()
        .filter(|s| s.load_balancer)
        .flat_map(|s| s.ips.iter().map(|ip| (s.namespace.clone(), s.name.clone(), *ip)))
        .collect();
    Ok((input, cluster))
}
