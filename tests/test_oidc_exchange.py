"""OIDC sign-in meets local 2FA, and the SPA exchange (oidc/exchange/), against the provider STAND-IN.

The stand-in (tests/oidc_standin_provider.py) lets a test choose the ID token's
``amr``; the real-provider versions of these flows are in tests/e2e/.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from ephemeral_auth import clock
from ephemeral_auth.models import EphemeralToken, OIDCIdentity, TokenType
from ephemeral_auth.services import totp
from ephemeral_auth.services.two_factor import Proof
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

EXCHANGE = "/api/auth/oidc/exchange/"


def sign_in(client, standin, **params):
    response = client.get(reverse("ephemeral_auth_api:oidc_authorize", args=["standin"]), params)
    return client.get(standin.approve(response["Location"]))


def exchange_token(client, standin, **params):
    response = sign_in(client, standin, mode="spa", next="/spa/", **params)
    return parse_qs(urlsplit(response["Location"]).fragment)["oidc_token"][0]


def redeem(client, raw):
    return client.post(EXCHANGE, {"oidc_token": raw}, content_type="application/json")


@pytest.fixture
def alice(oidc_standin):
    user = UserFactory(username="alice", email="alice@example.com")
    OIDCIdentity.objects.create(user=user, provider="standin", subject=oidc_standin.account["sub"])
    return user


@pytest.fixture
def alice_with_totp(alice):
    earlier = clock.now() - timedelta(minutes=5)
    setup = totp.setup(alice, proof=Proof.trusted_caller(), now=earlier)
    totp.confirm(alice, pyotp.TOTP(setup.secret).at(earlier), proof=Proof.trusted_caller(), now=earlier)
    alice.totp = pyotp.TOTP(setup.secret)
    return alice


def trust_amr(settings, standin):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"standin": standin.provider_settings(trust_amr=True)}


# Session mode and 2FA.


def test_session_mode_sends_a_2fa_user_to_the_verify_page(client, oidc_standin, alice_with_totp):
    response = sign_in(client, oidc_standin, next="/after/")
    assert response.status_code == 302
    assert response["Location"] == reverse("ephemeral_auth:two_factor_verify") + "?next=%2Fafter%2F"
    assert SESSION_KEY not in client.session
    assert EphemeralToken.objects.filter(token_type=TokenType.PRE_AUTH, user=alice_with_totp).count() == 1


def test_trusted_amr_mfa_skips_local_2fa(client, oidc_standin, alice_with_totp, settings):
    trust_amr(settings, oidc_standin)
    oidc_standin.account["amr"] = ["pwd", "mfa"]
    assert sign_in(client, oidc_standin, next="/after/")["Location"] == "/after/"
    assert client.session[SESSION_KEY] == str(alice_with_totp.pk)
    assert client.get("/api/auth/me/").json()["two_factor_verified"] is True


@pytest.mark.parametrize(
    ("trusted", "amr"),
    [(False, ["pwd", "mfa"]), (True, ["pwd"]), (True, "mfa"), (True, None)],
)
def test_amr_does_not_skip_2fa_unless_trusted_and_multi_factor(
    client, oidc_standin, alice_with_totp, settings, trusted, amr
):
    if trusted:
        trust_amr(settings, oidc_standin)
    if amr is not None:
        oidc_standin.account["amr"] = amr
    response = sign_in(client, oidc_standin, next="/after/")
    assert response["Location"].startswith(reverse("ephemeral_auth:two_factor_verify"))
    assert SESSION_KEY not in client.session


def test_amr_from_userinfo_is_ignored(client, oidc_standin, alice_with_totp, settings):
    trust_amr(settings, oidc_standin)
    oidc_standin.userinfo_overrides["amr"] = ["mfa"]
    response = sign_in(client, oidc_standin)
    assert response["Location"].startswith(reverse("ephemeral_auth:two_factor_verify"))


# SPA exchange.


def test_exchange_answers_like_login(client, oidc_standin, alice):
    raw = exchange_token(client, oidc_standin)
    response = redeem(client, raw)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "authenticated" and body["user"]["username"] == "alice"
    assert client.session[SESSION_KEY] == str(alice.pk)
    assert client.get("/api/auth/me/").json()["username"] == "alice"


def test_a_database_error_inside_the_exchange_login_logs_nobody_in(client, oidc_standin, alice, settings):
    """The exchange's login step is one transaction, as the callback's: its failure leaves no logged-in session."""
    from django.contrib.auth.signals import user_logged_in
    from django.contrib.sessions.models import Session
    from django.db import DatabaseError

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    raw = exchange_token(client, oidc_standin)

    def fail(**kwargs):
        raise DatabaseError("connection lost (test)")

    user_logged_in.connect(fail, dispatch_uid="test-oidc-failing-exchange-login")
    try:
        response = redeem(client, raw)
    finally:
        user_logged_in.disconnect(dispatch_uid="test-oidc-failing-exchange-login")
    assert response.status_code == 503, response.content
    assert response.json()["error"] == "service_unavailable"
    assert SESSION_KEY not in client.session
    assert [s for s in Session.objects.all() if SESSION_KEY in s.get_decoded()] == []
    # Nothing of the login was committed (Django's last_login receiver ran before the failure).
    alice.refresh_from_db()
    assert alice.last_login is None


def test_exchange_of_a_2fa_user_reveals_no_profile(client, oidc_standin, alice_with_totp):
    raw = exchange_token(client, oidc_standin)
    response = redeem(client, raw)
    body = response.json()
    assert set(body) == {"status", "pre_auth_token", "methods", "expires_in"}
    assert body["status"] == "2fa_required" and body["methods"] == ["totp", "recovery"]
    assert SESSION_KEY not in client.session
    assert "ephemeral_auth_challenge" in response.cookies


def test_exchange_then_the_second_factor_signs_in(client, oidc_standin, alice_with_totp):
    body = redeem(client, exchange_token(client, oidc_standin)).json()
    answer = client.post(
        "/api/auth/2fa/verify/",
        {"pre_auth_token": body["pre_auth_token"], "method": "totp", "code": alice_with_totp.totp.now()},
        content_type="application/json",
    )
    assert answer.status_code == 200 and answer.json()["status"] == "authenticated"
    assert client.session[SESSION_KEY] == str(alice_with_totp.pk)


def test_exchange_token_is_single_use(client, oidc_standin, alice):
    raw = exchange_token(client, oidc_standin)
    assert redeem(client, raw).status_code == 200
    response = redeem(Client(), raw)
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"


def test_exchange_token_expires(client, oidc_standin, alice, monkeypatch):
    raw = exchange_token(client, oidc_standin)
    later = clock.now() + timedelta(minutes=2, seconds=1)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert redeem(client, raw).json()["error"] == "invalid_token"
    assert SESSION_KEY not in client.session


def test_exchange_refuses_an_inactive_user(client, oidc_standin, alice):
    raw = exchange_token(client, oidc_standin)
    alice.is_active = False
    alice.save()
    response = redeem(client, raw)
    assert response.status_code == 403 and response.json()["error"] == "account_inactive"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid_input"),
        ({"oidc_token": "x" * 129}, 400, "invalid_input"),
        ({"oidc_token": ["list"]}, 400, "invalid_input"),
        ({"oidc_token": "unknown-token"}, 401, "invalid_token"),
    ],
)
def test_exchange_bad_input(client, body, status, code):
    response = client.post(EXCHANGE, body, content_type="application/json")
    assert response.status_code == status and response.json()["error"] == code


def test_exchange_is_post_only_and_csrf_protected(oidc_standin, alice):
    browser = Client(enforce_csrf_checks=True)
    raw = exchange_token(browser, oidc_standin)
    assert browser.get(EXCHANGE).status_code == 405
    refused = browser.post(EXCHANGE, {"oidc_token": raw}, content_type="application/json")
    assert refused.status_code == 403
    token = browser.get("/api/auth/csrf/").json()["csrf_token"]
    accepted = browser.post(EXCHANGE, {"oidc_token": raw}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200 and accepted.json()["status"] == "authenticated"


def test_exchange_in_another_browser_consumes_nothing(client, oidc_standin, alice):
    raw = exchange_token(client, oidc_standin)
    elsewhere = Client()
    response = redeem(elsewhere, raw)
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
    assert SESSION_KEY not in elsewhere.session
    # The browser that ran the flow still redeems it.
    assert redeem(client, raw).json()["status"] == "authenticated"


def test_trusted_amr_skips_local_2fa_in_spa_mode_too(client, oidc_standin, alice_with_totp, settings):
    trust_amr(settings, oidc_standin)
    oidc_standin.account["amr"] = ["pwd", "mfa"]
    raw = exchange_token(client, oidc_standin)
    assert redeem(client, raw).json()["status"] == "authenticated"
    assert EphemeralToken.objects.filter(token_type=TokenType.OIDC_EXCHANGE).count() == 0
