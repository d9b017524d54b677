"""The lock model, measured: who can lock whom out, and what a password step costs (``make bench-lock``).

For each backend (SQLite, and PostgreSQL when it answers) against a private
database, through the example project's JSON login (the whole stack:
middleware, view, service, GuardBackend), with the application clock frozen
so that every attempt falls inside one window:

* an attacker guessing one account from 1, 30 and 1,000 client addresses:
  how many passwords are really checked (hash verifications counted in the
  hasher), and whether the owner then signs in from a clean address, from a
  browser that signed in before (device cookie), and after a password reset;
* the same attacks against the alternative this release replaced, measured in
  the same run: one bucket per account (10 per 15 minutes, no
  per-address lock, no device cookie);
* data statements per request: the password step with and without 2FA, the
  second-factor step, a wrong password, a refusal, and ``authenticate()``
  called by any other view (GuardBackend).

Passwords use Django's MD5 hasher here: the figures are counts, not times.
Prints a report and writes bench/results/lock_model.json.

    .venv/bin/python bench/lock_model.py [--backend sqlite|postgres|all]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.env import DEFAULT_POSTGRES_URL, DEFAULT_SQLITE_PATH, database_url, prepare_database  # noqa: E402

RESULTS = REPO / "bench" / "results" / "lock_model.json"
FROZEN = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
PASSWORD = "correct horse battery staple"
ATTACKS = (1, 30, 1000)
# The model before this release: one bucket per account, what anybody could fill.
PER_ACCOUNT_ONLY = {"login_attempt": (10, 900), "login_user_ip": (10**6, 900)}


DATA = {"SELECT", "INSERT", "UPDATE", "DELETE"}


def _statements(queries: list[dict[str, Any]]) -> int:
    return sum(1 for q in queries if q["sql"].lstrip().split(" ", 1)[0].upper() in DATA)


def measure() -> dict[str, Any]:
    """Child process: Django is set up; run every scenario and return the figures."""
    import pyotp
    from django.conf import settings
    from django.contrib.auth import authenticate, get_user_model
    from django.contrib.auth.hashers import MD5PasswordHasher
    from django.db import connection
    from django.test import Client, RequestFactory
    from django.test.utils import CaptureQueriesContext, override_settings

    from ephemeral_auth import clock, conf
    from ephemeral_auth.models import EphemeralToken, RateLimitEvent, UserTwoFactor
    from ephemeral_auth.services import tokens, totp
    from ephemeral_auth.services.two_factor import Proof

    clock.now = lambda: FROZEN  # type: ignore[assignment]
    checked: list[int] = []
    verify = MD5PasswordHasher.verify

    def counting(self: Any, *args: Any) -> Any:
        checked.append(1)
        return verify(self, *args)

    MD5PasswordHasher.verify = counting  # type: ignore[method-assign]
    users = get_user_model()._default_manager
    # The PostgreSQL database outlives a run: start from empty tables.
    users.filter(username__startswith="lock").delete()
    RateLimitEvent.objects.all().delete()
    EphemeralToken.objects.all().delete()
    serial = iter(range(10**6))

    def fresh_user(**extra: Any) -> Any:
        n = next(serial)
        return users.create_user(f"lock{n}", email=f"lock{n}@example.com", password=PASSWORD, **extra)

    def login(client: Client, username: str, password: str, ip: str) -> int:
        return client.post(
            "/api/auth/login/", {"username": username, "password": password},
            content_type="application/json", REMOTE_ADDR=ip, HTTP_HOST="localhost",
        ).status_code

    def attack(addresses: int, per_address: int = 1) -> dict[str, Any]:
        RateLimitEvent.objects.all().delete()
        owner = fresh_user()
        device = Client()  # the owner's own browser: it signed in before the attack
        assert login(device, owner.username, PASSWORD, "192.0.2.200") == 200
        checked.clear()
        refused = 0
        attacker = Client()
        for n in range(addresses):
            for k in range(per_address):
                status = login(attacker, owner.username, f"guess {n}-{k}", f"10.{n // 250}.{n % 250}.1")
                refused += status == 429
        result = {
            "addresses": addresses,
            "attempts": addresses * per_address,
            "passwords_checked": len(checked),
            "refused_unchecked": refused,
            "owner_clean_address_new_browser": login(Client(), owner.username, PASSWORD, "198.51.100.9"),
            "owner_own_browser": login(device, owner.username, PASSWORD, "198.51.100.10"),
        }
        reset_browser = Client()
        raw = tokens.issue_password_reset(owner).raw
        done = reset_browser.post(
            "/api/auth/password-reset/confirm/", {"token": raw, "new_password": "a new passphrase 4242"},
            content_type="application/json", HTTP_HOST="localhost",
        ).status_code
        result["owner_after_reset"] = (
            login(reset_browser, owner.username, "a new passphrase 4242", "198.51.100.11") if done == 200 else done
        )
        return result

    out: dict[str, Any] = {
        "backend": connection.vendor,
        "limits": {t: list(conf.DEFAULT_RATE_LIMITS[t]) for t in ("login_user_ip", "login_ip", "login_attempt",
                                                                    "login_device")},
    }
    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        # One address spends all it can (it stays under the per-address limit of 20 with 15).
        out["lock_model"] = [attack(1, 15), attack(30), attack(1000)]
        with override_settings(EPHEMERAL_AUTH_RATE_LIMITS=PER_ACCOUNT_ONLY, EPHEMERAL_AUTH_DEVICE_COOKIE_AGE=0):
            out["per_account_only"] = [attack(1, 15), attack(30), attack(1000)]

        # Statements per request (database sessions, as docs/two-factor.md counts them).
        RateLimitEvent.objects.all().delete()
        with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.db"):
            plain, twofa = fresh_user(), fresh_user()
            earlier = FROZEN - timedelta(minutes=5)  # the enrolment code is not the one used below
            setup = totp.setup(twofa, proof=Proof.trusted_caller(), now=earlier)
            totp.confirm(twofa, pyotp.TOTP(setup.secret).at(earlier), proof=Proof.trusted_caller(), now=earlier)
            counts: dict[str, int] = {}

            def count(name: str, run: Any) -> Any:
                with CaptureQueriesContext(connection) as ctx:
                    value = run()
                counts[name] = _statements(ctx.captured_queries)
                return value

            client = Client()
            body = count("password step, 2FA on", lambda: client.post(
                "/api/auth/login/", {"username": twofa.username, "password": PASSWORD},
                content_type="application/json", HTTP_HOST="localhost").json())
            code = pyotp.TOTP(setup.secret).at(FROZEN)
            count("second-factor step (TOTP)", lambda: client.post(
                "/api/auth/2fa/verify/", {"pre_auth_token": body["pre_auth_token"], "method": "totp", "code": code},
                content_type="application/json", HTTP_HOST="localhost"))
            counts["TOTP login, both steps"] = counts["password step, 2FA on"] + counts["second-factor step (TOTP)"]
            count("password step, no 2FA", lambda: login(Client(), plain.username, PASSWORD, "192.0.2.50"))
            count("wrong password", lambda: login(Client(), plain.username, "wrong", "192.0.2.51"))
            with override_settings(EPHEMERAL_AUTH_RATE_LIMITS={"login_user_ip": (1, 900)}):
                # The pair is full, the address and the ceiling are not: their rows are withdrawn.
                count("refused (pair full)", lambda: login(Client(), plain.username, "wrong", "192.0.2.51"))
            with override_settings(EPHEMERAL_AUTH_RATE_LIMITS={
                "login_user_ip": (1, 900), "login_ip": (1, 900), "login_attempt": (1, 900),
            }):
                count("refused (every bucket full)", lambda: login(Client(), plain.username, "wrong", "192.0.2.51"))
            request = RequestFactory().post("/", REMOTE_ADDR="192.0.2.52")
            count("authenticate() elsewhere, right password", lambda: authenticate(
                request, username=plain.username, password=PASSWORD))
            count("authenticate() elsewhere, wrong password", lambda: authenticate(
                request, username=plain.username, password="wrong"))
            out["statements"] = counts
    out["django"] = __import__("django").get_version()
    out["tables_after"] = {"events": RateLimitEvent.objects.count(), "tokens": EphemeralToken.objects.count(),
                           "two_factor_rows": UserTwoFactor.objects.count()}
    assert settings.ROOT_URLCONF
    return out


def report(results: list[dict[str, Any]]) -> str:
    lines = ["# Lock model: who can lock whom out", ""]
    for result in results:
        lines.append(f"## {result['backend']} (Django {result['django']})")
        lines.append("")
        limits = ", ".join(f"{k} {v[0]}/{v[1]}s" for k, v in result["limits"].items())
        lines.append(f"Limits: {limits}.")
        lines.append("")
        lines.append("| model | attacker addresses | attempts | passwords checked | refused unchecked | "
                     "owner, new browser, clean address | owner, own browser | owner after reset |")
        lines.append("|---|---:|---:|---:|---:|---|---|---|")
        for name, rows in (("this release", result["lock_model"]), ("per-account only", result["per_account_only"])):
            for row in rows:
                lines.append(
                    f"| {name} | {row['addresses']} | {row['attempts']} | {row['passwords_checked']} | "
                    f"{row['refused_unchecked']} | {row['owner_clean_address_new_browser']} | "
                    f"{row['owner_own_browser']} | {row['owner_after_reset']} |"
                )
        lines.append("")
        lines.append("| request | data statements |")
        lines.append("|---|---:|")
        for name, value in result["statements"].items():
            lines.append(f"| {name} | {value} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", default=str(RESULTS))
    args = parser.parse_args()
    if args.child:
        from bench.env import setup_django

        setup_django(args.child)
        print(json.dumps(measure()))
        return
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    results = []
    for backend in backends:
        url = database_url(backend, sqlite_path=DEFAULT_SQLITE_PATH, postgres_url=DEFAULT_POSTGRES_URL,
                           suffix="_lock")
        prepare_database(backend, url)
        done = subprocess.run(
            [sys.executable, __file__, "--child", url], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            print(done.stdout[-2000:], done.stderr[-4000:], file=sys.stderr)
            sys.exit(f"{backend}: the measurement failed")
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    text = report(results)
    print(text)
    Path(args.json).with_suffix(".md").write_text(text + "\n")
    Path(args.json).write_text(json.dumps({"measured_at": datetime.now(timezone.utc).isoformat(),
                                           "results": results}, indent=2) + "\n")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
