//! The GoBGP v3 compatible API: `apipb.GobgpApi`, served beside `speaker.v1` (`--gobgp-api`), so the
//! `gobgp` CLI and programs written against GoBGP's gRPC API drive speakerd. docs/GOBGP_API.md is the
//! user-facing description.
//!
//! - [`service`]: the methods served, on the same [`Speaker`](crate::speaker::Speaker) as `speaker.v1`.
//! - [`convert`]: `apipb` ↔ domain (paths, peers, events).
//! - [`unserved`]: the methods speakerd does not serve, answered UNIMPLEMENTED with the reason.
//! - `ages`: when each path last changed (its age), kept compactly.
mod ages;
pub mod convert;
pub mod service;
pub mod unserved;

pub use service::GobgpService;
pub use unserved::{unserved_reason, WithReasons, SERVED};

/// The owner of the peers and paths added over the GoBGP API.
pub const OWNER: &str = "gobgp-api";
