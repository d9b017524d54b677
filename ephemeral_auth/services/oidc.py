"""OpenID Connect sign-in policy: flow state, browser binding, user resolution, SPA exchange.

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
  cannot later be linked to (or reset into) the real owner's account.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils.crypto import get_random_string

from .. import clock, conf
from ..exceptions import InvalidToken, OIDCError
from ..models import EventType, OIDCIdentity, RecoveryCode, TokenType, UserTwoFactor
from ..oidc import providers
from ..oidc.providers import Provider
from . import engine, ratelimit, tokens
from .factors import TwoFactorState, state_from_row, user_email
from .inputs import fold, is_plain_text

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "MODES",
    "Authorization",
    "CallbackFlow",
    "LinkedUser",
    "asserted_mfa",
    "begin_authorization",
    "consume_state",
    "create_user",
    "find_linked_user",
    "is_binding",
    "issue_exchange",
    "link_identity",
    "new_binding",
    "nonce_matches",
    "redeem_exchange",
    "sync_user",
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
# Accounts whose address the database equates with a claimed one (case, a collation's
# look-alikes), all re-checked in Python; more than this is refused (account_conflict).
MAX_EMAIL_CANDIDATES = 50

# RFC 7636 section 4.1: unreserved characters only.
_PKCE_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
# A binding value is what crypto.new_token() makes: 43 url-safe characters.
_BINDING = re.compile(r"^[A-Za-z0-9_-]{43}$")
# Authorization parameters an extra_params setting may not override.
_RESERVED_PARAMS = frozenset(
    {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"}
)


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


def begin_authorization(
    provider: Provider,
    *,
    redirect_uri: str,
    mode: str,
    next_url: str,
    binding: str,
    ip: str = "0.0.0.0",  # noqa: S104 - a key, not a bind address
    extra_params: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Authorization:
    """Store a new flow (state, nonce, PKCE verifier, mode, next) and return the provider URL.

    Bounded per client address (``oidc_authorize``, 20 per state lifetime by
    default): the flow is counted first, in the conditional-INSERT style of
    every limit, so one address never holds more than that many live
    ``oidc_state`` rows; beyond it RateLimited (the view answers 429). Then
    the provider's discovery document may be fetched (cached), then the row
    is written. Three statements: the count's INSERT and recount, the state's
    INSERT. Raises OIDCError, RateLimited.
    """
    # Here, not at the top: mozilla-django-oidc comes with the oidc extra (see ephemeral_auth.oidc).
    from mozilla_django_oidc.utils import generate_code_challenge

    if mode not in MODES:
        raise OIDCError("invalid_request")
    if not is_binding(binding):
        raise OIDCError("invalid_request")
    ratelimit.attempt(EventType.OIDC_AUTHORIZE, ratelimit.ip_key(ip), now=now)
    where = providers.endpoints(provider)
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
    params = {key: value for key, value in (extra_params or {}).items() if key not in _RESERVED_PARAMS}
    params.update(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "scope": provider.scopes,
            # The raw state exists only here and in the browser; the database holds its digest.
            "state": issued.raw,
            "nonce": nonce,
            "code_challenge": generate_code_challenge(verifier, "S256"),
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in where.authorization_endpoint else "?"
    return Authorization(
        url=f"{where.authorization_endpoint}{separator}{urlencode(params)}",
        binding=binding,
        max_age=issued.expires_in,
        state=issued.raw,
    )


@dataclass
class CallbackFlow:
    """A consumed flow on its way through the backend, and what the backend learnt."""

    provider_slug: str
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    mode: str
    next_url: str
    provider: Provider | None = None
    # Set by the backend: the verified ID token's claims, and those merged with userinfo.
    id_claims: dict[str, Any] = field(default_factory=dict, repr=False)
    claims: dict[str, Any] = field(default_factory=dict, repr=False)
    # Set by the backend for an already-linked user: their 2FA state, read with the link.
    two_factor_state: TwoFactorState | None = None

    @property
    def two_factor_methods(self) -> list[str] | None:
        return self.two_factor_state.methods() if self.two_factor_state is not None else None


def consume_state(raw_state: Any, *, binding: Any, now: datetime | None = None) -> CallbackFlow:
    """Use up the flow's state, presented with the browser's binding cookie.

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


# User resolution (called by the backend's mozilla-django-oidc hooks).


def _claim_text(claims: Mapping[str, Any], name: str, *, max_length: int) -> str:
    value = claims.get(name)
    if isinstance(value, str) and is_plain_text(value, max_length=max_length):
        return value.strip()
    return ""


def verified_email(provider: Provider, claims: Mapping[str, Any]) -> str:
    """Return the claims' email if the provider vouches for it, else ""."""
    email = _claim_text(claims, provider.claim("email"), max_length=254)
    if not email or "@" not in email:
        return ""
    if provider.assume_email_verified:
        return email
    verified = claims.get(provider.claim("email_verified"))
    # Some providers send the string "true"; anything else is "not verified".
    if verified is True or (isinstance(verified, str) and verified.lower() == "true"):
        return email
    return ""


@dataclass(frozen=True)
class LinkedUser:
    """The user linked to a provider's subject, with their 2FA methods read alongside."""

    user: AbstractBaseUser
    state: TwoFactorState

    @property
    def two_factor_methods(self) -> list[str]:
        return self.state.methods()


def identity_key(issuer: str, subject: str) -> str:
    """Return the key of the identity (issuer, ``sub``): hex SHA-256, compared byte for byte on every backend."""
    return OIDCIdentity.key_for(normalise_issuer(issuer), subject)


def legacy_identity_key(provider_slug: str, subject: str) -> str:
    """The key migration 0005 gave links made before it (issuer unknown): (provider slug, ``sub``)."""
    return OIDCIdentity.legacy_key_for(provider_slug, subject)


def normalise_issuer(issuer: str) -> str:
    """The issuer as identities are keyed by it: without a trailing slash (as the ``iss`` check compares)."""
    return issuer.rstrip("/")


def find_linked_user(provider: Provider, subject: str, *, issuer: str) -> LinkedUser | None:
    """Return the user linked to (``issuer``, ``subject``).

    One SELECT: the identity, its user, the user's 2FA row and whether they
    have recovery codes, so the login step that follows needs no other read.
    The subject is compared byte for byte (through ``subject_key``), never
    through the column's collation. A link made before migration 0005 is
    found by its (provider, subject) key and rewritten to the issuer's (one
    UPDATE, once).
    """
    key = identity_key(issuer, subject)
    legacy = legacy_identity_key(provider.slug, subject)
    identity = (
        OIDCIdentity.objects.select_related("user", "user__two_factor")
        .annotate(_ea_has_codes=Exists(RecoveryCode.objects.filter(user_id=OuterRef("user_id"))))
        .filter(subject_key__in=[key, legacy])
        .order_by("-subject_key")[:2]
    )
    rows = [row for row in identity if row.subject == subject]
    found = next((row for row in rows if row.subject_key == key), None)
    if found is None:
        found = next((row for row in rows if row.subject_key == legacy and row.provider == provider.slug), None)
        if found is not None:
            OIDCIdentity.objects.filter(pk=found.pk, subject_key=legacy).update(
                subject_key=key, issuer=normalise_issuer(issuer)
            )
    if found is None:
        return None
    user = found.user
    try:
        row = user.two_factor  # type: ignore[attr-defined]
    except UserTwoFactor.DoesNotExist:
        row = None
    state = state_from_row(
        user.pk,
        row,
        has_recovery_codes=bool(getattr(found, "_ea_has_codes", False)),
        has_email=bool(user_email(user)),
    )
    return LinkedUser(user=user, state=state)


def users_to_link(provider: Provider, claims: Mapping[str, Any]) -> list[AbstractBaseUser]:
    """Return the existing account a first sign-in links to ([] if none). Raises OIDCError.

    Linking by email is opt-in per provider (``link_by_verified_email``,
    off by default) and only for a provider-verified address. The database
    finds candidates case-insensitively; each is then re-checked in Python
    under one normalisation (``inputs.fold``: NFKC, then casefold), so a
    look-alike such as a dotless "ı" that a collation equates with "i" links
    nothing. Staff and superuser accounts are never linked by email unless
    the provider's ``link_staff_by_verified_email`` says so. An address that
    an account already uses, when it may not link, is refused rather than
    given a second account.
    """
    user_model = get_user_model()
    email_field = user_model.get_email_field_name()
    email = _claim_text(claims, provider.claim("email"), max_length=254)
    if not email:
        return []
    wanted = fold(email)
    # Every candidate the database equates with the address is re-checked, not a few of
    # them: look-alike accounts (created on purpose) must not hide the real one. Past
    # the bound, refuse rather than guess.
    found = list(user_model._default_manager.filter(**{f"{email_field}__iexact": email}).order_by("pk")[
        : MAX_EMAIL_CANDIDATES + 1
    ])
    if len(found) > MAX_EMAIL_CANDIDATES:
        logger.warning("OIDC %s: too many accounts share an address up to case; refused", provider.slug)
        raise OIDCError("account_conflict")
    matches = [user for user in found if fold(str(getattr(user, email_field, "") or "")) == wanted]
    if not matches:
        return []
    if not verified_email(provider, claims):
        logger.info("OIDC %s: refused to link by an unverified email", provider.slug)
        raise OIDCError("email_not_verified")
    if not provider.link_by_verified_email:
        raise OIDCError("account_exists")
    if len(matches) > 1:
        raise OIDCError("account_conflict")
    user = matches[0]
    privileged = bool(getattr(user, "is_staff", False) or getattr(user, "is_superuser", False))
    if privileged and not provider.link_staff_by_verified_email:
        logger.info("OIDC %s: refused to link a staff account by email", provider.slug)
        raise OIDCError("account_exists")
    if OIDCIdentity.objects.filter(provider=provider.slug, user=user).exists():
        # The account is linked to another subject of this provider: never re-point it.
        raise OIDCError("account_conflict")
    return [user]


def link_identity(user: AbstractBaseUser, provider: Provider, claims: Mapping[str, Any]) -> OIDCIdentity:
    """Record that (``claims['iss']``, ``claims['sub']``) is ``user``. Raises OIDCError on a conflict.

    ``claims['iss']`` is the verified ID token's issuer (the backend compared
    it with the provider's).
    """
    issuer = normalise_issuer(str(claims.get("iss") or ""))
    subject = claims["sub"]
    try:
        with (
            engine.conflict_as(lambda: OIDCError("account_conflict")),
            transaction.atomic(using=OIDCIdentity.objects.db),
        ):
            return OIDCIdentity.objects.create(
                user=user,  # type: ignore[misc]
                provider=provider.slug,
                issuer=issuer,
                subject=subject,
                subject_key=identity_key(issuer, subject),
                email=verified_email(provider, claims),
                last_login_at=clock.now(),
            )
    except IntegrityError:
        # A parallel first sign-in linked it first: refuse rather than guess.
        raise OIDCError("account_conflict") from None


def _username_candidates(provider: Provider, claims: Mapping[str, Any]) -> Iterable[str]:
    for source in (
        _claim_text(claims, provider.claim("username"), max_length=150),
        verified_email(provider, claims).split("@")[0],
        _claim_text(claims, "sub", max_length=255),
    ):
        cleaned = re.sub(r"[^\w.@+-]", "", source)[:120]
        if cleaned:
            yield cleaned
    yield "user"


def _free_username(provider: Provider, claims: Mapping[str, Any]) -> str:
    user_model = get_user_model()
    field_name = user_model.USERNAME_FIELD
    base = next(iter(_username_candidates(provider, claims)))
    candidate = base
    for _ in range(20):
        if not user_model._default_manager.filter(**{f"{field_name}__iexact": candidate}).exists():
            return candidate
        candidate = f"{base}{secrets.randbelow(10**6)}"
    raise OIDCError("account_conflict")


def create_user(provider: Provider, claims: Mapping[str, Any]) -> AbstractBaseUser:
    """Create a local account for a first sign-in, linked to the provider's subject."""
    user_model = get_user_model()
    email_field = user_model.get_email_field_name()
    email = verified_email(provider, claims)
    if user_model.USERNAME_FIELD == email_field:
        # Email-as-username models: only a verified address may become the login name.
        if not email:
            raise OIDCError("missing_claims")
        username, fields = email, {}
    else:
        username, fields = _free_username(provider, claims), {email_field: email}
    for name in ("first_name", "last_name"):
        value = _claim_text(claims, provider.claim(name), max_length=150)
        if value and _has_field(user_model, name):
            fields[name] = value
    try:
        with (
            engine.conflict_as(lambda: OIDCError("account_conflict")),
            transaction.atomic(using=user_model._default_manager.db),
        ):
            user = user_model._default_manager.create_user(username, **fields)  # type: ignore[attr-defined]
            user.set_unusable_password()
            user.save(update_fields=["password"])
            link_identity(user, provider, claims)
    except IntegrityError:
        raise OIDCError("account_conflict") from None
    logger.info("OIDC %s: created user #%s", provider.slug, user.pk)
    return user  # type: ignore[no-any-return]


def _has_field(model: Any, name: str) -> bool:
    from django.core.exceptions import FieldDoesNotExist

    try:
        model._meta.get_field(name)
    except (FieldDoesNotExist, AttributeError):
        return False
    return True


def sync_user(user: AbstractBaseUser, provider: Provider, claims: Mapping[str, Any]) -> None:
    """Copy first and last name from the claims when they changed (sync_user_fields)."""
    changed = []
    for name in ("first_name", "last_name"):
        value = _claim_text(claims, provider.claim(name), max_length=150)
        if value and _has_field(user, name) and getattr(user, name) != value:
            setattr(user, name, value)
            changed.append(name)
    if changed:
        user.save(update_fields=changed)


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
