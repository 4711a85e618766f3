//! The driver over real UDP sockets on 127.0.0.1. Bounds are generous (a loaded 2-core machine);
//! the timing targets are checked exactly in simulated time in `swim.rs`, and measured by benchmarks.
use super::*;
use std::time::Instant;

const BOUND: Duration = Duration::from_secs(3);

fn config(name: &str, bind: SocketAddr, seeds: Vec<SocketAddr>, secret: Option<&[u8]>) -> MembershipConfig {
    MembershipConfig {
        node_name: name.into(),
        bind,
        advertise: None,
        seeds,
        secret: secret.map(|s| s.to_vec()),
        envelope: None,
        probe_period: Duration::from_millis(DEFAULT_PROBE_MS),
    }
}

async fn member(name: &str, seeds: Vec<SocketAddr>, secret: Option<&[u8]>) -> (Membership, CancellationToken) {
    let cancel = CancellationToken::new();
    let cfg = config(name, "127.0.0.1:0".parse().unwrap(), seeds, secret);
    (Membership::start(cfg, cancel.clone()).await.unwrap(), cancel)
}

/// Waits until `f` holds for `m`'s view; answers how long that took.
async fn until(m: &Membership, what: &str, timeout: Duration, f: impl Fn(&View) -> bool) -> Duration {
    let start = Instant::now();
    let mut rx = m.view();
    loop {
        if f(&rx.borrow_and_update()) {
            return start.elapsed();
        }
        match tokio::time::timeout(timeout.saturating_sub(start.elapsed()), rx.changed()).await {
            Ok(Ok(())) => {}
            _ => panic!("{what}: not within {timeout:?}; view {:#?}", *rx.borrow()),
        }
    }
}

fn alive(names: &[&str]) -> impl Fn(&View) -> bool {
    let want: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
    move |v: &View| v.alive == want
}

fn state(name: &str, want: MemberState) -> impl Fn(&View) -> bool {
    let name = name.to_string();
    move |v: &View| v.members.iter().any(|m| m.name == name && m.state == want)
}

async fn group_of_three(secret: Option<&[u8]>) -> [(Membership, CancellationToken); 3] {
    let a = member("a", vec![], secret).await;
    let b = member("b", vec![a.0.local_addr()], secret).await;
    let c = member("c", vec![a.0.local_addr()], secret).await;
    for m in [&a.0, &b.0, &c.0] {
        until(m, "all three alive", BOUND, alive(&["a", "b", "c"])).await;
    }
    [a, b, c]
}

#[tokio::test]
async fn three_members_join_through_seeds_and_a_crash_is_declared_dead() {
    let [(a, _ca), (b, _cb), (c, _cc)] = group_of_three(None).await;
    for m in [&a, &b, &c] {
        let v = m.view().borrow().clone();
        assert_eq!(v.members.len(), 3, "{v:?}");
        assert!(v.members[0].local && v.members.iter().filter(|m| m.local).count() == 1);
    }
    // Crash c: its task is aborted and its socket closed, without a word to the others.
    let c_addr = c.local_addr();
    drop(c);
    let (ta, tb) = tokio::join!(
        until(&a, "a sees c Dead", BOUND, state("c", MemberState::Dead)),
        until(&b, "b sees c Dead", BOUND, state("c", MemberState::Dead))
    );
    eprintln!("crash of c (probe period {DEFAULT_PROBE_MS} ms) declared Dead after {ta:?} by a, {tb:?} by b");
    for m in [&a, &b] {
        assert_eq!(m.view().borrow().alive, ["a", "b"].iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
    }

    // c restarts: a new process with the same name on the same address, joining through a.
    let cancel = CancellationToken::new();
    let cfg = config("c", c_addr, vec![a.local_addr()], None);
    // The aborted task's socket is closed on its next poll; give the port a moment to come free.
    let mut c2 = None;
    for _ in 0..50 {
        match Membership::start(cfg.clone(), cancel.clone()).await {
            Ok(m) => {
                c2 = Some(m);
                break;
            }
            Err(MembershipError::Bind(..)) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(e) => panic!("{e}"),
        }
    }
    let c2 = c2.expect("port of c never came free");
    let t0 = Instant::now();
    for m in [&a, &b, &c2] {
        until(m, "restarted c alive everywhere", BOUND, alive(&["a", "b", "c"])).await;
    }
    eprintln!("restarted c alive everywhere after {:?}", t0.elapsed());
    let old = a.view().borrow().members.iter().find(|m| m.name == "c").map(|m| m.incarnation);
    assert!(old > Some(0));
    assert_eq!(old, c2.view().borrow().members.first().map(|m| m.incarnation), "a shows the new generation");
    assert!(a.counters().sent > 0 && a.counters().received > 0);
    for m in [&a, &b, &c2] {
        let n = m.counters();
        assert_eq!((n.dropped_bad_auth, n.dropped_malformed, n.send_errors), (0, 0, 0), "{n:?}");
    }
}

#[tokio::test]
async fn a_member_that_leaves_is_dead_everywhere_at_once() {
    // A slow probe period: failure detection would take > 2.5 s, so only the leave message can make
    // the others see it within the bound below.
    let slow = |name: &str, seeds| MembershipConfig {
        probe_period: Duration::from_secs(1),
        ..config(name, "127.0.0.1:0".parse().unwrap(), seeds, None)
    };
    let a = Membership::start(slow("a", vec![]), CancellationToken::new()).await.unwrap();
    let b = Membership::start(slow("b", vec![a.local_addr()]), CancellationToken::new()).await.unwrap();
    let cc = CancellationToken::new();
    let c = Membership::start(slow("c", vec![a.local_addr()]), cc.clone()).await.unwrap();
    for m in [&a, &b, &c] {
        until(m, "all three alive", BOUND, alive(&["a", "b", "c"])).await;
    }
    cc.cancel();
    let (ta, tb) = tokio::join!(
        until(&a, "a sees c left", Duration::from_millis(1500), state("c", MemberState::Dead)),
        until(&b, "b sees c left", Duration::from_millis(1500), state("c", MemberState::Dead))
    );
    eprintln!("leave of c seen after {ta:?} by a, {tb:?} by b");
    // The task ended: its view channel closes.
    let mut rx = c.view();
    let closed = tokio::time::timeout(BOUND, async { while rx.changed().await.is_ok() {} }).await;
    assert!(closed.is_ok(), "c's task still running after cancel");
}

#[tokio::test]
async fn shared_secret_admits_members_and_keeps_outsiders_and_garbage_out() {
    let [(a, _ca), (b, _cb), (_c, _cc)] = group_of_three(Some(b"k1")).await;
    let (x, _cx) = member("x", vec![a.local_addr()], Some(b"other")).await;
    let (y, _cy) = member("y", vec![a.local_addr()], None).await;
    let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    for junk in [&b""[..], &b"\x00"[..], &[0xff; 40][..], &[7u8; 1400][..]] {
        u.send_to(junk, a.local_addr()).await.unwrap();
    }
    // Every outsider datagram is dropped at a: 4 junk + x's and y's announces (one each, then every
    // second while they are alone).
    let deadline = Instant::now() + BOUND;
    while a.counters().dropped_bad_auth < 6 {
        assert!(Instant::now() < deadline, "{:?}", a.counters());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for m in [&a, &b] {
        assert_eq!(m.view().borrow().alive, ["a", "b", "c"].iter().map(|s| s.to_string()).collect::<BTreeSet<_>>());
    }
    assert_eq!(x.view().borrow().alive.len(), 1, "x must not have joined");
    assert_eq!(y.view().borrow().alive.len(), 1, "y must not have joined");
    // a never learns of x: nothing ever reaches x.
    assert_eq!(x.counters().received, 0, "{:?}", x.counters());
    assert_eq!(a.counters().dropped_malformed, 0, "sealed junk counts as bad auth, not malformed");
}

#[tokio::test]
async fn garbage_without_a_secret_is_dropped_as_malformed() {
    let (a, _ca) = member("a", vec![], None).await;
    let u = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let junk: [&[u8]; 5] = [b"", b"\x00", &[0xff; 64], &[0x01; 1400], &[0x00; 3000]];
    for j in junk {
        u.send_to(j, a.local_addr()).await.unwrap();
    }
    let deadline = Instant::now() + BOUND;
    while a.counters().dropped_malformed < 5 {
        assert!(Instant::now() < deadline, "{:?}", a.counters());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(a.counters().received, 5);
    assert_eq!(a.counters().dropped_bad_auth, 0);
    assert_eq!(a.view().borrow().alive.len(), 1);
}

#[tokio::test]
async fn set_seeds_joins_a_member_started_without_seeds() {
    let (a, _ca) = member("a", vec![], None).await;
    let (b, _cb) = member("b", vec![], None).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(b.view().borrow().alive.len(), 1);
    b.set_seeds(vec![a.local_addr(), b.local_addr()]);
    b.set_seeds(vec![a.local_addr(), b.local_addr()]);
    for m in [&a, &b] {
        until(m, "joined through set_seeds", BOUND, alive(&["a", "b"])).await;
    }
}

#[tokio::test]
async fn invalid_configurations_are_refused() {
    let base = || config("a", "127.0.0.1:0".parse().unwrap(), vec![], None);
    let start = |cfg| Membership::start(cfg, CancellationToken::new());
    assert!(matches!(
        start(MembershipConfig { node_name: String::new(), ..base() }).await,
        Err(MembershipError::EmptyName)
    ));
    assert!(matches!(
        start(MembershipConfig { node_name: "n".repeat(254), ..base() }).await,
        Err(MembershipError::NameTooLong(254))
    ));
    assert!(matches!(
        start(MembershipConfig { secret: Some(vec![]), ..base() }).await,
        Err(MembershipError::EmptySecret)
    ));
    assert!(matches!(
        start(MembershipConfig { probe_period: Duration::ZERO, ..base() }).await,
        Err(MembershipError::ProbePeriod(_))
    ));
    let unspecified: SocketAddr = "0.0.0.0:7946".parse().unwrap();
    assert!(matches!(
        start(MembershipConfig { advertise: Some(unspecified), ..base() }).await,
        Err(MembershipError::UnspecifiedAdvertise(_))
    ));
    let (held, _) = member("held", vec![], None).await;
    assert!(matches!(
        start(MembershipConfig { bind: held.local_addr(), ..base() }).await,
        Err(MembershipError::Bind(..))
    ));
    // An advertise address with port 0 takes the bound port.
    let m = start(MembershipConfig { advertise: Some("127.0.0.1:0".parse().unwrap()), ..base() }).await.unwrap();
    assert_ne!(m.local_addr().port(), 0);
    assert!(!format!("{:?}", MembershipConfig { secret: Some(b"hunter2".to_vec()), ..base() }).contains("hunter2"));
}

#[tokio::test]
async fn unservable_sets_reach_every_member_and_a_late_joiner() {
    let [a, b, c] = group_of_three(Some(b"s3cret")).await;
    let ip: std::net::IpAddr = "192.0.2.10".parse().unwrap();
    a.0.set_unservable([ip].into());
    let has =
        |name: &'static str, on: bool| move |v: &View| v.unservable.get(name).is_some_and(|s| s.contains(&ip)) == on;
    for m in [&a.0, &b.0, &c.0] {
        let t = until(m, "a's set seen", BOUND, has("a", true)).await;
        assert!(t < BOUND);
    }
    // A member that joins later learns it from the periodic re-broadcast.
    let d = member("d", vec![b.0.local_addr()], Some(b"s3cret")).await;
    until(&d.0, "late joiner learns a's set", Duration::from_secs(12), has("a", true)).await;
    // Cleared: gone everywhere.
    a.0.set_unservable(BTreeSet::new());
    for m in [&a.0, &b.0, &c.0, &d.0] {
        until(m, "a's set cleared", BOUND, has("a", false)).await;
    }
    // A member that restarts starts with nothing: its old set does not follow its new generation.
    c.0.set_unservable([ip].into());
    until(&b.0, "c's set seen", BOUND, has("c", true)).await;
    c.1.cancel();
    let c2 = member("c", vec![a.0.local_addr()], Some(b"s3cret")).await;
    until(&b.0, "c back, with nothing to report", Duration::from_secs(6), |v: &View| {
        v.alive.contains("c") && !v.unservable.contains_key("c")
    })
    .await;
    drop(c2);
}

/// A node started before its secret file existed gossips unencrypted; once the secret is set on its
/// pending envelope it joins the members that have the secret (and no longer talks to those without).
#[tokio::test]
async fn pending_secret_is_picked_up_when_it_appears() {
    let (a, _ca) = member("a", vec![], Some(b"k1")).await;
    let env = Envelope::pending();
    let cancel = CancellationToken::new();
    let cfg = MembershipConfig {
        envelope: Some(env.clone()),
        ..config("b", "127.0.0.1:0".parse().unwrap(), vec![a.local_addr()], None)
    };
    let b = Membership::start(cfg, cancel.clone()).await.unwrap();
    let deadline = Instant::now() + BOUND;
    while a.counters().dropped_bad_auth < 1 {
        assert!(Instant::now() < deadline, "{:?}", a.counters());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.view().borrow().alive.len(), 1, "b joined without the secret");
    env.set_secret(b"k1");
    until(&a, "a sees b", BOUND, alive(&["a", "b"])).await;
    until(&b, "b sees a", BOUND, alive(&["a", "b"])).await;
    cancel.cancel();
}
