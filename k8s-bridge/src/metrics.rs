//! k8s-bridge's own metrics and health endpoints: `GET /metrics` (Prometheus text), `/readyz`
//! (200 only while the API server answers, every watch has synced and the last push to speakerd
//! worked) and `/healthz` (the process is serving).
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Debug, Default)]
pub struct Metrics {
    /// The configuration in the cluster is invalid; the last good one is in force (MetalLB's name).
    pub config_stale: AtomicBool,
    /// A valid configuration has been loaded (MetalLB's name).
    pub config_loaded: AtomicBool,
    /// Configuration objects left out of the configuration in force (bad or unsupported).
    pub config_skipped: AtomicU64,
    /// Watch events received (MetalLB's `metallb_k8s_client_updates_total`).
    pub updates: AtomicU64,
    /// Reconciles that failed: an invalid configuration or a failed push (MetalLB's
    /// `metallb_k8s_client_update_errors_total`).
    pub update_errors: AtomicU64,
    /// Pushes that sent only the changes since the last one (the rest sent the whole state).
    pub pushes_incremental: AtomicU64,
    /// Bytes of the request messages pushed to speakerd.
    pub push_bytes: AtomicU64,
    /// Failed list/watch requests to the API server.
    pub api_errors: AtomicU64,
    /// The last list/watch request worked.
    pub api_up: AtomicBool,
    /// Every watched resource has been listed once.
    pub synced: AtomicBool,
    pub pushes: AtomicU64,
    pub push_errors: AtomicU64,
    /// The last push to speakerd worked.
    pub push_ok: AtomicBool,
    /// Unix time of the last successful push.
    pub last_push_unix: AtomicU64,
    pub bgp_announcements: AtomicU64,
    pub l2_announcements: AtomicU64,
    pub peers: AtomicU64,
    /// Events queued and not yet handed to the API server.
    pub events_pending: AtomicU64,
    /// Unix time (ms) at which the oldest pending Event was queued; 0 if none.
    pub events_oldest_pending_unix_ms: AtomicU64,
    pub events_aggregated: AtomicU64,
    pub events_spam_dropped: AtomicU64,
    pub events_overflow_dropped: AtomicU64,
    pub events_written: AtomicU64,
    pub events_failed: AtomicU64,
    /// Status objects whose wanted state differs from what was last written.
    pub status_pending: AtomicU64,
    /// Unix time (ms) since which the oldest pending status write has waited; 0 if none.
    pub status_oldest_pending_unix_ms: AtomicU64,
    pub status_writes: AtomicU64,
    pub status_write_errors: AtomicU64,
    /// MetalLB's `metallb_speaker_announced`: the label sets (service, protocol, node, ip) of what this
    /// node announces, as of the last status sync ([`crate::status::announced`]).
    pub announced: std::sync::Mutex<std::collections::BTreeSet<crate::status::AnnouncedLabels>>,
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn age_seconds(unix_ms: u64) -> f64 {
    if unix_ms == 0 {
        return 0.0;
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    now.saturating_sub(unix_ms) as f64 / 1000.0
}

impl Metrics {
    pub fn ready(&self) -> bool {
        self.synced.load(Relaxed) && self.api_up.load(Relaxed) && self.push_ok.load(Relaxed)
    }

    pub fn render(&self) -> String {
        let b = |v: &AtomicBool| u64::from(v.load(Relaxed));
        let rows: [(&str, &str, &str, u64); 17] = [
            ("k8s_bridge_config_objects_skipped", "gauge", "MetalLB objects left out of the configuration in force because they are invalid or unsupported (each has an InvalidConfig Event)", self.config_skipped.load(Relaxed)),
            ("metallb_k8s_client_config_stale_bool", "gauge", "1 if the configuration in the cluster is invalid and the last good one is in force", b(&self.config_stale)),
            ("metallb_k8s_client_config_loaded_bool", "gauge", "1 if a valid configuration has been loaded", b(&self.config_loaded)),
            ("metallb_k8s_client_updates_total", "counter", "Kubernetes watch events received", self.updates.load(Relaxed)),
            ("metallb_k8s_client_update_errors_total", "counter", "Number of k8s object updates that failed for some reason", self.update_errors.load(Relaxed)),
            ("k8s_bridge_apiserver_errors_total", "counter", "failed list/watch requests to the API server", self.api_errors.load(Relaxed)),
            ("k8s_bridge_apiserver_up", "gauge", "1 if the last list/watch request to the API server worked", b(&self.api_up)),
            ("k8s_bridge_synced", "gauge", "1 once every watched resource has been listed", b(&self.synced)),
            ("k8s_bridge_pushes_total", "counter", "pushes of the desired state to speakerd", self.pushes.load(Relaxed)),
            ("k8s_bridge_pushes_incremental_total", "counter", "pushes that sent speakerd only the changes since the previous one", self.pushes_incremental.load(Relaxed)),
            ("k8s_bridge_push_bytes_total", "counter", "bytes of the request messages pushed to speakerd (protobuf encoding, without gRPC framing)", self.push_bytes.load(Relaxed)),
            ("k8s_bridge_push_errors_total", "counter", "failed pushes to speakerd", self.push_errors.load(Relaxed)),
            ("k8s_bridge_push_ok", "gauge", "1 if the last push to speakerd worked", b(&self.push_ok)),
            ("k8s_bridge_last_push_timestamp_seconds", "gauge", "Unix time of the last successful push", self.last_push_unix.load(Relaxed)),
            ("k8s_bridge_desired_bgp_announcements", "gauge", "BGP announcements this node should make", self.bgp_announcements.load(Relaxed)),
            ("k8s_bridge_desired_l2_announcements", "gauge", "Layer 2 announcements this node is a candidate for", self.l2_announcements.load(Relaxed)),
            ("k8s_bridge_desired_peers", "gauge", "BGP peers of this node", self.peers.load(Relaxed)),
        ];
        let l = |v: &AtomicU64| v.load(Relaxed) as f64;
        let writes: [(&str, &str, &str, f64); 11] = [
            ("k8s_bridge_events_pending", "gauge", "Events queued for the API server", l(&self.events_pending)),
            (
                "k8s_bridge_events_oldest_pending_seconds",
                "gauge",
                "age of the oldest queued Event",
                age_seconds(self.events_oldest_pending_unix_ms.load(Relaxed)),
            ),
            (
                "k8s_bridge_events_aggregated_total",
                "counter",
                "Events merged into an equal pending one or dropped as a repeat within 10 minutes",
                l(&self.events_aggregated),
            ),
            (
                "k8s_bridge_events_spam_dropped_total",
                "counter",
                "Events dropped by the per-object spam filter",
                l(&self.events_spam_dropped),
            ),
            (
                "k8s_bridge_events_overflow_dropped_total",
                "counter",
                "Events dropped because the queue was full (oldest first)",
                l(&self.events_overflow_dropped),
            ),
            ("k8s_bridge_events_written_total", "counter", "Events written to the API server", l(&self.events_written)),
            (
                "k8s_bridge_events_failed_total",
                "counter",
                "Event writes that failed or timed out",
                l(&self.events_failed),
            ),
            (
                "k8s_bridge_status_pending",
                "gauge",
                "status objects (ServiceL2Status/ServiceBGPStatus) waiting to be written or deleted",
                l(&self.status_pending),
            ),
            (
                "k8s_bridge_status_oldest_pending_seconds",
                "gauge",
                "how long the oldest pending status write has waited",
                age_seconds(self.status_oldest_pending_unix_ms.load(Relaxed)),
            ),
            (
                "k8s_bridge_status_writes_total",
                "counter",
                "status object writes (create, patch, delete) that worked",
                l(&self.status_writes),
            ),
            (
                "k8s_bridge_status_write_errors_total",
                "counter",
                "status object writes or lists that failed or timed out",
                l(&self.status_write_errors),
            ),
        ];
        let mut s = String::new();
        for (name, kind, help, v) in rows {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
        }
        for (name, kind, help, v) in writes {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
        }
        // MetalLB's name, help and labels, so that its dashboards and alerts work unchanged.
        let name = "metallb_speaker_announced";
        s.push_str(&format!("# HELP {name} Services being announced from this node. This is desired state, it does not guarantee that the routing protocols have converged.\n# TYPE {name} gauge\n"));
        let announced = self.announced.lock().unwrap_or_else(|e| e.into_inner());
        for a in announced.iter() {
            s.push_str(&format!(
                "{name}{{ip=\"{}\",node=\"{}\",protocol=\"{}\",service=\"{}\"}} 1\n",
                label(&a.ip),
                label(&a.node),
                a.protocol,
                label(&a.service)
            ));
        }
        s
    }
}

/// Serves the endpoints on `l` (bound by the caller, so that a bad address fails at start-up) until
/// the task is dropped.
pub async fn serve(l: tokio::net::TcpListener, m: Arc<Metrics>) -> std::io::Result<()> {
    tracing::info!(addr = %l.local_addr()?, "metrics and health endpoints listening");
    loop {
        let (mut s, _) = l.accept().await?;
        let m = m.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let (status, body) = match path {
                "/metrics" => ("200 OK", m.render()),
                "/healthz" | "/livez" => ("200 OK", "ok\n".to_string()),
                "/readyz" if m.ready() => ("200 OK", "ok\n".to_string()),
                "/readyz" => {
                    ("503 Service Unavailable", "not ready: API server, initial sync or speakerd\n".to_string())
                }
                _ => ("404 Not Found", "not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(resp.as_bytes()).await;
        });
    }
}
