#!/usr/bin/env bash
# Start PostgreSQL and MariaDB on 127.0.0.1 when they are down, and create the
# role and databases the suites use. Idempotent: safe to run any number of times.
set -euo pipefail

wait_for() {  # wait_for NAME COMMAND...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "services: $name did not come up" >&2
  return 1
}

if ! pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  wait_for PostgreSQL pg_isready -h 127.0.0.1 -q
fi
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname='ephemeral'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -qc "CREATE ROLE ephemeral LOGIN CREATEDB PASSWORD 'ephemeral'"
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='ephemeral_auth'" | grep -q 1 \
  || createdb -h 127.0.0.1 -U postgres -O ephemeral ephemeral_auth

if ! mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  echo "services: starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql || true
  wait_for MariaDB mariadb-admin -h 127.0.0.1 -u root ping
fi
mariadb -h 127.0.0.1 -u root -e "CREATE DATABASE IF NOT EXISTS ephemeral_auth CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
echo "services: PostgreSQL and MariaDB ready"
