//! BGP: the wire codec, the session state machine, the Adj-RIB-Out, the pure session policies (next
//! hops, inbound verdicts), and their tokio driver.
pub mod adj_rib_in;
pub mod export;
pub mod fsm;
pub mod next_hop;
pub mod rib_out;
pub mod session;
pub mod transport;
pub mod wire;
