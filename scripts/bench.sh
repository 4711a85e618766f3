#!/usr/bin/env bash
# The benchmark command: speakerd, gobgpd and BIRD side by side as the sender, against the same BIRD
# receivers in network namespaces, every workload of docs/BENCHMARKS.md in one run. Builds in release
# mode, installs what the tests need, runs the full plan and regenerates docs/BENCHMARKS.md and
# docs/bench/*.svg. As root; takes about an hour on 2 cores. Run it on a quiet machine.
#   ./scripts/bench.sh                    # everything, rewrites docs/BENCHMARKS.md
#   BENCH_ONLY=conv,lat ./scripts/bench.sh # some sections; the report goes to /tmp/speakerd-bench-partial/
# Sections: conv (convergence, the reference sender, loads, memory), lat, start (and restart), scale, l2, k8s, ctl.
set -euo pipefail
cd "$(dirname "$0")/.."
# the report names the commit it measured; uncommitted changes make it say "-dirty"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  echo "bench: the work tree has uncommitted changes; the report will name the commit as -dirty" >&2
fi
./scripts/install-test-deps.sh
cargo build --release --workspace --all-targets
BENCH=full cargo test --release --test bench -- --nocapture
