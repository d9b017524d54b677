"""Settings of ephemeral_auth, with their defaults, read at call time.

Every setting is a flat ``EPHEMERAL_AUTH_<NAME>`` in the project's settings.
Nothing is read at import time and nothing is written back into
``django.conf.settings``, so ``override_settings`` works everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings as django_settings

__all__ = [
    "DEFAULTS",
    "DEFAULT_RATE_LIMITS",
    "DEFAULT_TOKEN_TTLS",
    "Limit",
    "get",
    "rate_limit",
    "token_ttl",
]

PREFIX = "EPHEMERAL_AUTH_"

# Seconds a token of each type stays valid (DESIGN.md section 4).
DEFAULT_TOKEN_TTLS: dict[str, int] = {
    "pre_auth": 5 * 60,
    "oidc_state": 10 * 60,
    "oidc_exchange": 2 * 60,
    "password_reset": 60 * 60,
    "email_otp_setup": 10 * 60,
    "slicer_download": 5 * 60,
}

# (events allowed, window in seconds) per event type (DESIGN.md section 4).
DEFAULT_RATE_LIMITS: dict[str, tuple[int, int]] = {
    "login_attempt": (10, 15 * 60),
    "login_ip": (20, 15 * 60),
    "2fa_attempt": (5, 15 * 60),
    "email_send": (3, 10 * 60),
    "password_reset_send": (3, 15 * 60),
    "password_reset_ip": (10, 15 * 60),
}

DEFAULTS: dict[str, Any] = {
    # Per-type overrides merged over DEFAULT_TOKEN_TTLS (seconds).
    "TOKEN_TTLS": {},
    # Per-event-type overrides merged over DEFAULT_RATE_LIMITS: (limit, seconds).
    "RATE_LIMITS": {},
    # Master switch for rate limiting (tests of unrelated code may turn it off).
    "RATE_LIMITING_ENABLED": True,
    # Wrong codes allowed against one emailed code before it is burnt.
    "EMAIL_CODE_MAX_ATTEMPTS": 5,
    # Seconds an emailed login code stays valid.
    "EMAIL_CODE_TTL": 10 * 60,
    # Fernet keys (urlsafe base64, 32 bytes) for secrets at rest, newest first.
    # Empty: keys are derived from SECRET_KEY and SECRET_KEY_FALLBACKS.
    "ENCRYPTION_KEYS": [],
    # TOTP parameters.
    "TOTP_ISSUER": "",
    "TOTP_DIGITS": 6,
    "TOTP_PERIOD": 30,
    "TOTP_TOLERANCE": 1,
    "RECOVERY_CODE_COUNT": 10,
    # Client IP resolution: the addresses (or CIDR networks) of proxies whose
    # X-Forwarded-For is believed. Empty: REMOTE_ADDR is the client.
    "TRUSTED_PROXIES": [],
    # Staff users without 2FA are sent to enrolment by the middleware.
    "REQUIRE_2FA_FOR_STAFF": False,
    # Name of the HttpOnly cookie binding a pending 2FA login to the browser.
    "CHALLENGE_COOKIE_NAME": "ephemeral_auth_challenge",
    "OIDC_COOKIE_NAME": "ephemeral_auth_oidc",
    # Database alias for the ephemeral tables (None: the default routing).
    "DATABASE": None,
    # Download links: GET shows a confirmation page and POST redeems, so that
    # link scanners in mail and chat clients do not burn the link.
    "DOWNLOAD_SCANNER_SAFE": False,
    # Password reset: end the user's other sessions when the password is reset.
    "PASSWORD_RESET_ENDS_SESSIONS": True,
    # Rows deleted per statement by purge_expired.
    "PURGE_BATCH_SIZE": 5000,
}


def get(name: str) -> Any:
    """Return the setting ``EPHEMERAL_AUTH_<name>`` or its default."""
    if name not in DEFAULTS:
        raise KeyError(f"unknown ephemeral_auth setting {name!r}")
    return getattr(django_settings, PREFIX + name, DEFAULTS[name])


@dataclass(frozen=True)
class Limit:
    """How many events of one type one key may have inside a sliding window."""

    limit: int
    window: timedelta


def rate_limit(event_type: str) -> Limit:
    """Return the configured limit for an event type."""
    overrides = get("RATE_LIMITS") or {}
    limit, seconds = overrides.get(event_type, DEFAULT_RATE_LIMITS[event_type])
    return Limit(limit=int(limit), window=timedelta(seconds=int(seconds)))


def token_ttl(token_type: str) -> timedelta:
    """Return how long a token of this type stays valid."""
    overrides = get("TOKEN_TTLS") or {}
    seconds = overrides.get(token_type, DEFAULT_TOKEN_TTLS[token_type])
    return timedelta(seconds=int(seconds))


def longest_window() -> timedelta:
    """Return the longest configured rate-limit window (what purge keeps)."""
    return max(rate_limit(event_type).window for event_type in DEFAULT_RATE_LIMITS)
