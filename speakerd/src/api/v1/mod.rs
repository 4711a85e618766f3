//! The `speaker.v1` API: [`service`] (the `speaker.v1.Speaker` methods), [`bulk`] (`SetAnnouncements`
//! and `Announce` decoded in place) and [`convert`] (domain → proto).
pub mod bulk;
pub mod convert;
pub mod service;

use service::invalid;
pub use service::{parse_seed, Api, MAX_ANNOUNCEMENTS_PER_CALL, MAX_PEERS_PER_CALL};
