//! The incremental state equals the whole translation after any sequence of changes: random
//! Services (shared IPs, IPs in one aggregate, both families, Local and Cluster), EndpointSlices
//! (moved between Services, endpoints flipped) and their deletions, under configurations with host
//! routes, aggregates, several advertisements of one prefix and Layer 2.
use k8s_bridge::cluster::{Endpoint, Index, NodeInfo, Pairs, Slice, Svc};
use k8s_bridge::config::{self, Config};
use k8s_bridge::incremental::State;
use k8s_bridge::translate::Options;
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::net::IpAddr;

const NODES: [&str; 3] = ["n1", "n2", "n3"];

fn configs() -> Vec<(&'static str, Config)> {
    let base = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: a, namespace: metallb-system}\nspec: {addresses: [10.0.0.0/24, '2001:db8::/120']}\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r, namespace: metallb-system}\nspec: {myASN: 64500, peerASN: 64501, peerAddress: 192.0.2.254}\n";
    let texts = [
        ("host routes", "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: h, namespace: metallb-system}\nspec: {}\n"),
        (
            "host routes and aggregates, two advertisements",
            "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: h, namespace: metallb-system}\nspec: {communities: ['64500:1'], localPref: 100}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: agg, namespace: metallb-system}\nspec: {aggregationLength: 30, aggregationLengthV6: 124, communities: ['64500:2'], localPref: 200}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: sel, namespace: metallb-system}\nspec: {serviceSelectors: [{matchLabels: {tier: gold}}], communities: ['64500:3']}\n",
        ),
        ("layer 2 and BGP", "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: h, namespace: metallb-system}\nspec: {aggregationLength: 31}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l2, namespace: metallb-system}\nspec: {}\n"),
    ];
    texts
        .iter()
        .map(|(name, extra)| {
            let (input, _) = k8s_bridge::offline::load(&format!("{base}{extra}"), "metallb-system", "config").unwrap();
            (*name, config::build(&input).unwrap().0)
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    /// Service `i` (of 8) with IPs from a small set (so that IPs are shared and fall in one aggregate).
    PutService {
        i: usize,
        ips: Vec<usize>,
        local: bool,
        gold: bool,
        lb: bool,
    },
    DeleteService(usize),
    /// Slice `j` (of 10) of Service `i`, endpoints (node, ready, serving, terminating).
    PutSlice {
        j: usize,
        i: usize,
        eps: Vec<(usize, bool, bool, bool)>,
    },
    DeleteSlice(usize),
}

/// 12 candidate IPs: host routes apart, pairs in one /31 and /30, a few IPv6, one outside every pool.
fn ip(k: usize) -> IpAddr {
    [
        "10.0.0.1",
        "10.0.0.2",
        "10.0.0.3",
        "10.0.0.4",
        "10.0.0.5",
        "10.0.0.9",
        "10.0.0.200",
        "2001:db8::1",
        "2001:db8::2",
        "2001:db8::11",
        "192.0.2.77",
        "10.0.0.3",
    ][k]
        .parse()
        .unwrap()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..8usize, prop::collection::vec(0..12usize, 0..3), any::<bool>(), any::<bool>(), prop::bool::weighted(0.9))
            .prop_map(|(i, ips, local, gold, lb)| Op::PutService { i, ips, local, gold, lb }),
        1 => (0..8usize).prop_map(Op::DeleteService),
        4 => (0..10usize, 0..8usize, prop::collection::vec((0..3usize, any::<bool>(), any::<bool>(), any::<bool>()), 0..4))
            .prop_map(|(j, i, eps)| Op::PutSlice { j, i, eps }),
        1 => (0..10usize).prop_map(Op::DeleteSlice),
    ]
}

fn apply(index: &mut Index, op: &Op) -> Vec<(String, String)> {
    let key = |i: usize| ("default".to_string(), format!("s{i}"));
    match op {
        Op::PutService { i, ips, local, gold, lb } => {
            let mut ips: Vec<IpAddr> = ips.iter().map(|k| ip(*k)).collect();
            ips.dedup();
            let svc = Svc {
                namespace: "default".into(),
                name: format!("s{i}"),
                load_balancer: *lb,
                etp_local: *local,
                ips,
                labels: if *gold { [("tier", "gold")].into() } else { Pairs::default() },
                ..Default::default()
            };
            if index.put_service(svc, format!("uid-{i}")) {
                vec![key(*i)]
            } else {
                vec![]
            }
        }
        Op::DeleteService(i) => {
            if index.remove_service(&key(*i)) {
                vec![key(*i)]
            } else {
                vec![]
            }
        }
        Op::PutSlice { j, i, eps } => {
            let slice = Slice {
                namespace: "default".into(),
                service: format!("s{i}"),
                endpoints: eps
                    .iter()
                    .map(|(n, ready, serving, terminating)| Endpoint {
                        node: Some(NODES[*n].into()),
                        ready: *ready,
                        serving: *serving,
                        terminating: *terminating,
                    })
                    .collect(),
            };
            index.put_slice(format!("e{j}"), slice)
        }
        Op::DeleteSlice(j) => index.remove_slice(&("default".into(), format!("e{j}"))).into_iter().collect(),
    }
}

fn nodes() -> Vec<NodeInfo> {
    NODES.iter().map(|n| NodeInfo { name: n.to_string(), ..Default::default() }).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn update_equals_the_whole_translation(ops in prop::collection::vec(op(), 1..40)) {
        let opts = Options { node: "n1".into(), lb_class: None, gossip_port: 7946, ignore_exclude_lb: false };
        for (name, cfg) in configs() {
            let mut index = Index::default();
            index.set_nodes(nodes());
            let mut state = State::full(&cfg, &index.cluster(), &opts);
            for (step, op) in ops.iter().enumerate() {
                let dirty: BTreeSet<_> = apply(&mut index, op).into_iter().collect();
                let before = state.clone();
                let delta = state.update(&cfg, &index, &dirty, &opts);
                let whole = State::full(&cfg, &index.cluster(), &opts);
                prop_assert_eq!(state.desired(), whole.desired(), "{}: step {} {:?}", name, step, op);
                // The delta is exactly the difference: applying it to the state before gives the state after.
                let c = &delta.changes;
                let mut bgp = before.bgp.clone();
                for p in &c.withdraw { bgp.remove(&p.parse().unwrap()); }
                for a in &c.announce { bgp.insert(a.prefix.parse().unwrap(), a.clone()); }
                prop_assert_eq!(&bgp, &state.bgp, "{}: step {} bgp delta", name, step);
                let mut l2 = before.l2.clone();
                for ip in &c.l2_withdraw { l2.remove(&ip.parse().unwrap()); }
                for a in &c.l2_announce { l2.insert(a.ip.parse().unwrap(), a.clone()); }
                prop_assert_eq!(&l2, &state.l2, "{}: step {} l2 delta", name, step);
                let mut services = before.services.clone();
                for r in &delta.unassigned { prop_assert!(services.remove(r)); }
                for r in &delta.assigned { prop_assert!(services.insert(r.clone())); }
                prop_assert_eq!(&services, &state.services, "{}: step {} records", name, step);
                let mut problems = before.unannounceable.clone();
                for u in &delta.announceable { prop_assert!(problems.remove(u)); }
                for u in &delta.unannounceable { prop_assert!(problems.insert(u.clone())); }
                prop_assert_eq!(&problems, &state.unannounceable, "{}: step {} problems", name, step);
                // Nothing changed, nothing sent.
                if before.desired() == state.desired() {
                    prop_assert!(c.is_empty(), "{}: step {} sent {:?} for no change", name, step, c);
                }
            }
        }
    }
}

/// The cases a random run may miss, by hand: a shared IP, an aggregate gathering two Services.
#[test]
fn a_change_reaches_the_services_sharing_a_prefix() {
    let opts = Options { node: "n1".into(), lb_class: None, gossip_port: 7946, ignore_exclude_lb: false };
    let cfgs = configs();
    let cfg = &cfgs[1].1;
    let mut index = Index::default();
    index.set_nodes(nodes());
    let mut state = State::full(cfg, &index.cluster(), &opts);
    let mut run = |ops: &[Op]| {
        let mut delta = None;
        for op in ops {
            let dirty: BTreeSet<_> = apply(&mut index, op).into_iter().collect();
            delta = Some(state.update(cfg, &index, &dirty, &opts));
        }
        (delta.unwrap(), state.bgp.keys().map(|p| p.to_string()).collect::<Vec<_>>())
    };
    // Two Services in 10.0.0.0/30 (10.0.0.1, 10.0.0.2), both with a ready endpoint.
    let ready = vec![(0, true, true, false)];
    let (_, held) = run(&[
        Op::PutService { i: 0, ips: vec![0], local: false, gold: false, lb: true },
        Op::PutService { i: 1, ips: vec![1], local: false, gold: true, lb: true },
        Op::PutSlice { j: 0, i: 0, eps: ready.clone() },
        Op::PutSlice { j: 1, i: 1, eps: ready.clone() },
    ]);
    assert_eq!(held, ["10.0.0.0/30", "10.0.0.1/32", "10.0.0.2/32"]);
    // s1's endpoint goes: its host route goes; the /30 stays, as s0 still has it, unchanged (the
    // serviceSelectors advertisement of s1 makes host routes only).
    let (d, _) = run(&[Op::PutSlice { j: 1, i: 1, eps: vec![(0, false, false, false)] }]);
    assert_eq!(d.changes.withdraw, vec!["10.0.0.2/32".to_string()]);
    assert!(d.changes.announce.is_empty(), "{:?}", d.changes.announce);
    // s0's goes too: the /30 goes with it.
    let (d, held) = run(&[Op::PutSlice { j: 0, i: 0, eps: vec![] }]);
    assert_eq!(d.changes.withdraw, vec!["10.0.0.0/30".to_string(), "10.0.0.1/32".to_string()]);
    assert!(held.is_empty());
}
