//! Validated desired state: what a peer and an announcement are once every field has been checked.
//! Built from the proto types (API and config file share this one path), so there is one validation.
use crate::bgp::wire::{iana::WELL_KNOWN_COMMUNITIES, Family, LargeCommunity};
use ipnet::IpNet;
use speaker_api::v1 as pb;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The longest TCP-MD5 key Linux takes (TCP_MD5SIG_MAXKEYLEN); the socket option's struct is sized by it.
pub const MD5_MAX_KEY_LEN: usize = 80;

/// A field that failed validation, and why. Becomes INVALID_ARGUMENT naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ConfigError {
    pub field: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { field: field.into(), reason: reason.into() }
    }

    /// The same error for a list named `list` in its request (validators name `announcements[i]`).
    pub fn under(mut self, list: &str) -> Self {
        if let Some(rest) = self.field.strip_prefix("announcements") {
            self.field = format!("{list}{rest}");
        }
        self
    }
}

pub const DEFAULT_HOLD_TIME: u16 = 90;
pub const DEFAULT_CONNECT_TIME: Duration = Duration::from_secs(5);
pub const DEFAULT_RESTART_TIME: u16 = 120;
pub const DEFAULT_MAX_RECEIVED_PREFIXES: u32 = 1_000_000;

/// MetalLB's BGPPeer `dynamicASN`: the peer's AS is taken from its OPEN, of this kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DynamicAsn {
    Internal,
    External,
}

/// A validated peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSpec {
    pub name: String,
    pub address: IpAddr,
    pub port: u16,
    /// 0 when `dynamic_asn` is set.
    pub peer_asn: u32,
    /// Accept the peer's AS from its OPEN (MetalLB's `dynamicASN`): internal or external.
    pub dynamic_asn: Option<DynamicAsn>,
    /// 0 = speakerd's default local ASN (resolved when the session starts).
    pub local_asn: u32,
    pub router_id: Option<Ipv4Addr>,
    pub source_address: Option<IpAddr>,
    pub hold_time: u16,
    pub keepalive: Option<u16>,
    pub connect_time: Duration,
    pub password: Option<String>,
    pub ebgp_multihop_ttl: Option<u8>,
    pub passive: bool,
    /// Restart time if graceful restart is enabled.
    pub graceful_restart: Option<u16>,
    pub families: Vec<Family>,
    pub next_hop_v4: Option<Ipv4Addr>,
    pub next_hop_v6: Option<Ipv6Addr>,
    pub max_received_prefixes: u32,
    pub bfd: Option<BfdSpec>,
    /// RFC 5082: TTL 255 out, minimum TTL 255 in.
    pub gtsm: bool,
    /// Cease (RFC 4486) instead of dropping past max_received_prefixes.
    pub cease_on_max_prefixes: bool,
}

/// A validated BFD profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdSpec {
    pub rx: Duration,
    pub tx: Duration,
    pub detect_mult: u8,
    pub passive: bool,
    pub min_ttl: u8,
    pub auth: Option<crate::bfd::auth::BfdAuth>,
}

impl TryFrom<&pb::BfdProfile> for BfdSpec {
    type Error = ConfigError;
    fn try_from(b: &pb::BfdProfile) -> Result<Self, ConfigError> {
        if b.echo_mode {
            return Err(ConfigError::new("bfd.echo_mode", "echo mode is not supported (asynchronous mode only)"));
        }
        let ms = |field: &str, v: u32| match v {
            0 => Ok(Duration::from_millis(300)),
            10..=60000 => Ok(Duration::from_millis(u64::from(v))),
            _ => Err(ConfigError::new(format!("bfd.{field}"), format!("{v}: must be 10..60000 ms"))),
        };
        let detect_mult = match b.detect_multiplier {
            0 => 3,
            m @ 2..=255 => m as u8,
            m => return Err(ConfigError::new("bfd.detect_multiplier", format!("{m}: must be 2..255"))),
        };
        let min_ttl = match b.minimum_ttl {
            0 => 254,
            t @ 1..=255 => t as u8,
            t => return Err(ConfigError::new("bfd.minimum_ttl", format!("{t}: must be 1..255"))),
        };
        let meticulous = match b.auth_type.as_str() {
            "" => None,
            "keyed-sha1" => Some(false),
            "meticulous-keyed-sha1" => Some(true),
            t => {
                return Err(ConfigError::new(
                    "bfd.auth_type",
                    format!("{t:?}: expected keyed-sha1 or meticulous-keyed-sha1"),
                ))
            }
        };
        let auth = match meticulous {
            None => None,
            Some(meticulous) => {
                if b.auth_password.is_empty() || b.auth_password.len() > 20 {
                    return Err(ConfigError::new("bfd.auth_password", "1..20 bytes required with auth_type"));
                }
                let key_id =
                    u8::try_from(b.auth_key_id).map_err(|_| ConfigError::new("bfd.auth_key_id", "must be 0..255"))?;
                Some(crate::bfd::auth::BfdAuth { meticulous, key_id, key: b.auth_password.as_bytes().to_vec() })
            }
        };
        Ok(Self {
            rx: ms("receive_interval_ms", b.receive_interval_ms)?,
            tx: ms("transmit_interval_ms", b.transmit_interval_ms)?,
            detect_mult,
            passive: b.passive_mode,
            min_ttl,
            auth,
        })
    }
}

impl PeerSpec {
    /// Does changing from `self` to `new` need the session to be reset? Name, next hops, keepalive,
    /// connect time and the prefix limit are applied in place; everything in the OPEN or the socket is not.
    pub fn needs_reset(&self, new: &PeerSpec) -> bool {
        let strip = |p: &PeerSpec| PeerSpec {
            name: String::new(),
            keepalive: None,
            connect_time: Duration::ZERO,
            next_hop_v4: None,
            next_hop_v6: None,
            max_received_prefixes: 0,
            cease_on_max_prefixes: false,
            ..p.clone()
        };
        strip(self) != strip(new)
    }

    /// Which AS the peer's OPEN must carry.
    pub fn peer_as(&self) -> crate::bgp::fsm::PeerAs {
        use crate::bgp::fsm::PeerAs;
        match self.dynamic_asn {
            None => PeerAs::Fixed(self.peer_asn),
            Some(DynamicAsn::Internal) => PeerAs::Internal,
            Some(DynamicAsn::External) => PeerAs::External,
        }
    }

    /// The TTL of our packets: the multihop setting, else 1 for eBGP (directly connected) and 64 for iBGP.
    pub fn ttl(&self, local_asn: u32) -> u32 {
        if self.gtsm {
            return 255;
        }
        match self.ebgp_multihop_ttl {
            Some(t) => u32::from(t),
            None if self.peer_as().ibgp(local_asn) => 64,
            None => 1,
        }
    }
}

/// Does an announcement's peer selector (addresses or names; empty: every peer) include the peer named
/// `name` at `address`?
pub fn selects(name: &str, address: IpAddr, selector: &BTreeSet<String>) -> bool {
    selector.is_empty()
        || selector.contains(name)
        || selector.iter().any(|s| s.parse::<IpAddr>().is_ok_and(|a| a == address))
}

fn parse_ip(field: &str, s: &str) -> Result<Option<IpAddr>, ConfigError> {
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|_| ConfigError::new(field, format!("{s:?} is not an IP address")))
}

fn family_of(field: &str, f: i32) -> Result<Family, ConfigError> {
    match pb::AddressFamily::try_from(f) {
        Ok(pb::AddressFamily::Ipv4Unicast) => Ok(Family::IPV4_UNICAST),
        Ok(pb::AddressFamily::Ipv6Unicast) => Ok(Family::IPV6_UNICAST),
        _ => Err(ConfigError::new(field, format!("unknown address family {f}"))),
    }
}

impl TryFrom<&pb::PeerConfig> for PeerSpec {
    type Error = ConfigError;

    fn try_from(p: &pb::PeerConfig) -> Result<Self, ConfigError> {
        let address = parse_ip("address", &p.address)?.ok_or_else(|| ConfigError::new("address", "required"))?;
        if address.is_unspecified() || address.is_multicast() {
            return Err(ConfigError::new("address", format!("{address} is not a unicast address")));
        }
        let address = crate::netif::canonical(address);
        let port = match p.port {
            0 => 179,
            n => u16::try_from(n).map_err(|_| ConfigError::new("port", format!("{n} is not a TCP port")))?,
        };
        let dynamic_asn = match pb::DynamicAsn::try_from(p.dynamic_asn) {
            Ok(pb::DynamicAsn::None) => None,
            Ok(pb::DynamicAsn::Internal) => Some(DynamicAsn::Internal),
            Ok(pb::DynamicAsn::External) => Some(DynamicAsn::External),
            Err(_) => {
                return Err(ConfigError::new("dynamic_asn", format!("{} is not a DynamicAsn value", p.dynamic_asn)))
            }
        };
        match (p.peer_asn, dynamic_asn) {
            (0, None) => return Err(ConfigError::new("peer_asn", "AS 0 is reserved (RFC 7607)")),
            (n, Some(_)) if n != 0 => {
                return Err(ConfigError::new(
                    "peer_asn",
                    "must be 0 with dynamic_asn (the peer's AS comes from its OPEN)",
                ))
            }
            _ => {}
        }
        if p.local_asn == u32::from(crate::bgp::wire::iana::AS_TRANS) {
            return Err(ConfigError::new("local_asn", "AS 23456 is AS_TRANS and cannot be a local AS"));
        }
        let router_id = match parse_ip("router_id", &p.router_id)? {
            None => None,
            Some(IpAddr::V4(v4)) if !v4.is_unspecified() => Some(v4),
            Some(other) => {
                return Err(ConfigError::new("router_id", format!("{other} is not a non-zero IPv4 address")))
            }
        };
        let source_address = parse_ip("source_address", &p.source_address)?;
        if let Some(src) = source_address {
            if src.is_ipv4() != address.is_ipv4() {
                return Err(ConfigError::new("source_address", "must be of the same family as address"));
            }
        }
        let hold_time = match p.hold_time_secs {
            None => DEFAULT_HOLD_TIME,
            Some(h @ (0 | 3..=65535)) => h as u16,
            Some(h) => {
                return Err(ConfigError::new("hold_time_secs", format!("{h}: must be 0 or 3..65535 (RFC 4271 §4.2)")))
            }
        };
        let keepalive = match p.keepalive_time_secs {
            None => None,
            Some(k @ 1..=21845) => Some(k as u16),
            Some(k) => return Err(ConfigError::new("keepalive_time_secs", format!("{k}: must be 1..21845"))),
        };
        let connect_time = match p.connect_time_secs {
            None => DEFAULT_CONNECT_TIME,
            Some(c @ 1..=3600) => Duration::from_secs(u64::from(c)),
            Some(c) => return Err(ConfigError::new("connect_time_secs", format!("{c}: must be 1..3600"))),
        };
        if p.password.len() > MD5_MAX_KEY_LEN {
            return Err(ConfigError::new("password", "longer than 80 bytes (TCP_MD5SIG_MAXKEYLEN)"));
        }
        let ebgp_multihop_ttl = match p.ebgp_multihop_ttl {
            0 => None,
            t @ 1..=255 => Some(t as u8),
            t => return Err(ConfigError::new("ebgp_multihop_ttl", format!("{t}: must be 1..255"))),
        };
        if p.gtsm && ebgp_multihop_ttl.is_some() {
            return Err(ConfigError::new("gtsm", "GTSM is for directly connected peers: not with ebgp_multihop_ttl"));
        }
        let graceful_restart = match &p.graceful_restart {
            Some(g) if g.enabled => Some(match g.restart_time_secs {
                0 => DEFAULT_RESTART_TIME,
                t @ 1..=4095 => t as u16,
                t => {
                    return Err(ConfigError::new("graceful_restart.restart_time_secs", format!("{t}: must be 0..4095")))
                }
            }),
            _ => None,
        };
        let mut families = Vec::new();
        for f in &p.families {
            let fam = family_of("families", *f)?;
            if !families.contains(&fam) {
                families.push(fam);
            }
        }
        if families.is_empty() {
            families = vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST];
        }
        families.sort();
        let next_hop_v4 = match parse_ip("next_hop_ipv4", &p.next_hop_ipv4)? {
            None => None,
            Some(IpAddr::V4(a)) => Some(a),
            Some(_) => return Err(ConfigError::new("next_hop_ipv4", "must be an IPv4 address")),
        };
        let next_hop_v6 = match parse_ip("next_hop_ipv6", &p.next_hop_ipv6)? {
            None => None,
            Some(IpAddr::V6(a)) if a.to_ipv4_mapped().is_none() => Some(a),
            Some(_) => return Err(ConfigError::new("next_hop_ipv6", "must be an IPv6 address (not IPv4-mapped)")),
        };
        let name = if p.name.is_empty() { address.to_string() } else { p.name.clone() };
        if name.len() > 128 {
            return Err(ConfigError::new("name", "longer than 128 characters"));
        }
        Ok(Self {
            name,
            address,
            port,
            peer_asn: p.peer_asn,
            dynamic_asn,
            local_asn: p.local_asn,
            router_id,
            source_address,
            hold_time,
            keepalive,
            connect_time,
            password: (!p.password.is_empty()).then(|| p.password.clone()),
            ebgp_multihop_ttl,
            passive: p.passive,
            graceful_restart,
            families,
            next_hop_v4,
            next_hop_v6,
            max_received_prefixes: p.max_received_prefixes.unwrap_or(DEFAULT_MAX_RECEIVED_PREFIXES),
            bfd: p.bfd.as_ref().map(BfdSpec::try_from).transpose()?,
            gtsm: p.gtsm,
            cease_on_max_prefixes: p.cease_on_max_received_prefixes,
        })
    }
}

impl From<&PeerSpec> for pb::PeerConfig {
    fn from(s: &PeerSpec) -> Self {
        let fam = |f: &Family| match *f {
            Family::IPV6_UNICAST => pb::AddressFamily::Ipv6Unicast as i32,
            _ => pb::AddressFamily::Ipv4Unicast as i32,
        };
        pb::PeerConfig {
            name: s.name.clone(),
            owner: String::new(),
            address: s.address.to_string(),
            port: u32::from(s.port),
            peer_asn: s.peer_asn,
            dynamic_asn: match s.dynamic_asn {
                None => pb::DynamicAsn::None,
                Some(DynamicAsn::Internal) => pb::DynamicAsn::Internal,
                Some(DynamicAsn::External) => pb::DynamicAsn::External,
            } as i32,
            local_asn: s.local_asn,
            router_id: s.router_id.map(|r| r.to_string()).unwrap_or_default(),
            source_address: s.source_address.map(|a| a.to_string()).unwrap_or_default(),
            hold_time_secs: Some(u32::from(s.hold_time)),
            keepalive_time_secs: s.keepalive.map(u32::from),
            connect_time_secs: Some(s.connect_time.as_secs() as u32),
            // The password is never echoed back.
            password: if s.password.is_some() { "<set>".into() } else { String::new() },
            ebgp_multihop_ttl: s.ebgp_multihop_ttl.map_or(0, u32::from),
            passive: s.passive,
            graceful_restart: s
                .graceful_restart
                .map(|t| pb::GracefulRestart { enabled: true, restart_time_secs: u32::from(t) }),
            families: s.families.iter().map(fam).collect(),
            next_hop_ipv4: s.next_hop_v4.map(|a| a.to_string()).unwrap_or_default(),
            next_hop_ipv6: s.next_hop_v6.map(|a| a.to_string()).unwrap_or_default(),
            max_received_prefixes: Some(s.max_received_prefixes),
            gtsm: s.gtsm,
            cease_on_max_received_prefixes: s.cease_on_max_prefixes,
            bfd: s.bfd.as_ref().map(|b| pb::BfdProfile {
                receive_interval_ms: b.rx.as_millis() as u32,
                transmit_interval_ms: b.tx.as_millis() as u32,
                detect_multiplier: u32::from(b.detect_mult),
                echo_mode: false,
                passive_mode: b.passive,
                minimum_ttl: u32::from(b.min_ttl),
                auth_type: match &b.auth {
                    None => String::new(),
                    Some(a) if a.meticulous => "meticulous-keyed-sha1".into(),
                    Some(_) => "keyed-sha1".into(),
                },
                auth_key_id: b.auth.as_ref().map_or(0, |a| u32::from(a.key_id)),
                // The key is never echoed back.
                auth_password: if b.auth.is_some() { "<set>".into() } else { String::new() },
            }),
        }
    }
}

/// The attributes of an announced prefix, as speakerd originates it. Sorted sets, so that equal
/// attributes compare equal and can be shared (interned) between prefixes and packed into one UPDATE.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct RouteAttrs {
    pub communities: BTreeSet<u32>,
    pub large_communities: BTreeSet<LargeCommunity>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
}

impl RouteAttrs {
    /// Merges another owner's attributes for the same prefix: communities are united, the highest
    /// LOCAL_PREF and the lowest MED win (documented in docs/API.md).
    pub fn merge(&mut self, o: &RouteAttrs) {
        self.communities.extend(&o.communities);
        self.large_communities.extend(&o.large_communities);
        self.local_pref = self.local_pref.max(o.local_pref);
        self.med = match (self.med, o.med) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// A validated announcement of one owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdvertSpec {
    pub prefix: IpNet,
    pub attrs: RouteAttrs,
    /// Peer names or addresses; empty = all peers.
    pub peers: BTreeSet<String>,
}

/// Parses a prefix: CIDR with zero host bits, or a bare address as a host route.
pub fn parse_prefix(field: &str, s: &str) -> Result<IpNet, ConfigError> {
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_) => return Err(ConfigError::new(field, format!("{s:?} is not a prefix (CIDR) or address"))),
        },
    };
    if net.trunc() != net {
        return Err(ConfigError::new(field, format!("{s}: host bits set (did you mean {}?)", net.trunc())));
    }
    let a = net.addr();
    if a.is_multicast() || (a.is_unspecified() && net.prefix_len() != 0) {
        return Err(ConfigError::new(field, format!("{s}: not a unicast prefix")));
    }
    Ok(net)
}

/// Parses an RFC 1997 community: "A:B" (16-bit halves), a 32-bit decimal, or a well-known name.
pub fn parse_community(s: &str) -> Result<u32, String> {
    let t = s.trim();
    if let Some((_, v)) = WELL_KNOWN_COMMUNITIES.iter().find(|(n, _)| n.eq_ignore_ascii_case(t)) {
        return Ok(*v);
    }
    if let Some((a, b)) = t.split_once(':') {
        let a: u16 = a.parse().map_err(|_| format!("{s:?}: {a:?} is not 0..65535"))?;
        let b: u16 = b.parse().map_err(|_| format!("{s:?}: {b:?} is not 0..65535"))?;
        return Ok((u32::from(a) << 16) | u32::from(b));
    }
    t.parse::<u32>().map_err(|_| format!("{s:?} is not a community (ASN:VALUE, a 32-bit number, or a well-known name)"))
}

/// Formats a community as its well-known name if it has one, else "A:B", so that what is listed reads
/// as what was given.
pub fn format_community(c: u32) -> String {
    match WELL_KNOWN_COMMUNITIES.iter().find(|(_, v)| *v == c) {
        Some((name, _)) => (*name).to_string(),
        None => format!("{}:{}", c >> 16, c & 0xffff),
    }
}

/// Parses an RFC 8092 large community "G:L1:L2".
pub fn parse_large_community(s: &str) -> Result<LargeCommunity, String> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    let [g, l1, l2] = parts.as_slice() else {
        return Err(format!("{s:?} is not a large community (GLOBAL:LOCAL1:LOCAL2)"));
    };
    let n = |x: &str| x.parse::<u32>().map_err(|_| format!("{s:?}: {x:?} is not 0..4294967295"));
    Ok(LargeCommunity { global: n(g)?, local1: n(l1)?, local2: n(l2)? })
}

pub fn format_large_community(c: &LargeCommunity) -> String {
    format!("{}:{}:{}", c.global, c.local1, c.local2)
}

/// Largest number of communities (or large communities) per announcement: an UPDATE must hold them.
pub const MAX_COMMUNITIES: usize = 256;

impl TryFrom<(usize, &pb::Announcement)> for AdvertSpec {
    type Error = ConfigError;

    /// `(i, a)`: the index of the announcement in its request, for the field name in errors.
    fn try_from((i, a): (usize, &pb::Announcement)) -> Result<Self, ConfigError> {
        let f = |name: &str| format!("announcements[{i}].{name}");
        let prefix = parse_prefix(&f("prefix"), &a.prefix)?;
        let communities = a
            .communities
            .iter()
            .map(|c| parse_community(c))
            .collect::<Result<BTreeSet<_>, _>>()
            .map_err(|e| ConfigError::new(f("communities"), e))?;
        let large_communities = a
            .large_communities
            .iter()
            .map(|c| parse_large_community(c))
            .collect::<Result<BTreeSet<_>, _>>()
            .map_err(|e| ConfigError::new(f("large_communities"), e))?;
        if communities.len() > MAX_COMMUNITIES || large_communities.len() > MAX_COMMUNITIES {
            return Err(ConfigError::new(f("communities"), format!("more than {MAX_COMMUNITIES}")));
        }
        let peers: BTreeSet<String> = a.peers.iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
        Ok(Self {
            prefix,
            attrs: RouteAttrs { communities, large_communities, local_pref: a.local_pref, med: a.med },
            peers,
        })
    }
}

impl AdvertSpec {
    pub fn to_proto(&self, owner: &str) -> pb::Announcement {
        pb::Announcement {
            prefix: self.prefix.to_string(),
            communities: self.attrs.communities.iter().map(|c| format_community(*c)).collect(),
            large_communities: self.attrs.large_communities.iter().map(format_large_community).collect(),
            local_pref: self.attrs.local_pref,
            med: self.attrs.med,
            peers: self.peers.iter().cloned().collect(),
            owner: owner.to_string(),
        }
    }
}

/// A validated Layer 2 announcement: one IP, its candidate nodes, and where it may be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct L2Spec {
    pub ip: IpAddr,
    /// Candidate node names; empty = this node alone.
    pub nodes: BTreeSet<String>,
    pub interfaces: Vec<String>,
    pub exclude_interfaces: Vec<String>,
    /// The election mode asked for; `None`: speakerd's default (`--l2-election`).
    pub election: Option<crate::election::Mode>,
    /// Soft preference: heavier live candidates first (MetalLB's `preferredNodeSelectors`); absent: 0.
    pub weights: BTreeMap<String, u32>,
}

fn iface_pattern(field: &str, s: &str) -> Result<String, ConfigError> {
    let name = s.strip_suffix('*').unwrap_or(s);
    let ok = (!name.is_empty() || s == "*") && name.len() < 16 && !name.contains(['/', ' ', '\0']);
    if ok {
        Ok(s.to_string())
    } else {
        Err(ConfigError::new(field, format!("{s:?} is not an interface name (a trailing * matches a prefix)")))
    }
}

impl TryFrom<(usize, &pb::L2Announcement)> for L2Spec {
    type Error = ConfigError;

    fn try_from((i, a): (usize, &pb::L2Announcement)) -> Result<Self, ConfigError> {
        let f = |name: &str| format!("announcements[{i}].{name}");
        let ip: IpAddr =
            a.ip.trim().parse().map_err(|_| ConfigError::new(f("ip"), format!("{:?} is not an IP address", a.ip)))?;
        if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
            return Err(ConfigError::new(f("ip"), format!("{ip} is not a unicast address")));
        }
        let mut nodes = BTreeSet::new();
        for n in &a.nodes {
            let n = n.trim();
            if n.is_empty() || n.len() > 253 {
                return Err(ConfigError::new(f("nodes"), format!("{n:?} is not a node name")));
            }
            nodes.insert(n.to_string());
        }
        let interfaces = a.interfaces.iter().map(|s| iface_pattern(&f("interfaces"), s)).collect::<Result<_, _>>()?;
        let exclude_interfaces = a
            .exclude_interfaces
            .iter()
            .map(|s| iface_pattern(&f("exclude_interfaces"), s))
            .collect::<Result<_, _>>()?;
        let election = match pb::L2Election::try_from(a.election) {
            Ok(pb::L2Election::Default) => None,
            Ok(pb::L2Election::Available) => Some(crate::election::Mode::Available),
            Ok(pb::L2Election::Strict) => Some(crate::election::Mode::Strict),
            Err(_) => {
                return Err(ConfigError::new(f("election"), format!("{} is not an L2Election value", a.election)))
            }
        };
        let mut weights = BTreeMap::new();
        for (n, w) in &a.node_weights {
            if !nodes.contains(n.trim()) {
                return Err(ConfigError::new(f("node_weights"), format!("{n:?} is not one of the candidate nodes")));
            }
            if *w > 0 {
                weights.insert(n.trim().to_string(), *w);
            }
        }
        Ok(Self { ip: crate::netif::canonical(ip), nodes, interfaces, exclude_interfaces, election, weights })
    }
}

impl L2Spec {
    /// Merges another owner's announcement of the same IP: candidates and exclusions united; interface
    /// lists united, and an owner that allows any interface allows any.
    pub fn merge(&mut self, o: &L2Spec) {
        self.nodes.extend(o.nodes.iter().cloned());
        for (n, w) in &o.weights {
            let e = self.weights.entry(n.clone()).or_default();
            *e = (*e).max(*w);
        }
        // The safer choice wins: strict over available over the default.
        use crate::election::Mode;
        self.election = match (self.election, o.election) {
            (Some(Mode::Strict), _) | (_, Some(Mode::Strict)) => Some(Mode::Strict),
            (Some(Mode::Available), _) | (_, Some(Mode::Available)) => Some(Mode::Available),
            _ => None,
        };
        if self.interfaces.is_empty() || o.interfaces.is_empty() {
            self.interfaces.clear();
        } else {
            for i in &o.interfaces {
                if !self.interfaces.contains(i) {
                    self.interfaces.push(i.clone());
                }
            }
        }
        for e in &o.exclude_interfaces {
            if !self.exclude_interfaces.contains(e) {
                self.exclude_interfaces.push(e.clone());
            }
        }
    }

    pub fn to_proto(&self, owner: &str) -> pb::L2Announcement {
        pb::L2Announcement {
            ip: self.ip.to_string(),
            nodes: self.nodes.iter().cloned().collect(),
            interfaces: self.interfaces.clone(),
            exclude_interfaces: self.exclude_interfaces.clone(),
            owner: owner.to_string(),
            election: match self.election {
                None => pb::L2Election::Default,
                Some(crate::election::Mode::Available) => pb::L2Election::Available,
                Some(crate::election::Mode::Strict) => pb::L2Election::Strict,
            } as i32,
            node_weights: self.weights.iter().map(|(n, w)| (n.clone(), *w)).collect(),
            ..Default::default()
        }
    }
}

/// Validates an owner name: 1..64 characters of `[A-Za-z0-9._:/-]`; empty means "default".
pub fn parse_owner(s: &str) -> Result<String, ConfigError> {
    if s.is_empty() {
        return Ok("default".into());
    }
    let ok = s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || "._:/-".contains(c));
    if ok {
        Ok(s.to_string())
    } else {
        Err(ConfigError::new("owner", format!("{s:?}: 1..64 characters of [A-Za-z0-9._:/-]")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> pb::PeerConfig {
        pb::PeerConfig { address: "192.0.2.2".into(), peer_asn: 65002, ..Default::default() }
    }

    #[test]
    fn defaults_are_filled_in() {
        let s = PeerSpec::try_from(&peer()).unwrap();
        assert_eq!((s.port, s.hold_time, s.name.as_str()), (179, 90, "192.0.2.2"));
        assert_eq!(s.families, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases: Vec<(pb::PeerConfig, &str)> = vec![
            (pb::PeerConfig { peer_asn: 0, ..peer() }, "peer_asn"),
            (pb::PeerConfig { address: "not-ip".into(), ..peer() }, "address"),
            (pb::PeerConfig { address: String::new(), ..peer() }, "address"),
            (pb::PeerConfig { hold_time_secs: Some(2), ..peer() }, "hold_time_secs"),
            (pb::PeerConfig { port: 70000, ..peer() }, "port"),
            (pb::PeerConfig { router_id: "2001:db8::1".into(), ..peer() }, "router_id"),
            (pb::PeerConfig { source_address: "2001:db8::1".into(), ..peer() }, "source_address"),
            (pb::PeerConfig { password: "x".repeat(81), ..peer() }, "password"),
            (pb::PeerConfig { ebgp_multihop_ttl: 256, ..peer() }, "ebgp_multihop_ttl"),
            (pb::PeerConfig { families: vec![7], ..peer() }, "families"),
            (pb::PeerConfig { next_hop_ipv6: "::ffff:192.0.2.1".into(), ..peer() }, "next_hop_ipv6"),
        ];
        for (p, field) in cases {
            let e = PeerSpec::try_from(&p).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }

    #[test]
    fn needs_reset_only_for_session_fields() {
        let a = PeerSpec::try_from(&peer()).unwrap();
        let renamed = PeerSpec { name: "r1".into(), next_hop_v4: Some("192.0.2.9".parse().unwrap()), ..a.clone() };
        assert!(!a.needs_reset(&renamed));
        assert!(a.needs_reset(&PeerSpec { hold_time: 30, ..a.clone() }));
        assert!(a.needs_reset(&PeerSpec { password: Some("x".into()), ..a.clone() }));
    }

    #[test]
    fn communities_parse_in_every_form() {
        assert_eq!(parse_community("65000:100"), Ok((65000 << 16) | 100));
        assert_eq!(parse_community("no-export"), Ok(0xFFFF_FF01));
        assert_eq!(parse_community("4259840100"), Ok(4_259_840_100));
        assert!(parse_community("65536:1").is_err());
        assert!(parse_community("a:b").is_err());
        assert_eq!(format_community((65000 << 16) | 100), "65000:100");
        assert_eq!(format_community(0xFFFF_FF01), "no-export");
        assert_eq!(
            parse_large_community("4200000000:1:2").map(|c| format_large_community(&c)).as_deref(),
            Ok("4200000000:1:2")
        );
        assert!(parse_large_community("1:2").is_err());
    }

    #[test]
    fn prefixes_must_have_zero_host_bits() {
        assert_eq!(parse_prefix("p", "203.0.113.10").unwrap().to_string(), "203.0.113.10/32");
        assert_eq!(parse_prefix("p", "2001:db8::/64").unwrap().to_string(), "2001:db8::/64");
        assert!(parse_prefix("p", "203.0.113.10/24").unwrap_err().reason.contains("203.0.113.0/24"));
        assert!(parse_prefix("p", "224.0.0.1/32").is_err());
        assert!(parse_prefix("p", "garbage").is_err());
    }

    #[test]
    fn merge_unites_communities_and_picks_pref() {
        let mut a = RouteAttrs { communities: [1].into(), local_pref: Some(100), med: Some(50), ..Default::default() };
        a.merge(&RouteAttrs { communities: [2].into(), local_pref: Some(200), med: Some(10), ..Default::default() });
        assert_eq!(a.communities, [1, 2].into());
        assert_eq!((a.local_pref, a.med), (Some(200), Some(10)));
    }

    #[test]
    fn owners_are_validated() {
        assert_eq!(parse_owner("").unwrap(), "default");
        assert!(parse_owner("k8s-bridge").is_ok());
        assert!(parse_owner("bad owner").is_err());
        assert!(parse_owner(&"x".repeat(65)).is_err());
    }
}
