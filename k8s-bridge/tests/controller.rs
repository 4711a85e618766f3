//! `k8s-bridge controller` against the fake API server: a Service created with no IP gets one
//! from the right pool (status, annotation, pool status), deleting it frees the IP.
use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn service(ns: &str, name: &str, cluster_ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"type": "LoadBalancer", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                 "ports": [{"port": 80, "protocol": "TCP"}], "selector": {"app": name}}})
}

fn pool(name: &str, addrs: &[&str], extra: Value) -> Value {
    let mut spec = json!({"addresses": addrs});
    if let Value::Object(m) = extra {
        spec.as_object_mut().unwrap().extend(m);
    }
    json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": name, "namespace": "metallb-system"}, "spec": spec})
}

async fn wait_for<T, F: FnMut() -> Fut, Fut: std::future::Future<Output = Option<T>>>(what: &str, mut f: F) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn ingress(api: &Api<Service>, name: &str) -> Option<(Vec<String>, Option<String>)> {
    let s = api.get_opt(name).await.ok()??;
    let ips: Vec<String> = s
        .status
        .and_then(|st| st.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip)
        .collect();
    let pool = s.metadata.annotations.unwrap_or_default().get("metallb.io/ip-allocated-from-pool").cloned();
    Some((ips, pool))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_allocates_and_frees() {
    let server = FakeApiServer::start().await;
    let crd = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/base/crds/ipaddresspools.yaml"))
        .unwrap()
        + "\n---\n"
        + &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/base/crds/configurationstates.yaml"
        ))
        .unwrap();
    for d in serde_yaml::Deserializer::from_str(&crd) {
        // deploy/base ships the CRD as MetalLB v0.15 does: status is a subresource with the counts.
        let v: Value = serde::Deserialize::deserialize(d).unwrap();
        if !v.is_null() {
            server.apply(v);
        }
    }
    server.apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}));
    server.apply(pool("general", &["192.0.2.10/32"], json!({})));
    server.apply(pool(
        "team-pool",
        &["198.51.100.0-198.51.100.3"],
        json!({"avoidBuggyIPs": true, "serviceAllocation": {"priority": 1, "namespaces": ["team"]}}),
    ));

    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let settings = k8s_bridge::controller::ControllerSettings {
        namespace: "metallb-system".into(),
        lb_class: None,
        debounce: Duration::from_millis(20),
        pod: None,
    };
    let ctl = tokio::spawn(k8s_bridge::controller::run(client.clone(), settings, None));

    server.apply(service("default", "web", "10.96.0.10"));
    server.apply(service("team", "api", "10.96.0.11"));
    let default_api = Api::<Service>::namespaced(client.clone(), "default");
    let team_api = Api::<Service>::namespaced(client.clone(), "team");
    let web =
        wait_for("web's IP", || async { ingress(&default_api, "web").await.filter(|(ips, _)| !ips.is_empty()) }).await;
    assert_eq!(web, (vec!["192.0.2.10".to_string()], Some("general".to_string())));
    let api =
        wait_for("api's IP", || async { ingress(&team_api, "api").await.filter(|(ips, _)| !ips.is_empty()) }).await;
    assert_eq!(api, (vec!["198.51.100.1".to_string()], Some("team-pool".to_string())), ".0 avoided, team pool first");

    // The general pool is full: a second default Service waits, with an Event saying why.
    server.apply(service("default", "web2", "10.96.0.12"));
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), "default");
    wait_for("AllocationFailed event", || async {
        let l = events.list(&Default::default()).await.ok()?;
        l.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("AllocationFailed") && e.involved_object.name.as_deref() == Some("web2")
            })
            .then_some(())
    })
    .await;
    assert_eq!(ingress(&default_api, "web2").await.unwrap().0, Vec::<String>::new());

    // Pool status as v0.15 writes it: 4 addresses, .0 avoided, one assigned.
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metallb.io", "v1beta1", "IPAddressPool"),
        "ipaddresspools",
    );
    let pools = Api::<DynamicObject>::namespaced_with(client.clone(), "metallb-system", &ar);
    wait_for("team-pool status", || async {
        let p = pools.get("team-pool").await.ok()?;
        let st = p.data.get("status")?;
        (st["assignedIPv4"] == 1 && st["availableIPv4"] == 2 && st["assignedIPv6"] == 0).then_some(())
    })
    .await;

    // Deleting web frees its IP: web2 gets it.
    server.delete("v1", "Service", Some("default"), "web").unwrap();
    let web2 =
        wait_for("web2's IP", || async { ingress(&default_api, "web2").await.filter(|(ips, _)| !ips.is_empty()) })
            .await;
    assert_eq!(web2.0, vec!["192.0.2.10".to_string()]);

    // An overlapping pool: refused as a whole as MetalLB refuses it; the last good pools stay (web2
    // keeps its IP), a Warning on the pool, the `controller` ConfigurationState Invalid; fixed: Valid.
    let states = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "metallb-system",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("metallb.io", "v1beta1", "ConfigurationState"),
            "configurationstates",
        ),
    );
    let state = || async {
        let o = states.get_opt("controller").await.ok()??;
        Some((o.data["status"]["result"].as_str()?.to_string(), o.data["status"]["errorSummary"].clone()))
    };
    wait_for("controller ConfigurationState Valid", || async { state().await.filter(|(r, _)| r == "Valid") }).await;
    server.apply(pool("zz-overlap", &["192.0.2.8/29"], json!({})));
    let pool_events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), "metallb-system");
    wait_for("InvalidConfig on zz-overlap", || async {
        let l = pool_events.list(&Default::default()).await.ok()?;
        l.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("InvalidConfig")
                    && e.involved_object.name.as_deref() == Some("zz-overlap")
                    && e.message.as_deref().is_some_and(|m| m.contains("general"))
            })
            .then_some(())
    })
    .await;
    let (_, summary) =
        wait_for("controller ConfigurationState Invalid", || async { state().await.filter(|(r, _)| r == "Invalid") })
            .await;
    assert!(summary.as_str().is_some_and(|s| s.contains("zz-overlap")), "{summary}");
    assert_eq!(ingress(&default_api, "web2").await.unwrap().0, vec!["192.0.2.10".to_string()]);
    server.delete("metallb.io/v1beta1", "IPAddressPool", Some("metallb-system"), "zz-overlap").unwrap();
    wait_for("controller ConfigurationState Valid again", || async { state().await.filter(|(r, _)| r == "Valid") })
        .await;

    // type change away from LoadBalancer releases.
    server.patch("v1", "Service", Some("team"), "api", json!({"spec": {"type": "ClusterIP"}})).unwrap();
    wait_for("api cleared", || async {
        ingress(&team_api, "api").await.filter(|(ips, p)| ips.is_empty() && p.is_none())
    })
    .await;
    assert!(!ctl.is_finished(), "controller exited: {:?}", ctl.await);
    // As MetalLB's controller: the gossip Secret exists (created, 16 random bytes in base64).
    let secrets = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), "metallb-system");
    let key = wait_for("the memberlist Secret", || async {
        secrets.get_opt("memberlist").await.ok()??.data?.get("secretkey").map(|k| k.0.clone())
    })
    .await;
    assert_eq!(key.len(), 22, "{key:?}");

    // Restart: while no controller runs, a new Service appears (sorting before web2 by name).
    // The new controller rebuilds from status first: web2 keeps its IP, the newcomer waits.
    ctl.abort();
    server.apply(service("default", "aaa", "10.96.0.14"));
    let settings = k8s_bridge::controller::ControllerSettings {
        namespace: "metallb-system".into(),
        lb_class: None,
        debounce: Duration::from_millis(20),
        pod: None,
    };
    let ctl2 = tokio::spawn(k8s_bridge::controller::run(client.clone(), settings, None));
    wait_for("AllocationFailed event for aaa", || async {
        let l = events.list(&Default::default()).await.ok()?;
        l.items
            .iter()
            .any(|e| {
                e.reason.as_deref() == Some("AllocationFailed") && e.involved_object.name.as_deref() == Some("aaa")
            })
            .then_some(())
    })
    .await;
    assert_eq!(ingress(&default_api, "web2").await.unwrap().0, vec!["192.0.2.10".to_string()]);
    assert_eq!(ingress(&default_api, "aaa").await.unwrap().0, Vec::<String>::new());
    ctl2.abort();
}

/// Leader election through a Lease (client-go's rules, short timings): one of two candidates leads;
/// a leader that stops renewing (killed) is replaced only after the lease duration, by the other's
/// clock; a leader that stops cleanly gives the Lease up and the standby leads within a retry period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_through_a_lease() {
    use k8s_bridge::lease::{self, LeaseConfig};
    use k8s_openapi::api::coordination::v1::Lease;
    let server = FakeApiServer::start().await;
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let api = Api::<Lease>::namespaced(client.clone(), "metallb-system");
    let cfg = |id: &str| LeaseConfig {
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(500),
        ..LeaseConfig::new("metallb-system", "metallb-controller", id)
    };
    let start = |id: &str| {
        let (tx, rx) = tokio::sync::watch::channel(false);
        (tokio::spawn(lease::run(api.clone(), cfg(id), tx)), rx)
    };
    let (a, ra) = start("a");
    let (b, rb) = start("b");
    let leader = wait_for("a leader", || async {
        match (*ra.borrow(), *rb.borrow()) {
            (true, false) => Some("a"),
            (false, true) => Some("b"),
            (false, false) => None,
            (true, true) => panic!("two leaders"),
        }
    })
    .await;
    let holder = || async { api.get("metallb-controller").await.unwrap().spec.unwrap().holder_identity };
    assert_eq!(holder().await.as_deref(), Some(leader));
    // Stays one leader over several renewals.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_ne!(*ra.borrow(), *rb.borrow(), "exactly one leader");
    }
    // The leader is killed (its task stops; the Lease is not given up): the other waits it out.
    let (killed, (other, other_rx)) = if leader == "a" { (a, (b, rb)) } else { (b, (a, ra)) };
    killed.abort();
    let t = Instant::now();
    wait_for("the standby to lead", || async { (*other_rx.borrow()).then_some(()) }).await;
    let took = t.elapsed();
    assert!(took >= Duration::from_secs(2), "took over after {took:?}, before the lease could expire");
    let new_leader = if leader == "a" { "b" } else { "a" };
    assert_eq!(holder().await.as_deref(), Some(new_leader));
    let l = api.get("metallb-controller").await.unwrap().spec.unwrap();
    assert_eq!(l.lease_transitions, Some(1));
    // A clean stop gives the Lease up: a new candidate leads within a couple of retry periods.
    other.abort();
    lease::release(&api, &cfg(new_leader)).await;
    assert_eq!(holder().await, None);
    let t = Instant::now();
    let (c, rc) = start("c");
    wait_for("c to lead", || async { (*rc.borrow()).then_some(()) }).await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    c.abort();
}
