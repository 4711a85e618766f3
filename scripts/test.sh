#!/usr/bin/env bash
# The one command that runs the whole test suite: installs the test dependencies, builds every target of
# the workspace (the end-to-end tests run the built speakerd/speakerctl binaries), runs all tests, and
# prints a summary. Exits non-zero on any failure. Needs root for the network-namespace tests (they skip
# without it locally, and fail in CI, where CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."

start=$(date +%s)
./scripts/install-test-deps.sh

echo "==> cargo build --workspace --all-targets"
cargo build --workspace --all-targets

echo "==> cargo test --workspace"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
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
binaries=$(grep -cE '^test result:' "$out" || true)
echo
echo "==> $binaries test result lines, $(( $(date +%s) - start )) s"
if [ "$status" -ne 0 ]; then
  grep -E '^test .* FAILED$' "$out" | sed 's/^/    /' || true
fi
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$passed" -eq 0 ]; then
  echo "FAILED (cargo test exit status $status)"
  echo "summary: $passed passed, $failed failed, $ignored skipped"
  exit 1
fi
echo "summary: $passed passed, $failed failed, $ignored skipped"
