"""Codes sent by email: at login (a second factor) and to enrol the address.

Security reasoning:

* A login code is 6 random digits. Only its keyed digest is stored, on the
  pending login's own ``pre_auth`` row and scoped to that row's digest, so a
  code is good for that login only. Verification consumes the row with the
  digest in the WHERE clause: single use, and a code replaced by a newer
  email no longer matches.
* ``EMAIL_CODE_MAX_ATTEMPTS`` wrong codes burn the code's login
  (``tokens.register_wrong_code`` is one conditional UPDATE, so parallel
  guesses cannot exceed the budget), on top of the user's 2FA budget.
* A code lives as long as its pending login: the login's expiry is brought
  forward to ``EMAIL_CODE_TTL`` after the send when that is sooner.
* Sends are limited per user (``email_send``), recorded *first*: the send is
  counted (a conditional INSERT, confirmed by a recount) before the code is
  made and mailed, so of any burst of parallel sends at most the limit go
  out. A send the mail server refuses withdraws its row, so a failing mail
  server does not eat the user's budget.
* Email codes are accepted only for users who enabled them and have an
  address (fixing a weakness of the original application).

One module, one interface: ``normalize``, ``check_login_code``,
``login_binding`` and ``accept_user_code`` make it a
``services.factors.Factor`` (registered as "email" by the wiring). No HTTP:
``request`` arguments are only handed on, untouched, to signal receivers and
to the email templates' context (``request``).
"""

from __future__ import annotations

import hmac
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import router
from django.utils.translation import gettext

from .. import clock, conf, crypto
from ..exceptions import (
    InvalidCode,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
    MethodNotEnabled,
    NotEnrolled,
    ServiceUnavailable,
)
from ..models import EventType, TokenType, UserTwoFactor
from ..signals import authenticator_added, authenticator_removed, send_on_commit
from . import mail, ratelimit, recovery, tokens
from .budget import count_attempt, forgive_failures, note_failure, two_factor_key
from .factors import clean_code, user_email
from .inputs import clean_text, is_plain_text
from .proof import Proof, require_fresh_proof

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from .factors import PendingLogin, TwoFactorState
    from .tokens import IssuedToken

__all__ = [
    "CODE_LENGTH",
    "accept_user_code",
    "check_login_code",
    "confirm",
    "disable",
    "enable",
    "login_binding",
    "login_code_hash",
    "normalize",
    "send_login_code",
]

logger = logging.getLogger("ephemeral_auth.email_otp")

_TEMPLATES = mail.MailTemplates(
    subject="ephemeral_auth/emails/two_factor_code_subject.txt",
    text="ephemeral_auth/emails/two_factor_code.txt",
    html="ephemeral_auth/emails/two_factor_code.html",
)

CODE_LENGTH = 6
MAX_PASSWORD_LENGTH = 4096


def normalize(code: Any) -> str | None:
    """Return the code as 6 ASCII digits, or None."""
    if not isinstance(code, str):
        return None
    cleaned = code.strip().replace(" ", "").replace("-", "")
    if len(cleaned) != CODE_LENGTH or not cleaned.isascii() or not cleaned.isdigit():
        return None
    return cleaned


def _login_digest(token_digest: str, code: str) -> str:
    return crypto.code_digest(code, scope=f"login:{token_digest}")


def _setup_digest(user: AbstractBaseUser, address: str, code: str) -> str:
    # Bound to the address: a code sent to the old address stops working if it changes.
    return crypto.code_digest(code, scope=f"email-setup:{user.pk}:{address.casefold()}")


def _send(user: AbstractBaseUser, address: str, code: str, *, purpose: str, request: Any) -> None:
    """Email ``code`` to ``address``; raise ServiceUnavailable if the backend fails.

    Templates (overridable): ephemeral_auth/emails/two_factor_code_subject.txt,
    two_factor_code.txt and optionally two_factor_code.html; context: user,
    code, purpose ("login" or "enrol"), minutes, request.
    """
    minutes = max(1, int(conf.get("EMAIL_CODE_TTL")) // 60)
    context = {"user": user, "code": code, "purpose": purpose, "minutes": minutes, "request": request}
    message = mail.render(_TEMPLATES, context, to=[address])
    try:
        message.send(fail_silently=False)
    except Exception:
        # Never log the message: it holds the code.
        logger.exception("could not send a %s code email to user #%s", purpose, user.pk)
        raise ServiceUnavailable(gettext("The email could not be sent. Please try again later.")) from None


def _record_send(user: AbstractBaseUser, *, now: datetime) -> list[int]:
    """Count one send against the user's budget before anything is sent; raise RateLimited.

    Returns the recorded rows, to :func:`ratelimit.withdraw` if the send fails.
    """
    return ratelimit.attempt_many([(EventType.EMAIL_SEND, two_factor_key(user))], now=now)


# At login.


def send_login_code(pending: PendingLogin, *, request: Any = None, now: datetime | None = None) -> None:
    """Email a fresh code for a pending login (replacing any earlier one).

    Raises MethodNotEnabled (the user did not enable email codes),
    NotEnrolled (no address), RateLimited (``email_send``), InvalidToken (the
    login ended meanwhile), ServiceUnavailable (the email backend failed).
    """
    now = now or clock.now()
    if "email" not in pending.methods:
        raise MethodNotEnabled()
    user = pending.user
    address = user_email(user)
    if not address:
        raise NotEnrolled(gettext("Your account has no email address."))
    recorded = _record_send(user, now=now)
    try:
        code = crypto.random_digits(CODE_LENGTH)
        if not tokens.set_code(pending.token, code_hash=_login_digest(pending.token.token, code)):
            raise InvalidToken()
        deadline = now + timedelta(seconds=int(conf.get("EMAIL_CODE_TTL")))
        if pending.token.expires_at > deadline:
            tokens.limit_expiry(pending.token, expires_at=deadline)
        _send(user, address, code, purpose="login", request=request)
    except (InvalidToken, ServiceUnavailable):
        # Nothing was sent: the send does not count.
        ratelimit.withdraw(recorded)
        raise
    logger.info("login code emailed to user #%s", user.pk)


def check_login_code(pending: PendingLogin, code: str, *, now: datetime, request: Any = None) -> None:
    """Check an emailed code of a pending login; raise InvalidCode. The attempt was counted already.

    A wrong code counts against the code; the last allowed wrong code burns
    the pending login. The caller consumes the login with ``code_hash``.
    """
    token = pending.token
    if not token.code_hash:
        raise InvalidCode()
    digest = _login_digest(token.token, code)
    if not hmac.compare_digest(digest, token.code_hash):
        tokens.register_wrong_code(token, max_attempts=int(conf.get("EMAIL_CODE_MAX_ATTEMPTS")))
        raise InvalidCode()
    forgive_failures(pending.user, now=now)


def login_code_hash(pending: PendingLogin, code: str) -> str:
    """Return the digest a verified code must still have on the row when consumed."""
    return _login_digest(pending.token.token, code)


def login_binding(pending: PendingLogin, code: str) -> dict[str, Any]:
    """The pending login is consumed only while it still holds this code's digest (a newer email replaces it)."""
    return {"code_hash": login_code_hash(pending, code)}


def accept_user_code(user: AbstractBaseUser, state: TwoFactorState, code: str, *, now: datetime) -> bool:
    """Never: nothing sends a logged-in user an email code to prove their presence (yet)."""
    return False


# Enrolment.


def enable(
    user: AbstractBaseUser, *, proof: Proof, password: Any = None, request: Any = None,
    now: datetime | None = None,
) -> IssuedToken:
    """Email a confirmation code to the user's address; return the setup token (raw goes to the client).

    Needs a fresh proof (``proof.require_fresh_proof``; ``password``
    serves it while 2FA is off). Raises ReauthenticationRequired, NotEnrolled
    (no address), RateLimited (``email_send``), ServiceUnavailable (the email
    backend failed; nothing is left behind).
    """
    now = now or clock.now()
    require_fresh_proof(user, proof, password=password, now=now, request=request)
    address = user_email(user)
    if not address:
        raise NotEnrolled(gettext("Add an email address to your account first."))
    recorded = _record_send(user, now=now)
    # One enrolment at a time: an earlier setup token stops working.
    tokens.revoke_tokens(user=user, token_type=TokenType.EMAIL_OTP_SETUP)
    code = crypto.random_digits(CODE_LENGTH)
    issued = tokens.issue_email_otp_setup(user, code_hash=_setup_digest(user, address, code), now=now)
    try:
        _send(user, address, code, purpose="enrol", request=request)
    except ServiceUnavailable:
        tokens.revoke_tokens(user=user, token_type=TokenType.EMAIL_OTP_SETUP)
        ratelimit.withdraw(recorded)
        raise
    return issued


def confirm(
    user: AbstractBaseUser, setup_token: Any, code: Any, *, proof: Proof, password: Any = None,
    now: datetime | None = None, request: Any = None,
) -> list[str]:
    """Turn email codes on with the setup token and the emailed code.

    Needs a fresh proof, like :func:`enable`; a change of the configuration
    (the user's other sessions end). Returns new recovery codes when the user
    had none (else an empty list). Raises ReauthenticationRequired,
    InvalidToken (unknown, expired, used, or another user's token),
    InvalidCode, RateLimited, InvalidInput.
    """
    clean_text(setup_token, field="setup_token", max_length=512)
    clean_code(code)
    now = now or clock.now()
    state = require_fresh_proof(user, proof, password=password, now=now, request=request)
    token = tokens.peek_token(setup_token, TokenType.EMAIL_OTP_SETUP, user=user, now=now)
    if token is None:
        raise InvalidToken()
    cleaned = normalize(code)
    if cleaned is None:
        raise InvalidCode()
    count_attempt(user, state, now=now)
    digest = _setup_digest(user, user_email(user), cleaned)
    if not hmac.compare_digest(digest, token.code_hash):
        tokens.register_wrong_code(token, max_attempts=int(conf.get("EMAIL_CODE_MAX_ATTEMPTS")))
        note_failure(user, state, now=now, request=request)
        raise InvalidCode()
    tokens.consume_token(setup_token, TokenType.EMAIL_OTP_SETUP, user=user, code_hash=digest, now=now)
    UserTwoFactor.objects.update_or_create(
        user_id=user.pk, defaults={"email_enabled": True, "email_confirmed_at": now, "changed_at": now}
    )
    send_on_commit(
        authenticator_added, sender=UserTwoFactor, using=router.db_for_write(UserTwoFactor),
        user=user, method="email", replaced=bool(state.email), request=request,
    )
    tokens.revoke_tokens(user=user, token_types=[TokenType.PRE_AUTH, TokenType.TRUSTED_BROWSER])
    logger.info("email codes enabled for user #%s", user.pk)
    if recovery.remaining(user):
        return []
    return recovery.generate(user, now=now, request=request, method="email")


def disable(
    user: AbstractBaseUser, password: Any, *, proof: Proof, now: datetime | None = None, request: Any = None
) -> None:
    """Turn email codes off after checking the password.

    Needs a session verified against the current configuration. Users
    without a usable password (signed up through OIDC) need only that. A
    change of the configuration (the user's other sessions end). Without any
    method left, the recovery codes go too. Raises ReauthenticationRequired,
    NotEnrolled, InvalidCredentials, RateLimited, InvalidInput.
    """
    if password is None:
        password = ""
    if not is_plain_text(password, max_length=MAX_PASSWORD_LENGTH):
        raise InvalidInput(gettext("password must be text."), field="password")
    now = now or clock.now()
    state = require_fresh_proof(user, proof, now=now, request=request)
    if not state.email:
        raise NotEnrolled()
    if user.has_usable_password():
        if not password:
            raise InvalidInput(gettext("This field is required: %(name)s.") % {"name": "password"}, field="password")
        count_attempt(user, state, now=now)
        if not user.check_password(password):
            note_failure(user, state, now=now, request=request)
            raise InvalidCredentials(gettext("The password is incorrect."))
    UserTwoFactor.objects.filter(pk=user.pk).update(
        email_enabled=False, email_confirmed_at=None, changed_at=now, updated_at=now
    )
    send_on_commit(
        authenticator_removed, sender=UserTwoFactor, using=router.db_for_write(UserTwoFactor),
        user=user, method="email", request=request,
    )
    if not state.totp:
        recovery.delete_all(user)
    tokens.revoke_tokens(
        user=user, token_types=[TokenType.PRE_AUTH, TokenType.EMAIL_OTP_SETUP, TokenType.TRUSTED_BROWSER]
    )
    logger.info("email codes disabled for user #%s", user.pk)
