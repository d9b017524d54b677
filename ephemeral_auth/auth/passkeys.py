"""Passwordless sign-in with a passkey (``EPHEMERAL_AUTH_PASSKEY_LOGIN``): the options, and the login.

A passkey used with user verification is multi-factor on its own (something
the user has, unlocked by something they know or are), so the session is
logged in *and* marked as 2FA-verified, as ``begin_login`` does for an
identity provider that asserted multi-factor authentication
(docs/security.md, "Passkey sign-in").

Security reasoning:

* **Bounded per address.** Every ``passkey/options/`` call records a
  ``passkey_options`` event for the client address first (one conditional
  INSERT, then its recount, like ``oidc_authorize``); each answer needs a
  challenge of its own, consumed by the answer whatever its outcome, so the
  attempts of one address are bounded by that bucket.
* **Failures counted, nobody locked out.** A refused answer is also counted
  in the lock model's buckets of its address (``login_ip``) and, when the
  credential named an account, of that account *from that address*
  (``login_user_ip``): never the account's ceiling, so failures elsewhere
  cannot lock the owner out; a full bucket answers 429.
* The challenge is consumed (autocommit) before the signature is checked:
  a replayed answer finds nothing. The login itself (``login()``, the
  session) is one transaction (``login._login_unit``): if it fails nobody is
  logged in and the user starts again.
* An inactive user is refused like a wrong answer (the core checks it).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.contrib.auth import login as django_login

from .. import clock, conf
from ..client_ip import client_ip
from ..exceptions import InvalidCode, InvalidInput, MethodNotEnabled
from ..models import EphemeralToken, EventType, UserTwoFactor, WebAuthnCredential
from ..services import lockout, ratelimit, webauthn
from ..services.factors import state_from_row, user_email
from ..services.webauthn_credentials import credential_key
from ..services.webauthn_data import parse_authentication
from ..signals import two_factor_verified
from .login import _backend_for, _login_unit
from .session import mark_session

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

__all__ = ["passkey_login", "passkey_options"]

logger = logging.getLogger("ephemeral_auth.login")


def _enabled() -> None:
    if not conf.get("PASSKEY_LOGIN") or not conf.get("WEBAUTHN_RP_ID"):
        raise MethodNotEnabled()


def passkey_options(request: HttpRequest, *, browser_challenge: str, now: datetime | None = None) -> dict[str, Any]:
    """Start a passkey sign-in for this browser; return PublicKeyCredentialRequestOptionsJSON.

    Three statements: the address's ``passkey_options`` INSERT and recount
    (RateLimited when full), the challenge's INSERT.
    """
    _enabled()
    now = now or clock.now()
    ratelimit.attempt(EventType.PASSKEY_OPTIONS, ratelimit.ip_key(client_ip(request)), now=now)
    return webauthn.begin_authentication(None, browser_challenge=browser_challenge, purpose=webauthn.PASSKEY, now=now)


def _count_failure(request: HttpRequest, user_pk: Any, *, now: datetime) -> None:
    ip = ratelimit.ip_key(client_ip(request))
    buckets = [(EventType.LOGIN_IP.value, ip)]
    if user_pk is not None:
        buckets.append((EventType.LOGIN_USER_IP.value, lockout.pair_key(lockout.account_key(user_pk), ip)))
    ratelimit.attempt_many(buckets, now=now)  # RateLimited (recording nothing) when a bucket is full


def _owner_of(response: Any) -> Any:
    """The account the answer's credential belongs to, for counting a failure (None if unknown)."""
    try:
        parsed = parse_authentication(response)
    except InvalidInput:
        return None
    key = credential_key(parsed.credential_id)
    return WebAuthnCredential.objects.filter(credential_key=key).values_list("user_id", flat=True).first()


def passkey_login(
    request: HttpRequest, response: Any, *, browser_challenge: str, now: datetime | None = None
) -> AbstractBaseUser:
    """Verify a passkey answer (user verification required) and log its user in, 2FA-verified.

    Seven statements on success with database sessions: the challenge's
    DELETE, the credential's SELECT (with its user and 2FA row), the counter's
    UPDATE; ``login()``'s session SELECT and INSERT, ``last_login``, and the
    session's save. Raises MethodNotEnabled (setting off), InvalidInput
    (malformed answer), InvalidToken (no such challenge for this browser),
    InvalidCode (does not verify, inactive user; CredentialCloned is one),
    RateLimited (the failure filled a bucket).
    """
    _enabled()
    now = now or clock.now()
    try:
        user, _credential = webauthn.complete_authentication(
            response, browser_challenge=browser_challenge, purpose=webauthn.PASSKEY, now=now
        )
    except InvalidCode:
        _count_failure(request, _owner_of(response), now=now)
        raise
    try:
        row = user.two_factor  # type: ignore[attr-defined]
    except UserTwoFactor.DoesNotExist:
        row = None
    state = state_from_row(user.pk, row, has_recovery_codes=False, has_email=bool(user_email(user)), has_webauthn=True)
    with _login_unit(request, EphemeralToken, get_user_model()) as unit:
        unit.logging_in = True
        django_login(request, user, backend=_backend_for(user))  # type: ignore[arg-type]
    mark_session(request, user, state, verified=True, now=now)
    two_factor_verified.send(sender=UserTwoFactor, user=user, method="webauthn", request=request)
    logger.info("passkey sign-in of user #%s", user.pk)
    return user
