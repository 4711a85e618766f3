//! Watch streams: newline-delimited `{"type","object"}` events from the
//! store's history and live changes, with the watch cache's selector
//! semantics, BOOKMARKs (periodic, on demand, and the end of a streaming
//! list's initial events), `timeoutSeconds`, the 410 `ERROR` event for a
//! compacted revision, and `Mode::Hang` holding events back.

use super::table::table_of;
use super::{negotiate, partial_meta, selectors, As, Body, Ctx, Target};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{at_version, parse_rv, EventType, HistEvent, WatchItem, WatchStart};
use crate::Mode;
use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{Response, StatusCode};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;

fn watch_line(type_: &str, obj: &Value) -> Bytes {
    let mut v = serde_json::to_vec(&json!({"type": type_, "object": obj})).unwrap();
    v.push(b'\n');
    Bytes::from(v)
}

/// Applies the watch's selectors to a change, as the real watch cache does:
/// an object that starts matching is ADDED, one that stops is DELETED (with
/// its previous content and the new resourceVersion).
fn filter_event(ev: &HistEvent, ls: &LabelSelector, fs: &FieldSelector) -> Option<(EventType, Value)> {
    let m = |o: &Value| ls.matches_object(o) && fs.matches_object(o);
    match ev.type_ {
        EventType::Added => m(&ev.obj).then(|| (EventType::Added, ev.obj.clone())),
        EventType::Deleted => m(&ev.obj).then(|| (EventType::Deleted, ev.obj.clone())),
        EventType::Modified => {
            let was = ev.prev.as_ref().is_some_and(m);
            let is = m(&ev.obj);
            match (was, is) {
                (true, true) => Some((EventType::Modified, ev.obj.clone())),
                (false, true) => Some((EventType::Added, ev.obj.clone())),
                (true, false) => {
                    let mut o = ev.prev.clone().unwrap();
                    o["metadata"]["resourceVersion"] = json!(ev.rv.to_string());
                    Some((EventType::Deleted, o))
                }
                (false, false) => None,
            }
        }
    }
}

pub(super) fn watch(ctx: &Ctx, t: &Target) -> Result<Response<Body>, ApiError> {
    let q = &ctx.query;
    let (ls, mut fs) = selectors(ctx, &t.def)?;
    if let Some(n) = &t.name {
        fs.reqs.push(crate::selector::FieldReq { field: "metadata.name".into(), equal: true, value: n.clone() });
    }
    let bookmarks = q.flag("allowWatchBookmarks");
    let send_initial = q.get("sendInitialEvents").map(|v| v == "true");
    let rv = q.get("resourceVersion").unwrap_or_default();
    let rvm = q.get("resourceVersionMatch").unwrap_or_default();
    if send_initial.is_some() {
        if rvm != "NotOlderThan" {
            return Err(ApiError::new(
                422,
                "Invalid",
                "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                None,
            ));
        }
        if !bookmarks {
            return Err(ApiError::new(
                422,
                "Invalid",
                "ListOptions.meta.k8s.io \"\" is invalid: allowWatchBookmarks: Forbidden: sendInitialEvents requires setting allowWatchBookmarks to true",
                None,
            ));
        }
    } else if !rvm.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            None,
        ));
    }
    let start = match (send_initial, rv) {
        (Some(true), _) | (None, "") | (None, "0") => WatchStart::Current,
        (Some(false), "") | (Some(false), "0") => WatchStart::After(ctx.shared.store.resource_version()),
        (_, r) => WatchStart::After(parse_rv(r)?),
    };
    let timeout =
        q.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()).filter(|s| *s > 0).map(Duration::from_secs);
    let form = negotiate(&ctx.accept);
    let def = t.def.clone();
    let version = t.version.clone();
    let shared = ctx.shared.clone();
    let include = ctx.query.get("includeObject").unwrap_or_default().to_string();
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let api_version = def.api_version(&version);
    let kind_name = def.kind.clone();
    let present = move |o: Value| -> Value {
        let o = at_version(&def, &version, o);
        match form {
            As::Plain => o,
            As::Metadata => partial_meta(&o),
            As::Table => table_of(&def, &[o], json!({"resourceVersion": ""}), &include),
        }
    };
    let bookmark = move |rv: u64, end: bool| -> Option<Value> {
        let (kind, av) = match form {
            As::Plain => (kind_name.clone(), api_version.clone()),
            As::Metadata => ("PartialObjectMetadata".to_string(), "meta.k8s.io/v1".to_string()),
            As::Table => return None,
        };
        let mut meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        if end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        Some(json!({"kind": kind, "apiVersion": av, "metadata": meta}))
    };
    match shared.store.watch(&t.def, t.ns.as_deref(), start, bookmarks) {
        Err(e) => {
            // As the real server: the watch is accepted, then ends with an ERROR event.
            let line = watch_line("ERROR", &e.status);
            let _ = tx.try_send(line);
        }
        Ok(mut h) => {
            let mut mode = shared.mode.subscribe();
            let store_shared = shared.clone();
            tokio::spawn(async move {
                let id = h.id;
                let deadline = timeout.map(|d| tokio::time::Instant::now() + d);
                let mut initial: std::collections::VecDeque<WatchItem> = std::mem::take(&mut h.initial).into();
                let mut end_marker = (send_initial == Some(true)).then_some(h.rv);
                loop {
                    let item = if let Some(i) = initial.pop_front() {
                        Some(i)
                    } else if let Some(rv) = end_marker.take() {
                        if let Some(b) = bookmark(rv, true) {
                            if tx.send(watch_line("BOOKMARK", &b)).await.is_err() {
                                break;
                            }
                        }
                        continue;
                    } else {
                        let sleep = async {
                            match deadline {
                                Some(d) => tokio::time::sleep_until(d).await,
                                None => std::future::pending().await,
                            }
                        };
                        tokio::select! {
                            i = h.rx.recv() => i,
                            _ = sleep => None,
                            _ = tx.closed() => None,
                        }
                    };
                    let Some(item) = item else { break };
                    // A hanging server delivers nothing until service resumes.
                    while *mode.borrow() == Mode::Hang {
                        tokio::select! {
                            r = mode.changed() => if r.is_err() { return },
                            _ = tx.closed() => { store_shared.store.unwatch(id); return },
                        }
                    }
                    let line = match item {
                        WatchItem::Event(ev) => match filter_event(&ev, &ls, &fs) {
                            Some((ty, obj)) => watch_line(ty.as_str(), &present(obj)),
                            None => continue,
                        },
                        WatchItem::Bookmark(rv) => match bookmark(rv, false) {
                            Some(b) => watch_line("BOOKMARK", &b),
                            None => continue,
                        },
                    };
                    if tx.send(line).await.is_err() {
                        break;
                    }
                }
                store_shared.store.unwatch(id);
            });
        }
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let ct = match form {
        As::Plain => "application/json",
        As::Metadata => "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        As::Table => "application/json;as=Table;g=meta.k8s.io;v=v1",
    };
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", ct)
        .header("cache-control", "no-cache, private")
        .header("transfer-encoding", "chunked")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::ResKey;

    #[test]
    fn selectors_turn_changes_into_the_events_a_watcher_sees() {
        let obj = |app: &str| json!({"metadata": {"name": "a", "resourceVersion": "7", "labels": {"app": app}}});
        let web = LabelSelector::parse("app=web").unwrap();
        let all = LabelSelector::parse("").unwrap();
        let fs = FieldSelector::parse("").unwrap();
        // (change, previous app label, new app label, selector, expected (event, app label, resourceVersion))
        let cases = [
            (EventType::Added, None, "web", &web, Some((EventType::Added, "web", "7"))),
            (EventType::Added, None, "db", &web, None),
            (EventType::Deleted, Some("web"), "web", &web, Some((EventType::Deleted, "web", "7"))),
            (EventType::Deleted, Some("db"), "db", &web, None),
            (EventType::Modified, Some("web"), "web", &web, Some((EventType::Modified, "web", "7"))),
            (EventType::Modified, Some("db"), "web", &web, Some((EventType::Added, "web", "7"))),
            // stops matching: DELETED with the previous content at the change's revision
            (EventType::Modified, Some("web"), "db", &web, Some((EventType::Deleted, "web", "9"))),
            (EventType::Modified, Some("db"), "db", &web, None),
            (EventType::Modified, Some("db"), "web", &all, Some((EventType::Modified, "web", "7"))),
        ];
        for (type_, prev, now, ls, want) in cases {
            let ev = HistEvent {
                rv: 9,
                res: ResKey { group: String::new(), plural: "configmaps".into() },
                namespace: "default".into(),
                type_,
                obj: obj(now),
                prev: prev.map(obj),
            };
            let got = filter_event(&ev, ls, &fs).map(|(t, o)| {
                (
                    t,
                    o["metadata"]["labels"]["app"].as_str().unwrap().to_string(),
                    o["metadata"]["resourceVersion"].clone(),
                )
            });
            let want = want.map(|(t, app, rv)| (t, app.to_string(), json!(rv)));
            assert_eq!(got, want, "{type_:?} {prev:?} -> {now}");
        }
    }
}
