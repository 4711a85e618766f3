//! Which IP is answered on which interface, and the gratuitous ARP / unsolicited NA bursts. Sans IO:
//! `handle(Input, now) -> Vec<Action>`; the driver owns sockets, netlink and the clock.
//!
//! Interface choice (the "right NIC"): an IP is answered on the up, non-loopback interfaces whose
//! configured subnets contain it, among those the claim allows (`interfaces`, then
//! `exclude_interfaces`; a trailing `*` matches a prefix). If no allowed interface has a subnet that
//! contains the IP, it is answered on the claim's explicitly listed interfaces; with no list, it is not
//! answered anywhere and the claim reports "no interface on the IP's subnet" (answering on every NIC is
//! how MetalLB users get the wrong NIC's MAC).
use super::frames::{self, Mac, Request};
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

/// An interface as netlink and getifaddrs describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub index: u32,
    pub name: String,
    pub mac: Mac,
    pub up: bool,
    pub loopback: bool,
    pub nets: Vec<IpNet>,
}

impl Iface {
    fn link_local(&self) -> Option<Ipv6Addr> {
        self.nets.iter().find_map(|n| match n {
            IpNet::V6(v6) if v6.addr().is_unicast_link_local() => Some(v6.addr()),
            _ => None,
        })
    }
}

/// An IP this node owns now, and where it may be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub ip: IpAddr,
    /// Interfaces to answer on; empty = any. A trailing `*` matches a prefix.
    pub interfaces: Vec<String>,
    pub exclude_interfaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimStatus {
    pub ip: IpAddr,
    pub answering_on: Vec<(String, Mac)>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct L2Counters {
    /// ARP requests and NS for IPs this node owns.
    pub requests_received: u64,
    pub responses_sent: u64,
    pub gratuitous_sent: u64,
    /// ARP/NS frames that did not parse or were invalid.
    pub ignored: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L2Config {
    /// Gratuitous ARPs / unsolicited NAs sent on taking an IP over.
    pub garp_count: u32,
    pub garp_interval: Duration,
}

impl Default for L2Config {
    /// MetalLB sends for 5 s at 1.1 s intervals.
    fn default() -> Self {
        Self { garp_count: 5, garp_interval: Duration::from_millis(1100) }
    }
}

#[derive(Debug)]
pub enum Input {
    /// The complete set of IPs this node owns now.
    Claims(Vec<Claim>),
    /// The interface table changed.
    Ifaces(Vec<Iface>),
    /// A socket on an interface failed (it is not used until the next interface change).
    IfaceFailed(u32, String),
    Frame { iface: u32, frame: Vec<u8> },
    Tick,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send { iface: u32, frame: Vec<u8> },
    /// The interfaces that need a socket now, each with the solicited-node multicast groups to join.
    Listen(BTreeMap<u32, BTreeSet<Mac>>),
    /// Call back with `Tick` at this instant.
    WakeAt(Instant),
}

#[derive(Debug)]
struct ClaimState {
    claim: Claim,
    on: Vec<u32>,
    error: Option<String>,
    burst_left: u32,
    next_burst: Instant,
}

#[derive(Debug, Default)]
pub struct Announcer {
    cfg: L2Config,
    ifaces: BTreeMap<u32, Iface>,
    failed: BTreeMap<u32, String>,
    claims: BTreeMap<IpAddr, ClaimState>,
    counters: L2Counters,
    listening: BTreeMap<u32, BTreeSet<Mac>>,
}

fn glob(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

impl Announcer {
    pub fn new(cfg: L2Config) -> Self {
        Self { cfg, ..Self::default() }
    }

    pub fn counters(&self) -> L2Counters {
        self.counters
    }

    pub fn status(&self) -> Vec<ClaimStatus> {
        self.claims
            .values()
            .map(|c| ClaimStatus {
                ip: c.claim.ip,
                answering_on: c.on.iter().filter_map(|i| self.ifaces.get(i)).map(|i| (i.name.clone(), i.mac)).collect(),
                error: c.error.clone(),
            })
            .collect()
    }

    /// Claims that cannot be answered anywhere.
    pub fn failures(&self) -> BTreeSet<IpAddr> {
        self.claims.values().filter(|c| c.error.is_some()).map(|c| c.claim.ip).collect()
    }

    fn select(&self, c: &Claim) -> Result<Vec<u32>, String> {
        let allowed: Vec<&Iface> = self
            .ifaces
            .values()
            .filter(|i| i.up && !i.loopback && i.mac != [0; 6] && !self.failed.contains_key(&i.index))
            .filter(|i| c.interfaces.is_empty() || c.interfaces.iter().any(|p| glob(p, &i.name)))
            .filter(|i| !c.exclude_interfaces.iter().any(|p| glob(p, &i.name)))
            .collect();
        let on_subnet: Vec<u32> =
            allowed.iter().filter(|i| i.nets.iter().any(|n| n.contains(&c.ip))).map(|i| i.index).collect();
        if !on_subnet.is_empty() {
            return Ok(on_subnet);
        }
        if !c.interfaces.is_empty() && !allowed.is_empty() {
            return Ok(allowed.iter().map(|i| i.index).collect());
        }
        let why = self.failed.values().next().map(|e| format!(" ({e})")).unwrap_or_default();
        Err(format!("no usable interface on the IP's subnet{why}"))
    }

    fn reselect(&mut self, now: Instant) {
        let ips: Vec<IpAddr> = self.claims.keys().copied().collect();
        for ip in ips {
            let sel = self.select(&self.claims[&ip].claim);
            let Some(st) = self.claims.get_mut(&ip) else { continue };
            match sel {
                Ok(on) => {
                    if on != st.on {
                        // Newly reachable on other interfaces: announce there afresh.
                        st.burst_left = self.cfg.garp_count;
                        st.next_burst = now;
                    }
                    st.on = on;
                    st.error = None;
                }
                Err(e) => {
                    st.on.clear();
                    st.burst_left = 0;
                    st.error = Some(e);
                }
            }
        }
    }

    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Claims(list) => {
                let new: BTreeMap<IpAddr, Claim> = list.into_iter().map(|c| (c.ip, c)).collect();
                // Removed IPs: forgotten at once, so no further answer or burst goes out.
                self.claims.retain(|ip, _| new.contains_key(ip));
                for (ip, c) in new {
                    let fresh = match self.claims.get(&ip) {
                        Some(st) => st.claim != c,
                        None => true,
                    };
                    if fresh {
                        self.claims.insert(
                            ip,
                            ClaimState { claim: c, on: vec![], error: None, burst_left: self.cfg.garp_count, next_burst: now },
                        );
                    }
                }
                self.reselect(now);
            }
            Input::Ifaces(list) => {
                self.ifaces = list.into_iter().map(|i| (i.index, i)).collect();
                self.failed.retain(|i, _| self.ifaces.contains_key(i));
                self.reselect(now);
            }
            Input::IfaceFailed(i, e) => {
                self.failed.insert(i, e);
                self.reselect(now);
            }
            Input::Frame { iface, frame } => self.frame(iface, &frame, &mut out),
            Input::Tick => {}
        }
        // Sockets first: the driver must have them before the first frame of a burst goes out.
        self.listen(&mut out);
        self.bursts(now, &mut out);
        if let Some(t) = self.claims.values().filter(|c| c.burst_left > 0 && !c.on.is_empty()).map(|c| c.next_burst).min() {
            out.push(Action::WakeAt(t));
        }
        out
    }

    fn frame(&mut self, iface: u32, frame: &[u8], out: &mut Vec<Action>) {
        let Some(req) = frames::parse(frame) else {
            self.counters.ignored += 1;
            return;
        };
        let Some(i) = self.ifaces.get(&iface) else { return };
        let Some(st) = self.claims.get(&req.target()) else { return };
        if !st.on.contains(&iface) {
            return;
        }
        match req {
            Request::Arp { sender_mac, sender_ip, target } => {
                // Our own gratuitous ARP, or another host's announcement of the IP: not a question.
                if sender_mac == i.mac || sender_ip == target {
                    return;
                }
                self.counters.requests_received += 1;
                out.push(Action::Send { iface, frame: frames::arp_reply(i.mac, target, sender_mac, sender_ip) });
            }
            Request::Ns { reply_mac, src_ip, target } => {
                if reply_mac == i.mac {
                    return;
                }
                self.counters.requests_received += 1;
                // The NA comes from the target address itself: resolvers such as ndisc6 ignore
                // advertisements from any other source, and the kernel accepts either.
                out.push(Action::Send { iface, frame: frames::neighbor_advert(i.mac, target, target, Some((reply_mac, src_ip))) });
            }
        }
        self.counters.responses_sent += 1;
    }

    fn bursts(&mut self, now: Instant, out: &mut Vec<Action>) {
        for st in self.claims.values_mut() {
            if st.burst_left == 0 || st.next_burst > now || st.on.is_empty() {
                continue;
            }
            for idx in &st.on {
                let Some(i) = self.ifaces.get(idx) else { continue };
                let frame = match st.claim.ip {
                    IpAddr::V4(v4) => frames::gratuitous_arp(i.mac, v4),
                    IpAddr::V6(v6) => frames::neighbor_advert(i.mac, i.link_local().unwrap_or(v6), v6, None),
                };
                out.push(Action::Send { iface: *idx, frame });
                self.counters.gratuitous_sent += 1;
            }
            st.burst_left -= 1;
            st.next_burst = now + self.cfg.garp_interval;
        }
    }

    fn listen(&mut self, out: &mut Vec<Action>) {
        let mut want: BTreeMap<u32, BTreeSet<Mac>> = BTreeMap::new();
        for st in self.claims.values() {
            for i in &st.on {
                let groups = want.entry(*i).or_default();
                if let IpAddr::V6(v6) = st.claim.ip {
                    groups.insert(frames::solicited_node_mac(v6));
                }
            }
        }
        if want != self.listening {
            self.listening = want.clone();
            out.push(Action::Listen(want));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M1: Mac = [2, 0, 0, 0, 0, 1];
    const M2: Mac = [2, 0, 0, 0, 0, 2];
    const HOST: Mac = [2, 0, 0, 0, 0, 0x99];

    fn ifaces() -> Vec<Iface> {
        vec![
            Iface { index: 1, name: "lo".into(), mac: [0; 6], up: true, loopback: true, nets: vec!["127.0.0.1/8".parse().unwrap()] },
            Iface {
                index: 2,
                name: "eth0".into(),
                mac: M1,
                up: true,
                loopback: false,
                nets: vec!["192.0.2.1/24".parse().unwrap(), "2001:db8::1/64".parse().unwrap(), "fe80::1/64".parse().unwrap()],
            },
            Iface { index: 3, name: "eth1".into(), mac: M2, up: true, loopback: false, nets: vec!["198.51.100.1/24".parse().unwrap()] },
        ]
    }

    fn claim(ip: &str) -> Claim {
        Claim { ip: ip.parse().unwrap(), interfaces: vec![], exclude_interfaces: vec![] }
    }

    fn sends(a: &[Action]) -> Vec<(u32, Vec<u8>)> {
        a.iter().filter_map(|x| if let Action::Send { iface, frame } = x { Some((*iface, frame.clone())) } else { None }).collect()
    }

    fn arp_request(target: &str) -> Vec<u8> {
        // Reply frames come from the same builder; build a request by hand: a gratuitous form from HOST
        // with a different sender IP is a normal request.
        let mut f = frames::gratuitous_arp(HOST, "192.0.2.9".parse().unwrap());
        let t: std::net::Ipv4Addr = target.parse().unwrap();
        f[38..42].copy_from_slice(&t.octets());
        f
    }

    fn setup() -> (Announcer, Instant) {
        let mut a = Announcer::new(L2Config { garp_count: 3, garp_interval: Duration::from_secs(1) });
        let t0 = Instant::now();
        a.handle(Input::Ifaces(ifaces()), t0);
        (a, t0)
    }

    #[test]
    fn claim_sends_a_burst_then_stops() {
        let (mut a, t0) = setup();
        let out = a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        let s = sends(&out);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].0, 2, "on eth0, whose subnet holds the IP");
        assert!(out.contains(&Action::WakeAt(t0 + Duration::from_secs(1))));
        assert!(sends(&a.handle(Input::Tick, t0 + Duration::from_millis(500))).is_empty(), "not yet");
        assert_eq!(sends(&a.handle(Input::Tick, t0 + Duration::from_secs(1))).len(), 1);
        let out = a.handle(Input::Tick, t0 + Duration::from_secs(2));
        assert_eq!(sends(&out).len(), 1);
        assert!(!out.iter().any(|x| matches!(x, Action::WakeAt(_))), "burst of 3 done");
        assert_eq!(a.counters().gratuitous_sent, 3);
    }

    #[test]
    fn unclaim_stops_answers_and_the_burst_at_once() {
        let (mut a, t0) = setup();
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        let out = a.handle(Input::Frame { iface: 2, frame: arp_request("192.0.2.50") }, t0);
        let s = sends(&out);
        assert_eq!(s.len(), 1);
        let e = pnet_packet::ethernet::EthernetPacket::new(&s[0].1).unwrap();
        assert_eq!(e.get_source().octets(), M1);
        a.handle(Input::Claims(vec![]), t0);
        assert!(sends(&a.handle(Input::Frame { iface: 2, frame: arp_request("192.0.2.50") }, t0)).is_empty());
        assert!(sends(&a.handle(Input::Tick, t0 + Duration::from_secs(5))).is_empty(), "no burst for an IP not owned");
    }

    #[test]
    fn never_answers_for_ips_not_owned_or_on_the_wrong_interface() {
        let (mut a, t0) = setup();
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        assert!(sends(&a.handle(Input::Frame { iface: 2, frame: arp_request("192.0.2.51") }, t0)).is_empty());
        assert!(sends(&a.handle(Input::Frame { iface: 3, frame: arp_request("192.0.2.50") }, t0)).is_empty(), "eth1 is not on 192.0.2.0/24");
    }

    #[test]
    fn second_nic_subnet_is_answered_with_the_second_mac() {
        let (mut a, t0) = setup();
        a.handle(Input::Claims(vec![claim("198.51.100.77")]), t0);
        let st = a.status();
        assert_eq!(st[0].answering_on, vec![("eth1".to_string(), M2)]);
    }

    #[test]
    fn interface_filters_and_no_subnet_error() {
        let (mut a, t0) = setup();
        let mut c = claim("203.0.113.5");
        a.handle(Input::Claims(vec![c.clone()]), t0);
        assert!(a.status()[0].error.as_deref().unwrap().contains("no usable interface"));
        assert_eq!(a.failures().len(), 1);
        c.interfaces = vec!["eth*".into()];
        c.exclude_interfaces = vec!["eth0".into()];
        a.handle(Input::Claims(vec![c]), t0);
        assert_eq!(a.status()[0].answering_on, vec![("eth1".to_string(), M2)]);
        assert!(a.failures().is_empty());
    }

    #[test]
    fn interface_going_down_moves_or_fails_the_claim() {
        let (mut a, t0) = setup();
        a.handle(Input::Claims(vec![claim("192.0.2.50")]), t0);
        let mut l = ifaces();
        l[1].up = false;
        a.handle(Input::Ifaces(l), t0);
        assert_eq!(a.failures(), [ "192.0.2.50".parse().unwrap() ].into());
        a.handle(Input::Ifaces(ifaces()), t0 + Duration::from_secs(9));
        assert!(a.failures().is_empty());
        a.handle(Input::IfaceFailed(2, "socket: boom".into()), t0);
        assert!(a.status()[0].error.as_deref().unwrap().contains("boom"));
    }

    #[test]
    fn ipv6_claim_joins_the_solicited_node_group_and_answers_ns() {
        let (mut a, t0) = setup();
        let out = a.handle(Input::Claims(vec![claim("2001:db8::50")]), t0);
        let want: BTreeMap<u32, BTreeSet<Mac>> = [(2, [frames::solicited_node_mac("2001:db8::50".parse().unwrap())].into())].into();
        assert!(out.contains(&Action::Listen(want)), "{out:?}");
        let s = sends(&out);
        assert_eq!(s.len(), 1, "unsolicited NA");
        let e = pnet_packet::ethernet::EthernetPacket::new(&s[0].1).unwrap();
        assert_eq!(e.get_destination().octets(), frames::ALL_NODES_MAC);
    }
}
