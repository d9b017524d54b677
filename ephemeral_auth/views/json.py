"""Shared plumbing of the JSON API: body parsing, the view decorator, the CSRF failure view.

Every JSON view is wrapped by :func:`api_view`, which guarantees the contract
of docs/http-api.md: errors are ``{"error": code, "message": text}`` with a
4xx status (429 adds ``retry_after`` and ``Retry-After``), a database failure
is a 503 ``service_unavailable`` (fail closed, no traceback), and nothing a
client sends can produce a 500.

The error bodies themselves (``error``, ``error_response``, ``STATUS_BY_CODE``)
live in :mod:`ephemeral_auth.http` and are re-exported here.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from ..exceptions import EphemeralAuthError, InvalidInput
from ..http import STATUS_BY_CODE, error, error_response, fail_closed, wants_json
from ..services.inputs import is_plain_text

__all__ = [
    "MAX_BODY_BYTES",
    "STATUS_BY_CODE",
    "api_view",
    "csrf_failure",
    "error",
    "error_response",
    "optional_text",
    "parse_json",
    "required_text",
]

logger = logging.getLogger("ephemeral_auth.api")

MAX_BODY_BYTES = 16 * 1024

def parse_json(request: HttpRequest) -> dict[str, Any]:
    """Return the request's JSON object body; raise InvalidInput otherwise."""
    content_type = request.content_type or ""
    if content_type and content_type != "application/json":
        raise InvalidInput(_("Send the request body as application/json."), field="content_type")
    length = request.META.get("CONTENT_LENGTH") or "0"
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        raise InvalidInput(_("The request body is too large."), field="body")
    raw = request.body
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        # RecursionError: a small body can nest arrays past the interpreter's limit ("[[[[...").
        raise InvalidInput(_("The request body is not valid JSON."), field="body") from exc
    if not isinstance(data, dict):
        raise InvalidInput(_("The request body must be a JSON object."), field="body")
    return data


def required_text(data: dict[str, Any], name: str, *, max_length: int) -> str:
    """Return ``data[name]`` if it is non-empty text within ``max_length``."""
    value = data.get(name)
    if value is None or value == "":
        raise InvalidInput(_("This field is required: %(name)s.") % {"name": name}, field=name)
    if not is_plain_text(value, max_length=max_length):
        raise InvalidInput(
            _("%(name)s must be text of at most %(n)s characters.") % {"name": name, "n": max_length},
            field=name,
        )
    return str(value)


def optional_text(data: dict[str, Any], name: str, *, max_length: int) -> str:
    """Return ``data[name]`` as text, or "" when absent."""
    if data.get(name) in (None, ""):
        return ""
    return required_text(data, name, max_length=max_length)


def api_view(
    methods: tuple[str, ...] = ("POST",), *, login_required: bool = False
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Wrap a JSON view: allowed methods, error mapping, fail-closed database errors."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        @sensitive_variables()
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if request.method not in methods:
                refusal = error("method_not_allowed", _("Method not allowed."))
                refusal["Allow"] = ", ".join(methods)
                return refusal
            if login_required and not request.user.is_authenticated:
                return error("not_authenticated", _("Authentication required."))
            response: HttpResponse
            try:
                # Fail closed: no login, no traceback, a stable code.
                with fail_closed(logger, f"in {view.__name__}"):
                    response = view(request, *args, **kwargs)
            except EphemeralAuthError as exc:
                return error_response(exc)
            add_never_cache_headers(response)
            return response

        # Rate-limit events must commit on their own, even with ATOMIC_REQUESTS.
        return transaction.non_atomic_requests(sensitive_post_parameters()(wrapper))

    return decorate


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW that answers JSON clients with the ``csrf_failed`` code."""
    from django.views.csrf import csrf_failure as html_csrf_failure

    if wants_json(request):
        return error("csrf_failed", _("CSRF verification failed. Fetch a token from csrf/ and send it in X-CSRFToken."))
    return html_csrf_failure(request, reason=reason)
