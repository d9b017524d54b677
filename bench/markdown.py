"""Render a results file of bench/run.py as the Markdown tables of docs/benchmarks.md.

    .venv/bin/python bench/markdown.py [bench/results/latest.json]

Needs no database and no Django: it only reads the JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.report import fmt  # noqa: E402
from bench.run import comparisons, targets  # noqa: E402

__all__ = ["render"]


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _spread(figures: dict[str, Any]) -> str:
    return f"{fmt(figures['median'])} ({fmt(figures['min'])}–{fmt(figures['max'])})"


def render(results: dict[str, Any]) -> str:
    """Return the Markdown of every section present in ``results``."""
    backends = results["backends"]
    names = list(backends)
    out: list[str] = []

    if all("statements" in backends[b] for b in names):
        ops = list(backends[names[0]]["statements"])
        out.append("### SQL statements per operation\n")
        out.append(_table(["operation", *names],
                          [[op, *(backends[b]["statements"][op]["statements"] for b in names)] for op in ops]))

    if all("throughput" in backends[b] for b in names):
        ops = [k for k in backends[names[0]]["throughput"] if k != "ratios"]
        out.append("### Operations per second (single process; median of runs, min–max in brackets)\n")
        out.append(_table(["operation", *names], [[op, *(_spread(backends[b]["throughput"][op]) for b in names)]
                                                  for op in ops]))

    if all("table_size" in backends[b] for b in names):
        out.append("### Rate-limit check against table size (µs per call, median; ratio = median of per-run ratios)\n")
        rows = []
        for b in names:
            t = backends[b]["table_size"]
            small, large = t["tables"]["small"]["rows"], t["tables"]["large"]["rows"]
            for probe, f in t["probes"].items():
                rows.append([b, probe, f["us_small"]["median"], f["us_large"]["median"], f"{f['ratio']}x"])
        out.append(_table(["backend", "probe", f"{small:,} rows", f"{large:,} rows", "ratio"], rows))

    if all("flood" in backends[b] for b in names):
        out.append("### Flood against one key (limit 10 per 15 minutes)\n")
        rows = []
        for b in names:
            for label, key, us in (("ephemeral_auth", "ours", "check_us"),
                                   ("alt: insert-then-count", "alt_insert_then_count", "count_us")):
                f = backends[b]["flood"][key]
                rows.append([b, label, f["attempts"], f["rows_for_key"], f["attempts_per_second"],
                             f[f"{us}_before"]["median"], f[f"{us}_after"]["median"],
                             f"{f['ratio_to_control_after']}x"])
        out.append(_table(["backend", "limiter", "refused attempts", "rows for the key", "attempts/s",
                           "check µs before", "after", "flooded vs unflooded key"], rows))

    if all("purge" in backends[b] for b in names):
        out.append("### Purge (each run in its own process; peak RSS = VmHWM of that process)\n")
        rows = []
        for b in names:
            p = backends[b]["purge"]
            runs = {"ephemeral_auth purge_expired": p, **{f"alt: {k}": v for k, v in p["alternatives"].items()}}
            for label, r in runs.items():
                rows.append([b, label, r["batch_size"], r["seconds"], round(r["peak_rss_kb"] / 1024, 1),
                             round(r["baseline_rss_kb"] / 1024, 1), r["every_live_row_kept"]])
        deleted = backends[names[0]]["purge"]
        out.append(f"{deleted['expired_tokens']:,} expired tokens and {deleted['stale_events']:,} stale events, "
                   f"interleaved with {deleted['live_tokens']:,} live tokens and {deleted['live_events']:,} live "
                   "events.\n")
        out.append(_table(["backend", "implementation", "batch", "seconds", "peak RSS MB", "RSS before purging MB",
                           "every live row kept"], rows))

    for b in names:
        out.append(f"### Targets of issue 2 — {b}\n")
        out.append(_table(["target", "wanted", "measured", "met"],
                          [[t, w, m, "—" if ok is None else ("met" if ok else "**missed**")]
                           for t, w, m, ok in targets(b, backends[b])]))
        out.append(f"### Against the alternatives — {b}\n")
        out.append(_table(["comparison", "figure"], comparisons(backends[b])))
    return "\n".join(out)


def main() -> int:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "bench" / "results" / "latest.json"
    print(render(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
