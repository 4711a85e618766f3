//! The desired state and the decisions taken on it, with no task, socket or clock: each owner's set
//! of announcements with their interned attributes, the merge of the owners' Layer 2 sets, and
//! [`plan_peers`], which says what to do to the running peers to make them an owner's list. The
//! [`Speaker`](super::Speaker) holds these under its lock and carries the plans out (`peers.rs`).
use super::error::SpeakerError;
use crate::bgp::export::{Body, Selector, Want};
use crate::config::spec::{AdvertSpec, ConfigError, L2Spec, PeerSpec, RouteAttrs};
use crate::events::AnnouncementChange;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// One owner's announcements: prefix → interned body.
pub(super) type OwnerSet = BTreeMap<IpNet, Arc<Body>>;

/// Every owner's announcements, with the interned attributes and bodies they share.
#[derive(Default)]
pub(super) struct Announcements {
    pub(super) owners: BTreeMap<String, OwnerSet>,
    interned: HashMap<RouteAttrs, Arc<RouteAttrs>>,
    pub(super) bodies: HashSet<Arc<Body>>,
    /// Per owner, the prefixes inserted into its set since it was last [`compacted`].
    grown: HashMap<String, usize>,
}

/// Fewer insertions than this into one owner's set never make [`Announcements::grew`] compact it.
const COMPACT_MIN: usize = 1024;

/// `set` in as few B-tree nodes as it can have. A B-tree grown by inserts in ascending order (how
/// clients send their sets) splits each full leaf in two and leaves the left half for good, so its
/// leaves stay about half full; `append` of two non-empty maps builds one map from their two sorted
/// sequences, filling each node, and frees the old nodes as it takes their entries, so the two trees
/// never stand side by side.
pub(super) fn compacted(mut set: OwnerSet) -> OwnerSet {
    let Some((p, b)) = set.pop_first() else {
        return set;
    };
    let mut out = OwnerSet::new();
    out.insert(p, b);
    out.append(&mut set);
    out
}

impl Announcements {
    /// `added` prefixes were inserted into `owner`'s `set`: once the insertions since its last
    /// compaction are at least [`COMPACT_MIN`] and half the set, returns it [`compacted`]. Each
    /// compaction costs the size of the set and follows insertions of half of it, so inserting costs
    /// a constant more per prefix.
    pub(super) fn grew(&mut self, owner: &str, set: OwnerSet, added: usize) -> OwnerSet {
        if added == 0 {
            return set;
        }
        let grown = match self.grown.get_mut(owner) {
            Some(g) => g,
            None => self.grown.entry(owner.to_string()).or_default(),
        };
        *grown += added;
        if *grown < COMPACT_MIN || *grown * 2 < set.len() {
            return set;
        }
        *grown = 0;
        compacted(set)
    }

    /// What the peers should be sent for `p`, from every owner's announcement of it.
    pub(super) fn want_of(&mut self, p: &IpNet) -> Option<Want> {
        let bodies: Vec<&Arc<Body>> = self.owners.values().filter_map(|set| set.get(p)).collect();
        match bodies.as_slice() {
            [] => None,
            // one owner (the usual case): its interned attributes as they are
            [b] if b.peers.is_empty() => Some(Want::All(b.attrs.clone())),
            bs if bs.iter().all(|b| b.peers.is_empty()) => {
                let mut m = (*bs[0].attrs).clone();
                for b in &bs[1..] {
                    m.merge(&b.attrs);
                }
                let a = self.interned.entry(m.clone()).or_insert_with(|| Arc::new(m)).clone();
                Some(Want::All(a))
            }
            bs => Some(Want::Select(Arc::new(bs.iter().map(|b| Arc::clone(b)).collect()))),
        }
    }

    /// The stored form of an announcement: its prefix and its interned body.
    pub(super) fn intern(&mut self, a: AdvertSpec) -> (IpNet, Arc<Body>) {
        let attrs = match self.interned.get(&a.attrs) {
            Some(i) => i.clone(),
            None => {
                let i = Arc::new(a.attrs.clone());
                self.interned.insert(a.attrs, i.clone());
                i
            }
        };
        let body = Body { attrs, peers: a.peers };
        let body = match self.bodies.get(&body) {
            Some(b) => b.clone(),
            None => {
                let b = Arc::new(body);
                self.bodies.insert(b.clone());
                b
            }
        };
        (a.prefix, body)
    }

    /// Drops interned values nothing uses any more, once there are enough of them to be worth a pass.
    pub(super) fn collect_unused(&mut self) {
        if self.bodies.len() > 1024 {
            self.bodies.retain(|b| Arc::strong_count(b) > 1);
        }
        if self.interned.len() > 1024 {
            self.interned.retain(|_, v| Arc::strong_count(v) > 1);
        }
    }

    /// Every owner's announcement of one prefix, by owner.
    pub(super) fn of(&self, prefix: &IpNet) -> Vec<(String, AdvertSpec)> {
        self.owners.iter().filter_map(|(o, set)| set.get(prefix).map(|b| (o.clone(), b.spec(*prefix)))).collect()
    }

    /// One owner's (or every owner's) announcements, by prefix then owner.
    pub(super) fn list(&self, owner: Option<&str>) -> Vec<(String, AdvertSpec)> {
        let mut v: Vec<(IpNet, &String, &Arc<Body>)> = self
            .owners
            .iter()
            .filter(|(o, _)| owner.is_none_or(|w| w == o.as_str()))
            .flat_map(|(o, set)| set.iter().map(move |(p, b)| (*p, o, b)))
            .collect();
        v.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v.into_iter().map(|(p, o, b)| (o.clone(), b.spec(p))).collect()
    }
}

impl Body {
    pub(super) fn spec(&self, prefix: IpNet) -> AdvertSpec {
        AdvertSpec { prefix, attrs: (*self.attrs).clone(), peers: self.peers.clone() }
    }
}

/// What replacing `old` by `new` for one prefix is: added, changed, or nothing.
pub(super) fn change_of(old: Option<&Arc<Body>>, new: &Arc<Body>) -> Option<AnnouncementChange> {
    match old {
        None => Some(AnnouncementChange::Added),
        Some(o) if o != new => Some(AnnouncementChange::Changed),
        Some(_) => None,
    }
}

/// The announcements that select a peer: those naming its name or address (or none).
pub(super) fn selector(spec: &PeerSpec) -> Selector {
    Selector { name: spec.name.clone(), address: spec.address }
}

/// Each owner's Layer 2 announcements, by IP.
pub(super) type L2Sets = BTreeMap<String, BTreeMap<IpAddr, L2Spec>>;

/// What Layer 2 should answer for: every owner's announcements of an IP merged into one
/// ([`L2Spec::merge`]), in owner order.
pub(super) fn merge_l2(sets: &L2Sets) -> BTreeMap<IpAddr, L2Spec> {
    let mut merged: BTreeMap<IpAddr, L2Spec> = BTreeMap::new();
    for set in sets.values() {
        for (ip, spec) in set {
            match merged.get_mut(ip) {
                Some(m) => m.merge(spec),
                None => {
                    merged.insert(*ip, spec.clone());
                }
            }
        }
    }
    merged
}

/// (added, changed, removed) from one Layer 2 set to the next.
pub(super) fn l2_counts(old: &BTreeMap<IpAddr, L2Spec>, new: &BTreeMap<IpAddr, L2Spec>) -> (u32, u32, u32) {
    let added = new.keys().filter(|k| !old.contains_key(k)).count() as u32;
    let changed = new.iter().filter(|(k, v)| old.get(k).is_some_and(|o| o != *v)).count() as u32;
    let removed = old.keys().filter(|k| !new.contains_key(k)).count() as u32;
    (added, changed, removed)
}

/// One owner's (or every owner's) entries of per-owner sets, ordered by key, then owner.
pub(super) fn list_owned<K: Ord + Copy, V: Clone>(
    sets: &BTreeMap<String, BTreeMap<K, V>>,
    owner: Option<&str>,
) -> Vec<(String, V)> {
    let mut v: Vec<(K, String, V)> = sets
        .iter()
        .filter(|(o, _)| owner.is_none_or(|w| w == o.as_str()))
        .flat_map(|(o, set)| set.iter().map(move |(k, a)| (*k, o.clone(), a.clone())))
        .collect();
    v.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    v.into_iter().map(|(_, o, a)| (o, a)).collect()
}

/// What the planner knows of a peer that exists.
#[derive(Debug, Clone, Copy)]
pub(super) struct HavePeer<'a> {
    pub(super) spec: &'a PeerSpec,
    pub(super) owner: &'a str,
    /// The local ASN its session runs with (the spec's, or the default when it was started).
    pub(super) local_asn: u32,
}

/// The peers that exist, by address.
pub(super) type Have<'a> = BTreeMap<IpAddr, HavePeer<'a>>;

/// The values a peer that sets none runs with: the process defaults, the router ID falling back to
/// the host's first IPv4 address.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Defaults {
    pub(super) local_asn: Option<u32>,
    pub(super) router_id: Option<Ipv4Addr>,
}

/// The local ASN and router ID a peer's session runs with.
pub(super) fn resolve(spec: &PeerSpec, d: &Defaults) -> Result<(u32, Ipv4Addr), SpeakerError> {
    let local_asn = match (spec.local_asn, d.local_asn) {
        (0, Some(a)) => a,
        (0, None) => return Err(ConfigError::new("local_asn", "required (speakerd has no --local-asn default)").into()),
        (a, _) => a,
    };
    let router_id = spec
        .router_id
        .or(d.router_id)
        .ok_or_else(|| ConfigError::new("router_id", "required: the host has no IPv4 address to default to"))?;
    Ok((local_asn, router_id))
}

/// One thing to do to the running peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Step {
    /// A new peer: start its session.
    Start { spec: PeerSpec, local_asn: u32, router_id: Ipv4Addr },
    /// A peer gone from the list: stop and forget it.
    Stop(IpAddr),
    /// A change the running session cannot take (see [`PeerSpec::needs_reset`], or another local
    /// ASN): a new session with the new settings.
    Restart { spec: PeerSpec, local_asn: u32, router_id: Ipv4Addr },
    /// A change the running session takes as it is (name, timers that apply to the next exchange,
    /// next hops, received-prefix limits).
    Update { spec: PeerSpec },
}

/// What [`Speaker::set_peers`](super::Speaker::set_peers) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetPeersOutcome {
    pub added: u32,
    pub changed: u32,
    pub removed: u32,
    /// Of the changed, how many had their session reset.
    pub reset: u32,
    /// Peers not applied, and why (held by another owner, name taken, limit).
    pub conflicts: Vec<(IpAddr, String)>,
}

/// What to do to make one owner's peers a list: the steps in order (stops first), and the peers
/// that cannot be applied.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Plan {
    pub(super) steps: Vec<Step>,
    pub(super) conflicts: Vec<(IpAddr, SpeakerError)>,
}

impl Plan {
    /// The counts the caller is told; carrying the steps out cannot fail.
    pub(super) fn outcome(&self) -> SetPeersOutcome {
        let mut o = SetPeersOutcome::default();
        for s in &self.steps {
            match s {
                Step::Start { .. } => o.added += 1,
                Step::Stop(_) => o.removed += 1,
                Step::Restart { .. } => {
                    o.changed += 1;
                    o.reset += 1;
                }
                Step::Update { .. } => o.changed += 1,
            }
        }
        o.conflicts = self.conflicts.iter().map(|(a, e)| (*a, e.to_string())).collect();
        o
    }
}

/// Whether `spec` can be added beside `have`, and how it starts.
pub(super) fn plan_add(have: &Have, spec: &PeerSpec, d: &Defaults, max_peers: usize) -> Result<Step, SpeakerError> {
    if let Some(p) = have.get(&spec.address) {
        return Err(SpeakerError::PeerExists { address: spec.address, owner: p.owner.to_string() });
    }
    if have.values().any(|p| p.spec.name == spec.name) {
        return Err(SpeakerError::NameTaken(spec.name.clone()));
    }
    if have.len() >= max_peers {
        return Err(SpeakerError::TooManyPeers(max_peers));
    }
    let (local_asn, router_id) = resolve(spec, d)?;
    Ok(Step::Start { spec: spec.clone(), local_asn, router_id })
}

/// Whether the peer at `spec.address` can take `spec`, and whether its session must restart for it.
pub(super) fn plan_update(have: &Have, spec: &PeerSpec, d: &Defaults) -> Result<Step, SpeakerError> {
    let old = have.get(&spec.address).ok_or_else(|| SpeakerError::PeerNotFound(spec.address.to_string()))?;
    if have.values().any(|p| p.spec.name == spec.name && p.spec.address != spec.address) {
        return Err(SpeakerError::NameTaken(spec.name.clone()));
    }
    let (local_asn, router_id) = resolve(spec, d)?;
    if old.spec.needs_reset(spec) || old.local_asn != local_asn {
        Ok(Step::Restart { spec: spec.clone(), local_asn, router_id })
    } else {
        Ok(Step::Update { spec: spec.clone() })
    }
}

/// What makes `owner`'s peers exactly `want`: its peers not in `want` stop, new ones start, changed
/// ones restart or are updated in place, unchanged ones are left alone. A peer whose address another
/// owner holds, whose name another peer carries, or that would pass `max_peers` is a conflict; the
/// rest is planned. The peers are taken in order, each seeing the ones planned before it.
pub(super) fn plan_peers<'a>(
    owner: &'a str,
    have: &Have<'a>,
    want: &'a [PeerSpec],
    d: &Defaults,
    max_peers: usize,
) -> Result<Plan, SpeakerError> {
    let mut wanted = BTreeSet::new();
    for s in want {
        if !wanted.insert(s.address) {
            return Err(ConfigError::new("peers", format!("peer {} appears twice", s.address)).into());
        }
    }
    let mut plan = Plan::default();
    let mut sim = have.clone();
    for (a, p) in have {
        if p.owner == owner && !wanted.contains(a) {
            plan.steps.push(Step::Stop(*a));
            sim.remove(a);
        }
    }
    for spec in want {
        let addr = spec.address;
        let step = match sim.get(&addr) {
            Some(p) if p.owner != owner => {
                Err(SpeakerError::OwnedByOther { address: addr, owner: p.owner.to_string() })
            }
            Some(p) if p.spec == spec => continue,
            Some(_) => plan_update(&sim, spec, d),
            None => plan_add(&sim, spec, d, max_peers),
        };
        match step {
            Ok(step) => {
                let local_asn = match &step {
                    Step::Start { local_asn, .. } | Step::Restart { local_asn, .. } => *local_asn,
                    _ => sim.get(&addr).map(|p| p.local_asn).unwrap_or_default(),
                };
                sim.insert(addr, HavePeer { spec, owner, local_asn });
                plan.steps.push(step);
            }
            Err(e) => plan.conflicts.push((addr, e)),
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use speaker_api::v1 as pb;

    /// A peer with speakerd's defaults (local ASN 0: the default), its address and name.
    fn peer(addr: &str, name: &str) -> PeerSpec {
        let mut s = PeerSpec::try_from(&pb::PeerConfig { address: addr.into(), peer_asn: 65002, ..Default::default() })
            .unwrap();
        s.name = name.into();
        s
    }

    fn with(s: &PeerSpec, f: impl FnOnce(&mut PeerSpec)) -> PeerSpec {
        let mut s = s.clone();
        f(&mut s);
        s
    }

    const ID: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 254);
    const D: Defaults = Defaults { local_asn: Some(65000), router_id: Some(ID) };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn start(s: &PeerSpec) -> Step {
        Step::Start { spec: s.clone(), local_asn: 65000, router_id: ID }
    }

    fn restart(s: &PeerSpec, local_asn: u32) -> Step {
        Step::Restart { spec: s.clone(), local_asn, router_id: ID }
    }

    /// One call of owner "o": the peers that exist, its list, and what should come of it.
    struct Case<'a> {
        name: &'a str,
        /// (spec, owner, local ASN the session runs with)
        have: Vec<(&'a PeerSpec, &'a str, u32)>,
        want: Vec<PeerSpec>,
        max: usize,
        defaults: Defaults,
        steps: Vec<Step>,
        conflicts: Vec<(&'a str, SpeakerError)>,
    }

    fn case<'a>(
        name: &'a str,
        have: Vec<(&'a PeerSpec, &'a str, u32)>,
        want: Vec<PeerSpec>,
        steps: Vec<Step>,
        conflicts: Vec<(&'a str, SpeakerError)>,
    ) -> Case<'a> {
        Case { name, have, want, max: 10, defaults: D, steps, conflicts }
    }

    #[test]
    fn plan_peers_cases() {
        let a = peer("192.0.2.1", "a");
        let b = peer("192.0.2.2", "b");
        let c = peer("192.0.2.3", "c");
        let a_renamed = with(&a, |s| s.name = "a2".into());
        let a_next_hop = with(&a, |s| s.next_hop_v4 = Some("192.0.2.100".parse().unwrap()));
        let a_max_prefixes = with(&a, |s| s.max_received_prefixes = 10);
        let a_hold = with(&a, |s| s.hold_time = 30);
        let a_password = with(&a, |s| s.password = Some("x".into()));
        let a_own_asn = with(&a, |s| s.local_asn = 65100);
        let b_named_a = with(&b, |s| s.name = "a".into());
        let c_named_a = with(&c, |s| s.name = "a".into());

        let stop = |a: &str| Step::Stop(ip(a));
        let update = |s: &PeerSpec| Step::Update { spec: s.clone() };
        let owned_by_x = |a: &str| SpeakerError::OwnedByOther { address: ip(a), owner: "x".into() };
        let no_default_asn = Defaults { local_asn: None, ..D };
        // Owner "o" calls with `want`; `have` lists the existing peers as (spec, owner, local ASN).
        let cases: Vec<Case> = vec![
            case("new peer", vec![], vec![a.clone()], vec![start(&a)], vec![]),
            case(
                "removed peer",
                vec![(&a, "o", 65000), (&b, "o", 65000)],
                vec![b.clone()],
                vec![stop("192.0.2.1")],
                vec![],
            ),
            case(
                "an empty list stops the owner's peers only",
                vec![(&a, "o", 65000), (&b, "x", 65000)],
                vec![],
                vec![stop("192.0.2.1")],
                vec![],
            ),
            case("unchanged", vec![(&a, "o", 65000)], vec![a.clone()], vec![], vec![]),
            case("rename: in place", vec![(&a, "o", 65000)], vec![a_renamed.clone()], vec![update(&a_renamed)], vec![]),
            case(
                "next hop: in place",
                vec![(&a, "o", 65000)],
                vec![a_next_hop.clone()],
                vec![update(&a_next_hop)],
                vec![],
            ),
            case(
                "prefix limit: in place",
                vec![(&a, "o", 65000)],
                vec![a_max_prefixes.clone()],
                vec![update(&a_max_prefixes)],
                vec![],
            ),
            case(
                "hold time: restart",
                vec![(&a, "o", 65000)],
                vec![a_hold.clone()],
                vec![restart(&a_hold, 65000)],
                vec![],
            ),
            case(
                "password: restart",
                vec![(&a, "o", 65000)],
                vec![a_password.clone()],
                vec![restart(&a_password, 65000)],
                vec![],
            ),
            case(
                "own local ASN: restart",
                vec![(&a, "o", 65000)],
                vec![a_own_asn.clone()],
                vec![restart(&a_own_asn, 65100)],
                vec![],
            ),
            // A change that applies in place, but the default local ASN changed since the session started.
            case(
                "default ASN changed: restart",
                vec![(&a, "o", 64999)],
                vec![a_renamed.clone()],
                vec![restart(&a_renamed, 65000)],
                vec![],
            ),
            case(
                "another owner's peer",
                vec![(&a, "x", 65000)],
                vec![a.clone()],
                vec![],
                vec![("192.0.2.1", owned_by_x("192.0.2.1"))],
            ),
            case(
                "another owner's peer, changed, beside a new one",
                vec![(&a, "x", 65000)],
                vec![a_hold.clone(), b.clone()],
                vec![start(&b)],
                vec![("192.0.2.1", owned_by_x("192.0.2.1"))],
            ),
            case(
                "a name another owner's peer carries",
                vec![(&a, "x", 65000)],
                vec![b_named_a.clone()],
                vec![],
                vec![("192.0.2.2", SpeakerError::NameTaken("a".into()))],
            ),
            case(
                "a name taken earlier in the same list",
                vec![],
                vec![a.clone(), b_named_a.clone()],
                vec![start(&a)],
                vec![("192.0.2.2", SpeakerError::NameTaken("a".into()))],
            ),
            case(
                "a name freed by a stop is free",
                vec![(&a, "o", 65000)],
                vec![c_named_a.clone()],
                vec![stop("192.0.2.1"), start(&c_named_a)],
                vec![],
            ),
            Case {
                max: 2,
                ..case(
                    "limit",
                    vec![(&a, "x", 65000)],
                    vec![b.clone(), c.clone()],
                    vec![start(&b)],
                    vec![("192.0.2.3", SpeakerError::TooManyPeers(2))],
                )
            },
            Case {
                max: 1,
                ..case(
                    "a stop makes room",
                    vec![(&a, "o", 65000)],
                    vec![b.clone()],
                    vec![stop("192.0.2.1"), start(&b)],
                    vec![],
                )
            },
            Case {
                defaults: no_default_asn,
                ..case(
                    "no local ASN at all",
                    vec![],
                    vec![b.clone()],
                    vec![],
                    vec![(
                        "192.0.2.2",
                        SpeakerError::Invalid(ConfigError::new(
                            "local_asn",
                            "required (speakerd has no --local-asn default)",
                        )),
                    )],
                )
            },
        ];
        for c in cases {
            let have: Have = c
                .have
                .into_iter()
                .map(|(s, o, asn)| (s.address, HavePeer { spec: s, owner: o, local_asn: asn }))
                .collect();
            let plan = plan_peers("o", &have, &c.want, &c.defaults, c.max).unwrap();
            let conflicts: Vec<(IpAddr, SpeakerError)> = c.conflicts.into_iter().map(|(a, e)| (ip(a), e)).collect();
            assert_eq!(plan, Plan { steps: c.steps, conflicts }, "{}", c.name);
        }
    }

    #[test]
    fn two_owners_listing_the_same_peer() {
        let a = peer("192.0.2.1", "a");
        // The first owner takes it; the second is told who holds it, and the first keeps it.
        let plan = plan_peers("o1", &Have::new(), std::slice::from_ref(&a), &D, 10).unwrap();
        assert_eq!(plan.steps, vec![start(&a)]);
        let have: Have = [(a.address, HavePeer { spec: &a, owner: "o1", local_asn: 65000 })].into();
        let plan = plan_peers("o2", &have, std::slice::from_ref(&a), &D, 10).unwrap();
        assert_eq!(plan.steps, vec![]);
        let o = plan.outcome();
        assert_eq!(o.conflicts, vec![(a.address, "peer 192.0.2.1 is owned by \"o1\"".to_string())]);
        // The second owner's empty list does not stop the first owner's peer.
        assert_eq!(plan_peers("o2", &have, &[], &D, 10).unwrap(), Plan::default());
    }

    #[test]
    fn a_peer_twice_in_one_list_is_refused() {
        let a = peer("192.0.2.1", "a");
        let e = plan_peers("o", &Have::new(), &[a.clone(), with(&a, |s| s.name = "b".into())], &D, 10).unwrap_err();
        assert_eq!(e.to_string(), "peers: peer 192.0.2.1 appears twice");
    }

    #[test]
    fn outcome_counts_the_steps() {
        let (a, b) = (peer("192.0.2.1", "a"), peer("192.0.2.2", "b"));
        let plan = Plan {
            steps: vec![Step::Stop(ip("192.0.2.9")), start(&a), restart(&b, 65000), Step::Update { spec: b.clone() }],
            conflicts: vec![(ip("192.0.2.3"), SpeakerError::TooManyPeers(2))],
        };
        let o = plan.outcome();
        assert_eq!((o.added, o.changed, o.removed, o.reset), (1, 2, 1, 1));
        assert_eq!(o.conflicts, vec![(ip("192.0.2.3"), "at most 2 peers".to_string())]);
    }

    #[test]
    fn plan_add_and_update_of_one_peer() {
        let (a, b) = (peer("192.0.2.1", "a"), peer("192.0.2.2", "b"));
        let have: Have = [(a.address, HavePeer { spec: &a, owner: "o", local_asn: 65000 })].into();
        let cases: Vec<(&str, Result<Step, SpeakerError>)> = vec![
            ("add existing", plan_add(&have, &a, &D, 10)),
            ("add new", plan_add(&have, &b, &D, 10)),
            ("add past the limit", plan_add(&have, &b, &D, 1)),
            ("update missing", plan_update(&have, &b, &D)),
            (
                "update to a taken name",
                plan_update(
                    &have
                        .clone()
                        .into_iter()
                        .chain([(b.address, HavePeer { spec: &b, owner: "o", local_asn: 65000 })])
                        .collect(),
                    &with(&b, |s| s.name = "a".into()),
                    &D,
                ),
            ),
        ];
        let want: Vec<Result<Step, SpeakerError>> = vec![
            Err(SpeakerError::PeerExists { address: a.address, owner: "o".into() }),
            Ok(start(&b)),
            Err(SpeakerError::TooManyPeers(1)),
            Err(SpeakerError::PeerNotFound("192.0.2.2".into())),
            Err(SpeakerError::NameTaken("a".into())),
        ];
        for ((name, got), want) in cases.into_iter().zip(want) {
            assert_eq!(got, want, "{name}");
        }
    }

    /// A set of `n` prefixes whose bodies take turns among `bodies` different ones.
    fn owner_set(n: u32, bodies: u32) -> OwnerSet {
        let body = |i: u32| {
            Arc::new(Body {
                attrs: Arc::new(RouteAttrs { communities: [i % bodies].into(), ..Default::default() }),
                peers: BTreeSet::new(),
            })
        };
        (0..n).map(|i| (IpNet::from(IpAddr::V4(Ipv4Addr::from(0xc000_0200 + i))), body(i))).collect()
    }

    #[test]
    fn compacted_keeps_every_entry() {
        for (n, bodies) in [(0, 1), (1, 1), (11, 2), (12, 3), (5000, 1), (20_000, 7)] {
            let set = owner_set(n, bodies);
            let want: Vec<(IpNet, Arc<Body>)> = set.iter().map(|(p, b)| (*p, b.clone())).collect();
            let got = compacted(set);
            assert_eq!(got.len(), n as usize, "{n} prefixes");
            assert!(got.iter().map(|(p, b)| (*p, b.clone())).eq(want), "{n} prefixes, {bodies} bodies");
        }
    }

    #[test]
    fn grew_compacts_after_half_the_set_was_inserted() {
        // (set size after the insertions, insertions; the count of insertions kept after the call)
        type Steps = Vec<(u32, usize, usize)>;
        let cases: Vec<(&str, Steps)> = vec![
            ("nothing inserted", vec![(5000, 0, 0)]),
            ("a small set is never compacted", vec![(10, 10, 10), (20, 10, 20)]),
            ("a whole new set", vec![(5000, 5000, 0)]),
            ("a few into a large set", vec![(5000, 100, 100), (5100, 100, 200)]),
            (
                "chunks of 1000 into a set growing from nothing",
                vec![(1000, 1000, 1000), (2000, 1000, 0), (3000, 1000, 1000), (4000, 1000, 0), (5000, 1000, 1000)],
            ),
            ("not half: kept", vec![(10_000, 4999, 4999), (10_001, 1, 5000)]),
        ];
        for (name, steps) in cases {
            let mut a = Announcements::default();
            for (i, (len, added, kept)) in steps.into_iter().enumerate() {
                let set = owner_set(len, 1);
                let got = a.grew("o", set, added);
                assert_eq!(got.len(), len as usize, "{name}, step {i}");
                assert_eq!(a.grown.get("o").copied().unwrap_or(0), kept, "{name}, step {i}");
            }
        }
    }

    fn l2(ip: &str, nodes: &[&str], interfaces: &[&str]) -> L2Spec {
        L2Spec {
            ip: ip.parse().unwrap(),
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
            interfaces: interfaces.iter().map(|i| i.to_string()).collect(),
            exclude_interfaces: vec![],
            election: None,
            weights: BTreeMap::new(),
        }
    }

    #[test]
    fn merge_l2_cases() {
        type Sets = Vec<(&'static str, Vec<L2Spec>)>;
        let cases: Vec<(&str, Sets, Vec<L2Spec>)> = vec![
            ("nothing", vec![], vec![]),
            (
                "one owner, as it is",
                vec![("a", vec![l2("192.0.2.1", &["n1"], &["eth0"])])],
                vec![l2("192.0.2.1", &["n1"], &["eth0"])],
            ),
            (
                "two owners, different IPs",
                vec![("a", vec![l2("192.0.2.1", &["n1"], &[])]), ("b", vec![l2("192.0.2.2", &["n2"], &[])])],
                vec![l2("192.0.2.1", &["n1"], &[]), l2("192.0.2.2", &["n2"], &[])],
            ),
            (
                "two owners, one IP: candidates and interfaces united",
                vec![
                    ("a", vec![l2("192.0.2.1", &["n1"], &["eth0"])]),
                    ("b", vec![l2("192.0.2.1", &["n2"], &["eth1"])]),
                ],
                vec![l2("192.0.2.1", &["n1", "n2"], &["eth0", "eth1"])],
            ),
            (
                "an owner allowing any interface allows any",
                vec![("a", vec![l2("192.0.2.1", &["n1"], &["eth0"])]), ("b", vec![l2("192.0.2.1", &["n1"], &[])])],
                vec![l2("192.0.2.1", &["n1"], &[])],
            ),
        ];
        for (name, sets, want) in cases {
            let sets: L2Sets =
                sets.into_iter().map(|(o, v)| (o.to_string(), v.into_iter().map(|s| (s.ip, s)).collect())).collect();
            let want: BTreeMap<IpAddr, L2Spec> = want.into_iter().map(|s| (s.ip, s)).collect();
            assert_eq!(merge_l2(&sets), want, "{name}");
        }
    }

    #[test]
    fn l2_counts_cases() {
        let set = |v: Vec<L2Spec>| v.into_iter().map(|s| (s.ip, s)).collect::<BTreeMap<_, _>>();
        let cases = vec![
            ("same", set(vec![l2("192.0.2.1", &["n1"], &[])]), set(vec![l2("192.0.2.1", &["n1"], &[])]), (0, 0, 0)),
            ("added", set(vec![]), set(vec![l2("192.0.2.1", &["n1"], &[])]), (1, 0, 0)),
            ("changed", set(vec![l2("192.0.2.1", &["n1"], &[])]), set(vec![l2("192.0.2.1", &["n2"], &[])]), (0, 1, 0)),
            (
                "removed and added",
                set(vec![l2("192.0.2.1", &["n1"], &[])]),
                set(vec![l2("192.0.2.2", &["n1"], &[])]),
                (1, 0, 1),
            ),
        ];
        for (name, old, new, want) in cases {
            assert_eq!(l2_counts(&old, &new), want, "{name}");
        }
    }
}
