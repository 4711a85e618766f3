//! Property tests of the BGP wire codec.
//!
//! - Round trip: `decode(encode(m)) == m` for arbitrary OPEN, UPDATE, NOTIFICATION, KEEPALIVE and ROUTE-REFRESH
//!   messages, whenever `encode` accepts them (it refuses anything over 4096 bytes; those cases are rejected with
//!   `prop_assume!`, which proptest counts; more rejects than cases fails the test).
//! - Robustness: `frame` and `decode` never panic, on arbitrary bytes and on mutations of valid messages (bit
//!   flips, truncations, edited length fields). Whatever decodes can be encoded again without a panic.
//! - Packing: `Packer` output decodes back to exactly the prefixes given, each message is within the limit, and
//!   each message holds as many prefixes as fit.
use bytes::BytesMut;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::collection::vec;
use proptest::prelude::*;
use speakerd::bgp::wire::iana::flag;
use speakerd::bgp::wire::{
    attr, decode, frame, prefix, to_bytes, AsPath, AttrFault, Capability, DecodeCtx, Family, GrFamily, LargeCommunity,
    Message, MpNextHop, MpReach, MpUnreach, Notification, Open, Packer, PathAttrs, RawAttr, RouteRefresh, Segment,
    SegmentKind, Update, Verdict, WireError, MAX_MESSAGE_LEN,
};
use std::net::{Ipv4Addr, Ipv6Addr};

// ---------------------------------------------------------------------------------------------------------------
// Strategies

fn v4net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).expect("len <= 32").trunc())
}
fn v6net() -> impl Strategy<Value = Ipv6Net> {
    (any::<u128>(), 0u8..=128).prop_map(|(a, l)| Ipv6Net::new(Ipv6Addr::from(a), l).expect("len <= 128").trunc())
}
fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
    any::<u32>().prop_map(Ipv4Addr::from)
}
fn ipv6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>().prop_map(Ipv6Addr::from)
}

/// Any AFI/SAFI, weighted towards the two we decode.
fn family() -> impl Strategy<Value = Family> {
    prop_oneof![
        2 => Just(Family::IPV4_UNICAST),
        2 => Just(Family::IPV6_UNICAST),
        1 => (any::<u16>(), any::<u8>()).prop_map(|(afi, safi)| Family { afi, safi }),
    ]
}
/// A family whose NLRI the codec keeps as raw bytes.
fn other_family() -> impl Strategy<Value = Family> {
    (any::<u16>(), any::<u8>())
        .prop_map(|(afi, safi)| Family { afi, safi })
        .prop_filter("not IPv4/IPv6 unicast", |f| !(f.safi == 1 && (f.afi == 1 || f.afi == 2)))
}

/// Capability codes the codec decodes into their own variants; `Unknown` never uses them.
const KNOWN_CAPS: [u8; 5] = [1, 2, 5, 64, 65];

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        family().prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        vec((family(), any::<u16>()), 0..5).prop_map(Capability::ExtendedNextHop),
        (any::<bool>(), any::<bool>(), 0u16..=0x0fff, vec((family(), any::<bool>()), 0..5)).prop_map(
            |(restart_state, notification, restart_time, fams)| Capability::GracefulRestart {
                restart_state,
                notification,
                restart_time,
                families: fams
                    .into_iter()
                    .map(|(family, forwarding_preserved)| GrFamily { family, forwarding_preserved })
                    .collect(),
            }
        ),
        any::<u32>().prop_map(Capability::FourOctetAs),
        // A capability value has a 1-octet length: up to 255 octets. Above 253 its parameter no longer fits
        // a 1-octet parameter length, and only the RFC 9072 extended format can carry it.
        (any::<u8>().prop_filter("unknown code", |c| !KNOWN_CAPS.contains(c)), vec(any::<u8>(), 0..=255))
            .prop_map(|(code, value)| Capability::Unknown { code, value }),
    ]
}

fn open() -> impl Strategy<Value = Open> {
    // Up to 40 capabilities: often more than 255 bytes of parameters, so the RFC 9072 extended format is
    // exercised too.
    (any::<u16>(), any::<u16>(), ipv4(), vec(capability(), 0..40)).prop_map(
        |(my_as, hold_time, router_id, capabilities)| Open { version: 4, my_as, hold_time, router_id, capabilities },
    )
}

fn segment_kind(confed: bool) -> BoxedStrategy<SegmentKind> {
    if confed {
        prop_oneof![
            Just(SegmentKind::Set),
            Just(SegmentKind::Sequence),
            Just(SegmentKind::ConfedSequence),
            Just(SegmentKind::ConfedSet),
        ]
        .boxed()
    } else {
        prop_oneof![Just(SegmentKind::Set), Just(SegmentKind::Sequence)].boxed()
    }
}

/// A path of non-empty segments (an empty segment cannot be encoded: it would vanish). `max_asn` is
/// `u16::MAX` for a 2-octet session. AS4_PATH may not carry confederation segments (RFC 6793 §6).
fn as_path(max_asn: u32, confed: bool) -> impl Strategy<Value = AsPath> {
    vec((segment_kind(confed), vec(0..=max_asn, 1..12)).prop_map(|(kind, asns)| Segment { kind, asns }), 0..4)
        .prop_map(|segments| AsPath { segments })
}

fn large_community() -> impl Strategy<Value = LargeCommunity> {
    (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(global, local1, local2)| LargeCommunity {
        global,
        local1,
        local2,
    })
}

fn v6_next_hop() -> impl Strategy<Value = MpNextHop> {
    (ipv6(), proptest::option::of(ipv6())).prop_map(|(global, link_local)| MpNextHop::V6 { global, link_local })
}

fn mp_reach() -> impl Strategy<Value = MpReach> {
    prop_oneof![
        (prop_oneof![ipv4().prop_map(MpNextHop::V4), v6_next_hop()], vec(v4net(), 0..20)).prop_map(|(next_hop, n)| {
            MpReach {
                family: Family::IPV4_UNICAST,
                next_hop,
                nlri: n.into_iter().map(IpNet::V4).collect(),
                other_nlri: vec![],
            }
        }),
        (v6_next_hop(), vec(v6net(), 0..20)).prop_map(|(next_hop, n)| MpReach {
            family: Family::IPV6_UNICAST,
            next_hop,
            nlri: n.into_iter().map(IpNet::V6).collect(),
            other_nlri: vec![],
        }),
        (other_family(), vec(any::<u8>(), 0..=40), vec(any::<u8>(), 0..60)).prop_map(|(family, nh, other_nlri)| {
            MpReach { family, next_hop: MpNextHop::Raw(nh), nlri: vec![], other_nlri }
        }),
    ]
}

fn mp_unreach() -> impl Strategy<Value = MpUnreach> {
    prop_oneof![
        vec(v4net(), 0..20).prop_map(|w| MpUnreach {
            family: Family::IPV4_UNICAST,
            withdrawn: w.into_iter().map(IpNet::V4).collect(),
            other_nlri: vec![],
        }),
        vec(v6net(), 0..20).prop_map(|w| MpUnreach {
            family: Family::IPV6_UNICAST,
            withdrawn: w.into_iter().map(IpNet::V6).collect(),
            other_nlri: vec![],
        }),
        (other_family(), vec(any::<u8>(), 0..60)).prop_map(|(family, other_nlri)| MpUnreach {
            family,
            withdrawn: vec![],
            other_nlri,
        }),
    ]
}

/// Type codes with a row in the codec's RULES table: an unrecognised attribute never uses them.
const KNOWN_ATTRS: [u8; 13] = [1, 2, 3, 4, 5, 6, 7, 8, 14, 15, 17, 18, 32];

/// Unrecognised optional attributes with distinct codes (a repeated code would be discarded). The encoder
/// sets Partial on optional transitive ones (RFC 4271 §5), so they are generated with it already set; the
/// Extended Length bit is exactly what the value length calls for, as the encoder chooses it by size; the
/// four unused low bits are arbitrary and must pass through.
fn other_attrs() -> impl Strategy<Value = Vec<RawAttr>> {
    let one = (
        any::<u8>().prop_filter("unrecognised code", |c| !KNOWN_ATTRS.contains(c)),
        any::<bool>(),
        any::<bool>(),
        0u8..16,
        prop_oneof![4 => vec(any::<u8>(), 0..=255), 1 => vec(any::<u8>(), 256..400)],
    )
        .prop_map(|(code, transitive, partial, low, value)| {
            let mut flags = flag::OPTIONAL | (low & 0x0f & !flag::EXTENDED_LENGTH);
            if transitive {
                flags |= flag::TRANSITIVE | flag::PARTIAL;
            } else if partial {
                flags |= flag::PARTIAL;
            }
            if value.len() > 255 {
                flags |= flag::EXTENDED_LENGTH;
            }
            RawAttr { flags, code, value }
        });
    vec(one, 0..4).prop_map(|mut v| {
        let mut seen = std::collections::HashSet::new();
        v.retain(|a| seen.insert(a.code));
        v
    })
}

/// Path attributes with every field, for a 4-octet (`max_asn == u32::MAX`) or a 2-octet session.
fn path_attrs(max_asn: u32, with_mp: bool) -> impl Strategy<Value = PathAttrs> {
    let basic = (
        // Mostly present, so that most UPDATEs with reachability decode without RFC 7606 findings.
        proptest::option::weighted(0.85, 0u8..=2),
        proptest::option::weighted(0.85, as_path(max_asn, true)),
        proptest::option::weighted(0.85, ipv4()),
        proptest::option::of(any::<u32>()),
        proptest::option::weighted(0.85, any::<u32>()),
        any::<bool>(),
        proptest::option::of((0..=max_asn, ipv4())),
        proptest::option::of(vec(any::<u32>(), 1..20)),
    );
    let more = (
        if with_mp { proptest::option::of(mp_reach()).boxed() } else { Just(None).boxed() },
        if with_mp { proptest::option::of(mp_unreach()).boxed() } else { Just(None).boxed() },
        proptest::option::of(as_path(u32::MAX, false)),
        proptest::option::of((any::<u32>(), ipv4())),
        proptest::option::of(vec(large_community(), 1..10)),
        other_attrs(),
    );
    (basic, more).prop_map(
        |(
            (origin, as_path, next_hop, med, local_pref, atomic_aggregate, aggregator, communities),
            (mp_reach, mp_unreach, as4_path, as4_aggregator, large_communities, other),
        )| PathAttrs {
            origin,
            as_path,
            next_hop,
            med,
            local_pref,
            atomic_aggregate,
            aggregator,
            communities,
            mp_reach,
            mp_unreach,
            as4_path,
            as4_aggregator,
            large_communities,
            other,
        },
    )
}

fn update(max_asn: u32) -> impl Strategy<Value = Update> {
    (vec(v4net(), 0..20), path_attrs(max_asn, true), vec(v4net(), 0..20)).prop_map(|(withdrawn, attrs, nlri)| Update {
        withdrawn,
        attrs,
        nlri,
        faults: vec![],
    })
}

fn notification() -> impl Strategy<Value = Notification> {
    (any::<u8>(), any::<u8>(), prop_oneof![4 => vec(any::<u8>(), 0..64), 1 => vec(any::<u8>(), 4000..4200)])
        .prop_map(|(code, subcode, data)| Notification::new(code, subcode, data))
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        open().prop_map(Message::Open),
        update(u32::MAX).prop_map(Message::Update),
        notification().prop_map(Message::Notification),
        Just(Message::Keepalive),
        (family(), any::<u8>()).prop_map(|(family, subtype)| Message::RouteRefresh(RouteRefresh { family, subtype })),
    ]
}

// ---------------------------------------------------------------------------------------------------------------
// Round trips

const IBGP4: DecodeCtx = DecodeCtx { four_octet_as: true, ibgp: true };

/// The RFC 7606 §3 (d) findings the decoder adds to an UPDATE we built: a well-known mandatory attribute
/// missing while the UPDATE carries reachability.
fn missing_mandatory(u: &Update, ctx: &DecodeCtx) -> Vec<AttrFault> {
    let a = &u.attrs;
    let reach = !u.nlri.is_empty() || a.mp_reach.as_ref().is_some_and(|m| !m.nlri.is_empty());
    if !reach {
        return vec![];
    }
    [
        (a.origin.is_some(), 1u8),
        (a.as_path.is_some(), 2),
        (u.nlri.is_empty() || a.next_hop.is_some(), 3),
        (!ctx.ibgp || a.local_pref.is_some(), 5),
    ]
    .into_iter()
    .filter(|(present, _)| !present)
    .map(|(_, code)| AttrFault {
        code,
        verdict: Verdict::TreatAsWithdraw,
        error: WireError::MissingWellKnownAttribute(code),
    })
    .collect()
}

/// Encodes; `None` if the message is over 4096 bytes (then nothing may have been written).
fn encode(m: &Message, four_octet: bool) -> Option<BytesMut> {
    match to_bytes(m, four_octet) {
        Ok(b) => {
            assert!(b.len() <= MAX_MESSAGE_LEN);
            Some(b)
        }
        Err(WireError::BadLength(n)) => {
            assert!(usize::from(n) > MAX_MESSAGE_LEN, "refused a message of {n} bytes");
            None
        }
        Err(e) => panic!("unexpected encode error {e:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, max_global_rejects: 512, ..ProptestConfig::default() })]

    #[test]
    fn open_round_trips(o in open()) {
        let m = Message::Open(o);
        let b = encode(&m, true);
        prop_assume!(b.is_some(), "over 4096 bytes: skipped (counted by proptest)");
        let b = b.unwrap();
        prop_assert_eq!(frame(&b, MAX_MESSAGE_LEN), Ok(Some(b.len())));
        prop_assert_eq!(decode(&b, &IBGP4), Ok(m));
    }

    #[test]
    fn update_round_trips_on_a_four_octet_session(u in update(u32::MAX)) {
        let m = Message::Update(u.clone());
        let b = encode(&m, true);
        prop_assume!(b.is_some(), "over 4096 bytes: skipped (counted by proptest)");
        let b = b.unwrap();
        let expected = Update { faults: missing_mandatory(&u, &IBGP4), ..u };
        prop_assert_eq!(decode(&b, &IBGP4), Ok(Message::Update(expected)));
    }

    #[test]
    fn update_round_trips_on_a_two_octet_session(u in update(u32::from(u16::MAX))) {
        // 2-octet AS_PATH and AGGREGATOR; AS4_PATH/AS4_AGGREGATOR only when given (the path fits 2 octets,
        // so the encoder adds none of its own). From an external peer LOCAL_PREF is dropped on receipt.
        let ctx = DecodeCtx { four_octet_as: false, ibgp: false };
        let m = Message::Update(u.clone());
        let b = encode(&m, false);
        prop_assume!(b.is_some(), "over 4096 bytes: skipped (counted by proptest)");
        let b = b.unwrap();
        let mut expected = u;
        expected.attrs.local_pref = None;
        expected.faults = missing_mandatory(&expected, &ctx);
        prop_assert_eq!(decode(&b, &ctx), Ok(Message::Update(expected)));
    }

    #[test]
    fn notification_keepalive_and_route_refresh_round_trip(m in prop_oneof![
        notification().prop_map(Message::Notification),
        Just(Message::Keepalive),
        (family(), any::<u8>()).prop_map(|(family, subtype)| Message::RouteRefresh(RouteRefresh { family, subtype })),
    ]) {
        let b = encode(&m, true);
        prop_assume!(b.is_some(), "over 4096 bytes: skipped (counted by proptest)");
        let b = b.unwrap();
        prop_assert_eq!(decode(&b, &IBGP4), Ok(m));
    }

    #[test]
    fn encode_refuses_rather_than_writes_more_than_4096_bytes(data in vec(any::<u8>(), 4070..4100)) {
        let m = Message::Notification(Notification::new(6, 2, data.clone()));
        let mut out = BytesMut::from(&b"prefix"[..]);
        let r = speakerd::bgp::wire::encode(&m, true, &mut out);
        if 21 + data.len() > MAX_MESSAGE_LEN {
            prop_assert!(r.is_err());
            prop_assert_eq!(&out[..], &b"prefix"[..], "nothing appended on error");
        } else {
            prop_assert!(r.is_ok());
            prop_assert_eq!(out.len(), 6 + 21 + data.len());
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Robustness

/// Decodes with every context; must not panic. What decodes must encode again without a panic.
fn poke(bytes: &[u8]) {
    let _ = frame(bytes, MAX_MESSAGE_LEN);
    let _ = frame(bytes, usize::from(u16::MAX));
    for four_octet_as in [false, true] {
        for ibgp in [false, true] {
            if let Ok(m) = decode(bytes, &DecodeCtx { four_octet_as, ibgp }) {
                let _ = to_bytes(&m, four_octet_as);
            }
        }
    }
}

/// Arbitrary bytes behind a valid marker, with a length field that is usually right, and a type that is
/// usually valid: so the body decoders are reached, not just the marker check.
fn header_then_garbage() -> impl Strategy<Value = Vec<u8>> {
    (prop_oneof![9 => 1u8..=5, 1 => any::<u8>()], vec(any::<u8>(), 0..600), any::<bool>(), any::<u16>()).prop_map(
        |(ty, body, honest, len)| {
            let mut m = vec![0xff; 16];
            let l = if honest { u16::try_from(19 + body.len()).unwrap_or(u16::MAX) } else { len };
            m.extend_from_slice(&l.to_be_bytes());
            m.push(ty);
            m.extend_from_slice(&body);
            m
        },
    )
}

/// An UPDATE body made of plausible pieces: attribute headers with random flags, codes and lengths.
fn attribute_soup() -> impl Strategy<Value = Vec<u8>> {
    let code = prop_oneof![3 => proptest::sample::select(KNOWN_ATTRS.to_vec()), 1 => any::<u8>()];
    let piece = (any::<u8>(), code, vec(any::<u8>(), 0..40), any::<bool>()).prop_map(|(flags, code, value, honest)| {
        let mut a = vec![flags, code];
        let len = if honest { value.len() } else { value.len() ^ 3 };
        if flags & flag::EXTENDED_LENGTH != 0 {
            a.extend_from_slice(&u16::try_from(len).unwrap_or(0).to_be_bytes());
        } else {
            a.push(u8::try_from(len).unwrap_or(0));
        }
        a.extend_from_slice(&value);
        a
    });
    (vec(any::<u8>(), 0..12), vec(piece, 0..8), vec(any::<u8>(), 0..12)).prop_map(|(w, pieces, nlri)| {
        let attrs = pieces.concat();
        let mut body = Vec::new();
        body.extend_from_slice(&u16::try_from(w.len()).unwrap_or(0).to_be_bytes());
        body.extend_from_slice(&w);
        body.extend_from_slice(&u16::try_from(attrs.len()).unwrap_or(0).to_be_bytes());
        body.extend_from_slice(&attrs);
        body.extend_from_slice(&nlri);
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&u16::try_from(19 + body.len()).unwrap_or(u16::MAX).to_be_bytes());
        m.push(2);
        m.extend_from_slice(&body);
        m
    })
}

/// A position in the message: anywhere, or (mostly) in the body, past the 19-byte header.
#[derive(Debug, Clone, Copy)]
struct At {
    index: usize,
    body: bool,
}

impl At {
    /// The position in a message of `n` bytes for a field of `width` bytes (`n >= width`).
    fn of(self, n: usize, width: usize) -> usize {
        let span = n + 1 - width;
        if self.body && span > 19 {
            19 + self.index % (span - 19)
        } else {
            self.index % span
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(At, u8),
    Truncate(usize),
    /// Overwrite two bytes (hits the header length and the inner length fields).
    SetU16(At, u16),
    SetByte(At, u8),
    /// Cut or grow the body and keep the header length consistent with it.
    Resize(usize, u8),
}

fn at() -> impl Strategy<Value = At> {
    (any::<usize>(), proptest::bool::weighted(0.8)).prop_map(|(index, body)| At { index, body })
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (at(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (at(), any::<u16>()).prop_map(|(i, v)| Mutation::SetU16(i, v)),
        (at(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Mutation::Resize(i, v)),
    ]
}

fn mutate(m: &mut Vec<u8>, op: &Mutation) {
    let n = m.len();
    match *op {
        Mutation::FlipBit(at, b) => m[at.of(n, 1)] ^= 1 << b,
        Mutation::Truncate(i) => m.truncate(i % (n + 1)),
        Mutation::SetU16(at, v) => {
            let i = at.of(n, 2);
            m[i..i + 2].copy_from_slice(&v.to_be_bytes());
        }
        Mutation::SetByte(at, v) => m[at.of(n, 1)] = v,
        Mutation::Resize(i, fill) => {
            let new_len = 19 + i % (n + 64).saturating_sub(18);
            m.resize(new_len, fill);
            let l = u16::try_from(m.len()).unwrap_or(u16::MAX).to_be_bytes();
            m[16..18].copy_from_slice(&l);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, max_global_rejects: 2048, ..ProptestConfig::default() })]

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..200)) {
        poke(&bytes);
    }

    #[test]
    fn decode_never_panics_behind_a_valid_header(bytes in header_then_garbage()) {
        poke(&bytes);
    }

    #[test]
    fn decode_never_panics_on_attribute_soup(bytes in attribute_soup()) {
        poke(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_valid_messages(m in message(), ops in vec(mutation(), 1..4)) {
        let b = to_bytes(&m, true);
        prop_assume!(b.is_ok(), "not encodable: skipped (counted by proptest)");
        let b = b.unwrap();
        let mut bytes = b.to_vec();
        for op in &ops {
            if bytes.len() < 2 {
                break;
            }
            mutate(&mut bytes, op);
        }
        poke(&bytes);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Packer

/// Attributes for the packer: ORIGIN, AS_PATH, NEXT_HOP and LOCAL_PREF always there, so no RFC 7606 finding
/// muddies the comparison; the rest random. No MP attributes (the packer writes those itself).
fn packer_attrs() -> impl Strategy<Value = PathAttrs> {
    (path_attrs(u32::MAX, false), 0u8..=2, as_path(u32::MAX, true), ipv4(), any::<u32>()).prop_map(
        |(mut a, origin, path, nh, lp)| {
            a.origin = Some(origin);
            a.as_path = Some(path);
            a.next_hop = Some(nh);
            a.local_pref = Some(lp);
            a
        },
    )
}

fn attr_bytes(a: &PathAttrs) -> BytesMut {
    let mut b = BytesMut::new();
    attr::encode_attrs(a, true, &mut b);
    b
}

/// Drives one packing function over `list` until every prefix is out, or until one cannot go out at all;
/// checks each message and returns the decoded prefixes in order. `fixed` is the size of a message without
/// prefixes.
fn pack_all(
    list: &[IpNet],
    max_len: usize,
    fixed: usize,
    mut write: impl FnMut(&[IpNet], &mut BytesMut) -> usize,
    mut read: impl FnMut(Update) -> Vec<IpNet>,
) -> Result<Vec<IpNet>, TestCaseError> {
    let mut rest = list;
    let mut got = Vec::new();
    while let Some(first) = rest.first() {
        let mut out = BytesMut::new();
        let n = write(rest, &mut out);
        if n == 0 {
            // Only when the attributes leave no room for this prefix, and then nothing is written.
            prop_assert!(fixed + prefix::encoded_len(first.prefix_len()) > max_len, "no progress, yet {first} fits");
            prop_assert!(out.is_empty(), "wrote {} bytes for no prefix", out.len());
            return Ok(got);
        }
        prop_assert!(out.len() <= max_len, "message of {} bytes > {max_len}", out.len());
        let prefix_bytes: usize = rest[..n].iter().map(|p| prefix::encoded_len(p.prefix_len())).sum();
        prop_assert_eq!(out.len(), fixed + prefix_bytes);
        prop_assert_eq!(frame(&out, max_len), Ok(Some(out.len())));
        if let Some(next) = rest.get(n) {
            // Maximal: the next prefix would not have fitted.
            prop_assert!(out.len() + prefix::encoded_len(next.prefix_len()) > max_len, "room left for {next}");
        }
        let Ok(Message::Update(u)) = decode(&out, &IBGP4) else {
            return Err(TestCaseError::fail(format!("packed message does not decode: {}", hex::encode(&out))));
        };
        prop_assert!(u.faults.is_empty(), "faults {:?}", u.faults);
        let part = read(u);
        prop_assert_eq!(&part[..], &rest[..n]);
        got.extend(part);
        rest = &rest[n..];
    }
    Ok(got)
}

/// `got` is all of `list`, or a prefix of it when the attributes left no room (checked in `pack_all`).
fn all_or_stuck(got: &[IpNet], list: &[IpNet], fixed: usize, max_len: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(got, &list[..got.len()]);
    if got.len() < list.len() {
        prop_assert!(fixed + 17 > max_len, "stuck although every prefix fits after {fixed} bytes");
    }
    Ok(())
}

fn max_len() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(MAX_MESSAGE_LEN), 1 => 600usize..=MAX_MESSAGE_LEN]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, max_global_rejects: 128, ..ProptestConfig::default() })]

    #[test]
    fn packer_reach_v4_carries_exactly_the_prefixes_given(
        attrs in packer_attrs(),
        list in vec(v4net().prop_map(IpNet::V4), 1..1500),
        max_len in max_len(),
    ) {
        let packer = Packer { max_len };
        let bytes = attr_bytes(&attrs);
        let mut seen_attrs = Vec::new();
        let fixed = 19 + 2 + 2 + bytes.len();
        let got = pack_all(&list, max_len, fixed, |rest, out| packer.reach_v4(&bytes, rest, out), |u| {
            seen_attrs.push(u.attrs.clone());
            u.nlri.into_iter().map(IpNet::V4).collect()
        })?;
        all_or_stuck(&got, &list, fixed, max_len)?;
        for a in seen_attrs {
            prop_assert_eq!(&a, &attrs);
        }
    }

    #[test]
    fn packer_reach_mp_carries_exactly_the_prefixes_given(
        attrs in packer_attrs(),
        v6 in any::<bool>(),
        list4 in vec(v4net().prop_map(IpNet::V4), 1..800),
        list6 in vec(v6net().prop_map(IpNet::V6), 1..800),
        global in ipv6(),
        link_local in proptest::option::of(ipv6()),
        max_len in max_len(),
    ) {
        let packer = Packer { max_len };
        // MP reachability needs no NEXT_HOP attribute.
        let attrs = PathAttrs { next_hop: None, ..attrs };
        let bytes = attr_bytes(&attrs);
        let (family, list) = if v6 { (Family::IPV6_UNICAST, list6) } else { (Family::IPV4_UNICAST, list4) };
        let nh = MpNextHop::V6 { global, link_local };
        // Header, two length fields, MP_REACH_NLRI header (Extended Length), AFI/SAFI, next hop, reserved.
        let fixed = 19 + 2 + 2 + 4 + 3 + 1 + nh.encoded_len_pub() + 1 + bytes.len();
        let got = pack_all(&list, max_len, fixed, |rest, out| packer.reach_mp(family, &nh, &bytes, rest, out), |u| {
            let mp = u.attrs.mp_reach.clone().expect("MP_REACH_NLRI");
            assert_eq!((mp.family, &mp.next_hop), (family, &nh));
            assert_eq!(PathAttrs { mp_reach: None, ..u.attrs }, attrs);
            mp.nlri
        })?;
        all_or_stuck(&got, &list, fixed, max_len)?;
    }

    #[test]
    fn packer_unreach_v4_carries_exactly_the_prefixes_given(
        list in vec(v4net().prop_map(IpNet::V4), 1..3000),
        max_len in max_len(),
    ) {
        let packer = Packer { max_len };
        let got = pack_all(&list, max_len, 19 + 2 + 2, |rest, out| packer.unreach_v4(rest, out), |u| {
            assert!(u.attrs.is_empty() && u.nlri.is_empty());
            u.withdrawn.into_iter().map(IpNet::V4).collect()
        })?;
        prop_assert_eq!(got, list);
    }

    #[test]
    fn packer_unreach_mp_carries_exactly_the_prefixes_given(
        v6 in any::<bool>(),
        list4 in vec(v4net().prop_map(IpNet::V4), 1..1500),
        list6 in vec(v6net().prop_map(IpNet::V6), 1..1500),
        max_len in max_len(),
    ) {
        let packer = Packer { max_len };
        let (family, list) = if v6 { (Family::IPV6_UNICAST, list6) } else { (Family::IPV4_UNICAST, list4) };
        let got = pack_all(&list, max_len, 19 + 2 + 2 + 4 + 3, |rest, out| packer.unreach_mp(family, rest, out), |u| {
            let mp = u.attrs.mp_unreach.clone().expect("MP_UNREACH_NLRI");
            assert_eq!(mp.family, family);
            mp.withdrawn
        })?;
        prop_assert_eq!(got, list);
    }
}

#[test]
fn packer_fills_a_message_to_exactly_4096_bytes_when_prefixes_allow() {
    // 4096 - 23 = 4073 bytes of withdrawn routes: 2035 /8s (2 bytes each) and one /16 (3 bytes) fill them
    // exactly; a second /16 no longer fits.
    let mut list: Vec<IpNet> =
        (0..2035u32).map(|i| IpNet::V4(Ipv4Net::new(Ipv4Addr::from((i % 223 + 1) << 24), 8).expect("/8"))).collect();
    list.push(IpNet::V4(Ipv4Net::new(Ipv4Addr::new(10, 1, 0, 0), 16).expect("/16")));
    list.push(IpNet::V4(Ipv4Net::new(Ipv4Addr::new(10, 2, 0, 0), 16).expect("/16")));
    let mut out = BytesMut::new();
    let n = Packer::default().unreach_v4(&list, &mut out);
    assert_eq!(out.len(), MAX_MESSAGE_LEN);
    assert_eq!(n, 2036);
}

#[test]
fn packer_writes_nothing_when_not_one_prefix_fits() {
    let p6 = IpNet::V6("2001:db8::/128".parse().expect("prefix")); // 17 bytes of NLRI
    let p4 = IpNet::V4("192.0.2.1/32".parse().expect("prefix")); // 5 bytes
    let nh = MpNextHop::V6 { global: Ipv6Addr::LOCALHOST, link_local: None };
    let attrs = [0xc0, 99, 0]; // one empty unknown optional transitive attribute
    let reach_mp_fixed = 19 + 2 + 2 + 4 + 3 + 1 + 16 + 1 + attrs.len();
    // Each limit leaves room for the message without prefixes of some packers but not for their prefix (or
    // is below even that, which used to underflow in the unreach packers).
    for max_len in [0, 10, 22, 23, 26, 27, 29, 30, 46, reach_mp_fixed, reach_mp_fixed + 16] {
        let packer = Packer { max_len };
        type Pack<'a> = Box<dyn Fn(&mut BytesMut) -> usize + 'a>;
        // (bytes the message needs with its one prefix, the packer)
        let cases: [(usize, Pack<'_>); 4] = [
            (23 + attrs.len() + 5, Box::new(|out| packer.reach_v4(&attrs, &[p4], out))),
            (reach_mp_fixed + 17, Box::new(|out| packer.reach_mp(Family::IPV6_UNICAST, &nh, &attrs, &[p6], out))),
            // An empty UPDATE would even read as an IPv4 End-of-RIB.
            (23 + 5, Box::new(|out| packer.unreach_v4(&[p4], out))),
            (30 + 17, Box::new(|out| packer.unreach_mp(Family::IPV6_UNICAST, &[p6], out))),
        ];
        for (i, (needed, pack)) in cases.iter().enumerate() {
            let mut out = BytesMut::new();
            let n = pack(&mut out);
            if max_len >= *needed {
                assert_eq!((n, out.len()), (1, *needed), "packer {i}, max_len {max_len}");
            } else {
                assert_eq!((n, out.len()), (0, 0), "packer {i}, max_len {max_len}");
            }
        }
    }
}
