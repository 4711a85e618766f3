//! Field parsers (durations, ASNs, communities, CIDRs and ranges, label selectors, interface
//! patterns) and the per-object validators the CRD and the legacy paths share (peer, BFD profile and
//! advertisement fields, given in the legacy shape). Problems go to the [`Collector`].
use super::*;
use ipnet::IpNet;

/// The longest prefix in the split of the inclusive range `lo..=hi` into CIDR blocks: an
/// aggregation length at least this long keeps every aggregate of an address of the range inside
/// it (for a CIDR pool, its own prefix length: MetalLB's rule).
pub fn longest_block(lo: IpAddr, hi: IpAddr) -> u8 {
    let (lo, hi, w) = match (lo, hi) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32u32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128u32),
        _ => return 0,
    };
    let mut cur = lo;
    let mut longest = 0u32;
    loop {
        // The largest aligned block that starts at `cur` and ends at or before `hi`.
        let mut k = cur.trailing_zeros().min(w);
        let mask = |k: u32| {
            if k >= 128 {
                u128::MAX
            } else {
                (1u128 << k) - 1
            }
        };
        while mask(k) > hi - cur {
            k -= 1;
        }
        longest = longest.max(w - k);
        if mask(k) == hi - cur {
            return longest as u8;
        }
        cur += mask(k) + 1;
    }
}

/// Shows a pool range as MetalLB users write it: a CIDR when it is one, else "a-b".
pub(super) fn show_range(lo: IpAddr, hi: IpAddr) -> String {
    let len = longest_block(lo, hi);
    match IpNet::new(lo, len) {
        Ok(n) if n.network() == lo && n.broadcast() == hi => n.to_string(),
        _ => format!("{lo}-{hi}"),
    }
}

/// `^lo$` → `lo`; `^veth.*`, `^veth` → `veth*`. None for anything else.
pub fn regex_to_pattern(re: &str) -> Option<String> {
    let rest = re.strip_prefix('^')?;
    let (body, exact) = if let Some(b) = rest.strip_suffix('$') {
        match b.strip_suffix(".*") {
            Some(b) => (b, false),
            None => (b, true),
        }
    } else {
        (rest.strip_suffix(".*").unwrap_or(rest), false)
    };
    let mut name = String::new();
    let mut chars = body.chars();
    while let Some(ch) = chars.next() {
        match ch {
            '\\' => match chars.next() {
                Some(e @ ('.' | '-' | '_')) => name.push(e),
                _ => return None,
            },
            ch if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' => name.push(ch),
            _ => return None,
        }
    }
    if name.is_empty() || name.len() > 15 {
        return None;
    }
    Some(if exact { name } else { format!("{name}*") })
}

pub(super) fn selectors(list: &[LabelSelector], field: &str, r: &ObjRef, c: &mut Collector) -> Vec<Selector> {
    list.iter()
        .enumerate()
        .filter_map(|(i, s)| Selector::new(s).map_err(|e| c.error(r, format!("{field}[{i}]: {e}"))).ok())
        .collect()
}

pub(super) fn same_family(a: IpAddr, b: IpAddr) -> bool {
    a.is_ipv4() == b.is_ipv4()
}

/// Pool addresses: CIDRs ("192.0.2.0/24") or inclusive ranges ("192.0.2.10-192.0.2.20").
pub(super) fn pool_ranges(list: &[String], field: &str, r: &ObjRef, c: &mut Collector) -> Vec<(IpAddr, IpAddr)> {
    let mut out = Vec::new();
    if list.is_empty() {
        c.error(r, format!("{field}: at least one CIDR or range"));
    }
    for (i, a) in list.iter().enumerate() {
        match parse_range(a.trim()) {
            Ok(x) => out.push(x),
            Err(e) => c.error(r, format!("{field}[{i}]: {a:?}: {e}")),
        }
    }
    out
}

pub fn parse_range(s: &str) -> Result<(IpAddr, IpAddr), String> {
    if let Some((a, b)) = s.split_once('-') {
        let a: IpAddr = a.trim().parse().map_err(|_| "bad start address of the range".to_string())?;
        let b: IpAddr = b.trim().parse().map_err(|_| "bad end address of the range".to_string())?;
        if !same_family(a, b) {
            return Err("the range mixes IPv4 and IPv6".into());
        }
        if a > b {
            return Err("the range's start is after its end".into());
        }
        return Ok((a, b));
    }
    let n: IpNet =
        s.parse().map_err(|_| "not a CIDR (\"192.0.2.0/24\") or a range (\"192.0.2.10-192.0.2.20\")".to_string())?;
    if n.trunc() != n {
        return Err(format!("host bits set; did you mean {}?", n.trunc()));
    }
    Ok((n.network(), n.broadcast()))
}

/// Go durations as MetalLB writes them: "90s", "1m30s", "500ms", "3h".
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?}: not a duration (e.g. \"90s\", \"1m30s\")");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    if rest == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest.find(|ch: char| !(ch.is_ascii_digit() || ch == '.')).ok_or_else(bad)?;
        let v: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest.find(|ch: char| ch.is_ascii_digit() || ch == '.').unwrap_or(rest.len());
        let mult = match &rest[..u] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += v * mult;
        rest = &rest[u..];
    }
    if !(0.0..1e9).contains(&total) {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

pub(super) fn secs_field(v: &Option<String>, field: &str, r: &ObjRef, c: &mut Collector) -> Option<u32> {
    let t = v.as_ref()?;
    match parse_duration(t) {
        Ok(d) if d.as_secs() <= 65535 => Some(d.as_secs() as u32),
        Ok(_) => {
            c.error(r, format!("{field}: {t:?}: at most 65535s"));
            None
        }
        Err(e) => {
            c.error(r, format!("{field}: {e}"));
            None
        }
    }
}

pub(super) fn asn(v: u64, field: &str, r: &ObjRef, c: &mut Collector) -> u32 {
    if v == 0 || v > u64::from(u32::MAX) {
        c.error(r, format!("{field}: {v}: an AS number is 1..4294967295"));
        return 0;
    }
    v as u32
}

pub(super) fn peer_config(
    p: &LegacyPeer,
    dynamic: pb::DynamicAsn,
    bfd: &BTreeMap<String, pb::BfdProfile>,
    field: &str,
    r: &ObjRef,
    c: &mut Collector,
) -> Option<pb::PeerConfig> {
    let before = c.problems.len();
    let camel = field.starts_with("spec.");
    let f = |crd: &str, legacy: &str| format!("{field}{}", if camel { crd } else { legacy });
    let local_asn = asn(p.my_asn, &f("myASN", "my-asn"), r, c);
    let peer_asn = match dynamic {
        pb::DynamicAsn::None => asn(p.peer_asn, &f("peerASN", "peer-asn"), r, c),
        _ => 0,
    };
    let address = match p.peer_address.parse::<IpAddr>() {
        Ok(a) => a.to_string(),
        Err(_) => {
            c.error(r, format!("{}: {:?} is not an IP address", f("peerAddress", "peer-address"), p.peer_address));
            String::new()
        }
    };
    if !p.source_address.is_empty() && p.source_address.parse::<IpAddr>().is_err() {
        c.error(r, format!("{}: {:?} is not an IP address", f("sourceAddress", "source-address"), p.source_address));
    }
    if !p.router_id.is_empty() && p.router_id.parse::<std::net::Ipv4Addr>().is_err() {
        c.error(r, format!("{}: {:?} is not an IPv4 address", f("routerID", "router-id"), p.router_id));
    }
    let port = match p.peer_port {
        None | Some(0) => 0,
        Some(x) if x <= 65535 => x,
        Some(x) => {
            c.error(r, format!("{}: {x}: 1..65535", f("peerPort", "peer-port")));
            0
        }
    };
    let hold = secs_field(&p.hold_time, &f("holdTime", "hold-time"), r, c);
    if let Some(h) = hold {
        if h != 0 && h < 3 {
            c.error(r, format!("{}: {h}s: 0 or at least 3s", f("holdTime", "hold-time")));
        }
    }
    let keepalive = secs_field(&p.keepalive_time, &f("keepaliveTime", "keepalive-time"), r, c);
    if let (Some(k), Some(h)) = (keepalive, hold) {
        if k > h {
            c.error(r, format!("{}: {k}s is longer than the hold time {h}s", f("keepaliveTime", "keepalive-time")));
        }
    }
    if p.password.len() > 80 {
        c.error(r, format!("{}: at most 80 bytes", f("password", "password")));
    }
    let bfd = if p.bfd_profile.is_empty() {
        None
    } else {
        match bfd.get(&p.bfd_profile) {
            Some(b) => Some(b.clone()),
            None => {
                c.error(r, format!("{}: no BFDProfile named {:?}", f("bfdProfile", "bfd-profile"), p.bfd_profile));
                None
            }
        }
    };
    if c.problems[before..].iter().any(|p| p.severity == Severity::Error) {
        return None;
    }
    // As MetalLB (FRR mode): a session carries the family of its peer's address only; BGPPeer
    // `dualStackAddressFamily` (CRD path) opens it to both.
    let families = match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(_)) => vec![pb::AddressFamily::Ipv4Unicast as i32],
        Ok(IpAddr::V6(_)) => vec![pb::AddressFamily::Ipv6Unicast as i32],
        Err(_) => Vec::new(),
    };
    Some(pb::PeerConfig {
        address,
        port,
        families,
        peer_asn,
        dynamic_asn: dynamic as i32,
        local_asn,
        router_id: p.router_id.clone(),
        source_address: p.source_address.clone(),
        hold_time_secs: hold,
        keepalive_time_secs: keepalive,
        password: p.password.clone(),
        // MetalLB (FRR mode) uses "ebgp-multihop" without a TTL: 255.
        ebgp_multihop_ttl: if p.ebgp_multihop { 255 } else { 0 },
        bfd,
        ..Default::default()
    })
}

pub(super) fn bfd_profile(p: &LegacyBfdProfile, r: &ObjRef, c: &mut Collector) -> Option<pb::BfdProfile> {
    let before = c.problems.len();
    let range = |v: Option<u32>, lo: u32, hi: u32, field: &str, c: &mut Collector| {
        if let Some(x) = v.filter(|x| !(lo..=hi).contains(x)) {
            c.error(r, format!("{field}: {x}: {lo}..{hi}"));
        }
    };
    range(p.receive_interval, 10, 60000, "spec.receiveInterval", c);
    range(p.transmit_interval, 10, 60000, "spec.transmitInterval", c);
    range(p.detect_multiplier, 2, 255, "spec.detectMultiplier", c);
    range(p.minimum_ttl, 1, 254, "spec.minimumTtl", c);
    if p.echo_mode || p.echo_interval.is_some() {
        c.warn(r, "spec.echoMode/echoInterval: BFD echo is not supported by speakerd; ignored");
    }
    if c.problems[before..].iter().any(|p| p.severity == Severity::Error) {
        return None;
    }
    Some(pb::BfdProfile {
        receive_interval_ms: p.receive_interval.unwrap_or(0),
        transmit_interval_ms: p.transmit_interval.unwrap_or(0),
        detect_multiplier: p.detect_multiplier.unwrap_or(0),
        passive_mode: p.passive_mode,
        minimum_ttl: p.minimum_ttl.unwrap_or(0),
        ..Default::default()
    })
}

/// A community value as MetalLB writes it: "65000:100" (RFC 1997) or "large:1:2:3" (RFC 8092).
/// Returns (is_large, value in speakerd's spelling).
pub fn parse_community_value(v: &str) -> Result<(bool, String), String> {
    if let Some(l) = v.strip_prefix("large:") {
        let parts: Vec<&str> = l.split(':').collect();
        if parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()) {
            return Ok((true, l.to_string()));
        }
        return Err(format!("{v:?}: a large community is \"large:GLOBAL:LOCAL1:LOCAL2\" with 32-bit numbers"));
    }
    match v.split_once(':') {
        Some((a, b)) if a.parse::<u16>().is_ok() && b.parse::<u16>().is_ok() => Ok((false, v.to_string())),
        _ => Err(format!("{v:?}: a community is \"ASN:VALUE\" with 16-bit numbers, or \"large:A:B:C\"")),
    }
}

pub(super) fn bgp_advertisement(
    a: &LegacyAdvertisement,
    aliases: &BTreeMap<String, String>,
    field: &str,
    r: &ObjRef,
    c: &mut Collector,
) -> Option<BgpAdvertisement> {
    let before = c.problems.len();
    let camel = field.starts_with("spec.");
    let f = |crd: &str, legacy: &str| format!("{field}{}", if camel { crd } else { legacy });
    let len = |v: Option<i64>, max: i64, name: String, c: &mut Collector| -> u8 {
        match v {
            None => max as u8,
            Some(x) if (0..=max).contains(&x) => x as u8,
            Some(x) => {
                c.error(r, format!("{name}: {x}: 0..{max}"));
                max as u8
            }
        }
    };
    let aggregation_v4 = len(a.aggregation_length, 32, f("aggregationLength", "aggregation-length"), c);
    let aggregation_v6 = len(a.aggregation_length_v6, 128, f("aggregationLengthV6", "aggregation-length-v6"), c);
    let (mut communities, mut large_communities) = (Vec::new(), Vec::new());
    for (i, v) in a.communities.iter().enumerate() {
        let value = aliases.get(v).map(String::as_str).unwrap_or(v);
        match parse_community_value(value) {
            Ok((true, x)) => large_communities.push(x),
            Ok((false, x)) => communities.push(x),
            Err(_) if !v.contains(':') => {
                c.error(r, format!("{}[{i}]: {v:?} is not a known Community alias", f("communities", "communities")))
            }
            Err(e) => c.error(r, format!("{}[{i}]: {e}", f("communities", "communities"))),
        }
    }
    if c.problems[before..].iter().any(|p| p.severity == Severity::Error) {
        return None;
    }
    Some(BgpAdvertisement {
        name: String::new(),
        pools: PoolSelection::default(),
        nodes: Vec::new(),
        aggregation_v4,
        aggregation_v6,
        local_pref: a.localpref,
        communities,
        large_communities,
        peers: Vec::new(),
        services: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        let cases: [(&str, Option<Duration>); 10] = [
            ("90s", Some(Duration::from_secs(90))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("500ms", Some(Duration::from_millis(500))),
            ("3h", Some(Duration::from_secs(3 * 3600))),
            ("1.5s", Some(Duration::from_millis(1500))),
            ("0", Some(Duration::ZERO)),
            ("", None),
            ("90", None),
            ("5d", None),
            ("s", None),
        ];
        for (s, want) in cases {
            assert_eq!(parse_duration(s).ok(), want, "{s:?}");
        }
        assert_eq!(parse_duration("5d").unwrap_err(), "\"5d\": not a duration (e.g. \"90s\", \"1m30s\")");
    }

    #[test]
    fn ranges() {
        type Want = Result<(&'static str, &'static str), &'static str>;
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let cases: [(&str, Want); 7] = [
            ("192.0.2.0/24", Ok(("192.0.2.0", "192.0.2.255"))),
            ("192.0.2.10-192.0.2.20", Ok(("192.0.2.10", "192.0.2.20"))),
            (" 2001:db8::1 - 2001:db8::9", Ok(("2001:db8::1", "2001:db8::9"))),
            ("192.0.2.1/24", Err("host bits set; did you mean 192.0.2.0/24?")),
            ("192.0.2.20-192.0.2.10", Err("the range's start is after its end")),
            ("192.0.2.1-2001:db8::1", Err("the range mixes IPv4 and IPv6")),
            ("x-192.0.2.1", Err("bad start address of the range")),
        ];
        for (s, want) in cases {
            let want = want.map(|(a, b)| (ip(a), ip(b))).map_err(String::from);
            assert_eq!(parse_range(s), want, "{s:?}");
        }
    }

    #[test]
    fn communities() {
        let cases: [(&str, Option<(bool, &str)>); 7] = [
            ("65000:100", Some((false, "65000:100"))),
            ("65535:65281", Some((false, "65535:65281"))),
            ("large:64500:1:2", Some((true, "64500:1:2"))),
            ("65536:1", None),
            ("large:1:2", None),
            ("no-export", None),
            ("large:4294967296:1:2", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_community_value(v).ok(), want.map(|(l, s)| (l, s.to_string())), "{v:?}");
        }
    }

    #[test]
    fn longest_blocks() {
        let cases = [
            ("192.0.2.0", "192.0.2.255", 24),
            ("192.0.2.10", "192.0.2.10", 32),
            ("192.0.2.1", "192.0.2.2", 32),
            ("192.0.2.0", "192.0.2.2", 32),
            ("192.0.2.0", "192.0.2.1", 31),
            ("2001:db8::", "2001:db8::ff", 120),
            ("192.0.2.0", "2001:db8::", 0),
        ];
        for (lo, hi, want) in cases {
            assert_eq!(longest_block(lo.parse().unwrap(), hi.parse().unwrap()), want, "{lo}-{hi}");
        }
    }
}
