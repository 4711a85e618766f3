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
use std::time::SystemTime;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub type Desired = Arc<BTreeMap<IpAddr, L2Spec>>;
pub type Owners = Arc<BTreeMap<IpAddr, Option<String>>>;

/// The running Layer 2 control of this node.
pub struct L2Control {
    node: String,
    desired: watch::Sender<Desired>,
    owners: watch::Receiver<Owners>,
    view: watch::Receiver<Arc<View>>,
    handle: L2Handle,
    membership: Option<Membership>,
    owner_changes: Arc<std::sync::atomic::AtomicU64>,
}

impl L2Control {
    /// Starts the control task. Without `membership` (gossip disabled) this node sees only itself.
    pub fn start(
        node: String,
        handle: L2Handle,
        membership: Option<Membership>,
        events: broadcast::Sender<Event>,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let view = match &membership {
            Some(m) => m.view(),
            None => {
                let me = Member { name: node.clone(), addr: SocketAddr::from(([0, 0, 0, 0], 0)), state: MemberState::Alive, incarnation: 0, local: true };
                let v = View { alive: [node.clone()].into(), members: vec![me] };
                // The sender is dropped: the view never changes.
                watch::channel(Arc::new(v)).1
            }
        };
        let (desired_tx, desired_rx) = watch::channel(Desired::default());
        let (owners_tx, owners_rx) = watch::channel(Owners::default());
        let owner_changes = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let task = Task {
            node: node.clone(),
            handle: handle.clone(),
            events,
            owners: owners_tx,
            last_view: Arc::new(View::default()),
            owner_changes: owner_changes.clone(),
        };
        tokio::spawn(task.run(desired_rx, view.clone(), cancel));
        Arc::new(Self { node, desired: desired_tx, owners: owners_rx, view, handle, membership, owner_changes })
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

    /// Times the owner of an IP changed, as this node computed it.
    pub fn owner_changes(&self) -> u64 {
        self.owner_changes.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn view(&self) -> Arc<View> {
        self.view.borrow().clone()
    }

    /// Does this node see a majority of every candidate set it belongs to?
    pub fn quorate(&self) -> bool {
        let view = self.view();
        self.desired
            .borrow()
            .values()
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
    handle: L2Handle,
    events: broadcast::Sender<Event>,
    owners: watch::Sender<Owners>,
    last_view: Arc<View>,
    owner_changes: Arc<std::sync::atomic::AtomicU64>,
}

impl Task {
    async fn run(mut self, mut desired: watch::Receiver<Desired>, mut view: watch::Receiver<Arc<View>>, cancel: CancellationToken) {
        let mut view_open = true;
        loop {
            let d = desired.borrow_and_update().clone();
            let v = view.borrow_and_update().clone();
            self.member_events(&v);
            self.recompute(&d, &v);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                r = desired.changed() => if r.is_err() { break },
                r = view.changed(), if view_open => if r.is_err() { view_open = false },
            }
        }
        // Stop answering everything at once on shutdown.
        self.handle.set_claims(vec![]);
    }

    fn recompute(&mut self, desired: &BTreeMap<IpAddr, L2Spec>, view: &View) {
        let mut owners = BTreeMap::new();
        let mut claims = Vec::new();
        for (ip, spec) in desired {
            let owner = election::owner(ip, &candidates(&self.node, spec), &view.alive);
            if owner.as_deref() == Some(self.node.as_str()) {
                claims.push(Claim { ip: *ip, interfaces: spec.interfaces.clone(), exclude_interfaces: spec.exclude_interfaces.clone() });
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
