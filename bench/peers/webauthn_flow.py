"""Run one system's WebAuthn logins N times each: passkey sign-in, security-key login, TOTP login.

Usage: python -m bench.peers.webauthn_flow SYSTEM ITERATIONS   (SYSTEM: ours, allauth, allauth_headless)
Prints one JSON line: for each flow, the statements and cache operations of
one steady-state login (per HTTP request and per step) and the wall time of
ITERATIONS logins (setup excluded).

Flows, all driven through the system's real HTTP views with Django's test
client; the software authenticator (tests/webauthn_authenticator.py) answers
every challenge with a real ES256 assertion for rp id "testserver" and origin
"http://testserver":

* ``passkey``: passwordless sign-in with a discoverable credential and user
  verification: the options request, then the verify request.
* ``security_key``: password step, then the security-key step (its options
  and its verify request) as the second factor.
* ``totp``: password step, then the TOTP step (the reference of the budget
  "a security-key step no more statements than the TOTP step").

Every credential is registered in setup (not measured). Each login uses its
own user (no replay guard, no counter interferes) and its own client IP (no
per-IP limit interferes). Conditions as bench/peers/flow.py: DB sessions, MD5
hasher, a counting cache (Redis by default).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from typing import Any

import django

SYSTEM = sys.argv[1] if len(sys.argv) > 1 else "ours"
ITERATIONS = int(sys.argv[2]) if len(sys.argv) > 2 else 50
os.environ["DJANGO_SETTINGS_MODULE"] = f"bench.peers.settings_{SYSTEM}_webauthn"
django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from bench.peers.counting_cache import OPS  # noqa: E402
from bench.peers.webauthn_common import DATA_VERBS, PASSWORD, write_commits  # noqa: E402

FLOWS = ("passkey", "security_key", "totp")
SIDE = importlib.import_module(f"bench.peers.webauthn_{SYSTEM}")


class Recorder:
    """Captures the statements and cache operations of each HTTP request of one login, by step."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    def __call__(self, step: str, send: Any) -> Any:
        OPS.clear()
        with CaptureQueriesContext(connection) as ctx:
            response = send()
        verbs = [q["sql"].lstrip().split(" ", 1)[0].upper() for q in ctx.captured_queries]
        self.requests.append({
            "step": step,
            "verbs": verbs,
            "sql": [q["sql"] for q in ctx.captured_queries],
            "cache_ops": sum(OPS.values()),
            "cache_by_op": dict(OPS),
        })
        return response


def no_record(step: str, send: Any) -> Any:
    return send()


def summarise(recorder: Recorder) -> dict[str, Any]:
    def block(requests: list[dict[str, Any]]) -> dict[str, Any]:
        verbs = [v for r in requests for v in r["verbs"]]
        return {
            "data_statements": sum(1 for v in verbs if v in DATA_VERBS),
            "all_statements": len(verbs),
            "write_commits": write_commits(verbs),
            "by_verb": {v: verbs.count(v) for v in sorted(set(verbs))},
            "cache_ops": sum(r["cache_ops"] for r in requests),
        }

    steps: dict[str, Any] = {}
    for name in dict.fromkeys(r["step"] for r in recorder.requests):
        steps[name] = block([r for r in recorder.requests if r["step"] == name])
    if "password" in steps:
        # The second-factor step: every request after the password step (options and verify).
        steps["second_factor"] = block([r for r in recorder.requests if r["step"] != "password"])
    return {
        **block(recorder.requests),
        "steps": steps,
        "requests": [
            {"step": r["step"], "data_statements": sum(1 for v in r["verbs"] if v in DATA_VERBS),
             "all_statements": len(r["verbs"]), "cache_ops": r["cache_ops"], "cache_by_op": r["cache_by_op"],
             "sql": r["sql"]}
            for r in recorder.requests
        ],
    }


def assert_logged_in(client: Client, username: str) -> None:
    # Outside the measured block: reading the session costs a SELECT.
    user_id = client.session.get("_auth_user_id")
    assert user_id is not None, f"{SYSTEM}: not logged in"
    assert str(get_user_model().objects.get(pk=user_id).get_username()) == username, f"{SYSTEM}: wrong user"


def ip_of(flow_no: int, i: int) -> str:
    return f"10.{flow_no * 40 + ((i >> 16) & 31)}.{(i >> 8) & 255}.{i & 255}"


def run_flow(flow_no: int, flow: str, subjects: list[Any]) -> dict[str, Any]:
    login = getattr(SIDE, f"login_{flow}")
    # Warm up (imports, templates, content types), then measure one login request by request.
    client = login(subjects[0], Client(REMOTE_ADDR=ip_of(flow_no, 250_000)), no_record)
    assert_logged_in(client, subjects[0].username)
    recorder = Recorder()
    client = login(subjects[1], Client(REMOTE_ADDR=ip_of(flow_no, 250_001)), recorder)
    assert_logged_in(client, subjects[1].username)
    figures = summarise(recorder)

    timed = subjects[2:]
    clients = [Client(REMOTE_ADDR=ip_of(flow_no, i)) for i in range(len(timed))]
    started = time.perf_counter()
    for subject, client in zip(timed, clients, strict=True):
        login(subject, client, no_record)
    elapsed = time.perf_counter() - started
    for subject, client in list(zip(timed, clients, strict=True))[:: max(1, len(timed) // 10)]:
        assert_logged_in(client, subject.username)
    return {**figures, "iterations": len(timed), "seconds": elapsed, "logins_per_second": len(timed) / elapsed}


def database_version() -> str:
    if connection.vendor == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        return f"PostgreSQL {cursor.fetchone()[0]}"


def main() -> None:
    call_command("migrate", verbosity=0)
    User = get_user_model()
    subjects: dict[str, list[Any]] = {}
    for flow in FLOWS:
        subjects[flow] = []
        for i in range(ITERATIONS + 2):
            name = f"{flow}{i}"
            user = User.objects.create_user(name, f"{name}@example.com", PASSWORD)
            subjects[flow].append(getattr(SIDE, f"enrol_{flow}")(user))
    order = os.environ.get("BENCH_FLOW_ORDER", ",".join(FLOWS)).split(",")
    results = {flow: run_flow(FLOWS.index(flow), flow, subjects[flow]) for flow in order}
    print(json.dumps({
        "system": SYSTEM, "vendor": connection.vendor, "db_version": database_version(), "iterations": ITERATIONS,
        "flows": results,
    }))


if __name__ == "__main__":
    main()
