//! BGP: the wire codec, the session state machine, the Adj-RIB-Out, and their tokio drivers.
pub mod export;
pub mod fsm;
pub mod rib_out;
pub mod session;
pub mod transport;
pub mod wire;
