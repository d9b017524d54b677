"""What the HTML and the JSON password views share: the reset link, built from the request.

The service (``services.passwords.request_reset``) takes the link as a plain
template; only the web edge may read the request it is built from.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse

from .. import conf
from ..conf import TOKEN_PLACEHOLDER

__all__ = ["link_template"]


def link_template(request: HttpRequest) -> str:
    """Return the reset link for this site with ``{token}`` where the token goes.

    The token travels in the URL *fragment* by default: browsers never send a
    fragment to any server, so it stays out of access logs, proxies and
    Referer headers; the confirm page moves it into the POST body.
    ``EPHEMERAL_AUTH_PASSWORD_RESET_URL`` points links at another page (an
    SPA, a fixed public host instead of the request's Host header).
    """
    configured = str(conf.get("PASSWORD_RESET_URL") or "")
    if configured:
        return configured if TOKEN_PLACEHOLDER in configured else f"{configured}#token={TOKEN_PLACEHOLDER}"
    try:
        path = reverse("ephemeral_auth:password_reset_confirm")
    except NoReverseMatch as exc:
        raise ImproperlyConfigured(
            "Mount ephemeral_auth.urls (namespace 'ephemeral_auth') or set EPHEMERAL_AUTH_PASSWORD_RESET_URL."
        ) from exc
    # build_absolute_uri uses the Host header, which ALLOWED_HOSTS validates.
    return f"{request.build_absolute_uri(path)}#token={TOKEN_PLACEHOLDER}"
