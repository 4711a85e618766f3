//! Path attributes (RFC 4271 §4.3, §5) and their error handling (RFC 7606).
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attr. Flags  |Attr. Type Code|  then Attribute Length: 1 octet, or 2 with Extended Length set
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Everything about one attribute code (expected flags, decoder, verdict on error) is in [`RULES`].
//! The decoder is purely syntactic: it knows nothing of sessions except what [`DecodeCtx`] says.
use super::buf::Reader;
use super::error::WireError;
use super::iana::{afi, attr, flag, origin, safi, segment};
use super::open::Family;
use super::prefix;
use bytes::{BufMut, BytesMut};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What RFC 7606 says to do with a malformed attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// RFC 7606 §2: ignore the attribute and keep processing the UPDATE.
    AttributeDiscard,
    /// RFC 7606 §2: treat every route in the UPDATE as withdrawn.
    TreatAsWithdraw,
    /// RFC 4271 §6: NOTIFICATION and close the session.
    SessionReset,
}

/// One RFC 7606 finding in an UPDATE that did not reset the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrFault {
    pub code: u8,
    pub verdict: Verdict,
    pub error: WireError,
}

/// The per-code rule: expected Optional/Transitive flags and the verdict on any error in that attribute.
struct Rule {
    code: u8,
    /// Expected value of the Optional and Transitive bits (`flag::OPTIONAL | flag::TRANSITIVE` mask).
    flags: u8,
    verdict: Verdict,
}

const WELL_KNOWN: u8 = flag::TRANSITIVE;
const OPT_TRANS: u8 = flag::OPTIONAL | flag::TRANSITIVE;
const OPT_NON_TRANS: u8 = flag::OPTIONAL;

/// RFC 7606 §7 (and RFC 6793 §6, RFC 8092 §6): one row per attribute we understand.
const RULES: &[Rule] = &[
    Rule { code: attr::ORIGIN, flags: WELL_KNOWN, verdict: Verdict::TreatAsWithdraw },
    Rule { code: attr::AS_PATH, flags: WELL_KNOWN, verdict: Verdict::TreatAsWithdraw },
    Rule { code: attr::NEXT_HOP, flags: WELL_KNOWN, verdict: Verdict::TreatAsWithdraw },
    Rule { code: attr::MULTI_EXIT_DISC, flags: OPT_NON_TRANS, verdict: Verdict::TreatAsWithdraw },
    Rule { code: attr::LOCAL_PREF, flags: WELL_KNOWN, verdict: Verdict::TreatAsWithdraw },
    Rule { code: attr::ATOMIC_AGGREGATE, flags: WELL_KNOWN, verdict: Verdict::AttributeDiscard },
    Rule { code: attr::AGGREGATOR, flags: OPT_TRANS, verdict: Verdict::AttributeDiscard },
    Rule { code: attr::COMMUNITIES, flags: OPT_TRANS, verdict: Verdict::TreatAsWithdraw },
    // RFC 7606 §7.11: NLRI cannot be located reliably, so session reset (no AFI/SAFI disable here).
    Rule { code: attr::MP_REACH_NLRI, flags: OPT_NON_TRANS, verdict: Verdict::SessionReset },
    Rule { code: attr::MP_UNREACH_NLRI, flags: OPT_NON_TRANS, verdict: Verdict::SessionReset },
    Rule { code: attr::AS4_PATH, flags: OPT_TRANS, verdict: Verdict::AttributeDiscard },
    Rule { code: attr::AS4_AGGREGATOR, flags: OPT_TRANS, verdict: Verdict::AttributeDiscard },
    Rule { code: attr::LARGE_COMMUNITIES, flags: OPT_TRANS, verdict: Verdict::TreatAsWithdraw },
];

fn rule(code: u8) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code == code)
}

/// What the decoder needs to know about the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeCtx {
    /// Both sides sent the 4-octet AS capability: AS_PATH carries 4-octet ASNs (RFC 6793 §4).
    pub four_octet_as: bool,
    /// The peer is internal: LOCAL_PREF is expected; from an external peer it is discarded (RFC 7606 §7.5).
    pub ibgp: bool,
}

impl Default for DecodeCtx {
    fn default() -> Self {
        Self { four_octet_as: true, ibgp: false }
    }
}

/// AS_PATH segment type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentKind {
    Set,
    Sequence,
    ConfedSequence,
    ConfedSet,
}

impl SegmentKind {
    fn from_wire(t: u8) -> Option<Self> {
        Some(match t {
            segment::AS_SET => Self::Set,
            segment::AS_SEQUENCE => Self::Sequence,
            segment::AS_CONFED_SEQUENCE => Self::ConfedSequence,
            segment::AS_CONFED_SET => Self::ConfedSet,
            _ => return None,
        })
    }
    fn to_wire(self) -> u8 {
        match self {
            Self::Set => segment::AS_SET,
            Self::Sequence => segment::AS_SEQUENCE,
            Self::ConfedSequence => segment::AS_CONFED_SEQUENCE,
            Self::ConfedSet => segment::AS_CONFED_SET,
        }
    }
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Segment {
    pub kind: SegmentKind,
    pub asns: Vec<u32>,
}

/// AS_PATH or AS4_PATH.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AsPath {
    pub segments: Vec<Segment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE, the form an originating speaker sends (RFC 4271 §5.1.2).
    pub fn sequence(asns: Vec<u32>) -> Self {
        if asns.is_empty() {
            return Self::default();
        }
        Self { segments: vec![Segment { kind: SegmentKind::Sequence, asns }] }
    }

    /// The leftmost AS of the path, if it starts with an AS_SEQUENCE.
    pub fn first_as(&self) -> Option<u32> {
        let s = self.segments.first()?;
        (s.kind == SegmentKind::Sequence).then(|| s.asns.first().copied()).flatten()
    }

    /// RFC 7606 §7.2: unknown segment type, zero-length segment, overrun, or a one-octet underrun.
    fn decode(v: &[u8], four_octet: bool) -> Option<Self> {
        let width = if four_octet { 4 } else { 2 };
        let mut r = Reader::new(v);
        let mut segments = Vec::new();
        while !r.is_empty() {
            let kind = SegmentKind::from_wire(r.u8()?)?;
            let n = r.u8()?;
            if n == 0 {
                return None;
            }
            let raw = r.take(usize::from(n) * width)?;
            let asns = if four_octet {
                raw.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect()
            } else {
                raw.chunks_exact(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).collect()
            };
            segments.push(Segment { kind, asns });
        }
        Some(Self { segments })
    }

    /// Appends the path with 2- or 4-octet ASNs. Segments longer than 255 ASNs are split.
    /// With 2-octet width an ASN above 65535 becomes AS_TRANS (RFC 6793 §4.2.2).
    fn encode(&self, four_octet: bool, out: &mut BytesMut) {
        for s in &self.segments {
            for chunk in s.asns.chunks(255) {
                out.put_u8(s.kind.to_wire());
                out.put_u8(u8::try_from(chunk.len()).unwrap_or(u8::MAX));
                for &a in chunk {
                    if four_octet {
                        out.put_u32(a);
                    } else {
                        out.put_u16(u16::try_from(a).unwrap_or(super::iana::AS_TRANS));
                    }
                }
            }
        }
    }

    pub fn needs_four_octets(&self) -> bool {
        self.segments.iter().flat_map(|s| &s.asns).any(|&a| a > u32::from(u16::MAX))
    }
}

/// A large community (RFC 8092 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global: u32,
    pub local1: u32,
    pub local2: u32,
}

/// The next hop field of MP_REACH_NLRI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MpNextHop {
    V4(Ipv4Addr),
    /// A global IPv6 address, optionally followed by a link-local one (RFC 2545 §3).
    V6 {
        global: Ipv6Addr,
        link_local: Option<Ipv6Addr>,
    },
    /// A family we do not decode: the bytes as sent.
    Raw(Vec<u8>),
}

impl MpNextHop {
    pub fn addr(&self) -> Option<IpAddr> {
        match self {
            Self::V4(a) => Some(IpAddr::V4(*a)),
            Self::V6 { global, .. } => Some(IpAddr::V6(*global)),
            Self::Raw(_) => None,
        }
    }
    /// Bytes of the next hop field.
    pub fn encoded_len_pub(&self) -> usize {
        self.encoded_len()
    }
    fn encoded_len(&self) -> usize {
        match self {
            Self::V4(_) => 4,
            Self::V6 { link_local: None, .. } => 16,
            Self::V6 { link_local: Some(_), .. } => 32,
            Self::Raw(b) => b.len(),
        }
    }
    fn encode(&self, out: &mut BytesMut) {
        match self {
            Self::V4(a) => out.put_slice(&a.octets()),
            Self::V6 { global, link_local } => {
                out.put_slice(&global.octets());
                if let Some(ll) = link_local {
                    out.put_slice(&ll.octets());
                }
            }
            Self::Raw(b) => out.put_slice(b),
        }
    }
}

/// MP_REACH_NLRI (RFC 4760 §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: MpNextHop,
    /// Prefixes of IPv4/IPv6 unicast.
    pub nlri: Vec<IpNet>,
    /// The NLRI bytes of a family we do not decode.
    pub other_nlri: Vec<u8>,
}

/// MP_UNREACH_NLRI (RFC 4760 §4). An empty list is End-of-RIB for the family (RFC 4724 §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<IpNet>,
    pub other_nlri: Vec<u8>,
}

/// An attribute we do not interpret, kept as sent (flags, code, value).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttr {
    pub flags: u8,
    pub code: u8,
    pub value: Vec<u8>,
}

/// The path attributes of an UPDATE. `None`/empty means absent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PathAttrs {
    pub origin: Option<u8>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<(u32, Ipv4Addr)>,
    pub communities: Option<Vec<u32>>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    pub as4_path: Option<AsPath>,
    pub as4_aggregator: Option<(u32, Ipv4Addr)>,
    pub large_communities: Option<Vec<LargeCommunity>>,
    /// Unrecognised optional attributes, in the order received.
    pub other: Vec<RawAttr>,
}

impl PathAttrs {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// The result of decoding an attribute field: the attributes and the RFC 7606 findings that did not
/// reset the session. A session-reset finding is returned as `Err`.
pub(crate) struct DecodedAttrs {
    pub attrs: PathAttrs,
    pub faults: Vec<AttrFault>,
}

/// The whole attribute (header included), for NOTIFICATION data fields.
fn whole(flags: u8, code: u8, value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(value.len() + 4);
    v.push(flags);
    v.push(code);
    if flags & flag::EXTENDED_LENGTH != 0 {
        v.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
    } else {
        v.push(u8::try_from(value.len()).unwrap_or(u8::MAX));
    }
    v.extend_from_slice(value);
    v
}

/// Decodes the path attribute field of an UPDATE.
pub(crate) fn decode_attrs(field: &[u8], ctx: &DecodeCtx) -> Result<DecodedAttrs, WireError> {
    let mut out = PathAttrs::default();
    let mut faults = Vec::new();
    let mut seen = [false; 256];
    let mut r = Reader::new(field);
    while !r.is_empty() {
        let header = (r.u8(), r.u8());
        let (Some(flags), Some(code)) = header else {
            return overrun(&out, faults);
        };
        let len = if flags & flag::EXTENDED_LENGTH != 0 { r.u16() } else { r.u8().map(u16::from) };
        let Some(value) = len.and_then(|l| r.take(usize::from(l))) else {
            return overrun(&out, faults);
        };
        if code == attr::LOCAL_PREF && !ctx.ibgp {
            // RFC 7606 §7.5: from an external peer LOCAL_PREF "SHALL be discarded using the approach of
            // 'attribute discard'", whatever its length or flags; only from an internal peer is it checked.
            continue;
        }
        let first = !std::mem::replace(&mut seen[usize::from(code)], true);
        if !first {
            // RFC 7606 §3 (g): a repeated MP_REACH/MP_UNREACH is a Malformed Attribute List; any other
            // repeat is discarded.
            if code == attr::MP_REACH_NLRI || code == attr::MP_UNREACH_NLRI {
                return Err(WireError::MalformedAttributeList);
            }
            faults.push(AttrFault {
                code,
                verdict: Verdict::AttributeDiscard,
                error: WireError::MalformedAttributeList,
            });
            continue;
        }
        let Some(rule) = rule(code) else {
            if flags & flag::OPTIONAL == 0 {
                // RFC 4271 §6.3: an unrecognised well-known attribute resets the session.
                return Err(WireError::UnrecognizedWellKnownAttribute { code, data: whole(flags, code, value) });
            }
            out.other.push(RawAttr { flags, code, value: value.to_vec() });
            continue;
        };
        let result = if flags & (flag::OPTIONAL | flag::TRANSITIVE) != rule.flags
            || (rule.flags != OPT_TRANS && flags & flag::PARTIAL != 0)
        {
            Err(WireError::AttributeFlags { code, data: whole(flags, code, value) })
        } else {
            decode_one(code, flags, value, ctx, &mut out)
        };
        if let Err(error) = result {
            // RFC 7606 §3 (c): a flags error is handled like any other error in that attribute.
            if rule.verdict == Verdict::SessionReset {
                return Err(error);
            }
            faults.push(AttrFault { code, verdict: rule.verdict, error });
        }
    }
    Ok(DecodedAttrs { attrs: out, faults })
}

/// An attribute runs past the end of the attribute field. RFC 7606 §4: treat-as-withdraw if the NLRI
/// can still be located; if an MP attribute has already been seen, more MP NLRI may be in the unreadable
/// tail, so session reset.
fn overrun(out: &PathAttrs, mut faults: Vec<AttrFault>) -> Result<DecodedAttrs, WireError> {
    if out.mp_reach.is_some() || out.mp_unreach.is_some() {
        return Err(WireError::MalformedAttributeList);
    }
    faults.push(AttrFault { code: 0, verdict: Verdict::TreatAsWithdraw, error: WireError::MalformedAttributeList });
    Ok(DecodedAttrs { attrs: out.clone(), faults })
}

fn u32_of(v: &[u8]) -> Option<u32> {
    <[u8; 4]>::try_from(v).ok().map(u32::from_be_bytes)
}

fn decode_one(code: u8, flags: u8, v: &[u8], ctx: &DecodeCtx, out: &mut PathAttrs) -> Result<(), WireError> {
    let len_err = || WireError::AttributeLength { code, data: whole(flags, code, v) };
    match code {
        attr::ORIGIN => {
            let [o] = <[u8; 1]>::try_from(v).map_err(|_| len_err())?;
            if o > origin::INCOMPLETE {
                return Err(WireError::InvalidOrigin(whole(flags, code, v)));
            }
            out.origin = Some(o);
        }
        attr::AS_PATH => {
            out.as_path = Some(AsPath::decode(v, ctx.four_octet_as).ok_or(WireError::MalformedAsPath)?);
        }
        attr::NEXT_HOP => {
            let b = <[u8; 4]>::try_from(v).map_err(|_| len_err())?;
            out.next_hop = Some(Ipv4Addr::from(b));
        }
        attr::MULTI_EXIT_DISC => out.med = Some(u32_of(v).ok_or_else(len_err)?),
        attr::LOCAL_PREF => {
            let lp = u32_of(v).ok_or_else(len_err)?;
            // RFC 7606 §7.5: from an external peer LOCAL_PREF is discarded, not an error.
            if ctx.ibgp {
                out.local_pref = Some(lp);
            }
        }
        attr::ATOMIC_AGGREGATE => {
            if !v.is_empty() {
                return Err(len_err());
            }
            out.atomic_aggregate = true;
        }
        attr::AGGREGATOR => out.aggregator = Some(decode_aggregator(v, ctx.four_octet_as).ok_or_else(len_err)?),
        attr::COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(4) {
                return Err(len_err());
            }
            out.communities = Some(v.chunks_exact(4).filter_map(u32_of).collect());
        }
        attr::MP_REACH_NLRI => out.mp_reach = Some(decode_mp_reach(v, flags).ok_or_else(|| opt_err(code, flags, v))??),
        attr::MP_UNREACH_NLRI => out.mp_unreach = Some(decode_mp_unreach(v).ok_or_else(|| opt_err(code, flags, v))??),
        attr::AS4_PATH => {
            let p = AsPath::decode(v, true).ok_or(WireError::MalformedAsPath)?;
            // RFC 6793 §6: AS4_PATH with confederation segments is malformed.
            if p.segments.iter().any(|s| matches!(s.kind, SegmentKind::ConfedSequence | SegmentKind::ConfedSet)) {
                return Err(WireError::MalformedAsPath);
            }
            out.as4_path = Some(p);
        }
        attr::AS4_AGGREGATOR => out.as4_aggregator = Some(decode_aggregator(v, true).ok_or_else(len_err)?),
        attr::LARGE_COMMUNITIES => {
            if v.is_empty() || !v.len().is_multiple_of(12) {
                return Err(len_err());
            }
            let list = v
                .chunks_exact(12)
                .map(|c| {
                    let mut r = Reader::new(c);
                    LargeCommunity {
                        global: r.u32().unwrap_or_default(),
                        local1: r.u32().unwrap_or_default(),
                        local2: r.u32().unwrap_or_default(),
                    }
                })
                .collect();
            out.large_communities = Some(list);
        }
        _ => out.other.push(RawAttr { flags, code, value: v.to_vec() }),
    }
    Ok(())
}

fn opt_err(code: u8, flags: u8, v: &[u8]) -> WireError {
    WireError::OptionalAttribute { code, data: whole(flags, code, v) }
}

fn decode_aggregator(v: &[u8], four_octet: bool) -> Option<(u32, Ipv4Addr)> {
    let mut r = Reader::new(v);
    let asn = if four_octet { r.u32()? } else { u32::from(r.u16()?) };
    let id = r.ipv4()?;
    r.is_empty().then_some((asn, id))
}

fn decode_family(r: &mut Reader<'_>) -> Option<Family> {
    Some(Family { afi: r.u16()?, safi: r.u8()? })
}

fn is_ip_unicast(f: Family) -> bool {
    f.safi == safi::UNICAST && (f.afi == afi::IPV4 || f.afi == afi::IPV6)
}

fn decode_nlri(f: Family, field: &[u8]) -> Result<(Vec<IpNet>, Vec<u8>), WireError> {
    if !is_ip_unicast(f) {
        return Ok((Vec::new(), field.to_vec()));
    }
    let v = if f.afi == afi::IPV4 {
        prefix::decode_all_v4(field)?.into_iter().map(IpNet::V4).collect()
    } else {
        prefix::decode_all_v6(field)?.into_iter().map(IpNet::V6).collect()
    };
    Ok((v, Vec::new()))
}

/// `None`: truncated. `Some(Err)`: bad next hop or NLRI, which RFC 7606 §7.11 and §5.3 make a session reset.
/// A bad next hop is an Optional Attribute Error whose data is the whole attribute (RFC 4271 §6.3).
fn decode_mp_reach(v: &[u8], flags: u8) -> Option<Result<MpReach, WireError>> {
    let mut r = Reader::new(v);
    let family = decode_family(&mut r)?;
    let nh_len = r.u8()?;
    let nh = r.take(usize::from(nh_len))?;
    r.u8()?; // reserved (RFC 4760 §3: ignored on receipt)
    let next_hop = if is_ip_unicast(family) {
        let mut n = Reader::new(nh);
        match nh.len() {
            4 => MpNextHop::V4(n.ipv4()?),
            16 => MpNextHop::V6 { global: n.ipv6()?, link_local: None },
            32 => MpNextHop::V6 { global: n.ipv6()?, link_local: Some(n.ipv6()?) },
            _ => return Some(Err(opt_err(attr::MP_REACH_NLRI, flags, v))),
        }
    } else {
        MpNextHop::Raw(nh.to_vec())
    };
    // IPv6 NLRI with an IPv4 next hop is meaningless for unicast.
    if family.afi == afi::IPV6 && matches!(next_hop, MpNextHop::V4(_)) {
        return Some(Err(opt_err(attr::MP_REACH_NLRI, flags, v)));
    }
    Some(decode_nlri(family, r.rest()).map(|(nlri, other_nlri)| MpReach { family, next_hop, nlri, other_nlri }))
}

fn decode_mp_unreach(v: &[u8]) -> Option<Result<MpUnreach, WireError>> {
    let mut r = Reader::new(v);
    let family = decode_family(&mut r)?;
    Some(decode_nlri(family, r.rest()).map(|(withdrawn, other_nlri)| MpUnreach { family, withdrawn, other_nlri }))
}

/// Writes one attribute header and value, choosing the Extended Length bit by size.
pub fn put_attr(out: &mut BytesMut, flags: u8, code: u8, value: &[u8]) {
    match u8::try_from(value.len()) {
        Ok(l) => {
            out.put_u8(flags & !flag::EXTENDED_LENGTH);
            out.put_u8(code);
            out.put_u8(l);
        }
        Err(_) => {
            out.put_u8(flags | flag::EXTENDED_LENGTH);
            out.put_u8(code);
            out.put_u16(u16::try_from(value.len()).unwrap_or(u16::MAX));
        }
    }
    out.put_slice(value);
}

/// Appends MP_REACH_NLRI with the Extended Length bit and a back-patched length, then the prefixes that
/// fit in `budget` bytes of NLRI. Returns how many of `nlri` were written.
pub fn put_mp_reach(out: &mut BytesMut, family: Family, nh: &MpNextHop, nlri: &[IpNet], budget: usize) -> usize {
    out.put_u8(flag::OPTIONAL | flag::EXTENDED_LENGTH);
    out.put_u8(attr::MP_REACH_NLRI);
    let len_at = out.len();
    out.put_u16(0);
    let start = out.len();
    out.put_u16(family.afi);
    out.put_u8(family.safi);
    out.put_u8(u8::try_from(nh.encoded_len()).unwrap_or(u8::MAX));
    nh.encode(out);
    out.put_u8(0);
    let n = put_prefixes(out, nlri, budget);
    patch_u16(out, len_at, out.len() - start);
    n
}

/// Appends MP_UNREACH_NLRI (Extended Length, back-patched) with the prefixes that fit in `budget`.
pub fn put_mp_unreach(out: &mut BytesMut, family: Family, withdrawn: &[IpNet], budget: usize) -> usize {
    out.put_u8(flag::OPTIONAL | flag::EXTENDED_LENGTH);
    out.put_u8(attr::MP_UNREACH_NLRI);
    let len_at = out.len();
    out.put_u16(0);
    let start = out.len();
    out.put_u16(family.afi);
    out.put_u8(family.safi);
    let n = put_prefixes(out, withdrawn, budget);
    patch_u16(out, len_at, out.len() - start);
    n
}

/// Appends prefixes while they fit in `budget` bytes; returns how many.
pub(crate) fn put_prefixes(out: &mut BytesMut, list: &[IpNet], mut budget: usize) -> usize {
    // How many fit, then one reservation and plain stores: `BufMut` checks the capacity on every put,
    // which was a fifth of the time of a batch of /32s.
    let mut n = 0;
    let mut bytes = 0;
    for p in list {
        let need = prefix::encoded_len(p.prefix_len());
        if need > budget {
            break;
        }
        budget -= need;
        bytes += need;
        n += 1;
    }
    let start = out.len();
    out.resize(start + bytes, 0);
    let mut at = &mut out[start..];
    for p in &list[..n] {
        at = prefix::write(p, at);
    }
    n
}

pub(crate) fn patch_u16(out: &mut BytesMut, at: usize, value: usize) {
    let v = u16::try_from(value).unwrap_or(u16::MAX).to_be_bytes();
    if let Some(slot) = out.get_mut(at..at + 2) {
        slot.copy_from_slice(&v);
    }
}

/// Appends every attribute except MP_REACH/MP_UNREACH, in type-code order.
/// `four_octet` selects the AS_PATH width; a 2-octet peer also gets AS4_PATH when the path needs it
/// (RFC 6793 §4.2.2), unless `attrs.as4_path` is set explicitly.
pub fn encode_attrs(attrs: &PathAttrs, four_octet: bool, out: &mut BytesMut) {
    let mut v = BytesMut::new();
    if let Some(o) = attrs.origin {
        put_attr(out, WELL_KNOWN, attr::ORIGIN, &[o]);
    }
    if let Some(p) = &attrs.as_path {
        p.encode(four_octet, &mut v);
        put_attr(out, WELL_KNOWN, attr::AS_PATH, &v);
        v.clear();
    }
    if let Some(nh) = attrs.next_hop {
        put_attr(out, WELL_KNOWN, attr::NEXT_HOP, &nh.octets());
    }
    if let Some(m) = attrs.med {
        put_attr(out, OPT_NON_TRANS, attr::MULTI_EXIT_DISC, &m.to_be_bytes());
    }
    if let Some(lp) = attrs.local_pref {
        put_attr(out, WELL_KNOWN, attr::LOCAL_PREF, &lp.to_be_bytes());
    }
    if attrs.atomic_aggregate {
        put_attr(out, WELL_KNOWN, attr::ATOMIC_AGGREGATE, &[]);
    }
    if let Some((asn, id)) = attrs.aggregator {
        if four_octet {
            v.put_u32(asn);
        } else {
            v.put_u16(u16::try_from(asn).unwrap_or(super::iana::AS_TRANS));
        }
        v.put_slice(&id.octets());
        put_attr(out, OPT_TRANS, attr::AGGREGATOR, &v);
        v.clear();
    }
    if let Some(c) = &attrs.communities {
        for x in c {
            v.put_u32(*x);
        }
        put_attr(out, OPT_TRANS, attr::COMMUNITIES, &v);
        v.clear();
    }
    let as4 = match (&attrs.as4_path, &attrs.as_path) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(p)) if !four_octet && p.needs_four_octets() => Some(p.clone()),
        _ => None,
    };
    if let Some(p) = as4 {
        p.encode(true, &mut v);
        put_attr(out, OPT_TRANS, attr::AS4_PATH, &v);
        v.clear();
    }
    if let Some((asn, id)) = attrs.as4_aggregator {
        v.put_u32(asn);
        v.put_slice(&id.octets());
        put_attr(out, OPT_TRANS, attr::AS4_AGGREGATOR, &v);
        v.clear();
    }
    if let Some(l) = &attrs.large_communities {
        for c in l {
            v.put_u32(c.global);
            v.put_u32(c.local1);
            v.put_u32(c.local2);
        }
        put_attr(out, OPT_TRANS, attr::LARGE_COMMUNITIES, &v);
        v.clear();
    }
    for o in &attrs.other {
        // RFC 4271 §5: an unrecognised optional transitive attribute is passed on with Partial set.
        let f = if o.flags & flag::TRANSITIVE != 0 { o.flags | flag::PARTIAL } else { o.flags };
        put_attr(out, f, o.code, &o.value);
    }
}
