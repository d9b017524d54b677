"""HTML two-factor pages: the login's second step, and managing one's own factors.

Every page is a class-based view whose template, form and redirects are
class attributes; the templates live under ``ephemeral_auth/two_factor/``.
The pending login reaches the verify page through HttpOnly cookies set by
the login page (``views.responses``), never through the URL or the session.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import render
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from ..auth import login as login_service
from ..auth.trusted import read_trust_cookie, set_trust_cookie
from ..exceptions import EphemeralAuthError, InvalidToken, ServiceUnavailable
from ..forms import CodeForm, EmailConfirmForm, PasswordForm, TotpStartForm, VerifyForm
from ..http import best_effort, fail_closed, service_unavailable
from ..services import email_otp, recovery, totp, trusted_browsers, two_factor
from .html_account import ServiceErrorMixin, safe_next_url
from .responses import (
    clear_login_cookies,
    read_challenge,
    read_pending_token,
    remark_session,
    save_proof,
    session_proof,
)

logger = logging.getLogger("ephemeral_auth.views")

__all__ = [
    "EmailConfirmView",
    "EmailDisableView",
    "EmailEnableView",
    "OverviewView",
    "RecoveryCodesView",
    "TotpDisableView",
    "TotpSetupView",
    "VerifyView",
    "urlpatterns",
]

_credential_view: list[Any] = [sensitive_post_parameters(), csrf_protect, never_cache]
_account_view: list[Any] = [*_credential_view, login_required]


def _flash(request: HttpRequest, text: str) -> None:
    messages.success(request, text, fail_silently=True)


@method_decorator(_credential_view, name="dispatch")
class VerifyView(ServiceErrorMixin, View):
    """The second step of a login: pick a method, (ask for an email code,) enter the code."""

    template_name = "ephemeral_auth/two_factor/verify.html"
    form_class = VerifyForm
    redirect_field_name = "next"
    login_url_name = "ephemeral_auth:login"
    #: After a recovery code, at most this many left: the message is a warning to get new ones.
    few_recovery_codes = 3

    def get_next_url(self) -> str:
        request = self.request  # type: ignore[attr-defined]
        value = request.POST.get(self.redirect_field_name) or request.GET.get(self.redirect_field_name)
        return safe_next_url(request, value)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            with fail_closed(logger, "on the two-factor verify page"):
                return super().dispatch(request, *args, **kwargs)
        except ServiceUnavailable:
            # Fail closed: the pending login stays as it was, nobody is logged in, no 500 page.
            return service_unavailable(request)

    def expired(self, request: HttpRequest) -> HttpResponse:
        """The pending login is gone: back to the login page, with a message."""
        messages.error(
            request, _("Your sign-in expired or was already completed. Please sign in again."), fail_silently=True
        )
        target = reverse(self.login_url_name)
        next_url = self.get_next_url()
        response = HttpResponseRedirect(f"{target}?{urlencode({self.redirect_field_name: next_url})}")
        clear_login_cookies(response, request)
        return response

    def pending(self, request: HttpRequest) -> login_service.PendingLogin:
        return login_service.peek_pending(read_pending_token(request), challenge=read_challenge(request))

    def context(self, pending: login_service.PendingLogin, form: Any, **extra: Any) -> dict[str, Any]:
        return {
            "form": form,
            "methods": pending.methods,
            "can_send_email": "email" in pending.methods,
            "next": self.get_next_url(),
            "redirect_field_name": self.redirect_field_name,
            **extra,
        }

    def recovery_code_used(self, request: HttpRequest, remaining: int) -> None:
        """Tell the user, on the next page, that a recovery code is used up and how many are left."""
        text = ngettext(
            "You used a recovery code; %(count)d code is left.",
            "You used a recovery code; %(count)d codes are left.",
            remaining,
        ) % {"count": remaining}
        if remaining <= self.few_recovery_codes:
            text += " " + _("Get new recovery codes soon, in your two-factor settings.")
            messages.warning(request, text, fail_silently=True)
        else:
            messages.info(request, text, fail_silently=True)

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            pending = self.pending(request)
        except InvalidToken:
            return self.expired(request)
        form = self.form_class(methods=pending.methods)
        return render(request, self.template_name, self.context(pending, form))

    def post(self, request: HttpRequest) -> HttpResponse:
        try:
            pending = self.pending(request)
        except InvalidToken:
            return self.expired(request)
        if request.POST.get("action") == "send_email":
            form = self.form_class(methods=pending.methods, initial={"method": "email"})
            context = self.context(pending, form)
            try:
                login_service.send_login_email(
                    request, pre_auth_token=read_pending_token(request), challenge=read_challenge(request)
                )
            except InvalidToken:
                return self.expired(request)
            except EphemeralAuthError as exc:
                return self.error_response(request, exc, self.template_name, context)
            context["email_sent"] = True
            return render(request, self.template_name, context)
        form = self.form_class(request.POST, methods=pending.methods)
        context = self.context(pending, form)
        if not form.is_valid():
            return render(request, self.template_name, context, status=400)
        method = form.cleaned_data["method"]
        try:
            user = login_service.verify_login(
                request,
                pre_auth_token=read_pending_token(request),
                challenge=read_challenge(request),
                method=method,
                code=form.cleaned_data["code"],
                trust_browser=form.cleaned_data.get("trust_browser") is True,
            )
        except InvalidToken:
            return self.expired(request)
        except EphemeralAuthError as exc:
            return self.error_response(request, exc, self.template_name, context)
        if method == "recovery":
            # The login completed: it is not undone for want of a count.
            with best_effort(logger, "count the recovery codes left"):
                self.recovery_code_used(request, recovery.remaining(user))
        response = HttpResponseRedirect(self.get_next_url())
        clear_login_cookies(response, request)
        set_trust_cookie(response, request)
        return response


@method_decorator(_account_view, name="dispatch")
class OverviewView(View):
    """What the user has enrolled, with links to change it."""

    template_name = "ephemeral_auth/two_factor/overview.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        status = two_factor.status(request.user)  # type: ignore[arg-type]
        has_email = bool(two_factor.user_email(request.user))  # type: ignore[arg-type]
        context: dict[str, Any] = {"status": status, "has_email": has_email}
        if trusted_browsers.enabled():  # the section "Trusted browsers" (views.trusted_browsers revokes)
            current = read_trust_cookie(request)
            context["trusted_browsers"] = trusted_browsers.list_for(request.user, current=current)  # type: ignore[arg-type]
        return render(request, self.template_name, context)


@method_decorator(_account_view, name="dispatch")
class TotpSetupView(ServiceErrorMixin, View):
    """Enrol an authenticator app: start (QR code and secret), then confirm with a code."""

    template_name = "ephemeral_auth/two_factor/totp_setup.html"
    codes_template_name = "ephemeral_auth/two_factor/recovery_codes.html"

    def context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        state = two_factor.load_state(request.user)
        setup = totp.pending_setup(request.user)  # type: ignore[arg-type]
        context = {
            "active": state.totp,
            "setup": setup,
            "start_form": TotpStartForm(),
            "confirm_form": CodeForm(),
            "next": safe_next_url(request, request.GET.get("next") or request.POST.get("next"),
                                  default=reverse("ephemeral_auth:two_factor_overview")),
        }
        context.update(extra)
        return context

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, self.context(request))

    def post(self, request: HttpRequest) -> HttpResponse:
        if request.POST.get("action") == "confirm":
            form = CodeForm(request.POST)
            context = self.context(request, confirm_form=form)
            if not form.is_valid():
                return render(request, self.template_name, context, status=400)
            proof = session_proof(request)
            try:
                codes = totp.confirm(request.user, form.cleaned_data["code"], proof=proof, request=request)  # type: ignore[arg-type]
            except EphemeralAuthError as exc:
                return self.error_response(request, exc, self.template_name, context)
            save_proof(request, proof)
            remark_session(request, verified=True)
            _flash(request, _("Your authenticator app is set up."))
            return render(request, self.codes_template_name, {"codes": codes, "next": context["next"]})
        start = TotpStartForm(request.POST)
        context = self.context(request, start_form=start)
        if not start.is_valid():
            return render(request, self.template_name, context, status=400)
        try:
            totp.setup(
                request.user, proof=session_proof(request), code=start.cleaned_data["code"] or None,  # type: ignore[arg-type]
                request=request,
            )
        except EphemeralAuthError as exc:
            return self.error_response(request, exc, self.template_name, context)
        target = reverse("ephemeral_auth:two_factor_setup")
        if request.POST.get("next"):
            target += "?" + urlencode({"next": context["next"]})
        return HttpResponseRedirect(target)


@method_decorator(_account_view, name="dispatch")
class TotpDisableView(ServiceErrorMixin, View):
    """Remove the authenticator app (needs a current code)."""

    template_name = "ephemeral_auth/two_factor/totp_disable.html"
    success_url_name = "ephemeral_auth:two_factor_overview"

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, {"form": CodeForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        form = CodeForm(request.POST)
        context = {"form": form}
        if not form.is_valid():
            return render(request, self.template_name, context, status=400)
        try:
            totp.disable(request.user, form.cleaned_data["code"], proof=session_proof(request), request=request)  # type: ignore[arg-type]
        except EphemeralAuthError as exc:
            return self.error_response(request, exc, self.template_name, context)
        remark_session(request)
        _flash(request, _("Your authenticator app was removed."))
        return HttpResponseRedirect(reverse(self.success_url_name))


@method_decorator(_account_view, name="dispatch")
class RecoveryCodesView(ServiceErrorMixin, View):
    """How many recovery codes are left; new ones after a current code (shown once)."""

    template_name = "ephemeral_auth/two_factor/recovery_codes.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        remaining = recovery.remaining(request.user)  # type: ignore[arg-type]
        return render(request, self.template_name, {"form": CodeForm(), "remaining": remaining})

    def post(self, request: HttpRequest) -> HttpResponse:
        form = CodeForm(request.POST)
        context: dict[str, Any] = {"form": form, "remaining": recovery.remaining(request.user)}  # type: ignore[arg-type]
        if not form.is_valid():
            return render(request, self.template_name, context, status=400)
        try:
            codes = recovery.regenerate(
                request.user, form.cleaned_data["code"], proof=session_proof(request), request=request  # type: ignore[arg-type]
            )
        except EphemeralAuthError as exc:
            return self.error_response(request, exc, self.template_name, context)
        remark_session(request)
        return render(request, self.template_name, {"codes": codes})


@method_decorator(_account_view, name="dispatch")
class EmailEnableView(ServiceErrorMixin, View):
    """Send a confirmation code to the user's address, then ask for it."""

    template_name = "ephemeral_auth/two_factor/email_enable.html"
    confirm_template_name = "ephemeral_auth/two_factor/email_confirm.html"

    def get(self, request: HttpRequest) -> HttpResponse:
        address = two_factor.user_email(request.user)  # type: ignore[arg-type]
        return render(request, self.template_name, {"address": address})

    def post(self, request: HttpRequest) -> HttpResponse:
        address = two_factor.user_email(request.user)  # type: ignore[arg-type]
        try:
            issued = email_otp.enable(request.user, proof=session_proof(request), request=request)  # type: ignore[arg-type]
        except EphemeralAuthError as exc:
            return self.error_response(request, exc, self.template_name, {"address": address})
        # The setup token is bound to this user, so the page may carry it.
        form = EmailConfirmForm(initial={"setup_token": issued.raw})
        return render(request, self.confirm_template_name, {"form": form, "address": address})


@method_decorator(_account_view, name="dispatch")
class EmailConfirmView(ServiceErrorMixin, View):
    """Turn email codes on with the emailed code."""

    template_name = "ephemeral_auth/two_factor/email_confirm.html"
    codes_template_name = "ephemeral_auth/two_factor/recovery_codes.html"
    success_url_name = "ephemeral_auth:two_factor_overview"

    def get(self, request: HttpRequest) -> HttpResponse:
        return HttpResponseRedirect(reverse("ephemeral_auth:two_factor_email_enable"))

    def post(self, request: HttpRequest) -> HttpResponse:
        form = EmailConfirmForm(request.POST)
        context = {"form": form, "address": two_factor.user_email(request.user)}  # type: ignore[arg-type]
        if not form.is_valid():
            return render(request, self.template_name, context, status=400)
        try:
            codes = email_otp.confirm(
                request.user, form.cleaned_data["setup_token"], form.cleaned_data["code"],  # type: ignore[arg-type]
                proof=session_proof(request), request=request,
            )
        except EphemeralAuthError as exc:
            return self.error_response(request, exc, self.template_name, context)
        remark_session(request, verified=True)
        _flash(request, _("Sign-in codes will be sent to your email address."))
        if codes:
            return render(request, self.codes_template_name, {"codes": codes})
        return HttpResponseRedirect(reverse(self.success_url_name))


@method_decorator(_account_view, name="dispatch")
class EmailDisableView(ServiceErrorMixin, View):
    """Turn email codes off (needs the password)."""

    template_name = "ephemeral_auth/two_factor/email_disable.html"
    success_url_name = "ephemeral_auth:two_factor_overview"

    def get(self, request: HttpRequest) -> HttpResponse:
        return render(request, self.template_name, {"form": PasswordForm()})

    def post(self, request: HttpRequest) -> HttpResponse:
        form = PasswordForm(request.POST)
        context = {"form": form}
        if not form.is_valid():
            return render(request, self.template_name, context, status=400)
        try:
            email_otp.disable(
                request.user, form.cleaned_data["password"], proof=session_proof(request), request=request  # type: ignore[arg-type]
            )
        except EphemeralAuthError as exc:
            return self.error_response(request, exc, self.template_name, context)
        remark_session(request)
        _flash(request, _("Sign-in codes by email are off."))
        return HttpResponseRedirect(reverse(self.success_url_name))


def _view(cls: type[View]) -> Any:
    # Rate-limit events must commit on their own, even with ATOMIC_REQUESTS.
    return transaction.non_atomic_requests(cls.as_view())


urlpatterns = [
    path("2fa/", _view(OverviewView), name="two_factor_overview"),
    path("2fa/verify/", _view(VerifyView), name="two_factor_verify"),
    path("2fa/totp/setup/", _view(TotpSetupView), name="two_factor_setup"),
    path("2fa/totp/disable/", _view(TotpDisableView), name="two_factor_totp_disable"),
    path("2fa/recovery-codes/", _view(RecoveryCodesView), name="two_factor_recovery_codes"),
    path("2fa/email/enable/", _view(EmailEnableView), name="two_factor_email_enable"),
    path("2fa/email/confirm/", _view(EmailConfirmView), name="two_factor_email_confirm"),
    path("2fa/email/disable/", _view(EmailDisableView), name="two_factor_email_disable"),
]
