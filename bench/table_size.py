"""Rate-limit check time against the size of ``auth_rate_limit_events``: 10^3 to 10^7 rows.

For each size the event table of the benchmark database is filled with the
shape bench/run.py uses (``bench.cases``: 10 % as many keys as rows, all six
event types, times over the past day, plus a hot key at its limit with 1 % of
the table as older history), and three probes of ``ratelimit.check`` are
timed, as in run.py: a key without events, a key with a few events, the hot
key (refused). A second database holds a 10^3-row table of the same shape
for the whole run; every size is timed *alternately* with it
(``EPHEMERAL_AUTH_DATABASE`` switches between the two, run by run) and the
ratio reported is the median of the per-run ratios, so machine noise hits
both sides. At 10^3 the two tables are alike: that ratio shows the method's
own noise.

Filling: set-based INSERTs (``bench.fill``: ``generate_series`` on
PostgreSQL, a recursive CTE on SQLite) with the table's secondary indexes
dropped, then the indexes recreated from their own definitions and
``VACUUM ANALYZE`` / ``ANALYZE`` run. A freshly built index is compact (as
after ``REINDEX``); a table grown row by row has more half-full pages, which
changes its size but not the depth of the one descent a check makes.

    .venv/bin/python bench/table_size.py                        # PostgreSQL and SQLite
    .venv/bin/python bench/table_size.py --backend postgres --max-size 1000000

Writes ``bench/results/table_size.json``, ``table_size.md`` and
``check_vs_table_size.png`` (matplotlib). Asserts nothing about time.
Databases: PostgreSQL ``ea_bench_size`` and ``ea_bench_size_small``; SQLite
``/tmp/ea_bench_size.sqlite3`` and ``/tmp/ea_bench_size_small.sqlite3``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.latency import load_average, markdown_table, utc_now, write_markdown  # noqa: E402

RESULTS = REPO / "bench" / "results"
SIZES = [10**3, 10**4, 10**5, 10**6, 10**7]
SQLITE_PATH = "/tmp/ea_bench_size.sqlite3"
POSTGRES_URL = "postgres://ephemeral:ephemeral@127.0.0.1:5432/ea_bench_size"
PROBES = ["check, key without events", "check, key with a few events", "check, hot key at its limit (refused)"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--max-size", type=int, default=SIZES[-1], help="largest table (default 10^7)")
    parser.add_argument("--calls", type=int, default=300, help="calls per timed run (default 300)")
    parser.add_argument("--runs", type=int, default=7, help="alternating runs per probe and size (default 7)")
    parser.add_argument("--max-fill-seconds", type=float, default=240,
                        help="skip a size whose fill, extrapolated from the previous size, would take longer")
    parser.add_argument("--output", type=Path, default=None, help="default bench/results/table_size.json")
    parser.add_argument("--render-only", action="store_true",
                        help="redraw the plot and the Markdown from the results file; measure nothing")
    parser.add_argument("--child-json", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# Filling with the secondary indexes dropped.


def fill_table(size: int, base: datetime, using: str = "default") -> dict[str, Any]:
    """Fill the event table of ``using`` to ``size`` rows (run.py's shape); return how, and how long."""
    from django.db import connections

    from bench import cases, fill

    connection = connections[using]
    limit, _ = cases._limits()
    history = size // 100
    keys = max(100, size // 10)
    started = time.perf_counter()
    fill.truncate(using)
    with connection.cursor() as cursor:
        indexes = _secondary_indexes_on(connection, fill.EVENTS)
        for name, _sql in indexes:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
    fill.fill_events(0, size - limit - history, base=base, keys=keys, using=using)
    fill.fill_hot_key("hot@example.com", cases.EVENT, base=base, in_window=limit, history=history, using=using)
    inserted = time.perf_counter()
    with connection.cursor() as cursor:
        for _name, sql in indexes:
            cursor.execute(sql)
    indexed = time.perf_counter()
    fill.analyze(using)
    return {
        "rows": fill.count_rows(using=using),
        "keys": keys,
        "hot_key_rows": history + limit,
        "insert_seconds": round(inserted - started, 1),
        "index_seconds": round(indexed - inserted, 1),
        "fill_seconds": round(time.perf_counter() - started, 1),
        "indexes_rebuilt": [name for name, _ in indexes],
    }


def _secondary_indexes_on(connection: Any, table: str) -> list[tuple[str, str]]:
    """Return (name, CREATE statement) of ``table``'s indexes other than its primary key."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary ORDER BY i.relname", [table])
        else:
            cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = %s "
                           "AND sql IS NOT NULL ORDER BY name", [table])
        return [(name, sql) for name, sql in cursor.fetchall()]


def relation_sizes(using: str = "default") -> dict[str, Any]:
    """Return the event table's size on disk: heap, indexes, total (bytes), per index too."""
    from django.db import connections

    from bench import fill

    connection = connections[using]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT pg_relation_size(%s), pg_indexes_size(%s), pg_total_relation_size(%s)",
                           [fill.EVENTS] * 3)
            table, indexes, total = cursor.fetchone()
            cursor.execute(
                "SELECT i.relname, pg_relation_size(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "WHERE x.indrelid = %s::regclass ORDER BY i.relname", [fill.EVENTS])
            per_index = dict(cursor.fetchall())
        else:
            cursor.execute("SELECT name, SUM(pgsize) FROM dbstat GROUP BY name")
            pages = dict(cursor.fetchall())
            names = [n for n, _ in _secondary_indexes_on(connection, fill.EVENTS)]
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s", [fill.EVENTS])
            names = sorted({*names, *(row[0] for row in cursor.fetchall())})
            per_index = {n: int(pages.get(n, 0)) for n in names}
            table = int(pages.get(fill.EVENTS, 0))
            indexes = sum(per_index.values())
            total = table + indexes
    return {"table_bytes": int(table), "index_bytes": int(indexes), "total_bytes": int(total),
            "per_index_bytes": {k: int(v) for k, v in per_index.items()}}


# Probes.


def probes(base: datetime) -> dict[str, Any]:
    from bench import cases
    from ephemeral_auth.models import EventType
    from ephemeral_auth.services import ratelimit

    typical = EventType.values[42 % len(EventType.values)]  # the type of row g=42: u42 has rows of it
    return {
        "check, key without events": lambda: ratelimit.check(cases.EVENT, "nobody@example.com", now=base),
        "check, key with a few events": lambda: ratelimit.check(typical, "u42@example.com", now=base),
        "check, hot key at its limit (refused)": lambda: cases._outcome(
            lambda: ratelimit.check(cases.EVENT, "hot@example.com", now=base)),
    }


def explain(probe: Any) -> dict[str, Any]:
    """Run ``probe`` once, capture its SQL and return the database's plan (and, on PostgreSQL, its timing)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        outcome = probe()
    (query,) = captured.captured_queries
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query["sql"])
            plan = cursor.fetchone()[0]
            plan = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
            nodes, node = [], plan["Plan"]
            while node:
                nodes.append(f"{node['Node Type']}" + (f" on {node['Index Name']}" if "Index Name" in node else ""))
                node = (node.get("Plans") or [None])[0]
            return {
                "outcome": outcome if isinstance(outcome, str) else "ok",
                "plan": " > ".join(nodes),
                "execution_us": round(plan["Execution Time"] * 1000, 1),
                "shared_buffers_hit": plan["Plan"].get("Shared Hit Blocks", 0),
                "shared_buffers_read": plan["Plan"].get("Shared Read Blocks", 0),
            }
        cursor.execute("EXPLAIN QUERY PLAN " + query["sql"])
        return {"outcome": outcome if isinstance(outcome, str) else "ok",
                "plan": " > ".join(row[-1] for row in cursor.fetchall())}


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    from bench.env import database_url, prepare_database, setup_django

    url = database_url(backend, sqlite_path=SQLITE_PATH, postgres_url=POSTGRES_URL)
    small_url = database_url(backend, sqlite_path=SQLITE_PATH, postgres_url=POSTGRES_URL, suffix="_small")
    prepare_database(backend, url)
    prepare_database(backend, small_url)
    setup_django(url, small_url=small_url)
    from django.db import connection
    from django.test import override_settings

    from bench import fill
    from bench.report import heading, table
    from bench.timing import interleaved_us, no_context
    from ephemeral_auth import clock

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version" if connection.vendor == "postgresql" else "SELECT sqlite_version()")
        version = cursor.fetchone()[0]
    print(f"\n#### {backend} {version} ####", flush=True)
    base = clock.now()
    reference = fill_table(SIZES[0], base, "small")
    checks = probes(base)

    def on_small() -> Any:
        return override_settings(EPHEMERAL_AUTH_DATABASE="small")

    points: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    last: dict[str, Any] | None = None
    for size in [s for s in SIZES if s <= args.max_size]:
        if last is not None and last["rows"] >= 10**5:
            estimate = last["fill_seconds"] * size / last["rows"]
            if estimate > args.max_fill_seconds:
                skipped.append({"rows": size, "estimated_fill_seconds": round(estimate),
                                "reason": f"fill of {last['rows']:,} rows took {last['fill_seconds']} s; "
                                          f"{size:,} rows would take about {estimate:.0f} s "
                                          f"(> --max-fill-seconds {args.max_fill_seconds:.0f})"})
                print(f"skipping {size:,} rows: {skipped[-1]['reason']}", flush=True)
                break
        shape = fill_table(size, base)
        last = shape
        point: dict[str, Any] = {**shape, "sizes": relation_sizes(), "probes": {}}
        for name, probe in checks.items():
            timed = interleaved_us({"reference": (on_small, probe), "size": (no_context, probe)},
                                   n=args.calls, runs=args.runs)
            point["probes"][name] = {
                "us": timed["us_per_call"]["size"],
                "us_reference": timed["us_per_call"]["reference"],
                "ratio": timed["ratio_to_first"]["size"],
                # Less sensitive to bursts of load elsewhere: the fastest run of each side.
                "ratio_of_fastest_runs": round(timed["us_per_call"]["size"]["min"]
                                               / timed["us_per_call"]["reference"]["min"], 2),
                "explain": explain(probe),
            }
        points.append(point)
        s = point["sizes"]
        print(f"{shape['rows']:>12,} rows  fill {shape['fill_seconds']:>6} s  table {s['table_bytes'] / 2**20:8.1f} MiB"
              f"  indexes {s['index_bytes'] / 2**20:8.1f} MiB  " + "  ".join(
                  f"{p['us']['median']:7.1f} us ({p['ratio']}x)" for p in point["probes"].values()), flush=True)
    fill.truncate("default")
    fill.truncate("small")
    if backend == "sqlite":
        # DELETE leaves the file at its largest (1.6 GB at 10^7 rows): remove the two files.
        from django.db import connections

        connections.close_all()
        for path in (SQLITE_PATH, SQLITE_PATH.replace(".sqlite3", "_small.sqlite3")):
            for suffix in ("", "-journal", "-wal", "-shm"):
                Path(path + suffix).unlink(missing_ok=True)
    heading(f"rate-limit check vs table size ({backend}; median us per call, ratio to the 10^3 table)")
    table(["rows", *PROBES], [[p["rows"], *(f"{p['probes'][n]['us']['median']} ({p['probes'][n]['ratio']}x)"
                                           for n in PROBES)] for p in points])
    return {"version": version, "calls": args.calls, "runs": args.runs, "reference": reference,
            "points": points, "skipped": skipped}


# Report.


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6))
    colours = {PROBES[0]: "tab:blue", PROBES[1]: "tab:green", PROBES[2]: "tab:red"}
    styles = {"postgres": ("-", "o"), "sqlite": ("--", "s")}
    for backend, r in results["backends"].items():
        line, marker = styles.get(backend, ("-", "^"))
        rows = [p["rows"] for p in r["points"]]
        for probe in PROBES:
            label = f"{backend}: {probe.removeprefix('check, ')}"
            left.plot(rows, [p["probes"][probe]["us"]["median"] for p in r["points"]], linestyle=line,
                      marker=marker, color=colours[probe], label=label)
            right.plot(rows, [p["probes"][probe]["ratio"] for p in r["points"]], linestyle=line, marker=marker,
                       color=colours[probe], label=label)
    left.set_xscale("log")
    left.set_ylim(bottom=0)
    left.set_xlabel("rows in auth_rate_limit_events")
    left.set_ylabel("ratelimit.check, median µs per call")
    left.set_title("Check time against table size")
    left.grid(True, which="both", alpha=0.3)
    right.set_xscale("log")
    right.axhline(1.0, color="grey", linewidth=0.8)
    right.axhline(1.2, color="grey", linewidth=0.8, linestyle=":")
    right.text(1.1e3, 1.215, "1.2× (issue 2 target at 10^6)", fontsize=8, color="grey")
    ratios = [p["probes"][n]["ratio"] for r in results["backends"].values() for p in r["points"] for n in PROBES]
    right.set_ylim(min([0.7, *ratios]) - 0.05, max([1.3, *ratios]) + 0.1)
    right.set_xlabel("rows in auth_rate_limit_events")
    right.set_ylabel("ratio to the 10^3-row table (median of alternating runs)")
    right.set_title("Ratio to 10^3 rows, timed alternately")
    right.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"ephemeral_auth rate-limit check, {results['machine']['date'][:10]}, "
                 f"{results['machine']['cores']} cores (shared)", fontsize=10)
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def render_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    out = ["## Rate-limit check against table size, 10^3 to 10^7 rows (`bench/table_size.py`)\n"]
    out.append(
        f"Run of {m['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, Django {m['django']}, "
        f"commit {m['commit']}{' + working tree' if m['uncommitted_changes'] else ''}; load average "
        f"{results['load_average']['start']} at start, {results['load_average']['end']} at end. "
        "Each size is timed alternately with a 10^3-row table of the same shape in a second database "
        f"({next(iter(results['backends'].values()))['runs']} runs of "
        f"{next(iter(results['backends'].values()))['calls']} calls per probe and size); µs = median of the "
        "runs, ratio = median of the per-run ratios. Sizes: `pg_relation_size` (table), `pg_indexes_size` "
        "(indexes), `pg_total_relation_size` (total) on PostgreSQL; the `dbstat` pages of the table and its "
        "indexes on SQLite. Plot: `bench/results/check_vs_table_size.png`.\n"
    )
    for backend, r in results["backends"].items():
        out.append(f"### {backend} {r['version']}\n")
        rows = []
        for p in r["points"]:
            rows.append([p["rows"], *(f"{p['probes'][n]['us']['median']:.0f} ({p['probes'][n]['ratio']:.2f}×)"
                                      for n in PROBES)])
        out.append("µs per check, median of runs (ratio to the 10^3-row table: median of per-run ratios):\n")
        out.append(markdown_table(["rows", *PROBES], rows))
        rows = []
        for p in r["points"]:
            s = p["sizes"]
            rows.append([p["rows"], _mib(s["table_bytes"]), _mib(s["index_bytes"]), _mib(s["total_bytes"]),
                         ", ".join(f"{k} {_mib(v)}" for k, v in s["per_index_bytes"].items()),
                         p["fill_seconds"]])
        out.append("Sizes on disk (MiB) and fill time:\n")
        out.append(markdown_table(["rows", "table", "indexes", "total", "per index", "fill s"], rows))
        plans = {(p["probes"][n]["explain"]["plan"]) for p in r["points"] for n in PROBES}
        if backend == "postgres":
            rows = [[p["rows"], *(f"{p['probes'][n]['explain']['execution_us']} µs, "
                                  f"{p['probes'][n]['explain']['shared_buffers_hit']}"
                                  f"+{p['probes'][n]['explain']['shared_buffers_read']} buffers"
                                  for n in PROBES)] for p in r["points"]]
            out.append("`EXPLAIN (ANALYZE, BUFFERS)` of each probe's statement (execution time inside "
                       "PostgreSQL; buffers hit+read):\n")
            out.append(markdown_table(["rows", *PROBES], rows))
        out.append("Plans seen: " + "; ".join(f"`{p}`" for p in sorted(plans)) + "\n")
        for s in r["skipped"]:
            out.append(f"\nNot measured: {s['rows']:,} rows — {s['reason']}.\n")
    return "\n".join(out)




def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    backends = ["postgres", "sqlite"] if args.backend == "all" else [args.backend]
    if args.render_only:
        output = args.output or RESULTS / "table_size.json"
        results = json.loads(output.read_text())
        plot(results, output.with_name("check_vs_table_size.png" if args.output is None else output.stem + ".png"))
        if args.output is None:
            write_markdown(RESULTS / "table_size.md", render_markdown(results))
        return 0
    if args.child_json:
        (backend,) = backends
        args.child_json.write_text(json.dumps(run_backend(backend, args), indent=2, default=str))
        return 0
    results: dict[str, Any] = {"load_average": {"start": load_average()}, "backends": {}}
    for backend in backends:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--backend", backend, "--child-json", str(out),
                       "--max-size", str(args.max_size), "--calls", str(args.calls), "--runs", str(args.runs),
                       "--max-fill-seconds", str(args.max_fill_seconds)]
            started = time.perf_counter()
            if subprocess.run(command, cwd=REPO, check=False).returncode != 0 or not out.exists():
                print(f"table-size benchmark on {backend} failed", file=sys.stderr)
                return 1
            results["backends"][backend] = json.loads(out.read_text())
            results["backends"][backend]["seconds"] = round(time.perf_counter() - started, 1)
            print(f"({backend}: {results['backends'][backend]['seconds']} s)", flush=True)
    results["load_average"]["end"] = load_average()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from bench.run import machine

    results["machine"] = machine()
    results["date"] = utc_now()
    output = args.output or RESULTS / "table_size.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    png = output.with_name("check_vs_table_size.png" if args.output is None else output.stem + ".png")
    plot(results, png)
    if args.output is None:
        write_markdown(RESULTS / "table_size.md", render_markdown(results))
    print(f"results written to {output} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
