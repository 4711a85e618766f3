//! The harness's own view of the wire: network-namespace entry for one thread, a minimal BGP speaker
//! that replays pre-encoded UPDATEs as fast as the socket takes them (the reference sender), and an
//! AF_PACKET sniffer that timestamps the first frame matching a predicate.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Runs `f` on a new thread that entered the network namespace `ns` (by name, `/run/netns/<ns>`).
/// Sockets made there stay in that namespace wherever they are used afterwards.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    spawn_in_netns(ns, f).join().expect("netns thread panicked")
}

/// [`in_netns`] without waiting.
pub fn spawn_in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        enter_netns(&path);
        f()
    })
}

fn enter_netns(path: &str) {
    let fd = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on a valid namespace descriptor changes only the calling thread's namespace.
    let rc = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&fd), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
}

// ---------------------------------------------------------------------------------------------------
// BGP encoding, only what the replay sender needs: OPEN, KEEPALIVE and UPDATEs packed to 4096 bytes.

const MAX_MSG: usize = 4096;

fn message(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(kind);
    m.extend_from_slice(body);
    m
}

pub fn keepalive() -> Vec<u8> {
    message(4, &[])
}

/// OPEN with 4-byte ASN and multiprotocol capabilities for IPv4 and IPv6 unicast.
pub fn open(asn: u32, router_id: Ipv4Addr, hold: u16) -> Vec<u8> {
    let mut caps = vec![];
    for afi in [1u16, 2] {
        caps.extend_from_slice(&[1, 4]);
        caps.extend_from_slice(&afi.to_be_bytes());
        caps.extend_from_slice(&[0, 1]);
    }
    caps.extend_from_slice(&[65, 4]);
    caps.extend_from_slice(&asn.to_be_bytes());
    let mut body = vec![4];
    body.extend_from_slice(&(if asn > 0xffff { 23456u16 } else { asn as u16 }).to_be_bytes());
    body.extend_from_slice(&hold.to_be_bytes());
    body.extend_from_slice(&router_id.octets());
    body.push(caps.len() as u8 + 2);
    body.push(2);
    body.push(caps.len() as u8);
    body.extend_from_slice(&caps);
    message(1, &body)
}

fn attr(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut a = vec![];
    if value.len() > 255 {
        a.extend_from_slice(&[flags | 0x10, code]);
        a.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        a.extend_from_slice(&[flags, code, value.len() as u8]);
    }
    a.extend_from_slice(value);
    a
}

fn common_attrs(asn: u32) -> Vec<u8> {
    let mut a = attr(0x40, 1, &[0]); // ORIGIN IGP
    let mut path = vec![2, 1];
    path.extend_from_slice(&asn.to_be_bytes());
    a.extend(attr(0x40, 2, &path)); // AS_PATH, one AS_SEQUENCE of our AS
    a
}

fn nlri(p: IpAddr) -> Vec<u8> {
    match p {
        IpAddr::V4(a) => [&[32u8][..], &a.octets()].concat(),
        IpAddr::V6(a) => [&[128u8][..], &a.octets()].concat(),
    }
}

/// Every host route of `prefixes` in UPDATEs with the same attributes, as many per message as fit:
/// IPv4 in the NLRI field with NEXT_HOP, IPv6 in MP_REACH_NLRI (RFC 4760). One buffer, ready to write.
pub fn updates(prefixes: &[IpAddr], asn: u32, nh4: Ipv4Addr, nh6: Ipv6Addr) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefixes.len() * 6 + prefixes.len() / 100 * 64);
    let (v4, v6): (Vec<_>, Vec<_>) = prefixes.iter().partition(|p| p.is_ipv4());
    let base = common_attrs(asn);
    let nh_attr = attr(0x40, 3, &nh4.octets());
    let fixed = 19 + 2 + 2 + base.len() + nh_attr.len();
    for chunk in v4.chunks((MAX_MSG - fixed) / 5) {
        let attrs = [&base[..], &nh_attr].concat();
        let mut body = vec![0, 0];
        body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        body.extend(attrs);
        for p in chunk {
            body.extend(nlri(*p));
        }
        out.extend(message(2, &body));
    }
    // MP_REACH_NLRI: AFI 2, SAFI 1, next hop length 16, next hop, reserved, NLRI (extended length)
    let fixed6 = 19 + 2 + 2 + base.len() + 4 + 5 + 16 + 1;
    for chunk in v6.chunks((MAX_MSG - fixed6) / 17) {
        let mut mp = vec![0, 2, 1, 16];
        mp.extend_from_slice(&nh6.octets());
        mp.push(0);
        for p in chunk {
            mp.extend(nlri(*p));
        }
        let mut attrs = base.clone();
        attrs.extend(attr(0x80, 14, &mp));
        let mut body = vec![0, 0];
        body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        body.extend(attrs);
        out.extend(message(2, &body));
    }
    out
}

/// One replay session: connects from `local` to `remote`:179, exchanges OPEN and KEEPALIVE, writes
/// `updates` in one go, then keeps the session (KEEPALIVE every 10 s) until `stop`. Returns when the
/// UPDATEs are written; the session lives on in a thread until `stop` is set.
pub struct Replay {
    thread: Option<JoinHandle<()>>,
}

impl Replay {
    pub fn start(
        ns: &str,
        local: IpAddr,
        remote: IpAddr,
        asn: u32,
        updates: Arc<Vec<u8>>,
        stop: Arc<AtomicBool>,
    ) -> io::Result<Replay> {
        let (tx, rx) = mpsc::channel();
        let thread = spawn_in_netns(ns, move || {
            let r = replay_session(local, remote, asn, &updates, &stop, &tx);
            if let Err(e) = r {
                let _ = tx.send(Err(e));
            }
        });
        rx.recv_timeout(Duration::from_secs(120)).map_err(|_| io::Error::other("replay: no session"))??;
        Ok(Replay { thread: Some(thread) })
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Started = io::Result<()>;

fn replay_session(
    local: IpAddr,
    remote: IpAddr,
    asn: u32,
    updates: &[u8],
    stop: &AtomicBool,
    tx: &mpsc::Sender<Started>,
) -> io::Result<()> {
    let sock =
        socket2::Socket::new(socket2::Domain::for_address(SocketAddr::new(remote, 179)), socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(local, 0).into())?;
    sock.connect_timeout(&SocketAddr::new(remote, 179).into(), Duration::from_secs(10))?;
    let mut s: TcpStream = sock.into();
    s.set_nodelay(true)?;
    let id = match local {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::new(192, 0, 2, 1),
    };
    s.write_all(&open(asn, id, 90))?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut buf = vec![0u8; 65536];
    let mut have = 0usize;
    let (mut got_open, mut established) = (false, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while established.is_none() {
        if Instant::now() > deadline {
            return Err(io::Error::other("replay: no OPEN/KEEPALIVE from the receiver"));
        }
        match s.read(&mut buf[have..]) {
            Ok(0) => return Err(io::Error::other("replay: receiver closed the session")),
            Ok(n) => have += n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => continue,
            Err(e) => return Err(e),
        }
        while have >= 19 {
            let len = u16::from_be_bytes([buf[16], buf[17]]) as usize;
            if len < 19 || have < len {
                break;
            }
            match buf[18] {
                1 => {
                    got_open = true;
                    s.write_all(&keepalive())?;
                }
                4 if got_open => established = Some(()),
                3 => return Err(io::Error::other("replay: NOTIFICATION from the receiver")),
                _ => {}
            }
            buf.copy_within(len..have, 0);
            have -= len;
        }
    }
    s.write_all(updates)?;
    let _ = tx.send(Ok(()));
    let mut last_ka = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if last_ka.elapsed() > Duration::from_secs(10) {
            s.write_all(&keepalive())?;
            last_ka = Instant::now();
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------
// Sniffer

/// A frame matcher: the Ethernet frame as received.
pub type Matcher = Box<dyn Fn(&[u8]) -> bool + Send>;

/// Timestamps (harness monotonic clock, from the kernel's receive timestamp) the frames on `dev` in `ns` that `matcher`
/// accepts. Captures from the moment `start` returns.
pub struct Sniffer {
    fd: i32,
    stop: Arc<AtomicBool>,
    rx: Vec<mpsc::Receiver<Instant>>,
    thread: Option<JoinHandle<()>>,
}

impl Sniffer {
    pub fn start(ns: &str, dev: &str, matcher: Matcher) -> Sniffer {
        Sniffer::start_many(ns, dev, vec![matcher])
    }

    /// One capture thread for several matchers, each with its own queue (`first_of(i)`, `last_of(i)`): a
    /// thread per matcher would wake once per frame each and take CPU from the runs being measured.
    pub fn start_many(ns: &str, dev: &str, matchers: Vec<Matcher>) -> Sniffer {
        let stop = Arc::new(AtomicBool::new(false));
        let (txs, rx): (Vec<_>, Vec<_>) = matchers.iter().map(|_| mpsc::channel()).unzip();
        let (ready_tx, ready_rx) = mpsc::channel();
        let (st, dev) = (stop.clone(), dev.to_string());
        let thread = spawn_in_netns(ns, move || {
            let fd = packet_socket(&dev).expect("AF_PACKET socket");
            let _ = ready_tx.send(fd);
            let mut buf = vec![0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                let Some((n, at)) = recv_stamped(fd, &mut buf) else { continue };
                for (m, tx) in matchers.iter().zip(&txs) {
                    if m(&buf[..n]) {
                        let _ = tx.send(at);
                    }
                }
            }
            // SAFETY: fd was opened above and is closed once.
            unsafe { libc::close(fd) };
        });
        let fd = ready_rx.recv_timeout(Duration::from_secs(5)).unwrap_or(-1);
        Sniffer { fd, stop, rx, thread: Some(thread) }
    }

    /// Frames the kernel dropped because the capture's buffer was full, since the last call
    /// (PACKET_STATISTICS): a "last frame" is not to be trusted when some were.
    pub fn drops(&self) -> u32 {
        let mut st = libc::tpacket_stats { tp_packets: 0, tp_drops: 0 };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: getsockopt(2) on the capture's descriptor (open until the sniffer is dropped) into a
        // struct of the size passed.
        let r = unsafe {
            libc::getsockopt(
                self.fd,
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        if r == 0 {
            st.tp_drops
        } else {
            u32::MAX
        }
    }

    /// Forgets the frames matched so far.
    pub fn drain(&self) {
        while self.rx[0].try_recv().is_ok() {}
    }

    /// The first matching frame seen so far or within `timeout`.
    pub fn first(&self, timeout: Duration) -> Option<Instant> {
        self.first_of(0, timeout)
    }

    /// The same for the matcher `i` of [`Sniffer::start_many`].
    pub fn first_of(&self, i: usize, timeout: Duration) -> Option<Instant> {
        self.rx[i].recv_timeout(timeout).ok()
    }

    /// The last frame matched by matcher `i`: every frame seen so far, then more until none comes for
    /// `quiet`.
    pub fn last_of(&self, i: usize, quiet: Duration) -> Option<Instant> {
        let mut last = None;
        while let Ok(t) = self.rx[i].recv_timeout(quiet) {
            last = Some(t);
        }
        last
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One frame and when the kernel saw it (SO_TIMESTAMPNS), as an `Instant`: the capture thread may be
/// scheduled late on a busy machine, the kernel's timestamp is not.
fn recv_stamped(fd: i32, buf: &mut [u8]) -> Option<(usize, Instant)> {
    // SAFETY: recvmsg(2) on an open socket, with an iovec over `buf` and a control buffer that outlive
    // the call; the control messages are read with the libc CMSG macros within `ctl`'s length.
    unsafe {
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
        let mut ctl = [0u64; 16];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&ctl);
        let n = libc::recvmsg(fd, &mut msg, 0);
        if n <= 0 {
            return None;
        }
        let (now, wall) = (Instant::now(), std::time::SystemTime::now());
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                let seen = std::time::UNIX_EPOCH + Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
                let age = wall.duration_since(seen).unwrap_or_default();
                return Some((n as usize, now.checked_sub(age).unwrap_or(now)));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
        Some((n as usize, now))
    }
}

fn packet_socket(dev: &str) -> io::Result<i32> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2)/setsockopt(2)/bind(2) calls on a descriptor we own; the structs are
    // zero-initialised and sized as the kernel expects.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // The receive buffer holds whole frames (up to 64 KiB with GSO): 100k IPv6 routes to 4 receivers
        // overflowed the default one and the last frames were lost. Root may force a larger one.
        let big: libc::c_int = 256 << 20;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&big as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
        let tv = libc::timeval { tv_sec: 0, tv_usec: 50_000 };
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        );
        let on: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        );
        let name = std::ffi::CString::new(dev).unwrap();
        let ifindex = libc::if_nametoindex(name.as_ptr());
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex as i32;
        if libc::bind(fd, (&sll as *const libc::sockaddr_ll).cast(), std::mem::size_of::<libc::sockaddr_ll>() as u32)
            < 0
        {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(fd)
    }
}

/// A BGP OPEN in a TCP segment (IPv4 or IPv6), sent from `from`.
pub fn is_bgp_open_from(from: IpAddr) -> Matcher {
    bgp_message(move |src, _| src == from, 1)
}

/// A segment from `src` to `dst` (to anyone: `None`) carrying a BGP UPDATE.
pub fn is_bgp_update(src: IpAddr, dst: Option<IpAddr>) -> Matcher {
    bgp_message(move |s, d| s == src && dst.is_none_or(|dst| d == dst), 2)
}

/// A BGP KEEPALIVE from `from` to `to` in a TCP segment; every BGP message of the segment is looked at.
pub fn is_bgp_keepalive_between(from: IpAddr, to: IpAddr) -> Matcher {
    bgp_message(move |src, dst| src == from && dst == to, 4)
}

/// Counts into `count` the BGP UPDATE messages that `src` sends (to anyone), and matches nothing. A
/// message may start in one segment and end in a later one: the last 18 bytes of each stream's payload
/// are kept and looked at again with the next segment, so a marker cut by a segment boundary is counted
/// once. The sniffer runs its matchers on one thread, in frame order.
pub fn count_bgp_updates(src: IpAddr, count: Arc<std::sync::atomic::AtomicU64>) -> Matcher {
    let tails = std::sync::Mutex::new(std::collections::HashMap::<IpAddr, Vec<u8>>::new());
    Box::new(move |f: &[u8]| {
        let Some((s, d, payload)) = tcp_segment(f) else { return false };
        if s != src || payload.is_empty() {
            return false;
        }
        let mut tails = tails.lock().unwrap();
        let tail = tails.entry(d).or_default();
        let mut buf = std::mem::take(tail);
        buf.extend_from_slice(payload);
        count.fetch_add(count_updates(&buf), Ordering::Relaxed);
        *tail = buf[buf.len().saturating_sub(18)..].to_vec();
        false
    })
}

/// UPDATE messages whose header lies wholly in `buf`: a marker is the last 16 of a run of 0xff bytes
/// (the length's high byte that follows is at most 0x10), the type is 3 bytes after it.
fn count_updates(buf: &[u8]) -> u64 {
    let mut n = 0;
    let mut i = 0;
    while i + 19 <= buf.len() {
        if buf[i..i + 16].iter().all(|b| *b == 0xff) && buf[i + 16] != 0xff {
            if buf[i + 18] == 2 {
                n += 1;
            }
            i += 19;
        } else {
            i += 1;
        }
    }
    n
}

/// A segment from `src` with TCP payload: once a session is up, the sender's UPDATEs (and, rarely, a
/// KEEPALIVE). Unlike the BGP matchers it also counts segments that start inside a message.
pub fn is_tcp_data_from(src: IpAddr) -> Matcher {
    Box::new(move |f: &[u8]| tcp_segment(f).is_some_and(|(s, _, payload)| s == src && !payload.is_empty()))
}

/// Source, destination and TCP payload of an Ethernet frame carrying TCP over IPv4 or IPv6 (no
/// extension headers); the payload ends where the IP length says, not at the frame's padding.
fn tcp_segment(f: &[u8]) -> Option<(IpAddr, IpAddr, &[u8])> {
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let ip = f.get(14..)?;
    let (src, dst, tcp): (IpAddr, IpAddr, &[u8]) = match ethertype {
        0x0800 if ip.len() >= 20 && ip[9] == 6 => {
            let ihl = (ip[0] & 0x0f) as usize * 4;
            let total = (u16::from_be_bytes([ip[2], ip[3]]) as usize).min(ip.len());
            (
                IpAddr::from([ip[12], ip[13], ip[14], ip[15]]),
                IpAddr::from([ip[16], ip[17], ip[18], ip[19]]),
                ip.get(ihl..total)?,
            )
        }
        0x86dd if ip.len() >= 40 && ip[6] == 6 => {
            let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
            a.copy_from_slice(&ip[8..24]);
            b.copy_from_slice(&ip[24..40]);
            let total = (40 + u16::from_be_bytes([ip[4], ip[5]]) as usize).min(ip.len());
            (IpAddr::from(a), IpAddr::from(b), ip.get(40..total)?)
        }
        _ => return None,
    };
    if tcp.len() < 20 {
        return None;
    }
    Some((src, dst, tcp.get((tcp[12] >> 4) as usize * 4..)?))
}

fn bgp_message(addrs: impl Fn(IpAddr, IpAddr) -> bool + Send + 'static, msg_type: u8) -> Matcher {
    Box::new(move |f: &[u8]| {
        let Some((src, dst, mut payload)) = tcp_segment(f) else { return false };
        if !addrs(src, dst) {
            return false;
        }
        while payload.len() >= 19 && payload[..16].iter().all(|b| *b == 0xff) {
            if payload[18] == msg_type {
                return true;
            }
            let len = u16::from_be_bytes([payload[16], payload[17]]) as usize;
            payload = payload.get(len.max(19)..).unwrap_or(&[]);
        }
        false
    })
}

/// A gratuitous ARP (request or reply whose sender IP and target IP are both `ip`) from a sender MAC
/// other than `not_mac`.
pub fn is_garp(ip: Ipv4Addr, not_mac: [u8; 6]) -> Matcher {
    Box::new(move |f: &[u8]| {
        if f.len() < 42 || f[12..14] != [0x08, 0x06] {
            return false;
        }
        let a = &f[14..];
        a[24..28] == ip.octets() && a[14..18] == ip.octets() && a[8..14] != not_mac
    })
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut m = [0u8; 6];
    for (i, p) in s.trim().split(':').take(6).enumerate() {
        m[i] = u8::from_str_radix(p, 16).unwrap_or(0);
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_headers_counted() {
        let ka = keepalive();
        let up = updates(&[IpAddr::V4(Ipv4Addr::new(10, 0, 0, 255))], 65001, Ipv4Addr::LOCALHOST, Ipv6Addr::LOCALHOST);
        let two = [up.clone(), up.clone()].concat();
        // an UPDATE after a prefix ending in 255: the run of 0xff is 17 long
        let cases: Vec<(&str, Vec<u8>, u64)> = vec![
            ("nothing", vec![], 0),
            ("a keepalive", ka.clone(), 0),
            ("one update", up.clone(), 1),
            ("two updates back to back", two.clone(), 2),
            ("keepalive then update", [ka.clone(), up.clone()].concat(), 1),
            ("header cut short", up[..18].to_vec(), 0),
        ];
        for (what, buf, want) in cases {
            assert_eq!(count_updates(&buf), want, "{what}");
        }
    }
}
