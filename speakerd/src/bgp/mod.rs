//! BGP: the wire codec, the session state machine, and their drivers.
pub mod wire;
