"""View decorators: :func:`one_time_link` protects a view with one-time download links;
:func:`two_factor_required` (and :class:`TwoFactorRequiredMixin`) admits only
users signed in with their second factor; :func:`reauthentication_required`
only sessions that confirmed it is the user within ``REAUTHENTICATION_WINDOW``.

Example::

    @one_time_link("file:{pk}", url_name="files:download")
    def download(request, pk):
        document = get_object_or_404(Document, pk=pk, owner=request.user)
        return FileResponse(document.file.open(), as_attachment=True)

    # in an authenticated view:
    link = download.issue_link(request, pk=document.pk)   # link.url, link.expires_in

Security reasoning:

* The token is the whole credential of a redemption: it is bound to the user
  who issued it and to the one resource the URL names. A cross-site request
  cannot redeem a link without knowing its token, and whoever knows it may
  redeem it anyway, so redemptions need no session and no CSRF cookie (a
  desktop app has neither). Requests *without* a token are ordinary session
  requests and keep Django's CSRF protection.
* The redeeming request runs as the issuing user for the duration of the view
  only: ``request.user`` is replaced, no session is created or modified and
  ``login()`` is never called, so nothing outlives the response.
* Scanner-safe mode: mail and chat link scanners fetch URLs with GET (and
  HEAD). There, GET only shows a confirmation page and POST redeems. HEAD
  never consumes in either mode.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.template.response import SimpleTemplateResponse
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt, csrf_protect

from . import conf
from .auth.session import session_proof
from .exceptions import EphemeralAuthError, InvalidToken, ReauthenticationRequired
from .http import error, fail_closed, wants_json
from .services import downloads, two_factor
from .views import downloads as pages

__all__ = [
    "RedeemedLink",
    "TwoFactorRequiredMixin",
    "one_time_link",
    "reauthentication_required",
    "two_factor_required",
]

logger = logging.getLogger("ephemeral_auth.downloads")

ResourceSpec = str | Callable[..., str]


@dataclass(frozen=True)
class RedeemedLink:
    """Set as ``request.one_time_link`` while a view serves a redeemed link."""

    resource: str


def _resource_of(spec: ResourceSpec, request: HttpRequest | None, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    if isinstance(spec, str):
        return spec.format(*args, **kwargs)
    return spec(request, *args, **kwargs)


def _presented_token(request: HttpRequest, param: str) -> str | None:
    """Return the token the request carries ("" if malformed), or None if it carries none."""
    values = request.GET.getlist(param)
    if request.method == "POST":
        values = request.POST.getlist(param) + values
    if not values:
        return None
    if len({*values}) != 1:
        return ""  # several different tokens: refuse rather than guess
    return values[0]


def _as_user(
    view: Callable[..., HttpResponse],
    request: HttpRequest,
    user: Any,
    resource: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> HttpResponse:
    """Call ``view`` with ``request.user`` set to ``user``, then put the request back."""
    missing = object()
    saved = {name: request.__dict__.get(name, missing) for name in ("user", "auser", "one_time_link")}
    saved_method = request.method

    async def auser() -> Any:
        return user

    request.user = user
    request.auser = auser  # type: ignore[attr-defined]
    request.one_time_link = RedeemedLink(resource=resource)  # type: ignore[attr-defined]
    # A scanner-safe redemption arrives as POST; the view serves a download
    # and is written for GET (it may even be decorated with require_GET).
    request.method = "GET"
    try:
        response = view(request, *args, **kwargs)
        if isinstance(response, SimpleTemplateResponse) and not response.is_rendered:
            # Render while request.user is still the link's user.
            response.render()
    finally:
        request.method = saved_method
        for name, value in saved.items():
            if value is missing:
                request.__dict__.pop(name, None)
            else:
                request.__dict__[name] = value
    return pages.protect(response)


def one_time_link(
    resource: ResourceSpec,
    *,
    param: str = downloads.DEFAULT_PARAM,
    scanner_safe: bool | None = None,
    url_name: str | None = None,
    allow_session: bool = True,
    confirm_template: str = pages.CONFIRM_TEMPLATE,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Let a view be opened once through a link carrying ``?<param>=<token>``.

    ``resource`` names what one URL serves: a format string filled with the
    URL's arguments (``"file:{pk}"``) or a callable ``(request, *args,
    **kwargs) -> str``; it must depend on the URL arguments only, because it is
    computed both when the link is issued and when it is redeemed.
    ``scanner_safe`` overrides ``EPHEMERAL_AUTH_DOWNLOAD_SCANNER_SAFE`` for this
    view (leave it False for links opened by desktop apps, which cannot click
    a confirmation button). With ``allow_session`` a logged-in browser may
    open the view without a token, as a normal session request. With
    ``url_name`` the wrapped view gains ``issue_link(request, *args, **kwargs)``.
    """

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        session_view = csrf_protect(view)

        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            raw = _presented_token(request, param)
            if raw is None:
                return without_token(request, args, kwargs)
            try:
                where = _resource_of(resource, request, args, kwargs)
            except (ValueError, TypeError):
                where = ""  # a resource that cannot be named cannot match a link
            safe = conf.get("DOWNLOAD_SCANNER_SAFE") if scanner_safe is None else scanner_safe
            try:
                # Fail closed: nothing served, a stable code (503), no traceback for the client.
                with fail_closed(logger, "while checking a download link"):
                    if request.method == "HEAD":
                        return pages.head_answer(valid=downloads.peek_download(raw, where) is not None)
                    if request.method == "GET" and safe:
                        if downloads.peek_download(raw, where) is None:
                            raise InvalidToken()
                        return pages.confirm_page(request, raw=raw, param=param, template_name=confirm_template)
                    if request.method not in ("GET", "POST"):
                        return pages.method_not_allowed(request)
                    user = downloads.redeem_download(raw, where)
            except EphemeralAuthError as exc:
                return pages.failure(request, exc)
            return _as_user(view, request, user, where, args, kwargs)

        def without_token(request: HttpRequest, args: tuple[Any, ...], kwargs: dict[str, Any]) -> HttpResponse:
            user = getattr(request, "user", None)
            if allow_session and user is not None and user.is_authenticated:
                # An ordinary session request: Django's CSRF check applies again.
                return session_view(request, *args, **kwargs)
            if wants_json(request) or request.method not in ("GET", "HEAD"):
                return error("not_authenticated", _("Authentication required."))
            return redirect_to_login(request.get_full_path())

        def issue_link(request_or_user: Any, *args: Any, **kwargs: Any) -> downloads.DownloadLink:
            """Issue a one-time link to this view for the URL arguments given."""
            if url_name is None:
                raise ImproperlyConfigured("one_time_link(url_name=...) is needed to issue links from the view.")
            options = {name: kwargs.pop(name) for name in ("ttl", "absolute", "now") if name in kwargs}
            request = request_or_user if isinstance(request_or_user, HttpRequest) else None
            return pages.issue_download_link(
                request_or_user,
                _resource_of(resource, request, args, kwargs),
                url_name=url_name,
                args=args,
                kwargs=kwargs,
                param=param,
                **options,
            )

        wrapper.issue_link = issue_link  # type: ignore[attr-defined]
        # Redemptions carry their own credential (see module docstring);
        # token-less requests are checked by csrf_protect in without_token.
        return csrf_exempt(wrapper)

    return decorate


# Views for users signed in with their second factor (docs/two-factor.md,
# "Requiring a second factor on your own views").


def two_factor_refusal(request: HttpRequest) -> HttpResponse | None:
    """Return the answer to a request that may not open a 2FA-only view, or None to let it in.

    Reads what ``TwoFactorMiddleware`` set (no query): a signed-in user with
    2FA enabled whose session passed it gets in. Otherwise JSON clients
    (``http.wants_json``: ``Content-Type`` or an ``Accept`` asking for JSON
    alone) get ``401 not_authenticated`` (nobody signed in, or a session that
    skipped the second factor) or ``403 two_factor_enrolment_required`` (no
    second factor yet); browsers are sent to ``LOGIN_URL`` or to
    ``EPHEMERAL_AUTH_TWO_FACTOR_ENROLMENT_URL``, with ``?next=`` this page
    (a path of this site, so a safe target).
    """
    if not hasattr(request, "two_factor_verified"):
        raise ImproperlyConfigured(
            "two_factor_required needs ephemeral_auth.middleware.TwoFactorMiddleware in MIDDLEWARE."
        )
    user = getattr(request, "user", None)
    signed_in = user is not None and user.is_authenticated
    enabled = bool(getattr(request, "two_factor_enabled", False))
    if signed_in and enabled and request.two_factor_verified:
        return None
    json_client = wants_json(request)
    if signed_in and not enabled:
        if json_client:
            return error(
                "two_factor_enrolment_required",
                _("Set up two-factor authentication to open this page."),
                status=403,
            )
        target = resolve_url(conf.get("TWO_FACTOR_ENROLMENT_URL"))
        separator = "&" if "?" in target else "?"
        return HttpResponseRedirect(f"{target}{separator}{urlencode({'next': request.get_full_path()})}")
    # Anonymous, or signed in without passing the second factor (the middleware hides
    # such sessions; without it this is the same answer): sign in again.
    if json_client:
        return error("not_authenticated", _("Authentication required."))
    return redirect_to_login(request.get_full_path())


def _guarded_by(refusal_of: Callable[[HttpRequest], HttpResponse | None]) -> Callable[..., Any]:
    """Return a decorator that answers ``refusal_of(request)`` when it is not None, else runs the view."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            refusal = refusal_of(request)
            if refusal is not None:
                return refusal
            return view(request, *args, **kwargs)

        return wrapper

    return decorate


def two_factor_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Let only users signed in with their second factor open ``view`` (a sync view).

    Example::

        @two_factor_required
        def payouts(request): ...

    See :func:`two_factor_refusal` for the answers to everyone else.
    """
    return _guarded_by(two_factor_refusal)(view)  # type: ignore[no-any-return]


class TwoFactorRequiredMixin:
    """Class-based views: the :func:`two_factor_required` check, before ``dispatch``.

    Put it first among the bases: ``class Payouts(TwoFactorRequiredMixin, TemplateView)``.
    """

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        refusal = two_factor_refusal(request)
        if refusal is not None:
            return refusal
        return super().dispatch(request, *args, **kwargs)  # type: ignore[misc]


# Views that need a recent proof that it is the user (docs/two-factor.md,
# "Reauthentication for your own views").


def reauthentication_refusal(request: HttpRequest) -> HttpResponse | None:
    """Return the answer to a request whose session may not open a reauthentication-only view, or None.

    The session gets in when its sign-in, or its last ``reauthenticate/``
    (or a password given to a 2FA change), is at most
    ``REAUTHENTICATION_WINDOW`` seconds old and belongs to the signed-in user
    (``services.two_factor.recently_authenticated``, the session path of
    ``require_fresh_proof``). Otherwise JSON clients (``http.wants_json``) get
    ``401 not_authenticated`` (nobody signed in) or ``403
    reauthentication_required``; browsers are sent to the login page with
    ``?next=`` this page, as the 2FA management pages do.
    """
    user = getattr(request, "user", None)
    json_client = wants_json(request)
    if user is None or not user.is_authenticated:
        if json_client:
            return error("not_authenticated", _("Authentication required."))
        return redirect_to_login(request.get_full_path())
    proof = session_proof(request)
    if proof.user_id == str(user.pk) and two_factor.recently_authenticated(proof):
        return None
    refusal = ReauthenticationRequired()
    if json_client:
        return error(refusal.code, refusal.message)
    messages.info(request, refusal.message, fail_silently=True)
    target = reverse("ephemeral_auth:login")
    return HttpResponseRedirect(f"{target}?{urlencode({'next': request.get_full_path()})}")


def reauthentication_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Let ``view`` (a sync view) run only for a session that proved it is the user within the window.

    Example::

        @reauthentication_required
        def delete_account(request): ...

    JSON clients reauthenticate with ``POST reauthenticate/`` and retry. See
    :func:`reauthentication_refusal` for the answers.
    """
    return _guarded_by(reauthentication_refusal)(view)  # type: ignore[no-any-return]
