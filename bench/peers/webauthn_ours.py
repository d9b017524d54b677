"""ephemeral_auth's side of bench/peers/webauthn_flow.py.

Enrolment (setup, not measured) goes through the services a registration
view calls: ``webauthn.begin_registration`` / ``complete_registration``
(the real ceremony, the software authenticator answering), plus, when the
factor module exists, what registering through the views records
(``webauthn_factor.complete_registration``: the 2FA state and recovery codes).

The logins go through the JSON API (docs/http-api.md) with the test client.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pyotp
from django.test import Client
from django.utils import timezone

from bench.peers.webauthn_common import PASSWORD, Subject, authenticator

LOGIN_URL = "/api/auth/login/"
VERIFY_URL = "/api/auth/2fa/verify/"
SETUP_CHALLENGE = "bench-setup-browser-challenge-0123456789"
HAS_FACTOR = importlib.util.find_spec("ephemeral_auth.services.webauthn_factor") is not None


def _register(user: Any, *, passkey: bool) -> Subject:
    from ephemeral_auth.services import webauthn

    key = authenticator(passkey=passkey)
    if HAS_FACTOR:
        from ephemeral_auth.services import webauthn_factor
        from ephemeral_auth.services.proof import Proof

        proof = Proof.trusted_caller()
        options = webauthn_factor.begin_registration(
            user, proof=proof, browser_challenge=SETUP_CHALLENGE, passkey=passkey
        )
        webauthn_factor.complete_registration(
            user, key.create(options), proof=proof, browser_challenge=SETUP_CHALLENGE, name="bench key"
        )
    else:
        options = webauthn.begin_registration(user, browser_challenge=SETUP_CHALLENGE, passkey=passkey)
        webauthn.complete_registration(user, key.create(options), browser_challenge=SETUP_CHALLENGE, name="bench key")
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


# Services level (used only while the HTTP endpoints do not exist): what a view would call.


def _session_client(client: Client, user: Any) -> Client:
    from django.contrib.auth import login
    from django.contrib.sessions.middleware import SessionMiddleware
    from django.http import HttpResponse
    from django.test import RequestFactory

    request = RequestFactory().post("/")
    SessionMiddleware(lambda r: HttpResponse()).process_request(request)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    request.session.save()
    client.cookies["sessionid"] = request.session.session_key
    return client


def login_passkey_services(subject: Subject, client: Client, rec: Any) -> Client:
    from ephemeral_auth.services import webauthn

    assert subject.key is not None
    browser = f"bench-browser-{subject.username}-0123456789abcdef"
    options = rec("options", lambda: webauthn.begin_authentication(
        None, browser_challenge=browser, purpose=webauthn.PASSKEY
    ))
    assertion = subject.key.get(options)
    user, _credential = rec("verify", lambda: webauthn.complete_authentication(assertion, browser_challenge=browser))
    return rec("verify", lambda: _session_client(client, user))


login_passkey = login_passkey_services


def login_security_key_services(subject: Subject, client: Client, rec: Any) -> Client:
    """The password step over HTTP, then the WebAuthn ceremony of the second factor at the services level.

    Only the ceremony (the challenge's INSERT with the user's credentials, then
    its DELETE, the credential's SELECT and UPDATE): no login is completed
    by it, since the second-factor endpoints do not exist yet.
    """
    from django.contrib.auth import get_user_model

    from ephemeral_auth.services import webauthn

    assert subject.key is not None
    first = rec("password", lambda: client.post(
        LOGIN_URL, {"username": subject.username, "password": PASSWORD}, content_type="application/json"
    ))
    assert first.status_code == 200, first.content
    user = get_user_model().objects.get(username=subject.username)
    browser = f"bench-browser-{subject.username}-0123456789abcdef"
    options = rec("options", lambda: webauthn.begin_authentication(
        user, browser_challenge=browser, purpose=webauthn.SECOND_FACTOR
    ))
    assertion = subject.key.get(options)
    rec("verify", lambda: webauthn.complete_authentication(assertion, browser_challenge=browser, user=user))
    return client


login_security_key = login_security_key_services
