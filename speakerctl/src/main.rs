//! `speakerctl`: the command-line client of speakerd's `speaker.v1` gRPC API.
//!
//! This file owns the global flags, the choice of socket, the connection and the exit codes; the
//! commands live in `cmd/`, and everything that turns API messages into text lives in `output/`
//! (`output/l2.rs` for Layer 2 and the gossip group).
//! Nothing here knows BGP: speakerd validates and applies, speakerctl only translates.
//!
//! Exit codes: 0 success, 1 the call failed (gRPC error, or output could not be written),
//! 2 speakerd could not be reached (or clap rejected the command line).

mod cmd;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use speaker_api::v1::speaker_client::SpeakerClient;
use tonic::transport::{Channel, Endpoint};

use crate::cmd::CmdError;
use crate::output::Format;

const GLOBAL: &str = "Global options";

/// Control speakerd: BGP peers, announcements, and a stream of changes.
#[derive(Debug, Parser)]
#[command(name = "speakerctl", version, about, propagate_version = true)]
pub struct Cli {
    /// speakerd's API socket. Default: $SPEAKERD_SOCKET, else /run/speakerd/speakerd.sock as root,
    /// else $XDG_RUNTIME_DIR/speakerd.sock, else /tmp/speakerd-<uid>.sock.
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "addr", help_heading = GLOBAL)]
    pub socket: Option<PathBuf>,

    /// Connect over TCP instead of the Unix socket, e.g. http://127.0.0.1:50051.
    #[arg(long, global = true, value_name = "http://HOST:PORT", value_parser = parse_addr, help_heading = GLOBAL)]
    pub addr: Option<String>,

    /// CA certificate (PEM) to verify speakerd's TLS certificate with: --addr https://HOST:PORT.
    #[arg(long, global = true, value_name = "PEM", requires = "addr", help_heading = GLOBAL)]
    pub tls_ca: Option<PathBuf>,

    /// Client certificate (PEM) for mutual TLS, with --tls-key.
    #[arg(long, global = true, value_name = "PEM", requires_all = ["tls_key", "tls_ca"], help_heading = GLOBAL)]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, global = true, value_name = "PEM", requires = "tls_cert", help_heading = GLOBAL)]
    pub tls_key: Option<PathBuf>,

    /// Name to check speakerd's certificate against. Default: the host of --addr.
    #[arg(long, global = true, value_name = "NAME", requires = "tls_ca", help_heading = GLOBAL)]
    pub tls_server_name: Option<String>,

    /// Output format.
    #[arg(short = 'o', long = "output", global = true, value_enum, default_value_t = Format::Table, help_heading = GLOBAL)]
    pub output: Format,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Layer 2 announcements: list, owner, add, withdraw.
    #[command(subcommand)]
    L2(cmd::l2::L2Command),
    /// The gossip group (Layer 2 membership) as this node sees it.
    Members,
    /// BGP peers: list, show, add, update, delete, reset.
    #[command(subcommand)]
    Peer(cmd::peer::PeerCommand),
    /// Announced prefixes: add, withdraw, list.
    #[command(subcommand)]
    Announce(cmd::announce::AnnounceCommand),
    /// Stream peer state changes and announcement changes until interrupted.
    Watch(cmd::watch::WatchArgs),
    /// Print shell completions for speakerctl.
    Completions {
        /// The shell to generate completions for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Where speakerd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Unix(PathBuf),
    Tcp(String),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "{}", path.display()),
            Self::Tcp(addr) => f.write_str(addr),
        }
    }
}

/// `--addr` as the URI tonic connects to; HOST:PORT without a scheme is taken as http://HOST:PORT
/// (https://HOST:PORT for TLS, with --tls-ca).
fn parse_addr(s: &str) -> Result<String, String> {
    let uri = if s.contains("://") { s.to_string() } else { format!("http://{s}") };
    Endpoint::from_shared(uri.clone()).map_err(|e| error_chain(&e))?;
    Ok(uri)
}

fn target(cli: &Cli) -> Target {
    if let Some(addr) = &cli.addr {
        return Target::Tcp(addr.clone());
    }
    match &cli.socket {
        Some(path) => Target::Unix(path.clone()),
        None => Target::Unix(speaker_api::default_socket_path()),
    }
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to speakerd; the error text says what failed, with every cause in the chain.
/// TLS settings of a TCP connection, from --tls-ca/--tls-cert/--tls-key/--tls-server-name.
fn tls_config(cli: &Cli) -> Result<Option<tonic::transport::ClientTlsConfig>, String> {
    let Some(ca) = &cli.tls_ca else {
        if cli.addr.as_deref().is_some_and(|a| a.starts_with("https://")) {
            return Err("--addr https://… needs --tls-ca".into());
        }
        return Ok(None);
    };
    let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut t =
        tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
    if let (Some(c), Some(k)) = (&cli.tls_cert, &cli.tls_key) {
        t = t.identity(tonic::transport::Identity::from_pem(read(c)?, read(k)?));
    }
    if let Some(n) = &cli.tls_server_name {
        t = t.domain_name(n.clone());
    }
    Ok(Some(t))
}

async fn connect(
    target: &Target,
    tls: Option<tonic::transport::ClientTlsConfig>,
) -> Result<SpeakerClient<Channel>, String> {
    let channel = match target {
        Target::Unix(path) => {
            // The URI is a placeholder required by tonic; the connector ignores it.
            let endpoint = Endpoint::try_from("http://[::]:50051").map_err(|e| error_chain(&e))?;
            let path = path.clone();
            endpoint
                .connect_timeout(CONNECT_TIMEOUT)
                .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                            tokio::net::UnixStream::connect(path).await?,
                        ))
                    }
                }))
                .await
        }
        Target::Tcp(addr) => {
            let mut endpoint =
                Endpoint::from_shared(addr.clone()).map_err(|e| format!("bad --addr: {}", error_chain(&e)))?;
            if let Some(t) = tls {
                endpoint = endpoint.tls_config(t).map_err(|e| format!("TLS: {}", error_chain(&e)))?;
            }
            endpoint.connect_timeout(CONNECT_TIMEOUT).connect().await
        }
    };
    // tonic's own text ("transport error") says nothing its causes do not.
    channel.map(SpeakerClient::new).map_err(|e| error_chain(&e).trim_start_matches("transport error: ").to_string())
}

/// `e` and its sources joined by ": ", skipping causes whose text repeats the previous one.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut last = text.clone();
    let mut source = e.source();
    while let Some(cause) = source {
        let s = cause.to_string();
        if s != last && !last.ends_with(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        last = s;
        source = cause.source();
    }
    text
}

/// The line printed on stderr for a failed call: `error: <code description>: <message>`.
fn status_line(status: &tonic::Status) -> String {
    let description = status.code().description();
    if status.message().is_empty() {
        format!("error: {description}")
    } else {
        format!("error: {description}: {}", status.message())
    }
}

async fn run(cli: Cli) -> ExitCode {
    let format = cli.output;
    let target = target(&cli);
    let tls = match tls_config(&cli) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Completions { shell } => {
            // Generated into memory first: clap_complete panics if writing to a closed pipe fails.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "speakerctl", &mut script);
            cmd::write_all(&mut std::io::stdout().lock(), &script)
        }
        command => {
            let mut client = match connect(&target, tls.clone()).await {
                Ok(client) => client,
                Err(e) => {
                    let hint = match &target {
                        Target::Unix(_) => " (is speakerd running? set --socket or SPEAKERD_SOCKET)",
                        Target::Tcp(_) => " (is speakerd running and listening there?)",
                    };
                    eprintln!("error: cannot connect to speakerd at {target}: {e}{hint}");
                    return ExitCode::from(2);
                }
            };
            let mut out = std::io::stdout().lock();
            match command {
                Command::Peer(c) => cmd::peer::run(&mut client, c, format, &mut out).await,
                Command::Announce(c) => cmd::announce::run(&mut client, c, format, &mut out).await,
                Command::Watch(args) => cmd::watch::run(&mut client, args, format, &mut out).await,
                Command::L2(c) => cmd::l2::run(&mut client, c, format, &mut out).await,
                Command::Members => cmd::l2::members(&mut client, format, &mut out).await,
                Command::Completions { .. } => unreachable!("handled above"),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CmdError::Rpc(status)) => {
            eprintln!("{}", status_line(&status));
            ExitCode::from(1)
        }
        // `speakerctl watch | head`: the reader went away, which is how such a pipeline ends.
        Err(CmdError::Io(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the tokio runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(run(cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn addr_wins_over_socket_and_gets_a_scheme() {
        let cli = Cli::try_parse_from(["speakerctl", "--addr", "127.0.0.1:50051", "peer", "list"]).unwrap();
        assert_eq!(target(&cli), Target::Tcp("http://127.0.0.1:50051".into()));
        let cli = Cli::try_parse_from(["speakerctl", "--addr", "http://[::1]:1", "peer", "list"]).unwrap();
        assert_eq!(target(&cli), Target::Tcp("http://[::1]:1".into()));
    }

    #[test]
    fn socket_flag_is_used_as_given() {
        let cli = Cli::try_parse_from(["speakerctl", "peer", "list", "--socket", "/s.sock", "-o", "json"]).unwrap();
        assert_eq!(target(&cli), Target::Unix("/s.sock".into()));
        assert_eq!(cli.output, Format::Json);
    }

    #[test]
    fn bad_addr_is_rejected_by_clap() {
        assert!(Cli::try_parse_from(["speakerctl", "--addr", "http://bad host", "peer", "list"]).is_err());
    }

    #[test]
    fn socket_and_addr_conflict() {
        assert!(Cli::try_parse_from(["speakerctl", "--socket", "/s", "--addr", "http://h:1", "peer", "list"]).is_err());
    }

    #[test]
    fn status_line_names_code_and_message() {
        let status = tonic::Status::not_found("peer 192.0.2.9 is not configured");
        assert_eq!(
            status_line(&status),
            "error: Some requested entity was not found: peer 192.0.2.9 is not configured"
        );
        assert_eq!(status_line(&tonic::Status::internal("")), "error: Internal error");
    }

    #[tokio::test]
    async fn connect_failure_names_the_socket_cause() {
        let target = Target::Unix("/nonexistent/speakerd-test.sock".into());
        let Err(err) = connect(&target, None).await else { panic!("connect must fail") };
        assert!(err.contains("No such file or directory"), "{err}");
    }
}
