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
const GOBGP_EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/gobgp_client.py");
const GOBGP_DOC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/GOBGP_API.md");
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
fn the_documented_python_examples_are_the_files_that_run() {
    for (doc, file) in [(API_DOC, EXAMPLE), (GOBGP_DOC, GOBGP_EXAMPLE)] {
        let text = std::fs::read_to_string(doc).unwrap();
        let code = std::fs::read_to_string(file).unwrap();
        let block = text
            .split("```python\n")
            .nth(1)
            .and_then(|b| b.split("```").next())
            .unwrap_or_else(|| panic!("{doc} has no ```python block"));
        assert_eq!(block, code, "{doc}'s python block differs from {file}");
    }
}

/// Generates the Python stubs of `protos` (paths under proto/) into `dir`.
fn stubs(dir: &Path, protos: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let gen = Command::new("python3")
        .args(["-m", "grpc_tools.protoc", &format!("-I{PROTO}"), "--python_out=.", "--grpc_python_out=."])
        .args(protos)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(gen.status.success(), "protoc: {}", String::from_utf8_lossy(&gen.stderr));
}

/// Runs a Python file with `arg`, the stubs in `dir` on its path; its standard output.
fn run_python(file: &str, arg: &str, dir: &Path, log: &str) -> String {
    let out = Command::new("python3").arg(file).arg(arg).env("PYTHONPATH", dir).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{file} failed:\n{stdout}\n{stderr}\nspeakerd:\n{log}");
    println!("{stdout}");
    stdout.into_owned()
}

fn expect_lines(stdout: &str, wants: &[&str]) {
    for want in wants {
        assert!(stdout.lines().any(|l| l.starts_with(want)), "missing {want:?} in:\n{stdout}");
    }
}

#[test]
fn gobgp_python_example_over_tcp() {
    if let Err(why) = python_ready() {
        test_skip::skip("gobgp_python_example_over_tcp", &why);
        return;
    }
    let port = common::raw::free_port();
    let addr = format!("127.0.0.1:{port}");
    let d = Daemon::start(&["--gobgp-api", &addr]);
    let dir = d.dir.join("py");
    stubs(&dir, &["gobgp/v3/gobgp.proto", "gobgp/v3/attribute.proto"]);
    let mut stdout = String::new();
    for _ in 0..100 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            stdout = run_python(GOBGP_EXAMPLE, &addr, &dir, &d.log());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    expect_lines(
        &stdout,
        &[
            "added, uuid ",
            "global 203.0.113.20/32",
            "error INVALID_ARGUMENT path.nlri: 203.0.113.20/24: host bits set",
            "deleted 0 left",
        ],
    );
}

#[test]
fn python_grpcio_with_default_options_on_the_unix_socket() {
    if let Err(why) = python_ready() {
        test_skip::skip("python_grpcio_with_default_options_on_the_unix_socket", &why);
        return;
    }
    let d = Daemon::start(&[]);
    let dir = d.dir.join("py");
    stubs(&dir, &["speaker/v1/speaker.proto"]);
    let stdout = run_python(EXAMPLE, &d.socket.display().to_string(), &dir, &d.log());
    expect_lines(&stdout, &[
        "peer 192.0.2.2 AS 65002 state SESSION_STATE_",
        "error INVALID_ARGUMENT announcements[0].prefix: 203.0.113.10/24: host bits set",
        "watch synced",
        "watch peer 192.0.2.2",
        "watch announcement 203.0.113.10/32",
        "reflection v1alpha ['grpc.health.v1.Health', 'grpc.reflection.v1alpha.ServerReflection', 'speaker.v1.Speaker']",
        "reflection v1 ['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection', 'speaker.v1.Speaker']",
    ]);
}
