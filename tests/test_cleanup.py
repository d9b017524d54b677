"""The purge service: what it deletes, what it keeps, how it batches, and overlapping runs."""

from __future__ import annotations

import hashlib
import math
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ephemeral_auth import conf
from ephemeral_auth.exceptions import InvalidToken
from ephemeral_auth.models import EphemeralToken, EventType, RateLimitEvent, TokenType
from ephemeral_auth.services import cleanup, ratelimit, tokens
from tests.race import run_racers

pytestmark = pytest.mark.django_db

# The fields each type requires, so every type is issued through the service.
REQUIRED_FIELDS: dict[str, dict[str, Any]] = {
    TokenType.PRE_AUTH: {"challenge_id": "cookie", "methods": "totp"},
    TokenType.OIDC_STATE: {
        "provider": "example",
        "nonce": "n" * 32,
        "code_verifier": "v" * 43,
        "challenge_id": "cookie",
        "mode": "session",
    },
    TokenType.OIDC_EXCHANGE: {"challenge_id": "cookie"},
    TokenType.PASSWORD_RESET: {},
    TokenType.EMAIL_OTP_SETUP: {"code_hash": "0" * 64},
    TokenType.SLICER_DOWNLOAD: {"resource": "file:1"},
    TokenType.WEBAUTHN_REGISTER: {"challenge_id": "cookie", "mode": "passkey"},
    TokenType.WEBAUTHN_LOGIN: {"challenge_id": "cookie"},
    TokenType.PASSKEY_LOGIN: {"challenge_id": "cookie"},
    TokenType.TRUSTED_BROWSER: {"code_hash": "f" * 20},
}
NEEDS_NO_USER = {TokenType.OIDC_STATE}


def issue(token_type: str, user, *, expires_at: datetime) -> EphemeralToken:
    """Issue a token of any type through the service, expiring at ``expires_at``."""
    ttl = timedelta(minutes=5)
    owner = None if token_type in NEEDS_NO_USER else user
    issued = tokens.issue_token(
        token_type, user=owner, ttl=ttl, now=expires_at - ttl, **REQUIRED_FIELDS[token_type]
    )
    return issued.token


def record_event(event_type: str, key: str, *, at: datetime) -> None:
    ratelimit.attempt(event_type, key, now=at)


def token_ids() -> set[int]:
    return set(EphemeralToken.objects.values_list("pk", flat=True))


def event_ids() -> set[int]:
    return set(RateLimitEvent.objects.values_list("pk", flat=True))


def test_every_token_type_is_covered():
    assert set(REQUIRED_FIELDS) == set(TokenType.values)


def test_purge_deletes_expired_tokens_of_every_type_and_keeps_live_ones(user, now):
    live = set()
    for n, token_type in enumerate(TokenType.values, start=1):
        for i in range(n):  # a different count per type, to check the counts per type
            issue(token_type, user, expires_at=now - timedelta(seconds=i))
        live.add(issue(token_type, user, expires_at=now + timedelta(seconds=1)).pk)

    result = cleanup.purge_expired(now=now)

    assert result.tokens == {t: n for n, t in enumerate(TokenType.values, start=1)}
    assert result.total == sum(range(1, len(TokenType.values) + 1))
    assert not result.dry_run
    assert token_ids() == live


def test_expiry_boundary_matches_what_consume_refuses(user, now):
    at_now = tokens.issue_token(TokenType.PASSWORD_RESET, user=user, ttl=timedelta(minutes=5),
                                now=now - timedelta(minutes=5))
    just_after = issue(TokenType.PASSWORD_RESET, user, expires_at=now + timedelta(microseconds=1))
    # consume refuses a token whose expiry is now, so purging it loses nothing.
    with pytest.raises(InvalidToken):
        tokens.consume_token(at_now.raw, TokenType.PASSWORD_RESET, now=now)

    result = cleanup.purge_expired(now=now)

    assert result.tokens[TokenType.PASSWORD_RESET] == 1
    assert token_ids() == {just_after.pk}


def test_purge_deletes_events_older_than_the_longest_window_only(now):
    longest = conf.longest_window()
    for i in range(3):
        record_event(EventType.LOGIN_ATTEMPT, f"stale{i}", at=now - longest - timedelta(seconds=i))
    record_event(EventType.EMAIL_SEND, "at-cutoff", at=now - longest)
    record_event(EventType.TWO_FA_ATTEMPT, "fresh", at=now - longest + timedelta(seconds=1))
    record_event(EventType.LOGIN_IP, "192.0.2.1", at=now)
    kept = set(RateLimitEvent.objects.filter(key__in=["fresh", "192.0.2.1"]).values_list("pk", flat=True))

    result = cleanup.purge_expired(now=now)

    assert result.events == 4
    assert event_ids() == kept


def test_a_longer_configured_window_keeps_its_events(now, settings):
    record_event(EventType.LOGIN_ATTEMPT, "alice", at=now - timedelta(hours=1))
    assert cleanup.purge_expired(now=now, dry_run=True).events == 1

    # One window of two hours: every event younger than that may still count.
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (10, 2 * 60 * 60)}
    assert cleanup.purge_expired(now=now).events == 0
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, "alice", now=now) == 1


def test_dry_run_counts_and_deletes_nothing(user, now):
    for token_type in TokenType.values:
        issue(token_type, user, expires_at=now - timedelta(minutes=1))
        issue(token_type, user, expires_at=now + timedelta(minutes=1))
    for i in range(4):
        record_event(EventType.LOGIN_IP, f"192.0.2.{i}", at=now - timedelta(days=1))
    before = (token_ids(), event_ids())

    dry = cleanup.purge_expired(now=now, dry_run=True)

    assert (token_ids(), event_ids()) == before
    assert dry.dry_run
    assert dry.tokens == dict.fromkeys(TokenType.values, 1)
    assert dry.events == 4
    real = cleanup.purge_expired(now=now)
    assert (real.tokens, real.events) == (dry.tokens, dry.events)


@pytest.mark.parametrize("batch_size", [1, 3, 7, 1000])
def test_purge_deletes_in_batches(user, now, batch_size):
    expired_resets, stale_events = 7, 5
    for i in range(expired_resets):
        issue(TokenType.PASSWORD_RESET, user, expires_at=now - timedelta(seconds=i))
    for i in range(stale_events):
        record_event(EventType.LOGIN_IP, f"192.0.2.{i}", at=now - timedelta(days=1))
    progress: list[tuple[str, int]] = []

    with CaptureQueriesContext(connection) as queries:
        result = cleanup.purge_expired(
            now=now, batch_size=batch_size, progress=lambda what, n: progress.append((what, n))
        )

    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]
    reset_batches = math.ceil(expired_resets / batch_size)
    event_batches = math.ceil(stale_events / batch_size)
    # One bounded DELETE per batch: short locks whatever the backlog.
    assert len(deletes) == reset_batches + event_batches
    # Besides the deletes, one SELECT of keys per batch and at most one empty
    # SELECT per token type and for the events: the work scales with batches.
    assert len(queries.captured_queries) <= 2 * len(deletes) + len(TokenType.values) + 1
    assert result.tokens[TokenType.PASSWORD_RESET] == expired_resets
    assert result.events == stale_events
    # Progress reports the running total after every batch.
    reset_progress = [n for what, n in progress if what == TokenType.PASSWORD_RESET]
    assert reset_progress == [min(expired_resets, batch_size * (b + 1)) for b in range(reset_batches)]
    assert [n for what, n in progress if what == "events"][-1] == stale_events


def test_purge_refuses_a_negative_batch_size(now):
    with pytest.raises(ValueError, match="batch_size"):
        cleanup.purge_expired(now=now, batch_size=-1)


def test_purge_of_an_empty_table_is_cheap(now, django_assert_max_num_queries):
    with django_assert_max_num_queries(len(TokenType.values) + 1):
        result = cleanup.purge_expired(now=now)
    assert result.total == 0


# Volume: rows inserted in bulk with pre-computed digests. Acceptable here only
# because these rows are fixture data for the purge, not token behaviour. A
# plain executemany, because building 10^5 model instances for bulk_create
# costs more than the purge under test.

VOLUME_EXPIRED = 100_000
LIVE_EVERY = 40  # one live row among every 40, interleaved by primary key


def insert_many(model, rows: list[dict[str, Any]]) -> None:
    """Insert plain rows (field name -> Python value) with executemany, in chunks."""
    fields = [model._meta.get_field(name) for name in rows[0]]
    qn = connection.ops.quote_name
    sql = "INSERT INTO {} ({}) VALUES ({})".format(
        qn(model._meta.db_table), ", ".join(qn(f.column) for f in fields), ", ".join(["%s"] * len(fields))
    )
    # Few distinct values per column except the digest: prepare each once.
    prepared: list[dict[Any, Any]] = [{} for _ in fields]

    def prep(index: int, value: Any) -> Any:
        if isinstance(value, str):
            return value
        cache = prepared[index]
        if value not in cache:
            cache[value] = fields[index].get_db_prep_save(value, connection)
        return cache[value]

    with connection.cursor() as cursor:
        for start in range(0, len(rows), 5000):
            chunk = rows[start : start + 5000]
            cursor.executemany(sql, [[prep(i, row[f.name]) for i, f in enumerate(fields)] for row in chunk])


def bulk_tokens(now: datetime, count: int) -> None:
    types = TokenType.values
    blank = dict.fromkeys(
        ["provider", "nonce", "code_verifier", "challenge_id", "code_hash", "resource", "methods", "next_url", "mode"],
        "",
    )
    live_at, created_at = now + timedelta(minutes=5), now - timedelta(hours=2)
    expired_at = [now - timedelta(seconds=1 + s) for s in range(3600)]
    insert_many(EphemeralToken, [
        {
            **blank,
            "token": hashlib.sha256(b"volume-%d" % i).hexdigest(),
            "token_type": types[i % len(types)],
            "attempts": 0,
            "expires_at": live_at if i % LIVE_EVERY == 0 else expired_at[i % 3600],
            "created_at": created_at,
        }
        for i in range(count)
    ])


def bulk_events(now: datetime, count: int) -> None:
    cutoff = now - conf.longest_window()
    types = EventType.values
    fresh_at = cutoff + timedelta(seconds=1)
    insert_many(RateLimitEvent, [
        {
            "key": f"subject{i % 500}",
            "event_type": types[i % len(types)],
            "occurred_at": fresh_at if i % LIVE_EVERY == 0 else cutoff - timedelta(seconds=i % 3600),
        }
        for i in range(count)
    ])


@pytest.mark.slow
def test_purge_of_100k_expired_rows_keeps_every_live_row(now):
    token_count = VOLUME_EXPIRED * LIVE_EVERY // (LIVE_EVERY - 1) + 1
    bulk_tokens(now, token_count)
    bulk_events(now, 20_000)
    live_tokens = set(EphemeralToken.objects.live(now).values_list("pk", flat=True))
    live_events = set(RateLimitEvent.objects.filter(occurred_at__gt=now - conf.longest_window())
                      .values_list("pk", flat=True))
    expired_tokens = EphemeralToken.objects.count() - len(live_tokens)
    stale_events = RateLimitEvent.objects.count() - len(live_events)
    assert expired_tokens >= VOLUME_EXPIRED

    result = cleanup.purge_expired(now=now)

    assert sum(result.tokens.values()) == expired_tokens
    assert result.events == stale_events
    assert token_ids() == live_tokens
    assert event_ids() == live_events


# Two purges at once (PostgreSQL and MariaDB): nothing counted twice, nothing live lost.


def purge_once(sync: Any, now: datetime, batch_size: int) -> dict[str, int]:
    """Child: start the purge together with the other racer; return its counts."""
    sync()
    result = cleanup.purge_expired(now=now, batch_size=batch_size)
    return {**result.tokens, "events": result.events}


@pytest.mark.race
@pytest.mark.django_db(transaction=True)
def test_two_overlapping_purges_add_up_and_keep_every_live_row(now):
    bulk_tokens(now, 12_000)
    bulk_events(now, 6_000)
    live_tokens = set(EphemeralToken.objects.live(now).values_list("pk", flat=True))
    live_events = set(RateLimitEvent.objects.filter(occurred_at__gt=now - conf.longest_window())
                      .values_list("pk", flat=True))
    expired = {
        t: EphemeralToken.objects.expired(now).filter(token_type=t).count() for t in TokenType.values
    }
    expired["events"] = RateLimitEvent.objects.count() - len(live_events)

    # Small batches: the two runs interleave over dozens of batches.
    first, second = run_racers("tests.test_cleanup:purge_once", [(now, 150), (now, 150)])

    assert {what: first[what] + second[what] for what in expired} == expired
    assert token_ids() == live_tokens
    assert event_ids() == live_events
