"""Known browsers: the signed device cookie of ``services.lockout``'s lock model (docs/security.md).

A browser that completed a login for an account within ``DEVICE_COOKIE_AGE``
carries a signed cookie naming the account (no database row). Its password
attempts are counted in its own ``login_device`` bucket *instead of* the
account's ceiling, so the owner still gets in while the ceiling refuses
everybody else (OWASP's "device cookies"). This module reads and writes the
cookie's *value* (a string); the cookie itself (its name, reading it from a
request, setting it on a response) is the web layer's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core import signing

from .. import clock, conf, crypto
from .inputs import is_plain_text

__all__ = ["DEVICE_SALT", "MAX_ACCOUNTS_PER_DEVICE", "MAX_DEVICE_COOKIE_LENGTH", "remember_device", "trusted_device"]

DEVICE_SALT = "ephemeral_auth.device"
MAX_DEVICE_COOKIE_LENGTH = 2048
# Accounts remembered by one browser (a shared family computer); the newest first.
MAX_ACCOUNTS_PER_DEVICE = 5


def _device_age() -> int:
    return int(conf.get("DEVICE_COOKIE_AGE") or 0)


def _entries(value: Any, *, now: datetime) -> list[list[Any]]:
    """Return the cookie's live ``[pk, browser id, issued]`` entries ([] if absent, forged or expired)."""
    age = _device_age()
    if age <= 0 or not value or not is_plain_text(value, max_length=MAX_DEVICE_COOKIE_LENGTH):
        return []
    try:
        entries = signing.loads(value, salt=DEVICE_SALT, max_age=age)
    except (signing.BadSignature, ValueError, TypeError):
        return []
    if not isinstance(entries, list):
        return []
    stamp = int(now.timestamp())
    return [
        entry
        for entry in entries[:MAX_ACCOUNTS_PER_DEVICE]
        if isinstance(entry, list) and len(entry) == 3 and isinstance(entry[1], str) and isinstance(entry[2], int)
        and 0 <= stamp - entry[2] <= age
    ]


def trusted_device(value: Any, pk: Any, *, now: datetime | None = None) -> str | None:
    """Return this browser's id for account ``pk`` if its device cookie names the account, else None."""
    for entry_pk, device_id, _issued in _entries(value, now=now or clock.now()):
        if str(entry_pk) == str(pk):
            return str(device_id)
    return None


def remember_device(value: Any, pk: Any, *, now: datetime | None = None) -> str | None:
    """Return the new device cookie value: ``value``'s accounts with ``pk`` first (None when turned off)."""
    if _device_age() <= 0:
        return None
    now = now or clock.now()
    entries = _entries(value, now=now)
    kept = [entry for entry in entries if str(entry[0]) != str(pk)]
    known = [entry for entry in entries if str(entry[0]) == str(pk)]
    device_id = known[0][1] if known else crypto.new_token()[:22]
    fresh = [[str(pk), device_id, int(now.timestamp())], *kept][:MAX_ACCOUNTS_PER_DEVICE]
    return signing.dumps(fresh, salt=DEVICE_SALT, compress=False)
