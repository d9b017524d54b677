"""Helpers of tests/cluster/test_patroni.py: the cluster script, a load generator, an HTTP prober, the counts.

Two halves:

* In the test process: :func:`patroni` runs ``.ci/cluster/patroni.sh``; :class:`Prober` drives
  gunicorn over HTTP; :class:`LoadGenerator` runs the service-level load in a child process;
  :func:`leader_promoted` watches Patroni's REST APIs.
* In a child process, ``python -m tests.cluster.patroni_support COMMAND`` with the example
  project's settings and ``DATABASE_URL`` through HAProxy: ``setup``, ``links``, ``load``,
  ``batch-issue``, ``batch-held`` and ``check`` (see :func:`main`). Every operation the
  database acknowledged is one JSON line, written after the call returned; an operation that
  raised a database error is logged as an error ("unknown": it may or may not have happened).
  ``check`` then asks the current leader what became of the acknowledged ones.

Only the standard library is imported at module level: the child process sets Django up
itself, and the test process never does (pytest-django's settings are another project's).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "cluster" / "patroni.sh"
HAPROXY_PORT = 5440
DATABASE_URL = f"postgres://ephemeral:ephemeral@127.0.0.1:{HAPROXY_PORT}/ephemeral_auth"
# Patroni's REST API of member pgN is on 8440 + N (the script's layout).
MEMBERS = {"pg1": 8441, "pg2": 8442}

# What the load issues: one-time links to a resource nothing serves, alive for the whole suite.
LOAD_RESOURCE = "cluster:load"
LOAD_USER = "cluster-load"
LINK_RESOURCE = "file:1"  # example_project/files: /files/1/download/
TTL_SECONDS = 1800


# --- The test process side.


def patroni(*args: str, timeout: float = 240) -> str:
    """Run ``patroni.sh ARGS`` (deadline ``timeout``); print and return its output; raise if it fails."""
    started = time.monotonic()
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=ROOT, timeout=timeout, capture_output=True, text=True, check=False,
    )
    output = (done.stdout + done.stderr).rstrip()
    print(f"$ patroni.sh {' '.join(args)}  ({time.monotonic() - started:.1f} s)\n{output}", flush=True)
    if done.returncode != 0:
        raise RuntimeError(f"patroni.sh {' '.join(args)} failed ({done.returncode}):\n{output}")
    return output


def leader_promoted(old: str, *, seconds: float = 60) -> tuple[str, float]:
    """Wait until a member other than ``old`` answers ``GET /primary`` with 200; return it and the time."""
    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for name, port in MEMBERS.items():
            if name == old:
                continue
            try:
                if requests.get(f"http://127.0.0.1:{port}/primary", timeout=1).status_code == 200:
                    return name, time.time()
            except requests.RequestException:
                pass
        time.sleep(0.1)
    raise RuntimeError(f"no member but {old} became the leader within {seconds} s")


def support_env(database_url: str = DATABASE_URL) -> dict[str, str]:
    """The environment of a child process on the example project's settings."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DATABASE_URL": database_url,
        "DEBUG": "False",
        "EPHEMERAL_AUTH_LOG_LEVEL": "CRITICAL",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL_TEST", None)
    return env


def support(*args: str, timeout: float = 120) -> str:
    """Run ``python -m tests.cluster.patroni_support ARGS`` to completion; return its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.cluster.patroni_support", *args],
        cwd=ROOT, env=support_env(), timeout=timeout, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"patroni_support {' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return done.stdout


class LoadGenerator:
    """``patroni_support load`` in a child process: issue, consume and admit until stopped."""

    def __init__(self, log: Path, *, tag: str, threads: int = 3, seconds: float = 300) -> None:
        self.log = log
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "tests.cluster.patroni_support", "load", "--log", str(log), "--tag", tag,
                "--threads", str(threads), "--seconds", str(seconds),
            ],
            cwd=ROOT, env=support_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )

    def records(self) -> list[dict[str, Any]]:
        return read_records([self.log])

    def acknowledged_since(self, moment: float) -> int:
        """How many operations the database acknowledged after ``moment`` (time.time())."""
        return sum(1 for r in self.records() if r["kind"] != "error" and r["t"] > moment)

    def stop(self, *, timeout: float = 60) -> str:
        """SIGTERM, wait for the threads to finish their operation; return what the process printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            output, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            output, _ = self.process.communicate(timeout=15)
        return output or ""


def wait_until(condition: Any, *, seconds: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Answer:
    """One HTTP request of the prober: when, what, and how it ended."""

    kind: str  # "reset" (a rate-limit admission) or "redeem" (a one-time link used up)
    started: float
    ended: float
    status: int  # 0: no HTTP answer at all (connection error or timeout)
    code: str = ""  # the JSON error code or X-Error-Code, if any
    subject: str = ""  # the client IP of a reset, the raw token of a redemption


@dataclass(frozen=True)
class Outage:
    """Seen through gunicorn: the first failed answer, the last one, the first success after them."""

    first_failure: float
    last_failure: float
    first_success: float
    failures: int


class Prober:
    """Drive gunicorn over HTTP in a thread, one request of each kind per round.

    * ``POST /api/auth/password-reset/`` for an unknown address from a fresh client IP
      (X-Forwarded-For, gunicorn trusts 127.0.0.1): 200 means the ``password_reset_ip``
      admission of that IP is committed.
    * ``GET /files/1/download/?token=...`` with the next pre-issued one-time link and no
      cookies: 200 (the file) means the link was used up.

    Both are library endpoints that must answer 503 ``service_unavailable`` when the
    database is unreachable, never 500.
    """

    def __init__(self, base_url: str, links: list[str], *, ip_prefix: str, pause: float = 0.08) -> None:
        import requests

        self.base_url = base_url
        self.links = list(links)
        self.ip_prefix = ip_prefix  # "10.201": addresses 10.201.x.y
        self.pause = pause
        self.answers: list[Answer] = []
        self.http = requests.Session()
        self.csrf = self.http.get(f"{base_url}/api/auth/csrf/", timeout=10).json()["csrf_token"]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="http-prober", daemon=True)
        self._n = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is None:
            return  # never started
        self._thread.join(timeout=120)
        if self._thread.is_alive():
            raise RuntimeError("the HTTP prober did not stop (a request hangs for more than 120 s)")

    def _request(self, kind: str, subject: str, method: str, url: str, **kwargs: Any) -> Answer:
        import requests

        started = time.time()
        try:
            response = self.http.request(method, url, timeout=90, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            answer = Answer(kind, started, time.time(), 0, type(exc).__name__, subject)
        else:
            code = response.headers.get("X-Error-Code", "")
            if response.headers.get("Content-Type", "").startswith("application/json"):
                try:
                    code = str(response.json().get("error", "") or code)
                except ValueError:
                    pass
            answer = Answer(kind, started, time.time(), response.status_code, code, subject)
        self.answers.append(answer)
        return answer

    def reset(self) -> Answer:
        self._n += 1
        ip = f"{self.ip_prefix}.{self._n // 250}.{self._n % 250 + 1}"
        return self._request(
            "reset", ip, "POST", f"{self.base_url}/api/auth/password-reset/",
            json={"email": f"nobody-{ip}@example.com"},
            headers={"X-CSRFToken": self.csrf, "Referer": self.base_url, "X-Forwarded-For": ip},
        )

    def redeem(self) -> Answer | None:
        if not self.links:
            return None
        raw = self.links.pop(0)
        # No cookies: the link is the whole credential.
        return self._request("redeem", raw, "GET", link_url(self.base_url, raw), cookies={})

    def _run(self) -> None:
        while not self._stop.is_set():
            self.reset()
            self.redeem()
            self._stop.wait(self.pause)

    # Reading the answers.

    def successes_since(self, moment: float) -> int:
        return sum(1 for a in list(self.answers) if a.started > moment and a.status == 200)

    def unexpected(self) -> list[Answer]:
        """Answers that are neither a success nor the fail-closed 503 ``service_unavailable``."""
        closed = (503, "service_unavailable")
        return [a for a in self.answers if a.status != 200 and (a.status, a.code) != closed]

    def outage(self, after: float) -> Outage | None:
        """The first run of failed requests among those started after ``after``, and the success ending it."""
        failed: list[Answer] = []
        for answer in sorted(self.answers, key=lambda a: a.started):
            if answer.started < after:
                continue
            if answer.status != 200:
                failed.append(answer)
            elif failed:
                return Outage(failed[0].ended, failed[-1].ended, answer.ended, len(failed))
        return None

    def acknowledged(self, kind: str, *, between: tuple[float, float] = (0, float("inf"))) -> list[str]:
        start, end = between
        return [a.subject for a in self.answers if a.kind == kind and a.status == 200 and start <= a.started < end]

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for answer in self.answers:
            label = f"{answer.kind} {answer.status}{' ' + answer.code if answer.code else ''}"
            counts[label] = counts.get(label, 0) + 1
        return dict(sorted(counts.items()))


def link_url(base_url: str, raw: str) -> str:
    return f"{base_url}/files/1/download/?token={raw}"


def live_links(base_url: str, raws: Iterable[str]) -> list[str]:
    """The links that ``HEAD`` calls live (200): HEAD never consumes (docs/downloads.md)."""
    import requests

    live = []
    with requests.Session() as http:
        for raw in raws:
            answer = http.head(link_url(base_url, raw), timeout=30, allow_redirects=False)
            assert answer.status_code in (200, 403), (answer.status_code, answer.headers)
            if answer.status_code == 200:
                live.append(raw)
    return live


# --- The child process side (Django on the example project, through HAProxy).


def read_records(paths: Iterable[Path]) -> list[dict[str, Any]]:
    records = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    records.append(json.loads(line))
                except ValueError:
                    pass  # a line cut short by a kill
    return records


class Log:
    """Append-only JSON lines, shared by threads; a line is written once the operation returned."""

    def __init__(self, path: Path, tag: str) -> None:
        self.path = path
        self.tag = tag
        self._lock = threading.Lock()
        self._file = path.open("a", buffering=1)

    def write(self, **record: Any) -> None:
        line = json.dumps({"tag": self.tag, **record})
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def _django() -> None:
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()


def _load_user() -> Any:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=LOAD_USER)


def _reconnect() -> None:
    """Drop this thread's connection after a database error; the next query opens a new one."""
    from django.db import connection

    try:
        connection.close()
    except Exception:
        connection.connection = None


class Operations:
    """The acknowledged operations of one thread: issue, consume, admit; each one logged."""

    def __init__(self, log: Log, user: Any, name: str) -> None:
        self.log = log
        self.user = user
        self.name = name
        self.n = 0

    def _timed(self, op: str, subject: str, call: Any) -> Any:
        from django.db import DatabaseError

        started = time.time()
        try:
            result = call()
        except DatabaseError as exc:
            self.log.write(kind="error", op=op, subject=subject, t=time.time(), dt=time.time() - started,
                           error=f"{type(exc).__name__}: {str(exc).strip()[:200]}")
            _reconnect()
            return None
        return result, started

    def issue(self) -> str | None:
        from datetime import timedelta

        from ephemeral_auth.services import tokens

        done = self._timed("issue", "", lambda: tokens.issue_download(
            self.user, resource=LOAD_RESOURCE, ttl=timedelta(seconds=TTL_SECONDS)))
        if done is None:
            return None
        issued, started = done
        self.log.write(kind="issue", raw=issued.raw, t=time.time(), dt=time.time() - started)
        return str(issued.raw)

    def consume(self, raw: str) -> bool:
        from ephemeral_auth.models import TokenType
        from ephemeral_auth.services import tokens

        done = self._timed("consume", raw, lambda: tokens.consume_token(
            raw, TokenType.SLICER_DOWNLOAD, resource=LOAD_RESOURCE))
        if done is None:
            return False
        _, started = done
        self.log.write(kind="consume", raw=raw, t=time.time(), dt=time.time() - started)
        return True

    def admit(self) -> list[int] | None:
        from ephemeral_auth.models import EventType
        from ephemeral_auth.services import ratelimit

        self.n += 1
        key = f"{self.log.tag}-{self.name}-{self.n}"
        done = self._timed("admit", key, lambda: ratelimit.attempt_many([(EventType.LOGIN_IP, key)]))
        if done is None:
            return None
        pks, started = done
        self.log.write(kind="admit", key=key, pks=list(pks), t=time.time(), dt=time.time() - started)
        return list(pks)


def command_setup(_: argparse.Namespace) -> None:
    """Create the user the load issues its links for (idempotent)."""
    from django.contrib.auth import get_user_model

    user, _created = get_user_model().objects.get_or_create(username=LOAD_USER, defaults={"email": "load@example.com"})
    print(user.pk)


def command_links(args: argparse.Namespace) -> None:
    """Issue ``--count`` one-time links to /files/1/download/ (the prober redeems them); print the raw tokens."""
    from datetime import timedelta

    from ephemeral_auth.views.downloads import issue_download_link

    user = _load_user()
    raws = [
        issue_download_link(
            user, LINK_RESOURCE, url="/files/1/download/", ttl=timedelta(seconds=TTL_SECONDS)
        ).raw
        for _ in range(args.count)
    ]
    print(json.dumps(raws))


def command_load(args: argparse.Namespace) -> None:
    """Issue two links, consume one, admit one event; again, in ``--threads`` threads, until SIGTERM."""
    log = Log(Path(args.log), args.tag)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    deadline = time.monotonic() + args.seconds
    user = _load_user()
    from django.db import connection

    connection.close()

    def worker(name: str) -> None:
        ops = Operations(log, user, name)
        while not stop.is_set() and time.monotonic() < deadline:
            kept = ops.issue()
            used = ops.issue()
            if used is not None:
                ops.consume(used)
            ops.admit()
            if kept is None or used is None:
                stop.wait(0.05)  # the database is away: do not spin
            else:
                stop.wait(0.01)
        _reconnect()

    threads = [threading.Thread(target=worker, args=(f"w{i}",), daemon=True) for i in range(args.threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log.close()
    print("load stopped", flush=True)


def command_batch_issue(args: argparse.Namespace) -> None:
    """Issue ``--count`` tokens and admit ``--count`` events, every one acknowledged (or fail)."""
    log = Log(Path(args.log), args.tag)
    ops = Operations(log, _load_user(), "batch")
    for _ in range(args.count):
        if ops.issue() is None or ops.admit() is None:
            raise SystemExit("a batch operation failed: the cluster is not healthy")
    log.close()


def command_batch_held(args: argparse.Namespace) -> None:
    """While the standby is held: consume every token issued in ``--log`` so far, issue and admit ``--count`` more."""
    path = Path(args.log)
    earlier = read_records([path])
    consumed = {r["raw"] for r in earlier if r["kind"] == "consume"}
    to_consume = [r["raw"] for r in earlier if r["kind"] == "issue" and r["raw"] not in consumed]
    log = Log(path, args.tag)
    ops = Operations(log, _load_user(), "held")
    for raw in to_consume:
        if not ops.consume(raw):
            raise SystemExit("a batch consume failed: the primary is not healthy")
    for _ in range(args.count):
        if ops.issue() is None or ops.admit() is None:
            raise SystemExit("a batch operation failed: the primary is not healthy")
    log.close()


def _chunks(items: list[Any], size: int = 500) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def command_check(args: argparse.Namespace) -> None:
    """What became of the acknowledged operations, asked of the current leader; one JSON object per log.

    * resurrected: acknowledged consumes whose token ``consume_token`` accepts again;
    * lost issues: acknowledged issues, neither consumed (acknowledged) nor presented to a consume
      that failed (unknown), whose token ``peek_token`` no longer finds;
    * lost admissions: acknowledged ``RateLimitEvent`` rows that are gone.

    ``--reset-ips``: a JSON list of client IPs whose password-reset answer was 200: each must
    still have its ``password_reset_ip`` event (``lost_http_admissions`` otherwise).
    """
    from ephemeral_auth import crypto
    from ephemeral_auth.exceptions import InvalidToken
    from ephemeral_auth.models import EphemeralToken, EventType, RateLimitEvent, TokenType
    from ephemeral_auth.services import tokens

    results: dict[str, Any] = {}
    for path in args.logs:
        records = read_records([Path(path)])
        issued = [r["raw"] for r in records if r["kind"] == "issue"]
        consumed = [r["raw"] for r in records if r["kind"] == "consume"]
        unknown_consumes = {r["subject"] for r in records if r["kind"] == "error" and r["op"] == "consume"}
        # An admission is its row: primary key *and* key. A promoted standby hands out again the ids
        # the old leader used after the standby's copy (sequences are WAL-logged 32 values ahead),
        # so an id alone may name another, newer row.
        admitted = {(pk, r["key"]) for r in records if r["kind"] == "admit" for pk in r["pks"]}
        errors: dict[str, int] = {}
        for r in records:
            if r["kind"] == "error":
                errors[r["op"]] = errors.get(r["op"], 0) + 1

        def present(raws: list[str]) -> set[str]:
            by_digest = {crypto.digest_token(raw): raw for raw in raws}
            found: set[str] = set()
            for chunk in _chunks(list(by_digest)):
                rows = EphemeralToken.objects.filter(token__in=chunk, token_type=TokenType.SLICER_DOWNLOAD)
                found.update(by_digest[digest] for digest in rows.values_list("token", flat=True))
            return found

        # Resurrected: the row is back, and consume_token really accepts it a second time.
        resurrected = 0
        for raw in sorted(present(consumed)):
            try:
                tokens.consume_token(raw, TokenType.SLICER_DOWNLOAD, resource=LOAD_RESOURCE)
            except InvalidToken:
                continue
            resurrected += 1
        used = set(consumed) | unknown_consumes
        outstanding = [raw for raw in issued if raw not in used]
        still_there = present(outstanding)
        lost_issues = [
            raw for raw in outstanding
            if raw not in still_there
            and tokens.peek_token(raw, TokenType.SLICER_DOWNLOAD, resource=LOAD_RESOURCE) is None
        ]
        found: set[tuple[int, str]] = set()
        for chunk in _chunks(sorted(pk for pk, _ in admitted)):
            found.update(RateLimitEvent.objects.filter(pk__in=chunk).values_list("pk", "key"))
        results[Path(path).name] = {
            "issued": len(issued),
            "consumed": len(consumed),
            "admitted": len(admitted),
            "errors": errors,
            "resurrected": resurrected,
            "lost_issues": len(lost_issues),
            "lost_admissions": len(admitted - found),
        }
    if args.reset_ips:
        ips = json.loads(Path(args.reset_ips).read_text())
        keys: set[str] = set()
        for chunk in _chunks(ips):
            keys.update(
                RateLimitEvent.objects.filter(event_type=EventType.PASSWORD_RESET_IP, key__in=chunk)
                .values_list("key", flat=True)
            )
        lost_ips = sorted(set(ips) - keys)
        results["http_admissions"] = {"acknowledged": len(ips), "lost": len(lost_ips), "lost_ips": lost_ips}
    print(json.dumps(results))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="patroni_support")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup")
    links = commands.add_parser("links")
    links.add_argument("--count", type=int, required=True)
    load = commands.add_parser("load")
    load.add_argument("--log", required=True)
    load.add_argument("--tag", required=True)
    load.add_argument("--threads", type=int, default=3)
    load.add_argument("--seconds", type=float, default=300)
    for name in ("batch-issue", "batch-held"):
        batch = commands.add_parser(name)
        batch.add_argument("--log", required=True)
        batch.add_argument("--tag", required=True)
        batch.add_argument("--count", type=int, default=20)
    check = commands.add_parser("check")
    check.add_argument("logs", nargs="*")
    check.add_argument("--reset-ips")
    args = parser.parse_args(argv)
    _django()
    handlers = {
        "setup": command_setup,
        "links": command_links,
        "load": command_load,
        "batch-issue": command_batch_issue,
        "batch-held": command_batch_held,
        "check": command_check,
    }
    handlers[args.command](args)


if __name__ == "__main__":
    main()
