//! Domain → `speaker.v1` proto conversion.
use crate::bgp::fsm::State;
use crate::bgp::wire::{Family, Notification};
use crate::events::{AnnouncementChange, Event};
use crate::speaker::PeerView;
use speaker_api::v1 as pb;
use std::time::{Instant, SystemTime};

pub fn state(s: State) -> pb::SessionState {
    match s {
        State::Idle => pb::SessionState::Idle,
        State::Connect => pb::SessionState::Connect,
        State::Active => pb::SessionState::Active,
        State::OpenSent => pb::SessionState::OpenSent,
        State::OpenConfirm => pb::SessionState::OpenConfirm,
        State::Established => pb::SessionState::Established,
    }
}

pub fn family(f: Family) -> pb::AddressFamily {
    match f {
        Family::IPV4_UNICAST => pb::AddressFamily::Ipv4Unicast,
        Family::IPV6_UNICAST => pb::AddressFamily::Ipv6Unicast,
        _ => pb::AddressFamily::Unspecified,
    }
}

pub fn notification(n: &Notification) -> pb::Notification {
    pb::Notification {
        code: u32::from(n.code),
        subcode: u32::from(n.subcode),
        description: n.description(),
        data_hex: n.data.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

pub fn peer(v: &PeerView) -> pb::Peer {
    let mut config = pb::PeerConfig::from(&v.spec);
    config.owner = v.owner.clone();
    if config.local_asn == 0 {
        config.local_asn = v.local_asn;
    }
    let s = &v.status;
    let negotiated = s.negotiated.as_ref().map(|i| {
        let n = &i.negotiated;
        pb::Negotiated {
            hold_time_secs: u32::from(n.hold_time),
            keepalive_time_secs: u32::from(n.keepalive),
            families: n.families.iter().map(|f| family(*f) as i32).collect(),
            four_octet_asn: n.four_octet_as,
            route_refresh: n.route_refresh,
            graceful_restart: n.graceful_restart,
            extended_next_hop: if n.extended_next_hop_v4 {
                vec![pb::AddressFamily::Ipv4Unicast as i32]
            } else {
                vec![]
            },
            peer_router_id: n.peer_router_id.to_string(),
            local_address: i.local.ip().to_string(),
            local_port: u32::from(i.local.port()),
            remote_port: u32::from(i.remote.port()),
            peer_asn: n.peer_asn,
        }
    });
    let counts =
        [(Family::IPV4_UNICAST, s.received[0], v.advertised.0), (Family::IPV6_UNICAST, s.received[1], v.advertised.1)]
            .into_iter()
            .filter(|(f, ..)| v.spec.families.contains(f))
            .map(|(f, r, a)| pb::FamilyCounts { family: family(f) as i32, received: r, advertised: a })
            .collect();
    pb::Peer {
        config: Some(config),
        state: Some(pb::PeerState {
            state: state(s.state) as i32,
            state_secs: Instant::now().saturating_duration_since(s.since).as_secs(),
            negotiated,
            counts,
            dropped_prefixes: s.dropped_prefixes,
            updates_received: s.updates_received,
            updates_sent: s.updates_sent,
            keepalives_received: s.keepalives_received,
            keepalives_sent: s.keepalives_sent,
            notifications_received: s.notifications_received,
            notifications_sent: s.notifications_sent,
            updates_treated_as_withdraw: s.treated_as_withdraw,
            attributes_discarded: s.attributes_discarded,
            established_count: s.established_count,
            dropped_count: s.dropped_count,
            last_notification_sent: s.last_notification_sent.as_ref().map(notification),
            last_notification_received: s.last_notification_received.as_ref().map(notification),
            last_error: s.last_error.clone(),
            bfd: s.bfd.map(|b| pb::BfdInfo {
                state: b.state.name().into(),
                remote_state: b.remote_state.name().into(),
                diagnostic: u32::from(b.diag),
                local_discriminator: b.local_disc,
                remote_discriminator: b.remote_disc,
                tx_interval_ms: b.tx_interval.as_millis() as u32,
                detect_time_ms: b.detect_time.as_millis() as u32,
                state_changes: b.state_changes,
            }),
        }),
    }
}

pub fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub fn member(m: &crate::membership::Member) -> pb::Member {
    pb::Member {
        name: m.name.clone(),
        address: m.addr.to_string(),
        state: member_state(m.state) as i32,
        incarnation: m.incarnation,
        local: m.local,
    }
}

pub fn member_state(s: crate::membership::MemberState) -> pb::MemberState {
    match s {
        crate::membership::MemberState::Alive => pb::MemberState::Alive,
        crate::membership::MemberState::Suspect => pb::MemberState::Suspect,
        crate::membership::MemberState::Dead => pb::MemberState::Dead,
    }
}

pub fn event(e: &Event) -> pb::WatchEvent {
    match e {
        Event::Bfd(b) => pb::WatchEvent {
            timestamp_ms: millis(b.at),
            event: Some(pb::watch_event::Event::Bfd(pb::BfdEvent {
                address: b.address.to_string(),
                old_state: b.old.name().into(),
                new_state: b.new.name().into(),
                diagnostic: u32::from(b.diag),
            })),
        },
        Event::L2Owner(o) => pb::WatchEvent {
            timestamp_ms: millis(o.at),
            event: Some(pb::watch_event::Event::L2Owner(pb::L2OwnerEvent {
                ip: o.ip.to_string(),
                old_node: o.old.clone().unwrap_or_default(),
                new_node: o.new.clone().unwrap_or_default(),
                local: o.local,
            })),
        },
        Event::Member(m) => pb::WatchEvent {
            timestamp_ms: millis(m.at),
            event: Some(pb::watch_event::Event::Member(pb::MemberEvent {
                member: Some(member(&m.member)),
                old_state: m.old.map_or(pb::MemberState::Unspecified, member_state) as i32,
            })),
        },
        Event::Peer(p) => pb::WatchEvent {
            timestamp_ms: millis(p.at),
            event: Some(pb::watch_event::Event::Peer(pb::PeerEvent {
                address: p.address.to_string(),
                name: p.name.clone(),
                old_state: state(p.old) as i32,
                new_state: state(p.new) as i32,
                reason: p.reason.clone(),
                deleted: p.deleted,
            })),
        },
        Event::Announcement(a) => {
            let kind = match a.change {
                AnnouncementChange::Added => pb::announcement_event::Kind::Added,
                AnnouncementChange::Changed => pb::announcement_event::Kind::Changed,
                AnnouncementChange::Removed => pb::announcement_event::Kind::Removed,
            };
            pb::WatchEvent {
                timestamp_ms: millis(a.at),
                event: Some(pb::watch_event::Event::Announcement(pb::AnnouncementEvent {
                    kind: kind as i32,
                    announcement: Some(a.advert.to_proto(&a.owner)),
                })),
            }
        }
    }
}
