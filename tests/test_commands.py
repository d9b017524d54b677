"""The management commands: purge_ephemeral_auth and ephemeral_auth_unlock."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection

from ephemeral_auth import clock
from ephemeral_auth.models import EphemeralToken, EventType, RateLimitEvent, TokenType
from ephemeral_auth.services import cleanup, ratelimit, tokens
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, **options) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO(), **options)
    return out.getvalue()


@pytest.fixture
def mixed_rows(user, frozen):
    """3 expired password resets, 2 expired downloads, 2 live tokens, 4 stale and 2 fresh events."""
    old = frozen - timedelta(days=1)
    for _ in range(3):
        tokens.issue_password_reset(user, now=old)
    for i in range(2):
        tokens.issue_download(user, resource=f"file:{i}", now=old)
    live = {tokens.issue_password_reset(user).token.pk, tokens.issue_download(user, resource="f").token.pk}
    for i in range(4):
        ratelimit.attempt(EventType.LOGIN_IP, f"10.0.0.{i}", now=old)
    ratelimit.attempt(EventType.LOGIN_IP, "10.0.0.1", now=frozen)
    ratelimit.attempt(EventType.TWO_FA_ATTEMPT, "alice", now=frozen - timedelta(minutes=5))
    return live


# purge_ephemeral_auth


def test_purge_deletes_expired_rows_and_reports_counts_per_type(mixed_rows):
    out = run("purge_ephemeral_auth")
    assert "Deleted 5 expired tokens and 4 stale rate-limit events." in out
    assert "  password_reset: 3\n" in out
    assert "  slicer_download: 2\n" in out
    assert "  pre_auth: 0\n" in out
    assert "  rate-limit events: 4\n" in out
    assert set(EphemeralToken.objects.values_list("pk", flat=True)) == mixed_rows
    assert RateLimitEvent.objects.count() == 2


def test_purge_twice_deletes_nothing_the_second_time(mixed_rows):
    run("purge_ephemeral_auth")
    assert "Deleted 0 expired tokens and 0 stale rate-limit events." in run("purge_ephemeral_auth")


def test_dry_run_counts_and_leaves_every_row(mixed_rows):
    out = run("purge_ephemeral_auth", "--dry-run")
    assert "Would delete 5 expired tokens and 4 stale rate-limit events." in out
    assert "  password_reset: 3\n" in out
    assert EphemeralToken.objects.count() == 7
    assert RateLimitEvent.objects.count() == 6


def test_verbosity_2_reports_progress_per_batch(mixed_rows):
    out = run("purge_ephemeral_auth", "--batch-size", "2", verbosity=2)
    progress = re.findall(r"^  (\w+): (\d+) deleted so far$", out, flags=re.MULTILINE)
    assert ("password_reset", "2") in progress and ("password_reset", "3") in progress
    assert ("events", "4") in progress
    assert "Deleted 5 expired tokens" in out


def test_verbosity_0_is_silent(mixed_rows):
    assert run("purge_ephemeral_auth", verbosity=0) == ""
    assert EphemeralToken.objects.count() == 2


def test_batch_size_is_passed_to_the_service(monkeypatch, frozen):
    seen = {}

    def fake(**kwargs):
        seen.update(kwargs)
        return cleanup.PurgeResult()

    monkeypatch.setattr(cleanup, "purge_expired", fake)
    run("purge_ephemeral_auth", "--batch-size", "7")
    assert seen["batch_size"] == 7 and seen["dry_run"] is False and seen["progress"] is None


@pytest.mark.parametrize("value", ["0", "-3", "abc", "1.5"])
def test_bad_batch_size_is_refused(mixed_rows, value):
    with pytest.raises(CommandError, match="batch-size"):
        run("purge_ephemeral_auth", "--batch-size", value)
    assert EphemeralToken.objects.count() == 7


@pytest.mark.parametrize("value", [0, -1, "x"])
def test_bad_batch_size_through_call_command_keywords_is_refused(mixed_rows, value):
    with pytest.raises(CommandError, match="batch-size"):
        run("purge_ephemeral_auth", batch_size=value)
    assert EphemeralToken.objects.count() == 7


def test_database_error_is_a_command_error(monkeypatch):
    def broken(**kwargs):
        raise DatabaseError("connection lost")

    monkeypatch.setattr(cleanup, "purge_expired", broken)
    with pytest.raises(CommandError, match="purge failed: DatabaseError: connection lost"):
        run("purge_ephemeral_auth")


def test_database_error_exits_non_zero_from_the_command_line(tmp_path):
    # A database that cannot be opened: the command must fail, not report success.
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/missing/dir/db.sqlite3"}
    done = subprocess.run(
        [sys.executable, "-m", "django", "purge_ephemeral_auth", "--settings", "tests.settings"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode != 0
    assert "purge failed" in done.stderr


def _database_url(name: str) -> str:
    settings = connection.settings_dict
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[connection.vendor]
    password = settings.get("PASSWORD") or ""
    return f"{scheme}://{settings['USER']}:{password}@{settings['HOST']}:{settings['PORT']}/{name}"


# Started by the race test: set up Django, report ready, wait for "go" on stdin, purge.
PURGE_CHILD = """
import sys
import django
django.setup()
from django.core.management import call_command
print("ready", flush=True)
sys.stdin.readline()
call_command("purge_ephemeral_auth", "--batch-size", "10")
"""


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_two_purges_at_once_delete_each_row_once_and_keep_live_rows():
    user = UserFactory()
    old = clock.now() - timedelta(days=1)
    expired = 1500
    for i in range(expired):
        tokens.issue_download(user, resource=f"file:{i}", now=old)
    live = {tokens.issue_download(user, resource=f"live:{i}").token.pk for i in range(50)}
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(connection.settings_dict["NAME"]),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    runs = [
        subprocess.Popen([sys.executable, "-c", PURGE_CHILD], cwd=ROOT, env=env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    # A barrier: both are connected and ready before either deletes a row.
    assert [p.stdout.readline().strip() for p in runs] == ["ready", "ready"]
    for p in runs:
        p.stdin.write("go\n")
        p.stdin.flush()
    outputs = [p.communicate(timeout=300) for p in runs]
    assert [p.returncode for p in runs] == [0, 0], outputs
    deleted = [int(re.search(r"slicer_download: (\d+)", out).group(1)) for out, _err in outputs]
    assert sum(deleted) == expired  # every expired row deleted exactly once between them
    assert set(EphemeralToken.objects.values_list("pk", flat=True)) == live


# ephemeral_auth_unlock


def fill(event_type, key, n, now):
    for _ in range(n):
        ratelimit.attempt(event_type, key, now=now)


def test_unlock_username_clears_its_account_buckets_only(frozen):
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    mine, theirs = ratelimit.account_key(alice.pk), ratelimit.account_key(bob.pk)
    fill(EventType.LOGIN_ATTEMPT, mine, 10, frozen)
    fill(EventType.LOGIN_USER_IP, f"{mine}|10.0.0.1", 10, frozen)
    fill(EventType.TWO_FA_ATTEMPT, mine, 5, frozen)
    fill(EventType.EMAIL_SEND, mine, 1, frozen)
    fill(EventType.LOGIN_ATTEMPT, "n:alice", 2, frozen)  # typed under the name, on a case-sensitive database
    fill(EventType.LOGIN_ATTEMPT, theirs, 2, frozen)
    fill(EventType.LOGIN_USER_IP, f"{theirs}|10.0.0.1", 2, frozen)
    fill(EventType.PASSWORD_RESET_SEND, "alice", 1, frozen)
    out = run("ephemeral_auth_unlock", "--username", "  ALICE ")
    assert out == (
        "Unlocked username ALICE: cleared 12 login_attempt, 10 login_user_ip, 5 2fa_attempt, 1 email_send events.\n"
    )
    ratelimit.attempt(EventType.LOGIN_ATTEMPT, mine, now=frozen)
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, theirs) == 2
    assert ratelimit.count(EventType.LOGIN_USER_IP, f"{theirs}|10.0.0.1") == 2
    assert ratelimit.count(EventType.PASSWORD_RESET_SEND, "alice") == 1


def test_unlock_email_clears_password_reset_requests(frozen):
    fill(EventType.PASSWORD_RESET_SEND, "alice@example.com", 3, frozen)
    out = run("ephemeral_auth_unlock", "--email", "Alice@Example.COM")
    assert "cleared 3 password_reset_send events" in out
    assert ratelimit.count(EventType.PASSWORD_RESET_SEND, "alice@example.com") == 0


def test_unlock_ip_clears_login_and_reset_buckets_in_canonical_form(frozen):
    # An IPv6 client is keyed by its /64 (EPHEMERAL_AUTH_IPV6_PREFIX), as the flows record it.
    fill(EventType.LOGIN_IP, ratelimit.ip_key("2001:db8::1"), 20, frozen)
    fill(EventType.PASSWORD_RESET_IP, ratelimit.ip_key("2001:db8::7"), 2, frozen)
    fill(EventType.LOGIN_USER_IP, "u:7|2001:db8::/64", 4, frozen)
    fill(EventType.LOGIN_IP, "10.0.0.1", 3, frozen)
    out = run("ephemeral_auth_unlock", "--ip", "2001:DB8:0:0::1", "--ip", "10.0.0.9")
    assert "Unlocked ip 2001:db8::/64: cleared 20 login_ip, 4 login_user_ip, 2 password_reset_ip events." in out
    assert "ip 10.0.0.9: nothing to clear." in out
    assert ratelimit.count(EventType.LOGIN_IP, "2001:db8::/64") == 0
    assert ratelimit.count(EventType.LOGIN_IP, "10.0.0.1") == 3


def test_unlock_list_shows_who_is_locked_out(frozen):
    alice = UserFactory(username="alice")
    key = ratelimit.account_key(alice.pk)
    fill(EventType.TWO_FA_ATTEMPT, key, 5, frozen)
    fill(EventType.LOGIN_IP, "10.0.0.1", 3, frozen)  # under its limit of 20
    out = run("ephemeral_auth_unlock", "--list")
    assert out.splitlines() == [
        "1 locked out:", f"  2fa_attempt          {key}  5 events, retry after 900 s  (alice (user #{alice.pk}))",
    ]
    run("ephemeral_auth_unlock", "--username", "alice")
    assert run("ephemeral_auth_unlock", "--list") == "Nobody is locked out.\n"


def test_unlock_without_a_subject_is_an_error():
    with pytest.raises(CommandError, match="--username, --email, --ip or --list"):
        run("ephemeral_auth_unlock")


@pytest.mark.parametrize(("option", "value"), [("--ip", "not-an-ip"), ("--username", " "), ("--email", "x" * 300)])
def test_unlock_bad_subject_clears_nothing(frozen, option, value):
    fill(EventType.LOGIN_ATTEMPT, "alice", 3, frozen)
    with pytest.raises(CommandError, match=re.escape(option)):
        run("ephemeral_auth_unlock", "--username", "alice", option, value)
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, "alice") == 3


def test_unlock_token_types_are_untouched(user, frozen):
    tokens.issue_pre_auth(user, challenge="c", methods=["totp"])
    fill(EventType.TWO_FA_ATTEMPT, user.username, 5, frozen)
    run("ephemeral_auth_unlock", "--username", user.username)
    assert EphemeralToken.objects.filter(token_type=TokenType.PRE_AUTH).count() == 1
