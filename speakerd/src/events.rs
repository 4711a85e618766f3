//! Events for the watch stream: peer state changes and announcement changes.
use crate::bgp::fsm::State;
use crate::config::spec::AdvertSpec;
use std::net::IpAddr;
use std::time::SystemTime;

#[derive(Debug, Clone)]
pub struct PeerEvent {
    pub address: IpAddr,
    pub name: String,
    pub old: State,
    pub new: State,
    pub reason: String,
    pub deleted: bool,
    pub at: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnouncementChange {
    Added,
    Changed,
    Removed,
}

#[derive(Debug, Clone)]
pub struct AnnouncementEvent {
    pub change: AnnouncementChange,
    pub owner: String,
    pub advert: AdvertSpec,
    pub at: SystemTime,
}

/// The node answering for a Layer 2 IP changed, as this node computes it.
#[derive(Debug, Clone)]
pub struct L2OwnerEvent {
    pub ip: std::net::IpAddr,
    pub old: Option<String>,
    pub new: Option<String>,
    /// This node started (true) or stopped (false) answering; None if it is neither old nor new.
    pub local: Option<bool>,
    pub at: SystemTime,
}

/// A gossip member changed state (`old` is None for a member seen for the first time).
#[derive(Debug, Clone)]
pub struct MemberEvent {
    pub member: crate::membership::Member,
    pub old: Option<crate::membership::MemberState>,
    pub at: SystemTime,
}

/// A peer's BFD session changed state.
#[derive(Debug, Clone)]
pub struct BfdEvent {
    pub address: IpAddr,
    pub old: crate::bfd::packet::BfdState,
    pub new: crate::bfd::packet::BfdState,
    pub diag: u8,
    pub at: SystemTime,
}

#[derive(Debug, Clone)]
pub enum Event {
    Bfd(BfdEvent),
    Peer(PeerEvent),
    Announcement(AnnouncementEvent),
    L2Owner(L2OwnerEvent),
    Member(MemberEvent),
}
