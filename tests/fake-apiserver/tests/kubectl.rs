//! The real `kubectl` against the fake API server.
//!
//! kubectl is looked up as $KUBECTL or on PATH. Without it the tests fail when
//! CI=true and are skipped (with a message) otherwise.

mod common;

use common::eventually;
use fake_apiserver::FakeApiServer;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::io::{AsyncBufReadExt, BufReader};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn find_kubectl() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KUBECTL") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join("kubectl")).find(|p| p.is_file())
}

struct Kubectl {
    bin: PathBuf,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Kubectl {
    /// None (test skipped) when kubectl is missing and CI is not set.
    fn new(server: &FakeApiServer, test: &str) -> Option<Kubectl> {
        let Some(bin) = find_kubectl() else {
            test_skip::skip(test, "kubectl not found on PATH and $KUBECTL unset (Debian: kubernetes-client)");
            return None;
        };
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "fake-apiserver-kubectl-{}-{}-{test}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        Some(Kubectl { bin, dir, kubeconfig })
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("cache"))
            .args(args)
            .env("HOME", &self.dir)
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(common::WAIT, self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .expect("run kubectl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl, asserts success, returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }

    /// Runs kubectl, asserts failure, returns stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(!ok, "kubectl {args:?} should have failed:\nstdout: {out}");
        err
    }

    fn write(&self, name: &str, content: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, content).unwrap();
        p.to_string_lossy().into_owned()
    }
}

fn fixture(name: &str) -> String {
    format!("{FIXTURES}/{name}")
}

/// Splits a kubectl table into rows of whitespace-separated cells (header first).
/// Multi-word headers stay split; rows are compared by their leading cells.
fn table(out: &str) -> Vec<Vec<String>> {
    out.lines().filter(|l| !l.trim().is_empty()).map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

fn lines(out: &str) -> Vec<&str> {
    out.lines().map(str::trim).filter(|l| !l.is_empty()).collect()
}

#[tokio::test]
async fn kubectl_apply_get_patch_delete_metallb_objects() {
    let server = FakeApiServer::start().await;
    let Some(k) = Kubectl::new(&server, "apply") else { return };

    // CRDs, then objects of the kinds they define
    let out = k.ok(&["apply", "-f", &fixture("metallb-crds.yaml")]).await;
    assert_eq!(
        lines(&out),
        vec![
            "customresourcedefinition.apiextensions.k8s.io/ipaddresspools.metallb.io created",
            "customresourcedefinition.apiextensions.k8s.io/bgppeers.metallb.io created",
            "customresourcedefinition.apiextensions.k8s.io/bgpadvertisements.metallb.io created",
        ]
    );
    let out = k.ok(&["apply", "-f", &fixture("metallb-objects.yaml")]).await;
    assert_eq!(
        lines(&out),
        vec![
            "ipaddresspool.metallb.io/first-pool created",
            "bgppeer.metallb.io/peer-sample created",
            "bgpadvertisement.metallb.io/external created",
            "configmap/speakerd-settings created",
            "service/web created",
        ]
    );
    let pool = server.get("metallb.io/v1beta1", "IPAddressPool", Some("metallb-system"), "first-pool").unwrap();
    assert_eq!(pool["spec"]["avoidBuggyIPs"], false, "schema default applied");
    let peer = server.get("metallb.io/v1beta2", "BGPPeer", Some("metallb-system"), "peer-sample").unwrap();
    assert_eq!(peer["spec"]["peerPort"], 179, "schema default applied");

    // -o json
    let out = k.ok(&["get", "ipaddresspools", "-n", "metallb-system", "-o", "json"]).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().unwrap().len(), 1);
    let item = &v["items"][0];
    assert_eq!(item["apiVersion"], "metallb.io/v1beta1");
    assert_eq!(item["metadata"]["name"], "first-pool");
    assert_eq!(item["spec"]["addresses"], json!(["192.168.10.0/24", "192.168.9.1-192.168.9.5"]));
    assert_eq!(item["metadata"]["uid"], pool["metadata"]["uid"]);
    // -o yaml
    let out = k.ok(&["get", "ipaddresspool", "first-pool", "-n", "metallb-system", "-o", "yaml"]).await;
    let y: Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(y["kind"], "IPAddressPool");
    assert_eq!(y["spec"]["autoAssign"], true);
    assert_eq!(y["metadata"]["resourceVersion"], pool["metadata"]["resourceVersion"]);
    // default table, with the CRD's printer columns
    let out = k.ok(&["get", "ipaddresspools", "-n", "metallb-system"]).await;
    let t = table(&out);
    assert_eq!(
        out.lines().next().unwrap().split_whitespace().collect::<Vec<_>>(),
        vec!["NAME", "AUTO", "ASSIGN", "AVOID", "BUGGY", "IPS", "ADDRESSES", "AGE"]
    );
    assert_eq!(&t[1][..4], &["first-pool", "true", "false", r#"["192.168.10.0/24","192.168.9.1-192.168.9.5"]"#]);
    // short names and all-namespace listing
    let out = k.ok(&["get", "bgppeers", "-A"]).await;
    let t = table(&out);
    assert_eq!(&t[0][..4], &["NAMESPACE", "NAME", "ADDRESS", "ASN"]);
    assert_eq!(&t[1][..4], &["metallb-system", "peer-sample", "10.0.0.1", "64501"]);
    // services
    let out = k.ok(&["get", "svc"]).await;
    let t = table(&out);
    assert_eq!(t[0], vec!["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]);
    assert_eq!(t.len(), 2);
    assert_eq!(&t[1][..2], &["web", "LoadBalancer"]);
    assert!(t[1][2].starts_with("10.96."), "{:?}", t[1]);
    assert_eq!(t[1][3], "<pending>");
    assert!(t[1][4].starts_with("80:3") && t[1][4].ends_with("/TCP"), "{:?}", t[1]);

    // a second apply of modified objects patches them
    let modified = std::fs::read_to_string(fixture("metallb-objects.yaml"))
        .unwrap()
        .replace("localPref: 50", "localPref: 60")
        .replace("logLevel: info", "logLevel: debug")
        .replace("port: 80\n", "port: 81\n");
    let path = k.write("modified.yaml", &modified);
    server.clear_requests();
    let out = k.ok(&["apply", "-f", &path]).await;
    assert_eq!(
        lines(&out),
        vec![
            "ipaddresspool.metallb.io/first-pool unchanged",
            "bgppeer.metallb.io/peer-sample unchanged",
            "bgpadvertisement.metallb.io/external configured",
            "configmap/speakerd-settings configured",
            "service/web configured",
        ]
    );
    let patches: Vec<(String, String)> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH")
        .map(|r| (r.path.clone(), r.content_type.clone()))
        .collect();
    assert_eq!(
        patches,
        vec![
            (
                "/apis/metallb.io/v1beta1/namespaces/metallb-system/bgpadvertisements/external".to_string(),
                "application/merge-patch+json".to_string()
            ),
            (
                "/api/v1/namespaces/metallb-system/configmaps/speakerd-settings".to_string(),
                "application/strategic-merge-patch+json".to_string()
            ),
            (
                "/api/v1/namespaces/default/services/web".to_string(),
                "application/strategic-merge-patch+json".to_string()
            ),
        ]
    );
    let adv = server.get("metallb.io/v1beta1", "BGPAdvertisement", Some("metallb-system"), "external").unwrap();
    assert_eq!(adv["spec"]["localPref"], 60);
    let cm = server.get("v1", "ConfigMap", Some("metallb-system"), "speakerd-settings").unwrap();
    assert_eq!(cm["data"], json!({"logLevel": "debug"}));
    let svc = server.get("v1", "Service", Some("default"), "web").unwrap();
    let ports: Vec<i64> =
        svc["spec"]["ports"].as_array().unwrap().iter().map(|p| p["port"].as_i64().unwrap()).collect();
    assert_eq!(ports, vec![81], "the old port is removed by the strategic merge patch");

    // status subresource through kubectl
    let out = k
        .ok(&[
            "patch",
            "ipaddresspool",
            "first-pool",
            "-n",
            "metallb-system",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"assignedIPv4":3},"spec":{"autoAssign":false}}"#,
        ])
        .await;
    assert_eq!(out.trim(), "ipaddresspool.metallb.io/first-pool patched");
    let pool2 = server.get("metallb.io/v1beta1", "IPAddressPool", Some("metallb-system"), "first-pool").unwrap();
    assert_eq!(pool2["status"]["assignedIPv4"], 3);
    assert_eq!(pool2["spec"]["autoAssign"], true, "a status patch does not change spec");
    let out = k
        .ok(&[
            "patch",
            "svc",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"loadBalancer":{"ingress":[{"ip":"192.0.2.7"}]}}}"#,
        ])
        .await;
    assert_eq!(out.trim(), "service/web patched");
    let t = table(&k.ok(&["get", "svc", "web"]).await);
    assert_eq!(t[1][3], "192.0.2.7");

    // errors look like a real server's
    let err = k.fails(&["get", "svc", "nope"]).await;
    assert_eq!(err.trim(), r#"Error from server (NotFound): services "nope" not found"#);
    let err = k.fails(&["get", "frobnicators"]).await;
    assert!(err.contains(r#"the server doesn't have a resource type "frobnicators""#), "{err}");

    // delete -f
    let out = k.ok(&["delete", "-f", &fixture("metallb-objects.yaml")]).await;
    assert_eq!(
        lines(&out),
        vec![
            r#"ipaddresspool.metallb.io "first-pool" deleted"#,
            r#"bgppeer.metallb.io "peer-sample" deleted"#,
            r#"bgpadvertisement.metallb.io "external" deleted"#,
            r#"configmap "speakerd-settings" deleted"#,
            r#"service "web" deleted"#,
        ]
    );
    assert!(server.get("v1", "Service", Some("default"), "web").is_none());
    assert!(server.list("metallb.io/v1beta1", "IPAddressPool", None).is_empty());
    let out = k.ok(&["get", "ipaddresspools", "-A"]).await;
    assert!(out.trim().is_empty(), "{out}");

    let out = k.ok(&["api-resources", "--api-group=metallb.io", "-o", "name"]).await;
    assert_eq!(lines(&out), vec!["bgpadvertisements.metallb.io", "bgppeers.metallb.io", "ipaddresspools.metallb.io"]);
    k.ok(&["delete", "-f", &fixture("metallb-crds.yaml")]).await;
    let out = k.ok(&["api-resources", "--api-group=metallb.io", "-o", "name"]).await;
    assert!(out.trim().is_empty(), "{out}");
    // with kubectl's discovery cache still naming the resource, the list is a 404 (as on a real server)
    let err = k.fails(&["get", "ipaddresspools", "-A"]).await;
    assert!(err.contains("NotFound") || err.contains("doesn't have a resource type"), "{err}");
}

#[tokio::test]
async fn kubectl_get_watch_sees_library_changes() {
    let server = FakeApiServer::start().await;
    let Some(k) = Kubectl::new(&server, "watch") else { return };
    server.apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "pre", "namespace": "default"},
                        "spec": {"ports": [{"port": 80}]}}));
    let mut child = k
        .command(&["get", "svc", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next_line = async || {
        tokio::time::timeout(common::WAIT, out.next_line())
            .await
            .expect("kubectl -w output in time")
            .unwrap()
            .expect("kubectl -w still running")
    };
    let header = next_line().await;
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        vec!["EVENT", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    );
    let first = next_line().await;
    assert_eq!(first.split_whitespace().take(3).collect::<Vec<_>>(), vec!["ADDED", "pre", "ClusterIP"]);
    eventually("kubectl's watch to open", || server.watch_count_for("", "services") == 1).await;

    server.apply(json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
                        "spec": {"type": "LoadBalancer", "ports": [{"port": 443}]}}));
    server
        .patch_status(
            "v1",
            "Service",
            Some("default"),
            "web",
            json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.99"}]}}),
        )
        .unwrap();
    server.delete("v1", "Service", Some("default"), "web").unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let l = next_line().await;
        let cells: Vec<String> = l.split_whitespace().map(str::to_string).collect();
        got.push(format!("{} {} {}", cells[0], cells[1], cells[4]));
    }
    assert_eq!(got, vec!["ADDED web <pending>", "MODIFIED web 192.0.2.99", "DELETED web 192.0.2.99"]);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn kubectl_strict_validation_and_server_side_apply() {
    let server = FakeApiServer::start().await;
    let Some(k) = Kubectl::new(&server, "ssa") else { return };
    k.ok(&["apply", "-f", &fixture("metallb-crds.yaml")]).await;
    // unknown fields are rejected (kubectl's default --validate=strict asks the server)
    let bad = k.write(
        "bad.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: bad\n  namespace: metallb-system\nspec:\n  addresses: [192.0.2.0/24]\n  bogus: 1\n",
    );
    let err = k.fails(&["apply", "-f", &bad]).await;
    assert!(err.contains(r#"unknown field "spec.bogus""#), "{err}");
    assert!(server.get("metallb.io/v1beta1", "IPAddressPool", Some("metallb-system"), "bad").is_none());
    // --validate=false: the field is pruned instead
    k.ok(&["apply", "--validate=false", "-f", &bad]).await;
    let pruned = server.get("metallb.io/v1beta1", "IPAddressPool", Some("metallb-system"), "bad").unwrap();
    assert!(pruned["spec"].get("bogus").is_none());

    // server-side apply: created, then changed
    let out = k.ok(&["apply", "--server-side", "-f", &fixture("metallb-objects.yaml")]).await;
    assert!(lines(&out).iter().all(|l| l.ends_with("serverside-applied")), "{out}");
    assert_eq!(lines(&out).len(), 5);
    let ssa: Vec<_> =
        server.requests().into_iter().filter(|r| r.content_type == "application/apply-patch+yaml").collect();
    assert_eq!(ssa.len(), 5);
    assert_eq!(ssa[0].param("fieldManager").as_deref(), Some("kubectl"));
    let modified =
        std::fs::read_to_string(fixture("metallb-objects.yaml")).unwrap().replace("localPref: 50", "localPref: 70");
    let path = k.write("modified.yaml", &modified);
    k.ok(&["apply", "--server-side", "-f", &path]).await;
    let adv = server.get("metallb.io/v1beta1", "BGPAdvertisement", Some("metallb-system"), "external").unwrap();
    assert_eq!(adv["spec"]["localPref"], 70);
    // kubectl create -f, label, annotate, describe-free reads
    let cm = k.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  k: v\n");
    assert_eq!(k.ok(&["create", "-f", &cm]).await.trim(), "configmap/extra created");
    assert_eq!(k.ok(&["label", "cm", "extra", "tier=x"]).await.trim(), "configmap/extra labeled");
    let out = k.ok(&["get", "cm", "-l", "tier=x", "-o", "name"]).await;
    assert_eq!(out.trim(), "configmap/extra");
    let out =
        k.ok(&["get", "cm", "--field-selector", "metadata.name=extra", "-o", "jsonpath={.items[*].data.k}"]).await;
    assert_eq!(out.trim(), "v");
}

/// The project's CRDs (deploy/base/crds) carry MetalLB's CEL rules (`x-kubernetes-validations`); the
/// fake evaluates them as kube-apiserver does, and kubectl shows the refusal with the field and message.
#[tokio::test]
async fn kubectl_apply_is_refused_by_the_crds_cel_rules() {
    let server = FakeApiServer::start().await;
    let Some(k) = Kubectl::new(&server, "cel") else { return };
    let crds = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/base/crds");
    k.ok(&["apply", "-f", crds]).await;
    let peer = |name: &str, extra: &str| {
        k.write(
            &format!("{name}.yaml"),
            &format!("apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {{myASN: 64512, peerASN: 64513, peerAddress: 192.0.2.1{extra}}}\n"),
        )
    };
    let refused = [
        (
            ", connectTime: 1500ms",
            r#"spec.connectTime: Invalid value: "string": connectTime must be a whole number of seconds"#,
        ),
        (", connectTime: 0s", r#"spec.connectTime: Invalid value: "string": connectTime must be 1s to 65535s"#),
        (", connectTime: 19h", r#"spec.connectTime: Invalid value: "string": connectTime must be 1s to 65535s"#),
    ];
    for (extra, want) in refused {
        let err = k.fails(&["apply", "-f", &peer("p", extra)]).await;
        assert!(err.contains(want) && err.contains(r#"The BGPPeer "p" is invalid"#), "{extra}: {err}");
        assert!(server.get("metallb.io/v1beta2", "BGPPeer", Some("metallb-system"), "p").is_none());
    }
    k.ok(&["apply", "-f", &peer("p", ", connectTime: 10s")]).await;

    // enableGracefulRestart is set at creation and cannot change (a transition rule: updates only).
    k.ok(&["apply", "-f", &peer("gr", ", enableGracefulRestart: true")]).await;
    let err = k.fails(&["apply", "-f", &peer("gr", ", enableGracefulRestart: false")]).await;
    assert!(
        err.contains(r#"spec.enableGracefulRestart: Invalid value: "boolean": enableGracefulRestart cannot change"#),
        "{err}"
    );
    let stored = server.get("metallb.io/v1beta2", "BGPPeer", Some("metallb-system"), "gr").unwrap();
    assert_eq!(stored["spec"]["enableGracefulRestart"], true);
    k.ok(&["apply", "-f", &peer("gr", ", enableGracefulRestart: true, holdTime: 9s")]).await;

    // serviceSelectors with a non-default aggregation length: a rule on the whole spec.
    let adv = |name: &str, spec: &str| {
        k.write(
            &format!("{name}.yaml"),
            &format!("apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {{name: {name}, namespace: metallb-system}}\nspec: {{{spec}}}\n"),
        )
    };
    let err =
        k.fails(&["apply", "-f", &adv("a1", "serviceSelectors: [{matchLabels: {x: y}}], aggregationLength: 24")]).await;
    assert!(
        err.contains(r#"spec: Invalid value: "object": serviceSelectors need the default aggregationLength"#),
        "{err}"
    );
    let err = k
        .fails(&["apply", "-f", &adv("a2", "serviceSelectors: [{matchLabels: {x: y}}], aggregationLengthV6: 64")])
        .await;
    assert!(err.contains("serviceSelectors need the default"), "{err}");
    k.ok(&["apply", "-f", &adv("a3", "serviceSelectors: [{matchLabels: {x: y}}]")]).await;
    k.ok(&["apply", "-f", &adv("a4", "aggregationLength: 24")]).await;
    k.ok(&["apply", "-f", &adv("a5", "serviceSelectors: [], aggregationLength: 24")]).await;

    // The status objects' node and Service are fixed once written.
    let st = k.write(
        "st.yaml",
        "apiVersion: metallb.io/v1beta1\nkind: ServiceL2Status\nmetadata: {name: l2-x, namespace: metallb-system}\n",
    );
    k.ok(&["apply", "-f", &st]).await;
    let set =
        |node: &str| format!(r#"{{"status":{{"node":"{node}","serviceName":"s","serviceNamespace":"default"}}}}"#);
    k.ok(&[
        "patch",
        "servicel2status",
        "l2-x",
        "-n",
        "metallb-system",
        "--subresource=status",
        "--type=merge",
        "-p",
        &set("n1"),
    ])
    .await;
    let err = k
        .fails(&[
            "patch",
            "servicel2status",
            "l2-x",
            "-n",
            "metallb-system",
            "--subresource=status",
            "--type=merge",
            "-p",
            &set("n2"),
        ])
        .await;
    assert!(err.contains(r#"status.node: Invalid value: "string": is immutable"#), "{err}");
    let stored = server.get("metallb.io/v1beta1", "ServiceL2Status", Some("metallb-system"), "l2-x").unwrap();
    assert_eq!(stored["status"]["node"], "n1");
}
