"""HTTP answers of a login step, shared by the password and OIDC flows (JSON and HTML).

The pending login's browser binding is an HttpOnly cookie:

* ``SameSite=Lax``, ``Max-Age`` equal to the ``pre_auth`` token's lifetime,
  ``Path=/`` (it must reach the 2FA endpoints of both the HTML pages and the
  JSON API, wherever the project mounts them);
* on HTTPS (``request.is_secure()``; set ``SECURE_PROXY_SSL_HEADER`` behind
  a TLS-terminating proxy) it is ``Secure`` and named ``__Host-<name>``, so
  no subdomain can plant or overwrite it (the names are :mod:`ephemeral_auth.http`'s);
* deleted when the login completes (fixing a weakness of the original application).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers

from ..http import challenge_cookie_name, pending_cookie_name

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from ..services.pending import LoginStep

__all__ = [
    "challenge_cookie_name",
    "clear_login_cookies",
    "login_step_json",
    "login_step_redirect",
    "pending_cookie_name",
    "read_challenge",
    "read_pending_token",
    "set_login_cookies",
    "user_payload",
]

def read_challenge(request: HttpRequest) -> str:
    """Return the challenge cookie's value ("" if absent).

    Only the name matching the request's scheme is read: on HTTPS a plain
    cookie (which a sibling subdomain could have planted) is ignored.
    """
    return request.COOKIES.get(challenge_cookie_name(request), "")


def read_pending_token(request: HttpRequest) -> str:
    """Return the pending login token the HTML login page left in its cookie ("" if absent)."""
    return request.COOKIES.get(pending_cookie_name(request), "")


def _set(response: HttpResponse, request: HttpRequest, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=request.is_secure(), httponly=True, samesite="Lax"
    )


def set_login_cookies(response: HttpResponse, request: HttpRequest, step: LoginStep, *, html: bool = False) -> None:
    """Set the challenge cookie of a pending login (and, for HTML pages, the token cookie)."""
    if step.pre_auth is None or step.challenge is None:
        return
    max_age = step.pre_auth.expires_in
    _set(response, request, challenge_cookie_name(request), step.challenge, max_age)
    if html:
        _set(response, request, pending_cookie_name(request), step.pre_auth.raw, max_age)


def clear_login_cookies(response: HttpResponse, request: HttpRequest) -> None:
    """Delete the pending-login cookies (the login completed or was abandoned)."""
    for name in (challenge_cookie_name(request), pending_cookie_name(request)):
        if name in request.COOKIES:
            response.delete_cookie(name, path="/", samesite="Lax")


def user_payload(user: AbstractBaseUser, request: HttpRequest | None = None) -> dict[str, Any]:
    """Return what the API tells a logged-in client about its user (``me/`` and ``login/``)."""
    verified = bool(getattr(request, "two_factor_verified", False)) if request is not None else False
    return {
        "authenticated": True,
        "username": user.get_username(),
        "two_factor_verified": verified,
    }


def login_step_json(request: HttpRequest, step: LoginStep) -> JsonResponse:
    """Answer a login step in JSON (docs/http-api.md).

    ``{"status": "authenticated", "user": {...}}``, or ``{"status":
    "2fa_required", "pre_auth_token", "methods", "expires_in"}`` with the
    challenge cookie. The second carries nothing about the user: the first
    factor alone does not earn a profile (fixing a weakness of the original application).
    """
    if step.status == "authenticated":
        response = JsonResponse({"status": "authenticated", "user": user_payload(step.user, request)})
        clear_login_cookies(response, request)
    else:
        assert step.pre_auth is not None
        response = JsonResponse(
            {
                "status": "2fa_required",
                "pre_auth_token": step.pre_auth.raw,
                "methods": list(step.methods),
                "expires_in": step.pre_auth.expires_in,
            }
        )
        set_login_cookies(response, request, step)
    add_never_cache_headers(response)
    return response


def login_step_redirect(request: HttpRequest, step: LoginStep, *, next_url: str) -> HttpResponse:
    """Answer a login step of an HTML flow with a redirect.

    Authenticated: to ``next_url`` (the caller validated it). Otherwise to the
    2FA verify page, which continues to ``next_url``; the pending login
    travels in HttpOnly cookies, never in the URL or the session.
    """
    if step.status == "authenticated":
        response: HttpResponse = HttpResponseRedirect(next_url)
        clear_login_cookies(response, request)
    else:
        target = reverse("ephemeral_auth:two_factor_verify")
        if next_url:
            target += "?" + urlencode({"next": next_url})
        response = HttpResponseRedirect(target)
        set_login_cookies(response, request, step, html=True)
    add_never_cache_headers(response)
    return response
