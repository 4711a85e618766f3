//! speakerd: makes the IPs of Kubernetes LoadBalancer Services reachable over BGP.
//!
//! Modules: `bgp` (codec, FSM, sessions), `config` (desired state), `api` (gRPC), `metrics`.
pub mod bgp;
pub mod config;
pub mod api;
pub mod events;
pub mod speaker;
pub mod metrics;
pub mod election;
pub mod l2;
pub mod netif;
pub mod membership;
pub mod bfd;
