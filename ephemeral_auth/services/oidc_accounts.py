"""OpenID Connect sign-in: which local account a provider's identity signs in to.

Called by the backend's mozilla-django-oidc hooks (``ephemeral_auth.oidc.backend``),
re-exported by ``services.oidc``. In this order (docs/oidc.md, "Which account
signs in"): the (issuer, ``sub``) link, compared byte for byte; else an
existing account with a provider-verified email, if the provider allows it;
else a new account. An account is linked by email only when the provider
asserts the address is verified; a user created from an unverified address
gets no email, so it cannot later be linked to (or reset into) the real
owner's account.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef

from .. import clock
from ..exceptions import OIDCError
from ..models import OIDCIdentity, RecoveryCode, UserTwoFactor
from . import engine
from .factors import TwoFactorState, state_from_row, user_email, webauthn_flag
from .inputs import fold, is_plain_text
from .oidc_provider import Provider

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "MAX_EMAIL_CANDIDATES",
    "LinkedUser",
    "create_user",
    "find_linked_user",
    "identity_key",
    "legacy_identity_key",
    "link_identity",
    "normalise_issuer",
    "sync_user",
    "unlink_identities",
    "users_to_link",
    "verified_email",
]

logger = logging.getLogger("ephemeral_auth.oidc")

# Accounts whose address the database equates with a claimed one (case, a collation's
# look-alikes), all re-checked in Python; more than this is refused (account_conflict).
MAX_EMAIL_CANDIDATES = 50


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
        .annotate(
            _ea_has_codes=Exists(RecoveryCode.objects.filter(user_id=OuterRef("user_id"))),
            _ea_has_webauthn=webauthn_flag(),
        )
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
        has_webauthn=bool(getattr(found, "_ea_has_webauthn", False)),
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


def unlink_identities(pks: Iterable[Any], *, using: str | None = None) -> int:
    """Delete these identity links (the admin's delete page); return how many were deleted.

    The user keeps their account and its password; the provider's subject
    no longer signs in as them, and its next sign-in is matched again as a
    first one (by a verified email, when linking by email is on). One DELETE.
    """
    deleted, _by_model = OIDCIdentity._default_manager.using(using).filter(pk__in=list(pks)).delete()
    if deleted:
        logger.info("unlinked %s OIDC identities", deleted)
    return int(deleted)
