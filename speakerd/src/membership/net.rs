//! The tokio driver of [`Swim`]: owns the UDP socket and the clock, and moves data between them and
//! the core. It decides nothing: every decision is in `swim.rs`.
//!
//! One task, with a biased select: cancel (leave), then the core's deadline, then new seeds, then the
//! socket. Every arm is cancel-safe (`recv_from` into a buffer owned by the loop, `watch::changed`,
//! `sleep_until`). Sends never wait: they go through a non-blocking `std` handle of the same socket
//! (tokio's `try_send_to` would answer WouldBlock until the reactor first reported the socket
//! writable, losing the first announce), and a full socket buffer loses the datagram as the network
//! could (SWIM retries by design); it is counted in `send_errors`.
use super::swim::{Action, Input, Swim, MAX_DATAGRAM};
use super::View;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Counters shared between the driver and [`super::Membership::counters`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub dropped_bad_auth: AtomicU64,
    pub dropped_malformed: AtomicU64,
    pub send_errors: AtomicU64,
}

pub(super) struct Driver {
    pub swim: Swim,
    /// Receives; readiness through tokio.
    pub sock: UdpSocket,
    /// Sends: the same socket, non-blocking.
    pub send: std::net::UdpSocket,
    pub seeds: watch::Receiver<Vec<SocketAddr>>,
    pub view: watch::Sender<Arc<View>>,
    pub counters: Arc<Counters>,
    /// The socket is IPv6 (dual-stack): IPv4 destinations are sent to as v4-mapped addresses.
    pub v6_socket: bool,
    pub unservable: watch::Receiver<std::collections::BTreeSet<std::net::IpAddr>>,
}

impl Driver {
    pub async fn run(mut self, cancel: CancellationToken) {
        // Larger than MAX_DATAGRAM, so that an oversized datagram is seen as such, not truncated to fit.
        let mut buf = vec![0u8; MAX_DATAGRAM + 1];
        let seeds = self.seeds.borrow_and_update().clone();
        self.step(Input::SetSeeds(seeds));
        loop {
            let deadline = self.swim.next_deadline().map(Instant::from_std);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => {
                    self.step(Input::Leave);
                    return;
                }
                _ = sleep_until(deadline) => self.step(Input::Tick),
                r = self.seeds.changed() => match r {
                    Ok(()) => {
                        let seeds = self.seeds.borrow_and_update().clone();
                        self.step(Input::SetSeeds(seeds));
                    }
                    // Every Membership handle is gone: nobody can read the view any more.
                    Err(_) => return,
                },
                r = self.unservable.changed() => {
                    if r.is_ok() {
                        let set = self.unservable.borrow_and_update().clone();
                        self.step(Input::SetUnservable(set));
                    }
                }
                r = self.sock.recv_from(&mut buf) => match r {
                    Ok((n, _from)) => {
                        self.counters.received.fetch_add(1, Ordering::Relaxed);
                        let data = buf.get(..n).unwrap_or_default();
                        let out = self.swim.handle(Input::Datagram(data), Instant::now().into_std());
                        self.apply(out);
                    }
                    // Transient (an ICMP error queued by an earlier send); the pause keeps an error
                    // that repeats from spinning the loop.
                    Err(e) => {
                        tracing::debug!(error = %e, "gossip socket receive");
                        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    }
                },
            }
        }
    }

    fn step(&mut self, input: Input<'_>) {
        let out = self.swim.handle(input, Instant::now().into_std());
        self.apply(out);
    }

    fn apply(&mut self, out: Vec<Action>) {
        for action in out {
            match action {
                Action::Send { to, data } => match self.send.send_to(&data, self.reachable(to)) {
                    Ok(_) => {
                        self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        self.counters.send_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %e, %to, "gossip send");
                    }
                },
                Action::Dropped(e) => {
                    let c =
                        if e.is_auth() { &self.counters.dropped_bad_auth } else { &self.counters.dropped_malformed };
                    c.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, kind = e.kind(), "gossip datagram dropped");
                }
                Action::View(v) => {
                    self.view.send_replace(v);
                }
            }
        }
    }

    /// An IPv6 socket reaches IPv4 members through their v4-mapped address (dual-stack bind).
    fn reachable(&self, to: SocketAddr) -> SocketAddr {
        match to {
            SocketAddr::V4(v4) if self.v6_socket => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
            _ => to,
        }
    }
}

/// Pending forever while there is no deadline.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
