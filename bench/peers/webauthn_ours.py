"""ephemeral_auth's side of bench/peers/webauthn_flow.py.

Enrolment (setup, not measured) goes through the services the registration
views call (``webauthn_factor.begin_registration`` / ``complete_registration``
with a trusted caller's proof): the real ceremony, the software authenticator
answering, and what registering records (the 2FA state, recovery codes).

The logins go through the JSON API (docs/http-api.md) with the test client:

* passkey: ``POST passkey/options/`` (sets the WebAuthn cookie), then
  ``POST passkey/login/`` ``{"credential": ...}``;
* security key: ``POST login/`` (``2fa_required``), ``POST 2fa/webauthn/options/``
  ``{"pre_auth_token"}``, then ``POST 2fa/webauthn/verify/``
  ``{"pre_auth_token", "credential"}``;
* TOTP: ``POST login/``, then ``POST 2fa/verify/`` (as bench/peers/flow.py).
"""

from __future__ import annotations

from typing import Any

import pyotp
from django.test import Client
from django.utils import timezone

from bench.peers.webauthn_common import PASSWORD, Subject, authenticator

LOGIN_URL = "/api/auth/login/"
VERIFY_URL = "/api/auth/2fa/verify/"
KEY_OPTIONS_URL = "/api/auth/2fa/webauthn/options/"
KEY_VERIFY_URL = "/api/auth/2fa/webauthn/verify/"
PASSKEY_OPTIONS_URL = "/api/auth/passkey/options/"
PASSKEY_LOGIN_URL = "/api/auth/passkey/login/"
SETUP_CHALLENGE = "bench-setup-browser-challenge-0123456789"


def _register(user: Any, *, passkey: bool) -> Subject:
    from ephemeral_auth.services import webauthn_factor
    from ephemeral_auth.services.proof import Proof

    key = authenticator(passkey=passkey)
    proof = Proof.trusted_caller()
    options = webauthn_factor.begin_registration(user, proof=proof, browser_challenge=SETUP_CHALLENGE, passkey=passkey)
    webauthn_factor.complete_registration(
        user, key.create(options), proof=proof, browser_challenge=SETUP_CHALLENGE, name="bench key"
    )
    return Subject(user.get_username(), key=key)


def enrol_passkey(user: Any) -> Subject:
    return _register(user, passkey=True)


def enrol_security_key(user: Any) -> Subject:
    return _register(user, passkey=False)


def enrol_totp(user: Any) -> Subject:
    from ephemeral_auth import crypto
    from ephemeral_auth.models import UserTwoFactor

    secret = pyotp.random_base32()
    UserTwoFactor.objects.create(user=user, totp_secret=crypto.encrypt(secret), totp_confirmed_at=timezone.now())
    return Subject(user.get_username(), totp_secret=secret)


def _password(subject: Subject, client: Client, rec: Any) -> dict[str, Any]:
    first = rec("password", lambda: client.post(
        LOGIN_URL, {"username": subject.username, "password": PASSWORD}, content_type="application/json"
    ))
    body: dict[str, Any] = first.json()
    assert body.get("status") == "2fa_required", body
    return body


def login_totp(subject: Subject, client: Client, rec: Any) -> Client:
    body = _password(subject, client, rec)
    code = pyotp.TOTP(subject.totp_secret).now()
    second = rec("verify", lambda: client.post(
        VERIFY_URL, {"pre_auth_token": body["pre_auth_token"], "method": "totp", "code": code},
        content_type="application/json",
    ))
    assert second.status_code == 200, second.content
    return client


def _json(client: Client, url: str, data: dict[str, Any]) -> Any:
    return client.post(url, data, content_type="application/json")


def login_passkey(subject: Subject, client: Client, rec: Any) -> Client:
    assert subject.key is not None
    first = rec("options", lambda: _json(client, PASSKEY_OPTIONS_URL, {}))
    assert first.status_code == 200, first.content
    assertion = subject.key.get(first.json()["publicKey"])
    second = rec("verify", lambda: _json(client, PASSKEY_LOGIN_URL, {"credential": assertion}))
    assert second.status_code == 200 and second.json()["status"] == "authenticated", second.content
    return client


def login_security_key(subject: Subject, client: Client, rec: Any) -> Client:
    assert subject.key is not None
    token = _password(subject, client, rec)["pre_auth_token"]
    first = rec("options", lambda: _json(client, KEY_OPTIONS_URL, {"pre_auth_token": token}))
    assert first.status_code == 200, first.content
    assertion = subject.key.get(first.json()["publicKey"])
    second = rec("verify", lambda: _json(client, KEY_VERIFY_URL, {"pre_auth_token": token, "credential": assertion}))
    assert second.status_code == 200 and second.json()["status"] == "authenticated", second.content
    return client
