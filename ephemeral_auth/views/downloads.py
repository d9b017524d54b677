"""The pages of one-time download links: confirm (scanner-safe mode), invalid link, HEAD probes.

The links point at the project's own views, wrapped by
:func:`ephemeral_auth.decorators.one_time_link`; that decorator calls these
functions, so this module mounts no URL of its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import URLPattern, reverse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _

from ..exceptions import EphemeralAuthError, InvalidInput, ServiceUnavailable
from ..http import error, error_response, wants_json
from ..services import downloads
from ..services.downloads import DEFAULT_PARAM, DownloadLink

__all__ = [
    "CONFIRM_TEMPLATE",
    "INVALID_TEMPLATE",
    "confirm_page",
    "failure",
    "head_answer",
    "issue_download_link",
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


def issue_download_link(
    request_or_user: Any,
    resource: str,
    *,
    url: str | None = None,
    url_name: str | None = None,
    args: Iterable[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    param: str = DEFAULT_PARAM,
    absolute: bool = True,
    ttl: timedelta | None = None,
    now: datetime | None = None,
) -> DownloadLink:
    """Issue a link that opens ``resource`` once, as the issuing user (docs/downloads.md).

    Given a request, the issuer is ``request.user`` and the link is made
    absolute with the request's host (``absolute=False`` keeps the path);
    given a user, it stays a path. The link points at ``url`` or at
    ``reverse(url_name, args, kwargs)``. Raises InvalidInput if nobody is
    logged in, if the user is inactive, if neither ``url`` nor ``url_name``
    is given, or for a resource that is not text of 1-255 characters. One
    INSERT (``services.downloads.issue_link``).
    """
    request = request_or_user if isinstance(request_or_user, HttpRequest) else None
    user = downloads.check_issuer(request.user if request is not None else request_or_user)
    if url is None and url_name is None:
        raise InvalidInput("issue_download_link needs url or url_name", field="url")
    target = url if url is not None else reverse(url_name, args=list(args), kwargs=dict(kwargs or {}))
    if absolute and request is not None:
        target = request.build_absolute_uri(target)
    return downloads.issue_link(user, resource, url=target, param=param, ttl=ttl, now=now)
