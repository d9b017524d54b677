"""``manage.py check --database``: the live database settings that single use and rate limits depend on.

Registered with Django's ``database`` tag, so it runs only when asked
(``check --database default``, as Django's own database checks do) and reads
the server the site really talks to. Quiet on a plain single server; on a
MariaDB Galera node or a replicated PostgreSQL primary it warns with the fix.
The measurements behind each message are in docs/clusters.md.

* W101 (Galera): ``wsrep_sync_wait`` has no causal reads. The app's own
  decisions do not depend on it (a recount is causal by itself), but a request
  that lands on another node may not see a session or a token written a moment
  ago: measured 445 of 2,000 reads on loopback.
* W102 (Galera): ``wsrep_retry_autocommit=0``: every certification conflict
  reaches the app. Still one winner, but more refusals under contention.
* E101 (Galera): the node is not in the primary component or not ready: it
  refuses queries (the app answers 503).
* E102 (Galera): ``binlog_format`` is not ROW, which Galera needs to replicate.
* E103 (PostgreSQL): the connection reaches a standby (read only).
* W103 (PostgreSQL): a standby replicates asynchronously, or commits do not
  wait for it (``synchronous_commit`` off/local): a token consumed just before
  a failover comes back on the promoted standby.
* W104 (PostgreSQL): standbys exist but this role cannot see their
  replication state (grant ``pg_monitor`` to tell).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError, connections, router

__all__ = ["check_database"]

_FIX_SYNC_WAIT = (
    "Set wsrep_sync_wait=1 for the site's connections: DATABASES[...]['OPTIONS'] = "
    "{'init_command': 'SET SESSION wsrep_sync_wait=1'}, or wsrep_sync_wait=1 in the servers' my.cnf."
)


def _aliases(databases: Sequence[str] | None) -> list[str]:
    from .models import EphemeralToken, RateLimitEvent

    ours = {router.db_for_write(model) or "default" for model in (EphemeralToken, RateLimitEvent)}
    ours.add("default")
    asked = set(databases or ())
    return sorted(alias for alias in ours if alias in asked and alias in connections)


def _read(cursor: Any, table: str, names: Sequence[str]) -> dict[str, str]:
    """Return the named rows of information_schema.SESSION_VARIABLES or GLOBAL_STATUS, by lower-case name."""
    placeholders = ", ".join(["%s"] * len(names))
    cursor.execute(
        f"SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.{table} "  # noqa: S608 - a constant table
        f"WHERE VARIABLE_NAME IN ({placeholders})",
        [name.upper() for name in names],
    )
    return {str(name).lower(): str(value) for name, value in cursor.fetchall()}


def _galera(alias: str, cursor: Any) -> list[Any]:
    cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
    row = cursor.fetchone()
    if not row or str(row[1]).upper() != "ON":
        return []
    found: list[Any] = []
    variables = _read(cursor, "SESSION_VARIABLES", ["wsrep_sync_wait", "wsrep_retry_autocommit", "binlog_format"])
    status = _read(cursor, "GLOBAL_STATUS", ["wsrep_cluster_status", "wsrep_ready", "wsrep_cluster_size"])
    if status.get("wsrep_cluster_status", "").lower() != "primary" or status.get("wsrep_ready", "").upper() != "ON":
        found.append(Error(
            f"Database {alias!r}: this Galera node is not ready in the primary component "
            f"(wsrep_cluster_status={status.get('wsrep_cluster_status')}, wsrep_ready={status.get('wsrep_ready')}).",
            hint="It refuses queries: route the site to a synced node (a load balancer with a health check).",
            id="ephemeral_auth.E101",
        ))
    if variables.get("binlog_format", "").upper() != "ROW":
        found.append(Error(
            f"Database {alias!r}: binlog_format={variables.get('binlog_format')} on a Galera node.",
            hint="Galera replicates row events only: set binlog_format=ROW.",
            id="ephemeral_auth.E102",
        ))
    try:
        sync_wait = int(variables.get("wsrep_sync_wait", "0"))
    except ValueError:
        sync_wait = 0
    if not sync_wait & 1:
        found.append(Warning(
            f"Database {alias!r}: Galera reads are not causal (wsrep_sync_wait={sync_wait}). Single use and "
            "rate limits still hold, but a request that lands on another node may not yet see a session or a "
            "token written a moment before, and is refused.",
            hint=_FIX_SYNC_WAIT,
            id="ephemeral_auth.W101",
        ))
    if variables.get("wsrep_retry_autocommit", "1") == "0":
        found.append(Warning(
            f"Database {alias!r}: wsrep_retry_autocommit=0: every certification conflict reaches the app. "
            "Single use still holds (a conflict is a lost race), but more racers are refused.",
            hint="Keep Galera's default, wsrep_retry_autocommit=1 (or more).",
            id="ephemeral_auth.W102",
        ))
    return found


def _postgres(alias: str, cursor: Any) -> list[Any]:
    cursor.execute("SELECT pg_is_in_recovery(), current_setting('synchronous_commit'), "
                   "current_setting('synchronous_standby_names')")
    in_recovery, synchronous_commit, standby_names = cursor.fetchone()
    if in_recovery:
        return [Error(
            f"Database {alias!r} is a PostgreSQL standby (read only): tokens cannot be issued nor consumed.",
            hint="Point the site at the primary (with Patroni: through HAProxy on the leader check, GET /primary).",
            id="ephemeral_auth.E103",
        )]
    cursor.execute("SELECT application_name, sync_state FROM pg_stat_replication")
    standbys = cursor.fetchall()
    if not standbys:
        return []
    if any(state is None for _, state in standbys):
        return [Warning(
            f"Database {alias!r}: {len(standbys)} standby(s) replicate from this primary, but this role "
            "cannot see whether they are synchronous.",
            hint="GRANT pg_monitor TO the site's role, then run check --database again.",
            id="ephemeral_auth.W104",
        )]
    asynchronous = [str(name) for name, state in standbys if state not in ("sync", "quorum")]
    weak_commit = synchronous_commit in ("off", "local")
    if asynchronous or weak_commit or not standby_names:
        what = (
            f"standby(s) {', '.join(asynchronous)} replicate asynchronously"
            if asynchronous
            else f"synchronous_commit={synchronous_commit}"
        )
        return [Warning(
            f"Database {alias!r}: {what}. A commit is acknowledged before a standby has it: after a failover "
            "to that standby, tokens consumed just before come back (usable again) and admissions are lost.",
            hint="Replicate synchronously: synchronous_standby_names (Patroni: synchronous_mode: true, "
                 "synchronous_mode_strict: true) and synchronous_commit=on or remote_apply.",
            id="ephemeral_auth.W103",
        )]
    return []


@register(Tags.database)
def check_database(app_configs: Sequence[Any] | None = None, databases: Sequence[str] | None = None,
                   **kwargs: Any) -> list[Any]:
    found: list[Any] = []
    for alias in _aliases(databases):
        connection = connections[alias]
        inspect = {"mysql": _galera, "postgresql": _postgres}.get(connection.vendor)
        if inspect is None:
            continue
        try:
            with connection.cursor() as cursor:
                found += inspect(alias, cursor)
        except DatabaseError as exc:
            found.append(Warning(
                f"Database {alias!r}: its replication settings could not be read ({type(exc).__name__}).",
                id="ephemeral_auth.W105",
            ))
    return found
