"""HTML password reset pages: request, sent, confirm, complete.

See docs/password-reset.md. Every page answers with ``Cache-Control:
no-store`` and ``Referrer-Policy: same-origin``: no page is ever shown at a
URL holding a token, so no Referer can carry one, and ``no-referrer`` would
make browsers send ``Origin: null`` with the forms' POSTs, which Django's
CSRF check refuses. The confirm page takes the
token from the URL fragment (a small script moves it into the form and drops
it from the address bar); a token arriving as ``?token=`` is moved into a
short-lived HttpOnly cookie and the browser redirected to the token-less URL,
as Django's PasswordResetConfirmView does with the session.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django import forms
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render, resolve_url
from django.urls import path, reverse
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods

from ..backends import REMEMBER_DEVICE_ATTRIBUTE
from ..client_ip import client_ip
from ..exceptions import InvalidInput, InvalidPassword, InvalidToken, RateLimited, ServiceUnavailable
from ..http import fail_closed, password_reset_cookie_name, wait_message
from ..services import passwords
from .api_passwords import MAX_TOKEN_LENGTH
from .passwords import link_template

__all__ = [
    "PasswordResetRequestForm",
    "SetPasswordForm",
    "password_reset",
    "password_reset_complete",
    "password_reset_confirm",
    "password_reset_sent",
    "urlpatterns",
]

TEMPLATE_DIR = "ephemeral_auth/password_reset"

logger = logging.getLogger("ephemeral_auth.views")


class PasswordResetRequestForm(forms.Form):
    email = forms.EmailField(label=_("Email"), max_length=passwords.MAX_EMAIL_LENGTH)


class SetPasswordForm(forms.Form):
    # Filled from the URL fragment by the page's script, or typed/pasted. Once posted, the
    # page carries it back only in a hidden input (``token_submitted``), never in a visible field.
    token = forms.CharField(label=_("Reset code"), required=False, max_length=MAX_TOKEN_LENGTH, strip=True)
    new_password1 = forms.CharField(
        label=_("New password"),
        strip=False,
        max_length=passwords.MAX_PASSWORD_LENGTH,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    new_password2 = forms.CharField(
        label=_("New password again"),
        strip=False,
        max_length=passwords.MAX_PASSWORD_LENGTH,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    @property
    def token_submitted(self) -> bool:
        """Whether the posted form carried a token: the page then keeps it in a hidden input."""
        return self.is_bound and bool(str(self.data.get("token", "")).strip())

    def forget_token(self) -> None:
        """Drop the posted token (it proved dead): the page offers an empty field again."""
        if self.is_bound:
            self.data = {**{key: self.data.get(key) for key in self.data}, "token": ""}

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        first, second = cleaned.get("new_password1"), cleaned.get("new_password2")
        if first and second and first != second:
            self.add_error("new_password2", _("The two passwords do not match."))
        return cleaned


def _reset_page(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Decorate a reset page: no caching, no Referer to other sites, secrets hidden from error reports."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            with fail_closed(logger, "on a password reset page"):
                response = view(request, *args, **kwargs)
        except ServiceUnavailable as exc:
            # Fail closed with a page, not a traceback.
            response = _error_page(request, exc.message, status=503)
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    # Rate-limit events commit on their own, even with ATOMIC_REQUESTS.
    return transaction.non_atomic_requests(sensitive_post_parameters()(never_cache(wrapper)))


def _error_page(request: HttpRequest, message: str, *, status: int) -> HttpResponse:
    return render(request, f"{TEMPLATE_DIR}/error.html", {"message": message}, status=status)


def _login_url() -> str:
    return resolve_url(settings.LOGIN_URL)


@_reset_page
@require_http_methods(["GET", "HEAD", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    """Ask for an email; always continue to the same "sent" page."""
    form = PasswordResetRequestForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            passwords.request_reset(
                form.cleaned_data["email"], ip=client_ip(request), link=link_template(request)
            )
        except RateLimited as exc:
            message = f"{gettext('Too many requests.')} {wait_message(exc.retry_after)}"
            response = _error_page(request, message, status=429)
            response["Retry-After"] = str(exc.retry_after)
            return response
        except InvalidInput:
            form.add_error("email", gettext("Enter a valid email address."))
        else:
            return redirect("ephemeral_auth:password_reset_sent")
    status = 400 if request.method == "POST" else 200
    return render(request, f"{TEMPLATE_DIR}/request.html", {"form": form, "login_url": _login_url()}, status=status)


@_reset_page
@require_http_methods(["GET", "HEAD"])
def password_reset_sent(request: HttpRequest) -> HttpResponse:
    """Say a link is on its way if the address has an account."""
    minutes = int(passwords.reset_link_lifetime().total_seconds() // 60)
    return render(request, f"{TEMPLATE_DIR}/sent.html", {"expires_in_minutes": minutes, "login_url": _login_url()})


def _token_cookie(request: HttpRequest) -> str:
    return str(request.COOKIES.get(password_reset_cookie_name(), ""))


@_reset_page
@require_http_methods(["GET", "HEAD", "POST"])
def password_reset_confirm(request: HttpRequest) -> HttpResponse:
    """Choose a new password with the token of the email."""
    cookie_name = password_reset_cookie_name()
    confirm_path = reverse("ephemeral_auth:password_reset_confirm")
    if request.method in ("GET", "HEAD") and "token" in request.GET:
        # Move the token out of the URL at once, so the page the user then
        # sees (and any Referer it sends) carries no token.
        response: HttpResponse = HttpResponseRedirect(confirm_path)
        # This URL holds the token: the redirected request sends no Referer.
        response["Referrer-Policy"] = "no-referrer"
        raw = request.GET.get("token", "")
        if 0 < len(raw) <= MAX_TOKEN_LENGTH:
            response.set_cookie(
                cookie_name,
                raw,
                max_age=int(passwords.reset_link_lifetime().total_seconds()),
                path=confirm_path,
                secure=request.is_secure(),
                httponly=True,
                samesite="Lax",
            )
        return response

    form = SetPasswordForm(request.POST if request.method == "POST" else None)
    from_cookie = bool(_token_cookie(request))
    context = {"form": form, "token_in_cookie": from_cookie, "login_url": _login_url()}
    if request.method != "POST":
        return render(request, f"{TEMPLATE_DIR}/confirm.html", context)
    forget_cookie = False
    valid = form.is_valid()
    if "token" in form.errors:
        form.forget_token()  # malformed: offer the field again, empty
    if valid:
        # A token in the form (from a fresh link's fragment) wins over the cookie.
        raw = form.cleaned_data["token"] or _token_cookie(request)
        try:
            user = passwords.confirm_reset(raw, form.cleaned_data["new_password1"], request=request)
        except InvalidPassword as exc:
            form.add_error("new_password1", exc.messages or [exc.message])
        except InvalidToken:
            context["invalid_link"] = True
            form.forget_token()
            # A dead token in the cookie would shadow the next link: drop it.
            forget_cookie = from_cookie
            context["token_in_cookie"] = False
        except InvalidInput as exc:
            form.add_error(None, exc.message)
        else:
            # The link proved the mailbox: this browser may sign in even while the account's
            # failure ceiling holds (the device cookie, services.lockout).
            setattr(request, REMEMBER_DEVICE_ATTRIBUTE, user.pk)
            response = redirect("ephemeral_auth:password_reset_complete")
            response.delete_cookie(cookie_name, path=confirm_path, samesite="Lax")
            return response
    response = render(request, f"{TEMPLATE_DIR}/confirm.html", context, status=400)
    if forget_cookie:
        response.delete_cookie(cookie_name, path=confirm_path, samesite="Lax")
    return response


@_reset_page
@require_http_methods(["GET", "HEAD"])
def password_reset_complete(request: HttpRequest) -> HttpResponse:
    """Confirm the new password and point to the login page."""
    return render(request, f"{TEMPLATE_DIR}/complete.html", {"login_url": _login_url()})


urlpatterns = [
    path("password-reset/", password_reset, name="password_reset"),
    path("password-reset/sent/", password_reset_sent, name="password_reset_sent"),
    path("password-reset/confirm/", password_reset_confirm, name="password_reset_confirm"),
    path("password-reset/complete/", password_reset_complete, name="password_reset_complete"),
]
