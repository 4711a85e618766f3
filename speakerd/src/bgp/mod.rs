//! BGP: the wire codec, the session state machine, and their drivers.
pub mod fsm;
pub mod wire;
