"""The authorize and callback views: mozilla-django-oidc's, with the flow state in the database.

They subclass ``OIDCAuthenticationRequestView`` / ``OIDCAuthenticationCallbackView``
and keep their customisation points (``get_extra_params``, ``failure_url``,
``success_url``, ``login_success``, ``login_failure``); what changes is where
the state lives (``services.oidc``: a database row bound to the browser by a
cookie, not the session) and what success means (the 2FA-aware
``auth.login.begin_login`` hand-off, or the SPA exchange).

Both can be used through ``ephemeral_auth.api_urls`` (``oidc/<provider>/authorize/``,
``oidc/callback/``) or dropped into mozilla-django-oidc's own urls with
``OIDC_AUTHENTICATE_CLASS`` / ``OIDC_CALLBACK_CLASS`` (provider ``default``).

Every failure ends in a redirect carrying a stable code (``?oidc_error=`` on the
failure URL, or ``#oidc_error=`` to an SPA), never in a 500.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.conf import settings
from django.contrib import auth
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.template.loader import render_to_string
from django.utils.cache import add_never_cache_headers
from django.utils.html import escape
from django.utils.translation import ngettext
from django.views.generic import View
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

from .. import conf
from ..auth import login, responses
from ..client_ip import client_ip
from ..exceptions import EphemeralAuthError, OIDCError, RateLimited
from ..http import database_failure
from ..services import oidc as oidc_service
from ..services.inputs import is_plain_text
from . import providers
from .authorization import begin_authorization
from .backend import PROVIDER_CALLBACK, callback_result, callback_uri
from .browser import MAX_NEXT_LENGTH, binding_cookie_name, exchange_cookie_name, safe_next_url

__all__ = [
    "MAX_NEXT_LENGTH",
    "PROVIDER_CALLBACK",
    "OIDCAuthorizeView",
    "OIDCCallbackView",
    "binding_cookie_name",
    "callback_uri",
    "exchange_cookie_name",
    "safe_next_url",
]

logger = logging.getLogger("ephemeral_auth.oidc")


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = "&".join(filter(None, [parts.query, urlencode({k: v for k, v in params.items() if v})]))
    return urlunsplit(parts._replace(query=query))


def _with_fragment(url: str, **params: str) -> str:
    return urlunsplit(urlsplit(url)._replace(fragment=urlencode(params)))


def failure_url() -> str:
    """Return where failed session-mode sign-ins go (before ``?oidc_error=``)."""
    configured = conf.get("OIDC_FAILURE_URL") or import_from_settings("LOGIN_REDIRECT_URL_FAILURE", "")
    return resolve_url(configured or settings.LOGIN_URL)


def _redirect(url: str) -> HttpResponse:
    response = HttpResponseRedirect(url)
    add_never_cache_headers(response)
    # The SPA exchange token travels in a fragment; no Referer should carry a URL from here.
    response["Referrer-Policy"] = "no-referrer"
    return response


class OIDCAuthorizeView(OIDCAuthenticationRequestView):
    """``GET oidc/<provider>/authorize/?next=&mode=session|spa``: start a flow, go to the provider."""

    http_method_names = ["get"]
    # Used when the URL names no provider (mozilla-django-oidc's own urls).
    default_provider = providers.DEFAULT_SLUG

    def __init__(self, **kwargs: Any) -> None:
        # The parent reads OIDC_OP_AUTHORIZATION_ENDPOINT here; the provider is only
        # known from the URL, so settings are read in get().
        View.__init__(self, **kwargs)
        self.provider: providers.Provider | None = None

    def get(self, request: HttpRequest, provider: str | None = None) -> HttpResponse:  # type: ignore[override]
        """Store the flow in the database, set the binding cookie, redirect to the provider."""
        next_url = safe_next_url(request, request.GET.get(import_from_settings("OIDC_REDIRECT_FIELD_NAME", "next")))
        mode = request.GET.get("mode") or "session"
        try:
            self.provider = providers.get_provider(provider or self.default_provider)
            if mode not in oidc_service.MODES:
                raise OIDCError("invalid_request")
            authorization = begin_authorization(
                self.provider,
                redirect_uri=callback_uri(request, self.provider),
                mode=mode,
                next_url=next_url,
                # Always a fresh value: never one the request brought (a planted cookie).
                binding=oidc_service.new_binding(),
                ip=client_ip(request),
                extra_params=self.get_extra_params(request),
            )
        except RateLimited as exc:
            # Too many flows started from this address: a page, not a redirect loop.
            return rate_limited_page(request, exc)
        except EphemeralAuthError as exc:
            return _failure(request, exc.code, mode=mode, next_url=next_url)
        except DatabaseError:
            failure = database_failure(logger, "in the OIDC authorize view")
            return _failure(request, failure.code, mode=mode, next_url=next_url)
        response = _redirect(authorization.url)
        _set_binding(
            response, request, binding_cookie_name(request, authorization.state), authorization.binding,
            authorization.max_age,
        )
        return response

    def get_extra_params(self, request: HttpRequest) -> dict[str, str]:
        """Return extra authorization parameters (the provider's ``extra_params``)."""
        return dict(self.provider.extra_params) if self.provider is not None else {}


class OIDCCallbackView(OIDCAuthenticationCallbackView):
    """``GET oidc/<provider>/callback/?code=&state=`` (or the shared ``oidc/callback/``).

    Consume the flow, authenticate, hand off.
    """

    http_method_names = ["get"]

    def get(self, request: HttpRequest, provider: str | None = None) -> HttpResponse:  # type: ignore[override]
        """Consume the state before any network call, then let the backend do the rest.

        ``provider``: the slug in the URL (``oidc/<slug>/callback/``); None on the
        shared compatibility URL.
        """
        self.flow: oidc_service.CallbackFlow | None = None
        # Names this flow's binding cookie, deleted with every answer. A state that
        # consume_state() refuses as malformed names no cookie we ever set.
        self.state = request.GET.get("state", "")
        try:
            # The one check of the state, and its single use, decided by one DELETE,
            # before anything else: an error callback, a bad code or a network failure
            # below all leave nothing usable.
            self.flow = oidc_service.consume_state(
                self.state, binding=request.COOKIES.get(binding_cookie_name(request, self.state))
            )
            flow_provider = providers.get_provider(self.flow.provider_slug)
            self.flow = replace(self.flow, provider=flow_provider)
            self._check_callback_url(provider, flow_provider)
            self.flow = replace(self.flow, code=self._check_parameters(request))
            self._check_issuer_parameter(request, flow_provider)
            # Django's authenticate() tries each backend; ours answers to oidc_flow=.
            user = auth.authenticate(request, oidc_flow=self.flow)
            if user is None:
                logger.error("OIDC callback: no backend answered; add %s to AUTHENTICATION_BACKENDS", "OIDCBackend")
                raise OIDCError("provider_misconfigured")
            self.user = user
            return self.login_success()
        except EphemeralAuthError as exc:
            return self.login_failure(exc.code)
        except DatabaseError:
            failure = database_failure(logger, "in the OIDC callback")
            if self.flow is None:
                # The state was not consumed: keep the binding cookie, the flow may be
                # retried (the browser's back button, a reload) once the database is back.
                self.state = ""
            return self.login_failure(failure.code)

    def _check_parameters(self, request: HttpRequest) -> str:
        """Return the callback's ``code``; raise OIDCError for an error answer or a bad code."""
        error = request.GET.get("error")
        if error:
            # The provider refused (user cancelled, consent denied...). The state is
            # already consumed, as mozilla-django-oidc does, against replays.
            shown = error[: oidc_service.MAX_ERROR_LENGTH] if is_plain_text(error, max_length=4096) else ""
            logger.info(
                "OIDC %s returned error %r",
                self.flow.provider_slug if self.flow else "?",
                shown if shown.isprintable() else "",
            )
            raise OIDCError("provider_error")
        code = request.GET.get("code", "")
        if not code or not is_plain_text(code, max_length=oidc_service.MAX_CODE_LENGTH):
            raise OIDCError("invalid_request")
        return code

    @staticmethod
    def _check_callback_url(slug: str | None, provider: providers.Provider) -> None:
        """The response came back to the callback of the provider the flow was sent to (no mix-up).

        A state of provider A arriving at provider B's callback means B's
        authorization server (or whoever sent the browser there) answered a
        request that was A's: refused, and the state is spent.
        """
        if slug is None:
            if not provider.shared_callback:
                logger.warning("OIDC: a %s flow came back to the shared callback", provider.slug)
                raise OIDCError("provider_mismatch")
        elif slug != provider.slug:
            logger.warning("OIDC: a %s flow came back to the callback of %s", provider.slug, slug)
            raise OIDCError("provider_mismatch")

    def _check_issuer_parameter(self, request: HttpRequest, provider: providers.Provider) -> None:
        # RFC 9207: a provider that sends iss in the response names itself; a
        # different issuer here means a mix-up between providers. A provider
        # that announces it always sends iss (authorization_response_iss_parameter_supported)
        # must send it: a response without it did not come from that provider.
        where = providers.endpoints(provider)
        iss = request.GET.get("iss")
        if iss is None:
            if where.iss_parameter_supported:
                raise OIDCError("iss_mismatch")
            return
        if not is_plain_text(iss, max_length=2048) or iss.rstrip("/") != where.issuer.rstrip("/"):
            raise OIDCError("iss_mismatch")

    @property
    def success_url(self) -> str:
        """Return the flow's own ``next`` (kept per flow, not per session), else LOGIN_REDIRECT_URL."""
        if self.flow is not None and self.flow.next_url:
            return self.flow.next_url
        return resolve_url(self.get_settings("LOGIN_REDIRECT_URL", "/"))

    @property
    def failure_url(self) -> str:
        """Return the failure URL (EPHEMERAL_AUTH_OIDC_FAILURE_URL, LOGIN_REDIRECT_URL_FAILURE or LOGIN_URL)."""
        return failure_url()

    def login_success(self) -> HttpResponse:
        """Hand the authenticated user to the 2FA-aware login step, or to the SPA."""
        assert self.flow is not None and self.flow.provider is not None
        result = callback_result(self.user)
        if self.flow.mode == "spa":
            binding = oidc_service.new_binding()
            issued = oidc_service.issue_exchange(
                self.user,
                provider=self.flow.provider.slug,
                binding=binding,
                mfa=oidc_service.asserted_mfa(self.flow.provider, result.id_claims),
            )
            target = self.flow.next_url or resolve_url(conf.get("OIDC_SPA_URL"))
            # A fragment never reaches a server log or a Referer header.
            response = _redirect(_with_fragment(target, oidc_token=issued.raw))
            # The exchange is redeemed by this browser only: a fresh binding of its own.
            _set_binding(response, self.request, exchange_cookie_name(self.request, issued.raw), binding,
                         issued.expires_in)
            return self._forget_flow_cookie(response)
        skip = oidc_service.asserted_mfa(self.flow.provider, result.id_claims)
        step = login.begin_login_atomically(
            self.request,
            self.user,
            backend=self.user.backend,
            skip_two_factor=skip,
            # Read together with the identity link: saves the login step a SELECT.
            state=result.two_factor_state,
        )
        response = responses.login_step_redirect(self.request, step, next_url=self.success_url)
        add_never_cache_headers(response)
        return _bounce_for_strict_session(self.request, self._forget_flow_cookie(response))

    def login_failure(self, code: str = "oidc_error") -> HttpResponse:  # type: ignore[override]
        """Redirect with the failure's stable code."""
        if self.flow is None:
            return self._forget_flow_cookie(_failure(self.request, code, mode="session", next_url=""))
        return self._forget_flow_cookie(_failure(self.request, code, mode=self.flow.mode, next_url=self.flow.next_url))

    def _forget_flow_cookie(self, response: HttpResponse) -> HttpResponse:
        """Delete this flow's binding cookie: its state is spent, whatever the outcome."""
        if self.state:
            name = binding_cookie_name(self.request, self.state)
            if name in self.request.COOKIES:
                response.delete_cookie(name, path="/", samesite="Lax")
        return response


def _set_binding(response: HttpResponse, request: HttpRequest, name: str, value: str, max_age: int) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=request.is_secure(), httponly=True,
        # Lax: sent on the provider's top-level GET redirect back to the callback,
        # not on cross-site subrequests or POSTs.
        samesite="Lax",
    )


def rate_limited_page(request: HttpRequest, exc: RateLimited) -> HttpResponse:
    """Answer 429 with Retry-After: too many sign-ins started from this address."""
    seconds = max(1, int(exc.retry_after))
    message = ngettext(
        "Too many sign-ins were started from your network. Try again in %(count)d second.",
        "Too many sign-ins were started from your network. Try again in %(count)d seconds.",
        seconds,
    ) % {"count": seconds}
    response = HttpResponse(
        f"<!doctype html>\n<title>{escape(message)}</title>\n<h1>{escape(message)}</h1>\n",
        status=429,
        content_type="text/html; charset=utf-8",
    )
    response["Retry-After"] = str(exc.retry_after)
    add_never_cache_headers(response)
    return response


def _failure(request: HttpRequest, code: str, *, mode: str, next_url: str) -> HttpResponse:
    logger.info("OIDC sign-in failed: %s", code)
    if mode == "spa":
        return _redirect(_with_fragment(next_url or resolve_url(conf.get("OIDC_SPA_URL")), oidc_error=code))
    return _redirect(_with_query(failure_url(), oidc_error=code, next=next_url))


def _bounce_for_strict_session(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """With a SameSite=Strict session cookie, continue through a same-site page.

    The callback is reached by a cross-site navigation from the provider, and a
    redirect keeps that cross-site context: the browser would not send the fresh
    Strict session cookie to ``next``, and the user would look signed out. A page
    of ours that navigates on makes the next request same-site.
    """
    if settings.SESSION_COOKIE_SAMESITE != "Strict" or response.status_code not in (301, 302, 303, 307):
        return response
    location = response["Location"]
    page = HttpResponse(
        render_to_string("ephemeral_auth/oidc/continue.html", {"url": location}, request=request),
    )
    page.cookies = response.cookies
    add_never_cache_headers(page)
    page["Referrer-Policy"] = "no-referrer"
    return page
