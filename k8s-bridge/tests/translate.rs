//! The translation from MetalLB-style configuration and cluster state to one node's desired speakerd
//! state, over a table of manifests (every field of the issue's list appears in at least one case).
use k8s_bridge::config::{self, Severity};
use k8s_bridge::offline;
use k8s_bridge::translate::{translate, Desired, Options, Protocol};
use speaker_api::v1 as pb;

const NS: &str = "metallb-system";

fn opts(node: &str) -> Options {
    Options { node: node.into(), lb_class: None, gossip_port: 7946, ignore_exclude_lb: false }
}

/// Three nodes: n1 (zone a, rack 1), n2 (zone a), n3 (zone b).
const NODES: &str = r#"
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {zone: a, rack: "1"}}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}, {type: Hostname, address: n1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2, labels: {zone: a}}
status: {addresses: [{type: InternalIP, address: 10.0.0.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: n3, labels: {zone: b}}
status: {addresses: [{type: InternalIP, address: 10.0.0.3}]}
"#;

fn service(name: &str, ip: &str, etp: &str, extra: &str) -> String {
    format!(
        r#"
---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default{extra}}}
spec: {{type: LoadBalancer, externalTrafficPolicy: {etp}, ports: [{{port: 80}}]}}
status: {{loadBalancer: {{ingress: [{{ip: "{ip}"}}]}}}}
"#
    )
}

/// An EndpointSlice of `svc` with endpoints given as (node, ready, serving, terminating).
fn slice(svc: &str, eps: &[(&str, bool, bool, bool)]) -> String {
    let list: Vec<String> = eps
        .iter()
        .enumerate()
        .map(|(i, (n, r, s, t))| format!("{{addresses: [\"10.244.0.{i}\"], nodeName: {n}, conditions: {{ready: {r}, serving: {s}, terminating: {t}}}}}"))
        .collect();
    format!(
        r#"
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {svc}-x, namespace: default, labels: {{kubernetes.io/service-name: {svc}}}}}
addressType: IPv4
endpoints: [{}]
"#,
        list.join(", ")
    )
}

fn plan(text: &str, o: &Options) -> Desired {
    let (input, cluster) = offline::load(text, NS, "config").expect("manifests parse");
    let (cfg, warnings) = config::build(&input).unwrap_or_else(|p| panic!("config should be valid: {p:#?}"));
    assert!(warnings.is_empty(), "{warnings:#?}");
    translate(&cfg, &cluster, o)
}

fn problems(text: &str) -> Vec<String> {
    let (input, _) = offline::load(text, NS, "config").expect("manifests parse");
    let show = |p: &config::Problem| {
        let sev = match p.severity {
            Severity::Error => "error",
            Severity::Skipped => "skipped",
            Severity::Warning => "warning",
        };
        format!("{sev} {}: {}", p.object, p.message)
    };
    match config::build(&input) {
        Ok((_, w)) => w.iter().map(show).collect(),
        Err(p) => p.iter().map(show).collect(),
    }
}

const BGP_FULL: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: prod, namespace: metallb-system, labels: {tier: prod}}
spec:
  addresses: [192.0.2.0/24, "2001:db8:1::/120"]
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: communities, namespace: metallb-system}
spec:
  communities:
  - {name: no-export-dc, value: "65535:65281"}
  - {name: big, value: "large:64500:1:2"}
---
apiVersion: metallb.io/v1beta1
kind: BFDProfile
metadata: {name: fast, namespace: metallb-system}
spec: {receiveInterval: 100, transmitInterval: 150, detectMultiplier: 4, passiveMode: true, minimumTtl: 250}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor1, namespace: metallb-system}
spec:
  myASN: 64500
  peerASN: 4200000001
  peerAddress: 10.0.0.254
  peerPort: 1179
  sourceAddress: 10.0.0.1
  routerID: 10.0.0.1
  holdTime: 9s
  keepaliveTime: 3s
  connectTime: 5s
  password: s3cret
  ebgpMultiHop: true
  enableGracefulRestart: true
  bfdProfile: fast
  nodeSelectors: [{matchLabels: {zone: a}}]
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: tor2, namespace: metallb-system}
spec: {myASN: 64500, peerASN: 64500, peerAddress: "2001:db8::fe", passwordSecret: {name: tor2-pw}}
---
apiVersion: v1
kind: Secret
metadata: {name: tor2-pw, namespace: metallb-system}
type: kubernetes.io/basic-auth
stringData: {password: fromsecret}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: agg, namespace: metallb-system}
spec:
  ipAddressPoolSelectors: [{matchLabels: {tier: prod}}]
  aggregationLength: 24
  aggregationLengthV6: 120
  localPref: 150
  communities: [no-export-dc, "65000:2", big, "large:1:2:3"]
  peers: [tor1]
  nodeSelectors: [{matchExpressions: [{key: rack, operator: In, values: ["1", "2"]}]}]
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: hosts, namespace: metallb-system}
spec:
  ipAddressPools: [prod]
"#;

#[test]
fn bgp_every_field_from_crds() {
    let text = format!(
        "{BGP_FULL}{NODES}{}{}",
        service("web", "192.0.2.77", "Cluster", ""),
        slice("web", &[("n3", true, true, false)])
    );
    let d = plan(&text, &opts("n1"));
    let tor1 = pb::PeerConfig {
        name: "tor1".into(),
        address: "10.0.0.254".into(),
        port: 1179,
        peer_asn: 4_200_000_001,
        local_asn: 64500,
        router_id: "10.0.0.1".into(),
        source_address: "10.0.0.1".into(),
        hold_time_secs: Some(9),
        keepalive_time_secs: Some(3),
        connect_time_secs: Some(5),
        password: "s3cret".into(),
        ebgp_multihop_ttl: 255,
        graceful_restart: Some(pb::GracefulRestart { enabled: true, restart_time_secs: 0 }),
        bfd: Some(pb::BfdProfile {
            receive_interval_ms: 100,
            transmit_interval_ms: 150,
            detect_multiplier: 4,
            passive_mode: true,
            minimum_ttl: 250,
            ..Default::default()
        }),
        families: vec![pb::AddressFamily::Ipv4Unicast as i32],
        ..Default::default()
    };
    let tor2 = pb::PeerConfig {
        name: "tor2".into(),
        address: "2001:db8::fe".into(),
        peer_asn: 64500,
        local_asn: 64500,
        password: "fromsecret".into(),
        families: vec![pb::AddressFamily::Ipv6Unicast as i32],
        ..Default::default()
    };
    assert_eq!(d.peers, vec![tor1, tor2]);
    assert_eq!(
        d.bgp,
        vec![
            pb::Announcement {
                prefix: "192.0.2.0/24".into(),
                communities: vec!["65535:65281".into(), "65000:2".into()],
                large_communities: vec!["64500:1:2".into(), "1:2:3".into()],
                local_pref: Some(150),
                peers: vec!["tor1".into()],
                ..Default::default()
            },
            pb::Announcement { prefix: "192.0.2.77/32".into(), ..Default::default() },
        ]
    );
    assert_eq!(d.seeds, vec!["10.0.0.2:7946", "10.0.0.3:7946"]);
    assert!(d.l2.is_empty());
    assert_eq!(d.services.len(), 1);
    assert_eq!((d.services[0].protocol, d.services[0].pool.as_str()), (Protocol::Bgp, "prod"));

    // n3: tor1's selector (zone a) and the aggregate's (rack) do not match; tor2 and /32 remain.
    let d3 = plan(&text, &opts("n3"));
    assert_eq!(d3.peers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), vec!["tor2"]);
    assert_eq!(d3.bgp.iter().map(|a| a.prefix.as_str()).collect::<Vec<_>>(), vec!["192.0.2.77/32"]);
    assert_eq!(d3.seeds, vec!["10.0.0.1:7946", "10.0.0.2:7946"]);

    // IPv6 from a range pool, aggregated to /120 by the first advertisement.
    let text6 = format!(
        "{BGP_FULL}{NODES}{}{}",
        service("v6", "2001:db8:1::15", "Cluster", ""),
        slice("v6", &[("n2", true, true, false)])
    );
    let d6 = plan(&text6, &opts("n1"));
    assert_eq!(
        d6.bgp.iter().map(|a| a.prefix.as_str()).collect::<Vec<_>>(),
        vec!["2001:db8:1::/120", "2001:db8:1::15/128"]
    );
}

#[test]
fn two_advertisements_of_one_prefix_merge_into_one_route() {
    let text = format!(
        r#"{NODES}{}{}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: p, namespace: metallb-system}}
spec: {{addresses: [198.51.100.0/24]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: a, namespace: metallb-system}}
spec: {{localPref: 100, communities: ["65000:1"], peers: [x]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: b, namespace: metallb-system}}
spec: {{localPref: 200, communities: ["65000:2", "65000:1"], peers: [y]}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: x, namespace: metallb-system}}
spec: {{myASN: 1, peerASN: 2, peerAddress: 10.0.0.100}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: y, namespace: metallb-system}}
spec: {{myASN: 1, peerASN: 3, peerAddress: 10.0.0.101}}
"#,
        service("s", "198.51.100.1", "Cluster", ""),
        slice("s", &[("n1", true, true, false)])
    );
    let d = plan(&text, &opts("n1"));
    assert_eq!(d.bgp.len(), 1);
    let a = &d.bgp[0];
    assert_eq!((a.prefix.as_str(), a.local_pref), ("198.51.100.1/32", Some(200)));
    assert_eq!(a.communities, vec!["65000:1", "65000:2"]);
    assert_eq!(a.peers, vec!["x", "y"]);
}

const SIMPLE_BGP: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: p, namespace: metallb-system}
spec: {addresses: [203.0.113.0/24]}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: a, namespace: metallb-system}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: l2, namespace: metallb-system}
spec: {interfaces: [eth1, "bond*"], nodeSelectors: [{matchLabels: {zone: a}}, {matchLabels: {zone: b}}]}
"#;

fn announced_from(text: &str, node: &str) -> (bool, Vec<String>) {
    let d = plan(text, &opts(node));
    let bgp = d.bgp.iter().any(|a| a.prefix == "203.0.113.5/32");
    let l2 = d.l2.iter().find(|a| a.ip == "203.0.113.5").map(|a| a.nodes.clone()).unwrap_or_default();
    (bgp, l2)
}

#[test]
fn external_traffic_policy_local_counts_endpoints_as_kube_proxy_does() {
    let local = |eps: &[(&str, bool, bool, bool)]| {
        format!("{SIMPLE_BGP}{NODES}{}{}", service("s", "203.0.113.5", "Local", ""), slice("s", eps))
    };
    // Ready on n1 only: n1 announces (BGP) and is the only Layer 2 candidate.
    let t = local(&[("n1", true, true, false)]);
    assert_eq!(announced_from(&t, "n1"), (true, vec!["n1".to_string()]));
    assert_eq!(announced_from(&t, "n2"), (false, vec![]));
    // Terminating but still serving on n2 (a rolling update drains it): counts, as kube-proxy's fallback.
    let t = local(&[("n1", true, true, false), ("n2", false, true, true)]);
    assert_eq!(announced_from(&t, "n2"), (true, vec!["n1".to_string(), "n2".to_string()]));
    // Terminating and not serving: does not count. Not ready, not terminating: does not count.
    let t = local(&[("n1", true, true, false), ("n2", false, false, true), ("n3", false, false, false)]);
    assert_eq!(announced_from(&t, "n2"), (false, vec![]));
    assert_eq!(announced_from(&t, "n3"), (false, vec![]));
    // No endpoint anywhere: nobody announces.
    let t = local(&[]);
    assert_eq!(announced_from(&t, "n1"), (false, vec![]));

    // Cluster: every eligible node, as long as one endpoint is ready anywhere; none without.
    let cluster = |eps: &[(&str, bool, bool, bool)]| {
        format!("{SIMPLE_BGP}{NODES}{}{}", service("s", "203.0.113.5", "Cluster", ""), slice("s", eps))
    };
    let all = vec!["n1".to_string(), "n2".to_string(), "n3".to_string()];
    assert_eq!(announced_from(&cluster(&[("n3", true, true, false)]), "n1"), (true, all.clone()));
    assert_eq!(announced_from(&cluster(&[("n3", false, false, false)]), "n1"), (false, vec![]));
    // Layer 2 interfaces of this node's advertisement.
    let d = plan(&cluster(&[("n3", true, true, false)]), &opts("n2"));
    assert_eq!(d.l2[0].interfaces, vec!["bond*", "eth1"]);
}

#[test]
fn nodes_excluded_unavailable_or_cordoned() {
    let nodes = r#"
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {zone: a}}
---
apiVersion: v1
kind: Node
metadata: {name: n2, labels: {zone: a, node.kubernetes.io/exclude-from-external-load-balancers: ""}}
---
apiVersion: v1
kind: Node
metadata: {name: n3, labels: {zone: b}}
status: {conditions: [{type: NetworkUnavailable, status: "True"}]}
---
apiVersion: v1
kind: Node
metadata: {name: n4, labels: {zone: c}}
spec: {unschedulable: true}
"#;
    let t = format!(
        "{SIMPLE_BGP}{nodes}{}{}",
        service("s", "203.0.113.5", "Cluster", ""),
        slice("s", &[("n1", true, true, false)])
    );
    // n4 is cordoned: it keeps BGP (MetalLB reverted cordon-withdraws in 0.15.0); zone c matches no
    // L2Advertisement selector.
    assert_eq!(announced_from(&t, "n1"), (true, vec!["n1".to_string()]));
    assert_eq!(announced_from(&t, "n2"), (false, vec![]));
    assert_eq!(announced_from(&t, "n3"), (false, vec![]));
    assert_eq!(announced_from(&t, "n4"), (true, vec![]));
    let mut o = opts("n2");
    o.ignore_exclude_lb = true;
    assert!(plan(&t, &o).bgp.iter().any(|a| a.prefix == "203.0.113.5/32"), "--ignore-exclude-lb");
    // A node the bridge has no Node object for announces nothing over BGP.
    assert_eq!(announced_from(&t, "ghost"), (false, vec![]));
}

#[test]
fn service_filters_class_pool_annotation_and_sharing() {
    let svcs = [
        service("classless", "203.0.113.5", "Cluster", ""),
        service("other-class", "203.0.113.6", "Cluster", ""),
        service("wrong-pool", "203.0.113.7", "Cluster", ", annotations: {metallb.io/address-pool: gold}"),
        service("no-pool", "192.0.2.1", "Cluster", ""),
        service(
            "shared",
            "203.0.113.5",
            "Cluster",
            ", annotations: {metallb.universe.tf/allow-shared-ip: k, metallb.universe.tf/address-pool: p}",
        ),
    ]
    .concat()
    .replace(
        "name: other-class, namespace: default}\nspec: {type: LoadBalancer,",
        "name: other-class, namespace: default}\nspec: {loadBalancerClass: example.com/other, type: LoadBalancer,",
    );
    let eps: String = ["classless", "other-class", "wrong-pool", "no-pool", "shared"]
        .iter()
        .map(|s| slice(s, &[("n1", true, true, false)]))
        .collect();
    let t = format!("{SIMPLE_BGP}{NODES}{svcs}{eps}");
    let d = plan(&t, &opts("n1"));
    assert_eq!(
        d.bgp.iter().map(|a| a.prefix.as_str()).collect::<Vec<_>>(),
        vec!["203.0.113.5/32"],
        "shared IP once; other class, wrong pool and no pool skipped"
    );
    let names: Vec<_> = d.services.iter().map(|s| format!("{}/{:?}", s.name, s.protocol)).collect();
    assert_eq!(names, vec!["classless/Bgp", "classless/Layer2", "shared/Bgp", "shared/Layer2"]);
    let why: Vec<_> = d.unannounceable.iter().map(|u| format!("{} {}: {}", u.name, u.ip, u.reason)).collect();
    assert_eq!(
        why,
        vec![
            "no-pool 192.0.2.1: the IP is in no IPAddressPool",
            "wrong-pool 203.0.113.7: the IP is in pool \"p\", not in the annotated pool \"gold\"",
        ]
    );
    let mut o = opts("n1");
    o.lb_class = Some("example.com/other".into());
    let d = plan(&t, &o);
    assert_eq!(
        d.bgp.iter().map(|a| a.prefix.as_str()).collect::<Vec<_>>(),
        vec!["203.0.113.6/32"],
        "--lb-class serves only that class"
    );
}

const LEGACY: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: config, namespace: metallb-system}
data:
  config: |
    peers:
    - peer-address: 10.0.0.254
      peer-asn: 64501
      my-asn: 64500
      peer-port: 1179
      hold-time: 9s
      keepalive-time: 3s
      router-id: 10.0.0.1
      source-address: 10.0.0.1
      password: s3cret
      ebgp-multihop: true
      bfd-profile: fast
      node-selectors:
      - match-labels: {zone: a}
      - match-expressions: [{key: zone, operator: In, values: [c]}]
    bgp-communities:
      no-export-dc: 65535:65281
    bfd-profiles:
    - name: fast
      receive-interval: 100
      transmit-interval: 150
    address-pools:
    - name: bgp-pool
      protocol: bgp
      addresses: [203.0.113.0/24]
      bgp-advertisements:
      - aggregation-length: 32
        localpref: 120
        communities: [no-export-dc, "65000:7"]
    - name: default-ads
      protocol: bgp
      addresses: [198.51.100.0/28]
    - name: l2-pool
      protocol: layer2
      addresses: [192.0.2.10-192.0.2.20]
"#;

#[test]
fn legacy_configmap() {
    let svcs = [
        service("a", "203.0.113.9", "Cluster", ""),
        service("b", "198.51.100.3", "Cluster", ""),
        service("c", "192.0.2.15", "Cluster", ""),
    ]
    .concat();
    let eps: String = ["a", "b", "c"].iter().map(|s| slice(s, &[("n2", true, true, false)])).collect();
    let t = format!("{LEGACY}{NODES}{svcs}{eps}");
    let d = plan(&t, &opts("n1"));
    assert_eq!(d.peers.len(), 1);
    let p = &d.peers[0];
    assert_eq!(
        (p.name.as_str(), p.address.as_str(), p.port, p.peer_asn, p.local_asn),
        ("", "10.0.0.254", 1179, 64501, 64500)
    );
    assert_eq!(
        (p.hold_time_secs, p.keepalive_time_secs, p.ebgp_multihop_ttl, p.password.as_str()),
        (Some(9), Some(3), 255, "s3cret")
    );
    assert_eq!(p.bfd.as_ref().map(|b| (b.receive_interval_ms, b.transmit_interval_ms)), Some((100, 150)));
    assert_eq!(
        d.bgp,
        vec![
            pb::Announcement { prefix: "198.51.100.3/32".into(), ..Default::default() },
            pb::Announcement {
                prefix: "203.0.113.9/32".into(),
                communities: vec!["65535:65281".into(), "65000:7".into()],
                local_pref: Some(120),
                ..Default::default()
            },
        ]
    );
    assert_eq!(
        d.l2,
        vec![pb::L2Announcement {
            ip: "192.0.2.15".into(),
            nodes: vec!["n1".into(), "n2".into(), "n3".into()],
            ..Default::default()
        }]
    );
    // Node selectors: n2 (zone a) matches the first; n3 (zone b) neither.
    assert_eq!(plan(&t, &opts("n2")).peers.len(), 1);
    assert_eq!(plan(&t, &opts("n3")).peers.len(), 0);
    // IPAddressPools take precedence over the ConfigMap (which is then reported as ignored).
    let both = format!("{t}---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: x, namespace: metallb-system}}\nspec: {{addresses: [10.9.0.0/24]}}\n");
    assert_eq!(
        problems(&both),
        vec![
            "warning ConfigMap metallb-system/config: ignored: metallb.io IPAddressPools exist, which take precedence"
        ]
    );
}

#[test]
fn bad_configuration_names_the_object_and_field() {
    let pool = |name: &str, addrs: &str| {
        format!("---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {{addresses: [{addrs}]}}\n")
    };
    let peer = |spec: &str| {
        format!("---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: r, namespace: metallb-system}}\nspec: {{{spec}}}\n")
    };
    let adv = |spec: &str| {
        format!("---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: ad, namespace: metallb-system}}\nspec: {{{spec}}}\n")
    };
    let cases: Vec<(String, &str)> = vec![
        (pool("a", "10.0.0.0/24") + &pool("b", "10.0.0.128/25"), "error IPAddressPool metallb-system/a: addresses overlap with pool \"b\""),
        (pool("a", "10.0.0.0/33"), "error IPAddressPool metallb-system/a: spec.addresses[0]: \"10.0.0.0/33\": not a CIDR"),
        (pool("a", "10.0.0.1/24"), "error IPAddressPool metallb-system/a: spec.addresses[0]: \"10.0.0.1/24\": host bits set; did you mean 10.0.0.0/24?"),
        (pool("a", "10.0.0.9-10.0.0.1"), "error IPAddressPool metallb-system/a: spec.addresses[0]: \"10.0.0.9-10.0.0.1\": the range's start is after its end"),
        (pool("a", "10.0.0.0/24") + &adv("communities: [nosuch]"), "skipped BGPAdvertisement metallb-system/ad: spec.communities[0]: \"nosuch\" is not a known Community alias"),
        (pool("a", "10.0.0.0/24") + &adv("communities: [\"70000:1\"]"), "skipped BGPAdvertisement metallb-system/ad: spec.communities[0]: \"70000:1\": a community is"),
        (pool("a", "10.0.0.0/24") + &adv("aggregationLength: 33"), "skipped BGPAdvertisement metallb-system/ad: spec.aggregationLength: 33: 0..32"),
        (pool("a", "10.0.0.0/24") + &adv("ipAddressPools: [nope]"), "skipped BGPAdvertisement metallb-system/ad: spec.ipAddressPools[0]: no IPAddressPool named \"nope\""),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 0, peerASN: 1, peerAddress: 10.1.1.1"), "skipped BGPPeer metallb-system/r: spec.myASN: 0: an AS number is 1..4294967295"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 4294967296, peerAddress: 10.1.1.1"), "skipped BGPPeer metallb-system/r: spec.peerASN: 4294967296"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: nope"), "skipped BGPPeer metallb-system/r: spec.peerAddress: \"nope\" is not an IP address"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, holdTime: 90x"), "skipped BGPPeer metallb-system/r: spec.holdTime: \"90x\": not a duration"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, holdTime: 2s"), "skipped BGPPeer metallb-system/r: spec.holdTime: 2s: 0 or at least 3s"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, connectTime: 1500ms"), "skipped BGPPeer metallb-system/r: spec.connectTime: \"1500ms\": a whole number of seconds"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, connectTime: 0s"), "skipped BGPPeer metallb-system/r: spec.connectTime: \"0s\": 1s..65535s"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, connectTime: 18h13m"), "skipped BGPPeer metallb-system/r: spec.connectTime: \"18h13m\": 1s..65535s"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, bfdProfile: nope"), "skipped BGPPeer metallb-system/r: spec.bfdProfile: no BFDProfile named \"nope\""),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, vrf: red"), "skipped BGPPeer metallb-system/r: spec.vrf: \"red\": VRFs are not supported"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, passwordSecret: {name: gone}"), "skipped BGPPeer metallb-system/r: spec.passwordSecret: secret metallb-system/gone not found"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: \"x\", peerAddress: 10.1.1.1"), "skipped BGPPeer metallb-system/r: spec: invalid type"),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config: \"peers: [\"\n".to_string(),
            "error ConfigMap metallb-system/config: config: invalid YAML",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config: |\n    address-pools:\n    - {name: x, protocol: arp, addresses: [10.0.0.0/24]}\n".to_string(),
            "error ConfigMap metallb-system/config: config: address-pools[0].protocol: \"arp\": \"bgp\" or \"layer2\"",
        ),
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\ndata:\n  config: |\n    address-pools:\n    - {name: x, protocol: bgp, addresses: [10.0.0.0/24], bgp-advertisements: [{communities: [nosuch]}]}\n".to_string(),
            "error ConfigMap metallb-system/config: config: address-pools[0].bgp-advertisements[0].communities[0]: \"nosuch\" is not a known Community alias",
        ),
        (
            "---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: b, namespace: metallb-system}\nspec: {echoMode: true, echoInterval: 50}\n".to_string() + &pool("a", "10.0.0.0/24"),
            "warning BFDProfile metallb-system/b: spec.echoMode/echoInterval: BFD echo is not supported by speakerd; ignored",
        ),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerAddress: 10.1.1.1, dynamicASN: internal, ebgpMultiHop: true"), "skipped BGPPeer metallb-system/r: spec.ebgpMultiHop: set on an iBGP peer"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, dynamicASN: external"), "skipped BGPPeer metallb-system/r: spec.peerASN and spec.dynamicASN: set one, not both"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerAddress: 10.1.1.1, dynamicASN: sideways"), "skipped BGPPeer metallb-system/r: spec.dynamicASN: \"sideways\": \"internal\" or \"external\""),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, interface: eth0"), "skipped BGPPeer metallb-system/r: spec.interface: \"eth0\": BGP unnumbered is not supported"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 7, peerASN: 7, peerAddress: 10.1.1.1, ebgpMultiHop: true"), "skipped BGPPeer metallb-system/r: spec.ebgpMultiHop: set on an iBGP peer"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, passwordSecret: {name: opaque}") + "---\napiVersion: v1\nkind: Secret\nmetadata: {name: opaque, namespace: metallb-system}\nstringData: {password: x}\n",
            "skipped BGPPeer metallb-system/r: spec.passwordSecret: secret metallb-system/opaque is of type \"Opaque\"; MetalLB requires \"kubernetes.io/basic-auth\""),
        (pool("a", "10.0.0.0/24") + &adv("aggregationLength: 0"), "skipped BGPAdvertisement metallb-system/ad: spec.aggregationLength: 0: shorter than pool \"a\"'s 10.0.0.0/24 (a /0 route would cover addresses outside the pool); 24..32"),
        (pool("a", "10.0.0.0/24") + &adv("aggregationLength: 23"), "skipped BGPAdvertisement metallb-system/ad: spec.aggregationLength: 23: shorter than pool"),
        (pool("a", "\"2001:db8::/64\"") + &adv("aggregationLengthV6: 48"), "skipped BGPAdvertisement metallb-system/ad: spec.aggregationLengthV6: 48: shorter than pool \"a\"'s 2001:db8::/64"),
        (pool("a", "10.0.0.1-10.0.0.6") + &adv("aggregationLength: 31"), "skipped BGPAdvertisement metallb-system/ad: spec.aggregationLength: 31: shorter than pool \"a\"'s 10.0.0.1-10.0.0.6 (a /31 route would cover addresses outside the pool); 32..32"),
        (pool("a", "10.0.0.0/24") + &adv("localPref: 100") + &adv("localPref: 200").replace("name: ad,", "name: ad2,"),
            "skipped BGPAdvertisement metallb-system/ad2: spec.localPref: 200: BGPAdvertisement \"ad\" sends the same routes of pool \"a\" with localPref 100"),
        (pool("a", "10.0.0.0/24") + &adv("aggregationLength: 24, bogus: 1"), "warning BGPAdvertisement metallb-system/ad: spec.bogus: unknown field, ignored"),
        (pool("a", "10.0.0.0/24") + &peer("myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, localASN: 4294967296"), "skipped BGPPeer metallb-system/r: spec.localASN: 4294967296: an AS number is 1..4294967295"),
    ];
    for (text, want) in cases {
        let got = problems(&text);
        assert!(got.iter().any(|g| g.starts_with(want)), "want {want:?} among {got:#?}\nfor\n{text}");
    }
    // A valid configuration has no problems at all.
    assert!(problems(&(pool("a", "10.0.0.0/24") + &pool("b", "10.0.1.0/24"))).is_empty());
}

/// The issue's measured failures: a vrf peer (for another router), a dynamicASN peer (peerASN empty,
/// as MetalLB requires; it once blocked everything, and is now configured with its dynamic ASN) and an
/// advertisement with aggregationLength 0 beside a good peer and a good advertisement. Each bad object
/// is left out with a reason naming its field; the rest applies: the good peers are configured and
/// only the Service's /32 is announced, never 0.0.0.0/0.
#[test]
fn one_bad_object_never_blocks_the_rest() {
    let t = format!(
        r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: p, namespace: metallb-system}}
spec: {{addresses: [203.0.113.0/24]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: good, namespace: metallb-system}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: zero, namespace: metallb-system}}
spec: {{aggregationLength: 0}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: good, namespace: metallb-system}}
spec: {{myASN: 64500, peerASN: 64501, peerAddress: 10.0.0.254}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: red, namespace: metallb-system}}
spec: {{myASN: 64500, peerASN: 64502, peerAddress: 10.9.0.1, vrf: red}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: dyn, namespace: metallb-system}}
spec: {{myASN: 64500, dynamicASN: external, peerAddress: 10.0.0.253}}
{NODES}{}{}"#,
        service("s", "203.0.113.5", "Cluster", ""),
        slice("s", &[("n1", true, true, false)])
    );
    let (input, cluster) = offline::load(&t, NS, "config").unwrap();
    let (cfg, problems) = config::build(&input).expect("the good objects apply");
    let skipped: Vec<String> = problems
        .iter()
        .filter(|p| p.severity == Severity::Skipped)
        .map(|p| format!("{}: {}", p.object, p.message))
        .collect();
    assert_eq!(skipped.len(), 2, "{skipped:#?}");
    for want in
        ["BGPAdvertisement metallb-system/zero: spec.aggregationLength: 0:", "BGPPeer metallb-system/red: spec.vrf:"]
    {
        assert!(skipped.iter().any(|s| s.starts_with(want)), "{want} in {skipped:#?}");
    }
    let d = translate(&cfg, &cluster, &opts("n1"));
    assert_eq!(
        d.peers.iter().map(|p| (p.name.as_str(), p.peer_asn, p.dynamic_asn)).collect::<Vec<_>>(),
        vec![("dyn", 0, pb::DynamicAsn::External as i32), ("good", 64501, 0)]
    );
    assert_eq!(d.bgp.iter().map(|a| a.prefix.as_str()).collect::<Vec<_>>(), vec!["203.0.113.5/32"]);
}

/// A good BGPAdvertisement or BGPPeer edited into a bad one keeps its last good version (a broken
/// edit withdraws nothing); without a previous configuration (a fresh start) it is left out.
#[test]
fn bad_edit_of_a_good_object_keeps_its_last_good_version() {
    let good = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec: {addresses: [203.0.113.0/24]}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a, namespace: metallb-system}\nspec: {communities: [\"65000:1\"]}\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r, namespace: metallb-system}\nspec: {myASN: 1, peerASN: 2, peerAddress: 10.1.1.1}\n";
    let bad = good.replace("[\"65000:1\"]", "[nosuch]").replace("peerASN: 2", "peerASN: 2, vrf: red");
    let (gi, _) = offline::load(good, NS, "config").unwrap();
    let (bi, _) = offline::load(&bad, NS, "config").unwrap();
    let (prev, _) = config::build(&gi).unwrap();
    let (kept, problems) = config::build_with_previous(&bi, Some(&prev)).unwrap();
    assert_eq!(kept.bgp_advertisements, prev.bgp_advertisements);
    assert_eq!(kept.peers, prev.peers);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    for p in &problems {
        assert_eq!(p.severity, Severity::Skipped);
        assert!(
            p.message.ends_with(&format!("the last good version of this {} stays in force", p.object.kind)),
            "{p:?}"
        );
    }
    let (fresh, _) = config::build(&bi).unwrap();
    assert!(fresh.bgp_advertisements.is_empty() && fresh.peers.is_empty());
}

/// MetalLB's webhook refuses to delete a BFDProfile a BGPPeer uses. Without a webhook the delete
/// happens; the peer naming the missing profile then keeps its last good version, BFD included, so the
/// session runs on as before (the same outcome for the router).
#[test]
fn deleting_a_bfd_profile_in_use_keeps_the_peer_as_it_was() {
    let good = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec: {addresses: [203.0.113.0/24]}\n---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: fast, namespace: metallb-system}\nspec: {receiveInterval: 100, transmitInterval: 100}\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: r, namespace: metallb-system}\nspec: {myASN: 1, peerASN: 2, peerAddress: 10.1.1.1, bfdProfile: fast}\n";
    let deleted = good.replace("kind: BFDProfile\nmetadata: {name: fast", "kind: BFDProfile\nmetadata: {name: other");
    let (gi, _) = offline::load(good, NS, "config").unwrap();
    let (di, _) = offline::load(&deleted, NS, "config").unwrap();
    let (prev, _) = config::build(&gi).unwrap();
    let (kept, problems) = config::build_with_previous(&di, Some(&prev)).unwrap();
    assert_eq!(kept.peers, prev.peers, "{problems:#?}");
    assert!(
        problems.iter().any(|p| p.severity == Severity::Skipped && p.message.starts_with("spec.bfdProfile")),
        "{problems:#?}"
    );
}

/// MetalLB v0.16 serviceSelectors: an advertisement applies only to the Services its selectors
/// match; with aggregation they are refused (as MetalLB), and localPref conflicts are not checked
/// for them (as MetalLB).
#[test]
fn service_selectors_limit_advertisements() {
    let t = format!(
        r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: p, namespace: metallb-system}}
spec: {{addresses: [203.0.113.0/24]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: gold, namespace: metallb-system}}
spec: {{serviceSelectors: [{{matchLabels: {{tier: gold}}}}], communities: ["65000:1"], localPref: 200}}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {{name: l2, namespace: metallb-system}}
spec: {{serviceSelectors: [{{matchExpressions: [{{key: tier, operator: NotIn, values: [gold]}}]}}]}}
{NODES}{}{}{}{}"#,
        service("g", "203.0.113.5", "Cluster", ", labels: {tier: gold}"),
        slice("g", &[("n1", true, true, false)]),
        service("b", "203.0.113.6", "Cluster", ", labels: {tier: bronze}"),
        slice("b", &[("n1", true, true, false)]),
    );
    let d = plan(&t, &opts("n1"));
    assert_eq!(d.bgp.iter().map(|a| a.prefix.as_str()).collect::<Vec<_>>(), vec!["203.0.113.5/32"]);
    assert_eq!(d.bgp[0].communities, vec!["65000:1"]);
    assert_eq!(d.l2.iter().map(|a| a.ip.as_str()).collect::<Vec<_>>(), vec!["203.0.113.6"]);
    let adv = |spec: &str| {
        format!("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: p, namespace: metallb-system}}\nspec: {{addresses: [203.0.113.0/24]}}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: ad, namespace: metallb-system}}\nspec: {{{spec}}}\n")
    };
    assert!(problems(&adv("serviceSelectors: [{matchLabels: {a: b}}], aggregationLength: 24"))[0]
        .starts_with("skipped BGPAdvertisement metallb-system/ad: spec.serviceSelectors and spec.aggregationLength: mutually exclusive"));
    assert!(problems(&adv("serviceSelectors: [{matchLabels: {a: b}}], aggregationLength: 32")).is_empty());
    let two = adv("localPref: 100") + "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: ad2, namespace: metallb-system}\nspec: {localPref: 200, serviceSelectors: [{matchLabels: {a: b}}]}\n";
    assert!(problems(&two).is_empty(), "{:?}", problems(&two));
    let l2 = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec: {addresses: [203.0.113.0/24]}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l, namespace: metallb-system}\nspec: {preferredNodeSelectors: [{weight: 10, preference: {matchLabels: {a: b}}}]}\n";
    assert!(problems(l2).is_empty(), "{:?}", problems(l2));
    let bad = l2.replace("weight: 10", "weight: 0");
    assert_eq!(problems(&bad), vec!["skipped L2Advertisement metallb-system/l: spec.preferredNodeSelectors[0].weight: 0 is not in 1..100; this L2Advertisement is left out, the rest of the configuration applies"]);
}

/// MetalLB's `preferredNodeSelectors` (its TestL2AdvertisementFromCRPreferred cases): per candidate, the
/// weights of every matching preference of every advertisement that selects it add up; speakerd gets
/// them as `node_weights` (the heaviest live candidate answers, docs/LAYER2.md).
#[test]
fn preferred_node_selectors_weigh_the_layer2_candidates() {
    const EDGE: &str = r#"
---
apiVersion: v1
kind: Node
metadata: {name: edge-a, labels: {role: edge, zone: primary}}
status: {addresses: [{type: InternalIP, address: 10.0.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: edge-b, labels: {role: edge}}
status: {addresses: [{type: InternalIP, address: 10.0.0.2}]}
---
apiVersion: v1
kind: Node
metadata: {name: worker-a, labels: {role: worker}}
status: {addresses: [{type: InternalIP, address: 10.0.0.3}]}
"#;
    let weights = |ads: &str| {
        let t = format!(
            "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: p, namespace: metallb-system}}\nspec: {{addresses: [192.0.2.0/24]}}\n{ads}{EDGE}{}{}",
            service("s", "192.0.2.10", "Cluster", ", labels: {app: web}"),
            slice("s", &[("edge-a", true, true, false)])
        );
        let d = plan(&t, &opts("worker-a"));
        let a = d.l2.iter().find(|a| a.ip == "192.0.2.10").unwrap_or_else(|| panic!("{d:#?}"));
        let mut w: Vec<(String, u32)> = a.node_weights.iter().map(|(n, w)| (n.clone(), *w)).collect();
        w.sort();
        (a.nodes.clone(), w)
    };
    let ad = |name: &str, spec: &str| {
        format!("---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {{{spec}}}\n")
    };
    let all = vec!["edge-a".to_string(), "edge-b".into(), "worker-a".into()];
    let w = |v: &[(&str, u32)]| v.iter().map(|(n, w)| (n.to_string(), *w)).collect::<Vec<_>>();
    // "preferred selector scores matching nodes"
    let edge100 = "preferredNodeSelectors: [{weight: 100, preference: {matchLabels: {role: edge}}}]";
    assert_eq!(weights(&ad("l", edge100)), (all.clone(), w(&[("edge-a", 100), ("edge-b", 100)])));
    // "service selectors do not restrict preferred scoring"
    let sel = format!("serviceSelectors: [{{matchLabels: {{app: web}}}}], {edge100}");
    assert_eq!(weights(&ad("l", &sel)), (all.clone(), w(&[("edge-a", 100), ("edge-b", 100)])));
    // "no preferred selectors leaves PreferredNodes nil"
    assert_eq!(weights(&ad("l", "")), (all.clone(), vec![]));
    // "multiple preferred selectors sum on matching nodes"
    let sum = "preferredNodeSelectors: [{weight: 40, preference: {matchLabels: {role: edge}}}, {weight: 30, preference: {matchLabels: {zone: primary}}}]";
    assert_eq!(weights(&ad("l", sum)), (all.clone(), w(&[("edge-a", 70), ("edge-b", 40)])));
    // Speaker side, "preferences across ads sum": two advertisements of the pool, each with its weight.
    let two = ad("l1", edge100)
        + &ad("l2", "preferredNodeSelectors: [{weight: 5, preference: {matchLabels: {zone: primary}}}]");
    assert_eq!(weights(&two), (all.clone(), w(&[("edge-a", 105), ("edge-b", 100)])));
}

/// MetalLB v0.16 localASN ("local-as X no-prepend replace-as"): the session runs as X.
#[test]
fn local_asn_replaces_my_asn_for_the_session() {
    let t = format!("apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: r, namespace: metallb-system}}\nspec: {{myASN: 64500, localASN: 64999, peerASN: 65001, peerAddress: 10.1.1.1}}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: p, namespace: metallb-system}}\nspec: {{addresses: [203.0.113.0/24]}}\n{NODES}");
    let d = plan(&t, &opts("n1"));
    assert_eq!(d.peers.len(), 1);
    assert_eq!(d.peers[0].local_asn, 64999);
}

/// MetalLB's `metallb-excludel2` ConfigMap: its regular expressions, in the forms MetalLB ships,
/// become speakerd's exclude patterns on every Layer 2 announcement; others are reported.
#[test]
fn excludel2_configmap_excludes_interfaces() {
    let t = format!(
        "{SIMPLE_BGP}{NODES}{}{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: metallb-excludel2, namespace: metallb-system}}\ndata:\n  excludel2.yaml: |\n    announcedInterfacesToExclude:\n    - ^docker.*\n    - ^lo$\n    - ^cali\n    - ^kube\\-ipvs.*\n",
        service("s", "203.0.113.5", "Cluster", ""),
        slice("s", &[("n1", true, true, false)])
    );
    let d = plan(&t, &opts("n1"));
    assert_eq!(d.l2[0].exclude_interfaces, vec!["cali*", "docker*", "kube-ipvs*", "lo"]);
    let bad = t.replace("    - ^cali\n", "    - eth[0-9]\n");
    assert!(problems(&bad).iter().any(|p| p.starts_with("warning ConfigMap metallb-system/metallb-excludel2: excludel2.yaml: announcedInterfacesToExclude[2]: \"eth[0-9]\"")), "{:?}", problems(&bad));
    for (re, want) in [
        ("^veth", Some("veth*")),
        ("^veth.*$", Some("veth*")),
        ("^lo$", Some("lo")),
        ("docker", None),
        ("^a|b", None),
        ("^", None),
    ] {
        assert_eq!(k8s_bridge::config::regex_to_pattern(re).as_deref(), want, "{re}");
    }
}

/// As MetalLB's speaker: a new configuration under which a Service's IP has no pool any more is
/// refused (the last good one stays) while the IP is in use; without such a Service it applies.
/// And two BGPPeers with one address for the same nodes are reported.
#[test]
fn pool_removed_while_in_use_and_duplicate_peers() {
    let pools = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: keep, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/24]}\n---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: gone, namespace: metallb-system}\nspec: {addresses: [203.0.113.0/24]}\n";
    let without = "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: keep, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/24]}\n";
    let svc = service("s", "203.0.113.5", "Cluster", "");
    let (prev, _) = config::build(&offline::load(pools, NS, "config").unwrap().0).unwrap();
    let (input, _) = offline::load(&format!("{without}{svc}"), NS, "config").unwrap();
    let e = config::build_with_previous(&input, Some(&prev)).unwrap_err();
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].object.kind, "Service");
    assert!(
        e[0].message
            .starts_with("its IP 203.0.113.5 is in no IPAddressPool of the new configuration (it was in \"gone\")"),
        "{e:#?}"
    );
    let (input, _) = offline::load(without, NS, "config").unwrap();
    assert!(config::build_with_previous(&input, Some(&prev)).is_ok());

    let peer = |name: &str, extra: &str| {
        format!("---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {{myASN: 1, peerASN: 2, peerAddress: 10.1.1.1{extra}}}\n")
    };
    let t = format!(
        "{without}{}{}{}",
        peer("a", ""),
        peer("b", ", holdTime: 9s"),
        peer("c", ", nodeSelectors: [{matchLabels: {zone: b}}]")
    );
    let p = problems(&t);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with("warning BGPPeer metallb-system/b: spec.peerAddress: 10.1.1.1 is also BGPPeer \"a\"'s"),
        "{p:#?}"
    );
    assert!(p[1].starts_with("warning BGPPeer metallb-system/c:"), "{p:#?}");
    let zoned = format!(
        "{without}{}{}",
        peer("a", ", nodeSelectors: [{matchLabels: {zone: a}}]"),
        peer("c", ", nodeSelectors: [{matchLabels: {zone: b}}]")
    );
    assert!(problems(&zoned).is_empty());
}

/// Without either of MetalLB's gossip Secrets (`memberlist`, `metallb-memberlist`) the bridge warns
/// that gossip is unencrypted; speakerd runs anyway.
#[test]
fn missing_memberlist_secret_is_a_warning() {
    let (mut input, _) = offline::load(SIMPLE_BGP, NS, "config").unwrap();
    assert!(config::build(&input).unwrap().1.is_empty(), "the planner does not know");
    input.memberlist_secret = Some((NS.into(), false));
    let (_, w) = config::build(&input).unwrap();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].severity, Severity::Warning);
    assert_eq!(w[0].object.to_string(), "Secret metallb-system/memberlist");
    assert!(w[0].message.contains("unencrypted"), "{w:#?}");
    input.memberlist_secret = Some((NS.into(), true));
    assert!(config::build(&input).unwrap().1.is_empty());
}

/// As MetalLB's FRR mode: a session carries its peer address's family only; `dualStackAddressFamily`
/// opens it to IPv4 and IPv6 (speakerd's empty list). An IPv6 Service is then never sent over an IPv4
/// session the user did not open to it.
#[test]
fn a_session_carries_its_peer_address_family_unless_dual_stack() {
    let peer = |name: &str, addr: &str, extra: &str| {
        format!("---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {{myASN: 64500, peerASN: 65001, peerAddress: \"{addr}\"{extra}}}\n")
    };
    let t = peer("v4", "10.1.1.1", "")
        + &peer("v6", "2001:db8::1", "")
        + &peer("both", "10.1.1.2", ", dualStackAddressFamily: true")
        + "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p, namespace: metallb-system}\nspec: {addresses: [203.0.113.0/24]}\n"
        + NODES;
    let d = plan(&t, &opts("n1"));
    let fams = |name: &str| d.peers.iter().find(|p| p.name == name).map(|p| p.families.clone()).unwrap();
    assert_eq!(fams("v4"), vec![pb::AddressFamily::Ipv4Unicast as i32]);
    assert_eq!(fams("v6"), vec![pb::AddressFamily::Ipv6Unicast as i32]);
    assert_eq!(fams("both"), Vec::<i32>::new(), "empty: IPv4 and IPv6 unicast");
}
