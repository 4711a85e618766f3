//! Socket options and connection set-up for BGP: TCP-MD5 (RFC 2385), TTL for eBGP multihop, source
//! address, listening sockets. This is the only module that touches socket options.
use crate::config::spec::MD5_MAX_KEY_LEN;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// Linux `TCP_MD5SIG` (include/uapi/linux/tcp.h).
const TCP_MD5SIG: libc::c_int = 14;

/// `struct tcp_md5sig` of include/uapi/linux/tcp.h.
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: u32,
    key: [u8; MD5_MAX_KEY_LEN],
}

/// Sets (or with an empty key, removes) the TCP-MD5 key for `peer` on a socket. On a dual-stack IPv6
/// socket an IPv4 peer is keyed by its IPv4-mapped address, as the kernel sees it.
pub fn set_md5(fd: &impl AsRawFd, socket_is_v6: bool, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "TCP-MD5 key longer than 80 bytes"));
    }
    let addr = match (peer, socket_is_v6) {
        (IpAddr::V4(v4), true) => IpAddr::V6(v4.to_ipv6_mapped()),
        (a, _) => a,
    };
    let sa = SockAddr::from(SocketAddr::new(addr, 0));
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut sig: TcpMd5Sig = unsafe { std::mem::zeroed() };
    // SAFETY: `sa` holds a valid sockaddr of `sa.len()` bytes, which fits in sockaddr_storage.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            std::ptr::addr_of_mut!(sig.addr).cast::<u8>(),
            sa.len() as usize,
        );
    }
    sig.keylen = key.len() as u16;
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: the pointer and size describe `sig`, which lives across the call.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            TCP_MD5SIG,
            std::ptr::addr_of!(sig).cast(),
            std::mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sets the unicast TTL / hop limit of a connected or connecting socket.
pub fn set_ttl(sock: &Socket, is_v6: bool, ttl: u32) -> io::Result<()> {
    if is_v6 {
        sock.set_unicast_hops_v6(ttl)
    } else {
        sock.set_ttl(ttl)
    }
}

/// GTSM (RFC 5082): drop segments that arrive with a TTL / hop limit below `min` (0 turns it off).
pub fn set_min_ttl(sock: &Socket, is_v6: bool, min: u8) -> io::Result<()> {
    let (level, name) =
        if is_v6 { (libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT) } else { (libc::IPPROTO_IP, libc::IP_MINTTL) };
    let v: libc::c_int = min.into();
    // SAFETY: a valid fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(sock),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// How to open a connection to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectSpec {
    pub peer: SocketAddr,
    pub source: Option<IpAddr>,
    pub md5_key: Option<Vec<u8>>,
    pub ttl: u32,
    /// GTSM: the minimum TTL accepted (255), set before the SYN leaves.
    pub min_ttl: Option<u8>,
    pub timeout: Duration,
}

/// Opens a TCP connection with the options set before the SYN leaves.
pub async fn connect(spec: &ConnectSpec) -> io::Result<TcpStream> {
    let v6 = spec.peer.is_ipv6();
    let sock = Socket::new(if v6 { Domain::IPV6 } else { Domain::IPV4 }, Type::STREAM, Some(Protocol::TCP))?;
    sock.set_nonblocking(true)?;
    sock.set_nodelay(true)?;
    set_ttl(&sock, v6, spec.ttl)?;
    if let Some(m) = spec.min_ttl {
        set_min_ttl(&sock, v6, m)?;
    }
    if let Some(key) = &spec.md5_key {
        set_md5(&sock, v6, spec.peer.ip(), key)?;
    }
    if let Some(src) = spec.source {
        if src.is_ipv6() != v6 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "source address family differs from the peer's"));
        }
        sock.set_reuse_address(true)?;
        sock.bind(&SockAddr::from(SocketAddr::new(src, 0)))?;
    }
    let std_stream: std::net::TcpStream = sock.into();
    let socket = TcpSocket::from_std_stream(std_stream);
    match tokio::time::timeout(spec.timeout, socket.connect(spec.peer)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")),
    }
}

/// Applies per-peer options to an accepted connection (TTL for multihop; GTSM's minimum TTL, which
/// checks every segment after the handshake: a listening socket serves every peer, so the SYN itself
/// cannot be filtered per peer).
pub fn tune_accepted(stream: &TcpStream, ttl: u32, min_ttl: Option<u8>) -> io::Result<()> {
    let sock = socket2::SockRef::from(stream);
    let local = stream.local_addr()?;
    // An IPv4 peer on a dual-stack listener is an IPv4-mapped IPv6 socket: the IPv4 options apply.
    let v6 = match local.ip() {
        IpAddr::V6(a) => a.to_ipv4_mapped().is_none(),
        IpAddr::V4(_) => false,
    };
    set_ttl(&sock, v6, ttl)?;
    if let Some(m) = min_ttl {
        set_min_ttl(&sock, v6, m)?;
    }
    stream.set_nodelay(true)
}

/// A listening socket for BGP. An IPv6 wildcard also accepts IPv4 (dual stack).
pub fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let v6 = addr.is_ipv6();
    let sock = Socket::new(if v6 { Domain::IPV6 } else { Domain::IPV4 }, Type::STREAM, Some(Protocol::TCP))?;
    if v6 {
        sock.set_only_v6(addr.ip() != IpAddr::V6(Ipv6Addr::UNSPECIFIED))?;
    }
    sock.set_reuse_address(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&SockAddr::from(addr))?;
    sock.listen(128)?;
    TcpListener::from_std(sock.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_struct_matches_kernel_abi() {
        // sizeof(struct tcp_md5sig) on Linux: 128 + 1 + 1 + 2 + 4 + 80
        assert_eq!(std::mem::size_of::<TcpMd5Sig>(), 216);
    }

    #[tokio::test]
    async fn md5_key_is_accepted_by_the_kernel_on_both_families() {
        let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        set_md5(&l, false, "127.0.0.2".parse().unwrap(), b"secret").unwrap();
        let l6 = listen("[::]:0".parse().unwrap()).unwrap();
        set_md5(&l6, true, "192.0.2.1".parse().unwrap(), b"secret").unwrap();
        assert!(set_md5(&l6, true, "192.0.2.1".parse().unwrap(), &[0u8; 81]).is_err());
    }
}
