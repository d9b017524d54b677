"""Compare a complete TOTP login against django-allauth (mfa) and django-two-factor-auth.

    .venv/bin/python bench/two_factor_peers.py [--backend sqlite|postgres] [--cache redis|locmem]
                                               [--rounds 5] [--iterations 200]

Needs the peers installed: pip install -e '.[bench]'. Each round runs every
system once, in alternating order, each in a fresh process on a fresh
database, so machine noise spreads over all of them. Prints statements and
cache operations per login, and the throughput ratios (median and spread).

The cache (which only django-allauth uses: its rate limits) is Redis on this
machine by default, the shared cache a site with several workers needs for
those limits to hold; --cache locmem gives a per-process cache as a
reference line (it would not limit anything across workers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ["ours", "allauth", "two_factor"]
PG_URL = "postgres://ephemeral:ephemeral@127.0.0.1:5432/{name}"


def _run(system: str, iterations: int, backend: str, cache: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_CACHE=cache)
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "postgres":
            name = f"bench_peer_{system}"
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
            subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", "-O", "ephemeral", name], check=True)
            env["BENCH_DATABASE_URL"] = PG_URL.format(name=name)
        else:
            env["BENCH_SQLITE_PATH"] = str(Path(tmp) / "bench.sqlite3")
        out = subprocess.run(
            [sys.executable, "-m", "bench.peers.flow", system, str(iterations)],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )
    if out.returncode != 0:
        raise SystemExit(f"{system} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--cache", choices=["redis", "locmem"], default="redis")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args()

    results: dict[str, list[dict]] = {s: [] for s in SYSTEMS}
    for round_no in range(args.rounds):
        order = SYSTEMS[round_no % len(SYSTEMS):] + SYSTEMS[: round_no % len(SYSTEMS)]
        for system in order:
            results[system].append(_run(system, args.iterations, args.backend, args.cache))
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)

    print(f"\nComplete TOTP login (password step + code step), {args.backend}, "
          f"{args.rounds} rounds x {args.iterations} logins, DB sessions, MD5 hasher, {args.cache} cache\n")
    header = ["system", "data stmts", "all stmts", "commits", "cache ops", "logins/s (median)", "min..max"]
    print(f"{header[0]:<12} {header[1]:>10} {header[2]:>9} {header[3]:>7} {header[4]:>9} {header[5]:>18} "
          f"{header[6]:>16}")
    for system in SYSTEMS:
        runs = results[system]
        rates = [r["logins_per_second"] for r in runs]
        first = runs[0]
        print(f"{system:<12} {first['data_statements']:>10} {first['all_statements']:>9} "
              f"{first.get('write_commits', '?'):>7} {first['cache_ops']:>9} "
              f"{statistics.median(rates):>18.1f} {min(rates):>7.1f}..{max(rates):<8.1f}")
    print("\nThroughput ratio, ours / peer, per round (same round = same machine conditions):")
    for peer in SYSTEMS[1:]:
        pairs = zip(results["ours"], results[peer], strict=True)
        ratios = [o["logins_per_second"] / p["logins_per_second"] for o, p in pairs]
        median, low, high = statistics.median(ratios), min(ratios), max(ratios)
        print(f"  vs {peer:<11} median {median:.2f}x  (min {low:.2f}x, max {high:.2f}x)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
