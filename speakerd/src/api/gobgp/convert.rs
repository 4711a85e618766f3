//! GoBGP v3 (`apipb`) messages ↔ speakerd's model: paths (NLRI and attributes in
//! `google.protobuf.Any`) to [`AdvertSpec`], peers to [`PeerSpec`](crate::config::spec::PeerSpec) (through `speaker.v1`'s
//! `PeerConfig`, so both APIs share one validation), and speakerd's state back to GoBGP's shapes.
//! docs/GOBGP_API.md documents every mapping made here.
use crate::bgp::fsm::State;
use crate::bgp::rib_out::Encoder;
use crate::bgp::wire::attr::SegmentKind;
use crate::bgp::wire::{iana, LargeCommunity};
use crate::config::spec::{parse_prefix, AdvertSpec, RouteAttrs};
use crate::speaker::PeerView;
use ipnet::IpNet;
use prost::Message;
use prost_types::{Any, Timestamp};
use speaker_api::gobgp::{apipb as api, type_url};
use speaker_api::v1 as pb;
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::{Instant, SystemTime};
use tonic::Status;

/// The two families speakerd carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fam {
    V4,
    V6,
}

impl Fam {
    pub fn of(p: &IpNet) -> Fam {
        match p {
            IpNet::V4(_) => Fam::V4,
            IpNet::V6(_) => Fam::V6,
        }
    }
    pub fn api(self) -> api::Family {
        let afi = match self {
            Fam::V4 => api::family::Afi::Ip,
            Fam::V6 => api::family::Afi::Ip6,
        };
        api::Family { afi: afi as i32, safi: api::family::Safi::Unicast as i32 }
    }
    pub fn wire(self) -> crate::bgp::wire::Family {
        match self {
            Fam::V4 => crate::bgp::wire::Family::IPV4_UNICAST,
            Fam::V6 => crate::bgp::wire::Family::IPV6_UNICAST,
        }
    }
}

/// A GoBGP family as one of ours; anything else is INVALID_ARGUMENT naming `field`.
pub fn family(field: &str, f: &api::Family) -> Result<Fam, Status> {
    use api::family::{Afi, Safi};
    match (Afi::try_from(f.afi), Safi::try_from(f.safi)) {
        (Ok(Afi::Ip), Ok(Safi::Unicast)) => Ok(Fam::V4),
        (Ok(Afi::Ip6), Ok(Safi::Unicast)) => Ok(Fam::V6),
        (afi, safi) => {
            let name = |a: Result<Afi, _>, s: Result<Safi, _>| match (a, s) {
                (Ok(a), Ok(s)) => format!(" ({} {})", a.as_str_name(), s.as_str_name()),
                _ => String::new(),
            };
            Err(Status::invalid_argument(format!(
                "{field}: afi {} safi {}{} is not served: speakerd carries IPv4 unicast (afi 1 safi 1) and IPv6 unicast (afi 2 safi 1) only",
                f.afi,
                f.safi,
                name(afi, safi)
            )))
        }
    }
}

pub fn pack<M: Message>(name: &str, m: &M) -> Any {
    Any { type_url: type_url(name), value: m.encode_to_vec() }
}

/// The message name of an `apipb` Any ("OriginAttribute"), or INVALID_ARGUMENT naming `field`.
fn any_name<'a>(field: &str, a: &'a Any) -> Result<&'a str, Status> {
    let full = a.type_url.rsplit('/').next().unwrap_or("");
    full.strip_prefix("apipb.").ok_or_else(|| {
        Status::invalid_argument(format!(
            "{field}: type URL {:?} is not a GoBGP v3 message (expected type.googleapis.com/apipb.<Message>)",
            a.type_url
        ))
    })
}

fn unpack<M: Message + Default>(field: &str, name: &str, a: &Any) -> Result<M, Status> {
    M::decode(a.value.as_slice())
        .map_err(|e| Status::invalid_argument(format!("{field}: cannot decode apipb.{name}: {e}")))
}

/// An `IPAddressPrefix` NLRI as a prefix.
pub fn nlri_prefix(field: &str, a: &Any) -> Result<IpNet, Status> {
    let name = any_name(field, a)?;
    if name != "IPAddressPrefix" {
        return Err(Status::invalid_argument(format!(
            "{field}: apipb.{name} is not served: speakerd takes IPv4/IPv6 unicast NLRI (apipb.IPAddressPrefix) only"
        )));
    }
    let p: api::IpAddressPrefix = unpack(field, name, a)?;
    let net = format!("{}/{}", p.prefix, p.prefix_len);
    parse_prefix(field, &net).map_err(|e| Status::invalid_argument(e.to_string()))
}

pub fn nlri_any(p: &IpNet) -> Any {
    pack(
        "IPAddressPrefix",
        &api::IpAddressPrefix { prefix_len: u32::from(p.prefix_len()), prefix: p.addr().to_string() },
    )
}

/// A GoBGP path to add, as one of our announcements. `withdraw` is the path's is_withdraw.
pub struct ParsedPath {
    pub advert: AdvertSpec,
    pub withdraw: bool,
}

/// Parses a path of AddPath/AddPathStream/DeletePath. `field` prefixes error messages (`"path"`,
/// `"paths[3]"`). With `attrs_too` false (DeletePath) only the NLRI is looked at.
pub fn parse_path(field: &str, p: &api::Path, attrs_too: bool) -> Result<ParsedPath, Status> {
    if p.nlri.is_none() && !p.nlri_binary.is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field}.nlri_binary: binary NLRI is not served; send {field}.nlri as an apipb.IPAddressPrefix Any"
        )));
    }
    let nlri = p
        .nlri
        .as_ref()
        .ok_or_else(|| Status::invalid_argument(format!("{field}.nlri: required (an apipb.IPAddressPrefix Any)")))?;
    let prefix = nlri_prefix(&format!("{field}.nlri"), nlri)?;
    let fam = Fam::of(&prefix);
    if let Some(f) = &p.family {
        let given = family(&format!("{field}.family"), f)?;
        if given != fam {
            return Err(Status::invalid_argument(format!(
                "{field}.family: {given:?} unicast, but the NLRI {prefix} is {fam:?}"
            )));
        }
    }
    let mut attrs = RouteAttrs::default();
    if attrs_too {
        if p.pattrs.is_empty() && !p.pattrs_binary.is_empty() {
            return Err(Status::invalid_argument(format!(
                "{field}.pattrs_binary: binary attributes are not served; send {field}.pattrs as apipb.*Attribute Anys"
            )));
        }
        for (i, a) in p.pattrs.iter().enumerate() {
            apply_attr(&format!("{field}.pattrs[{i}]"), a, fam, &prefix, &mut attrs)?;
        }
    }
    Ok(ParsedPath { advert: AdvertSpec { prefix, attrs, peers: BTreeSet::new() }, withdraw: p.is_withdraw })
}

fn parse_ip(field: &str, s: &str) -> Result<IpAddr, Status> {
    s.parse().map_err(|_| Status::invalid_argument(format!("{field}: {s:?} is not an IP address")))
}

/// Reads one attribute into `attrs`. What speakerd originates itself (ORIGIN IGP, its AS path, the
/// session's next hop) is checked but not taken: see docs/GOBGP_API.md.
fn apply_attr(field: &str, a: &Any, fam: Fam, prefix: &IpNet, attrs: &mut RouteAttrs) -> Result<(), Status> {
    let name = any_name(field, a)?;
    match name {
        "OriginAttribute" => {
            let o: api::OriginAttribute = unpack(field, name, a)?;
            if o.origin > 2 {
                return Err(Status::invalid_argument(format!(
                    "{field}: origin {}: must be 0 (IGP), 1 (EGP) or 2 (INCOMPLETE)",
                    o.origin
                )));
            }
        }
        "AsPathAttribute" => {
            let p: api::AsPathAttribute = unpack(field, name, a)?;
            if p.segments.iter().any(|s| !s.numbers.is_empty()) {
                return Err(Status::invalid_argument(format!(
                    "{field}: a non-empty AS_PATH is not served: speakerd originates its routes (empty AS_PATH, its own AS added toward eBGP peers)"
                )));
            }
        }
        "NextHopAttribute" => {
            let n: api::NextHopAttribute = unpack(field, name, a)?;
            parse_ip(&format!("{field}.next_hop"), &n.next_hop)?;
        }
        "MpReachNLRIAttribute" => {
            let m: api::MpReachNlriAttribute = unpack(field, name, a)?;
            if let Some(f) = &m.family {
                let given = family(&format!("{field}.family"), f)?;
                if given != fam {
                    return Err(Status::invalid_argument(format!(
                        "{field}.family: {given:?} unicast, but the NLRI {prefix} is {fam:?}"
                    )));
                }
            }
            for (j, nh) in m.next_hops.iter().enumerate() {
                parse_ip(&format!("{field}.next_hops[{j}]"), nh)?;
            }
            for (j, n) in m.nlris.iter().enumerate() {
                let f = format!("{field}.nlris[{j}]");
                let p = nlri_prefix(&f, n)?;
                if p != *prefix {
                    return Err(Status::invalid_argument(format!(
                        "{f}: {p} differs from the path's NLRI {prefix} (one prefix per path)"
                    )));
                }
            }
        }
        "MpUnreachNLRIAttribute" => {
            return Err(Status::invalid_argument(format!(
                "{field}: apipb.MpUnreachNLRIAttribute does not belong in a path to add; use DeletePath or is_withdraw"
            )));
        }
        "CommunitiesAttribute" => {
            let c: api::CommunitiesAttribute = unpack(field, name, a)?;
            attrs.communities.extend(c.communities);
        }
        "LargeCommunitiesAttribute" => {
            let c: api::LargeCommunitiesAttribute = unpack(field, name, a)?;
            attrs.large_communities.extend(c.communities.iter().map(|l| LargeCommunity {
                global: l.global_admin,
                local1: l.local_data1,
                local2: l.local_data2,
            }));
        }
        "LocalPrefAttribute" => {
            let l: api::LocalPrefAttribute = unpack(field, name, a)?;
            attrs.local_pref = Some(l.local_pref);
        }
        "MultiExitDiscAttribute" => {
            let m: api::MultiExitDiscAttribute = unpack(field, name, a)?;
            attrs.med = Some(m.med);
        }
        other => {
            return Err(Status::invalid_argument(format!(
                "{field}: apipb.{other} is not served: speakerd takes OriginAttribute, AsPathAttribute (empty), NextHopAttribute, \
                 MpReachNLRIAttribute, CommunitiesAttribute, LargeCommunitiesAttribute, LocalPrefAttribute and MultiExitDiscAttribute"
            )));
        }
    }
    Ok(())
}

fn ts(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

/// An `Instant` in the past as wall-clock time.
pub fn wall(i: Instant) -> SystemTime {
    SystemTime::now().checked_sub(i.elapsed()).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn common_attrs(out: &mut Vec<Any>, a: &RouteAttrs, local_pref: Option<u32>) {
    if let Some(med) = a.med {
        out.push(pack("MultiExitDiscAttribute", &api::MultiExitDiscAttribute { med }));
    }
    if let Some(local_pref) = local_pref {
        out.push(pack("LocalPrefAttribute", &api::LocalPrefAttribute { local_pref }));
    }
    if !a.communities.is_empty() {
        out.push(pack(
            "CommunitiesAttribute",
            &api::CommunitiesAttribute { communities: a.communities.iter().copied().collect() },
        ));
    }
    if !a.large_communities.is_empty() {
        let communities = a
            .large_communities
            .iter()
            .map(|l| api::LargeCommunity { global_admin: l.global, local_data1: l.local1, local_data2: l.local2 })
            .collect();
        out.push(pack("LargeCommunitiesAttribute", &api::LargeCommunitiesAttribute { communities }));
    }
}

fn next_hop_attr(out: &mut Vec<Any>, p: &IpNet, nh: Option<IpAddr>) {
    match (p, nh) {
        (IpNet::V4(_), None | Some(IpAddr::V4(_))) => {
            let next_hop = nh.map_or_else(|| "0.0.0.0".to_string(), |n| n.to_string());
            out.push(pack("NextHopAttribute", &api::NextHopAttribute { next_hop }));
        }
        _ => {
            let next_hops = vec![nh.map_or_else(|| "::".to_string(), |n| n.to_string())];
            let m = api::MpReachNlriAttribute { family: Some(Fam::of(p).api()), next_hops, nlris: vec![nlri_any(p)] };
            out.push(pack("MpReachNLRIAttribute", &m));
        }
    }
}

/// A path of the global RIB: an originated route as GoBGP shows a locally added one (ORIGIN IGP,
/// empty AS_PATH, next hop 0.0.0.0 or ::, which each session replaces with its own).
pub fn global_path(p: &IpNet, a: &RouteAttrs, age: SystemTime, uuid: Option<Vec<u8>>) -> api::Path {
    let mut pattrs = vec![
        pack("OriginAttribute", &api::OriginAttribute { origin: u32::from(iana::origin::IGP) }),
        pack("AsPathAttribute", &api::AsPathAttribute { segments: vec![] }),
    ];
    next_hop_attr(&mut pattrs, p, None);
    common_attrs(&mut pattrs, a, a.local_pref);
    api::Path {
        nlri: Some(nlri_any(p)),
        pattrs,
        age: Some(ts(age)),
        best: true,
        family: Some(Fam::of(p).api()),
        uuid: uuid.unwrap_or_default(),
        ..Default::default()
    }
}

/// A path as a session put it on the wire (the Adj-RIB-Out), from the session's encoder.
pub fn sent_path(p: &IpNet, a: &RouteAttrs, enc: &Encoder, peer: IpAddr, age: SystemTime) -> api::Path {
    let v4 = matches!(p, IpNet::V4(_));
    let legacy = v4 && enc.v4_over_v6.is_none();
    let w = enc.path_attrs(a, if legacy { enc.next_hop_v4 } else { None });
    let mut pattrs = Vec::new();
    if let Some(origin) = w.origin {
        pattrs.push(pack("OriginAttribute", &api::OriginAttribute { origin: u32::from(origin) }));
    }
    let segments = w
        .as_path
        .iter()
        .flat_map(|p| p.segments.iter())
        .map(|s| api::AsSegment {
            r#type: match s.kind {
                SegmentKind::Set => api::as_segment::Type::AsSet,
                SegmentKind::Sequence => api::as_segment::Type::AsSequence,
                SegmentKind::ConfedSequence => api::as_segment::Type::AsConfedSequence,
                SegmentKind::ConfedSet => api::as_segment::Type::AsConfedSet,
            } as i32,
            numbers: s.asns.clone(),
        })
        .collect();
    pattrs.push(pack("AsPathAttribute", &api::AsPathAttribute { segments }));
    let nh = match p {
        IpNet::V4(_) if legacy => enc.next_hop_v4.map(IpAddr::V4),
        IpNet::V4(_) => enc.v4_over_v6.map(IpAddr::V6),
        IpNet::V6(_) => enc.next_hop_v6.map(IpAddr::V6),
    };
    next_hop_attr(&mut pattrs, p, nh);
    common_attrs(&mut pattrs, a, w.local_pref);
    api::Path {
        nlri: Some(nlri_any(p)),
        pattrs,
        age: Some(ts(age)),
        best: true,
        family: Some(Fam::of(p).api()),
        neighbor_ip: peer.to_string(),
        ..Default::default()
    }
}

pub fn session_state(s: State) -> api::peer_state::SessionState {
    use api::peer_state::SessionState as S;
    match s {
        State::Idle => S::Idle,
        State::Connect => S::Connect,
        State::Active => S::Active,
        State::OpenSent => S::Opensent,
        State::OpenConfirm => S::Openconfirm,
        State::Established => S::Established,
    }
}

fn admin_state(down: bool) -> i32 {
    if down {
        api::peer_state::AdminState::Down as i32
    } else {
        api::peer_state::AdminState::Up as i32
    }
}

/// A speakerd peer as GoBGP shows one (ListPeer).
pub fn peer(v: &PeerView) -> api::Peer {
    let s = &v.spec;
    let st = &v.status;
    let established = st.state == State::Established;
    let since = wall(st.since);
    let neg = st.negotiated.as_ref();
    let keepalive_cfg = u64::from(s.keepalive.unwrap_or(s.hold_time / 3));
    let families: Vec<Fam> = s
        .families
        .iter()
        .filter_map(|f| match *f {
            crate::bgp::wire::Family::IPV4_UNICAST => Some(Fam::V4),
            crate::bgp::wire::Family::IPV6_UNICAST => Some(Fam::V6),
            _ => None,
        })
        .collect();
    let afi_safis = families
        .iter()
        .map(|f| {
            let (received, advertised) = match f {
                Fam::V4 => (st.received[0], v.advertised.0),
                Fam::V6 => (st.received[1], v.advertised.1),
            };
            api::AfiSafi {
                config: Some(api::AfiSafiConfig { family: Some(f.api()), enabled: true }),
                state: Some(api::AfiSafiState {
                    family: Some(f.api()),
                    enabled: neg.is_none_or(|n| n.negotiated.families.contains(&f.wire())),
                    received,
                    accepted: received,
                    advertised,
                }),
            }
        })
        .collect();
    let message = |notification, update, keepalive| api::Message {
        notification,
        update,
        keepalive,
        total: notification + update + keepalive,
        ..Default::default()
    };
    let ibgp = v.local_asn == s.peer_asn;
    let peer_type = if ibgp { api::PeerType::Internal } else { api::PeerType::External } as i32;
    let description = if s.name == s.address.to_string() { String::new() } else { s.name.clone() };
    api::Peer {
        apply_policy: None,
        conf: Some(api::PeerConf {
            description: description.clone(),
            local_asn: s.local_asn,
            neighbor_address: s.address.to_string(),
            peer_asn: s.peer_asn,
            r#type: peer_type,
            admin_down: v.admin_down,
            ..Default::default()
        }),
        ebgp_multihop: Some(api::EbgpMultihop {
            enabled: s.ebgp_multihop_ttl.is_some(),
            multihop_ttl: s.ebgp_multihop_ttl.map_or(0, u32::from),
        }),
        route_reflector: Some(api::RouteReflector::default()),
        state: Some(api::PeerState {
            description,
            local_asn: v.local_asn,
            messages: Some(api::Messages {
                received: Some(message(st.notifications_received, st.updates_received, st.keepalives_received)),
                sent: Some(message(st.notifications_sent, st.updates_sent, st.keepalives_sent)),
            }),
            neighbor_address: s.address.to_string(),
            peer_asn: s.peer_asn,
            r#type: peer_type,
            queues: Some(api::Queues::default()),
            session_state: session_state(st.state) as i32,
            admin_state: admin_state(v.admin_down),
            flops: st.dropped_count as u32,
            router_id: neg.map(|n| n.negotiated.peer_router_id.to_string()).unwrap_or_default(),
            ..Default::default()
        }),
        timers: Some(api::Timers {
            config: Some(api::TimersConfig {
                connect_retry: s.connect_time.as_secs(),
                hold_time: u64::from(s.hold_time),
                keepalive_interval: keepalive_cfg,
                ..Default::default()
            }),
            state: Some(api::TimersState {
                connect_retry: s.connect_time.as_secs(),
                hold_time: u64::from(s.hold_time),
                keepalive_interval: neg.map_or(keepalive_cfg, |n| u64::from(n.negotiated.keepalive)),
                negotiated_hold_time: neg.map_or(0, |n| u64::from(n.negotiated.hold_time)),
                // As GoBGP: no uptime before the first Established ("never"); the downtime once down.
                uptime: (st.established_count > 0).then(|| ts(since)),
                downtime: (st.established_count > 0 && !established).then(|| ts(since)),
                ..Default::default()
            }),
        }),
        transport: Some(api::Transport {
            local_address: s.source_address.or(neg.map(|n| n.local.ip())).map(|a| a.to_string()).unwrap_or_default(),
            local_port: neg.map_or(0, |n| u32::from(n.local.port())),
            passive_mode: s.passive,
            remote_address: s.address.to_string(),
            remote_port: neg.map_or(u32::from(s.port), |n| u32::from(n.remote.port())),
            ..Default::default()
        }),
        route_server: Some(api::RouteServer::default()),
        graceful_restart: Some(api::GracefulRestart {
            enabled: s.graceful_restart.is_some(),
            restart_time: s.graceful_restart.map_or(0, u32::from),
            ..Default::default()
        }),
        afi_safis,
        ttl_security: Some(api::TtlSecurity::default()),
    }
}

fn unsupported(field: &str, why: &str) -> Status {
    Status::invalid_argument(format!("{field}: not served by speakerd ({why})"))
}

/// A GoBGP peer to add or update as `speaker.v1`'s PeerConfig. `current`: the peer being updated,
/// whose password is kept when none is given (ListPeer never shows it) and whose session source
/// address is not taken for configuration.
pub fn peer_config(p: &api::Peer, current: Option<&PeerView>) -> Result<pb::PeerConfig, Status> {
    let conf = p.conf.clone().unwrap_or_default();
    if !conf.neighbor_interface.is_empty() {
        return Err(unsupported("peer.conf.neighbor_interface", "unnumbered peers: give neighbor_address"));
    }
    let address = if conf.neighbor_address.is_empty() {
        p.state.as_ref().map(|s| s.neighbor_address.clone()).unwrap_or_default()
    } else {
        conf.neighbor_address.clone()
    };
    if address.is_empty() {
        return Err(Status::invalid_argument("peer.conf.neighbor_address: required"));
    }
    if !conf.peer_group.is_empty() {
        return Err(unsupported("peer.conf.peer_group", "peer groups"));
    }
    if !conf.vrf.is_empty() {
        return Err(unsupported("peer.conf.vrf", "VRFs"));
    }
    if conf.remove_private != 0 {
        return Err(unsupported(
            "peer.conf.remove_private",
            "speakerd originates its routes: there are no private ASes to remove",
        ));
    }
    if conf.allow_own_asn != 0 || conf.replace_peer_asn {
        return Err(unsupported(
            "peer.conf.allow_own_asn/replace_peer_asn",
            "speakerd does not accept routes for a RIB",
        ));
    }
    if conf.route_flap_damping {
        return Err(unsupported("peer.conf.route_flap_damping", "no received routes are used"));
    }
    if p.route_reflector.as_ref().is_some_and(|r| r.route_reflector_client) {
        return Err(unsupported("peer.route_reflector", "route reflection"));
    }
    if p.route_server.as_ref().is_some_and(|r| r.route_server_client) {
        return Err(unsupported("peer.route_server", "route server clients"));
    }
    if p.ttl_security.as_ref().is_some_and(|t| t.enabled) {
        return Err(unsupported("peer.ttl_security", "GTSM; use ebgp_multihop"));
    }
    if let Some(ap) = &p.apply_policy {
        let named =
            [&ap.in_policy, &ap.export_policy, &ap.import_policy].into_iter().flatten().any(|a| !a.policies.is_empty());
        if named {
            return Err(unsupported("peer.apply_policy", "routing policies"));
        }
    }
    let mut families = Vec::new();
    for (i, a) in p.afi_safis.iter().enumerate() {
        let f = a.config.as_ref().and_then(|c| c.family.as_ref()).or(a.state.as_ref().and_then(|s| s.family.as_ref()));
        let Some(f) = f else { continue };
        let fam = family(&format!("peer.afi_safis[{i}].config.family"), f)?;
        families.push(match fam {
            Fam::V4 => pb::AddressFamily::Ipv4Unicast as i32,
            Fam::V6 => pb::AddressFamily::Ipv6Unicast as i32,
        });
    }
    let timers = p.timers.as_ref().and_then(|t| t.config).unwrap_or_default();
    let secs = |field: &str, v: u64| -> Result<Option<u32>, Status> {
        match v {
            0 => Ok(None),
            v => u32::try_from(v)
                .map(Some)
                .map_err(|_| Status::invalid_argument(format!("peer.timers.config.{field}: {v} is too large"))),
        }
    };
    let t = p.transport.clone().unwrap_or_default();
    let source_address = match current {
        // A peer read back from ListPeer shows the session's local address: not a setting.
        Some(c)
            if c.spec.source_address.is_none()
                && c.status.negotiated.as_ref().is_some_and(|n| n.local.ip().to_string() == t.local_address) =>
        {
            String::new()
        }
        _ => t.local_address.clone(),
    };
    let password = match (conf.auth_password.is_empty(), current) {
        (true, Some(c)) => c.spec.password.clone().unwrap_or_default(),
        _ => conf.auth_password.clone(),
    };
    let gr = p.graceful_restart.clone().unwrap_or_default();
    let name = match (conf.description.is_empty(), current) {
        (false, _) => conf.description.clone(),
        (true, Some(c)) if c.spec.name != c.spec.address.to_string() => c.spec.name.clone(),
        _ => String::new(),
    };
    Ok(pb::PeerConfig {
        name,
        address,
        port: t.remote_port,
        peer_asn: conf.peer_asn,
        local_asn: conf.local_asn,
        source_address,
        hold_time_secs: secs("hold_time", timers.hold_time)?,
        keepalive_time_secs: secs("keepalive_interval", timers.keepalive_interval)?,
        connect_time_secs: secs("connect_retry", timers.connect_retry)?,
        password,
        ebgp_multihop_ttl: p.ebgp_multihop.as_ref().filter(|e| e.enabled).map_or(0, |e| {
            if e.multihop_ttl == 0 {
                255
            } else {
                e.multihop_ttl
            }
        }),
        passive: t.passive_mode,
        graceful_restart: gr
            .enabled
            .then_some(pb::GracefulRestart { enabled: true, restart_time_secs: gr.restart_time }),
        families,
        // Settings GoBGP has no field for keep their current values on update.
        next_hop_ipv4: current.and_then(|c| c.spec.next_hop_v4).map(|a| a.to_string()).unwrap_or_default(),
        next_hop_ipv6: current.and_then(|c| c.spec.next_hop_v6).map(|a| a.to_string()).unwrap_or_default(),
        max_received_prefixes: current.map(|c| c.spec.max_received_prefixes),
        // BFD is kept by the caller (the PeerSpec of `current`), since its key is never shown.
        ..Default::default()
    })
}

/// Field names of `speaker.v1`'s validation, as GoBGP's.
pub fn gobgp_field(field: &str) -> &str {
    match field {
        "address" => "peer.conf.neighbor_address",
        "peer_asn" => "peer.conf.peer_asn",
        "local_asn" => "peer.conf.local_asn",
        "name" => "peer.conf.description",
        "port" => "peer.transport.remote_port",
        "source_address" => "peer.transport.local_address",
        "hold_time_secs" => "peer.timers.config.hold_time",
        "keepalive_time_secs" => "peer.timers.config.keepalive_interval",
        "connect_time_secs" => "peer.timers.config.connect_retry",
        "password" => "peer.conf.auth_password",
        "ebgp_multihop_ttl" => "peer.ebgp_multihop.multihop_ttl",
        "graceful_restart.restart_time_secs" => "peer.graceful_restart.restart_time",
        "families" => "peer.afi_safis",
        f => f,
    }
}

/// Peer-state events as GoBGP's WatchEvent sends them.
pub fn peer_event(address: IpAddr, state: State, view: Option<&PeerView>) -> api::WatchEventResponse {
    let (peer_asn, local_asn, admin_down, router_id) = view.map_or((0, 0, false, String::new()), |v| {
        (
            v.spec.peer_asn,
            v.local_asn,
            v.admin_down,
            v.status.negotiated.as_ref().map(|n| n.negotiated.peer_router_id.to_string()).unwrap_or_default(),
        )
    });
    let local = view.and_then(|v| v.status.negotiated.as_ref()).map(|n| n.local);
    api::WatchEventResponse {
        event: Some(api::watch_event_response::Event::Peer(api::watch_event_response::PeerEvent {
            r#type: api::watch_event_response::peer_event::Type::State as i32,
            peer: Some(api::Peer {
                conf: Some(api::PeerConf {
                    peer_asn,
                    local_asn,
                    neighbor_address: address.to_string(),
                    ..Default::default()
                }),
                state: Some(api::PeerState {
                    peer_asn,
                    local_asn,
                    neighbor_address: address.to_string(),
                    session_state: session_state(state) as i32,
                    admin_state: admin_state(admin_down),
                    router_id,
                    ..Default::default()
                }),
                transport: Some(api::Transport {
                    local_address: local.map(|l| l.ip().to_string()).unwrap_or_default(),
                    local_port: local.map_or(0, |l| u32::from(l.port())),
                    remote_port: view.map_or(179, |v| u32::from(v.spec.port)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(nlri: Any, pattrs: Vec<Any>) -> api::Path {
        api::Path { nlri: Some(nlri), pattrs, ..Default::default() }
    }

    fn prefix_any(p: &str, len: u32) -> Any {
        pack("IPAddressPrefix", &api::IpAddressPrefix { prefix: p.into(), prefix_len: len })
    }

    #[test]
    fn a_cli_path_parses() {
        let p = path(
            prefix_any("10.0.0.0", 24),
            vec![
                pack("OriginAttribute", &api::OriginAttribute { origin: 2 }),
                pack("NextHopAttribute", &api::NextHopAttribute { next_hop: "0.0.0.0".into() }),
                pack("CommunitiesAttribute", &api::CommunitiesAttribute { communities: vec![(100 << 16) | 100] }),
                pack("LocalPrefAttribute", &api::LocalPrefAttribute { local_pref: 200 }),
                pack("MultiExitDiscAttribute", &api::MultiExitDiscAttribute { med: 5 }),
            ],
        );
        let a = parse_path("path", &p, true).unwrap().advert;
        assert_eq!(a.prefix.to_string(), "10.0.0.0/24");
        assert_eq!(a.attrs.communities, [(100 << 16) | 100].into());
        assert_eq!((a.attrs.local_pref, a.attrs.med), (Some(200), Some(5)));
    }

    #[test]
    fn bad_paths_name_the_field() {
        let cases: Vec<(api::Path, &str)> = vec![
            (api::Path::default(), "path.nlri: required"),
            (path(prefix_any("10.0.0.1", 24), vec![]), "host bits"),
            (path(prefix_any("nonsense", 24), vec![]), "path.nlri"),
            (
                path(Any { type_url: "type.googleapis.com/foo.Bar".into(), value: vec![] }, vec![]),
                "not a GoBGP v3 message",
            ),
            (path(Any { type_url: type_url("IPAddressPrefix"), value: vec![0xff, 0xff] }, vec![]), "cannot decode"),
            (path(pack("EVPNMACIPAdvertisementRoute", &api::IpAddressPrefix::default()), vec![]), "IPAddressPrefix"),
            (
                api::Path {
                    family: Some(api::Family { afi: 25, safi: 70 }),
                    ..path(prefix_any("10.0.0.0", 24), vec![])
                },
                "path.family: afi 25 safi 70",
            ),
            (
                path(
                    prefix_any("10.0.0.0", 24),
                    vec![pack("ExtendedCommunitiesAttribute", &api::CommunitiesAttribute::default())],
                ),
                "path.pattrs[0]: apipb.ExtendedCommunitiesAttribute is not served",
            ),
            (
                path(
                    prefix_any("10.0.0.0", 24),
                    vec![pack(
                        "AsPathAttribute",
                        &api::AsPathAttribute { segments: vec![api::AsSegment { r#type: 2, numbers: vec![1] }] },
                    )],
                ),
                "non-empty AS_PATH",
            ),
            (
                path(
                    prefix_any("10.0.0.0", 24),
                    vec![pack("NextHopAttribute", &api::NextHopAttribute { next_hop: "x".into() })],
                ),
                "path.pattrs[0].next_hop",
            ),
        ];
        for (p, want) in cases {
            let e = parse_path("path", &p, true).err().unwrap_or_else(|| panic!("accepted: {p:?}"));
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
            assert!(e.message().contains(want), "{:?} does not contain {want:?}", e.message());
        }
    }

    #[test]
    fn global_paths_round_trip() {
        let attrs = RouteAttrs { communities: [7].into(), ..Default::default() };
        for p in ["10.0.0.0/24", "2001:db8:1::/64"] {
            let net: IpNet = p.parse().unwrap();
            let gp = global_path(&net, &attrs, SystemTime::now(), None);
            let back = parse_path("p", &gp, true).unwrap().advert;
            assert_eq!((back.prefix, back.attrs), (net, attrs.clone()));
        }
    }
}
