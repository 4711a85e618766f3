//! A client-side ARP prober for measuring Layer 2 failover on the wire: from inside a host's namespace it
//! broadcasts one ARP request per IP every `period` and records every ARP reply (and gratuitous ARP) for
//! those IPs with its wall-clock time and sender MAC. iputils arping waits whole seconds when an IP is not
//! answered, so a loop of arping processes cannot tell a 0.3 s silence from a 1.2 s one; this can, to one
//! period.
use super::Host;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One ARP frame claiming an IP: (seconds since the epoch, IP, sender MAC as `aa:bb:…`).
pub type Reply = (f64, String, String);

pub struct ArpProbe {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<Vec<Reply>, String>>>,
}

fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s.split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
    v.try_into().unwrap_or_else(|v| panic!("bad MAC {s:?}: {v:?}"))
}

fn fmt_mac(m: &[u8]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// An AF_PACKET socket for ARP on `dev` inside namespace `ns` (setns on this thread only, then back).
fn packet_socket(ns: &str, dev: &str) -> Result<(OwnedFd, i32), String> {
    let own = std::fs::File::open("/proc/thread-self/ns/net").map_err(|e| format!("own netns: {e}"))?;
    let target = std::fs::File::open(format!("/run/netns/{ns}")).map_err(|e| format!("netns {ns}: {e}"))?;
    // SAFETY: plain syscalls on descriptors owned by this function.
    unsafe {
        if libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            return Err(os_err("setns"));
        }
        let made = (|| {
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, (libc::ETH_P_ARP as u16).to_be() as i32);
            if fd < 0 {
                return Err(os_err("socket(AF_PACKET)"));
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let name = std::ffi::CString::new(dev).map_err(|e| e.to_string())?;
            let index = libc::if_nametoindex(name.as_ptr()) as i32;
            if index == 0 {
                return Err(os_err(&format!("if_nametoindex({dev})")));
            }
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
            sll.sll_ifindex = index;
            let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            if libc::bind(fd.as_raw_fd(), &sll as *const _ as *const libc::sockaddr, len) != 0 {
                return Err(os_err("bind"));
            }
            let tv = libc::timeval { tv_sec: 0, tv_usec: 2_000 };
            let tl = std::mem::size_of::<libc::timeval>() as u32;
            libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv as *const _ as *const _, tl);
            Ok((fd, index))
        })();
        if libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
            panic!("{}", os_err("setns back"));
        }
        made
    }
}

fn request(mac: [u8; 6], from: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(42);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&from.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64()
}

impl ArpProbe {
    /// Starts probing `ips` from `h` every `period`. Panics if the socket cannot be made.
    pub fn start(h: &Host, ips: &[&str], period: Duration) -> ArpProbe {
        let ips: Vec<Ipv4Addr> = ips.iter().map(|s| s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))).collect();
        let (fd, index) = packet_socket(h.ns.name(), &h.dev).unwrap_or_else(|e| panic!("ARP probe on {}: {e}", h.dev));
        let mac = parse_mac(&h.mac());
        let from = h.v4;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let wanted: BTreeSet<[u8; 4]> = ips.iter().map(|i| i.octets()).collect();
            let mut to: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            to.sll_family = libc::AF_PACKET as u16;
            to.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
            to.sll_ifindex = index;
            to.sll_halen = 6;
            to.sll_addr[..6].copy_from_slice(&[0xff; 6]);
            let frames: Vec<Vec<u8>> = ips.iter().map(|ip| request(mac, from, *ip)).collect();
            let mut out = Vec::new();
            let mut next = Instant::now();
            let mut buf = [0u8; 1600];
            while !stop2.load(Ordering::Relaxed) {
                if Instant::now() >= next {
                    for f in &frames {
                        // SAFETY: sendto with a valid buffer and address.
                        let n = unsafe {
                            libc::sendto(
                                fd.as_raw_fd(),
                                f.as_ptr() as *const _,
                                f.len(),
                                0,
                                &to as *const _ as *const libc::sockaddr,
                                std::mem::size_of::<libc::sockaddr_ll>() as u32,
                            )
                        };
                        // ENETDOWN while the client's own link is down is not an error of the prober.
                        if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::ENETDOWN) {
                            return Err(os_err("sendto"));
                        }
                    }
                    next += period;
                }
                // SAFETY: recv into a buffer of its length.
                let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr() as *mut _, buf.len(), 0) };
                if n < 42 {
                    continue;
                }
                let f = &buf[..n as usize];
                // Ethernet type ARP, IPv4 over Ethernet, a reply (2), or a gratuitous request (sender = target).
                if f[12..14] != [0x08, 0x06] || f[14..20] != [0, 1, 0x08, 0, 6, 4] {
                    continue;
                }
                let op = u16::from_be_bytes([f[20], f[21]]);
                let spa: [u8; 4] = f[28..32].try_into().unwrap_or_default();
                let gratuitous = op == 1 && f[28..32] == f[38..42];
                if !(op == 2 || gratuitous) || !wanted.contains(&spa) || f[22..28] == mac {
                    continue;
                }
                out.push((now_secs(), Ipv4Addr::from(spa).to_string(), fmt_mac(&f[22..28])));
            }
            Ok(out)
        });
        ArpProbe { stop, thread: Some(thread) }
    }

    /// Stops probing; every claim seen, in order.
    pub fn stop(mut self) -> Vec<Reply> {
        self.stop.store(true, Ordering::Relaxed);
        let t = self.thread.take().expect("running");
        t.join().expect("probe thread").unwrap_or_else(|e| panic!("ARP probe: {e}"))
    }
}

impl Drop for ArpProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
