#!/usr/bin/env bash
# PostgreSQL 15 primary + standby managed by Patroni, etcd as its DCS, HAProxy in front routing to the leader.
# Everything on 127.0.0.1, started and stopped by PID (no systemd); nothing touches the system cluster on 5432.
#
#   bash .ci/cluster/patroni.sh start sync|async  # etcd, two Patroni members, HAProxy; role and database;
#                                                 # on a running cluster: switch the replication mode
#   bash .ci/cluster/patroni.sh stop              # stop HAProxy, both members (Patroni stops its PostgreSQL), etcd
#   bash .ci/cluster/patroni.sh destroy           # stop and delete every data directory
#   bash .ci/cluster/patroni.sh status            # one line per process: PID, role, state
#   bash .ci/cluster/patroni.sh leader            # "pgN PORT" of the leader (exit 1 if there is none)
#   bash .ci/cluster/patroni.sh kill-leader       # kill -9 the leader's postmaster and its Patroni (a crash)
#   bash .ci/cluster/patroni.sh wait-leader [OLD] # wait until a leader other than OLD answers through HAProxy
#   bash .ci/cluster/patroni.sh rejoin            # restart every member whose Patroni is down; wait until it streams
#   bash .ci/cluster/patroni.sh hold-standby      # SIGSTOP the leader's WAL senders: the standby receives nothing more
#   bash .ci/cluster/patroni.sh release-standby   # SIGCONT them
#   bash .ci/cluster/patroni.sh wait-replicated   # wait until every standby has replayed the leader's current WAL
#
# Ports: etcd client 23790 / peer 23800; member N (1, 2) is "pgN": PostgreSQL 5440+N, Patroni REST API 8440+N;
# HAProxy 5440 routes to the member whose REST API answers /primary with 200 (the leader only; HAProxy
# checks with OPTIONS /primary, GET's status without the body).
# Data under ${EPHEMERAL_CLUSTER_DIR:-/tmp/ephemeral-cluster}/patroni; PostgreSQL and Patroni run as "postgres".
# Accounts: superuser postgres/postgres, replication replicator/replicator, and the app's role
# ephemeral/ephemeral (CREATEDB) owning database "ephemeral_auth", created through HAProxy.
#
# Modes (Patroni's dynamic configuration, docs/clusters.md):
#   sync:  synchronous_mode + synchronous_mode_strict: a commit returns only once the standby has flushed it;
#          with the standby gone, writes wait (never acknowledged on the primary alone).
#   async: plain streaming replication; a commit returns before the standby has it.
# Both: ttl 10 s, loop_wait 1 s, retry_timeout 4 s (failover about 10 s after the leader dies), and
# maximum_lag_on_failover 1 GiB, so that a lagging standby is still promoted (the async demonstration).
# hold-standby is how the tests make the async hazard deterministic: WAL written while the senders are
# stopped never reaches the standby; kill-leader then also SIGKILLs the held senders so that nothing leaks.
set -euo pipefail

ROOT=${EPHEMERAL_CLUSTER_DIR:-/tmp/ephemeral-cluster}/patroni
PGBIN=/usr/lib/postgresql/15/bin
ETCD_CLIENT=23790
ETCD_PEER=23800
HAPROXY_PORT=5440
MEMBERS=(1 2)
SCOPE=ephemeral-auth

say() { echo "patroni: $*"; }
pg_port() { echo $((5440 + $1)); }
api_port() { echo $((8440 + $1)); }
mdir() { echo "$ROOT/pg$1"; }

alive() {  # alive PIDFILE
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

own_pid() {  # own_pid PID WORD: PID is the process itself (its command line names WORD), not a wrapper
  local i
  for i in $(seq 1 20); do
    if tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -q "$2"; then return 0; fi
    sleep 0.05
  done
  say "pid $1 is not $2" >&2
  return 1
}

stop_pidfile() {  # stop_pidfile PIDFILE NAME: SIGTERM, then SIGKILL after 30 s
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 0
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -CONT "$pid" 2>/dev/null || true
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then say "$2 (pid $pid) ignored SIGTERM: SIGKILL"; kill -9 "$pid" 2>/dev/null || true; fi
    say "stopped $2 (pid $pid)"
  fi
  rm -f "$1"
}

ensure_packages() {
  local missing=()
  [ -x /usr/bin/patroni ] || missing+=(patroni)
  [ -x /usr/bin/etcd ] || missing+=(etcd-server)
  [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
  [ -x "$PGBIN/postgres" ] || missing+=(postgresql-15)
  command -v psql >/dev/null || missing+=(postgresql-client-15)
  command -v curl >/dev/null || missing+=(curl)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y "${missing[@]}" || { apt-get update && apt-get install -y "${missing[@]}"; }
  fi
}

# --- etcd

start_etcd() {
  if alive "$ROOT/etcd.pid"; then say "etcd already running (pid $(cat "$ROOT/etcd.pid"))"; return 0; fi
  mkdir -p "$ROOT/etcd"
  chown -R postgres:postgres "$ROOT/etcd"
  chmod 700 "$ROOT/etcd"
  local state=new
  [ -d "$ROOT/etcd/member" ] && state=existing
  # Not through a shell function: $! must be the process itself (setpriv and setsid exec).
  setpriv --reuid=postgres --regid=postgres --init-groups setsid /usr/bin/etcd --name e1 --data-dir "$ROOT/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "e1=http://127.0.0.1:$ETCD_PEER" --initial-cluster-state "$state" \
    --initial-cluster-token "$SCOPE" --heartbeat-interval 100 --election-timeout 1000 \
    --listen-metrics-urls "" >>"$ROOT/etcd.log" 2>&1 </dev/null &
  echo $! >"$ROOT/etcd.pid"
  own_pid "$(cat "$ROOT/etcd.pid")" /usr/bin/etcd
  for _ in $(seq 1 60); do
    if curl -fsS -m 2 "http://127.0.0.1:$ETCD_CLIENT/health" 2>/dev/null | grep -q '"health":"true"'; then
      say "etcd up on 127.0.0.1:$ETCD_CLIENT (pid $(cat "$ROOT/etcd.pid"))"
      return 0
    fi
    alive "$ROOT/etcd.pid" || break
    sleep 0.5
  done
  say "etcd did not come up; last lines of its log:" >&2
  tail -n 30 "$ROOT/etcd.log" >&2 || true
  return 1
}

# --- Patroni members

write_member_config() {  # write_member_config N MODE
  local n=$1 mode=$2 d sync strict
  d=$(mdir "$n")
  if [ "$mode" = sync ]; then sync=true; strict=true; else sync=false; strict=false; fi
  mkdir -p "$d"
  cat >"$d/patroni.yml" <<EOF
scope: $SCOPE
namespace: /ephemeral-auth/
name: pg$n
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$(api_port "$n")
  connect_address: 127.0.0.1:$(api_port "$n")
etcd3:
  hosts: 127.0.0.1:$ETCD_CLIENT
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: 1073741824
    synchronous_mode: $sync
    synchronous_mode_strict: $strict
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_connections: 100
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
        shared_buffers: 64MB
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
postgresql:
  listen: 127.0.0.1:$(pg_port "$n")
  connect_address: 127.0.0.1:$(pg_port "$n")
  data_dir: $d/data
  bin_dir: $PGBIN
  pgpass: $d/pgpass
  authentication:
    superuser:
      username: postgres
      password: postgres
    replication:
      username: replicator
      password: replicator
  parameters:
    unix_socket_directories: $d
    logging_collector: "off"
    log_destination: stderr
  pg_hba:
    - local all all trust
    - host replication replicator 127.0.0.1/32 md5
    - host all all 127.0.0.1/32 md5
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
watchdog:
  mode: "off"
EOF
  chown -R postgres:postgres "$d"
}

member_running() { alive "$(mdir "$1")/patroni.pid"; }

start_member() {  # start_member N MODE
  local n=$1 mode=$2 d
  d=$(mdir "$n")
  if member_running "$n"; then say "pg$n: Patroni already running (pid $(cat "$d/patroni.pid"))"; return 0; fi
  write_member_config "$n" "$mode"
  # setsid and setpriv exec: $! is Patroni's own PID.
  setpriv --reuid=postgres --regid=postgres --init-groups setsid /usr/bin/patroni "$d/patroni.yml" >>"$d/patroni.log" 2>&1 </dev/null &
  echo $! >"$d/patroni.pid"
  own_pid "$(cat "$d/patroni.pid")" /usr/bin/patroni
  say "pg$n: started Patroni (pid $(cat "$d/patroni.pid")), PostgreSQL on $(pg_port "$n"), REST API on $(api_port "$n")"
}

api() {  # api N PATH: the body of a REST API answer (any status)
  curl -sS -m 2 "http://127.0.0.1:$(api_port "$1")$2" 2>/dev/null
}

api_status() {  # api_status N PATH: the HTTP status of a REST API answer (000 if none)
  curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$(api_port "$1")$2" 2>/dev/null || true
}

leader_member() {  # the number of the member whose REST API answers /primary with 200
  local n
  for n in "${MEMBERS[@]}"; do
    member_running "$n" || continue
    if [ "$(api_status "$n" /primary)" = 200 ]; then echo "$n"; return 0; fi
  done
  return 1
}

q() {  # q N SQL: one query on member N as postgres, unaligned
  PGPASSWORD=postgres PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "$(pg_port "$1")" -U postgres -d postgres -X -v ON_ERROR_STOP=1 -qtA -c "$2"
}

cluster_json() {  # the /cluster answer of any running member
  local n
  for n in "${MEMBERS[@]}"; do
    member_running "$n" || continue
    if api "$n" /cluster; then return 0; fi
  done
  return 1
}

dcs_mode() {  # "sync" or "async": the synchronous_mode of the dynamic configuration
  local n body
  for n in "${MEMBERS[@]}"; do
    member_running "$n" || continue
    body=$(api "$n" /config) || continue
    if echo "$body" | /usr/bin/python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin).get("synchronous_mode") else 1)'; then
      echo sync
    else
      echo async
    fi
    return 0
  done
  return 1
}

set_mode() {  # set_mode MODE on a running cluster (Patroni's dynamic configuration, PATCH /config)
  local mode=$1 n body
  if [ "$mode" = sync ]; then
    body='{"synchronous_mode": true, "synchronous_mode_strict": true, "maximum_lag_on_failover": 1073741824}'
  else
    body='{"synchronous_mode": false, "synchronous_mode_strict": false, "maximum_lag_on_failover": 1073741824}'
  fi
  n=$(leader_member) || { say "no leader to reconfigure" >&2; return 1; }
  curl -fsS -m 5 -X PATCH -H 'Content-Type: application/json' -d "$body" \
    "http://127.0.0.1:$(api_port "$n")/config" >/dev/null
  say "replication mode set to $mode (dynamic configuration)"
}

replicas_ready() {  # replicas_ready MODE: every other member streams from the leader (in sync mode: as sync)
  local mode=$1 leader want got
  leader=$(leader_member) || return 1
  want=$((${#MEMBERS[@]} - 1))
  if [ "$mode" = sync ]; then
    got=$(q "$leader" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'sync'") || return 1
    # The DCS must name the standby too: Patroni promotes only a member listed in /sync.
    cluster_json | grep -q '"sync_standby"' || return 1
  else
    got=$(q "$leader" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming' AND sync_state = 'async'") || return 1
  fi
  [ "$got" = "$want" ]
}

wait_ready() {  # wait_ready MODE [SECONDS]
  local mode=$1 seconds=${2:-120} i
  for ((i = 0; i < seconds * 2; i++)); do
    if replicas_ready "$mode"; then
      say "leader pg$(leader_member), every standby streaming ($mode)"
      return 0
    fi
    sleep 0.5
  done
  say "the cluster did not become ready ($mode) within $seconds s" >&2
  status >&2
  return 1
}

wait_leader() {  # wait_leader [SECONDS]
  local seconds=${1:-60} i
  for ((i = 0; i < seconds * 2; i++)); do
    if leader_member >/dev/null; then return 0; fi
    sleep 0.5
  done
  say "no leader within $seconds s" >&2
  return 1
}

# --- HAProxy

start_haproxy() {
  if alive "$ROOT/haproxy.pid"; then say "HAProxy already running (pid $(cat "$ROOT/haproxy.pid"))"; return 0; fi
  local servers="" n
  for n in "${MEMBERS[@]}"; do
    servers+="    server pg$n 127.0.0.1:$(pg_port "$n") maxconn 200 check port $(api_port "$n")"$'\n'
  done
  cat >"$ROOT/haproxy.cfg" <<EOF
global
    maxconn 1000
    pidfile $ROOT/haproxy.pid

defaults
    mode tcp
    retries 2
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 1s

# The leader only: Patroni's REST API answers /primary with 200 on the leader, 503 elsewhere.
# OPTIONS is GET's answer without the body (Patroni's advice for HAProxy, which reads only the status).
# A member that stops answering is marked down after 2 checks (1 s) and its sessions are cut.
listen postgres_leader
    bind 127.0.0.1:$HAPROXY_PORT
    option httpchk OPTIONS /primary
    http-check expect status 200
    default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
$servers
EOF
  /usr/sbin/haproxy -c -q -f "$ROOT/haproxy.cfg"
  /usr/sbin/haproxy -D -f "$ROOT/haproxy.cfg" -p "$ROOT/haproxy.pid" >>"$ROOT/haproxy.log" 2>&1 </dev/null
  for _ in $(seq 1 20); do alive "$ROOT/haproxy.pid" && break; sleep 0.25; done
  alive "$ROOT/haproxy.pid" || { say "HAProxy did not start" >&2; cat "$ROOT/haproxy.log" >&2; return 1; }
  say "HAProxy on 127.0.0.1:$HAPROXY_PORT (pid $(cat "$ROOT/haproxy.pid"))"
}

via_haproxy() {  # via_haproxy SQL: as postgres through HAProxy
  PGPASSWORD=postgres PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "$HAPROXY_PORT" -U postgres -d postgres -X -v ON_ERROR_STOP=1 -qtA -c "$1"
}

wait_haproxy() {  # wait_haproxy [SECONDS]: HAProxy reaches the primary, and only the primary
  # A server counts as up until its first failed checks (fall 2, inter 500 ms): a standby may take
  # connections in HAProxy's first second, so six answers in a row, over 1.5 s, must come from the primary.
  local seconds=${1:-60} i streak=0
  for ((i = 0; i < seconds * 4; i++)); do
    if [ "$(via_haproxy "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ]; then
      streak=$((streak + 1))
      if [ "$streak" -ge 6 ]; then return 0; fi
    else
      streak=0
    fi
    sleep 0.25
  done
  say "HAProxy did not reach a primary within $seconds s" >&2
  return 1
}

via_leader() {  # via_leader SQL: as postgres on the leader's own port (HAProxy may still
  # count a standby as up in the first seconds after it starts, before its first check)
  local n
  n=$(leader_member) || { say "no leader" >&2; return 1; }
  PGPASSWORD=postgres PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "$(pg_port "$n")" -U postgres -d postgres -X \
    -v ON_ERROR_STOP=1 -qtA -c "$1"
}

ensure_app_database() {
  if [ "$(via_leader "SELECT 1 FROM pg_roles WHERE rolname = 'ephemeral'")" = 1 ]; then
    via_leader "ALTER ROLE ephemeral LOGIN CREATEDB PASSWORD 'ephemeral'"
  else
    via_leader "CREATE ROLE ephemeral LOGIN CREATEDB PASSWORD 'ephemeral'"
  fi
  if [ "$(via_leader "SELECT 1 FROM pg_database WHERE datname = 'ephemeral_auth'")" != 1 ]; then
    via_leader "CREATE DATABASE ephemeral_auth OWNER ephemeral"
  fi
  # manage.py check --database reads pg_stat_replication's sync_state, which needs pg_monitor.
  via_leader "GRANT pg_monitor TO ephemeral"
  say "role ephemeral and database ephemeral_auth ready through 127.0.0.1:$HAPROXY_PORT"
}

# --- Failures

postmaster_pid() {  # postmaster_pid N
  head -n 1 "$(mdir "$1")/data/postmaster.pid" 2>/dev/null
}

kill_leader() {
  local n pm pa held=""
  n=$(leader_member) || { say "no leader to kill" >&2; return 1; }
  pm=$(postmaster_pid "$n")
  pa=$(cat "$(mdir "$n")/patroni.pid")
  [ -f "$ROOT/held.pids" ] && held=$(tr '\n' ' ' <"$ROOT/held.pids")
  # One kill: Patroni gets no chance to restart its PostgreSQL or to release the leader key.
  # shellcheck disable=SC2086
  kill -9 "$pm" "$pa" $held 2>/dev/null || true
  rm -f "$ROOT/held.pids"
  say "killed leader pg$n (kill -9): postmaster $pm, Patroni $pa${held:+, held WAL senders ${held% }} at $(date +%s.%N)"
  echo "pg$n $(pg_port "$n")" >"$ROOT/killed"
}

hold_standby() {
  local n pids
  n=$(leader_member) || { say "no leader" >&2; return 1; }
  pids=$(q "$n" "SELECT pid FROM pg_stat_replication")
  [ -n "$pids" ] || { say "pg$n has no WAL sender to hold" >&2; return 1; }
  # shellcheck disable=SC2086
  kill -STOP $pids
  echo "$pids" >>"$ROOT/held.pids"
  say "held the WAL senders of pg$n (SIGSTOP): $(echo $pids)"
}

release_standby() {
  [ -f "$ROOT/held.pids" ] || { say "nothing held"; return 0; }
  # shellcheck disable=SC2046
  kill -CONT $(cat "$ROOT/held.pids") 2>/dev/null || true
  say "released WAL senders (SIGCONT): $(tr '\n' ' ' <"$ROOT/held.pids")"
  rm -f "$ROOT/held.pids"
}

wait_replicated() {  # every standby has replayed the leader's current WAL position
  local n lsn i
  n=$(leader_member) || { say "no leader" >&2; return 1; }
  lsn=$(q "$n" "SELECT pg_current_wal_lsn()")
  for ((i = 0; i < 120; i++)); do
    if [ "$(q "$n" "SELECT count(*) FROM pg_stat_replication WHERE replay_lsn >= '$lsn'")" = $((${#MEMBERS[@]} - 1)) ]; then
      say "every standby replayed $lsn"
      return 0
    fi
    sleep 0.25
  done
  say "standbys did not replay $lsn within 30 s" >&2
  return 1
}

# --- Lifecycle

stop_all() {
  release_standby >/dev/null 2>&1 || true
  stop_pidfile "$ROOT/haproxy.pid" HAProxy
  local n pm
  for n in "${MEMBERS[@]}"; do stop_pidfile "$(mdir "$n")/patroni.pid" "pg$n Patroni"; done
  # A PostgreSQL whose Patroni was killed (kill-leader) is ours to stop too: by its postmaster.pid.
  for n in "${MEMBERS[@]}"; do
    pm=$(postmaster_pid "$n") || true
    if [ -n "$pm" ] && kill -0 "$pm" 2>/dev/null && grep -q postgres "/proc/$pm/cmdline" 2>/dev/null; then
      kill -INT "$pm" 2>/dev/null || true
      for _ in $(seq 1 40); do kill -0 "$pm" 2>/dev/null || break; sleep 0.5; done
      kill -9 "$pm" 2>/dev/null || true
      say "stopped pg$n PostgreSQL (pid $pm)"
    fi
  done
  stop_pidfile "$ROOT/etcd.pid" etcd
}

status() {
  local n role
  if alive "$ROOT/etcd.pid"; then echo "etcd: pid $(cat "$ROOT/etcd.pid") port $ETCD_CLIENT"; else echo "etcd: down"; fi
  for n in "${MEMBERS[@]}"; do
    if member_running "$n"; then
      role=$(api "$n" /patroni | /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("role"), d.get("state"), "timeline", d.get("timeline"))' 2>/dev/null || echo "no answer")
      echo "pg$n: Patroni pid $(cat "$(mdir "$n")/patroni.pid") postmaster $(postmaster_pid "$n" || echo -) port $(pg_port "$n") $role"
    else
      echo "pg$n: Patroni down"
    fi
  done
  if alive "$ROOT/haproxy.pid"; then echo "haproxy: pid $(cat "$ROOT/haproxy.pid") port $HAPROXY_PORT"; else echo "haproxy: down"; fi
  cluster_json 2>/dev/null | /usr/bin/python3 -c 'import json,sys; [print("  dcs:", m["name"], m["role"], m["state"], "lag", m.get("lag", 0)) for m in json.load(sys.stdin)["members"]]' 2>/dev/null || true
}

start() {  # start MODE
  local mode=$1 n current
  case "$mode" in sync | async) ;; *) echo "usage: $0 start sync|async" >&2; exit 2 ;; esac
  ensure_packages
  mkdir -p "$ROOT"
  chmod 755 "$ROOT"
  start_etcd
  # A new cluster: the first member bootstraps (initdb), then the others copy it (pg_basebackup).
  # An existing one: every member at once, since in synchronous mode only the member named
  # synchronous standby in the DCS may take the lead after a stop.
  if [ ! -d "$(mdir 1)/data" ] && ! member_running 1; then
    start_member 1 "$mode"
    wait_leader 90
  fi
  for n in "${MEMBERS[@]}"; do start_member "$n" "$mode"; done
  wait_leader 90
  current=$(dcs_mode) || current=""
  if [ "$current" != "$mode" ]; then set_mode "$mode"; fi
  wait_ready "$mode" 120
  start_haproxy
  wait_haproxy 60
  ensure_app_database
  say "ready ($mode): DATABASE_URL=postgres://ephemeral:ephemeral@127.0.0.1:$HAPROXY_PORT/ephemeral_auth"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  stop) stop_all; say "stopped" ;;
  destroy) stop_all; rm -rf "$ROOT"; say "destroyed $ROOT" ;;
  status) status ;;
  leader)
    n=$(leader_member) || { echo "no leader" >&2; exit 1; }
    echo "pg$n $(pg_port "$n")"
    ;;
  kill-leader) kill_leader ;;
  wait-leader)
    # wait-leader [OLD]: a leader (other than member OLD, e.g. "pg1") that HAProxy reaches.
    old=${2:-}
    for ((i = 0; i < 120; i++)); do
      n=$(leader_member) || n=""
      if [ -n "$n" ] && [ "pg$n" != "$old" ] && [ "$(via_haproxy "SELECT pg_is_in_recovery()" 2>/dev/null)" = f ]; then
        say "leader pg$n (port $(pg_port "$n")) reachable through HAProxy"
        exit 0
      fi
      sleep 0.5
    done
    say "no new leader within 60 s" >&2
    status >&2
    exit 1
    ;;
  rejoin)
    mode=$(dcs_mode) || { say "no running member to ask for the mode" >&2; exit 1; }
    for n in "${MEMBERS[@]}"; do member_running "$n" || start_member "$n" "$mode"; done
    wait_ready "$mode" 120
    ;;
  hold-standby) hold_standby ;;
  release-standby) release_standby ;;
  wait-replicated) wait_replicated ;;
  *)
    echo "usage: $0 start sync|async|stop|destroy|status|leader|kill-leader|wait-leader [OLD]|rejoin|hold-standby|release-standby|wait-replicated" >&2
    exit 2
    ;;
esac
