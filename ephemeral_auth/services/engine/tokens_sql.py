"""The SQL of a token's single use: which statement consumes it on this engine (services/tokens.py decides when).

One ``DELETE ... RETURNING`` where the backend has it (PostgreSQL, SQLite
>= 3.35, MariaDB >= 10.5): of N concurrent consumers exactly one gets the row
back. Elsewhere, and on a Galera cluster (whose RETURNING rows arrive before
certification, see :mod:`ephemeral_auth.services.engine`), a SELECT followed
by a DELETE whose row count decides.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.db import connections

from ...models import EphemeralToken
from . import is_galera

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

__all__ = ["EXACT_TEXT", "delete_matching", "matches_exactly", "supports_delete_returning", "where_sql"]


# Text bindings are compared byte for byte. MariaDB/MySQL compare with the
# column's collation, by default case-, accent- and trailing-space-insensitive
# (utf8mb4_unicode_ci): a link issued for "file:1" would open for "FILE:1 ".
# The token digest is not in this set: it is always our own lowercase hex, and
# its lookup must keep using the unique index.
EXACT_TEXT = ("challenge_id", "resource", "code_hash")


def matches_exactly(token: EphemeralToken, lookups: dict[str, Any]) -> bool:
    """Return whether the row's text bindings equal the presented ones exactly."""
    return all(getattr(token, name) == lookups[name] for name in EXACT_TEXT if name in lookups)


def supports_delete_returning(connection: BaseDatabaseWrapper) -> bool:
    """Return whether a ``DELETE ... RETURNING`` on ``connection`` decides a race by itself."""
    vendor = connection.vendor
    if vendor == "postgresql":
        return True
    if vendor == "sqlite":
        return connection.Database.sqlite_version_info >= (3, 35, 0)  # type: ignore[attr-defined, no-any-return]
    if vendor == "mysql":
        connection.ensure_connection()
        if is_galera(connection):
            # Galera sends RETURNING rows before it certifies the write: not a decision (services/engine).
            return False
        return bool(connection.mysql_is_mariadb) and connection.mysql_version >= (10, 5)  # type: ignore[attr-defined]
    return False


def where_sql(
    connection: BaseDatabaseWrapper, lookups: dict[str, Any]
) -> tuple[str, list[Any]]:
    """Translate the lookups of ``tokens._conditions`` into a WHERE clause."""
    meta = EphemeralToken._meta
    qn = connection.ops.quote_name
    clauses: list[str] = []
    params: list[Any] = []
    for lookup, value in lookups.items():
        name, _, op = lookup.partition("__")
        model_field = meta.get_field(name.removesuffix("_id") if name == "user_id" else name)
        column = qn(str(model_field.column))  # type: ignore[union-attr]
        if op == "gt":
            clauses.append(f"{column} > %s")
        elif connection.vendor == "mysql" and name in EXACT_TEXT:
            clauses.append(f"CAST({column} AS BINARY) = CAST(%s AS BINARY)")
        else:
            clauses.append(f"{column} = %s")
        params.append(model_field.get_db_prep_value(value, connection))  # type: ignore[union-attr]
    return " AND ".join(clauses), params


def delete_matching(
    alias: str,
    lookups: dict[str, Any],
    *,
    returning: Callable[[BaseDatabaseWrapper], bool] = supports_delete_returning,
) -> EphemeralToken | None:
    """Delete the live token matching ``lookups``; return its row, or None if none was deleted by us.

    ``returning`` judges whether the connection's ``DELETE ... RETURNING``
    decides (default :func:`supports_delete_returning`); the tokens service
    passes its own module-level reference, so a test can force the
    SELECT-then-DELETE path.
    """
    connection = connections[alias]
    table = connection.ops.quote_name(EphemeralToken._meta.db_table)
    where, params = where_sql(connection, lookups)
    token: EphemeralToken | None
    if returning(connection):
        columns = ", ".join(
            connection.ops.quote_name(str(f.column)) for f in EphemeralToken._meta.concrete_fields
        )
        sql = f"DELETE FROM {table} WHERE {where} RETURNING {columns}"  # noqa: S608 - identifiers quoted, values bound
        rows = list(EphemeralToken.objects.raw(sql, params).using(alias))
        token = rows[0] if rows else None
    else:
        # Read, then let the DELETE's row count decide who won the race.
        token = EphemeralToken.objects.using(alias).filter(**lookups).first()
        if token is not None and not matches_exactly(token, lookups):
            token = None
        if token is not None:
            deleted = EphemeralToken.objects.using(alias).filter(pk=token.pk, **lookups)._raw_delete(alias)
            if deleted != 1:
                token = None
    return token
