//! Issue 7, "a new owner always starts answering": three nodes gossip on eth0 (192.0.2.0/24) and
//! answer for Layer 2 IPs on a second segment on eth1 (198.51.100.0/24), where a client asks. When the
//! owner's eth1 is deleted, or goes down, the owner cannot answer; it gives the IP up, the others learn
//! it through gossip alone and the next candidate answers (first gratuitous ARP measured); the old
//! owner says why in the API. When its interface is back it returns after the hold-down and takes back
//! only what the hash order gives it.
mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);
const NAMES: [&str; 3] = ["n1", "n2", "n3"];
const IPS: [&str; 3] = ["198.51.100.50", "198.51.100.51", "198.51.100.52"];

struct TwoSegments {
    seg: Segment,
    sw2: Netns,
    client: Host,
}

/// Gives host `i` an eth1 on the second segment (198.51.100.(i+1)/24), attached to sw2's bridge.
fn attach_eth1(lab: &Lab, sw2: &Netns, h: &Host, i: usize) {
    let port = format!("q{i}");
    lab.veth(h, "eth1", sw2, &port);
    sw2.ip(&["link", "set", &port, "master", "br1"]);
    sw2.link_up(&port);
    h.addr_add("eth1", &format!("198.51.100.{}/24", i + 1));
    h.link_up("eth1");
}

fn two_segments(lab: &Lab) -> TwoSegments {
    let seg = lab.segment(&["n1", "n2", "n3"]);
    let sw2 = lab.ns("sw2");
    sw2.ip(&["link", "add", "br1", "type", "bridge"]);
    sw2.link_up("br1");
    for (i, h) in seg.hosts.iter().enumerate() {
        attach_eth1(lab, &sw2, h, i);
    }
    let c = lab.ns("client");
    lab.veth(&c, "eth0", &sw2, "q9");
    sw2.ip(&["link", "set", "q9", "master", "br1"]);
    sw2.link_up("q9");
    c.addr_add("eth0", "198.51.100.9/24");
    c.link_up("eth0");
    c.link_up("lo");
    let client =
        Host { ns: c, dev: "eth0".into(), v4: "198.51.100.9".parse().unwrap(), v6: "2001:db8:9::9".parse().unwrap() };
    client.wait_ping("198.51.100.1".parse().unwrap());
    TwoSegments { seg, sw2, client }
}

fn eth1_mac(h: &Host) -> String {
    let out = h.ip(&["-o", "link", "show", "eth1"]);
    out.split("link/ether ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_default().to_string()
}

fn owners(nodes: &[Speakerd], on: &[usize]) -> BTreeMap<&'static str, Vec<String>> {
    IPS.iter()
        .map(|ip| {
            (
                *ip,
                on.iter()
                    .map(|i| {
                        nodes[*i].speakerctl_json(&["l2", "owner", ip])["node"].as_str().unwrap_or_default().to_string()
                    })
                    .collect(),
            )
        })
        .collect()
}

fn l2_entry(sp: &Speakerd, ip: &str) -> Value {
    let list = sp.speakerctl_json(&["l2", "list"]);
    list.as_array().and_then(|a| a.iter().find(|x| x["ip"] == ip)).cloned().unwrap_or_default()
}

#[test]
fn an_owner_that_cannot_answer_hands_the_ip_off() {
    let Some(lab) = Lab::new_or_skip("l2hand", &["arping"]) else { return };
    let t = two_segments(&lab);
    let seed = format!("{}:7946", t.seg.hosts[0].v4);
    let nodes: Vec<Speakerd> = NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let h = &t.seg.hosts[i];
            Speakerd::builder(h).l2_node(name, h.v4, Some(&seed)).start()
        })
        .collect();
    for sp in &nodes {
        let mut args = vec!["l2", "add"];
        args.extend_from_slice(&IPS);
        for n in NAMES {
            args.extend(["--node", n]);
        }
        sp.ctl(&args);
    }
    let ip = IPS[0];
    let first = wait_until(T, "all nodes agree on the owners", || {
        let o = owners(&nodes, &[0, 1, 2]);
        if o.values().all(|v| !v[0].is_empty() && v.iter().all(|x| x == &v[0])) {
            Ok(o)
        } else {
            Err(format!("{o:?}"))
        }
    });
    let oi = NAMES.iter().position(|n| *n == first[ip][0]).unwrap();
    let owner_mac = eth1_mac(&t.seg.hosts[oi]);
    assert_eq!(wait_until(T, "the client resolves the IP", || t.client.arping(ip)), owner_mac);
    let others: Vec<usize> = (0..3).filter(|i| *i != oi).collect();

    // (a) The owner's eth1 is deleted: it can no longer answer. Gossip on eth0 still says it is alive.
    let start = Instant::now();
    t.seg.hosts[oi].ip(&["link", "del", "eth1"]);
    let new_mac = wait_until(T, "another node answers after the owner's NIC is gone", || match t.client.arping(ip) {
        Ok(m) if m != owner_mac => Ok(m),
        other => Err(format!("{other:?}")),
    });
    println!("eth1 deleted on {} → {new_mac} answers after {:?}", NAMES[oi], start.elapsed());
    let after = wait_until(T, "every node agrees on the new owner", || {
        let o = owners(&nodes, &[0, 1, 2]);
        let v = &o[ip];
        if v.iter().all(|x| x == &v[0]) && v[0] != NAMES[oi] && !v[0].is_empty() {
            Ok(o)
        } else {
            Err(format!("{o:?}"))
        }
    });
    let e = l2_entry(&nodes[oi], ip);
    assert!(e["error"].as_str().unwrap_or_default().contains("handed off"), "the old owner says why: {e}");
    // IPs the old owner did not own did not move.
    for other in &IPS[1..] {
        if first[other][0] != NAMES[oi] {
            assert_eq!(after[other][0], first[other][0], "{other} moved although its owner was fine");
        }
    }

    // (c) eth1 is back: after the hold-down (5 s) the node re-enters and takes back what the hash gives it.
    attach_eth1(&lab, &t.sw2, &t.seg.hosts[oi], oi);
    let back_mac = eth1_mac(&t.seg.hosts[oi]);
    let t0 = Instant::now();
    wait_until(T, "the node answers again after its NIC is back", || match t.client.arping(ip) {
        Ok(m) if m == back_mac => Ok(()),
        other => Err(format!("{other:?}")),
    });
    println!("eth1 back on {}: answering again after {:?}", NAMES[oi], t0.elapsed());
    assert_eq!(l2_entry(&nodes[oi], ip)["error"], "", "no error once back");

    // (b) The new owner's eth1 goes down (link down, not deleted): the same hand-off.
    let start = Instant::now();
    t.seg.hosts[oi].link_down("eth1");
    let mac2 = wait_until(T, "another node answers after the owner's link went down", || match t.client.arping(ip) {
        Ok(m) if m != back_mac => Ok(m),
        other => Err(format!("{other:?}")),
    });
    println!("eth1 down on {} → {mac2} answers after {:?}", NAMES[oi], start.elapsed());
    assert!(others.iter().any(|i| eth1_mac(&t.seg.hosts[*i]) == mac2));
}
