"""POST reauthenticate/ and the reauthentication_required decorator (docs/two-factor.md)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.http import HttpResponse
from django.urls import include, path

from ephemeral_auth.auth.session import AUTHENTICATED_AT_KEY
from ephemeral_auth.decorators import reauthentication_required
from ephemeral_auth.models import RecoveryCode
from ephemeral_auth.services import recovery
from tests.factories import PASSWORD, UserFactory, enrol_totp, login_verified, totp_code

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@reauthentication_required
def sensitive(request):
    return HttpResponse(f"sensitive for {request.user.get_username()}")


urlpatterns = [
    path("accounts/", include("ephemeral_auth.urls")),
    path("api/auth/", include("ephemeral_auth.api_urls")),
    path("sensitive/", sensitive, name="sensitive"),
]

URL = "/api/auth/reauthenticate/"
JSON = {"HTTP_ACCEPT": "application/json"}


def post(client, url, body=None):
    return client.post(url, body or {}, content_type="application/json")


def signed_in(client, clock, user=None):
    user = user or UserFactory()
    login_verified(client, user)
    return user


def test_password_renews_the_proof_for_2fa_changes_within_the_window(client, clock):
    signed_in(client, clock)
    clock.advance(301)
    assert post(client, "/api/auth/2fa/totp/setup/").json()["error"] == "reauthentication_required"
    response = post(client, URL, {"password": PASSWORD})
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "valid_for": 300}
    assert client.session[AUTHENTICATED_AT_KEY] == int(clock.now.timestamp())
    clock.advance(299)
    assert post(client, "/api/auth/2fa/totp/setup/").status_code == 200
    clock.advance(2)
    refused = post(client, "/api/auth/2fa/totp/setup/")
    assert refused.status_code == 403 and refused.json()["error"] == "reauthentication_required"


def test_wrong_password_is_refused_and_counted(client, clock, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_user_ip": (3, 900)}
    signed_in(client, clock)
    clock.advance(301)
    for _ in range(3):
        wrong = post(client, URL, {"password": "not the password"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials"
    limited = post(client, URL, {"password": PASSWORD})
    assert limited.status_code == 429 and limited.json()["error"] == "rate_limited"
    assert "Retry-After" in limited
    assert post(client, "/api/auth/2fa/totp/setup/").status_code == 403  # nothing was renewed


def test_totp_code_succeeds_once(client, clock, totp_user):
    user, secret = totp_user
    signed_in(client, clock, user)
    clock.advance(301)
    code = totp_code(secret, clock.now)
    response = post(client, URL, {"method": "totp", "code": code})
    assert response.status_code == 200, response.content
    assert client.session[AUTHENTICATED_AT_KEY] == int(clock.now.timestamp())
    replay = post(client, URL, {"method": "totp", "code": code})
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_code"


def test_totp_failures_spend_the_two_factor_budget(client, clock, totp_user, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"2fa_attempt": (2, 900)}
    user, secret = totp_user
    signed_in(client, clock, user)
    for _ in range(2):
        assert post(client, URL, {"method": "totp", "code": "000000"}).status_code in (401,)
    limited = post(client, URL, {"method": "totp", "code": totp_code(secret, clock.now)})
    assert limited.status_code == 429


def test_recovery_code_is_spent(client, clock):
    user = UserFactory()
    enrol_totp(user)
    codes = recovery.generate(user)
    signed_in(client, clock, user)
    response = post(client, URL, {"method": "recovery", "code": codes[0]})
    assert response.status_code == 200, response.content
    assert RecoveryCode.objects.filter(user=user).count() == len(codes) - 1
    again = post(client, URL, {"method": "recovery", "code": codes[0]})
    assert again.status_code == 401 and again.json()["error"] == "invalid_code"


def test_methods_the_user_cannot_use_are_refused(client, clock):
    signed_in(client, clock)
    for method in ("totp", "recovery", "email"):
        response = post(client, URL, {"method": method, "code": "123456"})
        assert response.status_code == 403 and response.json()["error"] == "method_not_enabled"


def test_anonymous_is_refused(client, clock):
    response = post(client, URL, {"password": PASSWORD})
    assert response.status_code == 401 and response.json()["error"] == "not_authenticated"


@pytest.mark.parametrize(
    "body",
    [{}, {"password": 5}, {"password": ""}, {"method": "totp"}, {"method": "sms", "code": "123456"},
     {"method": ["totp"], "code": "1"}, {"password": "x" * 5000}],
)
def test_bad_input(client, clock, body):
    signed_in(client, clock)
    response = post(client, URL, body)
    assert response.status_code == 400 and response.json()["error"] == "invalid_input"


def test_bad_body(client, clock):
    signed_in(client, clock)
    response = client.post(URL, "[1]", content_type="application/json")
    assert response.status_code == 400 and response.json()["error"] == "invalid_input"
    assert client.get(URL).status_code == 405


# The decorator.


def test_decorator_admits_a_fresh_session(client, clock):
    user = signed_in(client, clock)
    response = client.get("/sensitive/")
    assert response.status_code == 200 and response.content.decode() == f"sensitive for {user.get_username()}"


def test_decorator_json_refusals(client, clock):
    anonymous = client.get("/sensitive/", **JSON)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "not_authenticated"
    signed_in(client, clock)
    clock.advance(301)
    stale = client.get("/sensitive/", **JSON)
    assert stale.status_code == 403 and stale.json()["error"] == "reauthentication_required"
    assert post(client, URL, {"password": PASSWORD}).status_code == 200
    assert client.get("/sensitive/", **JSON).status_code == 200


def test_decorator_html_redirects_to_log_in(client, clock, settings):
    settings.LOGIN_URL = "/accounts/login/"
    anonymous = client.get("/sensitive/?a=1")
    assert anonymous.status_code == 302 and urlsplit(anonymous["Location"]).path == "/accounts/login/"
    signed_in(client, clock)
    clock.advance(301)
    stale = client.get("/sensitive/?a=1")
    assert stale.status_code == 302
    location = urlsplit(stale["Location"])
    assert location.path == "/accounts/login/"
    assert parse_qs(location.query)["next"] == ["/sensitive/?a=1"]

