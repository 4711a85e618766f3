//! The running bridge: reflectors (`reflect.rs`, [`Reflectors`]: kube-runtime watchers, never
//! polling) keep an in-memory copy of every resource that matters; a reconcile loop turns a change
//! into a new desired state and pushes it to speakerd (`reconcile.rs`: one pass,
//! [`Reconciler::reconcile_once`]). Nothing is withdrawn because the API server is unreachable: the
//! reflectors keep their last content, the loop keeps the last good configuration, and speakerd keeps
//! what it was told.
//!
//! Every task is owned: the reflectors', the Event and status writers' and the speakerd watch's
//! handles live in `JoinSet`s that [`run`] holds, so dropping its future (on shutdown) stops them.
mod reconcile;
mod reflect;

pub use reconcile::Reconciler;
pub use reflect::Reflectors;

use crate::apply;
use crate::metrics::Metrics;
use crate::translate::Options;
use futures::StreamExt;
use kube::Client;
use speaker_api::v1 as pb;
use speaker_api::v1::speaker_client::SpeakerClient;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// How the bridge runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub options: Options,
    /// Namespace of the MetalLB configuration objects (and of the legacy ConfigMap).
    pub namespace: String,
    /// Name of the legacy ConfigMap.
    pub configmap: String,
    pub socket: PathBuf,
    /// Push the whole state this often even when nothing changed.
    pub resync: Duration,
    /// Wait this long after a change of configuration objects or Nodes for more before reconciling.
    pub debounce: Duration,
    /// Limits of the Event writer and of the status writer (both off the data path).
    pub event_writes: crate::events::Limits,
    pub status_writes: crate::events::Limits,
    /// The speaker pod, owner of the status objects and the ConfigurationState (None: no owner).
    pub pod: Option<crate::status::PodOwner>,
}

/// Every resource the bridge lists and watches: (API group, resource, namespaced in the MetalLB
/// namespace). The RBAC in deploy/ must allow `list` and `watch` of each (a test checks it).
pub const WATCHED: [(&str, &str, bool); reflect::STREAMS] = [
    ("", "services", false),
    ("discovery.k8s.io", "endpointslices", false),
    ("", "nodes", false),
    ("", "configmaps", true),
    ("", "secrets", true),
    ("metallb.io", "ipaddresspools", true),
    ("metallb.io", "bgppeers", true),
    ("metallb.io", "bgpadvertisements", true),
    ("metallb.io", "l2advertisements", true),
    ("metallb.io", "communities", true),
    ("metallb.io", "bfdprofiles", true),
];

/// Runs until the process is stopped (the future is dropped).
pub async fn run(client: Client, settings: Settings, metrics: Arc<Metrics>) -> Result<(), crate::error::Error> {
    let reflectors = Reflectors::start(&settings, &client, metrics.clone());
    let channel = apply::unix_channel(settings.socket.clone());
    // A (re)connection to speakerd means a possibly new process: push everything again, unless a whole
    // push already went over that connection.
    let (reconnected_tx, mut reconnected) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
    let owners_changed = Arc::new(Notify::new());
    let mut tasks = JoinSet::new();
    tasks.spawn(watch_speakerd(SpeakerClient::new(channel.clone()), reconnected_tx, owners_changed.clone()));
    let mut reconciler = Reconciler::new(&client, settings.clone(), metrics.clone(), channel);

    let mut next_resync = tokio::time::Instant::now() + settings.resync;
    let mut waited_for_sync = false;
    loop {
        let mut force = false;
        let retry_at = reconciler.retry_after().map(|retry| tokio::time::Instant::now() + retry);
        let status_at = reconciler.status_at();
        tokio::select! {
            _ = reflectors.changed() => {
                // Configuration objects and Nodes come in groups (`kubectl apply -f dir/`) and cost a
                // whole pass: wait for the rest of the group. A Service or EndpointSlice change costs
                // itself and goes at once; changes that arrive during a pass make the next one.
                if reflectors.whole_pending() {
                    tokio::time::sleep(settings.debounce).await;
                }
            }
            Ok(()) = reconnected.changed() => {
                let at = *reconnected.borrow_and_update();
                force = at.is_none_or(|at| reconciler.last_whole_push().is_none_or(|pushed| pushed < at));
            }
            _ = owners_changed.notified() => { reconciler.status_due(); }
            _ = tokio::time::sleep_until(next_resync) => { force = true; }
            _ = until(retry_at) => {}
            _ = until(status_at) => {}
        }
        if !reflectors.all_synced() {
            // Never act on a partial picture: an unsynced store would read as "no Services".
            if !waited_for_sync {
                tracing::info!("waiting for the initial list of every watched resource");
                waited_for_sync = true;
            }
            continue;
        }
        metrics.synced.store(true, Relaxed);
        if force {
            next_resync = tokio::time::Instant::now() + settings.resync;
        }
        reconciler.reconcile_once(&reflectors, force).await;
    }
}

async fn until(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Keeps a Watch stream open on speakerd and signals every successful (re)connection.
async fn watch_speakerd(
    mut client: SpeakerClient<tonic::transport::Channel>,
    reconnected: tokio::sync::watch::Sender<Option<tokio::time::Instant>>,
    owners_changed: Arc<Notify>,
) {
    let mut first = true;
    // The stream ended with DATA_LOSS: speakerd itself said this watcher fell behind (a bulk change
    // has more events than its buffer), so it is the same process; watch again at once, without a
    // whole push, and look at the Layer 2 owners again (their events may be among those lost).
    let mut lagged = false;
    loop {
        let asked = tokio::time::Instant::now();
        match client.watch(pb::WatchRequest::default()).await {
            Ok(stream) => {
                if !lagged {
                    if !first {
                        tracing::info!("reconnected to speakerd; pushing the whole state");
                    }
                    // When the Watch was asked: a whole push that completed after it reached this process.
                    reconnected.send_replace(Some(asked));
                }
                first = false;
                lagged = false;
                let mut s = stream.into_inner();
                loop {
                    match s.next().await {
                        Some(Ok(ev)) => {
                            if matches!(ev.event, Some(pb::watch_event::Event::L2Owner(_))) {
                                owners_changed.notify_one();
                            }
                        }
                        Some(Err(status)) if status.code() == tonic::Code::DataLoss => {
                            tracing::debug!(error = %status.message(), "speakerd's watch fell behind; watching again");
                            owners_changed.notify_one();
                            lagged = true;
                            break;
                        }
                        _ => break,
                    }
                }
                if lagged {
                    continue;
                }
                tracing::warn!("lost the connection to speakerd");
            }
            Err(e) => tracing::debug!(error = %e.message(), "speakerd not reachable yet"),
        }
        lagged = false;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
