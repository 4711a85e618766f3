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

/// Announcements per piece of a large file parsed at once ([`parse_toml`], [`parse_yaml`]).
const PIECE: usize = 256;

/// The file's peers as written, and its announcements already validated (the first bad one's error
/// kept for after the peers, so that errors come in the order of the fields).
struct Parsed {
    peers: Vec<FilePeer>,
    announcements: Vec<AdvertSpec>,
    bad_announcement: Option<ConfigError>,
}

impl Parsed {
    fn new() -> Parsed {
        Parsed { peers: Vec::new(), announcements: Vec::new(), bad_announcement: None }
    }

    /// Adds what one document (the file, or a piece of it) holds.
    fn add(&mut self, f: FileConfig) {
        self.peers.extend(f.peers);
        self.announcements.reserve(f.announcements.len());
        for a in f.announcements {
            let i = self.announcements.len() + usize::from(self.bad_announcement.is_some());
            match announcement(i, a) {
                Ok(spec) => self.announcements.push(spec),
                Err(e) => {
                    self.bad_announcement.get_or_insert(e);
                }
            }
            if self.bad_announcement.is_some() {
                return;
            }
        }
    }
}

fn announcement(i: usize, a: FileAnnouncement) -> Result<AdvertSpec, ConfigError> {
    let pa = pb::Announcement {
        prefix: a.prefix,
        communities: a.communities,
        large_communities: a.large_communities,
        local_pref: a.local_pref,
        med: a.med,
        peers: a.peers,
        owner: String::new(),
    };
    AdvertSpec::try_from((i, &pa))
}

/// Parses a TOML file piece by piece: cut before every [`PIECE`]th `[[announcements]]` header
/// line, each piece parsed as a document of its own, its announcements validated before the next piece
/// is parsed. A TOML parser builds the whole document before serde sees it, which for a file of many
/// announcements was several times the size of the file; a piece's document is small. Arrays of tables
/// are the same joined from pieces as parsed whole, since each header appends to its array in the
/// order of the text. Where a cut would change the meaning (a header inside a multi-line string, a
/// sub-table such as `[peers.bfd]` placed after an `[[announcements]]` that follows its `[[peers]]`), a
/// piece fails to parse; then the whole text is parsed at once, which gives the meaning and the error
/// that TOML defines.
fn parse_toml(text: &str) -> Result<Parsed, ConfigError> {
    let whole = |text: &str| -> Result<Parsed, ConfigError> {
        let f = toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::new("file", e.to_string()))?;
        let mut p = Parsed::new();
        p.add(f);
        Ok(p)
    };
    let mut cuts = vec![0];
    let mut headers = 0;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if line.trim() == "[[announcements]]" {
            if headers > 0 && headers % PIECE == 0 {
                cuts.push(at);
            }
            headers += 1;
        }
        at += line.len();
    }
    if cuts.len() == 1 {
        return whole(text);
    }
    cuts.push(text.len());
    let mut all = Parsed::new();
    // Room for every announcement at once: grown piece by piece, the list doubles and ends with up to
    // twice the room it needs.
    all.announcements.reserve_exact(headers);
    for w in cuts.windows(2) {
        match toml::from_str::<FileConfig>(&text[w[0]..w[1]]) {
            Ok(piece) => all.add(piece),
            // The rest is still parsed after a bad announcement: the peers' errors come first.
            Err(_) => return whole(text),
        }
    }
    Ok(all)
}

/// Parses a YAML file piece by piece, for the reason [`parse_toml`] gives (a YAML parser, too, loads
/// the whole event stream first). The pieces: the file without its `announcements:` block sequence,
/// then every [`PIECE`] items of that sequence under an `announcements:` key of their own. The
/// sequence must be a block sequence of a top-level `announcements:` key; its items start with `-` at
/// one indentation, so a cut there ends one item and starts the next as the whole text would. Anything
/// else (a flow sequence, an alias to an anchor in another piece, `announcements` twice) parses as a
/// whole, as do files with few announcements.
fn parse_yaml(text: &str) -> Result<Parsed, ConfigError> {
    let whole = |text: &str| -> Result<Parsed, ConfigError> {
        let f = serde_yaml::from_str::<FileConfig>(text).map_err(|e| ConfigError::new("file", e.to_string()))?;
        let mut p = Parsed::new();
        p.add(f);
        Ok(p)
    };
    let indent = |l: &str| l.len() - l.trim_start_matches(' ').len();
    let blank = |l: &str| l.trim().is_empty() || l.trim_start().starts_with('#');
    let is_item = |l: &str, ind: usize| indent(l) == ind && (l[ind..].starts_with("- ") || l[ind..].trim_end() == "-");
    let mut offsets = Vec::new();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        offsets.push((at, line));
        at += line.len();
    }
    let Some(key) = offsets.iter().position(|(_, l)| l.trim_end() == "announcements:") else { return whole(text) };
    let Some((_, first)) = offsets[key + 1..].iter().find(|(_, l)| !blank(l)) else { return whole(text) };
    let ind = indent(first);
    if !is_item(first, ind) {
        return whole(text);
    }
    let mut items = Vec::new();
    let mut end = text.len();
    for (off, l) in &offsets[key + 1..] {
        if blank(l) {
            continue;
        }
        if is_item(l, ind) {
            items.push(*off);
        } else if indent(l) < ind || (indent(l) == ind && !l[ind..].starts_with('-')) {
            end = *off;
            break;
        }
    }
    if items.len() <= PIECE {
        return whole(text);
    }
    let rest = format!("{}{}", &text[..offsets[key].0], &text[end..]);
    let Ok(rest) = serde_yaml::from_str::<FileConfig>(&rest) else { return whole(text) };
    if !rest.announcements.is_empty() {
        return whole(text);
    }
    let mut all = Parsed::new();
    // Room for every announcement at once, as in `parse_toml`.
    all.announcements.reserve_exact(items.len());
    all.add(rest);
    let mut piece = String::new();
    for (n, start) in items.iter().enumerate().step_by(PIECE) {
        let stop = items.get(n + PIECE).copied().unwrap_or(end);
        piece.clear();
        piece.push_str("announcements:\n");
        piece.push_str(&text[*start..stop]);
        match serde_yaml::from_str::<FileConfig>(&piece) {
            Ok(f) => all.add(f),
            Err(_) => return whole(text),
        }
    }
    Ok(all)
}

/// Parses and validates file contents. `yaml` selects YAML, else TOML.
pub fn parse(text: &str, yaml: bool) -> Result<Loaded, ConfigError> {
    let f = if yaml { parse_yaml(text)? } else { parse_toml(text)? };
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
    if let Some(e) = f.bad_announcement {
        return Err(e);
    }
    Ok(Loaded { peers, announcements: f.announcements })
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

    /// A file of many announcements parsed in pieces gives what one parse of the whole gives, also where
    /// peers sit between announcements; a cut that would change the meaning falls back to the whole.
    #[test]
    fn toml_in_pieces_is_toml_as_a_whole() {
        let whole = |text: &str| {
            let f: FileConfig = toml::from_str(text).unwrap();
            let mut p = Parsed::new();
            p.add(f);
            (p.peers.iter().map(|p| p.address.clone()).collect::<Vec<_>>(), p.announcements)
        };
        let mut text = String::new();
        for i in 0..1000 {
            if i % 300 == 7 {
                text += &format!("[[peers]]\naddress = \"192.0.2.{}\"\npeer_asn = 65002\n", i % 250);
            }
            text += &format!(
                "[[announcements]]\nprefix = \"10.0.{}.{}/32\"\ncommunities = [\"65000:{i}\"]\n",
                i / 256,
                i % 256
            );
        }
        let pieces = parse_toml(&text).unwrap();
        let (peers, anns) = whole(&text);
        assert_eq!(pieces.announcements.len(), 1000);
        assert_eq!(pieces.announcements, anns);
        assert_eq!(pieces.peers.iter().map(|p| p.address.clone()).collect::<Vec<_>>(), peers);
        assert_eq!(peers.len(), 4);

        // [peers.bfd] after announcements belongs to the last [[peers]], many pieces back.
        let mut text = "[[peers]]\naddress = \"192.0.2.1\"\npeer_asn = 65002\n".to_string();
        for i in 0..600 {
            text += &format!("[[announcements]]\nprefix = \"10.1.{}.{}/32\"\n", i / 256, i % 256);
        }
        text += "[peers.bfd]\ndetect_multiplier = 5\n";
        let p = parse_toml(&text).unwrap();
        assert_eq!(p.peers.len(), 1);
        assert_eq!(p.peers[0].bfd.as_ref().map(|b| b.detect_multiplier), Some(5));
        assert_eq!(p.announcements.len(), 600);

        // The error of a bad announcement in a later piece names its index in the whole file.
        let mut text = String::new();
        for i in 0..800 {
            let prefix = if i == 700 { "10.2.0.1/40".to_string() } else { format!("10.2.{}.{}/32", i / 256, i % 256) };
            text += &format!("[[announcements]]\nprefix = \"{prefix}\"\n");
        }
        let e = parse(&text, false).unwrap_err();
        assert!(e.field.starts_with("announcements[700]"), "{e:?}");
    }

    /// The same for YAML: pieces of the announcements sequence give what the whole gives; a sequence
    /// the cut cannot follow (an alias to an anchor in another piece) parses as a whole.
    #[test]
    fn yaml_in_pieces_is_yaml_as_a_whole() {
        let whole = |text: &str| {
            let f: FileConfig = serde_yaml::from_str(text).unwrap();
            let mut p = Parsed::new();
            p.add(f);
            (p.peers.len(), p.announcements)
        };
        for ind in ["", "  "] {
            let mut text =
                "# speakerd\npeers:\n  - address: 192.0.2.1\n    peer_asn: 65002\nannouncements:\n".to_string();
            for i in 0..700 {
                text += &format!(
                    "{ind}- prefix: 10.0.{}.{}/32\n{ind}  communities:\n{ind}    - \"65000:{i}\"\n\n",
                    i / 256,
                    i % 256
                );
            }
            text += "# the end\n";
            let p = parse_yaml(&text).unwrap();
            let (peers, anns) = whole(&text);
            assert_eq!(p.announcements.len(), 700, "indent {ind:?}");
            assert_eq!(p.announcements, anns);
            assert_eq!((p.peers.len(), peers), (1, 1));
        }
        let mut text = "announcements:\n- prefix: 10.9.0.1/32\n  communities: &c [\"65000:1\"]\n".to_string();
        for i in 0..600 {
            text += &format!("- prefix: 10.1.{}.{}/32\n  communities: *c\n", i / 256, i % 256);
        }
        let p = parse_yaml(&text).unwrap();
        assert_eq!(p.announcements.len(), 601);
        assert!(p.announcements.iter().all(|a| a.attrs.communities.len() == 1));
    }
}
