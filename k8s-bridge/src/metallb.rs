//! MetalLB's configuration as it is written in the cluster: the metallb.io CRDs' `spec`s and the legacy
//! ConfigMap's `config` key. Field names and defaults follow MetalLB (v0.14/v0.15); these types only
//! parse, [`crate::config`] validates and normalises them.
use serde::Deserialize;
use std::collections::BTreeMap;

/// A Kubernetes label selector (`matchLabels` AND every `matchExpressions`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<SelectorRequirement>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct SelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default)]
    pub values: Vec<String>,
}

/// metallb.io/v1beta1 IPAddressPool `spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddressPoolSpec {
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub auto_assign: Option<bool>,
    #[serde(default, rename = "avoidBuggyIPs")]
    pub avoid_buggy_ips: bool,
    /// Allocation only (the controller's business): accepted and ignored here.
    #[serde(default)]
    pub service_allocation: Option<serde_json::Value>,

    /// Fields this bridge does not know (reported, never silently ignored).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// metallb.io/v1beta2 BGPPeer `spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpPeerSpec {
    #[serde(default, rename = "myASN")]
    pub my_asn: u64,
    #[serde(default, rename = "peerASN")]
    pub peer_asn: u64,
    /// MetalLB v0.16: the ASN this session uses instead of myASN ("local-as … no-prepend replace-as").
    #[serde(default, rename = "localASN")]
    pub local_asn: u64,
    #[serde(default, rename = "dynamicASN")]
    pub dynamic_asn: String,
    #[serde(default)]
    pub peer_address: String,
    #[serde(default)]
    pub source_address: String,
    #[serde(default)]
    pub peer_port: Option<u32>,
    #[serde(default)]
    pub hold_time: Option<String>,
    #[serde(default)]
    pub keepalive_time: Option<String>,
    #[serde(default)]
    pub connect_time: Option<String>,
    #[serde(default, rename = "routerID")]
    pub router_id: String,
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub password_secret: Option<SecretRef>,
    #[serde(default)]
    pub bfd_profile: String,
    #[serde(default)]
    pub enable_graceful_restart: bool,
    #[serde(default)]
    pub ebgp_multi_hop: bool,
    #[serde(default)]
    pub vrf: String,
    #[serde(default, rename = "disableMP")]
    pub disable_mp: bool,
    #[serde(default)]
    pub interface: String,
    #[serde(default)]
    pub dual_stack_address_family: bool,
    /// Fields this bridge does not know (reported, never silently ignored).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct SecretRef {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

/// metallb.io/v1beta1 BGPAdvertisement `spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BgpAdvertisementSpec {
    #[serde(default)]
    pub aggregation_length: Option<i64>,
    #[serde(default, rename = "aggregationLengthV6")]
    pub aggregation_length_v6: Option<i64>,
    #[serde(default)]
    pub local_pref: Option<u32>,
    #[serde(default)]
    pub communities: Vec<String>,
    #[serde(default)]
    pub ip_address_pools: Vec<String>,
    #[serde(default)]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    #[serde(default)]
    pub peers: Vec<String>,
    /// MetalLB v0.16: only Services matching one of these (empty: every Service).
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
    /// Fields this bridge does not know (reported, never silently ignored).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// metallb.io/v1beta1 L2Advertisement `spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L2AdvertisementSpec {
    #[serde(default)]
    pub ip_address_pools: Vec<String>,
    #[serde(default)]
    pub ip_address_pool_selectors: Vec<LabelSelector>,
    #[serde(default)]
    pub node_selectors: Vec<LabelSelector>,
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// MetalLB v0.16: only Services matching one of these (empty: every Service).
    #[serde(default)]
    pub service_selectors: Vec<LabelSelector>,
    /// MetalLB: soft preferences for the Layer 2 owner (weights summed per node).
    #[serde(default)]
    pub preferred_node_selectors: Vec<PreferredNodeSelector>,
    /// Fields this bridge does not know (reported, never silently ignored).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// One entry of L2Advertisement `spec.preferredNodeSelectors` (Kubernetes' PreferredSchedulingTerm).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct PreferredNodeSelector {
    /// 1..=100 in MetalLB's CRD.
    pub weight: i32,
    /// Nodes that get the weight; empty matches every node.
    #[serde(default)]
    pub preference: LabelSelector,
}

/// metallb.io/v1beta1 Community `spec`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommunitySpec {
    #[serde(default)]
    pub communities: Vec<CommunityAlias>,
    /// Fields this bridge does not know (reported, never silently ignored).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommunityAlias {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

/// metallb.io/v1beta1 BFDProfile `spec`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BfdProfileSpec {
    #[serde(default)]
    pub receive_interval: Option<u32>,
    #[serde(default)]
    pub transmit_interval: Option<u32>,
    #[serde(default)]
    pub detect_multiplier: Option<u32>,
    #[serde(default)]
    pub echo_interval: Option<u32>,
    #[serde(default)]
    pub echo_mode: bool,
    #[serde(default)]
    pub passive_mode: bool,
    #[serde(default)]
    pub minimum_ttl: Option<u32>,
    /// Fields this bridge does not know (reported, never silently ignored).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The legacy ConfigMap's `config` key (MetalLB ≤ v0.12), in its own dashed spelling.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LegacyConfig {
    #[serde(default)]
    pub peers: Vec<LegacyPeer>,
    #[serde(default)]
    pub bgp_communities: BTreeMap<String, String>,
    #[serde(default)]
    pub address_pools: Vec<LegacyPool>,
    #[serde(default)]
    pub bfd_profiles: Vec<LegacyBfdProfile>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LegacyPeer {
    #[serde(default)]
    pub my_asn: u64,
    #[serde(default)]
    pub peer_asn: u64,
    #[serde(default)]
    pub peer_address: String,
    #[serde(default)]
    pub peer_port: Option<u32>,
    #[serde(default)]
    pub hold_time: Option<String>,
    #[serde(default)]
    pub keepalive_time: Option<String>,
    #[serde(default)]
    pub router_id: String,
    #[serde(default)]
    pub source_address: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub bfd_profile: String,
    #[serde(default)]
    pub ebgp_multihop: bool,
    #[serde(default)]
    pub node_selectors: Vec<LegacySelector>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LegacySelector {
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub match_expressions: Vec<SelectorRequirement>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LegacyPool {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub protocol: String,
    #[serde(default)]
    pub addresses: Vec<String>,
    #[serde(default)]
    pub auto_assign: Option<bool>,
    #[serde(default)]
    pub avoid_buggy_ips: bool,
    #[serde(default)]
    pub bgp_advertisements: Vec<LegacyAdvertisement>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LegacyAdvertisement {
    #[serde(default)]
    pub aggregation_length: Option<i64>,
    #[serde(default)]
    pub aggregation_length_v6: Option<i64>,
    #[serde(default)]
    pub localpref: Option<u32>,
    #[serde(default)]
    pub communities: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct LegacyBfdProfile {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub receive_interval: Option<u32>,
    #[serde(default)]
    pub transmit_interval: Option<u32>,
    #[serde(default)]
    pub detect_multiplier: Option<u32>,
    #[serde(default)]
    pub echo_interval: Option<u32>,
    #[serde(default)]
    pub echo_mode: bool,
    #[serde(default)]
    pub passive_mode: bool,
    #[serde(default)]
    pub minimum_ttl: Option<u32>,
}
