"""The pages of one-time download links: confirm (scanner-safe mode), invalid link, HEAD probes.

The links point at the project's own views, wrapped by
:func:`ephemeral_auth.decorators.one_time_link`; that decorator calls these
functions, so this module mounts no URL of its own.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _

from ..exceptions import EphemeralAuthError, ServiceUnavailable
from ..http import error, error_response, wants_json

__all__ = [
    "CONFIRM_TEMPLATE",
    "INVALID_TEMPLATE",
    "confirm_page",
    "failure",
    "head_answer",
    "method_not_allowed",
    "protect",
    "urlpatterns",
    "wants_json",
]

CONFIRM_TEMPLATE = "ephemeral_auth/downloads/confirm.html"
INVALID_TEMPLATE = "ephemeral_auth/downloads/invalid.html"

urlpatterns: list[URLPattern] = []


def protect(response: HttpResponse) -> HttpResponse:
    """Mark an answer to a tokenised URL: never cached, never a Referer, never indexed."""
    add_never_cache_headers(response)
    # The page's URL holds the token; a link or resource on it must not send it on.
    response["Referrer-Policy"] = "no-referrer"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


def failure(request: HttpRequest, exc: EphemeralAuthError, *, status: int | None = None) -> HttpResponse:
    """Answer an invalid, expired, used or misplaced link: JSON or a page, never a traceback.

    ``status``: of the page (and of JSON ``invalid_token``); by default 403, and
    503 when the service is unavailable (a database failure).
    """
    if status is None:
        status = 503 if isinstance(exc, ServiceUnavailable) else 403
    if wants_json(request):
        response: HttpResponse = error_response(exc)
        response.status_code = status if exc.code == "invalid_token" else response.status_code
    else:
        response = render(request, INVALID_TEMPLATE, {"error_code": exc.code, "message": exc.message}, status=status)
    response["X-Error-Code"] = exc.code
    return protect(response)


def confirm_page(request: HttpRequest, *, raw: str, param: str, template_name: str = CONFIRM_TEMPLATE) -> HttpResponse:
    """Show the button that redeems the link by POST (link scanners only GET)."""
    context = {"token": raw, "param": param, "action": request.path}
    return protect(render(request, template_name, context))


def head_answer(*, valid: bool) -> HttpResponse:
    """Answer HEAD without consuming: 200 while the link is live, 403 otherwise, no body."""
    response = HttpResponse(status=200 if valid else 403)
    if not valid:
        response["X-Error-Code"] = "invalid_token"
    return protect(response)


def method_not_allowed(request: HttpRequest) -> HttpResponse:
    """Answer a method a link cannot be redeemed with."""
    allowed = "GET, HEAD, POST"
    if wants_json(request):
        response: HttpResponse = error("method_not_allowed", _("Method not allowed."))
    else:
        response = HttpResponse(_("Method not allowed."), status=405, content_type="text/plain; charset=utf-8")
    response["Allow"] = allowed
    return protect(response)
