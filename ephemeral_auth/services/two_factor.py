"""A user's second factors as a whole: status, the admin's reset, and email-only 2FA failing closed.

This module sits *above* the factor modules (``totp``, ``email_otp``,
``recovery``); none of them imports it. The pieces it held in 0.1 moved
down or up, and the old names keep working:

* which second factors a user has (``TwoFactorState``, ``load_state``,
  ``fingerprint``, ``METHODS``): :mod:`ephemeral_auth.services.factors`, the
  ONE definition (recovery codes alone are no second factor);
* the failure budget (``count_attempt``, ``note_failure``,
  ``forgive_failures``): :mod:`ephemeral_auth.services.budget`;
* fresh proof and the management code check (``Proof``,
  ``require_fresh_proof``, ``recently_authenticated``, ``note_change``,
  ``check_user_code``): :mod:`ephemeral_auth.services.proof`;
  all re-exported here;
* the session's mark (``SESSION_KEY``, ``AUTHENTICATED_AT_KEY``,
  ``session_mark``, ``mark_session``, ``session_proof``) reads and writes a
  request's session: it moved up to :mod:`ephemeral_auth.auth.session`; the
  old names here warn (DeprecationWarning) until 0.3.

Security reasoning:

* Which methods a login may use is computed once, at the password step, from
  the user's enrolments (:func:`TwoFactorState.methods`) and stored on the
  ``pre_auth`` token; verification accepts only those (fixing a weakness of the original application: no
  downgrade from TOTP to a mailbox).
* Email codes without an address to send them to fail *closed*: the user
  still has 2FA (the middleware hides unverified sessions, the login step
  refuses with ``two_factor_unavailable`` unless recovery codes are left).
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import router
from django.utils.translation import gettext

from ..models import RecoveryCode, TokenType, UserTwoFactor, WebAuthnCredential
from ..signals import authenticator_removed, send_on_commit
from . import recovery, tokens
from .budget import count_attempt, forgive_failures, note_failure, two_factor_key
from .factors import (
    METHODS,
    NO_TWO_FACTOR_FINGERPRINT,
    TwoFactorState,
    empty_state,
    enrolled_methods,
    fingerprint,
    load_state,
    state_from_row,
    user_email,
    webauthn_flag,
    with_recovery_flag,
)
from .proof import Proof, check_user_code, note_change, recently_authenticated, require_fresh_proof

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "METHODS",
    "NO_TWO_FACTOR_FINGERPRINT",
    "EmailRequiredForTwoFactor",
    "Proof",
    "TwoFactorState",
    "check_email_change",
    "check_user_code",
    "count_attempt",
    "email_removal_refused",
    "empty_state",
    "fingerprint",
    "forgive_failures",
    "load_state",
    "note_change",
    "note_failure",
    "recently_authenticated",
    "require_fresh_proof",
    "reset_two_factor",
    "state_from_row",
    "status",
    "two_factor_key",
    "user_email",
    "with_recovery_flag",
]

logger = logging.getLogger("ephemeral_auth.two_factor")

# Names that moved up to ephemeral_auth.auth.session (they read or write a request's session).
MOVED_TO_AUTH_SESSION = frozenset(
    {"AUTHENTICATED_AT_KEY", "SESSION_KEY", "mark_session", "session_mark", "session_proof"}
)


def __getattr__(name: str) -> Any:
    if name not in MOVED_TO_AUTH_SESSION:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ..auth import session

    warnings.warn(
        f"ephemeral_auth.services.two_factor.{name} moved to ephemeral_auth.auth.session.{name}; "
        "the old name goes in 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(session, name)


# The admin's reset.


def reset_two_factor(user: AbstractBaseUser) -> None:
    """Remove every second factor of ``user`` and revoke their pending 2FA tokens.

    Deletes the TOTP secret (active and pending), the email-code flag, the
    WebAuthn credentials and the recovery codes, and revokes outstanding
    ``pre_auth``, ``email_otp_setup`` and WebAuthn challenge tokens, so a half-finished login or enrolment cannot
    complete against the old configuration. Like any change of the
    configuration it ends the user's sessions (their fingerprint no longer
    matches: the middleware logs them out at its next check).

    Sends ``authenticator_removed`` (``request`` None) once committed, for
    each method the user had; finding them out costs one SELECT, spent only
    when the signal has receivers.
    """
    removed = _enrolled_methods(user)
    UserTwoFactor.objects.filter(pk=user.pk).delete()
    for method in removed:
        send_on_commit(
            authenticator_removed, sender=UserTwoFactor, using=router.db_for_write(UserTwoFactor),
            user=user, method=method, request=None,
        )
    WebAuthnCredential.objects.filter(user_id=user.pk).delete()
    RecoveryCode.objects.filter(user_id=user.pk).delete()
    tokens.revoke_tokens(
        user=user,
        token_types=[
            TokenType.PRE_AUTH, TokenType.EMAIL_OTP_SETUP, TokenType.WEBAUTHN_REGISTER, TokenType.WEBAUTHN_LOGIN,
            TokenType.PASSKEY_LOGIN,
        ],
    )
    logger.info("two-factor authentication reset for user #%s", user.pk)


def _enrolled_methods(user: AbstractBaseUser) -> list[str]:
    """Return the methods ``user`` has enrolled, for ``authenticator_removed``: no query without receivers.

    Read from the database, never from a row cached on ``user`` (it may be stale).
    """
    if not authenticator_removed.has_listeners(UserTwoFactor):
        return []
    row = (
        UserTwoFactor.objects.filter(pk=user.pk)
        .annotate(has_webauthn=webauthn_flag())
        .only("totp_secret", "totp_confirmed_at", "email_enabled")
        .first()
    )
    if row is None:
        return []
    return enrolled_methods(
        totp=row.totp_enabled, email=row.email_enabled, webauthn=bool(getattr(row, "has_webauthn", False))
    )


def status(user: AbstractBaseUser) -> dict[str, Any]:
    """Return what the user has enrolled: ``{"totp", "email", "webauthn", "recovery_codes_remaining", ...}``.

    ``webauthn`` is the number of security keys and passkeys.
    """
    state = load_state(user)
    return {
        "totp": state.totp,
        "email": state.email,
        "email_usable": state.email and state.email_usable,
        "webauthn": WebAuthnCredential.objects.filter(user_id=user.pk).count() if state.webauthn else 0,
        "recovery_codes_remaining": recovery.remaining(user),
        "totp_pending": bool(state.row is not None and state.row.totp_pending_secret),
    }


# Email-only 2FA fails closed.


class EmailRequiredForTwoFactor(ValidationError):
    """The address is the user's only second factor: it cannot be removed (forms show it on the field)."""

    def __init__(self) -> None:
        super().__init__(
            gettext(
                "This address receives the sign-in codes of the account's only second factor. Set up an "
                "authenticator app first, or turn sign-in codes by email off."
            ),
            code="two_factor_email_required",
        )


def email_removal_refused(user: AbstractBaseUser | Any, new_address: Any) -> bool:
    """Return whether setting ``new_address`` would leave the user's email-only 2FA without an address.

    One SELECT, only when the new address is empty.
    """
    if isinstance(new_address, str) and new_address.strip():
        return False
    pk: Any = getattr(user, "pk", user)
    row = (
        UserTwoFactor.objects.filter(pk=pk, email_enabled=True)
        .annotate(has_webauthn=webauthn_flag())
        .values_list("totp_secret", "totp_confirmed_at", "has_webauthn")
        .first()
    )
    if row is None:
        return False
    totp_on = bool(row[0]) and row[1] is not None  # UserTwoFactor.totp_enabled, read without the row
    return enrolled_methods(totp=totp_on, email=True, webauthn=bool(row[2])) == ["email"]


def check_email_change(instance: Any, *, using: str | None = None, update_fields: Any = None) -> None:
    """Raise EmailRequiredForTwoFactor if saving ``instance`` empties the address its only factor needs.

    For the user model's ``pre_save``. Free unless the address being saved is
    empty; a user whose address is empty already (it vanished some other
    way) can still be saved: their login fails closed instead.
    """
    field = instance.get_email_field_name() if hasattr(instance, "get_email_field_name") else "email"
    if update_fields is not None and field not in update_fields:
        return
    if field not in instance.__dict__:
        return  # deferred: this save cannot change it
    new = getattr(instance, field, "") or ""
    if isinstance(new, str) and new.strip():
        return
    stored = type(instance)._base_manager.using(using).filter(pk=instance.pk).values_list(field, flat=True).first()
    if not stored:
        return
    if email_removal_refused(instance, new):
        raise EmailRequiredForTwoFactor()
