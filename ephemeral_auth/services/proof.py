"""What a user shows before changing their second factors: a fresh proof, or a current code.

Security reasoning:

* A change of the configuration needs a *fresh proof*
  (:func:`require_fresh_proof`), judged on the configuration read from the
  database, never on the session's cached copy: a session verified against
  the current configuration, or, while 2FA is off, a sign-in or a password
  entered within ``REAUTHENTICATION_WINDOW`` seconds. The proof is a plain
  value (:class:`Proof`); reading it from a session is the web layer's job
  (``ephemeral_auth.auth.session.session_proof``).
* Replacing or removing a factor also needs a current code
  (:func:`check_user_code`: a TOTP code or a recovery code). It sits above
  the factor modules without importing them: it asks the factor registry
  (``factors.get``), which the wiring fills, so ``totp`` and ``recovery``
  can call it without an import cycle.

``request`` arguments here are only handed on to signal receivers, untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext

from .. import clock, conf
from ..exceptions import InvalidCode, InvalidCredentials, InvalidInput, ReauthenticationRequired
from ..models import UserTwoFactor
from . import factors, trusted_browsers
from .budget import count_attempt, note_failure
from .factors import TwoFactorState, load_state
from .inputs import is_plain_text

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = ["Proof", "check_user_code", "note_change", "recently_authenticated", "require_fresh_proof"]


@dataclass
class Proof:
    """What a session can show for a sensitive change, as plain values (see ``auth.session.session_proof``).

    ``renewed_at`` is set by :func:`require_fresh_proof` when it checked a
    password: the caller stores it as the session's new sign-in time.
    """

    user_id: str | None = None
    fingerprint: str | None = None
    verified: bool = False
    authenticated_at: int | None = None
    trusted: bool = False
    renewed_at: int | None = None

    @classmethod
    def trusted_caller(cls) -> Proof:
        """A proof for server-side code acting for the user by other means (a management command, a test)."""
        return cls(trusted=True)


def recently_authenticated(proof: Proof, *, now: datetime | None = None) -> bool:
    """Return whether ``proof`` shows a sign-in or reauthentication within ``REAUTHENTICATION_WINDOW``.

    The session path of :func:`require_fresh_proof` while 2FA is off, and the
    check of ``decorators.reauthentication_required``.
    """
    if proof.authenticated_at is None:
        return False
    window = int(conf.get("REAUTHENTICATION_WINDOW") or 0)
    stamp = int((now or clock.now()).timestamp())
    return 0 <= stamp - proof.authenticated_at <= window


def require_fresh_proof(
    user: AbstractBaseUser, proof: Proof, *, password: Any = None, now: datetime | None = None, request: Any = None
) -> TwoFactorState:
    """Return the user's 2FA state, read from the database, if ``proof`` allows changing it.

    * 2FA on: the session must have passed the second factor under the
      *current* configuration (a stale session cannot launder itself).
    * 2FA off: a sign-in within ``REAUTHENTICATION_WINDOW`` seconds, or the
      account's password now (counted against the user's 2FA budget; on
      success ``proof.renewed_at`` is set).

    Raises ReauthenticationRequired, or InvalidCredentials / RateLimited /
    InvalidInput for a given password.
    """
    now = now or clock.now()
    state = load_state(user)
    if proof.trusted:
        return state
    if proof.user_id != str(user.pk):
        raise ReauthenticationRequired()
    if state.enabled:
        if proof.verified and proof.fingerprint == state.fingerprint:
            return state
        raise ReauthenticationRequired()
    if recently_authenticated(proof, now=now):
        return state
    if password in (None, "") or not user.has_usable_password():
        raise ReauthenticationRequired()
    if not is_plain_text(password, max_length=4096):
        raise InvalidInput(gettext("password must be text."), field="password")
    count_attempt(user, state, now=now)
    if not user.check_password(password):
        note_failure(user, state, now=now, request=request)
        raise InvalidCredentials(gettext("The password is incorrect."))
    proof.renewed_at = int(now.timestamp())
    return state


def note_change(user: AbstractBaseUser, *, now: datetime) -> None:
    """Stamp a change of the user's active 2FA configuration (its fingerprint changes: other sessions end)."""
    updated = UserTwoFactor.objects.filter(pk=user.pk).update(changed_at=now, updated_at=now)
    if not updated:
        UserTwoFactor.objects.get_or_create(user_id=user.pk, defaults={"changed_at": now})
    trusted_browsers.revoke_all(user)  # voided by the new fingerprint already; one DELETE while the feature is on


def check_user_code(
    user: AbstractBaseUser, code: Any, *, now: datetime | None = None, allow_totp: bool = True,
    allow_recovery: bool = True, request: Any = None, state: TwoFactorState | None = None,
) -> str:
    """Verify a current TOTP code (or a recovery code) of a logged-in user; return the method used.

    For sensitive changes (replace or disable the authenticator, new recovery
    codes) and for ``reauthenticate/`` (one method at a time). Counts against
    the user's 2FA budget; a right code is a real second-factor success
    (``last_verified_at``). Raises InvalidInput for a non-text code,
    RateLimited, or InvalidCode. The factors are asked in :data:`factors.METHODS`
    order through the registry (``Factor.accept_user_code``).
    """
    text = factors.clean_code(code)
    now = now or clock.now()
    state = state if state is not None else load_state(user)
    wanted = [("totp", allow_totp and state.totp), ("recovery", allow_recovery)]
    candidates = []
    for method, allowed in wanted:
        factor = factors.get(method) if allowed else None
        cleaned = factor.normalize(text) if factor is not None else None
        if factor is not None and cleaned is not None:
            candidates.append((method, factor, cleaned))
    if not candidates:
        raise InvalidCode()
    count_attempt(user, state, now=now)
    for method, factor, cleaned in candidates:
        if factor.accept_user_code(user, state, cleaned, now=now):
            return method
    note_failure(user, state, now=now, request=request)
    raise InvalidCode()
