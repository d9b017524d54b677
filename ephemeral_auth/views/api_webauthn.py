"""JSON WebAuthn endpoints: the security-key login step, managing one's keys, passkey sign-in.

See docs/http-api.md ("WebAuthn") for bodies, answers and error codes. The
same views serve the HTML pages' script (``static/ephemeral_auth/webauthn.js``):
``urls.py`` mounts them beside the pages, and where a pending login's token
is not in the body it is read from the HTML flow's HttpOnly cookie.

Each ceremony is bound to the browser: the login step to the pending
login's challenge cookie, a registration and a passkey sign-in to the
WebAuthn cookie (``http.webauthn_cookie_name``), a fresh random value set
by the options endpoint, read by the completion and deleted after.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from django.utils.translation import gettext

from .. import conf, crypto
from ..auth import login as login_service
from ..auth import passkeys
from ..exceptions import InvalidInput, MethodNotEnabled
from ..http import webauthn_cookie_name
from ..models import TokenType
from ..services import webauthn, webauthn_factor
from ..services.webauthn_data import MAX_RESPONSE_CHARS
from .json import api_view, optional_text, parse_json, required_text
from .responses import (
    clear_login_cookies,
    read_challenge,
    read_pending_token,
    remark_session,
    save_proof,
    session_proof,
    user_payload,
)

__all__ = [
    "credentials",
    "login_options",
    "login_verify",
    "passkey_login",
    "passkey_options",
    "register",
    "register_options",
    "remove",
    "rename",
    "urlpatterns",
]

TOKEN = login_service.MAX_TOKEN_LENGTH
PASSWORD = login_service.MAX_PASSWORD_LENGTH


def _configured() -> None:
    """WebAuthn without a relying party id is not enabled (``ephemeral_auth.W015`` says so at startup)."""
    if not conf.get("WEBAUTHN_RP_ID"):
        raise MethodNotEnabled()


def read_credential(data: dict[str, Any], name: str = "credential") -> Any:
    """The browser's answer: a JSON object, or its text; InvalidInput if absent or too large."""
    value = data.get(name)
    if isinstance(value, str) and 0 < len(value) <= MAX_RESPONSE_CHARS:
        return value
    if isinstance(value, dict):
        return value
    raise InvalidInput(gettext("The security key's answer is malformed."), field=name)


def _pre_auth(request: HttpRequest, data: dict[str, Any]) -> str:
    if data.get("pre_auth_token") not in (None, ""):
        return required_text(data, "pre_auth_token", max_length=TOKEN)
    return read_pending_token(request)


def _ceremony_cookie(request: HttpRequest) -> str:
    return request.COOKIES.get(webauthn_cookie_name(request), "")


def _set_cookie(response: HttpResponse, request: HttpRequest, value: str, token_type: str) -> None:
    """Set the ceremony's browser challenge (HttpOnly, SameSite=Lax, as long as its challenge lives)."""
    response.set_cookie(
        webauthn_cookie_name(request), value, max_age=int(conf.token_ttl(token_type).total_seconds()), path="/",
        secure=request.is_secure(), httponly=True, samesite="Lax",
    )


def _clear_cookie(response: HttpResponse, request: HttpRequest) -> None:
    name = webauthn_cookie_name(request)
    if name in request.COOKIES:
        response.delete_cookie(name, path="/", samesite="Lax")


# The login's second step.


@api_view(("POST",))
def login_options(request: HttpRequest) -> HttpResponse:
    """Request options for the pending login's security key (bound to its challenge cookie)."""
    _configured()
    data = parse_json(request)
    pending = login_service.peek_pending(_pre_auth(request, data), challenge=read_challenge(request))
    return JsonResponse({"publicKey": webauthn_factor.begin_login(pending)})


@api_view(("POST",))
def login_verify(request: HttpRequest) -> HttpResponse:
    """Complete the pending login with the security key's answer (as ``2fa/verify/`` with method "webauthn")."""
    _configured()
    data = parse_json(request)
    raw = _pre_auth(request, data)
    answer = read_credential(data)
    user = login_service.verify_login(
        request, pre_auth_token=raw, challenge=read_challenge(request), method="webauthn", code=answer
    )
    response = JsonResponse({"status": "authenticated", "user": user_payload(user, request)})
    clear_login_cookies(response, request)
    return response


# Managing one's keys.


@api_view(("GET",), login_required=True)
def credentials(request: HttpRequest) -> HttpResponse:
    """List the user's security keys and passkeys."""
    rows = webauthn.list_credentials(request.user)  # type: ignore[arg-type]
    return JsonResponse({"credentials": [webauthn_factor.describe(row) for row in rows]})


@api_view(("POST",), login_required=True)
def register_options(request: HttpRequest) -> HttpResponse:
    """Creation options for a new key (``passkey``: a discoverable credential); needs a fresh proof."""
    _configured()
    data = parse_json(request)
    passkey = data.get("passkey", False)
    if not isinstance(passkey, bool):
        raise InvalidInput(gettext("passkey must be true or false."), field="passkey")
    password = optional_text(data, "password", max_length=PASSWORD)
    proof = session_proof(request)
    value = crypto.new_token()
    options = webauthn_factor.begin_registration(
        request.user, proof=proof, browser_challenge=value, passkey=passkey, password=password,  # type: ignore[arg-type]
        request=request,
    )
    save_proof(request, proof)
    response = JsonResponse({"publicKey": options})
    _set_cookie(response, request, value, TokenType.WEBAUTHN_REGISTER)
    return response


@api_view(("POST",), login_required=True)
def register(request: HttpRequest) -> HttpResponse:
    """Register the key's answer under ``name``; answer it (and recovery codes for a first factor)."""
    _configured()
    data = parse_json(request)
    answer = read_credential(data)
    name = required_text(data, "name", max_length=256)
    password = optional_text(data, "password", max_length=PASSWORD)
    proof = session_proof(request)
    done = webauthn_factor.complete_registration(
        request.user, answer, proof=proof, browser_challenge=_ceremony_cookie(request), name=name,  # type: ignore[arg-type]
        password=password, request=request,
    )
    save_proof(request, proof)
    remark_session(request, verified=True)
    body: dict[str, Any] = {"credential": webauthn_factor.describe(done.credential)}
    if done.recovery_codes:
        body["recovery_codes"] = done.recovery_codes
    response = JsonResponse(body)
    _clear_cookie(response, request)
    return response


def _credential_id(data: dict[str, Any]) -> int:
    value = data.get("id")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise InvalidInput(gettext("id must be the id of one of your security keys."), field="id")
    return value


@api_view(("POST",), login_required=True)
def rename(request: HttpRequest) -> HttpResponse:
    """Rename one of the user's keys (``id``, ``name``); needs a fresh proof."""
    data = parse_json(request)
    pk = _credential_id(data)
    name = required_text(data, "name", max_length=256)
    webauthn_factor.rename(request.user, pk, name=name, proof=session_proof(request), request=request)  # type: ignore[arg-type]
    return JsonResponse({"status": "ok"})


@api_view(("POST",), login_required=True)
def remove(request: HttpRequest) -> HttpResponse:
    """Remove one of the user's keys (``id``); needs a fresh proof."""
    data = parse_json(request)
    pk = _credential_id(data)
    webauthn_factor.remove(request.user, pk, proof=session_proof(request), request=request)  # type: ignore[arg-type]
    remark_session(request)
    return JsonResponse({"status": "ok"})


# Passkey sign-in (EPHEMERAL_AUTH_PASSKEY_LOGIN).


@api_view(("POST",))
def passkey_options(request: HttpRequest) -> HttpResponse:
    """Request options for a passwordless sign-in (any discoverable credential; user verification required)."""
    parse_json(request)
    value = crypto.new_token()
    options = passkeys.passkey_options(request, browser_challenge=value)
    response = JsonResponse({"publicKey": options})
    _set_cookie(response, request, value, TokenType.PASSKEY_LOGIN)
    return response


@api_view(("POST",))
def passkey_login(request: HttpRequest) -> HttpResponse:
    """Sign in with the passkey's answer: logged in and 2FA-verified."""
    data = parse_json(request)
    if not conf.get("PASSKEY_LOGIN"):
        raise MethodNotEnabled()
    answer = read_credential(data)
    user = passkeys.passkey_login(request, answer, browser_challenge=_ceremony_cookie(request))
    response = JsonResponse({"status": "authenticated", "user": user_payload(user, request)})
    _clear_cookie(response, request)
    clear_login_cookies(response, request)
    return response


def patterns(prefix: str = "") -> list[Any]:
    """The URL patterns, named ``<prefix>webauthn_*`` / ``<prefix>passkey_*``."""
    return [
        path("2fa/webauthn/", credentials, name=f"{prefix}webauthn_credentials"),
        path("2fa/webauthn/options/", login_options, name=f"{prefix}webauthn_login_options"),
        path("2fa/webauthn/verify/", login_verify, name=f"{prefix}webauthn_login_verify"),
        path("2fa/webauthn/register/options/", register_options, name=f"{prefix}webauthn_register_options"),
        path("2fa/webauthn/register/", register, name=f"{prefix}webauthn_register"),
        path("2fa/webauthn/rename/", rename, name=f"{prefix}webauthn_rename"),
        path("2fa/webauthn/remove/", remove, name=f"{prefix}webauthn_remove"),
        path("passkey/options/", passkey_options, name=f"{prefix}passkey_options"),
        path("passkey/login/", passkey_login, name=f"{prefix}passkey_login"),
    ]


urlpatterns = patterns()
