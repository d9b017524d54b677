"""The three comparisons of bench/alternatives_peers.py, each side driven through its real code.

* OIDC flow state: mozilla-django-oidc's authorize and callback views (state,
  nonce and PKCE verifier in ``request.session``, saved by the session backend:
  database rows, or Redis through the cache backend) against ephemeral_auth's
  views (one ``oidc_state`` row: INSERT at authorize, DELETE ... RETURNING at
  the callback). No provider is called: only ``ModelBackend`` is configured,
  so ``authenticate()`` answers None right after each side's state check and
  each view ends in its failure redirect. Whether the state was found and
  used up is read from ``user_login_failed``, which both views reach only then.
* Lockout bookkeeping: django-axes' database handler (``is_allowed`` as its
  backend calls it before the password check, ``user_login_failed`` as its
  signal receiver calls it after a failure) against ephemeral_auth's password
  step (``ratelimit.record_first`` for the account and the IP, then
  ``confirm``; ``ratelimit.check`` for a status check).
* Cache-based rate limit: django-allauth's ``login_failed`` limit through its
  adapter (``pre_authenticate``: ``allauth.core.ratelimit.consume``) with its
  cache on Redis, and on LocMem as a reference line, against the same calls of
  ephemeral_auth.

Every subject and every IP is used by one side only (a counter makes them
unique), so the sides never see each other's rows or keys.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.signals import user_login_failed
from django.contrib.sessions.backends.cache import SessionStore as CacheSessionStore
from django.contrib.sessions.backends.db import SessionStore as DBSessionStore
from django.core.exceptions import SuspiciousOperation, ValidationError
from django.http import HttpRequest
from django.test import RequestFactory, override_settings

from ephemeral_auth import clock
from ephemeral_auth.client_ip import client_ip
from ephemeral_auth.exceptions import RateLimited
from ephemeral_auth.models import EventType, RateLimitEvent
from ephemeral_auth.services import ratelimit

from .harness import Case, Operation

__all__ = ["allauth_operations", "axes_operations", "oidc_operations"]

OURS = "ephemeral_auth"
FACTORY = RequestFactory()
AGENT = "Mozilla/5.0 (bench)"
_serial = itertools.count(1)


def _subject() -> str:
    return f"user{next(_serial)}"


def _ip() -> str:
    k = next(_serial)
    return f"10.{(k >> 16) & 255}.{(k >> 8) & 255}.{k & 255}"


def _login_request(username: str, ip: str) -> HttpRequest:
    return FACTORY.post(
        "/accounts/login/", {"username": username, "password": "wrong"}, REMOTE_ADDR=ip, HTTP_USER_AGENT=AGENT
    )


# OIDC flow state.


_reached_authenticate = {"count": 0}


def _on_login_failed(sender: Any, **kwargs: Any) -> None:
    _reached_authenticate["count"] += 1


user_login_failed.connect(_on_login_failed, dispatch_uid="bench-alt-state-used")


def _state_of(location: str) -> str:
    return parse_qs(urlsplit(location).query)["state"][0]


def _moz_views() -> tuple[Any, Any]:
    from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

    return OIDCAuthenticationRequestView.as_view(), OIDCAuthenticationCallbackView.as_view()


def _our_views() -> tuple[Any, Any, str]:
    from ephemeral_auth import conf
    from ephemeral_auth.oidc.views import OIDCAuthorizeView, OIDCCallbackView

    return OIDCAuthorizeView.as_view(), OIDCCallbackView.as_view(), str(conf.get("OIDC_COOKIE_NAME"))


def _moz_authorize_request(store: type, session_key: str | None = None) -> HttpRequest:
    request = FACTORY.get("/oidc/authenticate/", {"next": "/after/"})
    request.session = store(session_key)  # type: ignore[attr-defined]
    return request


def _moz_authorize(view: Any) -> Callable[[HttpRequest], str]:
    def op(request: HttpRequest) -> str:
        response = view(request)
        request.session.save()  # what SessionMiddleware does with a modified session
        return "302 to the provider" if response.status_code == 302 and "state=" in response["Location"] else "?"

    return op


def _moz_callback(view: Any) -> Callable[[HttpRequest], str]:
    def op(request: HttpRequest) -> str:
        before = _reached_authenticate["count"]
        try:
            view(request)
        except SuspiciousOperation:
            return "state not found"
        return "state used" if _reached_authenticate["count"] == before + 1 else "state not found"

    return op


def _existing_sessions(store: type, n: int) -> list[str]:
    keys = []
    for _ in range(n):
        session = store()
        session["seen"] = True  # a returning browser: some session content already there
        session.save()
        keys.append(session.session_key)
    return keys


def oidc_operations() -> list[Operation]:
    """Return the authorize and callback operations, each with ours and mozilla-django-oidc's two session engines."""
    moz_authorize_view, moz_callback_view = _moz_views()
    our_authorize_view, our_callback_view, cookie = _our_views()
    from ephemeral_auth.services.oidc import new_binding

    stores = {
        "mozilla-django-oidc, db sessions": DBSessionStore,
        "mozilla-django-oidc, Redis sessions": CacheSessionStore,
    }

    def our_authorize_requests(with_cookie: bool) -> Callable[[int], list[HttpRequest]]:
        def prepare(n: int) -> list[HttpRequest]:
            requests = []
            for _ in range(n):
                request = FACTORY.get("/api/auth/oidc/default/authorize/", {"next": "/after/"})
                if with_cookie:
                    request.COOKIES[cookie] = new_binding()
                requests.append(request)
            return requests

        return prepare

    def our_authorize(request: HttpRequest) -> str:
        response = our_authorize_view(request)
        ok = response.status_code == 302 and "state=" in response["Location"] and cookie in response.cookies
        return "302 to the provider" if ok else "?"

    def our_callback_requests(n: int) -> list[HttpRequest]:
        requests = []
        for request in our_authorize_requests(False)(n):
            response = our_authorize_view(request)
            params = {"code": "bench-code", "state": _state_of(response["Location"])}
            callback = FACTORY.get("/api/auth/oidc/callback/", params)
            callback.COOKIES[cookie] = response.cookies[cookie].value
            callback.user = AnonymousUser()  # type: ignore[attr-defined]
            requests.append(callback)
        return requests

    def our_callback(request: HttpRequest) -> str:
        before = _reached_authenticate["count"]
        response = our_callback_view(request)
        used = _reached_authenticate["count"] == before + 1 and "provider_misconfigured" in response["Location"]
        return "state used" if used else "state not found"

    def moz_fresh(store: type) -> Callable[[int], list[HttpRequest]]:
        return lambda n: [_moz_authorize_request(store) for _ in range(n)]

    def moz_returning(store: type) -> Callable[[int], list[HttpRequest]]:
        return lambda n: [_moz_authorize_request(store, key) for key in _existing_sessions(store, n)]

    def moz_callback_requests(store: type) -> Callable[[int], list[HttpRequest]]:
        def prepare(n: int) -> list[HttpRequest]:
            requests = []
            for request in moz_fresh(store)(n):
                response = moz_authorize_view(request)
                request.session.save()
                params = {"code": "bench-code", "state": _state_of(response["Location"])}
                callback = FACTORY.get("/oidc/callback/", params)
                callback.session = store(request.session.session_key)  # type: ignore[attr-defined]
                callback.user = AnonymousUser()  # type: ignore[attr-defined]
                requests.append(callback)
            return requests

        return prepare

    fresh = [Case(OURS, our_authorize_requests(False), our_authorize)]
    returning = [Case(OURS, our_authorize_requests(True), our_authorize)]
    callback = [Case(OURS, our_callback_requests, our_callback)]
    for system, store in stores.items():
        fresh.append(Case(system, moz_fresh(store), _moz_authorize(moz_authorize_view)))
        returning.append(Case(system, moz_returning(store), _moz_authorize(moz_authorize_view)))
        callback.append(Case(system, moz_callback_requests(store), _moz_callback(moz_callback_view)))
    return [
        Operation("authorize: store the flow state (new browser)", "302 to the provider", fresh,
                  note="mozilla creates the session; ours sets a binding cookie"),
        Operation("authorize: store the flow state (browser with a session / binding cookie)", "302 to the provider",
                  returning, note="mozilla loads and rewrites the existing session"),
        Operation("callback: find and use up the state", "state used", callback,
                  note="mozilla loads the session, pops the state, saves the session"),
    ]


# Lockout bookkeeping: django-axes.


def _axes_on() -> AbstractContextManager[Any]:
    return override_settings(AXES_ENABLED=True)


def _axes_prefill(pairs: list[tuple[str, str]], failures: int) -> None:
    from axes.models import AccessAttempt

    AccessAttempt.objects.bulk_create(
        AccessAttempt(
            username=username, ip_address=ip, user_agent=AGENT, http_accept="*/*", path_info="/accounts/login/",
            get_data="", post_data="", failures_since_start=failures,
        )
        for username, ip in pairs
    )


def _ours_prefill(pairs: list[tuple[str, str]], failures: int) -> None:
    at = clock.now() - timedelta(seconds=30)
    RateLimitEvent.objects.bulk_create(
        RateLimitEvent(event_type=event_type, key=key, occurred_at=at)
        for username, ip in pairs
        for event_type, key in ((EventType.LOGIN_ATTEMPT, username), (EventType.LOGIN_IP, ip))
        for _ in range(failures)
    )


def _axes_credentials(request: HttpRequest) -> dict[str, str]:
    # What django.contrib.auth.authenticate() hands to backends and signals (the password masked).
    return {"username": request.POST["username"], "password": "********************"}


def _axes_failed_login(request: HttpRequest) -> str:
    """One wrong password as axes sees it: AxesStandaloneBackend's check, then the failure receiver."""
    from axes.handlers.proxy import AxesProxyHandler

    credentials = _axes_credentials(request)
    allowed = AxesProxyHandler.is_allowed(request, credentials)
    AxesProxyHandler.user_login_failed(sender="django.contrib.auth", credentials=credentials, request=request)
    return "admitted" if allowed else "refused"


def _axes_check(request: HttpRequest) -> str:
    from axes.handlers.proxy import AxesProxyHandler

    return "admitted" if AxesProxyHandler.is_allowed(request, _axes_credentials(request)) else "refused"


def _our_failed_login(request: HttpRequest) -> str:
    """One wrong password as our password step records it: both buckets first, then the recount."""
    ip = ratelimit.ip_key(client_ip(request))
    subject = ratelimit.subject_key(request.POST["username"])
    try:
        provisional = ratelimit.record_first([(EventType.LOGIN_ATTEMPT, subject), (EventType.LOGIN_IP, ip)])
        provisional.confirm()
    except RateLimited:
        return "refused"
    return "admitted"  # a failure keeps its two rows


def _our_check(request: HttpRequest) -> str:
    try:
        ratelimit.check(EventType.LOGIN_ATTEMPT, ratelimit.subject_key(request.POST["username"]))
        ratelimit.check(EventType.LOGIN_IP, ratelimit.ip_key(client_ip(request)))
    except RateLimited:
        return "refused"
    return "admitted"


Prefill = Callable[[list[tuple[str, str]], int], None]
Prepare = Callable[[int], list[HttpRequest]]


def _with_earlier_failures(prefill: Prefill, failures: int) -> Prepare:
    """Prepare n subjects (each with its own IP) that already have ``failures`` failures."""

    def prepare(n: int) -> list[HttpRequest]:
        pairs = [(_subject(), _ip()) for _ in range(n)]
        if failures:
            prefill(pairs, failures)
        return [_login_request(username, ip) for username, ip in pairs]

    return prepare


def _one_subject(prefill: Prefill, failures: int, *, fresh_ips: bool) -> Prepare:
    """Prepare n requests for one subject with ``failures`` failures (from one IP), from fresh IPs or from that IP."""

    def prepare(n: int) -> list[HttpRequest]:
        username, ip = _subject(), _ip()
        prefill([(username, ip)], failures)
        return [_login_request(username, _ip() if fresh_ips else ip) for _ in range(n)]

    return prepare


def axes_operations() -> list[Operation]:
    """Return the lockout operations: ours against django-axes' database handler."""
    limit = settings.AXES_FAILURE_LIMIT
    axes = "django-axes (database handler)"

    def pair(ours_prepare: Callable[[int], list[HttpRequest]], ours_op: Callable[[HttpRequest], str],
             axes_prepare: Callable[[int], list[HttpRequest]], axes_op: Callable[[HttpRequest], str]) -> list[Case]:
        return [Case(OURS, ours_prepare, ours_op), Case(axes, axes_prepare, axes_op, _axes_on)]

    return [
        Operation(
            "wrong password, subject under its limit (3 earlier failures): check + record", "admitted",
            pair(_with_earlier_failures(_ours_prefill, 3), _our_failed_login,
                 _with_earlier_failures(_axes_prefill, 3), _axes_failed_login),
            note="axes: is_allowed + user_login_failed; ours: record_first + confirm",
        ),
        Operation(
            "wrong password, first failure of a subject: check + record", "admitted",
            pair(_with_earlier_failures(_ours_prefill, 0), _our_failed_login,
                 _with_earlier_failures(_axes_prefill, 0), _axes_failed_login),
            note="axes creates its AccessAttempt row",
        ),
        Operation(
            f"login attempt on a locked account ({limit} failures), from a new IP", "refused",
            pair(_one_subject(_ours_prefill, limit, fresh_ips=True), _our_failed_login,
                 _one_subject(_axes_prefill, limit, fresh_ips=True), _axes_failed_login),
            note="axes records the refused attempt too (AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT); "
                 "ours withdraws the IP row it wrote",
        ),
        Operation(
            "lock status, subject under its limit", "admitted",
            pair(_one_subject(_ours_prefill, 3, fresh_ips=False), _our_check,
                 _one_subject(_axes_prefill, 3, fresh_ips=False), _axes_check),
            note="axes: is_allowed; ours: check per account and per IP",
        ),
        Operation(
            f"lock status, locked subject ({limit} failures)", "refused",
            pair(_one_subject(_ours_prefill, limit, fresh_ips=False), _our_check,
                 _one_subject(_axes_prefill, limit, fresh_ips=False), _axes_check),
        ),
    ]


# Cache-based rate limit: django-allauth.


def _locmem() -> AbstractContextManager[Any]:
    return override_settings(CACHES=settings.LOCMEM_CACHES)


def _allauth_failed_login(request: HttpRequest) -> str:
    """What allauth's login does before authenticate(): consume the login_failed limit (per IP, per account)."""
    from allauth.account.adapter import get_adapter

    try:
        get_adapter(request).pre_authenticate(request, username=request.POST["username"], password="wrong")
    except ValidationError:
        return "refused"
    return "admitted"  # a failure keeps its usage


def _allauth_key(request: HttpRequest) -> str:
    from allauth.account.adapter import get_adapter

    return str(get_adapter(request)._get_login_attempts_cache_key(request, username=request.POST["username"]))


def _allauth_check(item: tuple[HttpRequest, str]) -> str:
    from allauth.core import ratelimit as allauth_ratelimit

    request, key = item
    allowed = allauth_ratelimit.consume(request, action="login_failed", key=key, dry_run=True)
    return "admitted" if allowed else "refused"


def _allauth_prefill(pairs: list[tuple[str, str]], failures: int) -> None:
    # allauth keeps its history in the cache: fill it through its own API.
    for username, ip in pairs:
        for _ in range(failures):
            _allauth_failed_login(_login_request(username, ip))


def _allauth_locked_prefill(pairs: list[tuple[str, str]], failures: int) -> None:
    # The account's failures come from several IPs, so no IP bucket is full.
    for username, _ip_address in pairs:
        for _ in range(failures):
            _allauth_failed_login(_login_request(username, _ip()))


def allauth_operations() -> list[Operation]:
    """Return the rate-limit operations: ours against allauth's login_failed limit on Redis and on LocMem."""
    redis, locmem = "django-allauth, cache on Redis", "django-allauth, LocMem cache (per process)"

    def with_keys(prepare: Callable[[int], list[HttpRequest]]) -> Callable[[int], list[tuple[HttpRequest, str]]]:
        return lambda n: [(request, _allauth_key(request)) for request in prepare(n)]

    def sides(ours: Case, theirs: Callable[[Callable[[], AbstractContextManager[Any]] | None], Case]) -> list[Case]:
        return [ours, theirs(None), theirs(_locmem)]

    def allauth_case(prepare: Any, op: Any) -> Callable[[Any], Case]:
        def make(context: Any) -> Case:
            if context is None:
                return Case(redis, prepare, op)
            return Case(locmem, prepare, op, context)

        return make

    return [
        Operation(
            "wrong password, subject under its limit (3 earlier failures): check + record", "admitted",
            sides(Case(OURS, _with_earlier_failures(_ours_prefill, 3), _our_failed_login),
                  allauth_case(_with_earlier_failures(_allauth_prefill, 3), _allauth_failed_login)),
            note="allauth: pre_authenticate -> ratelimit.consume (2 rates); ours: record_first + confirm",
        ),
        Operation(
            "login attempt on a locked account (10 failures), from a new IP", "refused",
            sides(Case(OURS, _one_subject(_ours_prefill, 10, fresh_ips=True), _our_failed_login),
                  allauth_case(_one_subject(_allauth_locked_prefill, 10, fresh_ips=True), _allauth_failed_login)),
            note="allauth keeps the IP usage of a refused attempt; ours withdraws it",
        ),
        Operation(
            "check only, subject under its limit", "admitted",
            sides(Case(OURS, _one_subject(_ours_prefill, 3, fresh_ips=False), _our_check),
                  allauth_case(with_keys(_one_subject(_allauth_prefill, 3, fresh_ips=False)), _allauth_check)),
            note="allauth: consume(dry_run=True); ours: check per account and per IP",
        ),
    ]
