//! Label and field selectors, parsed the way the API server parses the
//! `labelSelector` / `fieldSelector` query parameters.

use serde_json::Value;
use std::collections::BTreeMap;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelReq {
    /// `key=value` or `key==value`
    Eq(String, String),
    /// `key!=value` (also matches objects without the key)
    NotEq(String, String),
    /// `key in (a,b)`
    In(String, Vec<String>),
    /// `key notin (a,b)` (also matches objects without the key)
    NotIn(String, Vec<String>),
    /// `key`
    Exists(String),
    /// `!key`
    DoesNotExist(String),
    /// `key>N`
    Gt(String, i64),
    /// `key<N`
    Lt(String, i64),
}

/// A parsed label selector: all requirements must hold. Empty matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub reqs: Vec<LabelReq>,
}

impl LabelSelector {
    /// Parses the string form (`a=b,c!=d,e in (f,g),!h`).
    pub fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut p = Lexer { s: s.as_bytes(), i: 0 };
        let mut reqs = Vec::new();
        p.skip_ws();
        if p.eof() {
            return Ok(LabelSelector { reqs });
        }
        loop {
            reqs.push(p.requirement()?);
            p.skip_ws();
            if p.eof() {
                break;
            }
            if !p.eat(",") {
                return Err(format!("unable to parse requirement: found '{}', expected: ','", p.rest()));
            }
        }
        Ok(LabelSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.reqs.iter().all(|r| match r {
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEq(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|x| vs.contains(x)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|x| !vs.contains(x)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::DoesNotExist(k) => !labels.contains_key(k),
            LabelReq::Gt(k, n) => labels.get(k).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x > *n),
            LabelReq::Lt(k, n) => labels.get(k).and_then(|x| x.parse::<i64>().ok()).is_some_and(|x| x < *n),
        })
    }

    /// Matches the labels of a JSON object (`metadata.labels`).
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.reqs.is_empty() {
            return true;
        }
        self.matches(&labels_of(obj))
    }
}

pub(crate) fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string())).collect())
        .unwrap_or_default()
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_ident_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'/')
}

impl Lexer<'_> {
    fn eof(&self) -> bool {
        self.i >= self.s.len()
    }
    fn rest(&self) -> String {
        String::from_utf8_lossy(&self.s[self.i.min(self.s.len())..]).into_owned()
    }
    fn skip_ws(&mut self) {
        while !self.eof() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }
    fn eat(&mut self, tok: &str) -> bool {
        if self.s[self.i..].starts_with(tok.as_bytes()) {
            self.i += tok.len();
            true
        } else {
            false
        }
    }
    /// `in` / `notin` keywords must be followed by whitespace or '('.
    fn eat_word(&mut self, w: &str) -> bool {
        let save = self.i;
        if self.eat(w) && (self.eof() || self.s[self.i].is_ascii_whitespace() || self.s[self.i] == b'(') {
            return true;
        }
        self.i = save;
        false
    }
    fn ident(&mut self) -> String {
        let start = self.i;
        while !self.eof() && is_ident_byte(self.s[self.i]) {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    fn key(&mut self) -> Result<String, String> {
        self.skip_ws();
        let k = self.ident();
        validate_key(&k)?;
        Ok(k)
    }
    fn value(&mut self) -> Result<String, String> {
        self.skip_ws();
        let v = self.ident();
        validate_value(&v)?;
        Ok(v)
    }
    fn set(&mut self) -> Result<Vec<String>, String> {
        self.skip_ws();
        if !self.eat("(") {
            return Err(format!("unable to parse requirement: found '{}', expected: '('", self.rest()));
        }
        let mut vals = Vec::new();
        loop {
            self.skip_ws();
            if self.eat(")") {
                break;
            }
            vals.push(self.value()?);
            self.skip_ws();
            if self.eat(",") {
                continue;
            }
            if self.eat(")") {
                break;
            }
            return Err(format!("unable to parse requirement: found '{}', expected: ',', ')'", self.rest()));
        }
        Ok(vals)
    }
    fn requirement(&mut self) -> Result<LabelReq, String> {
        self.skip_ws();
        if self.eat("!") {
            return Ok(LabelReq::DoesNotExist(self.key()?));
        }
        let key = self.key()?;
        self.skip_ws();
        if self.eof() || self.s[self.i] == b',' {
            return Ok(LabelReq::Exists(key));
        }
        if self.eat("==") || self.eat("=") {
            return Ok(LabelReq::Eq(key, self.value()?));
        }
        if self.eat("!=") {
            return Ok(LabelReq::NotEq(key, self.value()?));
        }
        if self.eat(">") || self.eat("<") {
            let gt = self.s[self.i - 1] == b'>';
            let v = self.value()?;
            let n: i64 = v.parse().map_err(|_| {
                format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {v}")
            })?;
            return Ok(if gt { LabelReq::Gt(key, n) } else { LabelReq::Lt(key, n) });
        }
        if self.eat_word("notin") {
            let set = self.set()?;
            return Ok(LabelReq::NotIn(key, set));
        }
        if self.eat_word("in") {
            let set = self.set()?;
            if set.is_empty() {
                return Err(format!("unable to parse requirement: values: Invalid value: []: for 'in', 'notin' operators, values set can't be empty (key {key})"));
            }
            return Ok(LabelReq::In(key, set));
        }
        Err(format!("unable to parse requirement: found '{}', expected: in, notin, =, ==, !=, gt, lt", self.rest()))
    }
}

fn validate_key(k: &str) -> Result<(), String> {
    let bad = || {
        format!("unable to parse requirement: key: Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character")
    };
    if k.is_empty() {
        return Err(bad());
    }
    let name = match k.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 || name.contains('/') {
                return Err(bad());
            }
            name
        }
        None => k,
    };
    if name.is_empty() || name.len() > 63 {
        return Err(bad());
    }
    let b = name.as_bytes();
    if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err(bad());
    }
    Ok(())
}

fn validate_value(v: &str) -> Result<(), String> {
    if v.is_empty() {
        return Ok(());
    }
    let b = v.as_bytes();
    if v.len() > 63 || v.contains('/') || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Err(format!("unable to parse requirement: values[0]: Invalid value: \"{v}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"));
    }
    Ok(())
}

/// One term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldReq {
    pub field: String,
    pub equal: bool,
    pub value: String,
}

/// A parsed field selector (`metadata.name=x,spec.nodeName!=y`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub reqs: Vec<FieldReq>,
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<FieldSelector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector { reqs });
        }
        for term in split_unescaped(s, ',') {
            let (field, equal, value) = if let Some(i) = find_unescaped(&term, "!=") {
                (&term[..i], false, &term[i + 2..])
            } else if let Some(i) = find_unescaped(&term, "==") {
                (&term[..i], true, &term[i + 2..])
            } else if let Some(i) = find_unescaped(&term, "=") {
                (&term[..i], true, &term[i + 1..])
            } else {
                return Err(format!("invalid selector: '{s}'; can't understand '{term}'"));
            };
            reqs.push(FieldReq { field: field.trim().to_string(), equal, value: unescape(value) });
        }
        Ok(FieldSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// Checks that every field is in `supported`; returns the first unsupported one.
    pub fn unsupported<'a>(&'a self, supported: &dyn Fn(&str) -> bool) -> Option<&'a str> {
        self.reqs.iter().map(|r| r.field.as_str()).find(|f| !supported(f))
    }

    /// Matches an object; a missing field has the value "".
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|r| {
            let actual = field_value(obj, &r.field);
            (actual == r.value) == r.equal
        })
    }
}

/// The string value of a dotted field path, as the API server's field set shows it.
pub(crate) fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            cur.push('\\');
            cur.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else if c == sep {
            out.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

fn find_unescaped(s: &str, pat: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i..].starts_with(pat.as_bytes()) {
            return Some(i);
        }
        i += 1;
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut esc = false;
    for c in s.chars() {
        if esc {
            out.push(c);
            esc = false;
        } else if c == '\\' {
            esc = true;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn parses_all_operators() {
        let s = LabelSelector::parse("a=1, b==2,c!=3,d in (x, y),e notin (z),f,!g,h>5,i<7").unwrap();
        assert_eq!(
            s.reqs,
            vec![
                LabelReq::Eq("a".into(), "1".into()),
                LabelReq::Eq("b".into(), "2".into()),
                LabelReq::NotEq("c".into(), "3".into()),
                LabelReq::In("d".into(), vec!["x".into(), "y".into()]),
                LabelReq::NotIn("e".into(), vec!["z".into()]),
                LabelReq::Exists("f".into()),
                LabelReq::DoesNotExist("g".into()),
                LabelReq::Gt("h".into(), 5),
                LabelReq::Lt("i".into(), 7),
            ]
        );
    }

    #[test]
    fn prefixed_keys_and_empty() {
        let s = LabelSelector::parse("app.kubernetes.io/name=metallb").unwrap();
        assert!(s.matches(&labels(&[("app.kubernetes.io/name", "metallb")])));
        assert!(!s.matches(&labels(&[("name", "metallb")])));
        assert!(LabelSelector::parse("").unwrap().is_empty());
        assert!(LabelSelector::parse("  ").unwrap().matches(&labels(&[])));
        // empty value is allowed
        let e = LabelSelector::parse("a=").unwrap();
        assert!(e.matches(&labels(&[("a", "")])));
    }

    #[test]
    fn matching_semantics() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "10")]);
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&l);
        assert!(m("app=web"));
        assert!(!m("app=db"));
        assert!(m("app!=db"));
        assert!(m("missing!=x"), "!= matches objects without the key");
        assert!(m("app in (web,db)"));
        assert!(!m("app in (db)"));
        assert!(m("app notin (db)"));
        assert!(m("missing notin (db)"));
        assert!(!m("missing in (db)"));
        assert!(m("app,tier"));
        assert!(!m("app,!tier"));
        assert!(m("!missing"));
        assert!(m("n>9") && !m("n>10") && m("n<11"));
        assert!(m("app=web,tier in (front)"));
        assert!(!m("app=web,tier in (back)"));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["a=b=c", "a in b", "a in (", "=b", "a,,b", "a in ()", "-a=b", "a>x", "a b"] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn field_selectors() {
        let obj = json!({"metadata": {"name": "n1", "namespace": "ns"}, "spec": {"nodeName": "node-a", "unschedulable": true}});
        let m = |s: &str| FieldSelector::parse(s).unwrap().matches_object(&obj);
        assert!(m("metadata.name=n1"));
        assert!(m("metadata.name==n1,metadata.namespace=ns"));
        assert!(!m("metadata.name!=n1"));
        assert!(m("spec.nodeName=node-a"));
        assert!(m("spec.missing="));
        assert!(m("spec.unschedulable=true"));
        assert!(m(""));
        assert!(FieldSelector::parse("nonsense").is_err());
        let esc = FieldSelector::parse(r"metadata.name=a\,b").unwrap();
        assert_eq!(esc.reqs[0].value, "a,b");
        let sel = FieldSelector::parse("metadata.name=x,spec.foo=y").unwrap();
        assert_eq!(sel.unsupported(&|f| f.starts_with("metadata.")), Some("spec.foo"));
    }
}
