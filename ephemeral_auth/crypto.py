"""Random tokens, digests and encryption at rest.

* Tokens are 256-bit random values; the database keeps only their SHA-256
  digest. An unkeyed hash is enough for a 256-bit secret: there is nothing to
  brute-force, and the lookup by digest is an ordinary unique-index search
  (no timing leak on the raw value).
* Short codes (6-digit email codes, recovery codes) have little entropy, so
  their digest is keyed (HMAC-SHA256 with a key derived from SECRET_KEY): a
  copy of the database alone does not let anyone test guesses offline.
* TOTP secrets must be recovered, so they are encrypted (Fernet). Keys come
  from EPHEMERAL_AUTH_ENCRYPTION_KEYS, or are derived from SECRET_KEY and
  SECRET_KEY_FALLBACKS; the first key encrypts, all keys decrypt (rotation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from . import conf

__all__ = [
    "DecryptionFailed",
    "code_digest",
    "code_digests",
    "decrypt",
    "digest_token",
    "encrypt",
    "is_current",
    "new_token",
    "random_code",
    "rotate",
]

# Unambiguous alphabet for codes a person types (no 0/O, 1/I/L).
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"


class DecryptionFailed(Exception):
    """No configured key decrypts the value (keys lost or rotated away)."""


def new_token() -> str:
    """Return a fresh URL-safe random token (256 bits)."""
    return secrets.token_urlsafe(32)


def digest_token(raw: str) -> str:
    """Return the SHA-256 hex digest stored in place of a raw token."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _derive(secret: str | bytes, purpose: str) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return hmac.new(secret, b"ephemeral_auth." + purpose.encode(), hashlib.sha256).digest()


def _code_digest(secret: str, code: str, scope: str) -> str:
    message = f"{scope}\x00{code}".encode("utf-8", "surrogatepass")
    return hmac.new(_derive(secret, "code"), message, hashlib.sha256).hexdigest()


def code_digest(code: str, *, scope: str) -> str:
    """Return the keyed digest of a short code, scoped to what it unlocks.

    ``scope`` (a user id, a token digest) makes equal codes of different
    owners hash differently. Written with the current SECRET_KEY.
    """
    return _code_digest(settings.SECRET_KEY, code, scope)


def code_digests(code: str, *, scope: str) -> list[str]:
    """Return the digests of a code under SECRET_KEY and each SECRET_KEY_FALLBACKS entry.

    Match a stored digest against all of them (``code_hash__in``) so that
    rotating SECRET_KEY does not invalidate recovery codes written before.
    """
    secrets_in_order = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [_code_digest(secret, code, scope) for secret in secrets_in_order]


def random_code(length: int, *, alphabet: str = CODE_ALPHABET) -> str:
    """Return a random code drawn uniformly from ``alphabet``."""
    return "".join(secrets.choice(alphabet) for _ in range(length))


def random_digits(length: int) -> str:
    """Return a random numeric code of ``length`` digits (leading zeros kept)."""
    return str(secrets.randbelow(10**length)).zfill(length)


def _fernet_keys() -> list[bytes]:
    configured = conf.get("ENCRYPTION_KEYS") or []
    if configured:
        keys = []
        for key in configured:
            raw = key.encode("ascii") if isinstance(key, str) else key
            try:
                Fernet(raw)
            except (ValueError, TypeError) as exc:
                raise ImproperlyConfigured(
                    "EPHEMERAL_AUTH_ENCRYPTION_KEYS holds an invalid Fernet key"
                ) from exc
            keys.append(raw)
        return keys
    secrets_in_order = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [base64.urlsafe_b64encode(_derive(s, "fernet")) for s in secrets_in_order]


def _multi() -> MultiFernet:
    return MultiFernet([Fernet(k) for k in _fernet_keys()])


def encrypt(plain: str) -> str:
    """Encrypt ``plain`` with the newest key."""
    return _multi().encrypt(plain.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt a value written by :func:`encrypt` with any configured key."""
    try:
        return _multi().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError, UnicodeError) as exc:
        raise DecryptionFailed("no configured key decrypts this value") from exc


def is_current(token: str) -> bool:
    """Return whether the newest key alone decrypts ``token`` (it needs no rotation)."""
    try:
        Fernet(_fernet_keys()[0]).decrypt(token.encode("ascii"))
    except (InvalidToken, ValueError):
        return False
    return True


def rotate(token: str) -> str:
    """Re-encrypt a value with the newest key (for key rotation)."""
    try:
        return _multi().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, ValueError) as exc:
        raise DecryptionFailed("no configured key decrypts this value") from exc
