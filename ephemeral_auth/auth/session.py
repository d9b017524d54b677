"""The session's second-factor mark and sign-in time: written at login, read as a proof.

* The session's mark (:data:`SESSION_KEY`) says "this session passed the
  second factor for user ``u`` while the 2FA configuration was ``f``". The
  fingerprint ``f`` (``services.factors.fingerprint``) changes with every
  change of the active configuration (a method enrolled, re-enrolled or
  removed, new recovery codes, an admin reset: ``UserTwoFactor.changed_at``).
  The middleware ends every session whose fingerprint is no longer the
  user's, except the one that made the change (it is re-marked:
  :func:`remark_session`); it re-reads the configuration at most every
  ``TWO_FACTOR_STATE_MAX_AGE`` seconds (docs/two-factor.md, "Middleware").
* The services judge a change of the configuration on a plain
  ``services.proof.Proof``: :func:`session_proof` reads it from the session,
  :func:`save_proof` writes back a password the service confirmed.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import clock
from ..services.factors import TwoFactorState, load_state
from ..services.proof import Proof

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

__all__ = [
    "AUTHENTICATED_AT_KEY",
    "SESSION_KEY",
    "mark_session",
    "remark_session",
    "save_proof",
    "session_mark",
    "session_proof",
]

# The session key of the 2FA mark; a dict {"u": user pk, "f": fingerprint,
# "v": verified, "e": 2FA enabled, "t": epoch seconds of the last configuration check}.
SESSION_KEY = "_ephemeral_auth_2fa"
# Epoch seconds of the session's last sign-in (any login()) or password confirmation.
AUTHENTICATED_AT_KEY = "_ephemeral_auth_authenticated_at"


def session_mark(request: HttpRequest) -> dict[str, Any] | None:
    """Return the session's 2FA mark if it is well formed."""
    session = getattr(request, "session", None)
    if session is None:
        return None
    mark = session.get(SESSION_KEY)
    if not isinstance(mark, dict) or not {"u", "f", "v", "t"} <= set(mark):
        return None
    return mark


def mark_session(
    request: HttpRequest, user: AbstractBaseUser, state: TwoFactorState, *, verified: bool,
    now: datetime | None = None,
) -> None:
    """Record in the session that ``user`` did (or did not) pass 2FA under ``state``.

    Call it after ``login()``: login may flush the session.
    """
    now = now or clock.now()
    request.session[SESSION_KEY] = {
        "u": str(user.pk),
        "f": state.fingerprint,
        "v": bool(verified),
        "e": state.enabled,
        "t": int(now.timestamp()),
    }
    request.two_factor_verified = bool(verified)  # type: ignore[attr-defined]
    request.two_factor_enabled = state.enabled  # type: ignore[attr-defined]


def session_proof(request: HttpRequest) -> Proof:
    """Return what the request's session proves: its 2FA mark and its last sign-in time."""
    session = getattr(request, "session", None)
    mark = session_mark(request) or {}
    at = session.get(AUTHENTICATED_AT_KEY) if session is not None else None
    return Proof(
        user_id=str(mark["u"]) if "u" in mark else None,
        fingerprint=str(mark["f"]) if "f" in mark else None,
        verified=bool(mark.get("v")),
        authenticated_at=at if isinstance(at, int) and not isinstance(at, bool) else None,
    )


def save_proof(request: HttpRequest, proof: Any) -> None:
    """Store a password confirmed by a service as the session's new sign-in time."""
    if proof.renewed_at is not None and hasattr(request, "session"):
        request.session[AUTHENTICATED_AT_KEY] = int(proof.renewed_at)


def remark_session(request: HttpRequest, *, verified: bool | None = None) -> None:
    """Re-mark this session after it changed the user's 2FA configuration.

    The change was made from this session, which proved it is the user's
    (``require_fresh_proof``), so it keeps its standing under the new
    configuration: verified when it was, or when it just enrolled a factor.
    Every other session's fingerprint no longer matches: the middleware ends
    them. One SELECT (the configuration, read back from the database).
    """
    user = request.user
    keep = bool(getattr(request, "two_factor_verified", False)) if verified is None else verified
    mark_session(request, user, load_state(user), verified=keep)  # type: ignore[arg-type]
