"""HTTP primitives of the web edge, each written once.

* :func:`wants_json`: the one rule deciding whether a client gets JSON or a page.
* Error bodies: the JSON API's ``{"error": code, "message": text}``
  (:func:`error`, :func:`error_response`, :data:`STATUS_BY_CODE`), a service
  failure on an HTML page (:func:`html_error_response`, :func:`error_message`,
  :func:`error_status`, :func:`wait_message`), and the 503 answer of a request
  that cannot be served at all (:func:`service_unavailable`).
* Failing closed on a database error (:func:`fail_closed`): logged with its
  traceback for the operator, answered as ``ServiceUnavailable`` to the client.
* Cookie names: the ``__Host-`` rule and the name of every cookie ephemeral_auth sets.

This module sits below the views, the middleware, the decorators and the OIDC
integration, which all import it; it imports only the foundation modules
(``conf``, ``crypto``, ``exceptions``) and Django.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError
from django.forms import BaseForm
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve
from django.utils.cache import add_never_cache_headers
from django.utils.html import escape
from django.utils.translation import gettext, ngettext

from . import conf, crypto
from .exceptions import EphemeralAuthError, InvalidInput, RateLimited, ServiceUnavailable

__all__ = [
    "HOST_PREFIX",
    "STATUS_BY_CODE",
    "best_effort",
    "binding_cookie_name",
    "challenge_cookie_name",
    "database_failure",
    "device_cookie_name",
    "error",
    "error_message",
    "error_response",
    "error_status",
    "exchange_cookie_name",
    "fail_closed",
    "host_cookie_name",
    "html_error_response",
    "password_reset_cookie_name",
    "pending_cookie_name",
    "service_unavailable",
    "submitted_form",
    "wait_message",
    "wants_json",
    "webauthn_cookie_name",
]

# The URL namespace of the JSON API (ephemeral_auth.api_urls).
API_NAMESPACE = "ephemeral_auth_api"


# JSON or a page.


def wants_json(request: HttpRequest) -> bool:
    """Return whether the client gets JSON rather than a page: the one rule of every answer that can be either.

    A client wants JSON when it sends a JSON body (``Content-Type:
    application/json``), or when its ``Accept`` header names
    ``application/json`` and not ``text/html``. A browser's navigation always
    lists ``text/html`` (and never sends a JSON body), so it gets the page; a
    ``fetch()`` that asks for JSON, or posts JSON, gets JSON. ``Accept: */*``
    alone is a page.

    Used by ``TwoFactorMiddleware`` (staff enrolment, :func:`service_unavailable`),
    the decorators (``two_factor_required``, ``reauthentication_required``,
    ``one_time_link``), the one-time link pages and ``views.json.csrf_failure``.
    """
    accept = request.headers.get("Accept", "")
    return request.content_type == "application/json" or (
        "application/json" in accept and "text/html" not in accept
    )


# JSON error bodies (docs/http-api.md).

STATUS_BY_CODE: dict[str, int] = {
    "invalid_input": 400,
    "not_enrolled": 400,
    "invalid_password": 400,
    "invalid_token": 401,
    "invalid_code": 401,
    # A WebAuthn assertion whose signature counter did not increase (a possible clone).
    "credential_cloned": 401,
    "invalid_credentials": 401,
    "not_authenticated": 401,
    "method_not_enabled": 403,
    "account_inactive": 403,
    "unknown_provider": 404,
    "csrf_failed": 403,
    "two_factor_enrolment_required": 403,
    "reauthentication_required": 403,
    "two_factor_unavailable": 403,
    "forbidden": 403,
    "not_found": 404,
    "method_not_allowed": 405,
    "rate_limited": 429,
    "service_unavailable": 503,
}


def error(code: str, message: str, *, status: int | None = None, **extra: Any) -> JsonResponse:
    """Return the JSON error answer for ``code``."""
    body = {"error": code, "message": str(message), **extra}
    response = JsonResponse(body, status=status or STATUS_BY_CODE.get(code, 400))
    add_never_cache_headers(response)
    return response


def error_response(exc: EphemeralAuthError) -> JsonResponse:
    """Translate a service exception into its JSON answer."""
    if isinstance(exc, RateLimited):
        response = error(exc.code, exc.message, retry_after=exc.retry_after)
        response["Retry-After"] = str(exc.retry_after)
        return response
    extra: dict[str, Any] = {"field": exc.field} if isinstance(exc, InvalidInput) and exc.field else {}
    return error(exc.code, exc.message, **extra)


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


# Failing closed (docs/deployment.md, "Database outages").


def service_unavailable(request: HttpRequest) -> HttpResponse:
    """Return the 503 answer: the JSON error for the API (or a JSON client), a plain page otherwise."""
    message = gettext("The service is temporarily unavailable.")
    try:
        namespaces = resolve(request.path_info).namespaces
    except Resolver404:
        namespaces = []
    if API_NAMESPACE in namespaces or wants_json(request):
        return error("service_unavailable", message)
    response = HttpResponse(
        f"<!doctype html>\n<title>{escape(message)}</title>\n<h1>{escape(message)}</h1>\n",
        status=503,
        content_type="text/html; charset=utf-8",
    )
    add_never_cache_headers(response)
    return response


def database_failure(log: logging.Logger, where: str) -> ServiceUnavailable:
    """Log the database error being handled, with its traceback, and return the ``ServiceUnavailable`` to answer.

    Call it in an ``except DatabaseError`` block (``where``: "in the OIDC
    callback"); :func:`fail_closed` is the same as a context manager. The
    client learns only the stable code ``service_unavailable``, never the error.
    """
    log.exception("database error %s", where)
    return ServiceUnavailable()


@contextmanager
def fail_closed(log: logging.Logger, where: str) -> Iterator[None]:
    """Fail closed on a database error inside the block: log it, raise ``ServiceUnavailable`` instead.

    Nobody is logged in, no token is issued or consumed, no traceback reaches
    the client: the caller answers ``ServiceUnavailable`` as it answers any
    service failure (the JSON API: 503 ``service_unavailable``; a form page:
    the form again with status 503; a whole request: :func:`service_unavailable`).
    """
    try:
        yield
    except DatabaseError as exc:
        raise database_failure(log, where) from exc


@contextmanager
def best_effort(log: logging.Logger, what: str) -> Iterator[None]:
    """Run an extra after the request's work is done: a database error skips it (logged), nothing is undone."""
    try:
        yield
    except DatabaseError:
        log.exception("could not %s", what)


# Cookie names.

HOST_PREFIX = "__Host-"


def host_cookie_name(request: HttpRequest | None, name: str) -> str:
    """Return ``name`` for a cookie of ``Path=/``, ``__Host-`` prefixed on HTTPS.

    On HTTPS (``request.is_secure()``; set ``SECURE_PROXY_SSL_HEADER`` behind
    a TLS-terminating proxy) the prefix makes browsers refuse the cookie
    unless it is ``Secure``, host-only and ``Path=/``: no subdomain can plant
    or overwrite it. Only the name matching the request's scheme is read.
    """
    return HOST_PREFIX + name if request is not None and request.is_secure() else name


def device_cookie_name(request: HttpRequest | None) -> str:
    """Return the device cookie's name for this request (``__Host-`` on HTTPS)."""
    return host_cookie_name(request, str(conf.get("DEVICE_COOKIE_NAME")))


def challenge_cookie_name(request: HttpRequest) -> str:
    """Return the challenge cookie's name for this request (``__Host-`` on HTTPS)."""
    return host_cookie_name(request, str(conf.get("CHALLENGE_COOKIE_NAME")))


def webauthn_cookie_name(request: HttpRequest) -> str:
    """Return the name of the cookie binding a WebAuthn registration or passkey sign-in to this browser.

    Its value is the ceremony's ``browser_challenge``: set by the options
    endpoint, read by the completion, deleted after (``__Host-`` on HTTPS).
    """
    return host_cookie_name(request, str(conf.get("WEBAUTHN_COOKIE_NAME")))


def pending_cookie_name(request: HttpRequest) -> str:
    """Return the HTML flow's pending-token cookie name for this request."""
    return host_cookie_name(request, str(conf.get("PENDING_LOGIN_COOKIE_NAME")))


def _oidc_cookie_name(request: HttpRequest, suffix: str) -> str:
    return host_cookie_name(request, f"{conf.get('OIDC_COOKIE_NAME')}_{suffix}")


def binding_cookie_name(request: HttpRequest, state: str) -> str:
    """Return the name of the binding cookie of the OIDC flow whose ``state`` this is.

    One cookie per flow, named after a digest of its state, with a fresh value
    made by ``authorize/`` (never one the request brought): a value planted by
    a sibling subdomain or an earlier visitor is never the binding of a new
    flow, and parallel tabs do not overwrite each other's cookie.
    ``__Host-`` prefixed on HTTPS, so no subdomain can set it at all.
    """
    return _oidc_cookie_name(request, crypto.digest_token(state)[:16])


def exchange_cookie_name(request: HttpRequest, raw_exchange: str) -> str:
    """Return the name of the cookie binding an SPA exchange token to the browser that finished the flow."""
    return _oidc_cookie_name(request, "x" + crypto.digest_token(raw_exchange)[:15])


def password_reset_cookie_name() -> str:
    """Return the name of the cookie holding a reset token moved out of the URL.

    Never ``__Host-`` prefixed: the cookie's ``Path`` is the confirm page, so
    no other page of the site receives the token.
    """
    return str(conf.get("PASSWORD_RESET_COOKIE_NAME"))
