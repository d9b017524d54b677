"""Which second factors a user has: the ONE definition, and the interface every factor module offers.

The bottom of the two-factor services. Nothing here imports a factor
module; the factors (``totp``, ``email_otp``, ``recovery``, and later the
passkeys) import this module, and the wiring fills the registry
(``apps.EphemeralAuthConfig.ready`` calls :func:`register` for each). Code
that needs several factors at once without depending on each of them (the
login step, ``proof.check_user_code``) asks the registry (:func:`get`), so
the import graph stays a tree: factors -> this module, never back.

Which factors count (:class:`TwoFactorState`, :func:`enrolled_methods`):

* an authenticator app (TOTP) and email codes are second factors; the user
  "has 2FA" (``enabled``) when either is on;
* recovery codes are never a second factor on their own: they are a way in
  *beside* another factor (``tests/test_two_factor.py`` pins it);
* email codes without an address to send them to fail *closed*: the user
  still has 2FA, but email is not a method a login can use (fixing a
  weakness of the original application).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from django.db.models import Exists, OuterRef
from django.utils.translation import gettext

from ..exceptions import InvalidInput
from ..models import EphemeralToken, RecoveryCode, UserTwoFactor
from .inputs import clean_text, is_plain_text

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "MAX_CODE_LENGTH",
    "METHODS",
    "NO_TWO_FACTOR_FINGERPRINT",
    "Factor",
    "PendingLogin",
    "TwoFactorState",
    "clean_code",
    "empty_state",
    "enrolled_methods",
    "fingerprint",
    "get",
    "load_state",
    "read_code",
    "register",
    "state_from_row",
    "user_email",
    "with_recovery_flag",
]

# Every second-factor method, in the order clients should offer them.
METHODS = ("totp", "email", "recovery")
# The longest code any factor accepts (the forms and JSON views apply the same limit).
MAX_CODE_LENGTH = 64


def enrolled_methods(*, totp: bool, email: bool) -> list[str]:
    """Return the second factors a user has turned on, in :data:`METHODS` order: the one rule.

    Recovery codes are not among them: alone they are no second factor.
    """
    return [method for method, on in (("totp", totp), ("email", email)) if on]


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
    def enrolled(self) -> list[str]:
        """The second factors turned on (:func:`enrolled_methods`: never recovery codes)."""
        return enrolled_methods(totp=self.totp, email=self.email)

    @property
    def enabled(self) -> bool:
        """Whether any second factor is on (the login then needs one)."""
        return bool(self.enrolled)

    def methods(self, user: Any = None) -> list[str]:
        """Return the methods a login may use, in :data:`METHODS` order (recovery codes only beside another)."""
        found = [method for method in self.enrolled if method != "email" or self.email_usable]
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


# A pending login, as the factors see it.


@dataclass(frozen=True)
class PendingLogin:
    """A live ``pre_auth`` token with its user and the user's 2FA state (``pending.peek_pending`` finds it)."""

    token: EphemeralToken
    user: AbstractBaseUser
    state: TwoFactorState

    @property
    def methods(self) -> list[str]:
        return [m for m in self.token.method_list if m in METHODS]


# The interface of one second factor, and the registry.


class Factor(Protocol):
    """What every second-factor module offers (``services.totp``, ``email_otp``, ``recovery``).

    A module satisfies it as it is (its functions are the methods). The login
    step (``auth.login.verify_login``) and the management step
    (``proof.check_user_code``) speak to the factors only through it.
    """

    def normalize(self, code: Any) -> str | None:
        """Return the code in its normal form, or None if it cannot be one of this factor's codes."""

    def check_login_code(self, pending: PendingLogin, code: str, *, now: datetime, request: Any = None) -> None:
        """Check (and use up) the code of a pending login; raise InvalidCode. The attempt was counted already."""

    def login_binding(self, pending: PendingLogin, code: str) -> dict[str, Any]:
        """Return what the ``pre_auth`` row must still hold when the verified login consumes it."""

    def accept_user_code(self, user: AbstractBaseUser, state: TwoFactorState, code: str, *, now: datetime) -> bool:
        """Return whether ``code`` proves a logged-in user's presence (and use it up); False if never."""


_REGISTRY: dict[str, Factor] = {}


def register(method: str, factor: Factor) -> None:
    """Make ``factor`` the implementation of ``method`` (one of :data:`METHODS`): the wiring calls it."""
    if method not in METHODS:
        raise ValueError(f"unknown second-factor method: {method!r}")
    _REGISTRY[method] = factor


def get(method: str) -> Factor:
    """Return the registered factor of ``method``; LookupError if the app is not ready (not in INSTALLED_APPS)."""
    try:
        return _REGISTRY[method]
    except KeyError:
        raise LookupError(f"no second factor registered for {method!r}: is ephemeral_auth ready?") from None


# A submitted code, checked once.


def clean_code(code: Any) -> str:
    """Return ``code`` if it is text of at most :data:`MAX_CODE_LENGTH` characters, else raise InvalidInput."""
    return clean_text(code, field="code", max_length=MAX_CODE_LENGTH)


def read_code(method: Any, code: Any) -> tuple[Factor, str | None]:
    """The one check of a code submitted for ``method``, before anything is read or recorded.

    Raises InvalidInput when the code is not text of at most
    :data:`MAX_CODE_LENGTH` characters (checked first) or the method is not
    one of :data:`METHODS`. Returns the method's factor and the code in its
    normal form: None when it cannot be one of its codes (the caller refuses
    it with InvalidCode without spending the user's budget).
    """
    text = clean_code(code)
    if not is_plain_text(method, max_length=16) or method not in METHODS:
        raise InvalidInput(gettext("method must be one of: totp, email, recovery."), field="method")
    factor = get(method)
    return factor, factor.normalize(text)
