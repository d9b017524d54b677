"""The rate-limit service: sliding windows, bounded rows, retry-after, bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings

from ephemeral_auth.exceptions import InvalidInput, RateLimited
from ephemeral_auth.models import EventType, RateLimitEvent
from ephemeral_auth.services import ratelimit

pytestmark = pytest.mark.django_db

TWO_FA = EventType.TWO_FA_ATTEMPT  # 5 per 15 minutes by default


def test_attempt_admits_up_to_the_limit_then_refuses(now):
    for i in range(5):
        ratelimit.attempt(TWO_FA, "alice", now=now + timedelta(seconds=i))
    with pytest.raises(RateLimited) as info:
        ratelimit.attempt(TWO_FA, "alice", now=now + timedelta(seconds=10))
    # The oldest of the five leaves the window 15 minutes after it happened.
    assert info.value.retry_after == 15 * 60 - 10
    assert info.value.code == "rate_limited"
    assert RateLimitEvent.objects.count() == 5


def test_refused_attempts_add_no_rows(now):
    for _ in range(5):
        ratelimit.attempt(TWO_FA, "alice", now=now)
    for _ in range(50):
        with pytest.raises(RateLimited):
            ratelimit.attempt(TWO_FA, "alice", now=now)
    assert RateLimitEvent.objects.count() == 5


def test_window_slides(now):
    for i in range(5):
        ratelimit.attempt(TWO_FA, "alice", now=now + timedelta(minutes=i))
    with pytest.raises(RateLimited):
        ratelimit.check(TWO_FA, "alice", now=now + timedelta(minutes=14))
    # At 15 minutes the first event is out of the window: one more is allowed.
    ratelimit.check(TWO_FA, "alice", now=now + timedelta(minutes=15))
    ratelimit.attempt(TWO_FA, "alice", now=now + timedelta(minutes=15))
    with pytest.raises(RateLimited):
        ratelimit.attempt(TWO_FA, "alice", now=now + timedelta(minutes=15))


def test_keys_and_types_are_separate_buckets(now):
    for _ in range(5):
        ratelimit.attempt(TWO_FA, "alice", now=now)
    ratelimit.attempt(TWO_FA, "bob", now=now)
    ratelimit.attempt(EventType.LOGIN_ATTEMPT, "alice", now=now)


def test_check_records_nothing(now, django_assert_num_queries):
    with django_assert_num_queries(1):
        ratelimit.check(TWO_FA, "alice", now=now)
    assert not RateLimitEvent.objects.exists()


def test_attempt_is_two_statements_admitted_or_refused(now, django_assert_num_queries):
    for _ in range(4):
        ratelimit.attempt(TWO_FA, "alice", now=now)
    with django_assert_num_queries(2):
        ratelimit.attempt(TWO_FA, "alice", now=now)
    with django_assert_num_queries(2), pytest.raises(RateLimited):
        ratelimit.attempt(TWO_FA, "alice", now=now)


def test_clear_unlocks(now):
    for _ in range(5):
        ratelimit.attempt(TWO_FA, "alice", now=now)
    ratelimit.attempt(EventType.LOGIN_ATTEMPT, "alice", now=now)
    assert ratelimit.clear(TWO_FA, "alice") == 5
    ratelimit.attempt(TWO_FA, "alice", now=now)
    assert ratelimit.clear(None, "alice") == 2


@override_settings(EPHEMERAL_AUTH_RATE_LIMITS={"2fa_attempt": (2, 60)})
def test_limits_are_read_at_call_time(now):
    ratelimit.attempt(TWO_FA, "alice", now=now)
    ratelimit.attempt(TWO_FA, "alice", now=now)
    with pytest.raises(RateLimited) as info:
        ratelimit.attempt(TWO_FA, "alice", now=now)
    assert info.value.retry_after == 60


@override_settings(EPHEMERAL_AUTH_RATE_LIMITING_ENABLED=False)
def test_master_switch(now):
    for _ in range(10):
        ratelimit.attempt(TWO_FA, "alice", now=now)
    assert not RateLimitEvent.objects.exists()


def test_subject_key_normalises():
    assert ratelimit.subject_key("  Alice ") == ratelimit.subject_key("ALICE") == "alice"
    assert ratelimit.subject_key("Straße@Example.COM") == "strasse@example.com"
    assert ratelimit.ip_key("::ffff:10.0.0.1") == "::ffff:a00:1"
    assert ratelimit.ip_key(" 2001:DB8::1 ") == "2001:db8::1"


def test_a_254_character_email_fits(now):
    email = "a" * 242 + "@example.com"
    assert len(email) == 254
    ratelimit.attempt(EventType.PASSWORD_RESET_SEND, ratelimit.subject_key(email), now=now)
    assert RateLimitEvent.objects.get().key == email


@pytest.mark.parametrize("key", [None, 5, "", "x" * 255, "nul\x00", "\udc80", b"bytes"])
def test_bad_keys_are_invalid_input_and_write_nothing(now, key):
    with pytest.raises(InvalidInput):
        ratelimit.attempt(TWO_FA, key, now=now)
    with pytest.raises(InvalidInput):
        ratelimit.check(TWO_FA, key, now=now)
    assert not RateLimitEvent.objects.exists()


@pytest.mark.parametrize("event_type", ["nope", None, "2FA_ATTEMPT"])
def test_unknown_event_type_is_invalid_input(now, event_type):
    with pytest.raises(InvalidInput):
        ratelimit.attempt(event_type, "alice", now=now)
    assert not RateLimitEvent.objects.exists()


@pytest.mark.parametrize("address", ["not-an-ip", "", "1.2.3.4.5", 7])
def test_bad_ip_is_invalid_input(address):
    with pytest.raises(InvalidInput):
        ratelimit.ip_key(address)


# locked_out: who is over the limit now (admin page, ephemeral_auth_unlock --list).


def test_locked_out_lists_exactly_the_subjects_check_refuses(now, django_assert_num_queries):
    for i in range(5):
        ratelimit.attempt(TWO_FA, "alice", now=now - timedelta(minutes=10 - i))
    for _ in range(4):
        ratelimit.attempt(TWO_FA, "bob", now=now)
    for _ in range(3):
        ratelimit.attempt(EventType.EMAIL_SEND, "bob", now=now - timedelta(minutes=1))
    with django_assert_num_queries(1):
        locked = ratelimit.locked_out(now=now)
    assert [(s.event_type, s.key, s.count) for s in locked] == [("2fa_attempt", "alice", 5), ("email_send", "bob", 3)]
    for subject in locked:
        with pytest.raises(RateLimited) as refused:
            ratelimit.check(subject.event_type, subject.key, now=now)
        assert subject.retry_after == refused.value.retry_after
    assert locked[0].retry_after == 5 * 60  # the oldest of alice's five leaves the window in 5 minutes
    ratelimit.check(TWO_FA, "bob", now=now)


def test_locked_out_follows_the_window(now):
    for _ in range(5):
        ratelimit.attempt(TWO_FA, "alice", now=now)
    assert ratelimit.locked_out(now=now + timedelta(minutes=15) - timedelta(seconds=1))
    assert ratelimit.locked_out(now=now + timedelta(minutes=15)) == []


def test_locked_out_uses_the_limit_th_newest_event_when_over_the_limit(now):
    # Rows beyond the limit appear when the limit is lowered: the subject is free
    # once fewer than `limit` events remain, i.e. when the limit-th newest expires.
    for i in range(5):
        ratelimit.attempt(TWO_FA, "alice", now=now + timedelta(minutes=i))
    later = now + timedelta(minutes=5)
    with override_settings(EPHEMERAL_AUTH_RATE_LIMITS={"2fa_attempt": (2, 15 * 60)}):
        [subject] = ratelimit.locked_out(now=later)
        with pytest.raises(RateLimited) as refused:
            ratelimit.check(TWO_FA, "alice", now=later)
    assert subject.count == 5
    assert subject.retry_after == refused.value.retry_after == 13 * 60


@override_settings(EPHEMERAL_AUTH_RATE_LIMITING_ENABLED=False)
def test_locked_out_is_empty_when_rate_limiting_is_off(now):
    RateLimitEvent.objects.bulk_create(
        RateLimitEvent(event_type=TWO_FA, key="alice", occurred_at=now) for _ in range(9)
    )
    assert ratelimit.locked_out(now=now) == []
