"""Reset links die when the account's email address changes or the account is deactivated.

As Django's own reset tokens do (their hash covers the email), and as the
links already die on a password change (tests/test_passwords.py). Through the
JSON endpoint and through the model's ``save()``.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import update_last_login
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ephemeral_auth.models import EphemeralToken, TokenType
from ephemeral_auth.services import tokens
from tests.test_passwords_api import CONFIRM_URL, NEW_PASSWORD, post_json

pytestmark = pytest.mark.django_db


def issue(user) -> str:
    return tokens.issue_password_reset(user).raw


def live_reset_tokens(user) -> int:
    return EphemeralToken.objects.filter(user=user, token_type=TokenType.PASSWORD_RESET).count()


def confirm(client, raw: str):
    return post_json(client, CONFIRM_URL, {"token": raw, "new_password": NEW_PASSWORD})


def assert_refused(client, user, raw: str) -> None:
    response = confirm(client, raw)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    user.refresh_from_db()
    assert not user.check_password(NEW_PASSWORD)


def user_selects(captured) -> list[str]:
    table = get_user_model()._meta.db_table
    return [q["sql"] for q in captured.captured_queries if q["sql"].startswith("SELECT") and table in q["sql"]]


# Through the JSON endpoint.


@pytest.mark.parametrize("new_email", ["someone.else@example.com", "USER@EXAMPLE.COM", ""])
def test_an_email_change_kills_the_link(client, user, new_email):
    raw = issue(user)
    user.email = new_email
    user.save()
    assert live_reset_tokens(user) == 0
    assert_refused(client, user, raw)


def test_an_email_change_through_update_fields_kills_the_link(client, user):
    raw = issue(user)
    user.email = "moved@example.com"
    user.save(update_fields=["email"])
    assert_refused(client, user, raw)


def test_deactivation_kills_the_link(client, user):
    raw = issue(user)
    user.is_active = False
    user.save()
    assert live_reset_tokens(user) == 0
    assert_refused(client, user, raw)


@pytest.mark.parametrize("update_fields", [None, ["is_active"]])
def test_a_reactivated_users_old_link_stays_dead(client, user, update_fields):
    raw = issue(user)
    user.is_active = False
    user.save(update_fields=update_fields)
    user.is_active = True
    user.save(update_fields=update_fields)
    assert_refused(client, user, raw)
    # A link asked for after the reactivation works.
    fresh = issue(user)
    assert confirm(client, fresh).status_code == 200


def test_a_link_issued_while_inactive_dies_at_reactivation(client, user):
    # An inactive user gets no link (eligible_users), but a job that read the
    # user just before the deactivation may still write one.
    user.is_active = False
    user.save()
    raw = issue(user)
    user.is_active = True
    user.save()
    assert_refused(client, user, raw)


def test_a_save_that_changes_neither_keeps_the_link(client, user):
    raw = issue(user)
    user.first_name = "Alice"
    user.save()
    user.email = user.email  # same value
    user.is_active = True
    user.save(update_fields=["email", "is_active", "first_name"])
    update_last_login(None, user)
    assert live_reset_tokens(user) == 1
    assert confirm(client, raw).status_code == 200


# Through the model: what each save costs.


def test_a_full_save_reads_password_email_and_is_active_in_one_select(user):
    issue(user)
    user.email = "moved@example.com"
    with CaptureQueriesContext(connection) as captured:
        user.save()
    (select,) = user_selects(captured)
    assert "password" in select and "email" in select and "is_active" in select
    assert len(captured.captured_queries) == 3  # the SELECT, the UPDATE, the revocation
    assert live_reset_tokens(user) == 0


def test_a_save_that_changes_nothing_costs_one_select(user, django_assert_num_queries):
    issue(user)
    user.last_name = "Smith"
    with django_assert_num_queries(2):  # the SELECT of the stored row, the UPDATE; no revocation
        user.save()
    assert live_reset_tokens(user) == 1


def test_update_fields_without_the_watched_fields_is_free(user, django_assert_num_queries):
    issue(user)
    user.email = "not.saved@example.com"  # changed in memory, but not written by this save
    user.is_active = False
    with django_assert_num_queries(1):  # the UPDATE only
        user.save(update_fields=["first_name", "last_login"])
    assert live_reset_tokens(user) == 1


def test_a_partly_loaded_user_is_compared_on_its_loaded_fields_only(user, django_assert_num_queries):
    issue(user)
    partial = get_user_model().objects.only("username").get(pk=user.pk)
    partial.username = "renamed"
    with django_assert_num_queries(1):  # deferred fields are not written: nothing to compare
        partial.save()
    assert live_reset_tokens(user) == 1


def test_set_password_with_an_email_change_needs_no_select(user, django_assert_num_queries):
    issue(user)
    user.set_password("another fine passphrase")
    user.email = "moved@example.com"
    with django_assert_num_queries(2):  # the UPDATE and the revocation
        user.save()
    assert live_reset_tokens(user) == 0


def test_the_change_is_noted_per_save(user):
    issue(user)
    user.email = "moved@example.com"
    user.save()
    fresh = issue(user)
    user.first_name = "Alice"
    user.save()  # the earlier change must not count again
    assert tokens.peek_token(fresh, TokenType.PASSWORD_RESET) is not None
