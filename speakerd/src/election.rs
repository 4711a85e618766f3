//! Layer 2 election: which node answers for an IP. Pure and deterministic: every node that sees the
//! same alive set computes the same owner, so no messages are exchanged to agree.
//!
//! * Order: the candidates that are alive, sorted by SHA-256 of `"<node>#<ip>"` (as MetalLB orders
//!   them); the first one owns the IP. Hashing per IP spreads IPs over nodes, and when the owner dies only
//!   its IPs move; when it comes back it takes back exactly those (no flapping of other IPs).
//! * [`Mode::Available`] (the default, as MetalLB): the first live candidate this node sees owns the IP,
//!   at every cluster size; two nodes answering on one segment while gossip is cut is what it risks.
//! * [`Mode::Strict`] (opt-in): a node answers only while it sees a majority of the IP's candidates alive
//!   (itself included); exactly half counts only for the half that contains the lowest-named candidate.
//!   So of two sides of a partition at most one answers; the price is silence when a majority of the
//!   candidates is dead (with two candidates, the death of the lowest-named one).
//! * Candidates are the caller's to narrow: docs/LAYER2.md, a node never seen running speakerd is not one.
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

fn rank(node: &str, ip: &IpAddr) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update(b"#");
    h.update(ip.to_string().as_bytes());
    h.finalize().into()
}

/// Does `alive` hold a majority of `candidates` (ties broken by the lowest-named candidate)?
pub fn quorate(candidates: &BTreeSet<String>, alive: &BTreeSet<String>) -> bool {
    let seen = candidates.intersection(alive).count();
    let (seen2, all) = (2 * seen, candidates.len());
    seen2 > all || (seen2 == all && all > 0 && candidates.first().is_some_and(|lowest| alive.contains(lowest)))
}

/// How an IP's owner is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The first live candidate in hash order, whatever the number alive.
    #[default]
    Available,
    /// The same, but only while this node sees a majority of the candidates ([`quorate`]).
    Strict,
}

/// The node that owns `ip` as seen from a node whose view of alive members is `alive`: the first alive
/// candidate in hash order, or `None` if no candidate is alive (or, in strict mode, the view is not
/// quorate).
pub fn owner(ip: &IpAddr, candidates: &BTreeSet<String>, alive: &BTreeSet<String>, mode: Mode) -> Option<String> {
    owner_except(ip, candidates, alive, &Weights::new(), |_| false, mode)
}

/// Soft preferences (MetalLB's `preferredNodeSelectors`): a candidate's weight, 0 when absent.
pub type Weights = BTreeMap<String, u32>;

/// [`owner`], passing over the candidates for which `cannot_serve` is true (alive, but unable to
/// answer for this IP, or in the hold-down after they were: they still count for the majority, they
/// are only not eligible). If that passes over every alive candidate, the first of them owns the IP all
/// the same: a node that gave the IP up a while ago may well answer again now (its link came back,
/// the hold-down has not ended), and an IP tried by it is better than an IP that nobody answers. Every
/// node sees the same sets, so every node still names the same owner.
///
/// `weights` come first: the heaviest eligible candidate wins, and the hash order only breaks ties (as
/// MetalLB's `sortL2Candidates`). Weights never change who counts for the majority.
pub fn owner_except(
    ip: &IpAddr,
    candidates: &BTreeSet<String>,
    alive: &BTreeSet<String>,
    weights: &Weights,
    cannot_serve: impl Fn(&str) -> bool,
    mode: Mode,
) -> Option<String> {
    if mode == Mode::Strict && !quorate(candidates, alive) {
        return None;
    }
    let weight = |n: &str| std::cmp::Reverse(weights.get(n).copied().unwrap_or(0));
    let first = |eligible: &dyn Fn(&str) -> bool| {
        candidates
            .intersection(alive)
            .filter(|n| eligible(n))
            .min_by_key(|n| (weight(n), rank(n, ip), (*n).clone()))
            .cloned()
    };
    first(&|n| !cannot_serve(n)).or_else(|| first(&|_| true))
}

#[cfg(test)]
mod handoff_tests {
    use super::*;

    #[test]
    fn a_candidate_that_cannot_serve_is_passed_over_but_still_counts_for_the_majority() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let c: BTreeSet<String> = ["n1", "n2", "n3"].iter().map(|s| s.to_string()).collect();
        let first = owner(&ip, &c, &c, Mode::Strict).unwrap();
        let next = owner_except(&ip, &c, &c, &Weights::new(), |n| n == first, Mode::Strict).unwrap();
        assert_ne!(first, next);
        // Only the one that cannot serve changes anything: another IP's owner is the same as before.
        for i in 0..50u8 {
            let other: IpAddr = format!("192.0.2.{}", 100 + i).parse().unwrap();
            let o = owner(&other, &c, &c, Mode::Strict).unwrap();
            if o != first {
                assert_eq!(owner_except(&other, &c, &c, &Weights::new(), |n| n == first, Mode::Strict), Some(o));
            }
        }
        // Majority: n1 alone is not quorate even if the others report nothing; two alive of three are,
        // even when one of the two cannot serve (the other then owns it).
        let two: BTreeSet<String> = c.iter().filter(|n| *n != &first).cloned().collect();
        let only_other = owner_except(&ip, &c, &two, &Weights::new(), |n| n == next, Mode::Strict);
        assert!(only_other.is_some() && only_other.as_ref() != Some(&next), "{only_other:?}");
        // Nobody left who can serve: the first alive candidate tries all the same (rather than nobody).
        assert_eq!(owner_except(&ip, &c, &c, &Weights::new(), |_| true, Mode::Strict), Some(first.clone()));
        let alone: BTreeSet<String> = [next.clone()].into();
        assert_eq!(owner_except(&ip, &c, &alone, &Weights::new(), |n| n == next, Mode::Available), Some(next.clone()));
        // ... but never a node that is not alive, and never without a majority in strict mode.
        assert_eq!(owner_except(&ip, &c, &BTreeSet::new(), &Weights::new(), |_| true, Mode::Available), None);
        assert_eq!(owner_except(&ip, &c, &alone, &Weights::new(), |_| true, Mode::Strict), None);
    }
}

#[cfg(test)]
mod weight_tests {
    use super::*;

    #[test]
    fn the_heaviest_live_candidate_wins_and_the_hash_breaks_ties() {
        let c: BTreeSet<String> = ["n1", "n2", "n3"].iter().map(|s| s.to_string()).collect();
        for i in 0..50u8 {
            let ip: IpAddr = format!("192.0.2.{i}").parse().unwrap();
            let by_hash = owner(&ip, &c, &c, Mode::Available).unwrap();
            // Prefer a node that would not win by hash: it wins every IP.
            let other = c.iter().find(|n| **n != by_hash).unwrap().clone();
            let w: Weights = [(other.clone(), 10)].into();
            assert_eq!(owner_except(&ip, &c, &c, &w, |_| false, Mode::Available), Some(other.clone()));
            // Equal weights: the hash decides among them, as without weights.
            let all: Weights = c.iter().map(|n| (n.clone(), 5)).collect();
            assert_eq!(owner_except(&ip, &c, &c, &all, |_| false, Mode::Available), Some(by_hash.clone()));
            // The preferred node dead: the others by hash; weights of dead nodes do not count.
            let alive: BTreeSet<String> = c.iter().filter(|n| **n != other).cloned().collect();
            assert_eq!(
                owner_except(&ip, &c, &alive, &w, |_| false, Mode::Available),
                owner(&ip, &c, &alive, Mode::Available)
            );
            // The preferred node cannot serve: passed over like any other.
            assert_ne!(owner_except(&ip, &c, &c, &w, |n| n == other, Mode::Available), Some(other.clone()));
            // Weights never make a minority quorate.
            let lone: BTreeSet<String> = [other.clone()].into();
            assert_eq!(owner_except(&ip, &c, &lone, &w, |_| false, Mode::Strict), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_node_computes_the_same_owner_and_ips_spread() {
        let nodes = set(&["node-a", "node-b", "node-c"]);
        let mut per_node = std::collections::BTreeMap::new();
        for i in 0..300u32 {
            let ip = IpAddr::from([203, 0, (i >> 8) as u8, i as u8]);
            let o = owner(&ip, &nodes, &nodes, Mode::Strict).unwrap();
            *per_node.entry(o).or_insert(0) += 1;
        }
        assert_eq!(per_node.len(), 3, "{per_node:?}");
        assert!(per_node.values().all(|&n| n > 60), "spread {per_node:?}");
    }

    #[test]
    fn owner_death_moves_only_its_ips_and_return_takes_them_back() {
        let all = set(&["node-a", "node-b", "node-c"]);
        let ips: Vec<IpAddr> = (0..100u8).map(|i| IpAddr::from([198, 51, 100, i])).collect();
        let before: Vec<_> = ips.iter().map(|ip| owner(ip, &all, &all, Mode::Strict).unwrap()).collect();
        let without_b = set(&["node-a", "node-c"]);
        for (ip, was) in ips.iter().zip(&before) {
            let now = owner(ip, &all, &without_b, Mode::Strict).unwrap();
            if was != "node-b" {
                assert_eq!(&now, was, "{ip} moved although its owner lived");
            } else {
                assert_ne!(now, "node-b");
            }
        }
        let back: Vec<_> = ips.iter().map(|ip| owner(ip, &all, &all, Mode::Strict).unwrap()).collect();
        assert_eq!(back, before);
    }

    #[test]
    fn a_minority_does_not_answer() {
        let all = set(&["a", "b", "c"]);
        let ip: IpAddr = "192.0.2.50".parse().unwrap();
        assert!(owner(&ip, &all, &set(&["c"]), Mode::Strict).is_none(), "one of three is a minority");
        assert!(owner(&ip, &all, &set(&["b", "c"]), Mode::Strict).is_some());
        // Non-candidates seen alive do not count.
        assert!(owner(&ip, &all, &set(&["c", "x", "y"]), Mode::Strict).is_none());
    }

    #[test]
    fn exact_half_goes_to_the_side_with_the_lowest_name() {
        let all = set(&["a", "b", "c", "d"]);
        assert!(quorate(&all, &set(&["a", "d"])));
        assert!(!quorate(&all, &set(&["b", "c"])));
        let two = set(&["a", "b"]);
        assert!(quorate(&two, &set(&["a"])));
        assert!(!quorate(&two, &set(&["b"])));
        assert!(!quorate(&BTreeSet::new(), &set(&["a"])));
    }

    #[test]
    fn single_candidate_owns_while_alive() {
        let one = set(&["solo"]);
        let ip: IpAddr = "2001:db8::50".parse().unwrap();
        assert_eq!(owner(&ip, &one, &one, Mode::Strict).as_deref(), Some("solo"));
        assert_eq!(owner(&ip, &one, &BTreeSet::new(), Mode::Strict), None);
    }
}

#[cfg(test)]
mod available_tests {
    use super::tests::set;
    use super::*;

    /// Availability first: every single-node failure at every cluster size is taken over by the next
    /// live candidate in hash order, two nodes included, whichever node dies.
    #[test]
    fn every_single_failure_is_taken_over_at_every_size() {
        for n in [2usize, 3, 5] {
            let all: BTreeSet<String> = (1..=n).map(|i| format!("n{i}")).collect();
            for i in 0..40u8 {
                let ip = IpAddr::from([192, 0, 2, i]);
                let first = owner(&ip, &all, &all, Mode::Available).unwrap();
                for dead in &all {
                    let alive: BTreeSet<String> = all.iter().filter(|x| *x != dead).cloned().collect();
                    let o = owner(&ip, &all, &alive, Mode::Available);
                    let o = o.unwrap_or_else(|| panic!("n={n} {ip}: nobody answers after {dead} died"));
                    assert_ne!(&o, dead);
                    if dead != &first {
                        assert_eq!(o, first, "n={n} {ip}: moved although its owner lives");
                    }
                    // Strict mode keeps today's rule: with two candidates half the failures leave no owner.
                    if n == 2 {
                        let lowest_died = dead == all.first().unwrap();
                        assert_eq!(
                            owner(&ip, &all, &alive, Mode::Strict).is_none(),
                            lowest_died,
                            "n=2 strict, {dead} died"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_node_alone_answers_for_what_it_is_a_candidate_of() {
        // (candidates, alive as this node sees it, owner in available mode, in strict mode)
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let cases: [(&[&str], &[&str], bool, bool); 5] = [
            (&["a", "b"], &["a"], true, true), // exactly half, with the lowest name
            (&["a", "b"], &["b"], true, false),
            (&["a", "b", "c"], &["c"], true, false),
            (&["a", "b", "c"], &["b", "c"], true, true),
            (&["a", "b"], &[], false, false),
        ];
        for (c, alive, avail, strict) in cases {
            let (c, alive) = (set(c), set(alive));
            assert_eq!(owner(&ip, &c, &alive, Mode::Available).is_some(), avail, "{c:?} {alive:?}");
            assert_eq!(owner(&ip, &c, &alive, Mode::Strict).is_some(), strict, "{c:?} {alive:?} strict");
            if let Some(o) = owner(&ip, &c, &alive, Mode::Available) {
                assert!(alive.contains(&o) && c.contains(&o));
            }
        }
    }

    #[test]
    fn both_modes_agree_when_everyone_is_alive() {
        let all = set(&["a", "b", "c", "d", "e"]);
        for i in 0..100u8 {
            let ip = IpAddr::from([203, 0, 113, i]);
            assert_eq!(owner(&ip, &all, &all, Mode::Available), owner(&ip, &all, &all, Mode::Strict));
        }
    }
}
