//! Address pools as the allocator sees them: address ranges (from CIDRs or `a-b`), the
//! autoAssign/avoidBuggyIPs flags, and serviceAllocation (priority, namespaces, selectors).
use crate::selector::Selector;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// One inclusive range of addresses of a single family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub v6: bool,
    pub first: u128,
    pub last: u128,
}

pub fn to_u128(ip: IpAddr) -> (bool, u128) {
    match ip {
        IpAddr::V4(a) => (false, u32::from(a) as u128),
        IpAddr::V6(a) => (true, u128::from(a)),
    }
}

pub fn from_u128(v6: bool, x: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(x.into())
    } else {
        IpAddr::V4((x as u32).into())
    }
}

impl Range {
    /// Parses `10.0.0.0/24` or
    /// `10.0.0.5-10.0.0.9` (same family, first ≤ last).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some((a, b)) = s.split_once('-') {
            let a: IpAddr = a.trim().parse().map_err(|_| format!("invalid range start in {s:?}"))?;
            let b: IpAddr = b.trim().parse().map_err(|_| format!("invalid range end in {s:?}"))?;
            let (fa, xa) = to_u128(a);
            let (fb, xb) = to_u128(b);
            if fa != fb {
                return Err(format!("range {s:?} mixes IPv4 and IPv6"));
            }
            if xa > xb {
                return Err(format!("range {s:?}: start is after end"));
            }
            return Ok(Range { v6: fa, first: xa, last: xb });
        }
        // Host bits are dropped, as Go's net.ParseCIDR (upstream's parser) does.
        let net: ipnet::IpNet = s.parse().map_err(|_| format!("invalid CIDR {s:?}"))?;
        let net = net.trunc();
        let (v6, first) = to_u128(net.network());
        let (_, last) = to_u128(net.broadcast());
        Ok(Range { v6, first, last })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, x) = to_u128(ip);
        v6 == self.v6 && self.first <= x && x <= self.last
    }

    /// Number of addresses (saturating).
    pub fn size(&self) -> u128 {
        (self.last - self.first).saturating_add(1)
    }

    /// Number of IPv4 addresses ending in .0 or .255 in the range.
    pub fn buggy_count(&self) -> u128 {
        if self.v6 {
            return 0;
        }
        // count x in [first,last] with x % 256 == r
        let count = |r: u128| -> u128 {
            let upto = |n: u128| -> u128 {
                if n < r {
                    0
                } else {
                    (n - r) / 256 + 1
                }
            };
            upto(self.last) - if self.first == 0 { 0 } else { upto(self.first - 1) }
        };
        count(0) + count(255)
    }
}

/// An IPv4 address ending in .0 or .255, which some buggy client firmware mishandles.
pub fn is_buggy(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => matches!(a.octets()[3], 0 | 255),
        IpAddr::V6(_) => false,
    }
}

/// `serviceAllocation` of an IPAddressPool.
#[derive(Debug, Clone, Default)]
pub struct ServiceAllocation {
    /// 0 = no priority (sorts after every positive priority).
    pub priority: i32,
    pub namespaces: BTreeSet<String>,
    pub namespace_selectors: Vec<Selector>,
    pub service_selectors: Vec<Selector>,
}

#[derive(Debug, Clone)]
pub struct Pool {
    pub name: String,
    pub ranges: Vec<Range>,
    pub auto_assign: bool,
    pub avoid_buggy_ips: bool,
    pub service_allocation: Option<ServiceAllocation>,
}

/// Pairs of pools (by name, each pair once, in name order) that share an address: MetalLB refuses such
/// a configuration ("overlaps with already defined CIDR").
pub fn overlapping(pools: &[Pool]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            let meet = a
                .ranges
                .iter()
                .any(|x| b.ranges.iter().any(|y| x.v6 == y.v6 && x.first <= y.last && y.first <= x.last));
            if meet {
                let (p, q) = if a.name <= b.name { (&a.name, &b.name) } else { (&b.name, &a.name) };
                out.push((p.clone(), q.clone()));
            }
        }
    }
    out.sort();
    out
}

impl Pool {
    /// A pool from its addresses as written (`addresses:` entries). autoAssign defaults to true.
    pub fn new(name: &str, addresses: &[&str]) -> Result<Self, String> {
        let ranges = addresses.iter().map(|a| Range::parse(a)).collect::<Result<Vec<_>, _>>()?;
        Ok(Pool { name: name.to_string(), ranges, auto_assign: true, avoid_buggy_ips: false, service_allocation: None })
    }

    /// Whether `ip` belongs to this pool (a buggy IP of an avoidBuggyIPs pool does not).
    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.avoid_buggy_ips && is_buggy(ip) {
            return false;
        }
        self.ranges.iter().any(|r| r.contains(ip))
    }

    /// (IPv4, IPv6) capacity as upstream counts it: buggy IPs excluded when avoided; a block of
    /// 2^62 addresses or more counts as i64::MAX.
    pub fn capacity(&self) -> (i64, i64) {
        let (mut v4, mut v6) = (0i64, 0i64);
        for r in &self.ranges {
            let mut n = r.size();
            if self.avoid_buggy_ips {
                n -= r.buggy_count();
            }
            let n = if n >= 1u128 << 62 { i64::MAX } else { n as i64 };
            let slot = if r.v6 { &mut v6 } else { &mut v4 };
            *slot = slot.saturating_add(n);
        }
        (v4, v6)
    }

    /// upstream's isPoolCompatibleWithService: namespaces (and namespaces picked by
    /// namespaceSelectors) restrict; serviceSelectors restrict (any one must match).
    pub fn compatible(
        &self,
        namespace: &str,
        ns_labels: &BTreeMap<String, String>,
        svc_labels: &BTreeMap<String, String>,
    ) -> bool {
        let Some(sa) = &self.service_allocation else {
            return true;
        };
        let ns_restricted = !sa.namespaces.is_empty() || !sa.namespace_selectors.is_empty();
        if ns_restricted
            && !sa.namespaces.contains(namespace)
            && !sa.namespace_selectors.iter().any(|s| s.matches(ns_labels))
        {
            return false;
        }
        if !sa.service_selectors.is_empty() && !sa.service_selectors.iter().any(|s| s.matches(svc_labels)) {
            return false;
        }
        true
    }

    pub fn priority(&self) -> i32 {
        self.service_allocation.as_ref().map_or(0, |s| s.priority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_count() {
        let r = Range::parse("10.0.0.0/24").unwrap();
        assert_eq!(r.size(), 256);
        assert_eq!(r.buggy_count(), 2);
        let r = Range::parse("10.0.0.250-10.0.1.5").unwrap();
        assert_eq!(r.size(), 12);
        assert_eq!(r.buggy_count(), 2);
        assert_eq!(Range::parse("10.0.0.1/24").unwrap(), Range::parse("10.0.0.0/24").unwrap());
        assert!(Range::parse("10.0.0.9-10.0.0.1").is_err());
        assert!(Range::parse("10.0.0.1-::1").is_err());
        assert!(Range::parse("garbage").is_err());
        let mut p = Pool::new("p", &["10.0.0.0/16", "fc00::/64"]).unwrap();
        p.avoid_buggy_ips = true;
        assert_eq!(p.capacity(), (65536 - 512, i64::MAX));
        assert!(!p.contains("10.0.3.0".parse().unwrap()));
        assert!(p.contains("10.0.3.1".parse().unwrap()));
    }
}

#[cfg(test)]
mod overlap_tests {
    use super::*;

    #[test]
    fn overlapping_pools_are_found_once_per_pair() {
        let p = |n: &str, a: &[&str]| Pool::new(n, a).unwrap();
        let pools = vec![
            p("a", &["10.0.0.0/24"]),
            p("b", &["10.0.1.0/24", "10.0.0.200-10.0.0.210"]),
            p("c", &["10.0.2.0/24"]),
            p("d", &["::a00:200/120"]),
        ];
        assert_eq!(overlapping(&pools), vec![("a".to_string(), "b".to_string())]);
        assert!(overlapping(&pools[2..]).is_empty(), "IPv6 never meets IPv4");
    }
}
