//! The speaker: the desired state (peers, and each owner's set of announcements) and the peer tasks
//! that make the network match it. The gRPC API and the config file both call in here.
//!
//! Ownership: each owner (k8s-bridge, speakerctl, the config file, ...) has its own set of
//! announcements; a call only ever edits its owner's set. What a peer is sent for a prefix is the merge
//! of every owner's announcement of that prefix that selects the peer ([`RouteAttrs::merge`]).
use crate::bgp::export::{Body, Change, ExportTable, Selector, Want};
use crate::bgp::rib_out::keep_on_wire;
use crate::bgp::session::{Exports, PeerCmd, PeerContext, PeerShared, PeerStatus, PeerTask};
use crate::bgp::transport;
use crate::bgp::wire::{iana::err, Notification};
use crate::config::spec::{AdvertSpec, ConfigError, L2Spec, PeerSpec, RouteAttrs};
use crate::events::{AnnouncementChange, AnnouncementEvent, Event};
use crate::l2::control::L2Control;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Errors of speaker operations; the API maps each to a gRPC status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeakerError {
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("peer {0:?} not found")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Limit(String),
    /// The peer is in a state that does not allow the operation (e.g. administratively down).
    #[error("{0}")]
    FailedPrecondition(String),
    /// A Layer 2 call on a node that runs without Layer 2 (no `--node-name`, or gossip off).
    #[error("Layer 2 mode is not running on this node")]
    Layer2Off,
}

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

/// What [`Speaker::set_peers`] did.
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

type OwnerSet = BTreeMap<IpNet, Arc<Body>>;

#[derive(Default)]
struct Core {
    peers: BTreeMap<IpAddr, PeerEntry>,
    owners: BTreeMap<String, OwnerSet>,
    interned: HashMap<RouteAttrs, Arc<RouteAttrs>>,
    bodies: std::collections::HashSet<Arc<Body>>,
    /// Layer 2 announcements per owner.
    l2: BTreeMap<String, BTreeMap<IpAddr, L2Spec>>,
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
            return Err(SpeakerError::Limit(format!(
                "at most {} announcements per owner",
                self.cfg.max_announcements_per_owner
            )));
        }
        let old = core.l2.remove(owner).unwrap_or_default();
        let added = new.keys().filter(|k| !old.contains_key(k)).count() as u32;
        let changed = new.iter().filter(|(k, v)| old.get(k).is_some_and(|o| o != *v)).count() as u32;
        let removed = old.keys().filter(|k| !new.contains_key(k)).count() as u32;
        if !new.is_empty() {
            core.l2.insert(owner.to_string(), new);
        }
        let mut merged: BTreeMap<IpAddr, L2Spec> = BTreeMap::new();
        for set in core.l2.values() {
            for (ip, spec) in set {
                match merged.get_mut(ip) {
                    Some(m) => m.merge(spec),
                    None => {
                        merged.insert(*ip, spec.clone());
                    }
                }
            }
        }
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

    /// Opens a BGP listening socket and accepts connections for configured peers on it.
    pub fn listen(self: &Arc<Self>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let l = Arc::new(transport::listen(addr)?);
        let bound = l.local_addr()?;
        let v6 = bound.is_ipv6();
        self.listeners.lock().map_err(|_| std::io::Error::other("poisoned"))?.push((l.clone(), v6));
        let dispatch = self.dispatch.clone();
        let cancel = self.cancel.clone();
        self.tracker.spawn(
            async move {
                loop {
                    let (stream, remote) = tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = l.accept() => match r {
                            Ok(x) => x,
                            Err(e) => {
                                tracing::warn!(error = %e, "accept failed");
                                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                                continue;
                            }
                        },
                    };
                    let ip = crate::netif::canonical(remote.ip());
                    let tx = dispatch.read().ok().and_then(|d| d.get(&ip).cloned());
                    match tx {
                        Some(tx) => {
                            if tx.try_send(PeerCmd::Incoming(stream)).is_err() {
                                tracing::warn!(%remote, "peer task busy: connection dropped");
                            }
                        }
                        None => {
                            tracing::info!(%remote, "connection from an address that is not a configured peer: closed")
                        }
                    }
                }
            }
            .instrument(tracing::info_span!("listener", addr = %bound)),
        );
        tracing::info!(addr = %bound, "BGP listening");
        Ok(bound)
    }

    fn set_listener_md5(&self, peer: IpAddr, key: &[u8]) {
        if let Ok(ls) = self.listeners.lock() {
            for (l, v6) in ls.iter() {
                // An IPv4-only listener cannot hold a key for an IPv6 peer.
                if !*v6 && peer.is_ipv6() {
                    continue;
                }
                if let Err(e) = transport::set_md5(l.as_ref(), *v6, peer, key) {
                    tracing::warn!(%peer, error = %e, "cannot set TCP-MD5 key on listening socket");
                }
            }
        }
    }

    fn resolve_asn_id(&self, spec: &PeerSpec) -> Result<(u32, Ipv4Addr), SpeakerError> {
        let (default_asn, default_id) = self.defaults();
        let local_asn = match (spec.local_asn, default_asn) {
            (0, Some(d)) => d,
            (0, None) => {
                return Err(ConfigError::new("local_asn", "required (speakerd has no --local-asn default)").into())
            }
            (a, _) => a,
        };
        let router_id = spec
            .router_id
            .or(default_id)
            .or_else(crate::netif::default_router_id)
            .ok_or_else(|| ConfigError::new("router_id", "required: the host has no IPv4 address to default to"))?;
        Ok((local_asn, router_id))
    }

    fn spawn_peer(
        &self,
        spec: &PeerSpec,
        local_asn: u32,
        router_id: Ipv4Addr,
        shared: Arc<PeerShared>,
        restarting: bool,
    ) -> mpsc::Sender<PeerCmd> {
        let (tx, rx) = mpsc::channel(64);
        let seed = self.seed.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed);
        let bfd = match (spec.bfd.clone(), self.bfd.get()) {
            (Some(b), Some(m)) => Some(m.add(
                spec.address,
                crate::bfd::SessionSpec {
                    cfg: crate::bfd::fsm::BfdConfig {
                        desired_min_tx: b.tx,
                        required_min_rx: b.rx,
                        detect_mult: b.detect_mult,
                        passive: b.passive,
                    },
                    // RFC 5883 for sessions that are not directly connected.
                    multihop: spec.ebgp_multihop_ttl.is_some() || spec.peer_as().ibgp(local_asn),
                    min_ttl: b.min_ttl,
                    auth: b.auth,
                },
            )),
            (Some(_), None) => {
                tracing::warn!(peer = %spec.address, "BFD profile set but BFD is not running on this node");
                None
            }
            _ => None,
        };
        let task = PeerTask::new(
            PeerContext {
                spec: spec.clone(),
                local_asn,
                router_id,
                shared,
                events: self.events.clone(),
                restarting,
                seed,
                bfd,
            },
            rx,
        );
        let span = tracing::info_span!("peer", peer = %spec.address, peer_name = %spec.name, asn = spec.peer_asn);
        self.tracker.spawn(task.run(self.cancel.child_token()).instrument(span));
        if let Ok(mut d) = self.dispatch.write() {
            d.insert(spec.address, tx.clone());
        }
        tx
    }

    fn view(e: &PeerEntry) -> PeerView {
        let advertised = e.shared.rib.lock().map(|r| r.advertised()).unwrap_or_default();
        PeerView {
            spec: e.spec.clone(),
            owner: e.owner.clone(),
            local_asn: e.local_asn,
            status: e.shared.status(),
            advertised,
            admin_down: e.disabled,
        }
    }

    fn find<'a>(core: &'a Core, key: &str) -> Result<&'a PeerEntry, SpeakerError> {
        let by_addr = key.parse::<IpAddr>().ok().map(crate::netif::canonical).and_then(|a| core.peers.get(&a));
        by_addr
            .or_else(|| core.peers.values().find(|p| p.spec.name == key))
            .ok_or_else(|| SpeakerError::NotFound(key.to_string()))
    }

    /// Adds a peer owned by `owner` and starts its session.
    pub async fn add_peer(&self, owner: &str, spec: PeerSpec) -> Result<PeerView, SpeakerError> {
        let mut core = self.core.lock().await;
        self.add_locked(&mut core, owner, spec)
    }

    fn add_locked(&self, core: &mut Core, owner: &str, spec: PeerSpec) -> Result<PeerView, SpeakerError> {
        if let Some(p) = core.peers.get(&spec.address) {
            return Err(SpeakerError::AlreadyExists(format!(
                "peer {} already exists (owner {:?})",
                spec.address, p.owner
            )));
        }
        if core.peers.values().any(|p| p.spec.name == spec.name) {
            return Err(SpeakerError::AlreadyExists(format!("a peer is already named {:?}", spec.name)));
        }
        if core.peers.len() >= self.cfg.max_peers {
            return Err(SpeakerError::Limit(format!("at most {} peers", self.cfg.max_peers)));
        }
        let (local_asn, router_id) = self.resolve_asn_id(&spec)?;
        if let Some(pw) = &spec.password {
            self.set_listener_md5(spec.address, pw.as_bytes());
        }
        let shared = Arc::new(PeerShared::new(self.exports.clone(), selector(&spec)));
        let cmds = self.spawn_peer(&spec, local_asn, router_id, shared.clone(), true);
        let entry =
            PeerEntry { spec: spec.clone(), owner: owner.to_string(), local_asn, shared, cmds, disabled: false };
        core.peers.insert(spec.address, entry);
        tracing::info!(peer = %spec.address, name = %spec.name, asn = spec.peer_asn, owner, "peer added");
        Ok(Self::view(&core.peers[&spec.address]))
    }

    /// Replaces a peer's settings (its owner stays); resets the session only when a setting needs it.
    /// Returns whether it did.
    pub async fn update_peer(&self, spec: PeerSpec) -> Result<(PeerView, bool), SpeakerError> {
        let mut core = self.core.lock().await;
        self.update_locked(&mut core, spec)
    }

    fn update_locked(&self, core: &mut Core, spec: PeerSpec) -> Result<(PeerView, bool), SpeakerError> {
        let old = core.peers.get(&spec.address).ok_or_else(|| SpeakerError::NotFound(spec.address.to_string()))?;
        if core.peers.values().any(|p| p.spec.name == spec.name && p.spec.address != spec.address) {
            return Err(SpeakerError::AlreadyExists(format!("a peer is already named {:?}", spec.name)));
        }
        let (local_asn, router_id) = self.resolve_asn_id(&spec)?;
        let reset = old.spec.needs_reset(&spec) || old.local_asn != local_asn;
        let shared = old.shared.clone();
        let owner = old.owner.clone();
        if old.disabled {
            // No session to reset: the new settings apply when the peer is enabled.
            if old.spec.password != spec.password {
                self.set_listener_md5(spec.address, spec.password.as_deref().unwrap_or("").as_bytes());
            }
            if let Some(e) = core.peers.get_mut(&spec.address) {
                e.spec = spec.clone();
                e.local_asn = local_asn;
            }
        } else if reset {
            let n = Notification::cease(err::cease::OTHER_CONFIGURATION_CHANGE);
            let _ = old.cmds.try_send(PeerCmd::Stop { notification: Some(n), deleted: false });
            if old.spec.password != spec.password {
                self.set_listener_md5(spec.address, spec.password.as_deref().unwrap_or("").as_bytes());
            }
            let cmds = self.spawn_peer(&spec, local_asn, router_id, shared.clone(), false);
            core.peers.insert(
                spec.address,
                PeerEntry { spec: spec.clone(), owner, local_asn, shared, cmds, disabled: false },
            );
        } else {
            let _ = old.cmds.try_send(PeerCmd::Tune(Box::new(spec.clone())));
            if let Some(e) = core.peers.get_mut(&spec.address) {
                e.spec = spec.clone();
            }
        }
        // The name may have changed which announcements select this peer.
        if let Some(e) = core.peers.get(&spec.address) {
            e.shared.with_rib(|r, t| r.set_selector(t, selector(&spec)));
        }
        tracing::info!(peer = %spec.address, reset, "peer updated");
        Ok((Self::view(&core.peers[&spec.address]), reset))
    }

    /// Deletes a peer: Cease/Peer De-configured if the session is up.
    pub async fn delete_peer(&self, key: &str) -> Result<(), SpeakerError> {
        let mut core = self.core.lock().await;
        let addr = Self::find(&core, key)?.spec.address;
        self.delete_locked(&mut core, addr);
        Ok(())
    }

    fn delete_locked(&self, core: &mut Core, addr: IpAddr) {
        let Some(e) = core.peers.remove(&addr) else {
            return;
        };
        if e.disabled {
            // No task: the `deleted` event is ours to send.
            let _ = self.events.send(Event::Peer(crate::events::PeerEvent {
                address: addr,
                name: e.spec.name.clone(),
                old: crate::bgp::fsm::State::Idle,
                new: crate::bgp::fsm::State::Idle,
                reason: "deleted".into(),
                deleted: true,
                at: SystemTime::now(),
            }));
        } else {
            // The task sends the NOTIFICATION and the one `deleted` event.
            let n = Notification::cease(err::cease::PEER_DECONFIGURED);
            let _ = e.cmds.try_send(PeerCmd::Stop { notification: Some(n), deleted: true });
        }
        if let Ok(mut d) = self.dispatch.write() {
            d.remove(&addr);
        }
        if e.spec.password.is_some() {
            self.set_listener_md5(addr, b"");
        }
        if let (Some(_), Some(m)) = (&e.spec.bfd, self.bfd.get()) {
            m.remove(addr);
        }
        tracing::info!(peer = %addr, owner = %e.owner, "peer deleted");
    }

    /// Makes `owner`'s peers exactly `specs`: adds the missing, updates the changed (resetting a
    /// session only where a setting needs it), deletes the owner's others. A peer whose address or
    /// name another owner holds is left alone and reported in `conflicts`; the rest is applied.
    pub async fn set_peers(&self, owner: &str, specs: Vec<PeerSpec>) -> Result<SetPeersOutcome, SpeakerError> {
        let mut seen = BTreeSet::new();
        for s in &specs {
            if !seen.insert(s.address) {
                return Err(SpeakerError::Invalid(ConfigError::new(
                    "peers",
                    format!("peer {} appears twice", s.address),
                )));
            }
        }
        let mut core = self.core.lock().await;
        let mut out = SetPeersOutcome::default();
        let gone: Vec<IpAddr> = core
            .peers
            .values()
            .filter(|p| p.owner == owner && !seen.contains(&p.spec.address))
            .map(|p| p.spec.address)
            .collect();
        for a in gone {
            self.delete_locked(&mut core, a);
            out.removed += 1;
        }
        for spec in specs {
            let addr = spec.address;
            let r = match core.peers.get(&addr) {
                Some(p) if p.owner != owner => {
                    Err(SpeakerError::AlreadyExists(format!("peer {addr} is owned by {:?}", p.owner)))
                }
                Some(p) if p.spec == spec => continue,
                Some(_) => self.update_locked(&mut core, spec).map(|(_, reset)| {
                    out.changed += 1;
                    out.reset += u32::from(reset);
                }),
                None => self.add_locked(&mut core, owner, spec).map(|_| out.added += 1),
            };
            if let Err(e) = r {
                tracing::warn!(peer = %addr, owner, error = %e, "peer not applied");
                out.conflicts.push((addr, e.to_string()));
            }
        }
        if out.added + out.changed + out.removed > 0 {
            tracing::info!(owner, added = out.added, changed = out.changed, removed = out.removed, "peers updated");
        }
        Ok(out)
    }

    pub async fn get_peer(&self, key: &str) -> Result<PeerView, SpeakerError> {
        let core = self.core.lock().await;
        Self::find(&core, key).map(Self::view)
    }

    pub async fn list_peers(&self) -> Vec<PeerView> {
        let core = self.core.lock().await;
        core.peers.values().map(Self::view).collect()
    }

    /// Per peer address, the prefixes it should have ([`crate::bgp::rib_out::AdjRibOut::wanted`]): one
    /// pass over the export table per peer, under its read lock, for the metrics scrape only.
    pub async fn pending_prefixes(&self) -> Vec<(IpAddr, u16, u64)> {
        let core = self.core.lock().await;
        let Ok(t) = self.exports.read() else { return Vec::new() };
        core.peers
            .values()
            .map(|e| {
                let n = e.shared.rib.lock().map(|r| r.wanted(&t)).unwrap_or_default();
                (e.spec.address, e.spec.port, n)
            })
            .collect()
    }

    pub async fn reset_peer(&self, key: &str, soft: bool) -> Result<(), SpeakerError> {
        let core = self.core.lock().await;
        let e = Self::find(&core, key)?;
        if e.disabled {
            return Err(SpeakerError::FailedPrecondition(format!(
                "peer {} is administratively down: enable it first",
                e.spec.address
            )));
        }
        e.cmds.try_send(PeerCmd::Reset { soft }).map_err(|_| SpeakerError::Limit("peer task busy, try again".into()))
    }

    /// Takes a peer administratively down (`enabled` false: Cease/Administrative Shutdown with the
    /// optional RFC 9003 `communication`, no reconnection, incoming connections refused) or up again
    /// (a new session starts). Returns whether anything changed.
    pub async fn set_peer_enabled(&self, key: &str, enabled: bool, communication: &str) -> Result<bool, SpeakerError> {
        let mut core = self.core.lock().await;
        let addr = Self::find(&core, key)?.spec.address;
        let e = core.peers.get(&addr).ok_or_else(|| SpeakerError::NotFound(key.to_string()))?;
        if e.disabled != enabled {
            return Ok(false);
        }
        if enabled {
            let (spec, shared) = (e.spec.clone(), e.shared.clone());
            let (local_asn, router_id) = self.resolve_asn_id(&spec)?;
            let cmds = self.spawn_peer(&spec, local_asn, router_id, shared, false);
            if let Some(e) = core.peers.get_mut(&addr) {
                e.cmds = cmds;
                e.local_asn = local_asn;
                e.disabled = false;
            }
            tracing::info!(peer = %addr, "peer enabled");
        } else {
            // RFC 9003: a length octet and at most 255 octets of UTF-8.
            let mut text = communication.as_bytes().to_vec();
            let mut cut = text.len().min(255);
            while !communication.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            let data = if text.is_empty() { Vec::new() } else { [vec![text.len() as u8], text].concat() };
            let n = Notification::new(err::CEASE, err::cease::ADMINISTRATIVE_SHUTDOWN, data);
            let _ = e.cmds.try_send(PeerCmd::Stop { notification: Some(n), deleted: false });
            if let Ok(mut d) = self.dispatch.write() {
                d.remove(&addr);
            }
            if let Some(e) = core.peers.get_mut(&addr) {
                e.disabled = true;
            }
            tracing::info!(peer = %addr, communication, "peer disabled");
        }
        Ok(true)
    }

    /// What a peer's session has on the wire now (its Adj-RIB-Out as sent), with the encoder that
    /// put it there (None while no session is up).
    pub async fn adj_rib_out(
        &self,
        key: &str,
    ) -> Result<(PeerView, Option<crate::bgp::rib_out::Encoder>, Vec<(IpNet, Arc<RouteAttrs>)>), SpeakerError> {
        let core = self.core.lock().await;
        let e = Self::find(&core, key)?;
        let (enc, routes) = e.shared.with_rib(|r, t| r.sent(t)).unwrap_or_default();
        Ok((Self::view(e), enc, routes))
    }

    /// Adds or replaces announcements in an owner's set. Costs what changes, not the size of the set.
    pub async fn announce(&self, owner: &str, adverts: Vec<AdvertSpec>) -> Result<(), SpeakerError> {
        self.check_default_route(&adverts)?;
        let mut core = self.core.lock().await;
        // Of two announcements of one prefix, the last wins, as in SetAnnouncements.
        let new: OwnerSet = adverts.into_iter().map(|a| core.intern(a)).collect();
        let mut set = core.owners.remove(owner).unwrap_or_default();
        let adding = new.keys().filter(|p| !set.contains_key(p)).count();
        if let Err(e) = self.check_size(set.len() + adding) {
            if !set.is_empty() {
                core.owners.insert(owner.to_string(), set);
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
        self.commit(&mut core, owner, set, changes);
        Ok(())
    }

    /// Removes prefixes from an owner's set; returns how many it had.
    pub async fn withdraw(&self, owner: &str, prefixes: &[IpNet]) -> Result<u32, SpeakerError> {
        let mut core = self.core.lock().await;
        let mut set = core.owners.remove(owner).unwrap_or_default();
        let changes: Vec<_> =
            prefixes.iter().filter_map(|p| Some((AnnouncementChange::Removed, *p, set.remove(p)?))).collect();
        let removed = changes.len() as u32;
        self.commit(&mut core, owner, set, changes);
        Ok(removed)
    }

    /// Replaces an owner's whole set. Returns (added, changed, removed).
    pub async fn set_announcements(
        &self,
        owner: &str,
        adverts: Vec<AdvertSpec>,
    ) -> Result<(u32, u32, u32), SpeakerError> {
        self.check_default_route(&adverts)?;
        let mut core = self.core.lock().await;
        // Of two announcements of one prefix, the last wins, as in Announce.
        let new: OwnerSet = adverts.into_iter().map(|a| core.intern(a)).collect();
        self.check_size(new.len())?;
        let old = core.owners.remove(owner).unwrap_or_default();
        let mut changes = Vec::new();
        for (p, b) in &new {
            if let Some(change) = change_of(old.get(p), b) {
                changes.push((change, *p, b.clone()));
            }
        }
        for (p, b) in old {
            if !new.contains_key(&p) {
                changes.push((AnnouncementChange::Removed, p, b));
            }
        }
        Ok(self.commit(&mut core, owner, new, changes))
    }

    /// Every path that announces (the speaker.v1 API, the config file, the GoBGP API) comes through
    /// [`Speaker::announce`] or [`Speaker::set_announcements`]: a default route is refused here unless
    /// the process was started with `--allow-default-route`.
    fn check_default_route(&self, adverts: &[AdvertSpec]) -> Result<(), SpeakerError> {
        if self.cfg.allow_default_route {
            return Ok(());
        }
        match adverts.iter().enumerate().find(|(_, a)| a.prefix.prefix_len() == 0) {
            Some((i, a)) => Err(SpeakerError::Invalid(ConfigError::new(
                format!("announcements[{i}].prefix"),
                format!(
                    "{} is a default route: refused (start speakerd with --allow-default-route to announce it)",
                    a.prefix
                ),
            ))),
            None => Ok(()),
        }
    }

    fn check_size(&self, n: usize) -> Result<(), SpeakerError> {
        if n > self.cfg.max_announcements_per_owner {
            return Err(SpeakerError::Limit(format!(
                "{n} announcements: at most {} per owner",
                self.cfg.max_announcements_per_owner
            )));
        }
        Ok(())
    }

    /// Every owner's announcement of one prefix, by owner.
    pub async fn announcements_of(&self, prefix: &IpNet) -> Vec<(String, AdvertSpec)> {
        let core = self.core.lock().await;
        core.owners.iter().filter_map(|(o, set)| set.get(prefix).map(|b| (o.clone(), b.spec(*prefix)))).collect()
    }

    pub async fn list_announcements(&self, owner: Option<&str>) -> Vec<(String, AdvertSpec)> {
        let core = self.core.lock().await;
        let mut v: Vec<(IpNet, &String, &Arc<Body>)> = core
            .owners
            .iter()
            .filter(|(o, _)| owner.is_none_or(|w| w == o.as_str()))
            .flat_map(|(o, set)| set.iter().map(move |(p, b)| (*p, o, b)))
            .collect();
        v.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        v.into_iter().map(|(p, o, b)| (o.clone(), b.spec(p))).collect()
    }

    /// Stores an owner's new set, emits an event per change, and updates every peer for the changed
    /// prefixes. Returns (added, changed, removed).
    fn commit(
        &self,
        core: &mut Core,
        owner: &str,
        set: OwnerSet,
        changes: Vec<(AnnouncementChange, IpNet, Arc<Body>)>,
    ) -> (u32, u32, u32) {
        if !set.is_empty() {
            core.owners.insert(owner.to_string(), set);
        }
        let (mut added, mut changed, mut removed) = (0, 0, 0);
        let now = SystemTime::now();
        let mut changed_prefixes = BTreeSet::new();
        for (change, p, body) in changes {
            match change {
                AnnouncementChange::Added => added += 1,
                AnnouncementChange::Changed => changed += 1,
                AnnouncementChange::Removed => removed += 1,
            }
            changed_prefixes.insert(p);
            // Built only when someone listens (a watch stream): an owner's load of 100k announcements
            // makes no 100k events nobody reads.
            if self.events.receiver_count() > 0 {
                let _ = self.events.send(Event::Announcement(AnnouncementEvent {
                    change,
                    owner: owner.to_string(),
                    advert: body.spec(p),
                    at: now,
                }));
            }
        }
        if !changed_prefixes.is_empty() {
            self.export(core, &changed_prefixes);
            tracing::info!(owner, added, changed, removed, "announcements updated");
        }
        if core.bodies.len() > 1024 {
            core.bodies.retain(|b| Arc::strong_count(b) > 1);
        }
        if core.interned.len() > 1024 {
            core.interned.retain(|_, v| Arc::strong_count(v) > 1);
        }
        (added, changed, removed)
    }

    /// Recomputes what the peers should be sent for `prefixes` in the export table, then marks them in
    /// each peer's Adj-RIB-Out. The table's write lock is not held while the peers are marked: their
    /// writers go on meanwhile, and one that pulls a changed prefix early sends it once more at worst.
    fn export(&self, core: &mut Core, prefixes: &BTreeSet<IpNet>) {
        let changes: Vec<Change> = {
            let Ok(mut t) = self.exports.write() else {
                return;
            };
            // Under the write lock no writer is pulling: the sessions' bits hold still (lock order:
            // table, then each rib).
            t.collect_unused(|ids| keep_on_wire(core.peers.values().map(|e| e.shared.rib_guard()), ids));
            prefixes
                .iter()
                .filter_map(|p| {
                    let w = core.want_of(p);
                    t.set(*p, w)
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

/// One owner's (or every owner's) entries of per-owner sets, ordered by key, then owner.
fn list_owned<K: Ord + Copy, V: Clone>(
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

/// How many peers an announcement call writes to itself (see [`Speaker::export`]). MetalLB nodes have
/// one to four; each write is 15–25 µs.
const WRITE_THROUGH_PEERS: usize = 8;

/// What replacing `old` by `new` for one prefix is: added, changed, or nothing.
fn change_of(old: Option<&Arc<Body>>, new: &Arc<Body>) -> Option<AnnouncementChange> {
    match old {
        None => Some(AnnouncementChange::Added),
        Some(o) if o != new => Some(AnnouncementChange::Changed),
        Some(_) => None,
    }
}

impl Core {
    /// What the peers should be sent for `p`, from every owner's announcement of it.
    fn want_of(&mut self, p: &IpNet) -> Option<Want> {
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
    fn intern(&mut self, a: AdvertSpec) -> (IpNet, Arc<Body>) {
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
}

impl Body {
    fn spec(&self, prefix: IpNet) -> AdvertSpec {
        AdvertSpec { prefix, attrs: (*self.attrs).clone(), peers: self.peers.clone() }
    }
}

fn selector(spec: &PeerSpec) -> Selector {
    Selector { name: spec.name.clone(), address: spec.address }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(err, SpeakerError::Limit(_)), "{err:?}");
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
        let (a, b) = (&core.owners["a"], &core.owners["b"]);
        let p = |s: &str| s.parse::<IpNet>().unwrap();
        assert!(Arc::ptr_eq(&a[&p("192.0.2.1/32")], &a[&p("192.0.2.2/32")]));
        assert!(Arc::ptr_eq(&a[&p("192.0.2.1/32")], &b[&p("192.0.2.1/32")]));
        assert!(!Arc::ptr_eq(&a[&p("192.0.2.1/32")], &a[&p("192.0.2.3/32")]));
        assert_eq!(core.bodies.len(), 2);
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
