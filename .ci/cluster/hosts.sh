#!/usr/bin/env bash
# Several app hosts on one machine: network namespaces on a private bridge (tests/cluster/test_hosts.py).
#
#   bash .ci/cluster/hosts.sh up       # bridge + namespaces (idempotent; repairs a half-built set), tools checked
#   bash .ci/cluster/hosts.sh down     # stop what still runs inside the namespaces (by PID), delete them and the bridge
#   bash .ci/cluster/hosts.sh status   # one line per namespace: address, link state, processes inside
#   bash .ci/cluster/hosts.sh deps     # haproxy and socat (apt-get when missing), the npm OpenID provider (npm ci)
#
# Layout (EA_HOSTS_NET, default 10.77.0, a /24 nobody else uses here):
#   root namespace   bridge ea-br0   10.77.0.1    HAProxy, the databases' and the provider's forwarders
#   ea-h1 .. ea-h3   eth0            10.77.0.11 .. 10.77.0.13   one app host each (gunicorn)
#   ea-client        eth0            10.77.0.100 and 10.77.0.101  the test's clients (two real addresses)
# Each namespace has its loopback up and a veth (root side veth-<name>) on the bridge; no routes beyond
# the /24, no NAT, no systemd. Processes in a namespace reach the root namespace only at 10.77.0.1 (its
# 127.0.0.1 is not theirs): the test starts forwarders there. Needs root (ip netns add).
set -euo pipefail
cd "$(dirname "$0")/../.."

NET=${EA_HOSTS_NET:-10.77.0}
BRIDGE=ea-br0
BRIDGE_IP=$NET.1
APP_HOSTS=(ea-h1 ea-h2 ea-h3)
CLIENT=ea-client
NAMESPACES=("${APP_HOSTS[@]}" "$CLIENT")

say() { echo "hosts: $*"; }

addresses() {  # addresses NAMESPACE: its eth0 addresses, primary first
  case "$1" in
    ea-h[0-9]) echo "$NET.$((10 + ${1#ea-h}))" ;;
    "$CLIENT") echo "$NET.100 $NET.101" ;;
    *) return 1 ;;
  esac
}

has_ns() { ip netns list | awk '{print $1}' | grep -qx "$1"; }
has_link() { ip link show "$1" >/dev/null 2>&1; }

deps() {
  local missing=()
  [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  command -v socat >/dev/null || missing+=(socat)
  if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  # The real OpenID provider, exactly as .ci/e2e-setup.sh installs it (same lock stamp, so neither redoes it).
  local provider=tests/e2e/oidc_provider lock_digest stamp
  lock_digest=$(sha256sum "$provider/package-lock.json" | cut -d' ' -f1)
  stamp="$provider/node_modules/.ephemeral-auth-lock"
  if [ -d "$provider/node_modules/oidc-provider" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_digest" ]; then
    say "npm packages of $provider up to date"
  else
    say "npm ci in $provider"
    (cd "$provider" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$lock_digest" >"$stamp"
  fi
}

bridge_up() {
  if ! has_link "$BRIDGE"; then
    ip link add "$BRIDGE" type bridge
  fi
  ip addr replace "$BRIDGE_IP/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
}

ns_ok() {  # ns_ok NAME: the namespace, its veth on the bridge and every address are in place
  local name=$1 address
  has_ns "$name" && has_link "veth-$name" || return 1
  [ "$(ip -o link show "veth-$name" | grep -o "master [^ ]*")" = "master $BRIDGE" ] || return 1
  for address in $(addresses "$name"); do
    ip -n "$name" -o -4 addr show dev eth0 2>/dev/null | grep -q " $address/24 " || return 1
  done
}

ns_up() {
  local name=$1 address
  if ! ns_ok "$name"; then
    has_ns "$name" || ip netns add "$name"
    # A half-built pair (an interrupted run): start the veth over.
    if has_link "veth-$name"; then ip link del "veth-$name"; fi
    ip -n "$name" link del eth0 2>/dev/null || true
    ip link add "veth-$name" type veth peer name eth0 netns "$name"
    ip link set "veth-$name" master "$BRIDGE"
    for address in $(addresses "$name"); do
      ip -n "$name" addr add "$address/24" dev eth0
    done
  fi
  ip link set "veth-$name" up
  ip -n "$name" link set lo up
  ip -n "$name" link set eth0 up
}

up() {
  deps
  bridge_up
  for name in "${NAMESPACES[@]}"; do ns_up "$name"; done
  say "up: bridge $BRIDGE $BRIDGE_IP/24; ${NAMESPACES[*]}"
}

ns_stop_processes() {  # every process inside the namespace: TERM, then KILL after 10 s (by PID)
  local name=$1 pids
  pids=$(ip netns pids "$name" 2>/dev/null | tr '\n' ' ')
  [ -n "${pids// /}" ] || return 0
  say "stopping processes left in $name: $pids"
  # shellcheck disable=SC2086
  kill $pids 2>/dev/null || true
  for _ in $(seq 1 50); do
    pids=$(ip netns pids "$name" 2>/dev/null | tr '\n' ' ')
    [ -n "${pids// /}" ] || return 0
    sleep 0.2
  done
  # shellcheck disable=SC2086
  kill -9 $pids 2>/dev/null || true
}

down() {
  for name in "${NAMESPACES[@]}"; do
    if has_ns "$name"; then
      ns_stop_processes "$name"
      ip netns del "$name"
    fi
    if has_link "veth-$name"; then ip link del "veth-$name"; fi
  done
  if has_link "$BRIDGE"; then ip link del "$BRIDGE"; fi
  say "down"
}

status() {
  if has_link "$BRIDGE"; then
    say "bridge $BRIDGE $(ip -o -4 addr show dev "$BRIDGE" | awk '{print $4}' | tr '\n' ' ')"
  else
    say "bridge $BRIDGE: absent"
  fi
  for name in "${NAMESPACES[@]}"; do
    if ! has_ns "$name"; then echo "$name: absent"; continue; fi
    local state="broken" pids
    if ns_ok "$name"; then state="ok"; fi
    pids=$(ip netns pids "$name" 2>/dev/null | tr '\n' ' ')
    echo "$name: $state $(addresses "$name" | tr ' ' ',') processes: ${pids:-none}"
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  deps) deps ;;
  *) echo "usage: $0 up|down|status|deps" >&2; exit 2 ;;
esac
