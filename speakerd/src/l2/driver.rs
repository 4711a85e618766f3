//! The I/O of Layer 2 mode: AF_PACKET sockets per interface, the netlink subscription, the clock.
//!
//! * One AF_PACKET socket per interface that has claims, bound to that interface, non-blocking under
//!   tokio's `AsyncFd`. A classic BPF filter lets through only ARP and ICMPv6 Neighbor Solicitations, so
//!   the kernel does not copy the node's other traffic to us. IPv6 claims join their solicited-node
//!   multicast group on the socket (PACKET_ADD_MEMBERSHIP), so Neighbor Solicitations reach us without
//!   promiscuous mode. pnet_datalink's channel is not used: its receiver blocks (a thread per interface)
//!   and does not expose the descriptor that multicast membership needs.
//! * Interface and address changes: a NETLINK_ROUTE socket subscribed to link, IPv4 and IPv6 address
//!   events; each burst of events triggers one re-read of the interface table (getifaddrs). No polling.
use super::announcer::{Action, Announcer, Claim, ClaimStatus, Iface, Input, L2Config, L2Counters};
use super::frames::Mac;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_DROP_MEMBERSHIP: libc::c_int = 2;
const PACKET_MR_MULTICAST: u16 = 0;
const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;

#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    #[error("netlink socket")]
    Netlink(#[source] io::Error),
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Classic BPF: accept ARP, or IPv6 whose next header is ICMPv6 (58) with type 135 (NS); drop the rest.
fn filter() -> [libc::sock_filter; 9] {
    let f = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    const LDH_ABS: u16 = 0x28;
    const LDB_ABS: u16 = 0x30;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    [
        f(LDH_ABS, 0, 0, 12),     // 0: ethertype
        f(JEQ_K, 5, 0, 0x0806),   // 1: ARP → accept (7)
        f(JEQ_K, 0, 5, 0x86dd),   // 2: not IPv6 → drop (8)
        f(LDB_ABS, 0, 0, 20),     // 3: IPv6 next header
        f(JEQ_K, 0, 3, 58),       // 4: not ICMPv6 → drop
        f(LDB_ABS, 0, 0, 54),     // 5: ICMPv6 type
        f(JEQ_K, 0, 1, 135),      // 6: not NS → drop
        f(RET_K, 0, 0, 0x40000),  // 7: accept
        f(RET_K, 0, 0, 0),        // 8: drop
    ]
}

/// An AF_PACKET socket bound to one interface, filtered to ARP and NS.
fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the descriptor is owned by the OwnedFd at once.
    let fd = cvt(unsafe {
        libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, i32::from(ETH_P_ALL.to_be()))
    })?;
    // SAFETY: fd was just returned by socket(2) and is not owned elsewhere.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let prog = filter();
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: fprog points to `prog`, alive for the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::addr_of!(fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    // SAFETY: sockaddr_ll is plain data; zeroed is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: binds to a sockaddr_ll of the right size.
    cvt(unsafe {
        libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(sll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t)
    })?;
    Ok(fd)
}

fn membership(fd: &OwnedFd, ifindex: u32, mac: Mac, add: bool) -> io::Result<()> {
    #[repr(C)]
    struct PacketMreq {
        ifindex: libc::c_int,
        kind: u16,
        alen: u16,
        address: [u8; 8],
    }
    let mut address = [0u8; 8];
    address[..6].copy_from_slice(&mac);
    let m = PacketMreq { ifindex: ifindex as i32, kind: PACKET_MR_MULTICAST, alen: 6, address };
    let opt = if add { PACKET_ADD_MEMBERSHIP } else { PACKET_DROP_MEMBERSHIP };
    // SAFETY: `m` matches struct packet_mreq and lives across the call.
    cvt(unsafe {
        libc::setsockopt(fd.as_raw_fd(), SOL_PACKET, opt, std::ptr::addr_of!(m).cast(), std::mem::size_of::<PacketMreq>() as libc::socklen_t)
    })
    .map(|_| ())
}

fn netlink_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2), owned at once.
    let fd = cvt(unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) })?;
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data.
    let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    sa.nl_family = libc::AF_NETLINK as u16;
    sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
    // SAFETY: binds to a sockaddr_nl of the right size.
    cvt(unsafe { libc::bind(fd.as_raw_fd(), std::ptr::addr_of!(sa).cast(), std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t) })?;
    Ok(fd)
}

/// Registers an owned descriptor with the reactor, for reading.
fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd is open and refers to the same file until the AsyncFd drops it.
    unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.map_err(io::Error::from)
}

/// Reads (and discards) what is queued; returns whether anything was.
fn drain(fd: &AsyncFd<OwnedFd>) -> bool {
    let mut buf = [0u8; 8192];
    let mut any = false;
    loop {
        // SAFETY: reading into a local buffer of the given size.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        if n <= 0 {
            return any;
        }
        any = true;
    }
}

fn read_ifaces() -> Vec<Iface> {
    crate::netif::interfaces()
        .into_iter()
        .map(|i| Iface { index: i.index, name: i.name, mac: i.mac, up: i.up, loopback: i.loopback, nets: i.addrs })
        .collect()
}

struct IfSock {
    fd: Arc<AsyncFd<OwnedFd>>,
    groups: BTreeSet<Mac>,
    _reader: AbortOnDropHandle<()>,
}

async fn read_frames(ifindex: u32, fd: Arc<AsyncFd<OwnedFd>>, tx: mpsc::Sender<(u32, Vec<u8>)>) {
    let mut buf = vec![0u8; 2048];
    loop {
        let Ok(mut guard) = fd.readable().await else { return };
        loop {
            // SAFETY: sockaddr_ll is plain data; recvfrom writes at most its size.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut flen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: buffer and address pointers are valid for their stated sizes.
            let n = unsafe {
                libc::recvfrom(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0, std::ptr::addr_of_mut!(from).cast(), &mut flen)
            };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
                    guard.clear_ready();
                    break;
                }
                return;
            }
            if from.sll_pkttype == PACKET_OUTGOING {
                continue; // our own replies
            }
            // Bounded: when the announcer falls behind, requests are dropped (hosts ask again).
            let _ = tx.try_send((ifindex, buf[..n as usize].to_vec()));
        }
    }
}

struct Shared {
    status: Vec<ClaimStatus>,
    counters: L2Counters,
}

/// A running Layer 2 announcer.
#[derive(Clone)]
pub struct L2Handle {
    claims: Arc<watch::Sender<Vec<Claim>>>,
    shared: Arc<Mutex<Shared>>,
    failures: watch::Receiver<BTreeSet<IpAddr>>,
}

impl L2Handle {
    /// Opens the netlink subscription and starts the driver task.
    pub fn start(cfg: L2Config, cancel: CancellationToken) -> Result<L2Handle, L2Error> {
        let nl = register(netlink_socket().map_err(L2Error::Netlink)?).map_err(L2Error::Netlink)?;
        let (claims_tx, claims_rx) = watch::channel(Vec::new());
        let (fail_tx, fail_rx) = watch::channel(BTreeSet::new());
        let shared = Arc::new(Mutex::new(Shared { status: vec![], counters: L2Counters::default() }));
        let driver = Driver { ann: Announcer::new(cfg), socks: BTreeMap::new(), shared: shared.clone(), fail_tx, wake: None };
        tokio::spawn(driver.run(nl, claims_rx, cancel));
        Ok(L2Handle { claims: Arc::new(claims_tx), shared, failures: fail_rx })
    }

    /// The complete set of IPs this node owns now.
    pub fn set_claims(&self, claims: Vec<Claim>) {
        self.claims.send_if_modified(|c| {
            let changed = *c != claims;
            *c = claims;
            changed
        });
    }

    pub fn status(&self) -> Vec<ClaimStatus> {
        self.shared.lock().map(|s| s.status.clone()).unwrap_or_default()
    }

    pub fn counters(&self) -> L2Counters {
        self.shared.lock().map(|s| s.counters).unwrap_or_default()
    }

    /// IPs this node owns but cannot answer for (no interface on the subnet, socket error).
    pub fn failures(&self) -> watch::Receiver<BTreeSet<IpAddr>> {
        self.failures.clone()
    }
}

struct Driver {
    ann: Announcer,
    socks: BTreeMap<u32, IfSock>,
    shared: Arc<Mutex<Shared>>,
    fail_tx: watch::Sender<BTreeSet<IpAddr>>,
    wake: Option<tokio::time::Instant>,
}

impl Driver {
    async fn run(mut self, nl: AsyncFd<OwnedFd>, mut claims: watch::Receiver<Vec<Claim>>, cancel: CancellationToken) {
        let (frame_tx, mut frame_rx) = mpsc::channel::<(u32, Vec<u8>)>(1024);
        self.step(Input::Ifaces(read_ifaces()), &frame_tx);
        loop {
            let wake = self.wake;
            let input = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                r = claims.changed() => {
                    if r.is_err() { break }
                    Input::Claims(claims.borrow_and_update().clone())
                }
                g = nl.readable() => {
                    let Ok(mut g) = g else { break };
                    g.clear_ready();
                    if !drain(&nl) { continue }
                    // Let a burst of events (e.g. a link and its addresses) settle, then read once.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    drain(&nl);
                    Input::Ifaces(read_ifaces())
                }
                _ = async { tokio::time::sleep_until(wake.unwrap_or_else(tokio::time::Instant::now)).await }, if wake.is_some() => {
                    self.wake = None;
                    Input::Tick
                }
                Some((iface, frame)) = frame_rx.recv() => Input::Frame { iface, frame },
            };
            self.step(input, &frame_tx);
        }
        // Dropping the sockets stops every answer; no goodbye frames (docs/DESIGN.md).
        self.socks.clear();
    }

    fn step(&mut self, input: Input, frame_tx: &mpsc::Sender<(u32, Vec<u8>)>) {
        let mut pending = vec![input];
        while let Some(i) = pending.pop() {
            let now = std::time::Instant::now();
            for a in self.ann.handle(i, now) {
                match a {
                    Action::Send { iface, frame } => {
                        match self.send(iface, &frame) {
                            Ok(()) => {}
                            // A full socket buffer loses one frame; hosts ask again, the burst repeats.
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => tracing::debug!(iface, "send buffer full: frame dropped"),
                            Err(e) => {
                                tracing::warn!(iface, error = %e, "cannot send frame");
                                pending.push(Input::IfaceFailed(iface, format!("send: {e}")));
                            }
                        }
                    }
                    Action::Listen(want) => {
                        for (iface, e) in self.listen(want, frame_tx) {
                            tracing::warn!(iface, error = %e, "cannot open a packet socket");
                            pending.push(Input::IfaceFailed(iface, format!("socket: {e}")));
                        }
                    }
                    Action::WakeAt(t) => {
                        let d = t.saturating_duration_since(now);
                        self.wake = Some(tokio::time::Instant::now() + d);
                    }
                }
            }
        }
        let status = self.ann.status();
        if let Ok(mut s) = self.shared.lock() {
            s.status = status;
            s.counters = self.ann.counters();
        }
        let failures = self.ann.failures();
        self.fail_tx.send_if_modified(|f| {
            let changed = *f != failures;
            *f = failures;
            changed
        });
    }

    fn send(&self, iface: u32, frame: &[u8]) -> io::Result<()> {
        let s = self.socks.get(&iface).ok_or_else(|| io::Error::other("no socket on the interface"))?;
        // SAFETY: sending from a valid buffer on our bound packet socket.
        let n = unsafe { libc::send(s.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), libc::MSG_DONTWAIT) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Makes the open sockets and their multicast groups match `want`; returns the failures.
    fn listen(&mut self, want: BTreeMap<u32, BTreeSet<Mac>>, frame_tx: &mpsc::Sender<(u32, Vec<u8>)>) -> Vec<(u32, io::Error)> {
        let mut failed = Vec::new();
        self.socks.retain(|i, _| want.contains_key(i));
        for (iface, groups) in want {
            if !self.socks.contains_key(&iface) {
                match packet_socket(iface).and_then(register) {
                    Ok(fd) => {
                        let fd = Arc::new(fd);
                        let reader = AbortOnDropHandle::new(tokio::spawn(read_frames(iface, fd.clone(), frame_tx.clone())));
                        self.socks.insert(iface, IfSock { fd, groups: BTreeSet::new(), _reader: reader });
                    }
                    Err(e) => {
                        failed.push((iface, e));
                        continue;
                    }
                }
            }
            let Some(s) = self.socks.get_mut(&iface) else { continue };
            for g in groups.difference(&s.groups.clone()) {
                if let Err(e) = membership(s.fd.get_ref(), iface, *g, true) {
                    failed.push((iface, e));
                }
            }
            for g in s.groups.difference(&groups) {
                let _ = membership(s.fd.get_ref(), iface, *g, false);
            }
            s.groups = groups;
        }
        failed
    }
}
