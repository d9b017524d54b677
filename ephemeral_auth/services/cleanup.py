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
lookup of 5,000 parameters) cost more than the database work itself. The
batch statements, per database engine, are in ``services/engine/purge_sql.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import router

from .. import clock, conf
from ..models import EphemeralToken, RateLimitEvent, TokenType
from .engine import purge_sql

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
        result.tokens[token_type] = purge_sql.delete_in_batches(expired, "expires_at", batch_size, report)

    event_alias = router.db_for_write(RateLimitEvent)
    stale = RateLimitEvent.objects.using(event_alias).older_than(now - conf.longest_window())
    if dry_run:
        result.events = stale.count()
    else:
        report_events = (lambda n: progress("events", n)) if progress else None
        result.events = purge_sql.delete_in_batches(stale, "occurred_at", batch_size, report_events)
    logger.info("purged %s expired rows", result.total)
    return result
