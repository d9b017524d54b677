"""What a login commits, and what a failed commit leaves behind (services/login.py, "Commits").

A rate-limit event commits on its own; what follows the decision is one
transaction: at the password step the withdrawn failure rows with the new
pre_auth token (or the session), at verification the used-up code, the
consumed token and the session. If that transaction fails, none of it
happened: the token and the code stay usable and nobody is logged in.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.models import Session
from django.db import DatabaseError, connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ephemeral_auth import crypto
from ephemeral_auth.auth import login as login_service
from ephemeral_auth.models import EphemeralToken, EventType, RateLimitEvent, TokenType
from ephemeral_auth.services import ratelimit
from tests.factories import PASSWORD, UserFactory, enrol_totp, totp_code
from tests.test_api_two_factor import post, start_login, verify


def commits_with_writes(captured) -> int:
    """Count the commits that carry a write: BEGIN...COMMIT blocks with a write, writes in autocommit."""
    total, open_block, wrote = 0, False, False
    for query in captured:
        verb = query["sql"].lstrip().split(" ", 1)[0].upper()
        if verb == "BEGIN":
            open_block, wrote = True, False
        elif verb == "COMMIT":
            total += int(wrote)
            open_block = False
        elif verb == "ROLLBACK":
            open_block = False
        elif verb in ("INSERT", "UPDATE", "DELETE"):
            wrote = wrote or open_block
            total += int(not open_block)
    return total


@pytest.mark.django_db(transaction=True)
def test_a_totp_login_commits_five_times(settings, clock):
    """Password step: the recorded attempt, then withdrawal + pre_auth token. Verify: the attempt,
    then code + token + session + last_login, then the session's final save (Django's middleware)."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    user = UserFactory()
    secret = enrol_totp(user)
    client = Client(REMOTE_ADDR="10.9.8.7")
    with CaptureQueriesContext(connection) as first:
        body = start_login(client, user)
    with CaptureQueriesContext(connection) as second:
        assert verify(client, body["pre_auth_token"], totp_code(secret, clock.now)).status_code == 200
    assert commits_with_writes(first.captured_queries) == 2, [q["sql"][:60] for q in first.captured_queries]
    assert commits_with_writes(second.captured_queries) == 3, [q["sql"][:60] for q in second.captured_queries]


def test_the_commit_counter_counts_autocommit_writes_and_blocks():
    queries = [{"sql": s} for s in ("INSERT x", "SELECT y", "BEGIN", "DELETE z", "INSERT w", "COMMIT",
                                    "BEGIN", "SELECT v", "COMMIT", "BEGIN", "UPDATE u", "ROLLBACK")]
    assert commits_with_writes(queries) == 2


@pytest.fixture
def failing_login():
    """Make login() fail with a database error after it wrote the session (as a dropped connection would)."""

    def fail(**kwargs):
        raise DatabaseError("connection lost (test)")

    user_logged_in.connect(fail, dispatch_uid="test-failing-login")
    yield
    user_logged_in.disconnect(dispatch_uid="test-failing-login")


def logged_in_sessions() -> list[str]:
    return [s.session_key for s in Session.objects.all() if SESSION_KEY in s.get_decoded()]


def test_a_failed_verify_commit_spends_nothing_and_logs_nobody_in(settings, totp_user, clock, failing_login):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    user, secret = totp_user
    client = Client()
    body = start_login(client, user)
    code = totp_code(secret, clock.now)

    failed = verify(client, body["pre_auth_token"], code)
    assert failed.status_code == 503, failed.content
    assert failed.json()["error"] == "service_unavailable"
    assert SESSION_KEY not in client.session
    assert logged_in_sessions() == []
    assert EphemeralToken.objects.filter(token_type=TokenType.PRE_AUTH, user=user).count() == 1

    user_logged_in.disconnect(dispatch_uid="test-failing-login")
    # The same pending login and the same code: neither was used up by the failed commit.
    done = verify(client, body["pre_auth_token"], code)
    assert done.status_code == 200, done.content
    assert client.session[SESSION_KEY] == str(user.pk)


def test_a_failed_password_login_commit_logs_nobody_in(settings, user, failing_login):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    client = Client()
    response = post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 503, response.content
    assert SESSION_KEY not in client.session
    assert logged_in_sessions() == []
    # The withdrawal was rolled back with the login: the attempt stays counted (fail closed).
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, ratelimit.account_key(user.pk)) == 1


def test_a_lost_race_for_the_token_leaves_the_code_unspent(client, totp_user, clock, monkeypatch):
    """The code was right but the token went meanwhile: the TOTP step is not burned by a login that failed."""
    user, secret = totp_user
    other = Client()
    first = start_login(client, user)
    second = start_login(other, user)
    code = totp_code(secret, clock.now)

    original = login_service.tokens.consume_token

    def consumed_by_a_racer(raw, *args, **kwargs):
        EphemeralToken.objects.filter(token=crypto.digest_token(raw)).delete()
        return original(raw, *args, **kwargs)

    monkeypatch.setattr(login_service.tokens, "consume_token", consumed_by_a_racer)
    lost = verify(client, first["pre_auth_token"], code)
    assert lost.status_code == 401, lost.content
    assert lost.json()["error"] == "invalid_token"
    assert SESSION_KEY not in client.session
    monkeypatch.setattr(login_service.tokens, "consume_token", original)

    won = verify(other, second["pre_auth_token"], code)
    assert won.status_code == 200, won.content
    assert RateLimitEvent.objects.filter(event_type=EventType.TWO_FA_ATTEMPT).count() >= 2


def request_with_session():
    """A bare request as the middleware leaves it: an empty session, an anonymous user, a CSRF cookie."""
    from django.contrib.auth.models import AnonymousUser
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import RequestFactory

    request = RequestFactory().post("/api/auth/2fa/verify/")
    request.session = SessionStore()
    request.user = AnonymousUser()
    request.META["CSRF_COOKIE"] = "kept-csrf-secret"
    return request


def test_a_rolled_back_verify_leaves_the_request_as_it_came(totp_user, clock, failing_login):
    """What SessionMiddleware would save after the rollback: nothing logged in, the CSRF token unchanged."""
    user, secret = totp_user
    issued = login_service.tokens.issue_pre_auth(user, challenge="browser-1", methods=["totp"])
    request = request_with_session()
    with pytest.raises(DatabaseError):
        login_service.verify_login(
            request, pre_auth_token=issued.raw, challenge="browser-1", method="totp", code=totp_code(secret, clock.now)
        )
    assert SESSION_KEY not in request.session
    assert not request.session.modified
    assert request.user.is_anonymous
    assert request.META["CSRF_COOKIE"] == "kept-csrf-secret"
    assert "CSRF_COOKIE_NEEDS_UPDATE" not in request.META


def test_a_lost_race_after_login_leaves_the_request_anonymous(totp_user, clock, monkeypatch):
    """login() runs before the token is consumed; losing the token must undo it in memory too."""
    user, secret = totp_user
    issued = login_service.tokens.issue_pre_auth(user, challenge="browser-1", methods=["totp"])
    original = login_service.tokens.consume_token

    def consumed_by_a_racer(raw, *args, **kwargs):
        EphemeralToken.objects.filter(token=crypto.digest_token(raw)).delete()
        return original(raw, *args, **kwargs)

    monkeypatch.setattr(login_service.tokens, "consume_token", consumed_by_a_racer)
    request = request_with_session()
    with pytest.raises(login_service.InvalidToken):
        login_service.verify_login(
            request, pre_auth_token=issued.raw, challenge="browser-1", method="totp", code=totp_code(secret, clock.now)
        )
    assert SESSION_KEY not in request.session
    assert request.user.is_anonymous
    assert logged_in_sessions() == []
