#!/usr/bin/env bash
# A three-node MariaDB Galera cluster on this machine, each node a mariadbd of its own (by PID, no systemd).
#
#   bash .ci/cluster/galera.sh start        # init (first time), bootstrap node 1, join 2 and 3, wait for size 3
#   bash .ci/cluster/galera.sh stop         # stop every node (SIGTERM, then SIGKILL), keep the data
#   bash .ci/cluster/galera.sh destroy      # stop and delete the data directories
#   bash .ci/cluster/galera.sh kill N       # kill -9 node N (a crash: no clean leave)
#   bash .ci/cluster/galera.sh rejoin N     # start node N again; it rejoins by IST (or SST) and syncs
#   bash .ci/cluster/galera.sh wait-size K  # wait until every running node sees a primary component of K
#   bash .ci/cluster/galera.sh status       # one line per node: PID, state, cluster size
#
# Node i (1..3): SQL port 3310+i, group communication 4510+i, IST 4520+i, SST (rsync) 4530+i.
# SQL listens on GALERA_BIND (default 127.0.0.1; a comma list such as "127.0.0.1,10.77.0.1" also works).
# Account: user "ephemeral", password "ephemeral", from any host, all privileges (pytest-django creates
# test_* databases); database "ephemeral_auth" (utf8mb4). Galera's own settings stay at their defaults:
# wsrep_sync_wait=0, wsrep_retry_autocommit=1 (the library must hold without tuning; docs/clusters.md).
# Extra server options for every node: GALERA_EXTRA="--wsrep-sync-wait=1 ..." (used by the tuned run).
set -euo pipefail

ROOT=${EPHEMERAL_CLUSTER_DIR:-/tmp/ephemeral-cluster}/galera
BIND=${GALERA_BIND:-127.0.0.1}
NODES=(1 2 3)

say() { echo "galera: $*"; }
sql_port() { echo $((3310 + $1)); }
dir() { echo "$ROOT/n$1"; }
pidfile() { echo "$(dir "$1")/mariadbd.pid"; }
sock() { echo "$(dir "$1")/mariadbd.sock"; }
q() { local n=$1; shift; mariadb --no-defaults -S "$(sock "$n")" -u root -N -B -e "$@"; }

running() {
  local pid
  pid=$(cat "$(pidfile "$1")" 2>/dev/null) || return 1
  kill -0 "$pid" 2>/dev/null
}

write_config() {
  local n=$1 d
  d=$(dir "$n")
  local peers="gcomm://127.0.0.1:4511,127.0.0.1:4512,127.0.0.1:4513"
  cat >"$d/my.cnf" <<EOF
[mysqld]
datadir=$d/data
socket=$(sock "$n")
pid-file=$(pidfile "$n")
log-error=$d/error.log
port=$(sql_port "$n")
bind-address=$BIND
skip-name-resolve
character-set-server=utf8mb4
collation-server=utf8mb4_unicode_ci
max_connections=300
innodb_buffer_pool_size=64M
innodb_log_file_size=48M
innodb_flush_log_at_trx_commit=2
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
wsrep_on=ON
wsrep_provider=/usr/lib/galera/libgalera_smm.so
wsrep_cluster_name=ephemeral_auth
wsrep_cluster_address=$peers
wsrep_node_name=n$n
wsrep_node_address=127.0.0.1:$((4510 + n))
wsrep_provider_options="gmcast.listen_addr=tcp://127.0.0.1:$((4510 + n));ist.recv_addr=127.0.0.1:$((4520 + n));gcache.size=64M;pc.recovery=false"
wsrep_sst_method=rsync
wsrep_sst_receive_address=127.0.0.1:$((4530 + n))
EOF
}

init_node() {
  local n=$1 d
  d=$(dir "$n")
  mkdir -p "$d"
  write_config "$n"
  if [ ! -d "$d/data/mysql" ]; then
    mkdir -p "$d/data"
    chown -R mysql:mysql "$d"
    mariadb-install-db --defaults-file="$d/my.cnf" --user=mysql --auth-root-authentication-method=normal \
      --skip-test-db >"$d/install.log" 2>&1 || { cat "$d/install.log" >&2; return 1; }
  fi
  chown -R mysql:mysql "$d"
}

start_node() {  # start_node N [extra mariadbd args...]
  local n=$1; shift
  if running "$n"; then say "node $n already running (pid $(cat "$(pidfile "$n")"))"; return 0; fi
  rm -f "$(sock "$n")"
  # shellcheck disable=SC2086
  setsid /usr/sbin/mariadbd --defaults-file="$(dir "$n")/my.cnf" --user=mysql ${GALERA_EXTRA:-} "$@" \
    >>"$(dir "$n")/stdout.log" 2>&1 </dev/null &
  for _ in $(seq 1 120); do
    if q "$n" "SELECT 1" >/dev/null 2>&1; then
      say "node $n up on port $(sql_port "$n") (pid $(cat "$(pidfile "$n")" 2>/dev/null || echo '?'))"
      return 0
    fi
    sleep 0.5
  done
  say "node $n did not come up; last lines of its log:" >&2
  tail -n 30 "$(dir "$n")/error.log" >&2 || true
  return 1
}

node_state() { q "$1" "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='wsrep_local_state_comment'" 2>/dev/null || echo down; }
node_size() { q "$1" "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME='wsrep_cluster_size'" 2>/dev/null || echo 0; }

wait_size() {
  local want=$1
  for _ in $(seq 1 240); do
    local ok=1
    for n in "${NODES[@]}"; do
      running "$n" || continue
      if [ "$(node_size "$n")" != "$want" ] || [ "$(node_state "$n")" != "Synced" ]; then ok=0; fi
    done
    if [ "$ok" -eq 1 ]; then say "cluster size $want, every running node Synced"; return 0; fi
    sleep 0.5
  done
  say "cluster did not reach size $want" >&2
  status >&2
  return 1
}

stop_node() {
  local n=$1 pid
  pid=$(cat "$(pidfile "$n")" 2>/dev/null) || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  kill -9 "$pid" 2>/dev/null || true
}

status() {
  for n in "${NODES[@]}"; do
    if running "$n"; then
      echo "node $n: pid $(cat "$(pidfile "$n")") port $(sql_port "$n") state $(node_state "$n") size $(node_size "$n")"
    else
      echo "node $n: down"
    fi
  done
}

deps() {
  if [ -x /usr/sbin/mariadbd ] && [ -f /usr/lib/galera/libgalera_smm.so ] && command -v rsync >/dev/null; then
    return 0
  fi
  say "installing mariadb-server, galera-4 and rsync (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq mariadb-server galera-4 rsync >/dev/null
}

case "${1:-}" in
  start)
    deps
    for n in "${NODES[@]}"; do init_node "$n"; done
    if running 1 || running 2 || running 3; then
      for n in "${NODES[@]}"; do running "$n" || start_node "$n"; done
    else
      # A fresh bootstrap: node 1 forms a new primary component; its grastate says it may.
      sed -i 's/^safe_to_bootstrap: 0/safe_to_bootstrap: 1/' "$(dir 1)/data/grastate.dat" 2>/dev/null || true
      start_node 1 --wsrep-new-cluster
      q 1 "CREATE USER IF NOT EXISTS 'ephemeral'@'%' IDENTIFIED BY 'ephemeral';
           GRANT ALL PRIVILEGES ON *.* TO 'ephemeral'@'%' WITH GRANT OPTION;
           CREATE DATABASE IF NOT EXISTS ephemeral_auth CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
      start_node 2
      start_node 3
    fi
    wait_size 3
    ;;
  stop) for n in 3 2 1; do stop_node "$n"; done; say "stopped" ;;
  destroy) for n in 3 2 1; do stop_node "$n"; done; rm -rf "$ROOT"; say "destroyed $ROOT" ;;
  kill)
    n=${2:?node number}
    pid=$(cat "$(pidfile "$n")")
    kill -9 "$pid"
    say "killed node $n (pid $pid)"
    ;;
  rejoin) n=${2:?node number}; write_config "$n"; start_node "$n" ;;
  wait-size) wait_size "${2:?size}" ;;
  status) status ;;
  *) echo "usage: $0 start|stop|destroy|kill N|rejoin N|wait-size K|status" >&2; exit 2 ;;
esac
