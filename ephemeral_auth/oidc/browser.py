"""The browser side of an OIDC flow: where it may go afterwards, the cookies that bind it.

Split from :mod:`.views` so that the template tags and the SPA exchange
endpoint work without mozilla-django-oidc (the ``oidc`` extra), which the
views subclass. Settings of mozilla-django-oidc (``OIDC_REDIRECT_*``) are read
from Django's settings, as that library does. The cookie names
(``binding_cookie_name``, ``exchange_cookie_name``) are :mod:`ephemeral_auth.http`'s,
re-exported here.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

from .. import conf
from ..http import binding_cookie_name, exchange_cookie_name
from ..services.inputs import is_plain_text

__all__ = ["MAX_NEXT_LENGTH", "binding_cookie_name", "exchange_cookie_name", "safe_next_url"]

logger = logging.getLogger("ephemeral_auth.oidc")


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
