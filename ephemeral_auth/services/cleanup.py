"""Purge expired tokens and rate-limit events that no window can count any more.

Deletes in batches of primary keys so that each statement holds its locks
briefly and memory stays bounded whatever the table size. Two purges running
at once are harmless: each batch deletes by primary key *and* by the expiry
condition, so a row is deleted once and a live row is never touched.

Cost (measured by bench/run.py, docs/benchmarks.md): each batch is one SELECT
of at most ``batch_size`` keys walking the purge index oldest first, then one
DELETE whose key list travels as one parameter (a PostgreSQL array, a JSON
array on SQLite; integer literals on MySQL/MariaDB). Both statements are
compiled once per loop: going through the ORM for every batch (a ``pk__in``
lookup of 5,000 parameters) cost more than the database work itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import connections, router
from django.db.models import QuerySet

from .. import clock, conf
from ..models import EphemeralToken, RateLimitEvent, TokenType

__all__ = ["PurgeResult", "purge_expired"]

logger = logging.getLogger("ephemeral_auth.cleanup")


@dataclass
class PurgeResult:
    """Rows deleted (or, on a dry run, that would be) per token type and for events."""

    tokens: dict[str, int] = field(default_factory=dict)
    events: int = 0
    dry_run: bool = False

    @property
    def total(self) -> int:
        return sum(self.tokens.values()) + self.events


def _delete_in_batches(
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


def purge_expired(
    *,
    batch_size: int | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> PurgeResult:
    """Delete expired tokens and events older than the longest window; return counts."""
    batch_size = int(conf.get("PURGE_BATCH_SIZE") if batch_size is None else batch_size)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    now = now or clock.now()
    result = PurgeResult(dry_run=dry_run)

    token_alias = router.db_for_write(EphemeralToken)
    for token_type in TokenType.values:
        expired = EphemeralToken.objects.using(token_alias).filter(
            token_type=token_type, expires_at__lte=now
        )
        if dry_run:
            result.tokens[token_type] = expired.count()
            continue
        report = (lambda n, t=token_type: progress(t, n)) if progress else None
        result.tokens[token_type] = _delete_in_batches(expired, "expires_at", batch_size, report)

    event_alias = router.db_for_write(RateLimitEvent)
    stale = RateLimitEvent.objects.using(event_alias).older_than(now - conf.longest_window())
    if dry_run:
        result.events = stale.count()
    else:
        report_events = (lambda n: progress("events", n)) if progress else None
        result.events = _delete_in_batches(stale, "occurred_at", batch_size, report_events)
    logger.info("purged %s expired rows", result.total)
    return result
