//! Layer 2 mode: this node answers ARP and Neighbor Solicitations for the IPs it owns.
//!
//! `frames` (pure codecs) and `announcer` (sans-IO: which IP on which interface, bursts) hold the logic;
//! `driver` owns AF_PACKET sockets, the netlink subscription and the clock.
pub mod announcer;
pub mod control;
pub mod driver;
pub mod frames;

pub use announcer::{Claim, ClaimStatus, Iface, L2Config, L2Counters};
pub use driver::{L2Error, L2Handle};
