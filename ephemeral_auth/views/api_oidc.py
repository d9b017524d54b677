"""OIDC sign-in endpoints (docs/http-api.md), under the JSON prefix.

* ``GET oidc/providers/`` — ``[{"id", "name", "authorize_url"}]``
* ``GET oidc/<provider>/authorize/?next=&mode=session|spa`` — 302 to the provider
* ``GET oidc/<provider>/callback/`` — 302 to ``next`` (session) or to the SPA with ``#oidc_token=``
* ``GET oidc/callback/`` — the same, for providers with ``shared_callback`` (compatibility)
* ``POST oidc/exchange/ {"oidc_token"}`` — the same answer as ``login/``

authorize/ and callback/ are browser navigations, not JSON: they are served by
the classes named in EPHEMERAL_AUTH_OIDC_AUTHENTICATE_CLASS / _CALLBACK_CLASS
(read per request, so override_settings and subclasses work).
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path, reverse
from django.utils.module_loading import import_string
from django.views.decorators.cache import never_cache

from .. import conf
from ..auth import login
from ..oidc import EXTRA_INSTALL, missing_libraries, providers
from ..oidc.browser import exchange_cookie_name
from ..services import oidc as oidc_service
from . import responses
from .json import api_view, parse_json, required_text

__all__ = ["authorize", "callback", "exchange", "provider_list", "urlpatterns"]

logger = logging.getLogger("ephemeral_auth.oidc")

# A raw exchange token is 43 characters (the original application capped it at 128).
MAX_EXCHANGE_TOKEN_LENGTH = 128


# Both are non-atomic even under ATOMIC_REQUESTS: the state's consumption must commit
# on its own, before the provider is called, and no transaction may stay open
# across those network calls.


def _flow_view(setting: str) -> Any:
    """Return the view of the class named by ``setting``; 404 without the OIDC libraries (the oidc extra)."""
    try:
        view_class = import_string(conf.get(setting))
    except ImportError:
        missing = missing_libraries()
        if not missing:
            raise
        logger.error("OIDC sign-in needs %s: %s", ", ".join(missing), EXTRA_INSTALL)
        raise Http404("OIDC sign-in is not installed") from None
    return view_class.as_view()


@transaction.non_atomic_requests
@never_cache
def authorize(request: HttpRequest, provider: str) -> HttpResponse:
    """Start a flow at ``provider`` (the configured authenticate class does the work)."""
    view = _flow_view("OIDC_AUTHENTICATE_CLASS")
    return view(request, provider=provider)  # type: ignore[no-any-return]


@transaction.non_atomic_requests
@never_cache
def callback(request: HttpRequest, provider: str | None = None) -> HttpResponse:
    """Finish a flow (the configured callback class does the work); ``provider`` is the URL's slug."""
    view = _flow_view("OIDC_CALLBACK_CLASS")
    if provider is None:
        return view(request)  # type: ignore[no-any-return]
    return view(request, provider=provider)  # type: ignore[no-any-return]


@api_view(("GET",))
def provider_list(request: HttpRequest) -> HttpResponse:
    """List the configured providers."""
    return JsonResponse(
        [
            {
                "id": provider.slug,
                "name": provider.name,
                "authorize_url": reverse(f"{request.resolver_match.namespace}:oidc_authorize", args=[provider.slug])
                if request.resolver_match and request.resolver_match.namespace
                else "",
            }
            for provider in providers.all_providers()
        ],
        safe=False,
    )


@api_view(("POST",))
def exchange(request: HttpRequest) -> HttpResponse:
    """Redeem an SPA exchange token: the same answer as login/ (2FA still applies).

    The login step is one transaction, as at the callback (``begin_login_atomically``):
    a database error inside it leaves the request anonymous.
    """
    data = parse_json(request)
    raw = required_text(data, "oidc_token", max_length=MAX_EXCHANGE_TOKEN_LENGTH)
    cookie = exchange_cookie_name(request, raw)
    redeemed = oidc_service.redeem_exchange(raw, binding=request.COOKIES.get(cookie))
    # Imported here: the backend needs the oidc extra (which a redeemed exchange implies).
    from ..oidc.backend import backend_path

    step = login.begin_login_atomically(
        request, redeemed.user, backend=backend_path(), skip_two_factor=redeemed.mfa
    )
    response = responses.login_step_json(request, step)
    response.delete_cookie(cookie, path="/", samesite="Lax")
    return response


urlpatterns: list[URLPattern] = [
    path("oidc/providers/", provider_list, name="oidc_providers"),
    path("oidc/exchange/", exchange, name="oidc_exchange"),
    path("oidc/callback/", callback, name="oidc_callback"),
    path("oidc/<slug:provider>/authorize/", authorize, name="oidc_authorize"),
    path("oidc/<slug:provider>/callback/", callback, name="oidc_provider_callback"),
]
