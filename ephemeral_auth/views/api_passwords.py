"""JSON password reset: ``POST password-reset/`` and ``POST password-reset/confirm/``.

See docs/password-reset.md. The request endpoint answers ``{"status": "sent"}``
whether or not the email belongs to an account, also over the per-email
limit; only the per-IP limit answers 429.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

from ..backends import REMEMBER_DEVICE_ATTRIBUTE
from ..client_ip import client_ip
from ..exceptions import InvalidPassword
from ..http import error
from ..services import passwords
from .json import api_view, parse_json, required_text
from .passwords import link_template

__all__ = ["password_reset", "password_reset_confirm", "urlpatterns"]

# A raw token is 43 characters; the service refuses anything else as invalid_token.
MAX_TOKEN_LENGTH = 512


def _no_referrer(response: HttpResponse) -> HttpResponse:
    response["Referrer-Policy"] = "no-referrer"
    return response


@api_view(("POST",))
def password_reset(request: HttpRequest) -> HttpResponse:
    """Send a reset link if the email has an account; answer the same either way."""
    data = parse_json(request)
    email = required_text(data, "email", max_length=passwords.MAX_EMAIL_LENGTH)
    passwords.request_reset(email, ip=client_ip(request), link=link_template(request))
    return _no_referrer(JsonResponse({"status": "sent"}))


@api_view(("POST",))
def password_reset_confirm(request: HttpRequest) -> HttpResponse:
    """Set a new password with the token from the email."""
    data = parse_json(request)
    token = required_text(data, "token", max_length=MAX_TOKEN_LENGTH)
    new_password = required_text(data, "new_password", max_length=passwords.MAX_PASSWORD_LENGTH)
    try:
        user = passwords.confirm_reset(token, new_password, request=request)
    except InvalidPassword as exc:
        return _no_referrer(error(exc.code, exc.message, messages=exc.messages))
    # The link proved the mailbox: this browser may sign in even while the account's
    # failure ceiling holds (the device cookie, services.lockout).
    setattr(request, REMEMBER_DEVICE_ATTRIBUTE, user.pk)
    return _no_referrer(JsonResponse({"status": "ok"}))


urlpatterns = [
    path("password-reset/", password_reset, name="password_reset"),
    path("password-reset/confirm/", password_reset_confirm, name="password_reset_confirm"),
]
