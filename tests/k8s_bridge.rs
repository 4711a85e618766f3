//! End to end: the in-process fake API server, two nodes each running speakerd and k8s-bridge (the
//! real binaries), gobgpd and FRR as the routers, and a client on the same L2 segment. MetalLB objects
//! and Services created in the API server must become routes at the routers (with the configured
//! communities) and ARP answers on the segment; deletes must withdraw; a broken configuration must keep
//! everything up and leave a Warning Event; a watch ended with 410 Gone must relist without losing
//! anything; the legacy ConfigMap must work without any metallb.io CRD installed.
mod common;

use common::k8s::*;
use common::*;
use serde_json::{json, Value};
use std::time::Duration;

const T: Duration = Duration::from_secs(30);
const NS: &str = "metallb-system";
const FRR_ASN: u32 = 64511;

fn with_community(r: &Route, c: &str) -> bool {
    r.communities.iter().any(|x| x == c)
}

const CONFIG: &str = r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: bgp-pool, namespace: metallb-system}
spec: {addresses: [203.0.113.0/24]}
---
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: lan, namespace: metallb-system}
spec: {addresses: [192.0.2.200-192.0.2.210]}
---
apiVersion: metallb.io/v1beta1
kind: Community
metadata: {name: aliases, namespace: metallb-system}
spec: {communities: [{name: tenant-a, value: "64500:77"}]}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: bgp, namespace: metallb-system}
spec: {ipAddressPools: [bgp-pool], communities: [tenant-a, "65000:100"], localPref: 120}
---
apiVersion: metallb.io/v1beta1
kind: L2Advertisement
metadata: {name: lan, namespace: metallb-system}
spec: {ipAddressPools: [lan], interfaces: [eth0]}
"#;

#[test]
fn crds_services_and_endpoints_become_routes_and_arp_answers() {
    let Some(lab) = Lab::new_or_skip("k8sbr", &["gobgpd", "frr", "arping"]) else { return };
    let seg = lab.segment(&["n1", "n2", "gobgp", "frr", "client"]);
    let (n1, n2, g, f, client) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2], &seg.hosts[3], &seg.hosts[4]);
    let api = Api::start(lab.dir());
    api.install_crds();
    api.apply(node("n1", &n1.v4.to_string(), "a"));
    api.apply(node("n2", &n2.v4.to_string(), "b"));

    let gobgp = gobgpd_router(g, [n1, n2]);
    let frr = Frr::start(f, PeerConfig::new(FRR_ASN, f.v4).neighbor(Neighbor::new(n1.v4, SPK_ASN).passive()));
    let mut sp1 = start_node(n1, "n1");
    let sp2 = start_node(n2, "n2");
    let mut b1 = bridge(&api, "n1", &sp1, 17473);
    let _b2 = bridge(&api, "n2", &sp2, 17474);

    // Peers: gobgpd for every node; FRR only for zone a (n1).
    api.apply_yaml(&format!(
        r#"
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: gobgp, namespace: metallb-system}}
spec: {{myASN: {SPK_ASN}, peerASN: {GOBGP_ASN}, peerAddress: "{}", connectTime: 1s}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: frr, namespace: metallb-system}}
spec: {{myASN: {SPK_ASN}, peerASN: {FRR_ASN}, peerAddress: "{}", connectTime: 1s, nodeSelectors: [{{matchLabels: {{zone: a}}}}]}}
"#,
        g.v4, f.v4
    ));
    api.apply_yaml(CONFIG);
    sp1.wait_peer_state(&g.v4.to_string(), "established", T);
    sp1.wait_peer_state(&f.v4.to_string(), "established", T);
    sp2.wait_peer_state(&g.v4.to_string(), "established", T);
    let peers2 = sp2.speakerctl_json(&["peer", "list"]);
    assert_eq!(peers2.as_array().map(Vec::len), Some(1), "FRR's node selector keeps it off n2: {peers2}");

    // A Service with an IP and a ready endpoint: routes from both nodes, with the communities.
    api.apply(service("web", "203.0.113.10", "Cluster"));
    api.apply(endpoints("web", "n2"));
    let from_both = wait_until(T, "203.0.113.10/32 at gobgpd from n1 and n2", || {
        let rs = gobgp.routes_for("203.0.113.10/32");
        let peers: Vec<&str> = rs.iter().map(|r| r.peer.as_str()).collect();
        if rs.len() == 2 && rs.iter().all(|r| with_community(r, "64500:77") && with_community(r, "65000:100")) {
            Ok(peers.join(","))
        } else {
            Err(format!("{rs:#?}"))
        }
    });
    assert!(from_both.contains(&n1.v4.to_string()) && from_both.contains(&n2.v4.to_string()), "{from_both}");
    let r = wait_until(T, "203.0.113.10/32 at FRR", || {
        frr.routes_for("203.0.113.10/32").into_iter().next().ok_or_else(|| format!("{:?}", frr.routes()))
    });
    assert_eq!(r.communities, vec!["64500:77", "65000:100"], "{r:#?}");
    assert_eq!(r.as_path, vec![SPK_ASN]);
    wait_until(T, "a nodeAssigned Event on the Service", || {
        let ev = api.events_about("Service", "web");
        ev.iter().find(|e| e["reason"] == "nodeAssigned").cloned().ok_or_else(|| format!("{ev:#?}"))
    });

    // externalTrafficPolicy Local: only n2 (which has the endpoint) keeps announcing.
    api.apply(service("web", "203.0.113.10", "Local"));
    wait_until(T, "only n2 announces the Local service", || {
        let rs = gobgp.routes_for("203.0.113.10/32");
        if rs.len() == 1 && rs[0].peer == n2.v4.to_string() {
            Ok(())
        } else {
            Err(format!("{rs:#?}"))
        }
    });
    frr.wait_no_route("203.0.113.10/32");

    // Layer 2: an IP of the `lan` pool is answered on the segment by one of the nodes.
    api.apply(service("lan-svc", "192.0.2.201", "Cluster"));
    api.apply(endpoints("lan-svc", "n1"));
    let mac = wait_until(T, "arping 192.0.2.201 is answered", || client.arping("192.0.2.201"));
    let macs = [n1.mac(), n2.mac()];
    assert!(macs.contains(&mac), "answered by {mac}, nodes are {macs:?}");
    let owner1 = sp1.speakerctl_json(&["l2", "owner", "192.0.2.201"]);
    let owner2 = sp2.speakerctl_json(&["l2", "owner", "192.0.2.201"]);
    assert_eq!(owner1["node"], owner2["node"], "both nodes agree on the owner (gossip seeded from Node InternalIPs)");
    // Status objects: one ServiceL2Status, from the owner, naming the interface; ServiceBGPStatus of
    // `web` from n2 only (Local) with the peers it goes to.
    let owner = owner1["node"].as_str().unwrap().to_string();
    wait_until(T, "ServiceL2Status of lan-svc from its owner", || {
        let l = api.server.list("metallb.io/v1beta1", "ServiceL2Status", Some(NS));
        let st: Vec<&Value> = l.iter().map(|o| &o["status"]).filter(|s| s["serviceName"] == "lan-svc").collect();
        if st.len() == 1 && st[0]["node"] == owner.as_str() && st[0]["interfaces"] == json!([{"name": "eth0"}]) {
            Ok(())
        } else {
            Err(format!("{l:#?}"))
        }
    });
    let web = wait_until(T, "ServiceBGPStatus of web from n2", || {
        let l = api.server.list("metallb.io/v1beta1", "ServiceBGPStatus", Some(NS));
        let st: Vec<&Value> = l.iter().filter(|o| o["status"]["serviceName"] == "web").collect();
        if st.len() == 1 && st[0]["status"]["node"] == "n2" && st[0]["status"]["peers"] == json!(["gobgp"]) {
            Ok(st[0].clone())
        } else {
            Err(format!("{l:#?}"))
        }
    });
    // Owned by the speaker pod, as MetalLB's: the garbage collector deletes them with it.
    assert_eq!(
        web["metadata"]["ownerReferences"],
        json!([{"apiVersion": "v1", "kind": "Pod", "name": "speaker-n2-17474", "uid": pod_uid("n2", 17474)}]),
        "{web:#}"
    );
    // The node's ConfigurationState (MetalLB v0.15.3): Valid, labelled and owned as MetalLB's.
    let config_state = |node: &str, want: &str, uid: &str, summary: &str| {
        wait_until(
            T,
            &format!("ConfigurationState speaker-{node} {want} (owner {uid}, summary with {summary:?})"),
            || {
                let o =
                    api.server.get("metallb.io/v1beta1", "ConfigurationState", Some(NS), &format!("speaker-{node}"));
                let o = o.ok_or("not there")?;
                let st = &o["status"];
                let cond = &st["conditions"][0];
                let summary_ok = if summary.is_empty() {
                    st["errorSummary"].is_null()
                } else {
                    st["errorSummary"].as_str().is_some_and(|s| s.contains(summary))
                };
                if st["result"] == want
                    && summary_ok
                    && cond["type"] == "configReconcilerValid"
                    && cond["status"] == if want == "Valid" { "True" } else { "False" }
                    && o["metadata"]["labels"]
                        == json!({"metallb.io/component-type": "speaker", "metallb.io/node-name": node})
                    && owner_uids(&o) == [uid]
                {
                    Ok(())
                } else {
                    Err(format!("{o:#}"))
                }
            },
        )
    };
    config_state("n1", "Valid", &pod_uid("n1", 17473), "");
    config_state("n2", "Valid", &pod_uid("n2", 17474), "");

    // A broken edit of one object (unknown community alias): that object keeps its last good version
    // (an InvalidConfig Warning Event on it, the skipped-objects metric), the rest applies.
    api.apply_yaml("apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: bgp, namespace: metallb-system}\nspec: {ipAddressPools: [bgp-pool], communities: [no-such-alias]}\n");
    wait_until(T, "a Warning Event on the BGPAdvertisement", || {
        let ev = api.events_about("BGPAdvertisement", "bgp");
        ev.iter()
            .find(|e| {
                e["type"] == "Warning"
                    && e["reason"] == "InvalidConfig"
                    && e["note"].as_str().or(e["message"].as_str()).unwrap_or_default().contains("no-such-alias")
            })
            .cloned()
            .ok_or_else(|| format!("{ev:#?}"))
    });
    wait_until(T, "skipped-objects metric", || match metric(17473, "k8s_bridge_config_objects_skipped") {
        Ok(1.0) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(
        metric(17473, "metallb_k8s_client_config_stale_bool"),
        Ok(0.0),
        "one bad object does not make the configuration stale"
    );
    config_state("n1", "Invalid", &pod_uid("n1", 17473), "no-such-alias");
    assert_holds(Duration::from_secs(3), "routes stay while the object is broken", || {
        let rs = gobgp.routes_for("203.0.113.10/32");
        if rs.len() == 1 && with_community(&rs[0], "64500:77") {
            Ok(())
        } else {
            Err(format!("{rs:#?}"))
        }
    });
    // Overlapping pools are refused as a whole: the last good configuration stays, the stale metric says so.
    api.apply_yaml(CONFIG);
    api.apply_yaml("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: overlap, namespace: metallb-system}\nspec: {addresses: [203.0.113.128/25]}\n");
    wait_until(T, "config stale metric", || match metric(17473, "metallb_k8s_client_config_stale_bool") {
        Ok(1.0) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    config_state("n2", "Invalid", &pod_uid("n2", 17474), "overlap");
    let errors = metric(17473, "metallb_k8s_client_update_errors_total");
    assert!(errors.as_ref().is_ok_and(|e| *e >= 1.0), "an invalid configuration is a failed update: {errors:?}");
    assert_holds(Duration::from_secs(3), "routes stay while the configuration is invalid", || {
        let rs = gobgp.routes_for("203.0.113.10/32");
        if rs.len() == 1 && with_community(&rs[0], "64500:77") {
            Ok(())
        } else {
            Err(format!("{rs:#?}"))
        }
    });
    api.delete("metallb.io/v1beta1", "IPAddressPool", Some(NS), "overlap");
    wait_until(T, "config valid again", || {
        match (
            metric(17473, "metallb_k8s_client_config_stale_bool"),
            metric(17473, "k8s_bridge_config_objects_skipped"),
        ) {
            (Ok(a), Ok(b)) if a == 0.0 && b == 0.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    config_state("n1", "Valid", &pod_uid("n1", 17473), "");

    // A watch ended with 410 Gone: the API server goes away, a Service is created and history is
    // compacted meanwhile; when it is back, the bridges' watches are too old (410), they relist, lose
    // nothing and see the new Service.
    let lists_before = api.server.requests().iter().filter(|r| r.is_list() && r.path.ends_with("/services")).count();
    api.set_mode(fake_apiserver::Mode::Refuse);
    api.apply(service("late", "203.0.113.20", "Cluster"));
    api.apply(endpoints("late", "n1"));
    api.server.compact();
    api.set_mode(fake_apiserver::Mode::Normal);
    wait_until(T, "a Service created across the 410 appears", || {
        let n = gobgp.routes_for("203.0.113.20/32").len();
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} paths"))
        }
    });
    assert_eq!(gobgp.routes_for("203.0.113.10/32").len(), 1, "nothing lost across the relist");
    assert!(client.arping("192.0.2.201").is_ok(), "Layer 2 kept across the relist");
    let lists_after = api.server.requests().iter().filter(|r| r.is_list() && r.path.ends_with("/services")).count();
    assert!(
        lists_after >= lists_before + 2,
        "both bridges relisted Services after the 410 ({lists_before} → {lists_after} lists)"
    );

    // speakerd restarted (kill -9: a new process with empty state): its bridge reconnects and pushes
    // everything again.
    sp1.restart();
    sp1.wait_peer_state(&g.v4.to_string(), "established", T);
    wait_until(T, "n1's route back after its speakerd restarted", || {
        let rs = gobgp.routes_for("203.0.113.20/32");
        if rs.iter().any(|r| r.peer == n1.v4.to_string() && with_community(r, "64500:77")) {
            Ok(())
        } else {
            Err(format!("{rs:#?}"))
        }
    });
    // k8s-bridge killed: speakerd keeps announcing on its own; a new bridge changes nothing.
    b1.kill9();
    assert_holds(Duration::from_secs(3), "routes stay while n1's bridge is down", || {
        let n = gobgp.routes_for("203.0.113.20/32").len();
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} paths"))
        }
    });
    let mut b1 = bridge(&api, "n1", &sp1, 17476);
    wait_until(T, "the new bridge pushed", || match metric(17476, "k8s_bridge_push_ok") {
        Ok(1.0) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(gobgp.routes_for("203.0.113.20/32").len(), 2);
    // The new pod adopts what the old one wrote: n1's status objects and its ConfigurationState.
    wait_until(T, "n1's ServiceBGPStatus objects owned by the new pod", || {
        let l = api.server.list("metallb.io/v1beta1", "ServiceBGPStatus", Some(NS));
        let mine: Vec<&Value> = l.iter().filter(|o| o["metadata"]["labels"]["metallb.io/node"] == "n1").collect();
        if !mine.is_empty() && mine.iter().all(|o| owner_uids(o) == [pod_uid("n1", 17476)]) {
            Ok(())
        } else {
            Err(format!("{mine:#?}"))
        }
    });
    config_state("n1", "Valid", &pod_uid("n1", 17476), "");

    // Both down, then back in either order: the state converges.
    let two_paths = || {
        let n = gobgp.routes_for("203.0.113.20/32").len();
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} paths"))
        }
    };
    b1.kill9();
    sp1.kill9();
    let mut b1 = bridge(&api, "n1", &sp1, 17477);
    wait_until(T, "the bridge retries while speakerd is down", || {
        match metric(17477, "k8s_bridge_push_errors_total") {
            Ok(v) if v >= 1.0 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    sp1.restart();
    wait_until(T, "bridge first, then speakerd: n1's paths back", two_paths);
    b1.kill9();
    sp1.restart();
    // What the bridge's first push does, in order: announcements before peers, so that a session that
    // comes up at once has the whole table before its End-of-RIB (docs/K8S_BRIDGE.md).
    let watch = sp1.watch();
    let _b1 = bridge(&api, "n1", &sp1, 17478);
    wait_until(T, "speakerd first, then the bridge: n1's paths back", two_paths);
    let first = std::iter::from_fn(|| watch.next(Duration::from_secs(5)))
        .find_map(|e| ["announcement", "peer"].into_iter().find(|k| e.get(k).is_some()))
        .expect("no announcement or peer event after the bridge's push");
    assert_eq!(first, "announcement", "the bridge's push configured a peer before its announcements");

    // Deleting the Service withdraws its route everywhere.
    api.delete("v1", "Service", Some("default"), "web");
    gobgp.wait_no_route("203.0.113.10/32");
    assert_eq!(gobgp.routes_for("203.0.113.20/32").len(), 2, "other Services untouched");
}

#[test]
fn legacy_configmap_without_crds() {
    let Some(lab) = Lab::new_or_skip("k8sleg", &["gobgpd"]) else { return };
    let (n1, g) = lab.pair("n1", "gobgp");
    let api = Api::start(lab.dir());
    // No metallb.io CRD at all: the bridge must treat them as empty and use the ConfigMap.
    api.apply(node("n1", &n1.v4.to_string(), "a"));
    let gobgp = gobgpd_router(&g, [&n1]);
    let sp = start_node(&n1, "n1");
    let _b = bridge(&api, "n1", &sp, 17475);
    let config = format!(
        "peers:\n- peer-address: {}\n  peer-asn: {GOBGP_ASN}\n  my-asn: {SPK_ASN}\nbgp-communities:\n  edge: 65000:9\naddress-pools:\n- name: default\n  protocol: bgp\n  addresses: [198.51.100.0/24]\n  bgp-advertisements:\n  - communities: [edge]\n",
        g.v4
    );
    api.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": NS}, "data": {"config": config}}));
    api.apply(service("legacy", "198.51.100.7", "Cluster"));
    api.apply(endpoints("legacy", "n1"));
    sp.wait_peer_state(&g.v4.to_string(), "established", T);
    let r = gobgp.wait_route("198.51.100.7/32");
    assert_eq!(r.communities, vec!["65000:9"], "{r:#?}");
    // A typo in the ConfigMap keeps the route.
    api.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "config", "namespace": NS}, "data": {"config": "peers: [oops"}}));
    wait_until(T, "a Warning Event on the ConfigMap", || {
        let ev = api.events_about("ConfigMap", "config");
        ev.iter().find(|e| e["type"] == "Warning").cloned().ok_or_else(|| format!("{ev:#?}"))
    });
    assert_holds(Duration::from_secs(3), "route kept", || {
        if gobgp.routes_for("198.51.100.7/32").len() == 1 {
            Ok(())
        } else {
            Err("withdrawn".into())
        }
    });
}

/// The issue's measured failures, end to end: one BGPPeer with `vrf` (for another router), one with
/// `dynamicASN` (peerASN empty, as MetalLB requires; once refused, it blocked everything; now it is
/// configured with its dynamic ASN) and one good peer, and an advertisement with `aggregationLength: 0`
/// beside a good one. The good peer comes up and carries the Service's /32; no default route ever
/// reaches gobgpd; each bad object has an InvalidConfig Event naming its field.
/// The good peer is written as v1beta1 (served beside the stored v1beta2, as MetalLB's CRD does).
#[test]
fn bad_peers_and_aggregation_never_block_the_good_peer_nor_widen_a_route() {
    let Some(lab) = Lab::new_or_skip("k8sbad", &["gobgpd"]) else { return };
    let (n1, g) = lab.pair("n1", "gobgp");
    let api = Api::start(lab.dir());
    api.install_crds();
    api.apply(node("n1", &n1.v4.to_string(), "a"));
    let gobgp = gobgpd_router(&g, [&n1]);
    let sp = start_node(&n1, "n1");
    let _b = bridge(&api, "n1", &sp, 17479);
    api.apply_yaml(&format!(
        r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: pool, namespace: metallb-system}}
spec: {{addresses: [203.0.113.0/24]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: good, namespace: metallb-system}}
spec: {{ipAddressPools: [pool]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: zero, namespace: metallb-system}}
spec: {{ipAddressPools: [pool], aggregationLength: 0}}
---
apiVersion: metallb.io/v1beta1
kind: BGPPeer
metadata: {{name: good, namespace: metallb-system}}
spec: {{myASN: {SPK_ASN}, peerASN: {GOBGP_ASN}, peerAddress: "{}"}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: red, namespace: metallb-system}}
spec: {{myASN: {SPK_ASN}, peerASN: 64999, peerAddress: 10.99.0.1, vrf: red}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: dyn, namespace: metallb-system}}
spec: {{myASN: {SPK_ASN}, dynamicASN: external, peerAddress: 10.99.0.2}}
"#,
        g.v4
    ));
    api.apply(service("web", "203.0.113.10", "Cluster"));
    api.apply(endpoints("web", "n1"));
    sp.wait_peer_state(&g.v4.to_string(), "established", T);
    gobgp.wait_route("203.0.113.10/32");
    let peers = sp.speakerctl_json(&["peer", "list"]);
    let mut names: Vec<(&str, &str)> = peers
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["name"].as_str().unwrap_or_default(), p["config"]["dynamic_asn"].as_str().unwrap_or("-")))
        .collect();
    names.sort();
    assert_eq!(names, [("dyn", "external"), ("good", "-")], "the vrf peer is left out: {peers}");
    for (kind, name, field) in [("BGPPeer", "red", "spec.vrf"), ("BGPAdvertisement", "zero", "spec.aggregationLength")]
    {
        wait_until(T, &format!("an InvalidConfig Event on {kind} {name} naming {field}"), || {
            let ev = api.events_about(kind, name);
            ev.iter()
                .find(|e| {
                    e["type"] == "Warning"
                        && e["reason"] == "InvalidConfig"
                        && e["note"].as_str().or(e["message"].as_str()).unwrap_or_default().starts_with(field)
                })
                .cloned()
                .ok_or_else(|| format!("{ev:#?}"))
        });
    }
    assert_eq!(metric(17479, "k8s_bridge_config_objects_skipped"), Ok(2.0));
    // No gossip Secret under either of MetalLB's names: a ConfigWarning says gossip is unencrypted.
    wait_until(T, "a ConfigWarning about the missing memberlist Secret", || {
        let ev = api.events_about("Secret", "memberlist");
        ev.iter().find(|e| e["reason"] == "ConfigWarning").cloned().ok_or_else(|| format!("{ev:#?}"))
    });
    assert_holds(Duration::from_secs(3), "gobgpd holds the /32 only, never 0.0.0.0/0", || {
        let all = gobgp.routes();
        let prefixes: Vec<&str> = all.iter().map(|r| r.prefix.as_str()).collect();
        if prefixes == ["203.0.113.10/32"] {
            Ok(())
        } else {
            Err(format!("{prefixes:?}"))
        }
    });
}

/// The DaemonSet mounts the memberlist Secret as optional: speakerd started before the Secret exists
/// must run (unencrypted, with a loud warning) instead of crash-looping, and switch to the secret when
/// the file appears. n2 has the secret from the start, so the two join only once n1 picked it up.
#[test]
fn missing_gossip_secret_runs_unencrypted_and_picks_it_up_when_it_appears() {
    let Some(lab) = Lab::new_or_skip("k8ssec", &[]) else { return };
    let (n1, n2) = lab.pair("n1", "n2");
    let dir = lab.dir().join("secrets");
    std::fs::create_dir_all(dir.join("n1")).unwrap();
    std::fs::create_dir_all(dir.join("n2")).unwrap();
    // Both upstream names; n1 has neither yet, n2 has the Helm one.
    let (n1_ml, n1_helm) = (dir.join("n1/memberlist"), dir.join("n1/metallb-memberlist"));
    let n2_helm = dir.join("n2/metallb-memberlist");
    std::fs::write(&n2_helm, "shared-secret\n").unwrap();
    let f = |p: &std::path::Path| format!("--gossip-secret-file={}", p.display());
    let sp1 = Speakerd::builder(&n1)
        .l2_node("n1", n1.v4, None)
        .metrics("127.0.0.1:9481")
        .arg(&f(&n1_ml))
        .arg(&f(&n1_helm))
        .start();
    let secret_missing = || -> Result<String, String> {
        let m = n1.metrics(9481)?;
        m.lines().find(|l| l.starts_with("speakerd_gossip_secret_missing ")).map(str::to_string).ok_or(m)
    };
    assert_eq!(secret_missing().as_deref(), Ok("speakerd_gossip_secret_missing 1"));
    let seed = format!("{}:7946", n1.v4);
    let sp2 = Speakerd::builder(&n2)
        .l2_node("n2", n2.v4, Some(&seed))
        .arg(&f(&dir.join("n2/memberlist")))
        .arg(&f(&n2_helm))
        .start();
    assert!(sp1.log().contains("GOSSIP IS UNENCRYPTED"), "{}", sp1.log_tail(20));
    let alive = |sp: &Speakerd| {
        let v = sp.speakerctl_json(&["members"]);
        v["members"].as_array().map_or(0, |m| m.iter().filter(|x| x["state"] == "alive").count())
    };
    assert_holds(Duration::from_secs(3), "no join while only n2 has the secret", || {
        if alive(&sp1) == 1 && alive(&sp2) == 1 {
            Ok(())
        } else {
            Err(format!("n1 sees {}, n2 sees {}", alive(&sp1), alive(&sp2)))
        }
    });
    // The kubelet writes the Secret (the Helm name here): n1 picks it up without a restart.
    let pid = sp1.pid();
    std::fs::write(&n1_helm, "shared-secret\n").unwrap();
    wait_until(T, "n1 and n2 join once n1 has the secret", || {
        if alive(&sp1) == 2 && alive(&sp2) == 2 {
            Ok(())
        } else {
            Err(format!("n1 sees {}, n2 sees {}", alive(&sp1), alive(&sp2)))
        }
    });
    assert_eq!(sp1.pid(), pid, "no restart");
    assert_eq!(secret_missing().as_deref(), Ok("speakerd_gossip_secret_missing 0"));
    assert!(sp1.log().contains("gossip secret found"), "{}", sp1.log_tail(20));
}

/// MetalLB's `metallb-excludel2` ConfigMap: an interface it excludes is never answered on; without
/// it the same IP is answered there (ARP from a client on the segment, the real speakerd socket).
#[test]
fn excludel2_configmap_keeps_arp_off_an_excluded_interface() {
    let Some(lab) = Lab::new_or_skip("k8sexcl", &["arping"]) else { return };
    let (n1, client) = lab.pair("n1", "client");
    let api = Api::start(lab.dir());
    api.install_crds();
    api.apply(node("n1", &n1.v4.to_string(), "a"));
    let sp = start_node(&n1, "n1");
    let _b = bridge(&api, "n1", &sp, 17480);
    let excl = |list: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "metallb-excludel2", "namespace": NS}, "data": {"excludel2.yaml": format!("announcedInterfacesToExclude: [{list}]\n")}});
    api.apply(excl("\"^eth.*\", \"^lo$\""));
    api.apply_yaml("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: lan, namespace: metallb-system}\nspec: {addresses: [192.0.2.200-192.0.2.210]}\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: lan, namespace: metallb-system}\n");
    api.apply(service("lan-svc", "192.0.2.201", "Cluster"));
    api.apply(endpoints("lan-svc", "n1"));
    wait_until(T, "speakerd has the announcement with eth* excluded", || {
        let l = sp.speakerctl_json(&["l2", "list"]);
        let s = l.to_string();
        if s.contains("192.0.2.201") && s.contains("eth*") {
            Ok(())
        } else {
            Err(s)
        }
    });
    assert_holds(Duration::from_secs(3), "no ARP answer on the excluded eth0", || match client.arping("192.0.2.201") {
        Err(_) => Ok(()),
        Ok(mac) => Err(format!("answered by {mac}")),
    });
    // As MetalLB: the owner that cannot answer says so on the Service.
    let ev = wait_until(T, "an announceFailed Warning Event on lan-svc", || {
        let ev = api.events_about("Service", "lan-svc");
        ev.iter()
            .find(|e| e["type"] == "Warning" && e["reason"] == "announceFailed")
            .cloned()
            .ok_or_else(|| format!("{ev:#?}"))
    });
    let note = ev["note"].as_str().or(ev["message"].as_str()).unwrap_or_default().to_string();
    assert!(note.contains("192.0.2.201") && note.contains("layer2"), "{note}");
    // The pattern list changed to something else: eth0 is answered on again.
    api.apply(excl("\"^docker.*\""));
    let mac = wait_until(T, "arping 192.0.2.201 is answered once eth0 is no longer excluded", || {
        client.arping("192.0.2.201")
    });
    assert_eq!(mac, n1.mac());
}

/// Issue 25: with every API write taking 200 ms (a throttled API server), announcements and withdrawals
/// never wait for Events or status objects. 2,000 Services (each one `nodeAssigned` Event and one
/// ServiceBGPStatus: a minute of writes in a row) reach the router promptly; while that backlog drains,
/// an EndpointSlice flipped to not-ready is withdrawn at once, and ready again re-announced; once
/// writes are fast again every status object is there. Before the change the reconcile loop waited
/// for each Event and the status sync after a push, so the first flip waited for the whole backlog.
#[test]
fn slow_api_writes_never_delay_announcements_or_withdrawals() {
    use fake_apiserver::WriteDelay;
    use std::time::Instant;
    let Some(lab) = Lab::new_or_skip("k8sslow", &["gobgpd"]) else { return };
    let (n1, g) = lab.pair("n1", "gobgp");
    let api = Api::start(lab.dir());
    api.install_crds();
    api.apply(node("n1", &n1.v4.to_string(), "a"));
    let gobgp = gobgpd_router(&g, [&n1]);
    api.apply_yaml(&format!(
        r#"
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {{name: pool, namespace: metallb-system}}
spec: {{addresses: [198.18.0.0/21]}}
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {{name: adv, namespace: metallb-system}}
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {{name: router, namespace: metallb-system}}
spec: {{myASN: {SPK_ASN}, peerASN: {GOBGP_ASN}, peerAddress: "{}"}}
"#,
        g.v4
    ));
    let sp = start_node(&n1, "n1");
    let _b = bridge(&api, "n1", &sp, 17481);
    sp.wait_peer_state(&g.v4.to_string(), "established", T);
    api.server.set_write_delay(WriteDelay::Delay(Duration::from_millis(200)));
    // The issue's size; K8S_SLOW_N for a quicker local run.
    let n: usize = std::env::var("K8S_SLOW_N").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let ip = |i: usize| format!("198.18.{}.{}", i / 250, 1 + i % 250);
    for i in 0..n {
        let name = format!("s{i}");
        api.apply(service(&name, &ip(i), "Cluster"));
        api.apply(endpoints(&name, "n1"));
    }
    let last_object = Instant::now();
    let routes = |want: usize| {
        let n = gobgp.routes().len();
        if n == want {
            Ok(())
        } else {
            Err(format!("{n} of {want} routes"))
        }
    };
    wait_until(Duration::from_secs(60), &format!("all {n} routes at gobgpd"), || routes(n));
    let all_routes = last_object.elapsed();
    // The backlog of writes is still draining (n Events and n status objects at 200 ms each).
    let mut flips = Vec::new();
    for round in 0..20 {
        let k = 7 + round * 13;
        let (name, prefix) = (format!("s{k}"), format!("{}/32", ip(k)));
        let name = name.as_str();
        let t = Instant::now();
        api.apply(endpoints_with(name, &[("n1", false, false, false)]));
        wait_until(T, &format!("round {round}: {prefix} withdrawn"), || {
            if gobgp.routes_for(&prefix).is_empty() {
                Ok(())
            } else {
                Err("still there".into())
            }
        });
        flips.push(t.elapsed());
        api.apply(endpoints(name, "n1"));
        wait_until(T, &format!("round {round}: {prefix} back"), || routes(n));
    }
    flips.sort();
    let pending = (
        metric(17481, "k8s_bridge_events_pending").unwrap_or(-1.0),
        metric(17481, "k8s_bridge_status_pending").unwrap_or(-1.0),
    );
    println!(
        "slow API (200 ms per write): {n} routes {all_routes:?} after the last object; not-ready → withdrawn p50 {:?}, p95 {:?}, max {:?} over {} flips; pending (Events, status) then: {pending:?}",
        flips[flips.len() / 2],
        flips[flips.len() * 95 / 100],
        flips[flips.len() - 1],
        flips.len()
    );
    // Each flip went to speakerd as that Service's change, not as the whole set.
    let incremental = metric(17481, "k8s_bridge_pushes_incremental_total").unwrap_or(0.0);
    assert!(incremental >= 40.0, "{incremental} incremental pushes for 40 flips");
    // Bounds far below what waiting on writes costs here (n × 200 ms per backlog), far above
    // scheduling noise on a shared 2-core machine: the figures above are the measurement.
    // The issue's bounds: every route within 2 s of the last object; a flip withdrawn within 1 s (p95
    // of the 20 here; the slowest within 3 s, for a loaded CI machine). Measured in a debug build on 2
    // cores: 0.32 s and 0.29 s p50 / 0.33 s max.
    assert!(all_routes < Duration::from_secs(2), "routes took {all_routes:?}: a push waited on API writes");
    assert!(flips[flips.len() * 95 / 100] < Duration::from_secs(1), "a withdrawal waited on API writes: {flips:?}");
    assert!(flips[flips.len() - 1] < Duration::from_secs(3), "a withdrawal waited on API writes: {flips:?}");
    // Writes that hang (an API server that accepts and never answers): a flip still goes through.
    api.server.set_write_delay(WriteDelay::Hang);
    let prefix = format!("{}/32", ip(9));
    let t = Instant::now();
    api.apply(endpoints_with("s9", &[("n1", false, false, false)]));
    wait_until(T, &format!("{prefix} withdrawn while writes hang"), || {
        if gobgp.routes_for(&prefix).is_empty() {
            Ok(())
        } else {
            Err("still there".into())
        }
    });
    let hung = t.elapsed();
    api.apply(endpoints("s9", "n1"));
    wait_until(T, &format!("{prefix} back while writes hang"), || routes(n));
    println!("writes hanging: not-ready → withdrawn {hung:?}");
    assert!(hung < Duration::from_secs(5), "a withdrawal waited on a hanging API server: {hung:?}");
    // Writes fast again: the status converges, every object right.
    api.server.set_write_delay(WriteDelay::None);
    wait_until(Duration::from_secs(180), &format!("{n} correct ServiceBGPStatus objects"), || {
        let l = api.server.list("metallb.io/v1beta1", "ServiceBGPStatus", Some(NS));
        let names: std::collections::BTreeSet<String> = l
            .iter()
            .filter(|o| {
                let st = &o["status"];
                st["node"] == "n1"
                    && st["serviceNamespace"] == "default"
                    && st["peers"] == json!(["router"])
                    && o["metadata"]["labels"]["metallb.io/service-name"] == st["serviceName"]
            })
            .filter_map(|o| o["status"]["serviceName"].as_str().map(str::to_string))
            .collect();
        if l.len() == n && names.len() == n && (0..n).all(|i| names.contains(&format!("s{i}"))) {
            Ok(())
        } else {
            Err(format!("{} objects, {} correct", l.len(), names.len()))
        }
    });
}

/// Issue 20: two `k8s-bridge controller` processes elect a leader through a Lease; the leader is
/// killed (kill -9, so it never gives the Lease up) in the middle of a burst of 500 Service creations.
/// The standby takes over once the Lease expires, rebuilds from the Services' status, and allocates
/// the rest: every Service ends with one IP of the pool, no IP twice, and no Service that had an IP
/// before the kill has another after it.
#[test]
fn controller_leader_killed_during_a_burst_assigns_no_ip_twice_and_loses_none() {
    use std::collections::{BTreeMap, BTreeSet};
    let Some(lab) = Lab::new_or_skip("k8sctl", &[]) else { return };
    let api = Api::start(lab.dir());
    api.install_crds();
    api.apply_yaml("apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: burst, namespace: metallb-system}\nspec: {addresses: [198.19.0.0/22]}\n");
    let bin = bin_path("k8s-bridge");
    let kubeconfig = api.kubeconfig.display().to_string();
    let controller = |id: &str| {
        Proc::spawn(
            &format!("controller {id}"),
            &[
                bin.to_str().unwrap(),
                "controller",
                "--lease-duration-secs",
                "4",
                "--renew-deadline-secs",
                "2",
                "--retry-period-secs",
                "1",
            ],
            &lab.dir().join(format!("controller-{id}.log")),
            &[("KUBECONFIG", &kubeconfig), ("METALLB_POD_NAME", id), ("RUST_LOG", "info")],
            None,
        )
    };
    let holder = || {
        api.server
            .get("coordination.k8s.io/v1", "Lease", Some(NS), "metallb-controller")
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    let mut procs = BTreeMap::new();
    procs.insert("c1", controller("c1"));
    wait_until(T, "c1 to lead", || holder().filter(|h| h == "c1").ok_or_else(|| format!("{:?}", holder())));
    procs.insert("c2", controller("c2"));
    let svc = |i: usize| {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("b{i:03}"), "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIP": format!("10.96.{}.{}", i / 250, 1 + i % 250),
                     "clusterIPs": [format!("10.96.{}.{}", i / 250, 1 + i % 250)],
                     "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": "b"}}})
    };
    let assigned = || -> BTreeMap<String, Vec<String>> {
        api.server
            .list("v1", "Service", Some("default"))
            .iter()
            .filter_map(|s| {
                let name = s["metadata"]["name"].as_str()?.to_string();
                let ips = s["status"]["loadBalancer"]["ingress"]
                    .as_array()
                    .map(|v| v.iter().filter_map(|i| i["ip"].as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                Some((name, ips))
            })
            .collect()
    };
    const N: usize = 500;
    for i in 0..N / 2 {
        api.apply(svc(i));
    }
    // Mid-burst: the leader has been allocating (at least 100 Services have their IP).
    wait_until(T, "the leader allocating", || {
        let n = assigned().values().filter(|v| !v.is_empty()).count();
        if n >= 100 {
            Ok(())
        } else {
            Err(format!("{n}"))
        }
    });
    let leader = holder().expect("a leader");
    let before = assigned();
    procs.get_mut(leader.as_str()).expect("the leader is ours").kill9();
    let killed = std::time::Instant::now();
    for i in N / 2..N {
        api.apply(svc(i));
    }
    let after = wait_until(Duration::from_secs(60), &format!("all {N} Services with one IP"), || {
        let a = assigned();
        let done = a.values().filter(|ips| ips.len() == 1).count();
        if a.len() == N && done == N {
            Ok(a)
        } else {
            Err(format!("{done} of {N} ({} Services)", a.len()))
        }
    });
    let new_leader = holder().expect("a leader");
    assert_ne!(new_leader, leader, "the standby leads");
    let ips: Vec<&String> = after.values().flatten().collect();
    let unique: BTreeSet<&&String> = ips.iter().collect();
    assert_eq!(unique.len(), N, "an IP assigned twice");
    // 198.19.0.0/22: 198.19.0.0 ..= 198.19.3.255.
    let in_pool =
        |ip: &str| ip.parse::<std::net::Ipv4Addr>().is_ok_and(|a| a.octets()[..2] == [198, 19] && a.octets()[2] < 4);
    assert!(ips.iter().all(|ip| in_pool(ip)), "an IP outside the pool");
    let had = before.iter().filter(|(_, v)| !v.is_empty()).count();
    for (name, ips) in before.iter().filter(|(_, v)| !v.is_empty()) {
        assert_eq!(&after[name], ips, "{name} was reshuffled across the failover");
    }
    println!(
        "leader {leader} killed with {had} of {} Services allocated; {new_leader} led and all {N} had an IP {:?} after the kill",
        before.len(),
        killed.elapsed()
    );
}

/// Issue 20, MetalLB uninstalled: `k8s-bridge controller` allocates, two nodes' bridges announce, the
/// router holds the route, the real `kubectl get svc` shows the EXTERNAL-IP; two Services sharing an
/// IP (allow-shared-ip, TCP and UDP 53) get one IP announced once per node; deleting a Service
/// withdraws its route and frees its IP for the next Service.
#[test]
fn controller_allocates_bridges_announce_and_kubectl_shows_the_external_ip() {
    let Some(lab) = Lab::new_or_skip("k8salloc", &["gobgpd", "kubectl"]) else { return };
    let seg = lab.segment(&["n1", "n2", "gobgp"]);
    let (n1, n2, g) = (&seg.hosts[0], &seg.hosts[1], &seg.hosts[2]);
    let api = Api::start(lab.dir());
    api.install_crds();
    api.apply(node("n1", &n1.v4.to_string(), "a"));
    api.apply(node("n2", &n2.v4.to_string(), "b"));
    let gobgp = gobgpd_router(g, [n1, n2]);
    api.apply_yaml(&format!(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {{name: auto, namespace: metallb-system}}\nspec: {{addresses: [203.0.113.0/28]}}\n---\napiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: adv, namespace: metallb-system}}\n---\napiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: router, namespace: metallb-system}}\nspec: {{myASN: {SPK_ASN}, peerASN: {GOBGP_ASN}, peerAddress: \"{}\", connectTime: 1s}}\n",
        g.v4
    ));
    let sp1 = start_node(n1, "n1");
    let sp2 = start_node(n2, "n2");
    let _b1 = bridge(&api, "n1", &sp1, 17490);
    let _b2 = bridge(&api, "n2", &sp2, 17491);
    let kubeconfig = api.kubeconfig.display().to_string();
    let _ctl = Proc::spawn(
        "controller",
        &[bin_path("k8s-bridge").to_str().unwrap(), "controller"],
        &lab.dir().join("controller.log"),
        &[("KUBECONFIG", &kubeconfig), ("METALLB_POD_NAME", "controller-0"), ("RUST_LOG", "info")],
        None,
    );
    sp1.wait_peer_state(&g.v4.to_string(), "established", T);
    sp2.wait_peer_state(&g.v4.to_string(), "established", T);
    let svc = |name: &str, proto: &str, port: u16, cluster_ip: &str, shared: Option<&str>| {
        let mut ann = serde_json::Map::new();
        if let Some(k) = shared {
            ann.insert("metallb.io/allow-shared-ip".into(), json!(k));
        }
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "annotations": ann},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "clusterIP": cluster_ip,
                     "clusterIPs": [cluster_ip], "ports": [{"port": port, "protocol": proto}], "selector": {"app": name}}})
    };
    let ip_of = |name: &str| {
        api.server
            .get("v1", "Service", Some("default"), name)
            .and_then(|s| s["status"]["loadBalancer"]["ingress"][0]["ip"].as_str().map(str::to_string))
    };
    let kubectl = |args: &[&str]| {
        let out =
            std::process::Command::new("kubectl").arg("--kubeconfig").arg(&kubeconfig).args(args).output().unwrap();
        assert!(out.status.success(), "kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };

    api.apply(svc("web", "TCP", 80, "10.96.0.10", None));
    api.apply(endpoints("web", "n1"));
    let web_ip = wait_until(T, "web's IP from the controller", || ip_of("web").ok_or("none yet".to_string()));
    assert!(web_ip.starts_with("203.0.113."), "{web_ip}");
    let table = kubectl(&["get", "svc", "web"]);
    let header: Vec<&str> = table.lines().next().unwrap_or_default().split_whitespace().collect();
    let row: Vec<&str> = table.lines().nth(1).unwrap_or_default().split_whitespace().collect();
    let col = header.iter().position(|h| *h == "EXTERNAL-IP").expect(&table);
    assert_eq!(row.get(col), Some(&web_ip.as_str()), "kubectl get svc:\n{table}");
    let prefix = format!("{web_ip}/32");
    wait_until(T, &format!("{prefix} at gobgpd from both nodes"), || {
        let n = gobgp.routes_for(&prefix).len();
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} paths"))
        }
    });

    // Sharing: TCP and UDP 53 under one key get one IP, one route per node.
    api.apply(svc("dns-tcp", "TCP", 53, "10.96.0.11", Some("dns")));
    api.apply(svc("dns-udp", "UDP", 53, "10.96.0.12", Some("dns")));
    api.apply(endpoints("dns-tcp", "n2"));
    api.apply(endpoints("dns-udp", "n2"));
    let shared = wait_until(T, "both dns Services with one IP", || match (ip_of("dns-tcp"), ip_of("dns-udp")) {
        (Some(a), Some(b)) if a == b => Ok(a),
        other => Err(format!("{other:?}")),
    });
    assert_ne!(shared, web_ip);
    wait_until(T, "the shared IP announced once per node", || {
        let n = gobgp.routes_for(&format!("{shared}/32")).len();
        if n == 2 {
            Ok(())
        } else {
            Err(format!("{n} paths"))
        }
    });

    // Delete web: withdrawn everywhere, its IP free for the next Service.
    api.delete("v1", "Service", Some("default"), "web");
    gobgp.wait_no_route(&prefix);
    api.apply(svc("next", "TCP", 443, "10.96.0.13", None));
    let next = wait_until(T, "next's IP", || ip_of("next").ok_or("none yet".to_string()));
    assert_eq!(next, web_ip, "the freed IP is handed out again (the lowest free one)");
    assert_eq!(gobgp.routes_for(&format!("{shared}/32")).len(), 2, "the shared IP untouched");
}
