//! The shared-secret envelope of gossip datagrams: ChaCha20-Poly1305 with key SHA-256(secret) and a
//! random 96-bit nonce sent in front of the ciphertext:
//!
//! ```text
//! +----------------+------------------------------+------------------+
//! | nonce (12 B)   | ciphertext (= plaintext len) | Poly1305 tag 16 B|
//! +----------------+------------------------------+------------------+
//! ```
//!
//! Every datagram is authenticated and encrypted. Opening fails on any changed bit, on a different
//! secret, and on a datagram too short to hold a nonce and a tag. There is no replay protection: a
//! recorded datagram of a member opens again. SWIM tolerates that (a replayed message is old news,
//! and incarnations only grow), and the secret keeps outsiders from forging anything new.
//!
//! An envelope may start *pending* ([`Envelope::pending`]): the secret file was configured but is
//! not there yet (the DaemonSet mounts the Secret as optional). Until [`Envelope::set_secret`] it
//! passes datagrams through unsealed, so the node gossips unencrypted instead of crash-looping;
//! [`load_secret_file`] is the one place that reads the file.
//!
//! Pure apart from [`load_secret_file`]; the nonce comes from the thread-local CSPRNG.
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use sha2::{Digest, Sha256};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, RwLock};

/// 1 while a configured gossip secret file is missing or empty and gossip runs unencrypted (for the
/// `speakerd_gossip_secret_missing` metric).
pub static SECRET_MISSING: AtomicBool = AtomicBool::new(false);

/// Reads a gossip secret file: `Ok(Some(secret))` (surrounding whitespace trimmed), `Ok(None)` if
/// the file does not exist or holds nothing but whitespace (an optional Secret not created yet, or
/// created without the `secretkey` key), `Err` for any other failure to read it.
pub fn load_secret_file(path: &std::path::Path) -> std::io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(s) => {
            let s = s.trim_ascii();
            Ok((!s.is_empty()).then(|| s.to_vec()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Bytes of the random nonce in front of every sealed datagram.
pub const NONCE_LEN: usize = 12;
/// Bytes of the Poly1305 tag at the end of every sealed datagram.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a datagram.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Why a datagram did not open (or, never in practice, could not be sealed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Shorter than a nonce and a tag: cannot be a sealed datagram.
    #[error("sealed datagram of {0} bytes is shorter than nonce and tag")]
    Short(usize),
    /// The tag does not match: another secret, a changed bit, or no envelope at all.
    #[error("datagram does not authenticate with the shared secret")]
    BadTag,
    /// ChaCha20 cannot encrypt more than 256 GiB under one nonce; gossip datagrams are < 1500 bytes.
    #[error("datagram too long to seal")]
    TooLong,
}

/// The cipher keyed by SHA-256 of the shared secret. Cheap to clone (clones share the key, so a
/// secret set later reaches every clone); its `Debug` shows no key.
#[derive(Clone)]
pub struct Envelope {
    cipher: Arc<RwLock<Option<ChaCha20Poly1305>>>,
}

impl std::fmt::Debug for Envelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Envelope(..)")
    }
}

impl Envelope {
    /// Keys the envelope with SHA-256(`secret`). Any length of secret works, the empty one too (the
    /// caller decides whether that is acceptable).
    pub fn new(secret: &[u8]) -> Self {
        let e = Self::pending();
        e.set_secret(secret);
        e
    }

    /// No secret yet: [`Envelope::seal`] and [`Envelope::open`] pass datagrams through unchanged
    /// until [`Envelope::set_secret`].
    pub fn pending() -> Self {
        Self { cipher: Arc::new(RwLock::new(None)) }
    }

    /// Keys this envelope and every clone of it with SHA-256(`secret`) from now on.
    pub fn set_secret(&self, secret: &[u8]) {
        let key = Sha256::digest(secret);
        let c = ChaCha20Poly1305::new(Key::from_slice(&key));
        *self.cipher.write().unwrap_or_else(|p| p.into_inner()) = Some(c);
    }

    /// Has a secret (seals and opens) rather than passing datagrams through.
    pub fn is_keyed(&self) -> bool {
        self.cipher.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    fn key(&self) -> Option<ChaCha20Poly1305> {
        self.cipher.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Encrypts and authenticates `plain` under a fresh random nonce: `nonce ‖ ciphertext ‖ tag`,
    /// [`OVERHEAD`] bytes longer than `plain`.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let Some(cipher) = self.key() else { return Ok(plain.to_vec()) };
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let body = cipher.encrypt(Nonce::from_slice(&nonce), plain).map_err(|_| EnvelopeError::TooLong)?;
        let mut out = Vec::with_capacity(NONCE_LEN + body.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Checks and decrypts a datagram made by [`Envelope::seal`] with the same secret.
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, EnvelopeError> {
        let Some(cipher) = self.key() else { return Ok(sealed.to_vec()) };
        if sealed.len() < OVERHEAD {
            return Err(EnvelopeError::Short(sealed.len()));
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        cipher.decrypt(Nonce::from_slice(nonce), body).map_err(|_| EnvelopeError::BadTag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_datagram_opens_with_the_same_secret_only() {
        let a = Envelope::new(b"s3cret");
        let sealed = a.seal(b"hello gossip").unwrap();
        assert_eq!(sealed.len(), b"hello gossip".len() + OVERHEAD);
        assert_eq!(a.open(&sealed).unwrap(), b"hello gossip");
        assert_eq!(
            Envelope::new(b"s3cret").open(&sealed).unwrap(),
            b"hello gossip",
            "key derived from the secret alone"
        );
        assert_eq!(Envelope::new(b"other").open(&sealed), Err(EnvelopeError::BadTag));
    }

    #[test]
    fn sealed_datagram_is_encrypted_and_nonces_differ() {
        let a = Envelope::new(b"s3cret");
        let plain = b"node-a 10.0.0.1:7946 alive";
        let (s1, s2) = (a.seal(plain).unwrap(), a.seal(plain).unwrap());
        assert!(!s1.windows(6).any(|w| w == b"node-a"), "plaintext visible in {s1:?}");
        assert_ne!(s1[..NONCE_LEN], s2[..NONCE_LEN], "nonce repeated");
        assert_ne!(s1, s2);
    }

    #[test]
    fn any_flipped_bit_or_truncation_is_rejected() {
        let a = Envelope::new(b"s3cret");
        let sealed = a.seal(b"hello gossip").unwrap();
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut t = sealed.clone();
                t[i] ^= 1 << bit;
                assert_eq!(a.open(&t), Err(EnvelopeError::BadTag), "flip of bit {bit} in byte {i} accepted");
            }
        }
        for n in 0..OVERHEAD {
            assert_eq!(a.open(&sealed[..n]), Err(EnvelopeError::Short(n)));
        }
        for n in OVERHEAD..sealed.len() {
            assert_eq!(a.open(&sealed[..n]), Err(EnvelopeError::BadTag), "truncated to {n} accepted");
        }
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(a.open(&longer), Err(EnvelopeError::BadTag));
    }

    #[test]
    fn empty_plaintext_round_trips() {
        let a = Envelope::new(b"");
        let sealed = a.seal(b"").unwrap();
        assert_eq!(sealed.len(), OVERHEAD);
        assert_eq!(a.open(&sealed).unwrap(), b"");
    }

    #[test]
    fn pending_envelope_passes_through_until_the_secret_is_set() {
        let p = Envelope::pending();
        let clone = p.clone();
        assert!(!p.is_keyed());
        assert_eq!(p.seal(b"plain").unwrap(), b"plain");
        assert_eq!(p.open(b"plain").unwrap(), b"plain");
        p.set_secret(b"s3cret");
        assert!(clone.is_keyed(), "clones share the key");
        let sealed = clone.seal(b"hello").unwrap();
        assert_eq!(Envelope::new(b"s3cret").open(&sealed).unwrap(), b"hello");
        assert_eq!(clone.open(b"plain but long enough to hold a nonce and tag"), Err(EnvelopeError::BadTag));
    }

    #[test]
    fn secret_file_missing_empty_or_present() {
        let dir = std::env::temp_dir().join(format!("speakerd-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("secretkey");
        let _ = std::fs::remove_file(&f);
        assert_eq!(load_secret_file(&f).unwrap(), None);
        std::fs::write(&f, " \n").unwrap();
        assert_eq!(load_secret_file(&f).unwrap(), None);
        std::fs::write(&f, "abc\n").unwrap();
        assert_eq!(load_secret_file(&f).unwrap(), Some(b"abc".to_vec()));
        // A directory is not a secret: an error, not "missing".
        assert!(load_secret_file(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
