"""JSON two-factor endpoints: verify a pending login, and manage one's own second factors.

See docs/two-factor.md ("HTTP API") for bodies, answers and error codes.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils.translation import gettext

from .. import clock, conf
from ..auth import login as login_service
from ..backends import REFUSAL_ATTRIBUTE
from ..exceptions import InvalidCredentials, InvalidInput, MethodNotEnabled, RateLimited
from ..http import best_effort
from ..services import email_otp, recovery, totp, two_factor
from .api_webauthn import read_credential
from .json import api_view, optional_text, parse_json, required_text
from .responses import (
    clear_login_cookies,
    read_challenge,
    remark_session,
    save_proof,
    session_proof,
    user_payload,
)

__all__ = [
    "email_confirm",
    "email_disable",
    "email_enable",
    "email_send",
    "reauthenticate",
    "recovery_codes",
    "status",
    "totp_confirm",
    "totp_disable",
    "totp_setup",
    "urlpatterns",
    "verify",
]

logger = logging.getLogger("ephemeral_auth.api")

CODE = login_service.MAX_CODE_LENGTH
TOKEN = login_service.MAX_TOKEN_LENGTH
PASSWORD = login_service.MAX_PASSWORD_LENGTH


@api_view(("POST",))
def verify(request: HttpRequest) -> HttpResponse:
    """Complete a pending login with a TOTP, emailed or recovery code.

    With a recovery code the answer also carries ``recovery_codes_remaining``.
    """
    data = parse_json(request)
    raw = required_text(data, "pre_auth_token", max_length=TOKEN)
    method = required_text(data, "method", max_length=16)
    code: Any
    if method == "webauthn":
        # The security key's answer (AuthenticationResponseJSON), as "credential" or as "code".
        code = read_credential(data, "credential" if "credential" in data else "code")
    else:
        code = required_text(data, "code", max_length=CODE)
    user = login_service.verify_login(
        request, pre_auth_token=raw, challenge=read_challenge(request), method=method, code=code
    )
    answer: dict[str, Any] = {"status": "authenticated", "user": user_payload(user, request)}
    if method == "recovery":
        # The code is used up: say how many are left (one SELECT, only for this method), so
        # the client can warn when few remain. The login completed: a failed count only omits it.
        with best_effort(logger, "count the recovery codes left"):
            answer["recovery_codes_remaining"] = recovery.remaining(user)
    response = JsonResponse(answer)
    clear_login_cookies(response, request)
    return response


@api_view(("POST",))
def email_send(request: HttpRequest) -> HttpResponse:
    """Email a code for a pending login."""
    data = parse_json(request)
    raw = required_text(data, "pre_auth_token", max_length=TOKEN)
    login_service.send_login_email(request, pre_auth_token=raw, challenge=read_challenge(request))
    return JsonResponse({"status": "sent"})


@api_view(("GET",), login_required=True)
def status(request: HttpRequest) -> HttpResponse:
    """Describe the user's second factors."""
    return JsonResponse(two_factor.status(request.user))  # type: ignore[arg-type]


@api_view(("POST",), login_required=True)
def totp_setup(request: HttpRequest) -> HttpResponse:
    """Start enrolling an authenticator; replacing an active one needs ``code``.

    Needs a fresh proof: with 2FA off, ``password`` when the sign-in is older
    than ``REAUTHENTICATION_WINDOW``.
    """
    data = parse_json(request)
    code = optional_text(data, "code", max_length=CODE)
    password = optional_text(data, "password", max_length=PASSWORD)
    proof = session_proof(request)
    setup = totp.setup(request.user, proof=proof, code=code or None, password=password, request=request)  # type: ignore[arg-type]
    save_proof(request, proof)
    return JsonResponse(
        {"secret": setup.secret, "provisioning_uri": setup.provisioning_uri, "qr_svg": setup.qr_svg}
    )


@api_view(("POST",), login_required=True)
def totp_confirm(request: HttpRequest) -> HttpResponse:
    """Confirm the new authenticator with one of its codes; answer the recovery codes (shown once)."""
    data = parse_json(request)
    code = required_text(data, "code", max_length=CODE)
    password = optional_text(data, "password", max_length=PASSWORD)
    proof = session_proof(request)
    codes = totp.confirm(request.user, code, proof=proof, password=password, request=request)  # type: ignore[arg-type]
    save_proof(request, proof)
    remark_session(request, verified=True)
    return JsonResponse({"recovery_codes": codes})


@api_view(("POST",), login_required=True)
def totp_disable(request: HttpRequest) -> HttpResponse:
    """Remove the authenticator (needs a current TOTP or recovery code)."""
    data = parse_json(request)
    code = required_text(data, "code", max_length=CODE)
    totp.disable(request.user, code, proof=session_proof(request), request=request)  # type: ignore[arg-type]
    remark_session(request)
    return JsonResponse({"status": "ok"})


@api_view(("POST",), login_required=True)
def recovery_codes(request: HttpRequest) -> HttpResponse:
    """Replace the recovery codes (needs a current TOTP or recovery code)."""
    data = parse_json(request)
    code = required_text(data, "code", max_length=CODE)
    codes = recovery.regenerate(request.user, code, proof=session_proof(request), request=request)  # type: ignore[arg-type]
    remark_session(request)
    return JsonResponse({"recovery_codes": codes})


@api_view(("POST",), login_required=True)
def email_enable(request: HttpRequest) -> HttpResponse:
    """Email a confirmation code; answer the setup token for ``email/confirm/``."""
    data = parse_json(request)
    password = optional_text(data, "password", max_length=PASSWORD)
    proof = session_proof(request)
    issued = email_otp.enable(request.user, proof=proof, password=password, request=request)  # type: ignore[arg-type]
    save_proof(request, proof)
    return JsonResponse({"setup_token": issued.raw, "expires_in": issued.expires_in})


@api_view(("POST",), login_required=True)
def email_confirm(request: HttpRequest) -> HttpResponse:
    """Turn email codes on with the setup token and the emailed code."""
    data = parse_json(request)
    setup_token = required_text(data, "setup_token", max_length=TOKEN)
    code = required_text(data, "code", max_length=CODE)
    password = optional_text(data, "password", max_length=PASSWORD)
    proof = session_proof(request)
    codes = email_otp.confirm(
        request.user, setup_token, code, proof=proof, password=password, request=request  # type: ignore[arg-type]
    )
    save_proof(request, proof)
    remark_session(request, verified=True)
    body: dict[str, object] = {"status": "ok"}
    if codes:
        body["recovery_codes"] = codes
    return JsonResponse(body)


@api_view(("POST",), login_required=True)
def email_disable(request: HttpRequest) -> HttpResponse:
    """Turn email codes off (needs the password)."""
    data = parse_json(request)
    password = optional_text(data, "password", max_length=email_otp.MAX_PASSWORD_LENGTH)
    email_otp.disable(request.user, password, proof=session_proof(request), request=request)  # type: ignore[arg-type]
    remark_session(request)
    return JsonResponse({"status": "ok"})


# Reauthentication (docs/two-factor.md, "Reauthentication for your own views").


def _check_password(request: HttpRequest, user: Any, password: str) -> None:
    """Check ``user``'s password through ``authenticate()``, so GuardBackend counts the attempt."""
    found = authenticate(request, username=user.get_username(), password=password)
    if found is None or found.pk != user.pk:
        refusal = getattr(request, REFUSAL_ATTRIBUTE, None)
        if isinstance(refusal, RateLimited):
            raise refusal
        raise InvalidCredentials(gettext("The password is incorrect."))


def _check_code(request: HttpRequest, user: Any, method: str, code: str) -> None:
    """Check a TOTP or recovery code against the user's 2FA budget; a right code is used up, as at login."""
    if method not in two_factor.METHODS:
        raise InvalidInput(gettext("method must be one of: totp, webauthn, email, recovery."), field="method")
    state = two_factor.load_state(user)
    if method in ("email", "webauthn") or method not in state.methods(user):
        # Email codes are not accepted for reauthentication (yet): nothing sends one; nor is a
        # security key (its assertion needs a ceremony of its own).
        raise MethodNotEnabled()
    two_factor.check_user_code(
        user, code, allow_totp=method == "totp", allow_recovery=method == "recovery", request=request, state=state
    )


@api_view(("POST",), login_required=True)
def reauthenticate(request: HttpRequest) -> HttpResponse:
    """Confirm it is still the user: ``password``, or ``method`` (totp, recovery) and ``code``.

    Stamps the session's sign-in time (what ``require_fresh_proof`` and
    ``decorators.reauthentication_required`` read); answers how long it counts.
    """
    data = parse_json(request)
    method = optional_text(data, "method", max_length=16)
    user = request.user
    if method:
        code = required_text(data, "code", max_length=CODE)
        _check_code(request, user, method, code)
    else:
        password = required_text(data, "password", max_length=PASSWORD)
        _check_password(request, user, password)
    proof = two_factor.Proof(renewed_at=int(clock.now().timestamp()))
    save_proof(request, proof)
    return JsonResponse({"status": "ok", "valid_for": int(conf.get("REAUTHENTICATION_WINDOW") or 0)})


urlpatterns = [
    path("2fa/", status, name="two_factor_status"),
    path("2fa/verify/", verify, name="two_factor_verify"),
    path("2fa/email/send/", email_send, name="two_factor_email_send"),
    path("2fa/totp/setup/", totp_setup, name="totp_setup"),
    path("2fa/totp/confirm/", totp_confirm, name="totp_confirm"),
    path("2fa/totp/disable/", totp_disable, name="totp_disable"),
    path("2fa/recovery-codes/", recovery_codes, name="recovery_codes"),
    path("2fa/email/enable/", email_enable, name="email_enable"),
    path("2fa/email/confirm/", email_confirm, name="email_confirm"),
    path("2fa/email/disable/", email_disable, name="email_disable"),
    path("reauthenticate/", reauthenticate, name="reauthenticate"),
]
