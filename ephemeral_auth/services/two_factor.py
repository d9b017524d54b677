"""A user's second-factor state, the session's 2FA mark, and the admin reset.

Security reasoning:

* Which methods a login may use is computed once, at the password step, from
  the user's enrolments (:func:`TwoFactorState.methods`) and stored on the
  ``pre_auth`` token; verification accepts only those (fixing a weakness of the original application: no
  downgrade from TOTP to a mailbox).
* The session's mark (:data:`SESSION_KEY`) says "this session passed the
  second factor for user ``u`` while the 2FA configuration was ``f``". The
  fingerprint ``f`` changes with every change of the active configuration
  (a method enrolled, re-enrolled or removed, new recovery codes, an admin
  reset: ``UserTwoFactor.changed_at``). The middleware ends every session
  whose fingerprint is no longer the user's, except the one that made the
  change (it is re-marked); it re-reads the configuration at most every
  ``TWO_FACTOR_STATE_MAX_AGE`` seconds (docs/two-factor.md, "Middleware").
* A change of the configuration needs a *fresh proof*
  (:func:`require_fresh_proof`), judged on the configuration read from the
  database, never on the session's cached copy: a session verified against
  the current configuration, or, while 2FA is off, a sign-in or a password
  entered within ``REAUTHENTICATION_WINDOW`` seconds.
* The 2FA failure budget counts failures since the last real second-factor
  success (``UserTwoFactor.last_verified_at``), which nothing else writes.
* Email codes without an address to send them to fail *closed*: the user
  still has 2FA (the middleware hides unverified sessions, the login step
  refuses with ``two_factor_unavailable`` unless recovery codes are left).
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import router
from django.db.models import Exists, OuterRef
from django.utils.translation import gettext

from .. import clock, conf
from ..exceptions import InvalidCode, InvalidCredentials, InvalidInput, RateLimited, ReauthenticationRequired
from ..models import EventType, RateLimitEvent, RecoveryCode, TokenType, UserTwoFactor
from ..signals import authenticator_removed, send_on_commit, user_locked_out
from . import ratelimit, tokens
from .inputs import is_plain_text

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

__all__ = [
    "AUTHENTICATED_AT_KEY",
    "METHODS",
    "SESSION_KEY",
    "EmailRequiredForTwoFactor",
    "Proof",
    "TwoFactorState",
    "check_email_change",
    "check_user_code",
    "count_attempt",
    "email_removal_refused",
    "forgive_failures",
    "load_state",
    "mark_session",
    "note_change",
    "recently_authenticated",
    "require_fresh_proof",
    "reset_two_factor",
    "session_mark",
    "session_proof",
    "state_from_row",
    "status",
    "two_factor_key",
    "user_email",
]

logger = logging.getLogger("ephemeral_auth.two_factor")

# Every second-factor method, in the order clients should offer them.
METHODS = ("totp", "email", "recovery")

# The session key of the 2FA mark; a dict {"u": user pk, "f": fingerprint,
# "v": verified, "e": 2FA enabled, "t": epoch seconds of the last configuration check}.
SESSION_KEY = "_ephemeral_auth_2fa"
# Epoch seconds of the session's last sign-in (any login()) or password confirmation.
AUTHENTICATED_AT_KEY = "_ephemeral_auth_authenticated_at"


def user_email(user: AbstractBaseUser) -> str:
    """Return the user's email address ("" if the model has none)."""
    field = user.get_email_field_name() if hasattr(user, "get_email_field_name") else "email"
    value = getattr(user, field, "") or ""
    return str(value)


@dataclass(frozen=True)
class TwoFactorState:
    """What one user has enrolled and can use, read in one statement.

    ``email`` is the enrolment (email codes turned on); ``email_usable`` says
    whether the account has an address to send them to. Without one, email
    codes are not a method a login can use (fixing a weakness of the original application), but the user
    still *has* 2FA: ``enabled`` stays true and the login fails closed.
    """

    user_id: Any
    totp: bool
    email: bool
    has_recovery_codes: bool
    fingerprint: str
    row: UserTwoFactor | None = None
    email_usable: bool = True

    @property
    def enabled(self) -> bool:
        """Whether any second factor is on (the login then needs one)."""
        return self.totp or self.email

    def methods(self, user: Any = None) -> list[str]:
        """Return the methods a login may use, in :data:`METHODS` order (recovery codes only beside another)."""
        found = []
        if self.totp:
            found.append("totp")
        if self.email and self.email_usable:
            found.append("email")
        if self.enabled and self.has_recovery_codes:
            found.append("recovery")
        return found


NO_TWO_FACTOR_FINGERPRINT = ""


def fingerprint(
    user_id: Any, *, totp: bool, totp_at: datetime | None, email: bool, email_at: datetime | None,
    changed_at: datetime | None = None,
) -> str:
    """Return a short digest naming one 2FA configuration ("" when 2FA was never on).

    Built from the confirmation and change times, not from the secret:
    rotating the encryption keys re-encrypts secrets without logging anybody
    out. Rows from before ``changed_at`` existed keep their fingerprint.
    """
    if not totp and not email and changed_at is None:
        return NO_TWO_FACTOR_FINGERPRINT
    stamp = [
        f"t:{totp_at.isoformat() if totp_at else '-'}" if totp else "",
        f"e:{email_at.isoformat() if email_at else '-'}" if email else "",
    ]
    if changed_at is not None:
        stamp.append(f"c:{changed_at.isoformat()}")
    return hashlib.sha256(f"{user_id}|{'|'.join(stamp)}".encode()).hexdigest()[:20]


def state_from_row(
    user_id: Any, row: UserTwoFactor | None, *, has_recovery_codes: bool = False, has_email: bool = True
) -> TwoFactorState:
    """Build the state of ``user_id`` from its ``UserTwoFactor`` row (or None)."""
    if row is None:
        return TwoFactorState(user_id=user_id, totp=False, email=False, has_recovery_codes=False, fingerprint="")
    totp = row.totp_enabled
    email = bool(row.email_enabled)
    return TwoFactorState(
        user_id=user_id,
        totp=totp,
        email=email,
        has_recovery_codes=bool(has_recovery_codes),
        fingerprint=fingerprint(
            user_id, totp=totp, totp_at=row.totp_confirmed_at, email=email, email_at=row.email_confirmed_at,
            changed_at=row.changed_at,
        ),
        row=row,
        email_usable=bool(has_email),
    )


def empty_state(user_id: Any) -> TwoFactorState:
    """Return the state of a user without any second factor."""
    return state_from_row(user_id, None)


def with_recovery_flag(queryset: Any) -> Any:
    """Annotate ``has_recovery_codes`` on a UserTwoFactor queryset (no extra statement)."""
    return queryset.annotate(
        has_recovery_codes=Exists(RecoveryCode.objects.filter(user_id=OuterRef("user_id")))
    )


def load_state(user: AbstractBaseUser | Any) -> TwoFactorState:
    """Return the 2FA state of a user (or of a user pk: the user row is joined). One SELECT."""
    given = user if hasattr(user, "get_username") else None
    user_id: Any = getattr(user, "pk", user)
    queryset = UserTwoFactor.objects.filter(pk=user_id)
    if given is None:
        queryset = queryset.select_related("user")
    rows = list(with_recovery_flag(queryset)[:1])
    if not rows:
        return empty_state(user_id)
    row = rows[0]
    address = user_email(given if given is not None else row.user)
    return state_from_row(
        user_id, row, has_recovery_codes=getattr(row, "has_recovery_codes", False), has_email=bool(address)
    )


# The session mark.


def session_mark(request: HttpRequest) -> dict[str, Any] | None:
    """Return the session's 2FA mark if it is well formed."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    mark = session.get(SESSION_KEY)
    if not isinstance(mark, dict) or not {"u", "f", "v", "t"} <= set(mark):
        return None
    return mark


def mark_session(
    request: HttpRequest, user: AbstractBaseUser, state: TwoFactorState, *, verified: bool,
    now: datetime | None = None,
) -> None:
    """Record in the session that ``user`` did (or did not) pass 2FA under ``state``.

    Call it after ``login()``: login may flush the session.
    """
    now = now or clock.now()
    request.session[SESSION_KEY] = {
        "u": str(user.pk),
        "f": state.fingerprint,
        "v": bool(verified),
        "e": state.enabled,
        "t": int(now.timestamp()),
    }
    request.two_factor_verified = bool(verified)  # type: ignore[attr-defined]
    request.two_factor_enabled = state.enabled  # type: ignore[attr-defined]


# Fresh proof for changes of the configuration.


@dataclass
class Proof:
    """What a session can show for a sensitive change, as plain values (see :func:`session_proof`).

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


def session_proof(request: HttpRequest) -> Proof:
    """Return what the request's session proves: its 2FA mark and its last sign-in time."""
    session = getattr(request, "session", None)
    mark = session_mark(request) or {}
    at = session.get(AUTHENTICATED_AT_KEY) if session is not None else None
    return Proof(
        user_id=str(mark["u"]) if "u" in mark else None,
        fingerprint=str(mark["f"]) if "f" in mark else None,
        verified=bool(mark.get("v")),
        authenticated_at=at if isinstance(at, int) and not isinstance(at, bool) else None,
    )


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


# The admin's reset.


def reset_two_factor(user: AbstractBaseUser) -> None:
    """Remove every second factor of ``user`` and revoke their pending 2FA tokens.

    Deletes the TOTP secret (active and pending), the email-code flag and the
    recovery codes, and revokes outstanding ``pre_auth`` and
    ``email_otp_setup`` tokens, so a half-finished login or enrolment cannot
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
    RecoveryCode.objects.filter(user_id=user.pk).delete()
    tokens.revoke_tokens(user=user, token_types=[TokenType.PRE_AUTH, TokenType.EMAIL_OTP_SETUP])
    logger.info("two-factor authentication reset for user #%s", user.pk)


def _enrolled_methods(user: AbstractBaseUser) -> list[str]:
    """Return the methods ``user`` has enrolled, for ``authenticator_removed``: no query without receivers.

    Read from the database, never from a row cached on ``user`` (it may be stale).
    """
    if not authenticator_removed.has_listeners(UserTwoFactor):
        return []
    row = UserTwoFactor.objects.filter(pk=user.pk).only("totp_secret", "totp_confirmed_at", "email_enabled").first()
    if row is None:
        return []
    return [method for method, on in (("totp", row.totp_enabled), ("email", row.email_enabled)) if on]


# The per-user 2FA failure budget.


def two_factor_key(user: AbstractBaseUser) -> str:
    """Return the rate-limit key of a user's 2FA and email-send buckets (``u:<pk>``: never shared by two accounts)."""
    return ratelimit.account_key(user.pk)


def _window(state: TwoFactorState, now: datetime) -> timedelta:
    """Return the 2FA window of this user: it restarts at their last second-factor success.

    Only a real success writes ``UserTwoFactor.last_verified_at`` (the
    UPDATE that records an accepted TOTP step, a used recovery code, an
    emailed code that logged in); no other save can reset the budget. A stamp
    in the future (a host with a fast clock) is ignored: the full window then
    applies, which errs on the safe side.
    """
    window = conf.rate_limit(EventType.TWO_FA_ATTEMPT).window
    stamp = state.row.last_verified_at if state.row is not None else None
    if stamp is not None and now - window < stamp < now:
        return now - stamp
    return window


def count_attempt(user: AbstractBaseUser, state: TwoFactorState, *, now: datetime) -> None:
    """Record one second-factor attempt of ``user`` before its code is checked.

    Recording first bounds parallel guesses: of N simultaneous attempts at
    most the remaining budget is admitted. Raises RateLimited (with the
    Retry-After of the full window) when the budget is spent.
    """
    window = _window(state, now)
    try:
        ratelimit.attempt(EventType.TWO_FA_ATTEMPT, two_factor_key(user), window=window, now=now)
    except RateLimited as exc:
        full = conf.rate_limit(EventType.TWO_FA_ATTEMPT).window
        extra = math.ceil((full - window).total_seconds())
        raise RateLimited(retry_after=exc.retry_after + extra, event_type=EventType.TWO_FA_ATTEMPT) from None


def note_failure(user: AbstractBaseUser, state: TwoFactorState, *, now: datetime, request: Any = None) -> None:
    """Send ``user_locked_out`` when this failure used up the user's 2FA budget."""
    if not conf.get("RATE_LIMITING_ENABLED"):
        return
    key = two_factor_key(user)
    limit = conf.rate_limit(EventType.TWO_FA_ATTEMPT).limit
    if ratelimit.count(EventType.TWO_FA_ATTEMPT, key, window=_window(state, now), now=now) >= limit:
        user_locked_out.send(
            sender=RateLimitEvent, event_type=EventType.TWO_FA_ATTEMPT, key=key, request=request
        )


def forgive_failures(user: AbstractBaseUser, *, now: datetime) -> None:
    """Restart the user's 2FA window after a real second-factor success that did not stamp it already."""
    UserTwoFactor.objects.filter(pk=user.pk).update(last_verified_at=now)


def check_user_code(
    user: AbstractBaseUser, code: Any, *, now: datetime | None = None, allow_totp: bool = True,
    allow_recovery: bool = True, request: Any = None, state: TwoFactorState | None = None,
) -> str:
    """Verify a current TOTP code (or a recovery code) of a logged-in user; return the method used.

    For sensitive changes (replace or disable the authenticator, new recovery
    codes) and for ``reauthenticate/`` (one method at a time). Counts against
    the user's 2FA budget; a right code is a real second-factor success
    (``last_verified_at``). Raises InvalidInput for a non-text code,
    RateLimited, or InvalidCode.
    """
    from . import recovery, totp
    from .inputs import clean_text

    clean_text(code, field="code", max_length=64)
    now = now or clock.now()
    state = state if state is not None else load_state(user)
    totp_code = totp.normalize(code) if allow_totp and state.totp else None
    recovery_code = recovery.normalize(code) if allow_recovery else None
    if totp_code is None and recovery_code is None:
        raise InvalidCode()
    count_attempt(user, state, now=now)
    if totp_code is not None and state.row is not None and totp.accept(state.row, totp_code, now=now):
        return "totp"
    if recovery_code is not None and recovery.use(user.pk, recovery_code):
        forgive_failures(user, now=now)
        return "recovery"
    note_failure(user, state, now=now, request=request)
    raise InvalidCode()


def status(user: AbstractBaseUser) -> dict[str, Any]:
    """Return what the user has enrolled: ``{"totp", "email", "recovery_codes_remaining"}``."""
    from . import recovery

    state = load_state(user)
    return {
        "totp": state.totp,
        "email": state.email,
        "email_usable": state.email and state.email_usable,
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
        UserTwoFactor.objects.filter(pk=pk, email_enabled=True).values_list("totp_secret", "totp_confirmed_at").first()
    )
    if row is None:
        return False
    totp_on = bool(row[0]) and row[1] is not None
    return not totp_on


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
