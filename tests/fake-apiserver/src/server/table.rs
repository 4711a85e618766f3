//! kubectl's Table output (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`):
//! the Name column, the kind's columns (Services' Type, Cluster-IP,
//! External-IP and Port(s), or a CRD's additionalPrinterColumns evaluated with
//! a small JSONPath), then Age as kubectl prints it.

use super::partial_meta;
use crate::resources::ResourceDef;
use crate::status::parse_rfc3339;
use serde_json::{json, Value};
use std::time::SystemTime;

/// `kubectl`-style age (`45s`, `3m20s`, `5h`, `2d3h`).
pub fn human_age(created: &str) -> String {
    let Some(c) = parse_rfc3339(created) else { return "<unknown>".into() };
    let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let s = now - c;
    if s < -1 {
        return "<invalid>".into();
    }
    let s = s.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 192 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 730 {
        format!("{d}d")
    } else {
        format!("{}y{}d", d / 365, d % 365)
    }
}

/// Evaluates a simple JSONPath (`.spec.a.b`, `.status.x[0].y`, `.spec.list[*].f`).
fn json_path(obj: &Value, path: &str) -> Vec<Value> {
    let mut cur = vec![obj.clone()];
    let path = path.trim().trim_start_matches('{').trim_end_matches('}').trim_start_matches('.');
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (field, idx) = match part.split_once('[') {
            Some((f, i)) => (f, Some(i.trim_end_matches(']'))),
            None => (part, None),
        };
        let mut next = Vec::new();
        for c in &cur {
            let v = if field.is_empty() { Some(c) } else { c.get(field) };
            let Some(v) = v else { continue };
            match idx {
                None => next.push(v.clone()),
                Some("*") => next.extend(v.as_array().cloned().unwrap_or_default()),
                Some(i) => {
                    if let (Ok(i), Some(a)) = (i.parse::<usize>(), v.as_array()) {
                        if let Some(x) = a.get(i) {
                            next.push(x.clone());
                        }
                    }
                }
            }
        }
        cur = next;
    }
    cur
}

fn cell_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn service_cells(o: &Value) -> Vec<Value> {
    let spec = &o["spec"];
    let type_ = spec["type"].as_str().unwrap_or("ClusterIP");
    let cluster_ip = spec["clusterIP"].as_str().filter(|s| !s.is_empty()).unwrap_or("<none>");
    let mut ext: Vec<String> = o
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|i| i.get("ip").or(i.get("hostname")).and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(e) = spec["externalIPs"].as_array() {
        ext.extend(e.iter().filter_map(|x| x.as_str().map(str::to_string)));
    }
    let external = if !ext.is_empty() {
        ext.join(",")
    } else if type_ == "LoadBalancer" {
        "<pending>".into()
    } else if type_ == "ExternalName" {
        spec["externalName"].as_str().unwrap_or("<none>").to_string()
    } else {
        "<none>".into()
    };
    let ports: Vec<String> = spec["ports"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let proto = p["protocol"].as_str().unwrap_or("TCP");
                    match p.get("nodePort") {
                        Some(np) => format!("{}:{}/{}", p["port"], np, proto),
                        None => format!("{}/{}", p["port"], proto),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let ports = if ports.is_empty() { "<none>".to_string() } else { ports.join(",") };
    vec![json!(type_), json!(cluster_ip), json!(external), json!(ports)]
}

fn col(name: &str, type_: &str, format: &str, desc: &str, priority: i64) -> Value {
    json!({"name": name, "type": type_, "format": format, "description": desc, "priority": priority})
}

/// A meta.k8s.io/v1 Table: Name, the kind's columns (Services' or a CRD's
/// additionalPrinterColumns), Age.
pub(super) fn table_of(def: &ResourceDef, objs: &[Value], list_meta: Value, include: &str) -> Value {
    let mut cols = vec![col("Name", "string", "name", "Name must be unique within a namespace.", 0)];
    let is_svc = def.group.is_empty() && def.plural == "services";
    if is_svc {
        cols.push(col("Type", "string", "", "The type of the service.", 0));
        cols.push(col("Cluster-IP", "string", "", "The cluster IP of the service.", 0));
        cols.push(col("External-IP", "string", "", "The external IPs of the service.", 0));
        cols.push(col("Port(s)", "string", "", "The ports of the service.", 0));
    }
    let custom_age = def.printer_columns.iter().any(|c| c.json_path.trim() == ".metadata.creationTimestamp");
    for c in &def.printer_columns {
        cols.push(col(&c.name, &c.type_, &c.format, &c.description, c.priority));
    }
    if !custom_age {
        cols.push(col(
            "Age",
            "string",
            "",
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
            0,
        ));
    }
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut cells = vec![json!(o["metadata"]["name"].as_str().unwrap_or_default())];
            if is_svc {
                cells.extend(service_cells(o));
            }
            for c in &def.printer_columns {
                let vals = json_path(o, &c.json_path);
                let cell = if c.type_ == "date" {
                    vals.first().and_then(Value::as_str).map(human_age).map(Value::from).unwrap_or(Value::Null)
                } else if vals.is_empty() {
                    Value::Null
                } else if vals.len() == 1 && c.type_ != "string" {
                    vals[0].clone()
                } else {
                    json!(vals.iter().map(cell_string).collect::<Vec<_>>().join(","))
                };
                cells.push(cell);
            }
            if !custom_age {
                cells.push(json!(human_age(o["metadata"]["creationTimestamp"].as_str().unwrap_or_default())));
            }
            let mut row = json!({"cells": cells});
            match include {
                "None" => {}
                "Object" => row["object"] = o.clone(),
                _ => row["object"] = partial_meta(o),
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": cols, "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::rfc3339;
    use std::time::Duration;

    #[test]
    fn json_paths() {
        let o = json!({"spec": {"addresses": ["a", "b"], "peers": [{"ip": "1"}, {"ip": "2"}]}});
        assert_eq!(json_path(&o, ".spec.addresses"), vec![json!(["a", "b"])]);
        assert_eq!(json_path(&o, ".spec.peers[*].ip"), vec![json!("1"), json!("2")]);
        assert_eq!(json_path(&o, ".spec.peers[1].ip"), vec![json!("2")]);
        assert!(json_path(&o, ".spec.nope").is_empty());
    }

    #[test]
    fn ages_print_as_kubectl_prints_them() {
        // Ages chosen so that a second passing during the test does not change the output.
        let cases = [
            (600, "10m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 30 * 60, "5h30m"),
            (20 * 3600, "20h"),
            (2 * 86400 + 3 * 3600, "2d3h"),
            (10 * 86400, "10d"),
            (800 * 86400, "2y70d"),
        ];
        for (secs, want) in cases {
            let created = rfc3339(SystemTime::now() - Duration::from_secs(secs));
            assert_eq!(human_age(&created), want, "{secs}s");
        }
        assert_eq!(human_age("not a time"), "<unknown>");
        assert_eq!(human_age(&rfc3339(SystemTime::now() + Duration::from_secs(3600))), "<invalid>");
    }

    #[test]
    fn service_columns() {
        // (Service, [Type, Cluster-IP, External-IP, Port(s)])
        let cases = [
            (
                json!({"spec": {"clusterIP": "10.96.0.1", "ports": [{"port": 80, "protocol": "TCP"}]}}),
                ["ClusterIP", "10.96.0.1", "<none>", "80/TCP"],
            ),
            (
                json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.2", "ports": [{"port": 80, "nodePort": 30001, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}}),
                ["LoadBalancer", "10.96.0.2", "<pending>", "80:30001/TCP,53/UDP"],
            ),
            (
                json!({"spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.3", "externalIPs": ["198.51.100.1"]},
                       "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "lb.example"}]}}}),
                ["LoadBalancer", "10.96.0.3", "192.0.2.1,lb.example,198.51.100.1", "<none>"],
            ),
            (
                json!({"spec": {"type": "ExternalName", "externalName": "db.example"}}),
                ["ExternalName", "<none>", "db.example", "<none>"],
            ),
        ];
        for (svc, want) in cases {
            assert_eq!(service_cells(&svc), want.map(Value::from).to_vec(), "{svc}");
        }
    }
}
