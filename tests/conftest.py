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
