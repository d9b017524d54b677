"""The files page (login required) and the one-time-link download view."""

from __future__ import annotations

import logging

from django.contrib.auth.decorators import login_required
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET, require_POST, require_safe

from ephemeral_auth.decorators import one_time_link

from .catalogue import FILES, get_file

logger = logging.getLogger("example_project.files")


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    """List the demo files, each with a button that makes a one-time link."""
    return render(request, "files/index.html", {"files": FILES.values()})


@login_required
@require_POST
def issue_link(request: HttpRequest, pk: int) -> HttpResponse:
    """Issue a one-time link for one file; JSON for scripts, the page for browsers."""
    demo = get_file(pk)
    try:
        link = download.issue_link(request, pk=demo.pk)  # type: ignore[attr-defined]
    except DatabaseError:
        # Fail closed like the library's views: a stable answer, the traceback only in the log.
        logger.exception("database error while issuing a download link")
        if "application/json" in request.headers.get("Accept", ""):
            return JsonResponse({"error": "service_unavailable", "message": "Try again in a moment."}, status=503)
        return HttpResponse("The service is temporarily unavailable.", status=503, content_type="text/plain")
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"url": link.url, "expires_in": link.expires_in})
    context = {"files": FILES.values(), "issued": link, "issued_file": demo}
    response = render(request, "files/index.html", context)
    # The page shows a live link: keep it out of caches. (It is in the body,
    # not the URL, so no Referer carries it; the base template's same-origin
    # policy keeps the page's CSRF-protected forms working.)
    response["Cache-Control"] = "no-store"
    return response


@one_time_link("file:{pk}", url_name="files:download")
@require_safe
def download(request: HttpRequest, pk: int) -> HttpResponse:
    """Serve one demo file: to its link's user once, or to a logged-in browser."""
    demo = get_file(pk)
    response = HttpResponse(demo.render(request.user.get_username()), content_type=demo.content_type)
    response["Content-Disposition"] = f'attachment; filename="{demo.name}"'
    return response
