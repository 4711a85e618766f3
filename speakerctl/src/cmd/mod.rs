//! The commands of speakerctl: each turns its flags into one request (pure, unit-tested), makes the call,
//! and hands the response to `output` for rendering. No command retries or second-guesses speakerd.

pub mod announce;
pub mod l2;
pub mod peer;
pub mod watch;

use std::fmt;
use std::io::Write;

use speaker_api::v1::speaker_client::SpeakerClient;
use tonic::transport::Channel;

/// The connected API client every command takes.
pub type Client = SpeakerClient<Channel>;

/// Why a command failed after speakerd was reached.
#[derive(Debug)]
pub enum CmdError {
    /// speakerd answered with an error status (exit 1, printed as `error: <code>: <message>`).
    Rpc(tonic::Status),
    /// Writing the output failed (a closed pipe is a normal end, see `main`).
    Io(std::io::Error),
    /// The output could not be encoded as JSON or YAML.
    Encode(String),
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rpc(status) => write!(f, "{}: {}", status.code().description(), status.message()),
            Self::Io(e) => write!(f, "cannot write output: {e}"),
            Self::Encode(e) => write!(f, "cannot encode output: {e}"),
        }
    }
}

impl From<tonic::Status> for CmdError {
    fn from(status: tonic::Status) -> Self {
        Self::Rpc(status)
    }
}

impl From<std::io::Error> for CmdError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

/// Writes `bytes` and flushes, so that a streamed line is seen at once.
pub fn write_all(out: &mut dyn Write, bytes: &[u8]) -> Result<(), CmdError> {
    out.write_all(bytes)?;
    out.flush()?;
    Ok(())
}
