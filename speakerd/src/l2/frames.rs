//! ARP (RFC 826) and Neighbor Discovery (RFC 4861) frames: parse the requests we answer, build the
//! replies and the gratuitous / unsolicited announcements. Pure: bytes in, bytes out.
//!
//! pnet's packet types read and write the fixed fields and compute the ICMPv6 checksum. NDP options are
//! walked here with explicit bounds checks: pnet 0.35 computes an option's length as `len * 8` in a
//! `u8`, which overflows (a panic in debug builds) for lengths ≥ 32, so its option iterator never sees
//! bytes from the wire.
use pnet_base::MacAddr;
use pnet_packet::arp::{ArpHardwareTypes, ArpOperations, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket, MutableEthernetPacket};
use pnet_packet::icmpv6::ndp::{MutableNeighborAdvertPacket, NeighborAdvertFlags, NeighborSolicitPacket};
use pnet_packet::icmpv6::{self, Icmpv6Code, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use pnet_packet::Packet;
use std::net::{Ipv4Addr, Ipv6Addr};

pub type Mac = [u8; 6];
pub const BROADCAST: Mac = [0xff; 6];
/// All-nodes multicast (ff02::1) as an Ethernet address.
pub const ALL_NODES_MAC: Mac = [0x33, 0x33, 0, 0, 0, 1];
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A request this node may have to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// ARP request "who has `target`? tell `sender_ip`".
    Arp { sender_mac: Mac, sender_ip: Ipv4Addr, target: Ipv4Addr },
    /// Neighbor Solicitation for `target` from `src_ip` (unicast, not DAD), answer to `reply_mac`.
    Ns { reply_mac: Mac, src_ip: Ipv6Addr, target: Ipv6Addr },
}

impl Request {
    pub fn target(&self) -> std::net::IpAddr {
        match self {
            Self::Arp { target, .. } => (*target).into(),
            Self::Ns { target, .. } => (*target).into(),
        }
    }
}

fn mac(m: MacAddr) -> Mac {
    [m.0, m.1, m.2, m.3, m.4, m.5]
}
fn pmac(m: Mac) -> MacAddr {
    MacAddr(m[0], m[1], m[2], m[3], m[4], m[5])
}

/// The solicited-node multicast MAC of an address (RFC 4291 §2.7.1, RFC 2464 §7): 33:33:ff + last 24 bits.
pub fn solicited_node_mac(ip: Ipv6Addr) -> Mac {
    let o = ip.octets();
    [0x33, 0x33, 0xff, o[13], o[14], o[15]]
}

/// Parses a frame into a request we might answer; anything else (replies, malformed, truncated, DAD
/// probes, invalid NS per RFC 4861 §7.1.1) is `None`.
pub fn parse(frame: &[u8]) -> Option<Request> {
    let eth = EthernetPacket::new(frame)?;
    match eth.get_ethertype() {
        EtherTypes::Arp => parse_arp(eth.payload()),
        EtherTypes::Ipv6 => parse_ns(&eth),
        _ => None,
    }
}

fn parse_arp(p: &[u8]) -> Option<Request> {
    let arp = ArpPacket::new(p)?;
    // Ethernet/IPv4 only, and the sizes must say so (pnet ignores the length fields).
    let ok = arp.get_hardware_type() == ArpHardwareTypes::Ethernet
        && arp.get_protocol_type() == EtherTypes::Ipv4
        && arp.get_hw_addr_len() == 6
        && arp.get_proto_addr_len() == 4
        && arp.get_operation() == ArpOperations::Request;
    if !ok {
        return None;
    }
    let sender_mac = mac(arp.get_sender_hw_addr());
    if sender_mac == BROADCAST || sender_mac[0] & 1 == 1 {
        return None;
    }
    Some(Request::Arp { sender_mac, sender_ip: arp.get_sender_proto_addr(), target: arp.get_target_proto_addr() })
}

/// RFC 4861 §7.1.1 validity checks, then the Source Link-Layer Address option if any.
fn parse_ns(eth: &EthernetPacket<'_>) -> Option<Request> {
    let ip = Ipv6Packet::new(eth.payload())?;
    if ip.get_next_header() != IpNextHeaderProtocols::Icmpv6 || ip.get_hop_limit() != 255 {
        return None;
    }
    let plen = usize::from(ip.get_payload_length());
    let body = ip.payload().get(..plen)?;
    let icmp = Icmpv6Packet::new(body)?;
    if icmp.get_icmpv6_type() != Icmpv6Types::NeighborSolicit || icmp.get_icmpv6_code() != Icmpv6Code(0) || body.len() < 24 {
        return None;
    }
    if icmpv6::checksum(&icmp, &ip.get_source(), &ip.get_destination()) != icmp.get_checksum() {
        return None;
    }
    let ns = NeighborSolicitPacket::new(body)?;
    let target = ns.get_target_addr();
    if target.is_multicast() {
        return None;
    }
    let src = ip.get_source();
    let mut source_ll = None;
    let mut opts = body.get(24..)?;
    while !opts.is_empty() {
        let (&ty, rest) = opts.split_first()?;
        let (&len8, _) = rest.split_first()?;
        let len = usize::from(len8) * 8;
        if len == 0 || len > opts.len() {
            return None; // RFC 4861 §7.1.1: an option of length 0 makes the message invalid
        }
        if ty == 1 && len == 8 {
            source_ll = opts.get(2..8).and_then(|m| <[u8; 6]>::try_from(m).ok());
        }
        opts = &opts[len..];
    }
    if src.is_unspecified() {
        // Duplicate Address Detection probe: not a resolution request; we do not answer it.
        return None;
    }
    let reply_mac = source_ll.unwrap_or_else(|| mac(eth.get_source()));
    Some(Request::Ns { reply_mac, src_ip: src, target })
}

fn ethernet(dst: Mac, src: Mac, ty: pnet_packet::ethernet::EtherType, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + payload.len()];
    if let Some(mut e) = MutableEthernetPacket::new(&mut buf) {
        e.set_destination(pmac(dst));
        e.set_source(pmac(src));
        e.set_ethertype(ty);
        e.set_payload(payload);
    }
    buf
}

fn arp(op: pnet_packet::arp::ArpOperation, smac: Mac, sip: Ipv4Addr, tmac: Mac, tip: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0u8; 28];
    if let Some(mut p) = MutableArpPacket::new(&mut a) {
        p.set_hardware_type(ArpHardwareTypes::Ethernet);
        p.set_protocol_type(EtherTypes::Ipv4);
        p.set_hw_addr_len(6);
        p.set_proto_addr_len(4);
        p.set_operation(op);
        p.set_sender_hw_addr(pmac(smac));
        p.set_sender_proto_addr(sip);
        p.set_target_hw_addr(pmac(tmac));
        p.set_target_proto_addr(tip);
    }
    a
}

/// The ARP reply to `req`: "`ip` is at `our_mac`", unicast to the asker.
pub fn arp_reply(our_mac: Mac, ip: Ipv4Addr, sender_mac: Mac, sender_ip: Ipv4Addr) -> Vec<u8> {
    let a = arp(ArpOperations::Reply, our_mac, ip, sender_mac, sender_ip);
    ethernet(sender_mac, our_mac, EtherTypes::Arp, &a)
}

/// A gratuitous ARP (RFC 5227 §3 announcement form: a request with sender = target = `ip`), broadcast.
/// Neighbours update an existing entry for `ip` to `our_mac`.
pub fn gratuitous_arp(our_mac: Mac, ip: Ipv4Addr) -> Vec<u8> {
    let a = arp(ArpOperations::Request, our_mac, ip, [0; 6], ip);
    ethernet(BROADCAST, our_mac, EtherTypes::Arp, &a)
}

/// A Neighbor Advertisement for `target` with the Override flag and our link-layer address. `to` is the
/// solicitor (Solicited flag set) or `None` for an unsolicited one to all nodes (RFC 4861 §7.2.6).
/// `src_ip` is an address of the sending interface (its link-local one when it has one).
pub fn neighbor_advert(our_mac: Mac, src_ip: Ipv6Addr, target: Ipv6Addr, to: Option<(Mac, Ipv6Addr)>) -> Vec<u8> {
    let (dst_mac, dst_ip) = to.unwrap_or((ALL_NODES_MAC, ALL_NODES));
    let mut icmp = vec![0u8; 32];
    if let Some(mut na) = MutableNeighborAdvertPacket::new(&mut icmp) {
        na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
        na.set_icmpv6_code(Icmpv6Code(0));
        let solicited = if to.is_some() { NeighborAdvertFlags::Solicited } else { 0 };
        na.set_flags(NeighborAdvertFlags::Override | solicited);
        na.set_target_addr(target);
    }
    // Target Link-Layer Address option (type 2, length 1 = 8 bytes).
    icmp[24] = 2;
    icmp[25] = 1;
    icmp[26..32].copy_from_slice(&our_mac);
    if let Some(p) = Icmpv6Packet::new(&icmp) {
        let c = icmpv6::checksum(&p, &src_ip, &dst_ip);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
    }
    let mut ip = vec![0u8; 40 + icmp.len()];
    if let Some(mut p) = MutableIpv6Packet::new(&mut ip) {
        p.set_version(6);
        p.set_payload_length(icmp.len() as u16);
        p.set_next_header(IpNextHeaderProtocols::Icmpv6);
        p.set_hop_limit(255);
        p.set_source(src_ip);
        p.set_destination(dst_ip);
        p.set_payload(&icmp);
    }
    ethernet(dst_mac, our_mac, EtherTypes::Ipv6, &ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Mac = [0x02, 0, 0, 0, 0, 0x01];
    const HOST: Mac = [0x02, 0, 0, 0, 0, 0x99];

    /// Builds an NS the way a host resolving `target` sends it.
    fn ns(src: Ipv6Addr, target: Ipv6Addr, hop_limit: u8, opt_len: u8) -> Vec<u8> {
        let mut icmp = vec![0u8; 32];
        icmp[0] = 135;
        icmp[8..24].copy_from_slice(&target.octets());
        icmp[24] = 1;
        icmp[25] = opt_len;
        icmp[26..32].copy_from_slice(&HOST);
        let dst = Ipv6Addr::from({
            let mut d = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
            d[13..].copy_from_slice(&target.octets()[13..]);
            d
        });
        let c = icmpv6::checksum(&Icmpv6Packet::new(&icmp).unwrap(), &src, &dst);
        icmp[2..4].copy_from_slice(&c.to_be_bytes());
        let mut ip = vec![0u8; 40 + 32];
        let mut p = MutableIpv6Packet::new(&mut ip).unwrap();
        p.set_version(6);
        p.set_payload_length(32);
        p.set_next_header(IpNextHeaderProtocols::Icmpv6);
        p.set_hop_limit(hop_limit);
        p.set_source(src);
        p.set_destination(dst);
        p.set_payload(&icmp);
        ethernet(solicited_node_mac(target), HOST, EtherTypes::Ipv6, &ip)
    }

    #[test]
    fn arp_request_is_parsed_and_answered() {
        let req = arp(ArpOperations::Request, HOST, "192.0.2.9".parse().unwrap(), [0; 6], "192.0.2.50".parse().unwrap());
        let frame = ethernet(BROADCAST, HOST, EtherTypes::Arp, &req);
        let r = parse(&frame).unwrap();
        assert_eq!(r, Request::Arp { sender_mac: HOST, sender_ip: "192.0.2.9".parse().unwrap(), target: "192.0.2.50".parse().unwrap() });
        let reply = arp_reply(ME, "192.0.2.50".parse().unwrap(), HOST, "192.0.2.9".parse().unwrap());
        let e = EthernetPacket::new(&reply).unwrap();
        assert_eq!((mac(e.get_destination()), mac(e.get_source())), (HOST, ME));
        let a = ArpPacket::new(e.payload()).unwrap();
        assert_eq!(a.get_operation(), ArpOperations::Reply);
        assert_eq!((mac(a.get_sender_hw_addr()), a.get_sender_proto_addr()), (ME, "192.0.2.50".parse().unwrap()));
        // Replies and gratuitous announcements are not requests to answer... but a gratuitous ARP is a
        // request for our own IP from us; it parses, and the announcer ignores frames from its own MAC.
        assert_eq!(parse(&reply), None);
    }

    #[test]
    fn ns_is_parsed_and_answered_with_a_valid_na() {
        let (src, target): (Ipv6Addr, Ipv6Addr) = ("2001:db8::9".parse().unwrap(), "2001:db8::50".parse().unwrap());
        let r = parse(&ns(src, target, 255, 1)).unwrap();
        assert_eq!(r, Request::Ns { reply_mac: HOST, src_ip: src, target });
        let na = neighbor_advert(ME, "fe80::1".parse().unwrap(), target, Some((HOST, src)));
        let e = EthernetPacket::new(&na).unwrap();
        let ip = Ipv6Packet::new(e.payload()).unwrap();
        assert_eq!((ip.get_hop_limit(), ip.get_destination()), (255, src));
        let icmp = Icmpv6Packet::new(ip.payload()).unwrap();
        assert_eq!(icmpv6::checksum(&icmp, &ip.get_source(), &ip.get_destination()), icmp.get_checksum());
        assert_eq!(icmp.get_icmpv6_type(), Icmpv6Types::NeighborAdvert);
        let flags = ip.payload()[4];
        assert_eq!(flags, NeighborAdvertFlags::Override | NeighborAdvertFlags::Solicited);
        assert_eq!(&ip.payload()[26..32], &ME);
        // Unsolicited: to all nodes, Override only.
        let u = neighbor_advert(ME, "fe80::1".parse().unwrap(), target, None);
        let e = EthernetPacket::new(&u).unwrap();
        assert_eq!(mac(e.get_destination()), ALL_NODES_MAC);
        assert_eq!(Ipv6Packet::new(e.payload()).unwrap().payload()[4], NeighborAdvertFlags::Override);
    }

    #[test]
    fn invalid_ns_is_ignored() {
        let (src, target): (Ipv6Addr, Ipv6Addr) = ("2001:db8::9".parse().unwrap(), "2001:db8::50".parse().unwrap());
        assert_eq!(parse(&ns(src, target, 64, 1)), None, "hop limit must be 255");
        assert_eq!(parse(&ns(src, target, 255, 0)), None, "option length 0");
        assert_eq!(parse(&ns(src, target, 255, 40)), None, "option longer than the message (and ≥ 32: pnet would overflow)");
        assert_eq!(parse(&ns(Ipv6Addr::UNSPECIFIED, target, 255, 1)), None, "DAD probe");
        let mut bad = ns(src, target, 255, 1);
        let n = bad.len();
        bad[n - 1] ^= 0xff;
        assert_eq!(parse(&bad), None, "bad checksum");
    }

    #[test]
    fn truncations_and_mutations_never_panic() {
        let frames = [
            ns("2001:db8::9".parse().unwrap(), "2001:db8::50".parse().unwrap(), 255, 1),
            gratuitous_arp(ME, "192.0.2.50".parse().unwrap()),
            neighbor_advert(ME, "fe80::1".parse().unwrap(), "2001:db8::50".parse().unwrap(), None),
        ];
        let mut x: u32 = 12345;
        for f in &frames {
            for n in 0..=f.len() {
                let _ = parse(&f[..n]);
            }
            for _ in 0..5000 {
                let mut g = f.clone();
                for _ in 0..3 {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    let i = (x as usize) % g.len();
                    g[i] = (x >> 8) as u8;
                }
                let _ = parse(&g);
            }
        }
    }

    #[test]
    fn solicited_node_mac_takes_the_last_24_bits() {
        assert_eq!(solicited_node_mac("2001:db8::1:2:abcd:ef01".parse().unwrap()), [0x33, 0x33, 0xff, 0xcd, 0xef, 0x01]);
    }
}
