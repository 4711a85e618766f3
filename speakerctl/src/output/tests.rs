use super::*;
use speaker_api::v1::{FamilyCounts, GracefulRestart, Negotiated, Notification, Peer, PeerConfig, PeerState};

fn established_peer() -> Peer {
    Peer {
        config: Some(PeerConfig {
            name: "tor1".into(),
            address: "192.0.2.1".into(),
            peer_asn: 65001,
            local_asn: 65000,
            hold_time_secs: Some(30),
            password: "s3cret".into(),
            graceful_restart: Some(GracefulRestart { enabled: true, restart_time_secs: 0 }),
            families: vec![AddressFamily::Ipv4Unicast as i32],
            ..Default::default()
        }),
        state: Some(PeerState {
            state: SessionState::Established as i32,
            state_secs: 83,
            negotiated: Some(Negotiated {
                hold_time_secs: 30,
                keepalive_time_secs: 10,
                families: vec![AddressFamily::Ipv4Unicast as i32],
                four_octet_asn: true,
                route_refresh: true,
                graceful_restart: false,
                extended_next_hop: vec![],
                peer_router_id: "192.0.2.1".into(),
                local_address: "192.0.2.254".into(),
                local_port: 40123,
                remote_port: 179,
                peer_asn: 65001,
            }),
            counts: vec![
                FamilyCounts { family: AddressFamily::Ipv4Unicast as i32, received: 10, advertised: 3 },
                FamilyCounts { family: AddressFamily::Ipv6Unicast as i32, received: 5, advertised: 1 },
            ],
            established_count: 1,
            last_notification_received: Some(Notification {
                code: 6,
                subcode: 2,
                description: "Cease / Administrative Shutdown".into(),
                data_hex: "".into(),
            }),
            ..Default::default()
        }),
    }
}

fn idle_peer() -> Peer {
    Peer {
        config: Some(PeerConfig { address: "2001:db8::1".into(), peer_asn: 4_200_000_000, ..Default::default() }),
        state: Some(PeerState {
            state: SessionState::Active as i32,
            state_secs: 90_061,
            last_error: "connection refused".into(),
            ..Default::default()
        }),
    }
}

#[test]
fn peer_list_table_has_the_gobgp_columns_aligned() {
    let views: Vec<PeerView> = [established_peer(), idle_peer()].iter().map(PeerView::from).collect();
    let expected = "\
Peer         Name          AS   Up/Down  State        #Received  #Advertised
192.0.2.1    tor1       65001  00:01:23  Established         15            4
2001:db8::1  -     4200000000     never  Active               0            0
";
    assert_eq!(peer_table(&views), expected);
}

#[test]
fn peer_list_table_of_no_peers_is_the_header() {
    assert_eq!(peer_table(&[]), "Peer  Name  AS  Up/Down  State  #Received  #Advertised\n");
}

#[test]
fn up_down_is_duration_in_state_once_the_session_was_ever_up() {
    let mut p = PeerView::from(&idle_peer());
    assert_eq!(p.up_down(), "never");
    p.established_count = 2;
    assert_eq!(p.up_down(), "1d 01:01:01");
}

#[test]
fn peer_json_has_the_contract_fields() {
    let views: Vec<PeerView> = [established_peer(), idle_peer()].iter().map(PeerView::from).collect();
    let text = render(&views, Format::Json, |_| unreachable!()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let p = &v[0];
    assert_eq!(p["address"], "192.0.2.1");
    assert_eq!(p["name"], "tor1");
    assert_eq!(p["peer_asn"], 65001);
    assert_eq!(p["local_asn"], 65000);
    assert_eq!(p["state"], "established");
    assert_eq!(p["state_secs"], 83);
    assert_eq!(p["received"], 15);
    assert_eq!(p["advertised"], 4);
    assert_eq!(p["config"]["hold_time_secs"], 30);
    assert_eq!(p["config"]["keepalive_time_secs"], serde_json::Value::Null);
    assert_eq!(p["config"]["families"], serde_json::json!(["ipv4"]));
    assert_eq!(p["config"]["graceful_restart"], serde_json::json!({"enabled": true, "restart_time_secs": 0}));
    assert_eq!(p["negotiated"]["hold_time_secs"], 30);
    assert_eq!(p["negotiated"]["four_octet_asn"], true);
    assert_eq!(p["counts"][1], serde_json::json!({"family": "ipv6", "received": 5, "advertised": 1}));
    assert_eq!(p["last_notification_received"]["code"], 6);
    assert_eq!(p["last_notification_sent"], serde_json::Value::Null);

    let q = &v[1];
    assert_eq!(q["state"], "active");
    assert_eq!(q["peer_asn"], 4_200_000_000u64);
    assert_eq!(q["negotiated"], serde_json::Value::Null);
    assert_eq!(q["config"]["graceful_restart"], serde_json::Value::Null);
    assert_eq!(q["last_error"], "connection refused");
}

#[test]
fn every_state_has_its_lowercase_json_name() {
    let names: Vec<String> = (0..=7).map(state_json).collect();
    assert_eq!(
        names,
        ["unspecified", "idle", "connect", "active", "opensent", "openconfirm", "established", "unknown(7)"]
    );
    let table: Vec<String> = names.iter().map(|n| state_table_from_json(n)).collect();
    assert_eq!(
        table,
        ["Unspecified", "Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established", "unknown(7)"]
    );
}

#[test]
fn peer_without_state_renders_as_unspecified_with_zero_counts() {
    let p = PeerView::from(&Peer {
        config: Some(PeerConfig { address: "192.0.2.9".into(), ..Default::default() }),
        state: None,
    });
    assert_eq!((p.state.as_str(), p.received, p.negotiated.is_none()), ("unspecified", 0, true));
}

#[test]
fn peer_yaml_is_valid_yaml_with_the_same_fields() {
    let view = PeerView::from(&established_peer());
    let text = render(&view, Format::Yaml, |_| unreachable!()).unwrap();
    let v: serde_json::Value = serde_yaml::from_str(&text).unwrap();
    assert_eq!(v["state"], "established");
    assert_eq!(v["config"]["address"], "192.0.2.1");
}

/// The block's lines with runs of blanks squeezed, for matching independent of the alignment width.
fn squeezed(text: &str) -> Vec<String> {
    text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect()
}

#[test]
fn peer_show_block_is_readable_and_hides_the_password() {
    let text = peer_block(&PeerView::from(&established_peer()));
    let lines = squeezed(&text);
    for line in [
        "Peer 192.0.2.1 (tor1):",
        "Config:",
        "Negotiated:",
        "Counters:",
        "state: Established",
        "state_secs: 83 (00:01:23)",
        "hold_time_secs: 30",
        "keepalive_time_secs: default (a third of the hold time)",
        "password: (set)",
        "graceful_restart: enabled",
        "restart_time_secs: default (120)",
        "families: ipv4",
        "local_address: 192.0.2.254 port 40123",
        "four_octet_asn: true",
        "ipv4 received: 10",
        "ipv6 advertised: 1",
        "last_notification_sent: none",
        "last_notification_received: 6/2 Cease / Administrative Shutdown",
    ] {
        assert!(lines.iter().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(!text.contains("s3cret"));
    assert!(text.lines().all(|l| l == l.trim_end()), "trailing blanks in\n{text}");
    // Values line up: every indented key: value line has its value at the same column.
    let columns: std::collections::BTreeSet<usize> = text
        .lines()
        .filter(|l| l.starts_with("  "))
        .map(|l| {
            let colon = l.find(": ").unwrap();
            colon + 1 + l[colon + 1..].chars().take_while(|c| *c == ' ').count()
        })
        .collect();
    assert_eq!(columns.len(), 1, "values not aligned in\n{text}");

    let idle = squeezed(&peer_block(&PeerView::from(&idle_peer())));
    for line in [
        "Peer 2001:db8::1:",
        "session: not established",
        "last_error: connection refused",
        "port: default (179)",
        "graceful_restart: disabled",
    ] {
        assert!(idle.iter().any(|l| l == line), "missing {line:?} in {idle:#?}");
    }
}

fn announcements() -> Vec<AnnouncementView> {
    [
        Announcement {
            prefix: "203.0.113.10/32".into(),
            owner: "speakerctl".into(),
            communities: vec!["65000:100".into(), "no-export".into()],
            large_communities: vec!["65000:1:2".into()],
            local_pref: Some(200),
            med: Some(10),
            peers: vec!["tor1".into()],
        },
        Announcement { prefix: "2001:db8::10/128".into(), owner: "k8s-bridge".into(), ..Default::default() },
    ]
    .iter()
    .map(AnnouncementView::from)
    .collect()
}

#[test]
fn announcement_table_columns() {
    let expected = "\
Prefix            Owner       Communities          Large communities  LocalPref  MED  Peers
203.0.113.10/32   speakerctl  65000:100,no-export  65000:1:2                200   10  tor1
2001:db8::10/128  k8s-bridge  -                    -                          -    -  all
";
    assert_eq!(announcement_table(&announcements()), expected);
}

#[test]
fn announcement_json_is_an_array_of_proto_named_objects() {
    let text = render(&announcements(), Format::Json, |_| unreachable!()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v,
        serde_json::json!([
            {"prefix": "203.0.113.10/32", "owner": "speakerctl", "communities": ["65000:100", "no-export"],
             "large_communities": ["65000:1:2"], "local_pref": 200, "med": 10, "peers": ["tor1"]},
            {"prefix": "2001:db8::10/128", "owner": "k8s-bridge", "communities": [], "large_communities": [],
             "local_pref": null, "med": null, "peers": []},
        ])
    );
}

#[test]
fn empty_views_and_lists_encode_as_json() {
    assert_eq!(render(&EmptyView {}, Format::Json, |_| unreachable!()).unwrap(), "{}\n");
    assert_eq!(render(&Vec::<AnnouncementView>::new(), Format::Json, |_| unreachable!()).unwrap(), "[]\n");
    assert_eq!(render(&EmptyView {}, Format::Table, |_| "done".into()).unwrap(), "done\n");
}

#[test]
fn table_right_aligns_and_counts_characters_not_bytes() {
    let mut t = Table::new(&[("A", Align::Left), ("N", Align::Right), ("Z", Align::Left)]);
    t.row(vec!["äö".into(), "1".into(), "".into()]);
    t.row(vec!["x".into(), "100".into()]);
    assert_eq!(t.render(), "A     N  Z\näö    1\nx   100\n");
}

#[test]
fn durations_and_timestamps() {
    assert_eq!(format_duration(0), "00:00:00");
    assert_eq!(format_duration(83), "00:01:23");
    assert_eq!(format_duration(86_399), "23:59:59");
    assert_eq!(format_duration(86_400 * 12 + 3_723), "12d 01:02:03");
    assert_eq!(format_timestamp_ms(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(format_timestamp_ms(946_092_345_007), "1999-12-25T03:25:45.007Z");
    assert_eq!(format_timestamp_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(format_timestamp_ms(1_795_000_000_999), "2026-11-18T11:06:40.999Z");
    // No panic at the extreme.
    let _ = format_timestamp_ms(u64::MAX);
    let _ = format_duration(u64::MAX);
}
