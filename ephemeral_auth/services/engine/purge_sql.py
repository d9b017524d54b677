"""The purge's batched deletes, per database engine (services/cleanup.py decides what is expired).

Each batch is one SELECT of at most ``batch_size`` keys walking the purge
index oldest first, then one DELETE whose key list travels as one parameter
(a PostgreSQL array, a JSON array on SQLite; integer literals on
MySQL/MariaDB). Both statements are compiled once per loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.models import QuerySet

__all__ = ["delete_in_batches"]


def delete_in_batches(
    queryset: QuerySet[Any], order_by: str, batch_size: int, progress: Callable[[int], None] | None
) -> int:
    """Delete the rows of ``queryset`` a batch at a time, oldest first; return how many."""
    alias = queryset.db
    connection = connections[alias]
    qn = connection.ops.quote_name
    meta = queryset.model._meta
    table, pk = qn(meta.db_table), qn(meta.pk.column)  # type: ignore[union-attr]
    pk_type = meta.pk.rel_db_type(connection)  # type: ignore[union-attr]
    # Keys in index order: each SELECT is a short range scan of the purge
    # index (a plan that does not depend on statistics), and an interrupted
    # purge has removed the oldest rows first.
    keys = queryset.order_by(order_by).values_list("pk", flat=True)[:batch_size]
    select_sql, select_params = keys.query.get_compiler(using=alias).as_sql()
    # The DELETE repeats the expiry condition: a row another purge already
    # took is skipped, and a row that is not (or no longer) expired is kept.
    where_sql, where_params = queryset.query.get_compiler(using=alias).compile(queryset.query.where)
    total = 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(select_sql, select_params)
            pks = [row[0] for row in cursor.fetchall()]
            if not pks:
                return total
            # Integers read back from the table and re-checked by int().
            listed = ",".join(str(int(value)) for value in pks)
            if connection.vendor == "postgresql":
                # One array parameter: an index scan of the primary key, and no
                # per-element quoting by the driver.
                in_sql, in_params = f"{pk} = ANY(%s::{pk_type}[])", ["{" + listed + "}"]
            elif connection.vendor == "sqlite" and connection.features.supports_json_field:
                # One JSON parameter: the statement text stays the same, so the
                # driver's statement cache holds one prepared DELETE instead of
                # a hundred 5,000-literal ones (80 MB measured).
                in_sql, in_params = f"{pk} IN (SELECT value FROM json_each(%s))", ["[" + listed + "]"]  # noqa: S608
            else:
                # Literals: safe (integers), and no limit on bound parameters.
                in_sql, in_params = f"{pk} IN ({listed})", []
            cursor.execute(
                f"DELETE FROM {table} WHERE {in_sql} AND ({where_sql})",  # noqa: S608 - quoted names, bound values
                [*in_params, *where_params],
            )
            total += cursor.rowcount
        if progress is not None:
            progress(total)
        if len(pks) < batch_size:
            return total
