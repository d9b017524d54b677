"""A user's second-factor state, the session's 2FA mark, and the admin reset.

Security reasoning:

* Which methods a login may use is computed once, at the password step, from
  the user's enrolments (:func:`TwoFactorState.methods`) and stored on the
  ``pre_auth`` token; verification accepts only those (seed weakness 2: no
  downgrade from TOTP to a mailbox).
* The session's mark (:data:`SESSION_KEY`) says "this session passed the
  second factor for user ``u`` while the 2FA configuration was ``f``". The
  fingerprint ``f`` changes when a method is enrolled, re-enrolled or
  removed, so a session that never passed 2FA (an admin-form login, a login
  before 2FA was enabled) is not treated as verified once 2FA is on, and a
  session verified against an authenticator the user has since replaced must
  verify again. The middleware re-reads the configuration at most every
  ``TWO_FACTOR_STATE_MAX_AGE`` seconds (docs/two-factor.md, "Middleware").
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db.models import Exists, OuterRef

from .. import clock, conf
from ..exceptions import InvalidCode, RateLimited
from ..models import EventType, RateLimitEvent, RecoveryCode, TokenType, UserTwoFactor
from ..signals import user_locked_out
from . import ratelimit, tokens

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

__all__ = [
    "METHODS",
    "SESSION_KEY",
    "TwoFactorState",
    "check_user_code",
    "count_attempt",
    "forgive_failures",
    "load_state",
    "mark_session",
    "reset_two_factor",
    "session_mark",
    "state_from_row",
    "status",
    "two_factor_key",
    "user_email",
]

logger = logging.getLogger("ephemeral_auth.two_factor")

# Every second-factor method, in the order clients should offer them.
METHODS = ("totp", "email", "recovery")

# The session key of the 2FA mark; a dict {"u": user pk, "f": fingerprint,
# "v": verified, "t": epoch seconds of the last configuration check}.
SESSION_KEY = "_ephemeral_auth_2fa"


def user_email(user: AbstractBaseUser) -> str:
    """Return the user's email address ("" if the model has none)."""
    field = user.get_email_field_name() if hasattr(user, "get_email_field_name") else "email"
    value = getattr(user, field, "") or ""
    return str(value)


@dataclass(frozen=True)
class TwoFactorState:
    """What one user has enrolled and can use, read in one statement.

    ``email`` is true only when email codes are on *and* the user has an
    address to receive them (seed weakness 18): without one, email codes are
    not a usable factor, for the login as for the middleware.
    """

    user_id: Any
    totp: bool
    email: bool
    has_recovery_codes: bool
    fingerprint: str
    row: UserTwoFactor | None = None

    @property
    def enabled(self) -> bool:
        """Whether any second factor is on (the login then needs one)."""
        return self.totp or self.email

    def methods(self, user: Any = None) -> list[str]:
        """Return the methods a login may use, in :data:`METHODS` order (recovery codes only beside another)."""
        found = []
        if self.totp:
            found.append("totp")
        if self.email:
            found.append("email")
        if found and self.has_recovery_codes:
            found.append("recovery")
        return found


NO_TWO_FACTOR_FINGERPRINT = ""


def _fingerprint(user_id: Any, *, totp: bool, totp_at: datetime | None, email: bool, email_at: datetime | None) -> str:
    """Return a short digest naming one 2FA configuration ("" when 2FA is off).

    Built from the confirmation times, not from the secret: rotating the
    encryption keys re-encrypts secrets without logging anybody out.
    """
    if not totp and not email:
        return NO_TWO_FACTOR_FINGERPRINT
    stamp = [
        f"t:{totp_at.isoformat() if totp_at else '-'}" if totp else "",
        f"e:{email_at.isoformat() if email_at else '-'}" if email else "",
    ]
    return hashlib.sha256(f"{user_id}|{'|'.join(stamp)}".encode()).hexdigest()[:20]


def state_from_row(
    user_id: Any, row: UserTwoFactor | None, *, has_recovery_codes: bool = False, has_email: bool = True
) -> TwoFactorState:
    """Build the state of ``user_id`` from its ``UserTwoFactor`` row (or None)."""
    if row is None:
        return TwoFactorState(user_id=user_id, totp=False, email=False, has_recovery_codes=False, fingerprint="")
    totp = row.totp_enabled
    email = bool(row.email_enabled) and has_email
    return TwoFactorState(
        user_id=user_id,
        totp=totp,
        email=email,
        has_recovery_codes=bool(has_recovery_codes),
        fingerprint=_fingerprint(
            user_id, totp=totp, totp_at=row.totp_confirmed_at, email=email, email_at=row.email_confirmed_at
        ),
        row=row,
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
        "t": int(now.timestamp()),
    }
    request.two_factor_verified = bool(verified)  # type: ignore[attr-defined]


# The admin's reset.


def reset_two_factor(user: AbstractBaseUser) -> None:
    """Remove every second factor of ``user`` and revoke their pending 2FA tokens.

    Deletes the TOTP secret (active and pending), the email-code flag and the
    recovery codes, and revokes outstanding ``pre_auth`` and
    ``email_otp_setup`` tokens, so a half-finished login or enrolment cannot
    complete against the old configuration. Sessions that were verified stay
    logged in; change the password to end them.
    """
    UserTwoFactor.objects.filter(pk=user.pk).delete()
    RecoveryCode.objects.filter(user_id=user.pk).delete()
    tokens.revoke_tokens(user=user, token_types=[TokenType.PRE_AUTH, TokenType.EMAIL_OTP_SETUP])
    logger.info("two-factor authentication reset for user #%s", user.pk)


# The per-user 2FA failure budget.


def two_factor_key(user: AbstractBaseUser) -> str:
    """Return the rate-limit key of a user's 2FA and email-send buckets (their normalised username)."""
    return ratelimit.subject_key(user.get_username())


def _window(state: TwoFactorState, now: datetime) -> timedelta:
    """Return the 2FA window of this user: it restarts at their last success.

    A successful verification stamps ``UserTwoFactor.updated_at`` in the same
    UPDATE that records the accepted TOTP step, so forgiving earlier failures
    costs no extra statement. A stamp in the future (a host with a fast clock)
    is ignored: the full window then applies, which errs on the safe side.
    """
    window = conf.rate_limit(EventType.TWO_FA_ATTEMPT).window
    stamp = state.row.updated_at if state.row is not None else None
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
    """Restart the user's 2FA window after a success that did not stamp it already."""
    UserTwoFactor.objects.filter(pk=user.pk).update(updated_at=now)


def check_user_code(
    user: AbstractBaseUser, code: Any, *, now: datetime | None = None, allow_recovery: bool = True,
    request: Any = None,
) -> str:
    """Verify a current TOTP code (or a recovery code) of a logged-in user; return the method used.

    For sensitive changes (replace or disable the authenticator, new recovery
    codes). Counts against the user's 2FA budget. Raises InvalidInput for a
    non-text code, RateLimited, or InvalidCode.
    """
    from . import recovery, totp
    from .inputs import clean_text

    clean_text(code, field="code", max_length=64)
    now = now or clock.now()
    state = load_state(user)
    totp_code = totp.normalize(code) if state.totp else None
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
        "email": state.email and bool(user_email(user)),
        "recovery_codes_remaining": recovery.remaining(user),
        "totp_pending": bool(state.row is not None and state.row.totp_pending_secret),
    }
