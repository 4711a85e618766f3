//! Which next hop a session's UPDATEs carry for each family: pure.
//!
//! Inputs are the session's local address, the other addresses of the interface that holds it (read
//! by the driver when the connection is made, see [`needs_interface_addresses`]), the configured next
//! hops and whether the peer took IPv4 routes with an IPv6 next hop (RFC 8950). The result goes into the
//! session's [`super::rib_out::Encoder`].
//!
//! - The family of the session: the configured next hop, else the local address.
//! - The other family: the configured next hop, else the first usable address of that family on the
//!   interface. Usable means global: never link-local, loopback, unspecified, and never an IPv4-mapped
//!   `::ffff:a.b.c.d`: that is how an IPv4 session looks on a dual-stack socket, and as the next hop of
//!   IPv6 routes it sends the peer's traffic nowhere. An IPv4 session's IPv6 routes need a real IPv6
//!   address of the outgoing interface.
//! - IPv4 routes over an IPv6 session with extended next hop negotiated go in MP_REACH_NLRI with the
//!   session's IPv6 next hop, unless an IPv4 next hop is configured.
//! - No next hop for a family: its routes are not sent ([`NextHops::missing`] names the negotiated
//!   families that are left out, for the driver's warning).
use super::wire::Family;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The next hops of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NextHops {
    /// IPv4 routes, in the NEXT_HOP attribute.
    pub v4: Option<Ipv4Addr>,
    /// IPv4 routes in MP_REACH_NLRI with an IPv6 next hop (RFC 8950), when `v4` is None.
    pub v4_over_v6: Option<Ipv6Addr>,
    /// IPv6 routes, in MP_REACH_NLRI.
    pub v6: Option<Ipv6Addr>,
}

impl NextHops {
    /// The families of `negotiated` that this session cannot carry, for lack of a next hop, in the
    /// order IPv4, IPv6.
    pub fn missing(&self, negotiated: &[Family]) -> Vec<Family> {
        [
            (Family::IPV4_UNICAST, self.v4.is_some() || self.v4_over_v6.is_some()),
            (Family::IPV6_UNICAST, self.v6.is_some()),
        ]
        .into_iter()
        .filter(|(fam, ok)| negotiated.contains(fam) && !ok)
        .map(|(fam, _)| fam)
        .collect()
    }
}

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Does the driver need the interface's other addresses, i.e. is the next hop of the family other than
/// `local`'s not configured?
pub fn needs_interface_addresses(
    local: IpAddr,
    configured_v4: Option<Ipv4Addr>,
    configured_v6: Option<Ipv6Addr>,
) -> bool {
    match canonical(local) {
        IpAddr::V4(_) => configured_v6.is_none(),
        IpAddr::V6(_) => configured_v4.is_none(),
    }
}

fn usable_v4(a: &IpAddr) -> Option<Ipv4Addr> {
    match a {
        IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_unspecified() => Some(*v4),
        _ => None,
    }
}

fn usable_v6(a: &IpAddr) -> Option<Ipv6Addr> {
    match a {
        IpAddr::V6(v6)
            if !v6.is_loopback()
                && !v6.is_unicast_link_local()
                && v6.to_ipv4_mapped().is_none()
                && !v6.is_unspecified() =>
        {
            Some(*v6)
        }
        _ => None,
    }
}

/// The next hops of a session whose local address is `local`; `others` are the other addresses of its
/// interface, `extended_next_hop_v4` whether RFC 8950 was negotiated for IPv4.
pub fn select(
    local: IpAddr,
    others: &[IpAddr],
    configured_v4: Option<Ipv4Addr>,
    configured_v6: Option<Ipv6Addr>,
    extended_next_hop_v4: bool,
) -> NextHops {
    match canonical(local) {
        IpAddr::V4(l4) => NextHops {
            v4: Some(configured_v4.unwrap_or(l4)),
            v4_over_v6: None,
            v6: configured_v6.or_else(|| others.iter().find_map(usable_v6)),
        },
        IpAddr::V6(l6) => {
            let v6 = configured_v6.unwrap_or(l6);
            let v4 = configured_v4.or_else(|| {
                if extended_next_hop_v4 {
                    return None;
                }
                others.iter().find_map(usable_v4)
            });
            let v4_over_v6 = (v4.is_none() && extended_next_hop_v4).then_some(v6);
            NextHops { v4, v4_over_v6, v6: Some(v6) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }
    fn v4(s: &str) -> Option<Ipv4Addr> {
        Some(s.parse().unwrap())
    }
    fn v6(s: &str) -> Option<Ipv6Addr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn next_hops_per_family() {
        struct Case {
            name: &'static str,
            local: &'static str,
            others: &'static [&'static str],
            configured: (Option<Ipv4Addr>, Option<Ipv6Addr>),
            extended_v4: bool,
            want: NextHops,
        }
        let cases = [
            Case {
                name: "v4 session, v4 routes: the local address",
                local: "192.0.2.1",
                others: &[],
                configured: (None, None),
                extended_v4: false,
                want: NextHops { v4: v4("192.0.2.1"), v4_over_v6: None, v6: None },
            },
            Case {
                name: "v4 session, v6 routes: a global v6 of the interface",
                local: "192.0.2.1",
                others: &["fe80::1", "2001:db8::1", "2001:db8::2"],
                configured: (None, None),
                extended_v4: false,
                want: NextHops { v4: v4("192.0.2.1"), v4_over_v6: None, v6: v6("2001:db8::1") },
            },
            Case {
                name: "v4 session, v6 routes, no global v6 on the interface: none (never ::ffff:192.0.2.1)",
                local: "192.0.2.1",
                others: &["::ffff:192.0.2.1", "::1", "::"],
                configured: (None, None),
                extended_v4: false,
                want: NextHops { v4: v4("192.0.2.1"), v4_over_v6: None, v6: None },
            },
            Case {
                name: "v4 session, link-local-only interface: no v6 next hop",
                local: "192.0.2.1",
                others: &["fe80::1", "fe80::2"],
                configured: (None, None),
                extended_v4: false,
                want: NextHops { v4: v4("192.0.2.1"), v4_over_v6: None, v6: None },
            },
            Case {
                name: "v4 session seen as a mapped address on a dual-stack socket: still a v4 session",
                local: "::ffff:192.0.2.1",
                others: &["2001:db8::1"],
                configured: (None, None),
                extended_v4: false,
                want: NextHops { v4: v4("192.0.2.1"), v4_over_v6: None, v6: v6("2001:db8::1") },
            },
            Case {
                name: "v4 session, both configured: the configured ones",
                local: "192.0.2.1",
                others: &["2001:db8::1"],
                configured: (v4("198.51.100.1"), v6("2001:db8::99")),
                extended_v4: false,
                want: NextHops { v4: v4("198.51.100.1"), v4_over_v6: None, v6: v6("2001:db8::99") },
            },
            Case {
                name: "v6 session, v6 routes: the local address",
                local: "2001:db8::1",
                others: &[],
                configured: (None, None),
                extended_v4: false,
                want: NextHops { v4: None, v4_over_v6: None, v6: v6("2001:db8::1") },
            },
            Case {
                name: "v6 session, v4 routes: a v4 of the interface (not loopback)",
                local: "2001:db8::1",
                others: &["127.0.0.1", "0.0.0.0", "192.0.2.1", "192.0.2.2"],
                configured: (None, None),
                extended_v4: false,
                want: NextHops { v4: v4("192.0.2.1"), v4_over_v6: None, v6: v6("2001:db8::1") },
            },
            Case {
                name: "v6 session, v4 routes, extended next hop: RFC 8950 with the v6 next hop",
                local: "2001:db8::1",
                others: &["192.0.2.1"],
                configured: (None, None),
                extended_v4: true,
                want: NextHops { v4: None, v4_over_v6: v6("2001:db8::1"), v6: v6("2001:db8::1") },
            },
            Case {
                name: "v6 session, extended next hop, configured v6: RFC 8950 with the configured one",
                local: "2001:db8::1",
                others: &[],
                configured: (None, v6("2001:db8::99")),
                extended_v4: true,
                want: NextHops { v4: None, v4_over_v6: v6("2001:db8::99"), v6: v6("2001:db8::99") },
            },
            Case {
                name: "v6 session, extended next hop, configured v4: NEXT_HOP with the configured one",
                local: "2001:db8::1",
                others: &[],
                configured: (v4("198.51.100.1"), None),
                extended_v4: true,
                want: NextHops { v4: v4("198.51.100.1"), v4_over_v6: None, v6: v6("2001:db8::1") },
            },
            Case {
                name: "v6 session, no v4 on the interface, no extended next hop: no v4 next hop",
                local: "2001:db8::1",
                others: &["2001:db8::2"],
                configured: (None, None),
                extended_v4: false,
                want: NextHops { v4: None, v4_over_v6: None, v6: v6("2001:db8::1") },
            },
            Case {
                name: "link-local v6 session: the local address for v6, a v4 of the interface",
                local: "fe80::1",
                others: &["192.0.2.1"],
                configured: (None, None),
                extended_v4: false,
                want: NextHops { v4: v4("192.0.2.1"), v4_over_v6: None, v6: v6("fe80::1") },
            },
        ];
        for c in cases {
            let others: Vec<IpAddr> = c.others.iter().map(|s| ip(s)).collect();
            let got = select(ip(c.local), &others, c.configured.0, c.configured.1, c.extended_v4);
            assert_eq!(got, c.want, "{}", c.name);
        }
    }

    #[test]
    fn interface_addresses_are_needed_only_for_an_unconfigured_other_family() {
        let cases = [
            ("192.0.2.1", None, None, true),
            ("192.0.2.1", v4("198.51.100.1"), None, true),
            ("192.0.2.1", None, v6("2001:db8::1"), false),
            ("::ffff:192.0.2.1", None, v6("2001:db8::1"), false),
            ("2001:db8::1", None, None, true),
            ("2001:db8::1", None, v6("2001:db8::9"), true),
            ("2001:db8::1", v4("198.51.100.1"), None, false),
        ];
        for (local, c4, c6, want) in cases {
            assert_eq!(needs_interface_addresses(ip(local), c4, c6), want, "{local} {c4:?} {c6:?}");
        }
    }

    #[test]
    fn families_without_a_next_hop() {
        let (f4, f6) = (Family::IPV4_UNICAST, Family::IPV6_UNICAST);
        let both = NextHops { v4: v4("192.0.2.1"), v4_over_v6: None, v6: v6("2001:db8::1") };
        let over = NextHops { v4: None, v4_over_v6: v6("2001:db8::1"), v6: v6("2001:db8::1") };
        let v4_only = NextHops { v4: v4("192.0.2.1"), ..NextHops::default() };
        let cases = [
            (both, vec![f4, f6], vec![]),
            (over, vec![f4, f6], vec![]),
            (v4_only, vec![f4, f6], vec![f6]),
            (v4_only, vec![f4], vec![]),
            (NextHops::default(), vec![f6, f4], vec![f4, f6]),
            (NextHops::default(), vec![], vec![]),
        ];
        for (nh, negotiated, want) in cases {
            assert_eq!(nh.missing(&negotiated), want, "{nh:?} {negotiated:?}");
        }
    }
}
