//! The gRPC API of the real speakerd binary over its real Unix socket: validation and status codes,
//! owner isolation of SetAnnouncements, the watch stream, health, reflection, socket mode, and config
//! reload on SIGHUP. No BGP peer is needed (the peers here never connect: --no-bgp-listen and a port
//! nobody listens on).
use speaker_api::v1 as pb;
use speaker_api::v1::speaker_client::SpeakerClient;
mod common;
use common::Daemon;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

fn peer(addr: &str, asn: u32) -> pb::PeerConfig {
    // Port 1: nothing listens there, so the session stays down quietly.
    pb::PeerConfig { address: addr.into(), peer_asn: asn, port: 1, ..Default::default() }
}

fn ann(prefix: &str) -> pb::Announcement {
    pb::Announcement { prefix: prefix.into(), ..Default::default() }
}

async fn prefixes(c: &mut SpeakerClient<Channel>, owner: &str) -> Vec<String> {
    let r = c.list_announcements(pb::ListAnnouncementsRequest { owner: owner.into() }).await.unwrap();
    r.into_inner().announcements.into_iter().map(|a| format!("{}@{}", a.prefix, a.owner)).collect()
}

#[tokio::test]
async fn invalid_arguments_name_the_field() {
    let d = Daemon::start(&[]);
    let mut c = d.client().await;
    let cases: Vec<(pb::PeerConfig, &str)> = vec![
        (peer("192.0.2.2", 0), "peer_asn"),
        (peer("not-an-ip", 65002), "address"),
        (pb::PeerConfig { hold_time_secs: Some(1), ..peer("192.0.2.2", 65002) }, "hold_time_secs"),
        (pb::PeerConfig { password: "p".repeat(81), ..peer("192.0.2.2", 65002) }, "password"),
    ];
    for (p, field) in cases {
        let e = c.add_peer(pb::AddPeerRequest { peer: Some(p) }).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(field), "message {:?} should name {field}", e.message());
    }
    let e = c.add_peer(pb::AddPeerRequest { peer: None }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let bad = vec![ann("203.0.113.1/32"), ann("203.0.113.1/24")];
    let e = c.announce(pb::AnnounceRequest { owner: "t".into(), announcements: bad }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("announcements[1].prefix") && e.message().contains("203.0.113.0/24"),
        "{}",
        e.message()
    );
    let mut a = ann("203.0.113.1/32");
    a.communities = vec!["65536:1".into()];
    let e = c.announce(pb::AnnounceRequest { owner: "t".into(), announcements: vec![a] }).await.unwrap_err();
    assert!(e.message().contains("announcements[0].communities"), "{}", e.message());
    let e = c.announce(pb::AnnounceRequest { owner: "bad owner".into(), announcements: vec![] }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(prefixes(&mut c, "").await.is_empty(), "a rejected call changes nothing");
    let e = c.withdraw(pb::WithdrawRequest { owner: "t".into(), prefixes: vec!["x".into()] }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn peer_lifecycle_codes() {
    let d = Daemon::start(&[]);
    let mut c = d.client().await;
    let added = c
        .add_peer(pb::AddPeerRequest { peer: Some(pb::PeerConfig { name: "r1".into(), ..peer("192.0.2.2", 65002) }) })
        .await
        .unwrap();
    let p = added.into_inner().peer.unwrap();
    assert_eq!(p.config.as_ref().unwrap().local_asn, 65001, "default local ASN filled in");
    let e = c.add_peer(pb::AddPeerRequest { peer: Some(peer("192.0.2.2", 65002)) }).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = c
        .add_peer(pb::AddPeerRequest { peer: Some(pb::PeerConfig { name: "r1".into(), ..peer("192.0.2.3", 65002) }) })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "names are unique too");
    // By name and by address.
    let g = c.get_peer(pb::GetPeerRequest { peer: "r1".into() }).await.unwrap().into_inner();
    assert_eq!(g.peer.unwrap().config.unwrap().address, "192.0.2.2");
    assert_eq!(c.get_peer(pb::GetPeerRequest { peer: "192.0.2.9".into() }).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(c.get_peer(pb::GetPeerRequest { peer: " ".into() }).await.unwrap_err().code(), Code::InvalidArgument);
    // Update: keepalive only → no reset; hold time → reset.
    let r = c
        .update_peer(pb::UpdatePeerRequest {
            peer: Some(pb::PeerConfig { name: "r1".into(), keepalive_time_secs: Some(5), ..peer("192.0.2.2", 65002) }),
        })
        .await
        .unwrap();
    assert!(!r.into_inner().reset);
    let r = c
        .update_peer(pb::UpdatePeerRequest {
            peer: Some(pb::PeerConfig { name: "r1".into(), hold_time_secs: Some(30), ..peer("192.0.2.2", 65002) }),
        })
        .await
        .unwrap();
    assert!(r.into_inner().reset);
    assert_eq!(
        c.update_peer(pb::UpdatePeerRequest { peer: Some(peer("192.0.2.9", 1)) }).await.unwrap_err().code(),
        Code::NotFound
    );
    c.reset_peer(pb::ResetPeerRequest { peer: "r1".into(), soft: true }).await.unwrap();
    let l = c.list_peers(pb::ListPeersRequest {}).await.unwrap().into_inner();
    assert_eq!(l.peers.len(), 1);
    assert_eq!(l.peers[0].config.as_ref().unwrap().password, "", "no password set, none shown");
    c.delete_peer(pb::DeletePeerRequest { peer: "192.0.2.2".into() }).await.unwrap();
    assert_eq!(
        c.delete_peer(pb::DeletePeerRequest { peer: "192.0.2.2".into() }).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(c.list_peers(pb::ListPeersRequest {}).await.unwrap().into_inner().peers.is_empty());
}

#[tokio::test]
async fn set_for_owner_never_touches_other_owners() {
    let d = Daemon::start(&[]);
    let mut c = d.client().await;
    let set = |owner: &str, list: &[&str]| pb::SetAnnouncementsRequest {
        owner: owner.into(),
        announcements: list.iter().map(|p| ann(p)).collect(),
    };
    let r = c.set_announcements(set("k8s-bridge", &["203.0.113.1/32", "203.0.113.2/32"])).await.unwrap().into_inner();
    assert_eq!((r.added, r.changed, r.removed), (2, 0, 0));
    c.set_announcements(set("speakerctl", &["203.0.113.2/32", "2001:db8::5/128"])).await.unwrap();
    // Idempotent: the same set again changes nothing.
    let r = c.set_announcements(set("k8s-bridge", &["203.0.113.1/32", "203.0.113.2/32"])).await.unwrap().into_inner();
    assert_eq!((r.added, r.changed, r.removed), (0, 0, 0));
    let r = c.set_announcements(set("k8s-bridge", &["203.0.113.3/32"])).await.unwrap().into_inner();
    assert_eq!((r.added, r.changed, r.removed), (1, 0, 2));
    assert_eq!(
        prefixes(&mut c, "").await,
        vec!["203.0.113.2/32@speakerctl", "203.0.113.3/32@k8s-bridge", "2001:db8::5/128@speakerctl"]
    );
    c.set_announcements(set("k8s-bridge", &[])).await.unwrap();
    assert_eq!(prefixes(&mut c, "speakerctl").await, vec!["203.0.113.2/32@speakerctl", "2001:db8::5/128@speakerctl"]);
    let w = c
        .withdraw(pb::WithdrawRequest { owner: "other".into(), prefixes: vec!["203.0.113.2/32".into()] })
        .await
        .unwrap();
    assert_eq!(w.into_inner().removed, 0, "another owner cannot withdraw speakerctl's prefix");
    assert_eq!(prefixes(&mut c, "").await.len(), 2);
}

#[tokio::test]
async fn set_peers_is_idempotent_and_per_owner() {
    let d = Daemon::start(&[]);
    let mut c = d.client().await;
    let set = |owner: &str, peers: Vec<pb::PeerConfig>| pb::SetPeersRequest { owner: owner.into(), peers };
    let owners = |r: pb::ListPeersResponse| -> Vec<String> {
        r.peers.into_iter().map(|p| p.config.unwrap()).map(|c| format!("{}@{}", c.address, c.owner)).collect()
    };
    let r = c
        .set_peers(set("k8s-bridge", vec![peer("192.0.2.2", 65002), peer("192.0.2.3", 65003)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.added, r.changed, r.removed, r.reset), (2, 0, 0, 0));
    let r = c
        .set_peers(set("k8s-bridge", vec![peer("192.0.2.2", 65002), peer("192.0.2.3", 65003)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.added, r.changed, r.removed, r.reset), (0, 0, 0, 0), "the same set again changes nothing");
    let added = pb::PeerConfig { owner: "ops".into(), ..peer("192.0.2.9", 65009) };
    c.add_peer(pb::AddPeerRequest { peer: Some(added) }).await.unwrap();
    // A hold-time change resets the session; a keepalive change does not; 192.0.2.3 goes; 192.0.2.9 is ops's.
    let p2 = pb::PeerConfig { hold_time_secs: Some(30), ..peer("192.0.2.2", 65002) };
    let p9 = peer("192.0.2.9", 65009);
    let r = c.set_peers(set("k8s-bridge", vec![p2.clone(), p9])).await.unwrap().into_inner();
    assert_eq!((r.added, r.changed, r.removed, r.reset), (0, 1, 1, 1), "{r:?}");
    assert_eq!(r.conflicts.len(), 1, "{r:?}");
    assert!(r.conflicts[0].starts_with("192.0.2.9: ") && r.conflicts[0].contains("\"ops\""), "{r:?}");
    let list = c.list_peers(pb::ListPeersRequest {}).await.unwrap().into_inner();
    assert_eq!(owners(list), vec!["192.0.2.2@k8s-bridge", "192.0.2.9@ops"]);
    let p2k = pb::PeerConfig { keepalive_time_secs: Some(5), ..p2 };
    let r = c.set_peers(set("k8s-bridge", vec![p2k])).await.unwrap().into_inner();
    assert_eq!((r.changed, r.reset), (1, 0), "{r:?}");
    // Bad input names the entry; a duplicate address is refused; nothing changes.
    let e = c.set_peers(set("k8s-bridge", vec![peer("192.0.2.4", 65004), peer("192.0.2.5", 0)])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("peers[1]: peer_asn"), "{}", e.message());
    let e = c.set_peers(set("k8s-bridge", vec![peer("192.0.2.4", 65004), peer("192.0.2.4", 65004)])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let list = c.list_peers(pb::ListPeersRequest {}).await.unwrap().into_inner();
    assert_eq!(owners(list), vec!["192.0.2.2@k8s-bridge", "192.0.2.9@ops"]);
    // Too many peers in one call: RESOURCE_EXHAUSTED naming the limit, nothing changes.
    let many: Vec<pb::PeerConfig> =
        (0..4097u32).map(|i| peer(&format!("10.{}.{}.1", i / 256, i % 256), 65010)).collect();
    let e = c.set_peers(set("k8s-bridge", many)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("at most 4096"), "{}", e.message());
    // The empty set deletes only the owner's peers.
    let r = c.set_peers(set("k8s-bridge", vec![])).await.unwrap().into_inner();
    assert_eq!(r.removed, 1);
    let list = c.list_peers(pb::ListPeersRequest {}).await.unwrap().into_inner();
    assert_eq!(owners(list), vec!["192.0.2.9@ops"]);
}

#[tokio::test]
async fn watch_sends_initial_state_then_changes() {
    let d = Daemon::start(&[]);
    let mut c = d.client().await;
    c.announce(pb::AnnounceRequest { owner: "a".into(), announcements: vec![ann("203.0.113.1/32")] }).await.unwrap();
    let mut w = c.watch(pb::WatchRequest { initial_state: true }).await.unwrap().into_inner();
    let first = w.next().await.unwrap().unwrap();
    assert!(
        matches!(first.event, Some(pb::watch_event::Event::Announcement(ref a)) if a.announcement.as_ref().unwrap().prefix == "203.0.113.1/32")
    );
    let synced = w.next().await.unwrap().unwrap();
    assert_eq!(synced.event, Some(pb::watch_event::Event::Synced(true)));
    let mut c2 = d.client().await;
    c2.withdraw(pb::WithdrawRequest { owner: "a".into(), prefixes: vec!["203.0.113.1/32".into()] }).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap().unwrap().unwrap();
    let Some(pb::watch_event::Event::Announcement(a)) = ev.event else { panic!("{ev:?}") };
    assert_eq!(a.kind, pb::announcement_event::Kind::Removed as i32);
    c2.add_peer(pb::AddPeerRequest { peer: Some(peer("192.0.2.2", 65002)) }).await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap().unwrap().unwrap();
    let Some(pb::watch_event::Event::Peer(p)) = ev.event else { panic!("{ev:?}") };
    assert_eq!(
        (p.address.as_str(), p.old_state, p.new_state),
        ("192.0.2.2", pb::SessionState::Idle as i32, pb::SessionState::Connect as i32)
    );
    // Delete: one event says `deleted`, and nothing about the peer follows it.
    c2.delete_peer(pb::DeletePeerRequest { peer: "192.0.2.2".into() }).await.unwrap();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap().unwrap().unwrap();
        if let Some(pb::watch_event::Event::Peer(p)) = ev.event {
            if p.deleted {
                assert_eq!((p.new_state, p.reason.as_str()), (pb::SessionState::Idle as i32, "deleted"));
                break;
            }
        }
    }
    if let Ok(Some(ev)) = tokio::time::timeout(Duration::from_millis(500), w.next()).await {
        panic!("event after the peer was deleted: {ev:?}");
    }
}

#[tokio::test]
async fn socket_is_private_and_serves_health_and_reflection() {
    let d = Daemon::start(&[]);
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let ch = d.channel().await;
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let r = h.check(tonic_health::pb::HealthCheckRequest { service: "speaker.v1.Speaker".into() }).await.unwrap();
    assert_eq!(r.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient, server_reflection_request::MessageRequest,
        server_reflection_response::MessageResponse, ServerReflectionRequest,
    };
    let mut rc = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut resp = rc.server_reflection_info(tokio_stream::iter(vec![req])).await.unwrap().into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.next().await.unwrap().unwrap().message_response else {
        panic!()
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(names.contains(&"speaker.v1.Speaker".to_string()), "{names:?}");
}

#[tokio::test]
async fn second_instance_on_the_same_socket_refuses_to_start() {
    let d = Daemon::start(&[]);
    let out = Command::new(env!("CARGO_BIN_EXE_speakerd"))
        .args(["--socket", d.socket.to_str().unwrap(), "--no-bgp-listen", "--local-asn", "65001"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use"), "{}", String::from_utf8_lossy(&out.stderr));
}

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap();
}

#[tokio::test]
async fn sighup_applies_only_what_changed_and_keeps_last_good_config() {
    let dir = std::env::temp_dir().join(format!("speakerd-cfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("speakerd.toml");
    // Passive peers: no connection attempts, so every peer event comes from the reload. (Active ones
    // here make an event per attempt, and an attempt refused by this host is retried within 0.1 s.)
    let base = "[[peers]]\naddress = \"192.0.2.2\"\npeer_asn = 65002\nport = 1\npassive = true\n\n[[announcements]]\nprefix = \"203.0.113.1/32\"\n";
    write(&cfg, base);
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let mut c = d.client().await;
    assert_eq!(prefixes(&mut c, "").await, vec!["203.0.113.1/32@config-file"]);
    let mut w = c.watch(pb::WatchRequest { initial_state: false }).await.unwrap().into_inner();

    // Add a peer and change the announcement; the existing peer is unchanged.
    write(
        &cfg,
        &format!("{base}\n[[peers]]\naddress = \"192.0.2.3\"\npeer_asn = 65003\nport = 1\npassive = true\n")
            .replace("203.0.113.1/32", "203.0.113.9/32"),
    );
    d.signal(libc::SIGHUP);
    // The reload applies announcements and peers one after the other: wait for both (seen once in CI:
    // the new prefix listed while the new peer was not yet).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let peers = c.list_peers(pb::ListPeersRequest {}).await.unwrap().into_inner().peers;
        if prefixes(&mut c, "").await == vec!["203.0.113.9/32@config-file"] && peers.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "reload not applied ({} peers):\n{}", peers.len(), d.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Events since the reload: nothing about the unchanged peer 192.0.2.2.
    let mut seen = Vec::new();
    while let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_millis(500), w.next()).await {
        if let Some(pb::watch_event::Event::Peer(p)) = ev.event {
            seen.push(p.address);
        }
    }
    assert!(!seen.contains(&"192.0.2.2".to_string()), "unchanged peer flapped: {seen:?}");

    // A broken file is rejected and the last good state stays.
    write(&cfg, "[[peers]]\naddress = \"192.0.2.2\"\npeer_asn = 0\n");
    d.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("config reload rejected") {
        assert!(Instant::now() < deadline, "no rejection logged:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(d.log().contains("peers[0].peer_asn"), "the log names the field:\n{}", d.log());
    assert_eq!(c.list_peers(pb::ListPeersRequest {}).await.unwrap().into_inner().peers.len(), 2);
    assert_eq!(prefixes(&mut c, "").await, vec!["203.0.113.9/32@config-file"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_removes_the_socket() {
    let mut d = Daemon::start(&[]);
    d.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(st) = d.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}\n{}", d.log());
            break;
        }
        assert!(Instant::now() < deadline, "speakerd did not exit on SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!d.socket.exists());
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_the_peer_span() {
    let d = Daemon::start(&["--log-format", "json"]);
    let mut c = d.client().await;
    c.add_peer(pb::AddPeerRequest { peer: Some(pb::PeerConfig { name: "r9".into(), ..peer("192.0.2.9", 65009) }) })
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("session state") {
        assert!(Instant::now() < deadline, "{}", d.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut saw_peer_span = false;
    for line in d.log().lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v["message"] == "session state" {
            assert_eq!(v["span"]["peer"], "192.0.2.9", "{line}");
            assert_eq!(v["span"]["peer_name"], "r9", "{line}");
            saw_peer_span = true;
        }
    }
    assert!(saw_peer_span);
}

#[tokio::test]
async fn layer2_arguments_are_validated() {
    let d = Daemon::start(&["--no-gossip", "--node-name", "solo"]);
    let mut c = d.client().await;
    let l2 = |ip: &str| pb::L2Announcement { ip: ip.into(), ..Default::default() };
    for (bad, field) in [
        (l2("not-an-ip"), "announcements[0].ip"),
        (l2("224.0.0.1"), "announcements[0].ip"),
        (pb::L2Announcement { nodes: vec![" ".into()], ..l2("192.0.2.50") }, "announcements[0].nodes"),
        (pb::L2Announcement { interfaces: vec!["a/b".into()], ..l2("192.0.2.50") }, "announcements[0].interfaces"),
        (
            pb::L2Announcement {
                nodes: vec!["solo".into()],
                node_weights: [("other".to_string(), 10)].into(),
                ..l2("192.0.2.50")
            },
            "announcements[0].node_weights",
        ),
    ] {
        let e = c
            .set_l2_announcements(pb::SetL2AnnouncementsRequest { owner: "t".into(), announcements: vec![bad] })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(field), "{}", e.message());
    }
    let e = c.get_l2_owner(pb::GetL2OwnerRequest { ip: "192.0.2.50".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let r = c
        .set_l2_announcements(pb::SetL2AnnouncementsRequest {
            owner: "t".into(),
            announcements: vec![l2("192.0.2.50"), l2("2001:db8::50")],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.added, r.changed, r.removed), (2, 0, 0));
    // Candidates empty: this node alone owns it (the election runs asynchronously: poll).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let o = c.get_l2_owner(pb::GetL2OwnerRequest { ip: "192.0.2.50".into() }).await.unwrap().into_inner();
        if o.node == "solo" {
            break;
        }
        assert!(Instant::now() < deadline, "owner still {:?}", o.node);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = c.list_members(pb::ListMembersRequest {}).await.unwrap().into_inner();
    assert_eq!((m.members.len(), m.members[0].name.as_str(), m.quorate), (1, "solo", true));
    let e = c.set_membership_seeds(pb::SetMembershipSeedsRequest { seeds: vec!["nope".into()] }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e =
        c.set_membership_seeds(pb::SetMembershipSeedsRequest { seeds: vec!["192.0.2.9".into()] }).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "gossip is off: {e:?}");
}

/// UpdateL2Announcements: an owner's set edited by changes (k8s-bridge's incremental pushes), other
/// owners untouched, bad fields named as the request names them.
#[tokio::test]
async fn layer2_sets_are_edited_by_changes() {
    let d = Daemon::start(&["--no-gossip", "--node-name", "solo"]);
    let mut c = d.client().await;
    let l2 = |ip: &str| pb::L2Announcement { ip: ip.into(), ..Default::default() };
    let update = |announce: Vec<pb::L2Announcement>, withdraw: Vec<&str>| pb::UpdateL2AnnouncementsRequest {
        owner: "t".into(),
        announce,
        withdraw: withdraw.into_iter().map(str::to_string).collect(),
    };
    c.set_l2_announcements(pb::SetL2AnnouncementsRequest {
        owner: "other".into(),
        announcements: vec![l2("192.0.2.9")],
    })
    .await
    .unwrap();
    let r =
        c.update_l2_announcements(update(vec![l2("192.0.2.1"), l2("192.0.2.2")], vec![])).await.unwrap().into_inner();
    assert_eq!((r.added, r.changed, r.removed), (2, 0, 0));
    let changed = pb::L2Announcement { interfaces: vec!["eth0".into()], ..l2("192.0.2.2") };
    let r = c
        .update_l2_announcements(update(vec![changed, l2("192.0.2.3")], vec!["192.0.2.1", "192.0.2.77"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.added, r.changed, r.removed), (1, 1, 1), "an IP the owner does not have is ignored");
    let list =
        c.list_l2_announcements(pb::ListL2AnnouncementsRequest { owner: String::new() }).await.unwrap().into_inner();
    let got: Vec<(String, String, Vec<String>)> =
        list.announcements.iter().map(|a| (a.ip.clone(), a.owner.clone(), a.interfaces.clone())).collect();
    assert_eq!(
        got,
        vec![
            ("192.0.2.2".into(), "t".into(), vec!["eth0".to_string()]),
            ("192.0.2.3".into(), "t".into(), vec![]),
            ("192.0.2.9".into(), "other".into(), vec![]),
        ]
    );
    let r = c.update_l2_announcements(update(vec![], vec![])).await.unwrap().into_inner();
    assert_eq!((r.added, r.changed, r.removed), (0, 0, 0), "an empty update changes nothing");
    for (bad, field) in
        [(update(vec![l2("nope")], vec![]), "announce[0].ip"), (update(vec![], vec!["192.0.2.2", "x"]), "withdraw[1]")]
    {
        let e = c.update_l2_announcements(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().starts_with(field), "{}", e.message());
    }
}

#[test]
fn plaintext_tcp_api_is_refused_off_loopback() {
    let dir = std::env::temp_dir().join(format!("speakerd-tcp-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_speakerd"))
        .args([
            "--socket",
            dir.join("s.sock").to_str().unwrap(),
            "--no-bgp-listen",
            "--no-gossip",
            "--grpc-tcp",
            "0.0.0.0:0",
        ])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plaintext gRPC only on loopback"), "{err}");
}

#[tokio::test]
async fn tcp_api_on_loopback_serves_the_same_service() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let d = Daemon::start(&["--grpc-tcp", &format!("127.0.0.1:{port}")]);
    wait_listening(port);
    let mut c = SpeakerClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap();
    c.announce(pb::AnnounceRequest { owner: "tcp".into(), announcements: vec![ann("203.0.113.77/32")] }).await.unwrap();
    let mut u = d.client().await;
    assert_eq!(prefixes(&mut u, "tcp").await, vec!["203.0.113.77/32@tcp"], "one state behind both listeners");
}

/// A CA, a server certificate for 127.0.0.1/localhost, a client certificate from the CA and one from
/// another CA, written as PEM files: (dir with ca.pem, server.pem, server.key, client.pem, client.key,
/// rogue.pem, rogue.key).
fn pki(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let new_ca = |name: &str| {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(rcgen::DnType::CommonName, name);
        let k = KeyPair::generate().unwrap();
        let cert = p.self_signed(&k).unwrap();
        (cert, Issuer::new(p, k))
    };
    let (ca_cert, ca) = new_ca("speakerd test CA");
    let (_, rogue_ca) = new_ca("rogue CA");
    let leaf = |names: Vec<String>, issuer: &Issuer<'_, KeyPair>, file: &str| {
        let k = KeyPair::generate().unwrap();
        let c = CertificateParams::new(names).unwrap().signed_by(&k, issuer).unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), c.pem()).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), k.serialize_pem()).unwrap();
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    leaf(vec!["localhost".into(), "127.0.0.1".into()], &ca, "server");
    leaf(vec!["client".into()], &ca, "client");
    leaf(vec!["rogue".into()], &rogue_ca, "rogue");
}

/// Waits until something listens on 127.0.0.1:port (the TCP API starts just after the Unix socket).
fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn tls_client(port: u16, dir: &Path, identity: Option<&str>) -> Result<SpeakerClient<Channel>, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let mut t = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("ca.pem"))).domain_name("localhost");
    if let Some(id) = identity {
        t = t.identity(Identity::from_pem(read(&format!("{id}.pem")), read(&format!("{id}.key"))));
    }
    let ch =
        Endpoint::from_shared(format!("https://127.0.0.1:{port}")).unwrap().tls_config(t).map_err(|e| e.to_string())?;
    ch.connect().await.map(SpeakerClient::new).map_err(|e| format!("{e:?}"))
}

/// A call's outcome: Ok, or the error's text (connect or call).
async fn try_list(c: Result<SpeakerClient<Channel>, String>) -> Result<(), String> {
    let mut c = c?;
    c.list_peers(pb::ListPeersRequest {}).await.map(|_| ()).map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn tcp_api_with_tls_and_mutual_tls() {
    let dir = std::env::temp_dir().join(format!("speakerd-pki-{}", std::process::id()));
    pki(&dir);
    let p = |f: &str| dir.join(f).display().to_string();
    let free = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    // TLS, no client certificates: a client that trusts the CA works; plaintext gets nothing.
    let port = free();
    let _d = Daemon::start(&[
        "--grpc-tcp",
        &format!("127.0.0.1:{port}"),
        "--grpc-tls-cert",
        &p("server.pem"),
        "--grpc-tls-key",
        &p("server.key"),
    ]);
    wait_listening(port);
    try_list(tls_client(port, &dir, None).await).await.expect("TLS client");
    let plain =
        try_list(SpeakerClient::connect(format!("http://127.0.0.1:{port}")).await.map_err(|e| format!("{e:?}"))).await;
    assert!(plain.is_err(), "plaintext against the TLS listener must fail");

    // Mutual TLS: no certificate and a certificate from another CA are refused; ours works.
    let port = free();
    let _m = Daemon::start(&[
        "--grpc-tcp",
        &format!("127.0.0.1:{port}"),
        "--grpc-tls-cert",
        &p("server.pem"),
        "--grpc-tls-key",
        &p("server.key"),
        "--grpc-tls-client-ca",
        &p("ca.pem"),
    ]);
    wait_listening(port);
    try_list(tls_client(port, &dir, Some("client")).await).await.expect("client with a certificate from the CA");
    let none = try_list(tls_client(port, &dir, None).await).await;
    assert!(none.is_err(), "a client without a certificate must be refused");
    let rogue = try_list(tls_client(port, &dir, Some("rogue")).await).await;
    assert!(rogue.is_err(), "a client certificate from another CA must be refused");
    let plain =
        try_list(SpeakerClient::connect(format!("http://127.0.0.1:{port}")).await.map_err(|e| format!("{e:?}"))).await;
    assert!(plain.is_err(), "plaintext against the mutual-TLS listener must fail");

    // speakerctl speaks it too.
    let ctl = |extra: &[&str]| {
        let mut args = vec![
            "--addr".to_string(),
            format!("https://127.0.0.1:{port}"),
            "--tls-ca".into(),
            p("ca.pem"),
            "--tls-server-name".into(),
            "localhost".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args.extend(["peer".to_string(), "list".to_string()]);
        Command::new(env!("CARGO_BIN_EXE_speakerd").replace("speakerd", "speakerctl")).args(&args).output().unwrap()
    };
    let ok = ctl(&["--tls-cert", &p("client.pem"), "--tls-key", &p("client.key")]);
    assert!(ok.status.success(), "speakerctl with a client certificate: {}", String::from_utf8_lossy(&ok.stderr));
    let refused = ctl(&[]);
    assert!(!refused.status.success(), "speakerctl without a client certificate must fail");

    // A non-loopback address is allowed with TLS (and refused in plaintext, tested above).
    let _ = std::fs::remove_dir_all(&dir);
}

/// A default route in the config file is refused on reload (the last good state stays, the log names
/// the flag) unless speakerd runs with --allow-default-route.
#[tokio::test]
async fn config_file_default_route_needs_the_flag() {
    let dir = std::env::temp_dir().join(format!("speakerd-dflt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("speakerd.toml");
    write(&cfg, "[[announcements]]\nprefix = \"203.0.113.1/32\"\n");
    let d = Daemon::start(&["--config", cfg.to_str().unwrap()]);
    let mut c = d.client().await;
    assert_eq!(prefixes(&mut c, "").await, vec!["203.0.113.1/32@config-file"]);
    write(&cfg, "[[announcements]]\nprefix = \"0.0.0.0/0\"\n");
    d.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("--allow-default-route") {
        assert!(Instant::now() < deadline, "no refusal logged:\n{}", d.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(prefixes(&mut c, "").await, vec!["203.0.113.1/32@config-file"]);
    drop(c);
    drop(d);
    let d = Daemon::start(&["--config", cfg.to_str().unwrap(), "--allow-default-route"]);
    let mut c = d.client().await;
    assert_eq!(prefixes(&mut c, "").await, vec!["0.0.0.0/0@config-file"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// SetAnnouncements and Announce are decoded in place (one announcement at a time from the request's
/// bytes): the results, codes and messages are those of the generated decoding, and a refused call
/// changes nothing, also when the bad entry comes after 40,000 good ones.
#[tokio::test]
async fn bulk_calls_decoded_in_place_keep_results_codes_and_messages() {
    let d = Daemon::start(&[]);
    let mut c = d.client().await;
    let set = |anns: Vec<pb::Announcement>| pb::SetAnnouncementsRequest { owner: "bulk".into(), announcements: anns };
    let many = |n: u32| -> Vec<pb::Announcement> {
        (0..n).map(|i| ann(&format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255))).collect()
    };
    let r = c.set_announcements(set(many(50_000))).await.unwrap().into_inner();
    assert_eq!((r.added, r.changed, r.removed), (50_000, 0, 0));
    let mut bad = many(50_000);
    bad[40_000] = ann("10.0.156.64/26x");
    let e = c.set_announcements(set(bad)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(e.message().starts_with("announcements[40000].prefix"), "{}", e.message());
    let mut default = many(10);
    default[3] = ann("0.0.0.0/0");
    let e = c.set_announcements(set(default)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("announcements[3].prefix") && e.message().contains("default route"),
        "{}",
        e.message()
    );
    let e = c.set_announcements(set(many(1_000_001))).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert_eq!(e.message(), "1000001 announcements in one call: at most 1000000");
    let e = c.announce(pb::AnnounceRequest { owner: "bad owner".into(), announcements: many(3) }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert_eq!(prefixes(&mut c, "bulk").await.len(), 50_000, "refused calls changed nothing");
    // Half of them again: 25,000 removed; Announce adds to the set.
    let r = c.set_announcements(set(many(25_000))).await.unwrap().into_inner();
    assert_eq!((r.added, r.changed, r.removed), (0, 0, 25_000));
    c.announce(pb::AnnounceRequest { owner: "bulk".into(), announcements: vec![ann("192.0.2.7/32")] }).await.unwrap();
    assert_eq!(prefixes(&mut c, "bulk").await.len(), 25_001);
}
