//! `fake-apiserver --listen 127.0.0.1:PORT [--kubeconfig PATH] [--bookmark-interval-ms N]`
//!
//! Runs the fake API server until interrupted, for poking it with kubectl.

use fake_apiserver::FakeApiServer;
use std::net::SocketAddr;
use std::time::Duration;

fn usage() -> ! {
    eprintln!("usage: fake-apiserver [--listen 127.0.0.1:PORT] [--kubeconfig PATH] [--bookmark-interval-ms N]");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let mut listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let mut kubeconfig = None;
    let mut bookmarks = Some(Duration::from_secs(60));
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage()),
            "--kubeconfig" => kubeconfig = Some(args.next().unwrap_or_else(|| usage())),
            "--bookmark-interval-ms" => {
                let ms: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| usage());
                bookmarks = (ms > 0).then(|| Duration::from_millis(ms));
            }
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    let server = match FakeApiServer::builder().addr(listen).bookmark_interval(bookmarks).start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fake-apiserver: cannot listen on {listen}: {e}");
            std::process::exit(1)
        }
    };
    if let Some(p) = kubeconfig {
        if let Err(e) = server.write_kubeconfig(std::path::Path::new(&p)) {
            eprintln!("fake-apiserver: cannot write {p}: {e}");
            std::process::exit(1)
        }
        eprintln!("fake-apiserver: kubeconfig written to {p}");
    }
    println!("fake-apiserver listening on {}", server.url());
    let _ = tokio::signal::ctrl_c().await;
    server.shutdown().await;
}
