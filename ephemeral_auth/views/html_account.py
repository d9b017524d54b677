"""HTML login and logout pages.

Customise them like Django's auth views: subclass and change class
attributes (``template_name``, ``form_class``, ``redirect_field_name``), or
override the templates ``ephemeral_auth/login.html`` and
``ephemeral_auth/logout.html``.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout as django_logout
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render, resolve_url
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from ..auth import login as login_service
from ..exceptions import EphemeralAuthError, ReauthenticationRequired
from ..forms import LoginForm
from ..http import fail_closed, html_error_response
from .responses import clear_login_cookies, login_step_redirect

__all__ = ["LoginView", "LogoutView", "ServiceErrorMixin", "safe_next_url", "urlpatterns"]

logger = logging.getLogger("ephemeral_auth.views")


def safe_next_url(request: HttpRequest, value: str | None, *, default: str | None = None) -> str:
    """Return ``value`` if it points at this site, else ``default`` (LOGIN_REDIRECT_URL)."""
    if value and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return resolve_url(default or settings.LOGIN_REDIRECT_URL)


class ServiceErrorMixin:
    """Render a service failure on the page: its message as text, and 429 + Retry-After when rate limited.

    The message goes to the form the user submitted (``form``, or the bound
    form of the context, whatever its name): ``http.html_error_response``.

    A change that needs a fresh proof the session cannot show
    (``reauthentication_required``) sends the user to sign in again, and back.
    """

    reauthenticate_url_name = "ephemeral_auth:login"

    def error_response(
        self, request: HttpRequest, exc: EphemeralAuthError, template: str, context: dict[str, Any],
        *, form: Any = None,
    ) -> HttpResponse:
        if isinstance(exc, ReauthenticationRequired):
            messages.info(request, exc.message, fail_silently=True)
            target = reverse(self.reauthenticate_url_name)
            return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")
        return html_error_response(request, exc, template, context, form=form)


@method_decorator([sensitive_post_parameters(), csrf_protect, never_cache], name="dispatch")
class LoginView(ServiceErrorMixin, View):
    """Username (or email) and password; continues to the 2FA page when the user has 2FA."""

    template_name = "ephemeral_auth/login.html"
    form_class = LoginForm
    redirect_field_name = "next"
    extra_context: dict[str, Any] | None = None

    def get_next_url(self) -> str:
        request = self.request  # type: ignore[attr-defined]
        value = request.POST.get(self.redirect_field_name) or request.GET.get(self.redirect_field_name)
        return safe_next_url(request, value)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = {"redirect_field_name": self.redirect_field_name, "next": self.get_next_url()}
        context.update(self.extra_context or {})
        context.update(kwargs)
        return context

    def allowed_user(self, user: Any) -> bool:
        """Whether this page may log ``user`` in (the admin: staff only); a refusal reads as a wrong password."""
        return True

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, self.get_context_data(form=self.form_class()))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = self.form_class(request.POST)
        context = self.get_context_data(form=form)
        if not form.is_valid():
            return render(request, self.template_name, context, status=400)
        try:
            # Fail closed: nobody is logged in, the form says so with a 503, no 500 page.
            with fail_closed(logger, "on the login page"):
                step = login_service.password_login(
                    request, username=form.cleaned_data["username"], password=form.cleaned_data["password"],
                    allowed=self.allowed_user,
                )
        except EphemeralAuthError as exc:
            return self.error_response(request, exc, self.template_name, context)
        return login_step_redirect(request, step, next_url=self.get_next_url())


@method_decorator([csrf_protect, never_cache], name="dispatch")
class LogoutView(View):
    """GET asks for confirmation; POST logs out (a link cannot log anybody out)."""

    template_name = "ephemeral_auth/logout.html"
    redirect_field_name = "next"

    def get_next_url(self) -> str:
        request = self.request  # type: ignore[attr-defined]
        value = request.POST.get(self.redirect_field_name) or request.GET.get(self.redirect_field_name)
        default = getattr(settings, "LOGOUT_REDIRECT_URL", None) or "/"
        return safe_next_url(request, value, default=default)

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, {"next": self.get_next_url()})

    def post(self, request: HttpRequest) -> HttpResponse:
        django_logout(request)
        response = HttpResponseRedirect(self.get_next_url())
        clear_login_cookies(response, request)
        return response


urlpatterns = [
    # Rate-limit events must commit on their own, even with ATOMIC_REQUESTS.
    path("login/", transaction.non_atomic_requests(LoginView.as_view()), name="login"),
    path("logout/", LogoutView.as_view(), name="logout"),
]
