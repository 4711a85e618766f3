//! How `speakerctl announce …` prints: the announcement view and the `announce list` table.

use serde::Serialize;
use speaker_api::v1::Announcement;

use super::table::{cell, list_cell, opt_cell, Align, Table};

/// One announcement for JSON/YAML and tables.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnnouncementView {
    pub prefix: String,
    pub owner: String,
    pub communities: Vec<String>,
    pub large_communities: Vec<String>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    pub peers: Vec<String>,
}

impl From<&Announcement> for AnnouncementView {
    fn from(a: &Announcement) -> Self {
        Self {
            prefix: a.prefix.clone(),
            owner: a.owner.clone(),
            communities: a.communities.clone(),
            large_communities: a.large_communities.clone(),
            local_pref: a.local_pref,
            med: a.med,
            peers: a.peers.clone(),
        }
    }
}

/// `announce list`.
pub fn announcement_table(announcements: &[AnnouncementView]) -> String {
    let mut t = Table::new(&[
        ("Prefix", Align::Left),
        ("Owner", Align::Left),
        ("Communities", Align::Left),
        ("Large communities", Align::Left),
        ("LocalPref", Align::Right),
        ("MED", Align::Right),
        ("Peers", Align::Left),
    ]);
    for a in announcements {
        t.row(vec![
            cell(&a.prefix),
            cell(&a.owner),
            list_cell(&a.communities),
            list_cell(&a.large_communities),
            opt_cell(a.local_pref),
            opt_cell(a.med),
            if a.peers.is_empty() { "all".into() } else { a.peers.join(",") },
        ]);
    }
    t.render()
}
