//! k8s-bridge: the sidecar that turns the cluster's MetalLB configuration, Services, EndpointSlices
//! and Nodes into this node's desired speakerd state, and applies it through speakerd's idempotent
//! per-owner calls.
//!
//! - [`metallb`]: the configuration as written (CRD specs, legacy ConfigMap).
//! - [`config`]: validated and normalised; problems name their object.
//! - [`cluster`]: Services, EndpointSlices and Nodes reduced to what matters; [`slim`] decodes them
//!   from the API's JSON straight into that form.
//! - [`translate`]: the pure function from both to [`translate::Desired`].
//! - [`incremental`]: that state kept between passes and changed in place by what a change touches.
//! - [`apply`]: pushes a `Desired` to speakerd.
//! - [`run`]: the reflectors, the reconcile loop and metrics.
//! - [`error`]: the errors the long-running tasks end with.
//! - [`events`], [`status`], [`config_state`]: Events, status objects and the ConfigurationState,
//!   written by their own tasks off the data path.
pub mod allocator;
pub mod apply;
pub mod cluster;
pub mod config;
pub mod config_state;
pub mod controller;
pub mod error;
pub mod events;
pub mod incremental;
pub mod lease;
pub mod metallb;
pub mod metrics;
pub mod offline;
pub mod run;
pub mod selector;
pub mod slim;
pub mod status;
pub mod translate;

/// The owner name k8s-bridge uses for its peers and announcements in speakerd.
pub const OWNER: &str = "k8s-bridge";
