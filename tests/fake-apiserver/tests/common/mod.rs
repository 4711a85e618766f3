//! Helpers shared by the integration tests.
#![allow(dead_code)]

use fake_apiserver::FakeApiServer;
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(15);

/// A kube client for the fake server (plain HTTP, no auth).
pub fn client(server: &FakeApiServer) -> kube::Client {
    let config = kube::Config::new(server.url().parse().expect("server url"));
    kube::Client::try_from(config).expect("kube client")
}

/// Polls `cond` every 10 ms until it holds; panics after [`WAIT`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The next item of a channel, or a panic after [`WAIT`].
pub async fn next<T>(rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>, what: &str) -> T {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("channel closed waiting for {what}"))
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub fn crd_json(group: &str, kind: &str, plural: &str, versions: &[&str], status: bool) -> serde_json::Value {
    let vs: Vec<serde_json::Value> = versions
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut x = serde_json::json!({"name": v, "served": true, "storage": i == 0,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}});
            if status {
                x["subresources"] = serde_json::json!({"status": {}});
            }
            x
        })
        .collect();
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {"group": group, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind},
                 "versions": vs}
    })
}
