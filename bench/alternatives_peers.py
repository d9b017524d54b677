"""Compare ephemeral_auth with the peers it replaces, measured in the same run on the same machine.

    .venv/bin/python bench/alternatives_peers.py                      # SQLite and PostgreSQL (a few minutes each)
    .venv/bin/python bench/alternatives_peers.py --backend postgres --rounds 7
    .venv/bin/python bench/alternatives_peers.py --quick              # smoke run, under a minute per backend
    .venv/bin/python bench/alternatives_peers.py --markdown           # only re-render the Markdown from the JSON

Three comparisons (bench/alt/cases.py), each side through its real code:

1. OIDC flow state: mozilla-django-oidc (state, nonce and PKCE verifier in the
   session; database sessions, and cache sessions on Redis) against our
   ``oidc_state`` row, at authorize and at the callback.
2. Lockout bookkeeping: django-axes' database handler against our password
   step's ``record_first`` + ``confirm`` and ``check``.
3. Cache-based rate limit: django-allauth's ``login_failed`` limit with its
   cache on Redis (and on LocMem, for reference) against the same calls of ours.

Plus, on PostgreSQL, a parallel burst of wrong passwords against one account
(bench/alt/race.py): how many passwords each limiter lets through for a limit of 10.

Needs the peers (``pip install -e '.[bench]'``: django-allauth, django-axes,
redis) and Redis on 127.0.0.1:6379 (database 5, keys under ``ea_altpeers``;
``BENCH_REDIS_URL`` overrides). Databases: a SQLite file under /tmp, and the
PostgreSQL database ``ea_altpeers`` (created if missing; ``BENCH_DATABASE_URL``
or ``--postgres-url`` override). Reports statements and cache operations per
call, operations per second (median, min..max of the rounds) and the ratio
ours/theirs taken round by round; asserts nothing about time. Writes
bench/results/alternatives_peers_<backend>.json and re-renders
bench/results/alternatives_peers.md from every results file present.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "bench" / "results"
INTERPRETATION = REPO / "bench" / "alt" / "interpretation.md"
DEFAULT_POSTGRES_URL = "postgres://ephemeral:ephemeral@127.0.0.1:5432/ea_altpeers"
DEFAULT_SQLITE_PATH = "/tmp/ea_altpeers.sqlite3"
GROUPS = ["oidc", "axes", "allauth"]
TITLES = {
    "oidc": "OIDC flow state: ephemeral_auth vs mozilla-django-oidc",
    "axes": "Lockout bookkeeping: ephemeral_auth vs django-axes",
    "allauth": "Cache-based rate limit: ephemeral_auth vs django-allauth",
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--ops", type=int, default=150, help="timed calls per case per round (default 150)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 40 calls x 3 rounds, one race trial")
    parser.add_argument("--only", action="append", choices=[*GROUPS, "race"], help="run only this part (repeatable)")
    parser.add_argument("--skip-race", action="store_true", help="skip the parallel burst (PostgreSQL only anyway)")
    parser.add_argument("--race-trials", type=int, default=3)
    parser.add_argument("--race-workers", type=int, default=6)
    parser.add_argument("--race-attempts", type=int, default=5, help="wrong passwords per worker per trial")
    parser.add_argument("--postgres-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_POSTGRES_URL))
    parser.add_argument("--sqlite-path", default=DEFAULT_SQLITE_PATH)
    parser.add_argument("--markdown", action="store_true", help="only re-render the Markdown from the JSON files")
    args = parser.parse_args(argv)
    if args.quick:
        args.ops, args.rounds, args.race_trials = 40, 3, 1
    return args


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# One backend, in this process.


def setup(backend: str, args: argparse.Namespace) -> str:
    """Point the settings at the backend's private database, set Django up, migrate; return the server version."""
    from bench.env import prepare_database

    if backend == "postgres":
        os.environ["BENCH_DATABASE_URL"] = args.postgres_url
        prepare_database("postgres", args.postgres_url)
    else:
        os.environ.pop("BENCH_DATABASE_URL", None)
        os.environ["BENCH_SQLITE_PATH"] = args.sqlite_path
        prepare_database("sqlite", f"sqlite:///{args.sqlite_path}")
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.alt.settings"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version" if connection.vendor == "postgresql" else "SELECT sqlite_version()")
        return str(cursor.fetchone()[0])


def redis_client() -> Any:
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_URL)


def reset() -> None:
    """Empty every table and every Redis key the benchmark writes (its own database, its own key prefix)."""
    from axes.models import AccessAttempt, AccessAttemptExpiration, AccessFailureLog, AccessLog
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.contrib.sessions.models import Session
    from django.core.cache import caches

    from ephemeral_auth.models import EphemeralToken, RateLimitEvent

    for model in (AccessAttemptExpiration, AccessAttempt, AccessFailureLog, AccessLog, Session, EphemeralToken,
                  RateLimitEvent):
        queryset = model.objects.all()
        queryset._raw_delete(queryset.db)
    get_user_model()._default_manager.all().delete()  # the race's accounts (and their related rows)
    client = redis_client()
    keys = list(client.scan_iter(match=f"{settings.KEY_PREFIX}*", count=1000))
    if keys:
        client.delete(*keys)
    caches["default"].close()


def run_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    version = setup(backend, args)
    try:
        redis_client().ping()
    except Exception as exc:
        sys.exit(f"Redis is not reachable ({exc}); start it (bash .ci/services.sh) or set BENCH_REDIS_URL")
    from bench.alt import cases
    from bench.alt.harness import run_group
    from bench.run import machine

    wanted = args.only or [*GROUPS, "race"]
    results: dict[str, Any] = {
        "backend": backend,
        "version": version,
        "machine": machine(),
        "ops": args.ops,
        "rounds": args.rounds,
        "load_average": {"start": [round(x, 1) for x in os.getloadavg()]},
        "groups": {},
        "seconds": {},
    }
    builders = {"oidc": cases.oidc_operations, "axes": cases.axes_operations, "allauth": cases.allauth_operations}
    log(f"#### {backend} {version}: {args.ops} calls x {args.rounds} rounds ####")
    for group in GROUPS:
        if group not in wanted:
            continue
        started = time.perf_counter()
        reset()
        log(f"{TITLES[group]}")
        operations = builders[group]()
        run_group(operations, n=args.ops, rounds=args.rounds, log=log)
        results["groups"][group] = [
            {"operation": o.name, "expected": o.expected, "note": o.note, "ours": o.ours, **o.results}
            for o in operations
        ]
        results["seconds"][group] = round(time.perf_counter() - started, 1)
        print(render_group(group, results["groups"][group], backend, markdown=False), flush=True)
    if "race" in wanted and not args.skip_race and backend == "postgres":
        from bench.alt.race import race

        started = time.perf_counter()
        reset()
        log("Parallel burst of wrong passwords against one account")
        results["race"] = race(trials=args.race_trials, workers=args.race_workers, attempts=args.race_attempts,
                               log=log)
        results["seconds"]["race"] = round(time.perf_counter() - started, 1)
        print(render_race(results["race"], markdown=False), flush=True)
    reset()
    results["load_average"]["end"] = [round(x, 1) for x in os.getloadavg()]
    return results


# Rendering (plain text and Markdown), from the results alone.


def _spread(figures: dict[str, Any], unit: str = "") -> str:
    def fmt(value: float) -> str:
        return f"{value:.2f}" if unit == "×" else f"{value:,.0f}"

    return f"{fmt(figures['median'])}{unit} ({fmt(figures['min'])}–{fmt(figures['max'])}{unit})"


def _outcome(counts: dict[str, Any], expected: str) -> str:
    outcomes = [name for name, _ in counts["outcomes"]]
    return outcomes[0] if outcomes == [expected] else "UNEXPECTED: " + ", ".join(outcomes)


def _table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    return "\n".join(lines) + "\n"


def render_group(group: str, operations: list[dict[str, Any]], backend: str, *, markdown: bool) -> str:
    headers = ["operation", "system", "data stmts (all)", "cache ops", "outcome", "ops/s median (min–max)",
               "ours ÷ this, per round"]
    rows = []
    for operation in operations:
        for system, counts in operation["counts"].items():
            ratio = operation["ratio_ours_to"].get(system)
            kinds = counts["cache_ops_by_kind"]
            detail = ", ".join(f"{k} {v}" for k, v in kinds.items())
            cache = f"{counts['cache_ops']}" + (f" ({detail})" if kinds else "")
            rows.append([
                operation["operation"] if system == operation["ours"] else "",
                system,
                f"{counts['statements']} ({counts['all_statements']})",
                cache,
                _outcome(counts, operation["expected"]),
                _spread(operation["ops_per_second"][system]),
                "—" if ratio is None else _spread(ratio, "×"),
            ])
    title = f"{TITLES[group]} — {backend}"
    heading = f"#### {title}\n\n" if markdown else f"\n== {title} ==\n"
    return heading + _table(headers, rows, markdown)


def render_race(race: dict[str, Any], *, markdown: bool) -> str:
    headers = ["system", "passwords checked per burst, median (min–max)", "runs", "failures recorded", "limit"]
    rows = []
    for system, figures in race["systems"].items():
        checked = figures["passwords_checked"]
        recorded = figures["failures_recorded"]
        rows.append([
            system,
            f"{checked['median']:g} ({checked['min']}–{checked['max']})",
            ", ".join(str(v) for v in checked["runs"]),
            "—" if all(v is None for v in recorded) else ", ".join(str(v) for v in recorded),
            str(race["limit"]),
        ])
    title = (f"Parallel burst: {race['workers']} processes x {race['attempts_per_worker']} wrong passwords "
             f"against one account, limit {race['limit']} ({race['trials']} trials per system)")
    heading = f"#### {title}\n\n" if markdown else f"\n== {title} ==\n"
    return heading + _table(headers, rows, markdown)


METHOD = """\
## Against django-axes, django-allauth's rate limit and mozilla-django-oidc

`bench/alternatives_peers.py` measures ephemeral_auth beside three peers in
the same process, on the same database, in the same run (support code in
`bench/alt/`). Every side runs through its real code; nothing of a peer is
re-implemented. Each operation is timed in rounds of N calls; in every round
all sides of a comparison take turns (the order rotated and reversed round by
round), so a burst of load elsewhere on the machine hits every side; the
ratio ours ÷ theirs is taken within each round and its median and min–max
reported. Arguments (requests, started flows, subjects with earlier failures)
are prepared outside the timed loop. Statements are counted with
`CaptureQueriesContext`: data statements (`SELECT`/`INSERT`/`UPDATE`/`DELETE`),
and in brackets every statement Django logs, transaction control included
(`BEGIN`, `COMMIT`, `SAVEPOINT`, `RELEASE SAVEPOINT` of `atomic()` blocks);
cache operations with counting subclasses of Django's Redis and LocMem caches.
The *outcome* column is what each call did (a side that silently did
something else would show up there).

```console
.venv/bin/pip install -e '.[bench]'          # django-allauth, django-axes, redis, ...
.venv/bin/python bench/alternatives_peers.py  # SQLite and PostgreSQL; Redis on 127.0.0.1:6379 db 5
.venv/bin/python bench/alternatives_peers.py --backend postgres --rounds 7 --ops 300
.venv/bin/python bench/alternatives_peers.py --markdown   # re-render this section from the JSON
```

Conditions (`bench/alt/settings.py`, on top of `bench/peers/settings_base.py`):

* **OIDC**: mozilla-django-oidc 5's `OIDCAuthenticationRequestView` and
  `OIDCAuthenticationCallbackView` with PKCE on (ours always stores a
  verifier), state/nonce/verifier in `request.session`, saved as
  `SessionMiddleware` would (`session.save()` after the authorize view);
  sessions in the database (`backends.db`) or on Redis (`backends.cache`).
  Ours: `OIDCAuthorizeView` (one `INSERT` of an `oidc_state` token) and
  `OIDCCallbackView` (one `DELETE … RETURNING`, bound to the browser's
  cookie). Both read the same provider settings with explicit endpoints; no
  provider is called: only `ModelBackend` is configured, so `authenticate()`
  returns None right after each side's state check and both views end in their
  failure redirect. That the state was found and used up is read from
  `user_login_failed`, which each view reaches only then.
* **django-axes** 8 with its default `AxesDatabaseHandler`, 10 failures per
  15 minutes, locking by username *or* IP (`AXES_LOCKOUT_PARAMETERS =
  ["username", "ip_address"]`): the closest match to our password step's two
  buckets (account 10 / 15 min, IP 20 / 15 min). A wrong password costs axes
  `is_allowed()` (what `AxesStandaloneBackend` does before the password is
  checked) plus `user_login_failed()` (its signal receiver afterwards); ours
  costs `record_first()` for both buckets plus `confirm()`, before the
  password is checked. In the real password step our confirmation is folded
  into the account lookup, so there the bookkeeping adds 1 statement to the
  login rather than the 2 shown here.
* **django-allauth** 65's `login_failed` limit (`ACCOUNT_RATE_LIMITS =
  {"login_failed": "20/15m/ip,10/15m/key"}`, our two limits) through its
  adapter's `pre_authenticate()` (`allauth.core.ratelimit.consume`, which
  takes a cache lock per rate), with `django.core.cache.backends.redis.RedisCache`
  on the same machine, and with `LocMemCache` as a reference line only:
  LocMem lives inside one process, so with several workers each has its own
  counters and the limit is multiplied by the number of workers.
* **Parallel burst** (PostgreSQL only): W processes released together by a
  barrier, each sending A wrong passwords for one fresh account from its own
  IP, through each system's real entry point (our `password_login`; Django's
  `authenticate()` with `AxesStandaloneBackend` first; allauth's adapter
  `authenticate()`). A counting hasher counts the passwords actually checked.
  MD5 keeps the check-to-record window as narrow as it gets; a production
  hasher (PBKDF2, hundreds of milliseconds) widens it for every
  check-then-record limiter.
"""


def render_markdown(results: list[dict[str, Any]]) -> str:
    out = [METHOD]
    for r in results:
        m = r["machine"]
        out.append(
            f"### {r['backend']} {r['version']}\n\n"
            f"Run of {m['date']} (commit {m['commit']}{' + working tree' if m['uncommitted_changes'] else ''}), "
            f"{m['cores']} cores ({m['cpu']}), Python {m['python']}, Django {m['django']}; {r['ops']} calls × "
            f"{r['rounds']} rounds per case; load average {r['load_average']['start']} → "
            f"{r['load_average'].get('end')}.\n"
        )
        for group, operations in r["groups"].items():
            out.append(render_group(group, operations, r["backend"], markdown=True))
        if "race" in r:
            out.append(render_race(r["race"], markdown=True))
    if INTERPRETATION.exists():
        out.append(INTERPRETATION.read_text())
    return "\n".join(out)


def write_markdown() -> Path:
    paths = sorted(RESULTS.glob("alternatives_peers_*.json"), reverse=True)  # sqlite, then postgres
    found = [json.loads(p.read_text()) for p in paths if not p.stem.endswith("_quick")]
    path = RESULTS / "alternatives_peers.md"
    path.write_text(render_markdown(found))
    return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.markdown:
        log(f"wrote {write_markdown()}")
        return 0
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.backend == "all":
        # Django is configured once per process: one child per backend.
        passed = ["--ops", str(args.ops), "--rounds", str(args.rounds), "--race-trials", str(args.race_trials),
                  "--race-workers", str(args.race_workers), "--race-attempts", str(args.race_attempts),
                  "--postgres-url", args.postgres_url, "--sqlite-path", args.sqlite_path]
        passed += [f"--only={part}" for part in args.only or []]
        passed += [flag for flag, on in (("--quick", args.quick), ("--skip-race", args.skip_race)) if on]
        for backend in ("sqlite", "postgres"):
            done = subprocess.run([sys.executable, __file__, *passed, "--backend", backend], check=False)
            if done.returncode != 0:
                return done.returncode
        log(f"wrote {write_markdown()}")
        return 0
    results = run_backend(args.backend, args)
    path = RESULTS / f"alternatives_peers_{args.backend}{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps(results, indent=2, default=str))
    log(f"wrote {path}")
    if not args.quick:
        log(f"wrote {write_markdown()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
