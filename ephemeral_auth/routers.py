"""Route ephemeral_auth's tables to ``EPHEMERAL_AUTH_DATABASE``.

Add ``"ephemeral_auth.routers.EphemeralAuthRouter"`` to ``DATABASE_ROUTERS``
and set ``EPHEMERAL_AUTH_DATABASE`` to an alias of ``DATABASES``. The token
and event tables (high churn) then live on that database, and only there; the
per-user 2FA tables stay beside the user table, which they reference by
foreign key. While the setting is unset the router has no opinion at all.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import router

from . import conf

__all__ = ["EphemeralAuthRouter", "routed_alias"]

_ROUTED = {"ephemeraltoken", "ratelimitevent"}


def routed_alias() -> str | None:
    """Return the alias of EPHEMERAL_AUTH_DATABASE, or None when routing is off."""
    alias = conf.get("DATABASE")
    return str(alias) if alias else None


def _is_routed(model: Any) -> bool:
    meta = model._meta
    return bool(meta.app_label == "ephemeral_auth" and meta.model_name in _ROUTED)


def _is_user_model(model: Any) -> bool:
    return bool(model._meta.label_lower == settings.AUTH_USER_MODEL.lower())


def _route(model: Any, hints: dict[str, Any], choose: Any) -> str | None:
    alias = routed_alias()
    if not alias:
        return None
    if _is_routed(model):
        return alias
    instance = hints.get("instance")
    if instance is not None and _is_routed(type(instance)) and _is_user_model(model):
        # token.user: Django would look for the user on the token's database
        # (the instance hint); the user lives where users are routed without it.
        return str(choose(model))
    return None


class EphemeralAuthRouter:
    def db_for_read(self, model: type, **hints: Any) -> str | None:
        return _route(model, hints, router.db_for_read)

    def db_for_write(self, model: type, **hints: Any) -> str | None:
        return _route(model, hints, router.db_for_write)

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        # EphemeralToken.user has no database constraint (db_constraint=False),
        # so a token on the routed database may point at a user on another one.
        if not routed_alias():
            return None
        models = {type(obj1), type(obj2)}
        if any(_is_routed(m) for m in models) and any(_is_user_model(m) for m in models):
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, model_name: str | None = None, **hints: Any) -> bool | None:
        alias = routed_alias()
        if not alias:
            return None
        routed = app_label == "ephemeral_auth" and model_name in _ROUTED
        if db == alias:
            # Only our two tables on the routed database: `migrate --database=<alias>`
            # creates nothing else (no auth_user, no 2FA tables, no sessions).
            return routed
        if routed:
            return False
        return None
