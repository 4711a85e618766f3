//! `speakerctl l2 …` and `speakerctl members`: Layer 2 announcements, "which node answers for this IP?",
//! and the gossip group as this node sees it.
//!
//! `l2 add`/`l2 withdraw` are one UpdateL2Announcements each (owner "speakerctl" unless `--owner`):
//! other owners are never touched, and no other client's edit is lost in between. Rendering:
//! [`crate::output::l2`].

use std::io::Write;
use std::net::IpAddr;

use clap::Subcommand;
use serde::Serialize;
use speaker_api::v1::{
    GetL2OwnerRequest, L2Announcement, ListL2AnnouncementsRequest, ListMembersRequest, UpdateL2AnnouncementsRequest,
};

use crate::cmd::announce::DEFAULT_OWNER;
use crate::cmd::{write_all, Client, CmdError};
use crate::output::{l2_table, members_table, render, Format, L2View, MemberView, MembersView, OwnerView};

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

fn parse_weight(s: &str) -> Result<(String, u32), String> {
    let (n, w) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected NODE=WEIGHT"))?;
    let w = w.parse::<u32>().map_err(|_| format!("{s:?}: the weight is not a number"))?;
    Ok((n.to_string(), w))
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
