//! The one place where a speaker error becomes a gRPC status: each case of [`SpeakerError`] is given
//! its code here, and its text is the status message.
use crate::speaker::SpeakerError;
use tonic::Status;

impl From<SpeakerError> for Status {
    fn from(e: SpeakerError) -> Self {
        let code = match &e {
            SpeakerError::Invalid(_) => tonic::Code::InvalidArgument,
            SpeakerError::PeerNotFound(_) => tonic::Code::NotFound,
            SpeakerError::PeerExists { .. } | SpeakerError::NameTaken(_) | SpeakerError::OwnedByOther { .. } => {
                tonic::Code::AlreadyExists
            }
            SpeakerError::TooManyPeers(_)
            | SpeakerError::TooManyAnnouncements { .. }
            | SpeakerError::TooManyL2Announcements { .. }
            | SpeakerError::PeerBusy => tonic::Code::ResourceExhausted,
            SpeakerError::AdminDown(_) | SpeakerError::Layer2Off => tonic::Code::FailedPrecondition,
        };
        Status::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::ConfigError;
    use tonic::Code;

    #[test]
    fn each_error_has_its_code_and_text() {
        let a = "192.0.2.1".parse().unwrap();
        let cases: Vec<(SpeakerError, Code, &str)> = vec![
            (ConfigError::new("peer.address", "required").into(), Code::InvalidArgument, "peer.address: required"),
            (SpeakerError::PeerNotFound("r1".into()), Code::NotFound, "peer \"r1\" not found"),
            (
                SpeakerError::PeerExists { address: a, owner: "o".into() },
                Code::AlreadyExists,
                "peer 192.0.2.1 already exists (owner \"o\")",
            ),
            (SpeakerError::NameTaken("r1".into()), Code::AlreadyExists, "a peer is already named \"r1\""),
            (
                SpeakerError::OwnedByOther { address: a, owner: "o".into() },
                Code::AlreadyExists,
                "peer 192.0.2.1 is owned by \"o\"",
            ),
            (SpeakerError::TooManyPeers(4096), Code::ResourceExhausted, "at most 4096 peers"),
            (
                SpeakerError::TooManyAnnouncements { count: 3, max: 2 },
                Code::ResourceExhausted,
                "3 announcements: at most 2 per owner",
            ),
            (
                SpeakerError::TooManyL2Announcements { max: 2 },
                Code::ResourceExhausted,
                "at most 2 announcements per owner",
            ),
            (SpeakerError::PeerBusy, Code::ResourceExhausted, "peer task busy, try again"),
            (
                SpeakerError::AdminDown(a),
                Code::FailedPrecondition,
                "peer 192.0.2.1 is administratively down: enable it first",
            ),
            (SpeakerError::Layer2Off, Code::FailedPrecondition, "Layer 2 mode is not running on this node"),
        ];
        for (e, code, message) in cases {
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, message));
        }
    }
}
