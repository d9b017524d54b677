"""The benchmark sections. Each prints its table and returns JSON-able figures.

Every section starts from empty tables, so sections do not disturb each
other's indexes or row counts.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.db import connection
from django.test import override_settings

from ephemeral_auth import clock, conf
from ephemeral_auth.exceptions import InvalidToken, RateLimited
from ephemeral_auth.models import EventType, RateLimitEvent, TokenType
from ephemeral_auth.services import ratelimit, tokens

from . import fill
from .alternatives import insert_always_attempt, naive_attempt, window_count
from .report import heading, table
from .timing import count_statements, interleaved_us, no_context, rate

__all__ = ["FULL", "QUICK", "Scale", "bench_user", "flood", "purge", "statements", "table_size", "throughput"]

EVENT = EventType.LOGIN_ATTEMPT  # 10 per 15 minutes by default
CHALLENGE = "bench-browser-challenge-cookie-value-0123456789"


@dataclass(frozen=True)
class Scale:
    """How much work each section does."""

    ops: int  # calls per timed run
    runs: int  # timed runs per figure (the median is reported)
    sizes: tuple[int, int]  # event-table sizes compared by the check benchmark
    check_calls: int  # calls per timed run of the check benchmark
    check_runs: int  # alternating runs of the check benchmark (the median ratio is reported)
    flood: int  # refused attempts against one key
    alt_flood: int  # refused attempts against the insert-always alternative
    purge_rows: int  # expired tokens, and stale events, to purge
    purge_live: int  # live tokens, and live events, that must survive


QUICK = Scale(ops=150, runs=3, sizes=(10**3, 10**5), check_calls=200, check_runs=3, flood=2_000, alt_flood=1_000,
              purge_rows=10**4, purge_live=10**2)
FULL = Scale(ops=500, runs=5, sizes=(10**3, 10**6), check_calls=500, check_runs=9, flood=100_000, alt_flood=5_000,
             purge_rows=10**6, purge_live=10**4)


def bench_user() -> Any:
    """Return the user tokens are issued to (created once)."""
    user_model = get_user_model()
    user, created = user_model._default_manager.get_or_create(
        username="bench", defaults={"email": "bench@example.com", "last_login": clock.now()}
    )
    if created:
        user.set_password("bench-password-not-secret")
        user.save()
    return user


def _outcome(fn: Callable[[], Any]) -> str:
    """Run ``fn``; return "ok" or the code of the ephemeral_auth error it raised."""
    try:
        fn()
    except (RateLimited, InvalidToken) as exc:
        return exc.code
    return "ok"


def _limits() -> tuple[int, Any]:
    limit = conf.rate_limit(EVENT)
    return limit.limit, limit.window


def _fill_key(key: str) -> None:
    """Bring ``key`` to its limit through the service."""
    limit, _ = _limits()
    for _ in range(limit):
        ratelimit.attempt(EVENT, key)


# Statements per operation.


def statements(user: Any) -> dict[str, Any]:
    """Count the SQL statements of each operation (and of the alternatives)."""
    fill.truncate()
    limit, window = _limits()
    reset = tokens.issue_password_reset(user)
    pre_auth = tokens.issue_pre_auth(user, challenge=CHALLENGE, methods=["totp"])
    _fill_key("full@example.com")
    for _ in range(limit):
        naive_attempt(EVENT, "naive-full@example.com", limit=limit, window=window)
        insert_always_attempt(EVENT, "always-full@example.com", limit=limit, window=window)
    generator = PasswordResetTokenGenerator()

    cases: dict[str, Callable[[], Any]] = {
        "issue_token (password_reset)": lambda: tokens.issue_password_reset(user),
        "issue_token (pre_auth, bound)": lambda: tokens.issue_pre_auth(user, challenge=CHALLENGE, methods=["totp"]),
        "consume_token (password_reset)": lambda: tokens.consume_token(reset.raw, TokenType.PASSWORD_RESET),
        "consume_token (pre_auth, bound)": lambda: tokens.consume_token(
            pre_auth.raw, TokenType.PRE_AUTH, challenge_id=CHALLENGE
        ),
        "consume_token (already used)": lambda: tokens.consume_token(reset.raw, TokenType.PASSWORD_RESET),
        "ratelimit.attempt (admitted)": lambda: ratelimit.attempt(EVENT, "fresh@example.com"),
        "ratelimit.attempt (refused)": lambda: ratelimit.attempt(EVENT, "full@example.com"),
        "ratelimit.check (under limit)": lambda: ratelimit.check(EVENT, "fresh@example.com"),
        "ratelimit.check (at limit)": lambda: ratelimit.check(EVENT, "full@example.com"),
        "alt: naive count-then-insert (admitted)": lambda: naive_attempt(
            EVENT, "naive@example.com", limit=limit, window=window
        ),
        "alt: naive count-then-insert (refused)": lambda: naive_attempt(
            EVENT, "naive-full@example.com", limit=limit, window=window
        ),
        "alt: insert-then-count (admitted)": lambda: insert_always_attempt(
            EVENT, "always@example.com", limit=limit, window=window
        ),
        "alt: insert-then-count (refused)": lambda: insert_always_attempt(
            EVENT, "always-full@example.com", limit=limit, window=window
        ),
        "alt: Django reset make_token+check_token": lambda: generator.check_token(user, generator.make_token(user)),
    }
    results: dict[str, Any] = {}
    for name, fn in cases.items():
        outcome: list[str] = []
        counted = count_statements(lambda fn=fn, outcome=outcome: outcome.append(_outcome(fn)))
        results[name] = {**counted, "outcome": outcome[0]}
    heading(f"SQL statements per operation ({connection.vendor})")
    table(["operation", "statements", "outcome"], [[k, v["statements"], v["outcome"]] for k, v in results.items()])
    return results


# Operations per second.


THROUGHPUT_RATIOS = {
    # name: (ours, alternative)
    "issue+consume vs Django make_token+check_token": (
        "issue+consume pair (ours)", "alt: Django make_token+check_token pair"),
    "attempt (admitted) vs naive count-then-insert": (
        "ratelimit.attempt (admitted)", "alt: naive count-then-insert (admitted)"),
    "attempt (admitted) vs insert-then-count": (
        "ratelimit.attempt (admitted)", "alt: insert-then-count (admitted)"),
}


def throughput(user: Any, scale: Scale) -> dict[str, Any]:
    """Measure operations per second of each operation and of the alternatives, in alternating runs."""
    fill.truncate()
    limit, window = _limits()
    _fill_key("full@example.com")
    generator = PasswordResetTokenGenerator()

    def numbers(run: int, count: int) -> list[int]:
        return list(range(count))

    def fresh_keys(prefix: str) -> Callable[[int, int], list[str]]:
        return lambda run, count: [f"{prefix}{run}-{i}@example.com" for i in range(count)]

    def issued(run: int, count: int) -> list[str]:
        return [tokens.issue_password_reset(user).raw for _ in range(count)]

    cases: dict[str, tuple[Callable[[int, int], list[Any]], Callable[[Any], Any]]] = {
        "issue_token": (numbers, lambda _: tokens.issue_password_reset(user)),
        "consume_token": (issued, lambda raw: tokens.consume_token(raw, TokenType.PASSWORD_RESET)),
        "ratelimit.attempt (admitted)": (fresh_keys("ok"), lambda k: ratelimit.attempt(EVENT, k)),
        "ratelimit.attempt (refused)": (
            numbers, lambda _: _outcome(lambda: ratelimit.attempt(EVENT, "full@example.com"))),
        "ratelimit.check": (numbers, lambda _: ratelimit.check(EVENT, "u42@example.com")),
        "issue+consume pair (ours)": (
            numbers,
            lambda _: tokens.consume_token(tokens.issue_password_reset(user).raw, TokenType.PASSWORD_RESET),
        ),
        "alt: Django make_token+check_token pair": (
            numbers, lambda _: generator.check_token(user, generator.make_token(user))),
        "alt: naive count-then-insert (admitted)": (
            fresh_keys("naive"), lambda k: naive_attempt(EVENT, k, limit=limit, window=window)),
        "alt: insert-then-count (admitted)": (
            fresh_keys("always"), lambda k: insert_always_attempt(EVENT, k, limit=limit, window=window)),
    }
    timed = rate(cases, n=scale.ops, runs=scale.runs)
    results: dict[str, Any] = {**timed["ops_per_second"]}
    results["ratios"] = {
        name: round(statistics.median(o / a for o, a in zip(timed["runs"][ours], timed["runs"][alt], strict=True)), 3)
        for name, (ours, alt) in THROUGHPUT_RATIOS.items()
    }
    heading(
        f"operations per second ({connection.vendor}; {scale.ops} calls x {scale.runs} runs, the operations "
        "taking turns run by run; single process)"
    )
    table(
        ["operation", "median ops/s", "min", "max"],
        [[k, v["median"], v["min"], v["max"]] for k, v in timed["ops_per_second"].items()],
    )
    return results


# Rate-limit check against table size.


def _fill_check_table(size: int, base: datetime, using: str) -> dict[str, Any]:
    """Fill the event table of ``using`` to ``size`` rows: many keys plus one hot key at its limit."""
    limit, _ = _limits()
    history = size // 100
    keys = max(100, size // 10)
    started = time.perf_counter()
    fill.truncate(using)
    fill.fill_events(0, size - limit - history, base=base, keys=keys, using=using)
    fill.fill_hot_key("hot@example.com", EVENT, base=base, in_window=limit, history=history, using=using)
    fill.analyze(using)
    return {
        "rows": fill.count_rows(using=using),
        "keys": keys,
        "hot_key_rows": history + limit,
        "fill_seconds": round(time.perf_counter() - started, 1),
    }


def table_size(scale: Scale) -> dict[str, Any]:
    """Time ratelimit.check with a small and a large event table, alternately; report the ratio.

    The small table lives in the database ``small``, the large one in
    ``default``; EPHEMERAL_AUTH_DATABASE switches between them run by run.
    """
    base = clock.now()
    small, large = scale.sizes
    shapes = {"small": _fill_check_table(small, base, "small"), "large": _fill_check_table(large, base, "default")}
    typical = EventType.values[42 % len(EventType.values)]  # the type of row g=42: u42 has rows of it
    probes: dict[str, Callable[[], Any]] = {
        "check, key without events": lambda: ratelimit.check(EVENT, "nobody@example.com", now=base),
        "check, key with a few events": lambda: ratelimit.check(typical, "u42@example.com", now=base),
        "check, hot key at its limit (refused)": lambda: _outcome(
            lambda: ratelimit.check(EVENT, "hot@example.com", now=base)
        ),
        "attempt, hot key at its limit (refused)": lambda: _outcome(
            lambda: ratelimit.attempt(EVENT, "hot@example.com", now=base)
        ),
    }

    def on_small() -> Any:
        return override_settings(EPHEMERAL_AUTH_DATABASE="small")

    results: dict[str, Any] = {"tables": shapes, "probes": {}}
    for name, probe in probes.items():
        timed = interleaved_us({"small": (on_small, probe), "large": (no_context, probe)},
                               n=scale.check_calls, runs=scale.check_runs)
        results["probes"][name] = {
            "us_small": timed["us_per_call"]["small"],
            "us_large": timed["us_per_call"]["large"],
            "ratio": timed["ratio_to_first"]["large"],
        }
    results["ratio"] = {name: figures["ratio"] for name, figures in results["probes"].items()}
    rows_small, rows_large = shapes["small"]["rows"], shapes["large"]["rows"]
    heading(
        f"rate-limit check vs table size ({connection.vendor}; {scale.check_calls} calls x {scale.check_runs} runs, "
        "the two tables timed alternately)"
    )
    limit = _limits()[0]
    print(
        f"tables: {rows_small:,} rows ({shapes['small']['keys']:,} keys) and {rows_large:,} rows "
        f"({shapes['large']['keys']:,} keys, filled in {shapes['large']['fill_seconds']} s); the hot key has "
        f"{limit} events in its window and {shapes['large']['hot_key_rows'] - limit:,} older ones in the large "
        "table; ANALYZE after filling"
    )
    table(
        ["probe", f"us/call @{rows_small:,}", f"us/call @{rows_large:,}", "ratio (median of runs)"],
        [
            [name, f["us_small"]["median"], f["us_large"]["median"], f["ratio"]]
            for name, f in results["probes"].items()
        ],
    )
    fill.truncate("small")
    return results


# Flood against one key.


def flood(scale: Scale) -> dict[str, Any]:
    """Send a flood of refused attempts at one key: its rows must stay at the limit.

    A control key, also at its limit but never flooded, is timed alternately
    with the flooded key before and after the flood: the flooded key's check
    must cost what the control's does.
    """
    fill.truncate()
    limit, window = _limits()
    key, control = "flood@example.com", "control@example.com"
    alt_key, alt_control = "flood-alt@example.com", "control-alt@example.com"
    _fill_key(key)
    _fill_key(control)
    for _ in range(limit):
        insert_always_attempt(EVENT, alt_key, limit=limit, window=window)
        insert_always_attempt(EVENT, alt_control, limit=limit, window=window)

    def our_check(subject: str) -> Callable[[], Any]:
        return lambda: _outcome(lambda: ratelimit.check(EVENT, subject))

    def alt_count(subject: str) -> Callable[[], Any]:
        return lambda: window_count(EVENT, subject, window)

    ours = {"control": (no_context, our_check(control)), "flooded": (no_context, our_check(key))}
    alts = {"control": (no_context, alt_count(alt_control)), "flooded": (no_context, alt_count(alt_key))}
    calls, alt_calls = scale.check_calls, max(50, scale.check_calls // 4)

    before = interleaved_us(ours, n=calls, runs=scale.check_runs)
    started = time.perf_counter()
    refused = sum(_outcome(lambda: ratelimit.attempt(EVENT, key)) == "rate_limited" for _ in range(scale.flood))
    flood_seconds = time.perf_counter() - started
    rows = RateLimitEvent.objects.filter(event_type=EVENT, key=key).count()
    after = interleaved_us(ours, n=calls, runs=scale.check_runs)

    alt_before = interleaved_us(alts, n=alt_calls, runs=scale.check_runs)
    started = time.perf_counter()
    alt_refused = 0
    for _ in range(scale.alt_flood):
        try:
            insert_always_attempt(EVENT, alt_key, limit=limit, window=window)
        except RateLimited:
            alt_refused += 1
    alt_seconds = time.perf_counter() - started
    alt_rows = RateLimitEvent.objects.filter(event_type=EVENT, key=alt_key).count()
    alt_after = interleaved_us(alts, n=alt_calls, runs=scale.check_runs)

    results = {
        "limit": limit,
        "ours": {
            "attempts": scale.flood,
            "refused": refused,
            "rows_for_key": rows,
            "attempts_per_second": round(scale.flood / flood_seconds),
            "check_us_before": before["us_per_call"]["flooded"],
            "check_us_after": after["us_per_call"]["flooded"],
            "ratio_to_control_before": before["ratio_to_first"]["flooded"],
            "ratio_to_control_after": after["ratio_to_first"]["flooded"],
        },
        "alt_insert_then_count": {
            "attempts": scale.alt_flood,
            "refused": alt_refused,
            "rows_for_key": alt_rows,
            "attempts_per_second": round(scale.alt_flood / alt_seconds),
            "count_us_before": alt_before["us_per_call"]["flooded"],
            "count_us_after": alt_after["us_per_call"]["flooded"],
            "ratio_to_control_before": alt_before["ratio_to_first"]["flooded"],
            "ratio_to_control_after": alt_after["ratio_to_first"]["flooded"],
        },
    }
    heading(
        f"flood against one key ({connection.vendor}; limit {limit} per {int(window.total_seconds())} s; "
        "check of the flooded key timed alternately with an unflooded key at its limit)"
    )
    o, a = results["ours"], results["alt_insert_then_count"]
    table(
        ["limiter", "attempts", "refused", "rows for key", "attempts/s", "check us before", "after",
         "vs control before", "after"],
        [
            ["ephemeral_auth", o["attempts"], refused, rows, o["attempts_per_second"], o["check_us_before"]["median"],
             o["check_us_after"]["median"], o["ratio_to_control_before"], o["ratio_to_control_after"]],
            ["alt: insert-then-count", a["attempts"], alt_refused, alt_rows, a["attempts_per_second"],
             a["count_us_before"]["median"], a["count_us_after"]["median"], a["ratio_to_control_before"],
             a["ratio_to_control_after"]],
        ],
    )
    return results


# Purge.


def _purge_in_child(url: str, base: datetime, batch_size: int | None, implementation: str) -> dict[str, Any]:
    """Run one purge implementation in a fresh process; return its timing and peak RSS."""
    command = [sys.executable, os.path.join(os.path.dirname(__file__), "run.py"), "--purge-child", url,
               "--purge-now", base.isoformat(), "--purge-implementation", implementation]
    if batch_size:
        command += ["--purge-batch-size", str(batch_size)]
    # The child opens its own connection; ours must not hold a lock meanwhile.
    connection.close()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"purge child failed:\n{done.stderr}")
    # The child reports its own VmHWM. getrusage(RUSAGE_CHILDREN) is not used:
    # Linux charges a child with the image it was forked from (this process)
    # until exec, which overstates a small child.
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


PURGE_IMPLEMENTATIONS = {
    "service": "ephemeral_auth purge_expired",
    "orm_pk_in": "alt: previous ORM pk__in batches",
    "single_delete": "alt: one DELETE per table",
}


def purge(scale: Scale, url: str, batch_size: int | None = None) -> dict[str, Any]:
    """Purge expired tokens and stale events mixed with live rows; verify every live row is kept.

    Each implementation gets a freshly filled table and runs in its own
    process, so its time and peak RSS are its own.
    """
    keep_seconds = int(conf.longest_window().total_seconds())
    base = clock.now()
    results: dict[str, Any] = {}
    for implementation in PURGE_IMPLEMENTATIONS:
        fill.truncate()
        started = time.perf_counter()
        fill.fill_purge_tokens(base=base, expired=scale.purge_rows, live=scale.purge_live)
        fill.fill_purge_events(base=base, stale=scale.purge_rows, live=scale.purge_live, keep_seconds=keep_seconds)
        fill.analyze()
        before = fill.live_checksums(base=base, keep_seconds=keep_seconds)
        fill_seconds = time.perf_counter() - started
        child = _purge_in_child(url, base, batch_size, implementation)
        after = fill.live_checksums(base=base, keep_seconds=keep_seconds)
        results[implementation] = {
            **child,
            "expired_tokens": before["token_rows"] - before["live_tokens"][0],
            "stale_events": before["event_rows"] - before["live_events"][0],
            "live_tokens": before["live_tokens"][0],
            "live_events": before["live_events"][0],
            "fill_seconds": round(fill_seconds, 1),
            "rows_left": {"tokens": after["token_rows"], "events": after["event_rows"]},
            # Same count and same sum of ids: the very rows that were live are still there.
            "every_live_row_kept": after["live_tokens"] == before["live_tokens"]
            and after["live_events"] == before["live_events"],
            "nothing_expired_left": after["token_rows"] == after["live_tokens"][0]
            and after["event_rows"] == after["live_events"][0],
        }
    fill.truncate()
    service = results["service"]
    heading(
        f"purge ({connection.vendor}; {service['expired_tokens']:,} expired tokens + {service['stale_events']:,} "
        f"stale events among {service['live_tokens']:,} + {service['live_events']:,} live rows; "
        "each run in its own process)"
    )
    table(
        ["implementation", "batch", "seconds", "peak RSS MB", "of which at start", "live rows kept", "expired left"],
        [
            [label, r["batch_size"], r["seconds"], round(r["peak_rss_kb"] / 1024, 1),
             round(r["baseline_rss_kb"] / 1024, 1), r["every_live_row_kept"], not r["nothing_expired_left"]]
            for label, r in ((PURGE_IMPLEMENTATIONS[k], v) for k, v in results.items())
        ],
    )
    return {**service, "alternatives": {k: v for k, v in results.items() if k != "service"}}
