//! Property: no configuration whatever makes k8s-bridge announce a prefix that is not inside one of
//! its pools. Configurations are generated as manifests (IPAddressPools as CIDRs or ranges, IPv4 and
//! IPv6, BGPAdvertisements with any aggregation length, pool names or selectors, and the legacy
//! ConfigMap), go through the same parsing, validation and translation as in the cluster, and every
//! BGP prefix of the result must lie wholly inside one range of one pool.
use k8s_bridge::config;
use k8s_bridge::offline;
use k8s_bridge::translate::{translate, Options};
use proptest::prelude::*;
use std::net::IpAddr;

#[derive(Debug, Clone)]
enum Addr {
    Cidr(IpAddr, u8),
    Range(IpAddr, IpAddr),
}

impl Addr {
    fn text(&self) -> String {
        match self {
            Addr::Cidr(a, l) => {
                let n = ipnet::IpNet::new(*a, *l).unwrap().trunc();
                format!("\"{n}\"")
            }
            Addr::Range(a, b) => format!("\"{a}-{b}\""),
        }
    }
}

fn v4(x: u32) -> IpAddr {
    IpAddr::V4(x.into())
}
fn v6(x: u128) -> IpAddr {
    IpAddr::V6(x.into())
}

/// Addresses inside 198.18.0.0/15 and 2001:db8::/32 (so that pools overlap now and then).
fn addr() -> impl Strategy<Value = Addr> {
    let base4 = 0xC612_0000u32; // 198.18.0.0
    let base6 = 0x2001_0db8u128 << 96;
    prop_oneof![
        (0u32..0x2_0000, 15u8..=32).prop_map(move |(o, l)| Addr::Cidr(v4(base4 + o), l)),
        (0u32..0x2_0000, 0u32..600).prop_map(move |(o, n)| Addr::Range(v4(base4 + o), v4(base4 + o + n))),
        (0u128..1 << 20, 32u8..=128).prop_map(move |(o, l)| Addr::Cidr(v6(base6 + (o << 8)), l)),
        (0u128..1 << 20, 0u128..5000).prop_map(move |(o, n)| Addr::Range(v6(base6 + o), v6(base6 + o + n))),
    ]
}

#[derive(Debug, Clone)]
struct Adv {
    agg4: Option<i64>,
    agg6: Option<i64>,
    /// Index of a pool to name, or None: every pool.
    pool: Option<usize>,
}

fn adv() -> impl Strategy<Value = Adv> {
    (proptest::option::of(-2i64..=34), proptest::option::of(-2i64..=130), proptest::option::of(0usize..3))
        .prop_map(|(agg4, agg6, pool)| Adv { agg4, agg6, pool })
}

fn manifests(pools: &[Vec<Addr>], ads: &[Adv], ips: &[IpAddr], legacy: bool) -> String {
    let mut t = String::new();
    if legacy {
        t.push_str("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config: |\n    address-pools:\n");
        for (i, p) in pools.iter().enumerate() {
            let addrs: Vec<String> = p.iter().map(Addr::text).collect();
            t.push_str(&format!(
                "    - name: p{i}\n      protocol: bgp\n      addresses: [{}]\n      bgp-advertisements:\n",
                addrs.join(", ")
            ));
            let mine: Vec<&Adv> = ads.iter().filter(|a| a.pool.is_none_or(|x| x == i)).collect();
            if mine.is_empty() {
                t.push_str("      - {}\n");
            }
            for a in mine {
                let mut f = vec![];
                if let Some(x) = a.agg4 {
                    f.push(format!("aggregation-length: {x}"));
                }
                if let Some(x) = a.agg6 {
                    f.push(format!("aggregation-length-v6: {x}"));
                }
                t.push_str(&format!("      - {{{}}}\n", f.join(", ")));
            }
        }
    } else {
        for (i, p) in pools.iter().enumerate() {
            let addrs: Vec<String> = p.iter().map(Addr::text).collect();
            t.push_str(&format!("---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: p{i}, namespace: metallb-system, labels: {{n: \"{i}\"}}}}\nspec: {{addresses: [{}]}}\n", addrs.join(", ")));
        }
        for (j, a) in ads.iter().enumerate() {
            let mut f = vec![];
            if let Some(x) = a.agg4 {
                f.push(format!("aggregationLength: {x}"));
            }
            if let Some(x) = a.agg6 {
                f.push(format!("aggregationLengthV6: {x}"));
            }
            match a.pool {
                Some(i) if j % 2 == 0 => f.push(format!("ipAddressPools: [p{i}]")),
                Some(i) => f.push(format!("ipAddressPoolSelectors: [{{matchLabels: {{n: \"{i}\"}}}}]")),
                None => {}
            }
            t.push_str(&format!("---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: a{j}, namespace: metallb-system}}\nspec: {{{}}}\n", f.join(", ")));
        }
    }
    t.push_str("---\napiVersion: v1\nkind: Node\nmetadata: {name: n1}\n");
    for (k, ip) in ips.iter().enumerate() {
        let fam = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
        t.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s{k}, namespace: default}}\nspec: {{type: LoadBalancer, ports: [{{port: 80}}]}}\nstatus: {{loadBalancer: {{ingress: [{{ip: \"{ip}\"}}]}}}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: s{k}-x, namespace: default, labels: {{kubernetes.io/service-name: s{k}}}}}\naddressType: {fam}\nendpoints: [{{addresses: [\"{ip}\"], nodeName: n1, conditions: {{ready: true}}}}]\n"
        ));
    }
    t
}

/// Service IPs: mostly inside the pools (the start, the end or a middle address of a range), some anywhere.
fn ips_for(pools: &[Vec<Addr>], picks: &[(usize, usize, u8, u64)]) -> Vec<IpAddr> {
    let all: Vec<&Addr> = pools.iter().flatten().collect();
    picks
        .iter()
        .map(|&(i, _, which, off)| {
            let (lo, hi) = match all[i % all.len()] {
                Addr::Cidr(a, l) => {
                    let n = ipnet::IpNet::new(*a, *l).unwrap().trunc();
                    (n.network(), n.broadcast())
                }
                Addr::Range(a, b) => (*a, *b),
            };
            match (which % 4, lo, hi) {
                (0, _, _) => lo,
                (1, _, _) => hi,
                (2, IpAddr::V4(a), IpAddr::V4(b)) => {
                    let (a, b) = (u32::from(a), u32::from(b));
                    v4(a + (off as u32) % (b - a).saturating_add(1).max(1))
                }
                (2, IpAddr::V6(a), IpAddr::V6(b)) => {
                    let (a, b) = (u128::from(a), u128::from(b));
                    v6(a + u128::from(off) % (b - a).saturating_add(1).max(1))
                }
                (_, IpAddr::V4(a), _) => v4(u32::from(a).wrapping_add(off as u32 % 70000)),
                (_, IpAddr::V6(a), _) => v6(u128::from(a).wrapping_add(u128::from(off % 70000))),
            }
        })
        .collect()
}

fn inside_a_pool(prefix: &str, cfg: &config::Config) -> bool {
    let n: ipnet::IpNet = prefix.parse().unwrap();
    cfg.pools.iter().any(|p| {
        p.ranges.iter().any(|(lo, hi)| lo.is_ipv4() == n.addr().is_ipv4() && *lo <= n.network() && n.broadcast() <= *hi)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_configuration_announces_outside_its_pools(
        pools in proptest::collection::vec(proptest::collection::vec(addr(), 1..3), 1..4),
        ads in proptest::collection::vec(adv(), 0..4),
        picks in proptest::collection::vec((0usize..8, 0usize..1, 0u8..4, any::<u64>()), 1..6),
        legacy in any::<bool>(),
    ) {
        let ips = ips_for(&pools, &picks);
        let text = manifests(&pools, &ads, &ips, legacy);
        let (input, cluster) = offline::load(&text, "metallb-system", "config").expect("generated manifests parse");
        let Ok((cfg, _)) = config::build(&input) else {
            // Refused as a whole (overlapping pools, say): nothing new is announced.
            return Ok(());
        };
        let opts = Options { node: "n1".into(), lb_class: None, gossip_port: 7946, ignore_exclude_lb: false };
        let d = translate(&cfg, &cluster, &opts);
        for a in &d.bgp {
            prop_assert!(inside_a_pool(&a.prefix, &cfg), "{} is not inside a pool\n{text}", a.prefix);
            prop_assert!(!a.prefix.ends_with("/0"), "default route {}", a.prefix);
        }
    }
}
