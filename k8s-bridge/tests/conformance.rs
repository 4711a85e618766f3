//! Conformance with MetalLB's own configuration cases. Each row is one case of upstream's
//! `internal/config/config_test.go` (named after it, manifests written here), MetalLB's verdict, and
//! ours. Where they differ, the row names the topic of its row in docs/K8S_BRIDGE.md's table of
//! differences, and the test checks that the row is there.
use k8s_bridge::config::{self, Severity};
use k8s_bridge::offline;

const NS: &str = "metallb-system";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ours {
    /// Applied with no problem.
    Accept,
    /// Applied, with a ConfigWarning containing this text.
    Warn(&'static str),
    /// The object of this kind is left out; the problem names this field.
    Skip(&'static str, &'static str),
    /// The whole configuration is refused (the last good one stays); the problem contains this.
    Reject(&'static str),
    /// Never seen: applied without it, and without a problem (this many pools remain).
    Ignored(usize),
}

struct Case {
    /// Upstream's `desc`.
    upstream_case: &'static str,
    /// MetalLB accepts the configuration.
    metallb_accepts: bool,
    ours: Ours,
    /// For a difference: the topic of its row in docs/K8S_BRIDGE.md.
    difference: Option<&'static str>,
    manifests: String,
}

fn pool(name: &str, addrs: &str) -> String {
    format!("---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{addresses: [{addrs}]}}\n")
}
fn peer(name: &str, spec: &str) -> String {
    format!("---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{{spec}}}\n")
}
fn adv(name: &str, spec: &str) -> String {
    format!("---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{{spec}}}\n")
}
fn community(name: &str, list: &str) -> String {
    format!("---\napiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{communities: [{list}]}}\n")
}
fn bfd(name: &str, spec: &str) -> String {
    format!("---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {{name: {name}, namespace: {NS}}}\nspec: {{{spec}}}\n")
}
fn secret(name: &str, type_: &str, data: &str) -> String {
    format!("---\napiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {NS}}}\ntype: {type_}\nstringData: {{{data}}}\n")
}

fn case(upstream_case: &'static str, metallb_accepts: bool, ours: Ours, manifests: String) -> Case {
    Case { upstream_case, metallb_accepts, ours, difference: None, manifests }
}

fn differs(mut c: Case, topic: &'static str) -> Case {
    c.difference = Some(topic);
    c
}

fn cases() -> Vec<Case> {
    use Ours::*;
    let p = pool("pool1", "10.20.30.0/24");
    let good_peer = "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4";
    vec![
        case("empty config", true, Accept, String::new()),
        case("config using all features (subset)", true, Accept,
            p.clone() + &community("c", "{name: tenant, value: \"65000:1\"}") + &bfd("fast", "receiveInterval: 100, transmitInterval: 100, detectMultiplier: 3")
            + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, peerPort: 1179, holdTime: 180s, keepaliveTime: 60s, routerID: 10.20.30.40, sourceAddress: 10.20.30.40, bfdProfile: fast, nodeSelectors: [{matchLabels: {foo: bar}}]")
            + &adv("a", "aggregationLength: 32, localPref: 100, communities: [tenant, \"65000:2\"], ipAddressPools: [pool1], peers: [p]")),
        case("peer-only", true, Accept, peer("p", good_peer)),
        // internal/k8s/webhooks: "Validation must fail if created in different namespace".
        case(
            "webhook: IPAddressPool created in a different namespace",
            false,
            Ignored(1),
            p.clone() + &pool("other", "10.99.0.0/24").replace(NS, "default"),
        ),
        case("invalid peer-address", false, Skip("BGPPeer", "spec.peerAddress"), p.clone() + &peer("p", "myASN: 42, peerASN: 42, peerAddress: 1.2.3.400")),
        case("invalid my-asn", false, Skip("BGPPeer", "spec.myASN"), p.clone() + &peer("p", "peerASN: 42, peerAddress: 1.2.3.4")),
        case("invalid peer-asn", false, Skip("BGPPeer", "spec.peerASN"), p.clone() + &peer("p", "myASN: 42, peerAddress: 1.2.3.4")),
        case("invalid ebgp-multihop", false, Skip("BGPPeer", "spec.ebgpMultiHop"), p.clone() + &peer("p", "myASN: 42, peerASN: 42, peerAddress: 1.2.3.4, ebgpMultiHop: true")),
        case("invalid keepalivetime larger than holdtime", false, Skip("BGPPeer", "spec.keepaliveTime"), p.clone() + &peer("p", "myASN: 42, peerASN: 42, peerAddress: 1.2.3.4, holdTime: 30s, keepaliveTime: 90s")),
        case("invalid hold time (too short)", false, Skip("BGPPeer", "spec.holdTime"), p.clone() + &peer("p", "myASN: 42, peerASN: 42, peerAddress: 1.2.3.4, holdTime: 1s")),
        case("peer with zero hold/keepalive timers", true, Accept, p.clone() + &peer("p", "myASN: 42, peerASN: 42, peerAddress: 1.2.3.4, holdTime: 0s, keepaliveTime: 0s")),
        case("invalid RouterID", false, Skip("BGPPeer", "spec.routerID"), p.clone() + &peer("p", "myASN: 42, peerASN: 42, peerAddress: 1.2.3.4, routerID: oops")),
        case("invalid expression node selector (missing key)", false, Skip("BGPPeer", "spec: missing field `key`"), p.clone() + &peer("p", "myASN: 42, peerASN: 42, peerAddress: 1.2.3.4, nodeSelectors: [{matchExpressions: [{operator: In, values: [a]}]}]")),
        case("invalid expression node selector (invalid operator)", false, Skip("BGPPeer", "spec.nodeSelectors[0]"), p.clone() + &peer("p", "myASN: 42, peerASN: 42, peerAddress: 1.2.3.4, nodeSelectors: [{matchExpressions: [{key: k, operator: Sideways, values: [a]}]}]")),
        case("address pool with no address", false, Reject("spec.addresses"), pool("pool1", "")),
        case("invalid pool CIDR", false, Reject("spec.addresses[0]"), pool("pool1", "100.200.300.400/24")),
        case("invalid pool CIDR prefix length", false, Reject("spec.addresses[0]"), pool("pool1", "1.2.3.0/33")),
        case("invalid pool CIDR, first address of the range is after the second", false, Reject("the range's start is after its end"), pool("pool1", "1.2.3.10-1.2.3.1")),
        case("overlapping CIDRs", false, Reject("addresses overlap"), pool("pool1", "10.0.0.0/16") + &pool("pool2", "10.0.0.0/8")),
        case("simple advertisement", true, Accept, p.clone() + &adv("a", "")),
        case("bad aggregation length (too long)", false, Skip("BGPAdvertisement", "spec.aggregationLength"), p.clone() + &adv("a", "aggregationLength: 33")),
        case("bad aggregation length (incompatible with CIDR)", false, Skip("BGPAdvertisement", "spec.aggregationLength"), pool("pool1", "10.20.30.0/24, 1.2.3.0/28") + &adv("a", "aggregationLength: 26")),
        differs(case("aggregation length by range", true, Skip("BGPAdvertisement", "spec.aggregationLength"), pool("pool1", "3.3.3.2-3.3.3.254") + &adv("a", "aggregationLength: 26")), "Aggregation length on a range pool"),
        case("aggregation length by range, too wide", false, Skip("BGPAdvertisement", "spec.aggregationLength"), pool("pool1", "3.3.3.2-3.3.3.254") + &adv("a", "aggregationLength: 24")),
        case("different local pref - same peers and nodes", false, Skip("BGPAdvertisement", "spec.localPref"), p.clone() + &adv("a", "localPref: 100") + &adv("b", "localPref: 150")),
        case("different local pref - different ipv4 aggregation length", true, Accept, p.clone() + &adv("a", "localPref: 100, aggregationLength: 32") + &adv("b", "localPref: 150, aggregationLength: 30")),
        case("different local pref - different peers & same nodes", true, Accept, p.clone() + &peer("p1", good_peer) + &peer("p2", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.5") + &adv("a", "localPref: 100, peers: [p1]") + &adv("b", "localPref: 150, peers: [p2]")),
        case("bad community literal (wrong format) - in BGP adv", false, Skip("BGPAdvertisement", "spec.communities[0]"), p.clone() + &adv("a", "communities: [\"1234\"]")),
        case("bad community literal (asn part doesn't fit) - in BGP adv", false, Skip("BGPAdvertisement", "spec.communities[0]"), p.clone() + &adv("a", "communities: [\"99999999:1\"]")),
        case("bad community ref (unknown ref) - in BGP adv", false, Skip("BGPAdvertisement", "spec.communities[0]"), p.clone() + &adv("a", "communities: [nosuch]")),
        case("bad community literal (wrong format) - in the community CR", false, Skip("Community", "spec.communities[0].value"), p.clone() + &community("c", "{name: x, value: \"1234\"}")),
        case("duplicate communities definition (in 2 different crs)", false, Skip("Community", "spec.communities[0].name"), p.clone() + &community("c1", "{name: x, value: \"1:1\"}") + &community("c2", "{name: x, value: \"1:2\"}")),
        case("duplicate communities definition (in the same cr)", false, Skip("Community", "spec.communities[1].name"), p.clone() + &community("c1", "{name: x, value: \"1:1\"}, {name: x, value: \"1:2\"}")),
        case("BGP Peer with both password and secret ref set", false, Skip("BGPPeer", "spec.password and spec.passwordSecret"), p.clone() + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, password: x, passwordSecret: {name: s}") + &secret("s", "kubernetes.io/basic-auth", "password: y")),
        case("BGP Peer with invalid secret type", false, Skip("BGPPeer", "spec.passwordSecret"), p.clone() + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, passwordSecret: {name: s}") + &secret("s", "Opaque", "password: y")),
        case("BGP Peer without password set in the secret", false, Skip("BGPPeer", "spec.passwordSecret"), p.clone() + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, passwordSecret: {name: s}") + &secret("s", "kubernetes.io/basic-auth", "username: y")),
        case("BGP Peer with a valid secret", true, Accept, p.clone() + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, passwordSecret: {name: s}") + &secret("s", "kubernetes.io/basic-auth", "password: y")),
        case("BGP Peer with unavailable secret ref", false, Skip("BGPPeer", "spec.passwordSecret"), p.clone() + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, passwordSecret: {name: gone}")),
        case("Peer with non existing BFD Profile", false, Skip("BGPPeer", "spec.bfdProfile"), p.clone() + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, bfdProfile: nope")),
        case("BFD Profile with too low receive interval", false, Skip("BFDProfile", "spec.receiveInterval"), p.clone() + &bfd("b", "receiveInterval: 2")),
        case("BFD Profile with too high receive interval", false, Skip("BFDProfile", "spec.receiveInterval"), p.clone() + &bfd("b", "receiveInterval: 90000")),
        differs(case("Session with ipv4 and bfd echo mode", true, Warn("spec.echoMode/echoInterval"), p.clone() + &bfd("b", "echoMode: true") + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, bfdProfile: b")), "BFD echo"),
        case("use non existent label for ip pool selectors", true, Accept, p.clone() + &adv("a", "ipAddressPoolSelectors: [{matchLabels: {nosuch: label}}]")),
        case("advertisement with peer selector", true, Accept, p.clone() + &peer("p", good_peer) + &adv("a", "peers: [p]")),
        case("peer with dynamic asn", true, Accept, p.clone() + &peer("p", "myASN: 42, dynamicASN: external, peerAddress: 1.2.3.4")),
        case("peer without asn or dynamic asn", false, Skip("BGPPeer", "spec.peerASN"), p.clone() + &peer("p", "myASN: 42, peerAddress: 1.2.3.4")),
        case("peer with both asn and dynamic asn", false, Skip("BGPPeer", "spec.peerASN and spec.dynamicASN"), p.clone() + &peer("p", "myASN: 42, peerASN: 142, dynamicASN: external, peerAddress: 1.2.3.4")),
        differs(case("unnumbered peer without address with interface ok", true, Skip("BGPPeer", "spec.interface"), p.clone() + &peer("p", "myASN: 42, peerASN: 142, interface: eth0")), "`vrf`, `interface` (BGP unnumbered)"),
        case("unnumbered peer without address without interface nok", false, Skip("BGPPeer", "spec.peerAddress"), p.clone() + &peer("p", "myASN: 42, peerASN: 142")),
        case("unnumbered peer with address with interface nok", false, Skip("BGPPeer", "spec.interface"), p.clone() + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, interface: eth0")),
        differs(case("peer with DisableMP field", true, Warn("spec.disableMP"), p.clone() + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, disableMP: true")), "`disableMP`"),
        case(
            "peer with dualStackAddressFamily (config using all features)",
            true,
            Accept,
            p.clone() + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, dualStackAddressFamily: true"),
        ),
        case("peer with localASN field", true, Accept, p.clone() + &peer("p", "myASN: 42, peerASN: 142, localASN: 4200, peerAddress: 1.2.3.4")),
        differs(case("peer with a vrf (config using all features)", true, Skip("BGPPeer", "spec.vrf"), p.clone() + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, vrf: red")), "`vrf`, `interface` (BGP unnumbered)"),
        case("BGP advertisement with service selectors", true, Accept, p.clone() + &adv("a", "serviceSelectors: [{matchLabels: {app: web}}]")),
        case("BGP advertisement - serviceSelectors with non-default aggregationLength is mutually exclusive", false, Skip("BGPAdvertisement", "spec.serviceSelectors and spec.aggregationLength"), p.clone() + &adv("a", "aggregationLength: 24, serviceSelectors: [{matchLabels: {app: web}}]")),
        case("BGP advertisement - serviceSelectors with non-default aggregationLengthV6 is mutually exclusive", false, Skip("BGPAdvertisement", "spec.serviceSelectors and spec.aggregationLengthV6"), p.clone() + &adv("a", "aggregationLengthV6: 64, serviceSelectors: [{matchLabels: {app: web}}]")),
        case("BGP advertisement - serviceSelectors with default aggregationLengthV4 is allowed", true, Accept, p.clone() + &adv("a", "aggregationLength: 32, serviceSelectors: [{matchLabels: {app: web}}]")),
        // Upstream's webhook tests (internal/k8s/webhooks/*_webhook_test.go). There is no admission
        // webhook here: what the webhooks refuse on create, the bridge leaves out when it reads.
        case("webhook: IPAddressPool - Validation must fail if created in different namespace", false, Ignored(1),
            p.clone() + "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: other, namespace: default}\nspec: {addresses: [10.99.0.0/24]}\n"),
        case("webhook: BGPPeer - Validation must fail if created in different namespace", false, Ignored(1),
            p.clone() + "---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {name: p, namespace: default}\nspec: {myASN: 42, peerASN: 142, peerAddress: 1.2.3.4}\n"),
        case("webhook: BGPAdvertisement - Validation must fail if created in different namespace", false, Ignored(1),
            p.clone() + "---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a, namespace: default}\nspec: {aggregationLength: 0}\n"),
        case("webhook: L2Advertisement - Validation must fail if created in different namespace", false, Ignored(1),
            p.clone() + "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l, namespace: default}\nspec: {interfaces: [\"a/b\"]}\n"),
        case("webhook: Community - Validation must fail if created in different namespace", false, Ignored(1),
            p.clone() + "---\napiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c, namespace: default}\nspec: {communities: [{name: bad, value: \"x\"}]}\n"),
        case("webhook: BFDProfile - Validation must fail if created in different namespace", false, Ignored(1),
            p.clone() + "---\napiVersion: metallb.io/v1beta1\nkind: BFDProfile\nmetadata: {name: b, namespace: default}\nspec: {receiveInterval: 1}\n"),
        // Deleting a BFDProfile a BGPPeer uses: the webhook refuses the delete; here the delete happens and
        // the peer that names the missing profile is left out (with the last good configuration in force,
        // it keeps its last good version: translate.rs tests).
        case("webhook: Delete bfdprofile used by bgppeer", false, Skip("BGPPeer", "spec.bfdProfile"),
            p.clone() + &peer("p", "myASN: 42, peerASN: 142, peerAddress: 1.2.3.4, bfdProfile: gone")),
        case("preferred selector scores matching nodes", true, Accept, p.clone() + "---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: l, namespace: metallb-system}\nspec: {preferredNodeSelectors: [{weight: 10, preference: {matchLabels: {a: b}}}]}\n"),
    ]
}

/// Our verdict on `text`.
fn verdict(text: &str) -> (bool, Vec<(Severity, String, String)>, usize) {
    let (input, _) = offline::load(text, NS, "config").expect("manifests parse");
    match config::build(&input) {
        Ok((cfg, w)) => {
            (true, w.into_iter().map(|p| (p.severity, p.object.kind, p.message)).collect(), cfg.pools.len())
        }
        Err(e) => (false, e.into_iter().map(|p| (p.severity, p.object.kind, p.message)).collect(), 0),
    }
}

#[test]
fn upstream_configuration_cases() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/K8S_BRIDGE.md")).unwrap();
    let mut failures = vec![];
    let (mut same, mut different) = (0, 0);
    for c in cases() {
        let (applied, problems, pools) = verdict(&c.manifests);
        let ok = match c.ours {
            Ours::Accept => applied && problems.is_empty(),
            Ours::Warn(w) => {
                applied
                    && !problems.is_empty()
                    && problems.iter().all(|(s, _, m)| *s == Severity::Warning && m.contains(w))
            }
            Ours::Skip(kind, field) => {
                applied && problems.iter().any(|(s, k, m)| *s == Severity::Skipped && k == kind && m.starts_with(field))
            }
            Ours::Ignored(n) => applied && problems.is_empty() && pools == n,
            Ours::Reject(what) => {
                !applied && problems.iter().any(|(s, _, m)| *s == Severity::Error && m.contains(what))
            }
        };
        if !ok {
            failures.push(format!("{}: want {:?}, got applied={applied} {problems:#?}", c.upstream_case, c.ours));
        }
        // Our verdict equals MetalLB's unless the row names a documented difference. Skipping one
        // object counts as refusing it (MetalLB refuses the whole configuration; we refuse less).
        let ours_accepts = matches!(c.ours, Ours::Accept | Ours::Warn(_));
        let ours_refuses_something = matches!(c.ours, Ours::Skip(..) | Ours::Reject(_) | Ours::Ignored(_));
        let agrees =
            (c.metallb_accepts && matches!(c.ours, Ours::Accept)) || (!c.metallb_accepts && ours_refuses_something);
        match (agrees, c.difference) {
            (true, None) => same += 1,
            (false, Some(topic)) => {
                different += 1;
                if !docs.contains(&format!("| {topic} |")) {
                    failures
                        .push(format!("{}: difference {topic:?} has no row in docs/K8S_BRIDGE.md", c.upstream_case));
                }
            }
            (true, Some(topic)) => {
                failures.push(format!("{}: marked as difference {topic:?} but agrees with MetalLB", c.upstream_case))
            }
            (false, None) => failures.push(format!(
                "{}: MetalLB accepts={}, ours {:?} (accepts={ours_accepts}) with no documented difference",
                c.upstream_case, c.metallb_accepts, c.ours
            )),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    eprintln!("{same} cases as MetalLB, {different} documented differences");
}
