//! IANA code points of BGP-4, written out as tables. Wire values come from here and never from the
//! discriminant of an internal enum.

/// Message types (RFC 4271 §4.1, RFC 2918 §3).
pub mod msg {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// Path attribute type codes.
pub mod attr {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    /// RFC 1997.
    pub const COMMUNITIES: u8 = 8;
    /// RFC 4760.
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// RFC 6793.
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
    /// RFC 8092.
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// Attribute flag bits (RFC 4271 §4.3).
pub mod flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// AS_PATH segment types (RFC 4271 §4.3, RFC 5065 §3).
pub mod segment {
    pub const AS_SET: u8 = 1;
    pub const AS_SEQUENCE: u8 = 2;
    pub const AS_CONFED_SEQUENCE: u8 = 3;
    pub const AS_CONFED_SET: u8 = 4;
}

/// ORIGIN values (RFC 4271 §5.1.1).
pub mod origin {
    pub const IGP: u8 = 0;
    pub const EGP: u8 = 1;
    pub const INCOMPLETE: u8 = 2;
}

/// OPEN optional parameter types (RFC 5492; RFC 9072 for 255).
pub mod param {
    pub const CAPABILITIES: u8 = 2;
    pub const EXTENDED_LENGTH: u8 = 255;
}

/// Capability codes.
pub mod cap {
    /// RFC 4760.
    pub const MULTIPROTOCOL: u8 = 1;
    /// RFC 2918.
    pub const ROUTE_REFRESH: u8 = 2;
    /// RFC 8950.
    pub const EXTENDED_NEXT_HOP: u8 = 5;
    /// RFC 4724.
    pub const GRACEFUL_RESTART: u8 = 64;
    /// RFC 6793.
    pub const FOUR_OCTET_AS: u8 = 65;
}

/// Address family identifiers and subsequent AFIs.
pub mod afi {
    pub const IPV4: u16 = 1;
    pub const IPV6: u16 = 2;
}
pub mod safi {
    pub const UNICAST: u8 = 1;
}

/// AS_TRANS (RFC 6793 §9).
pub const AS_TRANS: u16 = 23456;

/// NOTIFICATION error codes and subcodes.
pub mod err {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// RFC 6608 subcodes.
    pub const FSM: u8 = 5;
    /// RFC 4486 subcodes.
    pub const CEASE: u8 = 6;
    /// RFC 7313.
    pub const ROUTE_REFRESH: u8 = 7;

    pub mod header {
        pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
        pub const BAD_MESSAGE_LENGTH: u8 = 2;
        pub const BAD_MESSAGE_TYPE: u8 = 3;
    }
    pub mod open {
        pub const UNSPECIFIC: u8 = 0;
        pub const UNSUPPORTED_VERSION: u8 = 1;
        pub const BAD_PEER_AS: u8 = 2;
        pub const BAD_BGP_IDENTIFIER: u8 = 3;
        pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
        pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
        /// RFC 5492.
        pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    }
    pub mod update {
        pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
        pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
        pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
        pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
        pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
        pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
        pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
        pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
        pub const INVALID_NETWORK_FIELD: u8 = 10;
        pub const MALFORMED_AS_PATH: u8 = 11;
    }
    pub mod fsm {
        pub const UNSPECIFIED: u8 = 0;
        pub const OPEN_SENT: u8 = 1;
        pub const OPEN_CONFIRM: u8 = 2;
        pub const ESTABLISHED: u8 = 3;
    }
    pub mod cease {
        pub const MAX_PREFIXES: u8 = 1;
        pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
        pub const PEER_DECONFIGURED: u8 = 3;
        pub const ADMINISTRATIVE_RESET: u8 = 4;
        pub const CONNECTION_REJECTED: u8 = 5;
        pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
        pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
        pub const OUT_OF_RESOURCES: u8 = 8;
        /// RFC 8538.
        pub const HARD_RESET: u8 = 9;
        /// RFC 9384.
        pub const BFD_DOWN: u8 = 10;
    }
    pub mod route_refresh {
        pub const INVALID_MESSAGE_LENGTH: u8 = 1;
    }
}

/// Well-known communities (RFC 1997, RFC 3765, RFC 7999, RFC 8326), by name.
pub const WELL_KNOWN_COMMUNITIES: &[(&str, u32)] = &[
    ("graceful-shutdown", 0xFFFF_0000),
    ("blackhole", 0xFFFF_029A),
    ("no-export", 0xFFFF_FF01),
    ("no-advertise", 0xFFFF_FF02),
    ("no-export-subconfed", 0xFFFF_FF03),
    ("no-peer", 0xFFFF_FF04),
];
