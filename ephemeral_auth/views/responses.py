"""HTTP answers shared by the views: the login half re-exported, and service failures on HTML pages.

The login half (the pending-login cookies, ``login_step_json``,
``login_step_redirect``, ``user_payload``) lives in
:mod:`ephemeral_auth.auth.responses`, and the session's proof
(``session_proof``, ``save_proof``, ``remark_session``) in
:mod:`ephemeral_auth.auth.session`; both are re-exported here, their 0.1 place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django.forms import BaseForm
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.translation import gettext, ngettext

from ..auth.responses import (
    challenge_cookie_name,
    clear_login_cookies,
    login_step_json,
    login_step_redirect,
    pending_cookie_name,
    read_challenge,
    read_pending_token,
    set_login_cookies,
    user_payload,
)
from ..auth.session import remark_session, save_proof, session_proof
from ..exceptions import EphemeralAuthError, RateLimited, ServiceUnavailable

__all__ = [
    "challenge_cookie_name",
    "clear_login_cookies",
    "error_message",
    "error_status",
    "html_error_response",
    "login_step_json",
    "login_step_redirect",
    "pending_cookie_name",
    "read_challenge",
    "read_pending_token",
    "remark_session",
    "save_proof",
    "session_proof",
    "set_login_cookies",
    "user_payload",
    "wait_message",
]


# Service failures on the HTML pages (views.html_account.ServiceErrorMixin, views.html_passwords).


def wait_message(retry_after: int) -> str:
    """Say how long a rate-limited user waits: "Try again in 15 minutes." (seconds under two minutes)."""
    seconds = max(1, int(retry_after))
    if seconds < 120:
        return ngettext("Try again in %(count)d second.", "Try again in %(count)d seconds.", seconds) % {
            "count": seconds
        }
    minutes = math.ceil(seconds / 60)
    return ngettext("Try again in %(count)d minute.", "Try again in %(count)d minutes.", minutes) % {
        "count": minutes
    }


def error_message(exc: EphemeralAuthError) -> str:
    """Return the text a page shows for a service failure; a rate limit also says how long to wait."""
    if not isinstance(exc, RateLimited):
        return exc.message
    message = exc.message
    if message == str(RateLimited.default_message):
        message = gettext("Too many attempts.")  # the default's "try again later" becomes the wait
    return f"{message} {wait_message(exc.retry_after)}"


def error_status(exc: EphemeralAuthError) -> int:
    """Return the HTTP status of an HTML page answering a service failure."""
    if isinstance(exc, RateLimited):
        return 429
    if isinstance(exc, ServiceUnavailable):
        return 503
    if exc.code == "two_factor_unavailable":
        return 403
    return 400


def submitted_form(context: Mapping[str, Any]) -> BaseForm | None:
    """Return the bound form of a page's context: the one the user submitted, whatever its name.

    A page may hold several forms (the authenticator page: ``start_form`` and
    ``confirm_form``); only the submitted one is bound. With none bound,
    ``context["form"]`` if it is a form.
    """
    forms = [value for value in context.values() if isinstance(value, BaseForm)]
    bound = [form for form in forms if form.is_bound]
    if len(bound) == 1:
        return bound[0]
    fallback = context.get("form")
    return fallback if isinstance(fallback, BaseForm) else None


def html_error_response(
    request: HttpRequest, exc: EphemeralAuthError, template: str, context: dict[str, Any], *, form: Any = None,
) -> HttpResponse:
    """Render ``template`` again with the failure shown as text, its status, and ``Retry-After`` when rate limited.

    The message becomes a non-field error of the submitted form (``form``, or
    the bound form of ``context``), which every template renders with
    ``{{ form.non_field_errors }}``; a page without a bound form gets it as
    ``context["error"]`` (``ephemeral_auth/form_errors.html`` shows both).
    ``context["error_code"]`` is the exception's code; ``context["retry_after"]``
    the seconds to wait when rate limited.
    """
    message = error_message(exc)
    target = form if form is not None else submitted_form(context)
    if isinstance(target, BaseForm) and target.is_bound:
        target.add_error(None, message)
    else:
        context["error"] = message
    context.setdefault("error_code", exc.code)
    if isinstance(exc, RateLimited):
        context["retry_after"] = exc.retry_after
    response = render(request, template, context, status=error_status(exc))
    if isinstance(exc, RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    return response
