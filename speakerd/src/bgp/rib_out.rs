//! Per-peer Adj-RIB-Out: which prefixes of the shared [`ExportTable`] this session has put on the wire
//! (`sent`) and which may differ from what the peer wants now (`dirty`), two bits per prefix.
//!
//! Nothing is pre-encoded: the writer task pulls a batch with [`AdjRibOut::take_batch`] when its socket
//! can take more, so memory stays bounded by the tables, a prefix that flaps many times before it is
//! sent goes out once, and a slow peer never delays its own keepalives. Pure: no tokio, no sockets.
use super::export::{same, Change, ExportTable, Selector};
use super::wire::{
    attr::{encode_attrs, AsPath},
    iana, Family, MpNextHop, Packer, PathAttrs, Update,
};
use crate::config::spec::RouteAttrs;
use bytes::BytesMut;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

pub use super::export::Attrs;

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
            IpNet::V6(_) => self.families.contains(&Family::IPV6_UNICAST) && self.next_hop_v6.is_some(),
        }
    }

    /// The wire attributes for a route of this session (everything but MP_REACH/NEXT_HOP handling).
    pub fn path_attrs(&self, a: &RouteAttrs, legacy_v4_next_hop: Option<Ipv4Addr>) -> PathAttrs {
        PathAttrs {
            origin: Some(iana::origin::IGP),
            // RFC 4271 §5.1.2: to an external peer, prepend our AS as an AS_SEQUENCE; to an internal one,
            // an originating speaker sends an empty AS_PATH.
            as_path: Some(if self.ibgp { AsPath::default() } else { AsPath::sequence(vec![self.local_asn]) }),
            next_hop: legacy_v4_next_hop,
            med: a.med,
            // RFC 4271 §5.1.5: LOCAL_PREF only to internal peers.
            local_pref: self.ibgp.then(|| a.local_pref.unwrap_or(100)),
            communities: (!a.communities.is_empty()).then(|| a.communities.iter().copied().collect()),
            large_communities: (!a.large_communities.is_empty()).then(|| a.large_communities.iter().copied().collect()),
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

/// Each thread's spare prefix lists for [`AdjRibOut::take_batch`]'s groups: at most [`lists::KEPT`]
/// of them, each of at most [`BATCH_MAX`] prefixes (about 320 kB per list, a few per worker thread).
mod lists {
    use ipnet::IpNet;
    use std::cell::RefCell;

    pub const KEPT: usize = 4;

    thread_local! {
        static SPARE: RefCell<Vec<Vec<IpNet>>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty list, with room from an earlier batch if this thread has one.
    pub fn take() -> Vec<IpNet> {
        SPARE.with(|s| s.borrow_mut().pop()).unwrap_or_default()
    }

    /// Hands an emptied list back, if there is room for it.
    pub fn give(list: Vec<IpNet>) {
        if list.capacity() == 0 || list.capacity() > super::BATCH_MAX {
            return;
        }
        SPARE.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < KEPT {
                s.push(list);
            }
        });
    }
}

/// A set of small ids, one bit each.
#[derive(Debug, Default)]
struct Bits(Vec<u64>);

impl Bits {
    /// Sets bit `i`; returns whether it was clear.
    fn set(&mut self, i: u32) -> bool {
        let w = i as usize / 64;
        if w >= self.0.len() {
            self.0.resize(w + 1, 0);
        }
        let was = self.0[w] & (1 << (i % 64)) != 0;
        self.0[w] |= 1 << (i % 64);
        !was
    }
    fn get(&self, i: u32) -> bool {
        self.0.get(i as usize / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    /// Clears bit `i`; returns whether it was set.
    fn clear(&mut self, i: u32) -> bool {
        match self.0.get_mut(i as usize / 64) {
            Some(w) if *w & (1 << (i % 64)) != 0 => {
                *w &= !(1 << (i % 64));
                true
            }
            _ => false,
        }
    }
    fn ones(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().enumerate().flat_map(|(wi, &w)| {
            let mut w = w;
            std::iter::from_fn(move || {
                (w != 0).then(|| {
                    let b = w.trailing_zeros();
                    w &= w - 1;
                    (wi * 64) as u32 + b
                })
            })
        })
    }
}

/// One peer's Adj-RIB-Out: two bits per prefix of the shared [`ExportTable`], `sent` (this session has
/// put some version of it on the wire) and `dirty` (what the peer wants for it may have changed since).
/// What it wants is read from the table when the writer pulls, so a change the writer has not pulled
/// yet costs a bit, whatever its size. When everything must be looked at (session up, refresh) no bit
/// is set: a sweep over the table's ids stands for "every id from here on is dirty", and the writer
/// advances it batch by batch.
#[derive(Debug)]
pub struct AdjRibOut {
    sel: Selector,
    sent: Bits,
    dirty: Bits,
    /// Set bits of `dirty`.
    pending: usize,
    /// The word of `dirty` where the writer resumes: it sweeps the table in id order and wraps around.
    cursor: usize,
    /// While everything is to be looked at: the next id of that sweep; the ids from it on count as
    /// dirty without a bit. Marking every prefix at Established was a pass over a cold table before the
    /// first UPDATE could leave; the sweep costs nothing until the writer pulls.
    sweep: Option<u32>,
    /// Prefixes on the wire, per family (v4, v6).
    have: [u64; 2],
    up: bool,
    eor_pending: Vec<Family>,
    /// The encoder of the last batch of this session: how `sent` went on the wire (for display).
    enc: Option<Encoder>,
    /// Raised each time `sent` is forgotten (session up or down, refresh): a writer's socket and
    /// encoder belong to one epoch, and are not used for another (see `PeerShared::changed`).
    epoch: u64,
}

/// Counts of what a [`AdjRibOut::take_batch`] call produced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    pub updates: u64,
    pub announced: u64,
    pub withdrawn: u64,
    pub end_of_rib: u64,
}

/// Prefixes looked at per batch: bounds the time the locks are held and the bytes produced.
pub const BATCH_MAX: usize = 16384;

/// The first batch after the writer was idle: about one full UPDATE of IPv4 /32s, encoded in some
/// microseconds, so the first bytes leave at once and the receiver works on them while the next, twice
/// as large, batch is encoded (up to [`BATCH_MAX`]). With one large batch the first byte waited for the
/// encoding of all of it (docs/bench/HISTORY.md has the figures).
pub const BATCH_FIRST: usize = 512;

/// The batch size after one of `limit`.
pub fn next_batch_limit(limit: usize) -> usize {
    (limit * 2).clamp(BATCH_FIRST, BATCH_MAX)
}

/// For [`ExportTable::collect_unused`]: keeps in `ids` (sorted) those that one of the sessions of
/// `ribs` has on the wire. Each rib is looked at once, for the ids not yet found on a wire.
pub fn keep_on_wire<R: std::ops::Deref<Target = AdjRibOut>>(ribs: impl IntoIterator<Item = R>, ids: &mut Vec<u32>) {
    let mut left = std::mem::take(ids);
    for r in ribs {
        if left.is_empty() {
            break;
        }
        left.retain(|&id| {
            let on = r.sent.get(id);
            if on {
                ids.push(id);
            }
            !on
        });
    }
    ids.sort_unstable();
}

fn fam_index(p: &IpNet) -> usize {
    usize::from(matches!(p, IpNet::V6(_)))
}

impl AdjRibOut {
    pub fn new(sel: Selector) -> Self {
        Self {
            sel,
            sent: Bits::default(),
            dirty: Bits::default(),
            pending: 0,
            cursor: 0,
            sweep: None,
            have: [0, 0],
            up: false,
            eor_pending: Vec::new(),
            enc: None,
            epoch: 0,
        }
    }

    /// See the field: changes whenever what is on the wire is forgotten.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    fn mark(&mut self, id: u32) {
        if self.sweep.is_some_and(|next| id >= next) {
            return; // the sweep has yet to get there
        }
        if self.dirty.set(id) {
            self.pending += 1;
        }
    }

    /// The table changed: marks what this peer must look at again. Nothing while the session is down
    /// (a session that comes up looks at everything).
    pub fn changed(&mut self, changes: &[Change]) {
        if !self.up {
            return;
        }
        for c in changes {
            let old = c.old.as_ref().and_then(|w| w.for_peer_ref(&self.sel));
            let new = c.new.as_ref().and_then(|w| w.for_peer_ref(&self.sel));
            if !same(old.as_deref(), new.as_deref()) {
                self.mark(c.id);
            }
        }
    }

    /// The peer's name or address changed, and with them which announcements select it.
    pub fn set_selector(&mut self, t: &ExportTable, sel: Selector) {
        if sel == self.sel {
            return;
        }
        let old = std::mem::replace(&mut self.sel, sel);
        if !self.up {
            return;
        }
        let ids: Vec<u32> = t
            .iter_wanted()
            .filter(|(_, w)| !same(w.for_peer_ref(&old).as_deref(), w.for_peer_ref(&self.sel).as_deref()))
            .map(|(id, _)| id)
            .collect();
        // Prefixes on the wire that are no longer wanted at all are already marked.
        for id in ids {
            self.mark(id);
        }
    }

    /// What is on the wire to the peer, and the encoder it went out with (None before the first batch
    /// of a session). A prefix whose change the writer has not pulled yet shows as it will be sent.
    pub fn sent(&self, t: &ExportTable) -> (Option<Encoder>, Vec<(IpNet, Attrs)>) {
        let routes = self
            .sent
            .ones()
            .filter_map(|id| {
                let (p, w) = t.get(id)?;
                Some((p, w?.for_peer(&self.sel)?))
            })
            .collect();
        (self.enc.clone(), routes)
    }

    /// Prefixes on the wire now, per family.
    pub fn advertised(&self) -> (u64, u64) {
        (self.have[0], self.have[1])
    }

    /// Prefixes this peer should have (MetalLB's `metallb_bgp_pending_prefixes_total`): wanted for it
    /// by its selector, whether or not the session is up; once a session has sent, only those its
    /// families and next hops can carry. Equal to [`AdjRibOut::advertised`]'s sum once converged.
    /// O(table): for scrapes, not for the data path.
    pub fn wanted(&self, t: &ExportTable) -> u64 {
        t.iter_wanted()
            .filter(|(id, w)| {
                w.for_peer_ref(&self.sel).is_some()
                    && match &self.enc {
                        Some(e) => t.get(*id).is_some_and(|(p, _)| e.carries(&p)),
                        None => true,
                    }
            })
            .count() as u64
    }

    /// Forgets what is on the wire and every mark (the session is gone, or the peer asked for everything
    /// again).
    fn forget_sent(&mut self) {
        self.epoch += 1;
        self.sent = Bits::default();
        self.dirty = Bits::default();
        self.pending = 0;
        self.cursor = 0;
        self.sweep = None;
        self.have = [0, 0];
    }

    /// Nothing on the wire, everything to be looked at: a sweep from the first id, with no dirty bit
    /// beside it (a bit ahead of the sweep would send its prefix twice).
    fn forget_sent_and_sweep(&mut self) {
        self.forget_sent();
        self.sweep = Some(0);
    }

    /// The session came up: the peer has nothing, so everything it wants is dirty; End-of-RIB follows
    /// the initial table for each family (RFC 4724 §4.1).
    pub fn session_up(&mut self, families: &[Family]) {
        self.forget_sent_and_sweep();
        self.up = true;
        self.eor_pending = families.to_vec();
    }

    pub fn session_down(&mut self) {
        self.forget_sent();
        self.up = false;
        self.enc = None;
        self.eor_pending.clear();
    }

    /// Soft reset outbound / ROUTE-REFRESH received (RFC 2918 §4): send everything again.
    pub fn resend_all(&mut self) {
        if self.up {
            self.forget_sent_and_sweep();
        }
    }

    /// Is there anything to send?
    pub fn pending(&self) -> bool {
        self.up && (self.pending > 0 || self.sweep.is_some() || !self.eor_pending.is_empty())
    }

    /// The next id to look at: marked ones first (changes behind the sweep), then the sweep's.
    fn next_dirty(&mut self, t: &ExportTable) -> Option<u32> {
        if self.pending == 0 {
            let next = self.sweep?;
            if next >= t.id_end() {
                self.sweep = None;
                return None;
            }
            self.sweep = Some(next + 1);
            return Some(next);
        }
        let words = self.dirty.0.len();
        for _ in 0..=words {
            if self.cursor >= words {
                self.cursor = 0;
            }
            let w = self.dirty.0.get_mut(self.cursor)?;
            if *w != 0 {
                let b = w.trailing_zeros();
                *w &= *w - 1;
                self.pending -= 1;
                return Some((self.cursor * 64) as u32 + b);
            }
            self.cursor += 1;
        }
        self.pending = 0; // not reached: `pending` counts the set bits
        None
    }

    /// Encodes the next batch of UPDATEs (at most `limit` prefixes, and [`BATCH_MAX`]) into `out`.
    pub fn take_batch(&mut self, t: &ExportTable, enc: &Encoder, out: &mut BytesMut, limit: usize) -> BatchStats {
        let mut st = BatchStats::default();
        if !self.up {
            return st;
        }
        let mut withdraw: [Vec<IpNet>; 2] = [Vec::new(), Vec::new()];
        // Groups of prefixes with equal attributes, per family. Attributes are interned, so equal ones
        // share a pointer. A batch usually has one group: the group used last is tried before the index.
        // Their lists come from this thread's pool and go back to it (growing a new list for every batch
        // was a seventh of a batch's time, in copies).
        let mut groups: Vec<(bool, Attrs, Vec<IpNet>)> = Vec::new();
        let carries = [IpNet::V4(Default::default()), IpNet::V6(Default::default())].map(|p| enc.carries(&p));
        let mut index: HashMap<(bool, *const RouteAttrs), usize, foldhash::fast::RandomState> = HashMap::default();
        let mut last = 0;
        let mut taken = 0;
        let limit = limit.clamp(1, BATCH_MAX);
        while taken < limit {
            let Some(id) = self.next_dirty(t) else { break };
            taken += 1;
            // A freed slot: no session has it on the wire, this one included.
            let Some((p, want)) = t.get(id) else { continue };
            let v6 = fam_index(&p);
            let want = want.filter(|_| carries[v6]).and_then(|w| w.for_peer_ref(&self.sel));
            match want {
                Some(w) => {
                    if self.sent.set(id) {
                        self.have[v6] += 1;
                    }
                    let key = (v6 == 1, Arc::as_ptr(&*w));
                    let hit = |g: &(bool, Attrs, Vec<IpNet>)| (g.0, Arc::as_ptr(&g.1)) == key;
                    if !groups.get(last).is_some_and(hit) {
                        last = *index.entry(key).or_insert_with(|| {
                            groups.push((v6 == 1, w.into_owned(), lists::take()));
                            groups.len() - 1
                        });
                    }
                    groups[last].2.push(p);
                }
                None => {
                    if self.sent.clear(id) {
                        self.have[v6] -= 1;
                        withdraw[v6].push(p);
                    }
                }
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
                    let fam = if v6 == 1 { Family::IPV6_UNICAST } else { Family::IPV4_UNICAST };
                    packer.unreach_mp(fam, rest, out)
                };
                st.updates += 1;
                st.withdrawn += n as u64;
                rest = rest.get(n.max(1)..).unwrap_or_default();
            }
        }
        groups.sort_by(|a, b| a.2.first().cmp(&b.2.first())); // deterministic order on the wire
        for (_, attrs, mut list) in groups {
            let v6 = matches!(list.first(), Some(IpNet::V6(_)));
            let mut rest = list.as_slice();
            let legacy = !v6 && enc.v4_over_v6.is_none();
            let bytes = enc.encoded(&attrs, legacy);
            while !rest.is_empty() {
                let n = if legacy {
                    packer.reach_v4(&bytes, rest, out)
                } else if v6 {
                    let nh =
                        MpNextHop::V6 { global: enc.next_hop_v6.unwrap_or(Ipv6Addr::UNSPECIFIED), link_local: None };
                    packer.reach_mp(Family::IPV6_UNICAST, &nh, &bytes, rest, out)
                } else {
                    let nh =
                        MpNextHop::V6 { global: enc.v4_over_v6.unwrap_or(Ipv6Addr::UNSPECIFIED), link_local: None };
                    packer.reach_mp(Family::IPV4_UNICAST, &nh, &bytes, rest, out)
                };
                if n == 0 {
                    // The attributes alone do not fit in a message: these prefixes cannot be sent.
                    for p in rest {
                        if t.id_of(p).is_some_and(|id| self.sent.clear(id)) {
                            self.have[fam_index(p)] -= 1;
                        }
                    }
                    break;
                }
                st.updates += 1;
                st.announced += n as u64;
                rest = rest.get(n..).unwrap_or_default();
            }
            list.clear();
            lists::give(list);
        }
        if self.pending == 0 && self.sweep.is_none() && !self.eor_pending.is_empty() {
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
pub(crate) mod tests {
    use super::*;
    use crate::bgp::export::Want;
    use crate::bgp::wire::{decode, frame, DecodeCtx, Message};

    pub(crate) fn enc(ibgp: bool) -> Encoder {
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

    /// The length of the whole messages at the start of `b`.
    pub(crate) fn complete_len(b: &[u8]) -> usize {
        let mut n = 0;
        while let Ok(Some(k)) = frame(&b[n..], 4096) {
            n += k;
        }
        n
    }

    /// The UPDATEs among the whole messages at the start of `b`.
    pub(crate) fn messages_prefix(b: &[u8]) -> Vec<Update> {
        messages(&b[..complete_len(b)])
    }

    pub(crate) fn messages(mut b: &[u8]) -> Vec<Update> {
        let mut v = Vec::new();
        while let Ok(Some(n)) = frame(b, 4096) {
            match decode(&b[..n], &DecodeCtx { four_octet_as: true, ibgp: true }).unwrap() {
                Message::Update(u) => v.push(u),
                m => panic!("{m:?}"),
            }
            b = &b[n..];
        }
        assert!(b.is_empty());
        v
    }

    /// The shared table and one peer's Adj-RIB-Out, changed together as the speaker does.
    struct Rig {
        t: ExportTable,
        rib: AdjRibOut,
    }

    impl Rig {
        fn new() -> Self {
            Rig {
                t: ExportTable::new(),
                rib: AdjRibOut::new(Selector { name: "r1".into(), address: "192.0.2.2".parse().unwrap() }),
            }
        }
        fn set(&mut self, p: &str, a: Option<&Attrs>) {
            self.set_want(p.parse().unwrap(), a.map(|a| Want::All(a.clone())));
        }
        fn set_want(&mut self, p: IpNet, w: Option<Want>) {
            self.t.collect_unused(|ids| keep_on_wire([&self.rib], ids));
            let c: Vec<Change> = self.t.set(p, w).into_iter().collect();
            self.rib.changed(&c);
        }
        fn up(&mut self, f: &[Family]) {
            self.rib.session_up(f);
        }
        fn drain(&mut self, e: &Encoder) -> Vec<Update> {
            let mut out = BytesMut::new();
            while self.rib.pending() {
                self.rib.take_batch(&self.t, e, &mut out, BATCH_MAX);
            }
            messages(&out)
        }
    }

    fn attrs(med: Option<u32>) -> Attrs {
        Arc::new(RouteAttrs { med, ..Default::default() })
    }

    #[test]
    fn initial_table_then_end_of_rib_for_each_family() {
        let mut r = Rig::new();
        let a: Attrs = Arc::new(RouteAttrs { communities: [42].into(), ..Default::default() });
        for i in 0..3u8 {
            r.set(&format!("203.0.113.{i}/32"), Some(&a));
        }
        r.set("2001:db8::10/128", Some(&a));
        r.up(&[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        let u = r.drain(&enc(false));
        assert_eq!(u.len(), 4, "one v4 UPDATE with 3 prefixes, one v6, two End-of-RIB: {u:#?}");
        let v4 = u.iter().find(|u| !u.nlri.is_empty()).unwrap();
        assert_eq!(v4.nlri.len(), 3);
        assert_eq!(v4.attrs.as_path, Some(AsPath::sequence(vec![65001])));
        assert_eq!(v4.attrs.local_pref, None, "no LOCAL_PREF to eBGP");
        assert_eq!(u.iter().filter_map(|u| u.end_of_rib()).count(), 2);
    }

    #[test]
    fn a_batch_takes_at_most_its_limit_and_the_limit_grows_to_the_maximum() {
        let mut r = Rig::new();
        let a = attrs(None);
        for i in 0..1000 {
            r.set_want(host(i), Some(Want::All(a.clone())));
        }
        r.up(&[Family::IPV4_UNICAST]);
        let e = enc(false);
        let mut out = BytesMut::new();
        let st = r.rib.take_batch(&r.t, &e, &mut out, BATCH_FIRST);
        assert_eq!(st.announced, BATCH_FIRST as u64);
        assert_eq!(st.end_of_rib, 0, "End-of-RIB only after the whole table");
        let st = r.rib.take_batch(&r.t, &e, &mut out, next_batch_limit(BATCH_FIRST));
        assert_eq!((st.announced, st.end_of_rib), (1000 - BATCH_FIRST as u64, 1));
        let sizes: Vec<usize> =
            std::iter::successors(Some(BATCH_FIRST), |&l| Some(next_batch_limit(l))).take(8).collect();
        assert_eq!(sizes, [512, 1024, 2048, 4096, 8192, 16384, 16384, 16384]);
    }

    fn host(i: u32) -> IpNet {
        IpNet::V4(ipnet::Ipv4Net::new(std::net::Ipv4Addr::from(0x0a00_0000 + i), 32).unwrap())
    }

    #[test]
    fn changes_during_the_initial_sweep_go_out_once_with_their_latest_attributes() {
        let mut r = Rig::new();
        let (a, b) = (attrs(None), attrs(Some(7)));
        for i in 0..2000 {
            r.set_want(host(i), Some(Want::All(a.clone())));
        }
        r.up(&[Family::IPV4_UNICAST]);
        let e = enc(false);
        let mut out = BytesMut::new();
        assert_eq!(r.rib.take_batch(&r.t, &e, &mut out, 512).announced, 512);
        // behind the sweep, ahead of it, withdrawn ahead of it, and a new slot
        r.set_want(host(10), Some(Want::All(b.clone())));
        r.set_want(host(1500), Some(Want::All(b.clone())));
        r.set_want(host(1600), None);
        r.set_want(host(5000), Some(Want::All(a.clone())));
        let u = r.drain(&e);
        let mut seen: Vec<(IpNet, Option<u32>)> =
            u.iter().flat_map(|u| u.nlri.iter().map(|p| (IpNet::V4(*p), u.attrs.med))).collect();
        assert!(u.iter().all(|u| u.withdrawn.is_empty()), "nothing was on the wire to withdraw");
        assert_eq!(seen.len(), 1 + (2000 - 512 - 1) + 1, "each prefix once: {} NLRI", seen.len());
        seen.sort();
        seen.dedup_by_key(|x| x.0);
        assert_eq!(seen.len(), 1489, "no prefix twice");
        let med = |p: IpNet| seen.iter().find(|x| x.0 == p).map(|x| x.1);
        assert_eq!(med(host(10)), Some(Some(7)), "changed behind the sweep: sent again");
        assert_eq!(med(host(1500)), Some(Some(7)), "changed ahead of it: sent once, as it is now");
        assert_eq!(med(host(1600)), None, "withdrawn before the sweep got there: never sent");
        assert_eq!(med(host(5000)), Some(None));
        assert_eq!(u.iter().filter_map(|u| u.end_of_rib()).count(), 1, "End-of-RIB after the sweep");
        assert_eq!(r.rib.advertised(), (2000 - 1 + 1, 0));
    }

    #[test]
    fn a_withdrawn_slot_is_freed_once_no_session_has_it_on_the_wire() {
        let mut t = ExportTable::new();
        let sel = |n: &str| Selector { name: n.into(), address: "192.0.2.2".parse().unwrap() };
        let (mut up, mut down) = (AdjRibOut::new(sel("up")), AdjRibOut::new(sel("down")));
        let e = enc(false);
        let mut out = BytesMut::new();
        let p = host(1);
        up.session_up(&[Family::IPV4_UNICAST]);
        let c: Vec<Change> = t.set(p, Some(Want::All(attrs(None)))).into_iter().collect();
        up.changed(&c);
        down.changed(&c);
        up.take_batch(&t, &e, &mut out, BATCH_MAX);
        let c: Vec<Change> = t.set(p, None).into_iter().collect();
        up.changed(&c);
        down.changed(&c);
        t.collect_unused(|ids| keep_on_wire([&down, &up], ids));
        assert_eq!(t.id_of(&p), Some(c[0].id), "on the wire of one session: kept");
        assert_eq!(up.take_batch(&t, &e, &mut out, BATCH_MAX).withdrawn, 1);
        t.collect_unused(|ids| keep_on_wire([&down, &up], ids));
        assert_eq!(t.id_of(&p), None, "off every wire: freed");
        assert!(t.set(host(2), Some(Want::All(attrs(None)))).is_some_and(|n| n.id == c[0].id), "and its id reused");
    }

    #[test]
    fn only_differences_go_on_the_wire() {
        let mut r = Rig::new();
        let a = attrs(None);
        r.up(&[Family::IPV4_UNICAST]);
        r.set("203.0.113.1/32", Some(&a));
        assert_eq!(r.drain(&enc(true)).len(), 2); // the route and End-of-RIB
        r.set("203.0.113.1/32", Some(&attrs(None))); // equal attributes: nothing to send
        assert!(!r.rib.pending());
        // announce then withdraw before the writer pulls: nothing at all goes out
        r.set("203.0.113.2/32", Some(&a));
        r.set("203.0.113.2/32", None);
        assert!(r.drain(&enc(true)).is_empty());
        r.set("203.0.113.1/32", None);
        let u = r.drain(&enc(true));
        assert_eq!(u.len(), 1);
        assert_eq!(u[0].withdrawn, vec!["203.0.113.1/32".parse().unwrap()]);
        r.t.collect_unused(|ids| keep_on_wire([&r.rib], ids));
        assert!(r.t.is_empty(), "withdrawn everywhere: the slots are freed");
    }

    #[test]
    fn ibgp_gets_local_pref_and_empty_as_path() {
        let mut r = Rig::new();
        r.up(&[Family::IPV4_UNICAST]);
        r.set("203.0.113.1/32", Some(&Arc::new(RouteAttrs { local_pref: Some(300), ..Default::default() })));
        let u = r.drain(&enc(true));
        assert_eq!(u[0].attrs.local_pref, Some(300));
        assert_eq!(u[0].attrs.as_path, Some(AsPath::default()));
    }

    #[test]
    fn many_prefixes_are_split_into_full_messages() {
        let mut r = Rig::new();
        let a = attrs(None);
        for i in 0..20_000u32 {
            let ip = Ipv4Addr::from(0x0a00_0000 + i);
            r.set_want(IpNet::from(std::net::IpAddr::V4(ip)), Some(Want::All(a.clone())));
        }
        r.up(&[Family::IPV4_UNICAST]);
        let u = r.drain(&enc(false));
        let total: usize = u.iter().map(|u| u.nlri.len()).sum();
        assert_eq!(total, 20_000);
        // 5 bytes per /32: 809 per 4096-byte message, so 25 at best; one partial message per batch.
        let with_routes = u.iter().filter(|u| u.end_of_rib().is_none()).count();
        assert!(with_routes <= 26, "{with_routes} messages");
        assert_eq!(r.rib.advertised(), (20_000, 0));
    }

    #[test]
    fn counts_and_the_sent_view_follow_the_wire() {
        let mut r = Rig::new();
        let a = attrs(None);
        r.set("203.0.113.1/32", Some(&a));
        r.set("2001:db8::1/128", Some(&a));
        assert_eq!(r.rib.advertised(), (0, 0));
        assert_eq!(r.rib.wanted(&r.t), 2, "wanted before the session is up");
        r.up(&[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        r.drain(&enc(false));
        assert_eq!(r.rib.advertised(), (1, 1));
        assert_eq!(r.rib.wanted(&r.t), 2);
        assert_eq!(r.rib.sent(&r.t).1.len(), 2);
        r.set("2001:db8::1/128", None);
        assert_eq!(r.rib.wanted(&r.t), 1, "wanted follows the table at once");
        assert_eq!(r.rib.advertised(), (1, 1), "still on the wire until the batch");
        r.t.collect_unused(|ids| keep_on_wire([&r.rib], ids));
        assert_eq!(r.t.len(), 2, "the slot stays while a session has it on the wire");
        r.drain(&enc(false));
        assert_eq!(r.rib.advertised(), (1, 0));
        r.rib.resend_all();
        assert_eq!(r.rib.advertised(), (0, 0));
        assert_eq!(r.drain(&enc(false)).iter().map(|u| u.nlri.len()).sum::<usize>(), 1);
        assert_eq!(r.rib.advertised(), (1, 0));
        r.rib.session_down();
        assert_eq!(r.rib.advertised(), (0, 0));
        r.t.collect_unused(|ids| keep_on_wire([&r.rib], ids));
        assert_eq!(r.t.len(), 1);
        assert!(r.rib.sent(&r.t).1.is_empty());
    }

    #[test]
    fn wanted_leaves_out_what_the_session_cannot_carry() {
        let mut r = Rig::new();
        let a = attrs(None);
        r.set("203.0.113.1/32", Some(&a));
        r.set("2001:db8::1/128", Some(&a));
        r.up(&[Family::IPV4_UNICAST]);
        let v4_only = Encoder { next_hop_v6: None, ..enc(false) };
        r.drain(&v4_only);
        assert_eq!(r.rib.advertised(), (1, 0));
        assert_eq!(r.rib.wanted(&r.t), 1, "an IPv6 prefix with no IPv6 next hop is not pending");
    }

    #[test]
    fn bulk_changes_while_up_go_out_once_each() {
        let mut r = Rig::new();
        r.up(&[Family::IPV4_UNICAST]);
        r.drain(&enc(false));
        let (a, b) = (attrs(None), attrs(Some(5)));
        let load = |r: &mut Rig, x: &Attrs| {
            r.t.collect_unused(|ids| keep_on_wire([&r.rib], ids));
            let c: Vec<Change> = (0..3000u32)
                .filter_map(|i| {
                    r.t.set(
                        IpNet::from(std::net::IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))),
                        Some(Want::All(x.clone())),
                    )
                })
                .collect();
            r.rib.changed(&c);
        };
        // three loads before the writer pulls: one bit per prefix, each prefix sent once
        load(&mut r, &a);
        load(&mut r, &b);
        load(&mut r, &a);
        assert_eq!(r.rib.pending, 3000);
        let u = r.drain(&enc(false));
        assert_eq!(u.iter().map(|u| u.nlri.len()).sum::<usize>(), 3000, "each prefix once, with the last attributes");
        assert!(u.iter().all(|u| u.attrs.med.is_none()));
        assert_eq!(r.rib.advertised(), (3000, 0));
        r.set("10.0.0.1/32", None);
        assert_eq!(r.drain(&enc(false))[0].withdrawn, vec!["10.0.0.1/32".parse().unwrap()]);
    }

    #[test]
    fn each_peer_gets_the_announcements_that_select_it() {
        let mut r = Rig::new();
        let body = |med: u32, peers: &[&str]| {
            Arc::new(crate::bgp::export::Body {
                attrs: attrs(Some(med)),
                peers: peers.iter().map(|s| s.to_string()).collect(),
            })
        };
        let (p4, q4): (ipnet::Ipv4Net, ipnet::Ipv4Net) =
            ("203.0.113.1/32".parse().unwrap(), "203.0.113.2/32".parse().unwrap());
        let (p, q) = (IpNet::V4(p4), IpNet::V4(q4));
        r.set_want(p, Some(Want::Select(Arc::new(vec![body(7, &["r2"])]))));
        r.set_want(q, Some(Want::Select(Arc::new(vec![body(8, &["r1"])]))));
        r.up(&[Family::IPV4_UNICAST]);
        let u = r.drain(&enc(false));
        assert_eq!(u[0].nlri, vec![q4], "only the announcement naming r1");
        // renamed to r2: q is withdrawn, p announced
        let sel = Selector { name: "r2".into(), address: "192.0.2.2".parse().unwrap() };
        r.rib.set_selector(&r.t, sel);
        let u = r.drain(&enc(false));
        assert_eq!(u.iter().flat_map(|u| u.withdrawn.clone()).collect::<Vec<_>>(), vec![q4]);
        assert_eq!(u.iter().flat_map(|u| u.nlri.clone()).collect::<Vec<_>>(), vec![p4]);
        assert_eq!(r.rib.sent(&r.t).1, vec![(p, attrs(Some(7)))]);
    }

    #[test]
    fn ipv6_is_held_back_without_a_next_hop() {
        let mut r = Rig::new();
        r.up(&[Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
        r.set("2001:db8::1/128", Some(&attrs(None)));
        let u = r.drain(&Encoder { next_hop_v6: None, ..enc(false) });
        assert!(u.iter().all(|u| u.end_of_rib().is_some()), "{u:?}");
    }

    #[test]
    fn ipv4_over_ipv6_next_hop_uses_mp_reach() {
        let mut r = Rig::new();
        r.up(&[Family::IPV4_UNICAST]);
        r.set("203.0.113.1/32", Some(&attrs(None)));
        let e = Encoder { next_hop_v4: None, v4_over_v6: Some("2001:db8::1".parse().unwrap()), ..enc(false) };
        let u = r.drain(&e);
        let m = u[0].attrs.mp_reach.as_ref().unwrap();
        assert_eq!(m.family, Family::IPV4_UNICAST);
        assert_eq!(m.next_hop, MpNextHop::V6 { global: "2001:db8::1".parse().unwrap(), link_local: None });
        assert!(u[0].attrs.next_hop.is_none());
    }
}
