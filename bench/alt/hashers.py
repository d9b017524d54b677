"""The MD5 hasher of the peer benchmarks, counting the passwords it checks (for the race)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.hashers import MD5PasswordHasher

CHECKED = {"count": 0}


class CountingMD5PasswordHasher(MD5PasswordHasher):
    """MD5 (fast: the narrowest check-to-record window a lockout can have), counting verify() calls."""

    def verify(self, password: str, encoded: str) -> bool:
        CHECKED["count"] += 1
        return bool(super().verify(password, encoded))

    def harden_runtime(self, password: str, encoded: str) -> Any:
        return None
