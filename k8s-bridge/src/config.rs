//! MetalLB configuration validated and normalised: pools, peers, advertisements. Built from the
//! metallb.io objects or from the legacy ConfigMap; every problem names the object it is about, so the
//! bridge can put a Warning Event on it. Pure: no I/O.
use crate::metallb::*;
use crate::selector::Selector;
use ipnet::IpNet;
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

/// Fields of a spec that k8s-bridge does not know (unknown to MetalLB too, or newer than this
/// bridge): a warning naming each, never silence.
fn unknown_fields(extra: &BTreeMap<String, serde_json::Value>, r: &ObjRef, c: &mut Collector) {
    for k in extra.keys() {
        c.warn(r, format!("spec.{k}: unknown field, ignored"));
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

fn spec_of<'a, T>(o: &'a Obj<T>, r: &ObjRef, c: &mut Collector) -> Option<&'a T> {
    match &o.spec {
        Ok(s) => Some(s),
        Err(e) => {
            c.error(r, format!("spec: {e}"));
            None
        }
    }
}

fn from_crds(input: &ConfigInput, previous: Option<&Config>, c: &mut Collector) -> Config {
    let mut cfg = Config { source: Source::Crds, ..Default::default() };
    // Community aliases first: advertisements refer to them.
    let mut aliases: BTreeMap<String, String> = BTreeMap::new();
    for o in &input.communities {
        let r = oref(METALLB_V1B1, "Community", &o.namespace, &o.name);
        let mine = c.object(|c| {
            let s = spec_of(o, &r, c)?;
            unknown_fields(&s.extra, &r, c);
            let mut mine: BTreeMap<String, String> = BTreeMap::new();
            for (i, a) in s.communities.iter().enumerate() {
                if a.name.is_empty() {
                    c.error(&r, format!("spec.communities[{i}].name: required"));
                } else if let Err(e) = parse_community_value(&a.value) {
                    c.error(&r, format!("spec.communities[{i}].value: {e}"));
                } else if aliases.contains_key(&a.name) || mine.insert(a.name.clone(), a.value.clone()).is_some() {
                    c.error(&r, format!("spec.communities[{i}].name: alias {:?} defined twice", a.name));
                }
            }
            Some(mine)
        });
        aliases.extend(mine.unwrap_or_default());
    }
    let mut bfd: BTreeMap<String, pb::BfdProfile> = BTreeMap::new();
    for o in &input.bfd_profiles {
        let r = oref(METALLB_V1B1, "BFDProfile", &o.namespace, &o.name);
        let p = c.object(|c| {
            let s = spec_of(o, &r, c)?;
            unknown_fields(&s.extra, &r, c);
            bfd_from_crd(o, s, &r, c)
        });
        if let Some(p) = p {
            bfd.insert(o.name.clone(), p);
        }
    }
    for o in &input.pools {
        let r = oref(METALLB_V1B1, "IPAddressPool", &o.namespace, &o.name);
        let Some(s) = spec_of(o, &r, c) else { continue };
        unknown_fields(&s.extra, &r, c);
        let ranges = pool_ranges(&s.addresses, "spec.addresses", &r, c);
        cfg.pools.push(Pool { name: o.name.clone(), labels: o.labels.clone(), ranges });
    }
    check_overlaps(
        &cfg.pools,
        &input.pools.iter().map(|o| oref(METALLB_V1B1, "IPAddressPool", &o.namespace, &o.name)).collect::<Vec<_>>(),
        c,
    );
    for o in &input.peers {
        let r = oref("metallb.io/v1beta2", "BGPPeer", &o.namespace, &o.name);
        let before = c.problems.len();
        let p = c.object(|c| peer_from_crd(o, input, &bfd, &r, c));
        let old = previous.and_then(|p| p.peers.iter().find(|x| x.name == o.name));
        cfg.peers.extend(c.or_last_good(p, old, before));
    }
    let pool_names: BTreeSet<&str> = cfg.pools.iter().map(|p| p.name.as_str()).collect();
    let peer_names: BTreeSet<&str> = cfg.peers.iter().map(|p| p.name.as_str()).collect();
    let mut bgp_ads: Vec<BgpAdvertisement> = Vec::new();
    for o in &input.bgp_advertisements {
        let r = oref(METALLB_V1B1, "BGPAdvertisement", &o.namespace, &o.name);
        let before = c.problems.len();
        let a = c.object(|c| {
            let s = spec_of(o, &r, c)?;
            unknown_fields(&s.extra, &r, c);
            check_pool_refs(&s.ip_address_pools, &pool_names, &r, c);
            for (i, p) in s.peers.iter().enumerate() {
                if !peer_names.contains(p.as_str()) {
                    c.warn(&r, format!("spec.peers[{i}]: no BGPPeer named {p:?} (yet)"));
                }
            }
            let legacy = LegacyAdvertisement {
                aggregation_length: s.aggregation_length,
                aggregation_length_v6: s.aggregation_length_v6,
                localpref: s.local_pref,
                communities: s.communities.clone(),
            };
            let pools = PoolSelection {
                names: s.ip_address_pools.clone(),
                selectors: selectors(&s.ip_address_pool_selectors, "spec.ipAddressPoolSelectors", &r, c),
            };
            let nodes = selectors(&s.node_selectors, "spec.nodeSelectors", &r, c);
            let mut a = bgp_advertisement(&legacy, &aliases, "spec.", &r, c)?;
            a.name = o.name.clone();
            a.pools = pools;
            a.nodes = nodes;
            a.peers = s.peers.clone();
            a.services = selectors(&s.service_selectors, "spec.serviceSelectors", &r, c);
            // MetalLB: serviceSelectors and aggregation are mutually exclusive.
            if !a.services.is_empty() {
                if s.aggregation_length.is_some_and(|x| x != 32) {
                    c.error(
                        &r,
                        "spec.serviceSelectors and spec.aggregationLength: mutually exclusive (MetalLB refuses both)",
                    );
                }
                if s.aggregation_length_v6.is_some_and(|x| x != 128) {
                    c.error(
                        &r,
                        "spec.serviceSelectors and spec.aggregationLengthV6: mutually exclusive (MetalLB refuses both)",
                    );
                }
            }
            check_aggregation(&a, &cfg.pools, "spec.", &r, c);
            check_local_pref(&a, &bgp_ads, &cfg.pools, &r, c);
            Some(a)
        });
        let old = previous.and_then(|p| p.bgp_advertisements.iter().find(|x| x.name == o.name));
        let a = c.or_last_good(a, old, before);
        bgp_ads.extend(a);
    }
    cfg.bgp_advertisements = bgp_ads;
    for o in &input.l2_advertisements {
        let r = oref(METALLB_V1B1, "L2Advertisement", &o.namespace, &o.name);
        let before = c.problems.len();
        let a = c.object(|c| {
            let s = spec_of(o, &r, c)?;
            unknown_fields(&s.extra, &r, c);
            check_pool_refs(&s.ip_address_pools, &pool_names, &r, c);
            let mut preferred = Vec::new();
            for (i, p) in s.preferred_node_selectors.iter().enumerate() {
                if !(1..=100).contains(&p.weight) {
                    c.error(&r, format!("spec.preferredNodeSelectors[{i}].weight: {} is not in 1..100", p.weight));
                    continue;
                }
                match Selector::new(&p.preference) {
                    Ok(sel) => preferred.push((p.weight as u32, sel)),
                    Err(e) => c.error(&r, format!("spec.preferredNodeSelectors[{i}].preference: {e}")),
                }
            }
            for (i, ifname) in s.interfaces.iter().enumerate() {
                if ifname.is_empty()
                    || ifname.len() > 15
                    || ifname.contains('/')
                    || ifname.chars().any(char::is_whitespace)
                {
                    c.error(&r, format!("spec.interfaces[{i}]: {ifname:?} is not an interface name"));
                }
            }
            Some(L2Advertisement {
                name: o.name.clone(),
                pools: PoolSelection {
                    names: s.ip_address_pools.clone(),
                    selectors: selectors(&s.ip_address_pool_selectors, "spec.ipAddressPoolSelectors", &r, c),
                },
                nodes: selectors(&s.node_selectors, "spec.nodeSelectors", &r, c),
                interfaces: s.interfaces.clone(),
                services: selectors(&s.service_selectors, "spec.serviceSelectors", &r, c),
                preferred,
            })
        });
        let old = previous.and_then(|p| p.l2_advertisements.iter().find(|x| x.name == o.name));
        cfg.l2_advertisements.extend(c.or_last_good(a, old, before));
    }
    cfg
}

/// A BFDProfile object as the legacy profile the validation shares.
fn bfd_from_crd(o: &Obj<BfdProfileSpec>, s: &BfdProfileSpec, r: &ObjRef, c: &mut Collector) -> Option<pb::BfdProfile> {
    let l = LegacyBfdProfile {
        name: o.name.clone(),
        receive_interval: s.receive_interval,
        transmit_interval: s.transmit_interval,
        detect_multiplier: s.detect_multiplier,
        echo_interval: s.echo_interval,
        echo_mode: s.echo_mode,
        passive_mode: s.passive_mode,
        minimum_ttl: s.minimum_ttl,
    };
    bfd_profile(&l, r, c)
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

/// MetalLB's `passwordSecret` must be of this type.
pub const BASIC_AUTH: &str = "kubernetes.io/basic-auth";

fn peer_from_crd(
    o: &Obj<BgpPeerSpec>,
    input: &ConfigInput,
    bfd: &BTreeMap<String, pb::BfdProfile>,
    r: &ObjRef,
    c: &mut Collector,
) -> Option<Peer> {
    let s = spec_of(o, r, c)?;
    unknown_fields(&s.extra, r, c);
    let nodes = selectors(&s.node_selectors, "spec.nodeSelectors", r, c);
    let password = match (&s.password, &s.password_secret) {
        (p, Some(sec)) if !sec.name.is_empty() => {
            if !p.is_empty() {
                c.error(r, "spec.password and spec.passwordSecret: set one, not both");
            }
            let ns = if sec.namespace.is_empty() { &o.namespace } else { &sec.namespace };
            let key = (ns.clone(), sec.name.clone());
            match input.secrets.get(&key) {
                None => {
                    c.error(r, format!("spec.passwordSecret: secret {ns}/{} not found", sec.name));
                    String::new()
                }
                Some(_) if input.secret_types.get(&key).map(String::as_str) != Some(BASIC_AUTH) => {
                    c.error(
                        r,
                        format!(
                            "spec.passwordSecret: secret {ns}/{} is of type {:?}; MetalLB requires {BASIC_AUTH:?}",
                            sec.name,
                            input.secret_types.get(&key).map(String::as_str).unwrap_or("")
                        ),
                    );
                    String::new()
                }
                Some(d) => match d.get("password") {
                    Some(pw) => String::from_utf8_lossy(pw).into_owned(),
                    None => {
                        c.error(r, format!("spec.passwordSecret: secret {ns}/{} has no \"password\" key", sec.name));
                        String::new()
                    }
                },
            }
        }
        (p, _) => p.clone(),
    };
    // What speakerd cannot do leaves this peer out, never the whole configuration.
    if !s.vrf.is_empty() {
        c.error(r, format!("spec.vrf: {:?}: VRFs are not supported by speakerd", s.vrf));
    }
    if !s.interface.is_empty() {
        c.error(
            r,
            format!(
                "spec.interface: {:?}: BGP unnumbered is not supported by speakerd; set spec.peerAddress",
                s.interface
            ),
        );
    }
    // dynamicASN: speakerd takes the peer's AS from its OPEN, of the kind given (MetalLB: set exactly
    // one of peerASN and dynamicASN).
    let dynamic = match s.dynamic_asn.as_str() {
        "" => pb::DynamicAsn::None,
        _ if s.peer_asn != 0 => {
            c.error(r, "spec.peerASN and spec.dynamicASN: set one, not both");
            return None;
        }
        "internal" => pb::DynamicAsn::Internal,
        "external" => pb::DynamicAsn::External,
        other => {
            c.error(r, format!("spec.dynamicASN: {other:?}: \"internal\" or \"external\""));
            return None;
        }
    };
    let ibgp = (s.peer_asn != 0 && s.peer_asn == s.my_asn) || dynamic == pb::DynamicAsn::Internal;
    if s.ebgp_multi_hop && ibgp {
        c.error(r, "spec.ebgpMultiHop: set on an iBGP peer (peerASN equals myASN), as MetalLB refuses");
    }
    if s.disable_mp {
        c.warn(r, "spec.disableMP: deprecated in MetalLB and without effect (Multiprotocol Extensions are always used); ignored");
    }
    let legacy = LegacyPeer {
        my_asn: s.my_asn,
        peer_asn: s.peer_asn,
        peer_address: s.peer_address.clone(),
        peer_port: s.peer_port,
        hold_time: s.hold_time.clone(),
        keepalive_time: s.keepalive_time.clone(),
        router_id: s.router_id.clone(),
        source_address: s.source_address.clone(),
        password,
        bfd_profile: s.bfd_profile.clone(),
        ebgp_multihop: s.ebgp_multi_hop,
        node_selectors: Vec::new(),
    };
    let mut config = peer_config(&legacy, dynamic, bfd, "spec.", r, c)?;
    config.name = o.name.clone();
    if s.dual_stack_address_family {
        // IPv4 and IPv6 unicast on this one session (the empty list).
        config.families.clear();
    }
    if s.local_asn != 0 {
        // speakerd originates only its own routes, so "local-as X no-prepend replace-as" is the
        // session run as X: the OPEN and the AS_PATH carry X alone.
        config.local_asn = asn(s.local_asn, "spec.localASN", r, c);
    }
    config.connect_time_secs = match &s.connect_time {
        None => None,
        Some(t) => match parse_duration(t) {
            Ok(d) if d.subsec_nanos() != 0 => {
                // MetalLB's CRD refuses it (CEL); checked here too for objects that reached the
                // API server without that rule (an older CRD, a cluster without CEL).
                c.error(r, format!("spec.connectTime: {t:?}: a whole number of seconds"));
                None
            }
            Ok(d) if (1..=65535).contains(&d.as_secs()) => Some(d.as_secs() as u32),
            Ok(_) => {
                c.error(r, format!("spec.connectTime: {t:?}: 1s..65535s"));
                None
            }
            Err(e) => {
                c.error(r, format!("spec.connectTime: {e}"));
                None
            }
        },
    };
    config.graceful_restart =
        s.enable_graceful_restart.then_some(pb::GracefulRestart { enabled: true, restart_time_secs: 0 });
    Some(Peer { name: o.name.clone(), nodes, config })
}

/// The longest prefix in the split of the inclusive range `lo..=hi` into CIDR blocks: an
/// aggregation length at least this long keeps every aggregate of an address of the range inside
/// it (for a CIDR pool, its own prefix length: MetalLB's rule).
pub fn longest_block(lo: IpAddr, hi: IpAddr) -> u8 {
    let (lo, hi, w) = match (lo, hi) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32u32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128u32),
        _ => return 0,
    };
    let mut cur = lo;
    let mut longest = 0u32;
    loop {
        // The largest aligned block that starts at `cur` and ends at or before `hi`.
        let mut k = cur.trailing_zeros().min(w);
        let mask = |k: u32| {
            if k >= 128 {
                u128::MAX
            } else {
                (1u128 << k) - 1
            }
        };
        while mask(k) > hi - cur {
            k -= 1;
        }
        longest = longest.max(w - k);
        if mask(k) == hi - cur {
            return longest as u8;
        }
        cur += mask(k) + 1;
    }
}

/// Shows a pool range as MetalLB users write it: a CIDR when it is one, else "a-b".
fn show_range(lo: IpAddr, hi: IpAddr) -> String {
    let len = longest_block(lo, hi);
    match IpNet::new(lo, len) {
        Ok(n) if n.network() == lo && n.broadcast() == hi => n.to_string(),
        _ => format!("{lo}-{hi}"),
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

fn from_legacy(l: &LegacyConfig, r: &ObjRef, c: &mut Collector) -> Config {
    let mut cfg = Config { source: Source::ConfigMap, ..Default::default() };
    for (alias, v) in &l.bgp_communities {
        if let Err(e) = parse_community_value(v) {
            c.error(r, format!("config: bgp-communities.{alias}: {e}"));
        }
    }
    let mut bfd = BTreeMap::new();
    for (i, p) in l.bfd_profiles.iter().enumerate() {
        if p.name.is_empty() {
            c.error(r, format!("config: bfd-profiles[{i}].name: required"));
        } else if let Some(b) = bfd_profile(p, r, c) {
            bfd.insert(p.name.clone(), b);
        }
    }
    for (i, p) in l.peers.iter().enumerate() {
        let field = format!("config: peers[{i}].");
        let nodes: Vec<Selector> = p
            .node_selectors
            .iter()
            .enumerate()
            .filter_map(|(j, s)| {
                let ls = LabelSelector {
                    match_labels: s.match_labels.clone(),
                    match_expressions: s.match_expressions.clone(),
                };
                Selector::new(&ls).map_err(|e| c.error(r, format!("{field}node-selectors[{j}]: {e}"))).ok()
            })
            .collect();
        if let Some(config) = peer_config(p, pb::DynamicAsn::None, &bfd, &field, r, c) {
            cfg.peers.push(Peer { name: config.address.clone(), nodes, config });
        }
    }
    let mut names = BTreeSet::new();
    for (i, p) in l.address_pools.iter().enumerate() {
        let field = format!("config: address-pools[{i}]");
        if p.name.is_empty() {
            c.error(r, format!("{field}.name: required"));
        } else if !names.insert(p.name.clone()) {
            c.error(r, format!("{field}.name: pool {:?} defined twice", p.name));
        }
        let ranges = pool_ranges(&p.addresses, &format!("{field}.addresses"), r, c);
        cfg.pools.push(Pool { name: p.name.clone(), labels: BTreeMap::new(), ranges });
        let only = PoolSelection { names: vec![p.name.clone()], selectors: vec![] };
        match p.protocol.as_str() {
            "bgp" => {
                let ads = if p.bgp_advertisements.is_empty() {
                    vec![LegacyAdvertisement::default()]
                } else {
                    p.bgp_advertisements.clone()
                };
                for (j, a) in ads.iter().enumerate() {
                    if let Some(mut a) =
                        bgp_advertisement(a, &l.bgp_communities, &format!("{field}.bgp-advertisements[{j}]."), r, c)
                    {
                        a.name = format!("{}-{j}", p.name);
                        a.pools = only.clone();
                        if let Some(pool) = cfg.pools.last() {
                            check_aggregation(
                                &a,
                                std::slice::from_ref(pool),
                                &format!("{field}.bgp-advertisements[{j}]."),
                                r,
                                c,
                            );
                        }
                        cfg.bgp_advertisements.push(a);
                    }
                }
            }
            "layer2" => {
                if !p.bgp_advertisements.is_empty() {
                    c.error(r, format!("{field}.bgp-advertisements: only for protocol bgp"));
                }
                cfg.l2_advertisements.push(L2Advertisement {
                    name: p.name.clone(),
                    pools: only,
                    nodes: vec![],
                    interfaces: vec![],
                    services: vec![],
                    preferred: vec![],
                });
            }
            other => c.error(r, format!("{field}.protocol: {other:?}: \"bgp\" or \"layer2\"")),
        }
    }
    let refs = vec![r.clone(); cfg.pools.len()];
    check_overlaps(&cfg.pools, &refs, c);
    cfg
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

/// `^lo$` → `lo`; `^veth.*`, `^veth` → `veth*`. None for anything else.
pub fn regex_to_pattern(re: &str) -> Option<String> {
    let rest = re.strip_prefix('^')?;
    let (body, exact) = if let Some(b) = rest.strip_suffix('$') {
        match b.strip_suffix(".*") {
            Some(b) => (b, false),
            None => (b, true),
        }
    } else {
        (rest.strip_suffix(".*").unwrap_or(rest), false)
    };
    let mut name = String::new();
    let mut chars = body.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some(e @ ('.' | '-' | '_')) => name.push(e),
                _ => return None,
            },
            ch if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' => name.push(ch),
            _ => return None,
        }
    }
    if name.is_empty() || name.len() > 15 {
        return None;
    }
    Some(if exact { name } else { format!("{name}*") })
}

/// Every pool an advertisement names must exist.
fn check_pool_refs(names: &[String], pools: &BTreeSet<&str>, r: &ObjRef, c: &mut Collector) {
    for (i, p) in names.iter().enumerate() {
        if !pools.contains(p.as_str()) {
            c.error(r, format!("spec.ipAddressPools[{i}]: no IPAddressPool named {p:?}"));
        }
    }
}

fn selectors(list: &[LabelSelector], field: &str, r: &ObjRef, c: &mut Collector) -> Vec<Selector> {
    list.iter()
        .enumerate()
        .filter_map(|(i, s)| Selector::new(s).map_err(|e| c.error(r, format!("{field}[{i}]: {e}"))).ok())
        .collect()
}

fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Pool addresses: CIDRs ("192.0.2.0/24") or inclusive ranges ("192.0.2.10-192.0.2.20").
fn pool_ranges(list: &[String], field: &str, r: &ObjRef, c: &mut Collector) -> Vec<(IpAddr, IpAddr)> {
    let mut out = Vec::new();
    if list.is_empty() {
        c.error(r, format!("{field}: at least one CIDR or range"));
    }
    for (i, a) in list.iter().enumerate() {
        match parse_range(a.trim()) {
            Ok(x) => out.push(x),
            Err(e) => c.error(r, format!("{field}[{i}]: {a:?}: {e}")),
        }
    }
    out
}

pub fn parse_range(s: &str) -> Result<(IpAddr, IpAddr), String> {
    if let Some((a, b)) = s.split_once('-') {
        let a: IpAddr = a.trim().parse().map_err(|_| "bad start address of the range".to_string())?;
        let b: IpAddr = b.trim().parse().map_err(|_| "bad end address of the range".to_string())?;
        if !same_family(a, b) {
            return Err("the range mixes IPv4 and IPv6".into());
        }
        if a > b {
            return Err("the range's start is after its end".into());
        }
        return Ok((a, b));
    }
    let n: IpNet =
        s.parse().map_err(|_| "not a CIDR (\"192.0.2.0/24\") or a range (\"192.0.2.10-192.0.2.20\")".to_string())?;
    if n.trunc() != n {
        return Err(format!("host bits set; did you mean {}?", n.trunc()));
    }
    Ok((n.network(), n.broadcast()))
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

/// Go durations as MetalLB writes them: "90s", "1m30s", "500ms", "3h".
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?}: not a duration (e.g. \"90s\", \"1m30s\")");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest.find(|ch: char| !(ch.is_ascii_digit() || ch == '.')).ok_or_else(bad)?;
        let v: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest.find(|ch: char| ch.is_ascii_digit() || ch == '.').unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += v * mult;
        rest = &rest[u..];
    }
    if !(0.0..1e9).contains(&total) {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

fn secs_field(v: &Option<String>, field: &str, r: &ObjRef, c: &mut Collector) -> Option<u32> {
    let t = v.as_ref()?;
    match parse_duration(t) {
        Ok(d) if d.as_secs() <= 65535 => Some(d.as_secs() as u32),
        Ok(_) => {
            c.error(r, format!("{field}: {t:?}: at most 65535s"));
            None
        }
        Err(e) => {
            c.error(r, format!("{field}: {e}"));
            None
        }
    }
}

fn asn(v: u64, field: &str, r: &ObjRef, c: &mut Collector) -> u32 {
    if v == 0 || v > u64::from(u32::MAX) {
        c.error(r, format!("{field}: {v}: an AS number is 1..4294967295"));
        return 0;
    }
    v as u32
}

fn peer_config(
    p: &LegacyPeer,
    dynamic: pb::DynamicAsn,
    bfd: &BTreeMap<String, pb::BfdProfile>,
    field: &str,
    r: &ObjRef,
    c: &mut Collector,
) -> Option<pb::PeerConfig> {
    let before = c.problems.len();
    let camel = field.starts_with("spec.");
    let f = |crd: &str, legacy: &str| format!("{field}{}", if camel { crd } else { legacy });
    let local_asn = asn(p.my_asn, &f("myASN", "my-asn"), r, c);
    let peer_asn = match dynamic {
        pb::DynamicAsn::None => asn(p.peer_asn, &f("peerASN", "peer-asn"), r, c),
        _ => 0,
    };
    let address = match p.peer_address.parse::<IpAddr>() {
        Ok(a) => a.to_string(),
        Err(_) => {
            c.error(r, format!("{}: {:?} is not an IP address", f("peerAddress", "peer-address"), p.peer_address));
            String::new()
        }
    };
    if !p.source_address.is_empty() && p.source_address.parse::<IpAddr>().is_err() {
        c.error(r, format!("{}: {:?} is not an IP address", f("sourceAddress", "source-address"), p.source_address));
    }
    if !p.router_id.is_empty() && p.router_id.parse::<std::net::Ipv4Addr>().is_err() {
        c.error(r, format!("{}: {:?} is not an IPv4 address", f("routerID", "router-id"), p.router_id));
    }
    let port = match p.peer_port {
        None | Some(0) => 0,
        Some(x) if x <= 65535 => x,
        Some(x) => {
            c.error(r, format!("{}: {x}: 1..65535", f("peerPort", "peer-port")));
            0
        }
    };
    let hold = secs_field(&p.hold_time, &f("holdTime", "hold-time"), r, c);
    if let Some(h) = hold {
        if h != 0 && h < 3 {
            c.error(r, format!("{}: {h}s: 0 or at least 3s", f("holdTime", "hold-time")));
        }
    }
    let keepalive = secs_field(&p.keepalive_time, &f("keepaliveTime", "keepalive-time"), r, c);
    if let (Some(k), Some(h)) = (keepalive, hold) {
        if k > h {
            c.error(r, format!("{}: {k}s is longer than the hold time {h}s", f("keepaliveTime", "keepalive-time")));
        }
    }
    if p.password.len() > 80 {
        c.error(r, format!("{}: at most 80 bytes", f("password", "password")));
    }
    let bfd = if p.bfd_profile.is_empty() {
        None
    } else {
        match bfd.get(&p.bfd_profile) {
            Some(b) => Some(b.clone()),
            None => {
                c.error(r, format!("{}: no BFDProfile named {:?}", f("bfdProfile", "bfd-profile"), p.bfd_profile));
                None
            }
        }
    };
    if c.problems[before..].iter().any(|p| p.severity == Severity::Error) {
        return None;
    }
    // As MetalLB (FRR mode): a session carries the family of its peer's address only; BGPPeer
    // `dualStackAddressFamily` (CRD path) opens it to both.
    let families = match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => vec![pb::AddressFamily::Ipv4Unicast as i32],
        Ok(IpAddr::V6(_)) => vec![pb::AddressFamily::Ipv6Unicast as i32],
        Err(_) => Vec::new(),
    };
    Some(pb::PeerConfig {
        address,
        port,
        families,
        peer_asn,
        dynamic_asn: dynamic as i32,
        local_asn,
        router_id: p.router_id.clone(),
        source_address: p.source_address.clone(),
        hold_time_secs: hold,
        keepalive_time_secs: keepalive,
        password: p.password.clone(),
        // MetalLB (FRR mode) uses "ebgp-multihop" without a TTL: 255.
        ebgp_multihop_ttl: if p.ebgp_multihop { 255 } else { 0 },
        bfd,
        ..Default::default()
    })
}

fn bfd_profile(p: &LegacyBfdProfile, r: &ObjRef, c: &mut Collector) -> Option<pb::BfdProfile> {
    let before = c.problems.len();
    let range = |v: Option<u32>, lo: u32, hi: u32, field: &str, c: &mut Collector| {
        if let Some(x) = v.filter(|x| !(lo..=hi).contains(x)) {
            c.error(r, format!("{field}: {x}: {lo}..{hi}"));
        }
    };
    range(p.receive_interval, 10, 60000, "spec.receiveInterval", c);
    range(p.transmit_interval, 10, 60000, "spec.transmitInterval", c);
    range(p.detect_multiplier, 2, 255, "spec.detectMultiplier", c);
    range(p.minimum_ttl, 1, 254, "spec.minimumTtl", c);
    if p.echo_mode || p.echo_interval.is_some() {
        c.warn(r, "spec.echoMode/echoInterval: BFD echo is not supported by speakerd; ignored");
    }
    if c.problems[before..].iter().any(|p| p.severity == Severity::Error) {
        return None;
    }
    Some(pb::BfdProfile {
        receive_interval_ms: p.receive_interval.unwrap_or(0),
        transmit_interval_ms: p.transmit_interval.unwrap_or(0),
        detect_multiplier: p.detect_multiplier.unwrap_or(0),
        passive_mode: p.passive_mode,
        minimum_ttl: p.minimum_ttl.unwrap_or(0),
        ..Default::default()
    })
}

/// A community value as MetalLB writes it: "65000:100" (RFC 1997) or "large:1:2:3" (RFC 8092).
/// Returns (is_large, value in speakerd's spelling).
pub fn parse_community_value(v: &str) -> Result<(bool, String), String> {
    if let Some(l) = v.strip_prefix("large:") {
        let parts: Vec<&str> = l.split(':').collect();
        if parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()) {
            return Ok((true, l.to_string()));
        }
        return Err(format!("{v:?}: a large community is \"large:GLOBAL:LOCAL1:LOCAL2\" with 32-bit numbers"));
    }
    match v.split_once(':') {
        Some((a, b)) if a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok() => Ok((false, v.to_string())),
        _ => Err(format!("{v:?}: a community is \"ASN:VALUE\" with 16-bit numbers, or \"large:A:B:C\"")),
    }
}

fn bgp_advertisement(
    a: &LegacyAdvertisement,
    aliases: &BTreeMap<String, String>,
    field: &str,
    r: &ObjRef,
    c: &mut Collector,
) -> Option<BgpAdvertisement> {
    let before = c.problems.len();
    let camel = field.starts_with("spec.");
    let f = |crd: &str, legacy: &str| format!("{field}{}", if camel { crd } else { legacy });
    let len = |v: Option<i64>, max: i64, name: String, c: &mut Collector| -> u8 {
        match v {
            None => max as u8,
            Some(x) if (0..=max).contains(&x) => x as u8,
            Some(x) => {
                c.error(r, format!("{name}: {x}: 0..{max}"));
                max as u8
            }
        }
    };
    let aggregation_v4 = len(a.aggregation_length, 32, f("aggregationLength", "aggregation-length"), c);
    let aggregation_v6 = len(a.aggregation_length_v6, 128, f("aggregationLengthV6", "aggregation-length-v6"), c);
    let (mut communities, mut large_communities) = (Vec::new(), Vec::new());
    for (i, v) in a.communities.iter().enumerate() {
        let value = aliases.get(v).map(String::as_str).unwrap_or(v);
        match parse_community_value(value) {
            Ok((true, x)) => large_communities.push(x),
            Ok((false, x)) => communities.push(x),
            Err(_) if !v.contains(':') => {
                c.error(r, format!("{}[{i}]: {v:?} is not a known Community alias", f("communities", "communities")))
            }
            Err(e) => c.error(r, format!("{}[{i}]: {e}", f("communities", "communities"))),
        }
    }
    if c.problems[before..].iter().any(|p| p.severity == Severity::Error) {
        return None;
    }
    Some(BgpAdvertisement {
        name: String::new(),
        pools: PoolSelection::default(),
        nodes: Vec::new(),
        aggregation_v4,
        aggregation_v6,
        local_pref: a.localpref,
        communities,
        large_communities,
        peers: Vec::new(),
        services: Vec::new(),
    })
}
