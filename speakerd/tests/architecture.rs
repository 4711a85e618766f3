//! The import rules of speakerd's modules, checked.
//!
//! The nodes are the top-level modules of `speakerd/src` and the sub-modules that the table in
//! docs/DESIGN.md ("Import rules") names as nodes of their own (`bgp::wire`: the pure cores that other
//! modules may use without using their parent). Every `crate::…` and `super::…` path in the code is
//! resolved to the node it names (the longest node name that prefixes it); an edge between two nodes must
//! be in the table, and every edge of the table must be used. A module may use its own sub-nodes; a
//! sub-node using its parent is an edge like any other. The table itself must have no cycle, and the
//! nodes whose reason starts with "pure" must not use tokio, sockets or the clock.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
const DESIGN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/DESIGN.md");

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

/// The module path of a file: `bgp/session/mod.rs` → `[bgp, session]`, `speaker.rs` → `[speaker]`,
/// `lib.rs` → `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut segs: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
    let last = segs.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !(stem == "mod" || (segs.is_empty() && (stem == "lib" || stem == "main"))) {
        segs.push(stem.to_string());
    }
    segs
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

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !is_ident(c)).unwrap_or(s.len());
    &s[..end]
}

/// Parses the rest of a path after `base::` (idents, `::`, `{…}` groups, `*`), adding every full path.
/// Returns how many bytes it read.
fn parse_tail(s: &str, base: &[String], out: &mut BTreeSet<Vec<String>>) -> usize {
    let mut path = base.to_vec();
    let mut i = 0;
    loop {
        let rest = &s[i..];
        let trimmed = rest.trim_start();
        i += rest.len() - trimmed.len();
        if let Some(group) = trimmed.strip_prefix('{') {
            i += 1;
            let mut j = 0;
            loop {
                let g = &group[j..];
                let t = g.trim_start();
                j += g.len() - t.len();
                if t.starts_with('}') {
                    j += 1;
                    break;
                }
                if t.is_empty() {
                    break;
                }
                if let Some(after_self) = t.strip_prefix("self").filter(|a| !a.starts_with(is_ident)) {
                    out.insert(path.clone());
                    j += t.len() - after_self.len();
                } else {
                    j += parse_tail(t, &path, out);
                }
                let t = group[j..].trim_start();
                j = group.len() - t.len();
                if let Some(t2) = t.strip_prefix(',') {
                    j = group.len() - t2.len();
                }
            }
            return i + j;
        }
        let id = ident_at(trimmed);
        if id.is_empty() {
            // `*` or the end of the path.
            out.insert(path);
            return i + trimmed.starts_with('*') as usize;
        }
        path.push(id.to_string());
        i += id.len();
        match s[i..].strip_prefix("::") {
            Some(_) => i += 2,
            None => {
                out.insert(path);
                return i;
            }
        }
    }
}

/// Every module path that `code` (the text of the file at `file_mod`) names through `crate::` or
/// `super::`, resolved to an absolute path; `super` counts inline `mod x { … }` blocks.
fn paths(code: &str, file_mod: &[String]) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut pending_mod: Option<String> = None;
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < code.len() {
        let c = bytes[i] as char;
        let boundary = i == 0 || !(is_ident(bytes[i - 1] as char) || bytes[i - 1] == b':');
        let rest = &code[i..];
        if c == '{' {
            depth += 1;
            if let Some(name) = pending_mod.take() {
                inline.push((name, depth));
            }
        } else if c == '}' {
            if inline.last().is_some_and(|(_, d)| *d == depth) {
                inline.pop();
            }
            depth = depth.saturating_sub(1);
        } else if c == ';' {
            pending_mod = None;
        } else if boundary && rest.starts_with("mod ") {
            let name = ident_at(rest[4..].trim_start());
            pending_mod = Some(name.to_string());
        } else if boundary && rest.starts_with("crate::") {
            i += "crate::".len();
            i += parse_tail(&code[i..], &[], &mut out);
            continue;
        } else if boundary && rest.starts_with("super::") {
            let mut here: Vec<String> = file_mod.to_vec();
            here.extend(inline.iter().map(|(n, _)| n.clone()));
            let mut j = i;
            while code[j..].starts_with("super::") {
                here.pop();
                j += "super::".len();
            }
            i = j + parse_tail(&code[j..], &here, &mut out);
            continue;
        }
        i += c.len_utf8();
    }
    // `crate::{self}` names the crate root, which is no module.
    out.retain(|p| !p.is_empty());
    out
}

/// The node a module path belongs to: the longest node name that prefixes it, else its top-level module.
fn node_of(path: &[String], nodes: &BTreeSet<String>) -> String {
    for n in (1..=path.len()).rev() {
        let name = path[..n].join("::");
        if nodes.contains(&name) {
            return name;
        }
    }
    path.first().cloned().unwrap_or_else(|| "lib".to_string())
}

/// `inner` is `outer` or one of its sub-nodes.
fn within(inner: &str, outer: &str) -> bool {
    inner == outer || inner.starts_with(&format!("{outer}::"))
}

struct Table {
    uses: BTreeMap<String, BTreeSet<String>>,
    why: BTreeMap<String, String>,
}

/// The table between the markers in docs/DESIGN.md: `| module | may use | why |`.
fn table() -> Table {
    let doc = std::fs::read_to_string(DESIGN).unwrap();
    let start = doc.find("<!-- import-rules:start -->").expect("docs/DESIGN.md has no import-rules table");
    let end = doc.find("<!-- import-rules:end -->").expect("docs/DESIGN.md: import-rules table not closed");
    let mut t = Table { uses: BTreeMap::new(), why: BTreeMap::new() };
    for line in doc[start..end].lines().filter(|l| l.starts_with('|')).skip(2) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let name = cells[0].trim_matches('`').to_string();
        let uses = cells[1]
            .split(',')
            .map(|s| s.trim().trim_matches('`').split_whitespace().next().unwrap_or("").to_string())
            .filter(|s| !s.is_empty() && s != "—")
            .collect();
        t.uses.insert(name.clone(), uses);
        t.why.insert(name, cells.get(2).copied().unwrap_or("").to_string());
    }
    t
}

fn sources() -> Vec<(String, Vec<String>, String)> {
    let mut files = Vec::new();
    rust_files(Path::new(SRC), &mut files);
    files
        .into_iter()
        .map(|f| {
            let rel = f.strip_prefix(SRC).unwrap().to_path_buf();
            (rel.display().to_string(), module_path(&rel), code_only(&std::fs::read_to_string(&f).unwrap()))
        })
        .collect()
}

/// Every edge `from → to` between nodes, with the files that make it.
fn edges(nodes: &BTreeSet<String>) -> BTreeMap<(String, String), Vec<String>> {
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for (rel, module, code) in sources() {
        let from = node_of(&module, nodes);
        for p in paths(&code, &module) {
            let to = node_of(&p, nodes);
            if !within(&to, &from) {
                let files = out.entry((from.clone(), to)).or_default();
                if !files.contains(&rel) {
                    files.push(rel.clone());
                }
            }
        }
    }
    out
}

#[test]
fn every_import_edge_is_allowed_by_the_design_table() {
    let t = table();
    let nodes: BTreeSet<String> = t.uses.keys().cloned().collect();
    let mut bad = Vec::new();
    for ((from, to), files) in edges(&nodes) {
        if !t.uses.get(&from).is_some_and(|u| u.contains(&to)) {
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
    let t = table();
    let nodes: BTreeSet<String> = t.uses.keys().cloned().collect();
    let have: BTreeSet<(String, String)> = edges(&nodes).into_keys().collect();
    let mut stale = Vec::new();
    for (from, uses) in &t.uses {
        for to in uses {
            if !have.contains(&(from.clone(), to.clone())) {
                stale.push(format!("{from} → {to}"));
            }
        }
    }
    assert!(stale.is_empty(), "edges in docs/DESIGN.md's import-rules table that no code uses: {stale:?}");
}

/// The first cycle of `graph` found by a depth-first search, as a list of nodes.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn dfs(
        n: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in graph.get(n).into_iter().flatten() {
            if let Some(c) = dfs(m, graph, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| dfs(n, graph, &mut Vec::new(), &mut done))
}

/// The table's edges, plus each module's use of its own sub-nodes.
fn table_graph(t: &Table) -> BTreeMap<String, BTreeSet<String>> {
    let mut g = t.uses.clone();
    for n in t.uses.keys() {
        if let Some((parent, _)) = n.rsplit_once("::") {
            g.entry(parent.to_string()).or_default().insert(n.clone());
        }
    }
    g
}

#[test]
fn the_allowed_graph_has_no_cycle() {
    let cycle = find_cycle(&table_graph(&table()));
    assert!(cycle.is_none(), "docs/DESIGN.md's import rules have a cycle: {}", cycle.unwrap().join(" → "));
}

#[test]
fn pure_nodes_use_no_tokio_sockets_or_clock() {
    let t = table();
    let nodes: BTreeSet<String> = t.uses.keys().cloned().collect();
    let pure: BTreeSet<&String> = t.why.iter().filter(|(_, w)| w.starts_with("pure")).map(|(n, _)| n).collect();
    assert!(!pure.is_empty(), "the table marks no node pure");
    let mut bad = Vec::new();
    for (rel, module, code) in sources() {
        if !pure.contains(&node_of(&module, &nodes)) {
            continue;
        }
        // Tests (an inline `#[cfg(test)]` module at the end of the file) may use a clock.
        let code = code.split("#[cfg(test)]").next().unwrap_or("");
        for word in ["tokio", "TcpStream", "TcpListener", "UdpSocket", "Instant::now", "SystemTime::now"] {
            if code.contains(word) {
                bad.push(format!("{rel}: {word}"));
            }
        }
    }
    assert!(bad.is_empty(), "pure nodes that do IO or read the clock: {bad:?}");
}

#[test]
fn the_parser_resolves_crate_super_and_groups_and_skips_comments_and_strings() {
    let code = code_only(
        "use crate::{bgp::wire::{Message, Open}, config, self};\nlet x = crate::l2::x(); // crate::api\n\
         let s = \"crate::metrics\";\nlet y = my_crate::events::X;\nuse super::export::Slot;\n\
         mod tests {\n    use super::*;\n    fn f() { let _ = super::super::rib_out::X; }\n}\nuse super::fsm;\n",
    );
    let got: BTreeSet<String> = paths(&code, &["bgp".into(), "session".into()]).iter().map(|p| p.join("::")).collect();
    let want: BTreeSet<String> = [
        "bgp::wire::Message",
        "bgp::wire::Open",
        "config",
        "l2::x",
        "bgp::export::Slot",
        "bgp::session",
        "bgp::rib_out::X",
        "bgp::fsm",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(got, want);
    let nodes: BTreeSet<String> = ["bgp", "bgp::wire", "config"].iter().map(|s| s.to_string()).collect();
    assert_eq!(node_of(&["bgp".into(), "wire".into(), "attr".into()], &nodes), "bgp::wire");
    assert_eq!(node_of(&["bgp".into(), "export".into()], &nodes), "bgp");
    assert_eq!(node_of(&["netif".into()], &nodes), "netif");
}

#[test]
fn a_cycle_is_found() {
    let g: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), ["b".to_string()].into()),
        ("b".to_string(), ["a::x".to_string()].into()),
        ("a::x".to_string(), BTreeSet::new()),
    ]
    .into();
    assert!(find_cycle(&g).is_none());
    let t = Table { uses: g.clone(), why: BTreeMap::new() };
    // a → b → a::x is fine; a::x → b closes a → a::x → b → a::x.
    let mut uses = t.uses;
    uses.get_mut("a::x").unwrap().insert("b".into());
    let cycle = find_cycle(&table_graph(&Table { uses, why: BTreeMap::new() })).unwrap();
    assert_eq!(cycle.first(), cycle.last());
}
