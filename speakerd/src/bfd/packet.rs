//! BFD Control packets (RFC 5880 §4.1), sans IO.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                       My Discriminator                        |
//! |                      Your Discriminator                       |
//! |                    Desired Min TX Interval                    |
//! |                   Required Min RX Interval                    |
//! |                 Required Min Echo RX Interval                 |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//! Intervals are in microseconds. An authentication section, if any, follows (A bit).

/// Session states (RFC 5880 §4.1 "Sta").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BfdState {
    AdminDown,
    Down,
    Init,
    Up,
}

impl BfdState {
    fn from_bits(b: u8) -> Self {
        match b & 3 {
            0 => Self::AdminDown,
            1 => Self::Down,
            2 => Self::Init,
            _ => Self::Up,
        }
    }
    fn bits(self) -> u8 {
        match self {
            Self::AdminDown => 0,
            Self::Down => 1,
            Self::Init => 2,
            Self::Up => 3,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Self::AdminDown => "AdminDown",
            Self::Down => "Down",
            Self::Init => "Init",
            Self::Up => "Up",
        }
    }
}

/// Diagnostic codes (RFC 5880 §4.1).
pub mod diag {
    pub const NONE: u8 = 0;
    pub const CONTROL_DETECTION_TIME_EXPIRED: u8 = 1;
    pub const NEIGHBOR_SIGNALED_SESSION_DOWN: u8 = 3;
    pub const ADMINISTRATIVELY_DOWN: u8 = 7;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    pub diag: u8,
    pub state: BfdState,
    pub poll: bool,
    pub final_: bool,
    pub control_plane_independent: bool,
    pub auth_present: bool,
    pub demand: bool,
    pub detect_mult: u8,
    pub my_disc: u32,
    pub your_disc: u32,
    pub desired_min_tx_us: u32,
    pub required_min_rx_us: u32,
    pub required_min_echo_rx_us: u32,
}

/// Why a received packet was dropped (RFC 5880 §6.8.6), for counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BfdDrop {
    #[error("shorter than 24 bytes, or than its Length field")]
    BadLength,
    #[error("version is not 1")]
    BadVersion,
    #[error("Detect Mult is zero")]
    ZeroDetectMult,
    #[error("Multipoint bit set")]
    Multipoint,
    #[error("My Discriminator is zero")]
    ZeroMyDiscriminator,
    #[error("Your Discriminator zero in state Init or Up")]
    ZeroYourDiscriminator,
    #[error("Your Discriminator matches no session")]
    UnknownDiscriminator,
    #[error("authentication present but not configured")]
    UnexpectedAuth,
    #[error("authentication configured but missing")]
    MissingAuth,
    #[error("authentication failed (type, key ID, hash or sequence number)")]
    BadAuth,
    #[error("TTL/hop limit below the required minimum")]
    BadTtl,
    #[error("from an address with no BFD session")]
    UnknownPeer,
}

impl BfdDrop {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadLength => "bad_length",
            Self::BadVersion => "bad_version",
            Self::ZeroDetectMult => "zero_detect_mult",
            Self::Multipoint => "multipoint",
            Self::ZeroMyDiscriminator => "zero_my_discriminator",
            Self::ZeroYourDiscriminator => "zero_your_discriminator",
            Self::UnknownDiscriminator => "unknown_discriminator",
            Self::UnexpectedAuth => "unexpected_auth",
            Self::MissingAuth => "missing_auth",
            Self::BadAuth => "bad_auth",
            Self::BadTtl => "bad_ttl",
            Self::UnknownPeer => "unknown_peer",
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).and_then(|s| <[u8; 4]>::try_from(s).ok()).map_or(0, u32::from_be_bytes)
}

impl ControlPacket {
    pub const LEN: usize = 24;

    /// Parses and applies the syntactic checks of RFC 5880 §6.8.6 (the first seven). Authentication is
    /// not supported: a packet with the A bit is dropped (`UnexpectedAuth`).
    pub fn parse(b: &[u8]) -> Result<Self, BfdDrop> {
        let h = b.get(..Self::LEN).ok_or(BfdDrop::BadLength)?;
        if h[0] >> 5 != 1 {
            return Err(BfdDrop::BadVersion);
        }
        let len = usize::from(h[3]);
        if len < Self::LEN || len > b.len() {
            return Err(BfdDrop::BadLength);
        }
        let flags = h[1];
        let p = Self {
            diag: h[0] & 0x1f,
            state: BfdState::from_bits(flags >> 6),
            poll: flags & 0x20 != 0,
            final_: flags & 0x10 != 0,
            control_plane_independent: flags & 0x08 != 0,
            auth_present: flags & 0x04 != 0,
            demand: flags & 0x02 != 0,
            detect_mult: h[2],
            my_disc: u32_at(h, 4),
            your_disc: u32_at(h, 8),
            desired_min_tx_us: u32_at(h, 12),
            required_min_rx_us: u32_at(h, 16),
            required_min_echo_rx_us: u32_at(h, 20),
        };
        if p.auth_present {
            return Err(BfdDrop::UnexpectedAuth);
        }
        if p.detect_mult == 0 {
            return Err(BfdDrop::ZeroDetectMult);
        }
        if flags & 0x01 != 0 {
            return Err(BfdDrop::Multipoint);
        }
        if p.my_disc == 0 {
            return Err(BfdDrop::ZeroMyDiscriminator);
        }
        if p.your_disc == 0 && matches!(p.state, BfdState::Init | BfdState::Up) {
            return Err(BfdDrop::ZeroYourDiscriminator);
        }
        Ok(p)
    }

    pub fn encode(&self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0] = (1 << 5) | (self.diag & 0x1f);
        b[1] = (self.state.bits() << 6)
            | (u8::from(self.poll) << 5)
            | (u8::from(self.final_) << 4)
            | (u8::from(self.control_plane_independent) << 3)
            | (u8::from(self.auth_present) << 2)
            | (u8::from(self.demand) << 1);
        b[2] = self.detect_mult;
        b[3] = Self::LEN as u8;
        b[4..8].copy_from_slice(&self.my_disc.to_be_bytes());
        b[8..12].copy_from_slice(&self.your_disc.to_be_bytes());
        b[12..16].copy_from_slice(&self.desired_min_tx_us.to_be_bytes());
        b[16..20].copy_from_slice(&self.required_min_rx_us.to_be_bytes());
        b[20..24].copy_from_slice(&self.required_min_echo_rx_us.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt() -> ControlPacket {
        ControlPacket {
            diag: 0,
            state: BfdState::Up,
            poll: true,
            final_: false,
            control_plane_independent: false,
            auth_present: false,
            demand: false,
            detect_mult: 3,
            my_disc: 7,
            your_disc: 9,
            desired_min_tx_us: 100_000,
            required_min_rx_us: 100_000,
            required_min_echo_rx_us: 0,
        }
    }

    #[test]
    fn round_trip() {
        let p = pkt();
        assert_eq!(ControlPacket::parse(&p.encode()), Ok(p));
    }

    #[test]
    fn rfc_5880_6_8_6_checks() {
        let good = pkt().encode();
        let with = |f: &dyn Fn(&mut [u8; 24])| {
            let mut b = good;
            f(&mut b);
            ControlPacket::parse(&b)
        };
        assert_eq!(ControlPacket::parse(&good[..23]), Err(BfdDrop::BadLength));
        assert_eq!(with(&|b| b[0] = 2 << 5), Err(BfdDrop::BadVersion));
        assert_eq!(with(&|b| b[3] = 30), Err(BfdDrop::BadLength), "Length beyond the payload");
        assert_eq!(with(&|b| b[3] = 20), Err(BfdDrop::BadLength));
        assert_eq!(with(&|b| b[2] = 0), Err(BfdDrop::ZeroDetectMult));
        assert_eq!(with(&|b| b[1] |= 1), Err(BfdDrop::Multipoint));
        assert_eq!(with(&|b| b[4..8].fill(0)), Err(BfdDrop::ZeroMyDiscriminator));
        assert_eq!(with(&|b| b[8..12].fill(0)), Err(BfdDrop::ZeroYourDiscriminator));
        assert_eq!(with(&|b| b[1] |= 4), Err(BfdDrop::UnexpectedAuth));
        // Down with Your Discriminator 0 is how a session starts.
        assert!(with(&|b| {
            b[8..12].fill(0);
            b[1] = 1 << 6;
        })
        .is_ok());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 88172645463325252;
        for n in 0..2000usize {
            let mut b = vec![0u8; n % 64];
            for v in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = x as u8;
            }
            let _ = ControlPacket::parse(&b);
        }
    }
}
