"""Shared fixtures. DATABASE_URL picks the backend the whole suite runs on."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from django.db import connection

from tests.factories import UserFactory


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def now():
    """A fixed instant: tests pass it to the services instead of sleeping."""
    return datetime(2026, 11, 26, 12, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def backend():
    return connection.vendor


def pytest_collection_modifyitems(config, items):
    """Race tests need a server database: skip them on SQLite."""
    if connection.vendor != "sqlite":
        return
    skip = pytest.mark.skip(reason="race tests run on PostgreSQL and MariaDB (DATABASE_URL)")
    for item in items:
        if "race" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def reset_mail_inline(settings):
    """Send password-reset emails inside the request (synchronously), so tests can read mail.outbox."""
    settings.EPHEMERAL_AUTH_PASSWORD_RESET_RUNNER = "ephemeral_auth.services.passwords.run_inline"


@pytest.fixture
def reset_jobs(settings):
    """Queue password-reset jobs instead of running them; returns the list of (job, kwargs)."""
    jobs = []
    settings.EPHEMERAL_AUTH_PASSWORD_RESET_RUNNER = lambda job, **kwargs: jobs.append((job, kwargs))
    return jobs


@pytest.fixture(scope="session")
def oidc_standin_server():
    """The OIDC provider stand-in of tests/oidc_standin_provider.py (a loopback HTTP server)."""
    from tests.oidc_standin_provider import StandIn

    standin = StandIn()
    yield standin
    standin.close()


@pytest.fixture
def oidc_standin(oidc_standin_server, settings):
    """The stand-in configured as the OIDC provider "standin", with a cold discovery cache."""
    from django.core.cache import caches

    oidc_standin_server.reset()
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"standin": oidc_standin_server.provider_settings()}
    caches["default"].clear()
    yield oidc_standin_server
    caches["default"].clear()


# --- Two-factor login (docs/two-factor.md) ---


class FrozenClock:
    """ephemeral_auth.clock.now frozen at ``now``; ``advance`` moves it forward."""

    def __init__(self, now):
        self.now = now

    def advance(self, seconds):
        from datetime import timedelta

        self.now = self.now + timedelta(seconds=seconds)
        return self.now

    def __call__(self):
        return self.now


@pytest.fixture
def clock(now, monkeypatch):
    """Freeze the app clock (every service reads ephemeral_auth.clock.now)."""
    frozen = FrozenClock(now)
    monkeypatch.setattr("ephemeral_auth.clock.now", frozen)
    return frozen


@pytest.fixture
def frozen(clock):
    """The app clock frozen at ``now`` (the ``clock`` fixture), as that instant: for tests that never advance it."""
    return clock.now


@pytest.fixture
def totp_user(db):
    """A user with a confirmed authenticator: (user, base32 secret)."""
    from tests.factories import enrol_totp

    user = UserFactory()
    return user, enrol_totp(user)


@pytest.fixture
def hashes(monkeypatch):
    """Count the password hasher's calls: "verify" per password checked against a real account,
    "encode" for the dummy hash ModelBackend computes for an unknown one (and inside verify)."""
    from django.contrib.auth.hashers import MD5PasswordHasher

    calls = []
    verify, encode = MD5PasswordHasher.verify, MD5PasswordHasher.encode
    monkeypatch.setattr(MD5PasswordHasher, "verify", lambda self, *a: calls.append("verify") or verify(self, *a))
    monkeypatch.setattr(MD5PasswordHasher, "encode", lambda self, *a: calls.append("encode") or encode(self, *a))
    return calls
