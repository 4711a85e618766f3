//! NOTIFICATION messages (RFC 4271 §4.5) and their human-readable names.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Error code    | Error subcode |   Data (variable)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
use super::iana::err;

/// A NOTIFICATION: error code, subcode and data, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: impl Into<Vec<u8>>) -> Self {
        Self { code, subcode, data: data.into() }
    }

    /// Cease with a subcode (RFC 4486) and no data.
    pub fn cease(subcode: u8) -> Self {
        Self::new(err::CEASE, subcode, Vec::new())
    }

    /// Hold Timer Expired (RFC 4271 §6.5).
    pub fn hold_timer_expired() -> Self {
        Self::new(err::HOLD_TIMER_EXPIRED, 0, Vec::new())
    }

    /// Finite State Machine Error with the RFC 6608 subcode of the state the message arrived in.
    pub fn fsm_error(subcode: u8) -> Self {
        Self::new(err::FSM, subcode, Vec::new())
    }

    /// Decodes the body of a NOTIFICATION (everything after the header). It needs at least two bytes.
    pub fn decode(body: &[u8]) -> Option<Self> {
        let (&code, rest) = body.split_first()?;
        let (&subcode, data) = rest.split_first()?;
        Some(Self { code, subcode, data: data.to_vec() })
    }

    /// The Shutdown Communication of a Cease Administrative Shutdown/Reset (RFC 9003), if valid UTF-8.
    pub fn shutdown_communication(&self) -> Option<&str> {
        let is_admin = self.code == err::CEASE
            && matches!(self.subcode, err::cease::ADMINISTRATIVE_SHUTDOWN | err::cease::ADMINISTRATIVE_RESET);
        let (&len, text) = self.data.split_first().filter(|_| is_admin)?;
        text.get(..usize::from(len)).and_then(|t| std::str::from_utf8(t).ok())
    }

    /// "Code name / Subcode name", e.g. "Cease / Administrative Shutdown".
    pub fn description(&self) -> String {
        let (code, sub) = names(self.code, self.subcode);
        match self.shutdown_communication() {
            Some(text) if !text.is_empty() => format!("{code} / {sub}: \"{text}\""),
            _ => format!("{code} / {sub}"),
        }
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}/{})", self.description(), self.code, self.subcode)
    }
}

fn names(code: u8, subcode: u8) -> (&'static str, &'static str) {
    use err::*;
    let code_name = match code {
        MESSAGE_HEADER => "Message Header Error",
        OPEN_MESSAGE => "OPEN Message Error",
        UPDATE_MESSAGE => "UPDATE Message Error",
        HOLD_TIMER_EXPIRED => "Hold Timer Expired",
        FSM => "Finite State Machine Error",
        CEASE => "Cease",
        ROUTE_REFRESH => "ROUTE-REFRESH Message Error",
        _ => "Unknown Error",
    };
    let sub = match (code, subcode) {
        (MESSAGE_HEADER, 1) => "Connection Not Synchronized",
        (MESSAGE_HEADER, 2) => "Bad Message Length",
        (MESSAGE_HEADER, 3) => "Bad Message Type",
        (OPEN_MESSAGE, 1) => "Unsupported Version Number",
        (OPEN_MESSAGE, 2) => "Bad Peer AS",
        (OPEN_MESSAGE, 3) => "Bad BGP Identifier",
        (OPEN_MESSAGE, 4) => "Unsupported Optional Parameter",
        (OPEN_MESSAGE, 6) => "Unacceptable Hold Time",
        (OPEN_MESSAGE, 7) => "Unsupported Capability",
        (UPDATE_MESSAGE, 1) => "Malformed Attribute List",
        (UPDATE_MESSAGE, 2) => "Unrecognized Well-known Attribute",
        (UPDATE_MESSAGE, 3) => "Missing Well-known Attribute",
        (UPDATE_MESSAGE, 4) => "Attribute Flags Error",
        (UPDATE_MESSAGE, 5) => "Attribute Length Error",
        (UPDATE_MESSAGE, 6) => "Invalid ORIGIN Attribute",
        (UPDATE_MESSAGE, 8) => "Invalid NEXT_HOP Attribute",
        (UPDATE_MESSAGE, 9) => "Optional Attribute Error",
        (UPDATE_MESSAGE, 10) => "Invalid Network Field",
        (UPDATE_MESSAGE, 11) => "Malformed AS_PATH",
        (FSM, 1) => "Unexpected Message in OpenSent State",
        (FSM, 2) => "Unexpected Message in OpenConfirm State",
        (FSM, 3) => "Unexpected Message in Established State",
        (CEASE, 1) => "Maximum Number of Prefixes Reached",
        (CEASE, 2) => "Administrative Shutdown",
        (CEASE, 3) => "Peer De-configured",
        (CEASE, 4) => "Administrative Reset",
        (CEASE, 5) => "Connection Rejected",
        (CEASE, 6) => "Other Configuration Change",
        (CEASE, 7) => "Connection Collision Resolution",
        (CEASE, 8) => "Out of Resources",
        (CEASE, 9) => "Hard Reset",
        (CEASE, 10) => "BFD Down",
        (ROUTE_REFRESH, 1) => "Invalid Message Length",
        (_, 0) => "Unspecific",
        _ => "Unknown Subcode",
    };
    (code_name, sub)
}
