"""A flood against one key (issue 6, item 5): 100,000 blocked attempts add a bounded number of rows.

A refused attempt withdraws what it recorded, in every bucket, so a blocked
key never grows past its limit however long the flood lasts; the purge
then takes the table back to what it held before. Runs in CI's ``flood``
stage on SQLite, PostgreSQL and MariaDB (on the last two the flood comes from
several processes at once, each with its own connection); left out of the
default run for its length: ``pytest -m flood tests/test_flood.py``.
EPHEMERAL_AUTH_FLOOD_ATTEMPTS lowers the count for a quick local run; CI
keeps the 100,000.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ephemeral_auth import conf
from ephemeral_auth.exceptions import RateLimited
from ephemeral_auth.models import EventType, RateLimitEvent
from ephemeral_auth.services import cleanup, ratelimit
from tests.race import run_racers

pytestmark = pytest.mark.flood

FLOOD = int(os.environ.get("EPHEMERAL_AUTH_FLOOD_ATTEMPTS", "100000"))


RACERS = 4  # PostgreSQL and MariaDB: the flood comes from this many processes at once


def flood(sync, key: str, start: str, first: int, count: int) -> int:
    """Race target: ``count`` attempts against ``key``, 1 ms apart from ``start`` + ``first`` ms; return refusals."""
    base = datetime.fromisoformat(start)
    sync()
    refused = 0
    for n in range(first, first + count):
        try:
            ratelimit.attempt(EventType.LOGIN_ATTEMPT, key, now=base + timedelta(milliseconds=1 + n))
        except RateLimited:
            refused += 1
    return refused


@pytest.mark.django_db(transaction=True)
def test_a_flood_of_blocked_attempts_adds_bounded_rows_and_the_purge_restores_the_table(now):
    limit = conf.rate_limit(EventType.LOGIN_ATTEMPT).limit
    # The purge keeps events younger than the longest window of any type.
    longest = max(conf.rate_limit(event_type).window for event_type in EventType.values)
    purge_at = now + timedelta(milliseconds=FLOOD + 1) + longest + timedelta(seconds=1)
    # Rows that must survive everything: other keys' events still inside the window at purge time.
    for n in range(5):
        ratelimit.attempt(EventType.LOGIN_IP, f"ip:192.0.2.{n}", now=purge_at - timedelta(seconds=30))
    before = RateLimitEvent.objects.count()

    key = ratelimit.subject_key("flooded-account")
    for n in range(limit):
        ratelimit.attempt(EventType.LOGIN_ATTEMPT, key, now=now + timedelta(microseconds=n))

    # Every attempt of the flood lands inside the window (1 ms apart: 100 s for 100,000).
    if connection.vendor == "sqlite":
        blocked = flood(lambda: None, key, now.isoformat(), 0, FLOOD)
    else:
        # Several processes at once, each with its own connection (tests/race.py).
        share = -(-FLOOD // RACERS)
        chunks = [(n * share, min(share, FLOOD - n * share)) for n in range(RACERS)]
        blocked = sum(run_racers("tests.test_flood:flood", [(key, now.isoformat(), a, b) for a, b in chunks]))
    assert blocked == FLOOD
    assert RateLimitEvent.objects.filter(key=key).count() == limit
    assert RateLimitEvent.objects.count() == before + limit

    # A blocked attempt costs the same two statements at the end of the flood as at its start.
    with CaptureQueriesContext(connection) as ctx, pytest.raises(RateLimited):
        ratelimit.attempt(EventType.LOGIN_ATTEMPT, key, now=now + timedelta(milliseconds=FLOOD + 1))
    assert len(ctx.captured_queries) == 2

    result = cleanup.purge_expired(now=purge_at)
    assert result.events == limit
    assert RateLimitEvent.objects.count() == before
    assert not RateLimitEvent.objects.filter(key=key).exists()


@pytest.mark.django_db
def test_blocked_logins_over_http_add_no_rows(user, settings):
    """The same bound through the login endpoint: 1,000 blocked requests from 1,000 IPs add nothing."""
    settings.EPHEMERAL_AUTH_TRUSTED_PROXIES = ["127.0.0.1"]
    limit = conf.rate_limit(EventType.LOGIN_ATTEMPT).limit
    client = Client()

    def login(n: int):
        return client.post(
            "/api/auth/login/",
            {"username": user.username, "password": "wrong password"},
            content_type="application/json",
            REMOTE_ADDR="127.0.0.1",
            HTTP_X_FORWARDED_FOR=f"198.51.{n // 256}.{n % 256}",
        )

    statuses = [login(n).status_code for n in range(limit)]
    assert statuses == [401] * limit
    full = RateLimitEvent.objects.count()
    # The account's ceiling, and one row in each IP's bucket and in each (account, IP) pair's.
    assert full == 3 * limit

    blocked = [login(limit + n) for n in range(1000)]
    assert {r.status_code for r in blocked} == {429}
    assert {r.json()["error"] for r in blocked} == {"rate_limited"}
    assert RateLimitEvent.objects.count() == full
