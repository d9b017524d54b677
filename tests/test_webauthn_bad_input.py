"""Bad input on every WebAuthn endpoint: a 4xx with its code (``invalid_input`` for bad answers), nothing written.

Each endpoint is called where a good body would do something (a pending
login that may use a key and its options issued, a verified session, the
ceremony cookie set), with bad bodies, bad answers (not JSON, bad base64url,
CBOR of any shape) and bad field values.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.sessions.models import Session
from django.test import Client

from ephemeral_auth.models import EphemeralToken, RateLimitEvent, RecoveryCode, UserTwoFactor, WebAuthnCredential
from ephemeral_auth.views.json import STATUS_BY_CODE
from tests.factories import PASSWORD, UserFactory, login_verified
from tests.test_webauthn_login_web import enrol_key
from tests.webauthn_authenticator import b64
from tests.webauthn_support import relying_party  # noqa: F401 - the fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("relying_party")]

GOOD = {"id": "AAAA", "rawId": "AAAA", "type": "public-key", "response": {}}

# endpoint -> (fields with a good value, state)
ENDPOINTS = {
    "/api/auth/2fa/webauthn/options/": ({"pre_auth_token": "TOKEN"}, "pending"),
    "/api/auth/2fa/webauthn/verify/": ({"pre_auth_token": "TOKEN", "credential": GOOD}, "pending"),
    "/api/auth/2fa/verify/": ({"pre_auth_token": "TOKEN", "method": "webauthn", "credential": GOOD}, "pending"),
    "/api/auth/2fa/webauthn/register/options/": ({"passkey": False}, "verified"),
    "/api/auth/2fa/webauthn/register/": ({"credential": GOOD, "name": "Key"}, "verified"),
    "/api/auth/2fa/webauthn/rename/": ({"id": "KEY", "name": "Key"}, "verified"),
    "/api/auth/2fa/webauthn/remove/": ({"id": "KEY"}, "verified"),
    "/api/auth/passkey/options/": ({}, "anonymous"),
    "/api/auth/passkey/login/": ({"credential": GOOD}, "anonymous"),
}

RAW_BODIES = {
    "not json": b"{x",
    "json array": b"[1]",
    "json string": b'"text"',
    "bad utf-8": b'{"a": "\xff"}',
    "deeply nested": b"[" * 8000 + b"]" * 8000,
}

BAD_VALUES = {
    "int": 12,
    "bool": True,
    "null": None,
    "list": [1],
    "NUL": "a\x00b",
    "lone surrogate": "\ud800",
    "long": "x" * 70_000,
}

ANSWERS = {
    "not json text": "{not json",
    "json list text": "[1, 2]",
    "no response": {"rawId": "AAAA"},
    "padded base64": {"rawId": "AAAA==", "response": {}},
    "non-canonical base64": {"rawId": "AB", "response": {"clientDataJSON": "AB"}},
    "plus and slash": {"rawId": "a+/b", "response": {}},
    "clientData not json": {"rawId": "AAAA", "response": {
        "clientDataJSON": b64(b"\xff\xfe"), "authenticatorData": "AAAA", "signature": "AAAA",
        "attestationObject": "AAAA"}},
    "clientData without challenge": {"rawId": "AAAA", "response": {
        "clientDataJSON": b64(json.dumps({"type": "webauthn.get", "origin": "https://example.com"}).encode()),
        "authenticatorData": "AAAA", "signature": "AAAA", "attestationObject": "AAAA"}},
    "garbage cbor": {"rawId": "AAAA", "response": {
        "clientDataJSON": b64(json.dumps({"type": "webauthn.get", "challenge": "AAAA",
                                          "origin": "https://example.com"}).encode()),
        "authenticatorData": b64(b"\xff" * 40), "signature": "AAAA", "attestationObject": b64(b"\xbf\xff\x00")}},
    "wrong type": {**GOOD, "type": "password"},
}


# Valid bodies: passkey is optional and a boolean.
LEGITIMATE = {("passkey", "missing"), ("passkey", "bool")}


def _cases():
    for url, (fields, _state) in ENDPOINTS.items():
        for name in RAW_BODIES:
            yield pytest.param(url, ("raw", name), id=f"{url}-{name}")
        for field in fields:
            if (field, "missing") not in LEGITIMATE:
                yield pytest.param(url, ("missing", field), id=f"{url}-missing {field}")
            for name in BAD_VALUES:
                if (field, name) in LEGITIMATE:
                    continue
                yield pytest.param(url, ("value", field, name), id=f"{url}-{field} {name}")
        if "credential" in fields:
            for name in ANSWERS:
                yield pytest.param(url, ("answer", name), id=f"{url}-answer {name}")


def _prepare(state):
    client = Client(REMOTE_ADDR="192.0.2.201")
    user = UserFactory(username="USER")
    _, done = enrol_key(user)
    substitutions = {"KEY": done.credential.pk}
    if state == "pending":
        body = client.post("/api/auth/login/", {"username": "USER", "password": PASSWORD},
                           content_type="application/json").json()
        substitutions["TOKEN"] = body["pre_auth_token"]
        client.post("/api/auth/2fa/webauthn/options/", {"pre_auth_token": body["pre_auth_token"]},
                    content_type="application/json")
    elif state == "verified":
        login_verified(client, user)
        client.post("/api/auth/2fa/webauthn/register/options/", {}, content_type="application/json")
    else:
        client.post("/api/auth/passkey/options/", {}, content_type="application/json")
    return client, substitutions


def _snapshot():
    return (
        sorted(EphemeralToken.objects.values_list("token", "attempts", "code_hash", "expires_at")),
        RateLimitEvent.objects.count(),
        sorted(UserTwoFactor.objects.values_list("pk", "changed_at", "updated_at")),
        sorted(RecoveryCode.objects.values_list("code_hash", flat=True)),
        sorted(WebAuthnCredential.objects.values_list("pk", "name", "sign_count")),
        Session.objects.count(),
    )


@pytest.mark.parametrize(("url", "case"), list(_cases()))
def test_bad_input_is_a_4xx_with_a_code_and_writes_nothing(url, case):
    fields, state = ENDPOINTS[url]
    client, substitutions = _prepare(state)
    if case[0] == "raw":
        data, content_type = RAW_BODIES[case[1]], "application/json"
    else:
        body = {name: substitutions.get(value, value) if isinstance(value, str) else value
                for name, value in fields.items()}
        if case[0] == "missing":
            del body[case[1]]
        elif case[0] == "value":
            body[case[1]] = BAD_VALUES[case[2]]
        else:
            body["credential"] = ANSWERS[case[1]]
        data, content_type = json.dumps(body), "application/json"
    before = _snapshot()
    response = client.generic("POST", url, data=data, content_type=content_type)
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    answer = response.json()
    assert STATUS_BY_CODE[answer["error"]] == response.status_code
    if case[0] == "answer" or case[0] == "raw":
        assert answer["error"] == "invalid_input", answer
    assert _snapshot() == before
