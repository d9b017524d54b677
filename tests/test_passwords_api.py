"""JSON password reset: ``POST password-reset/`` and ``POST password-reset/confirm/``.

The enumeration tests compare whole responses (status, headers, cookies,
body) for a known and an unknown email, with Django's CSRF checks on.
"""

from __future__ import annotations

import json
import re

import pytest
from django.core import mail
from django.test import Client

from ephemeral_auth.models import EphemeralToken, RateLimitEvent, TokenType
from ephemeral_auth.services import tokens

pytestmark = pytest.mark.django_db

REQUEST_URL = "/api/auth/password-reset/"
CONFIRM_URL = "/api/auth/password-reset/confirm/"
NEW_PASSWORD = "a brand new passphrase 42"


@pytest.fixture(autouse=True)
def _inline(reset_mail_inline):
    """Mail is sent synchronously so each test can read mail.outbox."""


def csrf_client(ip: str) -> Client:
    """A client with CSRF enforced and a CSRF cookie, as a browser app would have."""
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=ip)
    client.get("/accounts/password-reset/")  # sets the csrftoken cookie
    return client


def post_json(client: Client, url: str, payload, **extra):
    body = payload if isinstance(payload, (str, bytes)) else json.dumps(payload)
    token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else ""
    return client.post(url, body, content_type="application/json", HTTP_X_CSRFTOKEN=token, **extra)


def snapshot(response) -> tuple:
    """Everything an observer sees, except the CSRF cookie's random value."""
    cookies = {}
    for name, morsel in response.cookies.items():
        attributes = dict(morsel.items())
        cookies[name] = (attributes, None if name == "csrftoken" else morsel.value)
    # Expires is "now" by the wall clock (never-cache); it carries no account information.
    assert "Expires" in response.headers
    headers = sorted((k, "<now>" if k == "Expires" else v) for k, v in response.headers.items())
    return response.status_code, headers, cookies, response.content


def test_answer_is_sent_and_mail_carries_a_fragment_link(user):
    response = post_json(csrf_client("192.0.2.1"), REQUEST_URL, {"email": user.email})
    assert response.status_code == 200
    assert response.json() == {"status": "sent"}
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]
    (message,) = mail.outbox
    assert re.search(r"http://testserver/accounts/password-reset/confirm/#token=[\w-]{43}\b", message.body)


def test_known_and_unknown_emails_get_identical_answers_before_and_after_the_email_limit(user, frozen):
    known, unknown = csrf_client("192.0.2.1"), csrf_client("192.0.2.2")
    for attempt in range(5):  # the limit is 3 per email
        a = post_json(known, REQUEST_URL, {"email": user.email})
        b = post_json(unknown, REQUEST_URL, {"email": "nobody@example.com"})
        assert snapshot(a) == snapshot(b), f"attempt {attempt + 1}"
        assert a.status_code == 200
    assert len(mail.outbox) == 3  # the known address got its three links, nothing more


def test_the_ip_limit_answers_429_alike_for_known_and_unknown_emails(user, frozen):
    known, unknown = csrf_client("192.0.2.1"), csrf_client("192.0.2.2")
    for i in range(10):
        post_json(known, REQUEST_URL, {"email": f"filler{i}@example.com"})
        post_json(unknown, REQUEST_URL, {"email": f"filler{i}@example.org"})
    a = post_json(known, REQUEST_URL, {"email": user.email})
    b = post_json(unknown, REQUEST_URL, {"email": "nobody@example.com"})
    assert a.status_code == 429
    assert snapshot(a) == snapshot(b)
    assert a.json()["error"] == "rate_limited"
    assert a["Retry-After"] == str(a.json()["retry_after"]) == str(15 * 60)
    assert mail.outbox == []


def test_csrf_is_enforced(user):
    client = Client(enforce_csrf_checks=True)
    response = client.post(REQUEST_URL, {"email": user.email}, content_type="application/json")
    assert response.status_code == 403
    assert not RateLimitEvent.objects.exists()


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_other_methods_are_refused(client, method):
    response = getattr(client, method)(REQUEST_URL)
    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"
    response = getattr(client, method)(CONFIRM_URL)
    assert response.status_code == 405


BAD_REQUEST_BODIES = [
    pytest.param({}, id="missing"),
    pytest.param({"email": None}, id="null"),
    pytest.param({"email": 5}, id="int"),
    pytest.param({"email": True}, id="bool"),
    pytest.param({"email": ["a@example.com"]}, id="list"),
    pytest.param({"email": {"a": "b"}}, id="object"),
    pytest.param({"email": "not-an-email"}, id="not-email"),
    pytest.param({"email": "nul\x00@example.com"}, id="nul"),
    pytest.param({"email": "\ud800@example.com"}, id="lone-surrogate"),
    pytest.param({"email": "ü@example.com"}, id="unicode-local-part"),
    pytest.param({"email": "a" * 100_000}, id="100kb"),
    pytest.param({"email": "a" * 300 + "@example.com"}, id="too-long"),
    pytest.param("not json", id="not-json"),
    pytest.param('["a@example.com"]', id="array"),
    pytest.param(b"\xff\xfe{}", id="bad-utf8"),
]


@pytest.mark.parametrize("payload", BAD_REQUEST_BODIES)
def test_bad_input_on_request_is_4xx_and_writes_nothing(client, user, payload):
    response = post_json(client, REQUEST_URL, payload)
    assert 400 <= response.status_code < 500
    assert response.json()["error"] == "invalid_input"
    assert not RateLimitEvent.objects.exists()
    assert not EphemeralToken.objects.exists()
    assert mail.outbox == []


def test_a_form_encoded_body_is_refused(client, user):
    response = client.post(REQUEST_URL, {"email": user.email})
    assert response.status_code == 400
    assert response.json() == {"error": "invalid_input", "message": response.json()["message"], "field": "content_type"}
    assert not RateLimitEvent.objects.exists()


# Confirm.


@pytest.fixture
def raw(user):
    return tokens.issue_password_reset(user).raw


def test_confirm_sets_the_password(client, user, raw):
    response = post_json(client, CONFIRM_URL, {"token": raw, "new_password": NEW_PASSWORD})
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Referrer-Policy"] == "no-referrer"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    again = post_json(client, CONFIRM_URL, {"token": raw, "new_password": NEW_PASSWORD + "!"})
    assert again.status_code == 401
    assert again.json()["error"] == "invalid_token"


def test_a_unicode_password_is_fine(client, user, raw):
    password = "pässwörd ünïcode 🙂 long"
    assert post_json(client, CONFIRM_URL, {"token": raw, "new_password": password}).status_code == 200
    user.refresh_from_db()
    assert user.check_password(password)


def test_weak_password_is_400_with_the_validator_messages_and_keeps_the_token(client, user, raw):
    response = post_json(client, CONFIRM_URL, {"token": raw, "new_password": "123"})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid_password"
    assert any("too short" in m for m in body["messages"])
    assert any("numeric" in m for m in body["messages"])
    assert tokens.peek_token(raw, TokenType.PASSWORD_RESET) is not None


def test_unknown_token_is_401(client, user):
    response = post_json(client, CONFIRM_URL, {"token": "x" * 43, "new_password": NEW_PASSWORD})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


BAD_CONFIRM_BODIES = [
    pytest.param({}, id="missing-both"),
    pytest.param({"token": "RAW"}, id="missing-password"),
    pytest.param({"new_password": NEW_PASSWORD}, id="missing-token"),
    pytest.param({"token": 5, "new_password": NEW_PASSWORD}, id="int-token"),
    pytest.param({"token": ["RAW"], "new_password": NEW_PASSWORD}, id="list-token"),
    pytest.param({"token": "RAW", "new_password": None}, id="null-password"),
    pytest.param({"token": "RAW", "new_password": 12345678}, id="int-password"),
    pytest.param({"token": "RAW", "new_password": {"p": 1}}, id="object-password"),
    pytest.param({"token": "RAW\x00", "new_password": NEW_PASSWORD}, id="nul-token"),
    pytest.param({"token": "RAW", "new_password": "nul\x00 but long enough"}, id="nul-password"),
    pytest.param({"token": "RAW", "new_password": "\ud800 but long enough"}, id="surrogate-password"),
    pytest.param({"token": "x" * 100_000, "new_password": NEW_PASSWORD}, id="100kb-token"),
    pytest.param({"token": "RAW", "new_password": "p" * 100_000}, id="100kb-password"),
    pytest.param({"token": "RAW", "new_password": "p" * 5000}, id="5kb-password"),
    pytest.param({"token": "tøken-🙂", "new_password": NEW_PASSWORD}, id="unicode-token"),
    pytest.param("{not json", id="not-json"),
    pytest.param("null", id="json-null"),
]


@pytest.mark.parametrize("payload", BAD_CONFIRM_BODIES)
def test_bad_input_on_confirm_is_4xx_and_changes_nothing(client, user, raw, payload):
    if isinstance(payload, dict):
        payload = {k: (raw if v == "RAW" else v.replace("RAW", raw) if isinstance(v, str) else v)
                   for k, v in payload.items()}
    response = post_json(client, CONFIRM_URL, payload)
    assert 400 <= response.status_code < 500
    assert response.json()["error"] in {"invalid_input", "invalid_token"}
    assert tokens.peek_token(raw, TokenType.PASSWORD_RESET) is not None
    user.refresh_from_db()
    assert not user.check_password(NEW_PASSWORD)


def test_a_database_failure_is_503_not_500(client, user, monkeypatch):
    from django.db import OperationalError

    from ephemeral_auth.services import ratelimit

    def down(*args, **kwargs):
        raise OperationalError("database is down")

    monkeypatch.setattr(ratelimit, "attempt", down)
    response = post_json(client, REQUEST_URL, {"email": user.email})
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
