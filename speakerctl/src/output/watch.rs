//! How `speakerctl watch` prints: one view per event (a JSON line or a YAML document) and the table line.

use std::fmt::Write as _;

use serde::Serialize;
use speaker_api::v1::{announcement_event, watch_event, PeerEvent, WatchEvent};

use super::l2::member_state;
use super::table::cell;
use super::{format_timestamp_ms, state_json, state_table_from_json, AnnouncementView, MemberView};

/// A `WatchEvent` as one JSON line: `timestamp_ms` and exactly one of `peer`, `announcement`, `synced`
/// (the proto3 JSON mapping of a oneof). An event kind this speakerctl does not know has only the timestamp.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchEventView {
    pub timestamp_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<PeerEventView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub announcement: Option<AnnouncementEventView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub synced: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub l2_owner: Option<L2OwnerEventView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member: Option<MemberView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdEventView>,
}

/// The node answering for a Layer 2 IP changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct L2OwnerEventView {
    pub ip: String,
    pub old_node: String,
    pub new_node: String,
    pub local: Option<bool>,
}

/// A BFD state change in `watch`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BfdEventView {
    pub address: String,
    pub old_state: String,
    pub new_state: String,
    pub diagnostic: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerEventView {
    pub address: String,
    pub name: String,
    pub old_state: String,
    pub new_state: String,
    pub reason: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnnouncementEventView {
    /// "added", "changed" or "removed".
    pub kind: String,
    pub announcement: Option<AnnouncementView>,
}

impl From<&PeerEvent> for PeerEventView {
    fn from(e: &PeerEvent) -> Self {
        Self {
            address: e.address.clone(),
            name: e.name.clone(),
            old_state: state_json(e.old_state),
            new_state: state_json(e.new_state),
            reason: e.reason.clone(),
            deleted: e.deleted,
        }
    }
}

impl From<&WatchEvent> for WatchEventView {
    fn from(e: &WatchEvent) -> Self {
        let mut view = Self {
            timestamp_ms: e.timestamp_ms,
            peer: None,
            announcement: None,
            synced: None,
            l2_owner: None,
            member: None,
            bfd: None,
        };
        match &e.event {
            Some(watch_event::Event::Peer(p)) => view.peer = Some(PeerEventView::from(p)),
            Some(watch_event::Event::Announcement(a)) => {
                view.announcement = Some(AnnouncementEventView {
                    kind: announcement_kind(a.kind),
                    announcement: a.announcement.as_ref().map(AnnouncementView::from),
                })
            }
            Some(watch_event::Event::Synced(s)) => view.synced = Some(*s),
            Some(watch_event::Event::L2Owner(o)) => {
                view.l2_owner = Some(L2OwnerEventView {
                    ip: o.ip.clone(),
                    old_node: o.old_node.clone(),
                    new_node: o.new_node.clone(),
                    local: o.local,
                })
            }
            Some(watch_event::Event::Bfd(b)) => {
                view.bfd = Some(BfdEventView {
                    address: b.address.clone(),
                    old_state: b.old_state.clone(),
                    new_state: b.new_state.clone(),
                    diagnostic: b.diagnostic,
                })
            }
            Some(watch_event::Event::Member(m)) => {
                view.member = m
                    .member
                    .as_ref()
                    .map(|x| MemberView { old_state: Some(member_state(m.old_state)), ..MemberView::from(x) })
            }
            None => {}
        }
        view
    }
}

fn announcement_kind(kind: i32) -> String {
    match announcement_event::Kind::try_from(kind) {
        Ok(announcement_event::Kind::Unspecified) => "unspecified".into(),
        Ok(announcement_event::Kind::Added) => "added".into(),
        Ok(announcement_event::Kind::Changed) => "changed".into(),
        Ok(announcement_event::Kind::Removed) => "removed".into(),
        Err(_) => format!("unknown({kind})"),
    }
}

/// One `watch` event as a table line: `<UTC timestamp>  <kind>  <details>`.
pub fn watch_line(e: &WatchEventView) -> String {
    let ts = format_timestamp_ms(e.timestamp_ms);
    let (kind, details) = if let Some(p) = &e.peer {
        let who = if p.name.is_empty() || p.name == p.address {
            p.address.clone()
        } else {
            format!("{} ({})", p.address, p.name)
        };
        let mut d = if p.deleted {
            format!("{who} deleted")
        } else {
            format!("{who} {} -> {}", state_table_from_json(&p.old_state), state_table_from_json(&p.new_state))
        };
        // A deletion's reason is "deleted", which the line already says.
        let says_deleted = p.deleted && p.reason == "deleted";
        if !p.reason.is_empty() && !says_deleted {
            let _ = write!(d, ": {}", p.reason);
        }
        ("peer", d)
    } else if let Some(a) = &e.announcement {
        let mut d = a.kind.clone();
        if let Some(a) = &a.announcement {
            let _ = write!(d, " {} owner={}", a.prefix, cell(&a.owner));
            if !a.communities.is_empty() {
                let _ = write!(d, " communities={}", a.communities.join(","));
            }
            if !a.large_communities.is_empty() {
                let _ = write!(d, " large_communities={}", a.large_communities.join(","));
            }
            if let Some(v) = a.local_pref {
                let _ = write!(d, " local_pref={v}");
            }
            if let Some(v) = a.med {
                let _ = write!(d, " med={v}");
            }
            if !a.peers.is_empty() {
                let _ = write!(d, " peers={}", a.peers.join(","));
            }
        }
        ("announcement", d)
    } else if e.synced.is_some() {
        ("synced", "initial state sent; live changes follow".to_string())
    } else if let Some(o) = &e.l2_owner {
        let here = match o.local {
            Some(true) => " (this node starts answering)",
            Some(false) => " (this node stops answering)",
            None => "",
        };
        ("l2-owner", format!("{} {} -> {}{here}", o.ip, cell(&o.old_node), cell(&o.new_node)))
    } else if let Some(b) = &e.bfd {
        ("bfd", format!("{} {} -> {} (diag {})", b.address, b.old_state, b.new_state, b.diagnostic))
    } else if let Some(m) = &e.member {
        let old = m.old_state.as_deref().unwrap_or("-");
        ("member", format!("{} ({}) {old} -> {}", m.name, m.address, m.state))
    } else {
        ("unknown", "an event kind this speakerctl does not know".to_string())
    };
    format!("{ts}  {kind:<12}  {details}")
}
