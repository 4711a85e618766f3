//! OPEN (RFC 4271 §4.2) and capabilities (RFC 5492).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+
//! |    Version    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     My Autonomous System      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Hold Time           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         BGP Identifier                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Opt Parm Len  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Optional Parameters (variable)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Extended Optional Parameters Length (RFC 9072) is decoded; we encode it only when the parameters do not
//! fit in 255 bytes, which our own capabilities never do.
use super::buf::Reader;
use super::error::WireError;
use super::iana::{afi, cap, param, safi, AS_TRANS};
use bytes::{BufMut, BytesMut};
use std::net::Ipv4Addr;

/// An address family: AFI and SAFI as on the wire, so that families we do not support can be carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    pub afi: u16,
    pub safi: u8,
}

impl Family {
    pub const IPV4_UNICAST: Family = Family { afi: afi::IPV4, safi: safi::UNICAST };
    pub const IPV6_UNICAST: Family = Family { afi: afi::IPV6, safi: safi::UNICAST };
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            Self::IPV6_UNICAST => f.write_str("ipv6-unicast"),
            Family { afi, safi } => write!(f, "afi{afi}/safi{safi}"),
        }
    }
}

/// Per-family entry of the Graceful Restart capability (RFC 4724 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GrFamily {
    pub family: Family,
    /// "Forwarding State" bit: forwarding for this family was preserved across the restart.
    pub forwarding_preserved: bool,
}

/// One capability (RFC 5492 §4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// RFC 4760 §8.
    Multiprotocol(Family),
    /// RFC 2918 §2.
    RouteRefresh,
    /// RFC 8950 §3: (NLRI family, next-hop AFI) tuples.
    ExtendedNextHop(Vec<(Family, u16)>),
    /// RFC 4724 §3.
    GracefulRestart {
        /// "R" bit: the sender has restarted.
        restart_state: bool,
        /// "N" bit (RFC 8538): the sender supports Graceful Restart for NOTIFICATIONs.
        notification: bool,
        /// Restart Time in seconds, 12 bits.
        restart_time: u16,
        families: Vec<GrFamily>,
    },
    /// RFC 6793 §3.
    FourOctetAs(u32),
    /// Anything else, kept as bytes.
    Unknown { code: u8, value: Vec<u8> },
}

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub version: u8,
    /// "My Autonomous System": the 2-octet AS, or AS_TRANS for a 4-octet one.
    pub my_as: u16,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// Builds an OPEN for `asn`, putting AS_TRANS in My AS when the ASN needs four octets (RFC 6793 §4.1).
    /// The caller includes `Capability::FourOctetAs` in `capabilities`.
    pub fn new(asn: u32, hold_time: u16, router_id: Ipv4Addr, capabilities: Vec<Capability>) -> Self {
        let my_as = u16::try_from(asn).unwrap_or(AS_TRANS);
        Self { version: 4, my_as, hold_time, router_id, capabilities }
    }

    /// The sender's AS: the 4-octet AS capability's value if present, else My AS.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(a) => Some(*a),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }

    /// Families from the Multiprotocol capabilities; none sent means IPv4 unicast (RFC 4760 §8).
    pub fn families(&self) -> Vec<Family> {
        let mp: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if mp.is_empty() && !self.capabilities.iter().any(|c| matches!(c, Capability::Multiprotocol(_))) {
            vec![Family::IPV4_UNICAST]
        } else {
            mp
        }
    }

    pub fn has(&self, pred: impl Fn(&Capability) -> bool) -> bool {
        self.capabilities.iter().any(pred)
    }

    pub fn graceful_restart(&self) -> Option<&Capability> {
        self.capabilities.iter().find(|c| matches!(c, Capability::GracefulRestart { .. }))
    }

    pub fn extended_next_hop(&self) -> &[(Family, u16)] {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::ExtendedNextHop(v) => Some(v.as_slice()),
                _ => None,
            })
            .unwrap_or(&[])
    }

    /// Decodes the body of an OPEN (after the 19-byte header).
    pub fn decode(body: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let short = || WireError::BadLength(u16::try_from(body.len() + 19).unwrap_or(u16::MAX));
        let version = r.u8().ok_or_else(short)?;
        let my_as = r.u16().ok_or_else(short)?;
        let hold_time = r.u16().ok_or_else(short)?;
        let router_id = r.ipv4().ok_or_else(short)?;
        let opt_len = r.u8().ok_or_else(short)?;
        if version != 4 {
            return Err(WireError::UnsupportedVersion(version));
        }
        // RFC 9072 §2: Non-Ext OP Type 255 after a length octet of 255 means the extended format.
        let extended = opt_len == 255 && r.rest().first() == Some(&param::EXTENDED_LENGTH);
        let params = if extended {
            r.u8();
            let len = r.u16().ok_or(WireError::MalformedOpen)?;
            r.take(usize::from(len)).ok_or(WireError::MalformedOpen)?
        } else {
            r.take(usize::from(opt_len)).ok_or(WireError::MalformedOpen)?
        };
        if !r.is_empty() {
            return Err(WireError::MalformedOpen);
        }
        let mut capabilities = Vec::new();
        let mut pr = Reader::new(params);
        while !pr.is_empty() {
            let ptype = pr.u8().ok_or(WireError::MalformedOpen)?;
            let plen = if extended { pr.u16() } else { pr.u8().map(u16::from) }.ok_or(WireError::MalformedOpen)?;
            let value = pr.take(usize::from(plen)).ok_or(WireError::MalformedOpen)?;
            if ptype != param::CAPABILITIES {
                return Err(WireError::UnsupportedOptionalParameter(ptype));
            }
            decode_capabilities(value, &mut capabilities)?;
        }
        Ok(Self { version, my_as, hold_time, router_id, capabilities })
    }

    /// Appends the OPEN body.
    pub fn encode_body(&self, out: &mut BytesMut) {
        out.put_u8(self.version);
        out.put_u16(self.my_as);
        out.put_u16(self.hold_time);
        out.put_slice(&self.router_id.octets());
        // One Capabilities parameter per capability, as FRR does (GoBGP and BIRD put all in one parameter).
        // Each parameter value is [code, length, value]; RFC 5492 gives the capability length one octet.
        let mut params = Vec::with_capacity(self.capabilities.len());
        for c in &self.capabilities {
            let mut v = BytesMut::new();
            let code = encode_capability(c, &mut v);
            let mut p = BytesMut::with_capacity(v.len() + 2);
            p.put_u8(code);
            p.put_u8(u8::try_from(v.len()).unwrap_or(u8::MAX));
            p.put_slice(&v);
            params.push(p);
        }
        let short_len: usize = params.iter().map(|p| 2 + p.len()).sum();
        match u8::try_from(short_len) {
            // Below 255 every parameter length fits its octet too.
            Ok(l) if l < 255 => {
                out.put_u8(l);
                for p in &params {
                    out.put_u8(param::CAPABILITIES);
                    out.put_u8(u8::try_from(p.len()).unwrap_or(u8::MAX));
                    out.put_slice(p);
                }
            }
            _ => {
                // RFC 9072 extended format: every parameter length becomes two octets. Built straight from
                // the parameters, so that one longer than 255 octets (a capability value of 254 or 255
                // octets) keeps its length.
                out.put_u8(255);
                out.put_u8(param::EXTENDED_LENGTH);
                let ext_len: usize = params.iter().map(|p| 3 + p.len()).sum();
                out.put_u16(u16::try_from(ext_len).unwrap_or(u16::MAX));
                for p in &params {
                    out.put_u8(param::CAPABILITIES);
                    out.put_u16(u16::try_from(p.len()).unwrap_or(u16::MAX));
                    out.put_slice(p);
                }
            }
        }
    }
}

fn decode_capabilities(mut value: &[u8], out: &mut Vec<Capability>) -> Result<(), WireError> {
    while !value.is_empty() {
        let mut r = Reader::new(value);
        let code = r.u8().ok_or(WireError::MalformedOpen)?;
        let len = r.u8().ok_or(WireError::MalformedOpen)?;
        let body = r.take(usize::from(len)).ok_or(WireError::MalformedOpen)?;
        value = r.rest();
        out.push(decode_capability(code, body)?);
    }
    Ok(())
}

/// Decodes one capability value. Malformed known capabilities are errors (RFC 5492 gives no subcode,
/// so the answer is OPEN Message Error / Unspecific).
pub fn decode_capability(code: u8, body: &[u8]) -> Result<Capability, WireError> {
    let mut r = Reader::new(body);
    let bad = || WireError::MalformedOpen;
    let c = match code {
        cap::MULTIPROTOCOL => {
            let afi = r.u16().ok_or_else(bad)?;
            r.u8().ok_or_else(bad)?; // reserved
            let safi = r.u8().ok_or_else(bad)?;
            Capability::Multiprotocol(Family { afi, safi })
        }
        cap::ROUTE_REFRESH => Capability::RouteRefresh,
        cap::EXTENDED_NEXT_HOP => {
            if !body.len().is_multiple_of(6) {
                return Err(bad());
            }
            let mut v = Vec::with_capacity(body.len() / 6);
            while !r.is_empty() {
                let afi = r.u16().ok_or_else(bad)?;
                let safi16 = r.u16().ok_or_else(bad)?;
                let nh_afi = r.u16().ok_or_else(bad)?;
                let safi = u8::try_from(safi16).map_err(|_| bad())?;
                v.push((Family { afi, safi }, nh_afi));
            }
            Capability::ExtendedNextHop(v)
        }
        cap::GRACEFUL_RESTART => {
            let flags_time = r.u16().ok_or_else(bad)?;
            if !r.remaining().is_multiple_of(4) {
                return Err(bad());
            }
            let mut families = Vec::with_capacity(r.remaining() / 4);
            while !r.is_empty() {
                let afi = r.u16().ok_or_else(bad)?;
                let safi = r.u8().ok_or_else(bad)?;
                let flags = r.u8().ok_or_else(bad)?;
                families.push(GrFamily { family: Family { afi, safi }, forwarding_preserved: flags & 0x80 != 0 });
            }
            Capability::GracefulRestart {
                restart_state: flags_time & 0x8000 != 0,
                notification: flags_time & 0x4000 != 0,
                restart_time: flags_time & 0x0fff,
                families,
            }
        }
        cap::FOUR_OCTET_AS => {
            let asn = r.u32().ok_or_else(bad)?;
            if !r.is_empty() {
                return Err(bad());
            }
            Capability::FourOctetAs(asn)
        }
        _ => Capability::Unknown { code, value: body.to_vec() },
    };
    Ok(c)
}

/// Appends a capability's value; returns its code.
pub fn encode_capability(c: &Capability, v: &mut BytesMut) -> u8 {
    match c {
        Capability::Multiprotocol(f) => {
            v.put_u16(f.afi);
            v.put_u8(0);
            v.put_u8(f.safi);
            cap::MULTIPROTOCOL
        }
        Capability::RouteRefresh => cap::ROUTE_REFRESH,
        Capability::ExtendedNextHop(list) => {
            for (f, nh) in list {
                v.put_u16(f.afi);
                v.put_u16(u16::from(f.safi));
                v.put_u16(*nh);
            }
            cap::EXTENDED_NEXT_HOP
        }
        Capability::GracefulRestart { restart_state, notification, restart_time, families } => {
            let mut ft = restart_time & 0x0fff;
            if *restart_state {
                ft |= 0x8000;
            }
            if *notification {
                ft |= 0x4000;
            }
            v.put_u16(ft);
            for g in families {
                v.put_u16(g.family.afi);
                v.put_u8(g.family.safi);
                v.put_u8(if g.forwarding_preserved { 0x80 } else { 0 });
            }
            cap::GRACEFUL_RESTART
        }
        Capability::FourOctetAs(a) => {
            v.put_u32(*a);
            cap::FOUR_OCTET_AS
        }
        Capability::Unknown { code, value } => {
            v.put_slice(value);
            *code
        }
    }
}
