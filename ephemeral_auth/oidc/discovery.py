"""Discovery documents and JWKS of OpenID providers: fetched over HTTPS, cached.

What is cached is configuration published by the provider (endpoints, public
keys), never per-flow state, so a per-process or shared Django cache is fine:
a worker with a cold cache simply fetches again. The cache alias and TTL are
EPHEMERAL_AUTH_OIDC_CACHE_ALIAS / EPHEMERAL_AUTH_OIDC_DISCOVERY_CACHE_TTL.

Failures are cached too, briefly (EPHEMERAL_AUTH_OIDC_FAILURE_CACHE_TTL): the
discovery fetch happens inside an anonymous GET of authorize/, so without it a
provider that hangs would hold a worker for the whole timeout on every such
request. While a failure is remembered, fetches of that URL fail at once with
the code of the failure, and a JWKS refresh (unknown ``kid``) is tried at most
once per interval. Fetches give up after EPHEMERAL_AUTH_OIDC_DISCOVERY_TIMEOUT
(shorter than the token and userinfo calls' EPHEMERAL_AUTH_OIDC_HTTP_TIMEOUT).

Endpoints must be https. Plain http is accepted only for loopback hosts
(127.0.0.0/8, ::1, localhost: a provider on the same machine, as in tests) or
when settings.DEBUG is on (a development provider in a container).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import caches

from .. import conf
from ..exceptions import OIDCError

if TYPE_CHECKING:
    import requests

__all__ = [
    "check_endpoint",
    "discovery_document",
    "discovery_timeout",
    "failure_cache_ttl",
    "fetch_json",
    "is_loopback",
    "jwks",
]

logger = logging.getLogger("ephemeral_auth.oidc")

# Provider documents are small; a larger answer is not one.
MAX_DOCUMENT_BYTES = 512 * 1024

# Settings already reported as invalid (each is logged once per process).
_reported: set[tuple[str, str]] = set()


def _seconds(name: str, *, zero_allowed: bool) -> float:
    """Return the setting ``name`` in seconds; an invalid value means its default (logged once).

    Not a system check: this is read on every fetch, and a typo must not turn the
    failure cache or the short timeout off.
    """
    value = conf.get(name)
    valid = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value > 0 or (zero_allowed and value == 0))
    )
    if valid:
        return float(value)
    default = conf.DEFAULTS[name]
    reported = (name, repr(value)[:100])
    if reported not in _reported:
        _reported.add(reported)
        logger.error(
            "EPHEMERAL_AUTH_%s must be a number of seconds (%s); using the default, %s",
            name,
            "0 or more" if zero_allowed else "more than 0",
            default,
        )
    return float(default)


def discovery_timeout() -> float:
    """Return the seconds a discovery or JWKS fetch may take (EPHEMERAL_AUTH_OIDC_DISCOVERY_TIMEOUT)."""
    return _seconds("OIDC_DISCOVERY_TIMEOUT", zero_allowed=False)


def failure_cache_ttl() -> int:
    """Return the seconds a failed fetch is remembered (EPHEMERAL_AUTH_OIDC_FAILURE_CACHE_TTL; 0: not)."""
    # Whole seconds: some cache backends truncate a fraction, which would turn 0.5 into 0.
    return math.ceil(_seconds("OIDC_FAILURE_CACHE_TTL", zero_allowed=True))


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
    """GET ``url`` and return its JSON object; raise OIDCError on any failure.

    EPHEMERAL_AUTH_OIDC_DISCOVERY_TIMEOUT bounds the connection and each wait for
    data (requests' timeout: not the whole transfer).
    """
    # Imported here: requests comes with the oidc extra, and providers imports this module.
    import requests

    try:
        response = requests.get(
            url,
            timeout=discovery_timeout(),
            stream=True,
            verify=getattr(settings, "OIDC_VERIFY_SSL", True),
            proxies=getattr(settings, "OIDC_PROXY", None),
            headers={"Accept": "application/json"},
        )
    except requests.RequestException as exc:
        logger.warning("OIDC %s fetch failed: %s", what, type(exc).__name__)
        raise OIDCError("network_error") from None
    try:
        if response.status_code != 200:
            logger.warning("OIDC %s fetch answered HTTP %s", what, response.status_code)
            raise OIDCError("discovery_failed")
        body = _read_body(response, what=what)
    finally:
        response.close()
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        logger.warning("OIDC %s is not a JSON object", what)
        raise OIDCError("discovery_failed")
    return document


def _read_body(response: requests.Response, *, what: str) -> bytes:
    """Return the body of ``response``; refuse one over MAX_DOCUMENT_BYTES without reading it all."""
    import requests

    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > MAX_DOCUMENT_BYTES:
        logger.warning("OIDC %s is too large (%s bytes)", what, declared)
        raise OIDCError("discovery_failed")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=64 * 1024):
            size += len(chunk)
            if size > MAX_DOCUMENT_BYTES:
                logger.warning("OIDC %s is too large (over %s bytes)", what, MAX_DOCUMENT_BYTES)
                raise OIDCError("discovery_failed")
            chunks.append(chunk)
    except requests.RequestException as exc:
        logger.warning("OIDC %s fetch failed: %s", what, type(exc).__name__)
        raise OIDCError("network_error") from None
    return b"".join(chunks)


def _cache_key(kind: str, url: str, part: str = "") -> str:
    name = f"{kind}-{part}" if part else kind
    return f"ephemeral_auth:oidc:{name}:{hashlib.sha256(url.encode()).hexdigest()[:40]}"


def _cached(
    kind: str,
    url: str,
    *,
    refresh: bool,
    validate: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    cache = caches[conf.get("OIDC_CACHE_ALIAS")]
    key = _cache_key(kind, url)
    cached = cache.get(key)
    document = cached if isinstance(cached, dict) else None
    if document is not None and not refresh:
        return document
    failure_ttl = failure_cache_ttl()
    if failure_ttl:
        code = cache.get(_cache_key(kind, url, "failed"))
        if isinstance(code, str) and code:
            # Failed less than failure_ttl ago: fail at once rather than wait out the timeout again.
            logger.debug("OIDC %s fetch skipped: it failed less than %s s ago (%s)", kind, failure_ttl, code)
            raise OIDCError(code)
        # One refetch per interval (across workers, with a shared cache): an ID token naming a
        # kid the provider does not publish cannot make every callback fetch the JWKS again.
        if document is not None and not cache.add(_cache_key(kind, url, "refreshed"), True, failure_ttl):
            return document
    try:
        fetched = fetch_json(url, what=kind)
        if validate is not None:
            validate(fetched)
    except OIDCError as exc:
        if failure_ttl:
            cache.set(_cache_key(kind, url, "failed"), exc.code, failure_ttl)
        raise
    cache.set(key, fetched, conf.get("OIDC_DISCOVERY_CACHE_TTL"))
    return fetched


def discovery_document(url: str, *, refresh: bool = False) -> dict[str, Any]:
    """Return the provider's discovery document (cached)."""
    check_endpoint(url, what="discovery_url")
    return _cached("discovery", url, refresh=refresh)


def jwks(url: str, *, refresh: bool = False) -> dict[str, Any]:
    """Return the provider's JSON Web Key Set (cached; ``refresh`` after a key rotation)."""
    check_endpoint(url, what="jwks_uri")
    document = _cached("jwks", url, refresh=refresh, validate=_check_key_set)
    # Checked again for a document cached before it was checked at fetch time.
    _check_key_set(document)
    return document


def _check_key_set(document: dict[str, Any]) -> None:
    if not isinstance(document.get("keys"), list):
        logger.warning("OIDC jwks has no list of keys")
        raise OIDCError("discovery_failed")
