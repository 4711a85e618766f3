//! NLRI prefixes (RFC 4271 §4.3): a length in bits, then the fewest bytes that hold it.
//!
//! ```text
//! +---------------------------+
//! |   Length (1 octet)        |
//! +---------------------------+
//! |   Prefix (variable)       |
//! +---------------------------+
//! ```
//! Trailing bits past the length are ignored on decode (and cleared), as the RFC says they are irrelevant.
use super::buf::Reader;
use super::error::WireError;
use bytes::BufMut;
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Bytes a prefix of `len` bits takes on the wire, length octet included.
pub fn encoded_len(len: u8) -> usize {
    1 + usize::from(len).div_ceil(8)
}

fn read_bits<const N: usize>(r: &mut Reader<'_>, max: u8) -> Result<([u8; N], u8), WireError> {
    let len = r.u8().ok_or(WireError::InvalidNetworkField)?;
    if len > max {
        return Err(WireError::InvalidNetworkField);
    }
    let bytes = r.take(usize::from(len).div_ceil(8)).ok_or(WireError::InvalidNetworkField)?;
    let mut out = [0u8; N];
    out.get_mut(..bytes.len()).ok_or(WireError::InvalidNetworkField)?.copy_from_slice(bytes);
    Ok((out, len))
}

/// Decodes one IPv4 prefix. `InvalidNetworkField` if the length is > 32 or the bytes run out.
pub(crate) fn decode_v4(r: &mut Reader<'_>) -> Result<Ipv4Net, WireError> {
    let (b, len) = read_bits::<4>(r, 32)?;
    Ipv4Net::new(Ipv4Addr::from(b), len).map(|n| n.trunc()).map_err(|_| WireError::InvalidNetworkField)
}

/// Decodes one IPv6 prefix. `InvalidNetworkField` if the length is > 128 or the bytes run out.
pub(crate) fn decode_v6(r: &mut Reader<'_>) -> Result<Ipv6Net, WireError> {
    let (b, len) = read_bits::<16>(r, 128)?;
    Ipv6Net::new(Ipv6Addr::from(b), len).map(|n| n.trunc()).map_err(|_| WireError::InvalidNetworkField)
}

/// Decodes a whole field of IPv4 prefixes.
pub fn decode_all_v4(field: &[u8]) -> Result<Vec<Ipv4Net>, WireError> {
    let mut r = Reader::new(field);
    let mut out = Vec::with_capacity(field.len() / 4);
    while !r.is_empty() {
        out.push(decode_v4(&mut r)?);
    }
    Ok(out)
}

/// Decodes a whole field of IPv6 prefixes.
pub fn decode_all_v6(field: &[u8]) -> Result<Vec<Ipv6Net>, WireError> {
    let mut r = Reader::new(field);
    let mut out = Vec::with_capacity(field.len() / 8);
    while !r.is_empty() {
        out.push(decode_v6(&mut r)?);
    }
    Ok(out)
}

/// Appends one prefix in NLRI form.
pub fn encode(p: &IpNet, out: &mut impl BufMut) {
    let len = p.prefix_len();
    let n = usize::from(len).div_ceil(8);
    out.put_u8(len);
    match p {
        IpNet::V4(v4) => out.put_slice(&v4.network().octets()[..n]),
        IpNet::V6(v6) => out.put_slice(&v6.network().octets()[..n]),
    }
}
