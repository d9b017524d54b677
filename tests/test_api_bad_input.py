"""Bad input on every JSON endpoint: always a 4xx with an error code, never a 5xx, nothing written.

Each endpoint is called in a state where a good body would do something
(a pending login exists, the user is logged in and enrolled), then with a
battery of bad bodies: not JSON, not an object, too large, fields missing,
of the wrong JSON type, 100 KB long, with NUL bytes, with lone surrogates.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from ephemeral_auth.models import EphemeralToken, RateLimitEvent, RecoveryCode, UserTwoFactor
from ephemeral_auth.services import email_otp, recovery, totp
from ephemeral_auth.services.two_factor import Proof
from tests.factories import PASSWORD, UserFactory, enrol_totp, login_verified

pytestmark = pytest.mark.django_db

HUGE = "7" * 100_000

# endpoint -> (required fields with a good value, how to prepare the client)
ENDPOINTS = {
    "/api/auth/login/": ({"username": "USER", "password": PASSWORD}, "anonymous"),
    "/api/auth/logout/": ({}, "verified"),
    "/api/auth/2fa/verify/": ({"pre_auth_token": "TOKEN", "method": "totp", "code": "123456"}, "pending"),
    "/api/auth/2fa/email/send/": ({"pre_auth_token": "TOKEN"}, "pending"),
    "/api/auth/2fa/totp/setup/": ({"code": "123456"}, "verified"),
    "/api/auth/2fa/totp/confirm/": ({"code": "123456"}, "setup"),
    "/api/auth/2fa/totp/disable/": ({"code": "123456"}, "verified"),
    "/api/auth/2fa/recovery-codes/": ({"code": "123456"}, "verified"),
    "/api/auth/2fa/email/enable/": ({}, "verified"),
    "/api/auth/2fa/email/confirm/": ({"setup_token": "SETUP", "code": "123456"}, "email_setup"),
    "/api/auth/2fa/email/disable/": ({"password": PASSWORD}, "verified_email"),
}

RAW_BODIES = {
    "not json": (b"{username: x", "application/json"),
    "json array": (b"[1, 2]", "application/json"),
    "json null": (b"null", "application/json"),
    "json number": (b"42", "application/json"),
    "json string": (b'"text"', "application/json"),
    "bad utf-8": (b'{"a": "\xff\xfe"}', "application/json"),
    "form encoded": (b"username=x&password=y", "application/x-www-form-urlencoded"),
    "text/plain": (b'{"a": 1}', "text/plain"),
    "too large": (json.dumps({"padding": HUGE}).encode(), "application/json"),
    # Under 16 KB but nested past Python's recursion limit (found by tests/test_fuzz.py: it was a 500).
    "deeply nested array": (b"[" * 8000 + b"]" * 8000, "application/json"),
    "deeply nested object": (b'{"a":' * 3000 + b"1" + b"}" * 3000, "application/json"),
}

BAD_VALUES = {
    "int": 123456,
    "float": 1.5,
    "bool": True,
    "null": None,
    "list": ["123456"],
    "object": {"code": "123456"},
    "empty": "",
    "100 KB": HUGE,
    "NUL byte": "1234\x0056",
    "lone surrogate": "\ud800\udfff\ud800",
    "unicode digits": "١٢٣٤٥٦",
    "emoji": "😀" * 20,
}


# Valid text that is merely unusual: a username or password made of it is an
# ordinary wrong password (401, counted against the budget), not bad input.
LEGITIMATE = {
    (url, name) for url in ("/api/auth/login/", "/api/auth/2fa/email/disable/") for name in ("unicode digits", "emoji")
}


def _cases():
    for url, (fields, _state) in ENDPOINTS.items():
        for name in RAW_BODIES:
            yield pytest.param(url, ("raw", name), id=f"{url}-{name}")
        for field in fields:
            yield pytest.param(url, ("missing", field), id=f"{url}-missing {field}")
            for name in BAD_VALUES:
                if (url, name) not in LEGITIMATE:
                    yield pytest.param(url, ("value", field, name), id=f"{url}-{field} {name}")


def _prepare(state, clock):
    client = Client(REMOTE_ADDR="192.0.2.200")
    user = UserFactory(username="USER")
    substitutions = {}
    if state == "anonymous":
        return client, substitutions
    secret = enrol_totp(user)
    recovery.generate(user)
    if state == "pending":
        body = client.post("/api/auth/login/", {"username": "USER", "password": PASSWORD},
                           content_type="application/json").json()
        substitutions["TOKEN"] = body["pre_auth_token"]
        return client, substitutions
    login_verified(client, user)
    if state == "setup":
        from tests.factories import totp_code

        totp.setup(user, code=totp_code(secret, clock.now), proof=Proof.trusted_caller())
        clock.advance(30)
    if state == "email_setup":
        substitutions["SETUP"] = email_otp.enable(user, proof=Proof.trusted_caller()).raw
    if state == "verified_email":
        from tests.factories import enable_email_codes

        enable_email_codes(user)
        login_verified(client, user)
    return client, substitutions


def _snapshot():
    return (
        sorted(EphemeralToken.objects.values_list("token", "attempts", "code_hash", "expires_at")),
        RateLimitEvent.objects.count(),
        sorted(UserTwoFactor.objects.values_list("pk", "totp_secret", "totp_pending_secret", "totp_last_step",
                                                 "email_enabled", "updated_at")),
        sorted(RecoveryCode.objects.values_list("code_hash", flat=True)),
        Session.objects.count(),
    )


@pytest.mark.parametrize(("url", "case"), list(_cases()))
def test_bad_input_is_a_4xx_with_a_code_and_writes_nothing(url, case, clock):
    fields, state = ENDPOINTS[url]
    client, substitutions = _prepare(state, clock)
    if case[0] == "raw":
        data, content_type = RAW_BODIES[case[1]]
    else:
        body = {name: substitutions.get(value, value) for name, value in fields.items()}
        if case[0] == "missing":
            del body[case[1]]
        else:
            body[case[1]] = BAD_VALUES[case[2]]
        data, content_type = json.dumps(body), "application/json"
    before = _snapshot()
    response = client.post(url, data=data, content_type=content_type)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    payload = response.json()
    assert isinstance(payload.get("error"), str) and payload["error"]
    assert isinstance(payload.get("message"), str)
    assert _snapshot() == before


@pytest.mark.parametrize("url", ["/api/auth/csrf/", "/api/auth/me/", "/api/auth/2fa/"])
@pytest.mark.parametrize("query", ["", "?x=%00", "?x=" + "a" * 5000, "?x=%ff%fe", "?code=1&code=2"])
def test_get_endpoints_never_fail(client, url, query, clock):
    assert client.get(url + query).status_code < 500
