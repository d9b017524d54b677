"""Discovery documents and JWKS of OpenID providers: fetched over HTTPS, cached.

What is cached is configuration published by the provider (endpoints, public
keys), never per-flow state, so a per-process or shared Django cache is fine:
a worker with a cold cache simply fetches again. The cache alias and TTL are
EPHEMERAL_AUTH_OIDC_CACHE_ALIAS / EPHEMERAL_AUTH_OIDC_DISCOVERY_CACHE_TTL.

Endpoints must be https. Plain http is accepted only for loopback hosts
(127.0.0.0/8, ::1, localhost: a provider on the same machine, as in tests) or
when settings.DEBUG is on (a development provider in a container).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.cache import caches

from .. import conf
from ..exceptions import OIDCError

__all__ = ["check_endpoint", "discovery_document", "fetch_json", "is_loopback", "jwks"]

logger = logging.getLogger("ephemeral_auth.oidc")

# Provider documents are small; a larger answer is not one.
MAX_DOCUMENT_BYTES = 512 * 1024


def is_loopback(host: str) -> bool:
    """Return whether ``host`` names this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint(url: Any, *, what: str) -> str:
    """Return ``url`` if it is an acceptable provider endpoint; raise OIDCError otherwise."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        logger.error("OIDC provider %s is missing or malformed", what)
        raise OIDCError("provider_misconfigured")
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme == "https" and host:
        return url
    if parts.scheme == "http" and host and (is_loopback(host) or settings.DEBUG):
        return url
    # Over plain http anyone on the path could swap the keys or read the code.
    logger.error("OIDC provider %s must be https (http only for loopback or DEBUG): %s", what, url)
    raise OIDCError("provider_misconfigured")


def fetch_json(url: str, *, what: str) -> dict[str, Any]:
    """GET ``url`` and return its JSON object; raise OIDCError on any failure."""
    try:
        response = requests.get(
            url,
            timeout=conf.get("OIDC_HTTP_TIMEOUT"),
            verify=getattr(settings, "OIDC_VERIFY_SSL", True),
            proxies=getattr(settings, "OIDC_PROXY", None),
            headers={"Accept": "application/json"},
        )
    except requests.RequestException as exc:
        logger.warning("OIDC %s fetch failed: %s", what, type(exc).__name__)
        raise OIDCError("network_error") from None
    if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
        logger.warning("OIDC %s fetch answered HTTP %s", what, response.status_code)
        raise OIDCError("discovery_failed")
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        logger.warning("OIDC %s is not a JSON object", what)
        raise OIDCError("discovery_failed")
    return document


def _cache_key(kind: str, url: str) -> str:
    return f"ephemeral_auth:oidc:{kind}:{hashlib.sha256(url.encode()).hexdigest()[:40]}"


def _cached(kind: str, url: str, *, refresh: bool) -> dict[str, Any]:
    cache = caches[conf.get("OIDC_CACHE_ALIAS")]
    key = _cache_key(kind, url)
    if not refresh:
        document = cache.get(key)
        if isinstance(document, dict):
            return document
    document = fetch_json(url, what=kind)
    cache.set(key, document, conf.get("OIDC_DISCOVERY_CACHE_TTL"))
    return document


def discovery_document(url: str, *, refresh: bool = False) -> dict[str, Any]:
    """Return the provider's discovery document (cached)."""
    check_endpoint(url, what="discovery_url")
    return _cached("discovery", url, refresh=refresh)


def jwks(url: str, *, refresh: bool = False) -> dict[str, Any]:
    """Return the provider's JSON Web Key Set (cached; ``refresh`` after a key rotation)."""
    check_endpoint(url, what="jwks_uri")
    document = _cached("jwks", url, refresh=refresh)
    if not isinstance(document.get("keys"), list):
        raise OIDCError("discovery_failed")
    return document
