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

# Seconds a token of each type stays valid (docs/settings.md).
DEFAULT_TOKEN_TTLS: dict[str, int] = {
    "pre_auth": 5 * 60,
    "oidc_state": 10 * 60,
    "oidc_exchange": 2 * 60,
    "password_reset": 60 * 60,
    "email_otp_setup": 10 * 60,
    "slicer_download": 5 * 60,
    # WebAuthn challenges (services/webauthn.py): a ceremony's options and its answer.
    "webauthn_register": 5 * 60,
    "webauthn_login": 5 * 60,
    "passkey_login": 5 * 60,
}

# (events allowed, window in seconds) per event type (docs/settings.md).
DEFAULT_RATE_LIMITS: dict[str, tuple[int, int]] = {
    # Failed passwords (docs/security.md, "The lock model"): the primary lock is per
    # (account, client address); per address across accounts; a per-account ceiling
    # ten times the primary limit bounds guessing from many addresses; a browser that
    # completed a login for the account (device cookie) has its own bucket instead of
    # the ceiling, so the owner gets in while the ceiling holds.
    "login_user_ip": (10, 15 * 60),
    "login_ip": (20, 15 * 60),
    "login_attempt": (100, 15 * 60),
    "login_device": (10, 15 * 60),
    # OIDC sign-ins started per client address, over the oidc_state lifetime: at most this
    # many live oidc_state rows per address (docs/oidc.md, "A bounded authorize/").
    "oidc_authorize": (20, 10 * 60),
    # Passkey sign-ins started per client address (passkey/options/), over the passkey_login
    # challenge lifetime: bounds the live challenges, and the attempts, of one address.
    "passkey_options": (20, 5 * 60),
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
    # Per-IP limits count an IPv6 client by this prefix of its address: one
    # subscriber usually holds a whole /64. 128 counts single addresses.
    "IPV6_PREFIX": 64,
    # Browsers that completed a login for an account get a signed HttpOnly cookie naming it
    # (no database row); while the account's ceiling (login_attempt) is full, password
    # attempts from such a browser are still checked, counted per browser (login_device).
    # "__Host-" is prepended on HTTPS. An age of 0 turns the cookie off.
    "DEVICE_COOKIE_NAME": "ephemeral_auth_device",
    "DEVICE_COOKIE_AGE": 30 * 24 * 60 * 60,
    # Seconds after a sign-in (or a password confirmation) during which a user without
    # 2FA may change their 2FA settings without entering the password again.
    "REAUTHENTICATION_WINDOW": 5 * 60,
    # Staff users without 2FA are sent to enrolment by the middleware.
    "REQUIRE_2FA_FOR_STAFF": False,
    # Name of the HttpOnly cookie binding a pending 2FA login to the browser.
    "CHALLENGE_COOKIE_NAME": "ephemeral_auth_challenge",
    # Two-factor login (docs/two-factor.md). HTML flow only: HttpOnly cookie carrying the
    # pending login's token to the verify page ("__Host-" is prepended on HTTPS).
    "PENDING_LOGIN_COOKIE_NAME": "ephemeral_auth_pending",
    # Seconds the middleware trusts the 2FA state cached in the session before re-reading
    # it (0: read it on every authenticated request).
    "TWO_FACTOR_STATE_MAX_AGE": 60,
    # Where REQUIRE_2FA_FOR_STAFF sends staff users without 2FA (URL name or path).
    "TWO_FACTOR_ENROLMENT_URL": "ephemeral_auth:two_factor_setup",
    # OIDC sign-in (docs/oidc.md). HttpOnly cookie binding authorization flows to the browser
    # ("__Host-" is prepended on HTTPS).
    "OIDC_COOKIE_NAME": "ephemeral_auth_oidc",
    # Providers: {slug: {name, discovery_url or endpoints, client_id, client_secret, ...}}.
    # mozilla-django-oidc's OIDC_RP_* / OIDC_OP_* settings add the provider "default".
    "OIDC_PROVIDERS": {},
    # URL name (or path) of the callback: the redirect_uri registered at the providers.
    "OIDC_CALLBACK_URL": "ephemeral_auth_api:oidc_callback",
    # Where failed sign-ins go, with ?oidc_error=<code> ("" = settings.LOGIN_URL).
    "OIDC_FAILURE_URL": "",
    # Where SPA-mode flows without a ``next`` go, with #oidc_token=<token>.
    "OIDC_SPA_URL": "/",
    # Hosts (besides the request's own) that ``next`` may point to, e.g. an SPA's origin.
    "OIDC_REDIRECT_ALLOWED_HOSTS": [],
    # Seconds discovery documents and JWKS stay in the cache; cache alias used.
    "OIDC_DISCOVERY_CACHE_TTL": 3600,
    "OIDC_CACHE_ALIAS": "default",
    # Seconds before a call to a provider's token or userinfo endpoint gives up.
    "OIDC_HTTP_TIMEOUT": 10,
    # Seconds before a discovery or JWKS fetch gives up (connecting, and each wait for data).
    # Kept short: an anonymous GET of authorize/ waits for the discovery fetch.
    "OIDC_DISCOVERY_TIMEOUT": 5,
    # Seconds a failed discovery or JWKS fetch is remembered (same cache as the documents):
    # meanwhile fetches of that URL fail at once with the same code, and a JWKS refresh on
    # an unknown kid happens at most once. 0 turns both off.
    "OIDC_FAILURE_CACHE_TTL": 30,
    # amr values (RFC 8176) that count as multi-factor for providers with trust_amr.
    # Only RFC 8176's "mfa" says several factors were used; "otp", "hwk"... name one method.
    "OIDC_MFA_AMR_VALUES": ["mfa"],
    # The views behind authorize/ and callback/ (mozilla-django-oidc's OIDC_*_CLASS idea).
    "OIDC_AUTHENTICATE_CLASS": "ephemeral_auth.oidc.views.OIDCAuthorizeView",
    "OIDC_CALLBACK_CLASS": "ephemeral_auth.oidc.views.OIDCCallbackView",
    # Database alias for the ephemeral tables (None: the default routing).
    "DATABASE": None,
    # Download links: GET shows a confirmation page and POST redeems, so that
    # link scanners in mail and chat clients do not burn the link.
    "DOWNLOAD_SCANNER_SAFE": False,
    # Password reset: end the user's other sessions when the password is reset.
    "PASSWORD_RESET_ENDS_SESSIONS": True,
    # Rows deleted per statement by purge_expired.
    "PURGE_BATCH_SIZE": 5000,
    # Password reset (docs/password-reset.md). The page that takes the token:
    # "" = the app's own confirm page; a URL gets "#token=<token>" appended,
    # or "{token}" inside it is replaced.
    "PASSWORD_RESET_URL": "",
    # Dotted path of the callable that runs the reset email job outside the
    # request: run_as_task (Django's tasks framework), run_in_thread (in-process
    # pool, lost on a restart), run_inline (tests), or your own (Celery).
    # None: run_as_task when a task backend that queues is configured (TASKS),
    # else run_in_thread.
    "PASSWORD_RESET_RUNNER": None,
    # HttpOnly cookie holding a reset token moved out of a ?token= URL.
    "PASSWORD_RESET_COOKIE_NAME": "ephemeral_auth_reset",
    # WebAuthn (services/webauthn.py). The relying party id: the site's registrable domain
    # or a parent of it, e.g. "example.com" (required to use WebAuthn); the name shown by
    # the authenticator ("" = the id); the origins clientDataJSON may name, exactly, e.g.
    # ["https://example.com"] ([] = any https origin on the id or a subdomain).
    "WEBAUTHN_RP_ID": "",
    "WEBAUTHN_RP_NAME": "",
    "WEBAUTHN_ORIGINS": [],
    # Passwordless sign-in with a passkey (a discoverable credential, user verification required).
    "PASSKEY_LOGIN": False,
    # HttpOnly cookie binding a WebAuthn registration or passkey sign-in to the browser.
    "WEBAUTHN_COOKIE_NAME": "ephemeral_auth_webauthn",
}


# Where the token goes in a password-reset link template (PASSWORD_RESET_URL).
TOKEN_PLACEHOLDER = "{token}"


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
