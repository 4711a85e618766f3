//! RFC 7606 / RFC 4271 §6.3 conformance over a real TCP session: one row per malformation class, each
//! sent by a scripted peer (bytes built by hand) to the real speakerd after a good route, with the
//! outcome checked through the API and on the wire. docs/RFC7606.md is the same table; a test checks
//! that every row here is documented with the same outcome.
mod common;
use common::raw::*;
use common::Daemon;
use speaker_api::v1 as pb;
use std::net::{Ipv4Addr, SocketAddr};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    /// NOTIFICATION code/subcode, then the session closes.
    Reset(u8, u8),
    /// No NOTIFICATION; the UPDATE's routes are withdrawn (treat-as-withdraw).
    Withdraw,
    /// No NOTIFICATION; the attribute is dropped and the route kept.
    Discard,
    /// Not an error: nothing happens, the route is kept.
    Kept,
}

impl Want {
    fn doc(self) -> String {
        match self {
            Want::Reset(c, s) => format!("NOTIFICATION {c}/{s}, session closed"),
            Want::Withdraw => "treat-as-withdraw".into(),
            Want::Discard => "attribute discard, route kept".into(),
            Want::Kept => "not an error, route kept".into(),
        }
    }
}

struct Row {
    class: &'static str,
    /// The UPDATE message (whole, with header).
    update: Vec<u8>,
    want: Want,
}

const ASN: u32 = 65003;
/// The route the good UPDATE carries, and the malformed one repeats.
const R: [u8; 4] = [24, 198, 51, 100];
const R2: [u8; 4] = [24, 198, 51, 101];

fn origin(v: u8) -> Vec<u8> {
    vec![0x40, 1, 1, v]
}
fn as_path(asn: u32) -> Vec<u8> {
    let mut a = vec![0x40, 2, 6, 2, 1];
    a.extend_from_slice(&asn.to_be_bytes());
    a
}
fn next_hop(nh: [u8; 4]) -> Vec<u8> {
    let mut a = vec![0x40, 3, 4];
    a.extend_from_slice(&nh);
    a
}

fn rows(nh: [u8; 4]) -> Vec<Row> {
    let good = good_attrs(ASN, nh);
    let with = |extra: &[u8]| [good.clone(), extra.to_vec()].concat();
    let upd = |attrs: Vec<u8>| update(&[], &attrs, &R);
    vec![
        // Session resets: the message cannot be parsed reliably (RFC 4271 §6.3, RFC 7606 §4, §5.3, §7.11).
        Row {
            class: "withdrawn routes length overruns the message",
            update: {
                let mut m = update(&[], &good, &R);
                m[19] = 0xff;
                m
            },
            want: Want::Reset(3, 1),
        },
        Row {
            class: "total path attribute length overruns the message",
            update: {
                let mut m = update(&[], &good, &[]);
                m[21] = 0xff;
                m
            },
            want: Want::Reset(3, 1),
        },
        Row {
            class: "NLRI prefix length 33",
            update: update(&[], &good, &[33, 1, 2, 3, 4, 5]),
            want: Want::Reset(3, 10),
        },
        Row {
            class: "unrecognized well-known attribute",
            update: upd(with(&[0x40, 99, 1, 0])),
            want: Want::Reset(3, 2),
        },
        Row {
            class: "MP_REACH_NLRI with a 5-byte next hop",
            update: update(&[], &with(&[0x80, 14, 12, 0, 2, 1, 5, 1, 2, 3, 4, 5, 0, 8, 0x20]), &[]),
            want: Want::Reset(3, 9),
        },
        Row {
            class: "MP_REACH_NLRI twice",
            update: {
                let mp = [0x80, 14, 13, 0, 1, 1, 4, nh[0], nh[1], nh[2], nh[3], 0, 24, 198, 51, 100];
                update(&[], &[origin(0), as_path(ASN), mp.to_vec(), mp.to_vec()].concat(), &[])
            },
            want: Want::Reset(3, 1),
        },
        // Treat-as-withdraw (RFC 7606 §7): the attribute matters for route selection.
        Row {
            class: "ORIGIN value 7",
            update: upd([origin(7), as_path(ASN), next_hop(nh)].concat()),
            want: Want::Withdraw,
        },
        Row {
            class: "ORIGIN length 2",
            update: upd([vec![0x40, 1, 2, 0, 0], as_path(ASN), next_hop(nh)].concat()),
            want: Want::Withdraw,
        },
        Row {
            class: "ORIGIN with the Optional flag (attribute flags error)",
            update: upd([vec![0xc0, 1, 1, 0], as_path(ASN), next_hop(nh)].concat()),
            want: Want::Withdraw,
        },
        Row {
            class: "AS_PATH segment count overruns the attribute",
            update: upd([
                origin(0),
                {
                    let mut a = vec![0x40, 2, 6, 2, 2];
                    a.extend_from_slice(&ASN.to_be_bytes());
                    a
                },
                next_hop(nh),
            ]
            .concat()),
            want: Want::Withdraw,
        },
        Row {
            class: "AS_PATH segment type 9",
            update: upd([
                origin(0),
                {
                    let mut a = vec![0x40, 2, 6, 9, 1];
                    a.extend_from_slice(&ASN.to_be_bytes());
                    a
                },
                next_hop(nh),
            ]
            .concat()),
            want: Want::Withdraw,
        },
        Row {
            class: "AS_PATH from an eBGP peer not starting with its AS",
            update: upd(good_attrs(64999, nh)),
            want: Want::Withdraw,
        },
        Row {
            class: "NEXT_HOP length 5",
            update: upd([origin(0), as_path(ASN), vec![0x40, 3, 5, nh[0], nh[1], nh[2], nh[3], 0]].concat()),
            want: Want::Withdraw,
        },
        Row {
            class: "NEXT_HOP missing with NLRI",
            update: upd([origin(0), as_path(ASN)].concat()),
            want: Want::Withdraw,
        },
        Row { class: "MULTI_EXIT_DISC length 3", update: upd(with(&[0x80, 4, 3, 0, 0, 1])), want: Want::Withdraw },
        Row { class: "COMMUNITIES length 5", update: upd(with(&[0xc0, 8, 5, 0, 1, 0, 2, 3])), want: Want::Withdraw },
        Row {
            class: "LARGE_COMMUNITIES length 11",
            update: upd(with(&[0xc0, 32, 11, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0])),
            want: Want::Withdraw,
        },
        Row {
            class: "attribute length overruns the path attributes (no MP attribute)",
            update: upd(with(&[0xc0, 8, 10, 0, 0, 0, 1])),
            want: Want::Withdraw,
        },
        // Attribute discard (RFC 7606 §7.6, §7.7, RFC 6793 §6): the attribute does not affect selection.
        Row { class: "ATOMIC_AGGREGATE length 1", update: upd(with(&[0x40, 6, 1, 0])), want: Want::Discard },
        Row { class: "AGGREGATOR length 5", update: upd(with(&[0xc0, 7, 5, 0, 0, 1, 1, 1])), want: Want::Discard },
        Row { class: "AS4_PATH malformed", update: upd(with(&[0xc0, 17, 3, 2, 1, 0])), want: Want::Discard },
        Row { class: "AS4_AGGREGATOR length 3", update: upd(with(&[0xc0, 18, 3, 0, 0, 0])), want: Want::Discard },
        Row { class: "ORIGIN twice (all but the first discarded)", update: upd(with(&origin(2))), want: Want::Discard },
        // Not errors.
        Row {
            class: "LOCAL_PREF from an eBGP peer (ignored, RFC 4271 §5.1.5)",
            update: upd(with(&[0x40, 5, 4, 0, 0, 0, 100])),
            want: Want::Kept,
        },
        Row {
            class: "unknown optional transitive attribute",
            update: upd(with(&[0xc0, 250, 2, 1, 2])),
            want: Want::Kept,
        },
        Row {
            class: "NEXT_HOP missing in an UPDATE without NLRI",
            update: update(&[], &[origin(0), as_path(ASN)].concat(), &[]),
            want: Want::Kept,
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_malformation_class_gets_its_rfc_7606_treatment_over_tcp() {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let d = Daemon::start(&["--bgp-listen", &listen]);
    let mut c = d.client().await;
    let to: SocketAddr = listen.parse().unwrap();
    let table = rows([127, 0, 0, 1]);
    for (i, row) in table.iter().enumerate() {
        let from = Ipv4Addr::new(127, 0, 0, 20 + i as u8);
        let addr = from.to_string();
        let row_update = rows(from.octets()).swap_remove(i).update;
        add_passive(&mut c, &addr, ASN).await;
        let mut p = tokio::task::block_in_place(|| RawPeer::establish(from, to, ASN));
        let rx = |s: &pb::PeerState| {
            s.counts.iter().find(|f| f.family == pb::AddressFamily::Ipv4Unicast as i32).map_or(0, |f| f.received)
        };
        wait_state(&mut c, &addr, "Established", |s| s.state == pb::SessionState::Established as i32).await;
        p.send(&update(&[], &good_attrs(ASN, from.octets()), &R));
        wait_state(&mut c, &addr, "the good route", |s| rx(s) == 1).await;
        p.send(&row_update);
        let ctx = format!("row {i} {:?}", row.class);
        match row.want {
            Want::Reset(code, sub) => {
                let got = tokio::task::block_in_place(|| p.recv_notification());
                match got {
                    Got::Notification(c2, s2, _) => assert_eq!((c2, s2), (code, sub), "{ctx}"),
                    g => panic!("{ctx}: expected NOTIFICATION {code}/{sub}, got {g:?}"),
                }
                assert_eq!(
                    tokio::task::block_in_place(|| p.recv()),
                    Got::Closed,
                    "{ctx}: closed after the NOTIFICATION"
                );
            }
            Want::Withdraw => {
                let s = wait_state(&mut c, &addr, &ctx, |s| s.updates_treated_as_withdraw == 1 && rx(s) == 0).await;
                assert_eq!(
                    (s.state, s.notifications_sent, s.attributes_discarded),
                    (pb::SessionState::Established as i32, 0, 0),
                    "{ctx}"
                );
            }
            Want::Discard | Want::Kept => {
                // A later good UPDATE is processed after the row's: once it counts, the row's is done.
                p.send(&update(&[], &good_attrs(ASN, from.octets()), &R2));
                let s = wait_state(&mut c, &addr, &ctx, |s| rx(s) == 2).await;
                let discarded = u64::from(row.want == Want::Discard);
                assert_eq!(
                    (s.state, s.notifications_sent, s.updates_treated_as_withdraw, s.attributes_discarded),
                    (pb::SessionState::Established as i32, 0, 0, discarded),
                    "{ctx}"
                );
            }
        }
        c.delete_peer(pb::DeletePeerRequest { peer: addr.clone() }).await.unwrap();
        drop(p);
    }
}

#[test]
fn the_documented_table_matches_the_tested_one() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/RFC7606.md")).unwrap();
    for row in rows([127, 0, 0, 1]) {
        let line = doc
            .lines()
            .find(|l| l.starts_with(&format!("| {} |", row.class)))
            .unwrap_or_else(|| panic!("docs/RFC7606.md has no row for {:?}", row.class));
        assert!(line.contains(&row.want.doc()), "docs/RFC7606.md says {line:?}, the test expects {:?}", row.want.doc());
    }
}
