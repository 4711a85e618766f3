//! The import rules of speakerd's modules, checked: every `crate::…` path in `speakerd/src` names a
//! module edge, and every edge must be allowed by the table in docs/DESIGN.md ("Import rules"). A new
//! edge fails this test until the table says it is allowed, so no circle comes back unnoticed. Edges
//! inside one top-level module are free. Paths across top-level modules are written `crate::…` (a
//! `super::super::…` that climbs out of a module is not seen here; the one that did is rewritten).
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
const DESIGN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/DESIGN.md");

/// Top-level module of a file under src/: `bgp/session.rs` → `bgp`, `speaker.rs` → `speaker`.
fn module_of(rel: &Path) -> String {
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Text without `//` comments (doc comments name modules in prose) and without string literals.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if !in_str && c == '/' && chars.peek() == Some(&'/') {
                break;
            }
            if c == '"' && prev != '\\' && prev != '\'' {
                in_str = !in_str;
            } else if !in_str {
                out.push(c);
            }
            prev = c;
        }
        out.push('\n');
    }
    out
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules that `code` names through the crate root: `crate::bgp::…`, `crate::{bgp, l2}`.
fn targets(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for root in ["crate::"] {
        let mut rest = code;
        while let Some(i) = rest.find(root) {
            let before = rest[..i].chars().next_back();
            rest = &rest[i + root.len()..];
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let after = rest.trim_start();
            if let Some(group) = after.strip_prefix('{') {
                // Top-level names of the group: after `{` and after each comma at depth 0.
                let mut d = 0;
                let mut start = true;
                for (j, c) in group.char_indices() {
                    match c {
                        '{' => d += 1,
                        '}' if d == 0 => break,
                        '}' => d -= 1,
                        ',' if d == 0 => start = true,
                        c if start && !c.is_whitespace() => {
                            start = false;
                            let id = ident_at(&group[j..]);
                            if !id.is_empty() && id != "self" {
                                out.insert(id.to_string());
                            }
                        }
                        _ => {}
                    }
                }
            } else {
                let id = ident_at(after);
                if !id.is_empty() {
                    out.insert(id.to_string());
                }
            }
        }
    }
    out
}

/// Every edge `from → to` between different top-level modules, with the files that make it.
fn edges() -> BTreeMap<(String, String), Vec<String>> {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for f in files {
        let rel = f.strip_prefix(SRC).unwrap().to_path_buf();
        let from = module_of(&rel);
        let code = code_only(&std::fs::read_to_string(&f).unwrap());
        for to in targets(&code) {
            if to != from {
                out.entry((from.clone(), to)).or_default().push(rel.display().to_string());
            }
        }
    }
    out
}

/// The table between the markers in docs/DESIGN.md: `| module | may use |`.
fn allowed() -> BTreeMap<String, BTreeSet<String>> {
    let doc = std::fs::read_to_string(DESIGN).unwrap();
    let start = doc.find("<!-- import-rules:start -->").expect("docs/DESIGN.md has no import-rules table");
    let end = doc.find("<!-- import-rules:end -->").expect("docs/DESIGN.md: import-rules table not closed");
    let mut out = BTreeMap::new();
    for line in doc[start..end].lines().filter(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let uses = cells[1]
            .split(',')
            .map(|s| s.trim().trim_matches('`').split_whitespace().next().unwrap_or("").to_string())
            .filter(|s| !s.is_empty() && s != "—")
            .collect();
        out.insert(cells[0].trim_matches('`').to_string(), uses);
    }
    out
}

#[test]
fn every_import_edge_is_allowed_by_the_design_table() {
    let table = allowed();
    let mut bad = Vec::new();
    for ((from, to), files) in edges() {
        if !table.get(&from).is_some_and(|u| u.contains(&to)) {
            bad.push(format!("{from} → {to} (in {})", files.join(", ")));
        }
    }
    assert!(
        bad.is_empty(),
        "import edges that docs/DESIGN.md's import-rules table does not allow:\n  {}\n\
         Remove the import, or (if the design really changes) add the edge to the table with its reason.",
        bad.join("\n  ")
    );
}

#[test]
fn the_design_table_lists_no_edge_that_is_gone() {
    // A table that allows more than the code does hides the next circle: keep it exact.
    let have: BTreeSet<(String, String)> = edges().into_keys().collect();
    let mut stale = Vec::new();
    for (from, uses) in allowed() {
        for to in uses {
            if !have.contains(&(from.clone(), to.clone())) {
                stale.push(format!("{from} → {to}"));
            }
        }
    }
    assert!(stale.is_empty(), "edges in docs/DESIGN.md's import-rules table that no code uses: {stale:?}");
}

#[test]
fn the_parser_sees_grouped_paths_and_skips_comments_and_strings() {
    let code = code_only("use crate::{bgp::wire::{Message, Open}, config, self};\nlet x = crate::l2::x(); // crate::api\nlet s = \"crate::metrics\";\nlet y = my_crate::events::X;\n");
    assert_eq!(targets(&code), ["bgp", "config", "l2"].iter().map(|s| s.to_string()).collect());
}
