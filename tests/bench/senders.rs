//! The senders (speakerd, gobgpd, BIRD, the reference sender) and the workloads that drive them.

use super::*;
use crate::wire;
use speaker_api::gobgp::apipb::{self, gobgp_api_client::GobgpApiClient};
use speaker_api::v1::{
    speaker_client::SpeakerClient, Announcement, PeerConfig, SetAnnouncementsRequest, SetPeersRequest,
};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tonic::transport::Channel;

pub struct Ctx<'a> {
    pub snd: &'a Host,
    pub rt: &'a tokio::runtime::Runtime,
    pub plan: &'a Plan,
}

pub const SENDERS: [&str; 5] = [REFERENCE, "speakerd", "gobgpd", "BIRD (default)", "BIRD (awake)"];
/// The harness's own minimal sender (pre-encoded UPDATEs, [`wire::Replay`]).
pub const REFERENCE: &str = "reference sender";
pub const CONVERGE: Duration = Duration::from_secs(600);
const GOBGP_PORT: u16 = 50151;

// ---------------------------------------------------------------------------------------------------
// speakerd

pub fn speakerd_client(rt: &tokio::runtime::Runtime, sp: &Speakerd) -> SpeakerClient<Channel> {
    let socket = sp.socket().to_path_buf();
    rt.block_on(async move {
        let ch = tonic::transport::Endpoint::from_static("http://[::]:50051")
            .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                let p = socket.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(p).await?))
                }
            }))
            .await
            .expect("connect to speakerd");
        SpeakerClient::new(ch).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20)
    })
}

pub fn announcements(prefixes: &[IpAddr], len: u8) -> Vec<Announcement> {
    prefixes.iter().map(|p| Announcement { prefix: format!("{p}/{len}"), ..Default::default() }).collect()
}

pub fn set_announcements(
    rt: &tokio::runtime::Runtime,
    c: &mut SpeakerClient<Channel>,
    owner: &str,
    a: Vec<Announcement>,
) -> Result<(), String> {
    rt.block_on(c.set_announcements(SetAnnouncementsRequest { owner: owner.into(), announcements: a }))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

pub fn peer_config(addr: IpAddr, hold: Option<u32>) -> PeerConfig {
    PeerConfig {
        address: addr.to_string(),
        peer_asn: RCV_ASN,
        connect_time_secs: Some(1),
        hold_time_secs: hold,
        ..Default::default()
    }
}

pub fn set_peers(
    rt: &tokio::runtime::Runtime,
    c: &mut SpeakerClient<Channel>,
    peers: Vec<PeerConfig>,
) -> Result<(), String> {
    rt.block_on(c.set_peers(SetPeersRequest { owner: "bench".into(), peers })).map(|_| ()).map_err(|e| e.to_string())
}

pub fn start_speakerd(snd: &Host) -> Speakerd {
    // BENCH_SPEAKERD_LOG=info (with SPEAKERD_KEEP_LAB=1) keeps speakerd's session log for reading
    let log = std::env::var("BENCH_SPEAKERD_LOG").unwrap_or_else(|_| "warn".into());
    Speakerd::builder(snd).local_asn(SND_ASN).router_id(SND_V4).no_bgp_listen().env("RUST_LOG", &log).start()
}

// ---------------------------------------------------------------------------------------------------
// gobgpd

/// connect-retry 1 s, idle-hold-time-after-reset 1 s (as tests/common/peers.rs configures gobgpd), hold
/// time 90 s and keepalive 30 s (GoBGP's defaults, stated so that none is left at zero).
pub fn gobgp_timers() -> apipb::TimersConfig {
    apipb::TimersConfig {
        connect_retry: 1,
        hold_time: 90,
        keepalive_interval: 30,
        idle_hold_time_after_reset: 1,
        ..Default::default()
    }
}

pub struct GobgpSender {
    proc: Proc,
    ns: String,
    client: GobgpApiClient<Channel>,
}

fn gobgp_family(fam: Fam) -> apipb::Family {
    match fam {
        Fam::V4 => apipb::Family { afi: 1, safi: 1 },
        Fam::V6 => apipb::Family { afi: 2, safi: 1 },
    }
}

fn any<M: prost::Message>(name: &str, m: &M) -> prost_types::Any {
    prost_types::Any { type_url: speaker_api::gobgp::type_url(name), value: m.encode_to_vec() }
}

/// A GoBGP path for a host route with ORIGIN IGP and the sender's own next hop.
pub fn gobgp_path(p: IpAddr) -> apipb::Path {
    let len = if p.is_ipv4() { 32 } else { 128 };
    let nlri = any("IPAddressPrefix", &apipb::IpAddressPrefix { prefix_len: len, prefix: p.to_string() });
    let origin = any("OriginAttribute", &apipb::OriginAttribute { origin: 0 });
    let (fam, nh) = if p.is_ipv4() {
        (Fam::V4, any("NextHopAttribute", &apipb::NextHopAttribute { next_hop: SND_V4.to_string() }))
    } else {
        let mp = apipb::MpReachNlriAttribute {
            family: Some(gobgp_family(Fam::V6)),
            next_hops: vec![SND_V6.to_string()],
            nlris: vec![nlri.clone()],
        };
        (Fam::V6, any("MpReachNLRIAttribute", &mp))
    };
    apipb::Path { nlri: Some(nlri), pattrs: vec![origin, nh], family: Some(gobgp_family(fam)), ..Default::default() }
}

/// A client of the GoBGP API on 127.0.0.1:`port` in namespace `ns` (gobgpd's, or speakerd's
/// `--gobgp-api`), once it answers GetBgp (for at most 20 s).
pub fn gobgp_client(rt: &tokio::runtime::Runtime, ns: &str, port: u16) -> GobgpApiClient<Channel> {
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ns = ns.to_string();
            let r = tonic::transport::Endpoint::from_static("http://127.0.0.1:50151")
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let ns = ns.clone();
                    async move {
                        let s = wire::in_netns(&ns, move || std::net::TcpStream::connect(("127.0.0.1", port)))?;
                        s.set_nonblocking(true)?;
                        s.set_nodelay(true)?; // as tonic's own connector does
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::TcpStream::from_std(s)?))
                    }
                }))
                .await;
            match r {
                Ok(ch) => {
                    let mut c =
                        GobgpApiClient::new(ch).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20);
                    if c.get_bgp(apipb::GetBgpRequest {}).await.is_ok() {
                        break c;
                    }
                }
                Err(e) if Instant::now() > deadline => panic!("GoBGP API on port {port}: {e}"),
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

impl GobgpSender {
    pub fn start(ctx: &Ctx, neighbors: &[IpAddr]) -> GobgpSender {
        let dir = ctx.snd.state_dir("gobgpd");
        std::fs::create_dir_all(&dir).unwrap();
        let mut conf = format!("[global.config]\nas = {SND_ASN}\nrouter-id = \"{SND_V4}\"\nport = -1\n");
        for n in neighbors {
            let fam = if n.is_ipv4() { "ipv4-unicast" } else { "ipv6-unicast" };
            let t = gobgp_timers();
            conf += &format!("\n[[neighbors]]\n[neighbors.config]\nneighbor-address = \"{n}\"\npeer-as = {RCV_ASN}\n[neighbors.timers.config]\nconnect-retry = {}\nidle-hold-time-after-reset = {}\nhold-time = {}\nkeepalive-interval = {}\n[[neighbors.afi-safis]]\n[neighbors.afi-safis.config]\nafi-safi-name = \"{fam}\"\n", t.connect_retry, t.idle_hold_time_after_reset, t.hold_time, t.keepalive_interval);
        }
        std::fs::write(dir.join("gobgpd.toml"), conf).unwrap();
        let api = format!("127.0.0.1:{GOBGP_PORT}");
        let c = dir.join("gobgpd.toml");
        let proc = ctx.snd.spawn(
            "gobgpd",
            &["gobgpd", "-f", c.to_str().unwrap(), "-l", "warn", "--api-hosts", &api, "--pprof-disable"],
            &dir.join("gobgpd.log"),
            &[],
        );
        let ns = ctx.snd.name().to_string();
        let client = gobgp_client(ctx.rt, &ns, GOBGP_PORT);
        GobgpSender { proc, ns, client }
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The messages of an AddPathStream with `batch` paths each, built before any clock starts.
    pub fn stream_requests(paths: &[apipb::Path], batch: usize) -> Vec<apipb::AddPathStreamRequest> {
        paths
            .chunks(batch)
            .map(|c| apipb::AddPathStreamRequest {
                table_type: apipb::TableType::Global as i32,
                vrf_id: String::new(),
                paths: c.to_vec(),
            })
            .collect()
    }

    /// AddPathStream of `reqs` ([`GobgpSender::stream_requests`]); returns when gobgpd has the stream's end.
    pub fn add_path_stream(
        &mut self,
        rt: &tokio::runtime::Runtime,
        reqs: Vec<apipb::AddPathStreamRequest>,
    ) -> Result<(), String> {
        rt.block_on(self.client.add_path_stream(tokio_stream::iter(reqs))).map(|_| ()).map_err(|e| e.to_string())
    }

    /// AddPathStream with `batch` paths per message.
    pub fn add_paths(
        &mut self,
        rt: &tokio::runtime::Runtime,
        paths: Vec<apipb::Path>,
        batch: usize,
    ) -> Result<(), String> {
        self.add_path_stream(rt, Self::stream_requests(&paths, batch))
    }

    pub fn add_path_request(path: apipb::Path) -> apipb::AddPathRequest {
        apipb::AddPathRequest { table_type: apipb::TableType::Global as i32, vrf_id: String::new(), path: Some(path) }
    }

    pub fn delete_path_request(path: apipb::Path) -> apipb::DeletePathRequest {
        apipb::DeletePathRequest {
            table_type: apipb::TableType::Global as i32,
            family: path.family,
            path: Some(path),
            ..Default::default()
        }
    }

    /// `AddPath` with a request built beforehand ([`GobgpSender::add_path_request`]).
    pub fn add_path(&mut self, rt: &tokio::runtime::Runtime, req: apipb::AddPathRequest) -> Result<(), String> {
        rt.block_on(self.client.add_path(req)).map(|_| ()).map_err(|e| e.to_string())
    }

    pub fn delete_path(&mut self, rt: &tokio::runtime::Runtime, req: apipb::DeletePathRequest) -> Result<(), String> {
        rt.block_on(self.client.delete_path(req)).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Destinations in gobgpd's global table for `fam`.
    pub fn table_count(&mut self, rt: &tokio::runtime::Runtime, fam: Fam) -> Result<u64, String> {
        let req = apipb::GetTableRequest {
            table_type: apipb::TableType::Global as i32,
            family: Some(gobgp_family(fam)),
            ..Default::default()
        };
        rt.block_on(self.client.get_table(req)).map(|r| r.into_inner().num_destination).map_err(|e| e.to_string())
    }

    pub fn delete_all(&mut self, rt: &tokio::runtime::Runtime, fam: Fam) -> Result<(), String> {
        let req = apipb::DeletePathRequest {
            table_type: apipb::TableType::Global as i32,
            family: Some(gobgp_family(fam)),
            ..Default::default()
        };
        rt.block_on(self.client.delete_path(req)).map(|_| ()).map_err(|e| e.to_string())
    }

    pub fn add_peers(&mut self, rt: &tokio::runtime::Runtime, addrs: &[IpAddr]) -> Result<(), String> {
        for a in addrs {
            let fam = if a.is_ipv4() { Fam::V4 } else { Fam::V6 };
            let peer = apipb::Peer {
                conf: Some(apipb::PeerConf {
                    neighbor_address: a.to_string(),
                    peer_asn: RCV_ASN,
                    ..Default::default()
                }),
                // the timers the e2e tests give gobgpd (tests/common/peers.rs): a connect attempt and an
                // idle hold of 1 s instead of the defaults, so its first connect comes within about a
                // second of AddPeer; hold and keepalive at GoBGP's defaults
                timers: Some(apipb::Timers { config: Some(gobgp_timers()), ..Default::default() }),
                afi_safis: vec![apipb::AfiSafi {
                    config: Some(apipb::AfiSafiConfig { family: Some(gobgp_family(fam)), enabled: true }),
                    ..Default::default()
                }],
                ..Default::default()
            };
            rt.block_on(self.client.add_peer(apipb::AddPeerRequest { peer: Some(peer) })).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The `gobgp` CLI against this gobgpd, started directly in its namespace (setns before exec, so no
    /// `ip netns exec` in the measurement), built but not run.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        command_in_netns(&self.ns, "gobgp", &[&["-p", &GOBGP_PORT.to_string()][..], args].concat())
    }
}

/// A command that runs `prog` in network namespace `ns`, through `nsenter --net` (an exec that enters
/// the namespace, then execs `prog`). Not a `pre_exec` hook: with one, the spawn forks the bench
/// process, whose page tables grow with what a full run holds (2.4 GB by its end; a fork of that took
/// 42 ms and made a `gobgp` CLI call 61 ms instead of 6); without one it is a `posix_spawn`.
pub fn command_in_netns(ns: &str, prog: &str, args: &[&str]) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}")).arg("--").arg(prog).args(args);
    c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    c
}

// ---------------------------------------------------------------------------------------------------
// BIRD as a sender

pub struct BirdSender {
    proc: Proc,
    dir: std::path::PathBuf,
    pub ctl: BirdCtl,
    head: String,
    statics: String,
    tail: String,
    awake: Option<(Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
}

impl BirdSender {
    /// BIRD with `prefixes` as static blackhole routes exported to a session per neighbor (protocols
    /// `n0`, `n1`, … `disabled` unless `enabled`), `connect delay time` as given (BIRD's default is 5 s).
    pub fn start(
        snd: &Host,
        fam: Fam,
        prefixes: &[IpAddr],
        neighbors: &[IpAddr],
        enabled: bool,
        connect_delay: Option<u32>,
    ) -> BirdSender {
        let dir = snd.state_dir("bird-sender");
        std::fs::create_dir_all(&dir).unwrap();
        let chan = if fam == Fam::V4 { "ipv4" } else { "ipv6" };
        let head = format!(
            "log \"{}\" {{ warning, error, fatal }};\nrouter id {SND_V4};\nprotocol device {{ scan time 60; }}\n",
            dir.join("bird.log").display()
        );
        let mut tail = String::new();
        for (i, n) in neighbors.iter().enumerate() {
            let local = if n.is_ipv4() { IpAddr::V4(SND_V4) } else { IpAddr::V6(SND_V6) };
            let delay = connect_delay.map(|d| format!("connect delay time {d}; ")).unwrap_or_default();
            let dis = if enabled { "" } else { "disabled; " };
            tail += &format!("protocol bgp n{i} {{ {dis}{delay}local {local} as {SND_ASN}; neighbor {n} as {RCV_ASN}; {chan} {{ import none; export all; }}; }}\n");
        }
        let statics = static_block(fam, prefixes.iter().map(|p| format!("{p}/{}", fam.host_len())));
        std::fs::write(dir.join("bird.conf"), config_text(&[&head, &statics, &tail], None)).unwrap();
        let (c, s) = (dir.join("bird.conf"), dir.join("bird.ctl"));
        let proc = snd.spawn(
            "bird sender",
            &["bird", "-f", "-c", c.to_str().unwrap(), "-s", s.to_str().unwrap()],
            &dir.join("stdout.log"),
            &[],
        );
        let ctl = BirdCtl::connect(&s).expect("sender BIRD control socket");
        BirdSender { proc, dir, ctl, head, statics, tail, awake: None }
    }

    /// The config with (or without) one more static route.
    pub fn config_text(&self, extra: Option<&str>) -> String {
        config_text(&[&self.head, &self.statics, &self.tail], extra)
    }

    /// Writes `conf` (from [`BirdSender::config_text`]) and has BIRD re-read it.
    pub fn reconfigure(&mut self, conf: &str) -> Result<(), String> {
        std::fs::write(self.dir.join("bird.conf"), conf).map_err(|e| e.to_string())?;
        let out = self.ctl.cmd("configure").map_err(|e| e.to_string())?;
        if out.contains("Reconfigured") || out.contains("Reconfiguration in progress") {
            Ok(())
        } else {
            Err(out)
        }
    }

    /// Keeps BIRD's main loop awake: `show status` on its control socket at the receivers' poll rate
    /// ([`crate::POLL`]).
    pub fn keep_awake(&mut self) {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let path = self.dir.join("bird.ctl");
        let t = std::thread::spawn(move || {
            let Ok(mut c) = BirdCtl::connect(&path) else { return };
            while !s.load(Ordering::Relaxed) {
                if c.cmd("show status").is_err() {
                    return;
                }
                std::thread::sleep(crate::POLL);
            }
        });
        self.awake = Some((stop, t));
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

impl Drop for BirdSender {
    fn drop(&mut self) {
        if let Some((s, t)) = self.awake.take() {
            s.store(true, Ordering::Relaxed);
            let _ = t.join();
        }
    }
}

fn static_block(fam: Fam, nets: impl Iterator<Item = String>) -> String {
    let chan = if fam == Fam::V4 { "ipv4" } else { "ipv6" };
    let mut s = format!("protocol static st {{ {chan};\n");
    for n in nets {
        s += "route ";
        s += &n;
        s += " blackhole;\n";
    }
    s + "}\n"
}

/// bird.conf: `parts[0..2]` (head, statics) + an optional probe route + `parts[2]` (sessions).
fn config_text(parts: &[&str; 3], extra: Option<&str>) -> String {
    let mut conf = format!("{}{}", parts[0], parts[1]);
    if let Some(e) = extra {
        conf += &format!("protocol static probe {{ ipv4; route {e} blackhole; }}\n");
    }
    conf + parts[2]
}
