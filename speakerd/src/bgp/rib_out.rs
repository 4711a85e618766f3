//! Per-peer Adj-RIB-Out: what we want the peer to have (`want`) against what we have put on the wire in
//! this session (`have`), and the prefixes where they may differ (`dirty`).
//!
//! Nothing is pre-encoded: the writer task pulls a batch with [`AdjRibOut::take_batch`] when its socket
//! can take more, so memory stays bounded by the tables, a prefix that flaps many times before it is
//! sent goes out once, and a slow peer never delays its own keepalives. Pure: no tokio, no sockets.
use super::wire::{
    attr::{encode_attrs, AsPath},
    iana, Family, MpNextHop, Packer, PathAttrs, Update,
};
use crate::config::spec::RouteAttrs;
use bytes::BytesMut;
use ipnet::IpNet;
use std::collections::{BTreeSet, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// Shared, interned attributes of a route.
pub type Attrs = Arc<RouteAttrs>;

/// How this session turns [`RouteAttrs`] into wire attributes. Built when the session comes up.
#[derive(Debug, Clone)]
pub struct Encoder {
    pub local_asn: u32,
    pub ibgp: bool,
    pub four_octet_as: bool,
    pub families: Vec<Family>,
    /// Next hop of IPv4 routes, in the NEXT_HOP attribute. `None` with `v4_over_v6` unset: IPv4 not sent.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// RFC 8950: IPv4 routes go in MP_REACH_NLRI with this IPv6 next hop.
    pub v4_over_v6: Option<Ipv6Addr>,
    /// Next hop of IPv6 routes. `None`: IPv6 not sent.
    pub next_hop_v6: Option<Ipv6Addr>,
    pub packer: Packer,
}

impl Encoder {
    /// Can this session carry `p` at all (family negotiated and a next hop known)?
    pub fn carries(&self, p: &IpNet) -> bool {
        match p {
            IpNet::V4(_) => {
                self.families.contains(&Family::IPV4_UNICAST)
                    && (self.next_hop_v4.is_some() || self.v4_over_v6.is_some())
            }
            IpNet::V6(_) => {
                self.families.contains(&Family::IPV6_UNICAST) && self.next_hop_v6.is_some()
            }
        }
    }

    /// The wire attributes for a route of this session (everything but MP_REACH/NEXT_HOP handling).
    pub fn path_attrs(&self, a: &RouteAttrs, legacy_v4_next_hop: Option<Ipv4Addr>) -> PathAttrs {
        PathAttrs {
            origin: Some(iana::origin::IGP),
            // RFC 4271 §5.1.2: to an external peer, prepend our AS as an AS_SEQUENCE; to an internal one,
            // an originating speaker sends an empty AS_PATH.
            as_path: Some(if self.ibgp {
                AsPath::default()
            } else {
                AsPath::sequence(vec![self.local_asn])
            }),
            next_hop: legacy_v4_next_hop,
            med: a.med,
            // RFC 4271 §5.1.5: LOCAL_PREF only to internal peers.
            local_pref: self.ibgp.then(|| a.local_pref.unwrap_or(100)),
            communities: (!a.communities.is_empty())
                .then(|| a.communities.iter().copied().collect()),
            large_communities: (!a.large_communities.is_empty())
                .then(|| a.large_communities.iter().copied().collect()),
            ..PathAttrs::default()
        }
    }

    fn encoded(&self, a: &RouteAttrs, v4_legacy: bool) -> Vec<u8> {
        let mut b = BytesMut::with_capacity(64);
        let nh = if v4_legacy { self.next_hop_v4 } else { None };
        encode_attrs(&self.path_attrs(a, nh), self.four_octet_as, &mut b);
        b.to_vec()
    }
}

/// What the peer should have for one prefix and what it has from this session.
#[derive(Debug, Default)]
struct Slot {
    want: Option<Attrs>,
    have: Option<Attrs>,
}

/// One peer's Adj-RIB-Out: one slot per prefix that is wanted or on the wire (one hash lookup per
/// prefix on the hot path, 40 bytes per prefix and peer).
#[derive(Debug, Default)]
pub struct AdjRibOut {
    slots: HashMap<IpNet, Slot, foldhash::fast::RandomState>,
    /// Slots with `want` set, and slots with `have` set per family (v4, v6): counts kept as they change.
    wanted: usize,
    have: [u64; 2],
    dirty: BTreeSet<IpNet>,
    /// Every prefix at session start (or refresh), and bulk changes, in no order: a whole table is
    /// queued without sorting it. Taken before `dirty`; a prefix queued twice is sent once (the second
    /// look finds it sent).
    full: Vec<IpNet>,
    up: bool,
    eor_pending: Vec<Family>,
    /// The encoder of the last batch of this session: how `have` went on the wire (for display).
    enc: Option<Encoder>,
}

/// Counts of what a [`AdjRibOut::take_batch`] call produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    pub updates: u64,
    pub announced: u64,
    pub withdrawn: u64,
    pub end_of_rib: u64,
}

/// Prefixes looked at per batch: bounds the time the lock is held and the bytes produced.
const BATCH_PREFIXES: usize = 16384;

fn fam_index(p: &IpNet) -> usize {
    usize::from(matches!(p, IpNet::V6(_)))
}

impl AdjRibOut {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets (or with `None` removes) what the peer should have for `prefix`.
    pub fn set(&mut self, prefix: IpNet, attrs: Option<Attrs>) {
        if self.set_want(prefix, attrs) && self.up {
            self.dirty.insert(prefix);
        }
    }

    /// [`set`](Self::set) for many prefixes at once. A large change (a bulk load) is queued unsorted,
    /// as a session's initial table is, instead of one ordered insertion per prefix.
    pub fn set_many(&mut self, updates: Vec<(IpNet, Option<Attrs>)>) {
        if self.slots.is_empty() {
            self.slots.reserve(updates.len());
        }
        let bulk = updates.len() >= 1024;
        for (p, a) in updates {
            if self.set_want(p, a) && self.up {
                if bulk {
                    self.full.push(p);
                } else {
                    self.dirty.insert(p);
                }
            }
        }
        // Bulk loads faster than the peer reads: the queue never holds a prefix more than once or twice.
        if self.full.len() > 2 * self.slots.len() + 1024 {
            self.full.sort_unstable();
            self.full.dedup();
        }
    }

    /// Updates `want`; returns whether it changed.
    fn set_want(&mut self, prefix: IpNet, attrs: Option<Attrs>) -> bool {
        use std::collections::hash_map::Entry;
        match self.slots.entry(prefix) {
            Entry::Vacant(v) => {
                let Some(a) = attrs else { return false };
                v.insert(Slot { want: Some(a), have: None });
                self.wanted += 1;
            }
            Entry::Occupied(mut o) => {
                let slot = o.get_mut();
                match (&attrs, &slot.want) {
                    (Some(a), Some(b)) if Arc::ptr_eq(a, b) || a == b => return false,
                    (None, None) => return false,
                    (Some(_), None) => self.wanted += 1,
                    (None, Some(_)) => self.wanted -= 1,
                    (Some(_), Some(_)) => {}
                }
                slot.want = attrs;
                if slot.want.is_none() && slot.have.is_none() {
                    o.remove();
                }
            }
        }
        true
    }

    /// What is on the wire to the peer now, and the encoder it went out with (None before the first
    /// batch of a session).
    pub fn sent(&self) -> (Option<Encoder>, Vec<(IpNet, Attrs)>) {
        (
            self.enc.clone(),
            self.slots
                .iter()
                .filter_map(|(p, s)| Some((*p, s.have.clone()?)))
                .collect(),
        )
    }

    pub fn wanted(&self) -> usize {
        self.wanted
    }

    /// Prefixes on the wire now, per family.
    pub fn advertised(&self) -> (u64, u64) {
        (self.have[0], self.have[1])
    }

    /// Forgets what is on the wire (the session is new or the peer asked for everything again).
    fn forget_sent(&mut self) {
        self.slots.retain(|_, s| {
            s.have = None;
            s.want.is_some()
        });
        self.have = [0, 0];
    }

    /// The session came up: the peer has nothing, so everything wanted is dirty; End-of-RIB follows the
    /// initial table for each family (RFC 4724 §4.1).
    pub fn session_up(&mut self, families: &[Family]) {
        self.up = true;
        self.forget_sent();
        self.dirty.clear();
        self.full = self.slots.keys().copied().collect();
        self.eor_pending = families.to_vec();
    }

    pub fn session_down(&mut self) {
        self.up = false;
        self.enc = None;
        self.forget_sent();
        self.dirty.clear();
        self.full = Vec::new();
        self.eor_pending.clear();
    }

    /// Soft reset outbound / ROUTE-REFRESH received (RFC 2918 §4): send everything again.
    pub fn resend_all(&mut self) {
        if self.up {
            self.forget_sent();
            self.dirty.clear();
            self.full = self.slots.keys().copied().collect();
        }
    }

    /// Is there anything to send?
    pub fn pending(&self) -> bool {
        self.up && (!self.dirty.is_empty() || !self.full.is_empty() || !self.eor_pending.is_empty())
    }

    /// Encodes the next batch of UPDATEs (at most [`BATCH_PREFIXES`] prefixes) into `out`.
    pub fn take_batch(&mut self, enc: &Encoder, out: &mut BytesMut) -> BatchStats {
        let mut st = BatchStats::default();
        if !self.up {
            return st;
        }
        let mut withdraw: [Vec<IpNet>; 2] = [Vec::new(), Vec::new()];
        // Groups of prefixes with equal attributes, per family. Attributes are interned, so equal ones
        // share a pointer. A batch usually has one group: the group used last is tried before the index.
        let mut groups: Vec<(bool, Attrs, Vec<IpNet>)> = Vec::new();
        let mut index: HashMap<(bool, *const RouteAttrs), usize, foldhash::fast::RandomState> = HashMap::default();
        let mut last = 0;
        let mut taken = 0;
        while taken < BATCH_PREFIXES {
            let Some(p) = self.full.pop().or_else(|| self.dirty.pop_first()) else {
                break;
            };
            taken += 1;
            let v6 = fam_index(&p);
            let Some(slot) = self.slots.get_mut(&p) else {
                continue;
            };
            let want = slot.want.as_ref().filter(|_| enc.carries(&p));
            match (want, &slot.have) {
                (Some(w), Some(h)) if Arc::ptr_eq(w, h) || w == h => {}
                (Some(w), had) => {
                    if had.is_none() {
                        self.have[v6] += 1;
                    }
                    let key = (v6 == 1, Arc::as_ptr(w));
                    let hit = |g: &(bool, Attrs, Vec<IpNet>)| (g.0, Arc::as_ptr(&g.1)) == key;
                    if !groups.get(last).is_some_and(hit) {
                        last = *index.entry(key).or_insert_with(|| {
                            groups.push((v6 == 1, w.clone(), Vec::new()));
                            groups.len() - 1
                        });
                    }
                    groups[last].2.push(p);
                    slot.have = Some(w.clone());
                }
                (None, Some(_)) => {
                    withdraw[v6].push(p);
                    slot.have = None;
                    self.have[v6] -= 1;
                }
                (None, None) => {}
            }
            if slot.want.is_none() && slot.have.is_none() {
                self.slots.remove(&p);
            }
        }
        // A small clone (two families at most), once per batch.
        self.enc = Some(enc.clone());
        let packer = enc.packer;
        for (v6, list) in withdraw.iter().enumerate() {
            let mut rest = list.as_slice();
            while !rest.is_empty() {
                let n = if v6 == 0 && enc.v4_over_v6.is_none() {
                    packer.unreach_v4(rest, out)
                } else {
                    let fam = if v6 == 1 {
                        Family::IPV6_UNICAST
                    } else {
                        Family::IPV4_UNICAST
                    };
                    packer.unreach_mp(fam, rest, out)
                };
                st.updates += 1;
                st.withdrawn += n as u64;
                rest = rest.get(n.max(1)..).unwrap_or_default();
            }
        }
        groups.sort_by(|a, b| a.2.first().cmp(&b.2.first())); // deterministic order on the wire
        for (_, attrs, list) in groups {
            let v6 = matches!(list.first(), Some(IpNet::V6(_)));
            let mut rest = list.as_slice();
            let legacy = !v6 && enc.v4_over_v6.is_none();
            let bytes = enc.encoded(&attrs, legacy);
            while !rest.is_empty() {
                let n = if legacy {
                    packer.reach_v4(&bytes, rest, out)
                } else if v6 {
                    let nh = MpNextHop::V6 {
                        global: enc.next_hop_v6.unwrap_or(Ipv6Addr::UNSPECIFIED),
                        link_local: None,
                    };
                    packer.reach_mp(Family::IPV6_UNICAST, &nh, &bytes, rest, out)
                } else {
                    let nh = MpNextHop::V6 {
                        global: enc.v4_over_v6.unwrap_or(Ipv6Addr::UNSPECIFIED),
                        link_local: None,
                    };
                    packer.reach_mp(Family::IPV4_UNICAST, &nh, &bytes, rest, out)
                };
                if n == 0 {
                    // The attributes alone do not fit in a message: these prefixes cannot be sent.
                    for p in rest {
                        if let Some(s) = self.slots.get_mut(p) {
                            if s.have.take().is_some() {
                                self.have[fam_index(p)] -= 1;
                            }
                        }
                    }
                    break;
                }
                st.updates += 1;
                st.announced += n as u64;
                rest = rest.get(n..).unwrap_or_default();
            }
        }
        if self.full.is_empty() {
            self.full = Vec::new(); // the capacity of a whole table, not kept for the session
        }
        if self.dirty.is_empty() && self.full.is_empty() && !self.eor_pending.is_empty() {
            for f in std::mem::take(&mut self.eor_pending) {
                let _ = super::wire::encode(
                    &super::wire::Message::Update(Update::end_of_rib_for(f)),
                    enc.four_octet_as,
                    out,
                );
                st.updates += 1;
                st.end_of_rib += 1;
            }
        }
        st
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bgp::wire::{decode, frame, DecodeCtx, Message};

    fn enc(ibgp: bool) -> Encoder {
        Encoder {
            local_asn: 65001,
            ibgp,
            four_octet_as: true,
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            next_hop_v4: Some("192.0.2.1".parse().unwrap()),
            v4_over_v6: None,
            next_hop_v6: Some("2001:db8::1".parse().unwrap()),
            packer: Packer::default(),
        }
    }

    fn messages(mut b: &[u8]) -> Vec<Update> {
        let mut v = Vec::new();
        while let Ok(Some(n)) = frame(b, 4096) {
            match decode(
                &b[..n],
                &DecodeCtx {
                    four_octet_as: true,
                    ibgp: true,
                },
            )
            .unwrap()
            {
                Message::Update(u) => v.push(u),
                m => panic!("{m:?}"),
            }
            b = &b[n..];
        }
        assert!(b.is_empty());
        v
    }

    fn drain(rib: &mut AdjRibOut, e: &Encoder) -> Vec<Update> {
        let mut out = BytesMut::new();
        while rib.pending() {
            rib.take_batch(e, &mut out);
        }
        messages(&out)
    }

    #[test]
    fn initial_table_then_end_of_rib_for_each_family() {
        let mut rib = AdjRibOut::new();
        let a: Attrs = Arc::new(RouteAttrs {
            communities: [42].into(),
            ..Default::default()
        });
        for i in 0..3u8 {
            rib.set(
                format!("203.0.113.{i}/32").parse().unwrap(),
                Some(a.clone()),
            );
        }
        rib.set("2001:db8::10/128".parse().unwrap(), Some(a.clone()));
        rib.session_up(&[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        let u = drain(&mut rib, &enc(false));
        assert_eq!(
            u.len(),
            4,
            "one v4 UPDATE with 3 prefixes, one v6, two End-of-RIB: {u:#?}"
        );
        let v4 = u.iter().find(|u| !u.nlri.is_empty()).unwrap();
        assert_eq!(v4.nlri.len(), 3);
        assert_eq!(v4.attrs.as_path, Some(AsPath::sequence(vec![65001])));
        assert_eq!(v4.attrs.local_pref, None, "no LOCAL_PREF to eBGP");
        assert_eq!(u.iter().filter_map(|u| u.end_of_rib()).count(), 2);
    }

    #[test]
    fn only_differences_go_on_the_wire() {
        let mut rib = AdjRibOut::new();
        let a: Attrs = Arc::new(RouteAttrs::default());
        let p: IpNet = "203.0.113.1/32".parse().unwrap();
        rib.session_up(&[Family::IPV4_UNICAST]);
        rib.set(p, Some(a.clone()));
        assert_eq!(drain(&mut rib, &enc(true)).len(), 2); // the route and End-of-RIB
        rib.set(p, Some(Arc::new(RouteAttrs::default()))); // equal attributes: nothing to send
        assert!(!rib.pending());
        // announce then withdraw before the writer pulls: nothing at all goes out
        let q: IpNet = "203.0.113.2/32".parse().unwrap();
        rib.set(q, Some(a.clone()));
        rib.set(q, None);
        assert!(drain(&mut rib, &enc(true)).is_empty());
        rib.set(p, None);
        let u = drain(&mut rib, &enc(true));
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].withdrawn, vec!["203.0.113.1/32".parse().unwrap()]);
    }

    #[test]
    fn ibgp_gets_local_pref_and_empty_as_path() {
        let mut rib = AdjRibOut::new();
        rib.session_up(&[Family::IPV4_UNICAST]);
        rib.set(
            "203.0.113.1/32".parse().unwrap(),
            Some(Arc::new(RouteAttrs {
                local_pref: Some(300),
                ..Default::default()
            })),
        );
        let u = drain(&mut rib, &enc(true));
        assert_eq!(u[0].attrs.local_pref, Some(300));
        assert_eq!(u[0].attrs.as_path, Some(AsPath::default()));
    }

    #[test]
    fn many_prefixes_are_split_into_full_messages() {
        let mut rib = AdjRibOut::new();
        let a: Attrs = Arc::new(RouteAttrs::default());
        for i in 0..20_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
            rib.set(IpNet::from(std::net::IpAddr::V4(ip)), Some(a.clone()));
        }
        rib.session_up(&[Family::IPV4_UNICAST]);
        let u = drain(&mut rib, &enc(false));
        let total: usize = u.iter().map(|u| u.nlri.len()).sum();
        assert_eq!(total, 20_000);
        // 5 bytes per /32: 809 per 4096-byte message, so 25 at best; one partial message per batch.
        let with_routes = u.iter().filter(|u| u.end_of_rib().is_none()).count();
        assert!(with_routes <= 26, "{with_routes} messages");
        assert_eq!(rib.advertised(), (20_000, 0));
    }

    #[test]
    fn counts_follow_what_is_wanted_and_sent() {
        let mut rib = AdjRibOut::new();
        let a: Attrs = Arc::new(RouteAttrs::default());
        let (p4, p6): (IpNet, IpNet) = (
            "203.0.113.1/32".parse().unwrap(),
            "2001:db8::1/128".parse().unwrap(),
        );
        rib.set(p4, Some(a.clone()));
        rib.set(p6, Some(a.clone()));
        assert_eq!((rib.wanted(), rib.advertised()), (2, (0, 0)));
        rib.session_up(&[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        drain(&mut rib, &enc(false));
        assert_eq!((rib.wanted(), rib.advertised()), (2, (1, 1)));
        assert_eq!(rib.sent().1.len(), 2);
        rib.set(p6, None);
        assert_eq!(
            (rib.wanted(), rib.advertised()),
            (1, (1, 1)),
            "still on the wire until the batch"
        );
        drain(&mut rib, &enc(false));
        assert_eq!((rib.wanted(), rib.advertised()), (1, (1, 0)));
        assert_eq!(
            rib.slots.len(),
            1,
            "a slot neither wanted nor sent is dropped"
        );
        rib.resend_all();
        assert_eq!(rib.advertised(), (0, 0));
        drain(&mut rib, &enc(false));
        assert_eq!(rib.advertised(), (1, 0));
        rib.session_down();
        assert_eq!(
            (rib.wanted(), rib.advertised(), rib.slots.len()),
            (1, (0, 0), 1)
        );
    }

    #[test]
    fn bulk_changes_while_up_go_out_once_each() {
        let mut rib = AdjRibOut::new();
        rib.session_up(&[Family::IPV4_UNICAST]);
        drain(&mut rib, &enc(false));
        let (a, b): (Attrs, Attrs) = (Arc::new(RouteAttrs::default()), Arc::new(RouteAttrs { med: Some(5), ..Default::default() }));
        let load = |attrs: &Attrs| (0..3000u32).map(|i| (IpNet::from(std::net::IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))), Some(attrs.clone()))).collect::<Vec<_>>();
        // three bulk loads before the writer pulls: queued unsorted, then deduplicated
        rib.set_many(load(&a));
        rib.set_many(load(&b));
        rib.set_many(load(&a));
        assert!(rib.full.len() <= 2 * 3000 + 1024, "{}", rib.full.len());
        let u = drain(&mut rib, &enc(false));
        assert_eq!(u.iter().map(|u| u.nlri.len()).sum::<usize>(), 3000, "each prefix once, with the last attributes");
        assert!(u.iter().all(|u| u.attrs.med.is_none()));
        assert_eq!(rib.advertised(), (3000, 0));
        // a small change while up goes through the ordered set
        rib.set_many(vec![("10.0.0.1/32".parse().unwrap(), None)]);
        assert!(rib.full.is_empty() && rib.dirty.len() == 1);
        assert_eq!(drain(&mut rib, &enc(false))[0].withdrawn, vec!["10.0.0.1/32".parse().unwrap()]);
    }

    #[test]
    fn ipv6_is_held_back_without_a_next_hop() {
        let mut rib = AdjRibOut::new();
        rib.session_up(&[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        rib.set(
            "2001:db8::1/128".parse().unwrap(),
            Some(Arc::new(RouteAttrs::default())),
        );
        let u = drain(
            &mut rib,
            &Encoder {
                next_hop_v6: None,
                ..enc(false)
            },
        );
        assert!(u.iter().all(|u| u.end_of_rib().is_some()), "{u:?}");
    }

    #[test]
    fn ipv4_over_ipv6_next_hop_uses_mp_reach() {
        let mut rib = AdjRibOut::new();
        rib.session_up(&[Family::IPV4_UNICAST]);
        rib.set(
            "203.0.113.1/32".parse().unwrap(),
            Some(Arc::new(RouteAttrs::default())),
        );
        let e = Encoder {
            next_hop_v4: None,
            v4_over_v6: Some("2001:db8::1".parse().unwrap()),
            ..enc(false)
        };
        let u = drain(&mut rib, &e);
        let m = u[0].attrs.mp_reach.as_ref().unwrap();
        assert_eq!(m.family, Family::IPV4_UNICAST);
        assert_eq!(
            m.next_hop,
            MpNextHop::V6 {
                global: "2001:db8::1".parse().unwrap(),
                link_local: None
            }
        );
        assert!(u[0].attrs.next_hop.is_none());
    }
}
