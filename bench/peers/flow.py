"""Run one system's complete TOTP login (password step + code step) N times.

Usage: python -m bench.peers.flow SYSTEM ITERATIONS   (SYSTEM: ours, allauth, two_factor)
Prints one JSON line: statements and cache operations of one steady-state
login, and the wall time of ITERATIONS logins (setup excluded).

Every side runs under the same conditions (bench/peers/settings_base.py); each
login uses its own user (so TOTP replay guards never interfere) and its own
client IP (so per-IP login limits never interfere).
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time

import django

SYSTEM = sys.argv[1]
ITERATIONS = int(sys.argv[2])
os.environ["DJANGO_SETTINGS_MODULE"] = f"bench.peers.settings_{SYSTEM}"
django.setup()

import pyotp  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from bench.peers.counting_cache import OPS  # noqa: E402

PASSWORD = "bench-password-1"
DATA_VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE")


def enrol(user) -> str:  # type: ignore[no-untyped-def]
    """Give ``user`` a confirmed TOTP authenticator; return its base32 secret."""
    if SYSTEM == "ours":
        from ephemeral_auth import crypto
        from ephemeral_auth.models import UserTwoFactor

        secret = pyotp.random_base32()
        UserTwoFactor.objects.create(user=user, totp_secret=crypto.encrypt(secret), totp_confirmed_at=timezone.now())
        return secret
    if SYSTEM == "allauth":
        from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

        secret = generate_totp_secret()
        TOTP.activate(user, secret)
        return secret
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.create(user=user, name="default", confirmed=True)
    return base64.b32encode(bytes.fromhex(device.key)).decode()


def login(username: str, secret: str, ip: str) -> Client:
    client = Client(REMOTE_ADDR=ip)
    totp = pyotp.TOTP(secret)
    if SYSTEM == "ours":
        first = client.post(
            "/api/auth/login/", {"username": username, "password": PASSWORD}, content_type="application/json"
        )
        body = first.json()
        assert body.get("status") == "2fa_required", body
        second = client.post(
            "/api/auth/2fa/verify/",
            {"pre_auth_token": body["pre_auth_token"], "method": "totp", "code": totp.now()},
            content_type="application/json",
        )
        assert second.status_code == 200, second.content
    elif SYSTEM == "allauth":
        first = client.post("/accounts/login/", {"login": username, "password": PASSWORD})
        assert first.status_code == 302 and "2fa" in first["Location"], (first.status_code, first.get("Location"))
        second = client.post("/accounts/2fa/authenticate/", {"code": totp.now()})
        assert second.status_code == 302, second.status_code
    else:
        first = client.post(
            "/account/login/",
            {"auth-username": username, "auth-password": PASSWORD, "login_view-current_step": "auth"},
        )
        assert first.status_code == 200, first.status_code
        second = client.post("/account/login/", {"token-otp_token": totp.now(), "login_view-current_step": "token"})
        assert second.status_code == 302, second.status_code
    return client


def write_commits(verbs: list[str]) -> int:
    """Count the commits that carry writes: each BEGIN...COMMIT with a write, each write in autocommit."""
    commits, in_transaction, dirty = 0, False, False
    for verb in verbs:
        if verb == "BEGIN":
            in_transaction, dirty = True, False
        elif verb in ("COMMIT", "ROLLBACK"):
            commits += int(verb == "COMMIT" and dirty)
            in_transaction = False
        elif verb in ("INSERT", "UPDATE", "DELETE"):
            if in_transaction:
                dirty = True
            else:
                commits += 1
    return commits


def assert_logged_in(client: Client) -> None:
    # Outside the measured block: reading the session costs a SELECT.
    assert "_auth_user_id" in client.session, f"{SYSTEM}: not logged in"


def main() -> None:
    call_command("migrate", verbosity=0)
    User = get_user_model()
    users = []
    for i in range(ITERATIONS + 2):
        user = User.objects.create_user(f"bench{i}", f"bench{i}@example.com", PASSWORD)
        users.append((user.get_username(), enrol(user)))

    # Warm up (imports, template and content-type caches), then measure one login.
    assert_logged_in(login(*users[0], ip="10.255.0.1"))
    OPS.clear()
    with CaptureQueriesContext(connection) as ctx:
        measured = login(*users[1], ip="10.255.0.2")
    assert_logged_in(measured)
    verbs = [q["sql"].lstrip().split(" ", 1)[0].upper() for q in ctx.captured_queries]
    data_statements = sum(1 for v in verbs if v in DATA_VERBS)
    cache_ops = sum(OPS.values())
    by_verb = {v: verbs.count(v) for v in sorted(set(verbs))}
    cache_by_op = dict(OPS)

    started = time.perf_counter()
    clients = [
        login(username, secret, ip=f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}")
        for i, (username, secret) in enumerate(users[2:])
    ]
    elapsed = time.perf_counter() - started
    for client in clients[:: max(1, len(clients) // 10)]:
        assert_logged_in(client)
    print(json.dumps({
        "system": SYSTEM,
        "vendor": connection.vendor,
        "data_statements": data_statements,
        "all_statements": len(verbs),
        "write_commits": write_commits(verbs),
        "by_verb": by_verb,
        "cache_ops": cache_ops,
        "cache_by_op": cache_by_op,
        "iterations": ITERATIONS,
        "seconds": elapsed,
        "logins_per_second": ITERATIONS / elapsed,
    }))


if __name__ == "__main__":
    main()
