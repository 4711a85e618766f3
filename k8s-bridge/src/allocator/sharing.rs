//! IP sharing (`metallb.io/allow-shared-ip`): who may hold the same address.
use std::collections::BTreeMap;

/// A Service port as the allocator sees it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Port {
    pub proto: String,
    pub port: i32,
}

impl std::fmt::Display for Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.proto, self.port)
    }
}

/// The key two Services must agree on to share an address: the sharing annotation's value and
/// the backend key (empty for externalTrafficPolicy Cluster, the pod selector for Local).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Key {
    pub sharing: String,
    pub backend: String,
}

/// upstream's BackendKey: for externalTrafficPolicy Local the selector rendered as
/// `k1=v1,k2=v2` (sorted by key), else empty, so Cluster Services share with Cluster Services
/// only and Local Services with Local Services that select the same pods.
pub fn backend_key(etp_local: bool, selector: &BTreeMap<String, String>) -> String {
    if !etp_local {
        return String::new();
    }
    selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Why `new` may not join an address held under `existing`, or None if it may.
pub fn sharing_refusal(existing: &Key, new: &Key) -> Option<String> {
    if existing.sharing.is_empty() {
        return Some("existing service does not allow sharing".into());
    }
    if new.sharing.is_empty() {
        return Some("new service does not allow sharing".into());
    }
    if existing.sharing != new.sharing {
        return Some(format!(
            "sharing key {:?} does not match existing sharing key {:?}",
            new.sharing, existing.sharing
        ));
    }
    if existing.backend != new.backend {
        return Some(format!(
            "backend key {:?} does not match existing backend key {:?} (externalTrafficPolicy or selector differ)",
            new.backend, existing.backend
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        let sel: BTreeMap<_, _> = [("b".to_string(), "2".to_string()), ("a".into(), "1".into())].into();
        assert_eq!(backend_key(true, &sel), "a=1,b=2");
        assert_eq!(backend_key(false, &sel), "");
        let k = |s: &str, b: &str| Key { sharing: s.into(), backend: b.into() };
        assert!(sharing_refusal(&k("x", ""), &k("x", "")).is_none());
        assert!(sharing_refusal(&k("", ""), &k("x", "")).is_some());
        assert!(sharing_refusal(&k("x", ""), &k("", "")).is_some());
        assert!(sharing_refusal(&k("x", ""), &k("y", "")).is_some());
        assert!(sharing_refusal(&k("x", "a=1"), &k("x", "")).is_some());
    }
}
