//! Cluster state + configuration → what this node's speakerd should do. Pure and deterministic: the
//! same input gives the same output, in a stable order, on every node (Layer 2 candidate lists must be
//! equal everywhere for the election to agree).
use crate::cluster::{Cluster, NodeInfo, Slice, Svc};
use crate::config::{Config, Pool};
use crate::selector::any_matches;
use ipnet::IpNet;
use speaker_api::v1 as pb;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Annotations naming the pool a Service wants (MetalLB's old and new spellings).
pub const POOL_ANNOTATIONS: [&str; 2] = ["metallb.io/address-pool", "metallb.universe.tf/address-pool"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// This node's name (NODE_NAME).
    pub node: String,
    /// Serve only Services of this spec.loadBalancerClass; None: only Services without a class.
    pub lb_class: Option<String>,
    /// Gossip port of the other nodes' speakerd.
    pub gossip_port: u16,
    /// Announce from nodes labelled node.kubernetes.io/exclude-from-external-load-balancers too.
    pub ignore_exclude_lb: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Bgp,
    Layer2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Bgp => "bgp",
            Protocol::Layer2 => "layer2",
        }
    }
}

/// One IP of one Service that this node announces (for Events and status objects).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceAnnouncement {
    pub namespace: String,
    pub name: String,
    pub ip: IpAddr,
    pub protocol: Protocol,
    pub pool: String,
}

/// An IP of a Service that nobody can announce, and why (Warning Events).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Unannounceable {
    pub namespace: String,
    pub name: String,
    pub ip: IpAddr,
    pub reason: String,
}

/// This node's desired speakerd state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Desired {
    pub peers: Vec<pb::PeerConfig>,
    pub bgp: Vec<pb::Announcement>,
    pub l2: Vec<pb::L2Announcement>,
    pub seeds: Vec<String>,
    pub services: Vec<ServiceAnnouncement>,
    pub unannounceable: Vec<Unannounceable>,
    /// Peers left out because another BGPPeer for this node has the same address.
    pub duplicate_peers: Vec<String>,
}

/// Does any endpoint of the Service count, on `node` (Local) or anywhere (Cluster)? As kube-proxy
/// counts them: ready endpoints, and serving-but-terminating ones (kube-proxy falls back to those when
/// there is no ready one, which keeps an IP announced while a rolling update drains the last pod).
fn has_endpoint(slices: &[&Slice], node: Option<&str>) -> bool {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| node.is_none() || e.node.as_deref() == node)
        .any(|e| e.ready || (e.serving && e.terminating))
}

fn node_can_announce(n: &NodeInfo, opts: &Options) -> bool {
    (opts.ignore_exclude_lb || !n.excluded()) && !n.network_unavailable
}

pub fn translate(cfg: &Config, cluster: &Cluster, opts: &Options) -> Desired {
    let mut d = Desired::default();
    let me = cluster.nodes.iter().map(|n| &**n).find(|n| n.name == opts.node);
    let empty = crate::cluster::Pairs::default();
    let my_labels = me.map_or(&empty, |n| &n.labels);

    // Peers whose node selectors match this node; of two with one address, the first by name.
    let mut by_addr: BTreeMap<String, &crate::config::Peer> = BTreeMap::new();
    let mut peers: Vec<&crate::config::Peer> = cfg.peers.iter().filter(|p| any_matches(&p.nodes, my_labels)).collect();
    peers.sort_by(|a, b| a.name.cmp(&b.name));
    for p in peers {
        if by_addr.contains_key(&p.config.address) {
            d.duplicate_peers.push(p.name.clone());
        } else {
            by_addr.insert(p.config.address.clone(), p);
        }
    }
    d.peers = by_addr.values().map(|p| p.config.clone()).collect();

    let mut seeds: BTreeSet<String> = BTreeSet::new();
    for n in &cluster.nodes {
        if n.name != opts.node {
            if let Some(ip) = n.internal_ips.first() {
                seeds.insert(std::net::SocketAddr::new(*ip, opts.gossip_port).to_string());
            }
        }
    }
    d.seeds = seeds.into_iter().collect();

    let mut slices: BTreeMap<(&str, &str), Vec<&Slice>> = BTreeMap::new();
    for s in cluster.slices.iter().map(|s| &**s) {
        slices.entry((s.namespace.as_str(), s.service.as_str())).or_default().push(s);
    }
    let mut bgp: BTreeMap<IpNet, pb::Announcement> = BTreeMap::new();
    let mut l2: BTreeMap<IpAddr, L2Acc> = BTreeMap::new();
    let mut services = BTreeSet::new();
    let mut unannounceable = BTreeSet::new();
    let mut svcs: Vec<&Svc> =
        cluster.services.iter().map(|s| &**s).filter(|s| s.load_balancer && s.lb_class == opts.lb_class).collect();
    svcs.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for svc in svcs {
        let eps = slices.get(&(svc.namespace.as_str(), svc.name.as_str())).map(Vec::as_slice).unwrap_or(&[]);
        for &ip in &svc.ips {
            let mut skip = |reason: String| {
                unannounceable.insert(Unannounceable {
                    namespace: svc.namespace.clone(),
                    name: svc.name.clone(),
                    ip,
                    reason,
                });
            };
            let Some(pool) = cfg.pool_of(ip) else {
                skip("the IP is in no IPAddressPool".into());
                continue;
            };
            if let Some(want) = POOL_ANNOTATIONS.iter().find_map(|a| svc.annotations.get(a)) {
                if want != pool.name {
                    skip(format!("the IP is in pool {:?}, not in the annotated pool {want:?}", pool.name));
                    continue;
                }
            }
            let usable = |node: &str| {
                if svc.etp_local {
                    has_endpoint(eps, Some(node))
                } else {
                    has_endpoint(eps, None)
                }
            };
            let rec = |protocol| ServiceAnnouncement {
                namespace: svc.namespace.clone(),
                name: svc.name.clone(),
                ip,
                protocol,
                pool: pool.name.clone(),
            };
            if let Some(me) = me {
                if bgp_from_here(cfg, pool, me, opts, &usable, ip, &svc.labels, &mut bgp) {
                    services.insert(rec(Protocol::Bgp));
                }
            }
            if l2_from_here(cfg, pool, cluster, opts, &usable, ip, &svc.labels, &mut l2) {
                services.insert(rec(Protocol::Layer2));
            }
        }
    }
    d.bgp = bgp.into_values().collect();
    d.l2 = l2
        .into_iter()
        .map(|(ip, acc)| pb::L2Announcement {
            ip: ip.to_string(),
            nodes: acc.nodes.into_iter().collect(),
            interfaces: acc.interfaces.unwrap_or_default().into_iter().collect(),
            exclude_interfaces: cfg.l2_exclude_interfaces.clone(),
            node_weights: acc.weights.into_iter().collect(),
            ..Default::default()
        })
        .collect();
    d.services = services.into_iter().collect();
    d.unannounceable = unannounceable.into_iter().collect();
    d
}

/// Adds the BGP announcements of `ip` from this node; returns whether there is any.
#[allow(clippy::too_many_arguments)]
fn bgp_from_here(
    cfg: &Config,
    pool: &Pool,
    me: &NodeInfo,
    opts: &Options,
    usable: &dyn Fn(&str) -> bool,
    ip: IpAddr,
    svc_labels: &crate::cluster::Pairs,
    out: &mut BTreeMap<IpNet, pb::Announcement>,
) -> bool {
    // A cordoned node keeps advertising: MetalLB 0.14.8 withdrew routes on cordon and reverted that in
    // 0.15.0 after outage reports (a cordon is not a drain); we do as upstream does now.
    if !node_can_announce(me, opts) || !usable(&me.name) {
        return false;
    }
    let mut any = false;
    for a in cfg
        .bgp_advertisements
        .iter()
        .filter(|a| a.pools.selects(pool) && any_matches(&a.nodes, &me.labels) && any_matches(&a.services, svc_labels))
    {
        let len = if ip.is_ipv4() { a.aggregation_v4 } else { a.aggregation_v6 };
        let Ok(prefix) = IpNet::new(ip, len).map(|n| n.trunc()) else {
            continue;
        };
        // Never a route wider than the pool (configuration validation refuses such aggregation
        // lengths already; this holds whatever configuration reaches here).
        if !pool
            .ranges
            .iter()
            .any(|(lo, hi)| lo.is_ipv4() == ip.is_ipv4() && *lo <= prefix.network() && prefix.broadcast() <= *hi)
        {
            continue;
        }
        any = true;
        match out.get_mut(&prefix) {
            None => {
                out.insert(
                    prefix,
                    pb::Announcement {
                        prefix: prefix.to_string(),
                        communities: a.communities.clone(),
                        large_communities: a.large_communities.clone(),
                        local_pref: a.local_pref,
                        med: None,
                        peers: a.peers.clone(),
                        owner: String::new(),
                    },
                );
            }
            Some(m) => {
                // Two advertisements of one prefix: one route with both's communities, the higher
                // LOCAL_PREF, and the union of peers (empty = every peer wins).
                for c in &a.communities {
                    if !m.communities.contains(c) {
                        m.communities.push(c.clone());
                    }
                }
                for c in &a.large_communities {
                    if !m.large_communities.contains(c) {
                        m.large_communities.push(c.clone());
                    }
                }
                m.local_pref = m.local_pref.max(a.local_pref);
                if m.peers.is_empty() || a.peers.is_empty() {
                    m.peers.clear();
                } else {
                    for p in &a.peers {
                        if !m.peers.contains(p) {
                            m.peers.push(p.clone());
                        }
                    }
                }
            }
        }
    }
    any
}

/// Layer 2 candidates and interfaces of one IP, gathered over the Services that share it.
#[derive(Default)]
struct L2Acc {
    nodes: BTreeSet<String>,
    /// None: every interface on the IP's subnet.
    interfaces: Option<BTreeSet<String>>,
    /// `preferredNodeSelectors` weights of the candidates (only those above 0).
    weights: BTreeMap<String, u32>,
}

/// Adds the Layer 2 announcement of `ip` if this node is one of its candidates; returns whether it is.
#[allow(clippy::too_many_arguments)]
fn l2_from_here(
    cfg: &Config,
    pool: &Pool,
    cluster: &Cluster,
    opts: &Options,
    usable: &dyn Fn(&str) -> bool,
    ip: IpAddr,
    svc_labels: &crate::cluster::Pairs,
    out: &mut BTreeMap<IpAddr, L2Acc>,
) -> bool {
    let ads: Vec<_> = cfg
        .l2_advertisements
        .iter()
        .filter(|a| a.pools.selects(pool) && any_matches(&a.services, svc_labels))
        .collect();
    if ads.is_empty() {
        return false;
    }
    let mut candidates = BTreeSet::new();
    let mut weights: BTreeMap<String, u32> = BTreeMap::new();
    let mut interfaces: Option<BTreeSet<String>> = Some(BTreeSet::new());
    for n in cluster.nodes.iter().filter(|n| node_can_announce(n, opts) && usable(&n.name)) {
        for a in ads.iter().filter(|a| any_matches(&a.nodes, &n.labels)) {
            candidates.insert(n.name.clone());
            // As MetalLB: the weights of every matching preference of every advertisement that selects
            // the node add up.
            let w: u32 = a.preferred.iter().filter(|(_, sel)| sel.matches(&n.labels)).map(|(w, _)| *w).sum();
            if w > 0 {
                *weights.entry(n.name.clone()).or_default() += w;
            }
            if n.name == opts.node {
                match (&mut interfaces, a.interfaces.is_empty()) {
                    (_, true) => interfaces = None,
                    (Some(set), false) => set.extend(a.interfaces.iter().cloned()),
                    (None, false) => {}
                }
            }
        }
    }
    if !candidates.contains(&opts.node) {
        return false;
    }
    // Another Service sharing the IP: union of candidates and of interfaces.
    let acc = out.entry(ip).or_insert_with(|| L2Acc {
        nodes: BTreeSet::new(),
        interfaces: Some(BTreeSet::new()),
        weights: BTreeMap::new(),
    });
    acc.nodes.extend(candidates);
    // Services sharing the IP: each node's highest weight (speakerd merges owners the same way).
    for (n, w) in weights {
        let e = acc.weights.entry(n).or_default();
        *e = (*e).max(w);
    }
    acc.interfaces = match (acc.interfaces.take(), interfaces) {
        (Some(mut a), Some(b)) => {
            a.extend(b);
            Some(a)
        }
        _ => None,
    };
    true
}
