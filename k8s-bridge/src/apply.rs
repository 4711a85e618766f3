//! Pushing a [`Desired`] to speakerd. [`push`] sends the whole state with four idempotent
//! set-for-owner calls: after a (re)connection, on resyncs and after a failure, it restores everything
//! whatever speakerd had. [`push_changes`] sends only what differs from the last state pushed (one
//! Service's change costs that change, not the whole set), with per-item calls: Announce, Withdraw,
//! UpdateL2Announcements; peers and seeds (a handful) whole when they changed.
use crate::translate::Desired;
use prost::Message;
use speaker_api::v1 as pb;
use speaker_api::v1::speaker_client::SpeakerClient;
use std::collections::BTreeMap;
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
    /// Bytes of the request messages sent (protobuf encoding, without gRPC framing): what a change
    /// costs on the socket.
    pub bytes: u64,
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
    let mut bytes = 0u64;
    let mut sized = |m: &dyn SizedMessage| bytes += m.size();
    let req = pb::SetAnnouncementsRequest { owner: owner.into(), announcements: d.bgp.clone() };
    sized(&req);
    let b = client.set_announcements(req).await?.into_inner();
    let req = pb::SetPeersRequest { owner: owner.into(), peers: d.peers.clone() };
    sized(&req);
    let p = client.set_peers(req).await?.into_inner();
    let req = pb::SetL2AnnouncementsRequest { owner: owner.into(), announcements: d.l2.clone() };
    sized(&req);
    let l2 = match client.set_l2_announcements(req).await {
        Ok(r) => {
            let r = r.into_inner();
            (r.added, r.changed, r.removed)
        }
        Err(e) if d.l2.is_empty() && matches!(e.code(), Code::FailedPrecondition | Code::ResourceExhausted) => {
            (0, 0, 0)
        }
        Err(e) => return Err(e),
    };
    let req = pb::SetMembershipSeedsRequest { seeds: d.seeds.clone() };
    sized(&req);
    match client.set_membership_seeds(req).await {
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
        bytes,
    })
}

/// A request message's encoded size, for [`Pushed::bytes`].
trait SizedMessage {
    fn size(&self) -> u64;
}

impl<M: Message> SizedMessage for M {
    fn size(&self) -> u64 {
        self.encoded_len() as u64
    }
}

/// What differs between two desired states, as per-item calls would carry it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// BGP announcements added or changed.
    pub announce: Vec<pb::Announcement>,
    /// Prefixes no longer announced.
    pub withdraw: Vec<String>,
    /// Layer 2 announcements added or changed.
    pub l2_announce: Vec<pb::L2Announcement>,
    /// Layer 2 IPs no longer announced.
    pub l2_withdraw: Vec<String>,
    /// The whole peer list, if it changed.
    pub peers: Option<Vec<pb::PeerConfig>>,
    /// The whole seed list, if it changed.
    pub seeds: Option<Vec<String>>,
    /// (added, changed) BGP announcements and Layer 2 announcements, for logs.
    pub bgp_counts: (u32, u32),
    pub l2_counts: (u32, u32),
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.announce.is_empty()
            && self.withdraw.is_empty()
            && self.l2_announce.is_empty()
            && self.l2_withdraw.is_empty()
            && self.peers.is_none()
            && self.seeds.is_none()
    }
}

/// Items keyed one way in `old` and `new`: (added or changed items, removed keys, (added, changed)).
fn diff<T: Clone + PartialEq>(old: &[T], new: &[T], key: impl Fn(&T) -> &str) -> (Vec<T>, Vec<String>, (u32, u32)) {
    let before: BTreeMap<&str, &T> = old.iter().map(|x| (key(x), x)).collect();
    let after: BTreeMap<&str, &T> = new.iter().map(|x| (key(x), x)).collect();
    let mut put = Vec::new();
    let (mut added, mut changed) = (0, 0);
    for (k, v) in &after {
        match before.get(k) {
            None => added += 1,
            Some(o) if o != v => changed += 1,
            Some(_) => continue,
        }
        put.push((*v).clone());
    }
    let gone = before.keys().filter(|k| !after.contains_key(*k)).map(|k| k.to_string()).collect();
    (put, gone, (added, changed))
}

/// What turns `old` (the state speakerd was last given) into `new`. Pure.
pub fn changes(old: &Desired, new: &Desired) -> Changes {
    let (announce, withdraw, bgp_counts) = diff(&old.bgp, &new.bgp, |a| a.prefix.as_str());
    let (l2_announce, l2_withdraw, l2_counts) = diff(&old.l2, &new.l2, |a| a.ip.as_str());
    Changes {
        announce,
        withdraw,
        l2_announce,
        l2_withdraw,
        peers: (old.peers != new.peers).then(|| new.peers.clone()),
        seeds: (old.seeds != new.seeds).then(|| new.seeds.clone()),
        bgp_counts,
        l2_counts,
    }
}

/// Sends speakerd only what differs between `old` (what it was last given, completely) and `new`.
/// On an error the caller must fall back to [`push`]: what speakerd holds is then unknown.
pub async fn push_changes(
    client: &mut SpeakerClient<Channel>,
    owner: &str,
    old: &Desired,
    new: &Desired,
) -> Result<Pushed, tonic::Status> {
    send_changes(client, owner, changes(old, new)).await
}

/// Sends speakerd the per-item calls of `c`. On an error the caller must fall back to [`push`].
pub async fn send_changes(
    client: &mut SpeakerClient<Channel>,
    owner: &str,
    c: Changes,
) -> Result<Pushed, tonic::Status> {
    let mut pushed = Pushed::default();
    // Announcements before peers, as in a full push; withdrawals right after (a not-ready endpoint's
    // route leaves at once).
    if !c.announce.is_empty() {
        let req = pb::AnnounceRequest { owner: owner.into(), announcements: c.announce };
        pushed.bytes += req.size();
        client.announce(req).await?;
    }
    let mut removed = 0;
    if !c.withdraw.is_empty() {
        let req = pb::WithdrawRequest { owner: owner.into(), prefixes: c.withdraw };
        pushed.bytes += req.size();
        removed = client.withdraw(req).await?.into_inner().removed;
    }
    pushed.bgp = (c.bgp_counts.0, c.bgp_counts.1, removed);
    if let Some(peers) = c.peers {
        let req = pb::SetPeersRequest { owner: owner.into(), peers };
        pushed.bytes += req.size();
        let p = client.set_peers(req).await?.into_inner();
        pushed.peers = (p.added, p.changed, p.removed);
        pushed.peer_conflicts = p.conflicts;
    }
    if !c.l2_announce.is_empty() || !c.l2_withdraw.is_empty() {
        let req =
            pb::UpdateL2AnnouncementsRequest { owner: owner.into(), announce: c.l2_announce, withdraw: c.l2_withdraw };
        pushed.bytes += req.size();
        let r = client.update_l2_announcements(req).await?.into_inner();
        pushed.l2 = (r.added, r.changed, r.removed);
    }
    if let Some(seeds) = c.seeds {
        let req = pb::SetMembershipSeedsRequest { seeds };
        pushed.bytes += req.size();
        match client.set_membership_seeds(req).await {
            Ok(_) => {}
            Err(e) if e.code() == Code::FailedPrecondition => {
                tracing::debug!(error = %e.message(), "membership seeds not set")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(pushed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(prefix: &str, lp: Option<u32>) -> pb::Announcement {
        pb::Announcement { prefix: prefix.into(), local_pref: lp, ..Default::default() }
    }
    fn l(ip: &str, nodes: &[&str]) -> pb::L2Announcement {
        pb::L2Announcement { ip: ip.into(), nodes: nodes.iter().map(|n| n.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn changes_carry_only_what_differs() {
        let old = Desired {
            bgp: vec![a("203.0.113.1/32", None), a("203.0.113.2/32", None), a("203.0.113.3/32", None)],
            l2: vec![l("192.0.2.1", &["n1"]), l("192.0.2.2", &["n1"])],
            seeds: vec!["10.0.0.1:7946".into()],
            ..Desired::default()
        };
        assert!(changes(&old, &old).is_empty(), "nothing to send for an unchanged state");
        let new = Desired {
            bgp: vec![a("203.0.113.1/32", None), a("203.0.113.2/32", Some(200)), a("203.0.113.4/32", None)],
            l2: vec![l("192.0.2.1", &["n1", "n2"])],
            seeds: old.seeds.clone(),
            ..Desired::default()
        };
        let c = changes(&old, &new);
        assert_eq!(c.announce, vec![a("203.0.113.2/32", Some(200)), a("203.0.113.4/32", None)]);
        assert_eq!(c.withdraw, vec!["203.0.113.3/32".to_string()]);
        assert_eq!(c.bgp_counts, (1, 1));
        assert_eq!(c.l2_announce, vec![l("192.0.2.1", &["n1", "n2"])]);
        assert_eq!(c.l2_withdraw, vec!["192.0.2.2".to_string()]);
        assert_eq!(c.l2_counts, (0, 1));
        assert_eq!((c.peers, c.seeds), (None, None));
        let more =
            Desired { peers: vec![pb::PeerConfig { address: "10.1.1.1".into(), ..Default::default() }], ..new.clone() };
        assert_eq!(changes(&new, &more).peers.map(|p| p.len()), Some(1));
    }
}
