//! `WireError`: everything that can be wrong with bytes from a peer, and the NOTIFICATION each answer is.
use super::iana::err;
use super::notification::Notification;

/// A decoding error. Each one maps to exactly one NOTIFICATION (see [`WireError::notification`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// RFC 4271 §6.1: the marker is not all ones.
    #[error("connection not synchronized (bad marker)")]
    BadMarker,
    /// RFC 4271 §6.1: length < 19, > the maximum, or wrong for the message type.
    #[error("bad message length {0}")]
    BadLength(u16),
    /// RFC 4271 §6.1: unknown message type.
    #[error("unknown message type {0}")]
    BadType(u8),
    /// RFC 4271 §6.2: version other than 4. Data: the largest version we support.
    #[error("unsupported BGP version {0}")]
    UnsupportedVersion(u8),
    /// RFC 4271 §6.2: the peer's AS is not the one configured.
    #[error("bad peer AS {0}")]
    BadPeerAs(u32),
    /// RFC 4271 §6.2 / RFC 6286: BGP Identifier 0 (or equal to ours on iBGP).
    #[error("bad BGP identifier {0}")]
    BadBgpIdentifier(std::net::Ipv4Addr),
    /// RFC 4271 §6.2: optional parameter type we do not know.
    #[error("unsupported optional parameter {0}")]
    UnsupportedOptionalParameter(u8),
    /// RFC 4271 §6.2: hold time 1 or 2.
    #[error("unacceptable hold time {0}")]
    UnacceptableHoldTime(u16),
    /// RFC 5492 §5: a capability we require is missing; data: the capabilities.
    #[error("unsupported capability")]
    UnsupportedCapability(Vec<u8>),
    /// An OPEN whose optional parameters or capabilities do not parse (no better subcode exists).
    #[error("malformed OPEN")]
    MalformedOpen,
    /// RFC 4271 §6.3 / RFC 7606 §4: attribute list lengths inconsistent.
    #[error("malformed attribute list")]
    MalformedAttributeList,
    /// RFC 4271 §6.3: well-known attribute we do not recognise; data: the attribute.
    #[error("unrecognized well-known attribute {code}")]
    UnrecognizedWellKnownAttribute { code: u8, data: Vec<u8> },
    /// RFC 4271 §6.3: a mandatory attribute is missing; data: its type code.
    #[error("missing well-known attribute {0}")]
    MissingWellKnownAttribute(u8),
    /// RFC 4271 §6.3: flags conflict with the attribute's type; data: the attribute.
    #[error("attribute flags error on attribute {code}")]
    AttributeFlags { code: u8, data: Vec<u8> },
    /// RFC 4271 §6.3: length wrong for the type; data: the attribute.
    #[error("attribute length error on attribute {code}")]
    AttributeLength { code: u8, data: Vec<u8> },
    /// RFC 4271 §6.3: ORIGIN value undefined; data: the attribute.
    #[error("invalid ORIGIN")]
    InvalidOrigin(Vec<u8>),
    /// RFC 4271 §6.3: NEXT_HOP syntactically wrong; data: the attribute.
    #[error("invalid NEXT_HOP")]
    InvalidNextHop(Vec<u8>),
    /// RFC 4271 §6.3 / RFC 4760 §7: an optional attribute (e.g. MP_REACH_NLRI) is malformed.
    #[error("optional attribute error on attribute {code}")]
    OptionalAttribute { code: u8, data: Vec<u8> },
    /// RFC 4271 §6.3: NLRI field syntactically wrong.
    #[error("invalid network field")]
    InvalidNetworkField,
    /// RFC 4271 §6.3: AS_PATH malformed (bad segment, or first AS not the eBGP peer's).
    #[error("malformed AS_PATH")]
    MalformedAsPath,
    /// RFC 7313 §5: ROUTE-REFRESH with a bad length; data: the message.
    #[error("malformed ROUTE-REFRESH")]
    MalformedRouteRefresh(Vec<u8>),
}

impl WireError {
    /// The NOTIFICATION that answers this error, data field included.
    pub fn notification(&self) -> Notification {
        use err::*;
        let n = Notification::new;
        match self {
            Self::BadMarker => n(MESSAGE_HEADER, header::CONNECTION_NOT_SYNCHRONIZED, vec![]),
            Self::BadLength(l) => n(MESSAGE_HEADER, header::BAD_MESSAGE_LENGTH, l.to_be_bytes().to_vec()),
            Self::BadType(t) => n(MESSAGE_HEADER, header::BAD_MESSAGE_TYPE, vec![*t]),
            Self::UnsupportedVersion(_) => n(OPEN_MESSAGE, open::UNSUPPORTED_VERSION, 4u16.to_be_bytes().to_vec()),
            Self::BadPeerAs(_) => n(OPEN_MESSAGE, open::BAD_PEER_AS, vec![]),
            Self::BadBgpIdentifier(_) => n(OPEN_MESSAGE, open::BAD_BGP_IDENTIFIER, vec![]),
            Self::UnsupportedOptionalParameter(_) => n(OPEN_MESSAGE, open::UNSUPPORTED_OPTIONAL_PARAMETER, vec![]),
            Self::UnacceptableHoldTime(_) => n(OPEN_MESSAGE, open::UNACCEPTABLE_HOLD_TIME, vec![]),
            Self::UnsupportedCapability(d) => n(OPEN_MESSAGE, open::UNSUPPORTED_CAPABILITY, d.clone()),
            Self::MalformedOpen => n(OPEN_MESSAGE, open::UNSPECIFIC, vec![]),
            Self::MalformedAttributeList => n(UPDATE_MESSAGE, update::MALFORMED_ATTRIBUTE_LIST, vec![]),
            Self::UnrecognizedWellKnownAttribute { data, .. } => {
                n(UPDATE_MESSAGE, update::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE, data.clone())
            }
            Self::MissingWellKnownAttribute(c) => n(UPDATE_MESSAGE, update::MISSING_WELL_KNOWN_ATTRIBUTE, vec![*c]),
            Self::AttributeFlags { data, .. } => n(UPDATE_MESSAGE, update::ATTRIBUTE_FLAGS_ERROR, data.clone()),
            Self::AttributeLength { data, .. } => n(UPDATE_MESSAGE, update::ATTRIBUTE_LENGTH_ERROR, data.clone()),
            Self::InvalidOrigin(d) => n(UPDATE_MESSAGE, update::INVALID_ORIGIN_ATTRIBUTE, d.clone()),
            Self::InvalidNextHop(d) => n(UPDATE_MESSAGE, update::INVALID_NEXT_HOP_ATTRIBUTE, d.clone()),
            Self::OptionalAttribute { data, .. } => n(UPDATE_MESSAGE, update::OPTIONAL_ATTRIBUTE_ERROR, data.clone()),
            Self::InvalidNetworkField => n(UPDATE_MESSAGE, update::INVALID_NETWORK_FIELD, vec![]),
            Self::MalformedAsPath => n(UPDATE_MESSAGE, update::MALFORMED_AS_PATH, vec![]),
            Self::MalformedRouteRefresh(d) => n(ROUTE_REFRESH, route_refresh::INVALID_MESSAGE_LENGTH, d.clone()),
        }
    }

    /// A short stable name for metric labels.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadMarker => "bad_marker",
            Self::BadLength(_) => "bad_length",
            Self::BadType(_) => "bad_type",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::BadPeerAs(_) => "bad_peer_as",
            Self::BadBgpIdentifier(_) => "bad_bgp_identifier",
            Self::UnsupportedOptionalParameter(_) => "unsupported_optional_parameter",
            Self::UnacceptableHoldTime(_) => "unacceptable_hold_time",
            Self::UnsupportedCapability(_) => "unsupported_capability",
            Self::MalformedOpen => "malformed_open",
            Self::MalformedAttributeList => "malformed_attribute_list",
            Self::UnrecognizedWellKnownAttribute { .. } => "unrecognized_well_known_attribute",
            Self::MissingWellKnownAttribute(_) => "missing_well_known_attribute",
            Self::AttributeFlags { .. } => "attribute_flags",
            Self::AttributeLength { .. } => "attribute_length",
            Self::InvalidOrigin(_) => "invalid_origin",
            Self::InvalidNextHop(_) => "invalid_next_hop",
            Self::OptionalAttribute { .. } => "optional_attribute",
            Self::InvalidNetworkField => "invalid_network_field",
            Self::MalformedAsPath => "malformed_as_path",
            Self::MalformedRouteRefresh(_) => "malformed_route_refresh",
        }
    }
}
