"""Trusted browsers: the user's list and revocation, in JSON and on the HTML 2FA page.

See docs/two-factor.md ("Trusted browsers"). The policy is
``services.trusted_browsers``; the cookie is ``auth.trusted``'s. Revoking
only takes access away, so it needs a signed-in (for a user with 2FA:
2FA-verified) session and no fresh proof; listing shows ids and times,
never a token.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_POST

from ..auth.trusted import read_trust_cookie
from ..exceptions import EphemeralAuthError, InvalidInput
from ..http import fail_closed, service_unavailable, trusted_browser_cookie_name
from ..services import trusted_browsers
from .json import api_view, parse_json

__all__ = ["api_urlpatterns", "list_view", "revoke_html", "revoke_view", "urlpatterns"]

logger = logging.getLogger("ephemeral_auth.views")


def _target(data: dict[str, Any]) -> Any:
    """Return the id to revoke, or None for all; raise InvalidInput for anything else."""
    if data.get("all") is True and data.get("id") is None:
        return None
    if data.get("id") is None:
        raise InvalidInput(_("Send the id of a trusted browser, or all: true."), field="id")
    return data["id"]


def _forget_cookie(response: HttpResponse, request: HttpRequest) -> None:
    name = trusted_browser_cookie_name(request)
    if name in request.COOKIES:
        response.delete_cookie(name, path="/", samesite="Lax")


@api_view(("GET",), login_required=True)
def list_view(request: HttpRequest) -> HttpResponse:
    """The user's live trusted browsers: ``{"enabled", "trusted_browsers": [{id, created_at, expires_at, ...}]}``."""
    found = []
    if trusted_browsers.enabled():
        found = trusted_browsers.list_for(request.user, current=read_trust_cookie(request))  # type: ignore[arg-type]
    return JsonResponse(
        {"enabled": trusted_browsers.enabled(), "trusted_browsers": [item.as_dict() for item in found]}
    )


@api_view(("POST",), login_required=True)
def revoke_view(request: HttpRequest) -> HttpResponse:
    """Revoke one trusted browser (``{"id": ...}``) or all of them (``{"all": true}``)."""
    target = _target(parse_json(request))
    revoked = trusted_browsers.revoke(request.user, token_id=target)  # type: ignore[arg-type]
    response = JsonResponse({"status": "ok", "revoked": revoked})
    if target is None:
        _forget_cookie(response, request)
    return response


@never_cache
@csrf_protect
@login_required
@require_POST
def revoke_html(request: HttpRequest) -> HttpResponse:
    """The HTML page's "Revoke" and "Revoke all" buttons; back to the 2FA page with a message."""
    response: HttpResponse = HttpResponseRedirect(reverse("ephemeral_auth:two_factor_overview"))
    target = None if request.POST.get("all") else request.POST.get("id", "")
    try:
        with fail_closed(logger, "revoking a trusted browser"):
            revoked = trusted_browsers.revoke(request.user, token_id=target)  # type: ignore[arg-type]
    except InvalidInput:
        return HttpResponse(_("Send the id of a trusted browser."), status=400, content_type="text/plain")
    except EphemeralAuthError:
        return service_unavailable(request)
    text = ngettext("%(count)d browser is no longer trusted.", "%(count)d browsers are no longer trusted.", revoked)
    messages.success(request, text % {"count": revoked}, fail_silently=True)
    if target is None:
        _forget_cookie(response, request)
    return response


api_urlpatterns = [
    path("2fa/trusted-browsers/", list_view, name="two_factor_trusted_browsers"),
    path("2fa/trusted-browsers/revoke/", revoke_view, name="two_factor_trusted_browsers_revoke"),
]

urlpatterns = [
    path(
        "2fa/trusted-browsers/revoke/",
        transaction.non_atomic_requests(revoke_html),
        name="two_factor_trusted_browsers_revoke",
    ),
]
