"""System checks for the EPHEMERAL_AUTH_* settings (ids listed in docs/settings.md)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.checks import Error, Warning, register

from . import conf

__all__ = ["check_settings"]


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@register("ephemeral_auth")
def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    errors: list[Any] = []
    ttls = conf.get("TOKEN_TTLS")
    if not isinstance(ttls, dict):
        errors.append(Error("EPHEMERAL_AUTH_TOKEN_TTLS must be a dict.", id="ephemeral_auth.E001"))
    else:
        for name, seconds in ttls.items():
            if name not in conf.DEFAULT_TOKEN_TTLS:
                errors.append(Error(f"EPHEMERAL_AUTH_TOKEN_TTLS: unknown token type {name!r}.",
                                    id="ephemeral_auth.E002"))
            elif not _positive_int(seconds):
                errors.append(Error(f"EPHEMERAL_AUTH_TOKEN_TTLS[{name!r}] must be a positive int (seconds).",
                                    id="ephemeral_auth.E003"))
    limits = conf.get("RATE_LIMITS")
    if not isinstance(limits, dict):
        errors.append(Error("EPHEMERAL_AUTH_RATE_LIMITS must be a dict.", id="ephemeral_auth.E004"))
    else:
        for name, value in limits.items():
            if name not in conf.DEFAULT_RATE_LIMITS:
                errors.append(Error(f"EPHEMERAL_AUTH_RATE_LIMITS: unknown event type {name!r}.",
                                    id="ephemeral_auth.E005"))
            elif not (
                isinstance(value, (tuple, list)) and len(value) == 2
                and _positive_int(value[0]) and _positive_int(value[1])
            ):
                errors.append(Error(
                    f"EPHEMERAL_AUTH_RATE_LIMITS[{name!r}] must be (limit, window_seconds), both positive ints.",
                    id="ephemeral_auth.E006"))
    try:
        from . import crypto

        crypto._fernet_keys()
    except Exception as exc:  # ImproperlyConfigured and friends
        errors.append(Error(str(exc), id="ephemeral_auth.E007"))
    for proxy in conf.get("TRUSTED_PROXIES") or []:
        try:
            ipaddress.ip_network(str(proxy), strict=False)
        except ValueError:
            errors.append(Error(f"EPHEMERAL_AUTH_TRUSTED_PROXIES: {proxy!r} is not an address or network.",
                                id="ephemeral_auth.E008"))
    alias = conf.get("DATABASE")
    if alias and alias not in settings.DATABASES:
        errors.append(Error(f"EPHEMERAL_AUTH_DATABASE {alias!r} is not in DATABASES.", id="ephemeral_auth.E009"))
    if alias and "ephemeral_auth.routers.EphemeralAuthRouter" not in getattr(settings, "DATABASE_ROUTERS", []):
        errors.append(Warning(
            "EPHEMERAL_AUTH_DATABASE is set but EphemeralAuthRouter is not in DATABASE_ROUTERS.",
            id="ephemeral_auth.W001"))
    for name in ("EMAIL_CODE_MAX_ATTEMPTS", "EMAIL_CODE_TTL", "TOTP_DIGITS", "TOTP_PERIOD",
                 "RECOVERY_CODE_COUNT", "PURGE_BATCH_SIZE"):
        if not _positive_int(conf.get(name)):
            errors.append(Error(f"EPHEMERAL_AUTH_{name} must be a positive int.", id="ephemeral_auth.E010"))
    tolerance = conf.get("TOTP_TOLERANCE")
    if not (isinstance(tolerance, int) and 0 <= tolerance <= 10):
        errors.append(Error("EPHEMERAL_AUTH_TOTP_TOLERANCE must be an int from 0 to 10.", id="ephemeral_auth.E011"))
    prefix = conf.get("IPV6_PREFIX")
    if not (isinstance(prefix, int) and not isinstance(prefix, bool) and 1 <= prefix <= 128):
        errors.append(Error("EPHEMERAL_AUTH_IPV6_PREFIX must be an int from 1 to 128.", id="ephemeral_auth.E013"))
    if not settings.USE_TZ:
        errors.append(Error("ephemeral_auth needs USE_TZ = True (expiry compares aware datetimes).",
                            id="ephemeral_auth.E012"))
    for alias_name, db in settings.DATABASES.items():
        if db.get("ATOMIC_REQUESTS"):
            errors.append(Warning(
                f"DATABASES[{alias_name!r}]['ATOMIC_REQUESTS'] is on: ephemeral_auth's views opt out "
                "(rate-limit events must commit on their own), but your views that call the "
                "rate-limit service inside a transaction weaken its concurrency guarantee.",
                id="ephemeral_auth.W002"))
    errors.extend(_check_oidc_backend())
    return errors


def _check_oidc_backend() -> list[Any]:
    """W003: providers are configured but no OIDCBackend can authenticate their users."""
    from django.utils.module_loading import import_string

    if not (conf.get("OIDC_PROVIDERS") or getattr(settings, "OIDC_RP_CLIENT_ID", None)):
        return []
    from .oidc.backend import OIDCBackend

    for path in getattr(settings, "AUTHENTICATION_BACKENDS", []):
        try:
            backend = import_string(path)
        except ImportError:
            continue
        if isinstance(backend, type) and issubclass(backend, OIDCBackend):
            return []
    return [Warning(
        "OIDC providers are configured but no ephemeral_auth.oidc.backend.OIDCBackend (or subclass) "
        "is in AUTHENTICATION_BACKENDS: every sign-in would fail with provider_misconfigured.",
        id="ephemeral_auth.W003")]
