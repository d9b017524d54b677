"""two_factor_required and TwoFactorRequiredMixin: only users signed in with their second factor get in."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.test import RequestFactory
from django.urls import include, path, reverse
from django.views import View

from ephemeral_auth.decorators import TwoFactorRequiredMixin, two_factor_required
from tests.factories import login_verified

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@two_factor_required
def secret_page(request, pk):
    return HttpResponse(f"secret {pk} for {request.user.get_username()}")


class SecretView(TwoFactorRequiredMixin, View):
    def get(self, request, pk):
        return HttpResponse(f"secret {pk} for {request.user.get_username()}")

    def post(self, request, pk):
        return HttpResponse("posted")


urlpatterns = [
    path("accounts/", include("ephemeral_auth.urls")),
    path("api/auth/", include("ephemeral_auth.api_urls")),
    path("fn/<int:pk>/", secret_page, name="fn"),
    path("cbv/<int:pk>/", SecretView.as_view(), name="cbv"),
]

JSON = {"HTTP_ACCEPT": "application/json"}
TARGET = "/{kind}/7/?tab=a&b=%2Fx"


@pytest.fixture(params=["fn", "cbv"])
def kind(request):
    return request.param


def _next_of(location):
    return parse_qs(urlsplit(location).query)["next"]


def test_anonymous_browser_is_sent_to_log_in_with_next(client, kind, settings, clock):
    settings.LOGIN_URL = "/accounts/login/"
    url = TARGET.format(kind=kind)
    response = client.get(url)
    assert response.status_code == 302
    assert urlsplit(response["Location"]).path == "/accounts/login/"
    assert _next_of(response["Location"]) == [url]


def test_anonymous_json_client_gets_401(client, kind, clock):
    response = client.get(TARGET.format(kind=kind), **JSON)
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert response.json()["message"] == "Authentication required."


def test_anonymous_json_post_gets_401(client, kind, clock):
    response = client.post(f"/{kind}/7/", data="{}", content_type="application/json")
    assert response.status_code == 401 and response.json()["error"] == "not_authenticated"


def test_user_without_two_factor_is_sent_to_enrolment_with_next(client, user, kind, clock):
    client.force_login(user)
    url = TARGET.format(kind=kind)
    response = client.get(url)
    assert response.status_code == 302
    assert urlsplit(response["Location"]).path == reverse("ephemeral_auth:two_factor_setup")
    assert _next_of(response["Location"]) == [url]


def test_enrolment_target_follows_the_setting(client, user, kind, clock, settings):
    settings.EPHEMERAL_AUTH_TWO_FACTOR_ENROLMENT_URL = "/somewhere/?step=1"
    client.force_login(user)
    response = client.get(f"/{kind}/7/")
    location = urlsplit(response["Location"])
    assert location.path == "/somewhere/"
    assert parse_qs(location.query) == {"step": ["1"], "next": [f"/{kind}/7/"]}


def test_user_without_two_factor_json_gets_403(client, user, kind, clock):
    client.force_login(user)
    response = client.get(TARGET.format(kind=kind), **JSON)
    assert response.status_code == 403
    assert response.json()["error"] == "two_factor_enrolment_required"


def test_verified_two_factor_session_gets_in(client, totp_user, kind, clock):
    user, _secret = totp_user
    login_verified(client, user)
    response = client.get(TARGET.format(kind=kind))
    assert response.status_code == 200
    assert response.content.decode() == f"secret 7 for {user.username}"
    assert client.get(TARGET.format(kind=kind), **JSON).status_code == 200


def test_session_that_skipped_the_second_factor_is_anonymous(client, totp_user, kind, clock, settings):
    settings.LOGIN_URL = "/accounts/login/"
    user, _secret = totp_user
    client.force_login(user)  # signed in, 2FA on, never verified
    response = client.get(f"/{kind}/7/")
    assert response.status_code == 302 and urlsplit(response["Location"]).path == "/accounts/login/"
    assert client.get(f"/{kind}/7/", **JSON).status_code == 401


def test_next_is_this_site_path_only(client, kind, settings, clock):
    """``next`` is the request's own path: a crafted Host or scheme never makes it an external URL."""
    settings.LOGIN_URL = "/accounts/login/"
    response = client.get(f"/{kind}/7/?next=https://evil.example/")
    (target,) = _next_of(response["Location"])
    assert target.startswith(f"/{kind}/7/")
    assert urlsplit(target).netloc == "" and urlsplit(target).scheme == ""


def test_unverified_but_signed_in_without_middleware_fails_closed(user):
    """Without TwoFactorMiddleware nothing says whether the session passed 2FA: refuse loudly."""
    request = RequestFactory().get("/fn/7/")
    request.user = user
    with pytest.raises(ImproperlyConfigured):
        secret_page(request, pk=7)


def test_unverified_flag_with_two_factor_enabled_is_treated_as_anonymous(user):
    """A signed-in user with 2FA on but an unverified session (no middleware hiding it) must sign in."""
    request = RequestFactory().get("/fn/7/", **JSON)
    request.user = user
    request.two_factor_enabled = True
    request.two_factor_verified = False
    response = secret_page(request, pk=7)
    assert response.status_code == 401


def test_wrapper_keeps_the_view_name():
    assert secret_page.__name__ == "secret_page"
