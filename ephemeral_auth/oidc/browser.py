"""The browser side of an OIDC flow: where it may go afterwards, the cookies that bind it.

Split from :mod:`.views` so that the template tags and the SPA exchange
endpoint work without mozilla-django-oidc (the ``oidc`` extra), which the
views subclass. Settings of mozilla-django-oidc (``OIDC_REDIRECT_*``) are read
from Django's settings, as that library does.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

from .. import conf, crypto
from ..services.inputs import is_plain_text

__all__ = ["MAX_NEXT_LENGTH", "binding_cookie_name", "exchange_cookie_name", "safe_next_url"]

logger = logging.getLogger("ephemeral_auth.oidc")


def _cookie_name(request: HttpRequest, suffix: str) -> str:
    name = f"{conf.get('OIDC_COOKIE_NAME')}_{suffix}"
    return f"__Host-{name}" if request.is_secure() else name


def binding_cookie_name(request: HttpRequest, state: str) -> str:
    """Return the name of the binding cookie of the flow whose ``state`` this is.

    One cookie per flow, named after a digest of its state, with a fresh value
    made by ``authorize/`` (never one the request brought): a value planted by
    a sibling subdomain or an earlier visitor is never the binding of a new
    flow, and parallel tabs do not overwrite each other's cookie.
    ``__Host-`` prefixed on HTTPS, so no subdomain can set it at all.
    """
    return _cookie_name(request, crypto.digest_token(state)[:16])


def exchange_cookie_name(request: HttpRequest, raw_exchange: str) -> str:
    """Return the name of the cookie binding an SPA exchange token to the browser that finished the flow."""
    return _cookie_name(request, "x" + crypto.digest_token(raw_exchange)[:15])


# A ``next`` longer than this is ignored (the flow then goes to the default page): it is
# stored in the flow's row, and an anonymous client chooses it.
MAX_NEXT_LENGTH = 512


def _allowed_hosts(request: HttpRequest) -> set[str]:
    hosts = {request.get_host()}
    hosts.update(getattr(settings, "OIDC_REDIRECT_ALLOWED_HOSTS", None) or [])
    hosts.update(conf.get("OIDC_REDIRECT_ALLOWED_HOSTS") or [])
    return hosts


def safe_next_url(request: HttpRequest, value: Any) -> str:
    """Return ``value`` if it is a safe place to send this browser afterwards, else ""."""
    if not is_plain_text(value, max_length=MAX_NEXT_LENGTH) or not value:
        return ""
    require_https = getattr(settings, "OIDC_REDIRECT_REQUIRE_HTTPS", request.is_secure())
    if url_has_allowed_host_and_scheme(value, allowed_hosts=_allowed_hosts(request), require_https=require_https):
        return str(value)
    logger.info("OIDC: ignored an unsafe next URL")
    return ""
