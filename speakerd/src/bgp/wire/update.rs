//! UPDATE (RFC 4271 §4.3).
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//! ```
use super::attr::{self, AttrFault, DecodeCtx, MpNextHop, PathAttrs, Verdict};
use super::buf::Reader;
use super::error::WireError;
use super::iana::{attr as code, msg};
use super::open::Family;
use super::{prefix, HEADER_LEN};
use bytes::{BufMut, BytesMut};
use ipnet::{IpNet, Ipv4Net};

/// An UPDATE message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Net>,
    pub attrs: PathAttrs,
    pub nlri: Vec<Ipv4Net>,
    /// RFC 7606 findings that did not reset the session (empty on anything we build).
    pub faults: Vec<AttrFault>,
}

impl Update {
    /// True if RFC 7606 says every route in this UPDATE is to be treated as withdrawn.
    pub fn treat_as_withdraw(&self) -> bool {
        self.faults.iter().any(|f| f.verdict == Verdict::TreatAsWithdraw)
    }

    /// End-of-RIB (RFC 4724 §2): the family it marks, if this UPDATE is one.
    pub fn end_of_rib(&self) -> Option<Family> {
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() {
            return None;
        }
        if self.attrs.is_empty() {
            return Some(Family::IPV4_UNICAST);
        }
        match &self.attrs {
            PathAttrs { mp_unreach: Some(u), .. }
                if u.withdrawn.is_empty()
                    && u.other_nlri.is_empty()
                    && PathAttrs { mp_unreach: None, ..self.attrs.clone() }.is_empty() =>
            {
                Some(u.family)
            }
            _ => None,
        }
    }

    /// An End-of-RIB marker for `family`.
    pub fn end_of_rib_for(family: Family) -> Self {
        if family == Family::IPV4_UNICAST {
            return Self::default();
        }
        let attrs = PathAttrs {
            mp_unreach: Some(attr::MpUnreach { family, withdrawn: vec![], other_nlri: vec![] }),
            ..PathAttrs::default()
        };
        Self { attrs, ..Self::default() }
    }

    /// Decodes an UPDATE body. RFC 7606 session-reset errors are `Err`; the rest are in `faults`.
    pub fn decode(body: &[u8], ctx: &DecodeCtx) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let wlen = r.u16().ok_or(WireError::MalformedAttributeList)?;
        // RFC 4271 §6.3 / RFC 7606 §4: lengths that do not add up are a Malformed Attribute List,
        // and the NLRI cannot be located, so session reset.
        let wfield = r.take(usize::from(wlen)).ok_or(WireError::MalformedAttributeList)?;
        let alen = r.u16().ok_or(WireError::MalformedAttributeList)?;
        let afield = r.take(usize::from(alen)).ok_or(WireError::MalformedAttributeList)?;
        let withdrawn = prefix::decode_all_v4(wfield)?;
        let nlri = prefix::decode_all_v4(r.rest())?;
        let decoded = attr::decode_attrs(afield, ctx)?;
        let mut faults = decoded.faults;
        let attrs = decoded.attrs;
        // RFC 7606 §3 (d): a missing well-known mandatory attribute is treat-as-withdraw. They are only
        // mandatory when there is reachability to describe (RFC 4760 §3 makes NEXT_HOP legacy-NLRI only).
        let reach = !nlri.is_empty() || attrs.mp_reach.as_ref().is_some_and(|m| !m.nlri.is_empty());
        if reach && !faults.iter().any(|f| f.verdict == Verdict::TreatAsWithdraw) {
            let mut missing = |present: bool, c: u8| {
                if !present {
                    faults.push(AttrFault {
                        code: c,
                        verdict: Verdict::TreatAsWithdraw,
                        error: WireError::MissingWellKnownAttribute(c),
                    });
                }
            };
            missing(attrs.origin.is_some(), code::ORIGIN);
            missing(attrs.as_path.is_some(), code::AS_PATH);
            missing(nlri.is_empty() || attrs.next_hop.is_some(), code::NEXT_HOP);
            missing(!ctx.ibgp || attrs.local_pref.is_some(), code::LOCAL_PREF);
        }
        Ok(Self { withdrawn, attrs, nlri, faults })
    }

    /// Appends the UPDATE body: MP_REACH/MP_UNREACH first (RFC 7606 §5.1), then the other attributes.
    pub fn encode_body(&self, four_octet: bool, out: &mut BytesMut) {
        let wl_at = out.len();
        out.put_u16(0);
        let w_start = out.len();
        for p in &self.withdrawn {
            prefix::encode(&IpNet::V4(*p), out);
        }
        attr::patch_u16(out, wl_at, out.len() - w_start);
        let al_at = out.len();
        out.put_u16(0);
        let a_start = out.len();
        if let Some(m) = &self.attrs.mp_reach {
            attr::put_mp_reach(out, m.family, &m.next_hop, &m.nlri, usize::MAX);
            out.put_slice(&m.other_nlri);
            fix_mp_len(out, a_start, m.other_nlri.len());
        }
        if let Some(m) = &self.attrs.mp_unreach {
            let at = out.len();
            attr::put_mp_unreach(out, m.family, &m.withdrawn, usize::MAX);
            out.put_slice(&m.other_nlri);
            fix_mp_len(out, at, m.other_nlri.len());
        }
        attr::encode_attrs(&self.attrs, four_octet, out);
        attr::patch_u16(out, al_at, out.len() - a_start);
        for p in &self.nlri {
            prefix::encode(&IpNet::V4(*p), out);
        }
    }
}

/// After raw NLRI bytes were appended to an MP attribute that starts at `at`, grow its length field.
fn fix_mp_len(out: &mut BytesMut, at: usize, extra: usize) {
    if extra == 0 {
        return;
    }
    let cur = out.get(at + 2..at + 4).map(|b| u16::from_be_bytes([b[0], b[1]])).unwrap_or(0);
    attr::patch_u16(out, at + 2, usize::from(cur) + extra);
}

/// Writes whole UPDATE messages (header included) straight from attribute bytes and prefix lists, as
/// many prefixes per message as fit in `max_len`. This is the send path; it builds no [`Update`].
#[derive(Debug, Clone, Copy)]
pub struct Packer {
    pub max_len: usize,
}

impl Default for Packer {
    fn default() -> Self {
        Self { max_len: super::MAX_MESSAGE_LEN }
    }
}

impl Packer {
    fn begin(out: &mut BytesMut) -> usize {
        let start = out.len();
        out.put_slice(&super::MARKER);
        out.put_u16(0);
        out.put_u8(msg::UPDATE);
        start
    }
    /// Patches the length of the message begun at `start`, or removes it if it carries no prefix: an
    /// UPDATE without NLRI would be junk, and an empty one would even read as an IPv4 End-of-RIB.
    fn finish_or_undo(out: &mut BytesMut, start: usize, n: usize) -> usize {
        if n == 0 {
            out.truncate(start);
        } else {
            attr::patch_u16(out, start + 16, out.len() - start);
        }
        n
    }

    /// One UPDATE announcing IPv4 prefixes in the NLRI field. `attrs` must include NEXT_HOP.
    /// Returns how many prefixes went in; 0 (and nothing written) if not even the first one fits.
    pub fn reach_v4(&self, attrs: &[u8], nlri: &[IpNet], out: &mut BytesMut) -> usize {
        let fixed = HEADER_LEN + 2 + 2 + attrs.len();
        let Some(budget) = self.max_len.checked_sub(fixed) else { return 0 };
        let start = Self::begin(out);
        out.put_u16(0);
        out.put_u16(u16::try_from(attrs.len()).unwrap_or(u16::MAX));
        out.put_slice(attrs);
        let n = attr::put_prefixes(out, nlri, budget);
        Self::finish_or_undo(out, start, n)
    }

    /// One UPDATE announcing prefixes in MP_REACH_NLRI (first attribute), followed by `attrs`. Returns as
    /// [`Packer::reach_v4`] does.
    pub fn reach_mp(&self, family: Family, nh: &MpNextHop, attrs: &[u8], nlri: &[IpNet], out: &mut BytesMut) -> usize {
        // header, two length fields, MP_REACH header (4) + AFI/SAFI (3) + NH len (1) + NH + reserved (1)
        let fixed = HEADER_LEN + 4 + 4 + 3 + 1 + nh.encoded_len_pub() + 1 + attrs.len();
        let Some(budget) = self.max_len.checked_sub(fixed) else { return 0 };
        let start = Self::begin(out);
        out.put_u16(0);
        let al_at = out.len();
        out.put_u16(0);
        let a_start = out.len();
        let n = attr::put_mp_reach(out, family, nh, nlri, budget);
        out.put_slice(attrs);
        attr::patch_u16(out, al_at, out.len() - a_start);
        Self::finish_or_undo(out, start, n)
    }

    /// One UPDATE withdrawing IPv4 prefixes in the Withdrawn Routes field. Returns how many went in; 0 (and
    /// nothing written) if not even the first one fits.
    pub fn unreach_v4(&self, withdrawn: &[IpNet], out: &mut BytesMut) -> usize {
        let Some(budget) = self.max_len.checked_sub(HEADER_LEN + 4) else { return 0 };
        let start = Self::begin(out);
        let wl_at = out.len();
        out.put_u16(0);
        let n = attr::put_prefixes(out, withdrawn, budget);
        attr::patch_u16(out, wl_at, out.len() - wl_at - 2);
        out.put_u16(0);
        Self::finish_or_undo(out, start, n)
    }

    /// One UPDATE withdrawing prefixes in MP_UNREACH_NLRI. Returns as [`Packer::unreach_v4`] does.
    pub fn unreach_mp(&self, family: Family, withdrawn: &[IpNet], out: &mut BytesMut) -> usize {
        let Some(budget) = self.max_len.checked_sub(HEADER_LEN + 4 + 4 + 3) else { return 0 };
        let start = Self::begin(out);
        out.put_u16(0);
        let al_at = out.len();
        out.put_u16(0);
        let a_start = out.len();
        let n = attr::put_mp_unreach(out, family, withdrawn, budget);
        attr::patch_u16(out, al_at, out.len() - a_start);
        Self::finish_or_undo(out, start, n)
    }
}
