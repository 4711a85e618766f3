//! One reconcile pass ([`Reconciler::reconcile_once`]) against the fake API server (real reflectors)
//! and a fake speakerd on a Unix socket that keeps what it is told: given objects → the state pushed.
use fake_apiserver::FakeApiServer;
use k8s_bridge::events::Limits;
use k8s_bridge::metrics::Metrics;
use k8s_bridge::run::{Reconciler, Reflectors, Settings};
use k8s_bridge::translate::Options;
use serde_json::{json, Value};
use speaker_api::v1::speaker_server::{Speaker, SpeakerServer};
use speaker_api::v1::*;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

const NS: &str = "metallb-system";

/// What the fake speakerd holds for the bridge's owner, and the calls it got (by name).
#[derive(Default, Debug)]
struct Held {
    calls: Vec<&'static str>,
    peers: Vec<String>,
    bgp: BTreeMap<String, Announcement>,
    l2: BTreeMap<String, L2Announcement>,
}

#[derive(Clone, Default)]
struct FakeSpeakerd(Arc<Mutex<Held>>);

impl FakeSpeakerd {
    fn call(&self, name: &'static str) -> std::sync::MutexGuard<'_, Held> {
        let mut h = self.0.lock().unwrap();
        h.calls.push(name);
        h
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

fn unused<T>() -> Result<Response<T>, Status> {
    Err(Status::unimplemented("not used by k8s-bridge"))
}

#[tonic::async_trait]
impl Speaker for FakeSpeakerd {
    async fn set_peers(&self, r: Request<SetPeersRequest>) -> Result<Response<SetPeersResponse>, Status> {
        let mut h = self.call("SetPeers");
        h.peers = r.into_inner().peers.into_iter().map(|p| p.address).collect();
        Ok(Response::new(SetPeersResponse { added: h.peers.len() as u32, ..Default::default() }))
    }
    async fn add_peer(&self, _: Request<AddPeerRequest>) -> Result<Response<AddPeerResponse>, Status> {
        unused()
    }
    async fn update_peer(&self, _: Request<UpdatePeerRequest>) -> Result<Response<UpdatePeerResponse>, Status> {
        unused()
    }
    async fn delete_peer(&self, _: Request<DeletePeerRequest>) -> Result<Response<DeletePeerResponse>, Status> {
        unused()
    }
    async fn get_peer(&self, _: Request<GetPeerRequest>) -> Result<Response<GetPeerResponse>, Status> {
        unused()
    }
    async fn list_peers(&self, _: Request<ListPeersRequest>) -> Result<Response<ListPeersResponse>, Status> {
        unused()
    }
    async fn reset_peer(&self, _: Request<ResetPeerRequest>) -> Result<Response<ResetPeerResponse>, Status> {
        unused()
    }
    async fn announce(&self, r: Request<AnnounceRequest>) -> Result<Response<AnnounceResponse>, Status> {
        let mut h = self.call("Announce");
        for a in r.into_inner().announcements {
            h.bgp.insert(a.prefix.clone(), a);
        }
        Ok(Response::new(AnnounceResponse {}))
    }
    async fn withdraw(&self, r: Request<WithdrawRequest>) -> Result<Response<WithdrawResponse>, Status> {
        let mut h = self.call("Withdraw");
        let removed = r.into_inner().prefixes.iter().filter(|p| h.bgp.remove(*p).is_some()).count();
        Ok(Response::new(WithdrawResponse { removed: removed as u32 }))
    }
    async fn set_announcements(
        &self,
        r: Request<SetAnnouncementsRequest>,
    ) -> Result<Response<SetAnnouncementsResponse>, Status> {
        let mut h = self.call("SetAnnouncements");
        h.bgp = r.into_inner().announcements.into_iter().map(|a| (a.prefix.clone(), a)).collect();
        Ok(Response::new(SetAnnouncementsResponse { added: h.bgp.len() as u32, ..Default::default() }))
    }
    async fn list_announcements(
        &self,
        _: Request<ListAnnouncementsRequest>,
    ) -> Result<Response<ListAnnouncementsResponse>, Status> {
        unused()
    }
    async fn set_l2_announcements(
        &self,
        r: Request<SetL2AnnouncementsRequest>,
    ) -> Result<Response<SetL2AnnouncementsResponse>, Status> {
        let mut h = self.call("SetL2Announcements");
        h.l2 = r.into_inner().announcements.into_iter().map(|a| (a.ip.clone(), a)).collect();
        Ok(Response::new(SetL2AnnouncementsResponse { added: h.l2.len() as u32, ..Default::default() }))
    }
    async fn update_l2_announcements(
        &self,
        r: Request<UpdateL2AnnouncementsRequest>,
    ) -> Result<Response<UpdateL2AnnouncementsResponse>, Status> {
        let mut h = self.call("UpdateL2Announcements");
        let r = r.into_inner();
        for ip in &r.withdraw {
            h.l2.remove(ip);
        }
        for a in r.announce {
            h.l2.insert(a.ip.clone(), a);
        }
        Ok(Response::new(UpdateL2AnnouncementsResponse::default()))
    }
    async fn list_l2_announcements(
        &self,
        _: Request<ListL2AnnouncementsRequest>,
    ) -> Result<Response<ListL2AnnouncementsResponse>, Status> {
        let h = self.call("ListL2Announcements");
        Ok(Response::new(ListL2AnnouncementsResponse { announcements: h.l2.values().cloned().collect() }))
    }
    async fn get_l2_owner(&self, _: Request<GetL2OwnerRequest>) -> Result<Response<GetL2OwnerResponse>, Status> {
        unused()
    }
    async fn list_members(&self, _: Request<ListMembersRequest>) -> Result<Response<ListMembersResponse>, Status> {
        unused()
    }
    async fn set_membership_seeds(
        &self,
        _: Request<SetMembershipSeedsRequest>,
    ) -> Result<Response<SetMembershipSeedsResponse>, Status> {
        drop(self.call("SetMembershipSeeds"));
        Ok(Response::new(SetMembershipSeedsResponse::default()))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        Ok(Response::new(Box::pin(tokio_stream::pending())))
    }
}

/// Serves a fake speakerd on a fresh socket (the task ends with the test's runtime).
async fn fake_speakerd(test: &str) -> (FakeSpeakerd, PathBuf) {
    let socket = std::env::temp_dir().join(format!("k8s-bridge-reconcile-{}-{test}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let listener = tokio::net::UnixListener::bind(&socket).unwrap();
    let fake = FakeSpeakerd::default();
    let service = SpeakerServer::new(fake.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(UnixListenerStream::new(listener))
            .await
    });
    (fake, socket)
}

/// The fake API server with every CRD of deploy/base.
async fn api_server() -> FakeApiServer {
    let server = FakeApiServer::start().await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/base/crds");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "yaml")) {
        for d in serde_yaml::Deserializer::from_str(&std::fs::read_to_string(f).unwrap()) {
            let v: Value = serde::Deserialize::deserialize(d).unwrap();
            if !v.is_null() {
                server.apply(v);
            }
        }
    }
    server
}

fn settings(socket: PathBuf) -> Settings {
    let limits = Limits { concurrency: 1, qps: 50.0 };
    Settings {
        options: Options { node: "n1".into(), lb_class: None, gossip_port: 7946, ignore_exclude_lb: false },
        namespace: NS.into(),
        configmap: "config".into(),
        socket,
        resync: Duration::from_secs(60),
        debounce: Duration::from_millis(20),
        event_writes: limits,
        status_writes: limits,
        pod: None,
    }
}

fn metallb(kind: &str, name: &str, spec: Value) -> Value {
    let version = if kind == "BGPPeer" { "v1beta2" } else { "v1beta1" };
    json!({"apiVersion": format!("metallb.io/{version}"), "kind": kind,
        "metadata": {"name": name, "namespace": NS}, "spec": spec})
}

fn node(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]}})
}

/// A LoadBalancer Service with `ip` and one ready endpoint on n1.
fn service(name: &str, ip: &str) -> [Value; 2] {
    [
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "ports": [{"port": 80, "protocol": "TCP"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": ip}]}}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": format!("{name}-x"), "namespace": "default",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.1"], "nodeName": "n1",
                           "conditions": {"ready": true, "serving": true, "terminating": false}}]}),
    ]
}

async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What speakerd was told, in a comparable form: (peer addresses, BGP prefixes, Layer 2 IPs).
fn held(fake: &FakeSpeakerd) -> (Vec<String>, Vec<String>, Vec<String>) {
    let h = fake.0.lock().unwrap();
    (h.peers.clone(), h.bgp.keys().cloned().collect(), h.l2.keys().cloned().collect())
}

/// Waits until speakerd got the call `name` (made by another task); returns every call until then.
async fn wait_call(fake: &FakeSpeakerd, name: &str) -> Vec<&'static str> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        seen.extend(calls(fake));
        if seen.contains(&name) {
            return seen;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {name}; calls: {seen:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn calls(fake: &FakeSpeakerd) -> Vec<&'static str> {
    std::mem::take(&mut fake.0.lock().unwrap().calls)
}

struct Case {
    name: &'static str,
    objects: Vec<Value>,
    /// (peer addresses, BGP prefixes, Layer 2 IPs) speakerd holds after one pass; None: nothing pushed.
    want: Option<(Vec<&'static str>, Vec<&'static str>, Vec<&'static str>)>,
}

fn cases() -> Vec<Case> {
    let pool = metallb("IPAddressPool", "prod", json!({"addresses": ["192.0.2.0/24"]}));
    let peer = metallb("BGPPeer", "tor", json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.254"}));
    let bgp_ad = metallb("BGPAdvertisement", "all", json!({"ipAddressPools": ["prod"]}));
    let l2_ad = metallb("L2Advertisement", "all", json!({"ipAddressPools": ["prod"]}));
    let n1 = node("n1", "10.0.0.1");
    let [web, web_eps] = service("web", "192.0.2.10");
    vec![
        Case {
            name: "bgp",
            objects: vec![n1.clone(), pool.clone(), peer.clone(), bgp_ad.clone(), web.clone(), web_eps.clone()],
            want: Some((vec!["10.0.0.254"], vec!["192.0.2.10/32"], vec![])),
        },
        Case {
            name: "layer2",
            objects: vec![n1.clone(), pool.clone(), l2_ad.clone(), web.clone(), web_eps.clone()],
            want: Some((vec![], vec![], vec!["192.0.2.10"])),
        },
        Case {
            name: "peer-without-advertisement",
            objects: vec![n1.clone(), pool.clone(), peer.clone(), web.clone(), web_eps.clone()],
            want: Some((vec!["10.0.0.254"], vec![], vec![])),
        },
        Case {
            // A pool that does not parse makes the whole configuration invalid: nothing is pushed.
            name: "invalid-pool",
            objects: vec![
                n1.clone(),
                metallb("IPAddressPool", "bad", json!({"addresses": ["not-an-address"]})),
                peer.clone(),
                bgp_ad.clone(),
                web.clone(),
                web_eps.clone(),
            ],
            want: None,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_once_pushes_the_desired_state() {
    for case in cases() {
        let server = api_server().await;
        for o in &case.objects {
            server.apply(o.clone());
        }
        let (fake, socket) = fake_speakerd(case.name).await;
        let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
        let settings = settings(socket.clone());
        let metrics = Arc::new(Metrics::default());
        let reflectors = Reflectors::start(&settings, &client, metrics.clone());
        let mut reconciler =
            Reconciler::new(&client, settings.clone(), metrics, k8s_bridge::apply::unix_channel(socket.clone()));
        wait_until("the reflectors' initial lists", || reflectors.all_synced()).await;
        reconciler.reconcile_once(&reflectors, false).await;
        match &case.want {
            None => {
                assert!(reconciler.config().is_none(), "{}: no configuration is in force", case.name);
                assert!(reconciler.pushed().is_none(), "{}", case.name);
                assert_eq!(calls(&fake), Vec::<&str>::new(), "{}: speakerd is not called", case.name);
            }
            Some((peers, bgp, l2)) => {
                let want = (
                    peers.iter().map(|s| s.to_string()).collect(),
                    bgp.iter().map(|s| s.to_string()).collect(),
                    l2.iter().map(|s| s.to_string()).collect(),
                );
                assert_eq!(held(&fake), want, "{}", case.name);
                // The first push is whole, then the status task syncs the status objects from
                // speakerd's Layer 2 state.
                assert_eq!(
                    calls(&fake),
                    ["SetAnnouncements", "SetPeers", "SetL2Announcements", "SetMembershipSeeds"],
                    "{}",
                    case.name
                );
                assert_eq!(wait_call(&fake, "ListL2Announcements").await, ["ListL2Announcements"], "{}", case.name);
                assert_eq!(reconciler.pushed().map(|d| d.bgp.len()), Some(bgp.len()), "{}", case.name);
                // Nothing changed: a second pass calls nothing; a forced one pushes everything again.
                reconciler.reconcile_once(&reflectors, false).await;
                assert_eq!(calls(&fake), Vec::<&str>::new(), "{}: unchanged", case.name);
                reconciler.reconcile_once(&reflectors, true).await;
                assert_eq!(
                    calls(&fake),
                    ["SetAnnouncements", "SetPeers", "SetL2Announcements", "SetMembershipSeeds"],
                    "{}: forced",
                    case.name
                );
                assert_eq!(held(&fake), want, "{}: forced", case.name);
                // The status objects follow, at most every STATUS_EVERY: due now, handed to the status
                // task by the pass that runs when it has passed.
                let due = reconciler.status_at().expect("status sync due after a push");
                tokio::time::sleep_until(due).await;
                reconciler.reconcile_once(&reflectors, false).await;
                assert_eq!(reconciler.status_at(), None, "{}", case.name);
                assert_eq!(wait_call(&fake, "ListL2Announcements").await, ["ListL2Announcements"], "{}", case.name);
            }
        }
        let _ = std::fs::remove_file(&socket);
    }
}

/// A change after the first push goes out as per-item calls: a deleted Service is withdrawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_once_sends_only_the_change() {
    let server = api_server().await;
    let [web, web_eps] = service("web", "192.0.2.10");
    let [db, db_eps] = service("db", "192.0.2.20");
    for o in [
        node("n1", "10.0.0.1"),
        metallb("IPAddressPool", "prod", json!({"addresses": ["192.0.2.0/24"]})),
        metallb("BGPPeer", "tor", json!({"myASN": 64500, "peerASN": 64501, "peerAddress": "10.0.0.254"})),
        metallb("BGPAdvertisement", "all", json!({})),
        web,
        web_eps,
        db,
        db_eps,
    ] {
        server.apply(o);
    }
    let (fake, socket) = fake_speakerd("incremental").await;
    let client = kube::Client::try_from(kube::Config::new(server.url().parse().unwrap())).unwrap();
    let settings = settings(socket.clone());
    let metrics = Arc::new(Metrics::default());
    let reflectors = Reflectors::start(&settings, &client, metrics.clone());
    let mut reconciler =
        Reconciler::new(&client, settings.clone(), metrics.clone(), k8s_bridge::apply::unix_channel(socket.clone()));
    wait_until("the reflectors' initial lists", || reflectors.all_synced()).await;
    reconciler.reconcile_once(&reflectors, false).await;
    assert_eq!(held(&fake).1, ["192.0.2.10/32", "192.0.2.20/32"]);
    wait_call(&fake, "ListL2Announcements").await;
    let full_bytes = metrics.push_bytes.load(std::sync::atomic::Ordering::Relaxed);

    server.delete("v1", "Service", Some("default"), "db").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while reconciler.pushed().map(|d| d.bgp.len()) != Some(1) {
        assert!(Instant::now() < deadline, "timed out waiting for the deletion to be pushed");
        let _ = tokio::time::timeout(Duration::from_millis(200), reflectors.changed()).await;
        reconciler.reconcile_once(&reflectors, false).await;
    }
    assert_eq!(held(&fake).1, ["192.0.2.10/32"]);
    assert_eq!(calls(&fake), ["Withdraw"]);
    // Within STATUS_EVERY of the last status sync, the status follows in a later pass.
    if let Some(due) = reconciler.status_at() {
        tokio::time::sleep_until(due).await;
        reconciler.reconcile_once(&reflectors, false).await;
    }
    assert_eq!(wait_call(&fake, "ListL2Announcements").await, ["ListL2Announcements"]);
    assert_eq!(metrics.pushes_incremental.load(std::sync::atomic::Ordering::Relaxed), 1);
    // The change cost the Withdraw request alone, counted exactly.
    let withdraw = WithdrawRequest { owner: k8s_bridge::OWNER.into(), prefixes: vec!["192.0.2.20/32".into()] };
    let change_bytes = metrics.push_bytes.load(std::sync::atomic::Ordering::Relaxed) - full_bytes;
    assert_eq!(change_bytes, prost::Message::encoded_len(&withdraw) as u64);
    assert!(
        full_bytes > change_bytes,
        "the full push ({full_bytes} B) carried more than the change ({change_bytes} B)"
    );
    let _ = std::fs::remove_file(&socket);
}
