"""System checks: each documented id fires on the bad setting it guards, and only then."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.core.checks import Error, Warning, run_checks
from django.core.checks.registry import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from ephemeral_auth.checks import check_settings

ROUTER = "ephemeral_auth.routers.EphemeralAuthRouter"


def ids(messages) -> list[str]:
    return [m.id for m in messages]


def test_the_test_settings_pass_every_check():
    assert check_settings() == []


def test_the_check_is_registered_with_django():
    assert check_settings in registry.registered_checks
    assert ids(run_checks(tags=["ephemeral_auth"])) == []


BAD_SETTINGS = [
    # (setting name without prefix, bad value, expected id)
    ("TOKEN_TTLS", [("pre_auth", 60)], "ephemeral_auth.E001"),
    ("TOKEN_TTLS", {"magic_link": 60}, "ephemeral_auth.E002"),
    ("TOKEN_TTLS", {"pre_auth": 0}, "ephemeral_auth.E003"),
    ("TOKEN_TTLS", {"pre_auth": -5}, "ephemeral_auth.E003"),
    ("TOKEN_TTLS", {"pre_auth": "300"}, "ephemeral_auth.E003"),
    ("TOKEN_TTLS", {"pre_auth": True}, "ephemeral_auth.E003"),
    ("RATE_LIMITS", "10/15m", "ephemeral_auth.E004"),
    ("RATE_LIMITS", {"login": (10, 900)}, "ephemeral_auth.E005"),
    ("RATE_LIMITS", {"login_attempt": 10}, "ephemeral_auth.E006"),
    ("RATE_LIMITS", {"login_attempt": (10,)}, "ephemeral_auth.E006"),
    ("RATE_LIMITS", {"login_attempt": (0, 900)}, "ephemeral_auth.E006"),
    ("RATE_LIMITS", {"login_attempt": (10, "900")}, "ephemeral_auth.E006"),
    ("ENCRYPTION_KEYS", ["not-a-fernet-key"], "ephemeral_auth.E007"),
    ("TRUSTED_PROXIES", ["10.0.0.0/8", "proxy.internal"], "ephemeral_auth.E008"),
    ("TRUSTED_PROXIES", ["300.1.2.3"], "ephemeral_auth.E008"),
    ("EMAIL_CODE_MAX_ATTEMPTS", 0, "ephemeral_auth.E010"),
    ("EMAIL_CODE_TTL", -1, "ephemeral_auth.E010"),
    ("TOTP_DIGITS", "6", "ephemeral_auth.E010"),
    ("TOTP_PERIOD", 30.0, "ephemeral_auth.E010"),
    ("RECOVERY_CODE_COUNT", None, "ephemeral_auth.E010"),
    ("PURGE_BATCH_SIZE", False, "ephemeral_auth.E010"),
    ("TOTP_TOLERANCE", -1, "ephemeral_auth.E011"),
    ("TOTP_TOLERANCE", 11, "ephemeral_auth.E011"),
    ("TOTP_TOLERANCE", "1", "ephemeral_auth.E011"),
    ("IPV6_PREFIX", 0, "ephemeral_auth.E013"),
    ("IPV6_PREFIX", 129, "ephemeral_auth.E013"),
    ("IPV6_PREFIX", "64", "ephemeral_auth.E013"),
    ("IPV6_PREFIX", True, "ephemeral_auth.E013"),
]


@pytest.mark.parametrize(("name", "value", "check_id"), BAD_SETTINGS, ids=lambda v: str(v)[:40])
def test_a_bad_setting_fires_its_check(settings, name, value, check_id):
    setattr(settings, f"EPHEMERAL_AUTH_{name}", value)
    messages = check_settings()
    assert ids(messages) == [check_id]
    assert all(isinstance(m, Error) for m in messages)
    assert f"EPHEMERAL_AUTH_{name}" in messages[0].msg


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOKEN_TTLS", {"pre_auth": 60, "password_reset": 30 * 60}),
        ("RATE_LIMITS", {"login_attempt": (5, 600), "login_ip": [50, 3600]}),
        ("ENCRYPTION_KEYS", [Fernet.generate_key().decode(), Fernet.generate_key()]),
        ("TRUSTED_PROXIES", ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::1"]),
        ("TOTP_TOLERANCE", 0),
        ("PURGE_BATCH_SIZE", 1),
    ],
)
def test_a_good_setting_passes(settings, name, value):
    setattr(settings, f"EPHEMERAL_AUTH_{name}", value)
    assert check_settings() == []


def test_keys_derived_from_secret_key_fallbacks_pass(settings):
    # Keys derived from SECRET_KEY and its fallbacks are always usable.
    settings.SECRET_KEY_FALLBACKS = ["an-older-secret-key-still-accepted-for-decryption"]
    assert check_settings() == []


def test_an_unknown_database_alias_is_an_error(settings):
    settings.DATABASE_ROUTERS = [ROUTER]
    settings.EPHEMERAL_AUTH_DATABASE = "no-such-alias"
    assert ids(check_settings()) == ["ephemeral_auth.E009"]


def test_a_database_alias_without_the_router_warns(settings):
    settings.DATABASE_ROUTERS = []  # tests/settings.py lists the router
    settings.EPHEMERAL_AUTH_DATABASE = "default"
    messages = check_settings()
    assert ids(messages) == ["ephemeral_auth.W001"]
    assert isinstance(messages[0], Warning)

    settings.DATABASE_ROUTERS = [ROUTER]
    assert check_settings() == []


def test_use_tz_off_is_an_error(settings):
    settings.USE_TZ = False
    assert ids(check_settings()) == ["ephemeral_auth.E012"]


def test_atomic_requests_warns(monkeypatch):
    # Swapped on the settings object only: override_settings(DATABASES=...)
    # warns, and the live connections must keep their own settings.
    databases = {alias: dict(db) for alias, db in django_settings.DATABASES.items()}
    databases["default"]["ATOMIC_REQUESTS"] = True
    monkeypatch.setattr(django_settings, "DATABASES", databases)
    messages = check_settings()
    assert ids(messages) == ["ephemeral_auth.W002"]
    assert isinstance(messages[0], Warning)


def test_several_problems_are_all_reported(settings):
    settings.EPHEMERAL_AUTH_TOKEN_TTLS = {"pre_auth": 0, "unknown": 5}
    settings.EPHEMERAL_AUTH_TOTP_TOLERANCE = 99
    assert sorted(ids(check_settings())) == [
        "ephemeral_auth.E002",
        "ephemeral_auth.E003",
        "ephemeral_auth.E011",
    ]


def test_manage_py_check_fails_on_a_bad_setting(settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (0, 900)}
    with pytest.raises(SystemCheckError, match=r"ephemeral_auth\.E006"):
        call_command("check")


def test_w003_oidc_providers_without_the_backend(settings):
    from ephemeral_auth.checks import check_settings

    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"corp": {"discovery_url": "https://id.example.com/.well-known/openid-configuration",
                                                       "client_id": "x", "client_secret": "y"}}
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
    assert "ephemeral_auth.W003" in {e.id for e in check_settings()}
    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend", "ephemeral_auth.oidc.backend.OIDCBackend"]
    assert "ephemeral_auth.W003" not in {e.id for e in check_settings()}
