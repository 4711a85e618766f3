//! `speaker-api`: the generated types, client and server stubs of speakerd's gRPC API (`speaker.v1`),
//! and of the GoBGP v3 compatible API it also serves (`gobgp`, package `apipb`).
//!
//! This crate holds codegen only. The API is documented message by message in
//! `proto/speaker/v1/speaker.proto`; `docs/API.md` explains the model (owners, desired state).

/// `speaker.v1`: peers, announcements and the watch stream.
pub mod v1 {
    tonic::include_proto!("speaker.v1");

    /// Encoded `FileDescriptorSet` of `speaker.v1`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("speaker_v1_descriptor");
}

/// The GoBGP v3 compatible API (`proto/gobgp/v3`): GoBGP's package `apipb`, service `GobgpApi`.
pub mod gobgp {
    /// Package `apipb`, as GoBGP v3 names it on the wire.
    #[allow(clippy::large_enum_variant)]
    pub mod apipb {
        tonic::include_proto!("apipb");
    }

    /// Encoded `FileDescriptorSet` of `apipb`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("gobgp_v3_descriptor");

    /// The type URL GoBGP gives a message of package `apipb` packed in a `google.protobuf.Any`.
    pub fn type_url(message: &str) -> String {
        format!("type.googleapis.com/apipb.{message}")
    }
}

/// The default path of speakerd's Unix socket, shared by speakerd and speakerctl:
/// `$SPEAKERD_SOCKET` if set; else `/run/speakerd/speakerd.sock` for root; else
/// `$XDG_RUNTIME_DIR/speakerd.sock`; else `/tmp/speakerd-<uid>.sock`.
pub fn default_socket_path() -> std::path::PathBuf {
    socket_path_for(std::env::var_os("SPEAKERD_SOCKET"), effective_uid(), std::env::var_os("XDG_RUNTIME_DIR"))
}

/// The rule of [`default_socket_path`], with its inputs given (for tests).
pub fn socket_path_for(
    explicit: Option<std::ffi::OsString>,
    uid: u32,
    runtime_dir: Option<std::ffi::OsString>,
) -> std::path::PathBuf {
    use std::path::PathBuf;
    match (explicit.filter(|e| !e.is_empty()), uid, runtime_dir.filter(|r| !r.is_empty())) {
        (Some(e), _, _) => PathBuf::from(e),
        (None, 0, _) => PathBuf::from("/run/speakerd/speakerd.sock"),
        (None, _, Some(r)) => PathBuf::from(r).join("speakerd.sock"),
        (None, uid, None) => PathBuf::from(format!("/tmp/speakerd-{uid}.sock")),
    }
}

fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail (POSIX).
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::socket_path_for;

    #[test]
    fn socket_path_rules() {
        assert_eq!(socket_path_for(Some("/x.sock".into()), 0, None).to_str(), Some("/x.sock"));
        assert_eq!(socket_path_for(None, 0, Some("/run/user/0".into())).to_str(), Some("/run/speakerd/speakerd.sock"));
        assert_eq!(
            socket_path_for(None, 1000, Some("/run/user/1000".into())).to_str(),
            Some("/run/user/1000/speakerd.sock")
        );
        assert_eq!(socket_path_for(None, 1000, None).to_str(), Some("/tmp/speakerd-1000.sock"));
        // Empty variables count as unset.
        assert_eq!(socket_path_for(Some("".into()), 1000, Some("".into())).to_str(), Some("/tmp/speakerd-1000.sock"));
    }
}
