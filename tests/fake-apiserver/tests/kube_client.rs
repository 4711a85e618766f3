//! A real kube::Client (kube 5) against the fake API server.

mod common;

use common::{client, crd_json, eventually, next};
use fake_apiserver::{FakeApiServer, Mode};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, ObjectReference, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::runtime::events::{Event as REvent, EventType as REventType, Recorder, Reporter};
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::ResourceExt;
use serde_json::json;
use std::time::Duration;

fn svc(name: &str, labels: serde_json::Value) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "labels": labels},
        "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}], "selector": {"app": name}}
    }))
    .unwrap()
}

fn api_err(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn services_crud_status_and_conflicts() {
    let server = FakeApiServer::start().await;
    let svcs: Api<Service> = Api::namespaced(client(&server), "default");
    let pp = PostParams::default();

    let created = svcs.create(&pp, &svc("web", json!({"app": "web"}))).await.unwrap();
    let md = &created.metadata;
    assert!(md.uid.as_ref().is_some_and(|u| u.len() == 36));
    assert!(md.creation_timestamp.is_some());
    let rv1: u64 = md.resource_version.as_ref().unwrap().parse().unwrap();
    let spec = created.spec.as_ref().unwrap();
    assert!(spec.cluster_ip.as_ref().is_some_and(|ip| ip.starts_with("10.96.")), "clusterIP allocated");
    assert!(spec.ports.as_ref().unwrap()[0].node_port.is_some(), "nodePort allocated for LoadBalancer");

    // duplicate create, missing object, missing namespace
    let e = api_err(svcs.create(&pp, &svc("web", json!({}))).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, "services \"web\" already exists");
    let e = api_err(svcs.get("nope").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (404, "NotFound", "services \"nope\" not found"));
    let other: Api<Service> = Api::namespaced(client(&server), "no-such-ns");
    let e = api_err(other.create(&pp, &svc("x", json!({}))).await.unwrap_err());
    assert_eq!((e.code, e.message.as_str()), (404, "namespaces \"no-such-ns\" not found"));
    // invalid name
    let e = api_err(svcs.create(&pp, &svc("Bad_Name", json!({}))).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));

    // get / list with selectors
    assert_eq!(svcs.get("web").await.unwrap().metadata.uid, created.metadata.uid);
    svcs.create(&pp, &svc("db", json!({"app": "db"}))).await.unwrap();
    let l = svcs.list(&ListParams::default().labels("app=web")).await.unwrap();
    assert_eq!(l.items.iter().map(|s| s.name_any()).collect::<Vec<_>>(), vec!["web"]);
    let l = svcs.list(&ListParams::default().labels("app in (web,db),app!=db")).await.unwrap();
    assert_eq!(l.items.len(), 1);
    let l = svcs.list(&ListParams::default().fields("metadata.name=db")).await.unwrap();
    assert_eq!(l.items.iter().map(|s| s.name_any()).collect::<Vec<_>>(), vec!["db"]);
    assert_eq!(l.metadata.resource_version.unwrap(), server.resource_version().to_string());
    let e = api_err(svcs.list(&ListParams::default().fields("spec.bogus=1")).await.unwrap_err());
    assert_eq!((e.code, e.message.as_str()), (400, "field label not supported: spec.bogus"));

    // merge, strategic and JSON patches on the main resource
    let p = svcs
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})))
        .await
        .unwrap();
    assert_eq!(p.labels().get("tier").map(String::as_str), Some("front"));
    assert!(p.resource_version().unwrap().parse::<u64>().unwrap() > rv1);
    let p = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ports": [{"port": 443, "name": "https"}]}})),
        )
        .await
        .unwrap();
    let ports: Vec<i32> = p.spec.as_ref().unwrap().ports.as_ref().unwrap().iter().map(|p| p.port).collect();
    assert_eq!(ports, vec![80, 443], "strategic merge patch merges ports by port");
    let p = svcs
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(json!([{"op": "remove", "path": "/spec/ports/1"}])).unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(p.spec.as_ref().unwrap().ports.as_ref().unwrap().len(), 1);

    // status: /status patches change only status; main patches never change status
    let before_spec = p.spec.clone();
    let st = svcs
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"type": "ClusterIP"}, "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10"}]}}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(st.spec, before_spec, "status update ignored the spec change");
    assert_eq!(
        st.status.as_ref().unwrap().load_balancer.as_ref().unwrap().ingress.as_ref().unwrap()[0].ip.as_deref(),
        Some("192.0.2.10")
    );
    let m = svcs
        .patch("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": null}}})))
        .await
        .unwrap();
    assert_eq!(m.status, st.status, "main-resource patch ignored the status change");

    // replace: fresh resourceVersion works, stale one is a 409 Conflict
    let mut cur = svcs.get("web").await.unwrap();
    let stale = cur.clone();
    cur.metadata.annotations = Some([("a".to_string(), "1".to_string())].into());
    let replaced = svcs.replace("web", &pp, &cur).await.unwrap();
    assert_ne!(replaced.resource_version(), stale.resource_version());
    let e = api_err(svcs.replace("web", &pp, &stale).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(e.message.contains("the object has been modified"), "{}", e.message);

    // replace_status
    let mut s2 = svcs.get_status("web").await.unwrap();
    s2.status.as_mut().unwrap().load_balancer = Some(Default::default());
    let after = svcs.replace_status("web", &pp, &s2).await.unwrap();
    assert!(after.status.unwrap().load_balancer.unwrap().ingress.is_none());

    // delete returns the object for Services; then 404
    let d = svcs.delete("web", &DeleteParams::default()).await.unwrap();
    assert_eq!(d.left().unwrap().name_any(), "web");
    let e = api_err(svcs.delete("web", &DeleteParams::default()).await.unwrap_err());
    assert_eq!(e.code, 404);
    assert!(server.get("v1", "Service", Some("default"), "web").is_none());
}

#[tokio::test]
async fn nodes_endpointslices_configmaps() {
    let server = FakeApiServer::start().await;
    let c = client(&server);
    let nodes: Api<Node> = Api::all(c.clone());
    let pp = PostParams::default();
    let n: Node = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-a", "labels": {"kubernetes.io/hostname": "node-a"}}}))
    .unwrap();
    let n = nodes.create(&pp, &n).await.unwrap();
    assert!(n.metadata.namespace.is_none(), "cluster-scoped");
    let st = nodes
        .patch_status(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.1"}]}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().addresses.unwrap()[0].address, "192.0.2.1");
    assert_eq!(
        nodes.list(&ListParams::default().labels("kubernetes.io/hostname=node-a")).await.unwrap().items.len(),
        1
    );
    let cordoned = nodes
        .patch("node-a", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"unschedulable": true}})))
        .await
        .unwrap();
    assert_eq!(cordoned.spec.unwrap().unschedulable, Some(true));
    assert_eq!(nodes.list(&ListParams::default().fields("spec.unschedulable=true")).await.unwrap().items.len(), 1);
    // metadata-only lists (kube's list_metadata / metadata_watcher)
    let metas = nodes.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(metas.items.len(), 1);
    assert_eq!(metas.items[0].metadata.name.as_deref(), Some("node-a"));
    assert_eq!(metas.items[0].types.as_ref().unwrap().kind, "PartialObjectMetadata");
    // Node deletion answers a Status
    assert!(nodes.delete("node-a", &DeleteParams::default()).await.unwrap().right().unwrap().is_success());

    let slices: Api<EndpointSlice> = Api::namespaced(c.clone(), "default");
    for (name, svc) in [("web-abc", "web"), ("db-xyz", "db")] {
        let es: EndpointSlice = serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "nodeName": "node-a"}],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
        }))
        .unwrap();
        slices.create(&pp, &es).await.unwrap();
    }
    let l = slices.list(&ListParams::default().labels("kubernetes.io/service-name=web")).await.unwrap();
    assert_eq!(l.items.len(), 1);
    assert_eq!(l.items[0].endpoints[0].node_name.as_deref(), Some("node-a"));
    let all: Api<EndpointSlice> = Api::all(c.clone());
    assert_eq!(all.list(&ListParams::default()).await.unwrap().items.len(), 2);

    let cms: Api<ConfigMap> = Api::namespaced(c, "metallb-system");
    let cm: ConfigMap = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg"}, "data": {"a": "1"}}))
    .unwrap();
    let mut cm = cms.create(&pp, &cm).await.unwrap();
    cm.data.as_mut().unwrap().insert("b".into(), "2".into());
    let cm2 = cms.replace("cfg", &pp, &cm).await.unwrap();
    assert_eq!(cm2.data.unwrap().len(), 2);
    let e = api_err(cms.replace("cfg", &pp, &cm).await.unwrap_err());
    assert_eq!(e.code, 409);
    // a no-op replace does not bump the resourceVersion
    let cur = cms.get("cfg").await.unwrap();
    let same = cms.replace("cfg", &pp, &cur).await.unwrap();
    assert_eq!(same.resource_version(), cur.resource_version());
    let d = cms.delete("cfg", &DeleteParams::default()).await.unwrap();
    assert!(d.right().unwrap().is_success(), "ConfigMap deletion answers a Status");
}

#[tokio::test]
async fn dynamic_custom_resources() {
    let server = FakeApiServer::start().await;
    let c = client(&server);
    server.apply(crd_json("metallb.io", "IPAddressPool", "ipaddresspools", &["v1beta1"], true));
    let gvk = GroupVersionKind::gvk("metallb.io", "v1beta1", "IPAddressPool");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "ipaddresspools");
    let pools: Api<DynamicObject> = Api::namespaced_with(c.clone(), "metallb-system", &ar);

    // discovery sees the group
    let disc = kube::Discovery::new(c.clone()).run().await.unwrap();
    let (found, caps) = disc.resolve_gvk(&gvk).expect("metallb.io discovered");
    assert_eq!(found.plural, "ipaddresspools");
    assert!(caps.subresources.iter().any(|(r, _)| r.plural == "ipaddresspools/status" || r.plural == "status"));

    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
        "metadata": {"name": "pool-a", "labels": {"zone": "a"}},
        "spec": {"addresses": ["192.0.2.0/28"]}
    }))
    .unwrap();
    let pp = PostParams::default();
    let created = pools.create(&pp, &obj).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(pools.get("pool-a").await.unwrap().data["spec"]["addresses"][0], "192.0.2.0/28");
    assert_eq!(pools.list(&ListParams::default().labels("zone=a")).await.unwrap().items.len(), 1);
    assert_eq!(pools.list(&ListParams::default().labels("zone=b")).await.unwrap().items.len(), 0);

    let patched = pools
        .patch("pool-a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"autoAssign": false}})))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2), "spec change bumps generation");
    let st = pools
        .patch_status(
            "pool-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"assignedIPv4": 2}, "spec": {"autoAssign": true}})),
        )
        .await
        .unwrap();
    assert_eq!(st.metadata.generation, Some(2), "status change does not bump generation");
    assert_eq!(st.data["spec"]["autoAssign"], false);
    assert_eq!(st.data["status"]["assignedIPv4"], 2);

    // server-side apply: create if missing, else merge
    let applied = pools
        .patch(
            "pool-b",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                                 "metadata": {"name": "pool-b"}, "spec": {"addresses": ["198.51.100.0/24"]}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["addresses"][0], "198.51.100.0/24");
    let applied = pools
        .patch(
            "pool-b",
            &PatchParams::apply("test"),
            &Patch::Apply(json!({"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
                                 "metadata": {"name": "pool-b"}, "spec": {"avoidBuggyIPs": true}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["spec"]["avoidBuggyIPs"], true);
    assert_eq!(applied.data["spec"]["addresses"][0], "198.51.100.0/24");

    let mut cur = pools.get("pool-a").await.unwrap();
    let stale = cur.clone();
    cur.data["spec"]["addresses"] = json!(["192.0.2.0/27"]);
    pools.replace("pool-a", &pp, &cur).await.unwrap();
    let e = api_err(pools.replace("pool-a", &pp, &stale).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on ipaddresspools.metallb.io \"pool-a\": the object has been modified; please apply your changes to the latest version and try again"
    );

    let d = pools.delete("pool-a", &DeleteParams::default()).await.unwrap();
    assert_eq!(d.left().unwrap().name_any(), "pool-a", "custom resources answer the deleted object");
    let e = api_err(pools.get("pool-a").await.unwrap_err());
    assert_eq!(e.message, "ipaddresspools.metallb.io \"pool-a\" not found");

    // deleting the CRD removes the resource and its objects
    server.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, "ipaddresspools.metallb.io").unwrap();
    let e = api_err(pools.list(&ListParams::default()).await.unwrap_err());
    assert_eq!(e.code, 404);
    let disc = kube::Discovery::new(c).run().await.unwrap();
    assert!(disc.resolve_gvk(&gvk).is_none());
    assert!(server.list("metallb.io/v1beta1", "IPAddressPool", None).is_empty());
}

/// Spawns a kube watcher on ConfigMaps in `default`, forwarding its events.
fn spawn_watcher(
    api: Api<ConfigMap>,
    cfg: watcher::Config,
) -> tokio::sync::mpsc::UnboundedReceiver<watcher::Event<ConfigMap>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(watcher(api, cfg));
        while let Some(ev) = s.next().await {
            if let Ok(ev) = ev {
                if tx.send(ev).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

fn cm(name: &str, v: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"v": v}})
}

#[tokio::test]
async fn watcher_sees_changes_in_order() {
    let server = FakeApiServer::start().await;
    server.apply(cm("pre", "0"));
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let mut rx = spawn_watcher(api, watcher::Config::default());
    assert!(matches!(next(&mut rx, "Init").await, watcher::Event::Init));
    match next(&mut rx, "InitApply").await {
        watcher::Event::InitApply(o) => assert_eq!(o.name_any(), "pre"),
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(next(&mut rx, "InitDone").await, watcher::Event::InitDone));
    eventually("the watch to open", || server.watch_count_for("", "configmaps") == 1).await;

    server.apply(cm("a", "1"));
    server.apply(cm("a", "2"));
    server.delete("v1", "ConfigMap", Some("default"), "a").unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        match next(&mut rx, "watch event").await {
            watcher::Event::Apply(o) => seen.push(format!("apply {} {}", o.name_any(), o.data.unwrap()["v"])),
            watcher::Event::Delete(o) => seen.push(format!("delete {}", o.name_any())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, vec!["apply a 1", "apply a 2", "delete a"]);

    // what the watcher sent: a paginated list of the most recent state (no resourceVersion),
    // then a watch from the list's revision
    let reqs: Vec<_> = server.requests().into_iter().filter(|r| r.path.ends_with("/configmaps")).collect();
    assert!(reqs[0].is_list());
    assert_eq!(reqs[0].param("limit").as_deref(), Some("500"));
    let list_rv = reqs[0].param("resourceVersion");
    assert_eq!(list_rv, None);
    assert!(reqs[1].is_watch());
    assert!(reqs[1].param("resourceVersion").is_some_and(|rv| rv.parse::<u64>().unwrap() > 0));
    assert_eq!(reqs[1].param("allowWatchBookmarks").as_deref(), Some("true"));
    assert_eq!(reqs[1].param("timeoutSeconds").as_deref(), Some("290"));
}

#[tokio::test]
async fn watcher_relists_after_410_and_loses_nothing() {
    common::init_tracing();
    // No periodic bookmarks: the watcher's last revision stays behind.
    let server = FakeApiServer::builder().bookmark_interval(None).start().await.unwrap();
    for i in 0..3 {
        server.apply(cm(&format!("c{i}"), "0"));
    }
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let (reader, writer) = reflector::store();
    let stream = reflector(writer, watcher(api, watcher::Config::default())).default_backoff().applied_objects();
    tokio::spawn(async move {
        let mut s = std::pin::pin!(stream);
        while s.next().await.is_some() {}
    });
    eventually("the initial list", || reader.state().len() == 3).await;
    eventually("the watch to open", || server.watch_count_for("", "configmaps") == 1).await;

    // 1) history compacted past the watcher's revision, then the watch ends: 410, relist.
    server.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "other", "namespace": "default"}}));
    server.compact();
    server.clear_requests();
    server.close_watches();
    eventually("a relist after 410", || {
        server.requests().iter().any(|r| r.is_list() && r.path.ends_with("/configmaps"))
    })
    .await;
    let reqs = server.requests();
    let first_watch = reqs.iter().position(|r| r.is_watch()).expect("a watch was retried first");
    let relist = reqs.iter().position(|r| r.is_list()).unwrap();
    assert!(first_watch < relist, "watch (answered 410) came before the relist");
    eventually("the watch to reopen", || server.watch_count_for("", "configmaps") == 1).await;

    // 2) outage: changes happen while the watcher is disconnected, history is compacted.
    server.set_mode(Mode::Refuse).await;
    server.apply(cm("c0", "changed"));
    server.delete("v1", "ConfigMap", Some("default"), "c1").unwrap();
    server.apply(cm("new", "1"));
    server.compact();
    server.set_mode(Mode::Normal).await;
    eventually("the store to converge", || {
        let mut names: Vec<(String, String)> =
            reader.state().iter().map(|c| (c.name_any(), c.data.as_ref().unwrap()["v"].clone())).collect();
        names.sort();
        names == vec![("c0".into(), "changed".into()), ("c2".into(), "0".into()), ("new".into(), "1".into())]
    })
    .await;
}

#[tokio::test]
async fn watch_from_compacted_revision_gets_410_error_event() {
    let server = FakeApiServer::start().await;
    let a = server.apply(cm("a", "1"));
    let rv = a["metadata"]["resourceVersion"].as_str().unwrap().to_string();
    server.apply(cm("a", "2"));
    server.compact();
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let mut s = api.watch(&WatchParams::default(), &rv).await.unwrap().boxed();
    match s.try_next().await.unwrap() {
        Some(WatchEvent::Error(e)) => {
            assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
            assert!(e.message.starts_with("too old resource version"), "{}", e.message);
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(s.try_next().await.unwrap().is_none(), "the stream ends after the error");
    // list at an exact compacted revision: 410 too
    let e =
        api_err(api.list(&ListParams::default().at(&rv).matching(kube::api::VersionMatch::Exact)).await.unwrap_err());
    assert_eq!(e.code, 410);
}

#[tokio::test]
async fn bookmarks_when_asked() {
    let server = FakeApiServer::builder().bookmark_interval(Some(Duration::from_millis(100))).start().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let mut s = api.watch(&WatchParams::default(), "0").await.unwrap().boxed();
    match tokio::time::timeout(common::WAIT, s.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Bookmark(b)) => {
            assert_eq!(b.metadata.resource_version, server.resource_version().to_string());
            assert_eq!(b.types.kind, "ConfigMap");
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
    // Without allowWatchBookmarks none come: the next event is the ADDED.
    let mut quiet = api.watch(&WatchParams::default().disable_bookmarks(), "0").await.unwrap().boxed();
    eventually("both watches open", || server.watch_count() == 2).await;
    server.send_bookmarks();
    server.send_bookmarks();
    server.apply(cm("x", "1"));
    match quiet.try_next().await.unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), "x"),
        other => panic!("expected ADDED, got {other:?}"),
    }
}

#[tokio::test]
async fn watch_timeout_ends_the_stream() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let started = std::time::Instant::now();
    let mut s = api.watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0").await.unwrap().boxed();
    let end = tokio::time::timeout(common::WAIT, s.try_next()).await.expect("the stream ends by itself");
    assert!(end.unwrap().is_none(), "clean end of stream");
    assert!(started.elapsed() >= Duration::from_millis(900));
    eventually("the watch to be unregistered", || server.watch_count() == 0).await;
}

#[tokio::test]
async fn selectors_filter_watches() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let labeled = |name: &str, app: &str| {
        let mut o = cm(name, "1");
        o["metadata"]["labels"] = json!({"app": app});
        o
    };
    server.apply(labeled("pre-web", "web"));
    server.apply(labeled("pre-db", "db"));
    let mut s = api.watch(&WatchParams::default().labels("app=web").disable_bookmarks(), "0").await.unwrap().boxed();
    let mut by_name = api
        .watch(&WatchParams::default().fields("metadata.name=pre-db").disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    let ev = |e: Option<WatchEvent<ConfigMap>>| match e.unwrap() {
        WatchEvent::Added(o) => format!("ADDED {}", o.name_any()),
        WatchEvent::Modified(o) => format!("MODIFIED {}", o.name_any()),
        WatchEvent::Deleted(o) => format!("DELETED {} rv={}", o.name_any(), o.resource_version().unwrap()),
        other => format!("{other:?}"),
    };
    assert_eq!(ev(s.try_next().await.unwrap()), "ADDED pre-web");
    assert_eq!(ev(by_name.try_next().await.unwrap()), "ADDED pre-db");

    server.apply(labeled("a", "db")); // not matching: nothing
    server.apply(labeled("b", "web")); // ADDED
    let moved = server.apply(labeled("b", "db")); // stops matching: DELETED
    server.apply(labeled("b", "web")); // matches again: ADDED
    server.patch("v1", "ConfigMap", Some("default"), "b", json!({"data": {"v": "2"}})).unwrap(); // MODIFIED
    server.apply(labeled("pre-db", "other")); // seen only by the field-selector watch
    assert_eq!(ev(s.try_next().await.unwrap()), "ADDED b");
    assert_eq!(
        ev(s.try_next().await.unwrap()),
        format!("DELETED b rv={}", moved["metadata"]["resourceVersion"].as_str().unwrap())
    );
    assert_eq!(ev(s.try_next().await.unwrap()), "ADDED b");
    assert_eq!(ev(s.try_next().await.unwrap()), "MODIFIED b");
    assert_eq!(ev(by_name.try_next().await.unwrap()), "MODIFIED pre-db");

    // all-namespaces watch with a label selector
    let all: Api<ConfigMap> = Api::all(client(&server));
    let mut s_all =
        all.watch(&WatchParams::default().labels("app=web").disable_bookmarks(), "0").await.unwrap().boxed();
    assert_eq!(ev(s_all.try_next().await.unwrap()), "ADDED b");
    assert_eq!(ev(s_all.try_next().await.unwrap()), "ADDED pre-web");
    let mut elsewhere = labeled("c", "web");
    elsewhere["metadata"]["namespace"] = json!("metallb-system");
    server.apply(elsewhere);
    assert_eq!(ev(s_all.try_next().await.unwrap()), "ADDED c");

    let e = match api.watch(&WatchParams::default().fields("data.v=1"), "0").await {
        Err(e) => api_err(e),
        Ok(_) => panic!("watch with an unsupported field selector must fail"),
    };
    assert_eq!(e.code, 400);
    let e = api_err(api.list(&ListParams::default().labels("a in b")).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (400, "BadRequest"));
}

#[tokio::test]
async fn streaming_list_watcher() {
    let server = FakeApiServer::start().await;
    server.apply(cm("a", "1"));
    server.apply(cm("b", "1"));
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let mut rx = spawn_watcher(api, watcher::Config::default().streaming_lists());
    let mut init = Vec::new();
    loop {
        match next(&mut rx, "streaming list").await {
            watcher::Event::Init => {}
            watcher::Event::InitApply(o) => init.push(o.name_any()),
            watcher::Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(init, vec!["a", "b"]);
    server.apply(cm("c", "1"));
    match next(&mut rx, "live event").await {
        watcher::Event::Apply(o) => assert_eq!(o.name_any(), "c"),
        other => panic!("unexpected {other:?}"),
    }
    let w = server.requests().into_iter().find(|r| r.is_watch()).unwrap();
    assert_eq!(w.param("sendInitialEvents").as_deref(), Some("true"));
    assert_eq!(w.param("resourceVersionMatch").as_deref(), Some("NotOlderThan"));
    assert!(!server.requests().iter().any(|r| r.is_list()), "no list call with streaming lists");
}

#[tokio::test]
async fn pagination_and_consistent_continue() {
    let server = FakeApiServer::start().await;
    for i in 0..5 {
        server.apply(cm(&format!("c{i}"), "0"));
    }
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let p1 = api.list(&ListParams::default().limit(2)).await.unwrap();
    assert_eq!(p1.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(), vec!["c0", "c1"]);
    assert_eq!(p1.metadata.remaining_item_count, Some(3));
    let tok = p1.metadata.continue_.clone().unwrap();
    // a change between pages does not show up: the list is a snapshot
    server.apply(cm("c4", "changed"));
    server.apply(cm("c5", "0"));
    let p2 = api.list(&ListParams::default().limit(2).continue_token(&tok)).await.unwrap();
    assert_eq!(p2.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(), vec!["c2", "c3"]);
    assert_eq!(p2.metadata.resource_version, p1.metadata.resource_version);
    let tok2 = p2.metadata.continue_.clone().unwrap();
    let p3 = api.list(&ListParams::default().limit(2).continue_token(&tok2)).await.unwrap();
    assert_eq!(p3.items.len(), 1);
    assert_eq!(p3.items[0].data.as_ref().unwrap()["v"], "0");
    assert!(p3.metadata.continue_.is_none());
    // after compaction the token has expired
    server.compact();
    let e = api_err(api.list(&ListParams::default().limit(2).continue_token(&tok2)).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
}

#[tokio::test]
async fn recorder_publishes_events() {
    let server = FakeApiServer::start().await;
    let c = client(&server);
    let svc = server
        .apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                                  "spec": {"ports": [{"port": 80}]}}));
    let reference = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Service".into()),
        name: Some("web".into()),
        namespace: Some("default".into()),
        uid: svc["metadata"]["uid"].as_str().map(str::to_string),
        ..Default::default()
    };
    let recorder = Recorder::new(c, Reporter { controller: "speakerd".into(), instance: Some("node-a".into()) });
    let ev = REvent {
        type_: REventType::Normal,
        reason: "IPAllocated".into(),
        note: Some("Assigned IP 192.0.2.1".into()),
        action: "Allocate".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    let events = server.events();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(e["apiVersion"], "events.k8s.io/v1");
    assert_eq!(e["reason"], "IPAllocated");
    assert_eq!(e["note"], "Assigned IP 192.0.2.1");
    assert_eq!(e["regarding"]["name"], "web");
    assert_eq!(e["reportingController"], "speakerd");
    assert_eq!(e["reportingInstance"], "node-a");
    // the same event again: the recorder patches it into a series
    recorder.publish(&ev, &reference).await.unwrap();
    let events = server.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["series"]["count"], 2);
    let methods: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/apis/events.k8s.io/v1/namespaces/default/events"))
        .map(|r| format!("{} {}", r.method, r.content_type))
        .collect();
    assert_eq!(methods, vec!["POST application/json", "PATCH application/merge-patch+json"]);
}

#[tokio::test]
async fn core_v1_events_are_stored() {
    let server = FakeApiServer::start().await;
    let evs: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client(&server), "default");
    let e: k8s_openapi::api::core::v1::Event = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": "web."},
        "involvedObject": {"kind": "Service", "name": "web", "namespace": "default"},
        "reason": "AnnounceFailed", "message": "no peers", "type": "Warning", "count": 1,
        "source": {"component": "speakerd"}
    }))
    .unwrap();
    let created = evs.create(&PostParams::default(), &e).await.unwrap();
    assert!(created.name_any().starts_with("web."), "generateName honoured");
    let l = evs.list(&ListParams::default().fields("involvedObject.name=web,reason=AnnounceFailed")).await.unwrap();
    assert_eq!(l.items.len(), 1);
    let stored = server.events();
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0]["apiVersion"].as_str(), stored[0]["message"].as_str()), (Some("v1"), Some("no peers")));
}

#[tokio::test]
async fn hang_holds_open_watches_until_service_resumes() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let mut s = api.watch(&WatchParams::default().disable_bookmarks(), "0").await.unwrap().boxed();
    eventually("watch open", || server.watch_count() == 1).await;
    server.set_mode(Mode::Hang).await;
    server.apply(cm("held", "1"));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), s.try_next()).await.is_err(),
        "nothing is delivered while hanging"
    );
    server.set_mode(Mode::Normal).await;
    match tokio::time::timeout(common::WAIT, s.try_next()).await.unwrap().unwrap() {
        Some(WatchEvent::Added(o)) => assert_eq!(o.name_any(), "held"),
        other => panic!("expected ADDED, got {other:?}"),
    }
}

#[tokio::test]
async fn failure_modes_look_like_a_real_server() {
    let server = FakeApiServer::start().await;
    server.apply(cm("keep", "1"));
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");

    server.set_mode(Mode::Error500).await;
    let e = api_err(api.get("keep").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));

    server.set_mode(Mode::Unauthorized).await;
    let e = api_err(api.get("keep").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str(), e.message.as_str()), (401, "Unauthorized", "Unauthorized"));

    server.set_mode(Mode::Hang).await;
    let r = tokio::time::timeout(Duration::from_millis(300), api.get("keep")).await;
    assert!(r.is_err(), "a hanging server never answers");

    server.set_mode(Mode::Refuse).await;
    let e = api.get("keep").await.unwrap_err();
    assert!(!matches!(e, kube::Error::Api(_)), "no API answer: {e:?}");
    let msg = format!("{e:?}");
    assert!(msg.contains("Connection refused") || msg.contains("ConnectionRefused"), "{msg}");
    assert!(tokio::net::TcpStream::connect(server.addr()).await.is_err(), "port closed");

    server.set_mode(Mode::Normal).await;
    assert_eq!(api.get("keep").await.unwrap().data.unwrap()["v"], "1", "store intact");
}

#[tokio::test]
async fn open_watches_break_on_refuse_and_restart_on_same_port() {
    let server = FakeApiServer::start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&server), "default");
    let mut s = api.watch(&WatchParams::default().disable_bookmarks(), "0").await.unwrap().boxed();
    eventually("watch open", || server.watch_count() == 1).await;
    server.set_mode(Mode::Refuse).await;
    let end = tokio::time::timeout(common::WAIT, s.next()).await.unwrap();
    assert!(end.is_none() || end.unwrap().is_err(), "the watch stream broke");

    // a stopped server can come back on the same port
    server.set_mode(Mode::Normal).await;
    let addr = server.addr();
    server.shutdown().await;
    let again = FakeApiServer::start_on(addr).await.unwrap();
    assert_eq!(again.addr(), addr);
    let api: Api<ConfigMap> = Api::namespaced(client(&again), "default");
    assert!(api.list(&ListParams::default()).await.unwrap().items.is_empty());
}
