//! The spellings the harness compares on, whichever daemon printed them: canonical addresses, prefixes,
//! next hops and session state names.

use std::net::IpAddr;

/// "established" / "ESTABLISHED" / "BGP_FSM_ESTABLISHED" → "Established", etc.
pub fn normalise_state(s: &str) -> String {
    let l = s.to_ascii_lowercase();
    let l = l.trim_start_matches("bgp_fsm_").trim_start_matches("session_state_");
    match l {
        "idle" => "Idle",
        "connect" => "Connect",
        "active" => "Active",
        "opensent" | "open_sent" => "OpenSent",
        "openconfirm" | "open_confirm" => "OpenConfirm",
        "established" => "Established",
        _ => return s.to_string(),
    }
    .to_string()
}

/// Canonical text of an address (input returned unchanged if it is not one).
pub fn norm_ip(s: &str) -> String {
    s.parse::<IpAddr>().map(|a| a.to_string()).unwrap_or_else(|_| s.to_string())
}

/// Canonical `addr/len`.
pub fn norm_prefix(s: &str) -> String {
    match s.split_once('/') {
        Some((a, l)) => format!("{}/{l}", norm_ip(a)),
        None => s.to_string(),
    }
}

/// Canonical next hop; an IPv4 next hop of an IPv6 route is shown IPv4-mapped.
pub fn norm_next_hop(prefix: &str, nh: &str) -> String {
    match nh.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) if prefix.contains(':') => v4.to_ipv6_mapped().to_string(),
        Ok(a) => a.to_string(),
        Err(_) => nh.to_string(),
    }
}
