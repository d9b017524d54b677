"""Latency percentiles and small helpers shared by http_load.py and purge_concurrent.py.

Percentiles interpolate linearly between the two nearest ranks (numpy's
default, ``statistics.quantiles(method="inclusive")``), so a p99 of 200
samples lies between the second-largest and the largest sample rather than
being the largest.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["load_average", "markdown_table", "percentile", "summarize_ms", "utc_now"]


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q``-th percentile (0-100) of ``values``, interpolating between ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize_ms(values_ms: Sequence[float]) -> dict[str, Any]:
    """Return count, mean, p50, p90, p99 and max of latencies in milliseconds (rounded to 0.01 ms)."""
    if not values_ms:
        return {"count": 0}
    return {
        "count": len(values_ms),
        "mean": round(statistics.fmean(values_ms), 2),
        "p50": round(percentile(values_ms, 50), 2),
        "p90": round(percentile(values_ms, 90), 2),
        "p99": round(percentile(values_ms, 99), 2),
        "max": round(max(values_ms), 2),
    }


def load_average() -> list[float]:
    """Return the 1, 5 and 15 minute load averages, rounded."""
    return [round(x, 1) for x in os.getloadavg()]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Return a Markdown table (cells formatted like the text report's)."""
    from bench.report import fmt

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


KEEP_MARKER = "<!-- hand-written interpretation below: kept when the tables are re-rendered -->"


def write_markdown(path: Path, text: str) -> None:
    """Write ``text``, keeping any hand-written part after KEEP_MARKER of the existing file."""
    kept = ""
    if path.exists() and KEEP_MARKER in path.read_text():
        kept = path.read_text().split(KEEP_MARKER, 1)[1]
    path.write_text(text + "\n" + KEEP_MARKER + (kept or "\n"))
