//! The controller role's IP allocator, pure: pools, namespaces and Services (with their current
//! `status.loadBalancer.ingress`) in; the Service status/annotation changes, Events and pool
//! status counts out. No I/O: the controller mode drives it. Behaviour follows upstream
//! MetalLB's controller (`controller/service.go`) and allocator (`internal/allocator`); the
//! differences are listed in docs/K8S_BRIDGE.md.
//!
//! Every call rebuilds the allocation state from the Services' current status, in two phases:
//! first every Service that already has addresses re-registers them (oldest first), and only
//! then are new addresses handed out. So a restart or a new leader never reshuffles addresses.
pub mod pool;
pub mod sharing;

pub use pool::{overlapping, Pool, Range, ServiceAllocation};
pub use sharing::{backend_key, Key, Port};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

pub const ANN_ADDRESS_POOL: &str = "metallb.io/address-pool";
pub const ANN_LB_IPS: &str = "metallb.io/loadBalancerIPs";
pub const ANN_ALLOCATED_FROM_POOL: &str = "metallb.io/ip-allocated-from-pool";
pub const ANN_ALLOW_SHARED_IP: &str = "metallb.io/allow-shared-ip";
pub const DEPRECATED_PREFIX: &str = "metallb.universe.tf/";

/// The Service fields the allocator reads.
#[derive(Debug, Clone, Default)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `spec.type` ("LoadBalancer", "ClusterIP", ...).
    pub type_: String,
    pub load_balancer_class: Option<String>,
    /// `spec.loadBalancerIP` ("" when unset).
    pub load_balancer_ip: String,
    pub cluster_ips: Vec<String>,
    /// `spec.ipFamilyPolicy` (None = SingleStack).
    pub ip_family_policy: Option<String>,
    pub external_traffic_policy_local: bool,
    pub selector: BTreeMap<String, String>,
    pub ports: Vec<Port>,
    /// `status.loadBalancer.ingress[*].ip` as currently written ("" for an entry without an IP).
    pub ingress: Vec<String>,
    /// creationTimestamp as seconds (any monotonic order); older Services keep contested IPs.
    pub created: i64,
}

impl Service {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The stable annotation, else its `metallb.universe.tf/` spelling.
    pub fn annotation(&self, stable: &str) -> Option<&str> {
        if let Some(v) = self.annotations.get(stable) {
            return Some(v);
        }
        let old = format!("{DEPRECATED_PREFIX}{}", stable.trim_start_matches("metallb.io/"));
        self.annotations.get(&old).map(String::as_str)
    }

    fn policy(&self) -> Policy {
        match self.ip_family_policy.as_deref() {
            Some("PreferDualStack") => Policy::PreferDual,
            Some("RequireDualStack") => Policy::RequireDual,
            _ => Policy::Single,
        }
    }

    fn alloc_key(&self) -> Key {
        Key {
            sharing: self.annotation(ANN_ALLOW_SHARED_IP).unwrap_or("").to_string(),
            backend: backend_key(self.external_traffic_policy_local, &self.selector),
        }
    }

    /// The family of the cluster IPs (upstream's ipfamily.ForService).
    fn family(&self) -> Result<Family, String> {
        let ips = self
            .cluster_ips
            .iter()
            .map(|s| s.parse::<IpAddr>().map_err(|_| format!("invalid cluster IP {s:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        family_of(&ips)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
    Dual,
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Family::V4 => "ipv4",
            Family::V6 => "ipv6",
            Family::Dual => "dual",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Single,
    PreferDual,
    RequireDual,
}

fn family_of(ips: &[IpAddr]) -> Result<Family, String> {
    match ips {
        [a] => Ok(if a.is_ipv4() { Family::V4 } else { Family::V6 }),
        [a, b] if a.is_ipv4() != b.is_ipv4() => Ok(Family::Dual),
        [_, _] => Err(format!("{ips:?}: same address family")),
        [] => Err("no addresses".into()),
        _ => Err(format!("{ips:?}: more than two addresses")),
    }
}

fn show(ips: &[IpAddr]) -> String {
    ips.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `namespace/name` of the Service.
    pub service: String,
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

/// What the controller must write on a Service whose status or annotation is not yet right.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceUpdate {
    pub service: String,
    /// The new `status.loadBalancer.ingress` IPs (empty = clear).
    pub ingress: Vec<IpAddr>,
    /// The `metallb.io/ip-allocated-from-pool` value (None = remove the annotation).
    pub pool: Option<String>,
}

/// IPAddressPool status counts, as v0.15 writes them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolStatus {
    pub assigned_ipv4: i64,
    pub assigned_ipv6: i64,
    pub available_ipv4: i64,
    pub available_ipv6: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub pool: String,
    pub ips: Vec<IpAddr>,
}

#[derive(Debug, Default)]
pub struct Outcome {
    /// Every Service that holds addresses after this pass.
    pub assignments: BTreeMap<String, Assignment>,
    /// Only the Services whose status or annotation must change.
    pub updates: Vec<ServiceUpdate>,
    pub events: Vec<Event>,
    pub pools: BTreeMap<String, PoolStatus>,
}

/// The whole world the allocator needs.
#[derive(Debug, Default, Clone)]
pub struct Input {
    pub pools: Vec<Pool>,
    /// Namespace name → labels (for `namespaceSelectors`).
    pub namespaces: BTreeMap<String, BTreeMap<String, String>>,
    pub services: Vec<Service>,
    /// `--lb-class`: only Services whose `spec.loadBalancerClass` equals it (None: only
    /// Services without a class) are ours; the others are not touched at all.
    pub lb_class: Option<String>,
}

#[derive(Debug, Clone)]
struct Alloc {
    pool: usize,
    ips: Vec<IpAddr>,
    ports: Vec<Port>,
    key: Key,
}

#[derive(Debug, Default)]
struct IpUse {
    /// service → its key.
    services: BTreeMap<String, Key>,
    /// port → service using it.
    ports: HashMap<Port, String>,
}

/// The allocation state: upstream's Allocator, minus the global mutable maps.
pub struct Allocator<'a> {
    pools: &'a [Pool],
    namespaces: &'a BTreeMap<String, BTreeMap<String, String>>,
    allocated: BTreeMap<String, Alloc>,
    on_ip: HashMap<IpAddr, IpUse>,
    /// Per (pool, range): every address below this one is in use. Registering only adds uses, so a
    /// hint stays true until something is unassigned (which clears them all). It makes a burst of N
    /// Services cost O(N + pool) per pass instead of O(N²): 10,000 Services took 25 s without it.
    /// Used only for Services that do not share (a sharing Service may join an address in use).
    free_from: std::cell::RefCell<HashMap<(usize, usize), u128>>,
}

impl<'a> Allocator<'a> {
    pub fn new(pools: &'a [Pool], namespaces: &'a BTreeMap<String, BTreeMap<String, String>>) -> Self {
        Self { pools, namespaces, allocated: BTreeMap::new(), on_ip: HashMap::new(), free_from: Default::default() }
    }

    fn compatible(&self, p: &Pool, svc: &Service) -> bool {
        let empty = BTreeMap::new();
        let ns_labels = self.namespaces.get(&svc.namespace).unwrap_or(&empty);
        p.compatible(&svc.namespace, ns_labels, &svc.labels)
    }

    /// The first pool holding every one of `ips` (pools must not overlap).
    fn pool_for(&self, ips: &[IpAddr]) -> Option<usize> {
        self.pools.iter().position(|p| ips.iter().all(|ip| p.contains(*ip)))
    }

    fn check_sharing(&self, svc: &str, ip: IpAddr, ports: &[Port], key: &Key) -> Result<(), String> {
        let Some(u) = self.on_ip.get(&ip) else {
            return Ok(());
        };
        let others: Vec<&String> = u.services.keys().filter(|s| *s != svc).collect();
        if let Some((_, k)) = u.services.iter().find(|(s, _)| *s != svc) {
            if let Some(why) = sharing::sharing_refusal(k, key) {
                let others = others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",");
                return Err(format!("can't use {ip} for {svc}, address also in use by {others}: {why}"));
            }
        }
        for p in ports {
            if let Some(cur) = u.ports.get(p) {
                if cur != svc {
                    return Err(format!("port {p} is already in use on {ip} by {cur}"));
                }
            }
        }
        Ok(())
    }

    fn register(&mut self, svc: &str, a: Alloc) {
        self.unassign(svc);
        for ip in &a.ips {
            let u = self.on_ip.entry(*ip).or_default();
            u.services.insert(svc.to_string(), a.key.clone());
            for p in &a.ports {
                u.ports.insert(p.clone(), svc.to_string());
            }
        }
        self.allocated.insert(svc.to_string(), a);
    }

    pub fn unassign(&mut self, svc: &str) {
        let Some(a) = self.allocated.remove(svc) else {
            return;
        };
        self.free_from.borrow_mut().clear();
        for ip in &a.ips {
            if let Some(u) = self.on_ip.get_mut(ip) {
                u.services.remove(svc);
                u.ports.retain(|_, s| s != svc);
                if u.services.is_empty() {
                    self.on_ip.remove(ip);
                }
            }
        }
    }

    /// upstream's Assign: these exact IPs for this Service, if config and sharing allow.
    fn assign(&mut self, svc: &Service, ips: &[IpAddr]) -> Result<(), String> {
        let key = svc.key();
        let Some(pool) = self.pool_for(ips) else {
            return Err(format!("{} is not allowed in config", show(ips)));
        };
        if !self.compatible(&self.pools[pool], svc) {
            return Err(format!("pool {} not compatible for ip assignment", self.pools[pool].name));
        }
        family_of(ips)?;
        let k = svc.alloc_key();
        for ip in ips {
            self.check_sharing(&key, *ip, &svc.ports, &k)?;
        }
        self.register(&key, Alloc { pool, ips: ips.to_vec(), ports: svc.ports.clone(), key: k });
        Ok(())
    }

    fn pool_of(&self, svc: &str) -> Option<&'a Pool> {
        self.allocated.get(svc).map(|a| &self.pools[a.pool])
    }

    /// First free address per family from one pool: (v4, v6).
    fn free_in_pool(&self, p: &Pool, svc: &Service) -> (Option<IpAddr>, Option<IpAddr>) {
        let (key, k) = (svc.key(), svc.alloc_key());
        let alone = k.sharing.is_empty();
        let (mut v4, mut v6) = (None, None);
        for (ri, r) in p.ranges.iter().enumerate() {
            let slot = if r.v6 { &mut v6 } else { &mut v4 };
            if slot.is_some() {
                continue;
            }
            let hint = (p as *const Pool as usize, ri);
            let mut x = if alone {
                self.free_from.borrow().get(&hint).copied().unwrap_or(r.first).max(r.first)
            } else {
                r.first
            };
            loop {
                let ip = pool::from_u128(r.v6, x);
                let free = match self.on_ip.get(&ip) {
                    None => true,
                    // Taken by another Service, and this one does not share: no need to ask why.
                    Some(u) if alone && u.services.keys().any(|s| *s != key) => false,
                    Some(_) => self.check_sharing(&key, ip, &svc.ports, &k).is_ok(),
                };
                if free && !(p.avoid_buggy_ips && pool::is_buggy(ip)) {
                    *slot = Some(ip);
                    break;
                }
                if x == r.last {
                    break;
                }
                x += 1;
            }
            if alone {
                // Everything below x is in use (x itself is free, or the range is full).
                self.free_from.borrow_mut().insert(hint, x);
            }
        }
        (v4, v6)
    }

    fn select(
        p: &Pool,
        got: (Option<IpAddr>, Option<IpAddr>),
        fam: Family,
        policy: Policy,
    ) -> Result<Vec<IpAddr>, String> {
        let none = || format!("no available IPs in pool {} for {fam} IPFamily", p.name);
        match (fam, got) {
            (Family::V4, (Some(a), _)) | (Family::V6, (_, Some(a))) => Ok(vec![a]),
            (Family::V4 | Family::V6, _) => Err(none()),
            (Family::Dual, (Some(a), Some(b))) if policy != Policy::Single => Ok(vec![a, b]),
            (Family::Dual, (Some(a), None)) | (Family::Dual, (None, Some(a))) if policy == Policy::PreferDual => {
                Ok(vec![a])
            }
            _ => Err(none()),
        }
    }

    /// upstream's findBestPoolForService + Assign over an ordered candidate list.
    fn allocate_from(&mut self, pools: &[usize], svc: &Service, fam: Family) -> Result<Vec<IpAddr>, String> {
        let policy = svc.policy();
        let (primary_v6, mut first_primary, mut first_secondary) =
            (svc.cluster_ips.first().is_some_and(|c| c.contains(':')), None, None);
        let mut chosen = None;
        for &i in pools {
            let p = &self.pools[i];
            let got = self.free_in_pool(p, svc);
            if got.0.is_none() && got.1.is_none() {
                continue;
            }
            let full = match fam {
                Family::V4 => got.0.is_some(),
                Family::V6 => got.1.is_some(),
                Family::Dual => got.0.is_some() && got.1.is_some(),
            };
            if full {
                chosen = Some((i, got));
                break;
            }
            if !(policy == Policy::PreferDual && fam == Family::Dual) {
                continue;
            }
            let (prim, sec) = if primary_v6 { (got.1, got.0) } else { (got.0, got.1) };
            if prim.is_some() && first_primary.is_none() {
                first_primary = Some((i, got));
            }
            if sec.is_some() && first_secondary.is_none() {
                first_secondary = Some((i, got));
            }
        }
        let (i, got) = chosen
            .or(first_primary)
            .or(first_secondary)
            .ok_or_else(|| format!("no suitable pool for {fam} IPFamily"))?;
        let ips = Self::select(&self.pools[i], got, fam, policy)?;
        self.assign(svc, &ips)?;
        Ok(ips)
    }

    /// upstream's Allocate: the pools pinned to the Service (namespaces, selectors, by
    /// priority) first, then every autoAssign pool without serviceAllocation.
    fn allocate(&mut self, svc: &Service, fam: Family) -> Result<Vec<IpAddr>, String> {
        let mut pinned: Vec<usize> = (0..self.pools.len())
            .filter(|&i| {
                let p = &self.pools[i];
                p.auto_assign
                    && p.service_allocation.as_ref().is_some_and(|sa| {
                        !sa.namespaces.is_empty()
                            || !sa.namespace_selectors.is_empty()
                            || !sa.service_selectors.is_empty()
                    })
                    && self.compatible(p, svc)
            })
            .collect();
        // Positive priorities first, lowest number first; then priority 0; ties by name.
        pinned.sort_by(|&a, &b| {
            let (pa, pb) = (self.pools[a].priority(), self.pools[b].priority());
            ((pa <= 0), pa, &self.pools[a].name).cmp(&((pb <= 0), pb, &self.pools[b].name))
        });
        if !pinned.is_empty() {
            if let Ok(ips) = self.allocate_from(&pinned, svc, fam) {
                return Ok(ips);
            }
        }
        let mut rest: Vec<usize> = (0..self.pools.len())
            .filter(|&i| self.pools[i].auto_assign && self.pools[i].service_allocation.is_none())
            .collect();
        rest.sort_by(|&a, &b| self.pools[a].name.cmp(&self.pools[b].name));
        self.allocate_from(&rest, svc, fam).map_err(|_| "no available IPs".to_string())
    }

    fn allocate_from_pool(&mut self, svc: &Service, fam: Family, name: &str) -> Result<Vec<IpAddr>, String> {
        let i = self.pools.iter().position(|p| p.name == name).ok_or_else(|| format!("unknown pool {name:?}"))?;
        let p = &self.pools[i];
        let got = self.free_in_pool(p, svc);
        if got.0.is_none() && got.1.is_none() {
            return Err(format!("no available IPs in pool {name}"));
        }
        let ips = Self::select(p, got, fam, svc.policy())?;
        self.assign(svc, &ips)?;
        Ok(ips)
    }

    /// PreferDualStack Service holding one address: try to add the other family from its pool.
    fn allocate_additional(&mut self, svc: &Service, existing: IpAddr) -> Result<IpAddr, String> {
        let p = self.pool_of(&svc.key()).ok_or("no pool")?;
        let got = self.free_in_pool(p, svc);
        let fam = if existing.is_ipv4() { Family::V6 } else { Family::V4 };
        let ip = Self::select(p, got, fam, Policy::Single)?[0];
        self.assign(svc, &[existing, ip])?;
        Ok(ip)
    }

    /// Pool status counts, per family, as upstream computes them.
    pub fn pool_status(&self) -> BTreeMap<String, PoolStatus> {
        let mut used: Vec<(BTreeSet<IpAddr>, BTreeSet<IpAddr>)> = vec![Default::default(); self.pools.len()];
        for a in self.allocated.values() {
            for ip in &a.ips {
                if ip.is_ipv4() {
                    used[a.pool].0.insert(*ip)
                } else {
                    used[a.pool].1.insert(*ip)
                };
            }
        }
        self.pools
            .iter()
            .zip(used)
            .map(|(p, (u4, u6))| {
                let (c4, c6) = p.capacity();
                let (a4, a6) = (u4.len() as i64, u6.len() as i64);
                (
                    p.name.clone(),
                    PoolStatus {
                        assigned_ipv4: a4,
                        assigned_ipv6: a6,
                        available_ipv4: c4.saturating_sub(a4),
                        available_ipv6: if c6 == i64::MAX { c6 } else { c6.saturating_sub(a6) },
                    },
                )
            })
            .collect()
    }
}

/// The requested IPs (`metallb.io/loadBalancerIPs` or `spec.loadBalancerIP`) and their family.
fn desired_ips(svc: &Service) -> Result<Option<(Vec<IpAddr>, Family)>, String> {
    let ann = svc.annotation(ANN_LB_IPS).unwrap_or("");
    match (ann.is_empty(), svc.load_balancer_ip.is_empty()) {
        (true, true) => Ok(None),
        (false, false) => Err(format!("service can not have both {ANN_LB_IPS} and svc.Spec.LoadBalancerIP")),
        (false, true) => {
            let ips = ann
                .split(',')
                .map(|s| s.trim().parse::<IpAddr>().map_err(|_| format!("invalid {ANN_LB_IPS}: {ann:?}")))
                .collect::<Result<Vec<_>, _>>()?;
            let f = family_of(&ips)?;
            Ok(Some((ips, f)))
        }
        (true, false) => {
            let ip: IpAddr = svc
                .load_balancer_ip
                .parse()
                .map_err(|_| format!("invalid spec.loadBalancerIP {:?}", svc.load_balancer_ip))?;
            Ok(Some((vec![ip], family_of(&[ip])?)))
        }
    }
}

fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    let x: BTreeSet<_> = a.iter().collect();
    let y: BTreeSet<_> = b.iter().collect();
    x == y && a.len() == b.len()
}

/// Whether the Service is ours under `--lb-class` (upstream's filterByLoadBalancerClass).
pub fn is_ours(svc: &Service, lb_class: Option<&str>) -> bool {
    svc.load_balancer_class.as_deref().filter(|c| !c.is_empty()) == lb_class.filter(|c| !c.is_empty())
}

struct Pass<'a> {
    al: Allocator<'a>,
    events: Vec<Event>,
}

impl Pass<'_> {
    fn ev(&mut self, svc: &Service, t: EventType, reason: &str, message: String) {
        self.events.push(Event { service: svc.key(), type_: t, reason: reason.into(), message });
    }

    /// Phase 1 of upstream's convergeBalancer: keep the current addresses if still allowed.
    /// Returns the kept IPs, or Err(()) when the Service must not be processed further.
    fn keep_existing(&mut self, svc: &Service) -> Result<Vec<IpAddr>, ()> {
        let key = svc.key();
        if svc.cluster_ips.is_empty() {
            return Err(());
        }
        let policy = svc.policy();
        if policy == Policy::RequireDual && svc.cluster_ips.len() < 2 {
            self.ev(
                svc,
                EventType::Warning,
                "not enough clusterips",
                format!("Service requires dual stack but not enough clusterips {:?}", svc.cluster_ips),
            );
            return Err(());
        }
        let mut lb: Vec<IpAddr> = svc.ingress.iter().filter_map(|s| s.parse().ok()).collect();
        if lb.is_empty() {
            return Ok(lb);
        }
        let cluster_fam = match svc.family() {
            Ok(f) => f,
            Err(e) => {
                self.ev(
                    svc,
                    EventType::Warning,
                    "noclusterIPsIPFamily",
                    format!("Failed to retrieve ClusterIPs IPFamily: {e}"),
                );
                return Err(());
            }
        };
        let changed = match family_of(&lb) {
            Err(_) => true,
            Ok(f) if f == cluster_fam => false,
            Ok(_) => !(cluster_fam == Family::Dual && policy == Policy::PreferDual),
        };
        if changed {
            return Ok(vec![]);
        }
        if let Err(e) = self.al.assign(svc, &lb) {
            self.ev(
                svc,
                EventType::Normal,
                "ClearAssignment",
                format!("current IP for {key:?} not allowed by config, will attempt for new IP assignment: {e}"),
            );
            return Ok(vec![]);
        }
        if let Some(want) = svc.annotation(ANN_ADDRESS_POOL).filter(|s| !s.is_empty()) {
            if self.al.pool_of(&key).map(|p| p.name.as_str()) != Some(want) {
                self.al.unassign(&key);
                return Ok(vec![]);
            }
        }
        match desired_ips(svc) {
            Err(e) => {
                self.ev(
                    svc,
                    EventType::Warning,
                    "LoadBalancerFailed",
                    format!("invalid requested loadbalancer IPs: {e}"),
                );
                // upstream stops here and leaves the Service as it is.
                return Err(());
            }
            Ok(Some((want, _))) if !same_set(&want, &lb) => {
                self.al.unassign(&key);
                lb.clear();
            }
            Ok(_) => {}
        }
        Ok(lb)
    }

    /// Phase 2 of convergeBalancer: dual-stack completion and new allocations.
    fn complete(&mut self, svc: &Service, mut lb: Vec<IpAddr>) -> Result<Vec<IpAddr>, ()> {
        let key = svc.key();
        // Only when the cluster IPs are dual-stack: upstream also tries for a single-stack
        // Service, whose dual result it then clears on the next pass (a flap).
        if lb.len() == 1 && svc.policy() == Policy::PreferDual && svc.family() == Ok(Family::Dual) {
            match self.al.allocate_additional(svc, lb[0]) {
                Ok(ip) => {
                    lb.push(ip);
                    self.ev(svc, EventType::Normal, "IPAllocated", format!("Assigned additional IP {ip:?}"));
                }
                Err(e) => self.ev(
                    svc,
                    EventType::Normal,
                    "AdditionalAssignFailed",
                    format!("cannot assign additional IP in PreferDualStack: {e}"),
                ),
            }
        }
        if lb.is_empty() {
            match self.allocate_new(svc) {
                Ok(ips) => {
                    self.ev(svc, EventType::Normal, "IPAllocated", format!("Assigned IP {:?}", show(&ips)));
                    lb = ips;
                }
                Err(e) => {
                    self.ev(
                        svc,
                        EventType::Warning,
                        "AllocationFailed",
                        format!("Failed to allocate IP for {key:?}: {e}"),
                    );
                    return Err(());
                }
            }
        }
        Ok(lb)
    }

    /// upstream's allocateIPs.
    fn allocate_new(&mut self, svc: &Service) -> Result<Vec<IpAddr>, String> {
        let key = svc.key();
        let fam = svc.family()?;
        let pool = svc.annotation(ANN_ADDRESS_POOL).filter(|s| !s.is_empty());
        if let Some((want, wfam)) = desired_ips(svc)? {
            if wfam != fam {
                return Err(format!(
                    "requested loadBalancer IP(s) {:?} does not match the ipFamily of the service",
                    show(&want)
                ));
            }
            self.al.assign(svc, &want)?;
            if let Some(p) = pool {
                if self.al.pool_of(&key).map(|x| x.name.as_str()) != Some(p) {
                    self.al.unassign(&key);
                    return Err(format!(
                        "requested loadBalancer IP(s) {:?} is not compatible with requested address pool {p}",
                        show(&want)
                    ));
                }
            }
            return Ok(want);
        }
        if let Some(p) = pool {
            return self.al.allocate_from_pool(svc, fam, p);
        }
        self.al.allocate(svc, fam)
    }
}

/// The allocator's one entry point. Pure and deterministic: same input, same output.
pub fn reconcile(input: &Input) -> Outcome {
    let mut pass = Pass { al: Allocator::new(&input.pools, &input.namespaces), events: vec![] };
    let mut ours: Vec<&Service> = input.services.iter().filter(|s| is_ours(s, input.lb_class.as_deref())).collect();
    ours.sort_by_key(|s| (s.created, s.key()));

    // The result per Service: None = clear (or never had), Some(ips) = hold these.
    let mut result: BTreeMap<String, Option<Vec<IpAddr>>> = BTreeMap::new();
    // Services left untouched (error paths where upstream returns before writing).
    let mut untouched: BTreeSet<String> = BTreeSet::new();
    let mut pending: Vec<(&Service, Vec<IpAddr>)> = vec![];
    // Why a Service's addresses are withdrawn without a replacement (for the ClearedIPs Event).
    let mut clear_why: BTreeMap<String, String> = BTreeMap::new();

    for svc in &ours {
        if svc.type_ != "LoadBalancer" {
            result.insert(svc.key(), None);
            clear_why.insert(svc.key(), "Service is no longer of type LoadBalancer".into());
            continue;
        }
        if input.pools.is_empty() {
            result.insert(svc.key(), None);
            clear_why.insert(svc.key(), "no IPAddressPool is configured".into());
            continue;
        }
        match pass.keep_existing(svc) {
            Ok(lb) => pending.push((svc, lb)),
            Err(()) => {
                // LoadBalancerFailed keeps the Service as it is; the other early exits clear.
                if pass.events.last().is_some_and(|e| e.reason == "LoadBalancerFailed" && e.service == svc.key()) {
                    untouched.insert(svc.key());
                    // Its current addresses stay reserved so nobody else takes them.
                    let cur: Vec<IpAddr> = svc.ingress.iter().filter_map(|s| s.parse().ok()).collect();
                    if !cur.is_empty() {
                        let _ = pass.al.assign(svc, &cur);
                    }
                } else {
                    result.insert(svc.key(), None);
                }
            }
        }
    }
    // Phase 2 in the same order: Services with kept addresses first (they may only grow).
    pending.sort_by_key(|(s, lb)| (lb.is_empty(), s.created, s.key()));
    for (svc, lb) in pending {
        let r = pass.complete(svc, lb).ok();
        result.insert(svc.key(), r);
    }

    let mut out = Outcome { events: pass.events, pools: pass.al.pool_status(), ..Default::default() };
    for (k, a) in &pass.al.allocated {
        out.assignments.insert(k.clone(), Assignment { pool: input.pools[a.pool].name.clone(), ips: a.ips.clone() });
    }
    for svc in &ours {
        let key = svc.key();
        if untouched.contains(&key) {
            continue;
        }
        let (ingress, pool) = match (result.get(&key).cloned().flatten(), out.assignments.get(&key)) {
            (Some(ips), Some(a)) => (ips, Some(a.pool.clone())),
            _ => (vec![], None),
        };
        let cur_ips: Vec<String> = svc.ingress.clone();
        let new_ips: Vec<String> = ingress.iter().map(|i| i.to_string()).collect();
        let cur_pool = svc.annotations.get(ANN_ALLOCATED_FROM_POOL).cloned();
        if ingress.is_empty() && svc.ingress.iter().any(|s| s.parse::<IpAddr>().is_ok()) {
            let why = clear_why
                .get(&key)
                .cloned()
                .unwrap_or_else(|| "the Service can no longer be given an address (see the previous Events)".into());
            let t = if svc.type_ == "LoadBalancer" { EventType::Warning } else { EventType::Normal };
            out.events.push(Event {
                service: key.clone(),
                type_: t,
                reason: "ClearedIPs".into(),
                message: format!("Cleared {}: {why}", svc.ingress.join(",")),
            });
        }
        if cur_ips != new_ips || cur_pool != pool {
            out.updates.push(ServiceUpdate { service: key, ingress, pool });
        }
    }
    out
}
