//! The speakerctl binary against an in-process fake speakerd on a Unix socket: the socket connector, the
//! requests the flags turn into, the output formats and the exit codes (0 ok, 1 gRPC error, 2 unreachable).
//!
//! The fake answers from fixed data and records every request it gets; it knows nothing of BGP.

use std::path::PathBuf;
use std::pin::Pin;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use speaker_api::v1::speaker_server::{Speaker, SpeakerServer};
use speaker_api::v1::*;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

#[derive(Clone, Default)]
struct FakeSpeakerd {
    requests: Arc<Mutex<Vec<String>>>,
}

impl FakeSpeakerd {
    fn record(&self, request: impl std::fmt::Debug) {
        self.requests.lock().unwrap().push(format!("{request:?}"));
    }
}

fn established(address: &str) -> Peer {
    Peer {
        config: Some(PeerConfig {
            address: address.into(),
            name: "tor1".into(),
            peer_asn: 65001,
            ..Default::default()
        }),
        state: Some(PeerState {
            state: SessionState::Established as i32,
            state_secs: 3723,
            negotiated: Some(Negotiated { hold_time_secs: 90, ..Default::default() }),
            counts: vec![FamilyCounts { family: AddressFamily::Ipv4Unicast as i32, received: 7, advertised: 2 }],
            established_count: 1,
            ..Default::default()
        }),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Status>> + Send>>;

#[tonic::async_trait]
impl Speaker for FakeSpeakerd {
    async fn set_peers(&self, _: Request<SetPeersRequest>) -> Result<Response<SetPeersResponse>, Status> {
        Err(Status::unimplemented("not used by speakerctl"))
    }
    async fn add_peer(&self, r: Request<AddPeerRequest>) -> Result<Response<AddPeerResponse>, Status> {
        let r = r.into_inner();
        self.record(&r);
        let config = r.peer.unwrap_or_default();
        if config.address == "192.0.2.99" {
            return Err(Status::already_exists("peer 192.0.2.99 is already configured"));
        }
        Ok(Response::new(AddPeerResponse { peer: Some(Peer { config: Some(config), state: None }) }))
    }
    async fn update_peer(&self, r: Request<UpdatePeerRequest>) -> Result<Response<UpdatePeerResponse>, Status> {
        let r = r.into_inner();
        self.record(&r);
        Ok(Response::new(UpdatePeerResponse { peer: Some(Peer { config: r.peer, state: None }), reset: true }))
    }
    async fn delete_peer(&self, r: Request<DeletePeerRequest>) -> Result<Response<DeletePeerResponse>, Status> {
        self.record(r.into_inner());
        Ok(Response::new(DeletePeerResponse {}))
    }
    async fn get_peer(&self, r: Request<GetPeerRequest>) -> Result<Response<GetPeerResponse>, Status> {
        let r = r.into_inner();
        self.record(&r);
        if r.peer == "192.0.2.1" || r.peer == "tor1" {
            Ok(Response::new(GetPeerResponse { peer: Some(established("192.0.2.1")) }))
        } else {
            Err(Status::not_found(format!("peer {} is not configured", r.peer)))
        }
    }
    async fn list_peers(&self, r: Request<ListPeersRequest>) -> Result<Response<ListPeersResponse>, Status> {
        self.record(r.into_inner());
        Ok(Response::new(ListPeersResponse { peers: vec![established("192.0.2.1")] }))
    }
    async fn reset_peer(&self, r: Request<ResetPeerRequest>) -> Result<Response<ResetPeerResponse>, Status> {
        self.record(r.into_inner());
        Ok(Response::new(ResetPeerResponse {}))
    }
    async fn announce(&self, r: Request<AnnounceRequest>) -> Result<Response<AnnounceResponse>, Status> {
        self.record(r.into_inner());
        Ok(Response::new(AnnounceResponse {}))
    }
    async fn withdraw(&self, r: Request<WithdrawRequest>) -> Result<Response<WithdrawResponse>, Status> {
        self.record(r.into_inner());
        Ok(Response::new(WithdrawResponse { removed: 1 }))
    }
    async fn set_announcements(
        &self,
        r: Request<SetAnnouncementsRequest>,
    ) -> Result<Response<SetAnnouncementsResponse>, Status> {
        self.record(r.into_inner());
        Err(Status::unimplemented("not used by speakerctl"))
    }
    async fn list_announcements(
        &self,
        r: Request<ListAnnouncementsRequest>,
    ) -> Result<Response<ListAnnouncementsResponse>, Status> {
        self.record(r.into_inner());
        Ok(Response::new(ListAnnouncementsResponse {
            announcements: vec![Announcement {
                prefix: "203.0.113.10/32".into(),
                owner: "speakerctl".into(),
                communities: vec!["65000:100".into()],
                ..Default::default()
            }],
        }))
    }

    // Layer 2 calls are not exercised by these tests; the fake says so if one is made.
    async fn set_l2_announcements(
        &self,
        _: Request<speaker_api::v1::SetL2AnnouncementsRequest>,
    ) -> Result<Response<speaker_api::v1::SetL2AnnouncementsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn update_l2_announcements(
        &self,
        r: Request<UpdateL2AnnouncementsRequest>,
    ) -> Result<Response<UpdateL2AnnouncementsResponse>, Status> {
        let r = r.into_inner();
        self.record(&r);
        Ok(Response::new(UpdateL2AnnouncementsResponse {
            added: r.announce.len() as u32,
            changed: 0,
            removed: r.withdraw.len() as u32,
        }))
    }
    async fn list_l2_announcements(
        &self,
        _: Request<speaker_api::v1::ListL2AnnouncementsRequest>,
    ) -> Result<Response<speaker_api::v1::ListL2AnnouncementsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn get_l2_owner(
        &self,
        _: Request<speaker_api::v1::GetL2OwnerRequest>,
    ) -> Result<Response<speaker_api::v1::GetL2OwnerResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn list_members(
        &self,
        _: Request<speaker_api::v1::ListMembersRequest>,
    ) -> Result<Response<speaker_api::v1::ListMembersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }
    async fn set_membership_seeds(
        &self,
        _: Request<speaker_api::v1::SetMembershipSeedsRequest>,
    ) -> Result<Response<speaker_api::v1::SetMembershipSeedsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, r: Request<WatchRequest>) -> Result<Response<WatchStream>, Status> {
        self.record(r.into_inner());
        let events = vec![
            Ok(WatchEvent {
                timestamp_ms: 1000,
                event: Some(watch_event::Event::Peer(PeerEvent {
                    address: "192.0.2.1".into(),
                    old_state: SessionState::OpenConfirm as i32,
                    new_state: SessionState::Established as i32,
                    ..Default::default()
                })),
            }),
            Ok(WatchEvent { timestamp_ms: 2000, event: Some(watch_event::Event::Synced(true)) }),
        ];
        Ok(Response::new(Box::pin(tokio_stream::iter(events))))
    }
}

/// A fake speakerd serving on a fresh socket until dropped; the socket file is removed on drop.
struct Server {
    socket: PathBuf,
    fake: FakeSpeakerd,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let socket = std::env::temp_dir().join(format!("speakerctl-test-{}-{n}.sock", std::process::id()));
        let _ = std::fs::remove_file(&socket);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let fake = FakeSpeakerd::default();
        let listener = runtime.block_on(async { tokio::net::UnixListener::bind(&socket) }).unwrap();
        let service = SpeakerServer::new(fake.clone());
        runtime.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(UnixListenerStream::new(listener))
                .await
        });
        Self { socket, fake, _runtime: runtime }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_speakerctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .env_remove("SPEAKERD_SOCKET")
            .output()
            .unwrap()
    }

    fn requests(&self) -> Vec<String> {
        self.fake.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn peer_list_prints_a_table_and_json() {
    let server = Server::start();
    let out = server.run(&["peer", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("Peer "), "{text}");
    assert!(text.contains("Up/Down"), "{text}");
    let row = text.lines().nth(1).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["192.0.2.1", "tor1", "65001", "01:02:03", "Established", "7", "2"]
    );

    let out = server.run(&["peer", "list", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["address"], "192.0.2.1");
    assert_eq!(v[0]["state"], "established");
    assert_eq!(v[0]["received"], 7);
    assert_eq!(v[0]["config"]["peer_asn"], 65001);
    assert_eq!(v[0]["negotiated"]["hold_time_secs"], 90);
}

#[test]
fn peer_add_sends_the_flags_as_a_peer_config() {
    let server = Server::start();
    let out = server.run(&["peer", "add", "192.0.2.7", "--asn", "65007", "--passive", "--family", "ipv4"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "peer 192.0.2.7 added\n");
    let expected = AddPeerRequest {
        peer: Some(PeerConfig {
            address: "192.0.2.7".into(),
            peer_asn: 65007,
            passive: true,
            families: vec![AddressFamily::Ipv4Unicast as i32],
            owner: "speakerctl".into(),
            ..Default::default()
        }),
    };
    assert_eq!(server.requests(), [format!("{expected:?}")]);
}

#[test]
fn grpc_errors_print_code_and_message_and_exit_1() {
    let server = Server::start();
    let out = server.run(&["peer", "show", "192.0.2.50"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr(&out), "error: Some requested entity was not found: peer 192.0.2.50 is not configured\n");
    assert!(out.stdout.is_empty());

    let out = server.run(&["peer", "add", "192.0.2.99", "--asn", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: Some entity that we attempted to create already exists: "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn unreachable_socket_exits_2_naming_the_socket() {
    let socket = std::env::temp_dir().join(format!("speakerctl-test-{}-absent.sock", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_speakerctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["peer", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&socket.display().to_string()), "{}", stderr(&out));

    // The default socket comes from SPEAKERD_SOCKET.
    let out = Command::new(env!("CARGO_BIN_EXE_speakerctl"))
        .env("SPEAKERD_SOCKET", &socket)
        .args(["peer", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains(&socket.display().to_string()), "{}", stderr(&out));
}

#[test]
fn speakerd_socket_env_is_the_default_socket() {
    let server = Server::start();
    let out = Command::new(env!("CARGO_BIN_EXE_speakerctl"))
        .env("SPEAKERD_SOCKET", &server.socket)
        .args(["-o", "json", "announce", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["prefix"], "203.0.113.10/32");
    assert_eq!(v[0]["communities"][0], "65000:100");
}

#[test]
fn announce_and_withdraw_use_owner_speakerctl() {
    let server = Server::start();
    let out = server.run(&["announce", "add", "203.0.113.10/32", "--community", "65000:100", "--med", "5"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.run(&["announce", "withdraw", "203.0.113.10/32", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(), serde_json::json!({"removed": 1}));
    let requests = server.requests();
    assert!(requests[0].contains("owner: \"speakerctl\"") && requests[0].contains("med: Some(5)"), "{requests:?}");
    assert!(requests[1].starts_with("WithdrawRequest { owner: \"speakerctl\""), "{requests:?}");
}

/// `l2 add` and `l2 withdraw` are one UpdateL2Announcements each (no read-modify-write of the set).
#[test]
fn l2_add_and_withdraw_send_one_update_each() {
    let server = Server::start();
    let out = server.run(&["l2", "add", "192.0.2.5", "--node", "a", "--node", "b", "--prefer", "b=10"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = server.run(&["l2", "withdraw", "192.0.2.5", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!({"added": 0, "changed": 0, "removed": 1})
    );
    let add = UpdateL2AnnouncementsRequest {
        owner: "speakerctl".into(),
        announce: vec![L2Announcement {
            ip: "192.0.2.5".into(),
            nodes: vec!["a".into(), "b".into()],
            node_weights: [("b".to_string(), 10)].into(),
            ..Default::default()
        }],
        withdraw: vec![],
    };
    let withdraw = UpdateL2AnnouncementsRequest {
        owner: "speakerctl".into(),
        announce: vec![],
        withdraw: vec!["192.0.2.5".into()],
    };
    assert_eq!(server.requests(), [format!("{add:?}"), format!("{withdraw:?}")]);
    let out = server.run(&["l2", "add", "192.0.2.5", "--prefer", "b"]);
    assert!(!out.status.success() && stderr(&out).contains("NODE=WEIGHT"), "{}", stderr(&out));
}

#[test]
fn watch_prints_ndjson_until_the_stream_ends() {
    let server = Server::start();
    let out = server.run(&["watch", "--initial", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<serde_json::Value> = stdout(&out).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["peer"]["new_state"], "established");
    assert_eq!(lines[1], serde_json::json!({"timestamp_ms": 2000, "synced": true}));
    assert_eq!(server.requests(), [format!("{:?}", WatchRequest { initial_state: true })]);
}

#[test]
fn completions_need_no_server() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_speakerctl"))
            .args(["--socket", "/nonexistent.sock", "completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        assert!(stdout(&out).contains("speakerctl"), "{shell}");
    }
}
