//! `speaker-api`: the generated types, client and server stubs of speakerd's gRPC API (`speaker.v1`).
//!
//! This crate holds codegen only. The API is documented message by message in
//! `proto/speaker/v1/speaker.proto`; `docs/API.md` explains the model (owners, desired state).

/// `speaker.v1`: peers, announcements and the watch stream.
pub mod v1 {
    tonic::include_proto!("speaker.v1");

    /// Encoded `FileDescriptorSet` of `speaker.v1`, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("speaker_v1_descriptor");
}
