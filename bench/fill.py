"""Fill the two tables fast with set-based SQL (no ORM objects, no Python loop).

PostgreSQL uses ``generate_series``; SQLite a recursive CTE. Rows are spread
deterministically from the row number ``g``: keys over many subjects, the six
event or token types, and times spread over the past day, so the indexes see
a realistic mix rather than one long run of equal values.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from ephemeral_auth.models import EphemeralToken, EventType, RateLimitEvent, TokenType

__all__ = [
    "analyze",
    "count_rows",
    "fill_events",
    "fill_hot_key",
    "fill_purge_events",
    "fill_purge_tokens",
    "live_checksums",
    "truncate",
]

EVENTS = RateLimitEvent._meta.db_table
TOKENS = EphemeralToken._meta.db_table
SQLITE_TIME_FORMAT = "%Y-%m-%d %H:%M:%f"


def _q(name: str) -> str:
    return connections[DEFAULT_DB_ALIAS].ops.quote_name(name)


def _case(values: list[str]) -> tuple[str, list[Any]]:
    """Return a CASE picking ``values[g % len(values)]``."""
    whens = " ".join(f"WHEN {i} THEN %s" for i in range(len(values)))
    return f"CASE g %% {len(values)} {whens} END", list(values)


def _at(connection: BaseDatabaseWrapper, base: datetime, seconds_sql: str) -> tuple[str, list[Any]]:
    """Return SQL for ``base + seconds_sql`` seconds (the expression may be negative)."""
    value = connection.ops.adapt_datetimefield_value(base)
    if connection.vendor == "postgresql":
        return f"(%s::timestamptz + make_interval(secs => ({seconds_sql})))", [value]
    # Django stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' text in UTC;
    # strftime keeps that shape (milliseconds), so comparisons stay textual.
    return f"strftime(%s, %s, ({seconds_sql}) || ' seconds')", [SQLITE_TIME_FORMAT, value]


def _insert_series(
    connection: BaseDatabaseWrapper,
    table: str,
    columns: list[str],
    exprs: list[tuple[str, list[Any]]],
    start: int,
    stop: int,
) -> None:
    """INSERT one row per g in [start, stop) with the given column expressions."""
    if stop <= start:
        return
    select = ", ".join(sql for sql, _ in exprs)
    select_params = [p for _, params in exprs for p in params]
    head = f"INSERT INTO {_q(table)} ({', '.join(_q(c) for c in columns)}) "
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                head + f"SELECT {select} FROM generate_series(%s::bigint, %s::bigint) AS s(g)",
                [*select_params, start, stop - 1],
            )
        else:
            cursor.execute(
                "WITH RECURSIVE s(g) AS (SELECT %s UNION ALL SELECT g + 1 FROM s WHERE g < %s) "
                + head
                + f"SELECT {select} FROM s",
                [start, stop - 1, *select_params],
            )


def truncate(using: str = DEFAULT_DB_ALIAS) -> None:
    """Empty both tables."""
    connection = connections[using]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"TRUNCATE {_q(TOKENS)}, {_q(EVENTS)} RESTART IDENTITY")
        else:
            cursor.execute(f"DELETE FROM {_q(TOKENS)}")
            cursor.execute(f"DELETE FROM {_q(EVENTS)}")


def analyze(using: str = DEFAULT_DB_ALIAS) -> None:
    """Refresh planner statistics (and the visibility map on PostgreSQL), as autovacuum would."""
    connection = connections[using]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"VACUUM ANALYZE {_q(TOKENS)}")
            cursor.execute(f"VACUUM ANALYZE {_q(EVENTS)}")
        else:
            cursor.execute("ANALYZE")


def count_rows(table: str = EVENTS, using: str = DEFAULT_DB_ALIAS) -> int:
    """Return the number of rows of ``table``."""
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {_q(table)}")
        return int(cursor.fetchone()[0])


def fill_events(start: int, stop: int, *, base: datetime, keys: int, using: str = DEFAULT_DB_ALIAS) -> None:
    """Add background events g in [start, stop): ``keys`` subjects, all types, over the past day."""
    connection = connections[using]
    _insert_series(
        connection,
        EVENTS,
        ["key", "event_type", "occurred_at"],
        [
            (f"'u' || (g %% {keys}) || '@example.com'", []),
            _case(list(EventType.values)),
            # 7919 is prime: consecutive rows land far apart in time.
            _at(connection, base, "-(1 + (g * 7919) %% 86400)"),
        ],
        start,
        stop,
    )


def fill_hot_key(
    key: str, event_type: str, *, base: datetime, in_window: int, history: int, using: str = DEFAULT_DB_ALIAS
) -> None:
    """Give one key ``in_window`` events in the last seconds and ``history`` older ones."""
    connection = connections[using]
    columns = ["key", "event_type", "occurred_at"]
    fixed = [("%s", [key]), ("%s", [event_type])]
    _insert_series(connection, EVENTS, columns, [*fixed, _at(connection, base, "-g")], 1, in_window + 1)
    _insert_series(connection, EVENTS, columns, [*fixed, _at(connection, base, "-(3600 + g)")], 0, history)


def fill_purge_tokens(*, base: datetime, expired: int, live: int, using: str = DEFAULT_DB_ALIAS) -> None:
    """Add ``expired`` tokens (expired over the past day) interleaved with ``live`` live ones (every k-th row)."""
    connection = connections[using]
    total = expired + live
    stride = total // live
    token_sql = "'z' || lpad(g::text, 63, '0')" if connection.vendor == "postgresql" else "'z' || printf('%%063d', g)"
    future_sql, future_params = _at(connection, base, "60 + g %% 3000")
    # Expiry grows with the row number, as in production (expires_at is
    # created_at plus a fixed TTL per type): older rows sit earlier on disk.
    past_sql, past_params = _at(connection, base, f"-(1 + (({total} - g) * 86400) / {total})")
    created_sql, created_params = _at(connection, base, "-86400")
    _insert_series(
        connection,
        TOKENS,
        [
            "token", "token_type", "user_id", "provider", "nonce", "code_verifier", "challenge_id",
            "code_hash", "resource", "methods", "next_url", "mode", "attempts", "expires_at", "created_at",
        ],
        [
            # 'z' is not a hex digit: no collision with a real digest.
            (token_sql, []),
            _case(list(TokenType.values)),
            ("NULL", []),
            *[("''", [])] * 9,
            ("0", []),
            (f"CASE WHEN g %% {stride} = 0 THEN {future_sql} ELSE {past_sql} END", future_params + past_params),
            (created_sql, created_params),
        ],
        0,
        total,
    )


def fill_purge_events(
    *, base: datetime, stale: int, live: int, keep_seconds: int, using: str = DEFAULT_DB_ALIAS
) -> None:
    """Add ``stale`` events older than the longest window interleaved with ``live`` recent ones."""
    connection = connections[using]
    total = stale + live
    stride = total // live
    recent_sql, recent_params = _at(connection, base, f"-(g %% {max(1, keep_seconds - 60)})")
    old_sql, old_params = _at(connection, base, f"-({keep_seconds + 60} + (({total} - g) * 86400) / {total})")
    _insert_series(
        connection,
        EVENTS,
        ["key", "event_type", "occurred_at"],
        [
            ("'u' || (g %% 100000) || '@example.com'", []),
            _case(list(EventType.values)),
            (f"CASE WHEN g %% {stride} = 0 THEN {recent_sql} ELSE {old_sql} END", recent_params + old_params),
        ],
        0,
        total,
    )


def live_checksums(*, base: datetime, keep_seconds: int, using: str = DEFAULT_DB_ALIAS) -> dict[str, Any]:
    """Return count and id sum of the rows a purge at ``base`` must keep, and the table sizes."""
    connection = connections[using]
    now_value = connection.ops.adapt_datetimefield_value(base)
    cutoff = connection.ops.adapt_datetimefield_value(base - timedelta(seconds=keep_seconds))
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*), COALESCE(SUM(id), 0) FROM {_q(TOKENS)} WHERE expires_at > %s", [now_value])
        tokens = cursor.fetchone()
        cursor.execute(f"SELECT COUNT(*), COALESCE(SUM(id), 0) FROM {_q(EVENTS)} WHERE occurred_at > %s", [cutoff])
        events = cursor.fetchone()
        cursor.execute(f"SELECT COUNT(*) FROM {_q(TOKENS)}")
        token_rows = cursor.fetchone()[0]
        cursor.execute(f"SELECT COUNT(*) FROM {_q(EVENTS)}")
        event_rows = cursor.fetchone()[0]
    return {
        "live_tokens": [int(tokens[0]), int(tokens[1])],
        "live_events": [int(events[0]), int(events[1])],
        "token_rows": int(token_rows),
        "event_rows": int(event_rows),
    }
