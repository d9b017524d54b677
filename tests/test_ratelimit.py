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
    assert ratelimit.ip_key("::ffff:10.0.0.1") == ratelimit.ip_key("::FFFF:a00:1") == "10.0.0.1"
    assert ratelimit.ip_key(" 2001:DB8::1 ") == "2001:db8::/64"


def test_an_ipv6_client_is_counted_by_its_prefix(now, settings):
    """Addresses of one /64 share the per-IP budget; another /64 has its own; the prefix is a setting."""
    assert ratelimit.ip_key("2001:db8::1") == ratelimit.ip_key("2001:db8::ffff:1") == "2001:db8::/64"
    assert ratelimit.ip_key("2001:db8:0:1::1") == "2001:db8:0:1::/64"
    for n in range(3):
        ratelimit.attempt(EventType.LOGIN_IP, ratelimit.ip_key(f"2001:db8::{n + 1:x}"), limit=3, now=now)
    with pytest.raises(RateLimited):
        ratelimit.attempt(EventType.LOGIN_IP, ratelimit.ip_key("2001:db8::abcd"), limit=3, now=now)
    ratelimit.attempt(EventType.LOGIN_IP, ratelimit.ip_key("2001:db8:0:1::1"), limit=3, now=now)

    settings.EPHEMERAL_AUTH_IPV6_PREFIX = 128
    assert ratelimit.ip_key("2001:db8::1") == "2001:db8::1"
    settings.EPHEMERAL_AUTH_IPV6_PREFIX = 48
    assert ratelimit.ip_key("2001:db8:0:1::1") == "2001:db8::/48"


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


# Record first (record_first / attempt_many / withdraw): several buckets in one
# statement, confirmed before the work, withdrawn exactly when the work succeeds.

LOGIN, IP = EventType.LOGIN_ATTEMPT, EventType.LOGIN_IP  # 10 and 20 per 15 minutes


def test_attempt_many_records_every_bucket_in_two_statements(now, django_assert_num_queries):
    with django_assert_num_queries(2):
        pks = ratelimit.attempt_many([(LOGIN, "alice"), (IP, "192.0.2.1")], now=now)
    rows = dict(RateLimitEvent.objects.values_list("pk", "key"))
    assert len(pks) == 2 and rows == {pks[0]: "alice", pks[1]: "192.0.2.1"}


def test_attempt_many_is_all_or_nothing(now, django_assert_num_queries):
    for i in range(20):
        ratelimit.attempt(IP, "192.0.2.1", now=now - timedelta(minutes=5, seconds=i))
    # The account has room, the IP has not: one INSERT (the account's row), one
    # SELECT, one DELETE withdrawing that row.
    with django_assert_num_queries(3), pytest.raises(RateLimited) as info:
        ratelimit.attempt_many([(LOGIN, "alice"), (IP, "192.0.2.1")], now=now)
    assert info.value.event_type == IP
    assert info.value.retry_after == 10 * 60 - 19
    assert not RateLimitEvent.objects.filter(key="alice").exists()
    assert RateLimitEvent.objects.count() == 20


def test_attempt_many_reports_the_longest_retry_after(now):
    with override_settings(EPHEMERAL_AUTH_RATE_LIMITS={"login_attempt": (1, 60), "login_ip": (1, 120)}):
        ratelimit.attempt_many([(LOGIN, "alice"), (IP, "192.0.2.1")], now=now)
        with pytest.raises(RateLimited) as info:
            ratelimit.attempt_many([(LOGIN, "alice"), (IP, "192.0.2.1")], now=now + timedelta(seconds=30))
    assert (info.value.event_type, info.value.retry_after) == (IP, 90)


def test_rate_limited_is_sent_for_every_full_bucket(now):
    from ephemeral_auth.signals import rate_limited

    seen = []

    def receiver(sender, event_type, key, retry_after, **kwargs):
        seen.append((event_type, key, retry_after))

    with override_settings(EPHEMERAL_AUTH_RATE_LIMITS={"login_attempt": (1, 60), "login_ip": (1, 120)}):
        ratelimit.attempt_many([(LOGIN, "alice"), (IP, "192.0.2.1")], now=now)
        rate_limited.connect(receiver)
        try:
            with pytest.raises(RateLimited):
                ratelimit.attempt_many([(LOGIN, "alice"), (IP, "192.0.2.1")], now=now)
        finally:
            rate_limited.disconnect(receiver)
    assert sorted(seen) == [(LOGIN, "alice", 60), (IP, "192.0.2.1", 120)]


def test_withdraw_deletes_exactly_the_given_rows(now, django_assert_num_queries):
    ratelimit.attempt(LOGIN, "alice", now=now)
    pks = ratelimit.attempt_many([(LOGIN, "alice"), (IP, "192.0.2.1")], now=now)
    with django_assert_num_queries(1):
        assert ratelimit.withdraw(pks) == 2
    assert ratelimit.count(LOGIN, "alice", now=now) == 1
    assert ratelimit.withdraw([]) == 0
    assert ratelimit.withdraw(pks) == 0


@pytest.mark.parametrize("pks", [["1"], [None], [1.0], [True]])
def test_withdraw_refuses_anything_but_ids(pks):
    with pytest.raises(InvalidInput):
        ratelimit.withdraw(pks)


def test_record_first_then_withdraw_leaves_the_bucket_as_it_was(now):
    for _ in range(3):
        ratelimit.attempt(LOGIN, "alice", now=now)
    before = set(RateLimitEvent.objects.values_list("pk", flat=True))
    provisional = ratelimit.record_first([(LOGIN, "alice"), (IP, "192.0.2.1")], now=now)
    provisional.confirm()
    assert provisional.counts == (4, 1)
    assert provisional.withdraw() == 2
    assert provisional.withdraw() == 0  # idempotent
    assert set(RateLimitEvent.objects.values_list("pk", flat=True)) == before


def test_the_recount_refuses_a_racer_that_passed_the_insert_too(now):
    """Two racers both pass the conditional insert; the recount after our commit catches it."""
    for _ in range(4):
        ratelimit.attempt(TWO_FA, "alice", now=now - timedelta(minutes=1))
    provisional = ratelimit.record_first([(TWO_FA, "alice")], now=now)
    own = provisional.recorded
    assert len(own) == 1
    # Another request's row, committed after our insert and before our recount.
    RateLimitEvent.objects.create(event_type=TWO_FA, key="alice", occurred_at=now)
    with pytest.raises(RateLimited) as info:
        provisional.confirm()
    # Our row is withdrawn; Retry-After is what check() now reports.
    assert not RateLimitEvent.objects.filter(pk__in=own).exists()
    assert RateLimitEvent.objects.filter(key="alice").count() == 5
    with pytest.raises(RateLimited) as checked:
        ratelimit.check(TWO_FA, "alice", now=now)
    assert info.value.retry_after == checked.value.retry_after == 14 * 60


def test_confirm_can_be_folded_into_a_select_of_ones_own(now):
    from django.db import connection

    provisional = ratelimit.record_first([(LOGIN, "alice"), (IP, "192.0.2.1")], now=now)
    columns, params = provisional.confirm_sql()
    assert len(columns) == 6  # three per bucket
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(columns)}, 42", params)
        row = cursor.fetchone()
    assert row[-1] == 42
    provisional.settle(row[:6])
    assert provisional.counts == (1, 1)


def test_the_confirmation_is_the_same_statement_for_every_caller(now):
    """No id of the caller's in the SQL: known and unknown subjects cost the same, statement for statement."""
    first = ratelimit.record_first([(LOGIN, "alice")], now=now)
    second = ratelimit.record_first([(LOGIN, "alice")], now=now)
    assert first.recorded != second.recorded
    assert first.confirm_sql() == second.confirm_sql()


def test_the_retry_after_of_a_withdrawn_racer_skips_its_own_row(now):
    # Two events a minute apart, ours (at `now`), then two racers' from a host
    # whose clock runs ahead: ours is the third newest and must be skipped.
    with override_settings(EPHEMERAL_AUTH_RATE_LIMITS={"2fa_attempt": (3, 600)}):
        for i in range(2):
            ratelimit.attempt(TWO_FA, "alice", now=now - timedelta(minutes=2 - i))
        provisional = ratelimit.record_first([(TWO_FA, "alice")], now=now)
        RateLimitEvent.objects.create(event_type=TWO_FA, key="alice", occurred_at=now + timedelta(seconds=30))
        RateLimitEvent.objects.create(event_type=TWO_FA, key="alice", occurred_at=now + timedelta(seconds=40))
        with pytest.raises(RateLimited) as info:
            provisional.confirm()
        with pytest.raises(RateLimited) as checked:
            ratelimit.check(TWO_FA, "alice", now=now)
    # The third newest other event is the one a minute old: free in 9 minutes.
    assert info.value.retry_after == checked.value.retry_after == 9 * 60


def test_the_same_bucket_twice_is_invalid_input(now):
    with pytest.raises(InvalidInput):
        ratelimit.record_first([(LOGIN, "alice"), (LOGIN, "alice")], now=now)
    with pytest.raises(InvalidInput):
        ratelimit.attempt_many([(LOGIN, "alice"), ("nope", "alice")], now=now)
    assert not RateLimitEvent.objects.exists()


def test_a_zero_limit_refuses_without_writing(now):
    with override_settings(EPHEMERAL_AUTH_RATE_LIMITS={"login_ip": (0, 60)}):
        with pytest.raises(RateLimited) as info:
            ratelimit.attempt_many([(LOGIN, "alice"), (IP, "192.0.2.1")], now=now)
    assert info.value.retry_after == 60
    assert not RateLimitEvent.objects.exists()


@override_settings(EPHEMERAL_AUTH_RATE_LIMITING_ENABLED=False)
def test_record_first_records_nothing_when_switched_off(now, django_assert_num_queries):
    with django_assert_num_queries(0):
        provisional = ratelimit.record_first([(LOGIN, "alice"), (IP, "192.0.2.1")], now=now)
        provisional.confirm()
        assert provisional.withdraw() == 0
    assert provisional.confirm_sql() == ([], [])
    assert ratelimit.attempt_many([(LOGIN, "alice")], now=now) == []


def test_without_insert_returning_each_bucket_gets_its_own_insert(now, django_assert_num_queries, backend):
    """The fallback for backends without INSERT ... RETURNING (MySQL): lastrowid of single-row inserts."""
    from django.db import connection

    if backend == "postgresql":
        pytest.skip("PostgreSQL always has INSERT ... RETURNING (and its cursors no lastrowid)")
    for _ in range(20):
        ratelimit.attempt(IP, "192.0.2.1", now=now)
    connection.features.__dict__["can_return_columns_from_insert"] = False
    try:
        with django_assert_num_queries(3):
            provisional = ratelimit.record_first([(LOGIN, "alice"), (IP, "192.0.2.1"), (TWO_FA, "bob")], now=now)
    finally:
        del connection.features.__dict__["can_return_columns_from_insert"]
    alice, ip, bob = provisional.pks
    assert ip is None  # full: nothing inserted
    assert RateLimitEvent.objects.get(pk=alice).key == "alice"
    assert RateLimitEvent.objects.get(pk=bob).key == "bob"
