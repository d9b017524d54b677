"""The registry of OpenID providers, read from settings at call time.

Two sources, merged:

* ``EPHEMERAL_AUTH_OIDC_PROVIDERS = {slug: {...}}`` — any number of providers
  (keys documented in docs/oidc.md and in :data:`PROVIDER_KEYS`);
* mozilla-django-oidc's own settings (``OIDC_RP_CLIENT_ID``,
  ``OIDC_OP_AUTHORIZATION_ENDPOINT``, ...) — the provider ``default``, so a
  project switching from plain mozilla-django-oidc keeps its configuration.

A bad configuration is logged and surfaces as the ``provider_misconfigured``
code of the flow that hits it, never as a 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from .. import conf
from ..exceptions import OIDCError
from ..services.oidc_provider import DEFAULT_CLAIMS, Provider
from . import discovery

__all__ = [
    "DEFAULT_CLAIMS",
    "DEFAULT_SLUG",
    "PROVIDER_KEYS",
    "Endpoints",
    "Provider",
    "all_providers",
    "endpoints",
    "get_provider",
]

logger = logging.getLogger("ephemeral_auth.oidc")

# The slug of the provider made from mozilla-django-oidc's OIDC_* settings.
DEFAULT_SLUG = "default"

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

PROVIDER_KEYS = frozenset(
    {
        "name",
        "discovery_url",
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
        "client_id",
        "client_secret",
        "scopes",
        "sign_algo",
        "idp_sign_key",
        "token_auth_method",
        "claims",
        "create_users",
        "link_by_verified_email",
        "link_staff_by_verified_email",
        "shared_callback",
        "assume_email_verified",
        "trust_amr",
        "mfa_amr_values",
        "use_userinfo",
        "sync_user_fields",
        "extra_params",
        "pkce_verifier_length",
    }
)


@dataclass(frozen=True)
class Endpoints:
    """Where a provider is reached, after discovery; every URL already checked."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    # RFC 9207: the provider says it sends ``iss`` in every authorization response.
    iss_parameter_supported: bool = False


def _text(config: Mapping[str, Any], key: str, default: str = "") -> str:
    value = config.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{key} must be text")
    return value


def _build(slug: str, config: Mapping[str, Any]) -> Provider:
    if not _SLUG.match(slug):
        raise ValueError("slugs are 1-64 characters of a-z, 0-9, '_' and '-'")
    unknown = set(config) - PROVIDER_KEYS
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    client_id = _text(config, "client_id")
    if not client_id:
        raise ValueError("client_id is required")
    if not config.get("discovery_url") and not (
        config.get("authorization_endpoint") and config.get("token_endpoint") and config.get("issuer")
    ):
        raise ValueError("give discovery_url, or issuer + authorization_endpoint + token_endpoint")
    scopes = config.get("scopes", "openid email profile")
    if isinstance(scopes, list | tuple):
        scopes = " ".join(str(s) for s in scopes)
    if "openid" not in str(scopes).split():
        raise ValueError("scopes must include openid")
    method = _text(config, "token_auth_method", "client_secret_post")
    if method not in ("client_secret_post", "client_secret_basic"):
        raise ValueError("token_auth_method is client_secret_post or client_secret_basic")
    verifier_length = int(config.get("pkce_verifier_length", 64))
    if not 43 <= verifier_length <= 128:
        raise ValueError("pkce_verifier_length must be 43-128 (RFC 7636)")
    amr_values = config.get("mfa_amr_values")
    extra = dict(config.get("extra_params") or {})
    return Provider(
        slug=slug,
        name=_text(config, "name") or slug.replace("-", " ").replace("_", " ").title(),
        client_id=client_id,
        client_secret=_text(config, "client_secret"),
        discovery_url=_text(config, "discovery_url"),
        issuer=_text(config, "issuer"),
        authorization_endpoint=_text(config, "authorization_endpoint"),
        token_endpoint=_text(config, "token_endpoint"),
        jwks_uri=_text(config, "jwks_uri"),
        userinfo_endpoint=_text(config, "userinfo_endpoint"),
        scopes=str(scopes),
        sign_algo=_text(config, "sign_algo", "RS256"),
        idp_sign_key=config.get("idp_sign_key"),
        token_auth_method=method,
        claims={**DEFAULT_CLAIMS, **dict(config.get("claims") or {})},
        create_users=bool(config.get("create_users", True)),
        link_by_verified_email=bool(config.get("link_by_verified_email", False)),
        link_staff_by_verified_email=bool(config.get("link_staff_by_verified_email", False)),
        shared_callback=bool(config.get("shared_callback", False)),
        assume_email_verified=bool(config.get("assume_email_verified", False)),
        trust_amr=bool(config.get("trust_amr", False)),
        mfa_amr_values=frozenset(amr_values) if amr_values is not None else None,
        use_userinfo=bool(config.get("use_userinfo", True)),
        sync_user_fields=bool(config.get("sync_user_fields", False)),
        extra_params={str(k): str(v) for k, v in extra.items()},
        pkce_verifier_length=verifier_length,
    )


def _mozilla_default() -> dict[str, Any] | None:
    """Translate mozilla-django-oidc's settings into a provider configuration."""
    client_id = getattr(settings, "OIDC_RP_CLIENT_ID", None)
    if not client_id:
        return None
    config: dict[str, Any] = {
        "name": getattr(settings, "OIDC_RP_PROVIDER_NAME", "Single sign-on"),
        "client_id": client_id,
        "client_secret": getattr(settings, "OIDC_RP_CLIENT_SECRET", "") or "",
        # OIDC_OP_ISSUER / OIDC_OP_DISCOVERY_URL are ours: mozilla-django-oidc does not check iss.
        "issuer": getattr(settings, "OIDC_OP_ISSUER", ""),
        "discovery_url": getattr(settings, "OIDC_OP_DISCOVERY_URL", ""),
        "authorization_endpoint": getattr(settings, "OIDC_OP_AUTHORIZATION_ENDPOINT", ""),
        "token_endpoint": getattr(settings, "OIDC_OP_TOKEN_ENDPOINT", ""),
        "jwks_uri": getattr(settings, "OIDC_OP_JWKS_ENDPOINT", "") or "",
        "userinfo_endpoint": getattr(settings, "OIDC_OP_USER_ENDPOINT", "") or "",
        "scopes": getattr(settings, "OIDC_RP_SCOPES", "openid email"),
        # RS256 unless set: an HS256 ID token is signed with the client secret, which the
        # provider and every other holder of the secret can forge (mozilla-django-oidc's default).
        "sign_algo": getattr(settings, "OIDC_RP_SIGN_ALGO", "RS256"),
        "idp_sign_key": getattr(settings, "OIDC_RP_IDP_SIGN_KEY", None),
        "token_auth_method": (
            "client_secret_basic" if getattr(settings, "OIDC_TOKEN_USE_BASIC_AUTH", False) else "client_secret_post"
        ),
        "create_users": getattr(settings, "OIDC_CREATE_USER", True),
        "extra_params": getattr(settings, "OIDC_AUTH_REQUEST_EXTRA_PARAMS", {}),
        "pkce_verifier_length": getattr(settings, "OIDC_PKCE_CODE_VERIFIER_SIZE", 64),
        # mozilla-django-oidc's one callback URL (OIDC_AUTHENTICATION_CALLBACK_URL) is what such
        # projects registered at their provider.
        "shared_callback": True,
    }
    return config


def _configurations() -> dict[str, Mapping[str, Any]]:
    configured = conf.get("OIDC_PROVIDERS") or {}
    if not isinstance(configured, Mapping):
        logger.error("EPHEMERAL_AUTH_OIDC_PROVIDERS must be a dict of slug -> settings")
        return {}
    merged: dict[str, Mapping[str, Any]] = {}
    default = _mozilla_default()
    if default is not None and DEFAULT_SLUG not in configured:
        merged[DEFAULT_SLUG] = default
    merged.update(configured)
    return merged


def all_providers() -> list[Provider]:
    """Return every usable provider, in settings order (misconfigured ones are logged and left out)."""
    result = []
    for slug, config in _configurations().items():
        try:
            result.append(_build(str(slug), config))
        except (ValueError, TypeError) as exc:
            logger.error("OIDC provider %r is misconfigured: %s", slug, exc)
    return result


def get_provider(slug: Any) -> Provider:
    """Return the provider ``slug``; raise OIDCError unknown_provider / provider_misconfigured."""
    if not isinstance(slug, str) or not _SLUG.match(slug):
        raise OIDCError("unknown_provider")
    config = _configurations().get(slug)
    if config is None:
        raise OIDCError("unknown_provider")
    try:
        return _build(slug, config)
    except (ValueError, TypeError) as exc:
        logger.error("OIDC provider %r is misconfigured: %s", slug, exc)
        raise OIDCError("provider_misconfigured") from None


def endpoints(provider: Provider) -> Endpoints:
    """Return the provider's endpoints: explicit settings first, then its discovery document.

    May fetch the discovery document (cached). Raises OIDCError.
    """
    document: Mapping[str, Any] = {}
    if provider.discovery_url:
        document = discovery.discovery_document(provider.discovery_url)
        published = document.get("issuer")
        expected = provider.issuer or provider.discovery_url.split("/.well-known/")[0]
        # OpenID Connect Discovery 1.0 section 4.3: the document's issuer must be the one
        # it was fetched for, or a compromised document could name another issuer.
        if not isinstance(published, str) or published.rstrip("/") != expected.rstrip("/"):
            logger.error("OIDC provider %r: discovery issuer %r is not %r", provider.slug, published, expected)
            raise OIDCError("discovery_failed")

    def pick(name: str) -> str:
        value = getattr(provider, name) or document.get(name) or ""
        return value if isinstance(value, str) else ""

    issuer = pick("issuer")
    if not issuer:
        logger.error("OIDC provider %r has no issuer", provider.slug)
        raise OIDCError("provider_misconfigured")
    jwks_uri = pick("jwks_uri")
    needs_jwks = provider.sign_algo[:2] in ("RS", "ES", "PS") and provider.idp_sign_key is None
    userinfo = pick("userinfo_endpoint") if provider.use_userinfo else ""
    return Endpoints(
        issuer=issuer,
        authorization_endpoint=discovery.check_endpoint(pick("authorization_endpoint"), what="authorization_endpoint"),
        token_endpoint=discovery.check_endpoint(pick("token_endpoint"), what="token_endpoint"),
        jwks_uri=discovery.check_endpoint(jwks_uri, what="jwks_uri") if needs_jwks or jwks_uri else "",
        userinfo_endpoint=discovery.check_endpoint(userinfo, what="userinfo_endpoint") if userinfo else "",
        iss_parameter_supported=document.get("authorization_response_iss_parameter_supported") is True,
    )
