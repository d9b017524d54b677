#!/usr/bin/env bash
# Start PostgreSQL and MariaDB on 127.0.0.1 when they are down, and create the
# role and databases the suites use. Idempotent: safe to run any number of times.
#
#   PostgreSQL: role "ephemeral" (password "ephemeral", CREATEDB so that
#               pytest-django can create test_<name>), database "ephemeral_auth"
#               owned by it (PG 15: the owner may create tables in "public").
#   MariaDB:    root with an empty password, database "ephemeral_auth" (utf8mb4).
set -euo pipefail

say() { echo "services: $*"; }

wait_for() {  # wait_for NAME COMMAND...
  local name=$1; shift
  for _ in $(seq 1 60); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  say "$name did not come up within 60 s" >&2
  return 1
}

# --- PostgreSQL
if pg_isready -h 127.0.0.1 -q 2>/dev/null; then
  say "PostgreSQL is up"
else
  version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)
  if [ -z "$version" ]; then say "no PostgreSQL cluster in /etc/postgresql" >&2; exit 1; fi
  say "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL pg_isready -h 127.0.0.1 -q
fi
pg() { psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(pg -c "SELECT 1 FROM pg_roles WHERE rolname = 'ephemeral'")" = "1" ]; then
  pg -c "ALTER ROLE ephemeral LOGIN CREATEDB PASSWORD 'ephemeral'"
else
  pg -c "CREATE ROLE ephemeral LOGIN CREATEDB PASSWORD 'ephemeral'"
fi
if [ "$(pg -c "SELECT 1 FROM pg_database WHERE datname = 'ephemeral_auth'")" != "1" ]; then
  createdb -h 127.0.0.1 -U postgres -O ephemeral ephemeral_auth
fi

# --- MariaDB
if mariadb-admin -h 127.0.0.1 -u root ping >/dev/null 2>&1; then
  say "MariaDB is up"
else
  say "starting MariaDB"
  # The socket directory lives on a tmpfs that a fresh boot empties.
  install -d -o mysql -g mysql /run/mysqld 2>/dev/null || mkdir -p /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql || true
  wait_for MariaDB mariadb-admin -h 127.0.0.1 -u root ping
fi
mariadb -h 127.0.0.1 -u root -e \
  "CREATE DATABASE IF NOT EXISTS ephemeral_auth CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"

say "PostgreSQL and MariaDB ready on 127.0.0.1"
