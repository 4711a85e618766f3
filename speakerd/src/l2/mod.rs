//! Layer 2 mode: this node answers ARP requests and Neighbor Solicitations for the IPs it owns, with
//! the MAC of the right interface, and announces an IP it takes over with gratuitous ARP / unsolicited
//! Neighbor Advertisements. Which node owns an IP is decided elsewhere (`control`, `election`).
//!
//! * `arp`, `ndp`: frame parse and build (pnet packet types); pure, no I/O, no clock.
//! * `announcer`: which IP is answered on which interface, the bursts, failures; sans IO
//!   (`handle(input, now) -> actions`), no tokio.
//! * `iface`: the interface table (getifaddrs) and the netlink event subscription that keeps it current.
//! * `driver`: the tokio side: AF_PACKET sockets, multicast membership, the timer, [`L2Handle`].
//! * `control`: desired state + gossip view → election → the claims given to [`L2Handle`].
pub mod announcer;
pub mod arp;
pub mod control;
pub mod driver;
pub mod iface;
pub mod ndp;

pub use announcer::{Claim, ClaimStatus, L2Config, L2Counters};
pub use driver::{L2Error, L2Handle};
pub use iface::Iface;

use pnet_base::MacAddr;
use pnet_packet::ethernet::{EtherType, EthernetPacket, MutableEthernetPacket};

/// An Ethernet (EUI-48) address.
pub type Mac = [u8; 6];
pub const BROADCAST: Mac = [0xff; 6];

/// Why a frame that looked like an ARP request or a Neighbor Solicitation was dropped. Frames that are
/// well formed but simply not requests (ARP replies, other ICMPv6 types) are not errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame truncated")]
    Truncated,
    /// ARP for a hardware/protocol pair other than Ethernet/IPv4, or with lengths that say so.
    #[error("ARP not for Ethernet/IPv4")]
    ArpNotEthernetIpv4,
    /// A broadcast or multicast sender MAC (RFC 1812 §3.3.2: such ARP packets are discarded).
    #[error("multicast or broadcast sender link-layer address")]
    MulticastSender,
    #[error("IP version {0}, not 6")]
    IpVersion(u8),
    /// RFC 4861 §7.1.1: the IP Hop Limit field has a value of 255.
    #[error("hop limit {0}, not 255")]
    HopLimit(u8),
    /// RFC 4861 §7.1.1: ICMP Code is 0.
    #[error("ICMPv6 code {0}, not 0")]
    IcmpCode(u8),
    /// RFC 4861 §7.1.1: ICMP length (derived from the IP length) is 24 or more octets.
    #[error("ICMPv6 length {0} < 24")]
    IcmpLength(usize),
    /// RFC 4861 §7.1.1: ICMP Checksum is valid.
    #[error("bad ICMPv6 checksum")]
    Checksum,
    /// RFC 4861 §7.1.1: Target Address is not a multicast address.
    #[error("multicast target address")]
    MulticastTarget,
    /// RFC 4861 §7.1.1: all included options have a length that is greater than zero (and, for us,
    /// that fits in the message).
    #[error("option of length zero or past the end")]
    BadOption,
    /// RFC 4861 §7.1.1: if the IP source address is the unspecified address, the IP destination
    /// address is a solicited-node multicast address.
    #[error("DAD probe not sent to a solicited-node address")]
    DadDestination,
    /// RFC 4861 §7.1.1: if the IP source address is the unspecified address, there is no source
    /// link-layer address option in the message.
    #[error("DAD probe with a source link-layer address option")]
    DadSourceLinkLayer,
}

impl FrameError {
    /// A stable label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::ArpNotEthernetIpv4 => "arp_not_ethernet_ipv4",
            Self::MulticastSender => "multicast_sender",
            Self::IpVersion(_) => "ip_version",
            Self::HopLimit(_) => "hop_limit",
            Self::IcmpCode(_) => "icmp_code",
            Self::IcmpLength(_) => "icmp_length",
            Self::Checksum => "checksum",
            Self::MulticastTarget => "multicast_target",
            Self::BadOption => "bad_option",
            Self::DadDestination => "dad_destination",
            Self::DadSourceLinkLayer => "dad_source_link_layer",
        }
    }
}

pub(crate) fn mac(m: MacAddr) -> Mac {
    m.octets()
}

pub(crate) fn pmac(m: Mac) -> MacAddr {
    MacAddr::new(m[0], m[1], m[2], m[3], m[4], m[5])
}

/// Is this a group (multicast or broadcast) address? (IEEE 802: the I/G bit of the first octet.)
pub(crate) fn is_group(m: Mac) -> bool {
    m[0] & 1 == 1
}

/// An Ethernet II frame around `payload`.
pub(crate) fn ethernet(dst: Mac, src: Mac, ty: EtherType, payload: &[u8]) -> Vec<u8> {
    let mut buf = vec![0u8; EthernetPacket::minimum_packet_size() + payload.len()];
    if let Some(mut e) = MutableEthernetPacket::new(&mut buf) {
        e.set_destination(pmac(dst));
        e.set_source(pmac(src));
        e.set_ethertype(ty);
        e.set_payload(payload);
    }
    buf
}

/// Registers a non-blocking descriptor with the tokio reactor for reading. Needs a runtime.
pub(crate) fn register_readable(
    fd: std::os::fd::OwnedFd,
) -> std::io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    // SAFETY: an OwnedFd is open and keeps referring to the same open file description until the
    // AsyncFd, which owns it, drops it; its as_raw_fd never changes.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
        .map_err(std::io::Error::from)
}

/// A frame that reached us: the ARP request or Neighbor Solicitation in it, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Arp(arp::ArpRequest),
    Ns(ndp::NeighborSolicit),
}

impl Request {
    /// The address asked about.
    pub fn target(&self) -> std::net::IpAddr {
        match self {
            Self::Arp(r) => r.target_ip.into(),
            Self::Ns(n) => n.target.into(),
        }
    }
}

/// Decodes a received Ethernet frame: `Ok(Some)` for an ARP request or a valid NS, `Ok(None)` for
/// anything that is not a request (other EtherTypes, ARP replies, other ICMPv6), `Err` for a frame that
/// claims to be ARP or NDP and is malformed or invalid.
pub fn decode_request(frame: &[u8]) -> Result<Option<Request>, FrameError> {
    let eth = EthernetPacket::new(frame).ok_or(FrameError::Truncated)?;
    match eth.get_ethertype() {
        pnet_packet::ethernet::EtherTypes::Arp => Ok(arp::decode(frame)?.map(Request::Arp)),
        pnet_packet::ethernet::EtherTypes::Ipv6 => Ok(ndp::decode_ns(frame)?.map(Request::Ns)),
        _ => Ok(None),
    }
}
