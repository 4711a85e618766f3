//! `meta/v1 Status` errors, shaped like the real API server's.

use serde_json::{json, Value};
use std::fmt;

/// An API error: the HTTP code and the `Status` object the server sends with it.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    /// The full `Status` object (kind Status, apiVersion v1, status Failure).
    pub status: Value,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>, details: Option<Value>) -> ApiError {
        let message = message.into();
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        });
        if let Some(d) = details {
            status["details"] = d;
        }
        if reason.is_empty() {
            status.as_object_mut().unwrap().remove("reason");
        }
        ApiError { code, reason: reason.to_string(), message, status }
    }

    fn details(name: &str, group: &str, kind: &str) -> Value {
        let mut d = json!({"name": name, "kind": kind});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        d
    }

    /// `services "x" not found`
    pub fn not_found(group: &str, plural: &str, name: &str) -> ApiError {
        let q = qualified(group, plural);
        ApiError::new(404, "NotFound", format!("{q} \"{name}\" not found"), Some(Self::details(name, group, plural)))
    }

    /// `services "x" already exists`
    pub fn already_exists(group: &str, plural: &str, name: &str) -> ApiError {
        let q = qualified(group, plural);
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{q} \"{name}\" already exists"),
            Some(Self::details(name, group, plural)),
        )
    }

    /// Optimistic-concurrency failure.
    pub fn conflict(group: &str, plural: &str, name: &str) -> ApiError {
        let q = qualified(group, plural);
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {q} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
            ),
            Some(Self::details(name, group, plural)),
        )
    }

    /// 422 Invalid with one field cause.
    pub fn invalid(group: &str, kind: &str, name: &str, field: &str, cause_type: &str, msg: &str) -> ApiError {
        let gk = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let mut d = Self::details(name, group, kind);
        d["causes"] = json!([{"reason": cause_type, "message": msg, "field": field}]);
        ApiError::new(422, "Invalid", format!("{gk} \"{name}\" is invalid: {field}: {msg}"), Some(d))
    }

    /// 422 Invalid for failed `x-kubernetes-validations` rules, worded as kube-apiserver words them:
    /// `<field>: Invalid value: "<type>": <message>`, several in brackets.
    pub fn invalid_fields(group: &str, kind: &str, name: &str, violations: &[crate::cel::Violation]) -> ApiError {
        let gk = if group.is_empty() { kind.to_string() } else { format!("{kind}.{group}") };
        let mut d = Self::details(name, group, kind);
        let one = |v: &crate::cel::Violation| format!("Invalid value: \"{}\": {}", v.type_name, v.message);
        d["causes"] = json!(violations
            .iter()
            .map(|v| json!({"reason": "FieldValueInvalid", "message": one(v), "field": v.field}))
            .collect::<Vec<_>>());
        let all: Vec<String> = violations.iter().map(|v| format!("{}: {}", v.field, one(v))).collect();
        let list = if all.len() == 1 { all[0].clone() } else { format!("[{}]", all.join(", ")) };
        ApiError::new(422, "Invalid", format!("{gk} \"{name}\" is invalid: {list}"), Some(d))
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message, None)
    }

    /// 410 Gone for a too old resourceVersion (list or watch).
    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message, None)
    }

    pub fn resource_not_found() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource", Some(json!({})))
    }

    pub fn method_not_allowed(method: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
            Some(json!({})),
        )
    }

    pub fn unsupported_media_type(ct: &str, patch: bool) -> ApiError {
        let accepted = if patch {
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json"
        } else {
            "application/json, application/yaml"
        };
        ApiError::new(415, "UnsupportedMediaType", format!("the body of the request was in an unknown format - accepted media types include: {accepted} (fake-apiserver got {ct:?})"), None)
    }

    pub fn internal(msg: &str) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {msg}"),
            Some(json!({"causes": [{"message": msg}]})),
        )
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized", None)
    }
}

fn qualified(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_string()
    } else {
        format!("{plural}.{group}")
    }
}

/// The success Status returned by some deletes.
pub fn success_status(group: &str, plural: &str, name: &str, uid: &str) -> Value {
    let mut d = json!({"name": name, "kind": plural, "uid": uid});
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
}

/// RFC 3339 UTC timestamp with second precision (`metav1.Time`).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    fmt_time(d.as_secs() as i64, None)
}

fn fmt_time(secs: i64, micros: Option<u32>) -> String {
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // civil-from-days (proleptic Gregorian)
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    let base = format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", sod / 3600, sod % 3600 / 60, sod % 60);
    match micros {
        Some(us) => format!("{base}.{us:06}Z"),
        None => format!("{base}Z"),
    }
}

/// Parses the `YYYY-MM-DDTHH:MM:SS...Z` timestamps this server writes (seconds since epoch).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (hh, mm, ss) = (n(11..13)?, n(14..16)?, n(17..19)?);
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86400 + hh * 3600 + mm * 60 + ss)
}

/// A random RFC 4122 version-4 UID.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    for x in b.iter_mut() {
        *x = fastrand::u8(..);
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_roundtrip() {
        assert_eq!(fmt_time(0, None), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(951_782_400, None), "2000-02-29T00:00:00Z");
        assert_eq!(fmt_time(1_700_000_000, Some(5)), "2023-11-14T22:13:20.000005Z");
        for s in [0i64, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&fmt_time(s, None)), Some(s));
        }
    }

    #[test]
    fn uid_shape() {
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, new_uid());
    }

    #[test]
    fn status_shapes() {
        let e = ApiError::not_found("metallb.io", "ipaddresspools", "p");
        assert_eq!(e.status["message"], "ipaddresspools.metallb.io \"p\" not found");
        assert_eq!(e.status["details"]["group"], "metallb.io");
        assert_eq!(e.status["code"], 404);
        let e = ApiError::conflict("", "services", "s");
        assert_eq!(e.code, 409);
        assert_eq!(e.status["reason"], "Conflict");
    }
}
