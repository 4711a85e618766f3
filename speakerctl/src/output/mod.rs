//! Rendering of API messages as aligned tables, key: value blocks, JSON or YAML.
//!
//! JSON and YAML come from the serde "view" structs, never from the generated types: the views fix the
//! field names (the proto field names, snake_case), spell enums as short lowercase words ("established",
//! "ipv4", "added") and keep proto3 presence (`null` for an unset optional field or message). Everything
//! here is pure: it builds strings and does no I/O.
//!
//! One file per command group of `cmd/`, each with its views and their table form: `peer`, `announce`,
//! `l2` (with `members`), `watch`. This file holds what they share: the `-o` format and [`render`], the
//! empty view, the spellings of enums and the time formats; `table` holds the table and key: value block
//! builders.

use serde::Serialize;
#[cfg(test)]
use speaker_api::v1::Announcement; // tests.rs builds announcements through `use super::*`
use speaker_api::v1::{AddressFamily, SessionState};

use crate::cmd::CmdError;

pub mod announce;
pub mod l2;
pub mod peer;
mod table;
pub mod watch;

pub use announce::{announcement_table, AnnouncementView};
pub use l2::{l2_table, members_table, L2View, MemberView, MembersView, OwnerView};
pub use peer::{peer_block, peer_table, PeerView};
pub use table::{Align, Table};
pub use watch::{watch_line, WatchEventView};

/// The `-o` flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns or key: value blocks for people.
    Table,
    /// JSON (one object per line for `watch`).
    Json,
    /// YAML (one document per event for `watch`).
    Yaml,
}

/// `value` as pretty JSON or YAML, or as `table(value)` for the table format. The result ends in a newline.
pub fn render<T: Serialize>(value: &T, format: Format, table: impl FnOnce(&T) -> String) -> Result<String, CmdError> {
    let mut text = match format {
        Format::Table => table(value),
        Format::Json => serde_json::to_string_pretty(value).map_err(|e| CmdError::Encode(e.to_string()))?,
        Format::Yaml => serde_yaml::to_string(value).map_err(|e| CmdError::Encode(e.to_string()))?,
    };
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// JSON/YAML of a call whose response is empty: `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmptyView {}

// ---------------------------------------------------------------------------------------------------
// Enum names

/// The JSON spelling of a session state: "idle", …, "established".
pub fn state_json(state: i32) -> String {
    match SessionState::try_from(state) {
        Ok(SessionState::Unspecified) => "unspecified".into(),
        Ok(SessionState::Idle) => "idle".into(),
        Ok(SessionState::Connect) => "connect".into(),
        Ok(SessionState::Active) => "active".into(),
        Ok(SessionState::OpenSent) => "opensent".into(),
        Ok(SessionState::OpenConfirm) => "openconfirm".into(),
        Ok(SessionState::Established) => "established".into(),
        Err(_) => format!("unknown({state})"),
    }
}

/// An address family as the `--family` flag spells it: "ipv4", "ipv6".
pub fn family_name(family: i32) -> String {
    match AddressFamily::try_from(family) {
        Ok(AddressFamily::Unspecified) => "unspecified".into(),
        Ok(AddressFamily::Ipv4Unicast) => "ipv4".into(),
        Ok(AddressFamily::Ipv6Unicast) => "ipv6".into(),
        Err(_) => format!("unknown({family})"),
    }
}

fn family_names(families: &[i32]) -> Vec<String> {
    families.iter().map(|&f| family_name(f)).collect()
}

/// The table spelling of a state (RFC 4271 §8.2.2 names: "Idle", …, "Established") from its JSON spelling.
fn state_table_from_json(state: &str) -> String {
    let known = [
        ("unspecified", "Unspecified"),
        ("idle", "Idle"),
        ("connect", "Connect"),
        ("active", "Active"),
        ("opensent", "OpenSent"),
        ("openconfirm", "OpenConfirm"),
        ("established", "Established"),
    ];
    known.iter().find(|(j, _)| *j == state).map_or_else(|| state.to_string(), |(_, t)| t.to_string())
}

// ---------------------------------------------------------------------------------------------------
// Time

/// `HH:MM:SS`, or `Nd HH:MM:SS` from one day on (as `gobgp neighbor` shows Up/Down).
pub fn format_duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d == 0 {
        format!("{h:02}:{m:02}:{s:02}")
    } else {
        format!("{d}d {h:02}:{m:02}:{s:02}")
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC with milliseconds, e.g. `2026-11-25T06:28:22.123Z`.
pub fn format_timestamp_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, mo, d) = civil_from_days(days);
    format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem / 60 % 60, rem % 60, ms % 1000)
}

/// (year, month, day) of a day count since 1970-01-01 in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests;
