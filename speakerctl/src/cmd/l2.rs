//! `speakerctl l2 …` and `speakerctl members`: Layer 2 announcements, "which node answers for this IP?",
//! and the gossip group as this node sees it.
//!
//! `l2 add`/`l2 withdraw` read the owner's set and replace it with SetL2Announcements (owner
//! "speakerctl" unless `--owner`): other owners are never touched.

use std::io::Write;
use std::net::IpAddr;

use clap::Subcommand;
use serde::Serialize;
use speaker_api::v1::{
    GetL2OwnerRequest, L2Announcement, ListL2AnnouncementsRequest, ListMembersRequest, UpdateL2AnnouncementsRequest,
};

use crate::cmd::announce::DEFAULT_OWNER;
use crate::cmd::{write_all, Client, CmdError};
use crate::output::{render, Align, Format, MemberView, Table};

#[derive(Debug, Subcommand)]
pub enum L2Command {
    /// List Layer 2 announcements with the node that answers for each IP.
    List {
        /// Only this owner's announcements. Default: every owner.
        #[arg(long)]
        owner: Option<String>,
    },
    /// Which node answers ARP/NDP for this IP?
    Owner { ip: IpAddr },
    /// Announce IPs in Layer 2 mode (adds to or replaces entries of the owner's set).
    Add {
        #[arg(required = true, value_name = "IP")]
        ips: Vec<IpAddr>,
        /// A candidate node name. Repeat for several. Default: this node alone (no failover).
        #[arg(long = "node", value_name = "NAME")]
        nodes: Vec<String>,
        /// An interface to answer on (a trailing * matches a prefix). Default: the IP's subnet's.
        #[arg(long = "interface", value_name = "IFACE")]
        interfaces: Vec<String>,
        /// An interface never to answer on.
        #[arg(long = "exclude-interface", value_name = "IFACE")]
        exclude_interfaces: Vec<String>,
        /// Prefer a candidate: NODE=WEIGHT (the heaviest live candidate answers; MetalLB's
        /// preferredNodeSelectors). Repeat for several.
        #[arg(long = "prefer", value_name = "NODE=WEIGHT", value_parser = parse_weight)]
        prefer: Vec<(String, u32)>,
        #[arg(long, default_value = DEFAULT_OWNER)]
        owner: String,
    },
    /// Stop announcing IPs in Layer 2 mode (IPs the owner does not have are ignored).
    Withdraw {
        #[arg(required = true, value_name = "IP")]
        ips: Vec<IpAddr>,
        #[arg(long, default_value = DEFAULT_OWNER)]
        owner: String,
    },
}

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

fn parse_weight(s: &str) -> Result<(String, u32), String> {
    let (n, w) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NODE=WEIGHT"))?;
    let w = w.parse::<u32>().map_err(|_| format!("{s:?}: the weight is not a number"))?;
    Ok((n.to_string(), w))
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

/// One atomic edit of the owner's set in speakerd (no read-modify-write race with other clients).
async fn update(
    client: &mut Client,
    owner: &str,
    announce: Vec<L2Announcement>,
    withdraw: Vec<String>,
) -> Result<(u32, u32, u32), CmdError> {
    let r = client
        .update_l2_announcements(UpdateL2AnnouncementsRequest { owner: owner.to_string(), announce, withdraw })
        .await?
        .into_inner();
    Ok((r.added, r.changed, r.removed))
}

#[derive(Serialize)]
struct Changed {
    added: u32,
    changed: u32,
    removed: u32,
}

pub async fn run(client: &mut Client, cmd: L2Command, format: Format, out: &mut dyn Write) -> Result<(), CmdError> {
    let text = match cmd {
        L2Command::List { owner } => {
            let r =
                client.list_l2_announcements(ListL2AnnouncementsRequest { owner: owner.unwrap_or_default() }).await?;
            let list: Vec<L2View> = r.into_inner().announcements.iter().map(L2View::from).collect();
            render(&list, format, l2_table)?
        }
        L2Command::Owner { ip } => {
            let r = client.get_l2_owner(GetL2OwnerRequest { ip: ip.to_string() }).await?.into_inner();
            let v = OwnerView {
                ip: ip.to_string(),
                node: r.node,
                announcements: r.announcements.iter().map(L2View::from).collect(),
            };
            render(&v, format, |v| format!("{}\n", if v.node.is_empty() { "(none)" } else { &v.node }))?
        }
        L2Command::Add { ips, nodes, interfaces, exclude_interfaces, prefer, owner } => {
            let list = ips
                .iter()
                .map(|ip| L2Announcement {
                    ip: ip.to_string(),
                    nodes: nodes.clone(),
                    interfaces: interfaces.clone(),
                    exclude_interfaces: exclude_interfaces.clone(),
                    node_weights: prefer.iter().cloned().collect(),
                    ..Default::default()
                })
                .collect();
            let (added, changed, removed) = update(client, &owner, list, vec![]).await?;
            render(&Changed { added, changed, removed }, format, |c| {
                format!("layer 2: {} added, {} changed as owner {owner}\n", c.added, c.changed)
            })?
        }
        L2Command::Withdraw { ips, owner } => {
            let withdraw = ips.iter().map(IpAddr::to_string).collect();
            let (added, changed, removed) = update(client, &owner, vec![], withdraw).await?;
            render(&Changed { added, changed, removed }, format, |c| {
                format!("layer 2: {} withdrawn as owner {owner}\n", c.removed)
            })?
        }
    };
    write_all(out, text.as_bytes())
}

pub async fn members(client: &mut Client, format: Format, out: &mut dyn Write) -> Result<(), CmdError> {
    let r = client.list_members(ListMembersRequest {}).await?.into_inner();
    let v = MembersView { members: r.members.iter().map(MemberView::from).collect(), quorate: r.quorate };
    let text = render(&v, format, members_table)?;
    write_all(out, text.as_bytes())
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
