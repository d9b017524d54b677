"""JSON account endpoints: ``csrf/``, ``login/``, ``logout/``, ``me/`` (docs/http-api.md)."""

from __future__ import annotations

from django.contrib.auth import logout as django_logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import get_token
from django.urls import path
from django.views.decorators.csrf import ensure_csrf_cookie

from ..auth import login as login_service
from .json import api_view, parse_json, required_text
from .responses import clear_login_cookies, login_step_json, user_payload

__all__ = ["csrf", "login", "logout", "me", "urlpatterns"]

ANONYMOUS = {"authenticated": False, "username": None, "two_factor_verified": False}


@api_view(("GET",))
@ensure_csrf_cookie
def csrf(request: HttpRequest) -> HttpResponse:
    """Return a CSRF token (and set the cookie) for the POSTs that follow."""
    return JsonResponse({"csrf_token": get_token(request)})


@api_view(("POST",))
def login(request: HttpRequest) -> HttpResponse:
    """Check username and password; log in, or answer ``2fa_required`` with a pending login."""
    data = parse_json(request)
    username = required_text(data, "username", max_length=login_service.MAX_IDENTIFIER_LENGTH)
    password = required_text(data, "password", max_length=login_service.MAX_PASSWORD_LENGTH)
    step = login_service.password_login(request, username=username, password=password)
    return login_step_json(request, step)


def _me(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return dict(ANONYMOUS)
    return user_payload(user, request)


@api_view(("POST",))
def logout(request: HttpRequest) -> HttpResponse:
    """End the session (and any pending login of this browser)."""
    parse_json(request)  # a body, if any, must still be a JSON object
    django_logout(request)
    request.two_factor_verified = False  # type: ignore[attr-defined]
    response = JsonResponse(dict(ANONYMOUS))
    clear_login_cookies(response, request)
    return response


@api_view(("GET",))
def me(request: HttpRequest) -> HttpResponse:
    """Describe the session: ``{"authenticated", "username", "two_factor_verified"}``."""
    return JsonResponse(_me(request))


urlpatterns = [
    path("csrf/", csrf, name="csrf"),
    path("login/", login, name="login"),
    path("logout/", logout, name="logout"),
    path("me/", me, name="me"),
]
