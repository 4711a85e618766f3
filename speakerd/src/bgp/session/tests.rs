//! The session's tests that need sockets: the write-through loan and a replaced task.
use super::conn::run_writer;
use super::handle::WriterMsg;
use super::*;
use crate::bgp::export::{Change, ExportTable, Selector};
use crate::bgp::rib_out;
use crate::bgp::wire::Family;
use ipnet::IpNet;
use speaker_api::v1 as pb;
use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::RwLock;
use tokio::net::tcp::OwnedWriteHalf;

fn task(shared: &Arc<PeerShared>, events: &broadcast::Sender<Event>) -> PeerTask {
    let cfg = pb::PeerConfig { address: "192.0.2.2".into(), peer_asn: 65002, ..Default::default() };
    let spec = PeerSpec::try_from(&cfg).expect("valid peer");
    let ctx = PeerContext {
        spec,
        local_asn: 65001,
        router_id: "192.0.2.1".parse().unwrap(),
        shared: shared.clone(),
        events: events.clone(),
        restarting: false,
        seed: 1,
        bfd: None,
    };
    PeerTask::new(ctx, mpsc::channel(1).1)
}

/// A connected pair on loopback: the writer's half (with `sndbuf` if given) and the peer's socket.
async fn pair(sndbuf: Option<u32>) -> (OwnedWriteHalf, std::net::TcpStream) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(b) = sndbuf {
        sock.set_send_buffer_size(b).unwrap();
    }
    let (c, a) = tokio::join!(sock.connect(l.local_addr().unwrap()), l.accept());
    let peer = a.unwrap().0.into_std().unwrap();
    peer.set_nonblocking(false).unwrap();
    (c.unwrap().into_split().1, peer)
}

/// A writer on an Established session (IPv4), its table and its shared state, idle after the
/// End-of-RIB, which `peer` has read.
struct Rig {
    exports: Arc<Exports>,
    shared: Arc<PeerShared>,
    peer: std::net::TcpStream,
    ctl: mpsc::Sender<WriterMsg>,
    writer: tokio::task::JoinHandle<()>,
}

impl Rig {
    async fn new(sndbuf: Option<u32>) -> Rig {
        let exports = Arc::new(RwLock::new(ExportTable::new()));
        let sel = Selector { name: "p".into(), address: "192.0.2.2".parse().unwrap() };
        let shared = Arc::new(PeerShared::new(exports.clone(), sel));
        let task = 7;
        shared.current_task.store(task, Ordering::Release);
        let (w, mut peer) = pair(sndbuf).await;
        let (ctl, ctl_rx) = mpsc::channel(8);
        let writer = tokio::spawn(run_writer(w, ctl_rx, shared.clone(), task));
        let epoch = shared.with_rib(|r, _| {
            r.session_up(&[Family::IPV4_UNICAST]);
            r.epoch()
        });
        ctl.send(WriterMsg::StartUpdates(Box::new(rib_out::tests::enc(true)), epoch)).await.unwrap();
        // the writer sends the End-of-RIB, then waits with its socket lent
        while shared.idle.lock().unwrap().armed.is_none() {
            tokio::task::yield_now().await;
        }
        let eor = read_updates(&mut peer, 1).await;
        assert!(eor.len() == 1 && eor[0].nlri.is_empty() && eor[0].withdrawn.is_empty(), "{eor:?}");
        Rig { exports, shared, peer, ctl, writer }
    }

    /// The table change of announcing `prefixes`, as the speaker makes it.
    fn announce(&self, prefixes: impl IntoIterator<Item = IpNet>) -> Vec<Change> {
        let a: crate::bgp::export::Attrs = Arc::default();
        let mut t = self.exports.write().unwrap();
        prefixes.into_iter().filter_map(|p| t.set(p, Some(crate::bgp::export::Want::All(a.clone())))).collect()
    }
}

/// Reads whole messages from `peer` until `n` UPDATEs (blocking, the runtime's thread included: the
/// writer task cannot run meanwhile). Gives up after 2 s with what it has.
async fn read_updates(peer: &mut std::net::TcpStream, n: usize) -> Vec<Update> {
    use std::io::Read;
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let got = rib_out::tests::messages_prefix(&buf);
        if got.len() >= n {
            return got;
        }
        match peer.read(&mut chunk) {
            Ok(0) | Err(_) => return got,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

fn v4n(i: u32) -> ipnet::Ipv4Net {
    ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap()
}

fn v4(i: u32) -> IpNet {
    IpNet::V4(v4n(i))
}

#[tokio::test]
async fn an_idle_writers_update_is_written_by_the_caller() {
    let mut rig = Rig::new(None).await;
    // The caller writes: the UPDATE is readable while this thread, the runtime's only one, has not
    // yielded once, so the writer task cannot have run.
    let c = rig.announce([v4(1)]);
    rig.shared.changed(&c, true);
    let got = read_updates(&mut rig.peer, 1).await;
    assert_eq!(got.len(), 1, "no UPDATE before the writer ran");
    assert_eq!(got[0].nlri, vec![v4n(1)]);
    assert_eq!(rig.shared.status().updates_sent, 2, "the End-of-RIB and this one");
    assert!(rig.shared.idle.lock().unwrap().armed.is_some(), "still lent: nothing left to the writer");
    // Without write-through it is the writer's, once it runs.
    let c = rig.announce([v4(2)]);
    rig.shared.changed(&c, false);
    {
        rig.peer.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut b = [0u8; 64];
        assert!(std::io::Read::read(&mut rig.peer, &mut b).is_err(), "written without the writer");
    }
    tokio::task::yield_now().await;
    let got = read_updates(&mut rig.peer, 1).await;
    assert_eq!(got.iter().map(|u| u.nlri.clone()).collect::<Vec<_>>(), vec![vec![v4n(2)]]);
    // A new epoch (the session went down and up again) and the lent socket is no longer used.
    let c = rig.announce([v4(3)]);
    rig.shared.with_rib(|r, _| r.session_down());
    rig.shared.changed(&c, true);
    assert!(rig.shared.idle.lock().unwrap().armed.is_some(), "the writer has not run");
    rig.peer.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut b = [0u8; 64];
    assert!(std::io::Read::read(&mut rig.peer, &mut b).is_err(), "written on a stale epoch");
    drop(rig.ctl);
    rig.writer.await.unwrap();
}

#[tokio::test]
async fn what_the_socket_does_not_take_is_written_by_the_writer_in_order() {
    let mut rig = Rig::new(Some(4096)).await;
    // The peer does not read: the socket fills, a write-through is cut short, and from then on the
    // writer (blocked, not lent) has the rest. Every prefix must arrive once, in whole messages.
    let (mut next, mut cut) = (0u32, false);
    for _ in 0..400 {
        let c = rig.announce((next..next + 300).map(v4));
        next += 300;
        rig.shared.changed(&c, true);
        cut |= !rig.shared.idle.lock().unwrap().leftover.is_empty();
    }
    assert!(cut, "the socket always took the whole batch: no cut message was handed over");
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        rig.peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 65536];
        let mut seen = HashSet::new();
        while seen.len() < next as usize {
            match rig.peer.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
            let n = rib_out::tests::complete_len(&buf);
            for u in rib_out::tests::messages(&buf[..n]) {
                for p in u.nlri {
                    assert!(seen.insert(p), "{p} sent twice");
                }
            }
            buf.drain(..n);
        }
        seen.len()
    });
    // the writer runs while the reader drains
    let got = loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if reader.is_finished() {
            break reader.join().unwrap();
        }
    };
    assert_eq!(got, next as usize);
    drop(rig.ctl);
    rig.writer.await.unwrap();
}

#[tokio::test]
async fn a_replaced_task_no_longer_writes_the_peer_state() {
    let exports = Arc::new(RwLock::new(ExportTable::new()));
    let sel = Selector { name: "p".into(), address: "192.0.2.2".parse().unwrap() };
    let shared = Arc::new(PeerShared::new(exports, sel));
    let (events, mut rx) = broadcast::channel(16);
    let mut old = task(&shared, &events);
    old.status_mut(|s| s.state = State::Established);
    assert_eq!(shared.status().state, State::Established, "the newest task writes");
    let new = task(&shared, &events);
    // the old task, still closing, goes through its last steps
    old.status_mut(|s| s.last_error = "stopped".into());
    old.rib(|r, _| r.session_up(&[Family::IPV4_UNICAST]));
    old.set_state(State::Idle, "stopped");
    assert_eq!(shared.status().state, State::Established, "{:?}", shared.status());
    assert!(shared.status().last_error.is_empty());
    assert!(!shared.rib.lock().unwrap().pending(), "the old task did not touch the Adj-RIB-Out");
    assert!(rx.try_recv().is_err(), "no event from the replaced task");
    new.status_mut(|s| s.state = State::Connect);
    assert_eq!(shared.status().state, State::Connect);
}
