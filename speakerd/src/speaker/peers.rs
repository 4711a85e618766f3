//! The running peers: the only part of the speaker that spawns. It carries out the plans of
//! [`desired`](super::desired) (starts, stops, restarts and in-place updates of peer tasks), runs the
//! listening sockets that hand incoming connections to the peer tasks, keeps the listeners' TCP-MD5
//! keys, and hooks each peer up to BFD.
use super::desired::{plan_add, plan_peers, plan_update, selector, Defaults, Have, HavePeer, Step};
use super::{Core, PeerEntry, PeerView, SetPeersOutcome, Speaker, SpeakerError};
use crate::bgp::rib_out::Encoder;
use crate::bgp::session::{PeerCmd, PeerContext, PeerShared, PeerTask};
use crate::bgp::transport;
use crate::bgp::wire::{iana::err, Notification};
use crate::config::spec::{PeerSpec, RouteAttrs};
use crate::events::{Event, PeerEvent};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::mpsc;
use tracing::Instrument;

impl Speaker {
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

    /// The defaults a peer that sets no local ASN or router ID runs with now.
    fn resolved_defaults(&self) -> Defaults {
        let (local_asn, router_id) = self.defaults();
        Defaults { local_asn, router_id: router_id.or_else(crate::netif::default_router_id) }
    }

    /// Starts a peer's task (with its BFD session, if it has a profile) and routes its incoming
    /// connections to it.
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
            .ok_or_else(|| SpeakerError::PeerNotFound(key.to_string()))
    }

    /// What the planner sees of the peers.
    fn have(core: &Core) -> Have<'_> {
        core.peers
            .iter()
            .map(|(a, e)| (*a, HavePeer { spec: &e.spec, owner: &e.owner, local_asn: e.local_asn }))
            .collect()
    }

    /// Adds a peer owned by `owner` and starts its session.
    pub async fn add_peer(&self, owner: &str, spec: PeerSpec) -> Result<PeerView, SpeakerError> {
        let mut core = self.core.lock().await;
        let step = plan_add(&Self::have(&core), &spec, &self.resolved_defaults(), self.cfg.max_peers)?;
        let addr = spec.address;
        self.apply(&mut core, owner, step);
        Ok(Self::view(&core.peers[&addr]))
    }

    /// Replaces a peer's settings (its owner stays); resets the session only when a setting needs it.
    /// Returns whether it did.
    pub async fn update_peer(&self, spec: PeerSpec) -> Result<(PeerView, bool), SpeakerError> {
        let mut core = self.core.lock().await;
        let step = plan_update(&Self::have(&core), &spec, &self.resolved_defaults())?;
        let reset = matches!(step, Step::Restart { .. });
        let addr = spec.address;
        self.apply(&mut core, "", step);
        Ok((Self::view(&core.peers[&addr]), reset))
    }

    /// Deletes a peer: Cease/Peer De-configured if the session is up.
    pub async fn delete_peer(&self, key: &str) -> Result<(), SpeakerError> {
        let mut core = self.core.lock().await;
        let addr = Self::find(&core, key)?.spec.address;
        self.apply(&mut core, "", Step::Stop(addr));
        Ok(())
    }

    /// Makes `owner`'s peers exactly `specs`: adds the missing, updates the changed (resetting a
    /// session only where a setting needs it), deletes the owner's others. A peer whose address or
    /// name another owner holds is left alone and reported in `conflicts`; the rest is applied.
    pub async fn set_peers(&self, owner: &str, specs: Vec<PeerSpec>) -> Result<SetPeersOutcome, SpeakerError> {
        let mut core = self.core.lock().await;
        let plan = plan_peers(owner, &Self::have(&core), &specs, &self.resolved_defaults(), self.cfg.max_peers)?;
        for (addr, e) in &plan.conflicts {
            tracing::warn!(peer = %addr, owner, error = %e, "peer not applied");
        }
        let out = plan.outcome();
        for step in plan.steps {
            self.apply(&mut core, owner, step);
        }
        if out.added + out.changed + out.removed > 0 {
            tracing::info!(owner, added = out.added, changed = out.changed, removed = out.removed, "peers updated");
        }
        Ok(out)
    }

    /// Carries out one step of a plan. `owner` is the owner of a peer that starts.
    fn apply(&self, core: &mut Core, owner: &str, step: Step) {
        match step {
            Step::Start { spec, local_asn, router_id } => {
                if let Some(pw) = &spec.password {
                    self.set_listener_md5(spec.address, pw.as_bytes());
                }
                let shared = Arc::new(PeerShared::new(self.exports.clone(), selector(&spec)));
                let cmds = self.spawn_peer(&spec, local_asn, router_id, shared.clone(), true);
                tracing::info!(peer = %spec.address, name = %spec.name, asn = spec.peer_asn, owner, "peer added");
                let entry = PeerEntry { spec, owner: owner.to_string(), local_asn, shared, cmds, disabled: false };
                core.peers.insert(entry.spec.address, entry);
            }
            Step::Stop(addr) => self.stop(core, addr),
            Step::Restart { spec, local_asn, router_id } => {
                let addr = spec.address;
                let Some(e) = core.peers.get_mut(&addr) else { return };
                // A peer that is administratively down has no session to reset: the new settings
                // apply when it is enabled.
                if !e.disabled {
                    let n = Notification::cease(err::cease::OTHER_CONFIGURATION_CHANGE);
                    let _ = e.cmds.try_send(PeerCmd::Stop { notification: Some(n), deleted: false });
                }
                if e.spec.password != spec.password {
                    self.set_listener_md5(addr, spec.password.as_deref().unwrap_or("").as_bytes());
                }
                if !e.disabled {
                    e.cmds = self.spawn_peer(&spec, local_asn, router_id, e.shared.clone(), false);
                }
                e.spec = spec;
                e.local_asn = local_asn;
                Self::updated(e, true);
            }
            Step::Update { spec } => {
                let Some(e) = core.peers.get_mut(&spec.address) else { return };
                if !e.disabled {
                    let _ = e.cmds.try_send(PeerCmd::Tune(Box::new(spec.clone())));
                }
                e.spec = spec;
                Self::updated(e, false);
            }
        }
    }

    fn updated(e: &PeerEntry, reset: bool) {
        // The name may have changed which announcements select this peer.
        e.shared.with_rib(|r, t| r.set_selector(t, selector(&e.spec)));
        tracing::info!(peer = %e.spec.address, reset, "peer updated");
    }

    /// Stops and forgets a peer.
    fn stop(&self, core: &mut Core, addr: IpAddr) {
        let Some(e) = core.peers.remove(&addr) else {
            return;
        };
        if e.disabled {
            // No task: the `deleted` event is ours to send.
            let _ = self.events.send(Event::Peer(PeerEvent {
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
            return Err(SpeakerError::AdminDown(e.spec.address));
        }
        e.cmds.try_send(PeerCmd::Reset { soft }).map_err(|_| SpeakerError::PeerBusy)
    }

    /// Takes a peer administratively down (`enabled` false: Cease/Administrative Shutdown with the
    /// optional RFC 9003 `communication`, no reconnection, incoming connections refused) or up again
    /// (a new session starts). Returns whether anything changed.
    pub async fn set_peer_enabled(&self, key: &str, enabled: bool, communication: &str) -> Result<bool, SpeakerError> {
        let mut core = self.core.lock().await;
        let addr = Self::find(&core, key)?.spec.address;
        let e = core.peers.get(&addr).ok_or_else(|| SpeakerError::PeerNotFound(key.to_string()))?;
        if e.disabled != enabled {
            return Ok(false);
        }
        if enabled {
            let (spec, shared) = (e.spec.clone(), e.shared.clone());
            let (local_asn, router_id) = super::desired::resolve(&spec, &self.resolved_defaults())?;
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
    ) -> Result<(PeerView, Option<Encoder>, Vec<(IpNet, Arc<RouteAttrs>)>), SpeakerError> {
        let core = self.core.lock().await;
        let e = Self::find(&core, key)?;
        let (enc, routes) = e.shared.with_rib(|r, t| r.sent(t)).unwrap_or_default();
        Ok((Self::view(e), enc, routes))
    }
}
