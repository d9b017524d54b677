"""GuardBackend: rate limits where Django authenticates, for every caller of ``authenticate()``.

Put it **first** in ``AUTHENTICATION_BACKENDS`` (check ``ephemeral_auth.E016``)::

    AUTHENTICATION_BACKENDS = [
        "ephemeral_auth.backends.GuardBackend",
        "django.contrib.auth.backends.ModelBackend",
        ...
    ]

For a call with a ``password`` credential it records the attempt in the
account's, the address's and the (account, address) buckets *before* any
password is hashed (``services.lockout``, the same record-first rule as the
app's own login), then runs the backends after it itself, once:

* a bucket is full → ``RateLimited`` (a ``PermissionDenied``): Django stops
  and no password is checked;
* every backend declines → the rows stay (a failure), and
  ``PermissionDenied`` stops Django from asking the same backends again;
* one accepts → exactly this attempt's rows are withdrawn and its user is
  returned.

So Django's admin login, ``LoginView``, DRF's basic authentication and
browsable-API login, and a site's own forms count in the same buckets as
``api/auth/login/``. Credentials without a password (the OIDC backend's)
pass through untouched. The backend that really accepted the user is what
the session remembers (``receivers.remember_login``); permissions are
answered by the other backends, as before.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model, load_backend
from django.contrib.auth.backends import BaseBackend
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest

from . import clock
from .client_ip import client_ip
from .exceptions import InvalidInput, RateLimited
from .http import device_cookie_name
from .services import lockout

__all__ = ["ATTEMPT_ATTRIBUTE", "GUARD_BACKEND", "INNER_BACKEND_ATTRIBUTE", "GuardBackend", "device_cookie_name"]

logger = logging.getLogger("ephemeral_auth.backends")

GUARD_BACKEND = "ephemeral_auth.backends.GuardBackend"
# Set on the request by the login step (auth.login), which recorded the attempt itself.
ATTEMPT_ATTRIBUTE = "_ephemeral_auth_password_attempt"
# Set on the returned user: the dotted path of the backend that accepted it.
INNER_BACKEND_ATTRIBUTE = "_ephemeral_auth_backend"
# Set on the request when the guard refused: the RateLimited, for a view that wants to say so.
REFUSAL_ATTRIBUTE = "_ephemeral_auth_refusal"
# Set on the request by receivers.remember_login: the pk of the user who just logged in
# (the middleware gives the browser the device cookie on the way out).
REMEMBER_DEVICE_ATTRIBUTE = "_ephemeral_auth_remember_device"

def read_device_cookie(request: HttpRequest | None) -> str:
    return request.COOKIES.get(device_cookie_name(request), "") if request is not None else ""


def _identifier(credentials: dict[str, Any]) -> Any:
    """The name the credentials give, as ModelBackend reads it (``username``, else the USERNAME_FIELD)."""
    model = get_user_model()
    for name in ("username", model.USERNAME_FIELD, "email"):
        value = credentials.get(name)
        if value is not None:
            return value
    return None


def inner_backends() -> list[tuple[Any, str]]:
    """Return ``(backend, path)`` for every configured backend except the guard itself."""
    found = []
    for path in settings.AUTHENTICATION_BACKENDS:
        backend = load_backend(path)
        if not isinstance(backend, GuardBackend):
            found.append((backend, path))
    return found


def _run_backends(request: HttpRequest | None, credentials: dict[str, Any]) -> tuple[Any, str] | None:
    """Ask the other backends, as ``django.contrib.auth.authenticate()`` would; the first user wins.

    Raises PermissionDenied when a backend does (Django's "stop in our tracks").
    """
    for backend, path in inner_backends():
        try:
            inspect.signature(backend.authenticate).bind(request, **credentials)
        except TypeError:
            continue  # this backend does not accept these credentials
        user = backend.authenticate(request, **credentials)
        if user is not None:
            return user, path
    return None


class GuardBackend(BaseBackend):
    """Record every password attempt before it is checked; refuse while a bucket is full."""

    def authenticate(self, request: HttpRequest | None, **credentials: Any) -> Any:  # type: ignore[override]
        if "password" not in credentials:
            return None  # not a password check (OIDC, tokens): Django asks the other backends
        if request is not None and getattr(request, ATTEMPT_ATTRIBUTE, None) is not None:
            # The login step recorded this attempt and settles it itself.
            found = _run_backends(request, credentials)
            if found is None:
                raise PermissionDenied
            user, path = found
            setattr(user, INNER_BACKEND_ATTRIBUTE, path)
            return user
        return self._guarded(request, credentials)

    def _guarded(self, request: HttpRequest | None, credentials: dict[str, Any]) -> Any:
        now = clock.now()
        identifier = _identifier(credentials)
        ip = client_ip(request) if request is not None else "0.0.0.0"  # noqa: S104 - a key, not a bind address
        device = read_device_cookie(request)
        try:
            attempt = lockout.begin(
                identifier if isinstance(identifier, str) or identifier is None else str(identifier),
                ip=ip, device_cookie=device, now=now,
            )
        except InvalidInput:
            raise PermissionDenied from None  # malformed: cannot be right, nothing recorded
        except RateLimited as exc:
            if request is not None:
                setattr(request, REFUSAL_ATTRIBUTE, exc)
            raise
        try:
            found = _run_backends(request, credentials)
        except PermissionDenied:
            attempt.signal_failure(request)
            raise
        if found is None:
            attempt.signal_failure(request)
            raise PermissionDenied
        user, path = found
        if attempt.account is None or attempt.account.pk != user.pk:
            # A backend accepted a name the lookup did not tie to this account: the
            # account's own buckets must admit the login too (services.lockout.check_account).
            try:
                lockout.check_account(user.pk, ip=ip, device_cookie=device, now=now)
            except RateLimited as exc:
                attempt.succeeded()  # no failure either: withdraw, and refuse
                if request is not None:
                    setattr(request, REFUSAL_ATTRIBUTE, exc)
                raise
        attempt.succeeded()
        setattr(user, INNER_BACKEND_ATTRIBUTE, path)
        return user

    def get_user(self, user_id: Any) -> Any:
        """Load a session's user through the backends after this one (sessions from before the rewrite)."""
        for backend, _path in inner_backends():
            get_user = getattr(backend, "get_user", None)
            user = get_user(user_id) if get_user is not None else None
            if user is not None:
                return user
        return None
