"""django-allauth's JSON API (allauth.headless, the "browser" client) for bench/peers/webauthn_flow.py.

The same enrolment as bench/peers/webauthn_allauth.py; the logins go
through the endpoints a single-page app calls:

* passkey: ``GET auth/webauthn/login`` (request options), then
  ``POST auth/webauthn/login`` ``{"credential": ...}``;
* security key: ``POST auth/login`` (401: the ``mfa_authenticate`` stage is
  pending), ``GET auth/webauthn/authenticate`` (request options), then
  ``POST auth/webauthn/authenticate`` ``{"credential": ...}``;
* TOTP: ``POST auth/login``, then ``POST auth/2fa/authenticate`` ``{"code": ...}``.
"""

from __future__ import annotations

from typing import Any

import pyotp
from django.test import Client

from bench.peers.webauthn_allauth import enrol_passkey, enrol_security_key, enrol_totp
from bench.peers.webauthn_common import PASSWORD, Subject

__all__ = ["enrol_passkey", "enrol_security_key", "enrol_totp", "login_passkey", "login_security_key", "login_totp"]

BASE = "/_allauth/browser/v1/auth/"


def _post(client: Client, url: str, data: dict[str, Any]) -> Any:
    return client.post(BASE + url, data, content_type="application/json")


def _authenticated(response: Any) -> None:
    assert response.status_code == 200, (response.status_code, response.content[:300])
    assert response.json()["meta"]["is_authenticated"] is True, response.content[:300]


def login_passkey(subject: Subject, client: Client, rec: Any) -> Client:
    assert subject.key is not None
    first = rec("options", lambda: client.get(BASE + "webauthn/login"))
    assert first.status_code == 200, first.status_code
    assertion = subject.key.get(first.json()["data"]["request_options"]["publicKey"])
    _authenticated(rec("verify", lambda: _post(client, "webauthn/login", {"credential": assertion})))
    return client


def _password(subject: Subject, client: Client, rec: Any) -> None:
    first = rec("password", lambda: _post(client, "login", {"username": subject.username, "password": PASSWORD}))
    assert first.status_code == 401, first.status_code
    flows = [flow["id"] for flow in first.json()["data"]["flows"] if flow.get("is_pending")]
    assert flows == ["mfa_authenticate"], flows


def login_security_key(subject: Subject, client: Client, rec: Any) -> Client:
    assert subject.key is not None
    _password(subject, client, rec)
    options = rec("options", lambda: client.get(BASE + "webauthn/authenticate"))
    assert options.status_code == 200, options.status_code
    assertion = subject.key.get(options.json()["data"]["request_options"]["publicKey"])
    _authenticated(rec("verify", lambda: _post(client, "webauthn/authenticate", {"credential": assertion})))
    return client


def login_totp(subject: Subject, client: Client, rec: Any) -> Client:
    _password(subject, client, rec)
    code = pyotp.TOTP(subject.totp_secret).now()
    _authenticated(rec("verify", lambda: _post(client, "2fa/authenticate", {"code": code})))
    return client
