//! Layer 2 mode: this node answers ARP and Neighbor Solicitations for the IPs it owns.
pub mod frames;
