//! Codec vectors captured from real peers: gobgpd 3.10.0, BIRD 2.0.12 and FRR 8.4.4 talking to each other in
//! network namespaces (setup, configs and full capture listings in `tests/wire_vectors/`).
//!
//! Each vector names its source and is checked both ways:
//! - `decode(bytes)` gives exactly the expected [`Message`];
//! - re-encoding that message gives the captured bytes back where our encoding of it is the same
//!   ([`Bytes::Identical`]). Where a peer lays out the same message differently (attribute order, Extended Length
//!   bit, one Capabilities parameter for all capabilities), [`Bytes::Differs`] says why, the bytes are checked
//!   to really differ (so the reason stays true), and `decode(encode(decode(x))) == decode(x)` is checked instead.
//!
//! The tests use only the hex stored here; no daemon runs at test time.
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use speakerd::bgp::wire::{
    decode, frame, to_bytes, AsPath, Capability, DecodeCtx, Family, GrFamily, LargeCommunity, Message, MpNextHop,
    MpReach, MpUnreach, Notification, Open, PathAttrs, Segment, SegmentKind, Update, MAX_MESSAGE_LEN,
};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Every session captured negotiated 4-octet AS numbers.
const EBGP: DecodeCtx = DecodeCtx { four_octet_as: true, ibgp: false };
const IBGP: DecodeCtx = DecodeCtx { four_octet_as: true, ibgp: true };

/// How our encoder writes the decoded message.
enum Bytes {
    /// Byte for byte what the peer sent.
    Identical,
    /// The same message laid out differently; the reason.
    Differs(&'static str),
}

struct Vector {
    source: &'static str,
    hex: &'static str,
    ctx: DecodeCtx,
    expected: Message,
    bytes: Bytes,
}

impl Vector {
    fn raw(&self) -> Vec<u8> {
        let h: String = self.hex.split_whitespace().collect();
        hex::decode(h).unwrap_or_else(|e| panic!("{}: bad hex: {e}", self.source))
    }
}

// Reasons our bytes differ, shared by several vectors.
const ONE_CAP_PARAM: &str = "the peer packs all capabilities into one Capabilities optional parameter (RFC 5492 \
    allows either); we send one parameter per capability, as FRR does";
const GOBGP_MP_ORDER: &str = "gobgpd writes MP_REACH/MP_UNREACH_NLRI in type-code order with a 1-octet length; \
    we write it first (RFC 7606 §5.1) and always with the Extended Length bit";
const EOR_SHORT_LEN: &str = "the End-of-RIB MP_UNREACH_NLRI comes with a 1-octet length (flags 0x80); \
    we always set Extended Length on MP attributes (flags 0x90)";
const FRR_AS_PATH_EXT: &str = "FRR sets the Extended Length bit on AS_PATH (flags 0x50) even for a short path; \
    we set it only when a value exceeds 255 octets";

// Builders for the expected values.

fn v4(s: &str) -> Ipv4Net {
    s.parse().expect("IPv4 prefix")
}
fn v6(s: &str) -> IpNet {
    IpNet::V6(s.parse::<Ipv6Net>().expect("IPv6 prefix"))
}
fn ip6(s: &str) -> Ipv6Addr {
    s.parse().expect("IPv6 address")
}
/// A community `asn:value`.
fn comm(asn: u16, value: u16) -> u32 {
    (u32::from(asn) << 16) | u32::from(value)
}
fn lc(global: u32, local1: u32, local2: u32) -> LargeCommunity {
    LargeCommunity { global, local1, local2 }
}
fn seq(asns: &[u32]) -> Option<AsPath> {
    Some(AsPath { segments: vec![Segment { kind: SegmentKind::Sequence, asns: asns.to_vec() }] })
}
/// The empty AS_PATH of a route originated inside the AS (iBGP).
fn empty_path() -> Option<AsPath> {
    Some(AsPath::default())
}
fn mp_v6(next_hop: &str, link_local: Option<&str>, nlri: &[&str]) -> Option<MpReach> {
    Some(MpReach {
        family: Family::IPV6_UNICAST,
        next_hop: MpNextHop::V6 { global: ip6(next_hop), link_local: link_local.map(ip6) },
        nlri: nlri.iter().map(|p| v6(p)).collect(),
        other_nlri: vec![],
    })
}
fn mp_unreach_v6(withdrawn: &[&str]) -> Option<MpUnreach> {
    Some(MpUnreach {
        family: Family::IPV6_UNICAST,
        withdrawn: withdrawn.iter().map(|p| v6(p)).collect(),
        other_nlri: vec![],
    })
}
fn update(attrs: PathAttrs, nlri: &[&str]) -> Message {
    Message::Update(Update { withdrawn: vec![], attrs, nlri: nlri.iter().map(|p| v4(p)).collect(), faults: vec![] })
}
fn withdraw(withdrawn: &[&str]) -> Message {
    Message::Update(Update { withdrawn: withdrawn.iter().map(|p| v4(p)).collect(), ..Update::default() })
}
fn open(my_as: u16, hold_time: u16, router_id: [u8; 4], capabilities: Vec<Capability>) -> Message {
    Message::Open(Open { version: 4, my_as, hold_time, router_id: Ipv4Addr::from(router_id), capabilities })
}
fn gr(restart_state: bool, notification: bool, restart_time: u16, families: &[Family]) -> Capability {
    Capability::GracefulRestart {
        restart_state,
        notification,
        restart_time,
        families: families.iter().map(|&family| GrFamily { family, forwarding_preserved: false }).collect(),
    }
}
fn unknown(code: u8, value: &[u8]) -> Capability {
    Capability::Unknown { code, value: value.to_vec() }
}
/// The FQDN capability (code 73, draft-walton-bgp-hostname-capability): hostname "vm", no domain.
fn fqdn_vm() -> Capability {
    unknown(73, &[2, b'v', b'm', 0])
}
fn cease(subcode: u8, data: &[u8]) -> Message {
    Message::Notification(Notification::new(6, subcode, data.to_vec()))
}
/// An RFC 9003 Shutdown Communication: length octet, then UTF-8.
fn communication(text: &str) -> Vec<u8> {
    let mut d = vec![u8::try_from(text.len()).expect("short")];
    d.extend_from_slice(text.as_bytes());
    d
}

const V4U: Family = Family::IPV4_UNICAST;
const V6U: Family = Family::IPV6_UNICAST;

fn vectors() -> Vec<Vector> {
    use Bytes::*;
    use Capability::{ExtendedNextHop, FourOctetAs, Multiprotocol, RouteRefresh};
    vec![
        // ---------------------------------------------------------------------------------------------- OPEN
        Vector {
            source: "gobgpd 3.10.0 OPEN, eBGP IPv4 session to BIRD (capture 1): AS 4200000000 as AS_TRANS, \
                     graceful restart for ipv4-unicast",
            hex: "ffffffffffffffffffffffffffffffff 0043 01 \
                  04 5ba0 005a c0000201 26 \
                  02 24 0200 490402766d00 0104 00010001 4104 fa56ea00 4006 0078 00010100 0506 000100010002",
            ctx: EBGP,
            expected: open(23456, 90, [192, 0, 2, 1], vec![
                RouteRefresh,
                fqdn_vm(),
                Multiprotocol(V4U),
                FourOctetAs(4_200_000_000),
                gr(false, false, 120, &[V4U]),
                // RFC 8950: IPv4 unicast NLRI with an IPv6 next hop.
                ExtendedNextHop(vec![(V4U, 2)]),
            ]),
            bytes: Differs(ONE_CAP_PARAM),
        },
        Vector {
            source: "gobgpd 3.10.0 OPEN, eBGP IPv6 session to BIRD (capture 1): ipv6-unicast only, no graceful restart",
            hex: "ffffffffffffffffffffffffffffffff 0033 01 \
                  04 5ba0 005a c0000201 16 \
                  02 14 0200 490402766d00 0104 00020001 4104 fa56ea00",
            ctx: EBGP,
            expected: open(23456, 90, [192, 0, 2, 1], vec![
                RouteRefresh,
                fqdn_vm(),
                Multiprotocol(V6U),
                FourOctetAs(4_200_000_000),
            ]),
            bytes: Differs(ONE_CAP_PARAM),
        },
        Vector {
            source: "gobgpd 3.10.0 OPEN, iBGP IPv4 session to FRR (capture 3): AS 65001, graceful restart 90 s",
            hex: "ffffffffffffffffffffffffffffffff 0043 01 \
                  04 fde9 005a c0000202 26 \
                  02 24 0200 490402766d00 0104 00010001 4104 0000fde9 4006 005a 00010100 0506 000100010002",
            ctx: IBGP,
            expected: open(65001, 90, [192, 0, 2, 2], vec![
                RouteRefresh,
                fqdn_vm(),
                Multiprotocol(V4U),
                FourOctetAs(65001),
                gr(false, false, 90, &[V4U]),
                ExtendedNextHop(vec![(V4U, 2)]),
            ]),
            bytes: Differs(ONE_CAP_PARAM),
        },
        Vector {
            source: "BIRD 2.0.12 OPEN, eBGP IPv4 session to gobgpd (capture 1): `graceful restart on`",
            hex: "ffffffffffffffffffffffffffffffff 0039 01 \
                  04 fde9 005a c0000202 1c \
                  02 1a 0104 00010001 0200 4006 0078 00010100 4104 0000fde9 4600 4700",
            ctx: EBGP,
            expected: open(65001, 90, [192, 0, 2, 2], vec![
                Multiprotocol(V4U),
                RouteRefresh,
                gr(false, false, 120, &[V4U]),
                FourOctetAs(65001),
                unknown(70, &[]), // enhanced route refresh (RFC 7313)
                unknown(71, &[]), // long-lived graceful restart, no families
            ]),
            bytes: Differs(ONE_CAP_PARAM),
        },
        Vector {
            source: "BIRD 2.0.12 OPEN, eBGP IPv6 session to gobgpd (capture 1): graceful restart aware (no families)",
            hex: "ffffffffffffffffffffffffffffffff 0035 01 \
                  04 fde9 005a c0000202 18 \
                  02 16 0104 00020001 0200 4002 0078 4104 0000fde9 4600 4700",
            ctx: EBGP,
            expected: open(65001, 90, [192, 0, 2, 2], vec![
                Multiprotocol(V6U),
                RouteRefresh,
                gr(false, false, 120, &[]),
                FourOctetAs(65001),
                unknown(70, &[]),
                unknown(71, &[]),
            ]),
            bytes: Differs(ONE_CAP_PARAM),
        },
        Vector {
            source: "FRR 8.4.4 OPEN, iBGP IPv4 session to gobgpd (capture 3): `bgp graceful-restart`, R and N bits set",
            hex: "ffffffffffffffffffffffffffffffff 0062 01 \
                  04 fde9 005a c0000201 45 \
                  0206 0104 00010001 0202 8000 0202 0200 0202 4600 0206 4104 0000fde9 0202 0600 \
                  0206 4504 00010101 0206 490402766d00 0208 4006 c078 00010100 0209 4707 00010180000000",
            ctx: IBGP,
            expected: open(65001, 90, [192, 0, 2, 1], vec![
                Multiprotocol(V4U),
                unknown(128, &[]), // pre-standard route refresh
                RouteRefresh,
                unknown(70, &[]),
                FourOctetAs(65001),
                unknown(6, &[]),           // extended message (RFC 8654)
                unknown(69, &[0, 1, 1, 1]), // ADD-PATH ipv4-unicast receive
                fqdn_vm(),
                gr(true, true, 120, &[V4U]),
                unknown(71, &[0, 1, 1, 0x80, 0, 0, 0]),
            ]),
            bytes: Identical,
        },
        Vector {
            source: "FRR 8.4.4 OPEN, eBGP IPv4 session to BIRD (capture 2): AS 4200000000 as AS_TRANS, hold time 180",
            hex: "ffffffffffffffffffffffffffffffff 005e 01 \
                  04 5ba0 00b4 c0000201 41 \
                  0206 0104 00010001 0202 8000 0202 0200 0202 4600 0206 4104 fa56ea00 0202 0600 \
                  0206 4504 00010101 0206 490402766d00 0204 4002 c078 0209 4707 00010180000000",
            ctx: EBGP,
            expected: open(23456, 180, [192, 0, 2, 1], vec![
                Multiprotocol(V4U),
                unknown(128, &[]),
                RouteRefresh,
                unknown(70, &[]),
                FourOctetAs(4_200_000_000),
                unknown(6, &[]),
                unknown(69, &[0, 1, 1, 1]),
                fqdn_vm(),
                gr(true, true, 120, &[]),
                unknown(71, &[0, 1, 1, 0x80, 0, 0, 0]),
            ]),
            bytes: Identical,
        },
        // ----------------------------------------------------------------------------------------- KEEPALIVE
        Vector {
            source: "KEEPALIVE, every peer (captures 1-3)",
            hex: "ffffffffffffffffffffffffffffffff 0013 04",
            ctx: EBGP,
            expected: Message::Keepalive,
            bytes: Identical,
        },
        // ------------------------------------------------------------------------------------ UPDATE, IPv4 NLRI
        Vector {
            source: "gobgpd 3.10.0 UPDATE to BIRD (capture 1): 203.0.113.0/24, MED 100, communities, large community",
            hex: "ffffffffffffffffffffffffffffffff 0050 02 0000 0035 \
                  400101 02 400206 0201fa56ea00 400304 c0000201 800404 00000064 \
                  c00808 fdf20001fdf20002 c0200c fa56ea000000000100000002 \
                  18cb0071",
            ctx: EBGP,
            expected: update(
                PathAttrs {
                    origin: Some(2),
                    as_path: seq(&[4_200_000_000]),
                    next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
                    med: Some(100),
                    communities: Some(vec![comm(65010, 1), comm(65010, 2)]),
                    large_communities: Some(vec![lc(4_200_000_000, 1, 2)]),
                    ..PathAttrs::default()
                },
                &["203.0.113.0/24"],
            ),
            bytes: Identical,
        },
        Vector {
            source: "gobgpd 3.10.0 UPDATE to BIRD (capture 1): 203.0.113.128/25, ORIGIN incomplete, no optional attributes",
            hex: "ffffffffffffffffffffffffffffffff 0030 02 0000 0014 \
                  400101 02 400206 0201fa56ea00 400304 c0000201 \
                  19cb007180",
            ctx: EBGP,
            expected: update(
                PathAttrs {
                    origin: Some(2),
                    as_path: seq(&[4_200_000_000]),
                    next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
                    ..PathAttrs::default()
                },
                &["203.0.113.128/25"],
            ),
            bytes: Identical,
        },
        Vector {
            source: "BIRD 2.0.12 UPDATE to gobgpd (capture 1): 198.51.100.0/24, MED 50, 65001:10 + NO_EXPORT, large community",
            hex: "ffffffffffffffffffffffffffffffff 0050 02 0000 0035 \
                  400101 00 400206 02010000fde9 400304 c0000202 800404 00000032 \
                  c00808 fde9000affffff01 c0200c 0000fde90000000100000002 \
                  18c63364",
            ctx: EBGP,
            expected: update(
                PathAttrs {
                    origin: Some(0),
                    as_path: seq(&[65001]),
                    next_hop: Some(Ipv4Addr::new(192, 0, 2, 2)),
                    med: Some(50),
                    communities: Some(vec![comm(65001, 10), 0xffff_ff01]),
                    large_communities: Some(vec![lc(65001, 1, 2)]),
                    ..PathAttrs::default()
                },
                &["198.51.100.0/24"],
            ),
            bytes: Identical,
        },
        Vector {
            source: "FRR 8.4.4 UPDATE to BIRD (capture 2): BIRD's own 198.51.100.0/24 sent back, AS_PATH 4200000000 65001",
            hex: "ffffffffffffffffffffffffffffffff 0034 02 0000 0019 \
                  400101 00 5002000a 0202fa56ea000000fde9 400304 c0000201 \
                  18c63364",
            ctx: EBGP,
            expected: update(
                PathAttrs {
                    origin: Some(0),
                    as_path: seq(&[4_200_000_000, 65001]),
                    next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
                    ..PathAttrs::default()
                },
                &["198.51.100.0/24"],
            ),
            bytes: Differs(FRR_AS_PATH_EXT),
        },
        Vector {
            source: "gobgpd 3.10.0 iBGP UPDATE to FRR (capture 3): 198.51.100.0/26, empty AS_PATH, LOCAL_PREF 150, MED 10",
            hex: "ffffffffffffffffffffffffffffffff 004e 02 0000 0032 \
                  400101 02 400200 400304 c0000202 800404 0000000a 400504 00000096 \
                  c00804 fde90007 c0200c 0000fde90000000800000009 \
                  1ac6336400",
            ctx: IBGP,
            expected: update(
                PathAttrs {
                    origin: Some(2),
                    as_path: empty_path(),
                    next_hop: Some(Ipv4Addr::new(192, 0, 2, 2)),
                    med: Some(10),
                    local_pref: Some(150),
                    communities: Some(vec![comm(65001, 7)]),
                    large_communities: Some(vec![lc(65001, 8, 9)]),
                    ..PathAttrs::default()
                },
                &["198.51.100.0/26"],
            ),
            bytes: Identical,
        },
        Vector {
            source: "FRR 8.4.4 iBGP UPDATE to gobgpd (capture 3): two prefixes, LOCAL_PREF 200, MED 20 (outbound route-map)",
            hex: "ffffffffffffffffffffffffffffffff 0058 02 0000 0037 \
                  400101 00 50020000 400304 c0000201 800404 00000014 400504 000000c8 \
                  c00808 fde90064fde90065 c0200c 0000fde90000000500000006 \
                  1ac6336440 1acb007140",
            ctx: IBGP,
            expected: update(
                PathAttrs {
                    origin: Some(0),
                    as_path: empty_path(),
                    next_hop: Some(Ipv4Addr::new(192, 0, 2, 1)),
                    med: Some(20),
                    local_pref: Some(200),
                    communities: Some(vec![comm(65001, 100), comm(65001, 101)]),
                    large_communities: Some(vec![lc(65001, 5, 6)]),
                    ..PathAttrs::default()
                },
                &["198.51.100.64/26", "203.0.113.64/26"],
            ),
            bytes: Differs(FRR_AS_PATH_EXT),
        },
        // ---------------------------------------------------------------------------- UPDATE, MP_REACH IPv6
        Vector {
            source: "gobgpd 3.10.0 UPDATE to BIRD, IPv6 session (capture 1): 2001:db8:100::/48 in MP_REACH_NLRI, global next hop only",
            hex: "ffffffffffffffffffffffffffffffff 0059 02 0000 0042 \
                  400101 02 400206 0201fa56ea00 c00804 fdf20003 \
                  800e1c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80100 \
                  c0200c fa56ea000000000300000004",
            ctx: EBGP,
            expected: update(
                PathAttrs {
                    origin: Some(2),
                    as_path: seq(&[4_200_000_000]),
                    communities: Some(vec![comm(65010, 3)]),
                    mp_reach: mp_v6("2001:db8::1", None, &["2001:db8:100::/48"]),
                    large_communities: Some(vec![lc(4_200_000_000, 3, 4)]),
                    ..PathAttrs::default()
                },
                &[],
            ),
            bytes: Differs(GOBGP_MP_ORDER),
        },
        Vector {
            source: "BIRD 2.0.12 UPDATE to gobgpd, IPv6 session (capture 1): MP_REACH_NLRI first, global + link-local next hop",
            hex: "ffffffffffffffffffffffffffffffff 006a 02 0000 0053 \
                  900e002c 0002 01 20 20010db8000000000000000000000002 fe800000000000006c4b9ffffe33ddc2 00 30 20010db80200 \
                  400101 00 400206 02010000fde9 c00804 fde90014 c0200c fa56ea000000000700000008",
            ctx: EBGP,
            expected: update(
                PathAttrs {
                    origin: Some(0),
                    as_path: seq(&[65001]),
                    communities: Some(vec![comm(65001, 20)]),
                    mp_reach: mp_v6("2001:db8::2", Some("fe80::6c4b:9fff:fe33:ddc2"), &["2001:db8:200::/48"]),
                    large_communities: Some(vec![lc(4_200_000_000, 7, 8)]),
                    ..PathAttrs::default()
                },
                &[],
            ),
            bytes: Identical,
        },
        Vector {
            source: "BIRD 2.0.12 UPDATE to FRR, IPv6 session (capture 2): two prefixes in one MP_REACH_NLRI",
            hex: "ffffffffffffffffffffffffffffffff 005b 02 0000 0044 \
                  900e0033 0002 01 20 20010db8000000000000000000000002 fe80000000000000d8861dfffeb8a943 00 \
                  30 20010db80201 30 20010db80200 \
                  400101 00 400206 02010000fde9",
            ctx: EBGP,
            expected: update(
                PathAttrs {
                    origin: Some(0),
                    as_path: seq(&[65001]),
                    mp_reach: mp_v6(
                        "2001:db8::2",
                        Some("fe80::d886:1dff:feb8:a943"),
                        &["2001:db8:201::/48", "2001:db8:200::/48"],
                    ),
                    ..PathAttrs::default()
                },
                &[],
            ),
            bytes: Identical,
        },
        Vector {
            source: "FRR 8.4.4 UPDATE to BIRD, IPv6 session (capture 2): MP_REACH_NLRI first, MED 0, no link-local (bgpd -Z)",
            hex: "ffffffffffffffffffffffffffffffff 004c 02 0000 0035 \
                  900e001c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80301 \
                  400101 00 50020006 0201fa56ea00 800404 00000000",
            ctx: EBGP,
            expected: update(
                PathAttrs {
                    origin: Some(0),
                    as_path: seq(&[4_200_000_000]),
                    med: Some(0),
                    mp_reach: mp_v6("2001:db8::1", None, &["2001:db8:301::/48"]),
                    ..PathAttrs::default()
                },
                &[],
            ),
            bytes: Differs(FRR_AS_PATH_EXT),
        },
        Vector {
            source: "gobgpd 3.10.0 iBGP UPDATE to FRR, IPv6 session (capture 3): LOCAL_PREF 150, MP_REACH_NLRI last",
            hex: "ffffffffffffffffffffffffffffffff 0044 02 0000 002d \
                  400101 02 400200 400504 00000096 \
                  800e1c 0002 01 10 20010db8000000000000000000000002 00 30 20010db80400",
            ctx: IBGP,
            expected: update(
                PathAttrs {
                    origin: Some(2),
                    as_path: empty_path(),
                    local_pref: Some(150),
                    mp_reach: mp_v6("2001:db8::2", None, &["2001:db8:400::/48"]),
                    ..PathAttrs::default()
                },
                &[],
            ),
            bytes: Differs(GOBGP_MP_ORDER),
        },
        Vector {
            source: "FRR 8.4.4 iBGP UPDATE to gobgpd, IPv6 session (capture 3): LOCAL_PREF 200, MED 20, communities",
            hex: "ffffffffffffffffffffffffffffffff 0067 02 0000 0050 \
                  900e001c 0002 01 10 20010db8000000000000000000000001 00 30 20010db80300 \
                  400101 00 50020000 800404 00000014 400504 000000c8 \
                  c00808 fde90064fde90065 c0200c 0000fde90000000500000006",
            ctx: IBGP,
            expected: update(
                PathAttrs {
                    origin: Some(0),
                    as_path: empty_path(),
                    med: Some(20),
                    local_pref: Some(200),
                    communities: Some(vec![comm(65001, 100), comm(65001, 101)]),
                    mp_reach: mp_v6("2001:db8::1", None, &["2001:db8:300::/48"]),
                    large_communities: Some(vec![lc(65001, 5, 6)]),
                    ..PathAttrs::default()
                },
                &[],
            ),
            bytes: Differs(FRR_AS_PATH_EXT),
        },
        // --------------------------------------------------------------------------------------- withdrawals
        Vector {
            source: "gobgpd 3.10.0 UPDATE to BIRD (capture 1): withdraws 203.0.113.0/24",
            hex: "ffffffffffffffffffffffffffffffff 001b 02 0004 18cb0071 0000",
            ctx: EBGP,
            expected: withdraw(&["203.0.113.0/24"]),
            bytes: Identical,
        },
        Vector {
            source: "BIRD 2.0.12 UPDATE to gobgpd (capture 1): withdraws 198.51.100.0/24 and 198.51.100.128/25",
            hex: "ffffffffffffffffffffffffffffffff 0020 02 0009 18c63364 19c6336480 0000",
            ctx: EBGP,
            expected: withdraw(&["198.51.100.0/24", "198.51.100.128/25"]),
            bytes: Identical,
        },
        Vector {
            source: "FRR 8.4.4 iBGP UPDATE to gobgpd (capture 3): withdraws 203.0.113.64/26 and 198.51.100.64/26",
            hex: "ffffffffffffffffffffffffffffffff 0021 02 000a 1acb007140 1ac6336440 0000",
            ctx: IBGP,
            expected: withdraw(&["203.0.113.64/26", "198.51.100.64/26"]),
            bytes: Identical,
        },
        Vector {
            source: "gobgpd 3.10.0 UPDATE to BIRD, IPv6 session (capture 1): MP_UNREACH_NLRI 2001:db8:100::/48",
            hex: "ffffffffffffffffffffffffffffffff 0024 02 0000 000d 800f0a 0002 01 30 20010db80100",
            ctx: EBGP,
            expected: update(PathAttrs { mp_unreach: mp_unreach_v6(&["2001:db8:100::/48"]), ..PathAttrs::default() }, &[]),
            bytes: Differs(GOBGP_MP_ORDER),
        },
        Vector {
            source: "BIRD 2.0.12 UPDATE to gobgpd, IPv6 session (capture 1): MP_UNREACH_NLRI 2001:db8:200::/48",
            hex: "ffffffffffffffffffffffffffffffff 0025 02 0000 000e 900f000a 0002 01 30 20010db80200",
            ctx: EBGP,
            expected: update(PathAttrs { mp_unreach: mp_unreach_v6(&["2001:db8:200::/48"]), ..PathAttrs::default() }, &[]),
            bytes: Identical,
        },
        Vector {
            source: "FRR 8.4.4 UPDATE to BIRD, IPv6 session (capture 2): MP_UNREACH_NLRI 2001:db8:301::/48",
            hex: "ffffffffffffffffffffffffffffffff 0025 02 0000 000e 900f000a 0002 01 30 20010db80301",
            ctx: EBGP,
            expected: update(PathAttrs { mp_unreach: mp_unreach_v6(&["2001:db8:301::/48"]), ..PathAttrs::default() }, &[]),
            bytes: Identical,
        },
        // ---------------------------------------------------------------------------------------- End-of-RIB
        Vector {
            source: "End-of-RIB ipv4-unicast from gobgpd 3.10.0, BIRD 2.0.12 and FRR 8.4.4 (same bytes; captures 1-3)",
            hex: "ffffffffffffffffffffffffffffffff 0017 02 0000 0000",
            ctx: EBGP,
            expected: Message::Update(Update::end_of_rib_for(V4U)),
            bytes: Identical,
        },
        Vector {
            source: "End-of-RIB ipv6-unicast from BIRD 2.0.12, FRR 8.4.4 and gobgpd 3.10.0 (same bytes; captures 1-3)",
            hex: "ffffffffffffffffffffffffffffffff 001d 02 0000 0006 800f03 0002 01",
            ctx: EBGP,
            expected: Message::Update(Update::end_of_rib_for(V6U)),
            bytes: Differs(EOR_SHORT_LEN),
        },
        // -------------------------------------------------------------------------------------- NOTIFICATION
        Vector {
            source: "gobgpd 3.10.0 NOTIFICATION (capture 1): Cease/Administrative Shutdown, communication \"gobgp going down\"",
            hex: "ffffffffffffffffffffffffffffffff 0026 03 06 02 10 676f62677020676f696e6720646f776e",
            ctx: EBGP,
            expected: cease(2, &communication("gobgp going down")),
            bytes: Identical,
        },
        Vector {
            source: "BIRD 2.0.12 NOTIFICATION (capture 1): Cease/Administrative Shutdown, communication \"maintenance window\"",
            hex: "ffffffffffffffffffffffffffffffff 0028 03 06 02 12 6d61696e74656e616e63652077696e646f77",
            ctx: EBGP,
            expected: cease(2, &communication("maintenance window")),
            bytes: Identical,
        },
        Vector {
            source: "FRR 8.4.4 NOTIFICATION (capture 3): Cease/Administrative Shutdown, communication \"frr maintenance\"",
            hex: "ffffffffffffffffffffffffffffffff 0025 03 06 02 0f 667272206d61696e74656e616e6365",
            ctx: IBGP,
            expected: cease(2, &communication("frr maintenance")),
            bytes: Identical,
        },
        Vector {
            source: "FRR 8.4.4 NOTIFICATION (capture 2): Cease/Administrative Shutdown without communication",
            hex: "ffffffffffffffffffffffffffffffff 0015 03 06 02",
            ctx: EBGP,
            expected: cease(2, &[]),
            bytes: Identical,
        },
        Vector {
            source: "gobgpd 3.10.0 NOTIFICATION on SIGTERM (captures 1 and 3): Cease/Peer De-configured",
            hex: "ffffffffffffffffffffffffffffffff 0015 03 06 03",
            ctx: EBGP,
            expected: cease(3, &[]),
            bytes: Identical,
        },
        // ------------------------------------------------------------------------------------- ROUTE-REFRESH
        Vector {
            source: "BIRD 2.0.12 ROUTE-REFRESH ipv4-unicast (`reload in`, capture 2)",
            hex: "ffffffffffffffffffffffffffffffff 0017 05 0001 00 01",
            ctx: EBGP,
            expected: Message::RouteRefresh(speakerd::bgp::wire::RouteRefresh { family: V4U, subtype: 0 }),
            bytes: Identical,
        },
        Vector {
            source: "FRR 8.4.4 ROUTE-REFRESH BoRR ipv4-unicast (RFC 7313, capture 2)",
            hex: "ffffffffffffffffffffffffffffffff 0017 05 0001 01 01",
            ctx: EBGP,
            expected: Message::RouteRefresh(speakerd::bgp::wire::RouteRefresh { family: V4U, subtype: 1 }),
            bytes: Identical,
        },
        Vector {
            source: "FRR 8.4.4 ROUTE-REFRESH EoRR ipv4-unicast (RFC 7313, capture 2)",
            hex: "ffffffffffffffffffffffffffffffff 0017 05 0001 02 01",
            ctx: EBGP,
            expected: Message::RouteRefresh(speakerd::bgp::wire::RouteRefresh { family: V4U, subtype: 2 }),
            bytes: Identical,
        },
    ]
}

#[test]
fn captured_messages_decode_to_the_expected_values() {
    for v in vectors() {
        let raw = v.raw();
        assert_eq!(frame(&raw, MAX_MESSAGE_LEN), Ok(Some(raw.len())), "{}: framing", v.source);
        assert_eq!(decode(&raw, &v.ctx).as_ref(), Ok(&v.expected), "{}", v.source);
    }
}

#[test]
fn canonical_captures_re_encode_to_identical_bytes() {
    let mut n = 0;
    for v in vectors().iter().filter(|v| matches!(v.bytes, Bytes::Identical)) {
        let ours = to_bytes(&v.expected, v.ctx.four_octet_as).expect("encodes");
        assert_eq!(hex::encode(&ours), hex::encode(v.raw()), "{}", v.source);
        n += 1;
    }
    assert!(n >= 20, "most captured vectors are canonical; only {n} were");
}

#[test]
fn other_captures_re_encode_to_other_bytes_for_the_same_message() {
    for v in vectors() {
        let Bytes::Differs(why) = v.bytes else { continue };
        let ours = to_bytes(&v.expected, v.ctx.four_octet_as).expect("encodes");
        assert_ne!(ours.as_ref(), v.raw().as_slice(), "{}: marked as differing ({why}) but identical", v.source);
        assert_eq!(decode(&ours, &v.ctx).as_ref(), Ok(&v.expected), "{}: decode(encode(decode(x)))", v.source);
    }
}

fn decoded(source_prefix: &str) -> Message {
    let v = vectors().into_iter().find(|v| v.source.starts_with(source_prefix)).expect("vector exists");
    decode(&v.raw(), &v.ctx).expect("decodes")
}

#[test]
fn captured_opens_give_the_peer_asn_families_and_graceful_restart() {
    let Message::Open(gobgp) = decoded("gobgpd 3.10.0 OPEN, eBGP IPv4") else { panic!("OPEN") };
    assert_eq!(gobgp.asn(), 4_200_000_000, "RFC 6793 §4.1: the capability's AS, not AS_TRANS");
    assert_eq!(gobgp.families(), vec![V4U]);
    assert_eq!(gobgp.extended_next_hop(), &[(V4U, 2)]);
    let Message::Open(bird) = decoded("BIRD 2.0.12 OPEN, eBGP IPv6") else { panic!("OPEN") };
    assert_eq!(bird.asn(), 65001);
    assert_eq!(bird.families(), vec![V6U]);
    assert_eq!(bird.graceful_restart(), Some(&gr(false, false, 120, &[])));
    let Message::Open(frr) = decoded("FRR 8.4.4 OPEN, eBGP") else { panic!("OPEN") };
    assert_eq!(frr.asn(), 4_200_000_000);
    assert_eq!(frr.hold_time, 180);
    assert!(frr.has(|c| *c == Capability::RouteRefresh));
}

#[test]
fn captured_end_of_rib_markers_are_recognised() {
    let Message::Update(v4) = decoded("End-of-RIB ipv4") else { panic!("UPDATE") };
    assert_eq!(v4.end_of_rib(), Some(V4U));
    let Message::Update(v6) = decoded("End-of-RIB ipv6") else { panic!("UPDATE") };
    assert_eq!(v6.end_of_rib(), Some(V6U));
    // A withdrawal is not an End-of-RIB.
    let Message::Update(w) = decoded("BIRD 2.0.12 UPDATE to gobgpd, IPv6 session (capture 1): MP_UNREACH") else {
        panic!("UPDATE")
    };
    assert_eq!(w.end_of_rib(), None);
}

#[test]
fn captured_shutdown_communications_are_read() {
    let Message::Notification(n) = decoded("BIRD 2.0.12 NOTIFICATION") else { panic!("NOTIFICATION") };
    assert_eq!(n.shutdown_communication(), Some("maintenance window"));
    assert_eq!(n.description(), "Cease / Administrative Shutdown: \"maintenance window\"");
    let Message::Notification(n) = decoded("gobgpd 3.10.0 NOTIFICATION on SIGTERM") else { panic!("NOTIFICATION") };
    assert_eq!(n.description(), "Cease / Peer De-configured");
}

#[test]
fn two_messages_in_one_tcp_segment_are_framed_one_by_one() {
    // Capture 1, frame 28: one TCP segment from BIRD with its ipv4 End-of-RIB followed by an UPDATE.
    let seg = hex::decode(
        "ffffffffffffffffffffffffffffffff00170200000000\
         ffffffffffffffffffffffffffffffff003002000000144001010040020602010000fde9400304c000020219c6336480",
    )
    .expect("hex");
    assert_eq!(frame(&seg, MAX_MESSAGE_LEN), Ok(Some(23)));
    assert_eq!(decode(&seg[..23], &EBGP), Ok(Message::Update(Update::end_of_rib_for(V4U))));
    let rest = &seg[23..];
    assert_eq!(frame(rest, MAX_MESSAGE_LEN), Ok(Some(rest.len())));
    // Every shorter prefix of the second message is "not enough bytes yet", never an error.
    for cut in 0..rest.len() {
        assert_eq!(frame(&rest[..cut], MAX_MESSAGE_LEN), Ok(None), "cut at {cut}");
    }
    let expected = update(
        PathAttrs {
            origin: Some(0),
            as_path: seq(&[65001]),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 2)),
            ..PathAttrs::default()
        },
        &["198.51.100.128/25"],
    );
    assert_eq!(decode(rest, &EBGP), Ok(expected));
}
