"""EPHEMERAL_AUTH_DATABASE: the token and event tables on a database of their own.

tests/settings.py always defines a second database, "ephemeral", and lists the
router; these tests turn routing on with EPHEMERAL_AUTH_DATABASE = "ephemeral".
"""

from __future__ import annotations

import copy
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections, router
from django.db.utils import load_backend

from ephemeral_auth.models import (
    EphemeralToken,
    EventType,
    OIDCIdentity,
    RateLimitEvent,
    RecoveryCode,
    TokenType,
    UserTwoFactor,
)
from ephemeral_auth.routers import EphemeralAuthRouter
from ephemeral_auth.services import cleanup, ratelimit, tokens
from tests.factories import PASSWORD, UserFactory, totp_code

pytestmark = pytest.mark.django_db(databases=["default", "ephemeral"])

ROUTED_TABLES = {"auth_ephemeral_tokens", "auth_rate_limit_events"}


@pytest.fixture
def routed(settings):
    settings.EPHEMERAL_AUTH_DATABASE = "ephemeral"
    return "ephemeral"


def on(alias, model):
    return model._default_manager.using(alias)


# The router.


def test_router_has_no_opinion_while_the_setting_is_unset():
    r = EphemeralAuthRouter()
    assert r.db_for_write(EphemeralToken) is None
    assert r.db_for_read(RateLimitEvent) is None
    assert r.allow_migrate("ephemeral", "auth", "user") is None
    assert r.allow_migrate("default", "ephemeral_auth", "ephemeraltoken") is None


def test_router_sends_only_the_two_high_churn_tables(routed):
    assert router.db_for_write(EphemeralToken) == "ephemeral"
    assert router.db_for_read(RateLimitEvent) == "ephemeral"
    for model in (UserTwoFactor, RecoveryCode, OIDCIdentity, get_user_model()):
        assert router.db_for_write(model) == "default"


def test_router_migrates_each_table_on_one_side(routed):
    r = EphemeralAuthRouter()
    assert r.allow_migrate("ephemeral", "ephemeral_auth", "ephemeraltoken") is True
    assert r.allow_migrate("ephemeral", "ephemeral_auth", "ratelimitevent") is True
    assert r.allow_migrate("default", "ephemeral_auth", "ephemeraltoken") is False
    assert r.allow_migrate("default", "ephemeral_auth", "ratelimitevent") is False
    # The 2FA tables stay with the users; nothing else goes to the routed database.
    for app_label, model_name in [("ephemeral_auth", "usertwofactor"), ("ephemeral_auth", "recoverycode"),
                                  ("ephemeral_auth", "oidcidentity"), ("auth", "user"),
                                  ("contenttypes", "contenttype"), ("sessions", "session"),
                                  ("ephemeral_auth", None)]:
        assert r.allow_migrate("ephemeral", app_label, model_name) is False
        assert r.allow_migrate("default", app_label, model_name) is None


def test_router_allows_a_token_to_point_at_a_user_on_another_database(routed, user):
    assert router.allow_relation(EphemeralToken(), user) is True
    assert router.allow_relation(user, RateLimitEvent()) is True
    assert EphemeralAuthRouter().allow_relation(UserTwoFactor(), user) is None


# Tokens and events live on the routed database only.


def test_issue_peek_consume_revoke_on_the_routed_database(routed, user, now):
    issued = tokens.issue_password_reset(user, now=now)
    assert on("ephemeral", EphemeralToken).filter(user_id=user.pk).count() == 1
    assert not on("default", EphemeralToken).exists()
    peeked = tokens.peek_token(issued.raw, TokenType.PASSWORD_RESET, now=now)
    assert peeked is not None and peeked.user_id == user.pk
    assert peeked._state.db == "ephemeral"
    assert peeked.user == user  # the relation resolves on the user's database
    consumed = tokens.consume_token(issued.raw, TokenType.PASSWORD_RESET, now=now)
    assert consumed.user_id == user.pk
    assert not on("ephemeral", EphemeralToken).exists()
    tokens.issue_password_reset(user, now=now)
    tokens.issue_download(user, resource="r", now=now)
    assert tokens.revoke_tokens(user=user) == 2
    assert not on("ephemeral", EphemeralToken).exists()
    assert not on("default", EphemeralToken).exists()


def test_rate_limit_events_on_the_routed_database(routed, now):
    ratelimit.attempt(EventType.LOGIN_ATTEMPT, "alice", now=now)
    assert on("ephemeral", RateLimitEvent).filter(key="alice").count() == 1
    assert not on("default", RateLimitEvent).exists()
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, "alice", now=now) == 1
    assert ratelimit.clear(EventType.LOGIN_ATTEMPT, "alice") == 1
    assert not on("ephemeral", RateLimitEvent).exists()


def test_totp_login_over_json_with_the_routed_tables(routed, client, totp_user, clock):
    user, secret = totp_user
    response = client.post(
        "/api/auth/login/",
        {"username": user.get_username(), "password": PASSWORD},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "2fa_required"
    assert on("ephemeral", EphemeralToken).filter(user_id=user.pk, token_type=TokenType.PRE_AUTH).count() == 1
    assert not on("default", EphemeralToken).exists()
    response = client.post(
        "/api/auth/2fa/verify/",
        {"pre_auth_token": body["pre_auth_token"], "method": "totp", "code": totp_code(secret, clock.now)},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "authenticated"
    assert client.session["_auth_user_id"] == str(user.pk)
    assert not on("ephemeral", EphemeralToken).exists()


def test_failed_logins_are_counted_on_the_routed_database(routed, client, user):
    response = client.post(
        "/api/auth/login/", {"username": user.get_username(), "password": "wrong"}, content_type="application/json"
    )
    assert response.status_code in (400, 401), response.content
    assert on("ephemeral", RateLimitEvent).filter(event_type=EventType.LOGIN_ATTEMPT).count() == 1
    assert not on("default", RateLimitEvent).exists()


def test_deleting_a_user_deletes_their_tokens_on_the_routed_database(routed, user, other_user, now):
    tokens.issue_password_reset(user, now=now)
    tokens.issue_download(user, resource="r", now=now)
    kept = tokens.issue_password_reset(other_user, now=now)
    user.delete()
    assert list(on("ephemeral", EphemeralToken).values_list("pk", flat=True)) == [kept.token.pk]
    assert not get_user_model().objects.filter(pk=user.pk).exists()


def test_bulk_user_deletion_deletes_their_tokens_too(routed, now):
    users = UserFactory.create_batch(2)
    for u in users:
        tokens.issue_password_reset(u, now=now)
    get_user_model().objects.filter(pk__in=[u.pk for u in users]).delete()
    assert not on("ephemeral", EphemeralToken).exists()


def test_purge_on_the_routed_database(routed, user, now):
    tokens.issue_password_reset(user, now=now - timedelta(days=2))
    live = tokens.issue_password_reset(user, now=now)
    ratelimit.attempt(EventType.LOGIN_IP, "192.0.2.1", now=now - timedelta(days=30))
    result = cleanup.purge_expired(now=now)
    assert result.total >= 2
    assert list(on("ephemeral", EphemeralToken).values_list("pk", flat=True)) == [live.token.pk]
    assert not on("ephemeral", RateLimitEvent).exists()


# Migrations.


# SQLite's schema editor refuses to run inside the test's transaction.
@pytest.mark.django_db(databases=["default", "ephemeral"], transaction=True)
def test_sqlmigrate_on_the_routed_database_creates_only_the_two_tables(routed):
    out = StringIO()
    call_command("sqlmigrate", "ephemeral_auth", "0001", database="ephemeral", stdout=out)
    sql = out.getvalue().lower()
    for table in ROUTED_TABLES:
        assert f"create table {connections['ephemeral'].ops.quote_name(table).lower()}" in sql
    for table in ("ephemeral_auth_usertwofactor", "ephemeral_auth_recoverycode", "ephemeral_auth_oidcidentity"):
        assert table not in sql
    # No foreign key to a user table that does not exist on this database.
    assert "references" not in sql
    out = StringIO()
    call_command("sqlmigrate", "auth", "0001", database="ephemeral", stdout=out)
    assert "create table" not in out.getvalue().lower()


@pytest.fixture
def fresh_alias(settings, tmp_path):
    """A brand-new, empty SQLite database reachable as connections["fresh"]."""
    config = copy.deepcopy(connections.settings["default"])
    config.update(ENGINE="django.db.backends.sqlite3", NAME=str(tmp_path / "fresh.sqlite3"),
                  USER="", PASSWORD="", HOST="", PORT="", OPTIONS={}, TEST={})
    # Registered as a connection only (not in DATABASES): Django's test case lets
    # such dynamically created connections through.
    connections["fresh"] = load_backend(config["ENGINE"]).DatabaseWrapper(config, "fresh")
    settings.EPHEMERAL_AUTH_DATABASE = "fresh"
    yield "fresh"
    connections["fresh"].close()
    del connections["fresh"]


def test_migrate_on_the_routed_database_creates_only_the_two_tables(fresh_alias):
    # Checks are skipped: "fresh" is not in settings.DATABASES (E009 would say so).
    call_command("migrate", database=fresh_alias, verbosity=0, skip_checks=True)
    connection = connections[fresh_alias]
    tables = set(connection.introspection.table_names())
    assert tables - {"django_migrations"} == ROUTED_TABLES
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "auth_ephemeral_tokens")
    assert not [name for name, c in constraints.items() if c["foreign_key"]]


# The admin never joins across the two databases.


def test_token_admin_works_with_the_routed_table(routed, admin_client, user, now):
    from django.urls import reverse

    tokens.issue_password_reset(user, now=now)
    url = reverse("admin:ephemeral_auth_ephemeraltoken_changelist")
    response = admin_client.get(url)
    assert response.status_code == 200
    assert user.get_username() in response.content.decode()
    assert admin_client.get(url, {"q": "x"}).status_code == 200
    token = on("ephemeral", EphemeralToken).get()
    change = reverse("admin:ephemeral_auth_ephemeraltoken_change", args=[token.pk])
    assert admin_client.get(change).status_code == 200


def test_token_admin_joins_the_user_on_a_shared_database(user, admin_client):
    from django.contrib import admin as django_admin

    model_admin = django_admin.site._registry[EphemeralToken]
    assert model_admin.get_list_select_related(None) == ("user",)


def test_password_reset_confirm_with_the_routed_table(routed, user, now):
    from ephemeral_auth.services import passwords

    issued = tokens.issue_password_reset(user, now=now)
    passwords.confirm_reset(issued.raw, "a-new-Passw0rd-that-is-long", now=now)
    user.refresh_from_db()
    assert user.check_password("a-new-Passw0rd-that-is-long")
    assert not on("ephemeral", EphemeralToken).exists()


def test_resetting_two_factor_revokes_pending_logins_on_the_routed_table(routed, totp_user, now):
    from ephemeral_auth.services import two_factor

    user, _secret = totp_user
    tokens.issue_pre_auth(user, challenge="c", methods=["totp"], now=now)
    two_factor.reset_two_factor(user)
    assert not on("ephemeral", EphemeralToken).filter(user_id=user.pk).exists()
    assert not UserTwoFactor.objects.filter(user=user).exists() or not UserTwoFactor.objects.get(user=user).totp_enabled
