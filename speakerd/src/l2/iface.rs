//! The interface table of Layer 2 mode and the netlink subscription that keeps it current.
//!
//! * The table (index, name, MAC, up, loopback, addresses with prefix lengths) is read with
//!   getifaddrs(3) through `crate::netif`, the node's one interface reader (glibc fills it from a
//!   netlink RTM_GETLINK + RTM_GETADDR dump). The `rtnetlink` crate is not a dependency of speakerd,
//!   and a full re-read cannot drift the way an incrementally patched table can.
//! * Changes: a NETLINK_ROUTE socket bound to the RTMGRP_LINK, RTMGRP_IPV4_IFADDR and
//!   RTMGRP_IPV6_IFADDR multicast groups. [`IfaceEvents::changed`] returns when the kernel has sent any
//!   link or address event, or when events were lost (ENOBUFS); the driver then re-reads the table.
//!   Nothing polls.
//!
//! The socket must be subscribed before the first read, so that no change falls between the two.
use super::Mac;
use ipnet::IpNet;
use std::io;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use tokio::io::unix::AsyncFd;

const RTMGRP_LINK: u32 = 0x1;
const RTMGRP_IPV4_IFADDR: u32 = 0x10;
const RTMGRP_IPV6_IFADDR: u32 = 0x100;
/// Room for a burst of events (a link with many addresses going down at once).
const RCVBUF: libc::c_int = 1 << 20;

/// One interface of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub index: u32,
    pub name: String,
    pub mac: Mac,
    /// Administratively up with carrier (IFF_UP and IFF_RUNNING).
    pub up: bool,
    pub loopback: bool,
    /// Configured addresses with their prefix lengths.
    pub nets: Vec<IpNet>,
}

impl Iface {
    /// The interface's IPv6 link-local address, if it has one.
    pub fn link_local(&self) -> Option<Ipv6Addr> {
        self.nets.iter().find_map(|n| match n {
            IpNet::V6(v6) if v6.addr().is_unicast_link_local() => Some(v6.addr()),
            _ => None,
        })
    }

    /// Can frames be sent and received here? Up, not loopback, with an Ethernet address.
    pub fn usable(&self) -> bool {
        self.up && !self.loopback && self.index != 0 && self.mac != [0; 6]
    }
}

/// Reads the interface table now. An error of getifaddrs gives an empty table (every claim then
/// reports a failure until the next successful read).
pub fn read_table() -> Vec<Iface> {
    crate::netif::interfaces()
        .into_iter()
        .map(|i| Iface { index: i.index, name: i.name, mac: i.mac, up: i.up, loopback: i.loopback, nets: i.addrs })
        .collect()
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// The netlink link/address event subscription.
pub struct IfaceEvents {
    fd: AsyncFd<OwnedFd>,
}

impl IfaceEvents {
    /// Opens and subscribes the socket. Needs a tokio runtime; the socket belongs to the network
    /// namespace of the calling thread.
    pub fn subscribe() -> io::Result<Self> {
        // SAFETY: plain socket(2); the descriptor is owned by the OwnedFd at once.
        let fd = cvt(unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        })?;
        // SAFETY: fd was just returned by socket(2) and is owned nowhere else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // A failure leaves the default buffer: more ENOBUFS, each one a full re-read. Not fatal.
        let rcvbuf = RCVBUF;
        // SAFETY: setsockopt with a c_int option value that lives across the call.
        let _ = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                std::ptr::addr_of!(rcvbuf).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // SAFETY: sockaddr_nl is plain data; all-zero is a valid value.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        sa.nl_groups = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR;
        // SAFETY: binds to a sockaddr_nl of the size given.
        cvt(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                std::ptr::addr_of!(sa).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        })?;
        Ok(Self { fd: super::register_readable(fd)? })
    }

    /// Waits for at least one event and consumes all that are queued. Cancel-safe: events stay queued
    /// in the socket until this future runs to completion. `Err` only for a broken socket.
    pub async fn changed(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            match self.drain() {
                Ok(true) => return Ok(()),
                Ok(false) => guard.clear_ready(),
                // The kernel dropped events: the table may have changed in any way.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and discards every queued message; whether there was any.
    fn drain(&self) -> io::Result<bool> {
        let mut buf = [0u8; 16384];
        let mut any = false;
        loop {
            // SAFETY: reading into a local buffer of the size given.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
            if n > 0 {
                any = true;
                continue;
            }
            if n == 0 {
                return Ok(any);
            }
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(any),
                io::ErrorKind::Interrupted => continue,
                _ => Err(e),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_in_the_table_and_not_usable() {
        let t = read_table();
        let lo = t.iter().find(|i| i.loopback).expect("a loopback interface");
        assert!(lo.index > 0);
        assert!(!lo.usable());
    }

    #[test]
    fn link_local_is_found_among_the_addresses() {
        let i = Iface {
            index: 2,
            name: "eth0".into(),
            mac: [2, 0, 0, 0, 0, 1],
            up: true,
            loopback: false,
            nets: vec![
                "192.0.2.1/24".parse().unwrap(),
                "2001:db8::1/64".parse().unwrap(),
                "fe80::1/64".parse().unwrap(),
            ],
        };
        assert_eq!(i.link_local(), Some("fe80::1".parse().unwrap()));
        assert!(i.usable());
        assert!(!Iface { mac: [0; 6], ..i.clone() }.usable(), "no Ethernet address (e.g. a tunnel)");
        assert!(!Iface { up: false, ..i }.usable());
    }
}
