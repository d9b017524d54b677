"""Rate limits under real concurrency: a burst never admits more than the limit.

PostgreSQL and MariaDB only (skipped on SQLite by conftest). Every attempt of
every racer is released at the same instant by a barrier.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from ephemeral_auth.exceptions import RateLimited
from ephemeral_auth.models import EventType, RateLimitEvent
from ephemeral_auth.services import ratelimit
from tests.race import run_racers

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]

RACERS = 8
ATTEMPTS_PER_RACER = 10


def attempt_bursts(sync: Any, scenarios: list[tuple[str, str, int, datetime | None]]) -> list[int]:
    """Child: for each scenario, make every attempt in lockstep with the others; return admissions."""
    admitted = []
    for event_type, key, limit, now in scenarios:
        count = 0
        for _ in range(ATTEMPTS_PER_RACER):
            sync()
            try:
                ratelimit.attempt(event_type, key, limit=limit, now=now)
            except RateLimited as exc:
                assert exc.retry_after >= 1
            else:
                count += 1
        admitted.append(count)
    return admitted


def test_a_burst_never_admits_more_than_the_limit(now):
    real_now = None  # the service's own clock, as in production
    scenarios = [
        (EventType.TWO_FA_ATTEMPT.value, "limit-1", 1, now),
        (EventType.TWO_FA_ATTEMPT.value, "limit-3", 3, now),
        (EventType.LOGIN_ATTEMPT.value, "limit-5", 5, now),
        (EventType.LOGIN_IP.value, "192.0.2.10", 10, real_now),
        (EventType.PASSWORD_RESET_IP.value, "limit-40", 40, now),
    ]

    results = run_racers("tests.test_race_ratelimit:attempt_bursts", [(scenarios,)] * RACERS)

    for position, (event_type, key, limit, at) in enumerate(scenarios):
        admitted = sum(racer[position] for racer in results)
        rows = RateLimitEvent.objects.filter(event_type=event_type, key=key).count()
        # Never over-admitted, and every admission left exactly one row while
        # every refusal left none (a racer that lost withdrew its row).
        assert admitted <= limit, f"{key}: {admitted} admitted, limit {limit}"
        assert rows == admitted, f"{key}: {rows} rows for {admitted} admissions"
        # Under contention the service may refuse more than strictly needed;
        # the budget those refusals did not use is still there afterwards.
        topped_up = admitted
        while True:
            try:
                ratelimit.attempt(event_type, key, limit=limit, now=at)
            except RateLimited:
                break
            topped_up += 1
        assert topped_up == limit, f"{key}: {topped_up} admitted in all, limit {limit}"


def test_a_blocked_key_stays_blocked_under_a_burst_and_adds_no_rows(now):
    for i in range(5):
        ratelimit.attempt(EventType.TWO_FA_ATTEMPT.value, "blocked", now=now - timedelta(minutes=1, seconds=i))
    scenarios = [(EventType.TWO_FA_ATTEMPT.value, "blocked", 5, now)]

    results = run_racers("tests.test_race_ratelimit:attempt_bursts", [(scenarios,)] * RACERS)

    assert sum(racer[0] for racer in results) == 0
    assert RateLimitEvent.objects.filter(key="blocked").count() == 5
