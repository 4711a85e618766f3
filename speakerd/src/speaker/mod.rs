//! The speaker: the desired state (peers, and each owner's set of announcements) and the peer tasks
//! that make the network match it. The gRPC API and the config file both call in here.
//!
//! Ownership: each owner (k8s-bridge, speakerctl, the config file, ...) has its own set of
//! announcements; a call only ever edits its owner's set. What a peer is sent for a prefix is the merge
//! of every owner's announcement of that prefix that selects the peer
//! ([`RouteAttrs::merge`](crate::config::spec::RouteAttrs::merge)).
//!
//! - `mod.rs` (here): the [`Speaker`], its lock, the announcement and Layer 2 entry points, the events
//!   they emit and the export to the peers.
//! - `error`: what can go wrong, in the speaker's terms.
//! - `desired`: the owners' sets, interning, the peer plan and the Layer 2 merge (pure).
//! - `peers`: the running peers, listeners and BFD hook-up (the only place that spawns).
mod desired;
mod error;
mod peers;

pub use desired::SetPeersOutcome;
pub use error::SpeakerError;

use crate::bgp::export::{Body, Change, ExportTable};
use crate::bgp::rib_out::keep_on_wire;
use crate::bgp::session::{Exports, PeerCmd, PeerShared, PeerStatus};
use crate::config::spec::{AdvertSpec, ConfigError, L2Spec, PeerSpec};
use crate::events::{AnnouncementChange, AnnouncementEvent, Event};
use crate::l2::control::L2Control;
use desired::{change_of, l2_counts, list_owned, merge_l2, Announcements, L2Sets, OwnerSet};
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Process-wide defaults and limits.
#[derive(Debug, Clone)]
pub struct SpeakerConfig {
    /// Local ASN for peers that do not set one.
    pub local_asn: Option<u32>,
    /// BGP Identifier for peers that do not set one (else the host's first non-loopback IPv4 address).
    pub router_id: Option<Ipv4Addr>,
    pub max_peers: usize,
    pub max_announcements_per_owner: usize,
    /// Announce 0.0.0.0/0 and ::/0 when a client asks (`--allow-default-route`). Off by default: a
    /// default route sent to a top-of-rack switch by mistake can take a whole network down.
    pub allow_default_route: bool,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        Self {
            local_asn: None,
            router_id: None,
            max_peers: 4096,
            max_announcements_per_owner: 2_000_000,
            allow_default_route: false,
        }
    }
}

/// A peer as the API shows it.
#[derive(Debug, Clone)]
pub struct PeerView {
    pub spec: PeerSpec,
    /// Who added the peer (AddPeer's owner, SetPeers' owner, "config-file").
    pub owner: String,
    pub local_asn: u32,
    pub status: PeerStatus,
    /// Prefixes on the wire to this peer: (IPv4, IPv6).
    pub advertised: (u64, u64),
    /// Administratively down ([`Speaker::set_peer_enabled`]): no session, no connection accepted.
    pub admin_down: bool,
}

struct PeerEntry {
    spec: PeerSpec,
    owner: String,
    local_asn: u32,
    shared: Arc<PeerShared>,
    cmds: mpsc::Sender<PeerCmd>,
    /// Administratively down: the task has been stopped and is not restarted until enabled.
    disabled: bool,
}

#[derive(Default)]
struct Core {
    peers: BTreeMap<IpAddr, PeerEntry>,
    ads: Announcements,
    /// Layer 2 announcements per owner.
    l2: L2Sets,
}

type Dispatch = Arc<RwLock<HashMap<IpAddr, mpsc::Sender<PeerCmd>>>>;

/// The speaker. Cheap to share behind an `Arc`.
pub struct Speaker {
    core: tokio::sync::Mutex<Core>,
    /// What every peer should be sent, derived from the owners' sets; written under `core`.
    exports: Arc<Exports>,
    events: broadcast::Sender<Event>,
    cfg: SpeakerConfig,
    /// The defaults for peers that set no local ASN / router ID: `cfg`'s at start, changeable at run
    /// time ([`Speaker::set_defaults`], the GoBGP API's StartBgp).
    defaults: RwLock<(Option<u32>, Option<Ipv4Addr>)>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    dispatch: Dispatch,
    listeners: std::sync::Mutex<Vec<(Arc<TcpListener>, bool)>>,
    seed: std::sync::atomic::AtomicU64,
    l2: std::sync::OnceLock<Arc<L2Control>>,
    bfd: std::sync::OnceLock<crate::bfd::BfdManager>,
}

impl Speaker {
    pub fn new(cfg: SpeakerConfig, cancel: CancellationToken, tracker: TaskTracker) -> Arc<Self> {
        let (events, _) = broadcast::channel(4096);
        let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
        Arc::new(Self {
            core: tokio::sync::Mutex::new(Core::default()),
            exports: Arc::new(std::sync::RwLock::new(ExportTable::new())),
            events,
            defaults: RwLock::new((cfg.local_asn, cfg.router_id)),
            cfg,
            cancel,
            tracker,
            dispatch: Arc::default(),
            listeners: std::sync::Mutex::new(Vec::new()),
            seed: std::sync::atomic::AtomicU64::new(seed),
            l2: std::sync::OnceLock::new(),
            bfd: std::sync::OnceLock::new(),
        })
    }

    /// The default local ASN and router ID for peers that set none.
    pub fn defaults(&self) -> (Option<u32>, Option<Ipv4Addr>) {
        self.defaults.read().map(|d| *d).unwrap_or((self.cfg.local_asn, self.cfg.router_id))
    }

    /// Replaces the defaults. Peers already running keep the values they started with until their
    /// session is reset (as after a change of their own local_asn).
    pub fn set_defaults(&self, local_asn: Option<u32>, router_id: Option<Ipv4Addr>) {
        if let Ok(mut d) = self.defaults.write() {
            *d = (local_asn, router_id);
        }
        tracing::info!(?local_asn, ?router_id, "default local ASN and router ID set");
    }

    /// The sender of the event stream, for parts started beside the speaker (Layer 2 control).
    pub fn events(&self) -> broadcast::Sender<Event> {
        self.events.clone()
    }

    /// Attaches the BFD manager (once, at start-up).
    pub fn attach_bfd(&self, m: crate::bfd::BfdManager) {
        let _ = self.bfd.set(m);
    }

    pub fn bfd(&self) -> Option<&crate::bfd::BfdManager> {
        self.bfd.get()
    }

    /// Attaches the Layer 2 control (once, at start-up).
    pub fn attach_l2(&self, l2: Arc<L2Control>) {
        let _ = self.l2.set(l2);
    }

    pub fn l2(&self) -> Option<&Arc<L2Control>> {
        self.l2.get()
    }

    /// Replaces an owner's Layer 2 announcements. Returns (added, changed, removed).
    pub async fn set_l2(&self, owner: &str, specs: Vec<L2Spec>) -> Result<(u32, u32, u32), SpeakerError> {
        self.edit_l2(owner, |_| specs.into_iter().map(|s| (s.ip, s)).collect()).await
    }

    /// Edits an owner's Layer 2 announcements: `announce` added or replacing the same IP, then
    /// `withdraw` removed. Returns (added, changed, removed).
    pub async fn update_l2(
        &self,
        owner: &str,
        announce: Vec<L2Spec>,
        withdraw: &[IpAddr],
    ) -> Result<(u32, u32, u32), SpeakerError> {
        self.edit_l2(owner, |old| {
            let mut new = old.clone();
            new.extend(announce.into_iter().map(|s| (s.ip, s)));
            for ip in withdraw {
                new.remove(&crate::netif::canonical(*ip));
            }
            new
        })
        .await
    }

    /// Sets an owner's Layer 2 set to `f(current)` and hands the merge of every owner to Layer 2.
    async fn edit_l2(
        &self,
        owner: &str,
        f: impl FnOnce(&BTreeMap<IpAddr, L2Spec>) -> BTreeMap<IpAddr, L2Spec>,
    ) -> Result<(u32, u32, u32), SpeakerError> {
        let l2 = self.l2.get().ok_or(SpeakerError::Layer2Off)?;
        let mut core = self.core.lock().await;
        let new = f(core.l2.get(owner).unwrap_or(&BTreeMap::new()));
        if new.len() > self.cfg.max_announcements_per_owner {
            return Err(SpeakerError::TooManyL2Announcements { max: self.cfg.max_announcements_per_owner });
        }
        let old = core.l2.remove(owner).unwrap_or_default();
        let (added, changed, removed) = l2_counts(&old, &new);
        if !new.is_empty() {
            core.l2.insert(owner.to_string(), new);
        }
        let merged = merge_l2(&core.l2);
        l2.set_desired(merged);
        if added + changed + removed > 0 {
            tracing::info!(owner, added, changed, removed, "layer 2 announcements updated");
        }
        Ok((added, changed, removed))
    }

    /// Layer 2 announcements of one owner or all, by IP then owner.
    pub async fn list_l2(&self, owner: Option<&str>) -> Vec<(String, L2Spec)> {
        list_owned(&self.core.lock().await.l2, owner)
    }

    /// Receives every event from now on. A receiver that falls more than 4096 events behind gets
    /// `Lagged` and should resynchronise from the list calls.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Adds or replaces announcements in an owner's set. Costs what changes, not the size of the set.
    pub async fn announce(&self, owner: &str, adverts: Vec<AdvertSpec>) -> Result<(), SpeakerError> {
        self.announce_from(owner, adverts.into_iter().map(Ok)).await
    }

    /// [`Speaker::announce`] from announcements validated one at a time as they are read (a request
    /// decoded in place, `api/v1/bulk.rs`): each is interned into the new set as it comes, so neither
    /// the request's list nor a list of specs is held whole. The first invalid one refuses the call,
    /// with nothing changed.
    pub async fn announce_from<I>(&self, owner: &str, adverts: I) -> Result<(), SpeakerError>
    where
        I: Iterator<Item = Result<AdvertSpec, ConfigError>>,
    {
        let mut core = self.core.lock().await;
        // Of two announcements of one prefix, the last wins, as in SetAnnouncements.
        let new = self.intern_all(&mut core, adverts)?;
        let mut set = core.ads.owners.remove(owner).unwrap_or_default();
        let adding = new.keys().filter(|p| !set.contains_key(p)).count();
        if let Err(e) = self.check_size(set.len() + adding) {
            if !set.is_empty() {
                core.ads.owners.insert(owner.to_string(), set);
            }
            return Err(e);
        }
        let mut changes = Vec::new();
        for (p, body) in new {
            if let Some(change) = change_of(set.get(&p), &body) {
                changes.push((change, p, body.clone()));
            }
            set.insert(p, body);
        }
        let set = core.ads.grew(owner, set, adding);
        self.reserve_exports(changes.iter().filter(|c| c.0 == AnnouncementChange::Added).map(|c| &c.1));
        self.commit(&mut core, owner, set, from_list(changes));
        Ok(())
    }

    /// Removes prefixes from an owner's set; returns how many it had.
    pub async fn withdraw(&self, owner: &str, prefixes: &[IpNet]) -> Result<u32, SpeakerError> {
        let mut core = self.core.lock().await;
        let mut set = core.ads.owners.remove(owner).unwrap_or_default();
        let changes: Vec<_> =
            prefixes.iter().filter_map(|p| Some((AnnouncementChange::Removed, *p, set.remove(p)?))).collect();
        let removed = changes.len() as u32;
        self.commit(&mut core, owner, set, from_list(changes));
        Ok(removed)
    }

    /// Replaces an owner's whole set. Returns (added, changed, removed).
    pub async fn set_announcements(
        &self,
        owner: &str,
        adverts: Vec<AdvertSpec>,
    ) -> Result<(u32, u32, u32), SpeakerError> {
        self.set_announcements_from(owner, adverts.into_iter().map(Ok)).await
    }

    /// [`Speaker::set_announcements`] from announcements validated one at a time as they are read (see
    /// [`Speaker::announce_from`]).
    ///
    /// The new set is not built beside the old one when it can be avoided: announcements that come in
    /// ascending prefix order (as every client of ours sends them) are walked against the owner's set,
    /// which is then edited in place, so a push of an unchanged set costs no second set and a change
    /// costs what changed. An owner with no set yet gets the new one as it is built. Only announcements
    /// out of order make the new set whole beside the old one, as before.
    pub async fn set_announcements_from<I>(&self, owner: &str, adverts: I) -> Result<(u32, u32, u32), SpeakerError>
    where
        I: Iterator<Item = Result<AdvertSpec, ConfigError>>,
    {
        let mut core = self.core.lock().await;
        let mut old = core.ads.owners.remove(owner).unwrap_or_default();
        let walked = if old.is_empty() {
            self.intern_all(&mut core, adverts).map(Walk::Unsorted)
        } else {
            self.walk(&mut core, &old, adverts)
        };
        let walked = walked.and_then(|w| {
            self.check_size(match &w {
                Walk::Sorted { len, .. } => *len,
                Walk::Unsorted(new) => new.len(),
            })?;
            Ok(w)
        });
        let walked = match walked {
            Ok(w) => w,
            Err(e) => {
                if !old.is_empty() {
                    core.ads.owners.insert(owner.to_string(), old);
                }
                return Err(e);
            }
        };
        match walked {
            Walk::Sorted { mut upserts, removed, .. } => {
                let removed: Vec<Changed> = removed
                    .into_iter()
                    .filter_map(|p| Some((AnnouncementChange::Removed, p, old.remove(&p)?)))
                    .collect();
                for (_, p, b) in &upserts {
                    old.insert(*p, b.clone());
                }
                let added = upserts.iter().filter(|c| c.0 == AnnouncementChange::Added).count();
                let old = core.ads.grew(owner, old, added);
                self.reserve_exports(upserts.iter().filter(|c| c.0 == AnnouncementChange::Added).map(|c| &c.1));
                upserts.extend(removed);
                Ok(self.commit(&mut core, owner, old, from_list(upserts)))
            }
            Walk::Unsorted(new) => {
                let len = new.len();
                let new = core.ads.grew(owner, new, len);
                self.reserve_exports(new.keys());
                Ok(self.commit(&mut core, owner, new, diff_against(owner, old)))
            }
        }
    }

    /// Reads `adverts` against the owner's current set `old` as long as they come in strictly ascending
    /// prefix order: what they add or change, and which prefixes of `old` they leave out. At the first
    /// one out of order, the new set read so far is made whole and the rest interned into it
    /// ([`Walk::Unsorted`], where the last of one prefix wins). Errors as [`Speaker::intern_all`].
    fn walk<I>(&self, core: &mut Core, old: &OwnerSet, adverts: I) -> Result<Walk, SpeakerError>
    where
        I: Iterator<Item = Result<AdvertSpec, ConfigError>>,
    {
        let (mut upserts, mut removed, mut len) = (Vec::new(), Vec::new(), 0usize);
        let mut olds = old.iter().peekable();
        let mut last: Option<IpNet> = None;
        let mut adverts = adverts.enumerate();
        while let Some((i, a)) = adverts.next() {
            let (p, body) = self.intern_one(core, i, a)?;
            if let Some(l) = last.filter(|l| p <= *l) {
                // Out of order: the new set so far is what `old` holds up to `l`, less what was left
                // out, with the additions and changes.
                let mut new: OwnerSet = old
                    .range(..=l)
                    .filter(|(q, _)| removed.binary_search(*q).is_err())
                    .map(|(q, b)| (*q, b.clone()))
                    .collect();
                for (_, q, b) in upserts {
                    new.insert(q, b);
                }
                new.insert(p, body);
                for (i, a) in adverts {
                    let (p, body) = self.intern_one(core, i, a)?;
                    new.insert(p, body);
                }
                return Ok(Walk::Unsorted(new));
            }
            last = Some(p);
            len += 1;
            while let Some((q, _)) = olds.next_if(|(q, _)| **q < p) {
                removed.push(*q);
            }
            let before = olds.next_if(|(q, _)| **q == p).map(|(_, b)| b);
            if let Some(change) = change_of(before, &body) {
                upserts.push((change, p, body));
            }
        }
        removed.extend(olds.map(|(q, _)| *q));
        Ok(Walk::Sorted { upserts, removed, len })
    }

    /// Every path that announces (the speaker.v1 API, the config file, the GoBGP API) comes through
    /// [`Speaker::announce`] or [`Speaker::set_announcements`]: a default route is refused here unless
    /// the process was started with `--allow-default-route`.
    fn check_default_route(&self, i: usize, a: &AdvertSpec) -> Result<(), SpeakerError> {
        if self.cfg.allow_default_route || a.prefix.prefix_len() != 0 {
            return Ok(());
        }
        Err(SpeakerError::Invalid(ConfigError::new(
            format!("announcements[{i}].prefix"),
            format!(
                "{} is a default route: refused (start speakerd with --allow-default-route to announce it)",
                a.prefix
            ),
        )))
    }

    /// The owner set of `adverts`, interned one at a time (the last of one prefix wins). An invalid
    /// announcement or a refused default route ends it with that error; the interned bodies it made are
    /// collected later like any unused ones.
    fn intern_all<I>(&self, core: &mut Core, adverts: I) -> Result<OwnerSet, SpeakerError>
    where
        I: Iterator<Item = Result<AdvertSpec, ConfigError>>,
    {
        let mut new = OwnerSet::new();
        for (i, a) in adverts.enumerate() {
            let (p, body) = self.intern_one(core, i, a)?;
            new.insert(p, body);
        }
        Ok(new)
    }

    /// The `i`th announcement of a request, checked and interned.
    fn intern_one(
        &self,
        core: &mut Core,
        i: usize,
        a: Result<AdvertSpec, ConfigError>,
    ) -> Result<(IpNet, Arc<Body>), SpeakerError> {
        let a = a.map_err(SpeakerError::Invalid)?;
        self.check_default_route(i, &a)?;
        Ok(core.ads.intern(a))
    }

    /// Makes room in the export table for the prefixes of `prefixes` it has no slot for, at once: grown
    /// one slot at a time, its vector and index double, and each doubling holds the old and the new
    /// storage together for a moment.
    fn reserve_exports<'a>(&self, prefixes: impl Iterator<Item = &'a IpNet>) {
        if let Ok(mut t) = self.exports.write() {
            let missing = prefixes.filter(|p| t.id_of(p).is_none()).count();
            t.reserve(missing);
        }
    }

    fn check_size(&self, n: usize) -> Result<(), SpeakerError> {
        if n > self.cfg.max_announcements_per_owner {
            return Err(SpeakerError::TooManyAnnouncements { count: n, max: self.cfg.max_announcements_per_owner });
        }
        Ok(())
    }

    /// Every owner's announcement of one prefix, by owner.
    pub async fn announcements_of(&self, prefix: &IpNet) -> Vec<(String, AdvertSpec)> {
        self.core.lock().await.ads.of(prefix)
    }

    /// One owner's (or every owner's) announcements, by prefix then owner.
    pub async fn list_announcements(&self, owner: Option<&str>) -> Vec<(String, AdvertSpec)> {
        self.core.lock().await.ads.list(owner)
    }

    /// Stores an owner's new set, emits an event per change, and updates every peer for the changed
    /// prefixes. Returns (added, changed, removed).
    ///
    /// `next` hands out the changes a chunk at a time (at most [`EXPORT_CHUNK`], appended to the vector
    /// it is given, none when done), in the order their events are sent; each chunk is exported before
    /// the next is asked for, so no list of every change, of every changed prefix or of every table
    /// change is held at once.
    fn commit(
        &self,
        core: &mut Core,
        owner: &str,
        set: OwnerSet,
        mut next: impl FnMut(&Core, &mut Vec<Changed>),
    ) -> (u32, u32, u32) {
        if !set.is_empty() {
            core.ads.owners.insert(owner.to_string(), set);
        }
        let (mut added, mut changed, mut removed) = (0, 0, 0);
        let now = SystemTime::now();
        let mut chunk = Vec::new();
        let mut first = true;
        loop {
            chunk.clear();
            next(core, &mut chunk);
            if chunk.is_empty() {
                break;
            }
            for (change, p, body) in &chunk {
                match change {
                    AnnouncementChange::Added => added += 1,
                    AnnouncementChange::Changed => changed += 1,
                    AnnouncementChange::Removed => removed += 1,
                }
                // Built only when someone listens (a watch stream): an owner's bulk load makes no
                // events that nobody reads.
                if self.events.receiver_count() > 0 {
                    let _ = self.events.send(Event::Announcement(AnnouncementEvent {
                        change: *change,
                        owner: owner.to_string(),
                        advert: body.spec(*p),
                        at: now,
                    }));
                }
            }
            self.export(core, chunk.iter().map(|c| c.1), first);
            first = false;
        }
        if !first {
            tracing::info!(owner, added, changed, removed, "announcements updated");
        }
        core.ads.collect_unused();
        (added, changed, removed)
    }

    /// Recomputes what the peers should be sent for `prefixes` in the export table, then marks them in
    /// each peer's Adj-RIB-Out. The table's write lock is not held while the peers are marked: their
    /// writers go on meanwhile, and one that pulls a changed prefix early sends it once more at worst.
    /// `collect`: first free the slots no longer wanted nor on any wire (once per call of the API, at
    /// its first chunk).
    fn export(&self, core: &mut Core, prefixes: impl Iterator<Item = IpNet>, collect: bool) {
        let changes: Vec<Change> = {
            let Ok(mut t) = self.exports.write() else {
                return;
            };
            // Under the write lock no writer is pulling: the sessions' bits hold still (lock order:
            // table, then each rib).
            if collect {
                t.collect_unused(|ids| keep_on_wire(core.peers.values().map(|e| e.shared.rib_guard()), ids));
            }
            prefixes
                .filter_map(|p| {
                    let w = core.ads.want_of(&p);
                    t.set(p, w)
                })
                .collect()
        };
        // The first peers get their UPDATEs written by this call (see `PeerShared::changed`); past a
        // few, the writers do it, side by side on the worker threads, so that a call stays short.
        for (i, e) in core.peers.values().enumerate() {
            e.shared.changed(&changes, i < WRITE_THROUGH_PEERS);
        }
    }

    /// Stops every peer: Cease/Administrative Shutdown (or silence where graceful restart is up).
    pub fn shutdown(&self) {
        self.cancel.cancel();
    }
}

/// How many changes [`Speaker::commit`] exports at a time.
const EXPORT_CHUNK: usize = 4096;

/// One change of an owner's set: what it is, the prefix, and its body (the new one; the old one for
/// a removal).
type Changed = (AnnouncementChange, IpNet, Arc<Body>);

/// What [`Speaker::walk`] read.
enum Walk {
    /// The announcements came in ascending order: the additions and changes, in order, the prefixes
    /// of the old set they left out, in order, and how many prefixes they hold.
    Sorted { upserts: Vec<Changed>, removed: Vec<IpNet>, len: usize },
    /// The whole new set (the old one was empty, or the announcements came out of order).
    Unsorted(OwnerSet),
}

/// The changes of a list, a chunk at a time (see [`Speaker::commit`]).
fn from_list(changes: Vec<Changed>) -> impl FnMut(&Core, &mut Vec<Changed>) {
    let mut it = changes.into_iter();
    move |_, out| out.extend(it.by_ref().take(EXPORT_CHUNK))
}

/// The changes from `old` to the set `owner` holds now, a chunk at a time (see [`Speaker::commit`]):
/// the additions and changes in prefix order, then the removals in prefix order. Neither set is copied:
/// a cursor walks the new set, then the old one.
fn diff_against(owner: &str, old: OwnerSet) -> impl FnMut(&Core, &mut Vec<Changed>) + '_ {
    use std::ops::Bound::{Excluded, Unbounded};
    let mut in_new = true;
    let mut after: Option<IpNet> = None;
    move |core, out| {
        let empty = OwnerSet::new();
        let new = core.ads.owners.get(owner).unwrap_or(&empty);
        let from = |a: Option<IpNet>| a.map_or(Unbounded, Excluded);
        if in_new {
            for (p, b) in new.range((from(after), Unbounded)) {
                after = Some(*p);
                if let Some(change) = change_of(old.get(p), b) {
                    out.push((change, *p, b.clone()));
                    if out.len() >= EXPORT_CHUNK {
                        return;
                    }
                }
            }
            (in_new, after) = (false, None);
        }
        for (p, b) in old.range((from(after), Unbounded)) {
            after = Some(*p);
            if !new.contains_key(p) {
                out.push((AnnouncementChange::Removed, *p, b.clone()));
                if out.len() >= EXPORT_CHUNK {
                    return;
                }
            }
        }
        after = old.last_key_value().map(|(p, _)| *p);
    }
}

/// How many peers an announcement call writes to itself (see [`Speaker::export`]): MetalLB nodes have
/// a few peers, whose writes are short enough to do in the call; past these, the writers do it.
const WRITE_THROUGH_PEERS: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::RouteAttrs;
    use std::collections::BTreeSet;

    fn speaker(max: usize) -> Arc<Speaker> {
        let cfg = SpeakerConfig { max_announcements_per_owner: max, ..SpeakerConfig::default() };
        Speaker::new(cfg, CancellationToken::new(), TaskTracker::new())
    }

    fn advert(p: &str, community: u32) -> AdvertSpec {
        AdvertSpec {
            prefix: p.parse().unwrap(),
            attrs: RouteAttrs { communities: [community].into(), ..Default::default() },
            peers: BTreeSet::new(),
        }
    }

    /// (change, prefix, communities) of the announcement events received so far.
    fn announcement_events(rx: &mut broadcast::Receiver<Event>) -> Vec<(AnnouncementChange, String, Vec<u32>)> {
        let mut seen = vec![];
        while let Ok(Event::Announcement(a)) = rx.try_recv() {
            let communities = a.advert.attrs.communities.iter().copied().collect();
            seen.push((a.change, a.advert.prefix.to_string(), communities));
        }
        seen
    }

    /// (prefix, communities) of the listed announcements.
    async fn listed(sp: &Speaker, owner: Option<&str>) -> Vec<(String, Vec<u32>)> {
        let list = sp.list_announcements(owner).await;
        list.into_iter().map(|(_, a)| (a.prefix.to_string(), a.attrs.communities.into_iter().collect())).collect()
    }

    #[tokio::test]
    async fn incremental_announce_and_withdraw_emit_only_the_changes() {
        let sp = speaker(3);
        let mut rx = sp.subscribe();
        sp.set_announcements("o", vec![advert("192.0.2.1/32", 1), advert("192.0.2.2/32", 1)]).await.unwrap();
        sp.announce("o", vec![advert("192.0.2.2/32", 1), advert("192.0.2.3/32", 2)]).await.unwrap();
        sp.announce("o", vec![advert("192.0.2.1/32", 5)]).await.unwrap();
        assert_eq!(
            sp.withdraw("o", &["192.0.2.2/32".parse().unwrap(), "198.51.100.1/32".parse().unwrap()]).await.unwrap(),
            1
        );
        use AnnouncementChange::*;
        assert_eq!(
            announcement_events(&mut rx),
            vec![
                (Added, "192.0.2.1/32".into(), vec![1]),
                (Added, "192.0.2.2/32".into(), vec![1]),
                (Added, "192.0.2.3/32".into(), vec![2]),
                (Changed, "192.0.2.1/32".into(), vec![5]),
                (Removed, "192.0.2.2/32".into(), vec![1]),
            ]
        );
        assert_eq!(
            listed(&sp, Some("o")).await,
            vec![("192.0.2.1/32".into(), vec![5]), ("192.0.2.3/32".into(), vec![2])]
        );
    }

    /// SetAnnouncements over an existing set, in order (walked against the set), out of order at
    /// some point (the new set made whole from there), with repeats (the last wins) and refusals: the
    /// same counts, events and result whichever way it is read.
    #[tokio::test]
    async fn set_announcements_in_and_out_of_order() {
        use AnnouncementChange::*;
        type Ev = (AnnouncementChange, &'static str, u32);
        let a = |p: u8, c: u32| advert(&format!("192.0.2.{p}/32"), c);
        // (name, limit, set before, the new list, result (added, changed, removed) or None: refused,
        // events, set after as (last octet, community))
        #[allow(clippy::type_complexity)]
        let cases: Vec<(
            &str,
            usize,
            Vec<AdvertSpec>,
            Vec<AdvertSpec>,
            Option<(u32, u32, u32)>,
            Vec<Ev>,
            Vec<(u8, u32)>,
        )> = vec![
            (
                "fresh",
                10,
                vec![],
                vec![a(2, 1), a(1, 1)],
                Some((2, 0, 0)),
                vec![(Added, "192.0.2.1/32", 1), (Added, "192.0.2.2/32", 1)],
                vec![(1, 1), (2, 1)],
            ),
            (
                "unchanged, in order",
                10,
                vec![a(1, 1), a(2, 1), a(3, 1)],
                vec![a(1, 1), a(2, 1), a(3, 1)],
                Some((0, 0, 0)),
                vec![],
                vec![(1, 1), (2, 1), (3, 1)],
            ),
            (
                "in order: changed, added, removed",
                10,
                vec![a(1, 1), a(2, 1), a(3, 1)],
                vec![a(1, 1), a(2, 2), a(4, 1)],
                Some((1, 1, 1)),
                vec![(Changed, "192.0.2.2/32", 2), (Added, "192.0.2.4/32", 1), (Removed, "192.0.2.3/32", 1)],
                vec![(1, 1), (2, 2), (4, 1)],
            ),
            (
                "out of order from the start",
                10,
                vec![a(1, 1), a(2, 1), a(3, 1)],
                vec![a(4, 1), a(2, 2), a(1, 1)],
                Some((1, 1, 1)),
                vec![(Changed, "192.0.2.2/32", 2), (Added, "192.0.2.4/32", 1), (Removed, "192.0.2.3/32", 1)],
                vec![(1, 1), (2, 2), (4, 1)],
            ),
            (
                "out of order after a removal and a change",
                10,
                vec![a(1, 1), a(2, 1), a(3, 1), a(5, 1)],
                vec![a(1, 1), a(3, 3), a(2, 1), a(6, 1)],
                Some((1, 1, 1)),
                vec![(Changed, "192.0.2.3/32", 3), (Added, "192.0.2.6/32", 1), (Removed, "192.0.2.5/32", 1)],
                vec![(1, 1), (2, 1), (3, 3), (6, 1)],
            ),
            (
                "a repeat back to what it was",
                10,
                vec![a(1, 1), a(2, 1)],
                vec![a(1, 1), a(2, 5), a(2, 1)],
                Some((0, 0, 0)),
                vec![],
                vec![(1, 1), (2, 1)],
            ),
            (
                "a repeat that changes",
                10,
                vec![a(1, 1), a(2, 1)],
                vec![a(2, 1), a(2, 7)],
                Some((0, 1, 1)),
                vec![(Changed, "192.0.2.2/32", 7), (Removed, "192.0.2.1/32", 1)],
                vec![(2, 7)],
            ),
            (
                "everything removed",
                10,
                vec![a(1, 1), a(2, 1)],
                vec![],
                Some((0, 0, 2)),
                vec![(Removed, "192.0.2.1/32", 1), (Removed, "192.0.2.2/32", 1)],
                vec![],
            ),
            (
                "an invalid one",
                10,
                vec![a(1, 1), a(2, 1)],
                vec![a(1, 1), advert("0.0.0.0/0", 1)],
                None,
                vec![],
                vec![(1, 1), (2, 1)],
            ),
            (
                "an invalid one out of order",
                10,
                vec![a(1, 1), a(2, 1)],
                vec![a(2, 1), a(1, 2), advert("0.0.0.0/0", 1)],
                None,
                vec![],
                vec![(1, 1), (2, 1)],
            ),
            (
                "over the limit, in order",
                3,
                vec![a(1, 1), a(2, 1)],
                vec![a(1, 1), a(2, 1), a(3, 1), a(4, 1)],
                None,
                vec![],
                vec![(1, 1), (2, 1)],
            ),
            (
                "over the limit, out of order",
                3,
                vec![a(1, 1), a(2, 1)],
                vec![a(4, 1), a(2, 1), a(3, 1), a(1, 1)],
                None,
                vec![],
                vec![(1, 1), (2, 1)],
            ),
        ];
        for (name, max, before, new, result, events, after) in cases {
            let sp = speaker(max);
            sp.set_announcements("o", before).await.unwrap();
            let mut rx = sp.subscribe();
            let got = sp.set_announcements("o", new).await;
            assert_eq!(got.ok(), result, "{name}");
            let want: Vec<_> = events.into_iter().map(|(c, p, n)| (c, p.to_string(), vec![n])).collect();
            assert_eq!(announcement_events(&mut rx), want, "{name}");
            let want: Vec<_> = after.into_iter().map(|(o, c)| (format!("192.0.2.{o}/32"), vec![c])).collect();
            assert_eq!(listed(&sp, None).await, want, "{name}");
            // the export table holds what the set holds
            let t = sp.exports.read().unwrap();
            assert_eq!(t.iter_wanted().count(), want.len(), "{name}");
        }
    }

    /// Sets larger than one export chunk: every change is counted and exported, in order and out of
    /// order.
    #[tokio::test]
    async fn sets_larger_than_a_chunk() {
        let n = EXPORT_CHUNK * 2 + 100;
        let net = |i: usize| format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255);
        let set = |c: &dyn Fn(usize) -> Option<u32>| -> Vec<AdvertSpec> {
            (0..n).filter_map(|i| Some(advert(&net(i), c(i)?))).collect()
        };
        let sp = speaker(n);
        let wanted = |sp: &Speaker| sp.exports.read().unwrap().iter_wanted().count();
        assert_eq!(sp.set_announcements("o", set(&|_| Some(1))).await.unwrap(), (n as u32, 0, 0));
        assert_eq!(wanted(&sp), n);
        // in order: every third changed, every fifth left out
        let next = |i: usize| (!i.is_multiple_of(5)).then_some(if i.is_multiple_of(3) { 2 } else { 1 });
        let (changed, removed) =
            ((0..n).filter(|i| !i.is_multiple_of(5) && i.is_multiple_of(3)).count(), (0..n).step_by(5).count());
        assert_eq!(sp.set_announcements("o", set(&next)).await.unwrap(), (0, changed as u32, removed as u32));
        assert_eq!(wanted(&sp), n - removed);
        // the first set again, reversed: out of order
        let mut all = set(&|_| Some(1));
        all.reverse();
        assert_eq!(sp.set_announcements("o", all).await.unwrap(), (removed as u32, changed as u32, 0));
        assert_eq!(wanted(&sp), n);
        assert_eq!(sp.set_announcements("o", set(&|_| Some(1))).await.unwrap(), (0, 0, 0));
    }

    #[tokio::test]
    async fn one_prefix_twice_in_one_announce_is_one_change_with_the_last() {
        let sp = speaker(10);
        let mut rx = sp.subscribe();
        sp.announce("o", vec![advert("192.0.2.1/32", 1), advert("192.0.2.1/32", 2)]).await.unwrap();
        assert_eq!(announcement_events(&mut rx), vec![(AnnouncementChange::Added, "192.0.2.1/32".into(), vec![2])]);
        assert_eq!(listed(&sp, None).await, vec![("192.0.2.1/32".into(), vec![2])]);
    }

    #[tokio::test]
    async fn an_announce_over_the_limit_changes_nothing() {
        let sp = speaker(2);
        sp.announce("o", vec![advert("192.0.2.1/32", 1), advert("192.0.2.2/32", 1)]).await.unwrap();
        // re-announcing what is there stays within the limit; one more prefix does not
        sp.announce("o", vec![advert("192.0.2.2/32", 7)]).await.unwrap();
        let err = sp.announce("o", vec![advert("192.0.2.1/32", 9), advert("192.0.2.3/32", 1)]).await.unwrap_err();
        assert_eq!(err, SpeakerError::TooManyAnnouncements { count: 3, max: 2 });
        assert_eq!(listed(&sp, None).await, vec![("192.0.2.1/32".into(), vec![1]), ("192.0.2.2/32".into(), vec![7])]);
        assert!(sp
            .set_announcements(
                "o",
                vec![advert("192.0.2.1/32", 1), advert("192.0.2.2/32", 1), advert("192.0.2.3/32", 1)]
            )
            .await
            .is_err());
        assert_eq!(sp.list_announcements(None).await.len(), 2);
    }

    #[tokio::test]
    async fn equal_announcements_share_one_body() {
        let sp = speaker(10);
        sp.set_announcements(
            "a",
            vec![advert("192.0.2.1/32", 1), advert("192.0.2.2/32", 1), advert("192.0.2.3/32", 2)],
        )
        .await
        .unwrap();
        sp.set_announcements("b", vec![advert("192.0.2.1/32", 1)]).await.unwrap();
        let core = sp.core.lock().await;
        let (a, b) = (&core.ads.owners["a"], &core.ads.owners["b"]);
        let p = |s: &str| s.parse::<IpNet>().unwrap();
        assert!(Arc::ptr_eq(&a[&p("192.0.2.1/32")], &a[&p("192.0.2.2/32")]));
        assert!(Arc::ptr_eq(&a[&p("192.0.2.1/32")], &b[&p("192.0.2.1/32")]));
        assert!(!Arc::ptr_eq(&a[&p("192.0.2.1/32")], &a[&p("192.0.2.3/32")]));
        assert_eq!(core.ads.bodies.len(), 2);
    }

    #[tokio::test]
    async fn default_route_refused_unless_allowed() {
        let sp = speaker(10);
        for p in ["0.0.0.0/0", "::/0"] {
            let e = sp.announce("o", vec![advert("192.0.2.1/32", 1), advert(p, 1)]).await.unwrap_err();
            assert!(matches!(e, SpeakerError::Invalid(_)), "{e:?}");
            assert!(e.to_string().contains("--allow-default-route"), "{e}");
            let e = sp.set_announcements("o", vec![advert(p, 1)]).await.unwrap_err();
            assert!(matches!(e, SpeakerError::Invalid(_)), "{e:?}");
        }
        // Nothing of a refused request is kept.
        assert!(listed(&sp, None).await.is_empty());
        // A /1 is not a default route.
        sp.announce("o", vec![advert("0.0.0.0/1", 1)]).await.unwrap();
        let allowed = Speaker::new(
            SpeakerConfig { allow_default_route: true, ..SpeakerConfig::default() },
            CancellationToken::new(),
            TaskTracker::new(),
        );
        allowed.announce("o", vec![advert("0.0.0.0/0", 1)]).await.unwrap();
        assert_eq!(listed(&allowed, None).await.len(), 1);
    }
}
