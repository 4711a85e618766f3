//! `speakerctl watch`: prints the `Watch` stream as it arrives, one line per event (a table line, or
//! one JSON object per line with `-o json`, or one YAML document per event with `-o yaml`). Each event is
//! flushed at once so that the command works in a pipe. It ends when speakerd ends the stream.

use std::io::Write;

use clap::Args;
use speaker_api::v1::{WatchEvent, WatchRequest};

use crate::cmd::{write_all, Client, CmdError};
use crate::output::{watch_line, Format, WatchEventView};

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct WatchArgs {
    /// First print the current state (every peer and announcement) and a "synced" event, then changes.
    #[arg(long)]
    pub initial: bool,
}

impl WatchArgs {
    pub fn to_request(&self) -> WatchRequest {
        WatchRequest { initial_state: self.initial }
    }
}

/// One event as printed: a table line, an NDJSON line or a YAML document, ending in a newline.
pub fn render_event(event: &WatchEvent, format: Format) -> Result<String, CmdError> {
    let view = WatchEventView::from(event);
    let encode = |e: &dyn std::fmt::Display| CmdError::Encode(e.to_string());
    Ok(match format {
        Format::Table => format!("{}\n", watch_line(&view)),
        Format::Json => format!("{}\n", serde_json::to_string(&view).map_err(|e| encode(&e))?),
        Format::Yaml => format!("---\n{}", serde_yaml::to_string(&view).map_err(|e| encode(&e))?),
    })
}

pub async fn run(client: &mut Client, args: WatchArgs, format: Format, out: &mut dyn Write) -> Result<(), CmdError> {
    let mut stream = client.watch(args.to_request()).await?.into_inner();
    while let Some(event) = stream.message().await? {
        write_all(out, render_event(&event, format)?.as_bytes())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use speaker_api::v1::{announcement_event, watch_event, Announcement, AnnouncementEvent, PeerEvent, SessionState};

    fn peer_up() -> WatchEvent {
        WatchEvent {
            timestamp_ms: 1_795_000_000_123,
            event: Some(watch_event::Event::Peer(PeerEvent {
                address: "192.0.2.1".into(),
                name: "tor1".into(),
                old_state: SessionState::OpenConfirm as i32,
                new_state: SessionState::Established as i32,
                reason: String::new(),
                deleted: false,
            })),
        }
    }

    #[test]
    fn peer_event_is_one_table_line() {
        assert_eq!(
            render_event(&peer_up(), Format::Table).unwrap(),
            "2026-11-18T11:06:40.123Z  peer          192.0.2.1 (tor1) OpenConfirm -> Established\n"
        );
    }

    #[test]
    fn peer_event_is_one_json_line_with_proto_field_names() {
        let text = render_event(&peer_up(), Format::Json).unwrap();
        assert_eq!(text.matches('\n').count(), 1);
        assert!(text.ends_with('\n'));
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "timestamp_ms": 1_795_000_000_123u64,
                "peer": {"address": "192.0.2.1", "name": "tor1", "old_state": "openconfirm",
                         "new_state": "established", "reason": "", "deleted": false}
            })
        );
    }

    #[test]
    fn announcement_and_synced_events() {
        let removed = WatchEvent {
            timestamp_ms: 0,
            event: Some(watch_event::Event::Announcement(AnnouncementEvent {
                kind: announcement_event::Kind::Removed as i32,
                announcement: Some(Announcement {
                    prefix: "203.0.113.10/32".into(),
                    owner: "speakerctl".into(),
                    communities: vec!["65000:1".into()],
                    med: Some(5),
                    ..Default::default()
                }),
            })),
        };
        assert_eq!(
            render_event(&removed, Format::Table).unwrap(),
            "1970-01-01T00:00:00.000Z  announcement  removed 203.0.113.10/32 owner=speakerctl communities=65000:1 med=5\n"
        );
        let v: serde_json::Value = serde_json::from_str(&render_event(&removed, Format::Json).unwrap()).unwrap();
        assert_eq!(v["announcement"]["kind"], "removed");
        assert_eq!(v["announcement"]["announcement"]["prefix"], "203.0.113.10/32");
        assert_eq!(v["announcement"]["announcement"]["local_pref"], serde_json::Value::Null);
        assert!(v.get("peer").is_none());

        let synced = WatchEvent { timestamp_ms: 1, event: Some(watch_event::Event::Synced(true)) };
        assert!(render_event(&synced, Format::Table).unwrap().contains("  synced  "));
        assert_eq!(render_event(&synced, Format::Json).unwrap(), "{\"timestamp_ms\":1,\"synced\":true}\n");
        assert_eq!(render_event(&synced, Format::Yaml).unwrap(), "---\ntimestamp_ms: 1\nsynced: true\n");
    }

    #[test]
    fn deleted_peer_and_down_reason_are_shown() {
        let mut e = peer_up();
        if let Some(watch_event::Event::Peer(p)) = &mut e.event {
            p.name = String::new();
            p.old_state = SessionState::Established as i32;
            p.new_state = SessionState::Idle as i32;
            p.reason = "hold timer expired".into();
        }
        assert!(render_event(&e, Format::Table)
            .unwrap()
            .ends_with("peer          192.0.2.1 Established -> Idle: hold timer expired\n"));
        if let Some(watch_event::Event::Peer(p)) = &mut e.event {
            p.deleted = true;
            p.reason = "deleted".into();
        }
        assert!(render_event(&e, Format::Table).unwrap().ends_with("192.0.2.1 deleted\n"));
    }

    #[test]
    fn initial_flag_sets_initial_state() {
        assert!(WatchArgs { initial: true }.to_request().initial_state);
        assert!(!WatchArgs { initial: false }.to_request().initial_state);
    }
}
