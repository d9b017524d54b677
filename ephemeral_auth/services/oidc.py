"""OpenID Connect sign-in policy: flow state, browser binding, SPA exchange (and user resolution, re-exported).

Security reasoning (docs/oidc.md has the long form):

* The ``state`` of one authorization flow is an ``oidc_state`` token: only its
  digest is stored, next to the nonce, the PKCE verifier, the mode and the
  per-flow ``next`` URL. It lives in the database, not in the session, so no
  session cookie is needed at the callback (SameSite=Strict works), parallel
  tabs cannot overwrite each other's state, and any worker can finish a flow
  another worker started.
* Each flow is bound to the browser that started it by an HttpOnly cookie
  whose digest is a WHERE-clause binding of the state: a callback URL replayed
  in another browser (login CSRF: an attacker's own code and state sent to a
  victim) matches no row, consumes nothing and logs nobody in. Every flow gets
  a cookie of its own with a fresh value (never one the request brought, which
  a sibling subdomain could have planted), so tabs do not evict each other.
* Each provider has its own callback URL, and the state names its provider:
  a response that comes back to another provider's callback (a mix-up) is
  refused. Identities are (issuer, ``sub``), compared byte for byte.
* The state is consumed (one atomic DELETE) before any network call, also on
  an ``?error=`` callback: a code or state can be presented once.
* An account is linked by email only when the provider asserts the address is
  verified; a user created from an unverified address gets no email, so it
  cannot later be linked to (or reset into) the real owner's account
  (``services.oidc_accounts``, re-exported here).

Below the OIDC integration (``ephemeral_auth.oidc``): a provider comes in as a
plain :class:`~.oidc_provider.Provider`; discovery, the authorization request
(``oidc.authorization.begin_authorization``) and the code exchange live there.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.utils.crypto import get_random_string

from .. import conf
from ..exceptions import InvalidToken, OIDCError
from ..models import EventType, TokenType
from . import ratelimit, tokens
from .inputs import is_plain_text
from .oidc_accounts import (
    MAX_EMAIL_CANDIDATES,
    LinkedUser,
    create_user,
    find_linked_user,
    identity_key,
    legacy_identity_key,
    link_identity,
    normalise_issuer,
    sync_user,
    unlink_identities,
    users_to_link,
    verified_email,
)
from .oidc_provider import Provider

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "MAX_EMAIL_CANDIDATES",
    "MODES",
    "Authorization",
    "CallbackFlow",
    "Exchange",
    "LinkedUser",
    "Provider",
    "StoredFlow",
    "admit_flow",
    "asserted_mfa",
    "consume_state",
    "create_user",
    "find_linked_user",
    "identity_key",
    "is_binding",
    "issue_exchange",
    "legacy_identity_key",
    "link_identity",
    "new_binding",
    "nonce_matches",
    "normalise_issuer",
    "redeem_exchange",
    "store_flow",
    "sync_user",
    "unlink_identities",
    "users_to_link",
    "verified_email",
]

logger = logging.getLogger("ephemeral_auth.oidc")

MODES = ("session", "spa")

# Longest accepted callback parameters (the original application's caps, #1024): a provider's
# codes are far shorter; anything longer is refused before it reaches a query.
MAX_STATE_LENGTH = 512
MAX_CODE_LENGTH = 2048
MAX_ERROR_LENGTH = 256
# RFC 7636 section 4.1: unreserved characters only.
_PKCE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
# A binding value is what crypto.new_token() makes: 43 url-safe characters.
_BINDING = re.compile(r"^[A-Za-z0-9_-]{43}$")


def new_binding() -> str:
    """Return a fresh browser-binding value (256 bits) for the flow cookie."""
    return secrets.token_urlsafe(32)


def is_binding(value: Any) -> bool:
    """Return whether a cookie value has the shape of a binding value."""
    return isinstance(value, str) and bool(_BINDING.match(value))


@dataclass(frozen=True)
class Authorization:
    """A started flow: send the browser to ``url``; set the binding cookie."""

    url: str = field(repr=False)  # carries the raw state
    binding: str = field(repr=False)
    max_age: int
    state: str = field(default="", repr=False)  # names the flow's binding cookie


def admit_flow(
    *,
    mode: str,
    binding: str,
    ip: str = "0.0.0.0",  # noqa: S104 - a key, not a bind address
    now: datetime | None = None,
) -> None:
    """Check that a flow may start: a known mode, a binding of the right shape, the per-address bound.

    Bounded per client address (``oidc_authorize``, 20 per state lifetime by
    default): the flow is counted first, in the conditional-INSERT style of
    every limit, so one address never holds more than that many live
    ``oidc_state`` rows; beyond it RateLimited (the view answers 429). Two
    statements: the count's INSERT and recount. Raises OIDCError, RateLimited.
    """
    if mode not in MODES:
        raise OIDCError("invalid_request")
    if not is_binding(binding):
        raise OIDCError("invalid_request")
    ratelimit.attempt(EventType.OIDC_AUTHORIZE, ratelimit.ip_key(ip), now=now)


@dataclass(frozen=True)
class StoredFlow:
    """A flow written by :func:`store_flow`: what the authorization request carries."""

    state: str = field(repr=False)  # raw: exists only here and in the browser
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    expires_in: int


def store_flow(
    provider: Provider,
    *,
    mode: str,
    next_url: str,
    binding: str,
    now: datetime | None = None,
) -> StoredFlow:
    """Store a new flow (state, nonce, PKCE verifier, mode, next), bound to ``binding``. One INSERT.

    Called after :func:`admit_flow` (and after the provider's endpoints are
    known: a provider that cannot be reached leaves no row behind).
    """
    nonce = secrets.token_urlsafe(32)
    verifier = get_random_string(provider.pkce_verifier_length, _PKCE_ALPHABET)
    issued = tokens.issue_oidc_state(
        provider=provider.slug,
        nonce=nonce,
        code_verifier=verifier,
        challenge=binding,
        mode=mode,
        next_url=next_url,
        now=now,
    )
    # The database holds the state's digest only.
    return StoredFlow(state=issued.raw, nonce=nonce, code_verifier=verifier, expires_in=issued.expires_in)


@dataclass(frozen=True)
class CallbackFlow:
    """A consumed flow on its way through the backend.

    ``consume_state`` makes it from the flow's row; the callback view adds
    the ``provider`` and the callback's ``code`` (``dataclasses.replace``),
    and the backend its own copy with the verified ID token's claims
    (``id_claims``, for its hooks). Nothing is written back: what the
    backend learnt comes back with its user (``oidc.backend.callback_result``).
    """

    provider_slug: str
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    mode: str
    next_url: str
    provider: Provider | None = None
    code: str = field(default="", repr=False)
    id_claims: Mapping[str, Any] = field(default_factory=dict, repr=False)


def consume_state(raw_state: Any, *, binding: Any, now: datetime | None = None) -> CallbackFlow:
    """Use up the flow's state, presented with the browser's binding cookie.

    The one place the callback's ``state`` is checked: missing, empty, too
    long or not plain text is OIDCError("invalid_request"); the view and the
    backend take the flow this returns, never the ``state`` parameter again.
    One DELETE. Nothing is consumed when the binding is missing or wrong (a
    callback opened in another browser), so it cannot burn the real browser's
    flow either. Raises OIDCError("invalid_state") for unknown, expired,
    replayed or foreign-browser states.
    """
    if not is_plain_text(raw_state, max_length=MAX_STATE_LENGTH) or not raw_state:
        raise OIDCError("invalid_request")
    if not is_binding(binding):
        logger.debug("OIDC callback without a binding cookie")
        raise OIDCError("invalid_state")
    try:
        row = tokens.consume_token(raw_state, TokenType.OIDC_STATE, challenge_id=binding, now=now)
    except InvalidToken:
        raise OIDCError("invalid_state") from None
    return CallbackFlow(
        provider_slug=row.provider,
        nonce=row.nonce,
        code_verifier=row.code_verifier,
        mode=row.mode if row.mode in MODES else "session",
        next_url=row.next_url,
    )


def nonce_matches(flow: CallbackFlow, presented: Any) -> bool:
    """Compare the ID token's nonce with the flow's, in constant time."""
    if not isinstance(presented, str):
        return False
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), flow.nonce.encode("utf-8", "surrogatepass"))


def asserted_mfa(provider: Provider, id_claims: Mapping[str, Any]) -> bool:
    """Return whether this provider is trusted for MFA and its ID token's amr says MFA happened.

    Only values that mean *several* factors count: RFC 8176's ``mfa`` by
    default (``EPHEMERAL_AUTH_OIDC_MFA_AMR_VALUES``, or the provider's
    ``mfa_amr_values``). A single method such as ``otp`` or ``hwk`` says
    how one factor was proven, not that there were two.
    """
    if not provider.trust_amr:
        return False
    amr = id_claims.get("amr")
    if not isinstance(amr, list):
        return False
    accepted = provider.mfa_amr_values
    if accepted is None:
        accepted = frozenset(conf.get("OIDC_MFA_AMR_VALUES") or ())
    return any(isinstance(value, str) and value in accepted for value in amr)


# The SPA exchange.


def issue_exchange(
    user: AbstractBaseUser, *, provider: str, binding: str, mfa: bool = False, now: datetime | None = None
) -> tokens.IssuedToken:
    """Issue the short, single-use token the SPA redeems at oidc/exchange/, bound to this browser."""
    return tokens.issue_oidc_exchange(user, challenge=binding, provider=provider, mfa=mfa, now=now)


@dataclass(frozen=True)
class Exchange:
    """A redeemed exchange: the user and whether the provider asserted MFA."""

    user: AbstractBaseUser
    mfa: bool


def redeem_exchange(raw: Any, *, binding: Any, now: datetime | None = None) -> Exchange:
    """Use up an exchange token presented with the browser's binding cookie.

    Raises InvalidToken (unknown, used, expired, other browser) or
    OIDCError("account_inactive").
    """
    if not is_binding(binding):
        raise InvalidToken()
    row = tokens.consume_token(raw, TokenType.OIDC_EXCHANGE, challenge_id=binding, now=now)
    user_model = get_user_model()
    user = user_model._default_manager.filter(pk=row.user_id).first() if row.user_id is not None else None
    if user is None:
        raise InvalidToken()
    if getattr(user, "is_active", True) is False:
        raise OIDCError("account_inactive")
    return Exchange(user=user, mfa="mfa" in row.method_list)


# Names that moved up, out of the services (into the OIDC integration that they need).
_MOVED = {"begin_authorization": "ephemeral_auth.oidc.authorization.begin_authorization"}


def __getattr__(name: str) -> Any:
    """Deprecated names: ``begin_authorization`` is ``oidc.authorization.begin_authorization`` (until 0.3)."""
    if name in _MOVED:
        from ..oidc import authorization

        warnings.warn(
            f"ephemeral_auth.services.oidc.{name} moved to {_MOVED[name]}; the old name goes in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(authorization, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
