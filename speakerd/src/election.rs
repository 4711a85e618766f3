//! Layer 2 election: which node answers for an IP. Pure and deterministic: every node that sees the
//! same alive set computes the same owner, so no messages are exchanged to agree.
//!
//! * Order: the candidates that are alive, sorted by SHA-256 of `"<node>#<ip>"` (as MetalLB orders
//!   them); the first one owns the IP. Hashing per IP spreads IPs over nodes, and when the owner dies only
//!   its IPs move; when it comes back it takes back exactly those (no flapping of other IPs).
//! * Split brain: a node answers only while it sees a majority of the IP's candidates alive (itself
//!   included). Exactly half counts only for the half that contains the lowest-named candidate. So of two
//!   sides of a partition at most one answers. The price: when a majority of an IP's candidates is dead,
//!   nobody answers for it; in particular with two candidates, the death of the lowest-named one cannot be
//!   told from a partition and the other does not take over (docs/LAYER2.md).
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
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

/// The node that owns `ip` as seen from a node whose view of alive members is `alive`: the first alive
/// candidate in hash order, or `None` if no candidate is alive or the view is not quorate.
pub fn owner(ip: &IpAddr, candidates: &BTreeSet<String>, alive: &BTreeSet<String>) -> Option<String> {
    owner_except(ip, candidates, alive, |_| false)
}

/// [`owner`], passing over the candidates for which `cannot_serve` is true (alive, but unable to
/// answer for this IP: they still count for the majority, they are only not eligible).
pub fn owner_except(ip: &IpAddr, candidates: &BTreeSet<String>, alive: &BTreeSet<String>, cannot_serve: impl Fn(&str) -> bool) -> Option<String> {
    if !quorate(candidates, alive) {
        return None;
    }
    candidates.intersection(alive).filter(|n| !cannot_serve(n)).min_by_key(|n| (rank(n, ip), (*n).clone())).cloned()
}

#[cfg(test)]
mod handoff_tests {
    use super::*;

    #[test]
    fn a_candidate_that_cannot_serve_is_passed_over_but_still_counts_for_the_majority() {
        let ip: IpAddr = "192.0.2.10".parse().unwrap();
        let c: BTreeSet<String> = ["n1", "n2", "n3"].iter().map(|s| s.to_string()).collect();
        let first = owner(&ip, &c, &c).unwrap();
        let next = owner_except(&ip, &c, &c, |n| n == first).unwrap();
        assert_ne!(first, next);
        // Only the one that cannot serve changes anything: another IP's owner is the same as before.
        for i in 0..50u8 {
            let other: IpAddr = format!("192.0.2.{}", 100 + i).parse().unwrap();
            let o = owner(&other, &c, &c).unwrap();
            if o != first {
                assert_eq!(owner_except(&other, &c, &c, |n| n == first), Some(o));
            }
        }
        // Majority: n1 alone is not quorate even if the others report nothing; two alive of three are,
        // even when one of the two cannot serve (the other then owns it).
        let two: BTreeSet<String> = c.iter().filter(|n| *n != &first).cloned().collect();
        let only_other = owner_except(&ip, &c, &two, |n| n == next);
        assert!(only_other.is_some() && only_other.as_ref() != Some(&next), "{only_other:?}");
        // Nobody left who can serve: no owner.
        assert_eq!(owner_except(&ip, &c, &c, |_| true), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_node_computes_the_same_owner_and_ips_spread() {
        let nodes = set(&["node-a", "node-b", "node-c"]);
        let mut per_node = std::collections::BTreeMap::new();
        for i in 0..300u32 {
            let ip = IpAddr::from([203, 0, (i >> 8) as u8, i as u8]);
            let o = owner(&ip, &nodes, &nodes).unwrap();
            *per_node.entry(o).or_insert(0) += 1;
        }
        assert_eq!(per_node.len(), 3, "{per_node:?}");
        assert!(per_node.values().all(|&n| n > 60), "spread {per_node:?}");
    }

    #[test]
    fn owner_death_moves_only_its_ips_and_return_takes_them_back() {
        let all = set(&["node-a", "node-b", "node-c"]);
        let ips: Vec<IpAddr> = (0..100u8).map(|i| IpAddr::from([198, 51, 100, i])).collect();
        let before: Vec<_> = ips.iter().map(|ip| owner(ip, &all, &all).unwrap()).collect();
        let without_b = set(&["node-a", "node-c"]);
        for (ip, was) in ips.iter().zip(&before) {
            let now = owner(ip, &all, &without_b).unwrap();
            if was != "node-b" {
                assert_eq!(&now, was, "{ip} moved although its owner lived");
            } else {
                assert_ne!(now, "node-b");
            }
        }
        let back: Vec<_> = ips.iter().map(|ip| owner(ip, &all, &all).unwrap()).collect();
        assert_eq!(back, before);
    }

    #[test]
    fn a_minority_does_not_answer() {
        let all = set(&["a", "b", "c"]);
        let ip: IpAddr = "192.0.2.50".parse().unwrap();
        assert!(owner(&ip, &all, &set(&["c"])).is_none(), "one of three is a minority");
        assert!(owner(&ip, &all, &set(&["b", "c"])).is_some());
        // Non-candidates seen alive do not count.
        assert!(owner(&ip, &all, &set(&["c", "x", "y"])).is_none());
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
        assert_eq!(owner(&ip, &one, &one).as_deref(), Some("solo"));
        assert_eq!(owner(&ip, &one, &BTreeSet::new()), None);
    }
}
