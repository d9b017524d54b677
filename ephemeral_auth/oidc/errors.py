"""The stable error codes of OIDC sign-in, and what a user is told for each.

A failed flow redirects with ``?oidc_error=<code>`` (session mode) or
``#oidc_error=<code>`` (SPA mode); oidc/exchange/ answers
``{"error": <code>, "message": ...}``. The codes are part of the API
(docs/oidc.md); the messages may change and are translated.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _

__all__ = ["MESSAGES", "message_for"]

_TRY_AGAIN = _("Sign-in with the identity provider failed. Please try again.")

MESSAGES: dict[str, Any] = {
    # Request / flow
    "invalid_request": _TRY_AGAIN,
    "invalid_state": _("This sign-in link has expired or was already used. Please start again."),
    "unknown_provider": _("This sign-in method is not available."),
    "provider_misconfigured": _("This sign-in method is not configured correctly."),
    "service_unavailable": _("The service is temporarily unavailable. Please try again later."),
    # Provider
    "provider_error": _("The identity provider did not sign you in."),
    "discovery_failed": _("The identity provider could not be reached. Please try again later."),
    "network_error": _("The identity provider could not be reached. Please try again later."),
    "token_error": _TRY_AGAIN,
    "userinfo_error": _TRY_AGAIN,
    # ID token
    "id_token_invalid": _TRY_AGAIN,
    "id_token_expired": _TRY_AGAIN,
    "iss_mismatch": _TRY_AGAIN,
    "aud_mismatch": _TRY_AGAIN,
    "nonce_mismatch": _TRY_AGAIN,
    "missing_claims": _("The identity provider did not share the information needed to sign you in."),
    # Accounts
    "email_not_verified": _("Your email address is not verified at the identity provider."),
    "account_exists": _(
        "An account with this email address already exists. Sign in to it with its password, "
        "or ask an administrator to allow this sign-in method for it."
    ),
    "provider_mismatch": _(
        "The answer of the identity provider came back to another sign-in method than the one you chose. "
        "Please start again."
    ),
    "account_conflict": _("This identity cannot be linked to an account here."),
    "account_not_found": _("There is no account for this identity."),
    "account_inactive": _("This account is disabled."),
    "two_factor_unavailable": _(
        "Your account's second factor cannot be used: sign-in codes are sent by email, but the account has "
        "no email address. Use a recovery code or ask an administrator for help."
    ),
    # Exchange (JSON)
    "invalid_token": _("The sign-in token is invalid or has expired."),
}


def message_for(code: Any) -> str:
    """Return the message shown for ``code`` ("" for an unknown code)."""
    message = MESSAGES.get(code) if isinstance(code, str) else None
    return str(message) if message is not None else ""
