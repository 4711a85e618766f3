#!/usr/bin/env bash
# The fuzz smoke of the test suite: every target for SECONDS (default 7) from the seed corpus; any crash,
# timeout or leak fails. Needs cargo-fuzz (scripts/install-test-deps.sh installs it); nightly features
# come from RUSTC_BOOTSTRAP=1, as only the stable toolchain exists.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-7}
./seed-corpus.sh >/dev/null
export RUSTC_BOOTSTRAP=1
cargo fuzz build 2>&1 | tail -1
targets=$(cargo fuzz list)
if [ -z "$targets" ]; then
  echo "fuzz: FAILED: cargo fuzz list found no target"; exit 1
fi
failed=0 ran=0
for t in $targets; do
  ran=$((ran + 1))
  if cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 >"/tmp/fuzz-$t.log" 2>&1; then
    echo "fuzz $t: ok ($(grep -oE 'Done [0-9]+ runs' "/tmp/fuzz-$t.log" | tail -1))"
  else
    echo "fuzz $t: FAILED"; tail -30 "/tmp/fuzz-$t.log"; failed=1
  fi
done
echo "fuzz: $ran targets run"
exit $failed
