//! `speakerctl announce …`: add, withdraw and list announcements of one owner.
//!
//! speakerctl edits the set of its own owner ("speakerctl") unless `--owner` says otherwise, so that it
//! never disturbs what k8s-bridge or another client announced. Prefixes, communities and owners are
//! checked against the formats the proto documents before anything is sent.

use std::io::Write;
use std::net::IpAddr;

use clap::builder::NonEmptyStringValueParser;
use clap::{Args, Subcommand};
use serde::Serialize;
use speaker_api::v1::{AnnounceRequest, Announcement, ListAnnouncementsRequest, WithdrawRequest};

use crate::cmd::{write_all, Client, CmdError};
use crate::output::{announcement_table, render, AnnouncementView, EmptyView, Format};

/// The owner speakerctl edits when `--owner` is not given.
pub const DEFAULT_OWNER: &str = "speakerctl";

#[derive(Debug, Subcommand)]
pub enum AnnounceCommand {
    /// Announce prefixes (or replace the attributes of prefixes the owner already announces).
    Add(AnnounceArgs),
    /// Withdraw prefixes from the owner's set; prefixes it does not have are ignored.
    Withdraw {
        /// Prefixes in CIDR notation (a bare address is a host route).
        #[arg(required = true, value_name = "PREFIX", value_parser = parse_prefix)]
        prefixes: Vec<String>,
        /// The owner whose set is edited.
        #[arg(long, default_value = DEFAULT_OWNER, value_parser = parse_owner)]
        owner: String,
    },
    /// List announcements, ordered by prefix then owner.
    List {
        /// Only this owner's announcements. Default: every owner.
        #[arg(long, value_parser = parse_owner)]
        owner: Option<String>,
    },
}

/// The flags of `announce add`: the attributes every listed prefix is announced with.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AnnounceArgs {
    /// Prefixes in CIDR notation, e.g. 203.0.113.10/32 or 2001:db8::/48 (a bare address is a host route).
    #[arg(required = true, value_name = "PREFIX", value_parser = parse_prefix)]
    pub prefixes: Vec<String>,
    /// An RFC 1997 community: ASN:VALUE, a 32-bit number, or no-export, no-advertise,
    /// no-export-subconfed, no-peer, blackhole, graceful-shutdown. Repeat for several.
    #[arg(long = "community", value_name = "C", value_parser = parse_community)]
    pub communities: Vec<String>,
    /// An RFC 8092 large community GLOBAL:LOCAL1:LOCAL2. Repeat for several.
    #[arg(long = "large-community", value_name = "L", value_parser = parse_large_community)]
    pub large_communities: Vec<String>,
    /// LOCAL_PREF, sent to iBGP peers only. Default: 100 on iBGP sessions.
    #[arg(long, value_name = "N")]
    pub local_pref: Option<u32>,
    /// MULTI_EXIT_DISC. Default: not sent.
    #[arg(long, value_name = "N")]
    pub med: Option<u32>,
    /// A peer (address or name) to announce to. Repeat for several. Default: every peer.
    #[arg(long = "peer", value_name = "P", value_parser = NonEmptyStringValueParser::new())]
    pub peers: Vec<String>,
    /// The owner whose set is edited.
    #[arg(long, default_value = DEFAULT_OWNER, value_parser = parse_owner)]
    pub owner: String,
}

impl AnnounceArgs {
    /// The `AnnounceRequest` these flags describe: one announcement per prefix, all with the same attributes.
    pub fn to_request(&self) -> AnnounceRequest {
        AnnounceRequest {
            owner: self.owner.clone(),
            announcements: self
                .prefixes
                .iter()
                .map(|prefix| Announcement {
                    prefix: prefix.clone(),
                    communities: self.communities.clone(),
                    large_communities: self.large_communities.clone(),
                    local_pref: self.local_pref,
                    med: self.med,
                    peers: self.peers.clone(),
                    owner: String::new(), // output only
                })
                .collect(),
        }
    }
}

/// A plain decimal number: digits only (Rust's `parse` would also take a leading `+`).
fn decimal<T: std::str::FromStr>(s: &str) -> Option<T> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// A prefix as the proto's `Announcement.prefix` documents it: an IPv4 or IPv6 address, optionally
/// `/len` with the host bits zero. Returned as typed; speakerd canonicalises.
fn parse_prefix(s: &str) -> Result<String, String> {
    let (addr, len) = match s.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (s, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
    let (bits, max) = match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32u32),
        IpAddr::V6(a) => (u128::from(a), 128u32),
    };
    if let Some(len) = len {
        let len: u32 =
            decimal(len).filter(|&l| l <= max).ok_or_else(|| format!("prefix length `{len}` is not in 0..{max}"))?;
        let host_mask = u128::MAX.checked_shr(len).unwrap_or(0);
        if bits & host_mask != 0 {
            return Err(format!("`{s}` has host bits set"));
        }
    }
    Ok(s.to_string())
}

const WELL_KNOWN_COMMUNITIES: [&str; 6] =
    ["no-export", "no-advertise", "no-export-subconfed", "no-peer", "blackhole", "graceful-shutdown"];

/// An RFC 1997 community: `ASN:VALUE` with 16-bit halves, a 32-bit decimal, or a well-known name.
fn parse_community(s: &str) -> Result<String, String> {
    let ok = match s.split_once(':') {
        Some((asn, value)) => decimal::<u16>(asn).is_some() && decimal::<u16>(value).is_some(),
        None => decimal::<u32>(s).is_some() || WELL_KNOWN_COMMUNITIES.contains(&s),
    };
    if ok {
        Ok(s.to_string())
    } else {
        Err(format!(
            "`{s}` is not ASN:VALUE (16 bits each), a 32-bit number, or one of {}",
            WELL_KNOWN_COMMUNITIES.join(", ")
        ))
    }
}

/// An RFC 8092 large community: `GLOBAL:LOCAL1:LOCAL2`, three 32-bit decimals.
fn parse_large_community(s: &str) -> Result<String, String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() == 3 && parts.iter().all(|p| decimal::<u32>(p).is_some()) {
        Ok(s.to_string())
    } else {
        Err(format!("`{s}` is not GLOBAL:LOCAL1:LOCAL2 (three 32-bit numbers)"))
    }
}

/// An owner: 1..64 characters of `[A-Za-z0-9._:/-]`.
fn parse_owner(s: &str) -> Result<String, String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || "._:/-".contains(c);
    if (1..=64).contains(&s.len()) && s.chars().all(valid) {
        Ok(s.to_string())
    } else {
        Err("must be 1..64 characters of A-Z a-z 0-9 . _ : / -".into())
    }
}

/// JSON/YAML of `announce withdraw`: the WithdrawResponse.
#[derive(Debug, Serialize)]
struct WithdrawView {
    removed: u32,
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}es")
    }
}

pub async fn run(
    client: &mut Client,
    command: AnnounceCommand,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CmdError> {
    let text = match command {
        AnnounceCommand::Add(args) => {
            let request = args.to_request();
            let n = request.announcements.len();
            client.announce(request).await?;
            render(&EmptyView {}, format, |_| format!("announced {} as owner {}", count(n, "prefix"), args.owner))?
        }
        AnnounceCommand::Withdraw { prefixes, owner } => {
            let n = prefixes.len();
            let request = WithdrawRequest { owner: owner.clone(), prefixes };
            let removed = client.withdraw(request).await?.into_inner().removed;
            render(&WithdrawView { removed }, format, |v| {
                format!("withdrew {} of {} as owner {owner}", v.removed, count(n, "prefix"))
            })?
        }
        AnnounceCommand::List { owner } => {
            let request = ListAnnouncementsRequest { owner: owner.unwrap_or_default() };
            let announcements = client.list_announcements(request).await?.into_inner().announcements;
            let views: Vec<AnnouncementView> = announcements.iter().map(AnnouncementView::from).collect();
            render(&views, format, |v| announcement_table(v))?
        }
    };
    write_all(out, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<AnnounceCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("speakerctl").chain(args.iter().copied()))?;
        match cli.command {
            Command::Announce(c) => Ok(c),
            other => panic!("not an announce command: {other:?}"),
        }
    }

    #[test]
    fn announce_add_with_every_flag_builds_one_announcement_per_prefix() {
        let AnnounceCommand::Add(args) = parse(&[
            "announce",
            "add",
            "203.0.113.10/32",
            "2001:db8::/48",
            "--community",
            "65000:100",
            "--community",
            "no-export",
            "--large-community",
            "65000:1:2",
            "--local-pref",
            "200",
            "--med",
            "10",
            "--peer",
            "192.0.2.1",
            "--peer",
            "tor2",
            "--owner",
            "lb/web",
        ])
        .unwrap() else {
            panic!("not add")
        };
        let attrs = |prefix: &str| Announcement {
            prefix: prefix.into(),
            communities: vec!["65000:100".into(), "no-export".into()],
            large_communities: vec!["65000:1:2".into()],
            local_pref: Some(200),
            med: Some(10),
            peers: vec!["192.0.2.1".into(), "tor2".into()],
            owner: String::new(),
        };
        assert_eq!(
            args.to_request(),
            AnnounceRequest {
                owner: "lb/web".into(),
                announcements: vec![attrs("203.0.113.10/32"), attrs("2001:db8::/48")]
            }
        );
    }

    #[test]
    fn announce_add_defaults_to_owner_speakerctl_and_no_attributes() {
        let AnnounceCommand::Add(args) = parse(&["announce", "add", "198.51.100.7"]).unwrap() else {
            panic!("not add")
        };
        let request = args.to_request();
        assert_eq!(request.owner, "speakerctl");
        assert_eq!(request.announcements, vec![Announcement { prefix: "198.51.100.7".into(), ..Default::default() }]);
    }

    #[test]
    fn withdraw_and_list_owners() {
        match parse(&["announce", "withdraw", "203.0.113.10/32", "203.0.113.11/32"]).unwrap() {
            AnnounceCommand::Withdraw { prefixes, owner } => {
                assert_eq!(prefixes, ["203.0.113.10/32", "203.0.113.11/32"]);
                assert_eq!(owner, "speakerctl");
            }
            other => panic!("{other:?}"),
        }
        match parse(&["announce", "list"]).unwrap() {
            AnnounceCommand::List { owner } => assert_eq!(owner, None),
            other => panic!("{other:?}"),
        }
        match parse(&["announce", "list", "--owner", "k8s-bridge"]).unwrap() {
            AnnounceCommand::List { owner } => assert_eq!(owner.as_deref(), Some("k8s-bridge")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn prefixes_follow_the_proto_format() {
        for ok in
            ["203.0.113.10/32", "203.0.113.10", "0.0.0.0/0", "10.0.0.0/8", "2001:db8::10/128", "::/0", "2001:db8::"]
        {
            assert_eq!(parse_prefix(ok).as_deref(), Ok(ok), "{ok}");
        }
        for bad in [
            "",
            "10.0.0.1/8",
            "10.0.0.0/33",
            "2001:db8::1/64",
            "2001:db8::/129",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "10.0.0.0/+8",
            "example.com/32",
            "10.0.0.0/8/8",
        ] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn communities_follow_the_proto_format() {
        for ok in ["65000:100", "0:0", "65535:65535", "4294967295", "no-export", "graceful-shutdown", "blackhole"] {
            assert!(parse_community(ok).is_ok(), "{ok}");
        }
        for bad in ["65536:1", "1:65536", "+1:2", "+7", "4294967296", "no_export", "1:2:3", "", "a:b"] {
            assert!(parse_community(bad).is_err(), "{bad}");
        }
        assert!(parse_large_community("4294967295:0:1").is_ok());
        for bad in ["1:2", "1:2:3:4", "4294967296:0:0", "a:b:c", ""] {
            assert!(parse_large_community(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn owners_follow_the_proto_format() {
        assert!(parse_owner("k8s-bridge").is_ok());
        assert!(parse_owner("ns/svc:80_a.b").is_ok());
        assert!(parse_owner(&"a".repeat(64)).is_ok());
        for bad in ["", "has space", "é", &"a".repeat(65)] {
            assert!(parse_owner(bad).is_err(), "{bad}");
        }
        assert!(parse(&["announce", "add", "10.0.0.0/8", "--owner", ""]).is_err());
    }

    #[test]
    fn announce_needs_a_prefix() {
        assert!(parse(&["announce", "add"]).is_err());
        assert!(parse(&["announce", "withdraw"]).is_err());
        assert!(parse(&["announce", "add", "10.0.0.1/8"]).is_err());
    }
}
