//! The export table: what the peers should be sent, held once for all of them.
//!
//! BIRD exports every channel from one routing table; speakerd did keep a copy of every wanted route in
//! each peer's Adj-RIB-Out, so memory grew with prefixes × peers. Here each prefix has one slot, with a small id, and what a peer wants is derived from
//! the slot through the peer's [`Selector`] when its writer pulls. A peer keeps two bits per id (sent,
//! dirty: see [`super::rib_out`]).
//!
//! A slot whose prefix is no longer wanted stays until no session has the prefix on the wire, so an id
//! is never reused while a session's "sent" bit still refers to it. Whether one does is asked of the
//! sessions' bits when the slot is collected: a count per slot kept by the writers cost an atomic
//! increment per prefix and session on the wire, a large share of the encoding time. Pure: no tokio, no
//! sockets.
use crate::config::spec::{selects, RouteAttrs};
use ipnet::IpNet;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

/// Shared, interned attributes of a route.
pub type Attrs = Arc<RouteAttrs>;

/// What an owner's announcement says besides its prefix. Interned by the speaker: the many prefixes
/// of one owner usually share one.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Body {
    pub attrs: Attrs,
    /// The peers (names or addresses) the announcement is for; empty: every peer.
    pub peers: BTreeSet<String>,
}

/// Which announcements select a peer: its name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    pub name: String,
    pub address: IpAddr,
}

impl Selector {
    pub fn selects(&self, peers: &BTreeSet<String>) -> bool {
        selects(&self.name, self.address, peers)
    }
}

/// What is wanted for one prefix, for every peer at once.
#[derive(Debug, Clone)]
pub enum Want {
    /// The same attributes for every peer: no announcement of the prefix names peers (the usual case).
    /// Several owners' announcements are merged into this once, by the speaker.
    All(Attrs),
    /// Some announcement of the prefix names peers: each peer gets the merge of those that select it.
    Select(Arc<Vec<Arc<Body>>>),
}

impl Want {
    /// The attributes `sel`'s peer should be sent, if any.
    pub fn for_peer(&self, sel: &Selector) -> Option<Attrs> {
        self.for_peer_ref(sel).map(Cow::into_owned)
    }

    /// [`for_peer`](Self::for_peer) without taking a reference on shared attributes: the writers of all
    /// sessions read the same `Arc` for every prefix, and counting each read bounced its cache line
    /// between the cores.
    #[inline]
    pub fn for_peer_ref(&self, sel: &Selector) -> Option<Cow<'_, Attrs>> {
        match self {
            Want::All(a) => Some(Cow::Borrowed(a)),
            Want::Select(bodies) => {
                let mut it = bodies.iter().filter(|b| sel.selects(&b.peers));
                let first = it.next()?;
                let Some(second) = it.next() else {
                    return Some(Cow::Borrowed(&first.attrs));
                };
                // Rare (two owners, one naming peers): merged per pull, not interned.
                let mut m = (*first.attrs).clone();
                m.merge(&second.attrs);
                for b in it {
                    m.merge(&b.attrs);
                }
                Some(Cow::Owned(Arc::new(m)))
            }
        }
    }
}

/// Equal attributes (interned ones compare by pointer first).
pub fn same(a: Option<&Attrs>, b: Option<&Attrs>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a == b,
        (None, None) => true,
        _ => false,
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// None: the slot is free.
    prefix: Option<IpNet>,
    want: Option<Want>,
}

/// The one table every peer's writer reads (under a read lock) and the speaker writes.
#[derive(Debug, Default)]
pub struct ExportTable {
    /// The index prefix → id. It holds only the ids, and finds a prefix's by looking at the slots:
    /// a map holding each prefix a second time beside its id took about five times the memory.
    ids: hashbrown::HashTable<u32>,
    hasher: foldhash::fast::RandomState,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots whose prefix stopped being wanted, to free once no session has it on the wire.
    unused: Vec<u32>,
}

/// A change of the table, as each peer's Adj-RIB-Out needs to see it: the slot and what it held.
#[derive(Debug)]
pub struct Change {
    pub id: u32,
    pub old: Option<Want>,
    pub new: Option<Want>,
}

impl ExportTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what is wanted for `prefix`. None when nothing changes (an unknown prefix set to nothing).
    pub fn set(&mut self, prefix: IpNet, want: Option<Want>) -> Option<Change> {
        let id = match self.id_of(&prefix) {
            Some(id) => id,
            None => {
                want.as_ref()?;
                let id = match self.free.pop() {
                    Some(id) => id,
                    None => {
                        self.slots.push(Slot::default());
                        u32::try_from(self.slots.len() - 1).ok()?
                    }
                };
                self.slots[id as usize].prefix = Some(prefix);
                let (slots, hasher) = (&self.slots, &self.hasher);
                self.ids.insert_unique(hasher.hash_one(prefix), id, |&i| hash_of(hasher, slots, i));
                id
            }
        };
        let slot = &mut self.slots[id as usize];
        let old = std::mem::replace(&mut slot.want, want.clone());
        if want.is_none() {
            self.unused.push(id);
        }
        Some(Change { id, old, new: want })
    }

    /// Makes room for `additional` more prefixes without growing one slot at a time (free slots are
    /// used first).
    pub fn reserve(&mut self, additional: usize) {
        self.slots.reserve(additional.saturating_sub(self.free.len()));
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.ids.reserve(additional, |&i| hash_of(hasher, slots, i));
    }

    /// Frees the slots that are neither wanted nor on any session's wire. `on_some_wire` gets the
    /// candidates (sorted) and keeps those some session still has on the wire. Called by the speaker
    /// before it changes the table (under the write lock, so no writer is pulling), so it costs what
    /// was withdrawn, not the table.
    pub fn collect_unused(&mut self, on_some_wire: impl FnOnce(&mut Vec<u32>)) {
        let mut cands: Vec<u32> = std::mem::take(&mut self.unused)
            .into_iter()
            .filter(|&id| self.slots.get(id as usize).is_some_and(|s| s.prefix.is_some() && s.want.is_none()))
            .collect(); // not wanted again, not already freed
        if cands.is_empty() {
            return;
        }
        cands.sort_unstable();
        cands.dedup();
        let mut keep = cands.clone();
        on_some_wire(&mut keep);
        for &id in &cands {
            if keep.binary_search(&id).is_err() {
                let slot = &mut self.slots[id as usize];
                if let Some(p) = slot.prefix.take() {
                    if let Ok(e) = self.ids.find_entry(self.hasher.hash_one(p), |&i| i == id) {
                        e.remove();
                    }
                    self.free.push(id);
                }
            }
        }
        self.unused = keep;
    }

    /// The prefix of slot `id` and what is wanted for it (None: no longer wanted).
    pub fn get(&self, id: u32) -> Option<(IpNet, Option<&Want>)> {
        let s = self.slots.get(id as usize)?;
        Some((s.prefix?, s.want.as_ref()))
    }

    pub fn id_of(&self, prefix: &IpNet) -> Option<u32> {
        let slots = &self.slots;
        self.ids
            .find(self.hasher.hash_one(prefix), |&i| {
                slots.get(i as usize).and_then(|s| s.prefix.as_ref()) == Some(prefix)
            })
            .copied()
    }

    /// Every wanted slot: (id, want).
    pub fn iter_wanted(&self) -> impl Iterator<Item = (u32, &Want)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((i as u32, s.want.as_ref().filter(|_| s.prefix.is_some())?)))
    }

    /// One past the highest slot id: every id in use is below it.
    pub fn id_end(&self) -> u32 {
        self.slots.len() as u32
    }

    /// Slots in use (wanted, or waiting to be withdrawn somewhere).
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// The hash of slot `id`'s prefix, for the index (every id in the index has a prefix).
fn hash_of(hasher: &foldhash::fast::RandomState, slots: &[Slot], id: u32) -> u64 {
    slots[id as usize].prefix.map_or(0, |p| hasher.hash_one(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sel(name: &str) -> Selector {
        Selector { name: name.into(), address: "192.0.2.9".parse().unwrap() }
    }

    #[test]
    fn a_slot_is_freed_only_when_off_every_wire() {
        let mut t = ExportTable::new();
        let p: IpNet = "203.0.113.1/32".parse().unwrap();
        let a: Attrs = Arc::new(RouteAttrs::default());
        let c = t.set(p, Some(Want::All(a.clone()))).unwrap();
        assert!(c.old.is_none());
        t.set(p, None).unwrap();
        let mut asked = Vec::new();
        t.collect_unused(|ids| asked = ids.clone()); // still on a wire: kept
        assert_eq!(asked, [c.id], "only the unwanted slot is a candidate");
        assert_eq!((t.len(), t.iter_wanted().count()), (1, 0), "still on a wire: kept");
        t.collect_unused(|ids| ids.clear()); // off every wire
        assert!(t.is_empty());
        assert!(t.get(c.id).is_none());
        // the id is reused
        let q: IpNet = "203.0.113.2/32".parse().unwrap();
        assert_eq!(t.set(q, Some(Want::All(a))).unwrap().id, c.id);
        assert!(t.set("203.0.113.3/32".parse().unwrap(), None).is_none());
    }

    /// The index holds only ids and finds a prefix through its slot: every prefix set is found at its
    /// id, through the index's growth (with and without `reserve`), after frees, and with ids reused.
    #[test]
    fn the_index_finds_every_prefix_through_its_slot() {
        let a: Attrs = Arc::new(RouteAttrs::default());
        let v4 = |i: u32| IpNet::from(IpAddr::V4(std::net::Ipv4Addr::from(0xc000_0000 + i)));
        let v6 = |i: u32| IpNet::from(IpAddr::V6(std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i))));
        // (name, reserve first, prefixes set, of them withdrawn and freed, then set again)
        type Case<'a> = (&'a str, bool, Vec<IpNet>, Vec<IpNet>, Vec<IpNet>);
        let cases: Vec<Case> = vec![
            ("one", false, vec![v4(1)], vec![], vec![]),
            ("grown one at a time", false, (0..5000).map(v4).collect(), vec![], vec![]),
            ("reserved", true, (0..5000).map(v4).chain((0..5000).map(v6)).collect(), vec![], vec![]),
            ("freed", false, (0..3000).map(v4).collect(), (0..3000).step_by(2).map(v4).collect(), vec![]),
            (
                "freed, then others take the ids",
                false,
                (0..3000).map(v6).collect(),
                (1000..3000).map(v6).collect(),
                (0..2500).map(v4).collect(),
            ),
        ];
        for (name, reserve, set, freed, again) in cases {
            let mut t = ExportTable::new();
            if reserve {
                t.reserve(set.len());
            }
            let ids: Vec<u32> = set.iter().map(|p| t.set(*p, Some(Want::All(a.clone()))).unwrap().id).collect();
            for p in &freed {
                t.set(*p, None).unwrap();
            }
            t.collect_unused(|ids| ids.clear());
            let ids_again: Vec<u32> = again.iter().map(|p| t.set(*p, Some(Want::All(a.clone()))).unwrap().id).collect();
            for (p, id) in set.iter().zip(&ids) {
                let want = (!freed.contains(p)).then_some(*id);
                assert_eq!(t.id_of(p), want, "{name}: {p}");
            }
            for (p, id) in again.iter().zip(&ids_again) {
                assert_eq!(t.id_of(p), Some(*id), "{name}: {p} set again");
                assert_eq!(t.get(*id).map(|(q, _)| q), Some(*p), "{name}: slot of {p}");
            }
            assert_eq!(t.len(), set.len() - freed.len() + again.len(), "{name}");
            let reused = ids_again.iter().filter(|i| ids.contains(i)).count();
            assert_eq!(reused, freed.len().min(again.len()), "{name}: freed ids are used first");
        }
    }

    #[test]
    fn selective_announcements_are_merged_per_peer() {
        let body = |c: u32, peers: &[&str]| {
            Arc::new(Body {
                attrs: Arc::new(RouteAttrs { communities: [c].into(), ..Default::default() }),
                peers: peers.iter().map(|s| s.to_string()).collect(),
            })
        };
        let w = Want::Select(Arc::new(vec![body(1, &[]), body(2, &["r1"]), body(3, &["192.0.2.9"])]));
        let r1 = w.for_peer(&sel("r1")).unwrap();
        assert_eq!(r1.communities, [1, 2, 3].into(), "by name and by address");
        let other = Selector { name: "r2".into(), address: "192.0.2.10".parse().unwrap() };
        assert_eq!(w.for_peer(&other).unwrap().communities, [1].into());
        let only = Want::Select(Arc::new(vec![body(2, &["r1"])]));
        assert!(only.for_peer(&other).is_none());
        // what a peer is given compares by pointer, then by value
        let a = Want::All(Arc::new(RouteAttrs::default()));
        let b = Want::All(Arc::new(RouteAttrs::default()));
        let given = |w: &Want| w.for_peer_ref(&other).map(Cow::into_owned);
        assert!(same(given(&a).as_ref(), given(&a.clone()).as_ref()));
        assert!(same(given(&a).as_ref(), given(&b).as_ref()));
        assert!(!same(given(&a).as_ref(), None));
        assert!(!same(given(&a).as_ref(), given(&only).as_ref()));
    }
}
