//! The host's interfaces and addresses, read with getifaddrs(3): names, indexes, MACs, flags, and
//! addresses with their prefix lengths, and the address helpers every module shares (canonical form,
//! the addresses of an interface for next hops, the default router ID). Used by bgp, bfd, membership,
//! config and the Layer 2 driver; it uses no other module.
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// One interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetIf {
    pub name: String,
    pub index: u32,
    pub mac: [u8; 6],
    /// IFF_UP and IFF_RUNNING (carrier).
    pub up: bool,
    pub loopback: bool,
    pub addrs: Vec<IpNet>,
}

fn prefix_len(mask: &[u8]) -> u8 {
    mask.iter().map(|b| b.count_ones() as u8).sum()
}

/// Reads every interface. An error of getifaddrs gives an empty list.
pub fn interfaces() -> Vec<NetIf> {
    let mut by_name: BTreeMap<String, NetIf> = BTreeMap::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Vec::new();
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list from getifaddrs, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }.to_string_lossy().into_owned();
        let e = by_name.entry(name.clone()).or_insert_with(|| NetIf { name, ..NetIf::default() });
        let flags = ifa.ifa_flags as i32;
        e.up = flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0;
        e.loopback = flags & libc::IFF_LOOPBACK != 0;
        if ifa.ifa_addr.is_null() {
            continue;
        }
        // SAFETY: ifa_addr is non-null; its family says which sockaddr it is.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        match family {
            libc::AF_PACKET => {
                // SAFETY: AF_PACKET entries carry a sockaddr_ll.
                let ll = unsafe { &*ifa.ifa_addr.cast::<libc::sockaddr_ll>() };
                e.index = ll.sll_ifindex as u32;
                if ll.sll_halen == 6 {
                    e.mac.copy_from_slice(&ll.sll_addr[..6]);
                }
            }
            libc::AF_INET | libc::AF_INET6 => {
                let ip = sockaddr_ip(ifa.ifa_addr);
                let len = if ifa.ifa_netmask.is_null() {
                    None
                } else {
                    match (family, sockaddr_ip(ifa.ifa_netmask)) {
                        (libc::AF_INET, Some(IpAddr::V4(m))) => Some(prefix_len(&m.octets())),
                        (libc::AF_INET6, Some(IpAddr::V6(m))) => Some(prefix_len(&m.octets())),
                        _ => None,
                    }
                };
                if let Some(ip) = ip {
                    let full = if ip.is_ipv4() { 32 } else { 128 };
                    if let Ok(n) = IpNet::new(ip, len.unwrap_or(full)) {
                        e.addrs.push(n);
                    }
                }
            }
            _ => {}
        }
    }
    // SAFETY: freed once, after the last use of the list.
    unsafe { libc::freeifaddrs(ifap) };
    by_name.into_values().collect()
}

fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    // SAFETY: the caller passes a non-null sockaddr from getifaddrs; the family selects the type.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let sin = &*sa.cast::<libc::sockaddr_in>();
                Some(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()))
            }
            libc::AF_INET6 => Some(IpAddr::from((*sa.cast::<libc::sockaddr_in6>()).sin6_addr.s6_addr)),
            _ => None,
        }
    }
}

/// Unwraps an IPv4-mapped IPv6 address (as seen on dual-stack sockets) to IPv4.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Global addresses of the interface that holds `local` (used to find an IPv6 next hop for an IPv4
/// session and the reverse). Link-local, loopback and mapped addresses are skipped.
pub fn interface_addresses_of(local: IpAddr) -> Vec<IpAddr> {
    let all = interfaces();
    let Some(iface) = all.iter().find(|i| i.addrs.iter().any(|a| a.addr() == local)) else {
        return Vec::new();
    };
    iface
        .addrs
        .iter()
        .map(|a| a.addr())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
            IpAddr::V6(v6) => {
                !v6.is_loopback()
                    && !v6.is_unicast_link_local()
                    && v6.to_ipv4_mapped().is_none()
                    && !v6.is_unspecified()
            }
        })
        .collect()
}

/// The first IPv4 address of the host that is not loopback: the default BGP Identifier.
pub fn default_router_id() -> Option<std::net::Ipv4Addr> {
    interfaces().into_iter().flat_map(|i| i.addrs).find_map(|a| match a.addr() {
        IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(v4),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_is_found_with_its_prefix() {
        let l = super::interfaces();
        let lo = l.iter().find(|i| i.loopback).expect("a loopback interface");
        assert!(lo.index > 0);
        assert!(lo.addrs.iter().any(|a| a.to_string() == "127.0.0.1/8"), "{lo:?}");
    }
}
