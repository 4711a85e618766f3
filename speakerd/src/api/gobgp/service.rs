//! The `apipb.GobgpApi` methods speakerd serves (see [`super::unserved::SERVED`]), on one [`Speaker`].
//! Paths added here belong to the owner [`OWNER`] and never touch another owner's set; peers added
//! here get that owner too.
use super::convert::{self as conv, Fam};
use super::OWNER;
use crate::config::spec::{parse_prefix, PeerSpec, RouteAttrs};
use crate::events::{AnnouncementChange, Event};
use crate::speaker::{PeerView, Speaker, SpeakerError};
use ipnet::IpNet;
use speaker_api::gobgp::apipb as api;
use speaker_api::gobgp::apipb::gobgp_api_server::GobgpApi;
use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// Most paths in one TableEvent of WatchEvent's initial dump.
const INIT_CHUNK: usize = 1000;

type Ages = Arc<Mutex<super::ages::Ages>>;
/// UUID → prefix, and prefix → UUID.
type Uuids = Arc<Mutex<(HashMap<Vec<u8>, IpNet>, HashMap<IpNet, Vec<u8>>)>>;

#[derive(Clone)]
pub struct GobgpService {
    speaker: Arc<Speaker>,
    /// The defaults speakerd started with (--local-asn, --router-id): what StopBgp restores.
    flag_defaults: (Option<u32>, Option<Ipv4Addr>),
    /// speakerd's BGP listening addresses, for GetBgp (None: --no-bgp-listen).
    listen: Option<Vec<SocketAddr>>,
    /// UUIDs handed out by AddPath, for DeletePath by UUID, and the reverse.
    uuids: Uuids,
    /// When each owner's announcement of a prefix last changed (the paths' age).
    ages: Ages,
    started: SystemTime,
}

impl GobgpService {
    /// Must be called inside a tokio runtime: starts the task that keeps the paths' ages.
    pub fn new(speaker: Arc<Speaker>, listen: Option<Vec<SocketAddr>>) -> Self {
        let ages: Ages = Arc::default();
        let mut rx = speaker.subscribe();
        let weak = Arc::downgrade(&ages);
        tokio::spawn(async move {
            loop {
                let ev = match rx.recv().await {
                    Ok(ev) => ev,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Event::Announcement(a) = ev else { continue };
                let Some(ages) = weak.upgrade() else { return };
                let Ok(mut m) = ages.lock() else { return };
                match a.change {
                    AnnouncementChange::Removed => m.remove(&a.owner, &a.advert.prefix),
                    _ => m.set(&a.owner, a.advert.prefix, a.at),
                }
            }
        });
        Self {
            flag_defaults: speaker.defaults(),
            speaker,
            listen,
            uuids: Arc::default(),
            ages,
            started: SystemTime::now(),
        }
    }

    fn age(&self, owners: &[String], p: &IpNet) -> SystemTime {
        let m = self.ages.lock();
        let latest = m.ok().and_then(|m| owners.iter().filter_map(|o| m.get(o, p)).max());
        latest.unwrap_or(self.started)
    }

    fn uuid_of(&self, p: &IpNet) -> Option<Vec<u8>> {
        self.uuids.lock().ok().and_then(|u| u.1.get(p).cloned())
    }

    fn new_uuid(&self, p: IpNet) -> Vec<u8> {
        let mut id = [0u8; 16];
        rand::fill(&mut id);
        // RFC 9562 version 4, variant 10.
        id[6] = (id[6] & 0x0f) | 0x40;
        id[8] = (id[8] & 0x3f) | 0x80;
        if let Ok(mut u) = self.uuids.lock() {
            if let Some(old) = u.1.insert(p, id.to_vec()) {
                u.0.remove(&old);
            }
            u.0.insert(id.to_vec(), p);
        }
        id.to_vec()
    }

    fn forget_uuids(&self, prefixes: &[IpNet]) {
        if let Ok(mut u) = self.uuids.lock() {
            for p in prefixes {
                if let Some(id) = u.1.remove(p) {
                    u.0.remove(&id);
                }
            }
        }
    }

    /// The global RIB of one family: every owner's announcements merged per prefix, as the route
    /// originator holds them (peer selectors aside), with the owners that announce each.
    async fn global_rib(&self, fam: Fam) -> BTreeMap<IpNet, (RouteAttrs, Vec<String>)> {
        let mut rib: BTreeMap<IpNet, (RouteAttrs, Vec<String>)> = BTreeMap::new();
        for (owner, a) in self.speaker.list_announcements(None).await {
            if Fam::of(&a.prefix) != fam {
                continue;
            }
            match rib.get_mut(&a.prefix) {
                Some((m, owners)) => {
                    m.merge(&a.attrs);
                    owners.push(owner);
                }
                None => {
                    rib.insert(a.prefix, (a.attrs, vec![owner]));
                }
            }
        }
        rib
    }

    async fn global_path_of(&self, p: &IpNet) -> api::Path {
        let list = self.speaker.announcements_of(p).await;
        let owners: Vec<String> = list.iter().map(|(o, _)| o.clone()).collect();
        let mut merged: Option<RouteAttrs> = None;
        for (_, a) in &list {
            match &mut merged {
                Some(m) => m.merge(&a.attrs),
                None => merged = Some(a.attrs.clone()),
            }
        }
        match merged {
            Some(m) => conv::global_path(p, &m, self.age(&owners, p), self.uuid_of(p)),
            None => {
                api::Path { is_withdraw: true, ..conv::global_path(p, &RouteAttrs::default(), SystemTime::now(), None) }
            }
        }
    }

    /// A peer of this API's owner, or FAILED_PRECONDITION naming its owner.
    async fn own_peer(&self, address: &str, what: &str) -> Result<PeerView, Status> {
        let v = self.speaker.get_peer(address).await?;
        if v.owner != OWNER {
            return Err(Status::failed_precondition(format!(
                "{what}: peer {address} belongs to owner {:?}, not to the GoBGP API ({OWNER:?}); manage it where it was added (speakerctl, speaker.v1, the config file)",
                v.owner
            )));
        }
        Ok(v)
    }

    fn peer_spec(&self, p: &api::Peer, current: Option<&PeerView>) -> Result<PeerSpec, Status> {
        let cfg = conv::peer_config(p, current)?;
        if cfg.local_asn == 0 && self.speaker.defaults().0.is_none() {
            return Err(Status::failed_precondition(
                "peer.conf.local_asn: speakerd has no global AS yet: call StartBgp first (gobgp global as <AS> router-id <ID>), or give peer.conf.local_asn",
            ));
        }
        let mut spec = PeerSpec::try_from(&cfg)
            .map_err(|e| Status::invalid_argument(format!("{}: {}", conv::gobgp_field(&e.field), e.reason)))?;
        if let Some(c) = current {
            spec.bfd = c.spec.bfd.clone();
        }
        Ok(spec)
    }

    async fn add_paths(&self, field: &str, paths: &[api::Path]) -> Result<Vec<IpNet>, Status> {
        let mut add = Vec::with_capacity(paths.len());
        let mut del = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            let f = if paths.len() == 1 && field == "path" { field.to_string() } else { format!("{field}[{i}]") };
            let parsed = conv::parse_path(&f, p, true)?;
            if parsed.withdraw {
                del.push(parsed.advert.prefix);
            } else {
                add.push(parsed.advert);
            }
        }
        let prefixes = add.iter().map(|a| a.prefix).collect();
        if !add.is_empty() {
            self.speaker.announce(OWNER, add).await?;
        }
        if !del.is_empty() {
            self.speaker.withdraw(OWNER, &del).await?;
            self.forget_uuids(&del);
        }
        Ok(prefixes)
    }
}

fn table_global(field: &str, t: i32, vrf: &str) -> Result<(), Status> {
    if !vrf.is_empty() {
        return Err(Status::invalid_argument(format!("vrf_id {vrf:?}: speakerd has no VRFs")));
    }
    match api::TableType::try_from(t) {
        Ok(api::TableType::Global) => Ok(()),
        Ok(other) => Err(Status::invalid_argument(format!(
            "{field}: {}: speakerd originates paths into the global table only (GLOBAL)",
            other.as_str_name()
        ))),
        Err(_) => Err(Status::invalid_argument(format!("{field}: unknown table type {t}"))),
    }
}

fn required_family(f: &Option<api::Family>) -> Result<Fam, Status> {
    let f = f.as_ref().ok_or_else(|| Status::invalid_argument("family: required (afi 1 or 2, safi 1)"))?;
    conv::family("family", f)
}

fn address(field: &str, s: &str) -> Result<String, Status> {
    let s = s.trim();
    if s.is_empty() {
        return Err(Status::invalid_argument(format!("{field}: required (the neighbor address)")));
    }
    s.parse::<std::net::IpAddr>()
        .map_err(|_| Status::invalid_argument(format!("{field}: {s:?} is not an IP address")))?;
    Ok(s.to_string())
}

/// A prefix filter of ListPath: an exact match (a bare address finds the longest prefix holding it),
/// longer prefixes (inside the given one) or shorter (holding it).
struct Lookup {
    net: IpNet,
    bare: bool,
    kind: api::table_lookup_prefix::Type,
}

fn lookups(list: &[api::TableLookupPrefix]) -> Result<Vec<Lookup>, Status> {
    list.iter()
        .enumerate()
        .map(|(i, l)| {
            let field = format!("prefixes[{i}].prefix");
            let bare = !l.prefix.contains('/');
            let net = parse_prefix(&field, &l.prefix).map_err(|e| Status::invalid_argument(e.to_string()))?;
            let kind = api::table_lookup_prefix::Type::try_from(l.r#type).map_err(|_| {
                Status::invalid_argument(format!("prefixes[{i}].type: unknown lookup type {}", l.r#type))
            })?;
            Ok(Lookup { net, bare, kind })
        })
        .collect()
}

fn select<'a, V>(rib: &'a BTreeMap<IpNet, V>, filters: &[Lookup]) -> Vec<(&'a IpNet, &'a V)> {
    use api::table_lookup_prefix::Type;
    if filters.is_empty() {
        return rib.iter().collect();
    }
    let mut out: BTreeMap<&IpNet, &V> = BTreeMap::new();
    for f in filters {
        match f.kind {
            Type::Exact if f.bare => {
                if let Some((p, v)) =
                    rib.iter().filter(|(p, _)| p.contains(&f.net.addr())).max_by_key(|(p, _)| p.prefix_len())
                {
                    out.insert(p, v);
                }
            }
            Type::Exact => {
                if let Some((p, v)) = rib.get_key_value(&f.net) {
                    out.insert(p, v);
                }
            }
            Type::Longer => out.extend(rib.iter().filter(|(p, _)| f.net.contains(*p))),
            Type::Shorter => out.extend(rib.iter().filter(|(p, _)| p.contains(&f.net))),
        }
    }
    out.into_iter().collect()
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl GobgpApi for GobgpService {
    async fn start_bgp(&self, r: Request<api::StartBgpRequest>) -> Result<Response<()>, Status> {
        let g = r.into_inner().global.ok_or_else(|| Status::invalid_argument("global: required"))?;
        if g.asn == 0 || g.asn == u32::from(crate::bgp::wire::iana::AS_TRANS) {
            return Err(Status::invalid_argument(format!("global.asn: {} is not a usable AS number", g.asn)));
        }
        let rid: Ipv4Addr = g.router_id.parse().ok().filter(|r: &Ipv4Addr| !r.is_unspecified()).ok_or_else(|| {
            Status::invalid_argument(format!("global.router_id: {:?} is not a non-zero IPv4 address", g.router_id))
        })?;
        let (asn, id) = self.speaker.defaults();
        if asn.is_some_and(|a| a != g.asn) || id.is_some_and(|i| i != rid) {
            return Err(Status::failed_precondition(format!(
                "BGP already runs with AS {} router-id {} (from --local-asn/--router-id or an earlier StartBgp); StopBgp first",
                asn.map_or("-".into(), |a| a.to_string()),
                id.map_or("-".into(), |i| i.to_string())
            )));
        }
        // listen_port, listen_addresses and use_multiple_paths are speakerd's flags' business
        // (--bgp-listen); see docs/GOBGP_API.md.
        self.speaker.set_defaults(Some(g.asn), Some(rid));
        Ok(Response::new(()))
    }

    async fn stop_bgp(&self, _: Request<api::StopBgpRequest>) -> Result<Response<()>, Status> {
        for p in self.speaker.list_peers().await.into_iter().filter(|p| p.owner == OWNER) {
            let _ = self.speaker.delete_peer(&p.spec.address.to_string()).await;
        }
        self.speaker.set_announcements(OWNER, Vec::new()).await?;
        if let Ok(mut u) = self.uuids.lock() {
            *u = Default::default();
        }
        self.speaker.set_defaults(self.flag_defaults.0, self.flag_defaults.1);
        Ok(Response::new(()))
    }

    async fn get_bgp(&self, _: Request<api::GetBgpRequest>) -> Result<Response<api::GetBgpResponse>, Status> {
        let (asn, id) = self.speaker.defaults();
        let router_id = id.or_else(crate::netif::default_router_id).map(|i| i.to_string()).unwrap_or_default();
        let (listen_port, listen_addresses) = match &self.listen {
            None => (-1, Vec::new()),
            Some(l) => (l.first().map_or(179, |a| i32::from(a.port())), l.iter().map(|a| a.ip().to_string()).collect()),
        };
        let global =
            api::Global { asn: asn.unwrap_or(0), router_id, listen_port, listen_addresses, ..Default::default() };
        Ok(Response::new(api::GetBgpResponse { global: Some(global) }))
    }

    type WatchEventStream = BoxStream<api::WatchEventResponse>;

    async fn watch_event(
        &self,
        r: Request<api::WatchEventRequest>,
    ) -> Result<Response<Self::WatchEventStream>, Status> {
        use api::watch_event_request::table::filter::Type as Filter;
        let r = r.into_inner();
        let peers = r.peer.is_some();
        let mut best = false;
        let mut init = false;
        for (i, f) in r.table.iter().flat_map(|t| t.filters.iter()).enumerate() {
            match Filter::try_from(f.r#type) {
                Ok(Filter::Best) => {
                    best = true;
                    init |= f.init;
                }
                Ok(other) => {
                    return Err(Status::unimplemented(format!(
                        "table.filters[{i}]: {}: speakerd keeps no Adj-RIB-In (it originates routes and does not use received ones); watch BEST",
                        other.as_str_name()
                    )))
                }
                Err(_) => return Err(Status::invalid_argument(format!("table.filters[{i}].type: unknown {}", f.r#type))),
            }
        }
        if !peers && !best {
            return Err(Status::invalid_argument("no events to watch: set peer and/or table (filter BEST)"));
        }
        // Subscribe before reading the current state, so nothing falls between the two.
        let mut rx = self.speaker.subscribe();
        let (tx, out) = mpsc::channel::<Result<api::WatchEventResponse, Status>>(256);
        let table = |paths| api::WatchEventResponse {
            event: Some(api::watch_event_response::Event::Table(api::watch_event_response::TableEvent { paths })),
        };
        if init {
            let mut paths = Vec::new();
            for fam in [Fam::V4, Fam::V6] {
                for (p, (a, owners)) in self.global_rib(fam).await {
                    paths.push(conv::global_path(&p, &a, self.age(&owners, &p), self.uuid_of(&p)));
                }
            }
            for chunk in paths.chunks(INIT_CHUNK) {
                if tx.send(Ok(table(chunk.to_vec()))).await.is_err() {
                    return Err(Status::cancelled("watcher gone"));
                }
            }
        }
        let speaker = self.speaker.clone();
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = tx.closed() => return,
                    ev = rx.recv() => ev,
                };
                let msg = match ev {
                    Ok(Event::Peer(p)) if peers => {
                        let view = if p.deleted { None } else { speaker.get_peer(&p.address.to_string()).await.ok() };
                        conv::peer_event(p.address, p.new, view.as_ref())
                    }
                    Ok(Event::Announcement(a)) if best => table(vec![me.global_path_of(&a.advert.prefix).await]),
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "watcher fell {n} events behind; list again and watch again"
                            ))))
                            .await;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(out))))
    }

    async fn add_peer(&self, r: Request<api::AddPeerRequest>) -> Result<Response<()>, Status> {
        let p = r.into_inner().peer.ok_or_else(|| Status::invalid_argument("peer: required"))?;
        let spec = self.peer_spec(&p, None)?;
        let addr = spec.address.to_string();
        self.speaker.add_peer(OWNER, spec).await?;
        if p.conf.as_ref().is_some_and(|c| c.admin_down) {
            self.speaker.set_peer_enabled(&addr, false, "").await?;
        }
        Ok(Response::new(()))
    }

    async fn delete_peer(&self, r: Request<api::DeletePeerRequest>) -> Result<Response<()>, Status> {
        let r = r.into_inner();
        if !r.interface.is_empty() {
            return Err(Status::invalid_argument(
                "interface: unnumbered peers are not served by speakerd; give address",
            ));
        }
        let a = address("address", &r.address)?;
        self.own_peer(&a, "DeletePeer").await?;
        self.speaker.delete_peer(&a).await?;
        Ok(Response::new(()))
    }

    type ListPeerStream = BoxStream<api::ListPeerResponse>;

    async fn list_peer(&self, r: Request<api::ListPeerRequest>) -> Result<Response<Self::ListPeerStream>, Status> {
        let r = r.into_inner();
        let views = if r.address.is_empty() {
            self.speaker.list_peers().await
        } else {
            match self.speaker.get_peer(r.address.trim()).await {
                Ok(v) => vec![v],
                // As GoBGP: an unknown address lists nothing.
                Err(SpeakerError::PeerNotFound(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            }
        };
        let list: Vec<_> = views.iter().map(|v| Ok(api::ListPeerResponse { peer: Some(conv::peer(v)) })).collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(list))))
    }

    async fn update_peer(
        &self,
        r: Request<api::UpdatePeerRequest>,
    ) -> Result<Response<api::UpdatePeerResponse>, Status> {
        let p = r.into_inner().peer.ok_or_else(|| Status::invalid_argument("peer: required"))?;
        let conf_addr = p.conf.as_ref().map(|c| c.neighbor_address.clone()).unwrap_or_default();
        let a = address("peer.conf.neighbor_address", &conf_addr)?;
        let current = self.own_peer(&a, "UpdatePeer").await?;
        let spec = self.peer_spec(&p, Some(&current))?;
        self.speaker.update_peer(spec).await?;
        let down = p.conf.as_ref().is_some_and(|c| c.admin_down);
        if down != current.admin_down {
            self.speaker.set_peer_enabled(&a, !down, "").await?;
        }
        // speakerd keeps no Adj-RIB-In: there is never anything to soft-reset inbound.
        Ok(Response::new(api::UpdatePeerResponse { needs_soft_reset_in: false }))
    }

    async fn reset_peer(&self, r: Request<api::ResetPeerRequest>) -> Result<Response<()>, Status> {
        let r = r.into_inner();
        let a = address("address", &r.address)?;
        self.speaker.reset_peer(&a, r.soft).await?;
        Ok(Response::new(()))
    }

    async fn shutdown_peer(&self, r: Request<api::ShutdownPeerRequest>) -> Result<Response<()>, Status> {
        let r = r.into_inner();
        let a = address("address", &r.address)?;
        self.speaker.set_peer_enabled(&a, false, &r.communication).await?;
        Ok(Response::new(()))
    }

    async fn enable_peer(&self, r: Request<api::EnablePeerRequest>) -> Result<Response<()>, Status> {
        let a = address("address", &r.get_ref().address)?;
        self.speaker.set_peer_enabled(&a, true, "").await?;
        Ok(Response::new(()))
    }

    async fn disable_peer(&self, r: Request<api::DisablePeerRequest>) -> Result<Response<()>, Status> {
        let r = r.into_inner();
        let a = address("address", &r.address)?;
        self.speaker.set_peer_enabled(&a, false, &r.communication).await?;
        Ok(Response::new(()))
    }

    async fn add_path(&self, r: Request<api::AddPathRequest>) -> Result<Response<api::AddPathResponse>, Status> {
        let r = r.into_inner();
        table_global("table_type", r.table_type, &r.vrf_id)?;
        let p = r.path.ok_or_else(|| Status::invalid_argument("path: required"))?;
        let added = self.add_paths("path", std::slice::from_ref(&p)).await?;
        let uuid = added.first().map(|p| self.new_uuid(*p)).unwrap_or_default();
        Ok(Response::new(api::AddPathResponse { uuid }))
    }

    async fn delete_path(&self, r: Request<api::DeletePathRequest>) -> Result<Response<()>, Status> {
        let r = r.into_inner();
        table_global("table_type", r.table_type, &r.vrf_id)?;
        let prefixes: Vec<IpNet> = if !r.uuid.is_empty() {
            let p = self.uuids.lock().ok().and_then(|u| u.0.get(&r.uuid).copied());
            vec![p.ok_or_else(|| Status::not_found("uuid: no path added over this API has this UUID"))?]
        } else if let Some(p) = &r.path {
            vec![conv::parse_path("path", p, false)?.advert.prefix]
        } else {
            // No path: every path of this API's owner, of the family if one is given.
            let fam = r.family.as_ref().map(|f| conv::family("family", f)).transpose()?;
            self.speaker
                .list_announcements(Some(OWNER))
                .await
                .into_iter()
                .map(|(_, a)| a.prefix)
                .filter(|p| fam.is_none_or(|f| Fam::of(p) == f))
                .collect()
        };
        self.speaker.withdraw(OWNER, &prefixes).await?;
        self.forget_uuids(&prefixes);
        Ok(Response::new(()))
    }

    type ListPathStream = BoxStream<api::ListPathResponse>;

    async fn list_path(&self, r: Request<api::ListPathRequest>) -> Result<Response<Self::ListPathStream>, Status> {
        let r = r.into_inner();
        let fam = required_family(&r.family)?;
        let filters = lookups(&r.prefixes)?;
        let dest = |p: &IpNet, path: api::Path| {
            Ok(api::ListPathResponse {
                destination: Some(api::Destination { prefix: p.to_string(), paths: vec![path] }),
            })
        };
        let out: Vec<Result<api::ListPathResponse, Status>> = match api::TableType::try_from(r.table_type) {
            Ok(api::TableType::Global) => {
                let rib = self.global_rib(fam).await;
                select(&rib, &filters)
                    .into_iter()
                    .map(|(p, (a, owners))| dest(p, conv::global_path(p, a, self.age(owners, p), self.uuid_of(p))))
                    .collect()
            }
            Ok(api::TableType::AdjOut) => {
                let name = address("name", &r.name)?;
                let (view, enc, routes) = self.speaker.adj_rib_out(&name).await?;
                let rib: BTreeMap<IpNet, Arc<RouteAttrs>> = routes.into_iter().filter(|(p, _)| Fam::of(p) == fam).collect();
                match enc {
                    None => Vec::new(),
                    Some(enc) => select(&rib, &filters)
                        .into_iter()
                        .map(|(p, a)| {
                            let owners: Vec<String> =
                                self.ages.lock().map(|m| m.owners_of(p)).unwrap_or_default();
                            dest(p, conv::sent_path(p, a, &enc, view.spec.address, self.age(&owners, p)))
                        })
                        .collect(),
                }
            }
            Ok(t @ (api::TableType::AdjIn | api::TableType::Local)) => {
                return Err(Status::unimplemented(format!(
                    "ListPath {}: speakerd keeps no received routes (it originates routes); GetTable ADJ_IN gives the counts",
                    t.as_str_name()
                )))
            }
            Ok(api::TableType::Vrf) => return Err(Status::unimplemented("ListPath VRF: speakerd has no VRFs")),
            Err(_) => return Err(Status::invalid_argument(format!("table_type: unknown {}", r.table_type))),
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(out))))
    }

    async fn add_path_stream(&self, r: Request<Streaming<api::AddPathStreamRequest>>) -> Result<Response<()>, Status> {
        let mut s = r.into_inner();
        let (mut n, mut paths) = (0usize, 0usize);
        while let Some(m) = s.message().await? {
            table_global(&format!("message {n}: table_type"), m.table_type, &m.vrf_id)?;
            self.add_paths(&format!("message {n}: paths"), &m.paths).await?;
            n += 1;
            paths += m.paths.len();
        }
        crate::mem::release_after_bulk(paths);
        Ok(Response::new(()))
    }

    async fn get_table(&self, r: Request<api::GetTableRequest>) -> Result<Response<api::GetTableResponse>, Status> {
        let r = r.into_inner();
        let fam = required_family(&r.family)?;
        let (d, accepted) = match api::TableType::try_from(r.table_type) {
            Ok(api::TableType::Global) => (self.global_rib(fam).await.len() as u64, 0),
            Ok(api::TableType::AdjOut) => {
                let v = self.speaker.get_peer(&address("name", &r.name)?).await?;
                (if fam == Fam::V4 { v.advertised.0 } else { v.advertised.1 }, 0)
            }
            Ok(api::TableType::AdjIn) => {
                let v = self.speaker.get_peer(&address("name", &r.name)?).await?;
                let n = v.status.received[if fam == Fam::V4 { 0 } else { 1 }];
                (n, n)
            }
            Ok(t) => {
                return Err(Status::unimplemented(format!("GetTable {}: speakerd has no such table", t.as_str_name())))
            }
            Err(_) => return Err(Status::invalid_argument(format!("table_type: unknown {}", r.table_type))),
        };
        Ok(Response::new(api::GetTableResponse { num_destination: d, num_path: d, num_accepted: accepted }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_select_like_gobgp() {
        let rib: BTreeMap<IpNet, ()> = ["10.0.0.0/8", "10.0.0.0/24", "10.0.1.0/24", "192.0.2.0/24"]
            .iter()
            .map(|p| (p.parse().unwrap(), ()))
            .collect();
        let l = |p: &str, t: api::table_lookup_prefix::Type| {
            lookups(&[api::TableLookupPrefix { prefix: p.into(), r#type: t as i32 }]).unwrap()
        };
        let names = |v: Vec<(&IpNet, &())>| v.into_iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>();
        use api::table_lookup_prefix::Type;
        assert_eq!(names(select(&rib, &l("10.0.0.5", Type::Exact))), ["10.0.0.0/24"]);
        assert_eq!(names(select(&rib, &l("10.0.0.0/8", Type::Exact))), ["10.0.0.0/8"]);
        assert_eq!(names(select(&rib, &l("10.0.0.0/8", Type::Longer))), ["10.0.0.0/8", "10.0.0.0/24", "10.0.1.0/24"]);
        assert_eq!(names(select(&rib, &l("10.0.1.0/24", Type::Shorter))), ["10.0.0.0/8", "10.0.1.0/24"]);
    }
}
