//! How `speakerctl peer …` prints: the peer view for JSON/YAML, the `peer list` table and the
//! `peer show` block.

use std::fmt::Write as _;

use serde::Serialize;
use speaker_api::v1::{GracefulRestart, Negotiated, Notification, Peer, PeerConfig, PeerState};

use super::table::{cell, list_cell, Align, KvBlock, Table};
use super::{family_name, family_names, format_duration, state_json, state_table_from_json};

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
    pub(super) fn up_down(&self) -> String {
        if !self.is_established() && self.established_count == 0 {
            "never".into()
        } else {
            format_duration(self.state_secs)
        }
    }
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
