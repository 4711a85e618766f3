//! The configuration from MetalLB's legacy ConfigMap (`config` key, the pre-CRD YAML format).
use super::parse::*;
use super::*;

pub(super) fn from_legacy(l: &LegacyConfig, r: &ObjRef, c: &mut Collector) -> Config {
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
