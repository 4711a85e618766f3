//! The pure allocator (k8s-bridge::allocator), with cases written from upstream MetalLB's
//! internal/allocator/allocator_test.go and controller/controller_test.go. Each test drives a small
//! "world": reconcile, write the updates back into the Services as the controller would, repeat.
use k8s_bridge::allocator::*;
use k8s_bridge::metallb::LabelSelector;
use k8s_bridge::selector::Selector;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

fn pool(name: &str, addrs: &[&str]) -> Pool {
    Pool::new(name, addrs).unwrap()
}

fn svc(name: &str, cluster_ips: &[&str]) -> Service {
    Service {
        namespace: "default".into(),
        name: name.into(),
        type_: "LoadBalancer".into(),
        cluster_ips: cluster_ips.iter().map(|s| s.to_string()).collect(),
        ports: vec![Port { proto: "TCP".into(), port: 80 }],
        ..Default::default()
    }
}

fn v4(name: &str) -> Service {
    svc(name, &["10.96.0.1"])
}

fn with_ann(mut s: Service, k: &str, v: &str) -> Service {
    s.annotations.insert(k.into(), v.into());
    s
}

fn ports(mut s: Service, ps: &[(&str, i32)]) -> Service {
    s.ports = ps.iter().map(|(p, n)| Port { proto: p.to_string(), port: *n }).collect();
    s
}

fn sel(kv: &[(&str, &str)]) -> Selector {
    let ls = LabelSelector {
        match_labels: kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        ..Default::default()
    };
    Selector::new(&ls).unwrap()
}

struct World {
    input: Input,
    last: Outcome,
}

impl World {
    fn new(pools: Vec<Pool>) -> Self {
        World { input: Input { pools, ..Default::default() }, last: Outcome::default() }
    }

    fn add(&mut self, mut s: Service) -> &mut Self {
        s.created = self.input.services.len() as i64;
        self.input.services.push(s);
        self
    }

    fn get(&mut self, name: &str) -> &mut Service {
        self.input.services.iter_mut().find(|s| s.name == name).unwrap()
    }

    fn delete(&mut self, name: &str) {
        self.input.services.retain(|s| s.name != name);
    }

    /// Reconcile, write the updates back; a second pass must then be a fixed point.
    fn run(&mut self) -> &Outcome {
        let out = reconcile(&self.input);
        for u in &out.updates {
            let s = self.input.services.iter_mut().find(|s| s.key() == u.service).unwrap();
            s.ingress = u.ingress.iter().map(|i| i.to_string()).collect();
            match &u.pool {
                Some(p) => s.annotations.insert(ANN_ALLOCATED_FROM_POOL.into(), p.clone()),
                None => s.annotations.remove(ANN_ALLOCATED_FROM_POOL),
            };
        }
        let again = reconcile(&self.input);
        assert!(again.updates.is_empty(), "not a fixed point: {:?}", again.updates);
        assert_eq!(again.assignments, out.assignments);
        self.last = out;
        &self.last
    }

    fn ips(&self, name: &str) -> Vec<String> {
        self.input.services.iter().find(|s| s.name == name).unwrap().ingress.clone()
    }

    fn pool_of(&self, name: &str) -> Option<String> {
        let s = self.input.services.iter().find(|s| s.name == name).unwrap();
        s.annotations.get(ANN_ALLOCATED_FROM_POOL).cloned()
    }

    fn has_event(&self, name: &str, reason: &str, contains: &str) -> bool {
        self.last
            .events
            .iter()
            .any(|e| e.service == format!("default/{name}") && e.reason == reason && e.message.contains(contains))
    }
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn assign_exhaust_release_reuse() {
    let mut w = World::new(vec![pool("p", &["1.2.3.4/31"])]);
    w.add(v4("s1")).add(v4("s2")).add(v4("s3"));
    w.run();
    assert_eq!(w.ips("s1"), strs(&["1.2.3.4"]));
    assert_eq!(w.ips("s2"), strs(&["1.2.3.5"]));
    assert!(w.ips("s3").is_empty());
    assert!(w.has_event("s3", "AllocationFailed", "no available IPs"));
    assert!(w.has_event("s1", "IPAllocated", "1.2.3.4"));
    assert_eq!(w.pool_of("s1").as_deref(), Some("p"));
    assert_eq!(w.last.pools["p"], PoolStatus { assigned_ipv4: 2, available_ipv4: 0, ..Default::default() });
    w.delete("s1");
    w.run();
    assert_eq!(w.ips("s3"), strs(&["1.2.3.4"]));
    assert_eq!(w.ips("s2"), strs(&["1.2.3.5"]), "s2 must not move");
}

#[test]
fn type_change_releases_with_event() {
    let mut w = World::new(vec![pool("p", &["1.2.3.0/24"])]);
    w.add(v4("s1"));
    w.run();
    assert_eq!(w.ips("s1"), strs(&["1.2.3.0"]));
    w.get("s1").type_ = "NodePort".into();
    w.run();
    assert!(w.ips("s1").is_empty());
    assert_eq!(w.pool_of("s1"), None);
    assert!(w.has_event("s1", "ClearedIPs", "no longer of type LoadBalancer"));
    assert_eq!(w.last.pools["p"].assigned_ipv4, 0);
    assert_eq!(w.last.pools["p"].available_ipv4, 256);
}

/// upstream controller_test TestControllerMutation, one Service each, on pool 1.2.3.0/24
/// (+ "pool2" 3.4.5.6/32 not auto-assigned, "pool3" 5.6.7.8/32 with autoAssign).
#[test]
fn controller_mutation_table() {
    struct Case {
        desc: &'static str,
        svc: Service,
        want: &'static [&'static str],
        event: Option<(&'static str, &'static str)>,
    }
    let lbip = |mut s: Service, ip: &str| {
        s.load_balancer_ip = ip.into();
        s
    };
    let status = |mut s: Service, ips: &[&str]| {
        s.ingress = strs(ips);
        s
    };
    let cases = vec![
        Case { desc: "simple LoadBalancer", svc: v4("a"), want: &["1.2.3.0"], event: Some(("IPAllocated", "1.2.3.0")) },
        Case { desc: "request specific IP", svc: lbip(v4("a"), "1.2.3.1"), want: &["1.2.3.1"], event: None },
        Case {
            desc: "request specific IP via annotation",
            svc: with_ann(v4("a"), ANN_LB_IPS, "1.2.3.1"),
            want: &["1.2.3.1"],
            event: None,
        },
        Case {
            desc: "request specific IP via deprecated annotation",
            svc: with_ann(v4("a"), "metallb.universe.tf/loadBalancerIPs", "1.2.3.7"),
            want: &["1.2.3.7"],
            event: None,
        },
        Case {
            desc: "both spec.loadBalancerIP and annotation",
            svc: with_ann(lbip(v4("a"), "1.2.3.1"), ANN_LB_IPS, "1.2.3.1"),
            want: &[],
            event: Some(("AllocationFailed", "can not have both")),
        },
        Case {
            desc: "invalid IP",
            svc: lbip(v4("a"), "please sir"),
            want: &[],
            event: Some(("AllocationFailed", "invalid spec.loadBalancerIP")),
        },
        Case {
            desc: "invalid IP via annotation",
            svc: with_ann(v4("a"), ANN_LB_IPS, "1.2.3.1,nope"),
            want: &[],
            event: Some(("AllocationFailed", "invalid metallb.io/loadBalancerIPs")),
        },
        Case {
            desc: "two IPs of one family",
            svc: with_ann(v4("a"), ANN_LB_IPS, "1.2.3.1,1.2.3.2"),
            want: &[],
            event: Some(("AllocationFailed", "same address family")),
        },
        Case {
            desc: "infeasible IP",
            svc: lbip(v4("a"), "4.3.2.1"),
            want: &[],
            event: Some(("AllocationFailed", "not allowed in config")),
        },
        Case {
            desc: "IP and pool annotation disagree",
            svc: with_ann(lbip(v4("a"), "1.2.3.1"), ANN_ADDRESS_POOL, "pool2"),
            want: &[],
            event: Some(("AllocationFailed", "not compatible with requested address pool pool2")),
        },
        Case {
            desc: "specific pool",
            svc: with_ann(v4("a"), ANN_ADDRESS_POOL, "pool2"),
            want: &["3.4.5.6"],
            event: None,
        },
        Case {
            desc: "specific pool, deprecated spelling",
            svc: with_ann(v4("a"), "metallb.universe.tf/address-pool", "pool2"),
            want: &["3.4.5.6"],
            event: None,
        },
        Case {
            desc: "switch to a different pool",
            svc: status(with_ann(v4("a"), ANN_ADDRESS_POOL, "pool2"), &["1.2.3.0"]),
            want: &["3.4.5.6"],
            event: None,
        },
        Case {
            desc: "unknown pool",
            svc: with_ann(v4("a"), ANN_ADDRESS_POOL, "nosuchpool"),
            want: &[],
            event: Some(("AllocationFailed", "unknown pool")),
        },
        Case {
            desc: "invalid IP assigned is replaced",
            svc: status(v4("a"), &["2.3.4.5"]),
            want: &["1.2.3.0"],
            event: Some(("ClearAssignment", "not allowed by config")),
        },
        Case {
            desc: "hostname ingress is replaced",
            svc: status(v4("a"), &["", "10.10.10.10"]),
            want: &["1.2.3.0"],
            event: None,
        },
        Case { desc: "valid assigned IP is kept", svc: status(v4("a"), &["1.2.3.9"]), want: &["1.2.3.9"], event: None },
        Case {
            desc: "former LoadBalancer, now NodePort",
            svc: {
                let mut s = status(v4("a"), &["1.2.3.0"]);
                s.type_ = "NodePort".into();
                s
            },
            want: &[],
            event: Some(("ClearedIPs", "1.2.3.0")),
        },
        Case { desc: "no cluster IP", svc: svc("a", &[]), want: &[], event: None },
        Case {
            desc: "request IPv4 for an IPv6 Service",
            svc: lbip(svc("a", &["fd00::1"]), "1.2.3.1"),
            want: &[],
            event: Some(("AllocationFailed", "does not match the ipFamily")),
        },
        Case {
            desc: "wrong family assigned is replaced",
            svc: status(svc("a", &["fd00::1"]), &["1.2.3.0"]),
            want: &[],
            event: Some(("AllocationFailed", "no available IPs")),
        },
    ];
    for c in cases {
        let mut p2 = pool("pool2", &["3.4.5.6/32"]);
        p2.auto_assign = false;
        let mut w = World::new(vec![pool("pool1", &["1.2.3.0/24"]), p2]);
        w.add(c.svc.clone());
        w.run();
        assert_eq!(w.ips("a"), strs(c.want), "{}", c.desc);
        if let Some((r, m)) = c.event {
            assert!(w.has_event("a", r, m), "{}: want event {r} {m:?}, got {:?}", c.desc, w.last.events);
        }
    }
}

#[test]
fn loadbalancer_class() {
    let mut classed = v4("classed");
    classed.load_balancer_class = Some("example.com/lb".into());
    let mut w = World::new(vec![pool("p", &["1.2.3.0/24"])]);
    w.add(v4("plain")).add(classed);
    w.run();
    assert_eq!(w.ips("plain"), strs(&["1.2.3.0"]));
    assert!(w.ips("classed").is_empty(), "another controller's Service is not touched");
    w.input.lb_class = Some("example.com/lb".into());
    w.run();
    assert_eq!(w.ips("classed"), strs(&["1.2.3.0"]), "plain no longer ours, its IP is not registered");
    assert_eq!(w.ips("plain"), strs(&["1.2.3.0"]), "and not cleared either");
}

#[test]
fn avoid_buggy_ips() {
    let mut p = pool("p", &["10.0.0.254-10.0.1.1"]);
    p.avoid_buggy_ips = true;
    let mut w = World::new(vec![p]);
    w.add(with_ann(v4("s0"), ANN_LB_IPS, "10.0.0.255"));
    w.add(v4("s1")).add(v4("s2")).add(v4("s3"));
    w.run();
    assert!(w.has_event("s0", "AllocationFailed", "not allowed in config"));
    assert_eq!(w.ips("s1"), strs(&["10.0.0.254"]));
    assert_eq!(w.ips("s2"), strs(&["10.0.1.1"]));
    assert!(w.ips("s3").is_empty());
    assert_eq!(w.last.pools["p"], PoolStatus { assigned_ipv4: 2, available_ipv4: 0, ..Default::default() });
}

/// allocator_test TestAssignment's sharing steps.
#[test]
fn sharing_rules() {
    let share = |s: Service, k: &str| with_ann(s, ANN_ALLOW_SHARED_IP, k);
    let local = |mut s: Service, app: &str| {
        s.external_traffic_policy_local = true;
        s.selector.insert("app".into(), app.into());
        s
    };
    struct Case {
        desc: &'static str,
        second: Service,
        same_ip: bool,
        why: &'static str,
    }
    let first = || share(ports(v4("first"), &[("TCP", 80)]), "k");
    let want = |s: Service| with_ann(s, ANN_LB_IPS, "1.2.3.0");
    let cases = vec![
        Case {
            desc: "same key, other port",
            second: want(share(ports(v4("b"), &[("TCP", 443)]), "k")),
            same_ip: true,
            why: "",
        },
        Case {
            desc: "same key, same port other protocol",
            second: want(share(ports(v4("b"), &[("UDP", 80)]), "k")),
            same_ip: true,
            why: "",
        },
        Case {
            desc: "port conflict",
            second: want(share(ports(v4("b"), &[("TCP", 80)]), "k")),
            same_ip: false,
            why: "port TCP/80 is already in use",
        },
        Case {
            desc: "wrong sharing key",
            second: want(share(ports(v4("b"), &[("TCP", 443)]), "other")),
            same_ip: false,
            why: "does not match existing sharing key",
        },
        Case {
            desc: "no sharing key",
            second: want(ports(v4("b"), &[("TCP", 443)])),
            same_ip: false,
            why: "new service does not allow sharing",
        },
        Case {
            desc: "wrong backend key (Local vs Cluster)",
            second: want(local(share(ports(v4("b"), &[("TCP", 443)]), "k"), "x")),
            same_ip: false,
            why: "backend key",
        },
    ];
    for c in cases {
        let mut w = World::new(vec![pool("p", &["1.2.3.0/30"])]);
        w.add(first()).add(c.second);
        w.run();
        assert_eq!(w.ips("first"), strs(&["1.2.3.0"]), "{}", c.desc);
        if c.same_ip {
            assert_eq!(w.ips("b"), strs(&["1.2.3.0"]), "{}", c.desc);
            assert_eq!(w.last.pools["p"].assigned_ipv4, 1, "{}: a shared IP counts once", c.desc);
        } else {
            assert!(w.ips("b").is_empty(), "{}", c.desc);
            assert!(w.has_event("b", "AllocationFailed", c.why), "{}: {:?}", c.desc, w.last.events);
            // Without the explicit request it gets another address.
            w.get("b").annotations.remove(ANN_LB_IPS);
            w.run();
            assert_eq!(w.ips("b"), strs(&["1.2.3.1"]), "{}", c.desc);
        }
    }
    // Local Services selecting the same pods may share.
    let mut w = World::new(vec![pool("p", &["1.2.3.0/30"])]);
    w.add(local(share(ports(v4("a"), &[("TCP", 80)]), "k"), "x"));
    w.add(local(share(ports(v4("b"), &[("TCP", 81)]), "k"), "x"));
    w.run();
    assert_eq!(w.ips("b"), w.ips("a"));
    // Auto-allocation shares too: both get the first IP.
    let mut w = World::new(vec![pool("p", &["1.2.3.0/30"])]);
    w.add(share(ports(v4("a"), &[("TCP", 80)]), "k"));
    w.add(share(ports(v4("b"), &[("TCP", 80)]), "k"));
    w.add(share(ports(v4("c"), &[("TCP", 81)]), "k"));
    w.run();
    assert_eq!(w.ips("a"), strs(&["1.2.3.0"]));
    assert_eq!(w.ips("b"), strs(&["1.2.3.1"]), "port conflict moves b on");
    assert_eq!(w.ips("c"), strs(&["1.2.3.0"]));
    // s3 changes its sharing key while another Service is on the IP: it must move.
    w.get("c").annotations.insert(ANN_ALLOW_SHARED_IP.into(), "other".into());
    w.run();
    assert!(w.has_event("c", "ClearAssignment", "does not match existing sharing key"));
    assert_eq!(w.ips("c"), strs(&["1.2.3.2"]));
    assert_eq!(w.ips("a"), strs(&["1.2.3.0"]));
}

#[test]
fn dual_stack() {
    let dual = |name: &str, policy: &str, first_v6: bool| {
        let mut s = if first_v6 { svc(name, &["fd00::1", "10.96.0.1"]) } else { svc(name, &["10.96.0.1", "fd00::1"]) };
        s.ip_family_policy = Some(policy.into());
        s
    };
    // One pool with both families.
    let mut w = World::new(vec![pool("p", &["1.2.3.0/31", "1000::/127"])]);
    w.add(dual("a", "RequireDualStack", false));
    w.add(svc("b", &["fd00::2"]));
    w.add(dual("c", "PreferDualStack", false));
    w.run();
    assert_eq!(w.ips("a"), strs(&["1.2.3.0", "1000::"]));
    assert_eq!(w.ips("b"), strs(&["1000::1"]));
    assert_eq!(w.ips("c"), strs(&["1.2.3.1"]), "PreferDualStack takes what is left");
    assert_eq!(
        w.last.pools["p"],
        PoolStatus { assigned_ipv4: 2, assigned_ipv6: 2, available_ipv4: 0, available_ipv6: 0 }
    );
    // b leaves: c gets its second family (AllocateFromPoolForAdditionalFamily).
    w.delete("b");
    w.run();
    assert_eq!(w.ips("c"), strs(&["1.2.3.1", "1000::1"]));
    assert!(w.has_event("c", "IPAllocated", "additional"));

    // Families in separate pools: RequireDualStack fails, PreferDualStack gets the primary family.
    let mut w = World::new(vec![pool("p4", &["1.2.3.0/24"]), pool("p6", &["1000::/64"])]);
    w.add(dual("a", "RequireDualStack", false));
    w.add(dual("b", "PreferDualStack", true));
    w.add(dual("c", "PreferDualStack", false));
    w.run();
    assert!(w.ips("a").is_empty());
    assert!(w.has_event("a", "AllocationFailed", "no available IPs"));
    assert_eq!(w.ips("b"), strs(&["1000::"]));
    assert_eq!(w.ips("c"), strs(&["1.2.3.0"]));

    // RequireDualStack with a single cluster IP.
    let mut w = World::new(vec![pool("p", &["1.2.3.0/24", "1000::/64"])]);
    let mut s = v4("a");
    s.ip_family_policy = Some("RequireDualStack".into());
    w.add(s);
    w.run();
    assert!(w.ips("a").is_empty());
    assert!(w.has_event("a", "not enough clusterips", "requires dual stack"));

    // Requested dual-stack IPs, and a requested single IP for a dual-stack Service.
    let mut w = World::new(vec![pool("p", &["1.2.3.0/24", "1000::/64"])]);
    w.add(with_ann(dual("a", "RequireDualStack", false), ANN_LB_IPS, "1.2.3.9,1000::9"));
    w.add(with_ann(dual("b", "RequireDualStack", false), ANN_LB_IPS, "1.2.3.8"));
    w.run();
    assert_eq!(w.ips("a"), strs(&["1.2.3.9", "1000::9"]));
    assert!(w.has_event("b", "AllocationFailed", "does not match the ipFamily"));

    // An IPv6 pool big enough to saturate the count.
    let mut w = World::new(vec![pool("p", &["1000::/64"])]);
    w.add(svc("a", &["fd00::1"]));
    w.run();
    assert_eq!(w.last.pools["p"].assigned_ipv6, 1);
    assert_eq!(w.last.pools["p"].available_ipv6, i64::MAX);
}

#[test]
fn service_allocation_priorities_and_selectors() {
    let sa = |prio: i32, ns: &[&str], nssel: Vec<Selector>, svcsel: Vec<Selector>| ServiceAllocation {
        priority: prio,
        namespaces: ns.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        namespace_selectors: nssel,
        service_selectors: svcsel,
    };
    let with_sa = |mut p: Pool, s: ServiceAllocation| {
        p.service_allocation = Some(s);
        p
    };
    let in_ns = |mut s: Service, ns: &str| {
        s.namespace = ns.into();
        s
    };
    let labelled = |mut s: Service, k: &str, v: &str| {
        s.labels.insert(k.into(), v.into());
        s
    };
    let pools = vec![
        pool("default", &["10.0.0.0/24"]),
        with_sa(pool("ns-low", &["10.1.0.0/32"]), sa(20, &["team"], vec![], vec![])),
        with_sa(pool("ns-high", &["10.2.0.0/32"]), sa(10, &["team"], vec![], vec![])),
        with_sa(pool("ns-noprio", &["10.3.0.0/32"]), sa(0, &["team"], vec![], vec![])),
        with_sa(pool("by-label", &["10.4.0.0/32"]), sa(0, &[], vec![], vec![sel(&[("tier", "gold")])])),
        with_sa(pool("by-nslabel", &["10.5.0.0/32"]), sa(5, &[], vec![sel(&[("env", "prod")])], vec![])),
        with_sa(pool("ns-and-label", &["10.6.0.0/32"]), sa(1, &["team"], vec![], vec![sel(&[("tier", "silver")])])),
    ];
    let mut w = World::new(pools);
    w.input.namespaces.insert("prod-ns".into(), [("env".to_string(), "prod".to_string())].into());
    w.add(labelled(in_ns(v4("silver-team"), "team"), "tier", "silver")); // priority 1 wins
    w.add(in_ns(v4("t1"), "team")); // then ns-high (10), ns-low (20), ns-noprio (0)
    w.add(in_ns(v4("t2"), "team"));
    w.add(in_ns(v4("t3"), "team"));
    w.add(in_ns(v4("t4"), "team")); // every pinned pool full: falls back to the default pool
    w.add(v4("other")); // not in team: the default pool only
    w.add(labelled(v4("gold"), "tier", "gold"));
    w.add(in_ns(v4("p"), "prod-ns"));
    w.add(labelled(v4("silver-elsewhere"), "tier", "silver")); // ns-and-label needs both
    w.run();
    let want = [
        ("silver-team", "ns-and-label", "10.6.0.0"),
        ("t1", "ns-high", "10.2.0.0"),
        ("t2", "ns-low", "10.1.0.0"),
        ("t3", "ns-noprio", "10.3.0.0"),
        ("t4", "default", "10.0.0.0"),
        ("other", "default", "10.0.0.1"),
        ("gold", "by-label", "10.4.0.0"),
        ("p", "by-nslabel", "10.5.0.0"),
        ("silver-elsewhere", "default", "10.0.0.2"),
    ];
    for (n, p, ip) in want {
        assert_eq!((w.pool_of(n).as_deref(), w.ips(n)), (Some(p), strs(&[ip])), "{n}");
    }
    // A pinned pool is usable by an explicit request only from a compatible Service.
    w.delete("t2");
    w.add(with_ann(v4("intruder"), ANN_ADDRESS_POOL, "ns-low"));
    w.run();
    assert!(w.has_event("intruder", "AllocationFailed", "not compatible"));
}

#[test]
fn auto_assign_false_only_on_request() {
    let mut p = pool("manual", &["10.9.0.0/32"]);
    p.auto_assign = false;
    let mut w = World::new(vec![p]);
    w.add(v4("a")).add(with_ann(v4("b"), ANN_ADDRESS_POOL, "manual"));
    w.run();
    assert!(w.ips("a").is_empty());
    assert_eq!(w.ips("b"), strs(&["10.9.0.0"]));
}

/// A restart (or a new leader) rebuilds from status before allocating: a Service without an
/// address never takes one already in status, even if it is older or sorts first.
#[test]
fn restart_rebuild_no_reshuffle() {
    let mut w = World::new(vec![pool("p", &["1.2.3.0/29"])]);
    let mut early = v4("aaa-new");
    early.created = -5; // older than everything, no status yet
    w.input.services.push(early);
    for (i, ip) in ["1.2.3.5", "1.2.3.0", "1.2.3.2"].iter().enumerate() {
        let mut s = v4(&format!("s{i}"));
        s.ingress = strs(&[ip]);
        s.created = i as i64;
        s.annotations.insert(ANN_ALLOCATED_FROM_POOL.into(), "p".into());
        w.input.services.push(s);
    }
    w.run();
    assert_eq!(w.ips("s0"), strs(&["1.2.3.5"]));
    assert_eq!(w.ips("s1"), strs(&["1.2.3.0"]));
    assert_eq!(w.ips("s2"), strs(&["1.2.3.2"]));
    assert_eq!(w.ips("aaa-new"), strs(&["1.2.3.1"]));
    assert_eq!(w.last.updates.len(), 1, "only the new Service is written: {:?}", w.last.updates);
    assert_eq!(w.last.pools["p"].assigned_ipv4, 4);
    assert_eq!(w.last.pools["p"].available_ipv4, 4);
}

/// Two Services claim one IP in status (for example written by two leaders): the older one keeps
/// it, the other is told why and moved.
#[test]
fn conflicting_status_older_keeps() {
    let mut w = World::new(vec![pool("p", &["1.2.3.0/30"])]);
    for (n, c) in [("young", 9), ("old", 1)] {
        let mut s = v4(n);
        s.ingress = strs(&["1.2.3.0"]);
        s.created = c;
        w.input.services.push(s);
    }
    w.run();
    assert_eq!(w.ips("old"), strs(&["1.2.3.0"]));
    assert_eq!(w.ips("young"), strs(&["1.2.3.1"]));
    assert!(w.has_event("young", "ClearAssignment", "also in use by default/old"));
}

/// upstream TestControllerConfig / SetPools: a pool change that takes away an address in use
/// clears it; the Service gets another address if a pool still can give one, else it is cleared.
#[test]
fn pool_change_removing_ips_in_use() {
    let mut w = World::new(vec![pool("p", &["1.2.3.0/24"]), pool("q", &["5.5.5.0/24"])]);
    w.add(with_ann(v4("a"), ANN_LB_IPS, "1.2.3.7")).add(v4("b"));
    w.run();
    assert_eq!(w.ips("b"), strs(&["1.2.3.0"]));
    w.input.pools[0] = pool("p", &["1.2.3.0/30"]);
    w.run();
    assert_eq!(w.ips("b"), strs(&["1.2.3.0"]), "still in the shrunk pool: kept");
    assert!(w.ips("a").is_empty(), "requested IP no longer in any pool");
    assert!(w.has_event("a", "ClearAssignment", "not allowed by config"));
    assert!(w.has_event("a", "AllocationFailed", "not allowed in config"));
    assert!(w.has_event("a", "ClearedIPs", "1.2.3.7"));
    w.input.pools.remove(0);
    w.run();
    assert_eq!((w.ips("b"), w.pool_of("b")), (strs(&["5.5.5.0"]), Some("q".into())));
    w.input.pools.clear();
    w.run();
    assert!(w.ips("b").is_empty());
    assert!(w.has_event("b", "ClearedIPs", "no IPAddressPool"));
}

mod props {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    struct Spec {
        ns: u8,
        share: Option<u8>,
        port: u8,
        local: bool,
        family: u8,
        policy: u8,
        request: Option<u8>,
        pool_ann: Option<u8>,
        lb: bool,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            0u8..3,
            proptest::option::of(0u8..2),
            0u8..3,
            any::<bool>(),
            0u8..3,
            0u8..3,
            proptest::option::of(0u8..8),
            proptest::option::of(0u8..4),
            proptest::bool::weighted(0.9),
        )
            .prop_map(|(ns, share, port, local, family, policy, request, pool_ann, lb)| Spec {
                ns,
                share,
                port,
                local,
                family,
                policy,
                request,
                pool_ann,
                lb,
            })
    }

    fn pools() -> Vec<Pool> {
        let mut a = pool("a", &["10.0.0.0/30", "fd00::/126"]);
        a.avoid_buggy_ips = true;
        let mut b = pool("b", &["10.0.1.0-10.0.1.2"]);
        b.service_allocation =
            Some(ServiceAllocation { priority: 1, namespaces: ["ns1".to_string()].into(), ..Default::default() });
        let mut c = pool("c", &["fd00:1::/127"]);
        c.auto_assign = false;
        vec![a, b, c, pool("d", &["10.0.2.0/31"])]
    }

    fn build(i: usize, s: &Spec) -> Service {
        let cips: &[&str] = match s.family {
            0 => &["10.96.0.1"],
            1 => &["fd96::1"],
            _ => &["10.96.0.1", "fd96::1"],
        };
        let mut v = svc(&format!("s{i}"), cips);
        v.namespace = format!("ns{}", s.ns);
        v.ip_family_policy =
            [None, Some("PreferDualStack".into()), Some("RequireDualStack".into())][s.policy as usize].clone();
        v.ports = vec![Port { proto: "TCP".into(), port: s.port as i32 }];
        v.external_traffic_policy_local = s.local;
        if s.local {
            v.selector.insert("app".into(), "x".into());
        }
        if let Some(k) = s.share {
            v.annotations.insert(ANN_ALLOW_SHARED_IP.into(), format!("k{k}"));
        }
        if let Some(r) = s.request {
            let all =
                ["10.0.0.1", "10.0.0.0", "10.0.1.1", "fd00::2", "fd00:1::1", "10.0.2.1", "10.0.0.1,fd00::1", "9.9.9.9"];
            v.annotations.insert(ANN_LB_IPS.into(), all[r as usize].into());
        }
        if let Some(p) = s.pool_ann {
            v.annotations.insert(ANN_ADDRESS_POOL.into(), ["a", "b", "c", "d"][p as usize].into());
        }
        if !s.lb {
            v.type_ = "ClusterIP".into();
        }
        v.created = i as i64;
        v
    }

    fn check(input: &Input, out: &Outcome) -> Result<(), TestCaseError> {
        let by_key: BTreeMap<String, &Service> = input.services.iter().map(|s| (s.key(), s)).collect();
        let mut on_ip: BTreeMap<IpAddr, Vec<&Service>> = BTreeMap::new();
        for (k, a) in &out.assignments {
            let s = by_key[k];
            prop_assert_eq!(&s.type_, "LoadBalancer");
            let p = input.pools.iter().find(|p| p.name == a.pool).unwrap();
            let ns_labels = BTreeMap::new();
            prop_assert!(p.compatible(&s.namespace, &ns_labels, &s.labels), "{} in {}", k, p.name);
            for ip in &a.ips {
                prop_assert!(p.contains(*ip), "{} not in pool {}", ip, p.name);
                on_ip.entry(*ip).or_default().push(s);
            }
        }
        for (ip, ss) in on_ip {
            for (i, x) in ss.iter().enumerate() {
                for y in &ss[i + 1..] {
                    let kx = x.annotations.get(ANN_ALLOW_SHARED_IP);
                    prop_assert!(
                        kx.is_some() && kx == y.annotations.get(ANN_ALLOW_SHARED_IP),
                        "{} shared without key",
                        ip
                    );
                    prop_assert_eq!(x.external_traffic_policy_local, y.external_traffic_policy_local);
                    prop_assert!(x.ports.iter().all(|p| !y.ports.contains(p)), "{} port clash", ip);
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn never_double_assigned(specs in proptest::collection::vec(spec(), 1..14), dels in proptest::collection::vec(0usize..14, 0..4), stale in proptest::collection::vec((0usize..14, 0u8..8), 0..4)) {
            let mut input = Input { pools: pools(), ..Default::default() };
            input.services = specs.iter().enumerate().map(|(i, s)| build(i, s)).collect();
            // Arbitrary (possibly conflicting or foreign) addresses already in status.
            let junk = ["10.0.0.1", "10.0.0.1", "10.0.1.0", "fd00::1", "10.0.2.0", "1.1.1.1", "10.0.0.0", "fd00:1::"];
            for (i, j) in stale {
                if let Some(s) = input.services.get_mut(i) { s.ingress = vec![junk[j as usize].to_string()]; }
            }
            for round in 0..3 {
                let out = reconcile(&input);
                check(&input, &out)?;
                for u in &out.updates {
                    let s = input.services.iter_mut().find(|s| s.key() == u.service).unwrap();
                    s.ingress = u.ingress.iter().map(|i| i.to_string()).collect();
                }
                if round == 1 {
                    for d in &dels { if *d < input.services.len() { input.services.remove(*d); } }
                }
            }
            // Converged: reconciling again changes nothing.
            let out = reconcile(&input);
            check(&input, &out)?;
            for u in &out.updates {
                let s = input.services.iter_mut().find(|s| s.key() == u.service).unwrap();
                s.ingress = u.ingress.iter().map(|i| i.to_string()).collect();
            }
            let again = reconcile(&input);
            let ips: Vec<_> = again.updates.iter().filter(|u| {
                let s = input.services.iter().find(|s| s.key() == u.service).unwrap();
                s.ingress != u.ingress.iter().map(|i| i.to_string()).collect::<Vec<_>>()
            }).collect();
            prop_assert!(ips.is_empty(), "status keeps changing: {:?}", ips);
        }
    }
}
