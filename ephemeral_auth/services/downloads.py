"""One-time download links (``slicer_download`` tokens).

A logged-in user's view issues a link for one resource (``"file:42"``); a
client without cookies (a desktop app, a download manager, another device)
redeems it once and is served as that user, for that one request.

Security reasoning:

* The token is the credential. It is 256 bits, stored as a digest, bound to
  the issuing user and to exactly one resource, and lives a few minutes
  (``EPHEMERAL_AUTH_TOKEN_TTLS["slicer_download"]``, 5 min by default).
* Redemption is one conditional DELETE whose WHERE clause holds the digest,
  the type, the expiry *and the resource*: of N parallel redemptions exactly
  one gets the row. It is preceded by a read that compares the stored
  resource byte for byte, because a case-insensitive collation (MariaDB's
  default) would otherwise let "file:1" open "FILE:1": a link presented at
  another resource consumes nothing, on every backend.
* A link of a user who has since been deactivated opens nothing.
* The token sits in the URL's query string (a client must send it; a
  fragment never reaches the server), so it may appear in access logs. It is
  worthless once used; in scanner-safe mode a logged but unused token stays
  valid until it expires, which is why the lifetime is short.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from .. import clock
from ..exceptions import InvalidInput, InvalidToken
from ..models import EphemeralToken, TokenType
from . import tokens

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "DEFAULT_PARAM",
    "DownloadLink",
    "add_token",
    "check_issuer",
    "issue_link",
    "peek_download",
    "redeem_download",
]

logger = logging.getLogger("ephemeral_auth.downloads")

DEFAULT_PARAM = "token"


@dataclass(frozen=True)
class DownloadLink:
    """A freshly issued link; ``url`` carries the raw token, so hand it to its user only."""

    url: str = field(repr=False)
    raw: str = field(repr=False)
    resource: str
    expires_at: datetime
    expires_in: int


def add_token(url: str, raw: str, *, param: str = DEFAULT_PARAM) -> str:
    """Return ``url`` with ``param=raw`` added to its query string."""
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode({param: raw})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def check_issuer(user: Any) -> AbstractBaseUser:
    """Return ``user`` if it may issue a link: authenticated, saved and active; else raise InvalidInput."""
    if user is None or not getattr(user, "is_authenticated", False) or getattr(user, "pk", None) is None:
        raise InvalidInput("a one-time link is issued by an authenticated user", field="user")
    if not user.is_active:
        raise InvalidInput("an inactive user cannot issue one-time links", field="user")
    return user  # type: ignore[no-any-return]


def issue_link(
    user: Any,
    resource: str,
    *,
    url: str,
    param: str = DEFAULT_PARAM,
    ttl: timedelta | None = None,
    now: datetime | None = None,
) -> DownloadLink:
    """Issue a link to ``url`` that opens ``resource`` once, as ``user``.

    ``url`` is the target as the link should read (a path, or an absolute
    URL the caller built): the raw token is added to its query string. The
    web edge's ``ephemeral_auth.views.downloads.issue_download_link`` takes
    a request or a user and a URL name, and calls this. Raises InvalidInput
    for a user who may not issue links (:func:`check_issuer`) or a resource
    that is not text of 1-255 characters. One INSERT.
    """
    user = check_issuer(user)
    issued = tokens.issue_download(user, resource=resource, ttl=ttl, now=now)
    logger.debug("issued download link #%s", issued.token.pk)
    return DownloadLink(
        url=add_token(url, issued.raw, param=param),
        raw=issued.raw,
        resource=issued.token.resource,
        expires_at=issued.token.expires_at,
        expires_in=issued.expires_in,
    )


def peek_download(raw: Any, resource: Any, *, now: datetime | None = None) -> EphemeralToken | None:
    """Return the live link token for ``resource`` without using it (confirm page, HEAD)."""
    if not isinstance(resource, str) or not resource:
        return None
    token = tokens.peek_token(raw, TokenType.SLICER_DOWNLOAD, resource=resource, now=now or clock.now())
    if token is None or token.user is None or not token.user.is_active:
        return None
    return token


def redeem_download(raw: Any, resource: Any, *, now: datetime | None = None) -> AbstractBaseUser:
    """Use up the link for ``resource`` and return the user it acts as.

    Raises InvalidToken if the link is unknown, expired, already used, made
    for another resource (then nothing is consumed) or its user is inactive.
    """
    now = now or clock.now()
    # The decision: one conditional DELETE whose WHERE clause holds the
    # resource, compared byte for byte on every backend (tokens._where_sql),
    # so a presentation at another resource consumes nothing.
    token = tokens.consume_token(raw, TokenType.SLICER_DOWNLOAD, resource=resource, now=now)
    user = token.user
    if user is None or not user.is_active:
        logger.debug("refused download link #%s: user inactive", token.pk)
        raise InvalidToken()
    logger.info("download link #%s redeemed by user #%s", token.pk, user.pk)
    return user


def __getattr__(name: str) -> Any:
    """``issue_download_link`` (it reads the request) moved to the web edge; the old name warns until 0.3."""
    if name == "issue_download_link":
        import warnings

        from ..views import downloads as pages

        warnings.warn(
            "ephemeral_auth.services.downloads.issue_download_link moved to "
            "ephemeral_auth.views.downloads.issue_download_link; the old name goes in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return pages.issue_download_link
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
