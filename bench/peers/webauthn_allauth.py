"""django-allauth's side of bench/peers/webauthn_flow.py: its real HTML views, as a browser with its JS drives them.

* Passkey sign-in (``MFA_PASSKEY_LOGIN_ENABLED``): the login page's passkey
  button fetches ``GET /accounts/2fa/webauthn/login/`` with
  ``Accept: application/json`` (allauth's webauthn.js ``loginForm``) for the
  request options, then posts the form ``credential=<JSON>`` to the same URL.
* Security key as the second factor: ``POST /accounts/login/`` redirects to
  ``/accounts/2fa/authenticate/``; that page (its GET) begins the WebAuthn
  authentication and carries the options in ``<script id="js_data">``; the
  page's webauthn form posts ``credential=<JSON>`` back to it.
* TOTP: the password step, then ``POST /accounts/2fa/authenticate/`` with the
  code, as bench/peers/flow.py.

Credentials are stored as allauth's add flow stores them
(``WebAuthn.add(user, name, credential)``: the RegistrationResponseJSON the
browser posted, re-parsed at every use), with the user handle allauth gives
(``user_pk_to_url_str``), so its passkey sign-in finds the user from it.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pyotp
from allauth.account.utils import user_pk_to_url_str
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from allauth.mfa.webauthn.internal.auth import WebAuthn
from django.test import Client

from bench.peers.webauthn_common import PASSWORD, Subject, authenticator, json_script
from tests.webauthn_authenticator import b64

LOGIN_URL = "/accounts/login/"
AUTHENTICATE_URL = "/accounts/2fa/authenticate/"
PASSKEY_URL = "/accounts/2fa/webauthn/login/"


def _register(user: Any, *, passkey: bool) -> Subject:
    key = authenticator(passkey=passkey)
    creation = {"user": {"id": b64(user_pk_to_url_str(user).encode("utf8"))}, "challenge": b64(os.urandom(32))}
    WebAuthn.add(user, "passkey" if passkey else "security key", key.create(creation))
    return Subject(user.get_username(), key=key)


def enrol_passkey(user: Any) -> Subject:
    return _register(user, passkey=True)


def enrol_security_key(user: Any) -> Subject:
    return _register(user, passkey=False)


def enrol_totp(user: Any) -> Subject:
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return Subject(user.get_username(), totp_secret=secret)


def _signed_in(response: Any) -> None:
    assert response.status_code == 302, response.status_code
    assert not response["Location"].startswith(("/accounts/login", "/accounts/2fa")), response["Location"]


def login_passkey(subject: Subject, client: Client, rec: Any) -> Client:
    assert subject.key is not None
    first = rec("options", lambda: client.get(PASSKEY_URL, HTTP_ACCEPT="application/json"))
    assert first.status_code == 200, first.status_code
    assertion = subject.key.get(first.json()["request_options"]["publicKey"])
    second = rec("verify", lambda: client.post(PASSKEY_URL, {"credential": json.dumps(assertion)}))
    _signed_in(second)
    return client


def _password(subject: Subject, client: Client, rec: Any) -> None:
    first = rec("password", lambda: client.post(LOGIN_URL, {"login": subject.username, "password": PASSWORD}))
    assert first.status_code == 302, first.status_code
    assert first["Location"] == AUTHENTICATE_URL, first["Location"]


def login_security_key(subject: Subject, client: Client, rec: Any) -> Client:
    assert subject.key is not None
    _password(subject, client, rec)
    page = rec("options", lambda: client.get(AUTHENTICATE_URL))
    assert page.status_code == 200, page.status_code
    options = json_script(page.content.decode(), "js_data")["request_options"]["publicKey"]
    assertion = subject.key.get(options)
    second = rec("verify", lambda: client.post(AUTHENTICATE_URL, {"credential": json.dumps(assertion)}))
    _signed_in(second)
    return client


def login_totp(subject: Subject, client: Client, rec: Any) -> Client:
    _password(subject, client, rec)
    code = pyotp.TOTP(subject.totp_secret).now()
    second = rec("verify", lambda: client.post(AUTHENTICATE_URL, {"code": code}))
    _signed_in(second)
    return client
