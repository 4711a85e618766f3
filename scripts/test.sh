#!/usr/bin/env bash
# The one command that runs the whole test suite: installs the test dependencies, builds every target of
# the workspace (the end-to-end tests run the built speakerd/speakerctl binaries), runs all tests, and
# prints a summary. Exits non-zero on any failure. Needs root for the network-namespace tests.
#
# A test that cannot run here (not root, a program missing) is a skip, never a pass: it prints one line
# `SKIPPED <test>: <why>` (the test-skip crate) into $SPEAKERD_SKIP_LOG, and the summary counts those lines,
# with #[ignore]d tests, as skipped. Under CI (CI set and not empty/0/false) a skip fails the test itself,
# and any skip counted here fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
./scripts/install-test-deps.sh

echo "==> cargo build --workspace --all-targets"
cargo build --workspace --all-targets

out=$(mktemp)
skips=$(mktemp)
trap 'rm -f "$out" "$skips"' EXIT
export SPEAKERD_SKIP_LOG="$skips"
status=0

echo "==> lint: cargo fmt --check, cargo clippy --workspace --all-targets -- -D warnings"
lint_ok=1
lint_log=$(mktemp)
cargo fmt --check >"$lint_log" 2>&1 || { lint_ok=0; head -40 "$lint_log"; }
cargo clippy --workspace --all-targets --quiet -- -D warnings >"$lint_log" 2>&1 || { lint_ok=0; tail -40 "$lint_log"; }
rm -f "$lint_log"
if [ "$lint_ok" = 1 ]; then
  echo "test result: ok. 1 passed; 0 failed; 0 ignored (lint)" | tee -a "$out"
else
  echo "test result: FAILED. 0 passed; 1 failed; 0 ignored (lint)" | tee -a "$out"
  status=1
fi

echo "==> README commands (scripts/readme-commands.sh: the main job and the client lines, as written)"
set +e
./scripts/readme-commands.sh 2>&1 | tee -a "$out"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
set -e

echo "==> cargo test --workspace"
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee -a "$out"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1
set -e

echo "==> fuzz smoke (fuzz/smoke.sh: every decoder's fuzz target for a few seconds)"
set +e
./fuzz/smoke.sh 2>&1 | tee -a "$out"
fuzz_status=${PIPESTATUS[0]}
set -e
if [ "$fuzz_status" -eq 0 ]; then
  echo "test result: ok. 1 passed; 0 failed; 0 ignored (fuzz smoke)" >>"$out"
else
  echo "test result: FAILED. 0 passed; 1 failed; 0 ignored (fuzz smoke)" >>"$out"
  status=1
fi

sum() { grep -E '^test result:' "$out" | grep -oE "[0-9]+ $1" | awk '{s += $1} END {print s + 0}'; }
passed=$(sum passed) failed=$(sum failed) ignored=$(sum ignored)
# A skipped test returned early, so cargo counted it as passed: move it to skipped.
skipped_early=$(grep -c '^SKIPPED ' "$skips" || true)
passed=$(( passed - skipped_early )) skipped=$(( ignored + skipped_early ))
binaries=$(grep -cE '^test result:' "$out" || true)
echo
echo "==> $binaries test result lines, $(( $(date +%s) - start )) s"
if [ "$skipped" -gt 0 ]; then
  echo "skipped: $skipped_early returned early, $ignored #[ignore]d"
  sed 's/^/    /' "$skips"
fi
if [ "$status" -ne 0 ]; then
  grep -E '^test .* FAILED$|^readme-commands: FAILED' "$out" | sed 's/^/    /' || true
fi
ci=$(case "${CI:-}" in ""|0|[Ff][Aa][Ll][Ss][Ee]) echo no ;; *) echo yes ;; esac)
if [ "$ci" = yes ] && [ "$skipped" -gt 0 ]; then
  echo "FAILED: $skipped skipped under CI (CI=$CI): every test must run in CI"
  status=1
fi
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -le 0 ]; then
  echo "FAILED (exit status $status)"
  echo "summary: $passed passed, $failed failed, $skipped skipped"
  exit 1
fi
echo "summary: $passed passed, $failed failed, $skipped skipped"
