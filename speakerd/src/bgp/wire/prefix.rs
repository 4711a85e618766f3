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

/// Writes one prefix in NLRI form at the start of `at`, which must hold [`encoded_len`] bytes of it;
/// returns the rest of `at`.
#[inline]
pub(crate) fn write<'a>(p: &IpNet, at: &'a mut [u8]) -> &'a mut [u8] {
    let len = p.prefix_len();
    let n = usize::from(len).div_ceil(8);
    let (this, rest) = at.split_at_mut(1 + n);
    this[0] = len;
    // Host routes (the common case) copy a fixed size; a copy of a length known only at run time is a
    // call to memmove, which was most of the cost of a /32.
    match (p, &mut this[1..]) {
        (IpNet::V4(v4), b) if n == 4 => b.copy_from_slice(&v4.network().octets()),
        (IpNet::V6(v6), b) if n == 16 => b.copy_from_slice(&v6.network().octets()),
        (IpNet::V4(v4), b) => b.iter_mut().zip(v4.network().octets()).for_each(|(d, s)| *d = s),
        (IpNet::V6(v6), b) => b.iter_mut().zip(v6.network().octets()).for_each(|(d, s)| *d = s),
    }
    rest
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `write` (the batch encoder's) gives the bytes `encode` gives, at every length of both families,
    /// host bits set or not, and they decode to the prefix's network.
    #[test]
    fn write_matches_encode_at_every_length() {
        let v4 = Ipv4Addr::new(203, 0, 113, 0xff);
        let v6: Ipv6Addr = "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff".parse().unwrap();
        let nets = (0..=32)
            .map(|l| IpNet::V4(Ipv4Net::new(v4, l).unwrap()))
            .chain((0..=128).map(|l| IpNet::V6(Ipv6Net::new(v6, l).unwrap())));
        for p in nets {
            let mut want = bytes::BytesMut::new();
            encode(&p, &mut want);
            let mut got = vec![0xaa; encoded_len(p.prefix_len()) + 3];
            let rest = write(&p, &mut got).len();
            assert_eq!(rest, 3, "{p}: the rest of the buffer");
            assert_eq!(&got[..want.len()], &want[..], "{p}");
            let mut r = Reader::new(&got[..want.len()]);
            let back = match p {
                IpNet::V4(_) => IpNet::V4(decode_v4(&mut r).unwrap()),
                IpNet::V6(_) => IpNet::V6(decode_v6(&mut r).unwrap()),
            };
            assert_eq!(back, p.trunc(), "{p}");
        }
    }
}
