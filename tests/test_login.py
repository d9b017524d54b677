"""The login service: the password step, its record-first rate limits, and the begin_login hand-off."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from ephemeral_auth import crypto
from ephemeral_auth.auth import login
from ephemeral_auth.auth.session import SESSION_KEY
from ephemeral_auth.exceptions import InvalidCredentials, InvalidInput, RateLimited
from ephemeral_auth.models import EphemeralToken, EventType, RateLimitEvent, TokenType
from ephemeral_auth.services import lockout, ratelimit, recovery
from ephemeral_auth.services import pending as pending_logins
from ephemeral_auth.signals import user_locked_out
from tests.factories import PASSWORD, UserFactory, enable_email_codes, enrol_totp

pytestmark = pytest.mark.django_db


@pytest.fixture
def rf():
    return RequestFactory()


def make_request(rf, ip="192.0.2.10"):
    request = rf.post("/login/", REMOTE_ADDR=ip)
    request.session = SessionStore()
    return request


def acct(user):
    """The key of an account's own buckets: its primary key, whatever it is called."""
    return ratelimit.account_key(user.pk)


def pair(subject, ip="192.0.2.10"):
    """The key of the primary lock: one subject guessed from one address."""
    return lockout.pair_key(subject, ip)


def fail(rf, username, ip="192.0.2.10", now=None):
    with pytest.raises((InvalidCredentials, RateLimited)) as info:
        login.password_login(make_request(rf, ip), username=username, password="wrong", now=now)
    return info.value


def test_user_without_two_factor_is_logged_in(rf, user, now):
    request = make_request(rf)
    step = login.password_login(request, username=user.username, password=PASSWORD, now=now)
    assert step.status == "authenticated" and step.authenticated
    assert step.pre_auth is None and step.challenge is None and step.methods == []
    assert request.session["_auth_user_id"] == str(user.pk)
    assert request.session[SESSION_KEY]["v"] is False and request.session[SESSION_KEY]["f"] == ""
    assert request.session[SESSION_KEY]["e"] is False


def test_user_with_two_factor_gets_a_pending_login_not_a_session(rf, user, now):
    enrol_totp(user)
    request = make_request(rf)
    step = login.password_login(request, username=user.username, password=PASSWORD, now=now)
    assert step.status == "2fa_required"
    assert step.methods == ["totp"]
    assert "_auth_user_id" not in request.session and not request.session.keys()
    row = EphemeralToken.objects.get()
    assert row.token_type == TokenType.PRE_AUTH and row.user == user
    assert row.methods == "totp"
    # Only digests are stored: the raw token and the raw challenge stay with the client.
    assert row.token == crypto.digest_token(step.pre_auth.raw)
    assert row.challenge_id == crypto.digest_token(step.challenge)
    assert step.challenge not in repr(step)


def test_methods_follow_the_enrolments(rf, user, now):
    enrol_totp(user)
    enable_email_codes(user)
    recovery.generate(user)
    step = login.password_login(make_request(rf), username=user.username, password=PASSWORD, now=now)
    assert step.methods == ["totp", "email", "recovery"]
    assert login.enabled_methods(user) == ["totp", "email", "recovery"]


def test_wrong_password_counts_against_the_pair_the_ip_and_the_account(rf, user, now):
    exc = fail(rf, user.username, now=now)
    assert isinstance(exc, InvalidCredentials) and exc.code == "invalid_credentials"
    assert ratelimit.count(EventType.LOGIN_USER_IP, pair(acct(user)), now=now) == 1
    assert ratelimit.count(EventType.LOGIN_IP, "192.0.2.10", now=now) == 1
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(user), now=now) == 1


def test_one_subject_key_whatever_was_typed(rf, now):
    """Seed weakness 5: "Alice", " alice " and alice's email share one bucket, the one that is enforced."""
    UserFactory(username="alice", email="Alice@Example.com")
    alice = lockout.resolve("alice")
    for typed in ("alice", "ALICE", " alice ", "alice@example.com", "ALICE@EXAMPLE.COM"):
        fail(rf, typed, ip="198.51.100.1", now=now)
    # The username's other spellings name no account on a case-sensitive database: they share
    # the casefolded name's key; the address names the account. On a case-insensitive
    # collation (MariaDB) the database resolves them all to the account.
    spellings = RateLimitEvent.objects.filter(event_type=EventType.LOGIN_ATTEMPT).values_list("key", flat=True)
    assert set(spellings) <= {alice.key, "n:alice"}
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, alice.key, now=now) >= 3
    # The success withdraws its own rows only: the five failures stay counted.
    login.password_login(make_request(rf, "198.51.100.1"), username="alice", password=PASSWORD, now=now)
    assert len(spellings) == 5
    assert ratelimit.count(EventType.LOGIN_IP, "198.51.100.1", now=now) == 5


@pytest.mark.parametrize("typed", ["alice@example.com", "ALICE@EXAMPLE.COM", "ALICE", " alice "])
def test_a_full_account_bucket_refuses_every_spelling(rf, now, typed, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (3, 900)}
    alice = UserFactory(username="alice", email="alice@example.com")
    for i in range(3):
        fail(rf, "alice", ip=f"198.51.100.{i}", now=now)
    # Whatever names the account (the password backend would check alice's password for it)
    # meets the full ceiling; a spelling no backend accepts cannot open it either (see
    # test_an_unresolved_spelling_cannot_open_a_locked_account).
    exc = fail(rf, typed, ip="198.51.100.50", now=now)
    if lockout.resolve(typed) is not None:
        assert isinstance(exc, RateLimited)
        assert not RateLimitEvent.objects.filter(key="198.51.100.50").exists()
    else:
        assert isinstance(exc, InvalidCredentials)  # not alice to any backend: not her password checked
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(alice), now=now) == 3


class EmailBackend:
    """A project's backend that logs in by email address."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.filter(email__iexact=username).first()
        if user is not None and user.check_password(password):
            return user
        return None

    def get_user(self, user_id):
        from django.contrib.auth import get_user_model

        return get_user_model().objects.filter(pk=user_id).first()


def test_email_login_is_counted_in_the_accounts_bucket(rf, now, settings):
    settings.AUTHENTICATION_BACKENDS = ["tests.test_login.EmailBackend", "django.contrib.auth.backends.ModelBackend"]
    bob = UserFactory(username="bob", email="bob@example.com")
    enrol_totp(bob)
    fail(rf, "bob", now=now)
    fail(rf, "Bob@Example.com", now=now)
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(bob), now=now) == 2
    step = login.password_login(make_request(rf), username="BOB@example.com", password=PASSWORD, now=now)
    assert step.status == "2fa_required" and step.user == bob and step.methods == ["totp"]
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(bob), now=now) == 2
    assert set(RateLimitEvent.objects.values_list("key", flat=True)) == {acct(bob), pair(acct(bob)), "192.0.2.10"}


def test_pair_limit_refuses_before_the_password_is_checked(rf, user, now, hashes):
    for _ in range(10):
        fail(rf, user.username, ip="203.0.113.1", now=now)
    hashes.clear()
    with pytest.raises(RateLimited) as info:
        login.password_login(make_request(rf, "203.0.113.1"), username=user.username, password=PASSWORD, now=now)
    assert info.value.retry_after == 15 * 60 and info.value.event_type == EventType.LOGIN_USER_IP
    assert hashes == []  # the right password is not even looked at
    # The refused attempt left nothing behind, in any bucket.
    assert ratelimit.count(EventType.LOGIN_USER_IP, pair(acct(user), "203.0.113.1"), now=now) == 10
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(user), now=now) == 10
    assert ratelimit.count(EventType.LOGIN_IP, "203.0.113.1", now=now) == 10


def test_ceiling_refuses_before_the_password_is_checked(rf, user, now, hashes, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (10, 900)}
    for i in range(10):
        fail(rf, user.username, ip=f"203.0.113.{i}", now=now)
    hashes.clear()
    with pytest.raises(RateLimited) as info:
        login.password_login(make_request(rf, "203.0.113.99"), username=user.username, password=PASSWORD, now=now)
    assert info.value.retry_after == 15 * 60 and info.value.event_type == EventType.LOGIN_ATTEMPT
    assert hashes == []
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(user), now=now) == 10
    assert not RateLimitEvent.objects.filter(key__contains="203.0.113.99").exists()


@pytest.mark.parametrize("known", [True, False])
def test_a_refused_attempt_runs_no_password_hash(rf, now, hashes, settings, known):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_ip": (2, 900)}
    target = UserFactory().username if known else "ghost"
    hashes.clear()
    for _ in range(2):
        fail(rf, target, ip="203.0.113.1", now=now)
    assert hashes  # evaluated failures hash (a dummy hash for "ghost")
    hashes.clear()
    for _ in range(5):
        assert isinstance(fail(rf, target, ip="203.0.113.1", now=now), RateLimited)
    assert hashes == []
    key = lockout.resolve(target).key if known else lockout.name_key(target)
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, key, now=now) == 2


def test_a_racer_that_took_the_last_place_refuses_without_hashing(rf, user, now, hashes, monkeypatch, settings):
    """The recount after the insert catches racers that passed the conditional insert together."""
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (3, 900)}
    fail(rf, user.username, now=now)
    hashes.clear()
    original = ratelimit.record_first

    def and_two_racers_commit(buckets, **kwargs):
        provisional = original(buckets, **kwargs)
        # Two other requests inserted (and committed) between our INSERT and our recount.
        RateLimitEvent.objects.bulk_create(
            RateLimitEvent(event_type=EventType.LOGIN_ATTEMPT, key=acct(user), occurred_at=now) for _ in range(2)
        )
        return provisional

    monkeypatch.setattr(ratelimit, "record_first", and_two_racers_commit)
    with pytest.raises(RateLimited) as info:
        login.password_login(make_request(rf, "203.0.113.5"), username=user.username, password=PASSWORD, now=now)
    assert hashes == []
    assert info.value.retry_after == 15 * 60
    # Our rows were withdrawn: the bucket holds its limit, the IP nothing of ours.
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(user), now=now) == 3
    assert not RateLimitEvent.objects.filter(key__contains="203.0.113.5").exists()


def test_retry_after_is_the_longest_of_the_full_buckets(rf, now, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (1, 600), "login_ip": (1, 900)}
    fail(rf, "carol", ip="203.0.113.20", now=now)
    later = now + timedelta(minutes=1)
    exc = fail(rf, "carol", ip="203.0.113.20", now=later)
    assert isinstance(exc, RateLimited)
    assert exc.retry_after == 14 * 60 and exc.event_type == EventType.LOGIN_IP


def test_ip_limit_refuses_every_username(rf, now):
    for i in range(20):
        fail(rf, f"nobody{i}", ip="203.0.113.7", now=now)
    victim = UserFactory()
    with pytest.raises(RateLimited):
        login.password_login(make_request(rf, "203.0.113.7"), username=victim.username, password=PASSWORD, now=now)
    # Another IP is not affected.
    login.password_login(make_request(rf, "203.0.113.8"), username=victim.username, password=PASSWORD, now=now)


def test_success_never_clears_the_ip_bucket(rf, now):
    """Seed weakness 4: owning one account must not reset the IP's failures."""
    attacker = UserFactory()
    for i in range(19):
        fail(rf, f"victim{i}", ip="203.0.113.9", now=now)
    login.password_login(make_request(rf, "203.0.113.9"), username=attacker.username, password=PASSWORD, now=now)
    assert ratelimit.count(EventType.LOGIN_IP, "203.0.113.9", now=now) == 19
    fail(rf, "victim19", ip="203.0.113.9", now=now)
    with pytest.raises(RateLimited):
        login.password_login(make_request(rf, "203.0.113.9"), username=attacker.username, password=PASSWORD, now=now)


def test_success_by_one_account_leaves_other_failures_in_place(rf, user, other_user, now):
    """Weakness 4: account A's success touches neither B's failures, nor A's earlier ones, nor the IP's."""
    fail(rf, user.username, now=now)
    fail(rf, other_user.username, now=now)
    fail(rf, other_user.username, ip="192.0.2.99", now=now)
    before = set(RateLimitEvent.objects.values_list("pk", "event_type", "key"))
    login.password_login(make_request(rf), username=user.username, password=PASSWORD, now=now)
    assert set(RateLimitEvent.objects.values_list("pk", "event_type", "key")) == before
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(user), now=now) == 1
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(other_user), now=now) == 2
    assert ratelimit.count(EventType.LOGIN_IP, "192.0.2.10", now=now) == 2


def test_a_success_withdraws_exactly_its_own_provisional_rows(rf, user, now, monkeypatch):
    fail(rf, user.username, now=now)
    recorded = []
    original = ratelimit.record_first

    def spy(buckets, **kwargs):
        provisional = original(buckets, **kwargs)
        recorded.append(provisional)
        return provisional

    monkeypatch.setattr(ratelimit, "record_first", spy)
    before = set(RateLimitEvent.objects.values_list("pk", flat=True))
    with CaptureQueriesContext(connection) as ctx:
        login.password_login(make_request(rf), username=user.username, password=PASSWORD, now=now)
    [provisional] = recorded
    own = provisional.recorded
    # Recorded in its three buckets before the password was checked ...
    assert [(b.event_type, b.key) for b in provisional.buckets] == [
        (EventType.LOGIN_USER_IP, pair(acct(user))),
        (EventType.LOGIN_IP, "192.0.2.10"),
        (EventType.LOGIN_ATTEMPT, acct(user)),
    ]
    assert len(own) == 3 and not set(own) & before
    # ... and withdrawn by primary key, in one DELETE, leaving every other row.
    deletes = [q["sql"] for q in ctx.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 1 and all(str(pk) in deletes[0] for pk in own)
    assert set(RateLimitEvent.objects.values_list("pk", flat=True)) == before


def test_a_failure_keeps_its_provisional_rows(rf, user, now):
    with CaptureQueriesContext(connection) as ctx:
        fail(rf, user.username, now=now)
    assert not [q for q in ctx.captured_queries if q["sql"].startswith("DELETE")]
    assert sorted(RateLimitEvent.objects.values_list("event_type", "key")) == sorted([
        (EventType.LOGIN_ATTEMPT, acct(user)),
        (EventType.LOGIN_IP, "192.0.2.10"),
        (EventType.LOGIN_USER_IP, pair(acct(user))),
    ])


def test_unknown_users_cost_a_password_hash(rf, now, monkeypatch):
    hashed = []
    original = MD5PasswordHasher.encode
    monkeypatch.setattr(
        MD5PasswordHasher, "encode", lambda self, pw, salt: hashed.append(1) or original(self, pw, salt)
    )
    fail(rf, "does-not-exist", now=now)
    assert hashed, "the hasher must run for unknown users too (timing)"


def test_unknown_and_known_users_cost_the_same_statements(rf, user, now):
    with CaptureQueriesContext(connection) as known:
        fail(rf, user.username, ip="192.0.2.50", now=now)
    with CaptureQueriesContext(connection) as unknown:
        fail(rf, "ghost", ip="192.0.2.51", now=now)
    assert len(known.captured_queries) == len(unknown.captured_queries)
    # Resolve the account, record its buckets, confirm them, authenticate().
    assert len(known.captured_queries) == 4


def test_unknown_and_known_email_addresses_cost_the_same_statements(rf, user, now):
    with CaptureQueriesContext(connection) as known:
        fail(rf, user.email.upper(), ip="192.0.2.52", now=now)
    with CaptureQueriesContext(connection) as unknown:
        fail(rf, "ghost@example.com", ip="192.0.2.53", now=now)
    assert len(known.captured_queries) == len(unknown.captured_queries)
    # An address is resolved like a username: the same four statements.
    assert len(known.captured_queries) == 4
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(user), now=now) == 1
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, "n:ghost@example.com", now=now) == 1


def test_a_refusal_costs_two_statements(rf, user, now, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (1, 900), "login_ip": (1, 900), "login_user_ip": (1, 900)}
    fail(rf, user.username, ip="192.0.2.54", now=now)
    with CaptureQueriesContext(connection) as ctx:
        assert isinstance(fail(rf, user.username, ip="192.0.2.54", now=now), RateLimited)
    # The account's SELECT, the conditional INSERT writing nothing (every bucket full), the
    # SELECT finding the Retry-After.
    assert len(ctx.captured_queries) == 3


def test_lockout_signal_when_the_bucket_fills(rf, user, now):
    seen = []

    def receiver(sender, event_type, key, request, **kwargs):
        seen.append((event_type, key))

    user_locked_out.connect(receiver)
    try:
        for _ in range(10):
            fail(rf, user.username, ip="192.0.2.77", now=now)
        for i in range(10):
            fail(rf, f"spray{i}", ip="192.0.2.77", now=now)
        fail(rf, "one-more", ip="192.0.2.77", now=now)  # refused: fills nothing
    finally:
        user_locked_out.disconnect(receiver)
    assert seen == [(EventType.LOGIN_USER_IP, pair(acct(user), "192.0.2.77")), (EventType.LOGIN_IP, "192.0.2.77")]


def test_window_slides(rf, user, now):
    for _ in range(10):
        fail(rf, user.username, now=now)
    with pytest.raises(RateLimited):
        login.password_login(make_request(rf), username=user.username, password=PASSWORD, now=now)
    later = now + timedelta(minutes=15, seconds=1)
    assert login.password_login(make_request(rf), username=user.username, password=PASSWORD, now=later).authenticated


def test_inactive_user_is_refused(rf, now):
    user = UserFactory(is_active=False)
    with pytest.raises(InvalidCredentials):
        login.password_login(make_request(rf), username=user.username, password=PASSWORD, now=now)


@pytest.mark.parametrize("bad", [None, 5, ["a"], {"a": 1}, "", "   ", "x" * 300, "a\x00b", "\ud800"])
def test_malformed_username_is_refused_without_a_trace(rf, now, bad):
    with pytest.raises(InvalidInput):
        login.password_login(make_request(rf), username=bad, password="pw", now=now)
    assert not RateLimitEvent.objects.exists()


def test_rate_limiting_can_be_switched_off(rf, user, now, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITING_ENABLED = False
    for _ in range(12):
        fail(rf, user.username, now=now)
    assert not RateLimitEvent.objects.exists()
    assert login.password_login(make_request(rf), username=user.username, password=PASSWORD, now=now).authenticated


class AliasBackend:
    """A project's backend that also accepts "staff:<username>": an identifier the login step cannot resolve."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        from django.contrib.auth import get_user_model

        if not username or not username.startswith("staff:"):
            return None
        user = get_user_model().objects.filter(username=username.removeprefix("staff:")).first()
        return user if user is not None and user.check_password(password) else None

    def get_user(self, user_id):
        from django.contrib.auth import get_user_model

        return get_user_model().objects.filter(pk=user_id).first()


@pytest.fixture
def alias_backend(settings):
    settings.AUTHENTICATION_BACKENDS = ["tests.test_login.AliasBackend", "django.contrib.auth.backends.ModelBackend"]


def test_an_unresolved_spelling_cannot_open_a_locked_account(rf, user, now, settings, alias_backend):
    """The typed key was enforced and recorded; after authenticate() the account's own bucket must admit it too."""
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (2, 900)}
    fail(rf, user.username, now=now)
    fail(rf, user.username, now=now)
    with pytest.raises(RateLimited):
        login.password_login(make_request(rf), username=f"staff:{user.username}", password=PASSWORD, now=now)
    # Neither a failure nor a success: its rows are withdrawn.
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, f"n:staff:{user.username}", now=now) == 0
    assert ratelimit.count(EventType.LOGIN_IP, "192.0.2.10", now=now) == 2


def test_an_unresolved_spelling_logs_in_when_the_account_is_not_locked(rf, user, now, alias_backend):
    fail(rf, f"staff:{user.username}", now=now)
    fail(rf, user.username, now=now)
    step = login.password_login(make_request(rf), username=f"staff:{user.username}", password=PASSWORD, now=now)
    assert step.authenticated and step.user == user
    # Failures stay where they were recorded; the success withdrew only its own rows.
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, f"n:staff:{user.username}", now=now) == 1
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(user), now=now) == 1
    assert ratelimit.count(EventType.LOGIN_IP, "192.0.2.10", now=now) == 2


# begin_login: the contract the OIDC flow builds on.


def test_begin_login_without_two_factor_logs_in(rf, user, now):
    request = make_request(rf)
    step = login.begin_login(request, user, backend="django.contrib.auth.backends.ModelBackend", now=now)
    assert step.authenticated
    assert request.session["_auth_user_backend"] == "django.contrib.auth.backends.ModelBackend"


def test_begin_login_with_two_factor_issues_a_bound_token(rf, user, now):
    enrol_totp(user)
    request = make_request(rf)
    step = login.begin_login(request, user, backend="django.contrib.auth.backends.ModelBackend", now=now)
    assert step.status == "2fa_required" and step.methods == ["totp"]
    assert step.pre_auth.expires_in == 300
    assert "_auth_user_id" not in request.session
    assert login.peek_pending(step.pre_auth.raw, challenge=step.challenge, now=now).user == user


def test_begin_login_skip_two_factor_marks_the_session_verified(rf, user, now):
    enrol_totp(user)
    request = make_request(rf)
    step = login.begin_login(
        request, user, backend="django.contrib.auth.backends.ModelBackend", skip_two_factor=True, now=now
    )
    assert step.authenticated
    assert request.session[SESSION_KEY]["v"] is True
    assert request.two_factor_verified is True
    assert not EphemeralToken.objects.exists()


def test_begin_login_refuses_inactive_users(rf, now):
    user = UserFactory(is_active=False)
    with pytest.raises(InvalidCredentials):
        login.begin_login(make_request(rf), user, backend="django.contrib.auth.backends.ModelBackend", now=now)


def test_split_databases_take_the_unjoined_path(rf, user, now, monkeypatch):
    """With EPHEMERAL_AUTH_DATABASE the token and event tables cannot be joined with the users'."""
    monkeypatch.setattr(pending_logins, "_same_database", lambda *models: False)
    enrol_totp(user)
    fail(rf, user.username, now=now)
    step = login.password_login(make_request(rf), username=user.username, password=PASSWORD, now=now)
    assert step.status == "2fa_required" and step.methods == ["totp"]
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, acct(user), now=now) == 1
    assert ratelimit.count(EventType.LOGIN_IP, "192.0.2.10", now=now) == 1
    pending = login.peek_pending(step.pre_auth.raw, challenge=step.challenge, now=now)
    assert pending.user == user and pending.methods == ["totp"]
