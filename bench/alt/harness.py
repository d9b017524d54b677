"""Alternating rounds: every side of a comparison timed in the same run, order rotated round by round.

A :class:`Case` is one side of one operation: ``prepare(n)`` builds the
arguments of ``n`` calls outside the timed loop (requests, flows to finish,
pre-filled subjects), ``op(arg)`` is timed and returns an outcome word that
the report shows (so a side that silently does something else is caught),
``context()`` switches a setting for that side (entered outside the timed
loop). All the cases of one group take turns in each round, the first one
rotating, so a burst of load elsewhere on the machine hits every side; the
ratio ours/theirs is taken per round and its median and spread reported.
"""

from __future__ import annotations

import contextlib
import re
import statistics
import time
from collections import Counter
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

from django.db import connection
from django.test.utils import CaptureQueriesContext

from . import counting

__all__ = ["Case", "Operation", "count_one", "redact", "run_group"]

DATA_VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE")
WARM_UP = 10
_LITERAL = re.compile(r"'(?:[^']|'')*'")


def redact(sql: str) -> str:
    """Return the statement with every string literal blanked (session keys, token digests, states, nonces)."""
    return _LITERAL.sub("'…'", sql)


def _no_context() -> AbstractContextManager[None]:
    return contextlib.nullcontext()


@dataclass
class Case:
    """One side (``system``) of one operation."""

    system: str
    prepare: Callable[[int], list[Any]]
    op: Callable[[Any], str]
    context: Callable[[], AbstractContextManager[Any]] = _no_context


@dataclass
class Operation:
    """An operation measured on every side; ``expected`` is the outcome each side must report."""

    name: str
    expected: str
    cases: list[Case]
    note: str = ""
    ours: str = "ephemeral_auth"
    results: dict[str, Any] = field(default_factory=dict)


def count_one(case: Case, calls: int = 3) -> dict[str, Any]:
    """Run ``calls`` calls; return statements and cache operations per call, and the outcomes."""
    with case.context():
        args = case.prepare(calls)
        counting.OPS.clear()
        outcomes: list[str] = []
        with CaptureQueriesContext(connection) as captured:
            for arg in args:
                outcomes.append(case.op(arg))
        cache_ops = dict(counting.OPS)
    sql = [q["sql"] for q in captured.captured_queries]
    data = [s for s in sql if s.lstrip().upper().startswith(DATA_VERBS)]

    def per_call(value: float) -> float | int:
        value = value / calls
        return int(value) if value == int(value) else round(value, 2)

    return {
        "statements": per_call(len(data)),
        "all_statements": per_call(len(sql)),
        "cache_ops": per_call(sum(cache_ops.values())),
        "cache_ops_by_kind": {k: per_call(v) for k, v in sorted(cache_ops.items())},
        "outcomes": sorted(Counter(outcomes).items()),
        "sql": [redact(s) for s in sql[: max(1, len(sql) // calls)]],
    }


def _time(case: Case, n: int) -> float:
    with case.context():
        warm = case.prepare(WARM_UP)
        for arg in warm:
            case.op(arg)
        args = case.prepare(n)
        start = time.perf_counter()
        for arg in args:
            case.op(arg)
        return n / (time.perf_counter() - start)


def _spread(values: Sequence[float], digits: int) -> dict[str, Any]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "runs": [round(v, digits) for v in values],
    }


def run_group(operations: list[Operation], *, n: int, rounds: int, log: Callable[[str], None]) -> None:
    """Count, then time every case of every operation in alternating rounds; fill ``op.results``."""
    for operation in operations:
        operation.results = {"counts": {c.system: count_one(c) for c in operation.cases}, "ops_per_second": {}}
    cases = [(operation, case) for operation in operations for case in operation.cases]
    timings: dict[tuple[str, str], list[float]] = {(o.name, c.system): [] for o, c in cases}
    for round_no in range(rounds):
        # Rotate the first case round by round, and reverse every other round,
        # so each side runs before and after the other as often as possible.
        shift = (round_no * len(cases)) // max(rounds, 1)
        order = cases[shift:] + cases[:shift]
        for operation, case in order if round_no % 2 == 0 else order[::-1]:
            timings[(operation.name, case.system)].append(_time(case, n))
        log(f"  round {round_no + 1}/{rounds} done")
    for operation in operations:
        per_system = {c.system: timings[(operation.name, c.system)] for c in operation.cases}
        operation.results["ops_per_second"] = {s: _spread(v, 0) for s, v in per_system.items()}
        ours = per_system[operation.ours]
        operation.results["ratio_ours_to"] = {
            system: _spread([o / t for o, t in zip(ours, theirs, strict=True)], 2)
            for system, theirs in per_system.items()
            if system != operation.ours
        }
