//! What a skipped test is, decided in one place for every test crate of the workspace.
//!
//! A test that cannot run here (not root, a program missing) calls [`skip`] and returns. A skip is never
//! a pass:
//! * under CI ([`in_ci`]) [`skip`] panics, so the test fails and names what is missing;
//! * elsewhere it writes one line, `SKIPPED <test>: <why>`, straight to the process's standard error
//!   (not through `eprintln!`, which the test harness captures and throws away for tests that return),
//!   and appends the same line to the file named by `$SPEAKERD_SKIP_LOG` when that is set.
//!   `scripts/test.sh` sets it and reports the lines as skipped in its summary.
use std::io::Write;

/// The first word of every skip line.
pub const SKIP_MARK: &str = "SKIPPED";

/// The environment variable naming the file that collects skip lines.
pub const SKIP_LOG_VAR: &str = "SPEAKERD_SKIP_LOG";

/// True when `CI` is set to something other than empty, `0` or `false` (any case).
pub fn in_ci() -> bool {
    ci_value_means_ci(std::env::var("CI").ok().as_deref())
}

fn ci_value_means_ci(v: Option<&str>) -> bool {
    match v {
        None => false,
        Some(v) => !(v.is_empty() || v == "0" || v.eq_ignore_ascii_case("false")),
    }
}

/// The skip line for `test` and the reason `why`.
pub fn skip_line(test: &str, why: &str) -> String {
    format!("{SKIP_MARK} {test}: {why}")
}

/// Records that `test` cannot run here because of `why`; the caller returns right after.
/// Panics under CI, where a skip must fail the run.
pub fn skip(test: &str, why: &str) {
    if in_ci() {
        panic!("{test}: cannot run in CI: {why}");
    }
    let line = skip_line(test, why);
    let _ = writeln!(std::io::stderr().lock(), "{line}");
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR) {
        // One short write with O_APPEND: lines of tests running in parallel do not interleave.
        if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = f.write_all(format!("{line}\n").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_values() {
        for v in ["true", "1", "yes", "TRUE"] {
            assert!(ci_value_means_ci(Some(v)), "{v}");
        }
        for v in [None, Some(""), Some("0"), Some("false"), Some("False")] {
            assert!(!ci_value_means_ci(v), "{v:?}");
        }
    }

    #[test]
    fn skip_lines_start_with_the_mark() {
        assert_eq!(skip_line("t", "not root"), "SKIPPED t: not root");
    }
}
