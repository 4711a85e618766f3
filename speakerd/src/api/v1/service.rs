//! The `speaker.v1.Speaker` service: requests validated into domain specs, passed to the [`Speaker`].
use super::convert;
use crate::config::spec::{parse_owner, parse_prefix, AdvertSpec, ConfigError, L2Spec, PeerSpec};
use crate::mem::release_after_bulk;
use crate::speaker::{Speaker, SpeakerError};
use speaker_api::v1 as pb;
use speaker_api::v1::speaker_server::Speaker as SpeakerSvc;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

/// Most announcements in one Announce/SetAnnouncements call.
pub const MAX_ANNOUNCEMENTS_PER_CALL: usize = 1_000_000;
/// Peers in one SetPeers call (speakerd holds at most 4096 in all).
pub const MAX_PEERS_PER_CALL: usize = 4096;

pub struct Api {
    speaker: Arc<Speaker>,
}

impl Api {
    pub fn new(speaker: Arc<Speaker>) -> Self {
        Self { speaker }
    }
}

pub(super) fn invalid(e: ConfigError) -> Status {
    Status::invalid_argument(e.to_string())
}

fn peer_spec(p: Option<pb::PeerConfig>) -> Result<PeerSpec, Status> {
    let p = p.ok_or_else(|| Status::invalid_argument("peer: required"))?;
    PeerSpec::try_from(&p).map_err(invalid)
}

fn adverts(list: &[pb::Announcement]) -> Result<Vec<AdvertSpec>, Status> {
    if list.len() > MAX_ANNOUNCEMENTS_PER_CALL {
        return Err(Status::resource_exhausted(format!(
            "{} announcements in one call: at most {MAX_ANNOUNCEMENTS_PER_CALL}",
            list.len()
        )));
    }
    list.iter().enumerate().map(|(i, a)| AdvertSpec::try_from((i, a)).map_err(invalid)).collect()
}

/// The owner filter of a List call: empty means every owner.
fn owner_filter(s: &str) -> Result<Option<String>, Status> {
    if s.is_empty() {
        return Ok(None);
    }
    parse_owner(s).map(Some).map_err(invalid)
}

fn key(s: &str) -> Result<&str, Status> {
    let k = s.trim();
    if k.is_empty() {
        return Err(Status::invalid_argument("peer: required (an address or a name)"));
    }
    Ok(k)
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchEvent, Status>> + Send>>;

/// "IP" or "IP:PORT" (IPv6 with a port in brackets); the port defaults to 7946.
pub fn parse_seed(s: &str) -> Option<std::net::SocketAddr> {
    let s = s.trim();
    s.parse::<std::net::SocketAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(|ip| std::net::SocketAddr::new(ip, 7946)))
}

impl Api {
    /// Layer 2 announcements with the current owner node, and this node's answering state.
    fn l2_views(&self, list: &[(String, L2Spec)]) -> Vec<pb::L2Announcement> {
        let l2 = self.speaker.l2();
        let status = l2.map(|l| l.status()).unwrap_or_default();
        let gave_up = l2.map(|l| l.gave_up()).unwrap_or_default();
        list.iter()
            .map(|(o, s)| {
                let mut a = s.to_proto(o);
                a.owner_node = l2.and_then(|l| l.owner(&s.ip)).unwrap_or_default();
                if let Some(st) = status.iter().find(|st| st.ip == s.ip) {
                    a.answering_on = st
                        .answering_on
                        .iter()
                        .map(|(i, m)| {
                            format!("{i} {}", m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":"))
                        })
                        .collect();
                    a.error = st.error.clone().unwrap_or_default();
                }
                if let Some(reason) = gave_up.get(&s.ip) {
                    a.error = format!("this node cannot answer ({reason}): handed off to the next candidate");
                }
                a
            })
            .collect()
    }
}

#[tonic::async_trait]
impl SpeakerSvc for Api {
    async fn add_peer(&self, r: Request<pb::AddPeerRequest>) -> Result<Response<pb::AddPeerResponse>, Status> {
        let peer = r.into_inner().peer;
        let owner = parse_owner(peer.as_ref().map(|p| p.owner.as_str()).unwrap_or_default()).map_err(invalid)?;
        let v = self.speaker.add_peer(&owner, peer_spec(peer)?).await?;
        Ok(Response::new(pb::AddPeerResponse { peer: Some(convert::peer(&v)) }))
    }

    async fn update_peer(&self, r: Request<pb::UpdatePeerRequest>) -> Result<Response<pb::UpdatePeerResponse>, Status> {
        let spec = peer_spec(r.into_inner().peer)?;
        let (v, reset) = self.speaker.update_peer(spec).await?;
        Ok(Response::new(pb::UpdatePeerResponse { peer: Some(convert::peer(&v)), reset }))
    }

    async fn delete_peer(&self, r: Request<pb::DeletePeerRequest>) -> Result<Response<pb::DeletePeerResponse>, Status> {
        self.speaker.delete_peer(key(&r.get_ref().peer)?).await?;
        Ok(Response::new(pb::DeletePeerResponse {}))
    }

    async fn set_peers(&self, r: Request<pb::SetPeersRequest>) -> Result<Response<pb::SetPeersResponse>, Status> {
        let r = r.into_inner();
        let owner = parse_owner(&r.owner).map_err(invalid)?;
        if r.peers.len() > MAX_PEERS_PER_CALL {
            return Err(Status::resource_exhausted(format!(
                "{} peers in one call: at most {MAX_PEERS_PER_CALL}",
                r.peers.len()
            )));
        }
        let specs = r
            .peers
            .into_iter()
            .enumerate()
            .map(|(i, p)| PeerSpec::try_from(&p).map_err(|e| Status::invalid_argument(format!("peers[{i}]: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let o = self.speaker.set_peers(&owner, specs).await?;
        Ok(Response::new(pb::SetPeersResponse {
            added: o.added,
            changed: o.changed,
            removed: o.removed,
            reset: o.reset,
            conflicts: o.conflicts.iter().map(|(a, why)| format!("{a}: {why}")).collect(),
        }))
    }

    async fn get_peer(&self, r: Request<pb::GetPeerRequest>) -> Result<Response<pb::GetPeerResponse>, Status> {
        let v = self.speaker.get_peer(key(&r.get_ref().peer)?).await?;
        Ok(Response::new(pb::GetPeerResponse { peer: Some(convert::peer(&v)) }))
    }

    async fn list_peers(&self, _: Request<pb::ListPeersRequest>) -> Result<Response<pb::ListPeersResponse>, Status> {
        let peers = self.speaker.list_peers().await.iter().map(convert::peer).collect();
        Ok(Response::new(pb::ListPeersResponse { peers }))
    }

    async fn reset_peer(&self, r: Request<pb::ResetPeerRequest>) -> Result<Response<pb::ResetPeerResponse>, Status> {
        let r = r.into_inner();
        self.speaker.reset_peer(key(&r.peer)?, r.soft).await?;
        Ok(Response::new(pb::ResetPeerResponse {}))
    }

    async fn announce(&self, r: Request<pb::AnnounceRequest>) -> Result<Response<pb::AnnounceResponse>, Status> {
        let r = r.into_inner();
        let owner = parse_owner(&r.owner).map_err(invalid)?;
        let n = r.announcements.len();
        self.speaker.announce(&owner, adverts(&r.announcements)?).await?;
        drop(r);
        release_after_bulk(n);
        Ok(Response::new(pb::AnnounceResponse {}))
    }

    async fn withdraw(&self, r: Request<pb::WithdrawRequest>) -> Result<Response<pb::WithdrawResponse>, Status> {
        let r = r.into_inner();
        let owner = parse_owner(&r.owner).map_err(invalid)?;
        let prefixes = r
            .prefixes
            .iter()
            .enumerate()
            .map(|(i, p)| parse_prefix(&format!("prefixes[{i}]"), p).map_err(invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let removed = self.speaker.withdraw(&owner, &prefixes).await?;
        drop((r, prefixes));
        release_after_bulk(removed as usize);
        Ok(Response::new(pb::WithdrawResponse { removed }))
    }

    async fn set_announcements(
        &self,
        r: Request<pb::SetAnnouncementsRequest>,
    ) -> Result<Response<pb::SetAnnouncementsResponse>, Status> {
        let r = r.into_inner();
        let owner = parse_owner(&r.owner).map_err(invalid)?;
        let n = r.announcements.len();
        let (added, changed, removed) = self.speaker.set_announcements(&owner, adverts(&r.announcements)?).await?;
        drop(r);
        // a large set emptied by a small request frees as much as a large request does
        release_after_bulk(n.max((added + changed + removed) as usize));
        Ok(Response::new(pb::SetAnnouncementsResponse { added, changed, removed }))
    }

    async fn list_announcements(
        &self,
        r: Request<pb::ListAnnouncementsRequest>,
    ) -> Result<Response<pb::ListAnnouncementsResponse>, Status> {
        let owner = owner_filter(&r.get_ref().owner)?;
        let list = self.speaker.list_announcements(owner.as_deref()).await;
        let announcements = list.iter().map(|(o, a)| a.to_proto(o)).collect();
        Ok(Response::new(pb::ListAnnouncementsResponse { announcements }))
    }

    async fn set_l2_announcements(
        &self,
        r: Request<pb::SetL2AnnouncementsRequest>,
    ) -> Result<Response<pb::SetL2AnnouncementsResponse>, Status> {
        let r = r.into_inner();
        let owner = parse_owner(&r.owner).map_err(invalid)?;
        if r.announcements.len() > MAX_ANNOUNCEMENTS_PER_CALL {
            return Err(Status::resource_exhausted(format!(
                "at most {MAX_ANNOUNCEMENTS_PER_CALL} announcements per call"
            )));
        }
        let specs = r
            .announcements
            .iter()
            .enumerate()
            .map(|(i, a)| L2Spec::try_from((i, a)).map_err(invalid))
            .collect::<Result<Vec<_>, _>>()?;
        let (added, changed, removed) = self.speaker.set_l2(&owner, specs).await?;
        Ok(Response::new(pb::SetL2AnnouncementsResponse { added, changed, removed }))
    }

    async fn update_l2_announcements(
        &self,
        r: Request<pb::UpdateL2AnnouncementsRequest>,
    ) -> Result<Response<pb::UpdateL2AnnouncementsResponse>, Status> {
        let r = r.into_inner();
        let owner = parse_owner(&r.owner).map_err(invalid)?;
        if r.announce.len() + r.withdraw.len() > MAX_ANNOUNCEMENTS_PER_CALL {
            return Err(Status::resource_exhausted(format!(
                "at most {MAX_ANNOUNCEMENTS_PER_CALL} announcements and withdrawals per call"
            )));
        }
        let specs = r
            .announce
            .iter()
            .enumerate()
            .map(|(i, a)| L2Spec::try_from((i, a)).map_err(|e| invalid(e.under("announce"))))
            .collect::<Result<Vec<_>, _>>()?;
        let withdraw = r
            .withdraw
            .iter()
            .enumerate()
            .map(|(i, ip)| {
                ip.trim()
                    .parse::<std::net::IpAddr>()
                    .map_err(|_| Status::invalid_argument(format!("withdraw[{i}]: {ip:?} is not an IP address")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (added, changed, removed) = self.speaker.update_l2(&owner, specs, &withdraw).await?;
        Ok(Response::new(pb::UpdateL2AnnouncementsResponse { added, changed, removed }))
    }

    async fn list_l2_announcements(
        &self,
        r: Request<pb::ListL2AnnouncementsRequest>,
    ) -> Result<Response<pb::ListL2AnnouncementsResponse>, Status> {
        let owner = owner_filter(&r.get_ref().owner)?;
        let list = self.speaker.list_l2(owner.as_deref()).await;
        Ok(Response::new(pb::ListL2AnnouncementsResponse { announcements: self.l2_views(&list) }))
    }

    async fn get_l2_owner(
        &self,
        r: Request<pb::GetL2OwnerRequest>,
    ) -> Result<Response<pb::GetL2OwnerResponse>, Status> {
        let ip: std::net::IpAddr = r
            .get_ref()
            .ip
            .trim()
            .parse()
            .map_err(|_| Status::invalid_argument(format!("ip: {:?} is not an IP address", r.get_ref().ip)))?;
        let ip = crate::netif::canonical(ip);
        let list: Vec<_> = self.speaker.list_l2(None).await.into_iter().filter(|(_, s)| s.ip == ip).collect();
        if list.is_empty() {
            return Err(Status::not_found(format!("{ip} is not announced in Layer 2 mode")));
        }
        let node = self.speaker.l2().and_then(|l| l.owner(&ip)).unwrap_or_default();
        Ok(Response::new(pb::GetL2OwnerResponse { node, announcements: self.l2_views(&list) }))
    }

    async fn list_members(
        &self,
        _: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        let l2 = self.speaker.l2().ok_or(SpeakerError::Layer2Off)?;
        let members = l2.view().members.iter().map(convert::member).collect();
        Ok(Response::new(pb::ListMembersResponse { members, quorate: l2.quorate() }))
    }

    async fn set_membership_seeds(
        &self,
        r: Request<pb::SetMembershipSeedsRequest>,
    ) -> Result<Response<pb::SetMembershipSeedsResponse>, Status> {
        let seeds = r
            .get_ref()
            .seeds
            .iter()
            .enumerate()
            .map(|(i, s)| {
                parse_seed(s).ok_or_else(|| Status::invalid_argument(format!("seeds[{i}]: {s:?} is not IP or IP:PORT")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let l2 = self.speaker.l2().ok_or(SpeakerError::Layer2Off)?;
        if !l2.set_seeds(seeds) {
            return Err(Status::failed_precondition("gossip is disabled on this node (--no-gossip)"));
        }
        Ok(Response::new(pb::SetMembershipSeedsResponse {}))
    }

    type WatchStream = WatchStream;

    async fn watch(&self, r: Request<pb::WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        // Subscribe before reading the current state, so nothing falls between the two.
        let rx = self.speaker.subscribe();
        let mut initial = Vec::new();
        if r.get_ref().initial_state {
            let now = convert::millis(SystemTime::now());
            for v in self.speaker.list_peers().await {
                let st = convert::state(v.status.state) as i32;
                initial.push(pb::WatchEvent {
                    timestamp_ms: now,
                    event: Some(pb::watch_event::Event::Peer(pb::PeerEvent {
                        address: v.spec.address.to_string(),
                        name: v.spec.name.clone(),
                        old_state: st,
                        new_state: st,
                        reason: "initial state".into(),
                        deleted: false,
                    })),
                });
            }
            for (o, a) in self.speaker.list_announcements(None).await {
                initial.push(pb::WatchEvent {
                    timestamp_ms: now,
                    event: Some(pb::watch_event::Event::Announcement(pb::AnnouncementEvent {
                        kind: pb::announcement_event::Kind::Added as i32,
                        announcement: Some(a.to_proto(&o)),
                    })),
                });
            }
            initial.push(pb::WatchEvent { timestamp_ms: now, event: Some(pb::watch_event::Event::Synced(true)) });
        }
        let live = tokio_stream::wrappers::BroadcastStream::new(rx).map(|r| match r {
            Ok(e) => Ok(convert::event(&e)),
            // A slow watcher is told, rather than silently missing events.
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => {
                Err(Status::data_loss(format!("watcher fell {n} events behind; re-list and watch again")))
            }
        });
        let stream = tokio_stream::iter(initial.into_iter().map(Ok)).chain(live);
        Ok(Response::new(Box::pin(stream)))
    }
}
