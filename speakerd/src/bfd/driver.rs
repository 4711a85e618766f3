//! The I/O of BFD: receive sockets on UDP 3784 (single hop, RFC 5881) and 4784 (multihop, RFC 5883)
//! for IPv4 and IPv6, one transmit socket per session (source port 49152–65535, TTL/hop limit 255),
//! and the timers of every session in one task.
//!
//! Received packets are checked (RFC 5880 §6.8.6 and the TTL rule: exactly 255 on a single hop, at
//! least the configured minimum on multihop), matched to a session by Your Discriminator or, while that
//! is zero, by source address, and handed to the session's state machine. Everything dropped is
//! counted by reason.
use super::fsm::{Action, BfdConfig, BfdFsm, Input};
use super::packet::{BfdDrop, BfdState, ControlPacket};
use crate::netif::canonical;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub const SINGLE_HOP_PORT: u16 = 3784;
pub const MULTIHOP_PORT: u16 = 4784;

/// A session as the BGP side and the API see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdStatus {
    pub state: BfdState,
    pub remote_state: BfdState,
    pub diag: u8,
    pub local_disc: u32,
    pub remote_disc: u32,
    pub tx_interval: Duration,
    pub detect_time: Duration,
    pub state_changes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSpec {
    pub cfg: BfdConfig,
    pub multihop: bool,
    /// Multihop only: the lowest TTL accepted (RFC 5883 §2 leaves it to configuration).
    pub min_ttl: u8,
    /// Keyed SHA1 authentication, if configured.
    pub auth: Option<super::auth::BfdAuth>,
}

enum Cmd {
    Add(IpAddr, Box<SessionSpec>, watch::Sender<BfdStatus>),
    Remove(IpAddr),
}

/// One session's packet and transition counts (MetalLB's `metallb_bfd_*` metrics, as FRR counts
/// them). Atomics beside the status watch, so that a packet does not wake the status's watchers.
#[derive(Debug, Default)]
pub struct BfdCounters {
    /// Control packets accepted (after the TTL, authentication and format checks).
    pub control_in: AtomicU64,
    /// Control packets handed to the socket.
    pub control_out: AtomicU64,
    /// Transitions to Up.
    pub up_events: AtomicU64,
    /// Transitions from Up to another state.
    pub down_events: AtomicU64,
}

type CounterTable = Arc<Mutex<BTreeMap<IpAddr, Arc<BfdCounters>>>>;

struct Session {
    fsm: BfdFsm,
    counters: Arc<BfdCounters>,
    spec: SessionSpec,
    peer: IpAddr,
    tx: Arc<UdpSocket>,
    tx_at: Instant,
    detect_at: Option<Instant>,
    status: watch::Sender<BfdStatus>,
    changes: u64,
    tx_seq: u32,
    rx_seq: Option<u32>,
}

/// The BFD manager. Cheap to clone.
#[derive(Clone)]
pub struct BfdManager {
    cmds: mpsc::Sender<Cmd>,
    drops: Arc<Mutex<BTreeMap<&'static str, u64>>>,
    counters: CounterTable,
}

fn rx_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let v6 = addr.is_ipv6();
    let s = Socket::new(if v6 { Domain::IPV6 } else { Domain::IPV4 }, Type::DGRAM, Some(Protocol::UDP))?;
    if v6 {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    let on: libc::c_int = 1;
    let (level, opt) =
        if v6 { (libc::IPPROTO_IPV6, libc::IPV6_RECVHOPLIMIT) } else { (libc::IPPROTO_IP, libc::IP_RECVTTL) };
    // SAFETY: setsockopt with a c_int option value that outlives the call.
    if unsafe { libc::setsockopt(s.as_raw_fd(), level, opt, std::ptr::addr_of!(on).cast(), 4) } != 0 {
        return Err(io::Error::last_os_error());
    }
    s.bind(&SockAddr::from(addr))?;
    UdpSocket::from_std(s.into())
}

fn tx_socket(peer: SocketAddr, seed: u64) -> io::Result<UdpSocket> {
    let v6 = peer.is_ipv6();
    let s = Socket::new(if v6 { Domain::IPV6 } else { Domain::IPV4 }, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_nonblocking(true)?;
    if v6 {
        s.set_unicast_hops_v6(255)?;
    } else {
        s.set_ttl(255)?;
    }
    // RFC 5881 §4: source port in 49152..65535.
    let any: IpAddr = if v6 { std::net::Ipv6Addr::UNSPECIFIED.into() } else { std::net::Ipv4Addr::UNSPECIFIED.into() };
    let start = (seed % 16384) as u16;
    let mut bound = false;
    for i in 0..16384u16 {
        let port = 49152 + (start.wrapping_add(i) % 16384);
        if s.bind(&SockAddr::from(SocketAddr::new(any, port))).is_ok() {
            bound = true;
            break;
        }
    }
    if !bound {
        return Err(io::Error::new(io::ErrorKind::AddrInUse, "no free source port in 49152..65535"));
    }
    s.connect(&SockAddr::from(peer))?;
    UdpSocket::from_std(s.into())
}

/// recvmsg with the TTL / hop limit control message.
fn recv_with_ttl(fd: i32, buf: &mut [u8]) -> io::Result<(usize, IpAddr, Option<u8>)> {
    // SAFETY: all structures are plain data, zero-initialised, sized as passed to recvmsg.
    unsafe {
        let mut addr: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut cbuf = [0u8; 128];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = std::ptr::addr_of_mut!(addr).cast();
        msg.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = cbuf.len();
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut ttl = None;
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            let (level, ty) = ((*c).cmsg_level, (*c).cmsg_type);
            if (level == libc::IPPROTO_IP && ty == libc::IP_TTL)
                || (level == libc::IPPROTO_IPV6 && ty == libc::IPV6_HOPLIMIT)
            {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                ttl = u8::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        let ip = match i32::from(addr.ss_family) {
            libc::AF_INET => {
                let sin = &*std::ptr::addr_of!(addr).cast::<libc::sockaddr_in>();
                IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes())
            }
            _ => {
                let sin6 = &*std::ptr::addr_of!(addr).cast::<libc::sockaddr_in6>();
                canonical(IpAddr::from(sin6.sin6_addr.s6_addr))
            }
        };
        Ok((n as usize, ip, ttl))
    }
}

impl BfdManager {
    /// Binds the receive sockets (those that cannot be bound are skipped with a warning) and starts the
    /// task. Errors only if none can be bound.
    pub fn start(cancel: CancellationToken) -> io::Result<BfdManager> {
        let mut rx = Vec::new();
        for (addr, multihop) in [
            (SocketAddr::from(([0, 0, 0, 0], SINGLE_HOP_PORT)), false),
            (SocketAddr::from(([0u16; 8], SINGLE_HOP_PORT)), false),
            (SocketAddr::from(([0, 0, 0, 0], MULTIHOP_PORT)), true),
            (SocketAddr::from(([0u16; 8], MULTIHOP_PORT)), true),
        ] {
            match rx_socket(addr) {
                Ok(s) => rx.push((Arc::new(s), multihop)),
                Err(e) => tracing::warn!(%addr, error = %e, "BFD receive socket not bound"),
            }
        }
        if rx.is_empty() {
            return Err(io::Error::other("no BFD receive socket could be bound"));
        }
        let (tx, cmds) = mpsc::channel(256);
        let drops = Arc::new(Mutex::new(BTreeMap::new()));
        let (pkt_tx, pkt_rx) = mpsc::channel(1024);
        for (sock, multihop) in rx {
            tokio::spawn(read_loop(sock, multihop, pkt_tx.clone(), cancel.clone()));
        }
        let counters = CounterTable::default();
        let task = Task {
            sessions: HashMap::new(),
            by_disc: HashMap::new(),
            drops: drops.clone(),
            counters: counters.clone(),
            next_disc: 0x5bfd_0000,
        };
        tokio::spawn(task.run(cmds, pkt_rx, cancel));
        Ok(BfdManager { cmds: tx, drops, counters })
    }

    /// Starts (or restarts with new settings) the session to `peer`; its status follows on the receiver.
    pub fn add(&self, peer: IpAddr, spec: SessionSpec) -> watch::Receiver<BfdStatus> {
        let init = BfdStatus {
            state: BfdState::Down,
            remote_state: BfdState::Down,
            diag: 0,
            local_disc: 0,
            remote_disc: 0,
            tx_interval: super::fsm::SLOW_TX,
            detect_time: Duration::ZERO,
            state_changes: 0,
        };
        let (tx, rx) = watch::channel(init);
        let _ = self.cmds.try_send(Cmd::Add(canonical(peer), Box::new(spec), tx));
        rx
    }

    pub fn remove(&self, peer: IpAddr) {
        let _ = self.cmds.try_send(Cmd::Remove(canonical(peer)));
    }

    /// Packets dropped, by reason.
    pub fn drops(&self) -> BTreeMap<&'static str, u64> {
        self.drops.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Each running session's counters, by peer.
    pub fn counters(&self) -> BTreeMap<IpAddr, Arc<BfdCounters>> {
        self.counters.lock().map(|c| c.clone()).unwrap_or_default()
    }
}

struct Received {
    bytes: Vec<u8>,
    from: IpAddr,
    ttl: Option<u8>,
    multihop: bool,
}

async fn read_loop(sock: Arc<UdpSocket>, multihop: bool, out: mpsc::Sender<Received>, cancel: CancellationToken) {
    let mut buf = [0u8; 512];
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = sock.readable() => if r.is_err() { return },
        }
        loop {
            let fd = sock.as_raw_fd();
            match sock.try_io(tokio::io::Interest::READABLE, || recv_with_ttl(fd, &mut buf)) {
                Ok((n, from, ttl)) => {
                    let _ = out.try_send(Received { bytes: buf[..n].to_vec(), from, ttl, multihop });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
    }
}

struct Task {
    sessions: HashMap<IpAddr, Session>,
    by_disc: HashMap<u32, IpAddr>,
    drops: Arc<Mutex<BTreeMap<&'static str, u64>>>,
    counters: CounterTable,
    next_disc: u32,
}

impl Task {
    async fn run(
        mut self,
        mut cmds: mpsc::Receiver<Cmd>,
        mut pkts: mpsc::Receiver<Received>,
        cancel: CancellationToken,
    ) {
        loop {
            let next = self.sessions.values().flat_map(|s| std::iter::once(s.tx_at).chain(s.detect_at)).min();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return,
                Some(c) = cmds.recv() => self.command(c),
                Some(p) = pkts.recv() => self.received(p),
                _ = async { tokio::time::sleep_until(next.unwrap_or_else(Instant::now)).await }, if next.is_some() => self.timers(),
            }
        }
    }

    fn drop_packet(&self, why: BfdDrop) {
        if let Ok(mut d) = self.drops.lock() {
            *d.entry(why.kind()).or_insert(0) += 1;
        }
        tracing::debug!(reason = %why, "BFD packet dropped");
    }

    fn command(&mut self, c: Cmd) {
        match c {
            Cmd::Add(peer, spec, status) => {
                let spec = *spec;
                if let Some(old) = self.sessions.remove(&peer) {
                    self.by_disc.remove(&old.fsm.local_disc);
                }
                self.next_disc = self.next_disc.wrapping_add(1).max(1);
                let disc = self.next_disc;
                let port = if spec.multihop { MULTIHOP_PORT } else { SINGLE_HOP_PORT };
                let tx = match tx_socket(SocketAddr::new(peer, port), u64::from(disc)) {
                    Ok(s) => Arc::new(s),
                    Err(e) => {
                        tracing::warn!(%peer, error = %e, "BFD session not started");
                        return;
                    }
                };
                let mut fsm = BfdFsm::new(spec.cfg, disc, u64::from(disc) * 2654435761);
                let multihop = spec.multihop;
                let (tx_ms, rx_ms, mult) = (
                    spec.cfg.desired_min_tx.as_millis() as u64,
                    spec.cfg.required_min_rx.as_millis() as u64,
                    spec.cfg.detect_mult,
                );
                let counters = Arc::new(BfdCounters::default());
                if let Ok(mut t) = self.counters.lock() {
                    t.insert(peer, counters.clone());
                }
                let mut s = Session {
                    fsm: fsm.clone(),
                    counters,
                    spec,
                    peer,
                    tx,
                    tx_at: Instant::now(),
                    detect_at: None,
                    status,
                    changes: 0,
                    tx_seq: disc,
                    rx_seq: None,
                };
                let actions = fsm.start();
                s.fsm = fsm;
                self.by_disc.insert(disc, peer);
                apply(&mut s, actions);
                tracing::info!(%peer, multihop, tx_ms, rx_ms, mult, "BFD session started");
                self.sessions.insert(peer, s);
            }
            Cmd::Remove(peer) => {
                if let Some(s) = self.sessions.remove(&peer) {
                    self.by_disc.remove(&s.fsm.local_disc);
                }
                if let Ok(mut t) = self.counters.lock() {
                    t.remove(&peer);
                }
            }
        }
    }

    fn received(&mut self, r: Received) {
        let raw = r.bytes;
        if raw.len() < ControlPacket::LEN {
            return self.drop_packet(BfdDrop::BadLength);
        }
        // Demultiplex first (RFC 5880 §6.8.6): by Your Discriminator, or by source while it is zero.
        let your = u32::from_be_bytes([raw[8], raw[9], raw[10], raw[11]]);
        let peer = if your != 0 {
            match self.by_disc.get(&your) {
                Some(peer) if *peer == r.from => *peer,
                _ => return self.drop_packet(BfdDrop::UnknownDiscriminator),
            }
        } else {
            r.from
        };
        let Some(s) = self.sessions.get_mut(&peer) else { return self.drop_packet(BfdDrop::UnknownPeer) };
        // RFC 5881 §5: single hop requires TTL 255; RFC 5883: multihop at least the configured minimum.
        let ttl_ok = match (s.spec.multihop, r.multihop, r.ttl) {
            (false, false, Some(255)) => true,
            (true, true, Some(t)) => t >= s.spec.min_ttl,
            _ => false,
        };
        if !ttl_ok {
            return self.drop_packet(BfdDrop::BadTtl);
        }
        let auth_bit = raw[1] & 0x04 != 0;
        let (bytes, seq) = match (&s.spec.auth, auth_bit) {
            (Some(a), true) => match a.open(&raw) {
                Some((h, seq)) if a.seq_ok(s.rx_seq, seq, raw[2]) => (h.to_vec(), Some(seq)),
                _ => return self.drop_packet(BfdDrop::BadAuth),
            },
            (Some(_), false) => return self.drop_packet(BfdDrop::MissingAuth),
            (None, true) => return self.drop_packet(BfdDrop::UnexpectedAuth),
            (None, false) => (raw, None),
        };
        let p = match ControlPacket::parse(&bytes) {
            Ok(p) => p,
            Err(e) => return self.drop_packet(e),
        };
        if seq.is_some() {
            s.rx_seq = seq;
        }
        s.counters.control_in.fetch_add(1, Relaxed);
        let actions = s.fsm.handle(Input::Rx(p));
        apply(s, actions);
    }

    fn timers(&mut self) {
        let now = Instant::now();
        for s in self.sessions.values_mut() {
            if s.detect_at.is_some_and(|t| t <= now) {
                s.detect_at = None;
                let a = s.fsm.handle(Input::DetectTimer);
                apply(s, a);
            }
            if s.tx_at <= now {
                let a = s.fsm.handle(Input::TxTimer);
                apply(s, a);
            }
        }
    }
}

fn apply(s: &mut Session, actions: Vec<Action>) {
    for a in actions {
        match a {
            Action::Send(p) => {
                let sent = match &s.spec.auth {
                    Some(a) => {
                        s.tx_seq = s.tx_seq.wrapping_add(1);
                        s.tx.try_send(&a.seal(&p.encode(), s.tx_seq))
                    }
                    None => s.tx.try_send(&p.encode()),
                };
                if sent.is_ok() {
                    s.counters.control_out.fetch_add(1, Relaxed);
                }
            }
            Action::ArmTx(d) => s.tx_at = Instant::now() + d,
            Action::ArmDetect(d) => s.detect_at = Some(Instant::now() + d),
            Action::StateChanged { old, new, diag } => {
                s.changes += 1;
                if new == BfdState::Up {
                    s.counters.up_events.fetch_add(1, Relaxed);
                } else if old == BfdState::Up {
                    s.counters.down_events.fetch_add(1, Relaxed);
                }
                let peer = s.peer;
                if new == BfdState::Up {
                    tracing::info!(%peer, from = old.name(), "BFD session up");
                } else {
                    tracing::warn!(%peer, from = old.name(), to = new.name(), diag, "BFD session state");
                }
            }
        }
    }
    let f = &s.fsm;
    let st = BfdStatus {
        state: f.state(),
        remote_state: f.remote_state(),
        diag: f.diag(),
        local_disc: f.local_disc,
        remote_disc: f.remote_disc,
        tx_interval: f.tx_interval(),
        detect_time: f.detect_time(),
        state_changes: s.changes,
    };
    s.status.send_if_modified(|old| {
        let changed = *old != st;
        *old = st;
        changed
    });
}
