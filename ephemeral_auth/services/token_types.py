"""What a token of each type carries: the columns it must and may set, and what must be presented again.

The table the token service (``services/tokens.py``) checks every issue,
peek and consume against. A new token type is one line in each table here,
one ``TokenType`` member, and its lifetime in ``conf.DEFAULT_TOKEN_TTLS``.
"""

from __future__ import annotations

from ..models import TokenType

__all__ = ["BINDINGS", "OPTIONAL", "REQUIRED", "TEXT_FIELDS"]

# Columns a caller may set, with their maximum length.
TEXT_FIELDS: dict[str, int] = {
    "provider": 64,
    "nonce": 128,
    "code_verifier": 128,
    "challenge_id": 1024,  # raw cookie value; the digest is stored
    "code_hash": 64,
    "resource": 255,
    "methods": 64,
    "next_url": 2048,
    "mode": 16,
}

# What each type must carry. ``user`` is a foreign key, the rest text.
REQUIRED: dict[str, frozenset[str]] = {
    TokenType.PRE_AUTH: frozenset({"user", "challenge_id", "methods"}),
    TokenType.OIDC_STATE: frozenset({"provider", "nonce", "code_verifier", "challenge_id", "mode"}),
    TokenType.OIDC_EXCHANGE: frozenset({"user", "challenge_id"}),
    TokenType.PASSWORD_RESET: frozenset({"user"}),
    TokenType.EMAIL_OTP_SETUP: frozenset({"user", "code_hash"}),
    TokenType.SLICER_DOWNLOAD: frozenset({"user", "resource"}),
    # WebAuthn challenges (services/webauthn.py); mode: "passkey" or "second_factor".
    TokenType.WEBAUTHN_REGISTER: frozenset({"user", "challenge_id", "mode"}),
    TokenType.WEBAUTHN_LOGIN: frozenset({"user", "challenge_id"}),
    TokenType.PASSKEY_LOGIN: frozenset({"challenge_id"}),
    TokenType.TRUSTED_BROWSER: frozenset({"user", "code_hash"}),  # code_hash: the 2FA fingerprint
}
OPTIONAL: dict[str, frozenset[str]] = {
    TokenType.PRE_AUTH: frozenset({"code_hash"}),
    TokenType.OIDC_STATE: frozenset({"next_url"}),
    # methods: "mfa" when the provider asserted multi-factor authentication.
    TokenType.OIDC_EXCHANGE: frozenset({"provider", "methods"}),
    TokenType.PASSWORD_RESET: frozenset(),
    TokenType.EMAIL_OTP_SETUP: frozenset(),
    TokenType.SLICER_DOWNLOAD: frozenset(),
    TokenType.WEBAUTHN_REGISTER: frozenset(),
    TokenType.WEBAUTHN_LOGIN: frozenset(),
    TokenType.PASSKEY_LOGIN: frozenset({"user"}),
    TokenType.TRUSTED_BROWSER: frozenset(),
}
# Bindings that must be presented again to peek at or consume a token.
BINDINGS: dict[str, frozenset[str]] = {
    TokenType.PRE_AUTH: frozenset({"challenge_id"}),
    TokenType.OIDC_STATE: frozenset({"challenge_id"}),
    # The SPA redeems the exchange in the browser that ran the flow: its binding
    # cookie must come along, so a leaked fragment cannot log in anyone else.
    TokenType.OIDC_EXCHANGE: frozenset({"challenge_id"}),
    TokenType.SLICER_DOWNLOAD: frozenset({"resource"}),
    TokenType.WEBAUTHN_REGISTER: frozenset({"challenge_id"}),
    TokenType.WEBAUTHN_LOGIN: frozenset({"challenge_id"}),
    TokenType.PASSKEY_LOGIN: frozenset({"challenge_id"}),
}
