"""Compare passkey sign-in and a security-key second factor against django-allauth's mfa WebAuthn.

    .venv/bin/python bench/webauthn_peers.py [--backend sqlite|postgres] [--cache redis|locmem]
                                             [--rounds 5] [--iterations 150] [--json PATH]

Needs the peers installed: pip install -e '.[bench]' (django-allauth[mfa],
which brings fido2). Each round runs every system once, in alternating
order, each in a fresh process on a fresh database
(bench/peers/webauthn_flow.py), and the order of the three flows inside
each process turns round by round, so machine noise spreads over all. Every
login goes through the system's HTTP views with Django's test client; a
software authenticator (tests/webauthn_authenticator.py) answers each
challenge with a real ES256 assertion. Prints statements, commits and cache
operations per login and per step, logins per second (median, min..max over
the rounds) and the ratios ours / allauth taken round by round; and the
budgets of issue 15: passkey sign-in at most 10 data statements, the
security-key step no more data statements than the TOTP step.
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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ["ours", "allauth", "allauth_headless"]
PG_URL = "postgres://ephemeral:ephemeral@127.0.0.1:5432/{name}"
PASSKEY_BUDGET = 10

TITLES = {
    "passkey": "Passkey sign-in (options request + verify request), discoverable credential, user verification",
    "security_key": "Password login + security key as the second factor (options request + verify request)",
    "totp": "Password login + TOTP code (the reference of the budget)",
}


def _run(system: str, iterations: int, backend: str, cache: str, flows: list[str]) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), BENCH_CACHE=cache, BENCH_FLOW_ORDER=",".join(flows))
    with tempfile.TemporaryDirectory() as tmp:
        if backend == "postgres":
            name = f"bench_webauthn_{system}"
            subprocess.run(["dropdb", "-h", "127.0.0.1", "-U", "postgres", "--if-exists", name], check=True)
            subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", "-O", "ephemeral", name], check=True)
            env["BENCH_DATABASE_URL"] = PG_URL.format(name=name)
        else:
            env["BENCH_SQLITE_PATH"] = str(Path(tmp) / "bench.sqlite3")
        out = subprocess.run(
            [sys.executable, "-m", "bench.peers.webauthn_flow", system, str(iterations)],
            cwd=ROOT, env=env, capture_output=True, text=True, check=False,
        )
    if out.returncode != 0:
        raise SystemExit(f"{system} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):>7.1f} ({min(values):.1f}..{max(values):.1f})"


def _ratio(values: list[float]) -> str:
    return f"{statistics.median(values):.2f}x (min {min(values):.2f}x, max {max(values):.2f}x)"


def _steps(figures: dict[str, Any], key: str) -> str:
    steps = figures["steps"]
    parts = [str(steps[name][key]) for name in ("password", "options", "verify") if name in steps]
    return f"{figures[key]} ({' + '.join(parts)})"


def machine() -> dict[str, Any]:
    """The machine line: CPU, cores, load, versions, commit."""
    from importlib.metadata import version

    cpu = ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), "")
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu": cpu, "cores": os.cpu_count(), "load_average": [round(x, 2) for x in os.getloadavg()],
        "python": sys.version.split()[0], "django": version("django"), "django-allauth": version("django-allauth"),
        "fido2": version("fido2"), "commit": commit,
    }


def report(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    first = {system: runs[0]["flows"] for system, runs in results.items()}
    print(f"\nMachine: {args.machine}")
    print(f"Database: {results['ours'][0].get('db_version', args.backend)}")
    print(f"\n{args.backend}, {args.rounds} rounds x {args.iterations} logins per flow, DB sessions, "
          f"MD5 hasher, {args.cache} cache; statements of one steady-state login, per request in brackets")
    for flow, title in TITLES.items():
        print(f"\n{title}\n")
        print(f"{'system':<16} {'data stmts':>18} {'all stmts':>18} {'commits':>7} {'cache ops':>9} "
              f"{'logins/s median (min..max)':>28}")
        for system, runs in results.items():
            figures = first[system][flow]
            rates = [run["flows"][flow]["logins_per_second"] for run in runs]
            print(f"{system:<16} {_steps(figures, 'data_statements'):>18} {_steps(figures, 'all_statements'):>18} "
                  f"{figures['write_commits']:>7} {figures['cache_ops']:>9} {_spread(rates):>28}")
        for peer in SYSTEMS[1:]:
            pairs = zip(results["ours"], results[peer], strict=True)
            ratios = [o["flows"][flow]["logins_per_second"] / p["flows"][flow]["logins_per_second"] for o, p in pairs]
            print(f"  throughput ours / {peer}, per round: {_ratio(ratios)}")

    for system, runs in results.items():
        for flow in TITLES:
            counts = {run["flows"][flow]["data_statements"] for run in runs}
            if len(counts) > 1:
                print(f"\nnote: {system} {flow}: the data statements differed between rounds: {sorted(counts)}")

    print("\nBudgets of issue 15 (data statements: SELECT/INSERT/UPDATE/DELETE)")
    ours = first["ours"]
    passkey = ours["passkey"]["data_statements"]
    theirs = ", ".join(f"{peer} {first[peer]['passkey']['data_statements']}" for peer in SYSTEMS[1:])
    print(f"  passkey sign-in, options + verify: {passkey} (budget {PASSKEY_BUDGET}: "
          f"{'met' if passkey <= PASSKEY_BUDGET else 'NOT met'}); {theirs}")

    def step(system: str, flow: str) -> int:
        return int(first[system][flow]["steps"]["second_factor"]["data_statements"])

    key_step, totp_step = step("ours", "security_key"), step("ours", "totp")
    theirs = ", ".join(f"{peer} {step(peer, 'security_key')} and {step(peer, 'totp')}" for peer in SYSTEMS[1:])
    print(f"  security-key step (options + verify): {key_step}; TOTP step: {totp_step} "
          f"({'met' if key_step <= totp_step else 'NOT met'}); {theirs}")
    own = [run["flows"]["security_key"]["logins_per_second"] / run["flows"]["totp"]["logins_per_second"]
           for run in results["ours"]]
    print(f"  ours, security-key login / TOTP login throughput, same process: {_ratio(own)}")


NAMES = {
    "ours": "ephemeral_auth", "allauth": "django-allauth (HTML views)", "allauth_headless": "django-allauth (headless)",
}


def markdown(paths: list[Path]) -> None:
    """The tables of docs/benchmarks.md from results files (one per backend)."""
    loaded = [json.loads(path.read_text()) for path in paths]
    print("| flow | system | data statements (per request) | all statements | commits with writes "
          "| cache operations |")
    print("|---|---|---|---|---|---|")
    first = loaded[0]["results"]
    for flow in TITLES:
        for system in SYSTEMS:
            figures = first[system][0]["flows"][flow]
            print(f"| {flow.replace('_', ' ')} | {NAMES[system]} | {_steps(figures, 'data_statements')} "
                  f"| {figures['all_statements']} | {figures['write_commits']} | {figures['cache_ops']} |")
    print("\n| flow | database | rounds x logins | ephemeral_auth logins/s | django-allauth (HTML) logins/s "
          "| django-allauth (headless) logins/s | ours / allauth (HTML) | ours / allauth (headless) |")
    print("|---|---|---|---|---|---|---|---|")
    for flow in TITLES:
        for data in loaded:
            results, args = data["results"], data["args"]
            cells = []
            for system in SYSTEMS:
                rates = [run["flows"][flow]["logins_per_second"] for run in results[system]]
                cells.append(f"{statistics.median(rates):.1f} ({min(rates):.1f}–{max(rates):.1f})")
            for peer in SYSTEMS[1:]:
                ratios = [o["flows"][flow]["logins_per_second"] / p["flows"][flow]["logins_per_second"]
                          for o, p in zip(results["ours"], results[peer], strict=True)]
                cells.append(f"**{statistics.median(ratios):.2f}×** ({min(ratios):.2f}–{max(ratios):.2f}×)")
            database = results["ours"][0].get("db_version", args["backend"]).split(" (")[0]
            print(f"| {flow.replace('_', ' ')} | {database} | {args['rounds']} × {args['iterations']} | "
                  + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--cache", choices=["redis", "locmem"], default="redis")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=150)
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--markdown", type=Path, nargs="+", metavar="JSON",
                        help="print the tables of docs/benchmarks.md from results files, and run nothing")
    args = parser.parse_args()
    if args.markdown:
        markdown(args.markdown)
        return

    args.machine = machine()
    results: dict[str, list[dict[str, Any]]] = {s: [] for s in SYSTEMS}
    for round_no in range(args.rounds):
        order = SYSTEMS[round_no % len(SYSTEMS):] + SYSTEMS[: round_no % len(SYSTEMS)]
        # The flows run one after the other in each process: their order turns too (the same for every
        # system within a round, so a round's ratios compare flows run at the same place).
        flows = list(TITLES)
        flows = flows[round_no % len(flows):] + flows[: round_no % len(flows)]
        for system in order:
            results[system].append(_run(system, args.iterations, args.backend, args.cache, flows))
        print(f"round {round_no + 1}/{args.rounds} done", file=sys.stderr)
    args.machine["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    report(results, args)
    if args.json:
        # The SQL text of the first round only (every round runs the same statements).
        for runs in results.values():
            for run in runs[1:]:
                for figures in run["flows"].values():
                    for request in figures["requests"]:
                        request.pop("sql", None)
        args.json.write_text(json.dumps({"machine": args.machine, "args": {
            "backend": args.backend, "cache": args.cache, "rounds": args.rounds, "iterations": args.iterations,
        }, "results": results}, indent=1))


if __name__ == "__main__":
    main()
