"""The JSON account endpoints: csrf/, login/, logout/, me/."""

from __future__ import annotations

import pytest
from django.test import Client

from ephemeral_auth.models import EventType, RateLimitEvent
from tests.factories import PASSWORD, UserFactory, enrol_totp, login_verified

pytestmark = pytest.mark.django_db


def post(client, url, body=None, **extra):
    return client.post(url, body or {}, content_type="application/json", **extra)


def test_csrf_then_login_with_csrf_checks(user):
    client = Client(enforce_csrf_checks=True)
    refused = post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD})
    assert refused.status_code == 403 and refused.json()["error"] == "csrf_failed"
    token = client.get("/api/auth/csrf/").json()["csrf_token"]
    assert "csrftoken" in client.cookies
    ok = post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD}, HTTP_X_CSRFTOKEN=token)
    assert ok.status_code == 200 and ok.json()["status"] == "authenticated"


def test_login_without_two_factor(client, user):
    response = post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD})
    assert response.json() == {
        "status": "authenticated",
        "user": {"authenticated": True, "username": user.username, "two_factor_verified": False},
    }
    assert response["Cache-Control"].startswith("max-age=0")
    assert client.session["_auth_user_id"] == str(user.pk)


def test_login_rotates_the_session(client, user):
    client.get("/api/auth/csrf/")
    session = client.session
    session["before"] = 1
    session.save()
    before = client.cookies["sessionid"].value
    post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD})
    assert client.cookies["sessionid"].value != before


def test_wrong_password(client, user):
    response = post(client, "/api/auth/login/", {"username": user.username, "password": "nope"})
    assert response.status_code == 401
    assert response.json() == {"error": "invalid_credentials", "message": "Incorrect username or password."}


def test_unknown_user_gets_the_same_answer(client):
    response = post(client, "/api/auth/login/", {"username": "ghost", "password": "nope"})
    assert response.status_code == 401 and response.json()["error"] == "invalid_credentials"


def test_login_rate_limit_answers_429_with_retry_after(client, user, clock):
    for _ in range(10):
        post(client, "/api/auth/login/", {"username": user.username, "password": "nope"})
    response = post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429
    assert response.json()["error"] == "rate_limited"
    assert response["Retry-After"] == str(response.json()["retry_after"]) == "900"


def test_client_ip_ignores_forwarded_for_unless_trusted(user, settings, clock):
    spoofing = Client(REMOTE_ADDR="192.0.2.1")
    for i in range(20):
        post(spoofing, "/api/auth/login/", {"username": f"x{i}", "password": "nope"},
             HTTP_X_FORWARDED_FOR=f"10.0.0.{i}")
    assert RateLimitEvent.objects.filter(event_type=EventType.LOGIN_IP, key="192.0.2.1").count() == 20
    assert post(spoofing, "/api/auth/login/", {"username": user.username, "password": PASSWORD}).status_code == 429
    settings.EPHEMERAL_AUTH_TRUSTED_PROXIES = ["192.0.2.1"]
    behind_proxy = post(spoofing, "/api/auth/login/", {"username": user.username, "password": PASSWORD},
                        HTTP_X_FORWARDED_FOR="198.51.100.4")
    assert behind_proxy.status_code == 200


def test_logout(client, user):
    post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD})
    response = post(client, "/api/auth/logout/")
    assert response.json() == {"authenticated": False, "username": None, "two_factor_verified": False}
    assert "_auth_user_id" not in client.session
    assert client.get("/api/auth/me/").json()["authenticated"] is False


def test_logout_clears_a_pending_login_cookie(client, user):
    enrol_totp(user)
    post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD})
    response = post(client, "/api/auth/logout/")
    assert response.cookies["ephemeral_auth_challenge"]["max-age"] == 0


def test_me(client, user, clock):
    assert client.get("/api/auth/me/").json() == {"authenticated": False, "username": None,
                                                  "two_factor_verified": False}
    enrol_totp(user)
    login_verified(client, user)
    assert client.get("/api/auth/me/").json() == {"authenticated": True, "username": user.username,
                                                  "two_factor_verified": True}


@pytest.mark.parametrize(("method", "url"), [("get", "/api/auth/login/"), ("post", "/api/auth/me/"),
                                             ("post", "/api/auth/csrf/"), ("get", "/api/auth/logout/")])
def test_wrong_http_method(client, method, url):
    response = getattr(client, method)(url)
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


def test_inactive_user_cannot_log_in(client):
    user = UserFactory(is_active=False)
    assert post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD}).status_code == 401
