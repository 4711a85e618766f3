//! Prometheus text exposition on an optional address: MetalLB's metric names, beside speakerd's own.
//! Values are read from the peers' status at scrape time; there is no separate registry to drift.
use crate::bgp::fsm::State;
use crate::speaker::Speaker;
use std::fmt::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Renders every metric.
pub async fn render(speaker: &Speaker) -> String {
    let peers = speaker.list_peers().await;
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, rows: &mut dyn Iterator<Item = (String, String)>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let lbl = |p: &crate::speaker::PeerView| format!("peer=\"{}:{}\"", p.spec.address, p.spec.port);
    let own = |p: &crate::speaker::PeerView| {
        format!("peer=\"{}\",name=\"{}\"", p.spec.address, p.spec.name.replace('"', "'"))
    };
    family(
        "metallb_bgp_session_up",
        "gauge",
        "BGP session state (1 is up, 0 is down)",
        &mut peers.iter().map(|p| (lbl(p), u8::from(p.status.state == State::Established).to_string())),
    );
    family(
        "metallb_bgp_updates_total",
        "counter",
        "Number of BGP UPDATE messages sent",
        &mut peers.iter().map(|p| (lbl(p), p.status.updates_sent.to_string())),
    );
    family(
        "metallb_bgp_announced_prefixes_total",
        "gauge",
        "Number of prefixes currently being advertised on the BGP session",
        &mut peers.iter().map(|p| (lbl(p), (p.advertised.0 + p.advertised.1).to_string())),
    );
    let pending = speaker.pending_prefixes().await;
    family(
        "metallb_bgp_pending_prefixes_total",
        "gauge",
        "Number of prefixes that should be advertised on the BGP session",
        &mut pending.iter().map(|(a, port, n)| (format!("peer=\"{a}:{port}\""), n.to_string())),
    );
    family(
        "speakerd_bgp_session_state",
        "gauge",
        "Session state: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established",
        &mut peers.iter().map(|p| {
            let n = match p.status.state {
                State::Idle => 1,
                State::Connect => 2,
                State::Active => 3,
                State::OpenSent => 4,
                State::OpenConfirm => 5,
                State::Established => 6,
            };
            (own(p), n.to_string())
        }),
    );
    family(
        "speakerd_bgp_received_prefixes",
        "gauge",
        "Prefixes received from the peer and held, by family",
        &mut peers.iter().flat_map(|p| {
            [("ipv4", p.status.received[0]), ("ipv6", p.status.received[1])]
                .into_iter()
                .map(move |(f, n)| (format!("{},family=\"{f}\"", own(p)), n.to_string()))
        }),
    );
    for (name, help, get) in [
        (
            "speakerd_bgp_updates_received_total",
            "UPDATE messages received",
            (|p| p.status.updates_received) as fn(&crate::speaker::PeerView) -> u64,
        ),
        ("speakerd_bgp_keepalives_sent_total", "KEEPALIVE messages sent", |p| p.status.keepalives_sent),
        ("speakerd_bgp_keepalives_received_total", "KEEPALIVE messages received", |p| p.status.keepalives_received),
        ("speakerd_bgp_notifications_sent_total", "NOTIFICATION messages sent", |p| p.status.notifications_sent),
        ("speakerd_bgp_notifications_received_total", "NOTIFICATION messages received", |p| {
            p.status.notifications_received
        }),
        ("speakerd_bgp_established_total", "Times the session reached Established", |p| p.status.established_count),
        ("speakerd_bgp_treat_as_withdraw_total", "UPDATEs handled as treat-as-withdraw (RFC 7606)", |p| {
            p.status.treated_as_withdraw
        }),
        ("speakerd_bgp_dropped_prefixes_total", "Received prefixes dropped past max_received_prefixes", |p| {
            p.status.dropped_prefixes
        }),
    ] {
        family(name, "counter", help, &mut peers.iter().map(|p| (own(p), get(p).to_string())));
    }
    let with_bfd: Vec<_> = peers.iter().filter_map(|p| p.status.bfd.map(|b| (own(p), b))).collect();
    family(
        "speakerd_bfd_session_up",
        "gauge",
        "BFD session state of the peer (1 is Up)",
        &mut with_bfd
            .iter()
            .map(|(l, b)| (l.clone(), u8::from(b.state == crate::bfd::packet::BfdState::Up).to_string())),
    );
    family(
        "speakerd_bfd_state_changes_total",
        "counter",
        "BFD session state changes",
        &mut with_bfd.iter().map(|(l, b)| (l.clone(), b.state_changes.to_string())),
    );
    if let Some(m) = speaker.bfd() {
        // MetalLB's FRR-mode names (FRR's BFD counters, relabelled metallb_bfd_*), by peer IP.
        let counters = m.counters();
        let up: std::collections::BTreeMap<String, bool> = peers
            .iter()
            .filter_map(|p| Some((p.spec.address.to_string(), p.status.bfd?.state == crate::bfd::packet::BfdState::Up)))
            .collect();
        family(
            "metallb_bfd_session_up",
            "gauge",
            "BFD session state (1 is up, 0 is down)",
            &mut counters.keys().map(|ip| {
                (format!("peer=\"{ip}\""), u8::from(up.get(&ip.to_string()).copied().unwrap_or(false)).to_string())
            }),
        );
        for (name, help, get) in [
            (
                "metallb_bfd_control_packet_input",
                "Number of received BFD control packets",
                (|c: &crate::bfd::BfdCounters| c.control_in.load(std::sync::atomic::Ordering::Relaxed))
                    as fn(&crate::bfd::BfdCounters) -> u64,
            ),
            ("metallb_bfd_control_packet_output", "Number of sent BFD control packets", |c| {
                c.control_out.load(std::sync::atomic::Ordering::Relaxed)
            }),
            ("metallb_bfd_session_up_events", "Number of BFD session up events", |c| {
                c.up_events.load(std::sync::atomic::Ordering::Relaxed)
            }),
            ("metallb_bfd_session_down_events", "Number of BFD session down events", |c| {
                c.down_events.load(std::sync::atomic::Ordering::Relaxed)
            }),
        ] {
            family(
                name,
                "counter",
                help,
                &mut counters.iter().map(|(ip, c)| (format!("peer=\"{ip}\""), get(c).to_string())),
            );
        }
        family(
            "speakerd_bfd_dropped_packets_total",
            "counter",
            "Received BFD packets dropped, by reason",
            &mut m.drops().into_iter().map(|(k, v)| (format!("reason=\"{k}\""), v.to_string())),
        );
    }
    if let Some(l2) = speaker.l2() {
        let c = l2.counters();
        // MetalLB's names, labelled by IP as MetalLB labels them (an IP's series lives while it is
        // claimed here); the node totals under speakerd's names.
        let per_ip: Vec<(std::net::IpAddr, [u64; 3])> = l2
            .ip_counters()
            .iter()
            .map(|(ip, x)| (*ip, [x.requests_received, x.responses_sent, x.gratuitous_sent]))
            .collect();
        for (k, (name, help)) in [
            ("metallb_layer2_requests_received", "Number of layer2 requests received for owned IPs"),
            ("metallb_layer2_responses_sent", "Number of layer2 responses sent for owned IPs in response to requests"),
            (
                "metallb_layer2_gratuitous_sent",
                "Number of gratuitous layer2 packets sent for owned IPs as a result of failovers",
            ),
        ]
        .into_iter()
        .enumerate()
        {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (ip, x) in &per_ip {
                let _ = writeln!(out, "{name}{{ip=\"{ip}\"}} {}", x[k]);
            }
        }
        for (name, help, v) in [
            (
                "speakerd_layer2_requests_received_total",
                "ARP requests and Neighbor Solicitations received for owned IPs, all IPs",
                c.requests_received,
            ),
            (
                "speakerd_layer2_responses_sent_total",
                "ARP replies and Neighbor Advertisements sent, all IPs",
                c.responses_sent,
            ),
            (
                "speakerd_layer2_gratuitous_sent_total",
                "Gratuitous ARPs and unsolicited Neighbor Advertisements sent, all IPs",
                c.gratuitous_sent,
            ),
            (
                "speakerd_layer2_conflicts_seen_total",
                "ARP replies or gratuitous ARPs from another MAC for an IP this node answers, on its interface",
                c.conflicts_seen,
            ),
            (
                "speakerd_layer2_conflicts_lost_total",
                "Address conflicts this node lost (lower MAC wins): it went quiet on that interface for a while",
                c.conflicts_lost,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        }
        let owned = l2.status();
        let failing = owned.iter().filter(|s| s.error.is_some()).count();
        let _ = writeln!(
            out,
            "# HELP speakerd_layer2_owned_ips IPs this node owns, and of those how many it cannot answer for\n# TYPE speakerd_layer2_owned_ips gauge\nspeakerd_layer2_owned_ips{{answering=\"true\"}} {}\nspeakerd_layer2_owned_ips{{answering=\"false\"}} {failing}",
            owned.len() - failing
        );
        let _ = writeln!(
            out,
            "# HELP speakerd_gossip_secret_missing 1 while --gossip-secret-file is missing or empty and gossip runs unencrypted\n# TYPE speakerd_gossip_secret_missing gauge\nspeakerd_gossip_secret_missing {}",
            u8::from(crate::membership::SECRET_MISSING.load(std::sync::atomic::Ordering::Relaxed))
        );
        let view = l2.view();
        let _ = writeln!(out, "# HELP speakerd_gossip_members Gossip members by state, as this node sees them\n# TYPE speakerd_gossip_members gauge");
        for st in [
            crate::membership::MemberState::Alive,
            crate::membership::MemberState::Suspect,
            crate::membership::MemberState::Dead,
        ] {
            let n = view.members.iter().filter(|m| m.state == st).count();
            let _ = writeln!(out, "speakerd_gossip_members{{state=\"{}\"}} {n}", format!("{st:?}").to_lowercase());
        }
        let _ = writeln!(
            out,
            "# HELP speakerd_layer2_owner_changes_total Times the owner of a Layer 2 IP changed, as this node computed it\n# TYPE speakerd_layer2_owner_changes_total counter\nspeakerd_layer2_owner_changes_total {}",
            l2.owner_changes()
        );
        let _ = writeln!(out, "# HELP speakerd_layer2_quorate 1 if this node sees a majority of its Layer 2 candidate sets\n# TYPE speakerd_layer2_quorate gauge\nspeakerd_layer2_quorate {}", u8::from(l2.quorate()));
        let _ = writeln!(
            out,
            "# HELP speakerd_layer2_unservable_ips IPs this node gave up because it cannot answer for them (in hold-down)\n# TYPE speakerd_layer2_unservable_ips gauge\nspeakerd_layer2_unservable_ips {}\n# HELP speakerd_layer2_handoffs_total Times this node gave an owned IP up because it could not answer for it\n# TYPE speakerd_layer2_handoffs_total counter\nspeakerd_layer2_handoffs_total {}",
            l2.gave_up().len(),
            l2.handoffs()
        );
    }
    out
}

/// Serves `GET /metrics` (HTTP/1.0-style, one request per connection) until cancelled.
pub async fn serve(addr: SocketAddr, speaker: Arc<Speaker>, cancel: CancellationToken) -> std::io::Result<()> {
    let l = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %l.local_addr()?, "metrics listening");
    loop {
        let (mut s, _) = tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            r = l.accept() => r?,
        };
        let speaker = speaker.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let n = match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let first = req.lines().next().unwrap_or("");
            let (status, body) = if first.starts_with("GET /metrics") {
                ("200 OK", render(&speaker).await)
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
            let _ = s.shutdown().await;
        });
    }
}
