//! Rendering of API messages as aligned tables, key: value blocks, JSON or YAML.
//!
//! JSON and YAML come from the serde "view" structs below, never from the generated types: the views fix
//! the field names (the proto field names, snake_case), spell enums as short lowercase words
//! ("established", "ipv4", "added") and keep proto3 presence (`null` for an unset optional field or
//! message). Everything here is pure: it builds strings and does no I/O.

use std::fmt::Write as _;

use serde::Serialize;
use speaker_api::v1::{
    announcement_event, watch_event, AddressFamily, Announcement, GracefulRestart, Negotiated, Notification, Peer,
    PeerConfig, PeerEvent, PeerState, SessionState, WatchEvent,
};

use crate::cmd::CmdError;

pub mod l2;
pub use l2::{l2_table, members_table, L2View, MembersView, OwnerView};

/// The `-o` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns or key: value blocks for people.
    Table,
    /// JSON (one object per line for `watch`).
    Json,
    /// YAML (one document per event for `watch`).
    Yaml,
}

/// `value` as pretty JSON or YAML, or as `table(value)` for the table format. The result ends in a newline.
pub fn render<T: Serialize>(value: &T, format: Format, table: impl FnOnce(&T) -> String) -> Result<String, CmdError> {
    let mut text = match format {
        Format::Table => table(value),
        Format::Json => serde_json::to_string_pretty(value).map_err(|e| CmdError::Encode(e.to_string()))?,
        Format::Yaml => serde_yaml::to_string(value).map_err(|e| CmdError::Encode(e.to_string()))?,
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

// ---------------------------------------------------------------------------------------------------
// Enum names

/// The JSON spelling of a session state: "idle", …, "established".
pub fn state_json(state: i32) -> String {
    match SessionState::try_from(state) {
        Ok(SessionState::Unspecified) => "unspecified".into(),
        Ok(SessionState::Idle) => "idle".into(),
        Ok(SessionState::Connect) => "connect".into(),
        Ok(SessionState::Active) => "active".into(),
        Ok(SessionState::OpenSent) => "opensent".into(),
        Ok(SessionState::OpenConfirm) => "openconfirm".into(),
        Ok(SessionState::Established) => "established".into(),
        Err(_) => format!("unknown({state})"),
    }
}

/// An address family as the `--family` flag spells it: "ipv4", "ipv6".
pub fn family_name(family: i32) -> String {
    match AddressFamily::try_from(family) {
        Ok(AddressFamily::Unspecified) => "unspecified".into(),
        Ok(AddressFamily::Ipv4Unicast) => "ipv4".into(),
        Ok(AddressFamily::Ipv6Unicast) => "ipv6".into(),
        Err(_) => format!("unknown({family})"),
    }
}

fn family_names(families: &[i32]) -> Vec<String> {
    families.iter().map(|&f| family_name(f)).collect()
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

// ---------------------------------------------------------------------------------------------------
// Views

/// A peer for JSON/YAML: identity and state summary at the top, then the config, the negotiated session
/// and the counters of `PeerState` (flattened, since `state` is the state's name).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerView {
    pub address: String,
    pub name: String,
    pub peer_asn: u32,
    pub local_asn: u32,
    pub state: String,
    pub state_secs: u64,
    /// Received prefixes summed over the families.
    pub received: u64,
    /// Advertised prefixes summed over the families.
    pub advertised: u64,
    pub config: PeerConfigView,
    /// `None` (null) unless Established.
    pub negotiated: Option<NegotiatedView>,
    pub counts: Vec<FamilyCountsView>,
    pub dropped_prefixes: u64,
    pub updates_received: u64,
    pub updates_sent: u64,
    pub keepalives_received: u64,
    pub keepalives_sent: u64,
    pub notifications_received: u64,
    pub notifications_sent: u64,
    pub updates_treated_as_withdraw: u64,
    pub attributes_discarded: u64,
    pub established_count: u64,
    pub dropped_count: u64,
    pub last_notification_sent: Option<NotificationView>,
    pub last_notification_received: Option<NotificationView>,
    pub last_error: String,
    /// `None` (null) unless the peer has a BFD profile.
    pub bfd: Option<BfdView>,
}

/// A peer's BFD session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BfdView {
    pub state: String,
    pub remote_state: String,
    pub diagnostic: u32,
    pub local_discriminator: u32,
    pub remote_discriminator: u32,
    pub tx_interval_ms: u32,
    pub detect_time_ms: u32,
    pub state_changes: u64,
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
pub struct PeerConfigView {
    pub name: String,
    pub address: String,
    pub port: u32,
    pub peer_asn: u32,
    /// "internal" or "external" for a dynamic ASN, else absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dynamic_asn: Option<&'static str>,
    pub local_asn: u32,
    pub router_id: String,
    pub source_address: String,
    pub hold_time_secs: Option<u32>,
    pub keepalive_time_secs: Option<u32>,
    pub connect_time_secs: Option<u32>,
    pub password: String,
    pub ebgp_multihop_ttl: u32,
    pub passive: bool,
    pub graceful_restart: Option<GracefulRestartView>,
    pub families: Vec<String>,
    pub next_hop_ipv4: String,
    pub next_hop_ipv6: String,
    pub max_received_prefixes: Option<u32>,
    pub cease_on_max_received_prefixes: bool,
    pub gtsm: bool,
    /// Who manages the peer (speakerctl, k8s-bridge, config-file, gobgp-api, ...).
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GracefulRestartView {
    pub enabled: bool,
    pub restart_time_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NegotiatedView {
    pub hold_time_secs: u32,
    pub keepalive_time_secs: u32,
    pub families: Vec<String>,
    pub four_octet_asn: bool,
    pub route_refresh: bool,
    pub graceful_restart: bool,
    pub extended_next_hop: Vec<String>,
    pub peer_router_id: String,
    pub local_address: String,
    pub local_port: u32,
    pub remote_port: u32,
    pub peer_asn: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyCountsView {
    pub family: String,
    pub received: u64,
    pub advertised: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationView {
    pub code: u32,
    pub subcode: u32,
    pub description: String,
    pub data_hex: String,
}

impl From<&GracefulRestart> for GracefulRestartView {
    fn from(g: &GracefulRestart) -> Self {
        Self { enabled: g.enabled, restart_time_secs: g.restart_time_secs }
    }
}

impl From<&PeerConfig> for PeerConfigView {
    fn from(c: &PeerConfig) -> Self {
        Self {
            name: c.name.clone(),
            address: c.address.clone(),
            port: c.port,
            peer_asn: c.peer_asn,
            dynamic_asn: match speaker_api::v1::DynamicAsn::try_from(c.dynamic_asn) {
                Ok(speaker_api::v1::DynamicAsn::Internal) => Some("internal"),
                Ok(speaker_api::v1::DynamicAsn::External) => Some("external"),
                _ => None,
            },
            local_asn: c.local_asn,
            router_id: c.router_id.clone(),
            source_address: c.source_address.clone(),
            hold_time_secs: c.hold_time_secs,
            keepalive_time_secs: c.keepalive_time_secs,
            connect_time_secs: c.connect_time_secs,
            password: c.password.clone(),
            ebgp_multihop_ttl: c.ebgp_multihop_ttl,
            passive: c.passive,
            graceful_restart: c.graceful_restart.as_ref().map(GracefulRestartView::from),
            families: family_names(&c.families),
            next_hop_ipv4: c.next_hop_ipv4.clone(),
            next_hop_ipv6: c.next_hop_ipv6.clone(),
            max_received_prefixes: c.max_received_prefixes,
            cease_on_max_received_prefixes: c.cease_on_max_received_prefixes,
            gtsm: c.gtsm,
            owner: c.owner.clone(),
        }
    }
}

impl From<&Negotiated> for NegotiatedView {
    fn from(n: &Negotiated) -> Self {
        Self {
            hold_time_secs: n.hold_time_secs,
            keepalive_time_secs: n.keepalive_time_secs,
            families: family_names(&n.families),
            four_octet_asn: n.four_octet_asn,
            route_refresh: n.route_refresh,
            graceful_restart: n.graceful_restart,
            extended_next_hop: family_names(&n.extended_next_hop),
            peer_router_id: n.peer_router_id.clone(),
            local_address: n.local_address.clone(),
            local_port: n.local_port,
            remote_port: n.remote_port,
            peer_asn: n.peer_asn,
        }
    }
}

impl From<&Notification> for NotificationView {
    fn from(n: &Notification) -> Self {
        Self { code: n.code, subcode: n.subcode, description: n.description.clone(), data_hex: n.data_hex.clone() }
    }
}

impl From<&Peer> for PeerView {
    fn from(p: &Peer) -> Self {
        let config = p.config.clone().unwrap_or_default();
        let st = p.state.clone().unwrap_or_default();
        Self::new(&config, &st)
    }
}

impl PeerView {
    fn new(c: &PeerConfig, s: &PeerState) -> Self {
        Self {
            address: c.address.clone(),
            name: c.name.clone(),
            // A dynamic ASN shows the AS the peer's OPEN carried (0 until the session is up).
            peer_asn: if c.peer_asn == 0 { s.negotiated.as_ref().map_or(0, |n| n.peer_asn) } else { c.peer_asn },
            local_asn: c.local_asn,
            state: state_json(s.state),
            state_secs: s.state_secs,
            received: s.counts.iter().map(|c| c.received).fold(0, u64::saturating_add),
            advertised: s.counts.iter().map(|c| c.advertised).fold(0, u64::saturating_add),
            config: PeerConfigView::from(c),
            negotiated: s.negotiated.as_ref().map(NegotiatedView::from),
            counts: s
                .counts
                .iter()
                .map(|c| FamilyCountsView {
                    family: family_name(c.family),
                    received: c.received,
                    advertised: c.advertised,
                })
                .collect(),
            dropped_prefixes: s.dropped_prefixes,
            updates_received: s.updates_received,
            updates_sent: s.updates_sent,
            keepalives_received: s.keepalives_received,
            keepalives_sent: s.keepalives_sent,
            notifications_received: s.notifications_received,
            notifications_sent: s.notifications_sent,
            updates_treated_as_withdraw: s.updates_treated_as_withdraw,
            attributes_discarded: s.attributes_discarded,
            established_count: s.established_count,
            dropped_count: s.dropped_count,
            last_notification_sent: s.last_notification_sent.as_ref().map(NotificationView::from),
            last_notification_received: s.last_notification_received.as_ref().map(NotificationView::from),
            last_error: s.last_error.clone(),
            bfd: s.bfd.as_ref().map(|b| BfdView {
                state: b.state.clone(),
                remote_state: b.remote_state.clone(),
                diagnostic: b.diagnostic,
                local_discriminator: b.local_discriminator,
                remote_discriminator: b.remote_discriminator,
                tx_interval_ms: b.tx_interval_ms,
                detect_time_ms: b.detect_time_ms,
                state_changes: b.state_changes,
            }),
        }
    }

    fn is_established(&self) -> bool {
        self.state == "established"
    }

    /// The Up/Down column: time in the current state, or "never" if the session never came up.
    fn up_down(&self) -> String {
        if !self.is_established() && self.established_count == 0 {
            "never".into()
        } else {
            format_duration(self.state_secs)
        }
    }
}

/// JSON/YAML of a call whose response is empty: `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmptyView {}

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

// ---------------------------------------------------------------------------------------------------
// Tables

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A hand-rolled table: columns separated by two spaces, padded to the widest cell, no trailing blanks.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Self { columns: columns.to_vec(), rows: Vec::new() }
    }

    /// Adds a row; missing cells are empty and extra cells are dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (h, _))| self.rows.iter().map(|r| width(&r[i])).fold(width(h), usize::max))
            .collect();
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.to_string()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - width(cell));
                match self.columns[i].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for an empty cell, so that every column of a table holds a word (for `awk` and people alike).
fn cell(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

fn list_cell(items: &[String]) -> String {
    cell(&items.join(","))
}

fn opt_cell(v: Option<u32>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// `peer list`: the columns of `gobgp neighbor`.
pub fn peer_table(peers: &[PeerView]) -> String {
    let mut t = Table::new(&[
        ("Peer", Align::Left),
        ("Name", Align::Left),
        ("AS", Align::Right),
        ("Up/Down", Align::Right),
        ("State", Align::Left),
        ("#Received", Align::Right),
        ("#Advertised", Align::Right),
    ]);
    for p in peers {
        t.row(vec![
            cell(&p.address),
            cell(&p.name),
            p.peer_asn.to_string(),
            p.up_down(),
            state_table_from_json(&p.state),
            p.received.to_string(),
            p.advertised.to_string(),
        ]);
    }
    t.render()
}

/// The table spelling of a state (RFC 4271 §8.2.2 names: "Idle", …, "Established") from its JSON spelling.
fn state_table_from_json(state: &str) -> String {
    let known = [
        ("unspecified", "Unspecified"),
        ("idle", "Idle"),
        ("connect", "Connect"),
        ("active", "Active"),
        ("opensent", "OpenSent"),
        ("openconfirm", "OpenConfirm"),
        ("established", "Established"),
    ];
    known.iter().find(|(j, _)| *j == state).map_or_else(|| state.to_string(), |(_, t)| t.to_string())
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

// ---------------------------------------------------------------------------------------------------
// Key: value blocks

/// Lines of `section` headings and indented `key: value` pairs whose values line up across the block.
#[derive(Debug, Default)]
struct KvBlock {
    lines: Vec<(Option<String>, String)>,
}

impl KvBlock {
    fn section(&mut self, title: &str) {
        self.lines.push((None, format!("{title}:")));
    }
    fn kv(&mut self, key: &str, value: impl Into<String>) {
        self.lines.push((Some(key.to_string()), value.into()));
    }
    fn render(&self) -> String {
        let width = self.lines.iter().filter_map(|(k, _)| k.as_ref()).map(|k| k.chars().count()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in &self.lines {
            match key {
                None => {
                    let _ = writeln!(out, "{value}");
                }
                Some(key) => {
                    let line = format!("  {:<w$}  {value}", format!("{key}:"), w = width + 1);
                    out.push_str(line.trim_end());
                    out.push('\n');
                }
            }
        }
        out
    }
}

fn or_default(value: &str, default: &str) -> String {
    if value.is_empty() {
        format!("default ({default})")
    } else {
        value.to_string()
    }
}

fn opt_or_default(value: Option<u32>, default: &str) -> String {
    value.map_or_else(|| format!("default ({default})"), |v| v.to_string())
}

fn notification_text(n: &Option<NotificationView>) -> String {
    match n {
        None => "none".into(),
        Some(n) => {
            let mut s = format!("{}/{}", n.code, n.subcode);
            if !n.description.is_empty() {
                let _ = write!(s, " {}", n.description);
            }
            if !n.data_hex.is_empty() {
                let _ = write!(s, " (data {})", n.data_hex);
            }
            s
        }
    }
}

/// `peer show`: config, state, negotiated capabilities, counters, last notifications and last error.
pub fn peer_block(p: &PeerView) -> String {
    let c = &p.config;
    let mut b = KvBlock::default();
    b.section(&format!(
        "Peer {}",
        if p.name.is_empty() || p.name == p.address {
            p.address.clone()
        } else {
            format!("{} ({})", p.address, p.name)
        }
    ));
    b.kv("state", state_table_from_json(&p.state));
    b.kv("state_secs", format!("{} ({})", p.state_secs, format_duration(p.state_secs)));
    b.kv("last_error", cell(&p.last_error));
    if let Some(bfd) = &p.bfd {
        b.kv(
            "bfd",
            format!(
                "{} (remote {}), tx {} ms, detect {} ms, diag {}, discriminators {}/{}, {} changes",
                bfd.state,
                bfd.remote_state,
                bfd.tx_interval_ms,
                bfd.detect_time_ms,
                bfd.diagnostic,
                bfd.local_discriminator,
                bfd.remote_discriminator,
                bfd.state_changes
            ),
        );
    }

    b.section("Config");
    b.kv("name", or_default(&c.name, "the address"));
    b.kv("address", c.address.clone());
    b.kv("port", if c.port == 0 { "default (179)".into() } else { c.port.to_string() });
    b.kv("peer_asn", c.peer_asn.to_string());
    b.kv("local_asn", if c.local_asn == 0 { "default (speakerd --local-asn)".into() } else { c.local_asn.to_string() });
    b.kv("router_id", or_default(&c.router_id, "speakerd --router-id"));
    b.kv("source_address", or_default(&c.source_address, "chosen by route"));
    b.kv("hold_time_secs", opt_or_default(c.hold_time_secs, "90"));
    b.kv("keepalive_time_secs", opt_or_default(c.keepalive_time_secs, "a third of the hold time"));
    b.kv("connect_time_secs", opt_or_default(c.connect_time_secs, "5"));
    // Never echo the TCP-MD5 key on a terminal; `-o json` carries whatever speakerd returns.
    b.kv("password", if c.password.is_empty() { "none" } else { "(set)" });
    b.kv(
        "ebgp_multihop_ttl",
        if c.ebgp_multihop_ttl == 0 {
            "default (1 for eBGP, 64 for iBGP)".into()
        } else {
            c.ebgp_multihop_ttl.to_string()
        },
    );
    b.kv("passive", c.passive.to_string());
    match &c.graceful_restart {
        Some(g) if g.enabled => {
            b.kv("graceful_restart", "enabled");
            b.kv(
                "restart_time_secs",
                if g.restart_time_secs == 0 { "default (120)".into() } else { g.restart_time_secs.to_string() },
            );
        }
        _ => b.kv("graceful_restart", "disabled"),
    }
    b.kv("families", if c.families.is_empty() { "default (ipv4, ipv6)".into() } else { c.families.join(", ") });
    b.kv("next_hop_ipv4", or_default(&c.next_hop_ipv4, "automatic"));
    b.kv("next_hop_ipv6", or_default(&c.next_hop_ipv6, "automatic"));
    b.kv("max_received_prefixes", opt_or_default(c.max_received_prefixes, "1000000"));

    b.section("Negotiated");
    match &p.negotiated {
        None => b.kv("session", "not established"),
        Some(n) => {
            b.kv("peer_asn", n.peer_asn.to_string());
            b.kv("peer_router_id", cell(&n.peer_router_id));
            b.kv("local_address", format!("{} port {}", cell(&n.local_address), n.local_port));
            b.kv("remote_port", n.remote_port.to_string());
            b.kv("hold_time_secs", n.hold_time_secs.to_string());
            b.kv("keepalive_time_secs", n.keepalive_time_secs.to_string());
            b.kv("families", list_cell(&n.families).replace(',', ", "));
            b.kv("four_octet_asn", n.four_octet_asn.to_string());
            b.kv("route_refresh", n.route_refresh.to_string());
            b.kv("graceful_restart", n.graceful_restart.to_string());
            b.kv("extended_next_hop", list_cell(&n.extended_next_hop).replace(',', ", "));
        }
    }

    b.section("Counters");
    for f in &p.counts {
        b.kv(&format!("{} received", f.family), f.received.to_string());
        b.kv(&format!("{} advertised", f.family), f.advertised.to_string());
    }
    b.kv("dropped_prefixes", p.dropped_prefixes.to_string());
    b.kv("updates", format!("{} received, {} sent", p.updates_received, p.updates_sent));
    b.kv("keepalives", format!("{} received, {} sent", p.keepalives_received, p.keepalives_sent));
    b.kv("notifications", format!("{} received, {} sent", p.notifications_received, p.notifications_sent));
    b.kv("updates_treated_as_withdraw", p.updates_treated_as_withdraw.to_string());
    b.kv("attributes_discarded", p.attributes_discarded.to_string());
    b.kv("established_count", p.established_count.to_string());
    b.kv("dropped_count", p.dropped_count.to_string());

    b.section("Notifications");
    b.kv("last_notification_sent", notification_text(&p.last_notification_sent));
    b.kv("last_notification_received", notification_text(&p.last_notification_received));
    b.render()
}

// ---------------------------------------------------------------------------------------------------
// Watch lines

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

// ---------------------------------------------------------------------------------------------------
// Time

/// `HH:MM:SS`, or `Nd HH:MM:SS` from one day on (as `gobgp neighbor` shows Up/Down).
pub fn format_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds, e.g. `2026-11-25T06:28:22.123Z`.
pub fn format_timestamp_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, mo, d) = civil_from_days(days);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem / 60 % 60, rem % 60, ms % 1000)
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
