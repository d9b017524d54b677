"""The "trust this browser" cookie (docs/two-factor.md, "Trusted browsers").

The policy (issue, check, list, revoke) is ``services.trusted_browsers``;
this module carries the raw token between the browser and those services:

* the cookie is HttpOnly, ``SameSite=Lax``, ``Path=/``, ``Max-Age`` = the
  trust's lifetime; on HTTPS ``Secure`` and named ``__Host-<name>``
  (:func:`ephemeral_auth.http.trusted_browser_cookie_name`), and only the
  name matching the request's scheme is read;
* a value that cannot be a token (too long, not text) is ignored: the login
  simply asks for the second factor;
* the token issued by a completed second factor waits on the request
  (:func:`remember`) until the view sets it on its answer
  (:func:`set_trust_cookie`), like the pending-login cookies.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext

from ..exceptions import InvalidInput
from ..http import trusted_browser_cookie_name
from ..services import trusted_browsers

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest, HttpResponse

    from ..services.factors import TwoFactorState
    from ..services.tokens import IssuedToken

__all__ = ["ISSUED_ATTRIBUTE", "is_trusted", "read_trust_cookie", "remember", "set_trust_cookie", "trust_requested"]

# The request attribute holding the token a completed second factor just issued.
ISSUED_ATTRIBUTE = "_ephemeral_auth_trusted_browser"
# A raw token is 43 characters; a longer cookie is not ours (ignored, never looked up).
MAX_COOKIE_LENGTH = 128


def read_trust_cookie(request: HttpRequest) -> str:
    """Return this browser's trust cookie ("" when absent, or when it cannot be a token)."""
    value = request.COOKIES.get(trusted_browser_cookie_name(request), "")
    if not isinstance(value, str) or len(value) > MAX_COOKIE_LENGTH:
        return ""
    return value


def is_trusted(request: HttpRequest, user: AbstractBaseUser, state: TwoFactorState, *, now: datetime) -> bool:
    """Whether this browser holds a live trust of ``user`` under the configuration ``state``.

    No query without the cookie (or with the feature off); one SELECT with it.
    """
    raw = read_trust_cookie(request)
    if not raw:
        return False
    return trusted_browsers.check(raw, user, fingerprint=state.fingerprint, now=now)


def remember(request: HttpRequest, issued: IssuedToken | None) -> None:
    """Keep a freshly issued trust on the request for :func:`set_trust_cookie`."""
    if issued is not None:
        setattr(request, ISSUED_ATTRIBUTE, issued)


def set_trust_cookie(response: HttpResponse, request: HttpRequest) -> None:
    """Give the browser the trust its second factor just earned (nothing when none was asked for)."""
    issued: Any = getattr(request, ISSUED_ATTRIBUTE, None)
    if issued is None:
        return
    response.set_cookie(
        trusted_browser_cookie_name(request),
        issued.raw,
        max_age=issued.expires_in,
        path="/",
        secure=request.is_secure(),
        httponly=True,
        samesite="Lax",
    )


def trust_requested(data: dict[str, Any]) -> bool:
    """Read a JSON second-factor request's ``trust_browser`` flag (``2fa/verify/``, ``2fa/webauthn/verify/``).

    Not read at all while trusted browsers are off; otherwise absent means
    False and anything but a boolean is ``invalid_input``.
    """
    if not trusted_browsers.enabled():
        return False
    trust = data.get("trust_browser", False)
    if not isinstance(trust, bool):
        raise InvalidInput(gettext("trust_browser must be true or false."), field="trust_browser")
    return trust
