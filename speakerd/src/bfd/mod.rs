//! BFD (RFC 5880) for BGP sessions: asynchronous mode, single hop (RFC 5881) and multihop (RFC 5883).
//!
//! `packet` (codec) and `fsm` (one session's state machine) are pure; `driver` owns the sockets and
//! timers of every session.
pub mod auth;
pub mod driver;
pub mod fsm;
pub mod packet;

pub use driver::{BfdCounters, BfdManager, BfdStatus, SessionSpec};
