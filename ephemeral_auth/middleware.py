"""TwoFactorMiddleware: a session that skipped the second factor is not logged in.

Put it after ``django.contrib.auth.middleware.AuthenticationMiddleware``::

    MIDDLEWARE = [..., "django.contrib.auth.middleware.AuthenticationMiddleware",
                  "ephemeral_auth.middleware.TwoFactorMiddleware", ...]

For every request it sets ``request.two_factor_verified`` (bool). When the
session's user has 2FA enabled but the session did not pass the 2FA step
(any ``login()`` call outside the 2FA-aware flows), ``request.user`` becomes
``AnonymousUser`` for the request: views and decorators see an anonymous
visitor and send them to log in properly. A session marked under another 2FA
configuration than the user's current one (a factor was added, replaced or
removed, new recovery codes, an admin reset, made from *another* session) is
logged out: a change of the configuration ends every other session.

On the way out it sets the device cookie of a browser that just completed a
login (``services.lockout``: the owner's way in while the account's failure
ceiling holds).

Cost: the 2FA state is cached in the session (``auth.session``
``SESSION_KEY``) and re-read at most every ``TWO_FACTOR_STATE_MAX_AGE``
seconds (default 60), so an authenticated request costs no extra query most
of the time. The trade-off: a 2FA change made in another session (enabling
2FA, replacing the authenticator) reaches this session within that many
seconds. Set it to 0 to re-read on every authenticated request. Requests
without a session cookie cost nothing.

When the session or the 2FA state cannot be read (the database is down), the
request is answered 503 here (``{"error": "service_unavailable"}`` for the JSON
API and JSON clients, a plain page otherwise): fail closed, and never the 500
page the view would otherwise hit (docs/deployment.md, "Database outages").

With ``EPHEMERAL_AUTH_REQUIRE_2FA_FOR_STAFF`` staff users without 2FA are
sent to ``TWO_FACTOR_ENROLMENT_URL`` (JSON clients get 403
``two_factor_enrolment_required``); ephemeral_auth's own pages stay reachable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.contrib.auth import SESSION_KEY as AUTH_SESSION_KEY
from django.contrib.auth import logout
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.utils.translation import gettext as _

from . import clock, conf
from .auth import session as two_factor_session
from .backends import REMEMBER_DEVICE_ATTRIBUTE, read_device_cookie
from .exceptions import ServiceUnavailable
from .http import device_cookie_name, error, fail_closed, service_unavailable, wants_json
from .services import lockout
from .services.factors import load_state

__all__ = ["REMEMBER_DEVICE_ATTRIBUTE", "TwoFactorMiddleware", "service_unavailable", "set_device_cookie"]

logger = logging.getLogger("ephemeral_auth.middleware")

# URL namespaces of ephemeral_auth's own views: always reachable (logout, enrolment, reset...).
OWN_NAMESPACES = frozenset({"ephemeral_auth", "ephemeral_auth_api"})


class TwoFactorMiddleware:
    """Expose ``request.two_factor_verified``; hide users whose session skipped their second factor."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            with fail_closed(logger, "while reading the session's two-factor state"):
                self.process_request(request)
        except ServiceUnavailable:
            # The session (or the 2FA state) cannot be read: we cannot tell who this is,
            # so nobody is signed in for this request. Answer 503 here: past this point
            # the view would meet the same error outside any handler (a 500 page).
            return service_unavailable(request)
        response = self.get_response(request)
        set_device_cookie(request, response)
        return response

    def process_request(self, request: HttpRequest) -> None:
        request.two_factor_verified = False  # type: ignore[attr-defined]
        request.two_factor_enabled = False  # type: ignore[attr-defined]
        session = getattr(request, "session", None)
        if session is None or session.session_key is None:
            return  # no session cookie: anonymous, and no query spent finding out
        user_id = session.get(AUTH_SESSION_KEY)
        if user_id is None:
            return
        state = self._state(request, str(user_id))
        if state is None:
            # Marked under a configuration the user no longer has: another session changed it.
            logger.info("session ended: the user's two-factor configuration changed")
            logout(request)
            self._hide(request)
            return
        enabled, verified = state
        request.two_factor_enabled = enabled  # type: ignore[attr-defined]
        request.two_factor_verified = verified  # type: ignore[attr-defined]
        if enabled and not verified:
            self._hide(request)

    @staticmethod
    def _hide(request: HttpRequest) -> None:
        """Make the request anonymous for every view and decorator (sync and async)."""
        anonymous = AnonymousUser()
        request.user = anonymous

        async def auser() -> AnonymousUser:
            return anonymous

        request.auser = auser  # type: ignore[attr-defined]

    def _state(self, request: HttpRequest, user_id: str) -> tuple[bool, bool] | None:
        """Return (2FA enabled, session verified) for the session's user, re-reading when stale.

        None: the session was marked under another configuration (end it).
        """
        mark = two_factor_session.session_mark(request)
        now = clock.now()
        stamp = int(now.timestamp())
        max_age = int(conf.get("TWO_FACTOR_STATE_MAX_AGE") or 0)
        same_user = mark is not None and str(mark["u"]) == user_id
        if same_user and "e" in mark and max_age > 0 and 0 <= stamp - int(mark["t"]) < max_age:  # type: ignore[index,operator]
            return bool(mark["e"]), bool(mark["v"])  # type: ignore[index]
        state = load_state(user_id)
        if same_user and mark["f"] != state.fingerprint:  # type: ignore[index]
            stored = self._stored_mark(request)
            if stored is None or stored["u"] != user_id or stored["f"] != state.fingerprint:
                return None
            # This very session made the change, in a request that saved its new
            # mark after this one loaded the session (two tabs): adopt it.
            mark = stored
        verified = bool(same_user and mark["v"])  # type: ignore[index]
        fresh = {"u": user_id, "f": state.fingerprint, "v": verified, "e": state.enabled, "t": stamp}
        if max_age > 0 or mark is None or {k: v for k, v in mark.items() if k != "t"} != {
            k: v for k, v in fresh.items() if k != "t"
        }:
            request.session[two_factor_session.SESSION_KEY] = fresh  # type: ignore[attr-defined]
        return state.enabled, verified

    @staticmethod
    def _stored_mark(request: HttpRequest) -> dict[str, Any] | None:
        """Return the session's mark as stored now (another request of this session may have changed it)."""
        session = request.session  # type: ignore[attr-defined]
        stored = type(session)(session.session_key).get(two_factor_session.SESSION_KEY)
        if not isinstance(stored, dict) or not {"u", "f", "v"} <= set(stored):
            return None
        return {**stored, "u": str(stored["u"])}

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], view_args: Any, view_kwargs: Any
    ) -> HttpResponse | None:
        """Send staff users without 2FA to enrolment when the project requires it."""
        if not conf.get("REQUIRE_2FA_FOR_STAFF") or getattr(request, "two_factor_enabled", False):
            return None
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not getattr(user, "is_staff", False):
            return None
        match = request.resolver_match
        if match is not None and OWN_NAMESPACES.intersection(match.namespaces):
            return None
        if wants_json(request):
            return error(
                "two_factor_enrolment_required",
                _("Staff accounts must set up two-factor authentication first."),
                status=403,
            )
        target = resolve_url(conf.get("TWO_FACTOR_ENROLMENT_URL"))
        return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")


def set_device_cookie(request: HttpRequest, response: HttpResponse) -> None:
    """Give a browser that just completed a login the device cookie naming the account."""
    pk = getattr(request, REMEMBER_DEVICE_ATTRIBUTE, None)
    if pk is None or response.status_code >= 500:
        return
    value = lockout.remember_device(read_device_cookie(request), pk)
    if value is None:
        return
    response.set_cookie(
        device_cookie_name(request), value, max_age=int(conf.get("DEVICE_COOKIE_AGE")), path="/",
        secure=request.is_secure(), httponly=True, samesite="Lax",
    )
