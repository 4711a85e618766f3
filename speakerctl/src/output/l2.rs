//! How `speakerctl l2 …` and `speakerctl members` print: Layer 2 announcements with the node that
//! answers, the owner of one IP, and the gossip group.
use serde::Serialize;
use speaker_api::v1::L2Announcement;

use super::{Align, Table};

/// One Layer 2 announcement as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct L2View {
    pub ip: String,
    pub owner: String,
    pub nodes: Vec<String>,
    pub interfaces: Vec<String>,
    pub exclude_interfaces: Vec<String>,
    /// Candidate weights (`--prefer`); absent: 0.
    pub prefer: std::collections::BTreeMap<String, u32>,
    /// The node answering now ("" if none).
    pub owner_node: String,
    /// On this node: the interfaces (and MACs) it answers on.
    pub answering_on: Vec<String>,
    pub error: String,
}

impl From<&L2Announcement> for L2View {
    fn from(a: &L2Announcement) -> Self {
        Self {
            ip: a.ip.clone(),
            owner: a.owner.clone(),
            nodes: a.nodes.clone(),
            interfaces: a.interfaces.clone(),
            exclude_interfaces: a.exclude_interfaces.clone(),
            prefer: a.node_weights.iter().map(|(n, w)| (n.clone(), *w)).collect(),
            owner_node: a.owner_node.clone(),
            answering_on: a.answering_on.clone(),
            error: a.error.clone(),
        }
    }
}

fn dash(v: &[String], empty: &str) -> String {
    if v.is_empty() {
        empty.to_string()
    } else {
        v.join(",")
    }
}

pub fn l2_table(list: &Vec<L2View>) -> String {
    let mut t = Table::new(&[
        ("IP", Align::Left),
        ("Owner", Align::Left),
        ("Nodes", Align::Left),
        ("Interfaces", Align::Left),
        ("Answered by", Align::Left),
        ("Here", Align::Left),
    ]);
    for a in list {
        let here = if !a.error.is_empty() { format!("error: {}", a.error) } else { dash(&a.answering_on, "-") };
        t.row(vec![
            a.ip.clone(),
            a.owner.clone(),
            dash(&a.nodes, "(this node)"),
            dash(&a.interfaces, "(subnet)"),
            if a.owner_node.is_empty() { "(none)".into() } else { a.owner_node.clone() },
            here,
        ]);
    }
    t.render()
}

/// `l2 owner IP` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OwnerView {
    pub ip: String,
    pub node: String,
    pub announcements: Vec<L2View>,
}

/// A gossip member (in `members` output and member events).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemberView {
    pub name: String,
    pub address: String,
    pub state: String,
    pub incarnation: u64,
    pub local: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_state: Option<String>,
}

pub fn member_state(s: i32) -> String {
    match speaker_api::v1::MemberState::try_from(s) {
        Ok(speaker_api::v1::MemberState::Alive) => "alive",
        Ok(speaker_api::v1::MemberState::Suspect) => "suspect",
        Ok(speaker_api::v1::MemberState::Dead) => "dead",
        _ => "unknown",
    }
    .to_string()
}

impl From<&speaker_api::v1::Member> for MemberView {
    fn from(m: &speaker_api::v1::Member) -> Self {
        Self {
            name: m.name.clone(),
            address: m.address.clone(),
            state: member_state(m.state),
            incarnation: m.incarnation,
            local: m.local,
            old_state: None,
        }
    }
}

/// `members` output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MembersView {
    pub members: Vec<MemberView>,
    pub quorate: bool,
}

pub fn members_table(m: &MembersView) -> String {
    let mut t =
        Table::new(&[("Name", Align::Left), ("Address", Align::Left), ("State", Align::Left), ("Local", Align::Left)]);
    for x in &m.members {
        t.row(vec![
            x.name.clone(),
            x.address.clone(),
            x.state.clone(),
            if x.local { "yes".into() } else { String::new() },
        ]);
    }
    let mut s = t.render();
    if !m.quorate {
        s.push_str("warning: this node does not see a majority of the candidates of its strict-election IPs: it answers for none of those\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn l2_table_says_who_answers() {
        let v = vec![L2View {
            ip: "192.0.2.50".into(),
            owner: "speakerctl".into(),
            nodes: vec!["a".into(), "b".into()],
            interfaces: vec![],
            exclude_interfaces: vec![],
            prefer: Default::default(),
            owner_node: "b".into(),
            answering_on: vec!["eth0 02:00:00:00:00:01".into()],
            error: String::new(),
        }];
        let t = l2_table(&v);
        assert!(
            t.contains("192.0.2.50")
                && t.contains("a,b")
                && t.contains("(subnet)")
                && t.contains("eth0 02:00:00:00:00:01"),
            "{t}"
        );
    }
}
