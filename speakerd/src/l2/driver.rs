//! The I/O of Layer 2 mode: packet sockets, multicast membership, netlink events and the clock, around
//! the sans-IO [`Announcer`]. It translates and does nothing more.
//!
//! ```text
//!  set_claims ─► watch (latest wins) ─┐
//!  netlink link/addr events ─► re-read table (10 ms settle) ─┤  biased select: cancel > claims >
//!  timer slot (ArmTimer) ─────────────────────────────────────┤  timer > interfaces > sockets
//!  reader task per socket ─► mpsc (bounded 1024, drops when full) ─┘      │
//!                                             Announcer::handle(input, now) → actions
//!  Open/Close socket, Join/Leave group, Send (owned IPs only), ArmTimer, Failures ◄─┘
//! ```
//!
//! Why raw AF_PACKET sockets under tokio's `AsyncFd` and not pnet_datalink: pnet's receiver blocks (a
//! thread per interface, woken only by traffic or a read timeout, so closing it on unclaim or
//! cancellation lags), and it hides the descriptor that PACKET_ADD_MEMBERSHIP and a BPF filter need.
//! A non-blocking socket under `AsyncFd` is closed the moment it is dropped, costs no thread, and
//! takes a classic BPF filter, so the kernel copies us only untagged ARP and ICMPv6 Neighbor
//! Solicitations, not the node's traffic. The socket is created with protocol 0 (receives nothing),
//! filtered, then bound to its interface, so no frame of another interface is ever queued on it.
//!
//! "Stop answering at once": [`L2Handle::set_claims`] publishes the new set before it returns, and
//! every frame is checked against the latest published set right before it is sent, so no answer or
//! announcement for a removed IP leaves after `set_claims` returns, whatever the announcer has queued.
//! On cancellation the sockets are closed and no goodbye frame is sent.
use super::announcer::{Action, Announcer, Claim, ClaimStatus, Input, IpCounters, L2Config, L2Counters};
use super::iface::{read_table, IfaceEvents};
use super::Mac;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

const ETH_P_ALL: u16 = 0x0003;
const SOL_PACKET: libc::c_int = 263;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_DROP_MEMBERSHIP: libc::c_int = 2;
const PACKET_MR_MULTICAST: u16 = 0;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_OUTGOING: u8 = 4;
/// Frames waiting for the driver; beyond this, requests are dropped (hosts ask again).
const FRAME_QUEUE: usize = 1024;
/// Netlink events come in bursts (a link, then each of its addresses): read the table once after them.
const SETTLE: Duration = Duration::from_millis(10);
/// Larger than any ARP or NS frame; a longer (jumbo) frame is cut and then fails to decode.
const FRAME_BUF: usize = 2048;

/// Errors of [`L2Handle::start`]. Errors on one interface later on are not fatal: they appear in
/// [`L2Handle::failures`] and in [`ClaimStatus::error`].
#[derive(Debug, thiserror::Error)]
pub enum L2Error {
    /// The NETLINK_ROUTE socket for link and address events could not be opened or subscribed.
    #[error("netlink socket")]
    Netlink(#[source] io::Error),
    /// `start` was called outside a tokio runtime.
    #[error("not inside a tokio runtime")]
    NoRuntime,
}

impl L2Error {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Netlink(_) => "netlink",
            Self::NoRuntime => "no_runtime",
        }
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Classic BPF: accept untagged ARP, and untagged IPv6 whose next header is ICMPv6 (58) with type 135
/// (Neighbor Solicitation) or 136 (Neighbor Advertisement: another host claiming an address, for the
/// conflict check); drop everything else. Frames with a VLAN tag belong to the VLAN's own interface,
/// not to the one we are bound to.
fn filter() -> [libc::sock_filter; 12] {
    let f = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    const LDB_ABS: u16 = 0x30;
    const LDH_ABS: u16 = 0x28;
    const JEQ_K: u16 = 0x15;
    const RET_K: u16 = 0x06;
    let vlan_tag_present = (libc::SKF_AD_OFF + libc::SKF_AD_VLAN_TAG_PRESENT) as u32;
    [
        f(LDB_ABS, 0, 0, vlan_tag_present), //  0: ancillary: VLAN tag present?
        f(JEQ_K, 0, 9, 0),                  //  1: tagged → drop (11)
        f(LDH_ABS, 0, 0, 12),               //  2: EtherType
        f(JEQ_K, 6, 0, 0x0806),             //  3: ARP → accept (10)
        f(JEQ_K, 0, 6, 0x86dd),             //  4: not IPv6 → drop (11)
        f(LDB_ABS, 0, 0, 14 + 6),           //  5: IPv6 next header
        f(JEQ_K, 0, 4, 58),                 //  6: not ICMPv6 → drop
        f(LDB_ABS, 0, 0, 14 + 40),          //  7: ICMPv6 type
        f(JEQ_K, 1, 0, 135),                //  8: NS → accept
        f(JEQ_K, 0, 1, 136),                //  9: not NA → drop
        f(RET_K, 0, 0, 0x0004_0000),        // 10: accept (whole frame)
        f(RET_K, 0, 0, 0),                  // 11: drop
    ]
}

/// A packet socket bound to one interface, filtered to ARP, NS and NA, non-blocking.
struct PacketSocket {
    fd: Arc<AsyncFd<OwnedFd>>,
    ifindex: u32,
    _reader: AbortOnDropHandle<()>,
}

fn open_packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    // Protocol 0: nothing is queued on the socket until bind() names the protocol and interface.
    // SAFETY: plain socket(2); the descriptor is owned by the OwnedFd at once.
    let fd =
        cvt(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just returned by socket(2) and is owned nowhere else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let prog = filter();
    let fprog = libc::sock_fprog { len: prog.len() as libc::c_ushort, filter: prog.as_ptr().cast_mut() };
    // SAFETY: fprog points to `prog`, which outlives the call; the kernel copies the program.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            std::ptr::addr_of!(fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    // Our own frames are not input (Linux ≥ 4.20; older kernels: the reader skips PACKET_OUTGOING).
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a c_int that lives across the call.
    let _ = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            std::ptr::addr_of!(one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = ETH_P_ALL.to_be();
    sll.sll_ifindex = libc::c_int::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: binds to a sockaddr_ll of the size given.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::addr_of!(sll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(fd)
}

/// PACKET_ADD_MEMBERSHIP / PACKET_DROP_MEMBERSHIP of a link-layer multicast address (PACKET_MR_MULTICAST):
/// the interface then accepts frames to it, without promiscuous mode.
fn set_membership(fd: &OwnedFd, ifindex: u32, group: Mac, join: bool) -> io::Result<()> {
    /// struct packet_mreq (linux/if_packet.h).
    #[repr(C)]
    struct PacketMreq {
        mr_ifindex: libc::c_int,
        mr_type: libc::c_ushort,
        mr_alen: libc::c_ushort,
        mr_address: [libc::c_uchar; 8],
    }
    let mut mr_address = [0u8; 8];
    mr_address[..6].copy_from_slice(&group);
    let mr_ifindex = libc::c_int::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let m = PacketMreq { mr_ifindex, mr_type: PACKET_MR_MULTICAST, mr_alen: 6, mr_address };
    let opt = if join { PACKET_ADD_MEMBERSHIP } else { PACKET_DROP_MEMBERSHIP };
    // SAFETY: `m` has the layout of struct packet_mreq and lives across the call.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_PACKET,
            opt,
            std::ptr::addr_of!(m).cast(),
            std::mem::size_of::<PacketMreq>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

/// What a socket's reader tells the driver.
#[derive(Debug)]
enum SocketEvent {
    Frame { iface: u32, frame: Vec<u8> },
    Failed { iface: u32, error: io::Error },
}

/// Reads frames from one socket into the driver's bounded queue until the socket fails or the task is
/// aborted (socket closed).
async fn read_frames(iface: u32, fd: Arc<AsyncFd<OwnedFd>>, tx: mpsc::Sender<SocketEvent>) {
    let mut buf = vec![0u8; FRAME_BUF];
    loop {
        let mut guard = match fd.readable().await {
            Ok(g) => g,
            Err(error) => {
                let _ = tx.send(SocketEvent::Failed { iface, error }).await;
                return;
            }
        };
        loop {
            // SAFETY: sockaddr_ll is plain data; all-zero is a valid value.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut flen = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: the buffer and the address are valid for the sizes given.
            let n = unsafe {
                libc::recvfrom(
                    fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    std::ptr::addr_of_mut!(from).cast(),
                    &mut flen,
                )
            };
            let Ok(n) = usize::try_from(n) else {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EAGAIN) => {
                        guard.clear_ready();
                        break;
                    }
                    // ENETDOWN is reported once when the interface goes down; the socket works again
                    // when it comes back, and the netlink event tells the announcer meanwhile.
                    Some(libc::EINTR | libc::ENETDOWN) => continue,
                    _ => {
                        let _ = tx.send(SocketEvent::Failed { iface, error }).await;
                        return;
                    }
                }
            };
            if from.sll_pkttype == PACKET_OUTGOING || u32::try_from(from.sll_ifindex).ok() != Some(iface) {
                continue;
            }
            tracing::trace!(len = n, "frame");
            match tx.try_send(SocketEvent::Frame { iface, frame: buf.get(..n).unwrap_or_default().to_vec() }) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => tracing::debug!("frame queue full: request dropped"),
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
    }
}

type ClaimSet = Arc<BTreeMap<IpAddr, Claim>>;

struct Shared {
    status: Vec<ClaimStatus>,
    counters: L2Counters,
    per_ip: BTreeMap<IpAddr, IpCounters>,
}

/// A running Layer 2 announcer. Cloning gives another handle to the same one.
#[derive(Clone)]
pub struct L2Handle {
    claims: Arc<watch::Sender<ClaimSet>>,
    shared: Arc<Mutex<Shared>>,
    failures: watch::Receiver<BTreeSet<IpAddr>>,
    standby_failures: watch::Receiver<BTreeSet<IpAddr>>,
}

impl std::fmt::Debug for L2Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L2Handle").field("claims", &self.claims.borrow().len()).finish_non_exhaustive()
    }
}

impl L2Handle {
    /// Subscribes to netlink link/address events and spawns the driver task on the current tokio
    /// runtime. All sockets, now and later, belong to the network namespace of the calling thread
    /// (sockets are opened by the task, which inherits nothing else: call this on the runtime whose
    /// threads are in the right namespace). The task ends when `cancel` fires; it then closes every
    /// socket without sending goodbye frames.
    ///
    /// Not `async`: nothing in it waits, and `main` calls it as a plain function.
    pub fn start(cfg: L2Config, cancel: CancellationToken) -> Result<L2Handle, L2Error> {
        tokio::runtime::Handle::try_current().map_err(|_| L2Error::NoRuntime)?;
        let events = IfaceEvents::subscribe().map_err(L2Error::Netlink)?;
        let (claims_tx, claims_rx) = watch::channel(ClaimSet::default());
        let (failures_tx, failures_rx) = watch::channel(BTreeSet::new());
        let (standby_tx, standby_rx) = watch::channel(BTreeSet::new());
        let shared = Arc::new(Mutex::new(Shared {
            status: Vec::new(),
            counters: L2Counters::default(),
            per_ip: BTreeMap::new(),
        }));
        let (events_tx, events_rx) = mpsc::channel(FRAME_QUEUE);
        let driver = Driver {
            ann: Announcer::new(cfg),
            socks: BTreeMap::new(),
            claims: claims_rx,
            shared: shared.clone(),
            failures: failures_tx,
            standby_failures: standby_tx,
            wake: None,
            events_tx,
            last_status: Vec::new(),
        };
        tokio::spawn(driver.run(events, events_rx, cancel).instrument(tracing::info_span!("l2")));
        Ok(L2Handle { claims: Arc::new(claims_tx), shared, failures: failures_rx, standby_failures: standby_rx })
    }

    /// Replaces the set of IPs this node owns (the complete set; a repeated IP: the last one wins).
    /// IPs not in it stop being answered before this returns: nothing for them is sent afterwards.
    /// New ones get the gratuitous ARP / unsolicited NA burst, each repeat only while still owned.
    pub fn set_claims(&self, claims: Vec<Claim>) {
        let set: BTreeMap<IpAddr, Claim> = claims.into_iter().map(|c| (c.ip, c)).collect();
        self.claims.send_if_modified(|cur| {
            if **cur == set {
                return false;
            }
            *cur = Arc::new(set);
            true
        });
    }

    /// Every owned IP with the interfaces it is answered on, or why it is not. Updated after every
    /// event the driver handles (so right after `set_claims` it may still show the previous set).
    pub fn status(&self) -> Vec<ClaimStatus> {
        self.shared.lock().map(|s| s.status.clone()).unwrap_or_default()
    }

    /// The owned IPs that cannot be answered now: no usable interface on their subnet (or among the
    /// listed ones), a socket error, the interface down or gone. Changes are notified.
    pub fn failures(&self) -> watch::Receiver<BTreeSet<IpAddr>> {
        self.failures.clone()
    }

    /// The standby IPs (candidates this node does not own) it could not answer for if it owned them.
    pub fn standby_failures(&self) -> watch::Receiver<BTreeSet<IpAddr>> {
        self.standby_failures.clone()
    }

    pub fn counters(&self) -> L2Counters {
        self.shared.lock().map(|s| s.counters).unwrap_or_default()
    }

    /// Per claimed IP (MetalLB's `ip` label).
    pub fn ip_counters(&self) -> BTreeMap<IpAddr, IpCounters> {
        self.shared.lock().map(|s| s.per_ip.clone()).unwrap_or_default()
    }
}

async fn sleep_until(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

async fn iface_changed(events: Option<&IfaceEvents>) -> io::Result<()> {
    match events {
        Some(e) => e.changed().await,
        None => std::future::pending().await,
    }
}

struct Driver {
    ann: Announcer,
    socks: BTreeMap<u32, PacketSocket>,
    claims: watch::Receiver<ClaimSet>,
    shared: Arc<Mutex<Shared>>,
    failures: watch::Sender<BTreeSet<IpAddr>>,
    standby_failures: watch::Sender<BTreeSet<IpAddr>>,
    /// The announcer's timer slot: pending while `None`.
    wake: Option<Instant>,
    events_tx: mpsc::Sender<SocketEvent>,
    last_status: Vec<ClaimStatus>,
}

impl Driver {
    async fn run(mut self, events: IfaceEvents, mut events_rx: mpsc::Receiver<SocketEvent>, cancel: CancellationToken) {
        let mut events = Some(events);
        let mut reread: Option<Instant> = None;
        // Subscribed first (in `start`), read second: no change can fall in between.
        self.step(Input::Ifaces(read_table()));
        loop {
            // Every arm is cancel-safe: watch and mpsc receivers keep their state, the sleeps are
            // recreated from the slots, and netlink events stay queued in the socket.
            let input = tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                r = self.claims.changed() => {
                    if r.is_err() {
                        break; // every handle is gone
                    }
                    let set = self.claims.borrow_and_update().clone();
                    Input::Claims(set.values().cloned().collect())
                }
                _ = sleep_until(self.wake) => {
                    self.wake = None;
                    Input::Timer
                }
                _ = sleep_until(reread) => {
                    reread = None;
                    let t = read_table();
                    // getifaddrs failing (EMFILE, ENOMEM) yields nothing at all, while a real table
                    // always has `lo`: keep the previous table and try again, rather than find every
                    // IP unanswerable and hand them all over.
                    if t.is_empty() {
                        tracing::warn!("reading the interface table failed: keeping the previous one, retrying in 1 s");
                        reread = Some(Instant::now() + Duration::from_secs(1));
                        continue;
                    }
                    Input::Ifaces(t)
                }
                r = iface_changed(events.as_ref()) => {
                    match r {
                        Ok(()) => {
                            reread.get_or_insert_with(|| Instant::now() + SETTLE);
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "netlink socket failed: interface changes are no longer followed");
                            events = None;
                        }
                    }
                    continue;
                }
                Some(ev) = events_rx.recv() => match ev {
                    SocketEvent::Frame { iface, frame } => Input::Frame { iface, frame },
                    SocketEvent::Failed { iface, error } => {
                        tracing::warn!(iface, %error, "packet socket failed");
                        Input::IfaceFailed { iface, reason: format!("receive: {error}") }
                    }
                },
            };
            self.step(input);
        }
        // Closing the sockets stops every answer; no goodbye frames (docs/DESIGN.md).
        self.socks.clear();
        tracing::debug!("stopped");
    }

    fn owned_now(&self, ip: &IpAddr) -> bool {
        self.claims.borrow().contains_key(ip)
    }

    fn step(&mut self, input: Input) {
        let mut pending = VecDeque::from([input]);
        // A frame changes counters only; status is rebuilt for everything else.
        let mut status_changed = false;
        // IPs whose counters a frame sent changed (copied alone when nothing else changed).
        let mut touched: BTreeSet<IpAddr> = BTreeSet::new();
        while let Some(input) = pending.pop_front() {
            status_changed |= !matches!(input, Input::Frame { .. });
            let now = Instant::now();
            let actions = self.ann.handle(input, now.into_std());
            // A lost conflict changes where an IP is answered.
            status_changed |= actions.iter().any(|a| matches!(a, Action::Conflict { won: false, .. }));
            self.wake = None;
            touched
                .extend(actions.iter().filter_map(|a| if let Action::Send { ip, .. } = a { Some(*ip) } else { None }));
            for action in actions {
                if let Some(fix) = self.apply(action) {
                    pending.push_back(fix);
                }
            }
        }
        self.publish(status_changed, &touched);
    }

    /// Carries out one action; a failure comes back as the input that reports it.
    fn apply(&mut self, action: Action) -> Option<Input> {
        match action {
            Action::OpenSocket { iface } => {
                let opened = open_packet_socket(iface).and_then(super::register_readable).map(Arc::new);
                match opened {
                    Ok(fd) => {
                        let span = tracing::debug_span!("l2_iface", iface);
                        let reader =
                            tokio::spawn(read_frames(iface, fd.clone(), self.events_tx.clone()).instrument(span));
                        self.socks.insert(
                            iface,
                            PacketSocket { fd, ifindex: iface, _reader: AbortOnDropHandle::new(reader) },
                        );
                        tracing::debug!(iface, "packet socket open");
                        None
                    }
                    Err(e) => Some(Input::IfaceFailed { iface, reason: format!("socket: {e}") }),
                }
            }
            Action::CloseSocket { iface } => {
                self.socks.remove(&iface);
                tracing::debug!(iface, "packet socket closed");
                None
            }
            Action::Join { iface, group } | Action::Leave { iface, group } => {
                let join = matches!(action, Action::Join { .. });
                let s = self.socks.get(&iface)?;
                match set_membership(s.fd.get_ref(), s.ifindex, group, join) {
                    Ok(()) => None,
                    Err(e) if join => Some(Input::IfaceFailed { iface, reason: format!("multicast membership: {e}") }),
                    Err(e) => {
                        tracing::debug!(iface, error = %e, "leaving a multicast group failed");
                        None
                    }
                }
            }
            Action::Send { iface, ip, frame } => {
                if !self.owned_now(&ip) {
                    tracing::debug!(%ip, "no longer owned: frame not sent");
                    return None;
                }
                let s = self.socks.get(&iface)?;
                // SAFETY: sending from a valid buffer of the length given on our bound packet socket.
                let n = unsafe { libc::send(s.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), libc::MSG_DONTWAIT) };
                if n >= 0 {
                    tracing::trace!(iface, %ip, len = frame.len(), "frame sent");
                    return None;
                }
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    // A full queue loses this frame only: hosts ask again, the burst repeats.
                    Some(libc::EAGAIN | libc::ENOBUFS | libc::EINTR) => {
                        tracing::debug!(iface, %ip, error = %e, "frame dropped");
                        None
                    }
                    _ => Some(Input::IfaceFailed { iface, reason: format!("send: {e}") }),
                }
            }
            Action::ArmTimer(t) => {
                self.wake = Some(Instant::from_std(t));
                None
            }
            Action::Failures(f) => {
                self.failures.send_replace(f);
                None
            }
            Action::StandbyFailures(f) => {
                self.standby_failures.send_replace(f);
                None
            }
            Action::Conflict { ip, iface, other, won, quiet_until } => {
                let other = other.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
                let quiet_ms = quiet_until.map(|t| t.saturating_duration_since(std::time::Instant::now()).as_millis());
                tracing::warn!(%ip, iface, %other, won, ?quiet_ms, "address conflict: another MAC claims an IP this node answers for");
                None
            }
        }
    }

    /// Publishes counters, and status if it may have changed, and logs what changed for the operator.
    fn publish(&mut self, status_changed: bool, touched: &BTreeSet<IpAddr>) {
        if !status_changed {
            if let Ok(mut s) = self.shared.lock() {
                s.counters = self.ann.counters();
                for ip in touched {
                    if let Some(c) = self.ann.ip_counters().get(ip) {
                        s.per_ip.insert(*ip, *c);
                    }
                }
            }
            return;
        }
        let status = self.ann.status();
        if status != self.last_status {
            let old: BTreeMap<IpAddr, &ClaimStatus> = self.last_status.iter().map(|s| (s.ip, s)).collect();
            for s in &status {
                let prev = old.get(&s.ip);
                if prev.map(|p| (&p.answering_on, &p.error)) == Some((&s.answering_on, &s.error)) {
                    continue;
                }
                let ifaces: Vec<&str> = s.answering_on.iter().map(|(n, _)| n.as_str()).collect();
                let _span = tracing::info_span!("l2_ip", ip = %s.ip, iface = ?ifaces).entered();
                match &s.error {
                    None => tracing::info!("answering"),
                    Some(e) => tracing::warn!(error = %e, "owned but not answered"),
                }
            }
            let now: BTreeSet<IpAddr> = status.iter().map(|s| s.ip).collect();
            for ip in old.keys().filter(|ip| !now.contains(ip)) {
                tracing::info!(%ip, "released: no longer answered");
            }
            self.last_status = status.clone();
        }
        if let Ok(mut s) = self.shared.lock() {
            s.status = status;
            s.counters = self.ann.counters();
            s.per_ip = self.ann.ip_counters().clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the classic BPF program over a frame (no ancillary data except "no VLAN tag").
    fn run_filter(frame: &[u8], vlan_tagged: bool) -> u32 {
        let prog = filter();
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            match i.code {
                0x30 if i.k == (libc::SKF_AD_OFF + libc::SKF_AD_VLAN_TAG_PRESENT) as u32 => a = u32::from(vlan_tagged),
                0x30 => match frame.get(i.k as usize) {
                    Some(b) => a = u32::from(*b),
                    None => return 0,
                },
                0x28 => match frame.get(i.k as usize..i.k as usize + 2) {
                    Some(b) => a = u32::from(u16::from_be_bytes([b[0], b[1]])),
                    None => return 0,
                },
                0x15 => {
                    pc += usize::from(if a == i.k { i.jt } else { i.jf });
                }
                0x06 => return i.k,
                c => panic!("unexpected opcode {c:#x}"),
            }
            pc += 1;
        }
    }

    #[test]
    fn filter_passes_arp_ns_and_na_only() {
        let me = [2, 0, 0, 0, 0, 1];
        let arp = super::super::arp::build_request(me, "192.0.2.9".parse().unwrap(), "192.0.2.50".parse().unwrap());
        let ns = super::super::ndp::build_ns(me, "2001:db8::9".parse().unwrap(), "2001:db8::50".parse().unwrap());
        let na =
            super::super::ndp::build_unsolicited_na(me, "fe80::1".parse().unwrap(), "2001:db8::50".parse().unwrap());
        assert_ne!(run_filter(&arp, false), 0);
        assert_ne!(run_filter(&ns, false), 0);
        assert_ne!(run_filter(&na, false), 0, "advertisements are input (address conflicts)");
        let mut echo = na.clone();
        echo[14 + 40] = 128; // an ICMPv6 echo request
        assert_eq!(run_filter(&echo, false), 0, "other ICMPv6 is not");
        assert_eq!(run_filter(&arp, true), 0, "VLAN-tagged");
        let mut ipv4 = arp.clone();
        ipv4[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(run_filter(&ipv4, false), 0);
        let mut udp6 = ns;
        udp6[20] = 17;
        assert_eq!(run_filter(&udp6, false), 0);
    }

    #[tokio::test]
    async fn set_claims_publishes_before_returning_and_start_needs_no_root_for_netlink() {
        let cancel = CancellationToken::new();
        let h = L2Handle::start(L2Config::default(), cancel.clone()).expect("netlink route events need no privilege");
        let c = Claim {
            ip: "192.0.2.50".parse().unwrap(),
            interfaces: vec![],
            exclude_interfaces: vec![],
            standby: false,
            view: 0,
        };
        h.set_claims(vec![c.clone()]);
        assert!(h.claims.borrow().contains_key(&c.ip));
        h.set_claims(vec![]);
        assert!(h.claims.borrow().is_empty(), "gone from the set that gates every send");
        cancel.cancel();
    }

    #[test]
    fn start_outside_a_runtime_is_an_error() {
        assert!(matches!(L2Handle::start(L2Config::default(), CancellationToken::new()), Err(L2Error::NoRuntime)));
    }
}
