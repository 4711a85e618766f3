//! A scripted raw-TCP peer sends malformed OPENs and UPDATEs to the real speakerd over real TCP
//! (loopback, each misbehaving peer from its own 127.0.0.x). Each must get the right NOTIFICATION, or
//! for RFC 7606 treat-as-withdraw no NOTIFICATION and the routes gone; and a well-behaved peer on the
//! same speakerd must stay Established and keep receiving announcements throughout.
//!
//! The bytes are built by hand here, independently of speakerd's codec.
mod common;
use common::raw::*;
use common::Daemon;
use speaker_api::v1 as pb;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_get_the_right_answer_and_other_peers_keep_going() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start(&["--bgp-listen", &listen]);
    let to: SocketAddr = listen.parse().unwrap();
    let mut c = d.client().await;

    // The well-behaved peer, in its own thread, answering keepalives and collecting UPDATEs.
    add_passive(&mut c, "127.0.0.2", 65002).await;
    let good = std::thread::spawn(move || {
        let mut p = RawPeer::establish(Ipv4Addr::new(127, 0, 0, 2), to, 65002);
        p.s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut updates = Vec::new();
        loop {
            match p.recv() {
                Got::Keepalive => p.send(&KEEPALIVE),
                Got::Update(u) => {
                    let done = u.windows(5).any(|w| w == [32, 198, 51, 100, 99]);
                    updates.push(u);
                    if done {
                        return updates;
                    }
                }
                g => panic!("good peer got {g:?}"),
            }
        }
    });
    wait_state(&mut c, "127.0.0.2", "good peer Established", |s| s.state == pb::SessionState::Established as i32).await;

    struct Case {
        name: &'static str,
        established_first: bool,
        send: Vec<u8>,
        expect: (u8, u8),
        data: Option<Vec<u8>>,
    }
    let nh = [127, 0, 0, 3];
    let cases = vec![
        Case {
            name: "OPEN with the wrong AS",
            established_first: false,
            send: open_with(4, 65099, 90, nh),
            expect: (2, 2),
            data: None,
        },
        Case {
            name: "OPEN version 3",
            established_first: false,
            send: open_with(3, 65003, 90, nh),
            expect: (2, 1),
            data: Some(vec![0, 4]),
        },
        Case {
            name: "OPEN hold time 1",
            established_first: false,
            send: open_with(4, 65003, 1, nh),
            expect: (2, 6),
            data: None,
        },
        Case {
            name: "OPEN BGP Identifier 0",
            established_first: false,
            send: open_with(4, 65003, 90, [0; 4]),
            expect: (2, 3),
            data: None,
        },
        Case {
            name: "bad marker",
            established_first: false,
            send: {
                let mut m = KEEPALIVE.to_vec();
                m[3] = 0;
                m
            },
            expect: (1, 1),
            data: None,
        },
        Case {
            name: "length 5000",
            established_first: false,
            send: {
                let mut m = KEEPALIVE.to_vec();
                m[16] = 0x13;
                m[17] = 0x88;
                m
            },
            expect: (1, 2),
            data: Some(vec![0x13, 0x88]),
        },
        Case {
            name: "unknown type 9",
            established_first: false,
            send: {
                let mut m = KEEPALIVE.to_vec();
                m[18] = 9;
                m
            },
            expect: (1, 3),
            data: Some(vec![9]),
        },
        Case {
            name: "KEEPALIVE in OpenSent",
            established_first: false,
            send: KEEPALIVE.to_vec(),
            expect: (5, 1),
            data: None,
        },
        Case {
            name: "unrecognized well-known attribute",
            established_first: true,
            send: update(&[], &[good_attrs(65003, nh), vec![0x40, 99, 1, 0]].concat(), &[24, 198, 51, 100]),
            expect: (3, 2),
            data: Some(vec![0x40, 99, 1, 0]),
        },
        Case {
            name: "total attribute length overruns the message",
            established_first: true,
            send: {
                let mut m = update(&[], &good_attrs(65003, nh), &[]);
                m[21] = 0xff;
                m
            },
            expect: (3, 1),
            data: None,
        },
        Case {
            name: "NLRI prefix length 33",
            established_first: true,
            send: update(&[], &good_attrs(65003, nh), &[33, 1, 2, 3, 4, 5]),
            expect: (3, 10),
            data: None,
        },
        Case {
            name: "MP_REACH_NLRI with a 5-byte next hop",
            established_first: true,
            send: update(
                &[],
                &[good_attrs(65003, nh), vec![0x80, 14, 12, 0, 2, 1, 5, 1, 2, 3, 4, 5, 0, 8, 0x20]].concat(),
                &[],
            ),
            expect: (3, 9),
            data: None,
        },
        Case {
            name: "OPEN in Established",
            established_first: true,
            send: open_with(4, 65003, 90, nh),
            expect: (5, 3),
            data: None,
        },
    ];
    add_passive(&mut c, "127.0.0.3", 65003).await;
    for case in &cases {
        let from = Ipv4Addr::new(127, 0, 0, 3);
        let mut p = if case.established_first {
            let p = RawPeer::establish(from, to, 65003);
            wait_state(&mut c, "127.0.0.3", "bad peer Established", |s| {
                s.state == pb::SessionState::Established as i32
            })
            .await;
            p
        } else {
            RawPeer::connect(from, to)
        };
        p.send(&case.send);
        match p.recv_notification() {
            Got::Notification(code, sub, data) => {
                assert_eq!((code, sub), case.expect, "{}: data {data:02x?}", case.name);
                if let Some(want) = &case.data {
                    assert_eq!(&data, want, "{}: NOTIFICATION data", case.name);
                }
            }
            g => panic!("{}: expected a NOTIFICATION, got {g:?}\n{}", case.name, d.log()),
        }
        assert_eq!(p.recv(), Got::Closed, "{}: the connection is closed after the NOTIFICATION", case.name);
        // Wait until speakerd has let go of the session before the next case connects.
        wait_state(&mut c, "127.0.0.3", "bad peer down", |s| {
            s.state != pb::SessionState::Established as i32 && s.state != pb::SessionState::OpenSent as i32
        })
        .await;
    }

    // RFC 7606 treat-as-withdraw: the session stays up, the route is gone.
    let mut p = RawPeer::establish(Ipv4Addr::new(127, 0, 0, 3), to, 65003);
    wait_state(&mut c, "127.0.0.3", "Established", |s| s.state == pb::SessionState::Established as i32).await;
    p.send(&update(&[], &good_attrs(65003, nh), &[24, 198, 51, 100]));
    let rx = |s: &pb::PeerState| {
        s.counts.iter().find(|f| f.family == pb::AddressFamily::Ipv4Unicast as i32).map_or(0, |f| f.received)
    };
    wait_state(&mut c, "127.0.0.3", "route received", |s| rx(s) == 1).await;
    let bad_communities = [good_attrs(65003, nh), vec![0xc0, 8, 5, 0, 1, 0, 2, 3]].concat();
    p.send(&update(&[], &bad_communities, &[24, 198, 51, 100]));
    let s = wait_state(&mut c, "127.0.0.3", "treat-as-withdraw", |s| s.updates_treated_as_withdraw == 1).await;
    assert_eq!(rx(&s), 0, "the malformed UPDATE withdrew the route");
    let bad_origin = [vec![0x40, 1, 1, 7], good_attrs(65003, nh)[4..].to_vec()].concat();
    p.send(&update(&[], &bad_origin, &[24, 198, 51, 101]));
    // An eBGP path that does not start with the peer's AS is treat-as-withdraw too.
    p.send(&update(&[], &good_attrs(64999, nh), &[24, 198, 51, 102]));
    // ATOMIC_AGGREGATE with a body: attribute discard, the route is kept.
    p.send(&update(&[], &[good_attrs(65003, nh), vec![0x40, 6, 1, 0]].concat(), &[24, 198, 51, 103]));
    let s = wait_state(&mut c, "127.0.0.3", "three more verdicts", |s| {
        s.updates_treated_as_withdraw == 3 && s.attributes_discarded == 1
    })
    .await;
    assert_eq!(rx(&s), 1, "only the route with the discarded attribute is held");
    assert_eq!(s.state, pb::SessionState::Established as i32);
    assert_eq!(s.notifications_sent, cases.len() as u64, "no NOTIFICATION for RFC 7606 cases");

    // The well-behaved peer never noticed: still Established since the start, and it gets a new route.
    let g = state(&mut c, "127.0.0.2").await;
    assert_eq!((g.state, g.established_count, g.notifications_sent), (pb::SessionState::Established as i32, 1, 0));
    let a = pb::Announcement { prefix: "198.51.100.99/32".into(), ..Default::default() };
    c.announce(pb::AnnounceRequest { owner: "t".into(), announcements: vec![a] }).await.unwrap();
    let updates = tokio::task::spawn_blocking(move || good.join().unwrap()).await.unwrap();
    assert!(!updates.is_empty());
    drop(p);
}
