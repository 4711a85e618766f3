//! A stock Python gRPC client (grpcio, default channel options) drives speakerd over its Unix socket:
//! the example of docs/API.md, run as written (docs/examples/python_client.py, which the doc includes
//! verbatim: checked here). gRPC's C-core sends the socket's path as `:authority` ("tmp%2F...sock"),
//! which h2 used to reset with PROTOCOL_ERROR, failing every call; reflection is asked as v1alpha
//! (grpcio-reflection) and v1. Needs python3 with grpcio, grpcio-tools and grpcio-reflection
//! (scripts/install-test-deps.sh installs them): a skip without them, a failure under CI.
mod common;
use common::Daemon;
use std::path::Path;
use std::process::Command;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/python_client.py");
const API_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/API.md");
const PROTO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../proto");

fn python_ready() -> Result<(), String> {
    let out = Command::new("python3")
        .args(["-c", "import grpc, grpc_tools, grpc_reflection"])
        .output()
        .map_err(|e| format!("python3: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "python3 lacks grpcio/grpcio-tools/grpcio-reflection (scripts/install-test-deps.sh): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn the_documented_python_example_is_the_file_that_runs() {
    let doc = std::fs::read_to_string(API_DOC).unwrap();
    let file = std::fs::read_to_string(EXAMPLE).unwrap();
    let block = doc
        .split("```python\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("docs/API.md has no ```python block");
    assert_eq!(block, file, "docs/API.md's python block differs from docs/examples/python_client.py");
}

#[test]
fn python_grpcio_with_default_options_on_the_unix_socket() {
    if let Err(why) = python_ready() {
        test_skip::skip("python_grpcio_with_default_options_on_the_unix_socket", &why);
        return;
    }
    let d = Daemon::start(&[]);
    let stubs = d.dir.join("py");
    std::fs::create_dir_all(&stubs).unwrap();
    let gen = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", &format!("-I{PROTO}"), "--python_out=.", "--grpc_python_out=.", "speaker/v1/speaker.proto"])
        .current_dir(&stubs)
        .output()
        .unwrap();
    assert!(gen.status.success(), "protoc: {}", String::from_utf8_lossy(&gen.stderr));
    let out = Command::new("python3")
        .arg(Path::new(EXAMPLE))
        .arg(&d.socket)
        .env("PYTHONPATH", &stubs)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the example failed:\n{stdout}\n{stderr}\nspeakerd:\n{}", d.log());
    println!("{stdout}");
    for want in [
        "peer 192.0.2.2 AS 65002 state SESSION_STATE_",
        "error INVALID_ARGUMENT announcements[0].prefix: 203.0.113.10/24: host bits set",
        "watch synced",
        "watch peer 192.0.2.2",
        "watch announcement 203.0.113.10/32",
        "reflection v1alpha ['grpc.health.v1.Health', 'grpc.reflection.v1alpha.ServerReflection', 'speaker.v1.Speaker']",
        "reflection v1 ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'speaker.v1.Speaker']",
    ] {
        assert!(stdout.lines().any(|l| l.starts_with(want)), "missing {want:?} in:\n{stdout}");
    }
}
