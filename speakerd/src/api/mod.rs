//! The gRPC API (`speaker.v1`): tonic services, and proto ↔ domain conversion at the edge only.
pub mod convert;
pub mod gobgp;
pub mod gobgp_convert;
pub mod server;
