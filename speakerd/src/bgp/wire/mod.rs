//! The BGP-4 wire codec, sans IO: bytes in, [`Message`] out, and back.
//!
//! No tokio, no sockets, no clocks in here. Decoding reads only through bounds-checked helpers and never
//! panics or loops on any input: every malformation is a [`WireError`] that names its NOTIFICATION, or an
//! RFC 7606 finding recorded in [`Update::faults`].
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           Marker (16 octets of 0xff)          |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
pub mod attr;
mod buf;
mod error;
pub mod iana;
mod notification;
mod open;
pub mod prefix;
mod update;

pub use attr::{
    AsPath, AttrFault, DecodeCtx, LargeCommunity, MpNextHop, MpReach, MpUnreach, PathAttrs, RawAttr, Segment,
    SegmentKind, Verdict,
};
pub use error::WireError;
pub use notification::Notification;
pub use open::{Capability, Family, GrFamily, Open};
pub use update::{Packer, Update};

use bytes::{BufMut, BytesMut};

pub const MARKER: [u8; 16] = [0xff; 16];
pub const HEADER_LEN: usize = 19;
/// RFC 4271 §4.1. (Extended Messages, RFC 8654, are not negotiated.)
pub const MAX_MESSAGE_LEN: usize = 4096;

/// ROUTE-REFRESH (RFC 2918 §3): AFI, reserved (RFC 7313 subtype), SAFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub family: Family,
    pub subtype: u8,
}

/// A BGP message.
// Decoded once and moved along; boxing UPDATE would add an allocation per message on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl Message {
    /// Name of the message type, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Open(_) => "open",
            Self::Update(_) => "update",
            Self::Notification(_) => "notification",
            Self::Keepalive => "keepalive",
            Self::RouteRefresh(_) => "route_refresh",
        }
    }
}

impl From<Notification> for Message {
    fn from(n: Notification) -> Self {
        Self::Notification(n)
    }
}

/// Framing: looks at the start of `buf`. `Ok(None)` means "not enough bytes yet"; `Ok(Some(n))` means the
/// first message is `n` bytes long and all there. A bad marker, a length out of range or an unknown type
/// is an error at once, without waiting for more bytes.
pub fn frame(buf: &[u8], max_len: usize) -> Result<Option<usize>, WireError> {
    let Some(header) = buf.get(..HEADER_LEN) else {
        // Reject a bad marker as soon as its bytes arrive.
        let seen = buf.len().min(16);
        if buf.get(..seen).is_some_and(|m| m.iter().any(|&b| b != 0xff)) {
            return Err(WireError::BadMarker);
        }
        return Ok(None);
    };
    if header[..16] != MARKER {
        return Err(WireError::BadMarker);
    }
    let len = u16::from_be_bytes([header[16], header[17]]);
    let ty = header[18];
    let ulen = usize::from(len);
    if ulen < HEADER_LEN || ulen > max_len {
        return Err(WireError::BadLength(len));
    }
    // RFC 4271 §6.1: per-type minimum/exact lengths.
    let ok = match ty {
        iana::msg::OPEN => ulen >= 29,
        iana::msg::UPDATE => ulen >= 23,
        iana::msg::NOTIFICATION => ulen >= 21,
        iana::msg::KEEPALIVE => ulen == HEADER_LEN,
        iana::msg::ROUTE_REFRESH => true, // checked in decode: its error has its own code (RFC 7313 §5)
        t => return Err(WireError::BadType(t)),
    };
    if !ok {
        return Err(WireError::BadLength(len));
    }
    Ok((buf.len() >= ulen).then_some(ulen))
}

/// Decodes one whole message (as delimited by [`frame`]).
pub fn decode(msg: &[u8], ctx: &DecodeCtx) -> Result<Message, WireError> {
    let len = frame(msg, usize::MAX)?.ok_or(WireError::BadLength(u16::try_from(msg.len()).unwrap_or(0)))?;
    let body = msg.get(HEADER_LEN..len).unwrap_or_default();
    match msg[18] {
        iana::msg::OPEN => Open::decode(body).map(Message::Open),
        iana::msg::UPDATE => Update::decode(body, ctx).map(Message::Update),
        iana::msg::NOTIFICATION => {
            Notification::decode(body).map(Message::Notification).ok_or(WireError::BadLength(len as u16))
        }
        iana::msg::KEEPALIVE => Ok(Message::Keepalive),
        iana::msg::ROUTE_REFRESH => match <[u8; 4]>::try_from(body) {
            Ok([a0, a1, subtype, safi]) => Ok(Message::RouteRefresh(RouteRefresh {
                family: Family { afi: u16::from_be_bytes([a0, a1]), safi },
                subtype,
            })),
            Err(_) => Err(WireError::MalformedRouteRefresh(msg.to_vec())),
        },
        t => Err(WireError::BadType(t)),
    }
}

/// Appends one whole message. `four_octet` is the AS_PATH width of the session (RFC 6793).
/// Errors if the message would exceed [`MAX_MESSAGE_LEN`]; nothing is appended then.
pub fn encode(m: &Message, four_octet: bool, out: &mut BytesMut) -> Result<(), WireError> {
    let start = out.len();
    out.put_slice(&MARKER);
    out.put_u16(0);
    let ty = match m {
        Message::Open(o) => {
            out.put_u8(iana::msg::OPEN);
            o.encode_body(out);
            iana::msg::OPEN
        }
        Message::Update(u) => {
            out.put_u8(iana::msg::UPDATE);
            u.encode_body(four_octet, out);
            iana::msg::UPDATE
        }
        Message::Notification(n) => {
            out.put_u8(iana::msg::NOTIFICATION);
            out.put_u8(n.code);
            out.put_u8(n.subcode);
            out.put_slice(&n.data);
            iana::msg::NOTIFICATION
        }
        Message::Keepalive => {
            out.put_u8(iana::msg::KEEPALIVE);
            iana::msg::KEEPALIVE
        }
        Message::RouteRefresh(r) => {
            out.put_u8(iana::msg::ROUTE_REFRESH);
            out.put_u16(r.family.afi);
            out.put_u8(r.subtype);
            out.put_u8(r.family.safi);
            iana::msg::ROUTE_REFRESH
        }
    };
    let len = out.len() - start;
    if len > MAX_MESSAGE_LEN {
        out.truncate(start);
        return Err(WireError::BadLength(u16::try_from(len).unwrap_or(u16::MAX)));
    }
    let _ = ty;
    attr::patch_u16(out, start + 16, len);
    Ok(())
}

/// Encodes a message into a fresh buffer.
pub fn to_bytes(m: &Message, four_octet: bool) -> Result<BytesMut, WireError> {
    let mut b = BytesMut::with_capacity(64);
    encode(m, four_octet, &mut b)?;
    Ok(b)
}
