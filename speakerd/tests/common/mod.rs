//! Shared by speakerd's integration tests: the real speakerd binary on a private socket, and a client.
#![allow(dead_code)]
pub mod raw;
use speaker_api::v1::speaker_client::SpeakerClient;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub struct Daemon {
    pub child: Child,
    pub dir: PathBuf,
    pub socket: PathBuf,
}

impl Daemon {
    pub fn start(extra: &[&str]) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("speakerd-api-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("s.sock");
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_speakerd"))
            .args(["--socket", socket.to_str().unwrap(), "--local-asn", "65001", "--router-id", "192.0.2.1"])
            // No BGP listener unless the test asks for one.
            .args(if extra.contains(&"--bgp-listen") { &[][..] } else { &["--no-bgp-listen"][..] })
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Self { child, dir, socket };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !d.socket.exists() {
            assert!(Instant::now() < deadline, "speakerd did not create its socket:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: sending a signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    pub async fn channel(&self) -> Channel {
        let path = self.socket.clone();
        tonic::transport::Endpoint::try_from("http://[::]:50051")
            .unwrap()
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(path).await?))
                }
            }))
            .await
            .unwrap()
    }

    pub async fn client(&self) -> SpeakerClient<Channel> {
        SpeakerClient::new(self.channel().await)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
