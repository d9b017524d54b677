"""The alternatives measured beside ephemeral_auth in the same run.

* Django's ``PasswordResetTokenGenerator``: signed, stateless tokens (no
  statement, but not single-use until the password changes).
* ``naive_attempt``: the seed's read-modify-write limiter (count, then insert
  if under the limit). Fewer statements when refused, but racy: concurrent
  callers all see the same count and all get in.
* ``insert_always_attempt``: the simplest race-free fix (insert, then count
  including one's own row). Correct under concurrency, but every refused
  attempt adds a row, so a flood grows the key without bound and its count
  slows down with it.
* ``orm_pk_in_purge``: ephemeral_auth's purge before the benchmark (same
  batches and conditions, but each batch went through the ORM: a SELECT of
  keys, then a ``pk__in`` DELETE of 5,000 bound parameters).
* ``single_delete_purge``: one DELETE per table: the fastest, but one long
  transaction that locks every expired row until it commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import QuerySet

from ephemeral_auth import clock, conf
from ephemeral_auth.exceptions import RateLimited
from ephemeral_auth.models import EphemeralToken, RateLimitEvent, TokenType

__all__ = ["insert_always_attempt", "naive_attempt", "orm_pk_in_purge", "single_delete_purge", "window_count"]


def window_count(event_type: str, key: str, window: timedelta) -> int:
    """Return the number of events of ``key`` in the window (what both alternatives count)."""
    return RateLimitEvent.objects.in_window(event_type, key, clock.now() - window).count()


def naive_attempt(event_type: str, key: str, *, limit: int, window: timedelta) -> None:
    """Count, then record if under the limit (racy read-modify-write)."""
    if window_count(event_type, key, window) >= limit:
        raise RateLimited(retry_after=int(window.total_seconds()), event_type=event_type)
    RateLimitEvent.objects.create(event_type=event_type, key=key, occurred_at=clock.now())


def insert_always_attempt(event_type: str, key: str, *, limit: int, window: timedelta) -> None:
    """Record, then count including the own row (race-free, unbounded rows)."""
    RateLimitEvent.objects.create(event_type=event_type, key=key, occurred_at=clock.now())
    if window_count(event_type, key, window) > limit:
        raise RateLimited(retry_after=int(window.total_seconds()), event_type=event_type)


def _orm_batches(queryset: QuerySet[Any], batch_size: int) -> int:
    total = 0
    while True:
        pks = list(queryset.values_list("pk", flat=True)[:batch_size])
        if not pks:
            return total
        total += queryset.filter(pk__in=pks)._raw_delete(queryset.db)
        if len(pks) < batch_size:
            return total


def orm_pk_in_purge(now: datetime, batch_size: int) -> int:
    """Purge as ephemeral_auth did before its purge was tuned; return the rows deleted."""
    total = sum(
        _orm_batches(EphemeralToken.objects.filter(token_type=t, expires_at__lte=now), batch_size)
        for t in TokenType.values
    )
    return total + _orm_batches(RateLimitEvent.objects.older_than(now - conf.longest_window()), batch_size)


def single_delete_purge(now: datetime) -> int:
    """Purge with one DELETE per table; return the rows deleted."""
    tokens = EphemeralToken.objects.filter(expires_at__lte=now)
    events = RateLimitEvent.objects.older_than(now - conf.longest_window())
    return int(tokens._raw_delete(tokens.db)) + int(events._raw_delete(events.db))
