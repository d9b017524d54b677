"""Count SQL statements, time repeated calls, read peak memory.

Timings are medians of several runs in one process: these machines are shared
and noisy, so the report compares figures taken in the same run (ratios)
rather than trusting one absolute time.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager as ContextManager
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

__all__ = ["count_statements", "interleaved_us", "no_context", "per_call_us", "rate", "summarize", "vm_hwm_kb"]


def summarize(values: Sequence[float], digits: int = 1) -> dict[str, Any]:
    """Return median, min and max of ``values`` (rounded) and the raw runs."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def count_statements(fn: Callable[[], Any]) -> dict[str, Any]:
    """Run ``fn`` once and return how many SQL statements it sent, and their text."""
    with CaptureQueriesContext(connection) as captured:
        fn()
    return {"statements": len(captured.captured_queries), "sql": [q["sql"] for q in captured.captured_queries]}


def rate(
    cases: dict[str, tuple[Callable[[int, int], list[Any]], Callable[[Any], Any]]], *, n: int, runs: int
) -> dict[str, Any]:
    """Return operations per second of each case over ``n`` calls: median of ``runs`` alternating runs.

    A case is ``(prepare, op)``: ``prepare(run, n)`` builds the arguments of
    one run outside the timed loop (tokens to consume, fresh keys), so only
    ``op`` is measured. The cases take turns run by run, so a burst of load
    from elsewhere on the machine hits all of them rather than one; the
    per-run figures are returned for ratios between cases of the same run.
    """
    names = list(cases)
    values: dict[str, list[float]] = {name: [] for name in names}
    for run in range(runs):
        for name in names[run % len(names):] + names[: run % len(names)]:
            prepare, op = cases[name]
            args = prepare(run, n)
            start = time.perf_counter()
            for arg in args:
                op(arg)
            values[name].append(n / (time.perf_counter() - start))
    return {"ops_per_second": {name: summarize(v, 0) for name, v in values.items()}, "runs": values}


def per_call_us(op: Callable[[], Any], *, n: int, runs: int) -> dict[str, Any]:
    """Return microseconds per call of ``op``, median of ``runs`` runs of ``n`` calls (after a warm-up)."""
    for _ in range(min(n, 50)):
        op()
    values = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(n):
            op()
        values.append((time.perf_counter() - start) / n * 1e6)
    return summarize(values, 1)


def interleaved_us(
    cases: dict[str, tuple[Callable[[], ContextManager[Any]], Callable[[], Any]]], *, n: int, runs: int
) -> dict[str, Any]:
    """Time several cases run by run in alternation; return per-call us and per-run ratios to the first.

    Each case is ``(context, op)``: ``op`` is timed ``n`` times inside
    ``context()`` (entered outside the timed loop). Alternating the cases,
    and rotating which goes first, exposes them all to the same machine
    noise, so the ratio of each run is meaningful even when absolute times
    drift; the median of those per-run ratios is reported.
    """
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm-up: caches, prepared plans
        context, op = cases[name]
        with context():
            for _ in range(min(n, 50)):
                op()
    for run in range(runs):
        order = names[run % len(names):] + names[: run % len(names)]
        for name in order:
            context, op = cases[name]
            with context():
                start = time.perf_counter()
                for _ in range(n):
                    op()
                times[name].append((time.perf_counter() - start) / n * 1e6)
    first = names[0]
    return {
        "us_per_call": {name: summarize(values) for name, values in times.items()},
        "ratio_to_first": {
            name: round(statistics.median(v / f for v, f in zip(times[name], times[first], strict=True)), 2)
            for name in names[1:]
        },
    }


def no_context() -> ContextManager[None]:
    """Return a context that does nothing (a case without a setting to switch)."""
    return contextlib.nullcontext()


def vm_hwm_kb() -> int:
    """Return this process's peak resident set size (VmHWM) in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0
