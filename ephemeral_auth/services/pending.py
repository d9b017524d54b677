"""A login between its two factors, as plain values: the step's outcome and the pending login's lookup.

No request here: the login orchestration that reads one (the password step,
``login()``, the session) is ``ephemeral_auth.auth.login``.

* Pending state never lives in the Django session: a ``pre_auth`` row holds
  it, bound to an HttpOnly cookie (``challenge``) and to the allowed methods
  (:func:`peek_pending` needs both).
* :func:`writes_together` is the one transaction per database of what follows
  a login decision (``docs/two-factor.md``, "Commits").
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction

from .. import clock
from ..exceptions import InvalidToken
from ..models import EphemeralToken, TokenType, UserTwoFactor
from . import tokens
from .factors import MAX_CODE_LENGTH, PendingLogin, load_state, state_from_row, user_email
from .inputs import is_plain_text

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from .tokens import IssuedToken

__all__ = [
    "MAX_CODE_LENGTH",
    "MAX_IDENTIFIER_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "MAX_TOKEN_LENGTH",
    "LoginStep",
    "PendingLogin",
    "enabled_methods",
    "peek_pending",
    "writes_together",
]

MAX_IDENTIFIER_LENGTH = 254
# Long enough for any passphrase, short enough that hashing it is cheap.
MAX_PASSWORD_LENGTH = 4096
MAX_TOKEN_LENGTH = 512


@dataclass(frozen=True)
class LoginStep:
    """The outcome of a first factor: logged in, or a second factor is needed."""

    status: str  # "authenticated" or "2fa_required"
    user: AbstractBaseUser
    pre_auth: IssuedToken | None = None
    challenge: str | None = field(default=None, repr=False)
    methods: list[str] = field(default_factory=list)

    @property
    def authenticated(self) -> bool:
        return self.status == "authenticated"


def enabled_methods(user: AbstractBaseUser) -> list[str]:
    """Return the second-factor methods ``user`` may log in with (empty: no usable 2FA)."""
    return load_state(user).methods(user)


def writes_together(*models: Any) -> ExitStack:
    """Return a context manager: one transaction on each database these models are written to.

    Usually that is one database, hence one commit for several statements.
    Never wrap a rate-limit *attempt* in it: the recount that confirms an
    attempt must see every racer's committed row (services/ratelimit.py).
    """
    with ExitStack() as stack:
        # If entering a later alias's transaction fails, the earlier ones are
        # exited on the way out instead of being left open.
        for alias in sorted({router.db_for_write(model) or DEFAULT_DB_ALIAS for model in models}):
            stack.enter_context(transaction.atomic(using=alias))
        return stack.pop_all()


def _same_database(*models: Any) -> bool:
    aliases = {router.db_for_read(model) for model in models}
    if len(aliases) != 1:
        return False
    alias = aliases.pop() or "default"
    return alias in connections


def peek_pending(raw: Any, *, challenge: Any, now: datetime | None = None) -> PendingLogin:
    """Return the pending login of a ``pre_auth`` token presented with its browser challenge.

    Nothing is used up. Raises InvalidToken if the token is unknown, expired,
    bound to another browser, or its user is gone or inactive. One SELECT
    when the token table shares the user's database.
    """
    if not is_plain_text(raw, max_length=MAX_TOKEN_LENGTH) or not raw:
        raise InvalidToken()
    if not is_plain_text(challenge, max_length=1024) or not challenge:
        raise InvalidToken()
    now = now or clock.now()
    model = get_user_model()
    user: Any
    if _same_database(EphemeralToken, model, UserTwoFactor):
        token = tokens.peek_token(
            raw, TokenType.PRE_AUTH, challenge_id=challenge, now=now, related=("user", "user__two_factor")
        )
        user = token.user if token is not None else None
    else:
        # The token table lives on its own database (EPHEMERAL_AUTH_DATABASE): no join.
        token = tokens.peek_token(raw, TokenType.PRE_AUTH, challenge_id=challenge, now=now)
        user_id: Any = token.user_id if token is not None else None
        user = model._default_manager.select_related("two_factor").filter(pk=user_id).first() if token else None
    if token is None or user is None or not getattr(user, "is_active", True):
        raise InvalidToken()
    try:
        row = user.two_factor
    except UserTwoFactor.DoesNotExist:
        row = None
    # Which methods this login may use is on the token; the state serves the
    # budget (its success stamp) and the session mark (its fingerprint).
    # WebAuthn: the methods were computed from the user's credentials when the login began
    # (adding or removing one revokes the pending logins), so no other read is needed.
    state = state_from_row(
        user.pk, row, has_recovery_codes=True, has_email=bool(user_email(user)),
        has_webauthn="webauthn" in token.method_list,
    )
    return PendingLogin(token=token, user=user, state=state, challenge=str(challenge))
