//! MetalLB configuration validated and normalised: pools, peers, advertisements. Built from the
//! metallb.io objects (`crd.rs`) or from the legacy ConfigMap (`legacy.rs`); the field parsers and the
//! per-object validators both share are in `parse.rs`. Every problem names the object it is about, so
//! the bridge can put a Warning Event on it. Pure: no I/O.
//!
//! This module holds the validated types, the entry points ([`build`], [`build_with_previous`]) and
//! the rules that span objects (overlapping pools, duplicate peers, aggregation and LOCAL_PREF).
mod crd;
mod legacy;
mod parse;

pub use crd::BASIC_AUTH;
pub use parse::{longest_block, parse_community_value, parse_duration, parse_range, regex_to_pattern};

use crate::metallb::*;
use crate::selector::Selector;
use crd::from_crds;
use legacy::from_legacy;
use parse::{same_family, show_range};
use speaker_api::v1 as pb;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The object a problem is about (for messages and Events).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// Errors make the whole configuration invalid (the last good one stays in force); a skipped object
/// is left out and the rest applies; warnings are reported and the object applies.
///
/// Only pool problems (an unparseable IPAddressPool, bad addresses, overlapping pools) and an
/// unreadable legacy ConfigMap are errors: dropping a pool would withdraw every IP in it, and
/// MetalLB rejects those as a whole too. A bad or unsupported BGPPeer, BGPAdvertisement,
/// L2Advertisement, Community or BFDProfile is skipped: it never blocks the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    Error,
    Skipped,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Problem {
    pub severity: Severity,
    pub object: ObjRef,
    pub message: String,
}

/// One object of the cluster as the translation needs it: its identity, labels and parsed spec.
#[derive(Debug, Clone)]
pub struct Obj<T> {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// The spec, or why it does not parse.
    pub spec: Result<T, String>,
}

/// Everything the configuration is built from.
#[derive(Debug, Clone, Default)]
pub struct ConfigInput {
    pub pools: Vec<Obj<IpAddressPoolSpec>>,
    pub peers: Vec<Obj<BgpPeerSpec>>,
    pub bgp_advertisements: Vec<Obj<BgpAdvertisementSpec>>,
    pub l2_advertisements: Vec<Obj<L2AdvertisementSpec>>,
    pub communities: Vec<Obj<CommunitySpec>>,
    pub bfd_profiles: Vec<Obj<BfdProfileSpec>>,
    /// The legacy ConfigMap's `config` text, if the ConfigMap exists: (namespace, name, text).
    pub legacy: Option<(String, String, Option<String>)>,
    /// Secrets referenced by BGPPeer.passwordSecret: (namespace, name) → data.
    pub secrets: BTreeMap<(String, String), BTreeMap<String, Vec<u8>>>,
    /// Their `type`s: (namespace, name) → type (MetalLB requires `kubernetes.io/basic-auth`).
    pub secret_types: BTreeMap<(String, String), String>,
    /// MetalLB's `metallb-excludel2` ConfigMap's `excludel2.yaml` key, if the ConfigMap exists:
    /// (namespace, name, text).
    pub exclude_l2: Option<(String, String, Option<String>)>,
    /// The IPs LoadBalancer Services hold (namespace, name, IP): a new configuration that takes the
    /// pool away from one of them is refused, as MetalLB's speaker refuses it.
    pub service_ips: Vec<(String, String, IpAddr)>,
    /// (namespace, whether a gossip Secret exists there: MetalLB's names `memberlist` and
    /// `metallb-memberlist`, key `secretkey`); None: not known (the offline planner).
    pub memberlist_secret: Option<(String, bool)>,
}

/// MetalLB's names of the gossip Secret (manifests, Helm) and its key.
pub const MEMBERLIST_SECRETS: [&str; 2] = ["memberlist", "metallb-memberlist"];
pub const MEMBERLIST_KEY: &str = "secretkey";

/// MetalLB's ConfigMap of interfaces never to answer ARP/NDP on, and its key.
pub const EXCLUDE_L2_CONFIGMAP: &str = "metallb-excludel2";
pub const EXCLUDE_L2_KEY: &str = "excludel2.yaml";

/// An address pool: its ranges (inclusive) and the labels pool selectors match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ranges: Vec<(IpAddr, IpAddr)>,
}

impl Pool {
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|(a, b)| same_family(*a, ip) && *a <= ip && ip <= *b)
    }
}

/// A BGP peer and the nodes it applies to.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub name: String,
    pub nodes: Vec<Selector>,
    pub config: pb::PeerConfig,
}

/// Which pools an advertisement applies to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PoolSelection {
    pub names: Vec<String>,
    pub selectors: Vec<Selector>,
}

impl PoolSelection {
    /// MetalLB: no names and no selectors select every pool.
    pub fn selects(&self, pool: &Pool) -> bool {
        (self.names.is_empty() && self.selectors.is_empty())
            || self.names.iter().any(|n| n == &pool.name)
            || self.selectors.iter().any(|s| s.matches(&pool.labels))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BgpAdvertisement {
    pub name: String,
    pub pools: PoolSelection,
    pub nodes: Vec<Selector>,
    pub aggregation_v4: u8,
    pub aggregation_v6: u8,
    pub local_pref: Option<u32>,
    pub communities: Vec<String>,
    pub large_communities: Vec<String>,
    /// BGPPeer names; empty means every peer.
    pub peers: Vec<String>,
    /// Services this advertisement applies to (empty: every Service).
    pub services: Vec<Selector>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct L2Advertisement {
    pub name: String,
    pub pools: PoolSelection,
    pub nodes: Vec<Selector>,
    pub interfaces: Vec<String>,
    /// Services this advertisement applies to (empty: every Service).
    pub services: Vec<Selector>,
    /// `preferredNodeSelectors`: (weight, nodes that get it).
    pub preferred: Vec<(u32, Selector)>,
}

/// Where the configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    #[default]
    Crds,
    ConfigMap,
}

/// A valid configuration.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Config {
    pub source: Source,
    pub pools: Vec<Pool>,
    pub peers: Vec<Peer>,
    pub bgp_advertisements: Vec<BgpAdvertisement>,
    pub l2_advertisements: Vec<L2Advertisement>,
    /// Interfaces never answered on (speakerd's syntax: a name, or a prefix with a trailing `*`),
    /// from the `metallb-excludel2` ConfigMap.
    pub l2_exclude_interfaces: Vec<String>,
}

impl Config {
    pub fn pool_of(&self, ip: IpAddr) -> Option<&Pool> {
        self.pools.iter().find(|p| p.contains(ip))
    }
}

const METALLB_V1B1: &str = "metallb.io/v1beta1";

fn oref(api_version: &str, kind: &str, namespace: &str, name: &str) -> ObjRef {
    ObjRef { api_version: api_version.into(), kind: kind.into(), namespace: namespace.into(), name: name.into() }
}

struct Collector {
    problems: Vec<Problem>,
}

impl Collector {
    fn error(&mut self, o: &ObjRef, msg: impl Into<String>) {
        self.problems.push(Problem { severity: Severity::Error, object: o.clone(), message: msg.into() });
    }
    fn warn(&mut self, o: &ObjRef, msg: impl Into<String>) {
        self.problems.push(Problem { severity: Severity::Warning, object: o.clone(), message: msg.into() });
    }

    /// Validates one object with `f`: an error `f` finds leaves that object out (its problems become
    /// [`Severity::Skipped`]) instead of making the whole configuration invalid.
    fn object<T>(&mut self, f: impl FnOnce(&mut Collector) -> Option<T>) -> Option<T> {
        let before = self.problems.len();
        let r = f(self);
        let mut skipped = false;
        for p in &mut self.problems[before..] {
            if p.severity == Severity::Error {
                p.severity = Severity::Skipped;
                p.message =
                    format!("{}; this {} is left out, the rest of the configuration applies", p.message, p.object.kind);
                skipped = true;
            }
        }
        if skipped {
            None
        } else {
            r
        }
    }
}

impl Collector {
    /// `new` if the object is good; else its last good version `old` if there is one (the skipped
    /// problems since `before` then say so instead of "left out").
    fn or_last_good<T: Clone>(&mut self, new: Option<T>, old: Option<&T>, before: usize) -> Option<T> {
        if new.is_some() {
            return new;
        }
        let old = old?;
        for p in &mut self.problems[before..] {
            if p.severity == Severity::Skipped {
                if let Some(i) = p.message.rfind("; this ") {
                    p.message.truncate(i);
                    p.message =
                        format!("{}; the last good version of this {} stays in force", p.message, p.object.kind);
                }
            }
        }
        Some(old.clone())
    }
}

/// Builds the configuration. Returns it with the warnings, or every problem found if any is an error.
/// The metallb.io objects are the configuration when any IPAddressPool exists; otherwise the legacy
/// ConfigMap is (a ConfigMap beside IPAddressPools is ignored, with a warning).
pub fn build(input: &ConfigInput) -> Result<(Config, Vec<Problem>), Vec<Problem>> {
    build_with_previous(input, None)
}

/// [`build`], given the configuration in force: a BGPPeer, BGPAdvertisement or L2Advertisement
/// that was good there and is now bad keeps its last good version (a broken edit withdraws
/// nothing); one never seen good is left out.
pub fn build_with_previous(
    input: &ConfigInput,
    previous: Option<&Config>,
) -> Result<(Config, Vec<Problem>), Vec<Problem>> {
    let mut c = Collector { problems: Vec::new() };
    let cfg = match (&input.legacy, input.pools.is_empty()) {
        (Some((ns, name, text)), true) => {
            let r = oref("v1", "ConfigMap", ns, name);
            match text {
                None => {
                    c.error(&r, "no \"config\" key");
                    Config::default()
                }
                Some(t) => match serde_yaml::from_str::<LegacyConfig>(t) {
                    Ok(l) => from_legacy(&l, &r, &mut c),
                    Err(e) => {
                        c.error(&r, format!("config: invalid YAML: {e}"));
                        Config::default()
                    }
                },
            }
        }
        (legacy, _) => {
            if let Some((ns, name, _)) = legacy {
                c.warn(
                    &oref("v1", "ConfigMap", ns, name),
                    "ignored: metallb.io IPAddressPools exist, which take precedence",
                );
            }
            from_crds(input, previous.filter(|p| p.source == Source::Crds), &mut c)
        }
    };
    let mut cfg = cfg;
    if let Some((ns, name, text)) = &input.exclude_l2 {
        cfg.l2_exclude_interfaces = exclude_l2(text.as_deref(), &oref("v1", "ConfigMap", ns, name), &mut c);
    }
    // MetalLB's speaker refuses a configuration under which a Service's IP (that had a pool) has no
    // pool: removing or shrinking a pool in use keeps the last good configuration.
    if let Some(prev) = previous {
        for (ns, name, ip) in &input.service_ips {
            if let (Some(old), None) = (prev.pool_of(*ip), cfg.pool_of(*ip)) {
                c.error(
                    &oref("v1", "Service", ns, name),
                    format!(
                        "its IP {ip} is in no IPAddressPool of the new configuration (it was in {:?}): the new configuration is refused while the IP is in use, as MetalLB does",
                        old.name
                    ),
                );
            }
        }
    }
    duplicate_peers(&cfg.peers, &input.peers, &mut c);
    if let Some((ns, false)) = &input.memberlist_secret {
        c.warn(
            &oref("v1", "Secret", ns, MEMBERLIST_SECRETS[0]),
            format!(
                "neither Secret {:?} nor {:?} with key {MEMBERLIST_KEY:?} exists: gossip between the speakers is unencrypted and unauthenticated",
                MEMBERLIST_SECRETS[0], MEMBERLIST_SECRETS[1]
            ),
        );
    }
    let mut problems = c.problems;
    problems.sort();
    problems.dedup();
    if problems.iter().any(|p| p.severity == Severity::Error) {
        Err(problems)
    } else {
        Ok((cfg, problems))
    }
}

/// Two BGPPeers with one address that can select the same node (either has no node selectors, or
/// both have the same): the translation uses the first by name there; the other is reported.
fn duplicate_peers(peers: &[Peer], objs: &[Obj<BgpPeerSpec>], c: &mut Collector) {
    let mut sorted: Vec<&Peer> = peers.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for (i, p) in sorted.iter().enumerate() {
        if let Some(first) = sorted[..i].iter().find(|q| {
            q.config.address == p.config.address && (q.nodes.is_empty() || p.nodes.is_empty() || q.nodes == p.nodes)
        }) {
            let ns = objs.iter().find(|o| o.name == p.name).map_or("", |o| o.namespace.as_str());
            c.warn(
                &oref("metallb.io/v1beta2", "BGPPeer", ns, &p.name),
                format!(
                    "spec.peerAddress: {} is also BGPPeer {:?}'s; on nodes both select, {:?} is used",
                    p.config.address, first.name, first.name
                ),
            );
        }
    }
}

/// MetalLB's rule, made strict: the aggregation length of an advertisement may not be shorter than
/// the prefix of any pool it selects (a shorter one announces addresses outside the pool: length 0
/// is a default route). For a range that is not a CIDR, MetalLB compares with the widest block of
/// the range; we use the longest, so that no aggregate ever leaves the range.
fn check_aggregation(a: &BgpAdvertisement, pools: &[Pool], field: &str, r: &ObjRef, c: &mut Collector) {
    let camel = field.starts_with("spec.");
    for pool in pools.iter().filter(|p| a.pools.selects(p)) {
        for &(lo, hi) in &pool.ranges {
            let (agg, max, name) = if lo.is_ipv4() {
                (a.aggregation_v4, 32, if camel { "aggregationLength" } else { "aggregation-length" })
            } else {
                (a.aggregation_v6, 128, if camel { "aggregationLengthV6" } else { "aggregation-length-v6" })
            };
            let need = longest_block(lo, hi);
            if agg < need {
                c.error(
                    r,
                    format!(
                        "{field}{name}: {agg}: shorter than pool {:?}'s {} (a /{agg} route would cover addresses outside the pool); {need}..{max}",
                        pool.name,
                        show_range(lo, hi)
                    ),
                );
                return;
            }
        }
    }
}

/// MetalLB refuses two advertisements that would send one route with different LOCAL_PREFs: same
/// pool, same aggregation length, overlapping peers. (MetalLB also compares the nodes the two
/// select; the configuration alone does not know the nodes, so two advertisements with different,
/// non-empty node selectors are taken as disjoint, and the translation keeps the higher LOCAL_PREF if
/// a node matches both.)
fn check_local_pref(a: &BgpAdvertisement, earlier: &[BgpAdvertisement], pools: &[Pool], r: &ObjRef, c: &mut Collector) {
    if !a.services.is_empty() {
        // As MetalLB: which Services it applies to is not known here.
        return;
    }
    for b in earlier.iter().filter(|b| b.services.is_empty()) {
        if a.local_pref.unwrap_or(0) == b.local_pref.unwrap_or(0) {
            continue;
        }
        let peers_overlap = a.peers.is_empty() || b.peers.is_empty() || a.peers.iter().any(|p| b.peers.contains(p));
        let nodes_overlap = a.nodes.is_empty() || b.nodes.is_empty() || a.nodes == b.nodes;
        if !peers_overlap || !nodes_overlap {
            continue;
        }
        for pool in pools.iter().filter(|p| a.pools.selects(p) && b.pools.selects(p)) {
            let v4 = pool.ranges.iter().any(|(x, _)| x.is_ipv4());
            let v6 = pool.ranges.iter().any(|(x, _)| x.is_ipv6());
            let same4 = a.aggregation_v4 == b.aggregation_v4;
            let same6 = a.aggregation_v6 == b.aggregation_v6;
            if (v4 && same4) || (v6 && same6) {
                c.error(
                    r,
                    format!(
                        "spec.localPref: {}: BGPAdvertisement {:?} sends the same routes of pool {:?} with localPref {}",
                        a.local_pref.unwrap_or(0),
                        b.name,
                        pool.name,
                        b.local_pref.unwrap_or(0)
                    ),
                );
                return;
            }
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExcludeL2 {
    #[serde(default)]
    announced_interfaces_to_exclude: Vec<String>,
}

/// MetalLB's excludel2 patterns are regular expressions; speakerd matches a name or a prefix. The
/// forms MetalLB ships (`^docker.*`, `^lo$`) translate exactly; any other is reported and left out.
fn exclude_l2(text: Option<&str>, r: &ObjRef, c: &mut Collector) -> Vec<String> {
    let Some(text) = text else {
        c.warn(r, format!("no {EXCLUDE_L2_KEY:?} key; no interface excluded"));
        return Vec::new();
    };
    let parsed: ExcludeL2 = match serde_yaml::from_str(text) {
        Ok(p) => p,
        Err(e) => {
            c.warn(r, format!("{EXCLUDE_L2_KEY}: invalid YAML ({e}); no interface excluded"));
            return Vec::new();
        }
    };
    let mut out = BTreeSet::new();
    for (i, re) in parsed.announced_interfaces_to_exclude.iter().enumerate() {
        match regex_to_pattern(re) {
            Some(p) => {
                out.insert(p);
            }
            None => c.warn(
                r,
                format!("{EXCLUDE_L2_KEY}: announcedInterfacesToExclude[{i}]: {re:?}: only \"^name$\", \"^prefix\" and \"^prefix.*\" are supported; ignored"),
            ),
        }
    }
    out.into_iter().collect()
}

fn check_overlaps(pools: &[Pool], refs: &[ObjRef], c: &mut Collector) {
    for (i, p) in pools.iter().enumerate() {
        for q in &pools[i + 1..] {
            let clash =
                p.ranges.iter().any(|(a, b)| q.ranges.iter().any(|(x, y)| same_family(*a, *x) && a <= y && x <= b));
            if clash {
                let r = refs.get(i).cloned().unwrap_or_else(|| oref(METALLB_V1B1, "IPAddressPool", "", &p.name));
                c.error(&r, format!("addresses overlap with pool {:?}", q.name));
            }
        }
    }
}
