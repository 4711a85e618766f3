//! ARP (RFC 826) over Ethernet for IPv4: decode the requests we may answer; build requests, replies
//! and gratuitous ARP (RFC 5227 §3 announcement form). Pure: bytes in, bytes out.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |    Hardware Type (1)          |    Protocol Type (0x0800)     |
//! |  HLEN (6)     |  PLEN (4)     |    Operation (1 req, 2 reply) |
//! |                Sender Hardware Address (6) ...                |
//! |  ... Sender Protocol Address (4) ... | Target Hardware (6) ...|
//! |  ... Target Protocol Address (4)                              |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
use super::{ethernet, is_group, mac, pmac, FrameError, Mac, BROADCAST};
use pnet_packet::arp::{ArpHardwareTypes, ArpOperation, ArpOperations, ArpPacket, MutableArpPacket};
use pnet_packet::ethernet::{EtherTypes, EthernetPacket};
use pnet_packet::Packet;
use std::net::Ipv4Addr;

/// "Who has `target_ip`? Tell `sender_ip` (at `sender_mac`)". A probe (RFC 5227 §2.1.1) has sender_ip
/// 0.0.0.0; an announcement has sender_ip == target_ip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRequest {
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_ip: Ipv4Addr,
}

impl ArpRequest {
    /// A gratuitous ARP / announcement: not a question to answer.
    pub fn is_announcement(&self) -> bool {
        self.sender_ip == self.target_ip
    }
}

/// Decodes an Ethernet frame carrying ARP. `Ok(None)`: not ARP, or an ARP operation other than request
/// (replies included). `Err`: truncated, not Ethernet/IPv4, or from a group MAC.
pub fn decode(frame: &[u8]) -> Result<Option<ArpRequest>, FrameError> {
    let eth = EthernetPacket::new(frame).ok_or(FrameError::Truncated)?;
    if eth.get_ethertype() != EtherTypes::Arp {
        return Ok(None);
    }
    let arp = ArpPacket::new(eth.payload()).ok_or(FrameError::Truncated)?;
    // pnet reads fixed offsets whatever the length fields say, so they are checked here.
    if arp.get_hardware_type() != ArpHardwareTypes::Ethernet
        || arp.get_protocol_type() != EtherTypes::Ipv4
        || arp.get_hw_addr_len() != 6
        || arp.get_proto_addr_len() != 4
    {
        return Err(FrameError::ArpNotEthernetIpv4);
    }
    if arp.get_operation() != ArpOperations::Request {
        return Ok(None);
    }
    let sender_mac = mac(arp.get_sender_hw_addr());
    if is_group(sender_mac) || is_group(mac(eth.get_source())) {
        return Err(FrameError::MulticastSender);
    }
    Ok(Some(ArpRequest { sender_mac, sender_ip: arp.get_sender_proto_addr(), target_ip: arp.get_target_proto_addr() }))
}

/// Another host saying "`ip` is at `mac`" on the wire: an ARP reply (its sender addresses), or a
/// gratuitous ARP request (sender IP == target IP). Ordinary requests are not counted: a host may ask
/// from an address it does not answer for. `None` for anything else, malformed frames and group MACs
/// included (this is only used to detect address conflicts, never to answer).
pub fn decode_claim(frame: &[u8]) -> Option<(Mac, Ipv4Addr)> {
    let eth = EthernetPacket::new(frame)?;
    if eth.get_ethertype() != EtherTypes::Arp {
        return None;
    }
    let arp = ArpPacket::new(eth.payload())?;
    if arp.get_hardware_type() != ArpHardwareTypes::Ethernet
        || arp.get_protocol_type() != EtherTypes::Ipv4
        || arp.get_hw_addr_len() != 6
        || arp.get_proto_addr_len() != 4
    {
        return None;
    }
    let (sender_mac, sender_ip) = (mac(arp.get_sender_hw_addr()), arp.get_sender_proto_addr());
    let claims = match arp.get_operation() {
        ArpOperations::Reply => true,
        ArpOperations::Request => sender_ip == arp.get_target_proto_addr(),
        _ => false,
    };
    if !claims || is_group(sender_mac) || sender_ip.is_unspecified() {
        return None;
    }
    Some((sender_mac, sender_ip))
}

/// [`decode`] with every non-request and every error as `None`.
pub fn parse_request(frame: &[u8]) -> Option<ArpRequest> {
    decode(frame).ok().flatten()
}

fn body(op: ArpOperation, smac: Mac, sip: Ipv4Addr, tmac: Mac, tip: Ipv4Addr) -> Vec<u8> {
    let mut a = vec![0u8; ArpPacket::minimum_packet_size()];
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

/// A broadcast request "who has `target_ip`? tell `sender_ip`", as a host resolving an address sends it.
pub fn build_request(sender_mac: Mac, sender_ip: Ipv4Addr, target_ip: Ipv4Addr) -> Vec<u8> {
    ethernet(
        BROADCAST,
        sender_mac,
        EtherTypes::Arp,
        &body(ArpOperations::Request, sender_mac, sender_ip, [0; 6], target_ip),
    )
}

/// The reply "`ip` is at `our_mac`", unicast to the asker (RFC 826: target = the request's sender).
pub fn build_reply(our_mac: Mac, ip: Ipv4Addr, to_mac: Mac, to_ip: Ipv4Addr) -> Vec<u8> {
    ethernet(to_mac, our_mac, EtherTypes::Arp, &body(ArpOperations::Reply, our_mac, ip, to_mac, to_ip))
}

/// A gratuitous ARP in the RFC 5227 §3 announcement form (a request with sender IP = target IP = `ip`),
/// broadcast. Neighbours that have an entry for `ip` update it to `our_mac`; Linux hosts learn a new
/// entry from it only with `arp_accept=1`.
pub fn build_gratuitous(our_mac: Mac, ip: Ipv4Addr) -> Vec<u8> {
    ethernet(BROADCAST, our_mac, EtherTypes::Arp, &body(ArpOperations::Request, our_mac, ip, [0; 6], ip))
}

/// An ARP probe (RFC 5227 §2.1.1): "who has `ip`?" from sender IP 0.0.0.0, broadcast. An owner of
/// `ip` answers it; nobody's cache learns anything from it (no sender address to learn).
pub fn build_probe(our_mac: Mac, ip: Ipv4Addr) -> Vec<u8> {
    build_request(our_mac, Ipv4Addr::UNSPECIFIED, ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ME: Mac = [0x02, 0, 0, 0, 0, 0x01];
    const HOST: Mac = [0x02, 0, 0, 0, 0, 0x09];

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    /// `arping -c 1 -I eth0 192.0.2.50` from 02:00:00:00:00:09 / 192.0.2.9, captured with `tcpdump -xx`
    /// (iputils arping puts ff:ff:ff:ff:ff:ff in the target hardware address).
    const ARPING_REQUEST: &str = "ffffffffffff020000000009080600010800060400010200000000\
                                  09c0000209ffffffffffffc0000232";

    #[test]
    fn claims_are_replies_and_gratuitous_arps_only() {
        let vip = ip("192.0.2.50");
        assert_eq!(decode_claim(&build_gratuitous(HOST, vip)), Some((HOST, vip)));
        assert_eq!(decode_claim(&build_reply(HOST, vip, ME, ip("192.0.2.9"))), Some((HOST, vip)));
        // A question is not a claim, nor is a probe (sender 0.0.0.0).
        assert_eq!(decode_claim(&build_request(HOST, ip("192.0.2.9"), vip)), None);
        assert_eq!(decode_claim(&build_request(HOST, Ipv4Addr::UNSPECIFIED, vip)), None);
        assert_eq!(decode_claim(&hex::decode(ARPING_REQUEST).unwrap()), None);
        let mut g = build_gratuitous(HOST, vip);
        g[22] |= 1; // group sender MAC
        assert_eq!(decode_claim(&g), None);
        assert_eq!(decode_claim(&g[..20]), None);
    }

    #[test]
    fn captured_arping_request_decodes() {
        let f = hex::decode(ARPING_REQUEST).unwrap();
        assert_eq!(
            decode(&f),
            Ok(Some(ArpRequest { sender_mac: HOST, sender_ip: ip("192.0.2.9"), target_ip: ip("192.0.2.50") }))
        );
    }

    #[test]
    fn built_request_matches_the_capture_but_for_the_target_mac() {
        let mut want = hex::decode(ARPING_REQUEST).unwrap();
        want[32..38].fill(0); // RFC 826 leaves it unset; arping fills it with broadcast.
        assert_eq!(build_request(HOST, ip("192.0.2.9"), ip("192.0.2.50")), want);
    }

    #[test]
    fn reply_is_unicast_to_the_asker_and_is_not_a_request() {
        let f = build_reply(ME, ip("192.0.2.50"), HOST, ip("192.0.2.9"));
        assert_eq!(
            hex::encode(&f),
            "020000000009020000000001080600010800060400020200000000\
             01c0000232020000000009c0000209"
        );
        assert_eq!(decode(&f), Ok(None));
    }

    #[test]
    fn gratuitous_is_a_broadcast_announcement_from_us() {
        let f = build_gratuitous(ME, ip("192.0.2.50"));
        let eth = EthernetPacket::new(&f).unwrap();
        assert_eq!((mac(eth.get_destination()), mac(eth.get_source())), (BROADCAST, ME));
        let r = decode(&f).unwrap().unwrap();
        assert!(r.is_announcement());
        assert_eq!((r.sender_mac, r.target_ip), (ME, ip("192.0.2.50")));
    }

    #[test]
    fn padded_frame_decodes() {
        let mut f = build_request(HOST, ip("192.0.2.9"), ip("192.0.2.50"));
        f.resize(60, 0); // Ethernet minimum size
        assert!(parse_request(&f).is_some());
    }

    #[test]
    fn wrong_types_lengths_and_senders_are_errors() {
        let good = build_request(HOST, ip("192.0.2.9"), ip("192.0.2.50"));
        for (offset, value) in [(15, 0x06u8), (16, 0x86), (18, 8), (19, 16)] {
            let mut f = good.clone();
            f[offset] = value;
            assert_eq!(decode(&f), Err(FrameError::ArpNotEthernetIpv4), "byte {offset} = {value}");
        }
        let mut f = good.clone();
        f[22] = 0x01; // sender MAC 01:… (multicast)
        assert_eq!(decode(&f), Err(FrameError::MulticastSender));
        let mut f = good.clone();
        f[21] = 3; // RARP request under the ARP EtherType: not ours
        assert_eq!(decode(&f), Ok(None));
        let mut f = good;
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(decode(&f), Ok(None), "IPv4 is not ARP");
    }

    #[test]
    fn every_truncation_is_an_error_without_panic() {
        let f = build_request(HOST, ip("192.0.2.9"), ip("192.0.2.50"));
        for n in 0..f.len() {
            assert_eq!(decode(&f[..n]), Err(FrameError::Truncated), "length {n}");
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = decode(&bytes);
            let _ = decode_claim(&bytes);
        }

        #[test]
        fn mutated_requests_never_panic(pos in proptest::collection::vec((0usize..42, any::<u8>()), 1..6)) {
            let mut f = build_request(HOST, ip("192.0.2.9"), ip("192.0.2.50"));
            for (i, b) in pos {
                f[i] = b;
            }
            let _ = decode(&f);
            let _ = decode_claim(&f);
        }

        #[test]
        fn build_then_decode_round_trips(s in any::<[u8; 4]>(), t in any::<[u8; 4]>(), m in any::<[u8; 6]>()) {
            let m = [m[0] & 0xfe, m[1], m[2], m[3], m[4], m[5]];
            let f = build_request(m, Ipv4Addr::from(s), Ipv4Addr::from(t));
            prop_assert_eq!(decode(&f), Ok(Some(ArpRequest { sender_mac: m, sender_ip: s.into(), target_ip: t.into() })));
        }
    }
}
