//! BFD authentication: Keyed SHA1 and Meticulous Keyed SHA1 (RFC 5880 §4.4, §6.7.4). Pure.
//!
//! ```text
//! | Auth Type | Auth Len = 28 | Auth Key ID | Reserved |
//! |                 Sequence Number                     |
//! |        Auth Key/Hash (20 bytes)                     |
//! ```
//! The hash is SHA1 over the whole packet with the key (zero-padded to 20 bytes) in the hash field.
//! Sequence numbers: received ones must lie within 3 × Detect Mult of the last accepted one (and for
//! the meticulous type be strictly greater), modulo 2^32.
use sha1::{Digest, Sha1};

pub const KEYED_SHA1: u8 = 4;
pub const METICULOUS_KEYED_SHA1: u8 = 5;
const AUTH_LEN: usize = 28;
pub const SEALED_LEN: usize = 24 + AUTH_LEN;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdAuth {
    pub meticulous: bool,
    pub key_id: u8,
    /// 1..20 bytes.
    pub key: Vec<u8>,
}

fn key20(key: &[u8]) -> [u8; 20] {
    let mut k = [0u8; 20];
    let n = key.len().min(20);
    k[..n].copy_from_slice(&key[..n]);
    k
}

impl BfdAuth {
    fn auth_type(&self) -> u8 {
        if self.meticulous {
            METICULOUS_KEYED_SHA1
        } else {
            KEYED_SHA1
        }
    }

    /// The packet with the A bit, Length 52, and the authentication section.
    pub fn seal(&self, header: &[u8; 24], seq: u32) -> [u8; SEALED_LEN] {
        let mut b = [0u8; SEALED_LEN];
        b[..24].copy_from_slice(header);
        b[1] |= 0x04;
        b[3] = SEALED_LEN as u8;
        b[24] = self.auth_type();
        b[25] = AUTH_LEN as u8;
        b[26] = self.key_id;
        b[28..32].copy_from_slice(&seq.to_be_bytes());
        b[32..52].copy_from_slice(&key20(&self.key));
        let h = Sha1::digest(b);
        b[32..52].copy_from_slice(&h);
        b
    }

    /// Verifies a sealed packet; returns the 24-byte header (A bit and Length cleared to a plain packet)
    /// and the sequence number, or `None` if the type, key ID, length or hash is wrong.
    pub fn open(&self, raw: &[u8]) -> Option<([u8; 24], u32)> {
        if raw.len() < SEALED_LEN || usize::from(*raw.get(3)?) != SEALED_LEN || raw[1] & 0x04 == 0 {
            return None;
        }
        if raw[24] != self.auth_type() || usize::from(raw[25]) != AUTH_LEN || raw[26] != self.key_id {
            return None;
        }
        let mut b = [0u8; SEALED_LEN];
        b.copy_from_slice(&raw[..SEALED_LEN]);
        let got: [u8; 20] = b[32..52].try_into().ok()?;
        b[32..52].copy_from_slice(&key20(&self.key));
        if Sha1::digest(b).as_slice() != got {
            return None;
        }
        let seq = u32::from_be_bytes(b[28..32].try_into().ok()?);
        let mut header: [u8; 24] = b[..24].try_into().ok()?;
        header[1] &= !0x04;
        header[3] = 24;
        Some((header, seq))
    }

    /// Is `seq` acceptable after `last` (none yet: anything)?
    pub fn seq_ok(&self, last: Option<u32>, seq: u32, detect_mult: u8) -> bool {
        let Some(last) = last else { return true };
        let ahead = seq.wrapping_sub(last);
        let window = 3 * u32::from(detect_mult.max(1));
        if self.meticulous {
            (1..=window).contains(&ahead)
        } else {
            ahead <= window
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(m: bool) -> BfdAuth {
        BfdAuth { meticulous: m, key_id: 3, key: b"s3cret".to_vec() }
    }

    #[test]
    fn sealed_opens_with_the_same_key_only() {
        let h = [0x20, 0xc0, 3, 24, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0x86, 0xa0, 0, 1, 0x86, 0xa0, 0, 0, 0, 0];
        let a = auth(true);
        let s = a.seal(&h, 42);
        assert_eq!(a.open(&s), Some((h, 42)));
        assert_eq!(BfdAuth { key: b"other".to_vec(), ..auth(true) }.open(&s), None);
        assert_eq!(BfdAuth { key_id: 4, ..auth(true) }.open(&s), None);
        assert_eq!(auth(false).open(&s), None, "type must match");
        for i in 0..s.len() {
            let mut t = s;
            t[i] ^= 0x01;
            assert_eq!(a.open(&t), None, "tamper at {i}");
        }
    }

    #[test]
    fn sequence_windows() {
        let (k, m) = (auth(false), auth(true));
        assert!(k.seq_ok(Some(10), 10, 3) && !m.seq_ok(Some(10), 10, 3), "meticulous needs strictly greater");
        assert!(k.seq_ok(Some(10), 19, 3) && !k.seq_ok(Some(10), 20, 3));
        assert!(m.seq_ok(Some(u32::MAX), 0, 3), "wraps");
        assert!(!m.seq_ok(Some(10), 9, 3), "replay");
    }
}
