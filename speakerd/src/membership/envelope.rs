//! The shared-secret envelope of gossip datagrams: ChaCha20-Poly1305 with key SHA-256(secret) and a
//! random 96-bit nonce sent in front. Opening fails (and the datagram is dropped) on any tampering,
//! a different secret, or a datagram too short to hold a nonce and a tag.
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};

const NONCE: usize = 12;

pub struct Envelope {
    cipher: ChaCha20Poly1305,
}

impl Envelope {
    pub fn new(secret: &[u8]) -> Self {
        let key = Sha256::digest(secret);
        Self { cipher: ChaCha20Poly1305::new(Key::from_slice(&key)) }
    }

    pub fn seal(&self, plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE];
        rand::fill(&mut nonce);
        let mut out = nonce.to_vec();
        // Encryption of an in-memory buffer cannot fail for sizes below 2^38 bytes.
        out.extend(self.cipher.encrypt(Nonce::from_slice(&nonce), plain).unwrap_or_default());
        out
    }

    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, body) = sealed.split_at_checked(NONCE)?;
        self.cipher.decrypt(Nonce::from_slice(nonce), body).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_opens_only_with_the_same_secret_and_unchanged() {
        let a = Envelope::new(b"s3cret");
        let sealed = a.seal(b"hello gossip");
        assert_eq!(a.open(&sealed).as_deref(), Some(&b"hello gossip"[..]));
        assert_ne!(&sealed[12..], b"hello gossip", "encrypted, not only signed");
        assert_eq!(Envelope::new(b"other").open(&sealed), None);
        for i in 0..sealed.len() {
            let mut t = sealed.clone();
            t[i] ^= 1;
            assert_eq!(a.open(&t), None, "flip at {i} accepted");
        }
        for n in 0..sealed.len() {
            assert_eq!(a.open(&sealed[..n]), None);
        }
    }
}
