"""Trusted browsers: "trust this browser" on the token table (docs/two-factor.md, "Trusted browsers").

After a completed second factor with ``trust_browser`` set, a
``trusted_browser`` token is issued for the user; its raw value goes to the
browser in an HttpOnly cookie (the auth layer sets it), its SHA-256 digest is
the row. On the next sign-in of that user from that browser, a live token of
*this* user issued under the user's *current* 2FA configuration skips the
second factor.

Security reasoning:

* Opt-in: ``EPHEMERAL_AUTH_TRUSTED_BROWSER_DAYS`` (0 or None: off). Off,
  nothing is issued and nothing is honoured, and no statement is spent.
* Peeked, never consumed: the trust is reusable within its lifetime (one
  indexed SELECT on the token digest, only when the browser presents the
  cookie). A malformed or oversized cookie is refused without a query.
* Bound to the user (the lookup holds ``user_id``: another account's cookie
  matches nothing) and to the 2FA fingerprint it was issued under
  (``services.factors.fingerprint``, kept in the row's ``code_hash``): any
  change of the active configuration (a factor added, replaced or removed,
  new recovery codes, an admin reset) voids it at once, in the transaction
  that made the change. The rows are deleted too: by :func:`revoke_all`
  (called by those changes while the feature is on), by
  ``two_factor.reset_two_factor`` and by a password change
  (``passwords.revoke_after_password_change``), both in the DELETE they
  already run.
* Listed and revoked by the user (only their own rows); nothing secret is
  ever returned: ids and times, and whether a row is this browser's.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext

from .. import clock, conf, crypto
from ..exceptions import InvalidInput
from ..models import EphemeralToken, TokenType
from . import tokens
from .factors import load_state
from .inputs import is_plain_text

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = ["TrustedBrowser", "binding", "check", "enabled", "issue", "lifetime", "list_for", "revoke", "revoke_all"]

logger = logging.getLogger("ephemeral_auth.trusted_browsers")

# Ids are BigAutoField values: anything outside a signed 64-bit integer names no row.
_MAX_ID = 2**63 - 1


def lifetime() -> timedelta | None:
    """Return how long a browser stays trusted, or None when the feature is off."""
    days = conf.get("TRUSTED_BROWSER_DAYS")
    # Anything but a positive number of days (system check E025) leaves the feature off: fail closed.
    if isinstance(days, bool) or not isinstance(days, (int, float)) or not 0 < days < 3650:
        return None
    return timedelta(days=days)


def enabled() -> bool:
    """Whether "trust this browser" is on (``EPHEMERAL_AUTH_TRUSTED_BROWSER_DAYS``)."""
    return lifetime() is not None


def binding(user: AbstractBaseUser, fingerprint: str) -> str:
    """What a trust is bound to: the user's 2FA configuration and their password (64 hex characters).

    ``fingerprint`` changes with any 2FA change; ``get_session_auth_hash()``
    (an HMAC of the password hash, which Django's sessions use the same way)
    changes with the password, however it was changed: a reset, the admin,
    ``set_password`` + ``save``, or a ``QuerySet.update`` that sends no
    signal. The rows are also deleted on those changes; the binding makes a
    trust issued in a race with one of them, or one that outlived a change
    made without signals, match nothing.
    """
    password = user.get_session_auth_hash() if hasattr(user, "get_session_auth_hash") else ""
    return hashlib.sha256(f"{fingerprint}|{password}".encode()).hexdigest()


def issue(user: AbstractBaseUser, *, fingerprint: str, now: datetime | None = None) -> tokens.IssuedToken | None:
    """Trust one browser of ``user`` under the 2FA configuration ``fingerprint`` and their password; None when off.

    One INSERT. The raw token is for the browser's cookie only.
    """
    ttl = lifetime()
    if ttl is None or not fingerprint:
        return None
    issued = tokens.issue_token(
        TokenType.TRUSTED_BROWSER, user=user, code_hash=binding(user, fingerprint), ttl=ttl, now=now
    )
    logger.info("browser trusted for user #%s until %s", user.pk, issued.token.expires_at.isoformat())
    return issued


def check(raw: Any, user: AbstractBaseUser, *, fingerprint: str, now: datetime | None = None) -> bool:
    """Return whether ``raw`` is a live trusted-browser token of ``user`` under ``fingerprint`` and their password.

    Peeks (nothing used up). No query when the feature is off or ``raw`` is
    empty or malformed; else one SELECT.
    """
    if not raw or not fingerprint or not enabled():
        return False
    row = tokens.peek_token(raw, TokenType.TRUSTED_BROWSER, user=user, now=now or clock.now())
    if row is None:
        return False
    return hmac.compare_digest(row.code_hash.encode(), binding(user, fingerprint).encode())


@dataclass(frozen=True)
class TrustedBrowser:
    """What a user may see of one trusted browser (never the token or its digest)."""

    id: int
    created_at: datetime
    expires_at: datetime
    this_browser: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "this_browser": self.this_browser,
        }


def list_for(user: AbstractBaseUser, *, current: Any = "", now: datetime | None = None) -> list[TrustedBrowser]:
    """Return the user's live trusted browsers, newest first; ``current`` is this browser's cookie value.

    One SELECT. A row issued under an earlier 2FA configuration or password
    is not listed (it no longer trusts anything).
    """
    now = now or clock.now()
    digest = crypto.digest_token(current) if current and is_plain_text(current, max_length=512) else ""
    rows = (
        EphemeralToken.objects.using(tokens._alias())
        .filter(user_id=user.pk, token_type=TokenType.TRUSTED_BROWSER, expires_at__gt=now)
        .order_by("-created_at", "-id")
        .values_list("id", "token", "code_hash", "created_at", "expires_at")
    )
    bound_to = binding(user, load_state(user).fingerprint) if rows else ""
    return [
        TrustedBrowser(id=pk, created_at=created, expires_at=expires, this_browser=bool(digest) and token == digest)
        for pk, token, bound, created, expires in rows
        if bound == bound_to
    ]


def _clean_id(value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidInput(gettext("id must be an integer."), field="id")
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 19:
        value = int(value)
    if not isinstance(value, int) or not 0 < value <= _MAX_ID:
        raise InvalidInput(gettext("id must be an integer."), field="id")
    return value


def revoke(user: AbstractBaseUser, *, token_id: Any = None) -> int:
    """Revoke one trusted browser of ``user`` (``token_id``), or all of them (None); return how many.

    Only the user's own rows: another user's id matches nothing. Raises
    InvalidInput for an id that cannot be one. One DELETE.
    """
    if token_id is None:
        return tokens.revoke_tokens(user=user, token_type=TokenType.TRUSTED_BROWSER)
    pk = _clean_id(token_id)
    deleted, _by_model = (
        EphemeralToken.objects.using(tokens._alias())
        .filter(pk=pk, user_id=user.pk, token_type=TokenType.TRUSTED_BROWSER)
        .delete()
    )
    return int(deleted)


def revoke_all(user: AbstractBaseUser) -> int:
    """Delete every trusted browser of ``user`` after a 2FA change (one DELETE, none while the feature is off).

    The fingerprint binding already voids them; this removes the rows.
    """
    if not enabled():
        return 0
    return tokens.revoke_tokens(user=user, token_type=TokenType.TRUSTED_BROWSER)
