//! What can go wrong in a speaker operation, in the speaker's own terms. The API maps each case to a
//! gRPC status in one place (`api::status`); the texts here are what clients read.
use crate::config::spec::ConfigError;
use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeakerError {
    /// A request that does not validate (a field and why).
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    /// No peer has this address or name.
    #[error("peer {0:?} not found")]
    PeerNotFound(String),
    /// A peer with this address exists already.
    #[error("peer {address} already exists (owner {owner:?})")]
    PeerExists { address: IpAddr, owner: String },
    /// Another peer carries this name.
    #[error("a peer is already named {0:?}")]
    NameTaken(String),
    /// The peer belongs to another owner, whose calls alone may change it.
    #[error("peer {address} is owned by {owner:?}")]
    OwnedByOther { address: IpAddr, owner: String },
    /// The process-wide peer limit is reached.
    #[error("at most {0} peers")]
    TooManyPeers(usize),
    /// An owner's announcement set would grow past the limit.
    #[error("{count} announcements: at most {max} per owner")]
    TooManyAnnouncements { count: usize, max: usize },
    /// An owner's Layer 2 set would grow past the limit.
    #[error("at most {max} announcements per owner")]
    TooManyL2Announcements { max: usize },
    /// The peer's task has a full command queue.
    #[error("peer task busy, try again")]
    PeerBusy,
    /// The peer is administratively down: the operation needs a session.
    #[error("peer {0} is administratively down: enable it first")]
    AdminDown(IpAddr),
    /// A Layer 2 call on a node that runs without Layer 2 (no `--node-name`, or gossip off).
    #[error("Layer 2 mode is not running on this node")]
    Layer2Off,
}
