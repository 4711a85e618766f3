//! The peer task's timers (the FSM's ConnectRetry, Hold, Keepalive, ...): one deadline per slot, one
//! sleep armed to the earliest.
use crate::bgp::fsm::Timer;
use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

/// Timer slots, with one sleep armed to the earliest deadline.
pub(super) struct Timers {
    deadlines: HashMap<Timer, tokio::time::Instant>,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Timers {
    pub(super) fn new() -> Self {
        Self { deadlines: HashMap::new(), sleep: Box::pin(tokio::time::sleep(Duration::from_secs(3600))) }
    }
    pub(super) fn arm(&mut self, t: Timer, d: Duration) {
        self.deadlines.insert(t, tokio::time::Instant::now() + d);
    }
    pub(super) fn disarm(&mut self, t: Timer) {
        self.deadlines.remove(&t);
    }
    /// Cancel-safe: all state is in `self`; a dropped call loses nothing.
    pub(super) async fn next(&mut self) -> Timer {
        loop {
            let Some((&t, &at)) = self.deadlines.iter().min_by_key(|(_, at)| **at) else {
                return std::future::pending().await;
            };
            self.sleep.as_mut().reset(at);
            self.sleep.as_mut().await;
            if self.deadlines.get(&t) == Some(&at) {
                self.deadlines.remove(&t);
                return t;
            }
        }
    }
}
