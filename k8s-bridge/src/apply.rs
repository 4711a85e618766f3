//! Pushing a [`Desired`] to speakerd: four idempotent set-for-owner calls. Every push is complete, so
//! a push after a speakerd restart (a new process with empty state) restores everything, and a push
//! of an unchanged state changes nothing.
use crate::translate::Desired;
use speaker_api::v1 as pb;
use speaker_api::v1::speaker_client::SpeakerClient;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// A channel to speakerd's Unix socket that (re)connects on demand: calls fail while speakerd is
/// down and succeed again once it is back, on a new connection.
pub fn unix_channel(path: PathBuf) -> Channel {
    // The URI is a placeholder tonic requires; the connector ignores it.
    Endpoint::from_static("http://[::]:50051")
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(30))
        .connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
}

/// What one push changed in speakerd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pushed {
    /// (added, changed, removed) of peers, BGP announcements and Layer 2 announcements.
    pub peers: (u32, u32, u32),
    pub bgp: (u32, u32, u32),
    pub l2: (u32, u32, u32),
    /// Peers speakerd did not apply, and why.
    pub peer_conflicts: Vec<String>,
}

impl Pushed {
    pub fn changed_anything(&self) -> bool {
        let z = (0, 0, 0);
        self.peers != z || self.bgp != z || self.l2 != z
    }
}

/// Applies `d` as `owner`'s complete state. Layer 2 calls are skipped when there is nothing to
/// announce in Layer 2 and this speakerd runs without Layer 2 (or without gossip).
pub async fn push(client: &mut SpeakerClient<Channel>, owner: &str, d: &Desired) -> Result<Pushed, tonic::Status> {
    // Announcements before peers: a session to a new peer then comes up with the whole table and its
    // End-of-RIB follows the routes. The other way round, a session that came up between the two calls
    // (after a speakerd restart) sent End-of-RIB with an empty table, and a graceful-restart helper
    // flushed the stale routes until they followed.
    let b = client
        .set_announcements(pb::SetAnnouncementsRequest { owner: owner.into(), announcements: d.bgp.clone() })
        .await?
        .into_inner();
    let p = client.set_peers(pb::SetPeersRequest { owner: owner.into(), peers: d.peers.clone() }).await?.into_inner();
    let l2 = match client
        .set_l2_announcements(pb::SetL2AnnouncementsRequest { owner: owner.into(), announcements: d.l2.clone() })
        .await
    {
        Ok(r) => {
            let r = r.into_inner();
            (r.added, r.changed, r.removed)
        }
        Err(e) if d.l2.is_empty() && matches!(e.code(), Code::FailedPrecondition | Code::ResourceExhausted) => {
            (0, 0, 0)
        }
        Err(e) => return Err(e),
    };
    match client.set_membership_seeds(pb::SetMembershipSeedsRequest { seeds: d.seeds.clone() }).await {
        Ok(_) => {}
        // Without Layer 2 or gossip on this node there is nothing to seed.
        Err(e) if e.code() == Code::FailedPrecondition => {
            tracing::debug!(error = %e.message(), "membership seeds not set")
        }
        Err(e) => return Err(e),
    }
    Ok(Pushed {
        peers: (p.added, p.changed, p.removed),
        bgp: (b.added, b.changed, b.removed),
        l2,
        peer_conflicts: p.conflicts,
    })
}
