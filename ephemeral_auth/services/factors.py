"""Which second factors a user has: the ONE definition, and the interface every factor module offers.

The bottom of the two-factor services. Nothing here imports a factor
module; the factors (``totp``, ``email_otp``, ``recovery``, and later the
passkeys) import this module, and the wiring fills the registry
(``apps.EphemeralAuthConfig.ready`` calls :func:`register` for each). Code
that needs several factors at once without depending on each of them (the
login step, ``proof.check_user_code``) asks the registry (:func:`get`), so
the import graph stays a tree: factors -> this module, never back.

Which factors count (:class:`TwoFactorState`, :func:`enrolled_methods`):

* an authenticator app (TOTP), email codes and WebAuthn security keys or
  passkeys (at least one ``WebAuthnCredential``) are second factors; the
  user "has 2FA" (``enabled``) when any is on;
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
from ..models import EphemeralToken, RecoveryCode, UserTwoFactor, WebAuthnCredential
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
    "webauthn_flag",
    "with_recovery_flag",
]

# Every second-factor method, in the order clients should offer them.
METHODS = ("totp", "webauthn", "email", "recovery")
# The longest code any factor accepts (the forms and JSON views apply the same limit).
MAX_CODE_LENGTH = 64


def enrolled_methods(*, totp: bool, email: bool, webauthn: bool = False) -> list[str]:
    """Return the second factors a user has turned on, in :data:`METHODS` order: the one rule.

    Recovery codes are not among them: alone they are no second factor.
    """
    return [method for method, on in (("totp", totp), ("webauthn", webauthn), ("email", email)) if on]


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
    # At least one WebAuthn credential (security key or passkey).
    webauthn: bool = False

    @property
    def enrolled(self) -> list[str]:
        """The second factors turned on (:func:`enrolled_methods`: never recovery codes)."""
        return enrolled_methods(totp=self.totp, email=self.email, webauthn=self.webauthn)

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
    WebAuthn credentials enter through ``changed_at``: adding or removing
    one stamps it (``proof.note_change``), so the fingerprint changes.
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
    user_id: Any, row: UserTwoFactor | None, *, has_recovery_codes: bool = False, has_email: bool = True,
    has_webauthn: bool = False,
) -> TwoFactorState:
    """Build the state of ``user_id`` from its ``UserTwoFactor`` row (or None).

    A user with WebAuthn credentials always has the row: registering one
    stamps ``changed_at`` on it (``proof.note_change``, which creates it).
    """
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
        webauthn=bool(has_webauthn),
    )


def empty_state(user_id: Any) -> TwoFactorState:
    """Return the state of a user without any second factor."""
    return state_from_row(user_id, None)


def webauthn_flag(user_ref: str = "user_id") -> Exists:
    """``EXISTS`` a WebAuthn credential of the user named by the outer column ``user_ref``."""
    return Exists(WebAuthnCredential.objects.filter(user_id=OuterRef(user_ref)))


def with_recovery_flag(queryset: Any) -> Any:
    """Annotate ``has_recovery_codes`` and ``has_webauthn`` on a UserTwoFactor queryset (no extra statement)."""
    return queryset.annotate(
        has_recovery_codes=Exists(RecoveryCode.objects.filter(user_id=OuterRef("user_id"))),
        has_webauthn=webauthn_flag(),
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
        user_id, row, has_recovery_codes=getattr(row, "has_recovery_codes", False), has_email=bool(address),
        has_webauthn=getattr(row, "has_webauthn", False),
    )


# A pending login, as the factors see it.


@dataclass(frozen=True)
class PendingLogin:
    """A live ``pre_auth`` token with its user and the user's 2FA state (``pending.peek_pending`` finds it)."""

    token: EphemeralToken
    user: AbstractBaseUser
    state: TwoFactorState
    # The browser challenge cookie the login was presented with (a WebAuthn step binds its challenge to it).
    challenge: str = ""

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

    # Optional (``webauthn_factor``): ``read_answer(code) -> str`` reads a structured answer
    # instead of ``clean_code`` + ``normalize``; ``COUNTED_ON_FAILURE = True`` makes the login
    # step count a failed answer against the budget after the check instead of every attempt
    # before it (an unguessable signature: a valid one is never refused for others' failures).


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
    known = is_plain_text(method, max_length=16) and method in METHODS
    reader = getattr(_REGISTRY.get(method), "read_answer", None) if known else None
    if reader is not None:
        # A factor whose answer is structured (WebAuthn's assertion JSON) reads it itself:
        # InvalidInput when malformed, else the answer as canonical text.
        return get(method), reader(code)
    text = clean_code(code)
    if not known:
        raise InvalidInput(gettext("method must be one of: totp, webauthn, email, recovery."), field="method")
    factor = get(method)
    return factor, factor.normalize(text)
