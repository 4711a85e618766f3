use super::*;
use crate::bgp::wire::{iana::err, Capability, Family, Message, Notification, Open, Update};

fn cfg() -> FsmConfig {
    FsmConfig {
        local_asn: 65001,
        peer_as: PeerAs::Fixed(65002),
        router_id: "192.0.2.1".parse().unwrap(),
        hold_time: 90,
        keepalive: None,
        connect_retry: Duration::from_secs(5),
        passive: false,
        families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
        graceful_restart: None,
        extended_next_hop: true,
    }
}

fn peer_open(asn: u32, hold: u16, id: &str) -> Open {
    Open::new(
        asn,
        hold,
        id.parse().unwrap(),
        vec![Capability::Multiprotocol(Family::IPV4_UNICAST), Capability::FourOctetAs(asn), Capability::RouteRefresh],
    )
}

fn sent(out: &[Action]) -> Vec<(ConnId, Message)> {
    out.iter().filter_map(|a| if let Action::Send(c, m) = a { Some((*c, m.clone())) } else { None }).collect()
}

/// An FSM with connection 1 (outgoing) Established.
fn established() -> Fsm {
    let mut f = Fsm::new(cfg(), 7);
    f.handle(Input::Start);
    f.handle(Input::Connected(1, Dir::Outgoing));
    f.handle(Input::Msg(1, Message::Open(peer_open(65002, 30, "192.0.2.2"))));
    let out = f.handle(Input::Msg(1, Message::Keepalive));
    assert!(out.iter().any(|a| matches!(a, Action::Up(_))), "{out:?}");
    f
}

#[test]
fn start_connects_at_once_when_active() {
    let mut f = Fsm::new(cfg(), 1);
    assert_eq!(f.handle(Input::Start), vec![Action::Connect]);
    assert_eq!(f.state(), State::Connect);
}

#[test]
fn start_passive_waits_in_active() {
    let mut f = Fsm::new(FsmConfig { passive: true, ..cfg() }, 1);
    assert!(f.handle(Input::Start).is_empty());
    assert_eq!(f.state(), State::Active);
}

#[test]
fn connected_sends_open_and_arms_large_hold_timer() {
    let mut f = Fsm::new(cfg(), 1);
    f.handle(Input::Start);
    let out = f.handle(Input::Connected(1, Dir::Outgoing));
    assert!(matches!(&sent(&out)[0].1, Message::Open(o) if o.asn() == 65001 && o.hold_time == 90));
    assert!(out.contains(&Action::Arm(Timer::Hold(1), OPEN_HOLD)));
    assert_eq!(f.state(), State::OpenSent);
}

#[test]
fn open_negotiates_smaller_hold_time_and_keepalive_third() {
    let mut f = Fsm::new(cfg(), 1);
    f.handle(Input::Start);
    f.handle(Input::Connected(1, Dir::Outgoing));
    let out = f.handle(Input::Msg(1, Message::Open(peer_open(65002, 30, "192.0.2.2"))));
    assert_eq!(sent(&out), vec![(1, Message::Keepalive)]);
    assert!(out.contains(&Action::Arm(Timer::Hold(1), Duration::from_secs(30))));
    assert!(out.contains(&Action::Arm(Timer::Keepalive(1), Duration::from_secs(10))));
    assert_eq!(f.state(), State::OpenConfirm);
    let out = f.handle(Input::Msg(1, Message::Keepalive));
    let Some(Action::Up(n)) = out.iter().find(|a| matches!(a, Action::Up(_))) else { panic!("{out:?}") };
    assert_eq!((n.hold_time, n.keepalive, n.four_octet_as, n.route_refresh), (30, 10, true, true));
    assert_eq!(n.families, vec![Family::IPV4_UNICAST], "peer announced only IPv4 unicast");
    assert_eq!(f.state(), State::Established);
}

#[test]
fn bad_peer_as_sends_open_error_subcode_2() {
    let mut f = Fsm::new(cfg(), 1);
    f.handle(Input::Start);
    f.handle(Input::Connected(1, Dir::Outgoing));
    let out = f.handle(Input::Msg(1, Message::Open(peer_open(65099, 90, "192.0.2.2"))));
    assert_eq!(sent(&out), vec![(1, Notification::new(err::OPEN_MESSAGE, 2, vec![]).into())]);
    assert!(out.contains(&Action::Close(1)));
    assert_eq!(f.state(), State::Active, "waiting for the retry timer");
    assert!(out.iter().any(|a| matches!(a, Action::Arm(Timer::ConnectRetry, _))));
}

#[test]
fn hold_time_one_is_unacceptable_subcode_6() {
    let mut f = Fsm::new(cfg(), 1);
    f.handle(Input::Start);
    f.handle(Input::Connected(1, Dir::Outgoing));
    let out = f.handle(Input::Msg(1, Message::Open(peer_open(65002, 1, "192.0.2.2"))));
    assert_eq!(sent(&out)[0].1, Notification::new(err::OPEN_MESSAGE, 6, vec![]).into());
}

#[test]
fn ibgp_same_router_id_is_bad_bgp_identifier() {
    let mut f = Fsm::new(FsmConfig { peer_as: PeerAs::Fixed(65001), ..cfg() }, 1);
    f.handle(Input::Start);
    f.handle(Input::Connected(1, Dir::Outgoing));
    let out = f.handle(Input::Msg(1, Message::Open(peer_open(65001, 90, "192.0.2.1"))));
    assert_eq!(sent(&out)[0].1, Notification::new(err::OPEN_MESSAGE, 3, vec![]).into());
}

#[test]
fn keepalive_in_open_sent_is_fsm_error_subcode_1() {
    // RFC 6608 §3
    let mut f = Fsm::new(cfg(), 1);
    f.handle(Input::Start);
    f.handle(Input::Connected(1, Dir::Outgoing));
    let out = f.handle(Input::Msg(1, Message::Keepalive));
    assert_eq!(sent(&out), vec![(1, Notification::fsm_error(err::fsm::OPEN_SENT).into())]);
}

#[test]
fn update_in_open_confirm_is_fsm_error_subcode_2() {
    let mut f = Fsm::new(cfg(), 1);
    f.handle(Input::Start);
    f.handle(Input::Connected(1, Dir::Outgoing));
    f.handle(Input::Msg(1, Message::Open(peer_open(65002, 90, "192.0.2.2"))));
    let out = f.handle(Input::Msg(1, Message::Update(Update::default())));
    assert_eq!(sent(&out), vec![(1, Notification::fsm_error(err::fsm::OPEN_CONFIRM).into())]);
}

#[test]
fn open_in_established_is_fsm_error_subcode_3_and_session_down() {
    let mut f = established();
    let out = f.handle(Input::Msg(1, Message::Open(peer_open(65002, 90, "192.0.2.2"))));
    assert_eq!(sent(&out), vec![(1, Notification::fsm_error(err::fsm::ESTABLISHED).into())]);
    assert!(out.iter().any(|a| matches!(a, Action::Down(DownReason::NotificationSent(_)))));
}

#[test]
fn hold_timer_expiry_sends_notification_code_4() {
    let mut f = established();
    let out = f.handle(Input::Expired(Timer::Hold(1)));
    assert_eq!(sent(&out), vec![(1, Notification::hold_timer_expired().into())]);
    assert!(out.contains(&Action::Down(DownReason::HoldTimerExpired)));
    assert!(out.contains(&Action::Close(1)));
    // Reconnect after the retry delay (jittered around the 5 s base).
    let Some(Action::Arm(Timer::ConnectRetry, d)) =
        out.iter().find(|a| matches!(a, Action::Arm(Timer::ConnectRetry, _)))
    else {
        panic!("{out:?}")
    };
    assert!(*d >= Duration::from_millis(3750) && *d <= Duration::from_millis(6250), "{d:?}");
    assert_eq!(f.handle(Input::Expired(Timer::ConnectRetry)), vec![Action::Connect]);
}

#[test]
fn keepalive_timer_sends_keepalive_and_rearms() {
    let mut f = established();
    let out = f.handle(Input::Expired(Timer::Keepalive(1)));
    assert_eq!(
        out,
        vec![Action::Send(1, Message::Keepalive), Action::Arm(Timer::Keepalive(1), Duration::from_secs(10))]
    );
}

#[test]
fn update_restarts_hold_timer_and_is_delivered() {
    let mut f = established();
    let out = f.handle(Input::Msg(1, Message::Update(Update::default())));
    assert_eq!(
        out,
        vec![Action::Arm(Timer::Hold(1), Duration::from_secs(30)), Action::Deliver(Message::Update(Update::default()))]
    );
}

#[test]
fn stop_sends_cease_and_goes_idle() {
    let mut f = established();
    let n = Notification::cease(err::cease::ADMINISTRATIVE_SHUTDOWN);
    let out = f.handle(Input::Stop(Some(n.clone())));
    assert_eq!(sent(&out), vec![(1, n.clone().into())]);
    assert!(out.contains(&Action::Down(DownReason::AdminStop(Some(n)))));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn notification_received_closes_without_reply() {
    let mut f = established();
    let n = Notification::cease(2);
    let out = f.handle(Input::Msg(1, Message::Notification(n.clone())));
    assert!(sent(&out).is_empty());
    assert!(out.contains(&Action::Down(DownReason::NotificationReceived(n))));
}

#[test]
fn backoff_grows_and_is_capped() {
    let mut f = Fsm::new(cfg(), 3);
    f.handle(Input::Start);
    let mut last = Duration::ZERO;
    for _ in 0..12 {
        let out = f.handle(Input::ConnectFailed(ConnectFailure::Other));
        let Some(Action::Arm(Timer::ConnectRetry, d)) = out.into_iter().find(|a| matches!(a, Action::Arm(..))) else {
            panic!()
        };
        assert!(d <= MAX_BACKOFF.mul_f64(1.25));
        last = d;
        assert_eq!(f.handle(Input::Expired(Timer::ConnectRetry)), vec![Action::Connect]);
    }
    assert!(last >= MAX_BACKOFF.mul_f64(0.75), "{last:?}");
}

/// The retry delay armed by `out`.
fn retry_delay(out: Vec<Action>) -> Duration {
    match out.into_iter().find(|a| matches!(a, Action::Arm(Timer::ConnectRetry, _))) {
        Some(Action::Arm(_, d)) => d,
        other => panic!("no retry armed: {other:?}"),
    }
}

/// A refused attempt is retried after about 100 ms, doubling per refusal while that is shorter than
/// the usual backoff; any other failure in between goes back to the usual backoff, and the next
/// refusal starts the short one again.
#[test]
fn refused_attempts_are_retried_soon_then_back_off() {
    let mut f = Fsm::new(cfg(), 7);
    assert_eq!(f.handle(Input::Start), vec![Action::Connect]);
    let mut delays = Vec::new();
    for _ in 0..14 {
        delays.push(retry_delay(f.handle(Input::ConnectFailed(ConnectFailure::Refused))));
        assert_eq!(f.handle(Input::Expired(Timer::ConnectRetry)), vec![Action::Connect]);
    }
    // 100 ms × 2^k ±25 %, until the usual backoff (5 s × 2^k, capped at 120 s) is shorter.
    for (k, d) in delays.iter().enumerate() {
        let fast = REFUSED_RETRY.saturating_mul(1 << k);
        let usual = Duration::from_secs(5).saturating_mul(1 << k.min(10)).min(MAX_BACKOFF);
        let want = fast.min(usual);
        assert!(*d >= want.mul_f64(0.75) && *d <= want.mul_f64(1.25), "attempt {k}: {d:?}, want {want:?}: {delays:?}");
    }
    assert!(delays[0] <= Duration::from_millis(125), "{delays:?}");
    // A timeout in between: the usual backoff for this many failures (capped).
    let d = retry_delay(f.handle(Input::ConnectFailed(ConnectFailure::Other)));
    assert!(d >= MAX_BACKOFF.mul_f64(0.75), "{d:?}");
    f.handle(Input::Expired(Timer::ConnectRetry));
    let d = retry_delay(f.handle(Input::ConnectFailed(ConnectFailure::Refused)));
    assert!(d <= Duration::from_millis(125), "{d:?}");
}

/// A peer that accepted the connection and then closed it is not refusing: the usual backoff.
#[test]
fn a_connection_closed_before_open_uses_the_usual_backoff() {
    let mut f = Fsm::new(cfg(), 9);
    f.handle(Input::Start);
    retry_delay(f.handle(Input::ConnectFailed(ConnectFailure::Refused)));
    f.handle(Input::Expired(Timer::ConnectRetry));
    f.handle(Input::Connected(1, Dir::Outgoing));
    let d = retry_delay(f.handle(Input::Closed(1)));
    assert!(d >= Duration::from_millis(3750), "{d:?}");
}

/// RFC 4271 §6.8: both connections reach OpenConfirm; the one opened by the side with the lower
/// BGP Identifier is closed.
#[test]
fn collision_closes_connection_of_lower_identifier() {
    for (peer_id, closed) in [("192.0.2.9", 1), ("192.0.2.0", 2)] {
        let mut f = Fsm::new(cfg(), 1); // our id 192.0.2.1
        f.handle(Input::Start);
        f.handle(Input::Connected(1, Dir::Outgoing));
        f.handle(Input::Connected(2, Dir::Incoming));
        f.handle(Input::Msg(1, Message::Open(peer_open(65002, 90, peer_id))));
        let out = f.handle(Input::Msg(2, Message::Open(peer_open(65002, 90, peer_id))));
        let cease = Notification::cease(err::cease::CONNECTION_COLLISION_RESOLUTION);
        assert!(sent(&out).contains(&(closed, cease.into())), "peer {peer_id}: {out:?}");
        assert!(out.contains(&Action::Close(closed)));
        let survivor = 3 - closed;
        let out = f.handle(Input::Msg(survivor, Message::Keepalive));
        assert!(out.iter().any(|a| matches!(a, Action::Up(n) if n.conn == survivor)));
    }
}

#[test]
fn new_connection_while_established_is_rejected_without_graceful_restart() {
    let mut f = established();
    let out = f.handle(Input::Connected(2, Dir::Incoming));
    assert_eq!(sent(&out), vec![(2, Notification::cease(err::cease::CONNECTION_COLLISION_RESOLUTION).into())]);
    assert_eq!(f.established_conn(), Some(1));
}

#[test]
fn graceful_restart_peer_reconnecting_replaces_old_session() {
    let gr = Some(GrConfig { restart_time: 120, restarting: false });
    let mut f = Fsm::new(FsmConfig { graceful_restart: gr, ..cfg() }, 1);
    let mut o = peer_open(65002, 90, "192.0.2.2");
    o.capabilities.push(Capability::GracefulRestart {
        restart_state: false,
        notification: false,
        restart_time: 120,
        families: vec![],
    });
    f.handle(Input::Start);
    f.handle(Input::Connected(1, Dir::Outgoing));
    f.handle(Input::Msg(1, Message::Open(o.clone())));
    f.handle(Input::Msg(1, Message::Keepalive));
    let out = f.handle(Input::Connected(2, Dir::Incoming));
    assert!(matches!(sent(&out)[0], (2, Message::Open(_))));
    let out = f.handle(Input::Msg(2, Message::Open(o)));
    assert!(out.contains(&Action::Down(DownReason::PeerRestarted)));
    assert!(out.contains(&Action::Close(1)));
    let out = f.handle(Input::Msg(2, Message::Keepalive));
    assert!(out.iter().any(|a| matches!(a, Action::Up(n) if n.conn == 2 && n.graceful_restart)));
}

#[test]
fn hold_time_zero_disables_timers() {
    let mut f = Fsm::new(FsmConfig { hold_time: 0, ..cfg() }, 1);
    f.handle(Input::Start);
    f.handle(Input::Connected(1, Dir::Outgoing));
    let out = f.handle(Input::Msg(1, Message::Open(peer_open(65002, 90, "192.0.2.2"))));
    assert!(out.contains(&Action::Disarm(Timer::Hold(1))));
    assert!(!out.iter().any(|a| matches!(a, Action::Arm(Timer::Keepalive(_), _))));
}

#[test]
fn open_advertises_four_octet_as_with_as_trans() {
    let f = Fsm::new(FsmConfig { local_asn: 4_200_000_000, ..cfg() }, 1);
    let o = f.our_open();
    assert_eq!(o.my_as, 23456);
    assert_eq!(o.asn(), 4_200_000_000);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    fn input() -> impl Strategy<Value = Input> {
        let conn = 1u64..4;
        prop_oneof![
            Just(Input::Start),
            Just(Input::Stop(None)),
            Just(Input::ConnectFailed(ConnectFailure::Other)),
            Just(Input::ConnectFailed(ConnectFailure::Refused)),
            (conn.clone(), any::<bool>())
                .prop_map(|(c, o)| Input::Connected(c, if o { Dir::Outgoing } else { Dir::Incoming })),
            conn.clone().prop_map(Input::Closed),
            (conn.clone(), 65001u32..65004, 0u16..200, 0u8..3).prop_map(|(c, asn, hold, id)| {
                Input::Msg(c, Message::Open(peer_open(asn, hold, &format!("192.0.2.{id}"))))
            }),
            conn.clone().prop_map(|c| Input::Msg(c, Message::Keepalive)),
            conn.clone().prop_map(|c| Input::Msg(c, Message::Update(Update::default()))),
            conn.clone().prop_map(|c| Input::Msg(c, Message::Notification(Notification::cease(2)))),
            conn.clone().prop_map(|c| Input::Expired(Timer::Hold(c))),
            conn.clone().prop_map(|c| Input::Expired(Timer::Keepalive(c))),
            Just(Input::Expired(Timer::ConnectRetry)),
        ]
    }

    proptest! {
        /// Any input sequence: no panic, at most two connections, at most one Established, and a hold
        /// timer armed whenever a session is Established with a non-zero hold time.
        #[test]
        fn any_sequence_keeps_invariants(inputs in proptest::collection::vec(input(), 0..60)) {
            let mut f = Fsm::new(cfg(), 9);
            let mut armed = std::collections::HashSet::new();
            let mut ups = 0i32;
            for i in inputs {
                for a in f.handle(i) {
                    match a {
                        Action::Arm(t, _) => { armed.insert(t); }
                        Action::Disarm(t) => { armed.remove(&t); }
                        Action::Up(_) => ups += 1,
                        Action::Down(_) => ups -= 1,
                        _ => {}
                    }
                }
                prop_assert!(f.conns.len() <= 2);
                prop_assert!(f.conns.iter().filter(|c| c.phase == Phase::Established).count() <= 1);
                prop_assert!((0..=1).contains(&ups), "Up/Down unbalanced: {}", ups);
                prop_assert_eq!(ups == 1, f.state() == State::Established);
                if let Some(c) = f.established_conn() {
                    if f.negotiated_hold(c) > 0 {
                        prop_assert!(armed.contains(&Timer::Hold(c)));
                    }
                }
            }
        }
    }
}

#[test]
fn dynamic_peer_as_accepts_any_as_of_its_kind_and_refuses_the_other() {
    // (kind, the peer's AS in its OPEN, accepted, iBGP)
    let cases = [
        (PeerAs::External, 65002, true, false),
        (PeerAs::External, 4_200_000_000, true, false),
        (PeerAs::External, 65001, false, false),
        (PeerAs::Internal, 65001, true, true),
        (PeerAs::Internal, 65002, false, true),
        (PeerAs::Fixed(65002), 65003, false, false),
    ];
    for (kind, asn, ok, ibgp) in cases {
        let mut f = Fsm::new(FsmConfig { peer_as: kind, ..cfg() }, 1);
        f.handle(Input::Start);
        f.handle(Input::Connected(1, Dir::Outgoing));
        let out = f.handle(Input::Msg(1, Message::Open(peer_open(asn, 90, "192.0.2.2"))));
        let ctx = format!("{kind:?} OPEN from AS {asn}");
        if ok {
            assert!(sent(&out).iter().all(|(_, m)| !matches!(m, Message::Notification(_))), "{ctx}: {out:?}");
            let out = f.handle(Input::Msg(1, Message::Keepalive));
            let up = out.iter().find_map(|a| if let Action::Up(n) = a { Some(n.clone()) } else { None });
            let n = up.unwrap_or_else(|| panic!("{ctx}: not Established: {out:?}"));
            assert_eq!((n.peer_asn, n.ibgp), (asn, ibgp), "{ctx}");
        } else {
            assert_eq!(sent(&out)[0].1, Notification::new(err::OPEN_MESSAGE, 2, vec![]).into(), "{ctx}");
        }
    }
}
