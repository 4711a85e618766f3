//! The errors the library's long-running tasks end with. Configuration problems are not errors here:
//! they are [`crate::config::Problem`]s, reported on their objects while the rest applies.
use std::time::Duration;

/// Why a task of the bridge or of the controller stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The leader election's channel closed while this replica waited to lead.
    #[error("leader election ended")]
    LeaderElectionEnded,
    /// Another replica holds the Lease this one held.
    #[error("lost the Lease {name} ({after:?} after the last renewal)")]
    LeaseLost { name: String, after: Duration },
    /// The Lease could not be renewed within the renew deadline.
    #[error("could not renew the Lease {name} for {after:?}: {why}")]
    LeaseNotRenewed { name: String, after: Duration, why: String },
}
