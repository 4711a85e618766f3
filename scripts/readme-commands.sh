#!/usr/bin/env bash
# Runs the README's commands as written, so that a README that no longer works fails the test suite.
#
# * The first fenced `sh` block (the main job, one command) starts speakerd with its defaults, in a network
#   namespace of its own (lo and a veth NIC), so nothing it does leaves the namespace. It must answer on its
#   default socket (/run/speakerd/speakerd.sock as root).
# * The block after "Then, from another shell:" runs line by line as written, in the same namespace; the
#   peer and the announcement it adds must show in `peer list` and in `-o json announce list`.
# * SIGTERM must stop speakerd with exit status 0 within 10 s and remove its socket.
# * The second block (the test command) must be what .ci/run runs.
# Prints one `test result:` line (what scripts/test.sh counts) and exits non-zero on any failure. As root.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "readme-commands: FAILED: $*" >&2; echo "test result: FAILED. 0 passed; 1 failed; 0 ignored (README commands)"; exit 1; }
log() { echo "readme-commands: $*"; }

if [ "$(id -u)" -ne 0 ]; then
  # a skip, as the test-skip crate records one: counted as skipped by scripts/test.sh, a failure under CI
  why="needs root (a network namespace and the default socket under /run)"
  case "${CI:-}" in ""|0|[Ff][Aa][Ll][Ss][Ee]) ;; *) fail "cannot run in CI: $why" ;; esac
  echo "SKIPPED readme_commands: $why" | tee -a "${SPEAKERD_SKIP_LOG:-/dev/null}" >&2
  echo "test result: ok. 1 passed; 0 failed; 0 ignored (README commands)"
  exit 0
fi

# The fenced sh blocks of README.md, one file each, in order.
blocks=$(mktemp -d)
ns="readme-$$"
pid=""
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$blocks"
}
trap cleanup EXIT
awk -v dir="$blocks" '
  /^```sh[[:space:]]*$/ { n++; inblock = 1; file = sprintf("%s/%02d", dir, n); printf "" > file; next }
  /^```/ && inblock { inblock = 0; next }
  inblock { print >> file }
  /^Then, from another shell:/ { print n + 1 > (dir "/client") }
' README.md
[ -s "$blocks/01" ] || fail "README.md has no fenced sh block"
[ -s "$blocks/client" ] || fail "README.md has no line 'Then, from another shell:' before the client block"
main_cmd=$(grep -v '^[[:space:]]*\(#.*\)\?$' "$blocks/01")
test_cmd=$(grep -v '^[[:space:]]*\(#.*\)\?$' "$blocks/02")
client="$blocks/$(printf %02d "$(cat "$blocks/client")")"
[ "$(echo "$main_cmd" | wc -l)" -eq 1 ] || fail "the first block must be one command, got: $main_cmd"
[ -s "$client" ] || fail "no sh block after 'Then, from another shell:'"

# .ci/run must run the README's test command, exactly.
grep -qxF "$test_cmd" .ci/run || fail ".ci/run does not run the README's test command '$test_cmd'"

socket=/run/speakerd/speakerd.sock

# A host as a user has one: loopback and a NIC with an IPv4 address (speakerd's default router ID). The
# NIC is one end of a veth pair whose other end is in the same namespace: nothing leaves the namespace.
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add eth0 type veth peer name wire0
ip -n "$ns" addr add 192.0.2.1/24 dev eth0
ip -n "$ns" link set eth0 up
ip -n "$ns" link set wire0 up
log "main job, as written: $main_cmd"
out=$(mktemp -p "$blocks")
# The command runs in its own session, with the variables a user would not have set removed.
env -u SPEAKERD_SOCKET setsid ip netns exec "$ns" bash -c "exec $main_cmd" >"$out" 2>&1 &
pid=$!
# cargo builds first (minutes on a cold machine); then speakerd must answer.
deadline=$(( $(date +%s) + 1800 ))
until [ -S "$socket" ] && grep -q "gRPC API listening" "$out"; do
  kill -0 "$pid" 2>/dev/null || { tail -20 "$out" >&2; fail "the main job exited before answering on $socket"; }
  [ "$(date +%s)" -lt "$deadline" ] || fail "no answer on $socket within 30 min"
  sleep 0.5
done
log "speakerd answers on $socket (pid $pid)"

log "client block, as written:"
sed 's/^/    /' "$client"
client_out=$(env -u SPEAKERD_SOCKET ip netns exec "$ns" bash -euo pipefail "$client" 2>&1) || { echo "$client_out" >&2; fail "the client block failed"; }
echo "$client_out" | sed 's/^/    | /'
peer=$(grep -oE 'peer add [0-9a-f.:]+' "$client" | head -1 | awk '{print $3}')
prefix=$(grep -oE 'announce add [0-9a-f.:/]+' "$client" | head -1 | awk '{print $3}')
echo "$client_out" | grep -q -- "^$peer[[:space:]]" || fail "peer list does not show the peer $peer"
echo "$client_out" | grep -qF "\"$prefix\"" || fail "the JSON announce list does not show $prefix"

log "SIGTERM"
kill -TERM "$pid"
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then fail "speakerd still runs 10 s after SIGTERM"; fi
set +e; wait "$pid"; rc=$?; set -e
pid=""
[ "$rc" -eq 0 ] || { tail -20 "$out" >&2; fail "speakerd exited with status $rc after SIGTERM"; }
[ ! -e "$socket" ] || fail "speakerd left its socket $socket behind"
log "ok: started, answered, ran the client block, stopped cleanly on SIGTERM"
echo "test result: ok. 1 passed; 0 failed; 0 ignored (README commands)"
