"""Sliding-window rate limits kept as rows of ``auth_rate_limit_events``.

Security and concurrency reasoning:

* ``attempt`` records with a *conditional* insert: the row is written only if
  the key has fewer than ``limit`` events inside the window. A blocked
  subject therefore adds no rows: a flood against one key cannot grow the
  table nor slow that key's count (it never holds more than about ``limit``
  rows per window).
* Two racers may both pass the condition (under READ COMMITTED each sees the
  other's row only once committed). So an admitted caller counts again after
  its own insert; the count includes every admitted row committed before it,
  and if it exceeds the limit the caller withdraws its row and is refused.
  Of N concurrent callers at most ``limit`` are admitted (the last racer to
  commit always sees all of them); under contention a few more may be refused,
  which errs on the safe side.
* Every query is a range scan of the ``(event_type, key, occurred_at)`` index
  bounded by ``limit`` rows, so it costs the same with 10^3 or 10^7 rows in
  the table.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connections, router
from django.db.models import Case, Count, F, IntegerField, Q, Value, When, Window
from django.db.models.functions import RowNumber

from .. import clock, conf
from ..exceptions import InvalidInput, RateLimited
from ..models import EventType, RateLimitEvent
from ..signals import rate_limited
from .inputs import clean_text

__all__ = ["attempt", "check", "clear", "count", "ip_key", "subject_key"]

logger = logging.getLogger("ephemeral_auth.ratelimit")

KEY_MAX_LENGTH = 254


def subject_key(value: Any) -> str:
    """Return the normalised key of a username or email (casefolded, trimmed).

    One subject, one key: "Alice", " alice " and "ALICE" share a bucket.
    """
    text = clean_text(value, field="key", max_length=4096)
    key = text.strip().casefold()
    if not key or len(key) > KEY_MAX_LENGTH:
        raise InvalidInput("key: expected 1 to 254 characters", field="key")
    return key


def ip_key(address: Any) -> str:
    """Return the key of a client IP in its canonical text form."""
    text = clean_text(address, field="ip", max_length=64)
    try:
        return ipaddress.ip_address(text.strip()).compressed
    except ValueError as exc:
        raise InvalidInput("ip: not an IP address", field="ip") from exc


def _event_type(value: Any) -> str:
    if value not in EventType.values:
        raise InvalidInput("unknown event type", field="event_type")
    return str(value)


def _key(value: Any) -> str:
    key = clean_text(value, field="key", max_length=KEY_MAX_LENGTH)
    return key


def _limits(event_type: str, limit: int | None, window: timedelta | None) -> tuple[int, timedelta]:
    configured = conf.rate_limit(event_type)
    return (
        configured.limit if limit is None else int(limit),
        configured.window if window is None else window,
    )


def _nth_newest(
    alias: str, event_type: str, key: str, since: datetime, n: int
) -> datetime | None:
    """Return the time of the n-th newest event in the window (1-based), if any."""
    rows = list(
        RateLimitEvent.objects.using(alias)
        .in_window(event_type, key, since)
        .order_by("-occurred_at")
        .values_list("occurred_at", flat=True)[n - 1 : n]
    )
    return rows[0] if rows else None


def _refuse(event_type: str, key: str, blocking: datetime, window: timedelta, now: datetime) -> RateLimited:
    retry_after = math.ceil((blocking + window - now).total_seconds())
    exc = RateLimited(retry_after=retry_after, event_type=event_type)
    logger.info("rate limited: %s (retry after %ss)", event_type, exc.retry_after)
    rate_limited.send(sender=RateLimitEvent, event_type=event_type, key=key, retry_after=exc.retry_after)
    return exc


def check(
    event_type: str,
    key: str,
    *,
    limit: int | None = None,
    window: timedelta | None = None,
    now: datetime | None = None,
) -> None:
    """Raise RateLimited if ``key`` has used up its budget; record nothing. One SELECT."""
    event_type, key = _event_type(event_type), _key(key)
    if not conf.get("RATE_LIMITING_ENABLED"):
        return
    limit, window = _limits(event_type, limit, window)
    now = now or clock.now()
    alias = router.db_for_read(RateLimitEvent)
    if limit <= 0:
        raise _refuse(event_type, key, now, window, now)
    blocking = _nth_newest(alias, event_type, key, now - window, limit)
    if blocking is not None:
        raise _refuse(event_type, key, blocking, window, now)


def attempt(
    event_type: str,
    key: str,
    *,
    limit: int | None = None,
    window: timedelta | None = None,
    now: datetime | None = None,
) -> None:
    """Record one event for ``key``, or raise RateLimited (recording nothing).

    Two statements whether admitted or refused: a conditional INSERT, then a
    count (admitted) or the retry-after lookup (refused).
    """
    event_type, key = _event_type(event_type), _key(key)
    if not conf.get("RATE_LIMITING_ENABLED"):
        return
    limit, window = _limits(event_type, limit, window)
    now = now or clock.now()
    since = now - window
    alias = router.db_for_write(RateLimitEvent)
    if limit <= 0:
        raise _refuse(event_type, key, now, window, now)

    connection = connections[alias]
    qn = connection.ops.quote_name
    meta = RateLimitEvent._meta
    table = qn(meta.db_table)
    f_key, f_type, f_at = (meta.get_field(n) for n in ("key", "event_type", "occurred_at"))
    c_key, c_type, c_at = (qn(str(f.column)) for f in (f_key, f_type, f_at))  # type: ignore[union-attr]
    at = f_at.get_db_prep_value(now, connection)  # type: ignore[union-attr]
    since_value = f_at.get_db_prep_value(since, connection)  # type: ignore[union-attr]
    # The inner LIMIT bounds the scan to `limit` index entries. MySQL refuses
    # LIMIT inside an IN/ALL subquery but accepts it in a derived table.
    sql = (
        f"INSERT INTO {table} ({c_key}, {c_type}, {c_at}) "  # noqa: S608 - identifiers quoted, values bound
        f"SELECT %s, %s, %s FROM (SELECT 1 AS one) AS seed WHERE "
        f"(SELECT COUNT(*) FROM (SELECT 1 AS hit FROM {table} "
        f"WHERE {c_type} = %s AND {c_key} = %s AND {c_at} > %s LIMIT %s) AS recent) < %s"
    )
    returning = connection.features.can_return_columns_from_insert
    if returning:
        sql += f" RETURNING {qn(str(meta.pk.column))}"
    with connection.cursor() as cursor:
        cursor.execute(sql, [key, event_type, at, event_type, key, since_value, limit, limit])
        if returning:
            row = cursor.fetchone()
            own_pk = row[0] if row else None
        else:
            own_pk = cursor.lastrowid if cursor.rowcount == 1 else None

    if own_pk is None:
        blocking = _nth_newest(alias, event_type, key, since, limit)
        raise _refuse(event_type, key, blocking or now, window, now)

    # Admitted by the condition; confirm against racers that passed it too.
    seen = (
        RateLimitEvent.objects.using(alias)
        .in_window(event_type, key, since)
        .values_list("pk", flat=True)[: limit + 1]
    )
    if len(seen) > limit:
        # Withdraw our own row, so a refused caller leaves nothing behind.
        RateLimitEvent.objects.using(alias).filter(pk=own_pk)._raw_delete(alias)
        blocking = _nth_newest(alias, event_type, key, since, limit)
        raise _refuse(event_type, key, blocking or now, window, now)


def count(event_type: str, key: str, *, window: timedelta | None = None, now: datetime | None = None) -> int:
    """Return how many events ``key`` has inside the window (for admin and tests)."""
    event_type, key = _event_type(event_type), _key(key)
    _, window = _limits(event_type, None, window)
    now = now or clock.now()
    return RateLimitEvent.objects.using(router.db_for_read(RateLimitEvent)).in_window(
        event_type, key, now - window
    ).count()


def clear(event_type: str | None, key: str) -> int:
    """Delete the events of ``key`` (of one type, or of every type if None); return how many."""
    key = _key(key)
    queryset = RateLimitEvent.objects.using(router.db_for_write(RateLimitEvent)).filter(key=key)
    if event_type is not None:
        queryset = queryset.filter(event_type=_event_type(event_type))
    deleted = queryset._raw_delete(queryset.db)
    logger.info("cleared %s rate-limit events", deleted)
    return int(deleted)


# Who is locked out now (admin view, ``ephemeral_auth_unlock --list``).


@dataclass(frozen=True)
class LockedOut:
    """A subject whose bucket is full: ``check`` would refuse it for ``retry_after`` seconds."""

    event_type: str
    key: str
    count: int
    retry_after: int


def locked_out(*, now: datetime | None = None) -> list[LockedOut]:
    """Return every subject currently over its configured limit, in one query.

    A subject is locked out exactly when :func:`check` would refuse it: it has
    at least ``limit`` events inside its window. A window function ranks each
    subject's events newest first; the row ranked ``limit`` is the event whose
    expiry unblocks the subject (the one :func:`check` reports), so the answer
    is a single statement, not one query per subject. Empty when rate
    limiting is switched off.
    """
    if not conf.get("RATE_LIMITING_ENABLED"):
        return []
    now = now or clock.now()
    limits = {event_type: conf.rate_limit(event_type) for event_type in EventType.values}
    in_window = Q()
    for event_type, configured in limits.items():
        in_window |= Q(event_type=event_type, occurred_at__gt=now - configured.window)
    partition = [F("event_type"), F("key")]
    rows = (
        RateLimitEvent.objects.using(router.db_for_read(RateLimitEvent))
        .filter(in_window)
        .annotate(
            rank=Window(RowNumber(), partition_by=partition, order_by=F("occurred_at").desc()),
            total=Window(Count("pk"), partition_by=partition),
            limit=Case(
                *(When(event_type=t, then=Value(c.limit)) for t, c in limits.items()),
                output_field=IntegerField(),
            ),
        )
        .filter(rank=F("limit"))
        .values_list("event_type", "key", "total", "occurred_at")
    )
    found = [
        LockedOut(
            event_type=event_type,
            key=key,
            count=int(total),
            retry_after=max(1, math.ceil((blocking + limits[event_type].window - now).total_seconds())),
        )
        for event_type, key, total, blocking in rows
    ]
    return sorted(found, key=lambda subject: (subject.event_type, subject.key))


__all__ += ["LockedOut", "locked_out"]
