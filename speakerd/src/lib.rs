//! speakerd: makes the IPs of Kubernetes LoadBalancer Services reachable over BGP.
//!
//! Modules: `bgp` (codec, FSM, sessions), `config` (desired state), `api` (gRPC), `metrics`.
pub mod api;
pub mod bfd;
pub mod bgp;
pub mod config;
pub mod election;
pub mod events;
pub mod l2;
pub mod mem;
pub mod membership;
pub mod metrics;
pub mod netif;
pub mod speaker;
