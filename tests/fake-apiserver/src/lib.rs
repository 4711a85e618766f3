//! In-process fake Kubernetes API server. Work in progress.
