#!/usr/bin/env bash
# A long fuzz campaign measured in CPU time, not wall time: runs each TARGET from the built binary
# (no rebuild, so editing sources meanwhile is harmless) in chunks of CHUNK seconds until the fuzzer
# processes have used CPU_SECS of CPU. The corpus grows across chunks. A crash, a timeout (10 s per
# input) or more than 2 GiB of memory stops the target and leaves the input in artifacts/.
# While the file /tmp/fuzz-campaign.pause exists, it waits between chunks (for benchmarks). Never
# SIGSTOP a fuzzer instead: libFuzzer's watchdog counts the stopped time and reports a false timeout.
#   fuzz/campaign.sh 1800 gossip bgp_open     # 30 CPU-minutes each
set -euo pipefail
cd "$(dirname "$0")"
cpu_secs=$1; shift
chunk=${CHUNK:-300}
export RUSTC_BOOTSTRAP=1
./seed-corpus.sh >/dev/null
cargo fuzz build >/dev/null 2>&1 || { echo "fuzz build failed"; exit 2; }
bin=target/x86_64-unknown-linux-gnu/release
for t in "$@"; do
  # CPU_DONE: CPU seconds an interrupted campaign of the first target already spent on the same corpus
  used=${CPU_DONE:-0} runs=0 n=0
  CPU_DONE=0
  mkdir -p artifacts/"$t"
  while [ "$used" -lt "$cpu_secs" ]; do
    while [ -e /tmp/fuzz-campaign.pause ]; do sleep 5; done
    n=$((n + 1))
    log=/tmp/fuzz-campaign-$t-$n.log
    set +e
    /usr/bin/time -f '%U %S %M' -o /tmp/fuzz-campaign-$t.time \
      "$bin/$t" "corpus/$t" -max_total_time="$chunk" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="artifacts/$t/" >"$log" 2>&1
    rc=$?
    set -e
    # the last line: /usr/bin/time puts "Command exited with non-zero status N" before it on failure
    read -r u s m < <(tail -n 1 /tmp/fuzz-campaign-$t.time)
    used=$((used + ${u%.*} + ${s%.*}))
    r=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' || echo 0)
    runs=$((runs + r))
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo ?)
    echo "$(date -u +%H:%M:%S) $t chunk $n: rc=$rc cpu=${used}s runs=$runs cov=$cov peak_rss=$((m / 1024))MB corpus=$(ls "corpus/$t" | wc -l)"
    if [ "$rc" -ne 0 ]; then echo "$t FAILED, see $log"; tail -40 "$log"; exit 1; fi
  done
  echo "DONE $t cpu=${used}s runs=$runs cov=$cov corpus=$(ls "corpus/$t" | wc -l)"
done
