"""Route ephemeral_auth's tables to ``EPHEMERAL_AUTH_DATABASE``.

Add ``"ephemeral_auth.routers.EphemeralAuthRouter"`` to ``DATABASE_ROUTERS``
and set ``EPHEMERAL_AUTH_DATABASE`` to an alias of ``DATABASES``. The token
and event tables (high churn) then live on that database; the per-user 2FA
tables stay beside the user table, which they reference by foreign key.
"""

from __future__ import annotations

from typing import Any

from . import conf

__all__ = ["EphemeralAuthRouter"]

_ROUTED = {"ephemeraltoken", "ratelimitevent"}


class EphemeralAuthRouter:
    def _alias(self, model: Any) -> str | None:
        alias = conf.get("DATABASE")
        if alias and model._meta.app_label == "ephemeral_auth" and model._meta.model_name in _ROUTED:
            return str(alias)
        return None

    def db_for_read(self, model: type, **hints: Any) -> str | None:
        return self._alias(model)

    def db_for_write(self, model: type, **hints: Any) -> str | None:
        return self._alias(model)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        alias = conf.get("DATABASE")
        if not alias or app_label != "ephemeral_auth":
            return None
        if model_name in _ROUTED:
            return db == alias
        return None
