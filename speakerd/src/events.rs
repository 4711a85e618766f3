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

#[derive(Debug, Clone)]
pub enum Event {
    Peer(PeerEvent),
    Announcement(AnnouncementEvent),
}
