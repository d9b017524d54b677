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
* ``record_first`` is the same argument split in two, for work that is paid
  for in several buckets at once and may turn out not to count (a password
  step: per account and per IP, and a right password is no failure). One
  INSERT records every bucket (one commit), the caller confirms with one
  SELECT (its own, or folded into a SELECT it makes anyway), does the work
  only if every bucket admitted it, then keeps the rows or withdraws exactly
  them by primary key: a success never deletes anybody else's events.
* Every query is a range scan of the ``(event_type, key, occurred_at)`` index
  bounded by ``limit`` rows, so it costs the same with 10^3 or 10^7 rows in
  the table.

The statements themselves, per database engine, are written in
``services/engine/ratelimit_sql.py``; this module decides what they mean.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import router
from django.db.models import Case, Count, F, IntegerField, Q, Value, When, Window
from django.db.models.functions import RowNumber

from .. import clock, conf
from ..exceptions import InvalidInput, RateLimited
from ..models import EventType, RateLimitEvent
from ..signals import rate_limited
from .engine import ratelimit_sql
from .inputs import clean_text

__all__ = [
    "Bucket",
    "Provisional",
    "account_key",
    "attempt",
    "attempt_many",
    "check",
    "clear",
    "count",
    "ip_key",
    "record_first",
    "subject_key",
    "withdraw",
]

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


def account_key(pk: Any) -> str:
    """Return the key of an account's own buckets: ``u:<pk>``, never shared by two accounts.

    Keying by the primary key, not by the (casefolded) name, keeps "straße"
    and "strasse" apart, and survives a rename.
    """
    if pk is None or isinstance(pk, bool):
        raise InvalidInput("key: expected a saved user", field="key")
    return f"u:{pk}"


def ip_key(address: Any) -> str:
    """Return the key of a client IP: an IPv4 address, or an IPv6 network (canonical text).

    An IPv6 address counts as its ``EPHEMERAL_AUTH_IPV6_PREFIX`` network
    (default /64, what one subscriber usually holds), so a client cannot get a
    fresh budget per address from its own prefix: "2001:db8::1" and
    "2001:db8::ffff" are both "2001:db8::/64". With the prefix at 128 every
    address is its own key. An IPv4-mapped IPv6 address ("::ffff:10.0.0.1") is
    its IPv4 address, as in ``client_ip``: one key on every Python (3.13 spells
    such addresses differently) and the bucket that the client's requests fill.
    """
    text = clean_text(address, field="ip", max_length=64)
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError as exc:
        raise InvalidInput("ip: not an IP address", field="ip") from exc
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.compressed
    if isinstance(ip, ipaddress.IPv6Address):
        prefix = int(conf.get("IPV6_PREFIX"))
        if prefix < 128:
            return str(ipaddress.IPv6Network((int(ip), prefix), strict=False))
    return ip.compressed


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

    Two statements whether admitted or refused: a conditional INSERT, then
    one SELECT that confirms it (or finds the Retry-After); a third, a DELETE
    of the caller's own row, only when a racer beat it to the last place.
    """
    bucket = _bucket(event_type, key, limit, window)
    if not conf.get("RATE_LIMITING_ENABLED"):
        return
    _record([bucket], now or clock.now()).confirm()


# Record first, for callers that pay for several buckets at once or must undo
# the recording when the work turns out not to be a failure (a right password).


@dataclass(frozen=True)
class Bucket:
    """One ``(event_type, key)`` bucket with the limit and window it is held to."""

    event_type: str
    key: str
    limit: int
    window: timedelta


def _bucket(event_type: Any, key: Any, limit: int | None = None, window: timedelta | None = None) -> Bucket:
    event_type, key = _event_type(event_type), _key(key)
    limit, window = _limits(event_type, limit, window)
    return Bucket(event_type=event_type, key=key, limit=limit, window=window)


@dataclass
class Provisional:
    """Events recorded *before* the work they pay for (see :func:`record_first`).

    ``pks[i]`` is the row recorded in ``buckets[i]``, or None when that bucket
    was full. After :meth:`confirm` (or :meth:`settle`), ``counts[i]`` is how
    many events ``buckets[i]`` holds inside its window, this one included.
    """

    buckets: tuple[Bucket, ...]
    pks: tuple[int | None, ...]
    now: datetime
    alias: str
    counts: tuple[int, ...] = ()
    withdrawn: bool = False

    @property
    def recorded(self) -> list[int]:
        """Return the primary keys of the rows this attempt wrote."""
        return [pk for pk in self.pks if pk is not None]

    def confirm_sql(self) -> tuple[list[str], list[Any]]:
        """Return SELECT-list expressions (three per bucket) and their parameters; feed the values to :meth:`settle`.

        For a caller that folds the confirmation into a SELECT it makes anyway
        (the login step reads the account in the same statement). The SELECT
        must run on ``alias``, in autocommit, *after* :func:`record_first`, and
        on a Galera cluster be causal (wrap it in :func:`ephemeral_auth.services.engine.causal`).
        """
        return ratelimit_sql.confirmation_sql(self.alias, self.buckets, self.now)

    def settle(self, values: Sequence[Any]) -> None:
        """Judge the confirmation values; withdraw every row and raise RateLimited if any bucket is over.

        A bucket is over when its conditional insert found it full, or when
        the recount after our insert (which sees every racer that committed
        before it) exceeds the limit. The exception carries the longest
        Retry-After of the refusing buckets; ``rate_limited`` is sent for each.
        """
        counts: list[int] = []
        refusing: list[tuple[Bucket, datetime | None]] = []
        for n, (bucket, pk) in enumerate(zip(self.buckets, self.pks, strict=True)):
            seen = int(values[3 * n] or 0)
            limit_th = ratelimit_sql.moment(self.alias, values[3 * n + 1])
            next_one = ratelimit_sql.moment(self.alias, values[3 * n + 2])
            counts.append(seen)
            if pk is None or seen > bucket.limit:
                # The key is free again when the limit-th newest event *other
                # than ours* leaves the window (what check() reports once our
                # row is withdrawn). Ours is dated `now`; if it is among the
                # limit newest (or tied with the limit-th, which is the same),
                # skipping it makes the (limit+1)-th the one.
                blocking = limit_th
                if pk is not None and limit_th is not None and limit_th <= self.now:
                    blocking = next_one
                refusing.append((bucket, blocking if bucket.limit > 0 else None))
        self.counts = tuple(counts)
        if not refusing:
            return
        # A refused caller leaves nothing behind, in any bucket: its work is not
        # done, so it is no failure, and a blocked key does not grow.
        self.withdraw()
        refusals = [
            _refuse(bucket.event_type, bucket.key, blocking or self.now, bucket.window, self.now)
            for bucket, blocking in refusing
        ]
        raise max(refusals, key=lambda exc: exc.retry_after)

    def confirm(self) -> None:
        """Recount every bucket after the insert (one SELECT); see :meth:`settle` for what it raises."""
        if not self.buckets:
            self.counts = ()
            return
        columns, params = self.confirm_sql()
        self.settle(ratelimit_sql.recount(self.alias, columns, params))

    def withdraw(self) -> int:
        """Delete exactly the rows this attempt recorded (one DELETE); return how many. Idempotent."""
        if self.withdrawn:
            return 0
        self.withdrawn = True
        return _delete_events(self.alias, self.recorded)


def _record(buckets: Sequence[Bucket], now: datetime) -> Provisional:
    """Insert one event into every bucket that has room, in one statement where the backend allows it."""
    alias = router.db_for_write(RateLimitEvent)
    names = [(bucket.event_type, bucket.key) for bucket in buckets]
    if len(set(names)) != len(names):
        raise InvalidInput("the same bucket twice", field="buckets")
    open_buckets = [bucket for bucket in buckets if bucket.limit > 0]
    recorded = ratelimit_sql.insert(alias, open_buckets, now)
    pks = tuple(recorded.get(name) for name in names)
    return Provisional(buckets=tuple(buckets), pks=pks, now=now, alias=alias)


def _delete_events(alias: str, pks: Sequence[int]) -> int:
    if not pks:
        return 0
    queryset = RateLimitEvent.objects.using(alias).filter(pk__in=list(pks))
    return int(queryset._raw_delete(alias))


def record_first(buckets: Iterable[tuple[str, str]], *, now: datetime | None = None) -> Provisional:
    """Record one event in each ``(event_type, key)`` bucket that has room, before the work it pays for.

    One conditional INSERT for all the buckets (one per bucket on backends
    without ``INSERT ... RETURNING``); nothing is judged yet: call
    :meth:`Provisional.confirm` (or fold :meth:`Provisional.confirm_sql` into
    a SELECT of your own and call :meth:`Provisional.settle`) before doing
    the work, then keep the rows (a failure) or :meth:`Provisional.withdraw`
    them (a success). Raises InvalidInput for a bad event type or key, or the
    same bucket twice. With rate limiting switched off, records nothing.
    """
    now = now or clock.now()
    checked = [_bucket(event_type, key) for event_type, key in buckets]
    if not conf.get("RATE_LIMITING_ENABLED"):
        return Provisional(buckets=(), pks=(), now=now, alias=router.db_for_write(RateLimitEvent))
    return _record(checked, now)


def attempt_many(buckets: Iterable[tuple[str, str]], *, now: datetime | None = None) -> list[int]:
    """Record one event in every ``(event_type, key)`` bucket, or raise RateLimited recording nothing.

    Like :func:`attempt` for several buckets at once, all or nothing: two
    statements (one INSERT, one SELECT), three when a racer took a last place
    (the DELETE that withdraws our rows). Returns the primary keys of the new
    rows, for :func:`withdraw` once the work turns out not to count.
    """
    provisional = record_first(buckets, now=now)
    provisional.confirm()
    return provisional.recorded


def withdraw(pks: Iterable[int]) -> int:
    """Delete the events with these primary keys (one DELETE); return how many were deleted."""
    checked: list[int] = []
    for pk in pks:
        if isinstance(pk, bool) or not isinstance(pk, int):
            raise InvalidInput("expected event ids", field="pks")
        checked.append(pk)
    return _delete_events(router.db_for_write(RateLimitEvent), checked)


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
