#!/usr/bin/env bash
# Installs what the build and the end-to-end tests need (make for jemalloc, namespaces tools, capture tools,
# gobgpd, BIRD 2, FRR) on Debian bookworm, as root. Idempotent and fast when everything is present: apt is skipped then.
# The tests start their own daemons inside network namespaces, so the packages' system services are
# kept from starting during the install and stopped/disabled if they run anyway.
set -euo pipefail

PKGS=(
  iproute2 iputils-ping iputils-arping ndisc6 tcpdump tshark
  gobgpd bird2 frr
  procps psmisc ca-certificates
  make  # k8s-bridge links jemalloc, built from source by tikv-jemalloc-sys (configure + make)
)
SERVICES=(bird frr gobgpd)

log() { echo "install-test-deps: $*"; }

installed() { [ "$(dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null)" = "ii " ]; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"
  else log "need root to run: $*"; return 1
  fi
}

missing=()
for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
# kubectl checks the fake API server's fidelity (k8s-bridge tests). The machine image has one; a bare
# Debian machine gets Debian's kubernetes-client.
command -v kubectl >/dev/null 2>&1 || installed kubernetes-client || missing+=(kubernetes-client)

if [ ${#missing[@]} -gt 0 ]; then
  log "installing: ${missing[*]}"
  # keep the packages' services from starting (unless a policy is already in place, e.g. in containers)
  policy_made=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    policy_made=1
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}"
  if [ "$policy_made" = 1 ]; then as_root rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
else
  log "all ${#PKGS[@]} packages present"
fi

# No system instance of the daemons may run: stop and disable them if the package (or anyone) started them.
pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  for s in "${SERVICES[@]}"; do
    systemctl cat "$s.service" >/dev/null 2>&1 || continue
    if systemctl is-active --quiet "$s.service" || systemctl is-enabled --quiet "$s.service" 2>/dev/null; then
      log "stopping and disabling $s.service"
      as_root systemctl disable --now "$s.service" >/dev/null 2>&1 || log "could not disable $s.service"
    fi
  done
else
  # no systemd (containers): the init scripts track their daemons by pidfile
  if pid_alive /run/bird/bird.pid && [ -x /etc/init.d/bird ]; then
    log "stopping bird"; as_root /etc/init.d/bird stop || true
  fi
  for f in /run/frr/*.pid; do
    if pid_alive "$f" && [ -x /etc/init.d/frr ]; then log "stopping frr"; as_root /etc/init.d/frr stop || true; break; fi
  done
fi

# the fuzz smoke of the test suite (fuzz/smoke.sh) runs cargo-fuzz (from crates.io)
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  log "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# the Python client test (speakerd/tests/python_client.rs) runs docs/examples/python_client.py with a stock
# grpcio from PyPI
if ! python3 -c "import grpc, grpc_tools, grpc_reflection" >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    log "installing python3-pip"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3 python3-pip
  fi
  log "installing grpcio, grpcio-tools, grpcio-reflection (pip)"
  pip=(python3 -m pip install --quiet --disable-pip-version-check grpcio grpcio-tools grpcio-reflection)
  # Debian's own python3 is "externally managed": pip then needs --break-system-packages
  as_root "${pip[@]}" || as_root "${pip[@]}" --break-system-packages
fi

# what the tests call, checked once here so a broken install fails early with a clear message
for c in ip ping arping ndisc6 tcpdump tshark gobgpd gobgp bird birdc vtysh /usr/lib/frr/bgpd sysctl python3; do
  command -v "$c" >/dev/null 2>&1 || { log "missing after install: $c"; exit 1; }
done
log "ok"
