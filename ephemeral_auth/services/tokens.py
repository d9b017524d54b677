"""Issue, peek, consume and revoke single-use ephemeral tokens.

Security reasoning:

* Only the SHA-256 digest of a token is stored; the raw token exists in the
  caller's hands only (``IssuedToken.raw``).
* Single use is decided by the database in one statement: a conditional
  ``DELETE ... RETURNING`` whose WHERE clause holds the type, the expiry and
  every binding (browser challenge, resource, user, code). Of N concurrent
  consumers exactly one gets the row back; a presentation with the wrong
  binding matches nothing and therefore consumes nothing.
* Binding fields of a type are mandatory on consumption: a caller cannot skip
  the browser check of a ``pre_auth`` token by forgetting to pass the cookie.
* Every failure is the same :class:`InvalidToken`; the precise reason is only
  logged at DEBUG (without the token).

The consuming statement itself, per database engine, is written in
``services/engine/tokens_sql.py``; this module decides what it must match.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import router

from .. import clock, conf, crypto
from ..exceptions import InvalidInput, InvalidToken
from ..models import EphemeralToken, TokenType
from ..signals import token_consumed, token_issued
from . import engine
from .engine import tokens_sql
from .engine.tokens_sql import matches_exactly
from .inputs import clean_text, is_plain_text

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "IssuedToken", "consume_token", "issue_download", "issue_email_otp_setup", "issue_oidc_exchange",
    "issue_oidc_state", "issue_password_reset", "issue_pre_auth", "issue_token", "limit_expiry",
    "peek_token", "register_wrong_code", "revoke_by_pk", "revoke_tokens", "set_code",
]

logger = logging.getLogger("ephemeral_auth.tokens")

# A raw token is 43 characters; anything far longer is not ours.
MAX_RAW_TOKEN_LENGTH = 512

# Columns a caller may set, with their maximum length.
_TEXT_FIELDS: dict[str, int] = {
    "provider": 64,
    "nonce": 128,
    "code_verifier": 128,
    "challenge_id": 1024,  # raw cookie value; the digest is stored
    "code_hash": 64,
    "resource": 255,
    "methods": 64,
    "next_url": 2048,
    "mode": 16,
}

# What each type must carry. ``user`` is a foreign key, the rest text.
_REQUIRED: dict[str, frozenset[str]] = {
    TokenType.PRE_AUTH: frozenset({"user", "challenge_id", "methods"}),
    TokenType.OIDC_STATE: frozenset({"provider", "nonce", "code_verifier", "challenge_id", "mode"}),
    TokenType.OIDC_EXCHANGE: frozenset({"user", "challenge_id"}),
    TokenType.PASSWORD_RESET: frozenset({"user"}),
    TokenType.EMAIL_OTP_SETUP: frozenset({"user", "code_hash"}),
    TokenType.SLICER_DOWNLOAD: frozenset({"user", "resource"}),
    TokenType.TRUSTED_BROWSER: frozenset({"user", "code_hash"}),  # code_hash: the 2FA fingerprint
}
_OPTIONAL: dict[str, frozenset[str]] = {
    TokenType.PRE_AUTH: frozenset({"code_hash"}),
    TokenType.OIDC_STATE: frozenset({"next_url"}),
    # methods: "mfa" when the provider asserted multi-factor authentication.
    TokenType.OIDC_EXCHANGE: frozenset({"provider", "methods"}),
    TokenType.PASSWORD_RESET: frozenset(),
    TokenType.EMAIL_OTP_SETUP: frozenset(),
    TokenType.SLICER_DOWNLOAD: frozenset(),
    TokenType.TRUSTED_BROWSER: frozenset(),
}
# Bindings that must be presented again to peek at or consume a token.
_BINDINGS: dict[str, frozenset[str]] = {
    TokenType.PRE_AUTH: frozenset({"challenge_id"}),
    TokenType.OIDC_STATE: frozenset({"challenge_id"}),
    # The SPA redeems the exchange in the browser that ran the flow: its binding
    # cookie must come along, so a leaked fragment cannot log in anyone else.
    TokenType.OIDC_EXCHANGE: frozenset({"challenge_id"}),
    TokenType.SLICER_DOWNLOAD: frozenset({"resource"}),
}


@dataclass(frozen=True)
class IssuedToken:
    """A freshly issued token: ``raw`` goes to the client, once."""

    raw: str = field(repr=False)
    token: EphemeralToken

    @property
    def expires_in(self) -> int:
        """Seconds until expiry, rounded down."""
        return max(0, int((self.token.expires_at - self.token.created_at).total_seconds()))


def _token_type(value: Any) -> str:
    if value not in TokenType.values:
        raise InvalidInput("unknown token type", field="token_type")
    return str(value)


def _alias() -> str:
    return router.db_for_write(EphemeralToken)


def issue_token(
    token_type: str,
    *,
    user: AbstractBaseUser | None = None,
    ttl: timedelta | None = None,
    now: datetime | None = None,
    **fields: str,
) -> IssuedToken:
    """Create a token of ``token_type`` and return it with its raw value.

    Raises InvalidInput for an unknown type, a missing required field, a field
    the type does not carry, or a value of the wrong type or size. One INSERT.
    """
    token_type = _token_type(token_type)
    allowed = _REQUIRED[token_type] | _OPTIONAL[token_type]
    unknown = set(fields) - allowed - {"user"}
    if unknown:
        raise InvalidInput(f"{token_type} tokens do not carry {sorted(unknown)}")
    given = {name for name, value in fields.items() if value} | ({"user"} if user else set())
    missing = _REQUIRED[token_type] - given
    if missing:
        raise InvalidInput(f"{token_type} tokens need {sorted(missing)}")
    if user is not None and getattr(user, "pk", None) is None:
        raise InvalidInput("user must be a saved user", field="user")

    values: dict[str, Any] = {}
    for name, value in fields.items():
        values[name] = clean_text(value, field=name, max_length=_TEXT_FIELDS[name], allow_empty=True)
    if values.get("challenge_id"):
        values["challenge_id"] = crypto.digest_token(values["challenge_id"])

    now = now or clock.now()
    lifetime = ttl if ttl is not None else conf.token_ttl(token_type)
    raw = crypto.new_token()
    token = EphemeralToken(
        token=crypto.digest_token(raw),
        token_type=token_type,
        user=user,  # type: ignore[misc]
        expires_at=now + lifetime,
        created_at=now,
        **values,
    )
    token.save(force_insert=True, using=_alias())
    logger.debug("issued %s token #%s", token_type, token.pk)
    token_issued.send(sender=EphemeralToken, token=token)
    return IssuedToken(raw=raw, token=token)


# Typed factories: one per type, so each call site states what it binds.


def issue_pre_auth(
    user: AbstractBaseUser, *, challenge: str, methods: Iterable[str], now: datetime | None = None
) -> IssuedToken:
    """Issue the pending-2FA token bound to a browser challenge and methods."""
    return issue_token(
        TokenType.PRE_AUTH, user=user, challenge_id=challenge, methods=",".join(methods), now=now
    )


def issue_oidc_state(
    *,
    provider: str,
    nonce: str,
    code_verifier: str,
    challenge: str,
    mode: str,
    next_url: str = "",
    now: datetime | None = None,
) -> IssuedToken:
    """Issue the OIDC ``state`` for one authorization flow of one browser."""
    return issue_token(
        TokenType.OIDC_STATE,
        provider=provider,
        nonce=nonce,
        code_verifier=code_verifier,
        challenge_id=challenge,
        mode=mode,
        next_url=next_url,
        now=now,
    )


def issue_oidc_exchange(
    user: AbstractBaseUser,
    *,
    challenge: str,
    provider: str = "",
    mfa: bool = False,
    now: datetime | None = None,
) -> IssuedToken:
    """Issue the short bridge token from an OIDC callback to a single-page app.

    ``challenge`` is the browser's OIDC binding cookie; ``mfa`` records that the
    provider asserted multi-factor authentication (honoured by the exchange).
    """
    return issue_token(
        TokenType.OIDC_EXCHANGE,
        user=user,
        challenge_id=challenge,
        provider=provider,
        methods="mfa" if mfa else "",
        now=now,
    )


def issue_password_reset(user: AbstractBaseUser, *, now: datetime | None = None) -> IssuedToken:
    """Issue a password-reset token for ``user``."""
    return issue_token(TokenType.PASSWORD_RESET, user=user, now=now)


def issue_email_otp_setup(
    user: AbstractBaseUser, *, code_hash: str, now: datetime | None = None
) -> IssuedToken:
    """Issue the token that confirms an email-code enrolment."""
    return issue_token(TokenType.EMAIL_OTP_SETUP, user=user, code_hash=code_hash, now=now)


def issue_download(
    user: AbstractBaseUser, *, resource: str, ttl: timedelta | None = None, now: datetime | None = None
) -> IssuedToken:
    """Issue a one-time link token that opens ``resource`` only."""
    return issue_token(TokenType.SLICER_DOWNLOAD, user=user, resource=resource, ttl=ttl, now=now)


# Reading and consuming.


def _conditions(
    raw: Any,
    token_type: Any,
    *,
    now: datetime,
    challenge_id: Any = None,
    resource: Any = None,
    user: AbstractBaseUser | None = None,
    code_hash: Any = None,
) -> dict[str, Any] | None:
    """Return the ORM lookups a presentation must match, or None if it cannot match."""
    token_type = _token_type(token_type)
    if not is_plain_text(raw, max_length=MAX_RAW_TOKEN_LENGTH) or not raw:
        logger.debug("refused a %s token: malformed", token_type)
        return None
    lookups: dict[str, Any] = {
        "token": crypto.digest_token(raw),
        "token_type": token_type,
        "expires_at__gt": now,
    }
    presented = {"challenge_id": challenge_id, "resource": resource}
    for name in _BINDINGS.get(token_type, frozenset()):
        if not presented[name]:
            logger.debug("refused a %s token: %s missing", token_type, name)
            return None
    if challenge_id is not None:
        if not is_plain_text(challenge_id, max_length=_TEXT_FIELDS["challenge_id"]) or not challenge_id:
            return None
        lookups["challenge_id"] = crypto.digest_token(challenge_id)
    if resource is not None:
        if not is_plain_text(resource, max_length=_TEXT_FIELDS["resource"]) or not resource:
            return None
        lookups["resource"] = resource
    if user is not None:
        lookups["user_id"] = user.pk
    if code_hash is not None:
        if not is_plain_text(code_hash, max_length=64) or not code_hash:
            return None
        lookups["code_hash"] = code_hash
    return lookups


def peek_token(
    raw: Any,
    token_type: str,
    *,
    challenge_id: str | None = None,
    resource: str | None = None,
    user: AbstractBaseUser | None = None,
    related: tuple[str, ...] = (),
    now: datetime | None = None,
) -> EphemeralToken | None:
    """Return the live token matching every binding, without using it up.

    ``related`` names ``select_related`` paths joined in the same SELECT
    (e.g. the pending login's user and their 2FA settings).
    """
    lookups = _conditions(
        raw, token_type, now=now or clock.now(), challenge_id=challenge_id, resource=resource, user=user
    )
    if lookups is None:
        return None
    queryset = EphemeralToken.objects.using(_alias())
    if related:
        # Never select_related() without names: that joins every non-null relation
        # (none here) and is deprecated since Django 6.1.
        queryset = queryset.select_related(*related)
    rows = list(queryset.filter(**lookups)[:1])
    return rows[0] if rows and matches_exactly(rows[0], lookups) else None


# Looked up here at call time: a test forces the SELECT-then-DELETE path by replacing it.
_supports_delete_returning = tokens_sql.supports_delete_returning


def consume_token(
    raw: Any,
    token_type: str,
    *,
    challenge_id: str | None = None,
    resource: str | None = None,
    user: AbstractBaseUser | None = None,
    code_hash: str | None = None,
    now: datetime | None = None,
) -> EphemeralToken:
    """Use up the token and return its (now deleted) row.

    One ``DELETE ... RETURNING`` where the backend has it (PostgreSQL, SQLite
    >= 3.35, MariaDB >= 10.5); elsewhere, and on a Galera cluster, a SELECT
    followed by a DELETE whose row count decides (services/engine/). A
    certification conflict is a lost race: InvalidToken. Raises InvalidToken if nothing matched (unknown,
    expired, already used, or presented with the wrong binding), and
    InvalidInput for an unknown token type.
    """
    lookups = _conditions(
        raw,
        token_type,
        now=now or clock.now(),
        challenge_id=challenge_id,
        resource=resource,
        user=user,
        code_hash=code_hash,
    )
    if lookups is None:
        raise InvalidToken()
    alias = _alias()
    with engine.conflict_as(InvalidToken, using=alias):
        token = tokens_sql.delete_matching(alias, lookups, returning=_supports_delete_returning)
    if token is None:
        logger.debug("refused a %s token: no live match", lookups["token_type"])
        raise InvalidToken()
    logger.debug("consumed %s token #%s", token.token_type, token.pk)
    token_consumed.send(sender=EphemeralToken, token=token)
    return token


def set_code(token: EphemeralToken, *, code_hash: str) -> bool:
    """Attach a new code digest to a live token and reset its attempt count.

    Returns False if the token was consumed or revoked meanwhile.
    """
    code_hash = clean_text(code_hash, field="code_hash", max_length=64)
    updated = (
        EphemeralToken.objects.using(_alias())
        .filter(pk=token.pk, token_type=token.token_type)
        .update(code_hash=code_hash, attempts=0)
    )
    return updated == 1


def register_wrong_code(token: EphemeralToken, *, max_attempts: int) -> bool:
    """Count one wrong code against ``token``; burn it once the budget is spent.

    Decided by the database: ``attempts = attempts + 1`` only while below the
    budget, so parallel wrong guesses cannot exceed it. Returns whether the
    token is still usable.
    """
    from django.db.models import F

    alias = _alias()
    bumped = (
        EphemeralToken.objects.using(alias)
        .filter(pk=token.pk, attempts__lt=max_attempts - 1)
        .update(attempts=F("attempts") + 1)
    )
    if bumped:
        return True
    EphemeralToken.objects.using(alias).filter(pk=token.pk).delete()
    logger.debug("burnt %s token #%s after too many wrong codes", token.token_type, token.pk)
    return False


def revoke_tokens(
    *,
    user: AbstractBaseUser | None = None,
    token_type: str | None = None,
    token_types: Iterable[str] | None = None,
) -> int:
    """Delete outstanding tokens of a user and/or type; return how many."""
    queryset = EphemeralToken.objects.using(_alias()).all()
    if user is None and token_type is None and token_types is None:
        raise InvalidInput("revoke_tokens needs a user or a token type")
    if user is not None:
        queryset = queryset.filter(user_id=user.pk)
    if token_type is not None:
        queryset = queryset.filter(token_type=_token_type(token_type))
    if token_types is not None:
        queryset = queryset.filter(token_type__in=[_token_type(t) for t in token_types])
    count = queryset._raw_delete(queryset.db)
    if count:
        logger.debug("revoked %s tokens", count)
    return int(count)


def revoke_by_pk(pks: Iterable[Any], *, using: str | None = None) -> int:
    """Delete the tokens with these primary keys (the admin's "revoke"); return how many were deleted.

    A token consumed meanwhile is simply not counted. One DELETE (through
    Django's collector, which sends the delete signals if a site connected
    any). ``using``: the database the caller read the tokens from (default:
    the tokens' database for writes).
    """
    deleted, _by_model = (
        EphemeralToken._default_manager.using(using or _alias()).filter(pk__in=list(pks)).delete()
    )
    return int(deleted)


# Added for the two-factor login (docs/two-factor.md): cap a token's lifetime.


def limit_expiry(token: EphemeralToken, *, expires_at: datetime) -> bool:
    """Bring a live token's expiry forward to ``expires_at`` (never later); return whether it still lives."""
    updated = (
        EphemeralToken.objects.using(_alias())
        .filter(pk=token.pk, token_type=token.token_type, expires_at__gt=expires_at)
        .update(expires_at=expires_at)
    )
    if updated:
        token.expires_at = expires_at
        return True
    return EphemeralToken.objects.using(_alias()).filter(pk=token.pk).exists()
