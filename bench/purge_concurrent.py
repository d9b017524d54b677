"""Purge 10^6 expired tokens + 10^6 stale events on PostgreSQL while token consumers run.

Measures the purge (``ephemeral_auth.services.cleanup.purge_expired``, in its
own process: time and peak RSS = VmHWM) and what it does to two consumer
processes that meanwhile issue and consume live tokens in a loop
(``tokens.issue_password_reset`` then ``tokens.consume_token``, one
statement each), paced at ``--rate`` pairs per second each. Latencies of the
consumers are split by wall-clock time into three windows: *before* (no purge
running, the table still full), *during* the purge, and *after* it (the table
small again). Reported: p50/p99 of consume, issue and the pair in each window
and the ratio during/before.

The tables are filled as bench/run.py's purge section fills them
(``bench.fill``: expired tokens of all six types and stale events,
interleaved with 10^4 live tokens and 10^4 live events, every 101st row live).
The purge runs as of the fill's instant (``now=``), so the live rows stay
live however long the run takes. Proof that no live row was deleted: the count
and the sum of the ids of the live rows are the same before and after, no
expired row is left, and every consume of a consumer's own live token
succeeded (a purge that deleted one would make its consume fail).

With ``--alone`` (default on) the same purge first runs on a freshly filled
table with no consumer, for its undisturbed time and memory.

    .venv/bin/python bench/purge_concurrent.py
    .venv/bin/python bench/purge_concurrent.py --rows 100000 --window 5     # smoke run

Database: PostgreSQL ``ea_bench_purge`` (created if missing, tables truncated).
Writes ``bench/results/purge_concurrent.json`` and ``purge_concurrent.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
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

from bench.latency import load_average, markdown_table, summarize_ms, utc_now, write_markdown  # noqa: E402

RESULTS = REPO / "bench" / "results"
POSTGRES_URL = "postgres://ephemeral:ephemeral@127.0.0.1:5432/ea_bench_purge"
WINDOWS = ["before", "during", "after", "control"]
FIGURES = ["consume", "issue", "pair"]
RATIO_KEYS = ["consume p50", "consume p99", "pair p50", "pair p99"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("EA_BENCH_PURGE_URL", POSTGRES_URL))
    parser.add_argument("--rows", type=int, default=10**6, help="expired tokens, and stale events (default 10^6)")
    parser.add_argument("--live", type=int, default=10**4, help="live tokens, and live events (default 10^4)")
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=50,
                        help="issue+consume pairs per second per consumer (0: flat out)")
    parser.add_argument("--window", type=float, default=15, help="seconds of the before and after windows")
    parser.add_argument("--rounds", type=int, default=3,
                        help="fill + purge with consumers, repeated (default 3): the machine is noisy")
    parser.add_argument("--batch-size", type=int, default=None, help="default EPHEMERAL_AUTH_PURGE_BATCH_SIZE")
    parser.add_argument("--no-alone", dest="alone", action="store_false", help="skip the purge without consumers")
    parser.add_argument("--output", type=Path, default=None, help="default bench/results/purge_concurrent.json")
    # Internal: the consumer and purge processes.
    parser.add_argument("--consumer", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--purge-now", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# The consumer process.


def consumer(args: argparse.Namespace) -> None:
    """Issue and consume live tokens until the stop file appears; write (time, ms, ms, ok) samples."""
    from bench.env import setup_django

    setup_django(args.url, migrate=False)
    from django.contrib.auth import get_user_model

    from ephemeral_auth.exceptions import InvalidToken
    from ephemeral_auth.models import TokenType
    from ephemeral_auth.services import tokens

    user = get_user_model()._default_manager.get(username=f"purge-consumer-{args.consumer}")
    interval = 1 / args.rate if args.rate > 0 else 0.0
    samples: list[tuple[float, float, float, bool]] = []
    next_at = time.perf_counter()
    while not args.stop_file.exists():
        if interval:
            pause = next_at - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            # Behind schedule: carry on from now, no burst to catch up.
            next_at = max(next_at + interval, time.perf_counter())
        at = time.time()
        t0 = time.perf_counter()
        issued = tokens.issue_password_reset(user)
        t1 = time.perf_counter()
        try:
            tokens.consume_token(issued.raw, TokenType.PASSWORD_RESET)
            ok = True
        except InvalidToken:
            ok = False  # the live token was gone: exactly what the purge must never cause
        t2 = time.perf_counter()
        samples.append((at, (t2 - t1) * 1000, (t1 - t0) * 1000, ok))
    args.out.write_text(json.dumps(samples))


# The purge process.


def purge_process(args: argparse.Namespace) -> None:
    """Purge as of ``--purge-now``; print one JSON line: wall-clock start and end, counts, peak RSS."""
    from bench.env import setup_django
    from bench.timing import vm_hwm_kb

    setup_django(args.url, migrate=False)
    from django.db import connection

    from ephemeral_auth import conf
    from ephemeral_auth.services import cleanup

    batch_size = args.batch_size or int(conf.get("PURGE_BATCH_SIZE"))
    connection.ensure_connection()
    baseline = vm_hwm_kb()
    started_at, started = time.time(), time.perf_counter()
    result = cleanup.purge_expired(now=datetime.fromisoformat(args.purge_now), batch_size=batch_size)
    seconds = time.perf_counter() - started
    print(json.dumps({
        "started_at": started_at, "ended_at": time.time(), "seconds": round(seconds, 2),
        "deleted_tokens": sum(result.tokens.values()), "deleted_events": result.events,
        "peak_rss_kb": vm_hwm_kb(), "baseline_rss_kb": baseline, "batch_size": batch_size,
    }))


def _run_purge(args: argparse.Namespace, base: datetime) -> dict[str, Any]:
    from django.db import connection

    command = [sys.executable, str(Path(__file__).resolve()), "--url", args.url, "--purge-now", base.isoformat()]
    if args.batch_size:
        command += ["--batch-size", str(args.batch_size)]
    connection.close()  # hold no lock or snapshot meanwhile
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"purge process failed:\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


# The benchmark.


def _fill(args: argparse.Namespace, base: datetime, keep_seconds: int) -> tuple[dict[str, Any], float]:
    from bench import fill

    started = time.perf_counter()
    fill.truncate()
    fill.fill_purge_tokens(base=base, expired=args.rows, live=args.live)
    fill.fill_purge_events(base=base, stale=args.rows, live=args.live, keep_seconds=keep_seconds)
    fill.analyze()
    before = fill.live_checksums(base=base, keep_seconds=keep_seconds)
    return before, round(time.perf_counter() - started, 1)


def _verify(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {
        "live_before": {"tokens": before["live_tokens"], "events": before["live_events"]},
        "live_after": {"tokens": after["live_tokens"], "events": after["live_events"]},
        # Same count and same sum of ids: the very rows that were live are still there.
        "every_live_row_kept": after["live_tokens"] == before["live_tokens"]
        and after["live_events"] == before["live_events"],
        "nothing_expired_left": after["token_rows"] == after["live_tokens"][0]
        and after["event_rows"] == after["live_events"][0],
        "rows_left": {"tokens": after["token_rows"], "events": after["event_rows"]},
    }


def _in_window(samples: list[list[Any]], start: float, end: float) -> list[list[Any]]:
    return [s for s in samples if start <= s[0] < end]


def _window_figures(inside: list[list[Any]], seconds: float) -> dict[str, Any]:
    """Return pairs, rate, failed consumes and latency figures of the samples of one window."""
    ok = [s for s in inside if s[3]]
    return {
        "seconds": round(seconds, 2),
        "pairs": len(inside),
        "pairs_per_second": round(len(inside) / max(seconds, 1e-9), 1),
        "failed_consumes": len(inside) - len(ok),
        "consume": summarize_ms([s[1] for s in ok]),
        "issue": summarize_ms([s[2] for s in ok]),
        "pair": summarize_ms([s[1] + s[2] for s in ok]),
    }


def _ratios(window: dict[str, Any], before: dict[str, Any]) -> dict[str, float]:
    return {f"{figure} {q}": round(window[figure][q] / before[figure][q], 2)
            for figure in FIGURES for q in ("p50", "p99") if window[figure].get(q) and before[figure].get(q)}


def concurrent_round(args: argparse.Namespace, keep_seconds: int) -> dict[str, Any]:
    """Fill, start the consumers, then: before window, purge, after window, CPU-bound control."""
    from django.db import connection

    from bench import fill
    from ephemeral_auth import clock

    base = clock.now()
    before, fill_seconds = _fill(args, base, keep_seconds)
    connection.close()
    with tempfile.TemporaryDirectory(prefix="ea_bench_purge_") as tmp:
        stop = Path(tmp) / "stop"
        outs = [Path(tmp) / f"consumer-{i}.json" for i in range(args.consumers)]
        procs = [
            subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--url", args.url, "--consumer", str(i),
                              "--rate", str(args.rate), "--stop-file", str(stop), "--out", str(out)], cwd=REPO)
            for i, out in enumerate(outs)
        ]
        try:
            time.sleep(5)  # Django set up, connections open, plans cached: not measured
            t_before = time.time()
            time.sleep(args.window)
            t_purge = time.time()
            purge = _run_purge(args, base)
            t_after = time.time()
            time.sleep(args.window)
            t_end = time.time()
            # Control: one CPU-bound process as long as the purge, no database work. On a
            # 2-core machine part of any slowdown is only a third busy process.
            t_burn = time.time()
            burn = max(1.0, float(purge["seconds"]))
            subprocess.run([sys.executable, "-c", f"import time\nend = time.time() + {burn}\n"
                            "while time.time() < end:\n    pass\n"], check=True)
            t_burn_end = time.time()
        finally:
            stop.touch()
            for proc in procs:
                proc.wait(timeout=60)
        samples = [s for out in outs for s in json.loads(out.read_text())]
    after = fill.live_checksums(base=base, keep_seconds=keep_seconds)
    spans = {"before": (t_before, t_purge), "during": (purge["started_at"], purge["ended_at"]),
             "after": (t_after, t_end), "control": (t_burn, t_burn_end)}
    inside = {name: _in_window(samples, *span) for name, span in spans.items()}
    windows = {name: _window_figures(inside[name], spans[name][1] - spans[name][0]) for name in WINDOWS}
    return {
        **purge, "fill_seconds": fill_seconds, **_verify(before, after),
        "windows": windows,
        "ratio_during_to_before": _ratios(windows["during"], windows["before"]),
        "ratio_control_to_before": _ratios(windows["control"], windows["before"]),
        "failed_consumes_total": sum(1 for s in samples if not s[3]),
        "pairs_total": len(samples),
        "_samples": inside,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.env import prepare_database, setup_django

    prepare_database("postgres", args.url)
    setup_django(args.url)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from bench import fill
    from ephemeral_auth import clock, conf

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    print(f"\n#### postgres {version}: purge of {args.rows:,} + {args.rows:,} rows ####", flush=True)
    model = get_user_model()
    for i in range(args.consumers):
        model._default_manager.get_or_create(username=f"purge-consumer-{i}",
                                             defaults={"email": f"purge-consumer-{i}@example.com"})
    keep_seconds = int(conf.longest_window().total_seconds())
    results: dict[str, Any] = {"version": version, "rows": args.rows, "live": args.live, "rounds": args.rounds,
                               "consumers": args.consumers, "rate_per_consumer": args.rate, "window": args.window}

    if args.alone:
        base = clock.now()
        before, fill_seconds = _fill(args, base, keep_seconds)
        purge = _run_purge(args, base)
        results["alone"] = {**purge, "fill_seconds": fill_seconds,
                            **_verify(before, fill.live_checksums(base=base, keep_seconds=keep_seconds))}
        a = results["alone"]
        print(f"purge alone: {a['seconds']} s, peak RSS {a['peak_rss_kb'] / 1024:.1f} MB "
              f"({a['baseline_rss_kb'] / 1024:.1f} MB before purging), live rows kept: "
              f"{a['every_live_row_kept']}", flush=True)

    rounds = []
    for number in range(1, args.rounds + 1):
        r = concurrent_round(args, keep_seconds)
        rounds.append(r)
        print(f"round {number}: purge with {args.consumers} consumers {r['seconds']} s, peak RSS "
              f"{r['peak_rss_kb'] / 1024:.1f} MB, live rows kept: {r['every_live_row_kept']}, nothing expired left: "
              f"{r['nothing_expired_left']}, failed consumes: {r['failed_consumes_total']} of {r['pairs_total']:,}",
              flush=True)
        for name in WINDOWS:
            w = r["windows"][name]
            print(f"  {name:<7} {w['seconds']:6.1f} s {w['pairs']:6,} pairs ({w['pairs_per_second']}/s)  consume "
                  f"p50 {w['consume'].get('p50')} p99 {w['consume'].get('p99')} ms  pair p50 {w['pair'].get('p50')} "
                  f"p99 {w['pair'].get('p99')} ms", flush=True)
        print(f"  during/before: {r['ratio_during_to_before']}", flush=True)
        print(f"  CPU-bound control/before: {r['ratio_control_to_before']}", flush=True)
    fill.truncate()

    # All rounds together: each window's samples pooled, and the median of the per-round ratios.
    pooled = {name: _window_figures([s for r in rounds for s in r["_samples"][name]],
                                    sum(r["windows"][name]["seconds"] for r in rounds)) for name in WINDOWS}
    keys = rounds[0]["ratio_during_to_before"].keys()
    results["pooled"] = {
        "windows": pooled,
        "ratio_during_to_before": _ratios(pooled["during"], pooled["before"]),
        "ratio_control_to_before": _ratios(pooled["control"], pooled["before"]),
        "median_of_round_ratios_during": {k: statistics.median(r["ratio_during_to_before"][k] for r in rounds)
                                          for k in keys},
        "median_of_round_ratios_control": {k: statistics.median(r["ratio_control_to_before"][k] for r in rounds)
                                           for k in keys},
        "every_live_row_kept": all(r["every_live_row_kept"] for r in rounds),
        "nothing_expired_left": all(r["nothing_expired_left"] for r in rounds),
        "failed_consumes_total": sum(r["failed_consumes_total"] for r in rounds),
        "pairs_total": sum(r["pairs_total"] for r in rounds),
    }
    for r in rounds:
        del r["_samples"]
    results["concurrent_rounds"] = rounds
    p = results["pooled"]
    print(f"pooled over {len(rounds)} rounds: during/before {p['ratio_during_to_before']}; control/before "
          f"{p['ratio_control_to_before']}", flush=True)
    return results


# Report.


def render_markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    rounds, p = r["concurrent_rounds"], r["pooled"]
    pace = f"{r['rate_per_consumer']:g} times a second" if r["rate_per_consumer"] else "as fast as they can"
    out = ["## Purge under concurrent token traffic (`bench/purge_concurrent.py`)\n"]
    out.append(
        f"Run of {m['date']} on {m['cores']} cores ({m['cpu']}), PostgreSQL {r['version'].split()[0]}, Python "
        f"{m['python']}, Django {m['django']}, commit {m['commit']}"
        f"{' + working tree' if m['uncommitted_changes'] else ''}; load average {r['load_average']['start']} at "
        f"start, {r['load_average']['end']} at end; {r['seconds']:.0f} s in all. {r['rows']:,} expired tokens and "
        f"{r['rows']:,} stale events among {r['live']:,} + {r['live']:,} live rows (every 101st row live), purged "
        f"by `cleanup.purge_expired` (batch {rounds[0]['batch_size']:,}) in its own process. {r['consumers']} "
        f"consumer processes each issue and consume a live `password_reset` token {pace}; their latencies are "
        f"split by wall-clock time into {r['window']:g} s before the purge, the purge itself, {r['window']:g} s "
        "after it, and a control: one CPU-bound Python process (no database work) running as long as the purge "
        f"did. {len(rounds)} rounds, each on a freshly filled table.\n"
    )
    rows = []
    if "alone" in r:
        a = r["alone"]
        rows.append(["alone", a["seconds"], round(a["peak_rss_kb"] / 1024, 1), round(a["baseline_rss_kb"] / 1024, 1),
                     a["deleted_tokens"], a["deleted_events"], a["every_live_row_kept"], a["nothing_expired_left"]])
    for number, c in enumerate(rounds, start=1):
        rows.append([f"round {number}, with {r['consumers']} consumers", c["seconds"],
                     round(c["peak_rss_kb"] / 1024, 1), round(c["baseline_rss_kb"] / 1024, 1), c["deleted_tokens"],
                     c["deleted_events"], c["every_live_row_kept"], c["nothing_expired_left"]])
    out.append(markdown_table(["purge", "seconds", "peak RSS MB", "RSS before purging MB", "tokens deleted",
                               "events deleted", "every live row kept", "nothing expired left"], rows))

    def window_rows(windows: dict[str, Any]) -> list[list[Any]]:
        return [[name, w["seconds"], w["pairs"], w["pairs_per_second"], w["failed_consumes"],
                 w["consume"].get("p50"), w["consume"].get("p99"), w["issue"].get("p50"), w["issue"].get("p99"),
                 w["pair"].get("p50"), w["pair"].get("p99"), w["pair"].get("max")]
                for name, w in windows.items()]

    headers = ["window", "seconds", "pairs", "pairs/s", "failed consumes", "consume p50", "consume p99",
               "issue p50", "issue p99", "pair p50", "pair p99", "pair max"]
    out.append(f"\nConsumer latency (ms), all {len(rounds)} rounds pooled (both consumers):\n")
    out.append(markdown_table(headers, window_rows(p["windows"])))
    rows = [[f"round {n}", *(c["ratio_during_to_before"].get(k) for k in RATIO_KEYS),
             *(c["ratio_control_to_before"].get(k) for k in RATIO_KEYS)] for n, c in enumerate(rounds, start=1)]
    rows.append(["pooled", *(p["ratio_during_to_before"].get(k) for k in RATIO_KEYS),
                 *(p["ratio_control_to_before"].get(k) for k in RATIO_KEYS)])
    rows.append(["median of rounds", *(p["median_of_round_ratios_during"].get(k) for k in RATIO_KEYS),
                 *(p["median_of_round_ratios_control"].get(k) for k in RATIO_KEYS)])
    out.append("Ratios to the *before* window (during the purge | during the CPU-bound control):\n")
    out.append(markdown_table(["", *(f"purge: {k}" for k in RATIO_KEYS), *(f"control: {k}" for k in RATIO_KEYS)],
                              rows))
    first = rounds[0]
    out.append(
        f"Live rows (round 1): {first['live_before']['tokens'][0]:,} tokens and "
        f"{first['live_before']['events'][0]:,} events before the purge, {first['live_after']['tokens'][0]:,} and "
        f"{first['live_after']['events'][0]:,} after, with the same sums of ids; every live row kept in every "
        f"round: {'yes' if p['every_live_row_kept'] else 'NO'}; nothing expired left: "
        f"{'yes' if p['nothing_expired_left'] else 'NO'}; {p['failed_consumes_total']} failed consumes out of "
        f"{p['pairs_total']:,} issue+consume pairs.\n"
    )
    return "\n".join(out)




def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.consumer is not None:
        consumer(args)
        return 0
    if args.purge_now:
        purge_process(args)
        return 0
    started = time.perf_counter()
    load_start = load_average()
    results = run(args)
    results["load_average"] = {"start": load_start, "end": load_average()}
    results["seconds"] = round(time.perf_counter() - started, 1)
    from bench.run import machine

    results["machine"] = machine()
    results["date"] = utc_now()
    output = args.output or RESULTS / "purge_concurrent.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n")
    if args.output is None:
        write_markdown(RESULTS / "purge_concurrent.md", render_markdown(results))
    print(f"results written to {output} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
