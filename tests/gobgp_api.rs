//! The GoBGP v3 compatible API (`--gobgp-api`, service `apipb.GobgpApi`, docs/GOBGP_API.md).
//!
//! - `gobgp_cli_drives_speakerd_with_bird` (netns): the Debian `gobgp` CLI (3.x) against speakerd with
//!   a real BIRD peer: every command's output is checked, the routes are checked at BIRD, and a Rust
//!   client (from our proto) run inside the namespace streams 1000 paths that BIRD must receive.
//! - `rust_client_without_peer` (no netns, no root): a tonic client of our proto does what the CLI does,
//!   plus AddPathStream, WatchEvent and UUIDs; speaker.v1 sees the same peers and the k8s-bridge set is
//!   never touched.
//! - `bad_arguments_and_unserved_rpcs` (no netns): INVALID_ARGUMENT with the field named, UNIMPLEMENTED
//!   with the reason, FAILED_PRECONDITION for other owners' peers.

mod common;

use common::*;
use speaker_api::gobgp::apipb as api;
use speaker_api::gobgp::apipb::gobgp_api_client::GobgpApiClient;
use speaker_api::gobgp::type_url;
use speaker_api::v1 as pb;
use speaker_api::v1::speaker_client::SpeakerClient;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::transport::Channel;

const T: Duration = Duration::from_secs(30);

// ---- helpers: messages --------------------------------------------------------------------------

fn any<M: prost::Message>(name: &str, m: &M) -> prost_types::Any {
    prost_types::Any { type_url: type_url(name), value: m.encode_to_vec() }
}

fn fam(v6: bool) -> api::Family {
    api::Family { afi: if v6 { 2 } else { 1 }, safi: 1 }
}

/// A path as a GoBGP client builds one: NLRI, ORIGIN, next hop (NEXT_HOP or MP_REACH), communities.
fn path(prefix: &str, communities: &[u32]) -> api::Path {
    let (addr, len) = prefix.split_once('/').unwrap();
    let v6 = addr.contains(':');
    let nlri = any("IPAddressPrefix", &api::IpAddressPrefix { prefix: addr.into(), prefix_len: len.parse().unwrap() });
    let mut pattrs = vec![any("OriginAttribute", &api::OriginAttribute { origin: 0 })];
    if v6 {
        pattrs.push(any(
            "MpReachNLRIAttribute",
            &api::MpReachNlriAttribute {
                family: Some(fam(true)),
                next_hops: vec!["::".into()],
                nlris: vec![nlri.clone()],
            },
        ));
    } else {
        pattrs.push(any("NextHopAttribute", &api::NextHopAttribute { next_hop: "0.0.0.0".into() }));
    }
    if !communities.is_empty() {
        pattrs.push(any("CommunitiesAttribute", &api::CommunitiesAttribute { communities: communities.to_vec() }));
    }
    api::Path { nlri: Some(nlri), pattrs, family: Some(fam(v6)), ..Default::default() }
}

fn prefix_of(p: &api::Path) -> String {
    let a = p.nlri.as_ref().unwrap();
    assert_eq!(a.type_url, type_url("IPAddressPrefix"));
    let n: api::IpAddressPrefix = prost::Message::decode(a.value.as_slice()).unwrap();
    format!("{}/{}", n.prefix, n.prefix_len)
}

fn communities_of(p: &api::Path) -> Vec<u32> {
    p.pattrs
        .iter()
        .filter(|a| a.type_url == type_url("CommunitiesAttribute"))
        .flat_map(|a| <api::CommunitiesAttribute as prost::Message>::decode(a.value.as_slice()).unwrap().communities)
        .collect()
}

async fn list_path(c: &mut GobgpApiClient<Channel>, table: api::TableType, name: &str, v6: bool) -> Vec<api::Path> {
    let mut s = c
        .list_path(api::ListPathRequest {
            table_type: table as i32,
            name: name.into(),
            family: Some(fam(v6)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = vec![];
    while let Some(r) = s.message().await.unwrap() {
        out.extend(r.destination.unwrap().paths);
    }
    out
}

async fn list_peers(c: &mut GobgpApiClient<Channel>) -> Vec<api::Peer> {
    let mut s = c.list_peer(api::ListPeerRequest::default()).await.unwrap().into_inner();
    let mut out = vec![];
    while let Some(r) = s.message().await.unwrap() {
        out.push(r.peer.unwrap());
    }
    out
}

async fn v1_client(socket: PathBuf) -> SpeakerClient<Channel> {
    let ch =
        tonic::transport::Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_| {
                let s = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(s).await?))
                }
            }))
            .await
            .unwrap();
    SpeakerClient::new(ch)
}

async fn gobgp_client(port: u16) -> GobgpApiClient<Channel> {
    GobgpApiClient::connect(format!("http://127.0.0.1:{port}")).await.unwrap()
}

fn k8s_set() -> Vec<pb::Announcement> {
    vec![pb::Announcement {
        prefix: "198.51.100.0/24".into(),
        communities: vec!["64512:7".into()],
        ..Default::default()
    }]
}

async fn k8s_listed(v1: &mut SpeakerClient<Channel>) -> Vec<(String, Vec<String>, String)> {
    let r =
        v1.list_announcements(pb::ListAnnouncementsRequest { owner: "k8s-bridge".into() }).await.unwrap().into_inner();
    r.announcements.into_iter().map(|a| (a.prefix, a.communities, a.owner)).collect()
}

// ---- helpers: a speakerd outside any namespace ---------------------------------------------------

/// speakerd on the host, without BGP listener, gossip or root: for tests needing no real peer.
struct Local {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Local {
    fn start(name: &str) -> Local {
        let dir = std::env::temp_dir().join(format!("speakerd-gobgp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A free port: bound then released (speakerd binds it right after).
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let log = std::fs::File::create(dir.join("speakerd.log")).unwrap();
        let child = Command::new(bin_path("speakerd"))
            .args(["--socket", dir.join("s.sock").to_str().unwrap(), "--no-bgp-listen", "--no-gossip"])
            .args(["--gobgp-api", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let l = Local { child, dir, port };
        wait_until(Duration::from_secs(15), "speakerd's GoBGP API to accept connections", || {
            std::net::TcpStream::connect(("127.0.0.1", port)).map(|_| ()).map_err(|e| format!("{e}; log: {}", l.log()))
        });
        wait_until(Duration::from_secs(15), "speakerd's socket", || {
            if l.socket().exists() {
                Ok(())
            } else {
                Err("no socket".into())
            }
        });
        l
    }
    fn socket(&self) -> PathBuf {
        self.dir.join("s.sock")
    }
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("speakerd.log")).unwrap_or_default()
    }
    fn speakerctl(&self, args: &[&str]) -> String {
        let out = Command::new(bin_path("speakerctl")).arg("--socket").arg(self.socket()).args(args).output().unwrap();
        assert!(out.status.success(), "speakerctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- speakerd log ----\n{}", self.log());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

// ---- the Rust client, no peer --------------------------------------------------------------------

#[test]
fn rust_client_without_peer() {
    let sp = Local::start("client");
    rt().block_on(async {
        let mut c = gobgp_client(sp.port).await;
        let mut v1 = v1_client(sp.socket()).await;

        // The k8s-bridge set exists before anything is done over the GoBGP API.
        v1.set_announcements(pb::SetAnnouncementsRequest { owner: "k8s-bridge".into(), announcements: k8s_set() })
            .await
            .unwrap();
        let k8s_before = k8s_listed(&mut v1).await;
        assert_eq!(k8s_before.len(), 1);

        // Global: AS 0 until StartBgp, then what it set.
        let g = c.get_bgp(api::GetBgpRequest {}).await.unwrap().into_inner().global.unwrap();
        assert_eq!((g.asn, g.listen_port), (0, -1), "{g:?}");
        c.start_bgp(api::StartBgpRequest {
            global: Some(api::Global { asn: 65001, router_id: "10.0.0.1".into(), ..Default::default() }),
        })
        .await
        .unwrap();
        let g = c.get_bgp(api::GetBgpRequest {}).await.unwrap().into_inner().global.unwrap();
        assert_eq!((g.asn, g.router_id.as_str()), (65001, "10.0.0.1"));

        // Watch peers and the table (with the current content) before changing anything.
        let mut watch = c
            .watch_event(api::WatchEventRequest {
                peer: Some(api::watch_event_request::Peer {}),
                table: Some(api::watch_event_request::Table {
                    filters: vec![api::watch_event_request::table::Filter { r#type: 0, init: true }],
                }),
            })
            .await
            .unwrap()
            .into_inner();

        // A peer over GoBGP is listed by speaker.v1 with the GoBGP owner, and vice versa.
        let peer = api::Peer {
            conf: Some(api::PeerConf { neighbor_address: "192.0.2.1".into(), peer_asn: 65002, ..Default::default() }),
            ..Default::default()
        };
        c.add_peer(api::AddPeerRequest { peer: Some(peer) }).await.unwrap();
        let v1_peers = v1.list_peers(pb::ListPeersRequest {}).await.unwrap().into_inner().peers;
        let p = v1_peers.iter().find(|p| p.config.as_ref().unwrap().address == "192.0.2.1").expect("peer in ListPeers");
        assert_eq!(p.config.as_ref().unwrap().owner, "gobgp-api");
        assert_eq!(p.config.as_ref().unwrap().local_asn, 65001, "the StartBgp AS is the peer's default local AS");
        sp.speakerctl(&["peer", "add", "192.0.2.50", "--asn", "65050"]);
        let peers = list_peers(&mut c).await;
        let addrs: Vec<&str> = peers.iter().map(|p| p.state.as_ref().unwrap().neighbor_address.as_str()).collect();
        assert_eq!(addrs, ["192.0.2.1", "192.0.2.50"]);
        let st = peers[0].state.as_ref().unwrap();
        assert_eq!((st.peer_asn, st.local_asn, st.admin_state), (65002, 65001, 0));
        assert!(st.session_state >= 1 && st.session_state < 6, "{st:?}");
        assert!(peers[0].timers.as_ref().unwrap().state.as_ref().unwrap().uptime.is_none(), "never established");

        // AddPath with Any attributes: a UUID comes back; the path is listed with its attributes.
        let r = c
            .add_path(api::AddPathRequest {
                path: Some(path("10.0.0.0/24", &[(100 << 16) | 100])),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.uuid.len(), 16);
        let v4 = list_path(&mut c, api::TableType::Global, "", false).await;
        let listed: Vec<String> = v4.iter().map(prefix_of).collect();
        assert_eq!(listed, ["10.0.0.0/24", "198.51.100.0/24"], "the global RIB merges every owner");
        assert_eq!(communities_of(&v4[0]), [(100 << 16) | 100]);
        assert_eq!(v4[0].uuid, r.uuid);
        assert!(v4[0].best && v4[0].age.is_some());
        c.add_path(api::AddPathRequest { path: Some(path("2001:db8:1::/64", &[1])), ..Default::default() })
            .await
            .unwrap();
        let v6 = list_path(&mut c, api::TableType::Global, "", true).await;
        assert_eq!(v6.iter().map(prefix_of).collect::<Vec<_>>(), ["2001:db8:1::/64"]);

        // AddPathStream: 1000 paths in 10 messages.
        let msgs: Vec<api::AddPathStreamRequest> = (0..10)
            .map(|m| api::AddPathStreamRequest {
                paths: (0..100).map(|i| path(&format!("100.64.{}.{}/32", m, i), &[42])).collect(),
                ..Default::default()
            })
            .collect();
        c.add_path_stream(tokio_stream::iter(msgs)).await.unwrap();
        let t = c
            .get_table(api::GetTableRequest { table_type: 0, family: Some(fam(false)), name: String::new() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(t.num_destination, 1002, "1000 streamed + 10.0.0.0/24 + k8s-bridge's");
        assert_eq!(list_path(&mut c, api::TableType::Global, "", false).await.len(), 1002);

        // The watch saw: the initial table (k8s-bridge's path), the adds, and peer states.
        let mut seen_paths = std::collections::BTreeSet::new();
        let mut peer_events = 0;
        while seen_paths.len() < 1003 {
            let ev = tokio::time::timeout(T, watch.message()).await.expect("watch event").unwrap().unwrap();
            match ev.event.unwrap() {
                api::watch_event_response::Event::Table(t) => seen_paths.extend(t.paths.iter().map(prefix_of)),
                api::watch_event_response::Event::Peer(_) => peer_events += 1,
            }
        }
        assert!(
            seen_paths.contains("198.51.100.0/24")
                && seen_paths.contains("2001:db8:1::/64")
                && seen_paths.contains("100.64.9.99/32")
        );

        // The k8s-bridge set is untouched, and replacing it leaves the GoBGP paths alone.
        assert_eq!(k8s_listed(&mut v1).await, k8s_before);
        v1.set_announcements(pb::SetAnnouncementsRequest { owner: "k8s-bridge".into(), announcements: k8s_set() })
            .await
            .unwrap();
        let gobgp_owned = v1
            .list_announcements(pb::ListAnnouncementsRequest { owner: "gobgp-api".into() })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(gobgp_owned.announcements.len(), 1002, "1001 IPv4 + 1 IPv6");

        // DeletePath by UUID, then by path, then every IPv4 path of the owner (family only).
        c.delete_path(api::DeletePathRequest { uuid: r.uuid.clone(), ..Default::default() }).await.unwrap();
        let v4 = list_path(&mut c, api::TableType::Global, "", false).await;
        assert!(!v4.iter().any(|p| prefix_of(p) == "10.0.0.0/24"));
        c.delete_path(api::DeletePathRequest { path: Some(path("100.64.0.0/32", &[])), ..Default::default() })
            .await
            .unwrap();
        assert_eq!(list_path(&mut c, api::TableType::Global, "", false).await.len(), 1000);
        // A withdrawal shows up in the watch as an is_withdraw path.
        loop {
            let ev = tokio::time::timeout(T, watch.message()).await.expect("withdraw event").unwrap().unwrap();
            if let Some(api::watch_event_response::Event::Table(t)) = ev.event {
                if t.paths.iter().any(|p| p.is_withdraw && prefix_of(p) == "100.64.0.0/32") {
                    break;
                }
            }
        }
        c.delete_path(api::DeletePathRequest { family: Some(fam(false)), ..Default::default() }).await.unwrap();
        let v4: Vec<String> =
            list_path(&mut c, api::TableType::Global, "", false).await.iter().map(prefix_of).collect();
        assert_eq!(v4, ["198.51.100.0/24"], "only k8s-bridge's remains");
        assert_eq!(list_path(&mut c, api::TableType::Global, "", true).await.len(), 1, "IPv6 untouched");
        assert_eq!(k8s_listed(&mut v1).await, k8s_before);

        // Disable, enable, delete: each one a peer event of 192.0.2.1.
        c.disable_peer(api::DisablePeerRequest { address: "192.0.2.1".into(), communication: "maintenance".into() })
            .await
            .unwrap();
        let p = list_peers(&mut c)
            .await
            .into_iter()
            .find(|p| p.conf.as_ref().unwrap().neighbor_address == "192.0.2.1")
            .unwrap();
        assert_eq!(p.state.as_ref().unwrap().admin_state, api::peer_state::AdminState::Down as i32);
        assert!(p.conf.as_ref().unwrap().admin_down);
        c.enable_peer(api::EnablePeerRequest { address: "192.0.2.1".into() }).await.unwrap();
        let p = list_peers(&mut c)
            .await
            .into_iter()
            .find(|p| p.conf.as_ref().unwrap().neighbor_address == "192.0.2.1")
            .unwrap();
        assert_eq!(p.state.as_ref().unwrap().admin_state, api::peer_state::AdminState::Up as i32);
        c.delete_peer(api::DeletePeerRequest { address: "192.0.2.1".into(), ..Default::default() }).await.unwrap();
        loop {
            let ev = tokio::time::timeout(T, watch.message()).await.expect("peer deleted event").unwrap().unwrap();
            if let Some(api::watch_event_response::Event::Peer(p)) = ev.event {
                let st = p.peer.unwrap().state.unwrap();
                if st.neighbor_address == "192.0.2.1" && st.session_state == api::peer_state::SessionState::Idle as i32
                {
                    peer_events += 1;
                    break;
                }
            }
        }
        assert!(peer_events >= 1);
        let addrs: Vec<String> =
            list_peers(&mut c).await.iter().map(|p| p.conf.as_ref().unwrap().neighbor_address.clone()).collect();
        assert_eq!(addrs, ["192.0.2.50"]);

        // StopBgp: the GoBGP API's paths go, the others' stay; the global AS is forgotten.
        c.add_path(api::AddPathRequest { path: Some(path("10.9.0.0/16", &[])), ..Default::default() }).await.unwrap();
        c.stop_bgp(api::StopBgpRequest {}).await.unwrap();
        let all =
            v1.list_announcements(pb::ListAnnouncementsRequest { owner: String::new() }).await.unwrap().into_inner();
        let owners: std::collections::BTreeSet<String> = all.announcements.iter().map(|a| a.owner.clone()).collect();
        assert_eq!(owners.into_iter().collect::<Vec<_>>(), ["k8s-bridge"]);
        assert_eq!(c.get_bgp(api::GetBgpRequest {}).await.unwrap().into_inner().global.unwrap().asn, 0);
        assert_eq!(list_peers(&mut c).await.len(), 1, "speakerctl's peer stays");
    });
}

// ---- bad arguments -------------------------------------------------------------------------------

#[test]
fn bad_arguments_and_unserved_rpcs() {
    let sp = Local::start("bad");
    rt().block_on(async {
        let mut c = gobgp_client(sp.port).await;
        let add = |p: api::Path| api::AddPathRequest { path: Some(p), ..Default::default() };
        let mut bad_prefix = path("10.0.0.0/24", &[]);
        bad_prefix.nlri =
            Some(any("IPAddressPrefix", &api::IpAddressPrefix { prefix: "10.0.0.300".into(), prefix_len: 24 }));
        let mut host_bits = path("10.0.0.0/24", &[]);
        host_bits.nlri =
            Some(any("IPAddressPrefix", &api::IpAddressPrefix { prefix: "10.0.0.1".into(), prefix_len: 24 }));
        let mut evpn = path("10.0.0.0/24", &[]);
        evpn.family = Some(api::Family { afi: 25, safi: 70 });
        let mut no_nlri = path("10.0.0.0/24", &[]);
        no_nlri.nlri = None;
        let mut foreign_any = path("10.0.0.0/24", &[]);
        foreign_any.pattrs.push(prost_types::Any { type_url: "type.googleapis.com/other.Thing".into(), value: vec![] });
        let mut garbage = path("10.0.0.0/24", &[]);
        garbage.pattrs.push(prost_types::Any { type_url: type_url("CommunitiesAttribute"), value: vec![0x0a, 0xff] });
        let mut unknown_attr = path("10.0.0.0/24", &[]);
        unknown_attr.pattrs.push(any("ExtendedCommunitiesAttribute", &api::CommunitiesAttribute::default()));
        let cases: Vec<(api::AddPathRequest, &str)> = vec![
            (add(bad_prefix), "path.nlri"),
            (add(host_bits), "host bits set (did you mean 10.0.0.0/24?)"),
            (add(evpn), "path.family: afi 25 safi 70 (AFI_L2VPN SAFI_EVPN) is not served"),
            (add(no_nlri), "path.nlri: required"),
            (
                add(foreign_any),
                "path.pattrs[2]: type URL \"type.googleapis.com/other.Thing\" is not a GoBGP v3 message",
            ),
            (add(garbage), "path.pattrs[2]: cannot decode apipb.CommunitiesAttribute"),
            (add(unknown_attr), "path.pattrs[2]: apipb.ExtendedCommunitiesAttribute is not served"),
            (api::AddPathRequest { path: None, ..Default::default() }, "path: required"),
            (
                api::AddPathRequest { table_type: 4, vrf_id: "red".into(), path: Some(path("10.0.0.0/24", &[])) },
                "speakerd has no VRFs",
            ),
            // Default routes: refused unless speakerd runs with --allow-default-route (issue 18).
            (
                add(path("0.0.0.0/0", &[])),
                "0.0.0.0/0 is a default route: refused (start speakerd with --allow-default-route",
            ),
            (add(path("::/0", &[])), "::/0 is a default route: refused"),
        ];
        for (req, want) in cases {
            let e = c.add_path(req).await.expect_err(want);
            assert_eq!(e.code(), tonic::Code::InvalidArgument, "{want}: {e:?}");
            assert!(e.message().contains(want), "{:?} lacks {want:?}", e.message());
        }
        // The speaker.v1 API refuses a default route the same way.
        let mut v1 = v1_client(sp.socket()).await;
        let e = v1
            .announce(pb::AnnounceRequest {
                owner: "t".into(),
                announcements: vec![pb::Announcement { prefix: "0.0.0.0/0".into(), ..Default::default() }],
            })
            .await
            .unwrap_err();
        assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("--allow-default-route"), "{e:?}");
        // Nothing of that was added.
        assert!(list_path(&mut c, api::TableType::Global, "", false).await.is_empty());

        let e = c
            .list_path(api::ListPathRequest { family: Some(api::Family { afi: 1, safi: 128 }), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("family: afi 1 safi 128"), "{e:?}");
        let e = c.list_path(api::ListPathRequest::default()).await.unwrap_err();
        assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("family: required"), "{e:?}");
        let e = c
            .list_path(api::ListPathRequest {
                table_type: 2,
                name: "192.0.2.1".into(),
                family: Some(fam(false)),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::Unimplemented, "{e:?}");
        assert!(e.message().contains("ADJ_IN"), "{e:?}");

        // Peers: before StartBgp there is no AS to default to.
        let peer = |addr: &str| api::Peer {
            conf: Some(api::PeerConf { neighbor_address: addr.into(), peer_asn: 65002, ..Default::default() }),
            ..Default::default()
        };
        let e = c.add_peer(api::AddPeerRequest { peer: Some(peer("192.0.2.1")) }).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("StartBgp"), "{e:?}");
        let g = |asn, rid: &str| api::StartBgpRequest {
            global: Some(api::Global { asn, router_id: rid.into(), ..Default::default() }),
        };
        let e = c.start_bgp(g(65001, "not-an-ip")).await.unwrap_err();
        assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("global.router_id"), "{e:?}");
        let e = c.start_bgp(g(0, "10.0.0.1")).await.unwrap_err();
        assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("global.asn"), "{e:?}");
        c.start_bgp(g(65001, "10.0.0.1")).await.unwrap();
        c.start_bgp(g(65001, "10.0.0.1")).await.expect("the same global again is fine");
        let e = c.start_bgp(g(65009, "10.0.0.1")).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        let e = c.add_peer(api::AddPeerRequest { peer: Some(peer("not-an-ip")) }).await.unwrap_err();
        assert!(
            e.code() == tonic::Code::InvalidArgument && e.message().contains("peer.conf.neighbor_address"),
            "{e:?}"
        );
        let mut rr = peer("192.0.2.1");
        rr.route_reflector = Some(api::RouteReflector { route_reflector_client: true, ..Default::default() });
        let e = c.add_peer(api::AddPeerRequest { peer: Some(rr) }).await.unwrap_err();
        assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("peer.route_reflector"), "{e:?}");
        let mut evpn_peer = peer("192.0.2.1");
        evpn_peer.afi_safis = vec![api::AfiSafi {
            config: Some(api::AfiSafiConfig { family: Some(api::Family { afi: 25, safi: 70 }), enabled: true }),
            state: None,
        }];
        let e = c.add_peer(api::AddPeerRequest { peer: Some(evpn_peer) }).await.unwrap_err();
        assert!(e.code() == tonic::Code::InvalidArgument && e.message().contains("peer.afi_safis[0]"), "{e:?}");

        // Another owner's peer is listed but not deleted or updated over the GoBGP API.
        sp.speakerctl(&["peer", "add", "192.0.2.50", "--asn", "65050"]);
        let e = c
            .delete_peer(api::DeletePeerRequest { address: "192.0.2.50".into(), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e:?}");
        assert!(e.message().contains("\"speakerctl\""), "{e:?}");
        let e = c
            .delete_peer(api::DeletePeerRequest { address: "192.0.2.99".into(), ..Default::default() })
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound, "{e:?}");

        // Unserved RPCs: UNIMPLEMENTED with the reason (called raw: our proto does not declare them).
        let ch = Channel::from_shared(format!("http://127.0.0.1:{}", sp.port)).unwrap().connect().await.unwrap();
        for (method, why) in
            [("AddVrf", "VRFs"), ("ListPolicy", "routing policies"), ("AddRpki", "RPKI"), ("SetLogLevel", "RUST_LOG")]
        {
            let mut g = tonic::client::Grpc::new(ch.clone());
            g.ready().await.unwrap();
            let path = tonic::codegen::http::uri::PathAndQuery::try_from(format!("/apipb.GobgpApi/{method}")).unwrap();
            let e =
                g.unary(tonic::Request::new(()), path, tonic_prost::ProstCodec::<(), ()>::default()).await.unwrap_err();
            assert_eq!(e.code(), tonic::Code::Unimplemented, "{method}: {e:?}");
            assert!(
                e.message().contains(&format!("speakerd does not implement apipb.GobgpApi/{method}"))
                    && e.message().contains(why),
                "{e:?}"
            );
        }
    });
}

// ---- the gobgp CLI and a Rust client against speakerd with a BIRD peer ---------------------------

/// Runs `gobgp -p 50051 -u 127.0.0.1 ARGS` in the namespace; Ok(stdout) or Err(stderr+stdout).
fn gobgp(ns: &Netns, args: &[&str]) -> Result<String, String> {
    let mut argv = vec!["gobgp", "-p", "50051", "-u", "127.0.0.1"];
    argv.extend_from_slice(args);
    let out = ns.exec(&argv);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    // Shown with --nocapture: the transcript docs/GOBGP_API.md quotes.
    println!("$ gobgp {}\n{text}{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{}{}", String::from_utf8_lossy(&out.stderr), text))
    }
}

#[track_caller]
fn gobgp_ok(ns: &Netns, args: &[&str]) -> String {
    gobgp(ns, args).unwrap_or_else(|e| panic!("gobgp {args:?} failed: {e}"))
}

/// The whitespace-separated words of each line of a CLI table.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

/// Runs `f` on a thread that has entered network namespace `ns` (sockets it opens live there).
fn in_netns<R: Send + 'static>(ns: &Netns, f: impl FnOnce() -> R + Send + 'static) -> R {
    let path = Path::new("/var/run/netns").join(ns.name());
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // SAFETY: setns on a valid namespace fd changes only this thread's network namespace.
        let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn gobgp_cli_drives_speakerd_with_bird() {
    let Some(lab) = Lab::new_or_skip("gobgp_cli", &["gobgpd", "bird"]) else { return };
    let seg = lab.segment(&["spk", "bird"]);
    let (s, b) = (&seg.hosts[0], &seg.hosts[1]);
    let (b4, s4, s6) = (b.v4.to_string(), s.v4.to_string(), s.v6.to_string());
    // No --local-asn / --router-id: `gobgp global as … router-id …` sets them.
    let sp = Speakerd::builder(s).arg("--gobgp-api").arg("127.0.0.1:50051").start();
    let bird = Bird::start(b, PeerConfig::new(65002, b.v4).neighbor(Neighbor::new(&s4, 65001).passive()));

    // gobgp global: no AS yet; the listener speakerd has.
    let out = gobgp_ok(s, &["global"]);
    assert!(out.starts_with("AS:        0\nRouter-ID: "), "{out}");
    assert!(out.contains("Listening Port: 179, Addresses: ::"), "{out}");
    assert_eq!(gobgp_ok(s, &["global", "as", "65001", "router-id", "10.0.0.1"]), "");
    let out = gobgp_ok(s, &["global"]);
    assert_eq!(out, "AS:        65001\nRouter-ID: 10.0.0.1\nListening Port: 179, Addresses: ::\n");

    // No peers yet: the header only.
    let out = gobgp_ok(s, &["neighbor"]);
    assert_eq!(rows(&out), [["Peer", "AS", "Up/Down", "State", "|#Received", "Accepted"]], "{out}");

    // gobgp monitor neighbor ADDR in the background (GoBGP 3.10's CLI prints only the address given).
    let mon_log = s.state_dir("monitor").join("monitor.log");
    let _monitor = s.spawn(
        "gobgp monitor",
        &["gobgp", "-p", "50051", "-u", "127.0.0.1", "monitor", "neighbor", &b4],
        &mon_log,
        &[],
    );
    // Its connection is up before the peer is added (its first lines may still race the subscription,
    // so the checks below rest on the lines after `disable`, long after).
    sp.wait(T, "gobgp monitor connected", || {
        let out = s.run(&["ss", "-Htn", "state", "established", "( dport = :50051 )"])?;
        if out.trim().is_empty() {
            Err("no connection".into())
        } else {
            Ok(())
        }
    });
    let monitor = || std::fs::read_to_string(&mon_log).unwrap_or_default();

    // k8s-bridge's set, made before GoBGP paths exist, must survive everything below.
    sp.ctl(&["announce", "add", "198.51.100.0/24", "--owner", "k8s-bridge", "--community", "64512:7"]);
    let k8s_before = sp.ctl(&["announce", "list", "--owner", "k8s-bridge", "-o", "json"]);

    assert_eq!(gobgp_ok(s, &["neighbor", "add", &b4, "as", "65002"]), "");
    let line = sp.wait(T, "gobgp neighbor to show the BIRD session Establ", || {
        let out = gobgp_ok(s, &["neighbor"]);
        let r = rows(&out);
        match r.iter().find(|w| w[0] == b4) {
            Some(w) if w[3] == "Establ" => Ok(w.clone()),
            other => Err(format!("{other:?} in {out}")),
        }
    });
    assert_eq!(line[1], "65002", "{line:?}");
    assert!(line[2].starts_with("00:00:"), "Up/Down of a fresh session: {line:?}");

    // speaker.v1 (speakerctl) sees the GoBGP peer (its owner is checked in rust_client_without_peer:
    // speakerctl's JSON does not show it); GoBGP sees speakerctl's peer but may not delete it.
    let p = sp.peers().into_iter().find(|p| p["address"] == b4.as_str()).expect("peer in speakerctl peer list");
    assert_eq!(
        (&p["state"], &p["local_asn"], &p["peer_asn"]),
        (&"established".into(), &65001.into(), &65002.into()),
        "{p}"
    );
    sp.ctl(&["peer", "add", "192.0.2.77", "--asn", "65077"]);
    let out = gobgp_ok(s, &["neighbor"]);
    assert!(rows(&out).iter().any(|w| w[0] == "192.0.2.77" && w[1] == "65077"), "{out}");
    let e = gobgp(s, &["neighbor", "del", "192.0.2.77"]).unwrap_err();
    assert!(e.contains("FailedPrecondition") && e.contains("belongs to owner \"speakerctl\""), "{e}");
    sp.ctl(&["peer", "delete", "192.0.2.77"]);

    // Paths, IPv4 and IPv6, with a community.
    assert_eq!(gobgp_ok(s, &["global", "rib", "add", "10.0.0.0/24", "community", "100:100", "-a", "ipv4"]), "");
    assert_eq!(gobgp_ok(s, &["global", "rib", "add", "2001:db8:1::/64", "community", "100:100", "-a", "ipv6"]), "");
    assert_eq!(
        sp.ctl(&["announce", "list", "--owner", "k8s-bridge", "-o", "json"]),
        k8s_before,
        "GoBGP paths went to k8s-bridge"
    );
    let out = gobgp_ok(s, &["global", "rib"]);
    let r = rows(&out);
    assert_eq!(r[0], ["Network", "Next", "Hop", "AS_PATH", "Age", "Attrs"], "{out}");
    assert_eq!(r[1][..3], ["*>", "10.0.0.0/24", "0.0.0.0"], "{out}");
    assert!(r[1].join(" ").ends_with("[{Origin: i} {Communities: 100:100}]"), "{out}");
    assert_eq!(r[2][..3], ["*>", "198.51.100.0/24", "0.0.0.0"], "{out}");
    assert!(r[2].join(" ").ends_with("[{Origin: i} {Communities: 64512:7}]"), "{out}");
    assert_eq!(r.len(), 3, "{out}");
    let out = gobgp_ok(s, &["global", "rib", "-a", "ipv6"]);
    let r = rows(&out);
    assert_eq!(r[1][..3], ["*>", "2001:db8:1::/64", "::"], "{out}");
    assert!(r[1].join(" ").ends_with("[{Origin: i} {Communities: 100:100}]"), "{out}");
    assert_eq!(r.len(), 2, "{out}");

    // At BIRD: the community, speakerd's AS, and the session's next hops (IPv6: speakerd's address).
    for (prefix, nh) in [("10.0.0.0/24", &s4), ("2001:db8:1::/64", &s6)] {
        let route = bird.wait_route(prefix);
        assert_eq!(route.communities, ["100:100"], "{route:?}");
        assert_eq!(route.as_path, [65001], "{route:?}");
        assert_eq!(&route.next_hop, nh, "{route:?}");
    }
    // adj-out: what the session sent, with the real next hops and AS_PATH.
    let out = sp.wait(T, "adj-out to list both IPv4 prefixes", || {
        let out = gobgp_ok(s, &["neighbor", &b4, "adj-out"]);
        if rows(&out).len() == 3 {
            Ok(out)
        } else {
            Err(out)
        }
    });
    let r = rows(&out);
    assert_eq!(r[0], ["ID", "Network", "Next", "Hop", "AS_PATH", "Attrs"], "{out}");
    assert_eq!(r[1][..4], ["0", "10.0.0.0/24", s4.as_str(), "65001"], "{out}");
    assert!(r[1].join(" ").ends_with("[{Origin: i} {Communities: 100:100}]"), "{out}");
    assert_eq!(r[2][1], "198.51.100.0/24", "{out}");
    let out = gobgp_ok(s, &["neighbor", &b4, "adj-out", "-a", "ipv6"]);
    let r = rows(&out);
    assert_eq!(r[1][..4], ["0", "2001:db8:1::/64", s6.as_str(), "65001"], "{out}");

    // A Rust client from our proto, inside the namespace: 1000 paths in one AddPathStream reach BIRD.
    in_netns(s, || {
        rt().block_on(async {
            let mut c = gobgp_client(50051).await;
            let msgs: Vec<api::AddPathStreamRequest> = (0..4)
                .map(|m| api::AddPathStreamRequest {
                    paths: (0..250).map(|i| path(&format!("100.64.{m}.{i}/32"), &[(65001 << 16) | 5])).collect(),
                    ..Default::default()
                })
                .collect();
            c.add_path_stream(tokio_stream::iter(msgs)).await.unwrap();
        })
    });
    let streamed = |r: &Route| r.prefix.starts_with("100.64.");
    sp.wait(T, "1000 streamed paths at BIRD", || {
        let n = bird.routes().iter().filter(|r| streamed(r)).count();
        if n == 1000 {
            Ok(())
        } else {
            Err(format!("{n} routes"))
        }
    });
    let one = bird.routes_for("100.64.3.249/32");
    assert_eq!(one[0].communities, ["65001:5"], "{one:?}");
    let out = gobgp_ok(s, &["neighbor", &b4, "adj-out"]);
    assert_eq!(rows(&out).len(), 1003, "header + 1002 prefixes");
    in_netns(s, || {
        rt().block_on(async {
            let mut c = gobgp_client(50051).await;
            for m in 0..4 {
                for i in 0..250 {
                    c.delete_path(api::DeletePathRequest {
                        path: Some(path(&format!("100.64.{m}.{i}/32"), &[])),
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                }
            }
        })
    });
    sp.wait(T, "the streamed paths gone from BIRD", || {
        let n = bird.routes().iter().filter(|r| streamed(r)).count();
        if n == 0 {
            Ok(())
        } else {
            Err(format!("{n} routes"))
        }
    });

    // gobgp global rib del: gone from the RIB and from BIRD; k8s-bridge's stays.
    assert_eq!(gobgp_ok(s, &["global", "rib", "del", "10.0.0.0/24", "-a", "ipv4"]), "");
    assert_eq!(gobgp_ok(s, &["global", "rib", "del", "2001:db8:1::/64", "-a", "ipv6"]), "");
    for prefix in ["10.0.0.0/24", "2001:db8:1::/64"] {
        sp.wait(T, &format!("{prefix} withdrawn at BIRD"), || {
            if bird.routes_for(prefix).is_empty() {
                Ok(())
            } else {
                Err(format!("{:?}", bird.routes()))
            }
        });
    }
    assert_eq!(bird.routes_for("198.51.100.0/24").len(), 1);
    let out = gobgp_ok(s, &["global", "rib"]);
    assert_eq!(rows(&out).iter().skip(1).map(|w| w[1].clone()).collect::<Vec<_>>(), ["198.51.100.0/24"], "{out}");
    assert_eq!(gobgp_ok(s, &["global", "rib", "-a", "ipv6"]), "Network not in table\n");
    assert_eq!(sp.ctl(&["announce", "list", "--owner", "k8s-bridge", "-o", "json"]), k8s_before);

    // Unserved commands say why.
    let e = gobgp(s, &["vrf"]).unwrap_err();
    assert!(e.contains("Unimplemented") && e.contains("speakerd has no VRFs"), "{e}");

    // disable / enable: Idle(Admin), then Establ again.
    assert_eq!(gobgp_ok(s, &["neighbor", &b4, "disable"]), "");
    sp.wait(T, "Idle(Admin)", || {
        let out = gobgp_ok(s, &["neighbor"]);
        if rows(&out).iter().any(|w| w[0] == b4 && w[3] == "Idle(Admin)") {
            Ok(())
        } else {
            Err(out)
        }
    });
    assert_eq!(gobgp_ok(s, &["neighbor", &b4, "enable"]), "");
    sp.wait(T, "Establ after enable", || {
        let out = gobgp_ok(s, &["neighbor"]);
        if rows(&out).iter().any(|w| w[0] == b4 && w[3] == "Establ") {
            Ok(())
        } else {
            Err(out)
        }
    });

    // gobgp neighbor del: the session goes; the monitor printed the whole story.
    assert_eq!(gobgp_ok(s, &["neighbor", "del", &b4]), "");
    let out = gobgp_ok(s, &["neighbor"]);
    assert_eq!(rows(&out).len(), 1, "{out}");
    let lines = sp.wait(T, "the monitor to print the session going down on delete", || {
        let m = monitor();
        let lines: Vec<String> =
            m.lines().filter(|l| l.contains(&format!("[NEIGH] {b4} fsm: "))).map(str::to_string).collect();
        // disable → IDLE admin: DOWN; enable → … ESTABLISHED admin: UP; delete → IDLE admin: UP (last).
        let down = lines.iter().position(|l| l.ends_with("fsm: IDLE admin: DOWN"));
        let up_again =
            down.and_then(|d| lines[d..].iter().position(|l| l.ends_with("fsm: ESTABLISHED admin: UP")).map(|i| i + d));
        let deleted = up_again.is_some_and(|u| u + 1 < lines.len())
            && lines.last().is_some_and(|l| l.ends_with("fsm: IDLE admin: UP"));
        if deleted {
            Ok(lines)
        } else {
            Err(m)
        }
    });
    for l in &lines {
        // "2024-05-01T10:00:00Z [NEIGH] 10.0.0.2 fsm: ESTABLISHED admin: UP"
        let ts = l.split(' ').next().unwrap();
        assert!(ts.len() == 20 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T', "{l}");
    }
    sp.wait(T, "BIRD to see the session down", || {
        let st = bird.session_state(&s4);
        if st == "Established" {
            Err(st)
        } else {
            Ok(())
        }
    });
}
