//! The gRPC APIs: proto ↔ domain conversion at the edge only, and the routers main.rs serves.
//!
//! - [`v1`]: `speaker.v1.Speaker` (speakerctl, k8s-bridge), with gRPC health and reflection.
//! - [`gobgp`]: GoBGP's `apipb.GobgpApi` (`--gobgp-api`).
//! - [`status`]: the one mapping of speaker errors to gRPC status codes.
pub mod gobgp;
pub mod status;
pub mod v1;

use crate::speaker::Speaker;
use speaker_api::gobgp::apipb::gobgp_api_server::GobgpApiServer;
use speaker_api::v1::speaker_server::SpeakerServer;
use std::net::SocketAddr;
use std::sync::Arc;
use v1::Api;

/// Largest request accepted, bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// The router with the Speaker service, health and reflection.
pub fn router(
    speaker: Arc<Speaker>,
) -> Result<tonic::transport::server::Router, Box<dyn std::error::Error + Send + Sync>> {
    router_with(speaker, None)
}

/// [`router`] with TLS (and, with a client CA, mutual TLS) for the TCP listener.
pub fn router_with(
    speaker: Arc<Speaker>,
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> Result<tonic::transport::server::Router, Box<dyn std::error::Error + Send + Sync>> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    // Reflection as grpc.reflection.v1 and as v1alpha, which grpcio-reflection, grpcurl's older
    // releases and several tools still speak.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(speaker_api::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) = (reflection().build_v1()?, reflection().build_v1alpha()?);
    let generated = SpeakerServer::new(Api::new(speaker.clone())).max_decoding_message_size(MAX_REQUEST_BYTES);
    let svc = v1::bulk::InPlace::new(generated, speaker, MAX_REQUEST_BYTES);
    tokio::spawn(async move {
        health_reporter.set_serving::<SpeakerServer<Api>>().await;
    });
    let mut builder = tonic::transport::Server::builder();
    if let Some(t) = tls {
        builder = builder.tls_config(t)?;
    }
    Ok(builder.add_service(health).add_service(reflection_v1).add_service(reflection_v1alpha).add_service(svc))
}

/// The router serving `apipb.GobgpApi`.
pub fn gobgp_router(speaker: Arc<Speaker>, listen: Option<Vec<SocketAddr>>) -> tonic::transport::server::Router {
    let svc =
        GobgpApiServer::new(gobgp::GobgpService::new(speaker, listen)).max_decoding_message_size(MAX_REQUEST_BYTES);
    tonic::transport::Server::builder().add_service(gobgp::WithReasons(svc))
}
