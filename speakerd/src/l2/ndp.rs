//! IPv6 Neighbor Discovery (RFC 4861) frames: decode Neighbor Solicitations with the validity checks of
//! §7.1.1 and their Source Link-Layer Address option; build Neighbor Advertisements (Solicited / Override
//! flags, Target Link-Layer Address option, ICMPv6 checksum, hop limit 255) and, for tests, solicitations.
//! Pure: bytes in, bytes out.
//!
//! pnet's packet types read and write the fixed fields and compute the checksum. Options are walked here
//! with explicit bounds checks: pnet 0.35 computes an option's length as `len * 8` in a `u8`, which
//! overflows (a panic in debug builds) for lengths ≥ 32, so its option iterator never sees wire bytes.
//!
//! ```text
//! Neighbor Solicitation (RFC 4861 §4.3)       Neighbor Advertisement (RFC 4861 §4.4)
//! +--------+--------+----------------+        +--------+--------+----------------+
//! | 135    | Code 0 | Checksum       |        | 136    | Code 0 | Checksum       |
//! +--------+--------+----------------+        +-+-+-+--+--------+----------------+
//! |            Reserved              |        |R|S|O|       Reserved             |
//! +----------------------------------+        +-+-+-+----------------------------+
//! |     Target Address (16 octets)   |        |     Target Address (16 octets)   |
//! +----------------------------------+        +----------------------------------+
//! | Options: Source Link-Layer (1)   |        | Options: Target Link-Layer (2)   |
//! |   type 1, len 1 (×8), MAC        |        |   type 2, len 1 (×8), MAC        |
//! ```
use super::{ethernet, is_group, mac, FrameError, Mac};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::icmpv6::ndp::{MutableNeighborAdvertPacket, MutableNeighborSolicitPacket, NeighborAdvertFlags};
use pnet_packet::icmpv6::{self, Icmpv6Code, Icmpv6Packet, Icmpv6Types};
use pnet_packet::ip::IpNextHeaderProtocols;
use pnet_packet::ipv6::{Ipv6Packet, MutableIpv6Packet};
use pnet_packet::Packet;
use std::net::Ipv6Addr;

/// All-nodes multicast (RFC 4291 §2.7.1) and its Ethernet address (RFC 2464 §7).
pub const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub const ALL_NODES_MAC: Mac = [0x33, 0x33, 0, 0, 0, 1];
/// NDP messages are sent, and accepted only, with hop limit 255 (RFC 4861 §7.1.1, §7.2.4).
pub const HOP_LIMIT: u8 = 255;

const IPV6_HEADER: usize = 40;
const NS_NA_FIXED: usize = 24;
const OPT_SOURCE_LL: u8 = 1;
const OPT_TARGET_LL: u8 = 2;

/// A valid Neighbor Solicitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NeighborSolicit {
    /// Ethernet source of the frame.
    pub eth_src: Mac,
    /// IPv6 source; unspecified for a Duplicate Address Detection probe.
    pub src_ip: Ipv6Addr,
    pub dst_ip: Ipv6Addr,
    pub target: Ipv6Addr,
    /// The Source Link-Layer Address option, if present.
    pub source_ll: Option<Mac>,
}

impl NeighborSolicit {
    /// A Duplicate Address Detection probe (RFC 4862 §5.4.2): the source is the unspecified address.
    pub fn is_dad(&self) -> bool {
        self.src_ip.is_unspecified()
    }

    /// Where a solicited advertisement goes at the link layer: the Source Link-Layer Address option,
    /// else (no option, which RFC 4861 §4.3 allows for unicast solicitations) the frame's source.
    pub fn reply_mac(&self) -> Mac {
        self.source_ll.unwrap_or(self.eth_src)
    }
}

/// The solicited-node multicast address of `ip` (RFC 4291 §2.7.1): ff02::1:ff00:0/104 + its last 24 bits.
pub fn solicited_node(ip: Ipv6Addr) -> Ipv6Addr {
    let o = ip.octets();
    Ipv6Addr::from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, o[13], o[14], o[15]])
}

/// The Ethernet address of `ip`'s solicited-node group (RFC 2464 §7): 33:33 + the group's last 32 bits.
pub fn solicited_node_mac(ip: Ipv6Addr) -> Mac {
    let o = ip.octets();
    [0x33, 0x33, 0xff, o[13], o[14], o[15]]
}

fn is_solicited_node(ip: Ipv6Addr) -> bool {
    ip.octets()[..13] == [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]
}

/// Decodes an Ethernet frame. `Ok(None)`: not IPv6, not ICMPv6 right after the IPv6 header, or another
/// ICMPv6 type. `Err`: truncated, or a Neighbor Solicitation that fails a check of RFC 4861 §7.1.1
/// ("A node MUST silently discard any received Neighbor Solicitation messages that do not satisfy all
/// of the following validity checks").
pub fn decode_ns(frame: &[u8]) -> Result<Option<NeighborSolicit>, FrameError> {
    let eth = EthernetPacket::new(frame).ok_or(FrameError::Truncated)?;
    if eth.get_ethertype() != EtherTypes::Ipv6 {
        return Ok(None);
    }
    let ip_bytes = eth.payload();
    let ip = Ipv6Packet::new(ip_bytes).ok_or(FrameError::Truncated)?;
    if ip.get_version() != 6 {
        return Err(FrameError::IpVersion(ip.get_version()));
    }
    if ip.get_next_header() != IpNextHeaderProtocols::Icmpv6 {
        return Ok(None);
    }
    // The ICMP length is derived from the IP payload length (§7.1.1); bytes past it are link padding.
    let plen = usize::from(ip.get_payload_length());
    let body = ip_bytes.get(IPV6_HEADER..).and_then(|b| b.get(..plen)).ok_or(FrameError::Truncated)?;
    let icmp = Icmpv6Packet::new(body).ok_or(FrameError::Truncated)?;
    if icmp.get_icmpv6_type() != Icmpv6Types::NeighborSolicit {
        return Ok(None);
    }
    if ip.get_hop_limit() != HOP_LIMIT {
        return Err(FrameError::HopLimit(ip.get_hop_limit()));
    }
    if icmp.get_icmpv6_code() != Icmpv6Code(0) {
        return Err(FrameError::IcmpCode(icmp.get_icmpv6_code().0));
    }
    if body.len() < NS_NA_FIXED {
        return Err(FrameError::IcmpLength(body.len()));
    }
    let (src_ip, dst_ip) = (ip.get_source(), ip.get_destination());
    if icmpv6::checksum(&icmp, &src_ip, &dst_ip) != icmp.get_checksum() {
        return Err(FrameError::Checksum);
    }
    let target =
        body.get(8..24).and_then(|t| <[u8; 16]>::try_from(t).ok()).map(Ipv6Addr::from).ok_or(FrameError::Truncated)?;
    if target.is_multicast() {
        return Err(FrameError::MulticastTarget);
    }
    let mut source_ll = None;
    let mut opts = body.get(NS_NA_FIXED..).unwrap_or_default();
    while !opts.is_empty() {
        let (ty, len8) = match opts {
            [ty, len8, ..] => (*ty, *len8),
            _ => return Err(FrameError::BadOption),
        };
        let len = usize::from(len8) * 8;
        if len == 0 {
            return Err(FrameError::BadOption);
        }
        let (opt, rest) = opts.split_at_checked(len).ok_or(FrameError::BadOption)?;
        if ty == OPT_SOURCE_LL && source_ll.is_none() {
            // RFC 4861 §4.6.1 / RFC 2464 §8: on Ethernet the option is 8 octets. Linux drops an NS whose
            // option has another length ("invalid link-layer address length"), and so do we.
            let m = opt.get(2..8).filter(|_| len == 8).ok_or(FrameError::BadOption)?;
            source_ll = <[u8; 6]>::try_from(m).ok();
        }
        opts = rest;
    }
    if src_ip.is_unspecified() {
        if !is_solicited_node(dst_ip) {
            return Err(FrameError::DadDestination);
        }
        if source_ll.is_some() {
            return Err(FrameError::DadSourceLinkLayer);
        }
    }
    let eth_src = mac(eth.get_source());
    if is_group(eth_src) || source_ll.is_some_and(is_group) {
        return Err(FrameError::MulticastSender);
    }
    Ok(Some(NeighborSolicit { eth_src, src_ip, dst_ip, target, source_ll }))
}

/// Another host saying "`target` is at `mac`": a Neighbor Advertisement that passes the checks of
/// RFC 4861 §7.1.2 (hop limit 255, code 0, length, checksum, target not multicast), with the MAC of its
/// Target Link-Layer Address option, or its Ethernet source without one. `None` for anything else and
/// for group MACs (only used to detect address conflicts, never to answer).
pub fn decode_na_claim(frame: &[u8]) -> Option<(Mac, Ipv6Addr)> {
    let eth = EthernetPacket::new(frame)?;
    if eth.get_ethertype() != EtherTypes::Ipv6 {
        return None;
    }
    let ip_bytes = eth.payload();
    let ip = Ipv6Packet::new(ip_bytes)?;
    if ip.get_version() != 6 || ip.get_next_header() != IpNextHeaderProtocols::Icmpv6 || ip.get_hop_limit() != HOP_LIMIT
    {
        return None;
    }
    let body = ip_bytes.get(IPV6_HEADER..)?.get(..usize::from(ip.get_payload_length()))?;
    let icmp = Icmpv6Packet::new(body)?;
    if icmp.get_icmpv6_type() != Icmpv6Types::NeighborAdvert
        || icmp.get_icmpv6_code() != Icmpv6Code(0)
        || body.len() < NS_NA_FIXED
        || icmpv6::checksum(&icmp, &ip.get_source(), &ip.get_destination()) != icmp.get_checksum()
    {
        return None;
    }
    let target = Ipv6Addr::from(<[u8; 16]>::try_from(body.get(8..24)?).ok()?);
    if target.is_multicast() {
        return None;
    }
    let mut who = mac(eth.get_source());
    let mut opts = body.get(NS_NA_FIXED..)?;
    while let [ty, len8, ..] = *opts {
        let len = usize::from(len8) * 8;
        let (opt, rest) = opts.split_at_checked(len).filter(|_| len > 0)?;
        if ty == OPT_TARGET_LL && len == 8 {
            who = <[u8; 6]>::try_from(opt.get(2..8)?).ok()?;
        }
        opts = rest;
    }
    if !opts.is_empty() || is_group(who) {
        return None;
    }
    Some((who, target))
}

/// [`decode_ns`] with every non-solicitation and every invalid one as `None`.
pub fn parse_ns(frame: &[u8]) -> Option<NeighborSolicit> {
    decode_ns(frame).ok().flatten()
}

/// The R, S and O flags of a Neighbor Advertisement (RFC 4861 §4.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NaFlags {
    pub router: bool,
    pub solicited: bool,
    pub override_: bool,
}

/// One IPv6 packet with an ICMPv6 body whose checksum is filled in, in an Ethernet frame.
fn icmpv6_frame(src_mac: Mac, dst_mac: Mac, src_ip: Ipv6Addr, dst_ip: Ipv6Addr, mut icmp: Vec<u8>) -> Vec<u8> {
    if let Some(p) = Icmpv6Packet::new(&icmp) {
        let c = icmpv6::checksum(&p, &src_ip, &dst_ip);
        if let Some(mut m) = pnet_packet::icmpv6::MutableIcmpv6Packet::new(&mut icmp) {
            m.set_checksum(c);
        }
    }
    let mut ip = vec![0u8; IPV6_HEADER + icmp.len()];
    if let Some(mut p) = MutableIpv6Packet::new(&mut ip) {
        p.set_version(6);
        // The bodies built here are 32 bytes: the length always fits.
        p.set_payload_length(u16::try_from(icmp.len()).unwrap_or(u16::MAX));
        p.set_next_header(IpNextHeaderProtocols::Icmpv6);
        p.set_hop_limit(HOP_LIMIT);
        p.set_source(src_ip);
        p.set_destination(dst_ip);
        p.set_payload(&icmp);
    }
    ethernet(dst_mac, src_mac, EtherTypes::Ipv6, &ip)
}

/// A link-layer address option (RFC 4861 §4.6.1) for Ethernet: type, length 1 (8 octets), the MAC.
fn ll_option(ty: u8, m: Mac) -> [u8; 8] {
    [ty, 1, m[0], m[1], m[2], m[3], m[4], m[5]]
}

/// A Neighbor Advertisement for `target` with the Target Link-Layer Address option `src_mac`.
pub fn build_na(
    src_mac: Mac,
    dst_mac: Mac,
    src_ip: Ipv6Addr,
    dst_ip: Ipv6Addr,
    target: Ipv6Addr,
    flags: NaFlags,
) -> Vec<u8> {
    let mut icmp = vec![0u8; NS_NA_FIXED + 8];
    if let Some(mut na) = MutableNeighborAdvertPacket::new(&mut icmp) {
        na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
        na.set_icmpv6_code(Icmpv6Code(0));
        let mut f = 0;
        if flags.router {
            f |= NeighborAdvertFlags::Router;
        }
        if flags.solicited {
            f |= NeighborAdvertFlags::Solicited;
        }
        if flags.override_ {
            f |= NeighborAdvertFlags::Override;
        }
        na.set_flags(f);
        na.set_target_addr(target);
    }
    icmp[NS_NA_FIXED..].copy_from_slice(&ll_option(OPT_TARGET_LL, src_mac));
    icmpv6_frame(src_mac, dst_mac, src_ip, dst_ip, icmp)
}

/// The answer to `ns` (RFC 4861 §7.2.4): Solicited and Override set, unicast to the solicitor; for a
/// DAD probe (unspecified source) Solicited clear and multicast to all nodes. The source address is
/// the target itself: resolvers such as `ndisc6` ignore advertisements from any other source, and the
/// kernel accepts either.
pub fn build_solicited_na(our_mac: Mac, ns: &NeighborSolicit) -> Vec<u8> {
    if ns.is_dad() {
        return build_unsolicited_na(our_mac, ns.target, ns.target);
    }
    let flags = NaFlags { router: false, solicited: true, override_: true };
    build_na(our_mac, ns.reply_mac(), ns.target, ns.src_ip, ns.target, flags)
}

/// An unsolicited advertisement (RFC 4861 §7.2.6) to all nodes with the Override flag, so that
/// neighbours replace a cached link-layer address for `target` with `our_mac`. `src_ip` is an address
/// of the sending interface (its link-local address when it has one).
pub fn build_unsolicited_na(our_mac: Mac, src_ip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let flags = NaFlags { router: false, solicited: false, override_: true };
    build_na(our_mac, ALL_NODES_MAC, src_ip, ALL_NODES, target, flags)
}

/// A Neighbor Solicitation for `target` to its solicited-node group, as a host resolving it sends it;
/// with the Source Link-Layer Address option unless `src_ip` is unspecified (a DAD probe).
pub fn build_ns(src_mac: Mac, src_ip: Ipv6Addr, target: Ipv6Addr) -> Vec<u8> {
    let dad = src_ip.is_unspecified();
    let mut icmp = vec![0u8; NS_NA_FIXED + if dad { 0 } else { 8 }];
    if let Some(mut ns) = MutableNeighborSolicitPacket::new(&mut icmp) {
        ns.set_icmpv6_type(Icmpv6Types::NeighborSolicit);
        ns.set_icmpv6_code(Icmpv6Code(0));
        ns.set_target_addr(target);
    }
    if !dad {
        icmp[NS_NA_FIXED..].copy_from_slice(&ll_option(OPT_SOURCE_LL, src_mac));
    }
    icmpv6_frame(src_mac, solicited_node_mac(target), src_ip, solicited_node(target), icmp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ME: Mac = [0x02, 0, 0, 0, 0, 0x01];
    const HOST: Mac = [0x02, 0, 0, 0, 0, 0x09];

    fn v6(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// `ndisc6 -1 2001:db8::50 eth0` from 02:00:00:00:00:09 (link-local fe80::ff:fe00:9), captured with
    /// `tcpdump -xx` on the other end of a veth pair.
    const NDISC6_NS: &str = "3333ff00005002000000000986dd6002c34c00203afffe80000000000000\
                             000000fffe000009ff0200000000000000000001ff00005087004bb30000\
                             000020010db80000000000000000000000500101020000000009";

    /// RFC 1071 checksum over the RFC 8200 §8.1 pseudo-header, written independently of pnet.
    fn reference_checksum(src: Ipv6Addr, dst: Ipv6Addr, icmp: &[u8]) -> u16 {
        let mut data = Vec::new();
        data.extend_from_slice(&src.octets());
        data.extend_from_slice(&dst.octets());
        data.extend_from_slice(&(icmp.len() as u32).to_be_bytes());
        data.extend_from_slice(&[0, 0, 0, 58]);
        data.extend_from_slice(icmp);
        data[40 + 2] = 0;
        data[40 + 3] = 0;
        if data.len() % 2 == 1 {
            data.push(0);
        }
        let mut sum: u32 = data.chunks(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum();
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    /// Checks an advertisement field by field against RFC 4861 §4.4 and §7.1.2.
    fn check_na(f: &[u8], dst_mac: Mac, src_ip: Ipv6Addr, dst_ip: Ipv6Addr, target: Ipv6Addr, flags: u8) {
        let eth = EthernetPacket::new(f).unwrap();
        assert_eq!((mac(eth.get_destination()), mac(eth.get_source())), (dst_mac, ME));
        assert_eq!(eth.get_ethertype(), EtherTypes::Ipv6);
        let ip = Ipv6Packet::new(eth.payload()).unwrap();
        assert_eq!(ip.get_version(), 6);
        assert_eq!(ip.get_hop_limit(), 255, "RFC 4861 §7.1.2: hop limit 255");
        assert_eq!(ip.get_next_header(), IpNextHeaderProtocols::Icmpv6);
        assert_eq!((ip.get_source(), ip.get_destination()), (src_ip, dst_ip));
        let body = &eth.payload()[40..];
        assert_eq!(usize::from(ip.get_payload_length()), body.len());
        assert_eq!(body.len(), 32);
        assert_eq!((body[0], body[1]), (136, 0));
        assert_eq!(u16::from_be_bytes([body[2], body[3]]), reference_checksum(src_ip, dst_ip, body), "checksum");
        assert_eq!(body[4], flags);
        assert_eq!(&body[5..8], &[0, 0, 0]);
        assert_eq!(&body[8..24], &target.octets());
        assert_eq!(&body[24..32], &[2, 1, ME[0], ME[1], ME[2], ME[3], ME[4], ME[5]], "Target Link-Layer option");
    }

    #[test]
    fn advertisement_claims() {
        let vip = v6("2001:db8::50");
        let una = build_unsolicited_na(HOST, v6("fe80::9"), vip);
        assert_eq!(decode_na_claim(&una), Some((HOST, vip)));
        let ns = build_ns(HOST, v6("2001:db8::9"), vip);
        let sol = build_solicited_na(HOST, &parse_ns(&ns).unwrap());
        assert_eq!(decode_na_claim(&sol), Some((HOST, vip)), "a reply claims too");
        assert_eq!(decode_na_claim(&ns), None, "a solicitation does not");
        // The target link-layer address option names the MAC, not the Ethernet source.
        let mut other = una.clone();
        other[6..12].copy_from_slice(&ME);
        assert_eq!(decode_na_claim(&other), Some((HOST, vip)));
        // RFC 4861 §7.1.2 checks: hop limit, checksum; and no group MAC.
        let mut hop = una.clone();
        hop[14 + 7] = 64;
        assert_eq!(decode_na_claim(&hop), None);
        let mut sum = una.clone();
        let last = sum.len() - 1;
        sum[last] ^= 1;
        assert_eq!(decode_na_claim(&sum), None);
        assert_eq!(decode_na_claim(&build_unsolicited_na([3, 0, 0, 0, 0, 1], v6("fe80::9"), vip)), None);
        for n in 0..una.len() {
            assert_eq!(decode_na_claim(&una[..n]), None, "truncated at {n}");
        }
    }

    #[test]
    fn captured_ndisc6_solicitation_decodes() {
        let f = hex::decode(NDISC6_NS).unwrap();
        let ns = decode_ns(&f).unwrap().unwrap();
        assert_eq!(
            ns,
            NeighborSolicit {
                eth_src: HOST,
                src_ip: v6("fe80::ff:fe00:9"),
                dst_ip: v6("ff02::1:ff00:50"),
                target: v6("2001:db8::50"),
                source_ll: Some(HOST),
            }
        );
        assert!(!ns.is_dad());
    }

    #[test]
    fn built_solicitation_equals_the_capture_but_for_the_flow_label() {
        let mut want = hex::decode(NDISC6_NS).unwrap();
        want[14..18].copy_from_slice(&[0x60, 0, 0, 0]); // ndisc6's socket sets a flow label; we do not
        assert_eq!(hex::encode(build_ns(HOST, v6("fe80::ff:fe00:9"), v6("2001:db8::50"))), hex::encode(want));
    }

    #[test]
    fn solicited_na_answers_the_captured_solicitation() {
        let ns = parse_ns(&hex::decode(NDISC6_NS).unwrap()).unwrap();
        let f = build_solicited_na(ME, &ns);
        check_na(&f, HOST, v6("2001:db8::50"), v6("fe80::ff:fe00:9"), v6("2001:db8::50"), 0b0110_0000);
    }

    #[test]
    fn unsolicited_na_goes_to_all_nodes_with_override_only() {
        let f = build_unsolicited_na(ME, v6("fe80::1"), v6("2001:db8::50"));
        check_na(&f, ALL_NODES_MAC, v6("fe80::1"), ALL_NODES, v6("2001:db8::50"), 0b0010_0000);
    }

    #[test]
    fn na_flags_map_to_their_bits() {
        let f = build_na(
            ME,
            HOST,
            v6("fe80::1"),
            v6("fe80::9"),
            v6("2001:db8::50"),
            NaFlags { router: true, solicited: false, override_: false },
        );
        check_na(&f, HOST, v6("fe80::1"), v6("fe80::9"), v6("2001:db8::50"), 0b1000_0000);
    }

    #[test]
    fn dad_probe_is_valid_and_answered_to_all_nodes() {
        let f = build_ns(HOST, Ipv6Addr::UNSPECIFIED, v6("2001:db8::50"));
        let ns = decode_ns(&f).unwrap().unwrap();
        assert!(ns.is_dad());
        assert_eq!(ns.reply_mac(), HOST);
        check_na(
            &build_solicited_na(ME, &ns),
            ALL_NODES_MAC,
            v6("2001:db8::50"),
            ALL_NODES,
            v6("2001:db8::50"),
            0b0010_0000,
        );
    }

    #[test]
    fn ns_without_source_option_replies_to_the_ethernet_source() {
        // A unicast NS (neighbour unreachability detection) may omit the option (RFC 4861 §4.3).
        let mut f = build_ns(HOST, v6("2001:db8::9"), v6("2001:db8::50"));
        f.truncate(f.len() - 8);
        let plen = 24u16;
        f[18..20].copy_from_slice(&plen.to_be_bytes());
        fix_checksum(&mut f);
        let ns = decode_ns(&f).unwrap().unwrap();
        assert_eq!((ns.source_ll, ns.reply_mac()), (None, HOST));
    }

    fn fix_checksum(f: &mut [u8]) {
        let ip = Ipv6Packet::new(&f[14..]).unwrap();
        let (s, d) = (ip.get_source(), ip.get_destination());
        let plen = usize::from(ip.get_payload_length());
        let c = reference_checksum(s, d, &f[54..54 + plen]);
        f[56..58].copy_from_slice(&c.to_be_bytes());
    }

    /// One frame per RFC 4861 §7.1.1 check, each failing only that check.
    #[test]
    fn each_validity_check_rejects_its_case() {
        let good = build_ns(HOST, v6("2001:db8::9"), v6("2001:db8::50"));
        assert!(decode_ns(&good).unwrap().is_some());
        type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Mutation, FrameError)> = vec![
            ("hop limit 64", Box::new(|f| f[21] = 64), FrameError::HopLimit(64)),
            (
                "code 1",
                Box::new(|f| {
                    f[55] = 1;
                    fix_checksum(f)
                }),
                FrameError::IcmpCode(1),
            ),
            ("bad checksum", Box::new(|f| f[57] ^= 1), FrameError::Checksum),
            (
                "multicast target",
                Box::new(|f| {
                    f[62] = 0xff;
                    fix_checksum(f)
                }),
                FrameError::MulticastTarget,
            ),
            (
                "option length 0",
                Box::new(|f| {
                    f[79] = 0;
                    fix_checksum(f)
                }),
                FrameError::BadOption,
            ),
            (
                "option past the end (40 × 8: pnet would overflow)",
                Box::new(|f| {
                    f[79] = 40;
                    fix_checksum(f)
                }),
                FrameError::BadOption,
            ),
            (
                "source option of 16 bytes",
                Box::new(|f| {
                    f.extend_from_slice(&[0; 8]);
                    f[19] = 40;
                    f[79] = 2;
                    fix_checksum(f)
                }),
                FrameError::BadOption,
            ),
            (
                "ICMP length 20",
                Box::new(|f| {
                    f[19] = 20;
                    fix_checksum(f)
                }),
                FrameError::IcmpLength(20),
            ),
            ("IP version 4", Box::new(|f| f[14] = 0x40), FrameError::IpVersion(4)),
            ("payload length past the frame", Box::new(|f| f[19] = 33), FrameError::Truncated),
            ("multicast Ethernet source", Box::new(|f| f[6] = 0x03), FrameError::MulticastSender),
        ];
        for (name, mutate, want) in cases {
            let mut f = good.clone();
            mutate(&mut f);
            assert_eq!(decode_ns(&f), Err(want), "{name}");
        }
        // DAD probes: to a solicited-node address and without the source option.
        let dad = build_ns(HOST, Ipv6Addr::UNSPECIFIED, v6("2001:db8::50"));
        let mut f = dad.clone();
        f[38..54].copy_from_slice(&ALL_NODES.octets());
        fix_checksum(&mut f);
        assert_eq!(decode_ns(&f), Err(FrameError::DadDestination));
        let mut f = good.clone();
        f[22..38].copy_from_slice(&Ipv6Addr::UNSPECIFIED.octets());
        fix_checksum(&mut f);
        assert_eq!(decode_ns(&f), Err(FrameError::DadSourceLinkLayer));
    }

    #[test]
    fn other_traffic_is_not_an_error() {
        let na = build_unsolicited_na(ME, v6("fe80::1"), v6("2001:db8::50"));
        assert_eq!(decode_ns(&na), Ok(None), "an NA is not a solicitation");
        let mut udp = build_ns(HOST, v6("2001:db8::9"), v6("2001:db8::50"));
        udp[20] = 17;
        assert_eq!(decode_ns(&udp), Ok(None));
        assert_eq!(decode_ns(&super::super::arp::build_gratuitous(ME, "192.0.2.1".parse().unwrap())), Ok(None));
    }

    #[test]
    fn trailing_link_padding_is_ignored() {
        let mut f = build_ns(HOST, v6("2001:db8::9"), v6("2001:db8::50"));
        f.extend_from_slice(&[0xee; 10]);
        assert!(parse_ns(&f).is_some());
    }

    #[test]
    fn every_truncation_is_an_error_without_panic() {
        for f in [hex::decode(NDISC6_NS).unwrap(), build_ns(HOST, Ipv6Addr::UNSPECIFIED, v6("2001:db8::50"))] {
            for n in 0..f.len() {
                assert!(decode_ns(&f[..n]).is_err(), "length {n} of {}", f.len());
            }
        }
    }

    #[test]
    fn solicited_node_group_takes_the_last_24_bits() {
        let ip = v6("2001:db8::1:2:abcd:ef01");
        assert_eq!(solicited_node(ip), v6("ff02::1:ffcd:ef01"));
        assert_eq!(solicited_node_mac(ip), [0x33, 0x33, 0xff, 0xcd, 0xef, 0x01]);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = decode_ns(&bytes);
            let _ = decode_na_claim(&bytes);
        }

        /// Mutations of a valid NS with its checksum recomputed, so they reach the option walk.
        #[test]
        fn mutated_solicitations_never_panic(muts in proptest::collection::vec((54usize..86, any::<u8>()), 1..6), extra in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut f = hex::decode(NDISC6_NS).unwrap();
            f.extend_from_slice(&extra);
            let plen = (f.len() - 54) as u16;
            f[18..20].copy_from_slice(&plen.to_be_bytes());
            for (i, b) in muts {
                f[i] = b;
            }
            fix_checksum(&mut f);
            let _ = decode_ns(&f);
        }

        #[test]
        fn build_then_decode_round_trips(src in any::<[u8; 16]>(), target in any::<[u8; 16]>(), m in any::<[u8; 6]>()) {
            let (src, target) = (Ipv6Addr::from(src), Ipv6Addr::from(target));
            let m = [m[0] & 0xfe, m[1], m[2], m[3], m[4], m[5]];
            let got = decode_ns(&build_ns(m, src, target));
            if target.is_multicast() {
                prop_assert_eq!(got, Err(FrameError::MulticastTarget));
            } else {
                let source_ll = if src.is_unspecified() { None } else { Some(m) };
                let want = NeighborSolicit { eth_src: m, src_ip: src, dst_ip: solicited_node(target), target, source_ll };
                prop_assert_eq!(got, Ok(Some(want)));
            }
        }
    }
}
