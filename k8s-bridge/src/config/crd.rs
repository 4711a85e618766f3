//! The configuration from the metallb.io objects: IPAddressPools, BGPPeers, BGPAdvertisements,
//! L2Advertisements, Communities and BFDProfiles. A bad object other than a pool is left out (or keeps
//! its last good version); the rest applies.
use super::parse::*;
use super::*;

/// Fields of a spec that k8s-bridge does not know (unknown to MetalLB too, or newer than this
/// bridge): a warning naming each, never silence.
pub(super) fn unknown_fields(extra: &BTreeMap<String, serde_json::Value>, r: &ObjRef, c: &mut Collector) {
    for k in extra.keys() {
        c.warn(r, format!("spec.{k}: unknown field, ignored"));
    }
}

pub(super) fn spec_of<'a, T>(o: &'a Obj<T>, r: &ObjRef, c: &mut Collector) -> Option<&'a T> {
    match &o.spec {
        Ok(s) => Some(s),
        Err(e) => {
            c.error(r, format!("spec: {e}"));
            None
        }
    }
}

pub(super) fn from_crds(input: &ConfigInput, previous: Option<&Config>, c: &mut Collector) -> Config {
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
pub(super) fn bfd_from_crd(
    o: &Obj<BfdProfileSpec>,
    s: &BfdProfileSpec,
    r: &ObjRef,
    c: &mut Collector,
) -> Option<pb::BfdProfile> {
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

/// MetalLB's `passwordSecret` must be of this type.
pub const BASIC_AUTH: &str = "kubernetes.io/basic-auth";

pub(super) fn peer_from_crd(
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

/// Every pool an advertisement names must exist.
pub(super) fn check_pool_refs(names: &[String], pools: &BTreeSet<&str>, r: &ObjRef, c: &mut Collector) {
    for (i, p) in names.iter().enumerate() {
        if !pools.contains(p.as_str()) {
            c.error(r, format!("spec.ipAddressPools[{i}]: no IPAddressPool named {p:?}"));
        }
    }
}
