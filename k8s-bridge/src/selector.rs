//! Kubernetes label selectors (`matchLabels` and `matchExpressions` with In, NotIn, Exists,
//! DoesNotExist), validated once and then matched against label maps.
use crate::metallb::LabelSelector;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Req {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A validated selector. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    reqs: Vec<Req>,
}

impl Selector {
    pub fn new(s: &LabelSelector) -> Result<Self, String> {
        let mut reqs: Vec<Req> = s.match_labels.iter().map(|(k, v)| Req::In(k.clone(), vec![v.clone()])).collect();
        for (i, e) in s.match_expressions.iter().enumerate() {
            if e.key.is_empty() {
                return Err(format!("matchExpressions[{i}].key: required"));
            }
            let r = match e.operator.as_str() {
                "In" | "NotIn" if e.values.is_empty() => {
                    return Err(format!("matchExpressions[{i}].values: required for operator {}", e.operator))
                }
                "In" => Req::In(e.key.clone(), e.values.clone()),
                "NotIn" => Req::NotIn(e.key.clone(), e.values.clone()),
                "Exists" | "DoesNotExist" if !e.values.is_empty() => {
                    return Err(format!("matchExpressions[{i}].values: must be empty for operator {}", e.operator))
                }
                "Exists" => Req::Exists(e.key.clone()),
                "DoesNotExist" => Req::DoesNotExist(e.key.clone()),
                o => return Err(format!("matchExpressions[{i}].operator: {o:?}: In, NotIn, Exists or DoesNotExist")),
            };
            reqs.push(r);
        }
        Ok(Self { reqs })
    }

    pub fn matches<L: LabelSet + ?Sized>(&self, labels: &L) -> bool {
        self.reqs.iter().all(|r| match r {
            Req::In(k, vs) => labels.label(k).is_some_and(|v| vs.iter().any(|x| x == v)),
            Req::NotIn(k, vs) => labels.label(k).is_none_or(|v| !vs.iter().any(|x| x == v)),
            Req::Exists(k) => labels.label(k).is_some(),
            Req::DoesNotExist(k) => labels.label(k).is_none(),
        })
    }
}

/// What a selector is matched against: a lookup of a label's value.
pub trait LabelSet {
    fn label(&self, key: &str) -> Option<&str>;
}

impl LabelSet for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl LabelSet for crate::cluster::Pairs {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key)
    }
}

/// MetalLB's rule for a list of node selectors: empty matches every node, else any one must match.
pub fn any_matches<L: LabelSet + ?Sized>(list: &[Selector], labels: &L) -> bool {
    list.is_empty() || list.iter().any(|s| s.matches(labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metallb::SelectorRequirement;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn expressions() {
        let req = |k: &str, op: &str, vs: &[&str]| SelectorRequirement {
            key: k.into(),
            operator: op.into(),
            values: vs.iter().map(|v| v.to_string()).collect(),
        };
        let s = Selector::new(&LabelSelector {
            match_labels: labels(&[("zone", "a")]),
            match_expressions: vec![
                req("rack", "In", &["1", "2"]),
                req("spare", "DoesNotExist", &[]),
                req("tier", "NotIn", &["edge"]),
            ],
        })
        .unwrap();
        assert!(s.matches(&labels(&[("zone", "a"), ("rack", "2")])));
        assert!(!s.matches(&labels(&[("zone", "b"), ("rack", "2")])));
        assert!(!s.matches(&labels(&[("zone", "a"), ("rack", "3")])));
        assert!(!s.matches(&labels(&[("zone", "a"), ("rack", "1"), ("spare", "")])));
        assert!(!s.matches(&labels(&[("zone", "a"), ("rack", "1"), ("tier", "edge")])));
        assert!(s.matches(&labels(&[("zone", "a"), ("rack", "1"), ("tier", "core")])));
        assert!(Selector::default().matches(&labels(&[])));
        assert!(Selector::new(&LabelSelector {
            match_expressions: vec![req("k", "Exists", &["x"])],
            ..Default::default()
        })
        .is_err());
        assert!(Selector::new(&LabelSelector { match_expressions: vec![req("k", "In", &[])], ..Default::default() })
            .is_err());
        assert!(Selector::new(&LabelSelector {
            match_expressions: vec![req("k", "Gt", &["1"])],
            ..Default::default()
        })
        .is_err());
        assert!(any_matches(&[], &labels(&[])));
    }
}
