//! Layer 2 mode with three speakerd nodes and a client on one Linux bridge: every node agrees on one
//! owner per IP; the client resolves IPv4 (arping) and IPv6 (ndisc6) to the owner's MAC and only that
//! MAC ever answers; kill -9 of the owner moves the IP to a survivor, which announces it with gratuitous
//! ARP (kill → first GARP is measured; the < 1 s target is the benchmark's); an owner whose link goes
//! down is replaced, and when it returns it takes back only what the hash gives it.

mod common;

use common::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(20);
const NODES: [&str; 3] = ["n1", "n2", "n3"];

struct Cluster {
    nodes: Vec<(Host, Speakerd)>,
}

fn start(lab: &Lab, seg: &Segment) -> Cluster {
    start_with(lab, seg, &[])
}

/// [`start`] with extra speakerd arguments on every node (e.g. `--l2-election strict`).
fn start_with(lab: &Lab, seg: &Segment, extra: &[&str]) -> Cluster {
    let seed = format!("{}:7946", seg.hosts[0].v4);
    let nodes = NODES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let h = seg.hosts[i].clone();
            let mut b = Speakerd::builder(&h).l2_node(name, h.v4, Some(&seed));
            for a in extra {
                b = b.arg(a);
            }
            (h, b.start())
        })
        .collect();
    let _ = lab;
    Cluster { nodes }
}

impl Cluster {
    /// What k8s-bridge does: the same desired state pushed to every node.
    fn announce(&self, ips: &[&str]) {
        for (_, sp) in &self.nodes {
            let mut args = vec!["l2", "add"];
            args.extend_from_slice(ips);
            for n in NODES {
                args.extend(["--node", n]);
            }
            sp.ctl(&args);
        }
    }

    /// The owner of `ip` as every running node in `on` reports it; panics unless they agree.
    fn agreed_owner(&self, ip: &str, on: &[usize]) -> String {
        self.agreed_owner_not(ip, on, None)
    }

    /// Waits until every node in `on` reports the same owner of `ip`, other than `not`.
    fn agreed_owner_not(&self, ip: &str, on: &[usize], not: Option<&str>) -> String {
        wait_until(T, &format!("nodes {on:?} to agree on an owner of {ip} other than {not:?}"), || {
            let owners: BTreeSet<String> =
                on.iter().map(|i| self.nodes[*i].1.ctl(&["l2", "owner", ip]).trim().to_string()).collect();
            match owners.len() {
                1 if !owners.contains("(none)") && !not.is_some_and(|n| owners.contains(n)) => {
                    Ok(owners.into_iter().next().unwrap_or_default())
                }
                _ => Err(format!("{owners:?}")),
            }
        })
    }

    fn index(name: &str) -> usize {
        NODES.iter().position(|n| *n == name).unwrap_or(0)
    }

    fn wait_members(&self, on: &[usize], alive: usize) {
        for i in on {
            wait_alive_members(&self.nodes[*i].1, alive);
        }
    }
}

/// Waits until `sp` sees `alive` members that are not dead (itself included).
fn wait_alive_members(sp: &Speakerd, alive: usize) {
    sp.wait(T, &format!("{alive} alive members"), || {
        let v = sp.speakerctl_json(&["members"]);
        let n = v["members"].as_array().map_or(0, |m| m.iter().filter(|x| x["state"] != "dead").count());
        if n == alive {
            Ok(())
        } else {
            Err(v.to_string())
        }
    });
}

fn replies_by_mac(capture: &str, ip: &str) -> BTreeSet<String> {
    capture
        .lines()
        .filter(|l| l.contains(&format!("reply {ip} is-at")))
        .filter_map(|l| l.split_whitespace().nth(1).map(|m| m.trim_end_matches(',').to_string()))
        .collect()
}

#[test]
fn three_nodes_one_owner_and_failover_on_kill() {
    let Some(lab) = Lab::new_or_skip("l2kill", &["arping", "ndisc6", "tcpdump"]) else { return };
    let seg = lab.segment(&["n1", "n2", "n3", "cl"]);
    let client = seg.hosts[3].clone();
    let mut c = start(&lab, &seg);
    c.wait_members(&[0, 1, 2], 3);
    let ip = "192.0.2.100";
    c.announce(&[ip, "2001:db8::100"]);
    let owner = c.agreed_owner(ip, &[0, 1, 2]);
    let oi = Cluster::index(&owner);
    let owner_mac = c.nodes[oi].0.mac();

    let cap_log = lab.dir().join("capture.txt");
    let _cap = client.spawn(
        "tcpdump",
        &["tcpdump", "-i", &client.dev, "-n", "-e", "-l", "-tt", "arp or icmp6"],
        &cap_log,
        &[],
    );
    wait_until(T, "tcpdump listening", || match std::fs::read_to_string(&cap_log) {
        Ok(s) if s.contains("listening on") => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let mac = wait_until(T, "arping resolves the IP", || client.arping(ip));
    assert_eq!(mac, owner_mac, "answered by the wrong node");
    let nd = client.exec(&["ndisc6", "-r", "3", "2001:db8::100", &client.dev]);
    let nd_out = String::from_utf8_lossy(&nd.stdout).to_lowercase();
    let v6_owner = c.agreed_owner("2001:db8::100", &[0, 1, 2]);
    assert!(nd_out.contains(&c.nodes[Cluster::index(&v6_owner)].0.mac()), "ndisc6: {nd_out}");

    // A survivor's watch stream must report the change of owner.
    let watcher = (0..3).find(|i| *i != oi).unwrap_or(0);
    let watch_log = lab.dir().join("watch.ndjson");
    let w = &c.nodes[watcher].1;
    let _watch = w.watch_json(&watch_log);

    // Kill the owner: a survivor takes over and says so with gratuitous ARP.
    let killed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    c.nodes[oi].1.kill9();
    let survivors: Vec<usize> = (0..3).filter(|i| *i != oi).collect();
    let new_owner = c.agreed_owner_not(ip, &survivors, Some(&owner));
    assert_ne!(new_owner, owner);
    let new_mac = c.nodes[Cluster::index(&new_owner)].0.mac();
    let first_garp = wait_until(T, "a gratuitous ARP from the new owner", || {
        let cap = std::fs::read_to_string(&cap_log).unwrap_or_default().to_lowercase();
        cap.lines()
            .filter(|l| l.contains(&new_mac) && l.contains(&format!("who-has {ip} tell {ip}")))
            .filter_map(|l| l.split_whitespace().next().and_then(|t| t.parse::<f64>().ok()))
            .find(|t| *t >= killed_at)
            .ok_or_else(|| "none yet".to_string())
    });
    let took = first_garp - killed_at;
    eprintln!("kill -9 of {owner} -> first gratuitous ARP from {new_owner}: {:.0} ms", took * 1000.0);
    assert!(took < 5.0, "failover took {took:.2} s");
    let mac = wait_until(T, "arping resolves to the new owner", || match client.arping(ip) {
        Ok(m) if m == new_mac => Ok(m),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(mac, new_mac);

    wait_until(T, "an l2_owner event for the IP on the survivor's watch", || {
        let text = std::fs::read_to_string(&watch_log).unwrap_or_default();
        let found = text.lines().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).any(|v| {
            v["l2_owner"]["ip"] == ip
                && v["l2_owner"]["old_node"] == owner.as_str()
                && v["l2_owner"]["new_node"] == new_owner.as_str()
        });
        if found {
            Ok(())
        } else {
            Err(text)
        }
    });

    // At no point did two MACs answer for the IP except around the handover itself.
    let cap = std::fs::read_to_string(&cap_log).unwrap_or_default().to_lowercase();
    let macs = replies_by_mac(&cap, ip);
    assert!(macs.iter().all(|m| *m == owner_mac || *m == new_mac), "{macs:?}\n{cap}");
}

#[test]
fn link_down_moves_only_that_nodes_ips_and_return_does_not_flap_others() {
    let Some(lab) = Lab::new_or_skip("l2link", &["arping"]) else { return };
    let seg = lab.segment(&["n1", "n2", "n3", "cl"]);
    let client = seg.hosts[3].clone();
    // Strict election: the isolated node must also lose its quorum (the default, available election,
    // has it keep computing itself as owner, which it cannot answer for with its link down).
    let c = start_with(&lab, &seg, &["--l2-election", "strict"]);
    c.wait_members(&[0, 1, 2], 3);
    // Enough IPs that every node owns some.
    let ips: Vec<String> = (100..130).map(|i| format!("192.0.2.{i}")).collect();
    let ip_refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    c.announce(&ip_refs);
    let before: BTreeMap<String, String> = ips.iter().map(|ip| (ip.clone(), c.agreed_owner(ip, &[0, 1, 2]))).collect();
    let victim = before.values().next().cloned().unwrap_or_default();
    let vi = Cluster::index(&victim);
    let others: Vec<usize> = (0..3).filter(|i| *i != vi).collect();
    assert!(before.values().collect::<BTreeSet<_>>().len() == 3, "IPs should spread over all nodes: {before:?}");
    // The survivors' watch streams record every change of owner over the whole test, not only the
    // final state: an IP whose owner stays up must never change owner, not even for a moment.
    let watches: Vec<(std::path::PathBuf, Proc)> = others
        .iter()
        .map(|o| {
            let log = lab.dir().join(format!("watch-{o}.ndjson"));
            let w = c.nodes[*o].1.watch_json(&log);
            wait_until(T, "the watch's initial state", || match std::fs::read_to_string(&log) {
                Ok(t) if t.contains("synced") => Ok(()),
                other => Err(format!("{other:?}")),
            });
            (log, w)
        })
        .collect();

    c.nodes[vi].0.link_down(&c.nodes[vi].0.dev);
    for (ip, was) in &before {
        let now =
            if *was == victim { c.agreed_owner_not(ip, &others, Some(&victim)) } else { c.agreed_owner(ip, &others) };
        if *was == victim {
            assert_ne!(now, victim, "{ip} still on the node whose link is down");
        } else {
            assert_eq!(&now, was, "{ip} moved although its owner is up");
        }
    }
    // The isolated node sees no majority: it computes no owner and claims nothing.
    let vsp = &c.nodes[vi].1;
    vsp.wait(T, "the isolated node to lose its quorum", || {
        let m = vsp.speakerctl_json(&["members"]);
        if m["quorate"] == false {
            Ok(())
        } else {
            Err(m.to_string())
        }
    });
    for ip in before.keys() {
        assert_eq!(vsp.ctl(&["l2", "owner", ip]).trim(), "(none)", "isolated node still owns {ip}");
    }
    // The survivors answer for the victim's IPs.
    let moved = before.iter().find(|(_, o)| **o == victim).map(|(ip, _)| ip.clone()).unwrap_or_default();
    wait_until(T, "a survivor answers for a moved IP", || client.arping(&moved));

    let link_up_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    c.nodes[vi].0.link_up(&c.nodes[vi].0.dev);
    c.wait_members(&[0, 1, 2], 3);
    // Back: exactly the original assignment, on every node, once the returning node's hold-down is
    // over (it gave its IPs up when its link went down: docs/LAYER2.md, "Hand-off").
    wait_until(T, "the original assignment on every node", || {
        for (ip, was) in &before {
            for (_, sp) in &c.nodes {
                let o = sp.ctl(&["l2", "owner", ip]).trim().to_string();
                if &o != was {
                    return Err(format!("{ip}: {o} instead of {was}"));
                }
            }
        }
        Ok(())
    });
    // While the link is down an IP of a node that stays up must never change owner. After the link
    // comes back, the returning node's stale view can, rarely and under load, get a live node declared
    // dead for a moment (docs/LAYER2.md, "Known issue"): counted and printed, not yet asserted.
    let mut after_rejoin = Vec::new();
    for (log, _) in &watches {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let synced = text.find("synced").unwrap_or(0);
        for line in text[synced..].lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
            let Some(ip) = v["l2_owner"]["ip"].as_str() else { continue };
            if before.get(ip).is_none_or(|o| *o == victim) {
                continue;
            }
            let at = v["timestamp_ms"].as_u64().unwrap_or(0);
            assert!(
                at >= link_up_ms,
                "{ip}, owned by {:?} which stayed up, changed owner while the link was down: {line}",
                before.get(ip)
            );
            after_rejoin.push(format!("{} ms after link up: {line}", at - link_up_ms));
        }
    }
    println!("owner changes of IPs whose owner stayed up, after the link came back: {after_rejoin:#?}");
    let _ = Instant::now();
}

#[test]
fn second_nic_subnet_is_answered_with_the_second_nics_mac_and_never_on_the_first() {
    let Some(lab) = Lab::new_or_skip("l2nics", &["arping"]) else { return };
    // eth0: node and client A on 192.0.2.0/24; eth1: node and client B on 198.51.100.0/24.
    let (node, client_a) = lab.pair("node", "ca");
    let client_b = lab.ns("cb");
    lab.veth(&node, "eth1", &client_b, "eth0");
    node.addr_add("eth1", "198.51.100.1/24");
    client_b.addr_add("eth0", "198.51.100.9/24");
    node.link_up("eth1");
    client_b.link_up("eth0");
    client_b.link_up("lo");
    client_b.wait_ping("198.51.100.1".parse().unwrap());
    let sp = Speakerd::builder(&node)
        .no_bgp_listen()
        .arg("--no-gossip")
        .arg("--node-name")
        .arg("node")
        .metrics("127.0.0.1:9476")
        .start();
    sp.ctl(&["l2", "add", "198.51.100.50", "192.0.2.50"]);
    let eth1_mac = {
        let out = node.ip(&["-o", "link", "show", "eth1"]);
        out.split("link/ether ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_default().to_string()
    };
    let cb = Host {
        ns: client_b.clone(),
        dev: "eth0".into(),
        v4: "198.51.100.9".parse().unwrap(),
        v6: "2001:db8:2::9".parse().unwrap(),
    };
    let mac = wait_until(T, "client B resolves 198.51.100.50", || cb.arping("198.51.100.50"));
    assert_eq!(mac, eth1_mac, "answered with the wrong NIC's MAC");
    assert_eq!(wait_until(T, "client A resolves 192.0.2.50", || client_a.arping("192.0.2.50")), node.mac());
    // Client A is on the other segment: the 198.51.100.50 request it sends must go unanswered there.
    assert!(client_a.arping("198.51.100.50").is_err(), "answered on the first NIC");
    let list = sp.speakerctl_json(&["l2", "list"]);
    let entry =
        list.as_array().and_then(|a| a.iter().find(|x| x["ip"] == "198.51.100.50")).cloned().unwrap_or_default();
    assert_eq!(entry["answering_on"][0], format!("eth1 {eth1_mac}"), "{list}");
    // MetalLB's layer 2 counters, labelled by IP: the answers above are counted for their IP.
    let m = node.metrics(9476).unwrap_or_else(|e| panic!("metrics: {e}"));
    let value = |series: &str| -> u64 {
        m.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("no {series} in\n{m}"))
    };
    assert!(value("metallb_layer2_responses_sent{ip=\"198.51.100.50\"}") >= 1);
    assert!(value("metallb_layer2_requests_received{ip=\"192.0.2.50\"}") >= 1);
    assert!(value("metallb_layer2_gratuitous_sent{ip=\"192.0.2.50\"}") >= 1);
    assert!(value("speakerd_layer2_responses_sent_total") >= 2);

    // An IP outside every subnet of the node (clients route it to their segment): answered on every
    // NIC, each with its own MAC, as MetalLB answers it (issue 18).
    sp.ctl(&["l2", "add", "198.51.100.50", "192.0.2.50", "203.0.113.50"]);
    client_a.route_add(&["203.0.113.0/24", "dev", "eth0"]);
    client_b.route_add(&["203.0.113.0/24", "dev", "eth0"]);
    assert_eq!(wait_until(T, "client A resolves 203.0.113.50", || client_a.arping("203.0.113.50")), node.mac());
    assert_eq!(wait_until(T, "client B resolves 203.0.113.50", || cb.arping("203.0.113.50")), eth1_mac);
    // eth1, the NIC of 198.51.100.50's subnet, deleted: a failure (handed off in a group), never answered
    // on eth0 with eth0's MAC.
    node.ip(&["link", "del", "eth1"]);
    wait_until(T, "198.51.100.50 reported as not answered", || {
        let list = sp.speakerctl_json(&["l2", "list"]);
        let e =
            list.as_array().and_then(|a| a.iter().find(|x| x["ip"] == "198.51.100.50")).cloned().unwrap_or_default();
        if e["error"].as_str().is_some_and(|s| s.contains("on the IP's subnet")) {
            Ok(())
        } else {
            Err(format!("{e}"))
        }
    });
    assert!(client_a.arping("198.51.100.50").is_err(), "answered on eth0 after eth1 went away");
    assert_eq!(client_a.arping("203.0.113.50").ok(), Some(node.mac()), "the off-subnet IP stays on eth0");
}

/// Issue 19's case: two nodes run speakerd, and the IPs' candidates also name three nodes that never
/// run it (control-plane nodes the DaemonSet does not tolerate, say). With the default, available
/// election, kill -9 of either node is taken over by the other, both ways; the phantom nodes count for
/// nothing. (With the old majority rule the first kill left its IP unanswered for good.)
#[test]
fn two_nodes_with_phantom_candidates_fail_over_both_ways() {
    let Some(lab) = Lab::new_or_skip("l2two", &["arping", "tcpdump"]) else { return };
    let seg = lab.segment(&["n1", "n2", "cl"]);
    let client = seg.hosts[2].clone();
    let seed = format!("{}:7946", seg.hosts[0].v4);
    let names = ["n1", "n2"];
    let mut sps: Vec<Speakerd> = (0..2)
        .map(|i| Speakerd::builder(&seg.hosts[i]).l2_node(names[i], seg.hosts[i].v4, Some(&seed)).start())
        .collect();
    let macs: Vec<String> = (0..2).map(|i| seg.hosts[i].mac()).collect();
    let candidates = ["n1", "n2", "cp1", "cp2", "cp3"];
    let announce = |sp: &Speakerd, ips: &[&str]| {
        let mut args = vec!["l2", "add"];
        args.extend_from_slice(ips);
        for n in candidates {
            args.extend(["--node", n]);
        }
        sp.ctl(&args);
    };
    wait_alive_members(&sps[0], 2);
    wait_alive_members(&sps[1], 2);
    // Twenty IPs: both nodes own some.
    let ips: Vec<String> = (10..30).map(|i| format!("192.0.2.{i}")).collect();
    let refs: Vec<&str> = ips.iter().map(String::as_str).collect();
    for sp in &sps {
        announce(sp, &refs);
    }
    let owner_of = |sp: &Speakerd, ip: &str| sp.ctl(&["l2", "owner", ip]).trim().to_string();
    let ip_of = |who: &str| -> String {
        wait_until(T, &format!("an IP owned by {who} on both nodes"), || {
            ips.iter()
                .find(|ip| owner_of(&sps[0], ip) == who && owner_of(&sps[1], ip) == who)
                .cloned()
                .ok_or_else(|| format!("{:?}", ips.iter().map(|ip| owner_of(&sps[0], ip)).collect::<Vec<_>>()))
        })
    };
    let ip1 = ip_of("n1");
    let ip2 = ip_of("n2");
    let cap_log = lab.dir().join("capture.txt");
    let _cap = client.spawn("tcpdump", &["tcpdump", "-i", &client.dev, "-n", "-e", "-l", "-tt", "arp"], &cap_log, &[]);
    wait_until(T, "tcpdump listening", || match std::fs::read_to_string(&cap_log) {
        Ok(s) if s.contains("listening on") => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let mut took = Vec::new();
    // n1 dies: n2 takes n1's IP. n1 comes back (its bridge re-pushes), n2 dies: n1 takes n2's IP.
    for (dead, survivor, ip) in [(0usize, 1usize, &ip1), (1, 0, &ip2)] {
        assert_eq!(client.arping(ip).ok().as_deref(), Some(macs[dead].as_str()), "{ip} before the kill");
        let killed_at = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        sps[dead].kill9();
        let garp = wait_until(T, &format!("a gratuitous ARP for {ip} from {}", names[survivor]), || {
            let cap = std::fs::read_to_string(&cap_log).unwrap_or_default().to_lowercase();
            cap.lines()
                .filter(|l| l.contains(&macs[survivor]) && l.contains(&format!("who-has {ip} tell {ip}")))
                .filter_map(|l| l.split_whitespace().next().and_then(|t| t.parse::<f64>().ok()))
                .find(|t| *t >= killed_at)
                .ok_or_else(|| "none yet".to_string())
        });
        took.push(garp - killed_at);
        let mac = wait_until(T, &format!("arping {ip} answered by {}", names[survivor]), || match client.arping(ip) {
            Ok(m) if m == macs[survivor] => Ok(m),
            other => Err(format!("{other:?}")),
        });
        assert_eq!(mac, macs[survivor]);
        assert_eq!(owner_of(&sps[survivor], ip), names[survivor]);
        if dead == 0 {
            sps[0].restart();
            announce(&sps[0], &refs);
            wait_alive_members(&sps[0], 2);
            wait_alive_members(&sps[1], 2);
            wait_until(T, &format!("{ip1} back at n1 on both nodes"), || {
                let o = (owner_of(&sps[0], &ip1), owner_of(&sps[1], &ip1));
                if o == ("n1".into(), "n1".into()) {
                    Ok(())
                } else {
                    Err(format!("{o:?}"))
                }
            });
        }
    }
    eprintln!(
        "two nodes, three phantom candidates: kill -9 -> first gratuitous ARP from the survivor: {:.0} ms, {:.0} ms",
        took[0] * 1000.0,
        took[1] * 1000.0
    );
    assert!(took.iter().all(|t| *t < 5.0), "failover took {took:?} s");
}

/// MetalLB's `preferredNodeSelectors` through speakerd's `node_weights`: the preferred node answers even
/// where the hash would pick another; killed, the hash order of the others takes over; back, it takes
/// the IP back (as MetalLB: a heavier candidate alive wins).
#[test]
fn the_preferred_node_answers_and_takes_the_ip_back_when_it_returns() {
    let Some(lab) = Lab::new_or_skip("l2pref", &["arping"]) else { return };
    let seg = lab.segment(&["n1", "n2", "n3", "cl"]);
    let client = seg.hosts[3].clone();
    let mut c = start(&lab, &seg);
    c.wait_members(&[0, 1, 2], 3);
    let ip = "192.0.2.120";
    c.announce(&[ip]);
    let by_hash = c.agreed_owner(ip, &[0, 1, 2]);
    let preferred = NODES.iter().find(|n| **n != by_hash).unwrap().to_string();
    let pi = Cluster::index(&preferred);
    let announce_preferred = |sp: &Speakerd| {
        let w = format!("{preferred}=50");
        let mut args = vec!["l2", "add", ip, "--prefer", &w];
        for n in NODES {
            args.extend(["--node", n]);
        }
        sp.ctl(&args);
    };
    for (_, sp) in &c.nodes {
        announce_preferred(sp);
    }
    let v = c.nodes[0].1.speakerctl_json(&["l2", "list"]);
    assert_eq!(v[0]["prefer"][preferred.as_str()], 50, "{v}");
    let owner = c.agreed_owner_not(ip, &[0, 1, 2], Some(&by_hash));
    assert_eq!(owner, preferred, "the weight beats the hash");
    let pref_mac = c.nodes[pi].0.mac();
    wait_until(T, "arping answered by the preferred node", || match client.arping(ip) {
        Ok(m) if m == pref_mac => Ok(()),
        other => Err(format!("{other:?}")),
    });

    // Killed: the others by hash (the one the hash named first).
    c.nodes[pi].1.kill9();
    let rest: Vec<usize> = (0..3).filter(|i| *i != pi).collect();
    let fallback = c.agreed_owner_not(ip, &rest, Some(&preferred));
    assert_eq!(fallback, by_hash);
    let hash_mac = c.nodes[Cluster::index(&by_hash)].0.mac();
    wait_until(T, "arping answered by the hash's node", || match client.arping(ip) {
        Ok(m) if m == hash_mac => Ok(()),
        other => Err(format!("{other:?}")),
    });

    // Back (a new process, told again by its bridge): it takes the IP back.
    c.nodes[pi].1.restart();
    announce_preferred(&c.nodes[pi].1);
    c.wait_members(&[0, 1, 2], 3);
    let back = c.agreed_owner_not(ip, &[0, 1, 2], Some(&by_hash));
    assert_eq!(back, preferred);
    wait_until(T, "arping answered by the preferred node again", || match client.arping(ip) {
        Ok(m) if m == pref_mac => Ok(()),
        other => Err(format!("{other:?}")),
    });
}
