"""The hand-written SQL of the rate limits (services/ratelimit.py holds the policy and the reasoning).

* The conditional insert: ``INSERT ... SELECT ... WHERE <the bucket has
  room>``, one arm per bucket, all buckets in one statement (``UNION ALL``,
  ``RETURNING`` the new ids) where the backend returns columns from an insert
  and the server is no Galera node; else one single-row insert per bucket,
  whose id comes from the OK packet (``lastrowid``), after certification.
* The confirmation: three scalar subqueries per bucket (the recount, the
  limit-th and the (limit+1)-th newest event), in one SELECT that is causal
  on a Galera cluster (:func:`ephemeral_auth.services.engine.causal`).

Every query is a range scan of the ``(event_type, key, occurred_at)`` index
bounded by ``limit`` rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db import connections

from ...models import RateLimitEvent
from . import causal, is_galera

__all__ = ["BucketLike", "Table", "confirmation_sql", "insert", "moment", "recount"]


class BucketLike(Protocol):
    """What the SQL needs of a ``ratelimit.Bucket``."""

    @property
    def event_type(self) -> str: ...

    @property
    def key(self) -> str: ...

    @property
    def limit(self) -> int: ...

    @property
    def window(self) -> timedelta: ...


class Table:
    """The quoted names of ``auth_rate_limit_events`` on one connection, for hand-written SQL."""

    def __init__(self, connection: Any) -> None:
        qn = connection.ops.quote_name
        meta = RateLimitEvent._meta
        self.connection = connection
        self.name = qn(meta.db_table)
        self.pk = qn(str(meta.pk.column))  # type: ignore[union-attr]
        self.at_field: Any = meta.get_field("occurred_at")
        self.key, self.type, self.at = (
            qn(str(meta.get_field(name).column))  # type: ignore[union-attr]
            for name in ("key", "event_type", "occurred_at")
        )

    def value(self, moment: datetime) -> Any:
        return self.at_field.get_db_prep_value(moment, self.connection)

    def moment(self, value: Any) -> datetime | None:
        """Return a raw cursor's ``occurred_at`` as an aware datetime (SQLite answers text, MySQL naive)."""
        convert = getattr(self.connection.ops, "convert_datetimefield_value", None)
        if value is None or convert is None:
            return value  # type: ignore[no-any-return]
        return convert(value, None, self.connection)  # type: ignore[no-any-return]

    def conditional_insert(self, bucket: BucketLike, now: datetime, n: int) -> tuple[str, list[Any]]:
        """Return ``SELECT key, type, now ... WHERE <bucket has room>``: the row to insert, if any."""
        # The inner LIMIT bounds the scan to `limit` index entries. MySQL refuses
        # LIMIT inside an IN/ALL subquery but accepts it in a derived table, and
        # the derived table also lets MariaDB read the table it inserts into.
        sql = (
            f"SELECT %s, %s, %s FROM (SELECT 1 AS one) AS ea_seed{n} WHERE "  # noqa: S608 - identifiers quoted, values bound
            f"(SELECT COUNT(*) FROM (SELECT 1 AS hit FROM {self.name} "
            f"WHERE {self.type} = %s AND {self.key} = %s AND {self.at} > %s LIMIT %s) AS ea_recent{n}) < %s"
        )
        since = self.value(now - bucket.window)
        params = [bucket.key, bucket.event_type, self.value(now), bucket.event_type, bucket.key, since]
        return sql, [*params, bucket.limit, bucket.limit]

    def confirmation(self, bucket: BucketLike, now: datetime, n: int) -> tuple[list[str], list[Any]]:
        """Return three scalar subqueries: the count (at most limit + 1), the limit-th and the (limit+1)-th newest.

        The two times give the Retry-After with or without the caller's own
        row (see ``ratelimit.Provisional.settle``). The statement text holds no id
        of ours, so it is the same for every caller (known or unknown subject).
        """
        since = self.value(now - bucket.window)
        count = (
            f"(SELECT COUNT(*) FROM (SELECT 1 AS hit FROM {self.name} "  # noqa: S608 - identifiers quoted, values bound
            f"WHERE {self.type} = %s AND {self.key} = %s AND {self.at} > %s LIMIT %s) AS ea_count{n})"
        )
        nth_newest = (
            f"(SELECT {self.at} FROM {self.name} "  # noqa: S608 - identifiers quoted, values bound
            f"WHERE {self.type} = %s AND {self.key} = %s AND {self.at} > %s "
            f"ORDER BY {self.at} DESC LIMIT 1 OFFSET %s)"
        )
        bucket_params = [bucket.event_type, bucket.key, since]
        offset = max(bucket.limit, 1) - 1
        params = [
            *bucket_params, max(bucket.limit, 0) + 1,
            *bucket_params, offset,
            *bucket_params, offset + 1,
        ]
        return [count, nth_newest, nth_newest], params


def insert(alias: str, buckets: Sequence[BucketLike], now: datetime) -> dict[tuple[str, str], int]:
    """Insert one event into every bucket that has room; return the new ids by ``(event_type, key)``.

    One statement where the backend allows it (see the module docstring).
    """
    connection = connections[alias]
    table = Table(connection)
    recorded: dict[tuple[str, str], int] = {}
    # Galera sends RETURNING rows before it certifies the insert; the id in the
    # OK packet of a single-row insert comes after (services/engine/__init__.py).
    returning = connection.features.can_return_columns_from_insert and not is_galera(connection)
    if buckets and returning:
        # One multi-row INSERT ... SELECT ... UNION ALL ... RETURNING: every
        # bucket is recorded in the same statement, hence the same commit.
        arms: list[str] = []
        params: list[Any] = []
        for n, bucket in enumerate(buckets):
            arm, arm_params = table.conditional_insert(bucket, now, n)
            arms.append(arm)
            params += arm_params
        sql = (
            f"INSERT INTO {table.name} ({table.key}, {table.type}, {table.at}) "
            + " UNION ALL ".join(arms)
            + f" RETURNING {table.pk}, {table.type}, {table.key}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            for pk, event_type, key in cursor.fetchall():
                recorded[(str(event_type), str(key))] = int(pk)
    elif buckets:
        # Without RETURNING only a single-row insert reports its own id
        # (lastrowid); a multi-row one need not allocate consecutive ids.
        with connection.cursor() as cursor:
            for n, bucket in enumerate(buckets):
                arm, params = table.conditional_insert(bucket, now, n)
                cursor.execute(f"INSERT INTO {table.name} ({table.key}, {table.type}, {table.at}) {arm}", params)
                if cursor.rowcount == 1:
                    recorded[(bucket.event_type, bucket.key)] = int(cursor.lastrowid)
    return recorded


def confirmation_sql(alias: str, buckets: Sequence[BucketLike], now: datetime) -> tuple[list[str], list[Any]]:
    """Return SELECT-list expressions (three per bucket, see :meth:`Table.confirmation`) and their parameters."""
    table = Table(connections[alias])
    columns: list[str] = []
    params: list[Any] = []
    for n, bucket in enumerate(buckets):
        more_columns, more_params = table.confirmation(bucket, now, n)
        columns += more_columns
        params += more_params
    return columns, params


def recount(alias: str, columns: Sequence[str], params: Sequence[Any]) -> Any:
    """Run the confirmation as one SELECT, causal on a Galera cluster; return its row."""
    connection = connections[alias]
    with connection.cursor() as cursor:
        # Causal on a Galera cluster: the recount must see every racer's committed row.
        cursor.execute(causal(connection, "SELECT " + ", ".join(columns)), list(params))
        return cursor.fetchone()


def moment(alias: str, value: Any) -> datetime | None:
    """Return an ``occurred_at`` read by a raw cursor on ``alias`` as an aware datetime."""
    return Table(connections[alias]).moment(value)
