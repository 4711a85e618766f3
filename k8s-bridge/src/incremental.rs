//! The desired state kept between reconcile passes, keyed, and changed in place. A change of one
//! Service or of its EndpointSlices recomputes what that Service can touch, not the whole cluster:
//! under churn a pass costs the change, and a change reaches speakerd without waiting for a pass over
//! every Service. Pure.
//!
//! What one Service can touch: the prefixes its IPs fall in (one per aggregation length in use, the
//! host route included) and, for Layer 2, its IPs. An entry of either is computed from the Services
//! with an IP inside it and from nothing else of the cluster but the Nodes. So [`State::update`]
//! translates only the Services with an IP in those prefixes (found through an index of every
//! Service's IPs) with [`translate::translate`] itself, and takes from the result the entries of
//! those prefixes and IPs: they are exactly what a translation of the whole cluster gives (a
//! property test checks it against [`State::full`] after random changes). The configuration, the
//! Nodes and a relist of Services or EndpointSlices reach every Service: the caller then builds the
//! state whole with [`State::full`].
use crate::apply::Changes;
use crate::cluster::{Cluster, Index, Key};
use crate::config::Config;
use crate::translate::{self, Desired, Options, ServiceAnnouncement, Unannounceable};
use ipnet::IpNet;
use speaker_api::v1 as pb;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

/// The desired state of this node, keyed as speakerd keys it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    pub peers: Vec<pb::PeerConfig>,
    pub seeds: Vec<String>,
    pub duplicate_peers: Vec<String>,
    pub bgp: BTreeMap<IpNet, pb::Announcement>,
    pub l2: BTreeMap<IpAddr, pb::L2Announcement>,
    pub services: BTreeSet<ServiceAnnouncement>,
    pub unannounceable: BTreeSet<Unannounceable>,
    /// Every Service's IPs as last translated, both ways: which Services a prefix gathers (usually one
    /// per IP: a list, not a set).
    ips: BTreeMap<IpAddr, Vec<Key>>,
    svc_ips: BTreeMap<Key, Vec<IpAddr>>,
}

/// What one [`State::update`] changed: the calls speakerd needs, and what Events report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    pub changes: Changes,
    /// Service IPs this node announces now and did not before, and the reverse.
    pub assigned: Vec<ServiceAnnouncement>,
    pub unassigned: Vec<ServiceAnnouncement>,
    /// Service IPs nobody can announce now, and those that can be announced again.
    pub unannounceable: Vec<Unannounceable>,
    pub announceable: Vec<Unannounceable>,
}

impl State {
    /// The whole translation of `cluster`.
    pub fn full(cfg: &Config, cluster: &Cluster, opts: &Options) -> State {
        let d = translate::translate(cfg, cluster, opts);
        let mut s = State {
            peers: d.peers,
            seeds: d.seeds,
            duplicate_peers: d.duplicate_peers,
            bgp: d.bgp.into_iter().filter_map(|a| Some((a.prefix.parse().ok()?, a))).collect(),
            l2: d.l2.into_iter().filter_map(|a| Some((a.ip.parse().ok()?, a))).collect(),
            services: d.services.into_iter().collect(),
            unannounceable: d.unannounceable.into_iter().collect(),
            ..State::default()
        };
        for svc in &cluster.services {
            s.index((svc.namespace.clone(), svc.name.clone()), &svc.ips);
        }
        s
    }

    /// The same state as lists, in the order [`translate::translate`] gives.
    pub fn desired(&self) -> Desired {
        Desired {
            peers: self.peers.clone(),
            bgp: self.bgp.values().cloned().collect(),
            l2: self.l2.values().cloned().collect(),
            seeds: self.seeds.clone(),
            services: self.services.iter().cloned().collect(),
            unannounceable: self.unannounceable.iter().cloned().collect(),
            duplicate_peers: self.duplicate_peers.clone(),
        }
    }

    fn index(&mut self, key: Key, ips: &[IpAddr]) {
        if ips.is_empty() {
            return;
        }
        for ip in ips {
            let keys = self.ips.entry(*ip).or_default();
            if let Err(at) = keys.binary_search(&key) {
                keys.insert(at, key.clone());
            }
        }
        self.svc_ips.insert(key, ips.to_vec());
    }

    fn unindex(&mut self, key: &Key) -> Vec<IpAddr> {
        let ips = self.svc_ips.remove(key).unwrap_or_default();
        for ip in &ips {
            if let Some(keys) = self.ips.get_mut(ip) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.ips.remove(ip);
                }
            }
        }
        ips
    }

    /// Brings the state up to date after the Services in `dirty` (or their EndpointSlices) changed in
    /// `index`, with the configuration and the Nodes it was built with; returns what changed.
    pub fn update(&mut self, cfg: &Config, index: &Index, dirty: &BTreeSet<Key>, opts: &Options) -> Delta {
        // The IPs of the changed Services, before and after.
        let mut ips = BTreeSet::new();
        for key in dirty {
            ips.extend(self.unindex(key));
            if let Some(svc) = index.services.get(key) {
                ips.extend(svc.ips.iter().copied());
                self.index(key.clone(), &svc.ips);
            }
        }
        // Every prefix they can fall in, and every Service with an IP in one of them.
        let (mut v4, mut v6) = (BTreeSet::from([32u8]), BTreeSet::from([128u8]));
        for a in &cfg.bgp_advertisements {
            v4.insert(a.aggregation_v4);
            v6.insert(a.aggregation_v6);
        }
        let prefixes: BTreeSet<IpNet> = ips
            .iter()
            .flat_map(|ip| {
                let lens = if ip.is_ipv4() { &v4 } else { &v6 };
                lens.iter().filter_map(move |len| IpNet::new(*ip, *len).ok().map(|n| n.trunc()))
            })
            .collect();
        let mut part = dirty.clone();
        for p in &prefixes {
            for keys in self.ips.range(p.network()..=p.broadcast()).map(|(_, k)| k) {
                part.extend(keys.iter().cloned());
            }
        }
        let d = translate::translate(cfg, &index.part(&part), opts);

        let mut delta = Delta::default();
        let c = &mut delta.changes;
        let bgp = d.bgp.into_iter().filter_map(|a| Some((a.prefix.parse::<IpNet>().ok()?, a)));
        let (put, gone) = (&mut c.announce, &mut c.withdraw);
        replace(&mut self.bgp, bgp.collect(), &prefixes, put, gone, &mut c.bgp_counts);
        let l2 = d.l2.into_iter().filter_map(|a| Some((a.ip.parse::<IpAddr>().ok()?, a)));
        let (put, gone) = (&mut c.l2_announce, &mut c.l2_withdraw);
        replace(&mut self.l2, l2.collect(), &ips, put, gone, &mut c.l2_counts);
        // A Service's own records depend on it alone.
        let mine = |ns: &str, name: &str| dirty.contains(&(ns.to_string(), name.to_string()));
        let records: BTreeSet<ServiceAnnouncement> =
            d.services.into_iter().filter(|s| mine(&s.namespace, &s.name)).collect();
        let problems: BTreeSet<Unannounceable> =
            d.unannounceable.into_iter().filter(|u| mine(&u.namespace, &u.name)).collect();
        for key in dirty {
            let old: Vec<ServiceAnnouncement> = records_of(&self.services, key, |ns, name| ServiceAnnouncement {
                namespace: ns,
                name,
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                protocol: translate::Protocol::Bgp,
                pool: String::new(),
            });
            for r in old {
                if !records.contains(&r) {
                    self.services.remove(&r);
                    delta.unassigned.push(r);
                }
            }
            let old: Vec<Unannounceable> = records_of(&self.unannounceable, key, |ns, name| Unannounceable {
                namespace: ns,
                name,
                ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                reason: String::new(),
            });
            for u in old {
                if !problems.contains(&u) {
                    self.unannounceable.remove(&u);
                    delta.announceable.push(u);
                }
            }
        }
        for r in records {
            if self.services.insert(r.clone()) {
                delta.assigned.push(r);
            }
        }
        for u in problems {
            if self.unannounceable.insert(u.clone()) {
                delta.unannounceable.push(u);
            }
        }
        delta
    }
}

/// Makes the entries of `keys` in `held` those of `new` (entries of other keys in `new` are ignored):
/// an entry added or changed goes to `put` and is counted in `counts` (added, changed), one removed to
/// `gone` by its key.
fn replace<K: Ord + Copy + ToString, V: PartialEq + Clone>(
    held: &mut BTreeMap<K, V>,
    mut new: BTreeMap<K, V>,
    keys: &BTreeSet<K>,
    put: &mut Vec<V>,
    gone: &mut Vec<String>,
    counts: &mut (u32, u32),
) {
    for k in keys {
        match (held.get(k), new.remove(k)) {
            (Some(old), Some(v)) if *old == v => {}
            (old, Some(v)) => {
                if old.is_some() {
                    counts.1 += 1;
                } else {
                    counts.0 += 1;
                }
                put.push(v.clone());
                held.insert(*k, v);
            }
            (Some(_), None) => {
                held.remove(k);
                gone.push(k.to_string());
            }
            (None, None) => {}
        }
    }
}

/// The records of one Service in a set ordered by (namespace, name, …); `first` builds the smallest
/// record of that Service.
fn records_of<T: Ord + Clone + HasService>(
    set: &BTreeSet<T>,
    key: &Key,
    first: impl Fn(String, String) -> T,
) -> Vec<T> {
    set.range(first(key.0.clone(), key.1.clone())..).take_while(|r| r.service() == (&key.0, &key.1)).cloned().collect()
}

trait HasService {
    fn service(&self) -> (&String, &String);
}

impl HasService for ServiceAnnouncement {
    fn service(&self) -> (&String, &String) {
        (&self.namespace, &self.name)
    }
}

impl HasService for Unannounceable {
    fn service(&self) -> (&String, &String) {
        (&self.namespace, &self.name)
    }
}
