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

#[cfg(test)]
mod tests {
    use super::Error;
    use std::time::Duration;

    #[test]
    fn messages() {
        let cases = [
            (Error::LeaderElectionEnded, "leader election ended"),
            (
                Error::LeaseLost { name: "metallb-controller".into(), after: Duration::from_secs(3) },
                "lost the Lease metallb-controller (3s after the last renewal)",
            ),
            (
                Error::LeaseNotRenewed {
                    name: "metallb-controller".into(),
                    after: Duration::from_millis(10500),
                    why: "timeout".into(),
                },
                "could not renew the Lease metallb-controller for 10.5s: timeout",
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.to_string(), want);
        }
    }
}
