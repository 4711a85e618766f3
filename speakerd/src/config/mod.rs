//! Desired state: validated peer and announcement specs, and the optional config file.
pub mod file;
pub mod spec;
