//! Layer 2 control: the desired announcements (merged over owners) and the gossip view in, the claims
//! of this node out. On every change of either, the election runs again for every IP (it is pure and
//! cheap), the announcer gets the IPs this node owns, and every change of owner becomes an event.
use super::{Claim, ClaimStatus, L2Counters, L2Handle};
use crate::config::spec::L2Spec;
use crate::election;
use crate::events::{Event, L2OwnerEvent, MemberEvent};
use crate::membership::{Member, MemberState, Membership, View};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub type Desired = Arc<BTreeMap<IpAddr, L2Spec>>;
pub type Owners = Arc<BTreeMap<IpAddr, Option<String>>>;

/// The running Layer 2 control of this node.
pub struct L2Control {
    node: String,
    mode: election::Mode,
    desired: watch::Sender<Desired>,
    owners: watch::Receiver<Owners>,
    view: watch::Receiver<Arc<View>>,
    handle: L2Handle,
    membership: Option<Membership>,
    owner_changes: Arc<std::sync::atomic::AtomicU64>,
    gave_up: Arc<std::sync::Mutex<BTreeMap<IpAddr, String>>>,
    handoffs: Arc<std::sync::atomic::AtomicU64>,
}

/// After start, while this node sees no other member alive, it does not take IPs that other candidates
/// may hold in available mode: a restarted node rejoins within milliseconds and would otherwise answer
/// beside the current owner until then. A node with gossip off, or alone, answers after this.
pub const STARTUP_SETTLE: Duration = Duration::from_secs(1);

/// First hold-down after this node gave an IP up; doubled each time it has to give the same IP up
/// again within [`HANDOFF_MEMORY`], up to [`MAX_HOLD_DOWN`].
pub const HOLD_DOWN: Duration = Duration::from_secs(5);
pub const MAX_HOLD_DOWN: Duration = Duration::from_secs(300);
pub const HANDOFF_MEMORY: Duration = Duration::from_secs(600);

/// An IP this node owned and could not answer for.
#[derive(Debug, Clone)]
struct GaveUp {
    reason: String,
    /// Not back in the election before this, and only if it could answer then.
    until: Instant,
}

impl L2Control {
    /// Starts the control task. Without `membership` (gossip disabled) this node sees only itself.
    /// `mode`: the election of announcements that do not choose one (`--l2-election`).
    pub fn start(
        node: String,
        handle: L2Handle,
        membership: Option<Membership>,
        events: broadcast::Sender<Event>,
        mode: election::Mode,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let view = match &membership {
            Some(m) => m.view(),
            None => {
                let me = Member {
                    name: node.clone(),
                    addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                    state: MemberState::Alive,
                    incarnation: 0,
                    local: true,
                };
                let v = View { alive: [node.clone()].into(), members: vec![me], unservable: Default::default() };
                // The sender is dropped: the view never changes.
                watch::channel(Arc::new(v)).1
            }
        };
        let (desired_tx, desired_rx) = watch::channel(Desired::default());
        let (owners_tx, owners_rx) = watch::channel(Owners::default());
        let owner_changes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let gave_up_shared = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let handoffs = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = Task {
            mode,
            seen: [node.clone()].into(),
            view_epoch: (BTreeSet::new(), 0),
            settle_until: Instant::now() + STARTUP_SETTLE,
            node: node.clone(),
            handle: handle.clone(),
            events,
            owners: owners_tx,
            last_view: Arc::new(View::default()),
            owner_changes: owner_changes.clone(),
            membership: membership.clone(),
            gave_up: BTreeMap::new(),
            backoff: BTreeMap::new(),
            standby_bad: BTreeSet::new(),
            gave_up_shared: gave_up_shared.clone(),
            handoffs: handoffs.clone(),
        };
        tokio::spawn(task.run(desired_rx, view.clone(), cancel));
        Arc::new(Self {
            node,
            mode,
            desired: desired_tx,
            owners: owners_rx,
            view,
            handle,
            membership,
            owner_changes,
            gave_up: gave_up_shared,
            handoffs,
        })
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// Replaces the desired announcements (already merged over owners).
    pub fn set_desired(&self, d: BTreeMap<IpAddr, L2Spec>) {
        self.desired.send_replace(Arc::new(d));
    }

    /// The node answering for `ip` now, as this node computes it.
    pub fn owner(&self, ip: &IpAddr) -> Option<String> {
        self.owners.borrow().get(ip).cloned().flatten()
    }

    pub fn status(&self) -> Vec<ClaimStatus> {
        self.handle.status()
    }

    pub fn counters(&self) -> L2Counters {
        self.handle.counters()
    }

    pub fn ip_counters(&self) -> BTreeMap<IpAddr, crate::l2::announcer::IpCounters> {
        self.handle.ip_counters()
    }

    /// IPs this node gave up because it could not answer for them, with the reason.
    pub fn gave_up(&self) -> BTreeMap<IpAddr, String> {
        self.gave_up.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Times this node gave an IP up.
    pub fn handoffs(&self) -> u64 {
        self.handoffs.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Times the owner of an IP changed, as this node computed it.
    pub fn owner_changes(&self) -> u64 {
        self.owner_changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// Does this node see a majority of every candidate set it belongs to, among the IPs elected in
    /// strict mode? (Available mode needs no majority: true for those.)
    pub fn quorate(&self) -> bool {
        let view = self.view();
        self.desired
            .borrow()
            .values()
            .filter(|s| s.election.unwrap_or(self.mode) == election::Mode::Strict)
            .map(|s| candidates(&self.node, s))
            .filter(|c| c.contains(&self.node))
            .all(|c| election::quorate(&c, &view.alive))
    }

    pub fn set_seeds(&self, seeds: Vec<SocketAddr>) -> bool {
        match &self.membership {
            Some(m) => {
                m.set_seeds(seeds);
                true
            }
            None => false,
        }
    }
}

fn candidates(node: &str, s: &L2Spec) -> BTreeSet<String> {
    if s.nodes.is_empty() {
        [node.to_string()].into()
    } else {
        s.nodes.clone()
    }
}

struct Task {
    node: String,
    /// The election of announcements that do not choose one.
    mode: election::Mode,
    /// Every member name this node has seen in the gossip group since it started (itself included):
    /// only these are candidates. A node that never ran speakerd is never one.
    seen: BTreeSet<String>,
    /// The alive set last seen and a number bumped when it changes ([`Claim::view`]).
    view_epoch: (BTreeSet<String>, u64),
    /// See [`STARTUP_SETTLE`].
    settle_until: Instant,
    handle: L2Handle,
    events: broadcast::Sender<Event>,
    owners: watch::Sender<Owners>,
    last_view: Arc<View>,
    owner_changes: Arc<std::sync::atomic::AtomicU64>,
    membership: Option<Membership>,
    gave_up: BTreeMap<IpAddr, GaveUp>,
    /// Last hold-down per IP and when it was given, to double it on a repeat.
    backoff: BTreeMap<IpAddr, (Duration, Instant)>,
    /// Candidate IPs this node does not own and could not answer for now.
    standby_bad: BTreeSet<IpAddr>,
    gave_up_shared: Arc<std::sync::Mutex<BTreeMap<IpAddr, String>>>,
    handoffs: Arc<std::sync::atomic::AtomicU64>,
}

impl Task {
    async fn run(
        mut self,
        mut desired: watch::Receiver<Desired>,
        mut view: watch::Receiver<Arc<View>>,
        cancel: CancellationToken,
    ) {
        let mut view_open = true;
        let mut failures = self.handle.failures();
        let mut standby = self.handle.standby_failures();
        loop {
            let d = desired.borrow_and_update().clone();
            let v = view.borrow_and_update().clone();
            self.member_events(&v);
            self.recompute(&d, &v);
            let settle = (Instant::now() < self.settle_until).then_some(self.settle_until);
            let next = self.gave_up.values().map(|g| g.until).chain(settle).min();
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                r = failures.changed() => {
                    if r.is_ok() {
                        let f = failures.borrow_and_update().clone();
                        self.give_up(&f);
                    }
                }
                r = standby.changed() => {
                    if r.is_ok() {
                        self.standby_bad = standby.borrow_and_update().clone();
                        self.reenter();
                    }
                }
                _ = async { match next { Some(t) => tokio::time::sleep_until(t).await, None => std::future::pending().await } } => self.reenter(),
                r = desired.changed() => if r.is_err() { break },
                r = view.changed(), if view_open => if r.is_err() { view_open = false },
            }
        }
        // Stop answering everything at once on shutdown.
        self.handle.set_claims(vec![]);
    }

    /// Owned IPs this node cannot answer for (no usable interface, socket errors): give them up so that
    /// the next candidate takes them, and tell the group.
    fn give_up(&mut self, failures: &BTreeSet<IpAddr>) {
        let owned: BTreeSet<IpAddr> = self
            .owners
            .borrow()
            .iter()
            .filter(|(_, o)| o.as_deref() == Some(self.node.as_str()))
            .map(|(ip, _)| *ip)
            .collect();
        let status = self.handle.status();
        let now = Instant::now();
        let mut changed = false;
        let new: Vec<IpAddr> =
            failures.iter().filter(|ip| owned.contains(ip) && !self.gave_up.contains_key(ip)).copied().collect();
        for ip in new.iter() {
            let reason = status
                .iter()
                .find(|s| s.ip == *ip)
                .and_then(|s| s.error.clone())
                .unwrap_or_else(|| "cannot answer".into());
            let hold = match self.backoff.get(ip) {
                Some((d, at)) if now.duration_since(*at) < HANDOFF_MEMORY => (*d * 2).min(MAX_HOLD_DOWN),
                _ => HOLD_DOWN,
            };
            self.backoff.insert(*ip, (hold, now));
            tracing::warn!(%ip, %reason, hold_down_secs = hold.as_secs(), "cannot answer for this IP: handing it off to the next candidate");
            self.handoffs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.gave_up.insert(*ip, GaveUp { reason, until: now + hold });
            changed = true;
        }
        if changed {
            self.publish_gave_up();
        }
    }

    /// IPs whose hold-down is over and that this node could answer for again go back to the election.
    fn reenter(&mut self) {
        let now = Instant::now();
        let back: Vec<IpAddr> = self
            .gave_up
            .iter()
            .filter(|(ip, g)| g.until <= now && !self.standby_bad.contains(ip))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in &back {
            tracing::info!(%ip, "can answer for this IP again: back in the election");
            self.gave_up.remove(ip);
        }
        if !back.is_empty() {
            self.publish_gave_up();
        }
        // Still unable: look again at the next hold-down.
        for (ip, g) in self.gave_up.iter_mut() {
            if g.until <= now && self.standby_bad.contains(ip) {
                g.until = now + HOLD_DOWN;
            }
        }
    }

    fn publish_gave_up(&mut self) {
        if let Some(m) = &self.membership {
            m.set_unservable(self.gave_up.keys().copied().collect());
        }
        if let Ok(mut g) = self.gave_up_shared.lock() {
            *g = self.gave_up.iter().map(|(ip, g)| (*ip, g.reason.clone())).collect();
        }
    }

    fn recompute(&mut self, desired: &BTreeMap<IpAddr, L2Spec>, view: &View) {
        self.seen.extend(view.members.iter().map(|m| m.name.clone()));
        if self.view_epoch.0 != view.alive {
            self.view_epoch = (view.alive.clone(), self.view_epoch.1.wrapping_add(1));
        }
        let settling = Instant::now() < self.settle_until && view.alive.len() <= 1;
        let mut owners = BTreeMap::new();
        let mut claims = Vec::new();
        for (ip, spec) in desired {
            let cands: BTreeSet<String> = candidates(&self.node, spec).intersection(&self.seen).cloned().collect();
            let cannot = |n: &str| {
                (n == self.node && self.gave_up.contains_key(ip))
                    || view.unservable.get(n).is_some_and(|s| s.contains(ip))
            };
            let mode = spec.election.unwrap_or(self.mode);
            let owner = if settling && mode == election::Mode::Available && cands.len() > 1 {
                None
            } else {
                election::owner_except(ip, &cands, &view.alive, &spec.weights, cannot, mode)
            };
            let mine = owner.as_deref() == Some(self.node.as_str());
            if mine || cands.contains(&self.node) {
                // Owned: answered. A candidate not owning it: only evaluated (could it answer?).
                claims.push(Claim {
                    ip: *ip,
                    interfaces: spec.interfaces.clone(),
                    exclude_interfaces: spec.exclude_interfaces.clone(),
                    standby: !mine,
                    view: self.view_epoch.1,
                });
            }
            owners.insert(*ip, owner);
        }
        self.handle.set_claims(claims);
        let old = self.owners.borrow().clone();
        let ips: BTreeSet<IpAddr> = old.keys().chain(owners.keys()).copied().collect();
        let now = SystemTime::now();
        for ip in ips {
            let (was, is) = (old.get(&ip).cloned().flatten(), owners.get(&ip).cloned().flatten());
            if was == is {
                continue;
            }
            let me = Some(self.node.as_str());
            let local = match (was.as_deref() == me, is.as_deref() == me) {
                (false, true) => Some(true),
                (true, false) => Some(false),
                _ => None,
            };
            match local {
                Some(true) => tracing::info!(%ip, "taking over: this node answers now"),
                Some(false) => tracing::info!(%ip, new_owner = ?is, "released: this node stops answering"),
                None => tracing::debug!(%ip, old = ?was, new = ?is, "owner changed"),
            }
            self.owner_changes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _ = self.events.send(Event::L2Owner(L2OwnerEvent { ip, old: was, new: is, local, at: now }));
        }
        self.owners.send_replace(Arc::new(owners));
    }

    fn member_events(&mut self, v: &Arc<View>) {
        let now = SystemTime::now();
        for m in &v.members {
            let old = self.last_view.members.iter().find(|o| o.name == m.name).map(|o| o.state);
            if old != Some(m.state) {
                let _ = self.events.send(Event::Member(MemberEvent { member: m.clone(), old, at: now }));
            }
        }
        self.last_view = v.clone();
    }
}
