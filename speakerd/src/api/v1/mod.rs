//! The `speaker.v1` API: [`service`] (the `speaker.v1.Speaker` methods) and [`convert`] (domain →
//! proto).
pub mod convert;
pub mod service;

pub use service::{parse_seed, Api, MAX_ANNOUNCEMENTS_PER_CALL, MAX_PEERS_PER_CALL};
