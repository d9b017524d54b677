"""Latency (p50/p99) and throughput of the JSON endpoints under ``gunicorn -w 4``, per backend.

The example project runs as the e2e suite runs it (``tests/e2e/servers.py``:
``gunicorn -w 4 --no-control-socket``, its settings from the environment) on
a free port, against a private database migrated here: SQLite
``/tmp/ea_bench_http.sqlite3``, PostgreSQL and MariaDB ``ea_bench_http``
(dropped and recreated on every run). Load generator processes, forked from
the process that prepared the data, drive a fixed number of requests per
operation through concurrent clients (``requests.Session`` each; gunicorn's
sync workers close the connection after every response, so every request
opens a TCP connection, as a browser behind no proxy would):

* ``csrf``: ``GET /api/auth/csrf/``, the floor (no database statement);
* ``login``: ``POST /api/auth/login/`` of a user without 2FA;
* ``2fa login``: ``POST /api/auth/login/`` of a TOTP user, then
  ``POST /api/auth/2fa/verify/`` with the current code (both steps timed,
  and their sum);
* ``login refused (429)``: the password step for an account at its limit;
* ``password reset request``: ``POST /api/auth/password-reset/`` for an
  existing account (the email job runs on the worker's thread pool after
  the answer; the dummy email backend drops the message);
* ``download redeem``: ``GET /files/1/download/?token=...`` of a one-time
  link issued beforehand.

Every request has its own client IP (``X-Forwarded-For`` from a trusted
127.0.0.1) and every login, reset and link its own account, so no rate limit
interferes except on the 429 path. A request counts as an error unless it got
the expected status *and* body (200 with ``authenticated``,
``2fa_required``, ``sent``; 429 with ``rate_limited``).

    .venv/bin/python bench/http_load.py                          # sqlite, postgres, mariadb
    .venv/bin/python bench/http_load.py --backend postgres --quick

It asserts nothing about time; figures land in ``bench/results/http_load.json``
and ``bench/results/http_load.md``. No secret (password, code, token) is
printed or written: the clients record statuses and latencies only, and
gunicorn's access log, whose request lines would carry download tokens, goes
to /dev/null.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.latency import load_average, markdown_table, summarize_ms, utc_now, write_markdown  # noqa: E402

RESULTS = REPO / "bench" / "results"
BACKENDS = ["sqlite", "postgres", "mariadb"]
DEFAULT_URLS = {
    "sqlite": "sqlite:////tmp/ea_bench_http.sqlite3",
    "postgres": "postgres://ephemeral:ephemeral@127.0.0.1:5432/ea_bench_http",
    "mariadb": "mysql://root:@127.0.0.1:3306/ea_bench_http",
}
PASSWORD = "bench-Http-Load-Password-0123"

# Requests per operation (the 2FA login counts complete logins, two requests each).
FULL = {"csrf": 2000, "login": 120, "2fa login": 100, "login refused (429)": 1000,
        "password reset request": 600, "download redeem": 1000}
QUICK = {"csrf": 300, "login": 24, "2fa login": 24, "login refused (429)": 200,
         "password reset request": 100, "download redeem": 200}
# MariaDB through PyMySQL answers 3-4x slower (see the report): half the requests keep its run near 3 minutes.
BACKEND_SHARE = {"mariadb": 0.5}
OPERATIONS = list(FULL)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=[*BACKENDS, "all"],
                        help="backend to run (repeatable; default all: sqlite, postgres, mariadb)")
    parser.add_argument("--quick", action="store_true", help="a tenth of the requests (smoke run)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--client-processes", type=int, default=2,
                        help="processes the clients are spread over (default 2: 4 threads each)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (default 4)")
    parser.add_argument("--conn-max-age", type=int, default=None,
                        help="add ?conn_max_age=N to DATABASE_URL (default: the example settings as they are, 0)")
    parser.add_argument("--also-conn-max-age", type=int, default=None, metavar="N",
                        help="run PostgreSQL and MariaDB a second time with ?conn_max_age=N (persistent connections)")
    parser.add_argument("--server-settings", default="example_project.settings",
                        help="DJANGO_SETTINGS_MODULE of the served project (to try a settings change)")
    parser.add_argument("--output", type=Path, default=None, help="default bench/results/http_load.json")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite bench/results/http_load.md from the results file; measure nothing")
    parser.add_argument("--child-json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# The database.


def with_conn_max_age(url: str, seconds: int | None) -> str:
    if seconds is None:
        return url
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, f"conn_max_age={seconds}") if q)
    return urlunsplit(parts._replace(query=query))


def fresh_database(backend: str, url: str) -> None:
    """Drop and recreate this benchmark's own database (never another one)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    assert Path(name).name.startswith("ea_bench_http"), name  # ours only
    if backend == "sqlite":
        from bench.env import prepare_database

        prepare_database("sqlite", url)
    elif backend == "postgres":
        import psycopg

        maintenance = urlunsplit(parts._replace(path="/postgres", query=""))
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    else:
        import pymysql

        conn = pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username or "root",
                               password=parts.password or "", autocommit=True)
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
                cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()


# What the clients send. An item is everything one request (or one 2FA login) needs.


@dataclass(frozen=True)
class Item:
    ip: str
    username: str = ""
    secret: str = ""  # TOTP secret (2FA login)
    path: str = ""  # download URL path with its token


Sample = tuple[str, float, bool, str]  # (operation, latency ms, as expected, what went wrong)


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = fn()
    return result, (time.perf_counter() - started) * 1000


def _headers(session: Any, base: str, ip: str) -> dict[str, str]:
    return {"X-CSRFToken": session.cookies.get("csrftoken", ""), "Referer": base + "/", "X-Forwarded-For": ip}


def _check(response: Any, status: int, key: str | None = None, value: str | None = None) -> str:
    """Return "" if the response is the expected one, else a short description (no body text)."""
    if response.status_code != status:
        return f"status {response.status_code}"
    if key is not None:
        try:
            got = response.json().get(key)
        except ValueError:
            return "not JSON"
        if got != value:
            return f"{key}={got}"
    return ""


def _post(session: Any, base: str, path: str, body: dict[str, str], ip: str) -> Any:
    return session.post(base + path, json=body, headers=_headers(session, base, ip), timeout=60)


def op_csrf(session: Any, base: str, item: Item) -> list[Sample]:
    response, ms = _timed(lambda: session.get(base + "/api/auth/csrf/", timeout=60))
    problem = _check(response, 200)
    return [("csrf", ms, not problem, problem)]


def op_login(session: Any, base: str, item: Item) -> list[Sample]:
    session.cookies.set("sessionid", None)  # a browser that is not logged in yet
    body = {"username": item.username, "password": PASSWORD}
    response, ms = _timed(lambda: _post(session, base, "/api/auth/login/", body, item.ip))
    problem = _check(response, 200, "status", "authenticated")
    return [("login", ms, not problem, problem)]


def op_2fa_login(session: Any, base: str, item: Item) -> list[Sample]:
    import pyotp

    session.cookies.set("sessionid", None)
    body = {"username": item.username, "password": PASSWORD}
    step, ms1 = _timed(lambda: _post(session, base, "/api/auth/login/", body, item.ip))
    problem = _check(step, 200, "status", "2fa_required")
    samples: list[Sample] = [("2fa login: password step", ms1, not problem, problem)]
    if problem:
        return [*samples, ("2fa login", ms1, False, "password step failed")]
    pending = {"pre_auth_token": step.json()["pre_auth_token"], "method": "totp",
               "code": pyotp.TOTP(item.secret).now()}
    done, ms2 = _timed(lambda: _post(session, base, "/api/auth/2fa/verify/", pending, item.ip))
    problem = _check(done, 200, "status", "authenticated")
    return [*samples, ("2fa login: TOTP verify", ms2, not problem, problem),
            ("2fa login", ms1 + ms2, not problem, problem)]


def op_refused(session: Any, base: str, item: Item) -> list[Sample]:
    body = {"username": item.username, "password": PASSWORD + "-wrong"}
    response, ms = _timed(lambda: _post(session, base, "/api/auth/login/", body, item.ip))
    problem = _check(response, 429, "error", "rate_limited")
    return [("login refused (429)", ms, not problem, problem)]


def op_reset(session: Any, base: str, item: Item) -> list[Sample]:
    body = {"email": f"{item.username}@example.com"}
    response, ms = _timed(lambda: _post(session, base, "/api/auth/password-reset/", body, item.ip))
    problem = _check(response, 200, "status", "sent")
    return [("password reset request", ms, not problem, problem)]


def op_download(session: Any, base: str, item: Item) -> list[Sample]:
    response, ms = _timed(lambda: session.get(base + item.path, headers={"X-Forwarded-For": item.ip}, timeout=60))
    problem = _check(response, 200)
    if not problem and "attachment" not in response.headers.get("Content-Disposition", ""):
        problem = "no attachment"
    return [("download redeem", ms, not problem, problem)]


OPS: dict[str, tuple[Callable[[Any, str, Item], list[Sample]], bool]] = {
    # name: (one request, needs a CSRF cookie first)
    "csrf": (op_csrf, False),
    "login": (op_login, True),
    "2fa login": (op_2fa_login, True),
    "login refused (429)": (op_refused, True),
    "password reset request": (op_reset, True),
    "download redeem": (op_download, False),
}


def _client_thread(base: str, op: str, items: list[Item], barrier: Any, out: list[Any]) -> None:
    import requests

    fn, needs_csrf = OPS[op]
    session = requests.Session()
    if needs_csrf:
        session.get(base + "/api/auth/csrf/", timeout=60).raise_for_status()
    barrier.wait()
    samples: list[Sample] = []
    for item in items:
        try:
            samples += fn(session, base, item)
        except Exception as exc:  # a refused connection, a timeout: an error, not a crash of the run
            samples.append((op, 0.0, False, type(exc).__name__))
    out.append((samples, time.perf_counter()))


def _client_process(base: str, op: str, shares: list[list[Item]], barrier: Any, queue: Any) -> None:
    """Run one thread per share; put (samples, end times, CPU seconds of this process) on ``queue``."""
    cpu = os.times()
    out: list[Any] = []
    threads = [threading.Thread(target=_client_thread, args=(base, op, share, barrier, out)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    used = os.times()
    samples = [s for part, _ in out for s in part]
    ends = [end for _, end in out]
    queue.put((samples, ends, (used.user - cpu.user) + (used.system - cpu.system)))


def _cpu_seconds(pids: list[int]) -> float:
    """Return the CPU time (user + system) the processes ``pids`` have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def run_phase(base: str, op: str, items: list[Item], *, clients: int, processes: int,
              server_pids: list[int]) -> dict[str, Any]:
    """Send ``items`` through ``clients`` concurrent clients; return samples and wall time."""
    ctx = multiprocessing.get_context("fork")
    shares = [items[i::clients] for i in range(clients)]
    groups = [shares[p::processes] for p in range(processes)]
    barrier = ctx.Barrier(clients + 1)
    queue = ctx.Queue()
    children = [ctx.Process(target=_client_process, args=(base, op, group, barrier, queue)) for group in groups]
    for child in children:
        child.start()
    barrier.wait(timeout=120)
    server_cpu = _cpu_seconds(server_pids)
    started = time.perf_counter()
    parts = [queue.get(timeout=900) for _ in children]
    for child in children:
        child.join()
    server_cpu = _cpu_seconds(server_pids) - server_cpu
    samples = [s for part, _, _ in parts for s in part]
    wall = max(end for _, ends, _ in parts for end in ends) - started
    return {"samples": samples, "wall": wall, "client_cpu": sum(c for _, _, c in parts), "server_cpu": server_cpu}


def summarize_phase(op: str, phase: dict[str, Any], count: int) -> dict[str, dict[str, Any]]:
    """Return figures per timed operation of one phase (the 2FA login has three)."""
    by_name: dict[str, list[Sample]] = {}
    for sample in phase["samples"]:
        by_name.setdefault(sample[0], []).append(sample)
    out = {}
    for name, samples in by_name.items():
        errors = Counter(problem for _, _, ok, problem in samples if not ok)
        figures = summarize_ms([ms for _, ms, ok, _ in samples if ok])
        out[name] = {
            "requests": len(samples),
            "errors": sum(errors.values()),
            "error_kinds": dict(errors),
            **{k: v for k, v in figures.items() if k != "count"},
            "per_second": round(len(samples) / phase["wall"], 1),
            "wall_seconds": round(phase["wall"], 2),
        }
        if name == op:
            # CPU per request (per complete login for the 2FA login), workers only; the
            # database server's own processes are not included.
            out[name]["server_cpu_ms_per_request"] = round(phase["server_cpu"] / count * 1000, 2)
            out[name]["client_cpu_ms_per_request"] = round(phase["client_cpu"] / count * 1000, 2)
    return out


# One backend, in its own process (Django is configured once per process).


def _ip(phase: int, i: int) -> str:
    return f"10.{phase}.{(i >> 8) & 255}.{i & 255}"


def _hash_seconds() -> dict[str, Any]:
    """Time the configured password hasher (one verify, in this process, median of 3)."""
    from django.contrib.auth.hashers import check_password, get_hasher, make_password

    hasher = get_hasher()
    encoded = make_password(PASSWORD)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        check_password(PASSWORD, encoded)
        times.append(time.perf_counter() - started)
    return {"hasher": hasher.algorithm, "iterations": getattr(hasher, "iterations", None),
            "verify_ms": round(statistics.median(times) * 1000, 1)}


def make_users(prefix: str, count: int, encoded: str) -> list[str]:
    from django.contrib.auth import get_user_model

    model = get_user_model()
    names = [f"{prefix}{i}" for i in range(count)]
    model._default_manager.bulk_create(
        [model(username=n, email=f"{n}@example.com", password=encoded) for n in names], batch_size=500
    )
    return names


def make_totp_users(count: int, encoded: str) -> list[tuple[str, str]]:
    """Create ``count`` users with a confirmed authenticator; return (username, secret) pairs."""
    from datetime import timedelta

    import pyotp
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from ephemeral_auth import clock
    from ephemeral_auth.services import totp
    from ephemeral_auth.services.two_factor import Proof

    names = make_users("totp", count, encoded)
    users = get_user_model()._default_manager.filter(username__in=names).order_by("pk")
    # Enrolled five minutes ago, so the current code is not the (spent) enrolment code.
    earlier = clock.now() - timedelta(minutes=5)
    pairs = []
    with transaction.atomic():
        for user in users:
            setup = totp.setup(user, proof=Proof.trusted_caller(), now=earlier)
            totp.confirm(user, pyotp.TOTP(setup.secret).at(earlier), proof=Proof.trusted_caller(), now=earlier)
            pairs.append((user.get_username(), setup.secret))
    return pairs


def issue_links(username: str, count: int) -> list[str]:
    """Issue ``count`` download links of file 1 for one user; return the URL paths (they carry the tokens)."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from ephemeral_auth.views.downloads import issue_download_link

    user = get_user_model()._default_manager.get(username=username)
    with transaction.atomic():
        return [issue_download_link(user, "file:1", url_name="files:download", args=[1]).url
                for _ in range(count)]


def start_capturing_stderr(server: Any, path: Path) -> None:
    """Start ``server`` with its stderr (where the app's log handler writes) sent to ``path``."""
    saved = os.dup(2)
    with open(path, "ab") as capture:
        os.dup2(capture.fileno(), 2)
    try:
        server.start()
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def server_problems(error_log: Path, stderr_log: Path) -> dict[str, Any]:
    """Count tracebacks and name the exceptions the server logged (final lines only: no request data)."""
    text = "".join(p.read_text(errors="replace") for p in (error_log, stderr_log) if p.exists())
    exceptions = Counter(
        line.strip()[:120] for line in text.splitlines()
        if re.match(r"^[\w.]+(Error|Exception|Locked)\b: ", line.strip())
    )
    return {
        "server_tracebacks": text.count("Traceback (most recent call last)"),
        "server_exceptions": dict(exceptions),
        "password_reset_jobs_failed": text.count("password reset job failed"),
        "worker_timeouts": text.count("WORKER TIMEOUT"),
    }


def count_tokens(token_type: str) -> int:
    from ephemeral_auth.models import EphemeralToken

    return EphemeralToken.objects.filter(token_type=token_type).count()


def run_backend(backend: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Prepare data, start gunicorn, run every operation; return the figures of this backend."""
    load_start = load_average()
    fresh_database(backend, url)
    from bench.env import setup_django

    setup_django(url)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, connections

    from ephemeral_auth import conf
    from ephemeral_auth.models import EventType, RateLimitEvent, TokenType
    from ephemeral_auth.services import ratelimit
    from tests.e2e.servers import Gunicorn, example_env, free_port

    share = BACKEND_SHARE.get(backend, 1.0)
    counts = {op: max(args.clients, int(n * share)) for op, n in (QUICK if args.quick else FULL).items()}
    warm = args.clients  # one request per client before each timed phase (not counted)
    with connection.cursor() as cursor:
        cursor.execute({"postgresql": "SHOW server_version", "sqlite": "SELECT sqlite_version()"}.get(
            connection.vendor, "SELECT VERSION()"))
        version = cursor.fetchone()[0]
    print(f"\n#### {backend} {version}: gunicorn -w {args.workers}, {args.clients} clients ####", flush=True)

    started = time.perf_counter()
    encoded = make_password(PASSWORD)  # one hash for every account: creating them stays cheap
    plain = make_users("plain", counts["login"] + warm, encoded)
    resets = make_users("reset", counts["password reset request"] + warm, encoded)
    owner = make_users("owner", 1, encoded)[0]
    hot = make_users("hot", 1, encoded)[0]
    totp_users = make_totp_users(counts["2fa login"] + warm, encoded)
    limit = conf.rate_limit(EventType.LOGIN_ATTEMPT).limit
    hot_pk = get_user_model()._default_manager.get(username=hot).pk
    for _ in range(limit):  # the hot account at its ceiling: every password step for it is refused
        ratelimit.attempt(EventType.LOGIN_ATTEMPT, ratelimit.account_key(hot_pk))
    setup_seconds = time.perf_counter() - started
    hashing = _hash_seconds()
    connections.close_all()  # the load generators are forked from this process

    with tempfile.TemporaryDirectory(prefix="ea_bench_http_") as tmp:
        logs = Path(tmp)
        # Request lines carry download tokens: the access log goes nowhere.
        os.symlink(os.devnull, logs / "access.log")
        env = example_env(url, TRUSTED_PROXIES="127.0.0.1", DJANGO_SETTINGS_MODULE=args.server_settings,
                          EMAIL_BACKEND="django.core.mail.backends.dummy.EmailBackend")
        server = Gunicorn(env, port=free_port(), logs=logs, workers=args.workers)
        start_capturing_stderr(server, logs / "stderr.log")
        base = f"http://127.0.0.1:{server.port}"
        results: dict[str, Any] = {}
        checks: dict[str, Any] = {}
        try:
            for index, op in enumerate(OPERATIONS, start=1):
                n = counts[op]
                if op == "csrf":
                    items = [Item(ip=_ip(index, i)) for i in range(n + warm)]
                elif op == "login":
                    items = [Item(ip=_ip(index, i), username=u) for i, u in enumerate(plain)]
                elif op == "2fa login":
                    items = [Item(ip=_ip(index, i), username=u, secret=s) for i, (u, s) in enumerate(totp_users)]
                elif op == "login refused (429)":
                    items = [Item(ip=_ip(index, i), username=hot) for i in range(n + warm)]
                elif op == "password reset request":
                    items = [Item(ip=_ip(index, i), username=u) for i, u in enumerate(resets)]
                else:
                    # Links live 5 minutes: issued right before their phase, one per owner's request.
                    paths = issue_links(owner, n + warm)
                    connections.close_all()
                    items = [Item(ip=_ip(index, i), path=p) for i, p in enumerate(paths)]
                assert len(items) == n + warm, (op, len(items))
                pids = server.pids()
                run_phase(base, op, items[:warm], clients=args.clients, processes=args.client_processes,
                          server_pids=pids)
                phase = run_phase(base, op, items[warm:], clients=args.clients, processes=args.client_processes,
                                  server_pids=pids)
                results.update(summarize_phase(op, phase, n))
                main = results[op]
                print(f"{op:<26} {n:>6,} requests  p50 {main['p50']:>8.1f} ms  p99 {main['p99']:>8.1f} ms  "
                      f"{main['per_second']:>7.1f}/s  errors {main['errors']}", flush=True)
            # What the server did, read back from the database.
            deadline = time.monotonic() + 60
            wanted = counts["password reset request"] + warm
            while count_tokens(TokenType.PASSWORD_RESET) < wanted and time.monotonic() < deadline:
                time.sleep(0.5)
            checks = {
                "password_reset_tokens_issued": count_tokens(TokenType.PASSWORD_RESET),
                "password_reset_requests": wanted,
                "download_tokens_left": count_tokens(TokenType.SLICER_DOWNLOAD),
                "pre_auth_tokens_left": count_tokens(TokenType.PRE_AUTH),
                "hot_key_rows": RateLimitEvent.objects.filter(
                    event_type=EventType.LOGIN_ATTEMPT, key=ratelimit.account_key(hot_pk)).count(),
                "hot_key_limit": limit,
            }
            connections.close_all()
        finally:
            server.stop()
        checks.update(server_problems(server.error_log, logs / "stderr.log"))
    return {
        "version": version,
        "url_options": urlsplit(url).query,
        "server_settings": args.server_settings,
        "workers": args.workers,
        "clients": args.clients,
        "client_processes": args.client_processes,
        "requests": counts,
        "share": share,
        "warmup_per_operation": warm,
        "setup_seconds": round(setup_seconds, 1),
        "load_average": {"start": load_start, "end": load_average()},
        "password_hasher": hashing,
        "operations": results,
        "checks": checks,
    }


# Report.


ROWS = ["csrf", "login", "2fa login", "2fa login: password step", "2fa login: TOTP verify", "login refused (429)",
        "password reset request", "download redeem"]


def render_markdown(results: dict[str, Any]) -> str:
    out = ["## HTTP latency under `gunicorn -w 4` (`bench/http_load.py`)\n"]
    m = results["machine"]
    first = next(iter(results["backends"].values()))
    out.append(
        f"Run of {m['date']} on {m['cores']} cores ({m['cpu']}), Python {m['python']}, Django {m['django']}, "
        f"commit {m['commit']}{' + working tree' if m['uncommitted_changes'] else ''}; load average "
        f"{results['load_average']['start']} at start, {results['load_average']['end']} at end. "
        f"The example project under `gunicorn -w {first['workers']} --no-control-socket` (sync workers), "
        f"{first['clients']} concurrent clients in {first['client_processes']} processes on the same machine, "
        f"one warm-up request per client before each operation. Password hasher: "
        f"`{first['password_hasher']['hasher']}`, {first['password_hasher']['iterations']:,} iterations "
        f"(the example settings' default; {first['password_hasher']['verify_ms']} ms per verify in one "
        "process). Latency is client-side, from sending the request to the last byte of the answer, "
        "including the TCP connect (sync workers close every connection). `errors` counts answers that were "
        "not the expected status and body; the latency columns cover the expected answers. CPU ms/request "
        "is the gunicorn workers' CPU time (user + system) over the phase divided by its requests; the "
        "database server's CPU is not in it.\n"
    )
    for backend, r in results["backends"].items():
        half = ", half the requests" if r.get("share", 1) < 1 else ""
        out.append(f"### {backend} ({r['version'].split(' (')[0]}{half})\n")
        if "load_average" in r:
            out.append(f"Load average {r['load_average']['start']} at start, {r['load_average']['end']} at end; "
                       f"{r['seconds']:.0f} s in all.\n")
        rows = []
        for name in ROWS:
            f = r["operations"].get(name)
            if f is None:
                continue
            rows.append([name, f["requests"], f.get("p50"), f.get("p90"), f.get("p99"), f.get("max"),
                         f["per_second"], f["errors"], f.get("server_cpu_ms_per_request", "")])
        out.append(markdown_table(["operation", "requests", "p50 ms", "p90 ms", "p99 ms", "max ms", "per second",
                                   "errors", "worker CPU ms/request"], rows))
        c = r["checks"]
        out.append(
            f"Afterwards: {c['password_reset_tokens_issued']:,} reset tokens for "
            f"{c['password_reset_requests']:,} reset requests (one link per request), "
            f"{c['download_tokens_left']} download links and {c['pre_auth_tokens_left']} pending 2FA logins "
            f"left, {c['hot_key_rows']} rows for the refused account (limit {c['hot_key_limit']}), "
            f"{c['server_tracebacks']} tracebacks in the server's logs"
            + (": " + "; ".join(f"{n} × `{e}`" for e, n in c["server_exceptions"].items())
               if c["server_exceptions"] else "")
            + (f" ({c['password_reset_jobs_failed']} password reset jobs failed)"
               if c["password_reset_jobs_failed"] else "")
            + ".\n"
        )
    return "\n".join(out)




def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render_only:
        write_markdown(RESULTS / "http_load.md", render_markdown(json.loads((args.output or RESULTS / "http_load.json")
                                                                           .read_text())))
        return 0
    if args.child_json:
        (backend,) = args.backend
        result = run_backend(backend, args.url, args)
        args.child_json.write_text(json.dumps(result, indent=2))
        return 0
    backends = BACKENDS if not args.backend or "all" in args.backend else args.backend
    runs = [(b, b, with_conn_max_age(DEFAULT_URLS[b], args.conn_max_age)) for b in backends]
    if args.also_conn_max_age is not None:
        runs += [(f"{b}, conn_max_age={args.also_conn_max_age}", b,
                  with_conn_max_age(DEFAULT_URLS[b], args.also_conn_max_age)) for b in backends if b != "sqlite"]
    all_results: dict[str, Any] = {"quick": args.quick, "load_average": {"start": load_average()}, "backends": {}}
    for label, backend, url in runs:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            command = [sys.executable, str(Path(__file__).resolve()), "--backend", backend, "--url", url,
                       "--child-json", str(out), "--clients", str(args.clients),
                       "--client-processes", str(args.client_processes), "--workers", str(args.workers),
                       "--server-settings", args.server_settings]
            command += ["--quick"] if args.quick else []
            started = time.perf_counter()
            if subprocess.run(command, cwd=REPO, check=False).returncode != 0 or not out.exists():
                print(f"http load on {label} failed", file=sys.stderr)
                return 1
            result = json.loads(out.read_text())
            result["seconds"] = round(time.perf_counter() - started, 1)
            all_results["backends"][label] = result
            print(f"({label}: {result['seconds']} s)", flush=True)
    all_results["load_average"]["end"] = load_average()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example_project.settings")
    from bench.run import machine

    all_results["machine"] = machine()
    all_results["date"] = utc_now()
    output = args.output or RESULTS / ("http_load_quick.json" if args.quick else "http_load.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(all_results, indent=2) + "\n")
    if not args.quick and args.output is None:
        write_markdown(RESULTS / "http_load.md", render_markdown(all_results))
    print(f"results written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
