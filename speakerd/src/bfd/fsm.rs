//! One BFD session's state machine (RFC 5880 §6.2, §6.8), asynchronous mode without echo, sans IO:
//! `handle(Input) -> Vec<Action>`. Timers are named; the driver runs them and feeds expiries back.
//!
//! * While not Up, packets go out at most once a second (§6.8.3); on reaching Up a Poll sequence moves to
//!   the configured rate (§6.8.3: a change of Desired Min TX is announced with Poll and takes effect on
//!   Final).
//! * Transmission interval: the larger of our Desired Min TX and the peer's Required Min RX, less
//!   0–25 % jitter (§6.8.7). Detection time: the peer's Detect Mult times the larger of our Required
//!   Min RX and the peer's Desired Min TX (§6.8.4).
//! * Passive: nothing is sent until the peer has been heard (§6.1).
use super::packet::{diag, BfdState, ControlPacket};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdConfig {
    pub desired_min_tx: Duration,
    pub required_min_rx: Duration,
    pub detect_mult: u8,
    pub passive: bool,
}

impl Default for BfdConfig {
    /// MetalLB's BFDProfile defaults: 300 ms both ways, multiplier 3.
    fn default() -> Self {
        Self {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            passive: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Rx(ControlPacket),
    TxTimer,
    DetectTimer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(ControlPacket),
    ArmTx(Duration),
    ArmDetect(Duration),
    StateChanged { old: BfdState, new: BfdState, diag: u8 },
}

/// Not Up: at most one packet a second (RFC 5880 §6.8.3).
pub const SLOW_TX: Duration = Duration::from_secs(1);

fn us(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}

#[derive(Debug, Clone)]
pub struct BfdFsm {
    cfg: BfdConfig,
    pub local_disc: u32,
    pub remote_disc: u32,
    state: BfdState,
    remote_state: BfdState,
    diag: u8,
    remote_min_rx: Duration,
    remote_desired_tx: Duration,
    remote_mult: u8,
    /// The Desired Min TX we currently advertise and use.
    active_tx: Duration,
    /// A Poll sequence is in progress (we set P until a Final arrives).
    polling: bool,
    heard: bool,
    rng: u64,
}

impl BfdFsm {
    pub fn new(cfg: BfdConfig, local_disc: u32, seed: u64) -> Self {
        Self {
            cfg,
            local_disc,
            remote_disc: 0,
            state: BfdState::Down,
            remote_state: BfdState::Down,
            diag: diag::NONE,
            remote_min_rx: Duration::from_micros(1),
            remote_desired_tx: SLOW_TX,
            remote_mult: 0,
            active_tx: SLOW_TX.max(cfg.desired_min_tx),
            polling: false,
            heard: false,
            rng: seed | 1,
        }
    }

    pub fn state(&self) -> BfdState {
        self.state
    }
    pub fn remote_state(&self) -> BfdState {
        self.remote_state
    }
    pub fn diag(&self) -> u8 {
        self.diag
    }
    /// The interval we transmit at now, before jitter.
    pub fn tx_interval(&self) -> Duration {
        self.active_tx.max(self.remote_min_rx)
    }
    /// How long without a packet before the session is declared down.
    pub fn detect_time(&self) -> Duration {
        self.cfg.required_min_rx.max(self.remote_desired_tx) * u32::from(self.remote_mult.max(1))
    }

    /// Starts the session: the first transmission timer.
    pub fn start(&mut self) -> Vec<Action> {
        vec![Action::ArmTx(if self.cfg.passive { SLOW_TX } else { Duration::from_millis(10) })]
    }

    fn packet(&self, final_: bool) -> ControlPacket {
        ControlPacket {
            diag: self.diag,
            state: self.state,
            poll: self.polling && !final_,
            final_,
            control_plane_independent: false,
            auth_present: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_disc: self.local_disc,
            your_disc: self.remote_disc,
            desired_min_tx_us: us(self.active_tx),
            required_min_rx_us: us(self.cfg.required_min_rx),
            required_min_echo_rx_us: 0,
        }
    }

    fn jittered(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        // §6.8.7: reduce by 0-25 % (by 10-25 % when Detect Mult is 1).
        let min_cut = if self.cfg.detect_mult == 1 { 0.10 } else { 0.0 };
        let r = (self.rng % 1000) as f64 / 1000.0;
        self.tx_interval().mul_f64(1.0 - (min_cut + r * (0.25 - min_cut)))
    }

    fn set_state(&mut self, new: BfdState, d: u8, out: &mut Vec<Action>) {
        let old = self.state;
        if old == new {
            return;
        }
        self.state = new;
        self.diag = d;
        if new == BfdState::Up {
            // Move from the slow rate to the configured one with a Poll sequence.
            if self.active_tx != self.cfg.desired_min_tx {
                self.polling = true;
            }
        } else {
            self.active_tx = SLOW_TX.max(self.cfg.desired_min_tx);
            self.polling = false;
        }
        out.push(Action::StateChanged { old, new, diag: d });
    }

    pub fn handle(&mut self, input: Input) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Rx(p) => self.rx(p, &mut out),
            Input::TxTimer => {
                if !self.cfg.passive || self.heard {
                    out.push(Action::Send(self.packet(false)));
                }
                let next = self.jittered();
                out.push(Action::ArmTx(next));
            }
            Input::DetectTimer => {
                if matches!(self.state, BfdState::Init | BfdState::Up) {
                    self.remote_disc = 0;
                    self.set_state(BfdState::Down, diag::CONTROL_DETECTION_TIME_EXPIRED, &mut out);
                }
            }
        }
        out
    }

    fn rx(&mut self, p: ControlPacket, out: &mut Vec<Action>) {
        self.heard = true;
        self.remote_disc = p.my_disc;
        self.remote_state = p.state;
        self.remote_min_rx = Duration::from_micros(u64::from(p.required_min_rx_us));
        self.remote_desired_tx = Duration::from_micros(u64::from(p.desired_min_tx_us));
        self.remote_mult = p.detect_mult;
        if p.final_ && self.polling {
            self.polling = false;
            if self.state == BfdState::Up {
                self.active_tx = self.cfg.desired_min_tx;
            }
        }
        out.push(Action::ArmDetect(self.detect_time()));
        if self.state == BfdState::AdminDown {
            return;
        }
        match (self.state, p.state) {
            (_, BfdState::AdminDown) if self.state != BfdState::Down => {
                self.set_state(BfdState::Down, diag::NEIGHBOR_SIGNALED_SESSION_DOWN, out);
            }
            (_, BfdState::AdminDown) => {}
            (BfdState::Down, BfdState::Down) => self.set_state(BfdState::Init, diag::NONE, out),
            (BfdState::Down, BfdState::Init) | (BfdState::Init, BfdState::Init | BfdState::Up) => {
                self.set_state(BfdState::Up, diag::NONE, out)
            }
            (BfdState::Up, BfdState::Down) => self.set_state(BfdState::Down, diag::NEIGHBOR_SIGNALED_SESSION_DOWN, out),
            _ => {}
        }
        // §6.8.7: a Poll is answered at once with Final (and no Poll).
        if p.poll {
            out.push(Action::Send(self.packet(true)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BfdConfig {
        BfdConfig {
            desired_min_tx: Duration::from_millis(100),
            required_min_rx: Duration::from_millis(100),
            detect_mult: 3,
            passive: false,
        }
    }

    fn sent(a: &[Action]) -> Vec<ControlPacket> {
        a.iter().filter_map(|x| if let Action::Send(p) = x { Some(*p) } else { None }).collect()
    }

    /// Two state machines talking to each other come Up and move to the fast rate.
    #[test]
    fn two_sessions_come_up_and_poll_to_the_fast_rate() {
        let (mut a, mut b) = (BfdFsm::new(cfg(), 11, 1), BfdFsm::new(cfg(), 22, 2));
        let mut to_b = sent(&a.handle(Input::TxTimer));
        let mut to_a = sent(&b.handle(Input::TxTimer));
        for _ in 0..6 {
            let mut next_to_a = vec![];
            let mut next_to_b = vec![];
            for p in to_b.drain(..) {
                next_to_a.extend(sent(&b.handle(Input::Rx(p))));
            }
            for p in to_a.drain(..) {
                next_to_b.extend(sent(&a.handle(Input::Rx(p))));
            }
            next_to_b.extend(sent(&a.handle(Input::TxTimer)));
            next_to_a.extend(sent(&b.handle(Input::TxTimer)));
            to_a = next_to_a;
            to_b = next_to_b;
        }
        assert_eq!((a.state(), b.state()), (BfdState::Up, BfdState::Up));
        assert_eq!((a.remote_disc, b.remote_disc), (22, 11));
        assert_eq!(a.tx_interval(), Duration::from_millis(100), "poll sequence finished");
        assert_eq!(a.detect_time(), Duration::from_millis(300));
    }

    #[test]
    fn down_sends_slow_and_detection_expiry_brings_it_down() {
        let mut a = BfdFsm::new(cfg(), 11, 1);
        let p = sent(&a.handle(Input::TxTimer))[0];
        assert_eq!((p.state, p.desired_min_tx_us), (BfdState::Down, 1_000_000), "not Up: 1 s");
        let mut peer = p;
        peer.my_disc = 22;
        peer.your_disc = 11;
        peer.state = BfdState::Init;
        peer.desired_min_tx_us = 100_000;
        let out = a.handle(Input::Rx(peer));
        assert!(out.contains(&Action::StateChanged { old: BfdState::Down, new: BfdState::Up, diag: 0 }));
        assert!(out.contains(&Action::ArmDetect(Duration::from_millis(300))));
        let out = a.handle(Input::DetectTimer);
        assert_eq!(
            out,
            vec![Action::StateChanged {
                old: BfdState::Up,
                new: BfdState::Down,
                diag: diag::CONTROL_DETECTION_TIME_EXPIRED
            }]
        );
        assert_eq!(a.remote_disc, 0);
    }

    #[test]
    fn neighbor_down_and_admin_down_take_the_session_down() {
        for remote in [BfdState::Down, BfdState::AdminDown] {
            let mut a = BfdFsm::new(cfg(), 11, 1);
            let mut p = sent(&a.handle(Input::TxTimer))[0];
            p.my_disc = 22;
            p.your_disc = 11;
            p.state = BfdState::Init;
            a.handle(Input::Rx(p));
            assert_eq!(a.state(), BfdState::Up);
            p.state = remote;
            let out = a.handle(Input::Rx(p));
            assert!(
                out.contains(&Action::StateChanged {
                    old: BfdState::Up,
                    new: BfdState::Down,
                    diag: diag::NEIGHBOR_SIGNALED_SESSION_DOWN
                }),
                "{out:?}"
            );
        }
    }

    #[test]
    fn poll_is_answered_with_final() {
        let mut a = BfdFsm::new(cfg(), 11, 1);
        let mut p = sent(&a.handle(Input::TxTimer))[0];
        p.my_disc = 22;
        p.poll = true;
        let f = sent(&a.handle(Input::Rx(p)));
        assert!(f.iter().any(|x| x.final_ && !x.poll), "{f:?}");
    }

    #[test]
    fn passive_waits_to_be_spoken_to() {
        let mut a = BfdFsm::new(BfdConfig { passive: true, ..cfg() }, 11, 1);
        assert!(sent(&a.handle(Input::TxTimer)).is_empty());
        let mut p = BfdFsm::new(cfg(), 22, 2).packet(false);
        p.state = BfdState::Down;
        a.handle(Input::Rx(p));
        assert_eq!(sent(&a.handle(Input::TxTimer)).len(), 1);
    }

    #[test]
    fn jitter_stays_within_75_to_100_percent() {
        let mut a = BfdFsm::new(cfg(), 11, 5);
        for _ in 0..1000 {
            let Action::ArmTx(d) = a.handle(Input::TxTimer).pop().unwrap() else { panic!() };
            assert!(d <= SLOW_TX && d >= SLOW_TX.mul_f64(0.75), "{d:?}");
        }
    }
}
