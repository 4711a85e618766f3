//! MetalLB v0.15.3's `ConfigurationState`: one object per speaker, `speaker-<node>` in the MetalLB
//! namespace, labelled `metallb.io/component-type: speaker` and `metallb.io/node-name: <node>`, owned
//! by the speaker pod. Its status says whether this node's configuration applied: `result` `Valid` or
//! `Invalid`, `errorSummary` (one line per problem), and the `configReconcilerValid` condition as
//! MetalLB's config reconciler writes it.
//!
//! Written by its own task from a watch channel (only the latest report matters, so memory is one
//! report), off the data path; a failed write is retried with backoff until it lands.
use crate::status::PodOwner;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::sync::watch;

pub const CONDITION: &str = "configReconcilerValid";

/// What the reconcile loop reports: the problems that kept part or all of the configuration out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Each problem, as `<Kind> <namespace>/<name>: <message>`. Empty: valid.
    pub errors: Vec<String>,
}

/// The object's name for `node`, as MetalLB names it.
pub fn name(node: &str) -> String {
    format!("speaker-{node}")
}

/// The status for `r`, written at `now` (RFC 3339). Pure.
///
/// As MetalLB: `Valid` with the condition True/`Reconciled`, or `Invalid` with the condition
/// False/`ConfigurationError` and the messages joined by newlines. `errorSummary` is null when valid so
/// that a merge patch clears an old summary.
pub fn status(r: &Report, now: &str) -> Value {
    let valid = r.errors.is_empty();
    let summary = r.errors.join("\n");
    json!({
        "result": if valid { "Valid" } else { "Invalid" },
        "errorSummary": if valid { Value::Null } else { Value::String(summary.clone()) },
        "conditions": [{
            "type": CONDITION,
            "status": if valid { "True" } else { "False" },
            "reason": if valid { "Reconciled" } else { "ConfigurationError" },
            "message": summary,
            "lastTransitionTime": now,
        }],
    })
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Which component an object reports on: MetalLB names and labels them per component.
#[derive(Debug, Clone)]
pub enum Component {
    /// `speaker-<node>`.
    Speaker(String),
    /// `controller`.
    Controller,
}

impl Component {
    fn name(&self) -> String {
        match self {
            Component::Speaker(node) => name(node),
            Component::Controller => "controller".into(),
        }
    }

    fn labels(&self) -> Value {
        match self {
            Component::Speaker(node) => json!({"metallb.io/component-type": "speaker", "metallb.io/node-name": node}),
            Component::Controller => json!({"metallb.io/component-type": "controller"}),
        }
    }
}

/// The reconcile loop's end of a writer task: hands over the latest report, never waits.
pub struct Reporter(watch::Sender<Option<Report>>);

impl Reporter {
    /// Starts the writer task of `component`'s object.
    pub fn spawn(client: kube::Client, namespace: String, component: Component, owner: Option<PodOwner>) -> Self {
        let (tx, rx) = watch::channel(None);
        tokio::spawn(run(client, namespace, component, owner, rx));
        Reporter(tx)
    }

    /// The problems now (empty: valid); the writer wakes only when they changed.
    pub fn report(&self, errors: Vec<String>) {
        let r = Some(Report { errors });
        self.0.send_if_modified(|old| {
            let changed = *old != r;
            *old = r;
            changed
        });
    }
}

/// The writer: creates the object if needed and sets its status to the latest report; runs until the
/// sender is dropped.
pub async fn run(
    client: kube::Client,
    namespace: String,
    component: Component,
    owner: Option<PodOwner>,
    mut rx: watch::Receiver<Option<Report>>,
) {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metallb.io", "v1beta1", "ConfigurationState"),
        "configurationstates",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client, &namespace, &ar);
    let name = component.name();
    let mut created = false;
    let mut retry = Duration::from_secs(1);
    let mut failing = false;
    loop {
        let Some(report) = rx.borrow_and_update().clone() else {
            if rx.changed().await.is_err() {
                return;
            }
            continue;
        };
        let write = async {
            if !created {
                let mut meta = json!({"name": name, "labels": component.labels()});
                if let Some(o) = &owner {
                    meta["ownerReferences"] = o.references();
                }
                let obj: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "metallb.io/v1beta1", "kind": "ConfigurationState", "metadata": meta,
                }))
                .expect("static shape");
                match api.create(&PostParams::default(), &obj).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {
                        // There already (a restart, or MetalLB's speaker before us): adopt it.
                        if let Some(o) = &owner {
                            let p = json!({"metadata": {"ownerReferences": o.references()}});
                            api.patch(&name, &PatchParams::default(), &Patch::Merge(p)).await?;
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            let st = status(&report, &now_rfc3339());
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({"status": st}))).await
        };
        match tokio::time::timeout(crate::events::WRITE_TIMEOUT, write).await {
            Ok(Ok(_)) => {
                created = true;
                retry = Duration::from_secs(1);
                if failing {
                    tracing::info!(name = %name, "ConfigurationState written again");
                    failing = false;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
            r => {
                // Deleted behind our back (404) or unknown: create again next time.
                created = false;
                if !failing {
                    match r {
                        Ok(Err(e)) => {
                            tracing::warn!(name = %name, error = %e, "ConfigurationState not written; retrying")
                        }
                        _ => {
                            tracing::warn!(name = %name, "ConfigurationState not written: the API server did not answer in time; retrying")
                        }
                    }
                    failing = true;
                }
                tokio::time::sleep(retry).await;
                retry = (retry * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_invalid_as_metallb_writes_them() {
        let v = status(&Report { errors: vec![] }, "2026-12-05T12:00:00Z");
        assert_eq!(v["result"], "Valid");
        assert_eq!(v["errorSummary"], Value::Null);
        assert_eq!(v["conditions"][0]["type"], "configReconcilerValid");
        assert_eq!(v["conditions"][0]["status"], "True");
        assert_eq!(v["conditions"][0]["reason"], "Reconciled");
        let r = Report {
            errors: vec!["IPAddressPool metallb-system/a: bad".into(), "BGPPeer metallb-system/p: vrf".into()],
        };
        let v = status(&r, "2026-12-05T12:00:00Z");
        assert_eq!(v["result"], "Invalid");
        assert_eq!(v["errorSummary"], "IPAddressPool metallb-system/a: bad\nBGPPeer metallb-system/p: vrf");
        assert_eq!(v["conditions"][0]["status"], "False");
        assert_eq!(v["conditions"][0]["reason"], "ConfigurationError");
        assert_eq!(v["conditions"][0]["lastTransitionTime"], "2026-12-05T12:00:00Z");
        assert_eq!(name("n1"), "speaker-n1");
        assert!(now_rfc3339().ends_with('Z') && now_rfc3339().len() == 20, "{}", now_rfc3339());
    }
}
