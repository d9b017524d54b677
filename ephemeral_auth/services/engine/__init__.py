"""What the database engine guarantees, and the few places where that changes the SQL.

This package is the one place of ephemeral_auth with database-specific SQL:
here the engine detection, lost races and row locks; in ``tokens_sql`` a
token's single use, in ``ratelimit_sql`` the conditional insert and the
recount, in ``purge_sql`` the purge's batched deletes. The services above
hold the policy and call these functions; the statements are the ones the
tests pin (statement counts, concurrency under races).

Every single-use and rate-limit decision of this app is one statement that the
database decides (docs/data-model.md). On one server that holds as written. A
MariaDB **Galera** cluster decides a write only at commit, when it certifies the
transaction's write set against every other node's, and a node's reads may
trail the others' commits. Measured on three nodes with defaults (docs/clusters.md):

* ``DELETE ... RETURNING`` in autocommit hands its rows to the client *before*
  certification: raced over three nodes, 185 of 200 trials had several
  "winners". The affected-row count of a plain ``DELETE`` or ``UPDATE`` in
  autocommit is only sent after certification (and Galera's own autocommit
  retry), so on Galera a consume is a SELECT then a DELETE whose row count
  decides, and an insert reports its id from the OK packet, not RETURNING.
* A certification conflict arrives as MariaDB error 1213 ("Deadlock found"),
  from the statement or from the COMMIT of a transaction. It means another
  node's write won: :func:`conflict_as` turns it into the caller's normal
  refusal (a lost race), never a 5xx. Nothing of the loser's transaction was
  committed, so a retry is safe.
* A recount that must see every racer's committed row (a rate limit's
  confirmation) is made causal on Galera: ``SET STATEMENT wsrep_sync_wait=1
  FOR SELECT ...`` waits until the node has applied every write set committed
  anywhere before it, in the same single statement (:func:`causal`).

Galera is recognised when the first connection to a server is made
(``wsrep_on``, one query per server and process, by the ``connection_created``
receiver); other engines are untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connections, transaction

__all__ = ["causal", "conflict_as", "is_conflict", "is_galera", "lock_rows", "note_connection"]

_GALERA = "_ephemeral_auth_galera"

# MariaDB/MySQL: 1213 ER_LOCK_DEADLOCK, which Galera also raises for a failed
# certification or a brute-force abort by a replicated write.
_MYSQL_CONFLICTS = frozenset({1213})
# PostgreSQL: serialization_failure, deadlock_detected.
_POSTGRES_CONFLICTS = frozenset({"40001", "40P01"})


# Whether a server (host, port) is a Galera node, asked once per process: with
# CONN_MAX_AGE=0 a connection is made per request, and the answer does not change.
_servers: dict[tuple[str, str], bool] = {}


def note_connection(sender: Any = None, connection: Any = None, **kwargs: Any) -> None:
    """``connection_created`` receiver: remember whether a new MySQL-family connection is a Galera node."""
    if connection is None or connection.vendor != "mysql":
        return
    server = (str(connection.settings_dict.get("HOST") or ""), str(connection.settings_dict.get("PORT") or ""))
    known = _servers.get(server)
    if known is None:
        with connection.cursor() as cursor:
            cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
            row = cursor.fetchone()
        known = _servers[server] = bool(row) and str(row[1]).upper() == "ON"
    setattr(connection, _GALERA, known)


def is_galera(connection: Any) -> bool:
    """Return whether ``connection`` talks to a node of a running Galera cluster."""
    if connection.vendor != "mysql":
        return False
    if connection.connection is None:
        connection.ensure_connection()
    known = getattr(connection, _GALERA, None)
    if known is None:
        note_connection(connection=connection)
        known = getattr(connection, _GALERA)
    return bool(known)


def causal(connection: Any, sql: str) -> str:
    """Return ``sql`` (a SELECT) made to wait for every write committed anywhere in the cluster before it."""
    if is_galera(connection):
        return "SET STATEMENT wsrep_sync_wait=1 FOR " + sql
    return sql


def is_conflict(exc: BaseException) -> bool:
    """Return whether a database error means another transaction's write won (a lost race)."""
    if not isinstance(exc, DatabaseError):
        return False
    cause = exc.__cause__ or exc
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate in _POSTGRES_CONFLICTS:
        return True
    args: tuple[Any, ...] = tuple(getattr(cause, "args", ()))
    return bool(args) and isinstance(args[0], int) and args[0] in _MYSQL_CONFLICTS


@contextmanager
def conflict_as(refusal: Callable[[], BaseException], *, using: str | None = None) -> Iterator[None]:
    """Turn a lost race (see :func:`is_conflict`) inside the block into ``refusal()``.

    Wrap the statement, or the whole transaction, whose commit decides. When
    the conflict arrives inside an outer transaction, that transaction is
    marked for rollback: the engine has rolled it back already.
    """
    try:
        yield
    except DatabaseError as exc:
        if not is_conflict(exc):
            raise
        if using is not None and connections[using].in_atomic_block:
            transaction.set_rollback(True, using=using)
        raise refusal() from None


def lock_rows(queryset: Any) -> None:
    """Lock the rows of ``queryset`` until its transaction ends (one SELECT ... FOR UPDATE of their keys).

    Nothing where the database has no row locks (SQLite, which serialises
    writers anyway).
    """
    if connections[queryset.db].features.has_select_for_update:
        list(queryset.select_for_update().values("pk"))
