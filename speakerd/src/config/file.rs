//! The optional config file (TOML, or YAML by extension) for static peers and announcements, for use
//! without Kubernetes. Validated as a whole: one bad field and the file is rejected, the last good one
//! stays in force. On reload (SIGHUP) only what changed is applied: unchanged peers do not flap.
use super::spec::{AdvertSpec, ConfigError, PeerSpec};
use serde::Deserialize;
use speaker_api::v1 as pb;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// The owner of announcements that come from the config file.
pub const OWNER: &str = "config-file";

/// A peer in the file; fields as in `speaker.v1.PeerConfig`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FilePeer {
    #[serde(default)]
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub port: u32,
    /// Required unless `dynamic_asn` is set.
    #[serde(default)]
    pub peer_asn: u32,
    /// "internal" or "external": take the peer's AS from its OPEN (MetalLB's dynamicASN).
    #[serde(default)]
    pub dynamic_asn: String,
    #[serde(default)]
    pub local_asn: u32,
    #[serde(default)]
    pub router_id: String,
    #[serde(default)]
    pub source_address: String,
    pub hold_time_secs: Option<u32>,
    pub keepalive_time_secs: Option<u32>,
    pub connect_time_secs: Option<u32>,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub ebgp_multihop_ttl: u32,
    #[serde(default)]
    pub passive: bool,
    #[serde(default)]
    pub graceful_restart: bool,
    #[serde(default)]
    pub restart_time_secs: u32,
    /// "ipv4" and/or "ipv6"; empty = both.
    #[serde(default)]
    pub families: Vec<String>,
    #[serde(default)]
    pub next_hop_ipv4: String,
    #[serde(default)]
    pub next_hop_ipv6: String,
    pub max_received_prefixes: Option<u32>,
    /// BFD profile: receive_interval_ms, transmit_interval_ms, detect_multiplier, passive_mode, minimum_ttl.
    pub bfd: Option<FileBfd>,
    #[serde(default)]
    pub gtsm: bool,
    #[serde(default)]
    pub cease_on_max_received_prefixes: bool,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileBfd {
    #[serde(default)]
    pub receive_interval_ms: u32,
    #[serde(default)]
    pub transmit_interval_ms: u32,
    #[serde(default)]
    pub detect_multiplier: u32,
    #[serde(default)]
    pub echo_mode: bool,
    #[serde(default)]
    pub passive_mode: bool,
    #[serde(default)]
    pub minimum_ttl: u32,
    #[serde(default)]
    pub auth_type: String,
    #[serde(default)]
    pub auth_key_id: u32,
    #[serde(default)]
    pub auth_password: String,
}

/// An announcement in the file; fields as in `speaker.v1.Announcement`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileAnnouncement {
    pub prefix: String,
    #[serde(default)]
    pub communities: Vec<String>,
    #[serde(default)]
    pub large_communities: Vec<String>,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    #[serde(default)]
    pub peers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub peers: Vec<FilePeer>,
    #[serde(default)]
    pub announcements: Vec<FileAnnouncement>,
}

/// A file that parsed and validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    pub peers: BTreeMap<IpAddr, PeerSpec>,
    pub announcements: Vec<AdvertSpec>,
}

fn family(i: usize, s: &str) -> Result<i32, ConfigError> {
    match s.to_ascii_lowercase().as_str() {
        "ipv4" | "ipv4-unicast" => Ok(pb::AddressFamily::Ipv4Unicast as i32),
        "ipv6" | "ipv6-unicast" => Ok(pb::AddressFamily::Ipv6Unicast as i32),
        _ => Err(ConfigError::new(format!("peers[{i}].families"), format!("{s:?}: expected ipv4 or ipv6"))),
    }
}

/// Parses and validates file contents. `yaml` selects YAML, else TOML.
pub fn parse(text: &str, yaml: bool) -> Result<Loaded, ConfigError> {
    let f: FileConfig = if yaml {
        serde_yaml::from_str(text).map_err(|e| ConfigError::new("file", e.to_string()))?
    } else {
        toml::from_str(text).map_err(|e| ConfigError::new("file", e.to_string()))?
    };
    let mut peers = BTreeMap::new();
    for (i, p) in f.peers.iter().enumerate() {
        let families = p.families.iter().map(|s| family(i, s)).collect::<Result<Vec<_>, _>>()?;
        let cfg = pb::PeerConfig {
            name: p.name.clone(),
            owner: String::new(),
            address: p.address.clone(),
            port: p.port,
            peer_asn: p.peer_asn,
            dynamic_asn: match p.dynamic_asn.as_str() {
                "" => pb::DynamicAsn::None,
                "internal" => pb::DynamicAsn::Internal,
                "external" => pb::DynamicAsn::External,
                other => {
                    return Err(ConfigError::new(
                        format!("peers[{i}].dynamic_asn"),
                        format!("{other:?}: expected \"internal\" or \"external\""),
                    ))
                }
            } as i32,
            local_asn: p.local_asn,
            router_id: p.router_id.clone(),
            source_address: p.source_address.clone(),
            hold_time_secs: p.hold_time_secs,
            keepalive_time_secs: p.keepalive_time_secs,
            connect_time_secs: p.connect_time_secs,
            password: p.password.clone(),
            ebgp_multihop_ttl: p.ebgp_multihop_ttl,
            passive: p.passive,
            graceful_restart: Some(pb::GracefulRestart {
                enabled: p.graceful_restart,
                restart_time_secs: p.restart_time_secs,
            }),
            families,
            next_hop_ipv4: p.next_hop_ipv4.clone(),
            next_hop_ipv6: p.next_hop_ipv6.clone(),
            max_received_prefixes: p.max_received_prefixes,
            gtsm: p.gtsm,
            cease_on_max_received_prefixes: p.cease_on_max_received_prefixes,
            bfd: p.bfd.as_ref().map(|b| pb::BfdProfile {
                receive_interval_ms: b.receive_interval_ms,
                transmit_interval_ms: b.transmit_interval_ms,
                detect_multiplier: b.detect_multiplier,
                echo_mode: b.echo_mode,
                passive_mode: b.passive_mode,
                minimum_ttl: b.minimum_ttl,
                auth_type: b.auth_type.clone(),
                auth_key_id: b.auth_key_id,
                auth_password: b.auth_password.clone(),
            }),
        };
        let spec =
            PeerSpec::try_from(&cfg).map_err(|e| ConfigError::new(format!("peers[{i}].{}", e.field), e.reason))?;
        if peers.insert(spec.address, spec).is_some() {
            return Err(ConfigError::new(format!("peers[{i}].address"), "duplicate peer address"));
        }
    }
    let mut announcements = Vec::new();
    for (i, a) in f.announcements.iter().enumerate() {
        let pa = pb::Announcement {
            prefix: a.prefix.clone(),
            communities: a.communities.clone(),
            large_communities: a.large_communities.clone(),
            local_pref: a.local_pref,
            med: a.med,
            peers: a.peers.clone(),
            owner: String::new(),
        };
        announcements.push(AdvertSpec::try_from((i, &pa))?);
    }
    Ok(Loaded { peers, announcements })
}

/// Reads and validates a file.
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| ConfigError::new("file", format!("{}: {e}", path.display())))?;
    let yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
    parse(&text, yaml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_and_yaml_give_the_same_state() {
        let t = r#"
[[peers]]
address = "192.0.2.2"
peer_asn = 65002
local_asn = 65001
families = ["ipv4"]
graceful_restart = true

[[announcements]]
prefix = "203.0.113.10/32"
communities = ["65000:1", "no-export"]
"#;
        let y = r#"
peers:
  - address: 192.0.2.2
    peer_asn: 65002
    local_asn: 65001
    families: [ipv4]
    graceful_restart: true
announcements:
  - prefix: 203.0.113.10/32
    communities: ["65000:1", "no-export"]
"#;
        let a = parse(t, false).unwrap();
        assert_eq!(a, parse(y, true).unwrap());
        assert_eq!(a.peers.values().next().unwrap().graceful_restart, Some(120));
    }

    #[test]
    fn errors_name_the_entry_and_field() {
        let e = parse("[[peers]]\naddress = \"192.0.2.2\"\npeer_asn = 0\n", false).unwrap_err();
        assert_eq!(e.field, "peers[0].peer_asn");
        let e = parse("[[announcements]]\nprefix = \"10.0.0.1/8\"\n", false).unwrap_err();
        assert_eq!(e.field, "announcements[0].prefix");
        let e = parse("[[peers]]\naddress = \"192.0.2.2\"\npeer_asn = 1\nbogus = 1\n", false).unwrap_err();
        assert!(e.reason.contains("bogus"), "{e}");
        assert!(parse("peers: [", true).is_err());
    }
}
