//! `x-kubernetes-validations` of CRD schemas, evaluated as kube-apiserver does on create and update:
//! each rule at a schema node is a CEL expression over `self` (the value at that node) and, for a
//! transition rule (one that names `oldSelf`), over the stored value at the same place. A rule runs only
//! where the object has a value; a transition rule only on an update whose old object has one.
//!
//! The CEL engine is `cel-interpreter`. Where its standard library differs from cel-go's, which the
//! API server uses, the cel-go meaning is installed here: `getSeconds()` and `getMilliseconds()` of a
//! duration are its whole length in that unit (cel-interpreter defines them on timestamps only).
use cel_interpreter::extractors::This;
use cel_interpreter::{Context, ExecutionError, Program, Value as Cel};
use serde_json::Value;

/// One failed rule: the field path (`spec.connectTime`), the schema type of the value and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub type_name: String,
    pub message: String,
}

/// Every violation of `schema`'s rules by `new` (with `old` the stored object on an update).
pub fn validate(schema: &Value, new: &Value, old: Option<&Value>) -> Vec<Violation> {
    let mut out = Vec::new();
    walk(schema, new, old, "", &mut out);
    out
}

fn walk(schema: &Value, new: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Violation>) {
    if let Some(rules) = schema.get("x-kubernetes-validations").and_then(Value::as_array) {
        for rule in rules {
            check_rule(schema, rule, new, old, path, out);
        }
    }
    match new {
        Value::Object(m) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties").filter(|v| v.is_object());
            for (k, v) in m {
                let Some(s) = props.and_then(|p| p.get(k)).or(extra) else { continue };
                let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                walk(s, v, old.and_then(|o| o.get(k)), &child, out);
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                // Old list items are not correlated (kube-apiserver does so only for map lists), so
                // transition rules below a list do not run.
                for (i, v) in items.iter().enumerate() {
                    walk(s, v, None, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn check_rule(schema: &Value, rule: &Value, new: &Value, old: Option<&Value>, path: &str, out: &mut Vec<Violation>) {
    let Some(text) = rule.get("rule").and_then(Value::as_str) else { return };
    let transition = text.contains("oldSelf");
    if transition && old.is_none() {
        return;
    }
    let field = rule.get("fieldPath").and_then(Value::as_str).map(|f| format!("{path}{f}")).unwrap_or_else(|| {
        if path.is_empty() {
            "<nil>".to_string()
        } else {
            path.to_string()
        }
    });
    let type_name = schema.get("type").and_then(Value::as_str).unwrap_or("object").to_string();
    let fail = |message: String| Violation { field: field.clone(), type_name: type_name.clone(), message };
    let message = || {
        rule.get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("failed rule: {text}"))
    };
    match evaluate(text, new, old) {
        Ok(Cel::Bool(true)) => {}
        Ok(Cel::Bool(false)) => out.push(fail(message())),
        Ok(other) => out.push(fail(format!("rule {text:?} gave {other:?}, not a bool"))),
        Err(e) => out.push(fail(format!("rule {text:?}: {e}"))),
    }
}

/// Evaluates one rule with `self` and (when given) `oldSelf` bound.
pub fn evaluate(rule: &str, this: &Value, old: Option<&Value>) -> Result<Cel, String> {
    let program = Program::compile(rule).map_err(|e| format!("compile: {e}"))?;
    let mut ctx = Context::default();
    ctx.add_function("getSeconds", get_seconds);
    ctx.add_function("getMilliseconds", get_milliseconds);
    ctx.add_variable("self", this.clone()).map_err(|e| e.to_string())?;
    if let Some(o) = old {
        ctx.add_variable("oldSelf", o.clone()).map_err(|e| e.to_string())?;
    }
    program.execute(&ctx).map_err(|e| e.to_string())
}

/// The whole length of a duration in milliseconds.
fn millis_of(this: &Cel, f: &str) -> Result<i64, ExecutionError> {
    match this {
        Cel::Duration(d) => Ok(d.num_milliseconds()),
        _ => Err(ExecutionError::function_error(f, "defined here on durations only")),
    }
}

fn get_seconds(This(this): This<Cel>) -> Result<Cel, ExecutionError> {
    Ok(Cel::Int(millis_of(&this, "getSeconds")? / 1000))
}

fn get_milliseconds(This(this): This<Cel>) -> Result<Cel, ExecutionError> {
    Ok(Cel::Int(millis_of(&this, "getMilliseconds")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_evaluate_with_cel_go_meanings() {
        let cases: &[(&str, Value, Option<Value>, bool)] = &[
            ("duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535", json!("10s"), None, true),
            ("duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535", json!("0s"), None, false),
            ("duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535", json!("2h"), None, true),
            ("duration(self).getSeconds() >= 1 && duration(self).getSeconds() <= 65535", json!("19h"), None, false),
            ("duration(self).getMilliseconds() % 1000 == 0", json!("5s"), None, true),
            ("duration(self).getMilliseconds() % 1000 == 0", json!("1500ms"), None, false),
            ("self == oldSelf", json!(true), Some(json!(true)), true),
            ("self == oldSelf", json!(true), Some(json!(false)), false),
            ("!has(self.a) || self.a.size() == 0", json!({}), None, true),
            ("!has(self.a) || self.a.size() == 0", json!({"a": []}), None, true),
            ("!has(self.a) || self.a.size() == 0", json!({"a": [1]}), None, false),
        ];
        for (rule, this, old, want) in cases {
            let got = evaluate(rule, this, old.as_ref());
            assert_eq!(got, Ok(Cel::Bool(*want)), "{rule} with self={this} oldSelf={old:?}");
        }
    }

    #[test]
    fn rules_run_where_the_value_is_and_transition_rules_only_on_update() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "t": {"type": "string", "x-kubernetes-validations": [{"rule": "duration(self).getSeconds() >= 1", "message": "too short"}]},
            "gr": {"type": "boolean", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "immutable"}]},
        }}}});
        assert!(validate(&schema, &json!({"spec": {}}), None).is_empty());
        assert!(validate(&schema, &json!({"spec": {"gr": true}}), None).is_empty());
        let v = validate(&schema, &json!({"spec": {"t": "0s"}}), None);
        assert_eq!(
            v,
            vec![Violation { field: "spec.t".into(), type_name: "string".into(), message: "too short".into() }]
        );
        let old = json!({"spec": {"gr": false}});
        let v = validate(&schema, &json!({"spec": {"gr": true}}), Some(&old));
        assert_eq!(v[0].field, "spec.gr");
        assert_eq!(v[0].message, "immutable");
        assert!(validate(&schema, &json!({"spec": {"gr": false}}), Some(&old)).is_empty());
    }
}
