//! The table and key: value block builders every command's output uses.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A hand-rolled table: columns separated by two spaces, padded to the widest cell, no trailing blanks.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Self { columns: columns.to_vec(), rows: Vec::new() }
    }

    /// Adds a row; missing cells are empty and extra cells are dropped.
    pub fn row(&mut self, mut cells: Vec<String>) {
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let width = |s: &str| s.chars().count();
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (h, _))| self.rows.iter().map(|r| width(&r[i])).fold(width(h), usize::max))
            .collect();
        let mut out = String::new();
        let header: Vec<String> = self.columns.iter().map(|(h, _)| h.to_string()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in cells.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = " ".repeat(widths[i] - width(cell));
                match self.columns[i].1 {
                    Align::Left => {
                        line.push_str(cell);
                        line.push_str(&pad);
                    }
                    Align::Right => {
                        line.push_str(&pad);
                        line.push_str(cell);
                    }
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `-` for an empty cell, so that every column of a table holds a word (for `awk` and people alike).
pub(super) fn cell(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

pub(super) fn list_cell(items: &[String]) -> String {
    cell(&items.join(","))
}

pub(super) fn opt_cell(v: Option<u32>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// Lines of `section` headings and indented `key: value` pairs whose values line up across the block.
#[derive(Debug, Default)]
pub(super) struct KvBlock {
    lines: Vec<(Option<String>, String)>,
}

impl KvBlock {
    pub(super) fn section(&mut self, title: &str) {
        self.lines.push((None, format!("{title}:")));
    }
    pub(super) fn kv(&mut self, key: &str, value: impl Into<String>) {
        self.lines.push((Some(key.to_string()), value.into()));
    }
    pub(super) fn render(&self) -> String {
        let width = self.lines.iter().filter_map(|(k, _)| k.as_ref()).map(|k| k.chars().count()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in &self.lines {
            match key {
                None => {
                    let _ = writeln!(out, "{value}");
                }
                Some(key) => {
                    let line = format!("  {:<w$}  {value}", format!("{key}:"), w = width + 1);
                    out.push_str(line.trim_end());
                    out.push('\n');
                }
            }
        }
        out
    }
}
