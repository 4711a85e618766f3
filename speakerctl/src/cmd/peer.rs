//! `speakerctl peer …`: list, show, add, update, delete and reset BGP peers.
//!
//! `add` and `update` build a complete `PeerConfig` from the flags (`to_peer_config`, pure); `update`
//! replaces the peer's whole config, so a flag left out goes back to its default. Validation here is
//! only what the proto documents as a range; speakerd remains the judge of everything else.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use clap::builder::NonEmptyStringValueParser;
use clap::{value_parser, Args, Subcommand, ValueEnum};
use serde::Serialize;
use speaker_api::v1::{
    AddPeerRequest, AddressFamily, DeletePeerRequest, GetPeerRequest, GracefulRestart, ListPeersRequest, PeerConfig,
    ResetPeerRequest, UpdatePeerRequest,
};

use crate::cmd::{write_all, Client, CmdError};
use crate::output::{peer_block, peer_table, render, EmptyView, Format, PeerView};

#[derive(Debug, Subcommand)]
pub enum PeerCommand {
    /// List every configured peer with its session state, ordered by address.
    List,
    /// Show one peer: config, state, negotiated capabilities, counters and last notifications.
    Show {
        /// The peer's address or name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,
    },
    /// Add a peer; the session starts at once.
    Add(PeerConfigArgs),
    /// Replace a peer's whole config (flags left out take their defaults). Some changes reset the session.
    Update(PeerConfigArgs),
    /// Delete a peer (a Cease/Peer De-configured NOTIFICATION is sent if the session is up).
    Delete {
        /// The peer's address or name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,
    },
    /// Reset a peer's session (Cease/Administrative Reset), or with --soft re-send announcements.
    Reset {
        /// The peer's address or name.
        #[arg(value_parser = NonEmptyStringValueParser::new())]
        peer: String,
        /// Re-send every announcement (and ask for a ROUTE-REFRESH) without dropping the session.
        #[arg(long)]
        soft: bool,
    },
}

/// A kind for `--dynamic-asn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DynamicAsnArg {
    /// The peer is in our AS (iBGP).
    Internal,
    /// The peer is in another AS, whichever (eBGP).
    External,
}

/// An address family for `--family`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FamilyArg {
    /// IPv4 unicast.
    Ipv4,
    /// IPv6 unicast.
    Ipv6,
}

impl From<FamilyArg> for AddressFamily {
    fn from(f: FamilyArg) -> Self {
        match f {
            FamilyArg::Ipv4 => Self::Ipv4Unicast,
            FamilyArg::Ipv6 => Self::Ipv6Unicast,
        }
    }
}

/// The flags of `peer add` and `peer update`: one flag per `PeerConfig` field.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct PeerConfigArgs {
    /// The peer's IPv4 or IPv6 address.
    pub address: IpAddr,
    /// The peer's AS number (1..4294967295). Required unless --dynamic-asn is given.
    #[arg(long, value_name = "N", value_parser = value_parser!(u32).range(1..), required_unless_present = "dynamic_asn", conflicts_with = "dynamic_asn")]
    pub asn: Option<u32>,
    /// Take the peer's AS from its OPEN (MetalLB's dynamicASN): internal (our AS) or external (any other).
    #[arg(long, value_enum, value_name = "KIND")]
    pub dynamic_asn: Option<DynamicAsnArg>,
    /// Our AS number towards this peer. Default: speakerd's --local-asn.
    #[arg(long, value_name = "N", value_parser = value_parser!(u32).range(1..))]
    pub local_asn: Option<u32>,
    /// A label for humans, unique among peers. Default: the address.
    #[arg(long)]
    pub name: Option<String>,
    /// The peer's TCP port. Default: 179.
    #[arg(long, value_name = "N", value_parser = value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Our BGP Identifier towards this peer. Default: speakerd's --router-id.
    #[arg(long, value_name = "IP")]
    pub router_id: Option<Ipv4Addr>,
    /// The local address to connect from. Default: chosen by route.
    #[arg(long, value_name = "IP")]
    pub source_address: Option<IpAddr>,
    /// Hold time we offer, in seconds: 0 or 3..65535. Default: 90.
    #[arg(long, value_name = "S", value_parser = parse_hold_time)]
    pub hold_time: Option<u32>,
    /// Keepalive interval in seconds. Default: a third of the negotiated hold time.
    #[arg(long, value_name = "S")]
    pub keepalive_time: Option<u32>,
    /// Seconds between connection attempts. Default: 5.
    #[arg(long, value_name = "S")]
    pub connect_time: Option<u32>,
    /// TCP-MD5 password (RFC 2385), at most 80 bytes.
    #[arg(long, value_name = "PW", value_parser = parse_password)]
    pub password: Option<String>,
    /// eBGP multihop: the TTL of our packets, 1..255. Default: 1 for eBGP, 64 for iBGP.
    #[arg(long, value_name = "TTL", value_parser = value_parser!(u8).range(1..))]
    pub ebgp_multihop: Option<u8>,
    /// Never connect; only accept the peer's connections.
    #[arg(long)]
    pub passive: bool,
    /// GTSM (RFC 5082) for a directly connected eBGP peer: TTL 255 out, only TTL 255 accepted.
    #[arg(long, conflicts_with = "ebgp_multihop")]
    pub gtsm: bool,
    /// Past --max-received-prefixes: Cease (RFC 4486) and stay down until `peer reset`, instead of
    /// dropping the excess.
    #[arg(long)]
    pub cease_on_max_prefixes: bool,
    /// Enable graceful restart (RFC 4724).
    #[arg(long)]
    pub graceful_restart: bool,
    /// Restart Time of graceful restart in seconds, 0..4095. Default: 120.
    #[arg(long, value_name = "S", requires = "graceful_restart", value_parser = value_parser!(u16).range(0..=4095))]
    pub restart_time: Option<u16>,
    /// An address family to negotiate; repeat for several. Default: ipv4 and ipv6.
    #[arg(long, value_enum, value_name = "FAMILY")]
    pub family: Vec<FamilyArg>,
    /// Next hop of IPv4 routes sent to this peer. Default: automatic.
    #[arg(long, value_name = "IP")]
    pub next_hop_ipv4: Option<Ipv4Addr>,
    /// Next hop of IPv6 routes sent to this peer. Default: automatic.
    #[arg(long, value_name = "IP")]
    pub next_hop_ipv6: Option<Ipv6Addr>,
    /// Received prefixes kept per family. Default: 1000000.
    #[arg(long, value_name = "N")]
    pub max_received_prefixes: Option<u32>,
    /// Enable BFD for the session (MetalLB BFDProfile defaults: 300 ms, multiplier 3).
    #[arg(long)]
    pub bfd: bool,
    /// BFD Required Min RX Interval, milliseconds (10..60000).
    #[arg(long, value_name = "MS", requires = "bfd")]
    pub bfd_receive_interval: Option<u32>,
    /// BFD Desired Min TX Interval, milliseconds (10..60000).
    #[arg(long, value_name = "MS", requires = "bfd")]
    pub bfd_transmit_interval: Option<u32>,
    /// BFD Detect Mult (2..255).
    #[arg(long, value_name = "N", requires = "bfd")]
    pub bfd_detect_multiplier: Option<u32>,
    /// BFD passive mode: wait for the peer to send first.
    #[arg(long, requires = "bfd")]
    pub bfd_passive: bool,
    /// Multihop BFD: the lowest TTL accepted (1..255).
    #[arg(long, value_name = "TTL", requires = "bfd")]
    pub bfd_minimum_ttl: Option<u32>,
    /// BFD authentication: keyed-sha1 or meticulous-keyed-sha1 (needs --bfd-auth-password).
    #[arg(long, value_name = "TYPE", requires = "bfd_auth_password", value_parser = ["keyed-sha1", "meticulous-keyed-sha1"])]
    pub bfd_auth_type: Option<String>,
    /// BFD Auth Key ID (0..255).
    #[arg(long, value_name = "N", requires = "bfd_auth_type")]
    pub bfd_auth_key_id: Option<u32>,
    /// BFD authentication key, 1..20 bytes.
    #[arg(long, value_name = "KEY", requires = "bfd_auth_type")]
    pub bfd_auth_password: Option<String>,
}

/// RFC 4271 §4.2: the Hold Time MUST be either zero or at least three seconds.
fn parse_hold_time(s: &str) -> Result<u32, String> {
    let v: u16 = s.parse().map_err(|_| format!("`{s}` is not a number of seconds in 0..65535"))?;
    match v {
        1 | 2 => Err("must be 0 or 3..65535 seconds (RFC 4271 §4.2)".into()),
        v => Ok(u32::from(v)),
    }
}

/// The kernel's TCP_MD5SIG_MAXKEYLEN is 80 bytes.
fn parse_password(s: &str) -> Result<String, String> {
    if s.len() > 80 {
        Err(format!("is {} bytes; TCP-MD5 keys are at most 80", s.len()))
    } else {
        Ok(s.to_string())
    }
}

impl PeerConfigArgs {
    /// The `PeerConfig` these flags describe; unset flags leave the field at its "default" value.
    pub fn to_peer_config(&self) -> PeerConfig {
        let mut families: Vec<i32> = Vec::new();
        for f in &self.family {
            let f = AddressFamily::from(*f) as i32;
            if !families.contains(&f) {
                families.push(f);
            }
        }
        let text = |v: Option<String>| v.unwrap_or_default();
        PeerConfig {
            name: text(self.name.clone()),
            owner: "speakerctl".into(),
            address: self.address.to_string(),
            port: self.port.map_or(0, u32::from),
            peer_asn: self.asn.unwrap_or(0),
            dynamic_asn: match self.dynamic_asn {
                None => speaker_api::v1::DynamicAsn::None,
                Some(DynamicAsnArg::Internal) => speaker_api::v1::DynamicAsn::Internal,
                Some(DynamicAsnArg::External) => speaker_api::v1::DynamicAsn::External,
            } as i32,
            local_asn: self.local_asn.unwrap_or(0),
            router_id: text(self.router_id.map(|ip| ip.to_string())),
            source_address: text(self.source_address.map(|ip| ip.to_string())),
            hold_time_secs: self.hold_time,
            keepalive_time_secs: self.keepalive_time,
            connect_time_secs: self.connect_time,
            password: text(self.password.clone()),
            ebgp_multihop_ttl: self.ebgp_multihop.map_or(0, u32::from),
            passive: self.passive,
            graceful_restart: self
                .graceful_restart
                .then(|| GracefulRestart { enabled: true, restart_time_secs: self.restart_time.map_or(0, u32::from) }),
            families,
            next_hop_ipv4: text(self.next_hop_ipv4.map(|ip| ip.to_string())),
            next_hop_ipv6: text(self.next_hop_ipv6.map(|ip| ip.to_string())),
            max_received_prefixes: self.max_received_prefixes,
            gtsm: self.gtsm,
            cease_on_max_received_prefixes: self.cease_on_max_prefixes,
            bfd: self.bfd.then(|| speaker_api::v1::BfdProfile {
                receive_interval_ms: self.bfd_receive_interval.unwrap_or(0),
                transmit_interval_ms: self.bfd_transmit_interval.unwrap_or(0),
                detect_multiplier: self.bfd_detect_multiplier.unwrap_or(0),
                echo_mode: false,
                passive_mode: self.bfd_passive,
                minimum_ttl: self.bfd_minimum_ttl.unwrap_or(0),
                auth_type: self.bfd_auth_type.clone().unwrap_or_default(),
                auth_key_id: self.bfd_auth_key_id.unwrap_or(0),
                auth_password: self.bfd_auth_password.clone().unwrap_or_default(),
            }),
        }
    }
}

/// JSON/YAML of `peer add`: the AddPeerResponse.
#[derive(Debug, Serialize)]
struct AddPeerView {
    peer: Option<PeerView>,
}

/// JSON/YAML of `peer update`: the UpdatePeerResponse.
#[derive(Debug, Serialize)]
struct UpdatePeerView {
    peer: Option<PeerView>,
    reset: bool,
}

pub async fn run(
    client: &mut Client,
    command: PeerCommand,
    format: Format,
    out: &mut dyn Write,
) -> Result<(), CmdError> {
    let text = match command {
        PeerCommand::List => {
            let peers = client.list_peers(ListPeersRequest {}).await?.into_inner().peers;
            let views: Vec<PeerView> = peers.iter().map(PeerView::from).collect();
            render(&views, format, |v| peer_table(v))?
        }
        PeerCommand::Show { peer } => {
            let response = client.get_peer(GetPeerRequest { peer }).await?.into_inner();
            let view = response
                .peer
                .as_ref()
                .map(PeerView::from)
                .ok_or_else(|| tonic::Status::internal("speakerd's GetPeerResponse has no peer"))?;
            render(&view, format, peer_block)?
        }
        PeerCommand::Add(args) => {
            let config = args.to_peer_config();
            let address = config.address.clone();
            let response = client.add_peer(AddPeerRequest { peer: Some(config) }).await?.into_inner();
            let view = AddPeerView { peer: response.peer.as_ref().map(PeerView::from) };
            render(&view, format, |_| format!("peer {address} added"))?
        }
        PeerCommand::Update(args) => {
            let config = args.to_peer_config();
            let address = config.address.clone();
            let response = client.update_peer(UpdatePeerRequest { peer: Some(config) }).await?.into_inner();
            let view = UpdatePeerView { peer: response.peer.as_ref().map(PeerView::from), reset: response.reset };
            render(&view, format, |v| {
                if v.reset {
                    format!("peer {address} updated; the session was reset")
                } else {
                    format!("peer {address} updated in place")
                }
            })?
        }
        PeerCommand::Delete { peer } => {
            client.delete_peer(DeletePeerRequest { peer: peer.clone() }).await?;
            render(&EmptyView {}, format, |_| format!("peer {peer} deleted"))?
        }
        PeerCommand::Reset { peer, soft } => {
            client.reset_peer(ResetPeerRequest { peer: peer.clone(), soft }).await?;
            render(&EmptyView {}, format, |_| {
                if soft {
                    format!("peer {peer} soft reset: announcements re-sent")
                } else {
                    format!("peer {peer} reset")
                }
            })?
        }
    };
    write_all(out, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    fn parse(args: &[&str]) -> Result<PeerCommand, clap::Error> {
        let cli = Cli::try_parse_from(std::iter::once("speakerctl").chain(args.iter().copied()))?;
        match cli.command {
            Command::Peer(c) => Ok(c),
            other => panic!("not a peer command: {other:?}"),
        }
    }

    fn add_config(args: &[&str]) -> PeerConfig {
        match parse(args).unwrap() {
            PeerCommand::Add(a) | PeerCommand::Update(a) => a.to_peer_config(),
            other => panic!("not add/update: {other:?}"),
        }
    }

    #[test]
    fn peer_add_with_every_flag_builds_the_full_peer_config() {
        let config = add_config(&[
            "peer",
            "add",
            "2001:db8::1",
            "--asn",
            "4200000000",
            "--local-asn",
            "65000",
            "--name",
            "tor1",
            "--port",
            "1179",
            "--router-id",
            "192.0.2.254",
            "--source-address",
            "2001:db8::2",
            "--hold-time",
            "30",
            "--keepalive-time",
            "10",
            "--connect-time",
            "7",
            "--password",
            "s3cret",
            "--ebgp-multihop",
            "2",
            "--passive",
            "--graceful-restart",
            "--restart-time",
            "300",
            "--family",
            "ipv6",
            "--family",
            "ipv4",
            "--next-hop-ipv4",
            "192.0.2.2",
            "--next-hop-ipv6",
            "2001:db8::2",
            "--max-received-prefixes",
            "5000",
            "--cease-on-max-prefixes",
            "--bfd",
            "--bfd-receive-interval",
            "100",
            "--bfd-transmit-interval",
            "150",
            "--bfd-detect-multiplier",
            "4",
            "--bfd-passive",
            "--bfd-minimum-ttl",
            "250",
        ]);
        let expected = PeerConfig {
            dynamic_asn: 0,
            name: "tor1".into(),
            owner: "speakerctl".into(),
            cease_on_max_received_prefixes: true,
            gtsm: false,
            address: "2001:db8::1".into(),
            port: 1179,
            peer_asn: 4_200_000_000,
            local_asn: 65000,
            router_id: "192.0.2.254".into(),
            source_address: "2001:db8::2".into(),
            hold_time_secs: Some(30),
            keepalive_time_secs: Some(10),
            connect_time_secs: Some(7),
            password: "s3cret".into(),
            ebgp_multihop_ttl: 2,
            passive: true,
            graceful_restart: Some(GracefulRestart { enabled: true, restart_time_secs: 300 }),
            families: vec![AddressFamily::Ipv6Unicast as i32, AddressFamily::Ipv4Unicast as i32],
            next_hop_ipv4: "192.0.2.2".into(),
            next_hop_ipv6: "2001:db8::2".into(),
            max_received_prefixes: Some(5000),
            bfd: Some(speaker_api::v1::BfdProfile {
                receive_interval_ms: 100,
                transmit_interval_ms: 150,
                detect_multiplier: 4,
                echo_mode: false,
                passive_mode: true,
                minimum_ttl: 250,
                auth_type: String::new(),
                auth_key_id: 0,
                auth_password: String::new(),
            }),
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn peer_add_with_only_asn_leaves_every_other_field_default() {
        let config = add_config(&["peer", "add", "192.0.2.1", "--asn", "65001"]);
        let expected = PeerConfig {
            address: "192.0.2.1".into(),
            peer_asn: 65001,
            owner: "speakerctl".into(),
            ..Default::default()
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn peer_update_takes_the_same_flags_as_add() {
        let config =
            add_config(&["peer", "update", "192.0.2.1", "--asn", "65001", "--hold-time", "0", "--graceful-restart"]);
        assert_eq!(config.hold_time_secs, Some(0));
        assert_eq!(config.graceful_restart, Some(GracefulRestart { enabled: true, restart_time_secs: 0 }));
    }

    #[test]
    fn repeated_family_is_sent_once() {
        let config = add_config(&["peer", "add", "192.0.2.1", "--asn", "1", "--family", "ipv4", "--family", "ipv4"]);
        assert_eq!(config.families, vec![AddressFamily::Ipv4Unicast as i32]);
    }

    #[test]
    fn address_is_sent_in_canonical_form() {
        let config = add_config(&["peer", "add", "2001:DB8:0::1", "--asn", "1"]);
        assert_eq!(config.address, "2001:db8::1");
    }

    #[test]
    fn bad_peer_flags_are_rejected_by_clap() {
        for args in [
            &["peer", "add", "192.0.2.1"][..],                    // --asn missing
            &["peer", "add", "192.0.2.1", "--asn", "0"],          // ASN 0
            &["peer", "add", "192.0.2.1", "--asn", "4294967296"], // ASN > 32 bits
            &["peer", "add", "192.0.2.1", "--asn", "-5"],
            &["peer", "add", "not-an-ip", "--asn", "1"],
            &["peer", "add", "192.0.2.1/32", "--asn", "1"],
            &["peer", "add", "192.0.2.1", "--asn", "1", "--hold-time", "2"], // RFC 4271 §4.2
            &["peer", "add", "192.0.2.1", "--asn", "1", "--hold-time", "65536"],
            &["peer", "add", "192.0.2.1", "--asn", "1", "--router-id", "2001:db8::1"],
            &["peer", "add", "192.0.2.1", "--asn", "1", "--next-hop-ipv6", "192.0.2.1"],
            &["peer", "add", "192.0.2.1", "--asn", "1", "--port", "0"],
            &["peer", "add", "192.0.2.1", "--asn", "1", "--ebgp-multihop", "256"],
            &["peer", "add", "192.0.2.1", "--asn", "1", "--family", "ipv5"],
            &["peer", "add", "192.0.2.1", "--asn", "1", "--restart-time", "60"], // needs --graceful-restart
            &["peer", "add", "192.0.2.1", "--asn", "1", "--graceful-restart", "--restart-time", "4096"],
            &["peer", "show"],
            &["peer", "delete", ""],
        ] {
            assert!(parse(args).is_err(), "accepted {args:?}");
        }
        let long = "x".repeat(81);
        assert!(parse(&["peer", "add", "192.0.2.1", "--asn", "1", "--password", &long]).is_err());
        assert!(parse(&["peer", "add", "192.0.2.1", "--asn", "1", "--password", &long[..80]]).is_ok());
    }

    #[test]
    fn reset_soft_flag_is_parsed() {
        match parse(&["peer", "reset", "tor1", "--soft"]).unwrap() {
            PeerCommand::Reset { peer, soft } => assert_eq!((peer.as_str(), soft), ("tor1", true)),
            other => panic!("{other:?}"),
        }
    }
}
