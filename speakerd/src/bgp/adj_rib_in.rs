//! What a received UPDATE does: pure.
//!
//! speakerd keeps no received routes, only their count per family, up to the peer's
//! `max_received_prefixes`. [`AdjRibIn::receive`] applies one decoded UPDATE and returns the
//! [`Inbound`] verdict the driver acts on (status counters, log lines, a Cease):
//!
//! - RFC 7606 findings the decoder kept: treat-as-withdraw removes every route of the UPDATE;
//!   attribute-discard changes nothing that is kept, and is only counted. (A finding that resets the
//!   session never reaches this module: the decoder returns it as an error and the FSM sends its
//!   NOTIFICATION.)
//! - An eBGP UPDATE that announces routes with an AS_PATH not starting with the peer's AS is
//!   treat-as-withdraw (RFC 4271 §6.3, RFC 7606 §7.2).
//! - Past the limit, further new prefixes are dropped (counted); with `cease_on_max_prefixes` the
//!   session is closed with Cease / Maximum Number of Prefixes Reached (RFC 4486), whose data names the
//!   family and the limit.
use super::wire::{iana::err, Notification, Update, Verdict};
use ipnet::IpNet;
use std::collections::HashSet;

/// The session an UPDATE came on, as far as the verdict depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub ibgp: bool,
    /// The AS of the peer's OPEN on this session.
    pub peer_asn: u32,
    /// Close the session at the limit instead of dropping.
    pub cease_on_max_prefixes: bool,
}

/// What reaching the prefix limit asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaxPrefix {
    /// Nothing new was dropped, or the drop was already reported.
    Quiet,
    /// The first prefix past `limit` was dropped (no Cease): report it once.
    Dropping { limit: u32 },
    /// A prefix past `limit` was dropped and the session is to be closed with this NOTIFICATION.
    Cease { limit: u32, notification: Notification },
}

/// The verdict on one UPDATE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// Every route of the UPDATE was treated as withdrawn (RFC 7606 or the AS_PATH check).
    pub treat_as_withdraw: bool,
    /// Set when the AS_PATH check made it treat-as-withdraw: the first AS that the path had.
    pub wrong_first_as: Option<Option<u32>>,
    /// Attributes discarded under RFC 7606.
    pub attributes_discarded: u64,
    pub max_prefix: MaxPrefix,
    /// Prefixes kept per family (IPv4, IPv6) after this UPDATE.
    pub received: [u64; 2],
    /// Prefixes dropped at the limit since the session came up.
    pub dropped: u64,
}

/// Received prefixes, counted per family up to a limit; nothing else of a peer's routes is kept.
#[derive(Debug, Default)]
pub struct AdjRibIn {
    sets: [HashSet<IpNet>; 2],
    max: u32,
    dropped: u64,
}

impl AdjRibIn {
    pub fn new(max: u32) -> Self {
        Self { sets: [HashSet::new(), HashSet::new()], max, dropped: 0 }
    }
    /// A new limit, for the prefixes received from now on.
    pub fn set_max(&mut self, max: u32) {
        self.max = max;
    }
    fn idx(p: &IpNet) -> usize {
        usize::from(matches!(p, IpNet::V6(_)))
    }
    fn add(&mut self, p: IpNet) {
        let s = &mut self.sets[Self::idx(&p)];
        if s.contains(&p) {
            return;
        }
        if s.len() as u64 >= u64::from(self.max) {
            self.dropped += 1;
            return;
        }
        s.insert(p);
    }
    fn remove(&mut self, p: &IpNet) {
        self.sets[Self::idx(p)].remove(p);
    }
    /// The session went down: nothing is received any more. (The count of dropped prefixes stays.)
    pub fn clear(&mut self) {
        self.sets = [HashSet::new(), HashSet::new()];
    }
    pub fn counts(&self) -> [u64; 2] {
        [self.sets[0].len() as u64, self.sets[1].len() as u64]
    }

    /// Applies `u`, received on session `from`, and says what it did.
    pub fn receive(&mut self, u: &Update, from: Session) -> Inbound {
        let dropped_before = self.dropped;
        let mut withdraw_all = u.treat_as_withdraw();
        let mut wrong_first_as = None;
        let reach: Vec<IpNet> = u
            .nlri
            .iter()
            .map(|p| IpNet::V4(*p))
            .chain(u.attrs.mp_reach.iter().flat_map(|m| m.nlri.iter().copied()))
            .collect();
        if !from.ibgp && !reach.is_empty() && !withdraw_all {
            let first = u.attrs.as_path.as_ref().and_then(|p| p.first_as());
            if first != Some(from.peer_asn) {
                wrong_first_as = Some(first);
                withdraw_all = true;
            }
        }
        let discarded = u.faults.iter().filter(|f| f.verdict == Verdict::AttributeDiscard).count() as u64;
        for p in u
            .withdrawn
            .iter()
            .map(|p| IpNet::V4(*p))
            .chain(u.attrs.mp_unreach.iter().flat_map(|m| m.withdrawn.iter().copied()))
        {
            self.remove(&p);
        }
        for p in reach {
            if withdraw_all {
                self.remove(&p);
            } else {
                self.add(p);
            }
        }
        let mut max_prefix = MaxPrefix::Quiet;
        if self.dropped > dropped_before {
            let limit = self.max;
            if from.cease_on_max_prefixes {
                // RFC 4486 §4: AFI (2 octets), SAFI, the limit (4 octets).
                let v6 = self.sets[1].len() as u64 >= u64::from(limit);
                let mut data = vec![0, if v6 { 2 } else { 1 }, 1];
                data.extend_from_slice(&limit.to_be_bytes());
                max_prefix =
                    MaxPrefix::Cease { limit, notification: Notification::new(6, err::cease::MAX_PREFIXES, data) };
            } else if dropped_before == 0 {
                max_prefix = MaxPrefix::Dropping { limit };
            }
        }
        Inbound {
            treat_as_withdraw: withdraw_all,
            wrong_first_as,
            attributes_discarded: discarded,
            max_prefix,
            received: self.counts(),
            dropped: self.dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::{AsPath, AttrFault, Family, MpNextHop, MpReach, MpUnreach, WireError};

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    /// An UPDATE announcing `reach` (IPv4 in NLRI, IPv6 in MP_REACH) and withdrawing `gone`, with an
    /// AS_PATH of `path` and RFC 7606 findings `faults`.
    fn update(reach: &[&str], gone: &[&str], path: Option<Vec<u32>>, faults: &[Verdict]) -> Update {
        let mut u = Update::default();
        for p in reach.iter().map(|s| n(s)) {
            match p {
                IpNet::V4(v4) => u.nlri.push(v4),
                v6 => u
                    .attrs
                    .mp_reach
                    .get_or_insert_with(|| MpReach {
                        family: Family::IPV6_UNICAST,
                        next_hop: MpNextHop::V6 { global: "2001:db8::1".parse().unwrap(), link_local: None },
                        nlri: Vec::new(),
                        other_nlri: Vec::new(),
                    })
                    .nlri
                    .push(v6),
            }
        }
        for p in gone.iter().map(|s| n(s)) {
            match p {
                IpNet::V4(v4) => u.withdrawn.push(v4),
                v6 => u
                    .attrs
                    .mp_unreach
                    .get_or_insert_with(|| MpUnreach {
                        family: Family::IPV6_UNICAST,
                        withdrawn: Vec::new(),
                        other_nlri: Vec::new(),
                    })
                    .withdrawn
                    .push(v6),
            }
        }
        u.attrs.as_path = path.map(AsPath::sequence);
        u.faults =
            faults.iter().map(|&verdict| AttrFault { code: 8, verdict, error: WireError::BadLength(0) }).collect();
        u
    }

    const EBGP: Session = Session { ibgp: false, peer_asn: 65002, cease_on_max_prefixes: false };
    const IBGP: Session = Session { ibgp: true, peer_asn: 65001, cease_on_max_prefixes: false };
    const EBGP_CEASE: Session = Session { ibgp: false, peer_asn: 65002, cease_on_max_prefixes: true };

    fn cease(afi: u8, limit: u32) -> MaxPrefix {
        let mut data = vec![0, afi, 1];
        data.extend_from_slice(&limit.to_be_bytes());
        MaxPrefix::Cease { limit, notification: Notification::new(6, err::cease::MAX_PREFIXES, data) }
    }

    #[test]
    fn verdicts() {
        struct Case {
            name: &'static str,
            max: u32,
            /// Already received (eBGP, a good path), with the drops that took.
            before: &'static [&'static str],
            update: Update,
            from: Session,
            want: Inbound,
        }
        let good = || Some(vec![65002, 65010]);
        let inbound = |received: [u64; 2]| Inbound {
            treat_as_withdraw: false,
            wrong_first_as: None,
            attributes_discarded: 0,
            max_prefix: MaxPrefix::Quiet,
            received,
            dropped: 0,
        };
        let cases = [
            Case {
                name: "announce both families",
                max: 10,
                before: &[],
                update: update(&["10.0.0.1/32", "2001:db8::/64"], &[], good(), &[]),
                from: EBGP,
                want: inbound([1, 1]),
            },
            Case {
                name: "a prefix announced again counts once",
                max: 10,
                before: &["10.0.0.1/32"],
                update: update(&["10.0.0.1/32"], &[], good(), &[]),
                from: EBGP,
                want: inbound([1, 0]),
            },
            Case {
                name: "withdraw both families",
                max: 10,
                before: &["10.0.0.1/32", "10.0.0.2/32", "2001:db8::/64"],
                update: update(&[], &["10.0.0.1/32", "2001:db8::/64"], None, &[]),
                from: EBGP,
                want: inbound([1, 0]),
            },
            Case {
                name: "RFC 7606 treat-as-withdraw removes the UPDATE's routes",
                max: 10,
                before: &["10.0.0.1/32", "10.0.0.2/32"],
                update: update(&["10.0.0.1/32", "10.0.0.3/32"], &[], good(), &[Verdict::TreatAsWithdraw]),
                from: EBGP,
                want: Inbound { treat_as_withdraw: true, ..inbound([1, 0]) },
            },
            Case {
                name: "RFC 7606 attribute discard keeps the routes and is counted",
                max: 10,
                before: &[],
                update: update(&["10.0.0.1/32"], &[], good(), &[Verdict::AttributeDiscard, Verdict::AttributeDiscard]),
                from: EBGP,
                want: Inbound { attributes_discarded: 2, ..inbound([1, 0]) },
            },
            Case {
                name: "discard and treat-as-withdraw together",
                max: 10,
                before: &["10.0.0.1/32"],
                update: update(&["10.0.0.1/32"], &[], good(), &[Verdict::AttributeDiscard, Verdict::TreatAsWithdraw]),
                from: EBGP,
                want: Inbound { treat_as_withdraw: true, attributes_discarded: 1, ..inbound([0, 0]) },
            },
            Case {
                name: "eBGP path not starting with the peer's AS: treat-as-withdraw",
                max: 10,
                before: &["10.0.0.1/32"],
                update: update(&["10.0.0.1/32", "10.0.0.2/32"], &[], Some(vec![65010, 65002]), &[]),
                from: EBGP,
                want: Inbound { treat_as_withdraw: true, wrong_first_as: Some(Some(65010)), ..inbound([0, 0]) },
            },
            Case {
                name: "eBGP without AS_PATH: treat-as-withdraw",
                max: 10,
                before: &[],
                update: update(&["10.0.0.1/32"], &[], None, &[]),
                from: EBGP,
                want: Inbound { treat_as_withdraw: true, wrong_first_as: Some(None), ..inbound([0, 0]) },
            },
            Case {
                name: "eBGP withdrawal only: the path is not checked",
                max: 10,
                before: &["10.0.0.1/32"],
                update: update(&[], &["10.0.0.1/32"], Some(vec![65010]), &[]),
                from: EBGP,
                want: inbound([0, 0]),
            },
            Case {
                name: "iBGP: the path is not checked",
                max: 10,
                before: &[],
                update: update(&["10.0.0.1/32"], &[], Some(vec![]), &[]),
                from: IBGP,
                want: inbound([1, 0]),
            },
            Case {
                name: "already treat-as-withdraw: the path is not reported",
                max: 10,
                before: &[],
                update: update(&["10.0.0.1/32"], &[], None, &[Verdict::TreatAsWithdraw]),
                from: EBGP,
                want: Inbound { treat_as_withdraw: true, ..inbound([0, 0]) },
            },
            Case {
                name: "up to the limit: nothing dropped",
                max: 2,
                before: &["10.0.0.1/32"],
                update: update(&["10.0.0.2/32"], &[], good(), &[]),
                from: EBGP,
                want: inbound([2, 0]),
            },
            Case {
                name: "past the limit: dropped, reported once",
                max: 2,
                before: &["10.0.0.1/32"],
                update: update(&["10.0.0.2/32", "10.0.0.3/32", "10.0.0.4/32"], &[], good(), &[]),
                from: EBGP,
                want: Inbound { max_prefix: MaxPrefix::Dropping { limit: 2 }, dropped: 2, ..inbound([2, 0]) },
            },
            Case {
                name: "dropping again: not reported again",
                max: 1,
                before: &["10.0.0.1/32", "10.0.0.2/32"],
                update: update(&["10.0.0.3/32"], &[], good(), &[]),
                from: EBGP,
                want: Inbound { dropped: 2, ..inbound([1, 0]) },
            },
            Case {
                name: "the limit is per family",
                max: 1,
                before: &["10.0.0.1/32"],
                update: update(&["2001:db8::/64"], &[], good(), &[]),
                from: EBGP,
                want: inbound([1, 1]),
            },
            Case {
                name: "past the limit with Cease: IPv4",
                max: 1,
                before: &["10.0.0.1/32"],
                update: update(&["10.0.0.2/32"], &[], good(), &[]),
                from: EBGP_CEASE,
                want: Inbound { max_prefix: cease(1, 1), dropped: 1, ..inbound([1, 0]) },
            },
            Case {
                name: "past the limit with Cease: IPv6",
                max: 1,
                before: &["2001:db8::/64"],
                update: update(&["2001:db8:1::/64"], &[], good(), &[]),
                from: EBGP_CEASE,
                want: Inbound { max_prefix: cease(2, 1), dropped: 1, ..inbound([0, 1]) },
            },
            Case {
                name: "with Cease, every UPDATE that drops asks for it",
                max: 1,
                before: &["10.0.0.1/32", "10.0.0.2/32"],
                update: update(&["10.0.0.3/32"], &[], good(), &[]),
                from: EBGP_CEASE,
                want: Inbound { max_prefix: cease(1, 1), dropped: 2, ..inbound([1, 0]) },
            },
            Case {
                name: "a withdrawal makes room",
                max: 1,
                before: &["10.0.0.1/32"],
                update: update(&["10.0.0.2/32"], &["10.0.0.1/32"], good(), &[]),
                from: EBGP,
                want: inbound([1, 0]),
            },
        ];
        for c in cases {
            let mut rib = AdjRibIn::new(c.max);
            let before: Vec<&str> = c.before.to_vec();
            rib.receive(&update(&before, &[], Some(vec![65002]), &[]), EBGP);
            assert_eq!(rib.receive(&c.update, c.from), c.want, "{}", c.name);
            assert_eq!(rib.counts(), c.want.received, "{}", c.name);
        }
    }

    #[test]
    fn a_new_session_starts_empty_and_a_new_limit_applies_to_what_comes() {
        let mut rib = AdjRibIn::new(1);
        let v = rib.receive(&update(&["10.0.0.1/32", "10.0.0.2/32"], &[], Some(vec![65002]), &[]), EBGP);
        assert_eq!((v.received, v.dropped), ([1, 0], 1));
        rib.clear();
        assert_eq!(rib.counts(), [0, 0]);
        rib.set_max(3);
        let v = rib.receive(&update(&["10.0.0.1/32", "10.0.0.2/32"], &[], Some(vec![65002]), &[]), EBGP);
        assert_eq!((v.received, v.dropped, v.max_prefix), ([2, 0], 1, MaxPrefix::Quiet));
    }
}
