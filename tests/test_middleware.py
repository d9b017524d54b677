"""TwoFactorMiddleware: sessions that skipped the second factor are anonymous."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ephemeral_auth.services import totp
from tests.factories import PASSWORD, UserFactory, enrol_totp, login_verified, totp_code

pytestmark = pytest.mark.django_db


def me(client):
    return client.get("/api/auth/me/").json()


def test_no_session_costs_nothing(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/api/auth/me/")
    assert response.json() == {"authenticated": False, "username": None, "two_factor_verified": False}


def test_admin_login_form_does_not_bypass_two_factor(client, clock):
    staff = UserFactory(is_staff=True, is_superuser=True)
    secret = enrol_totp(staff)
    response = client.post("/admin/login/?next=/admin/", {"username": staff.username, "password": PASSWORD})
    # The admin's login is the 2FA-aware one: on to the second factor, nobody logged in yet.
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/verify/?next=%2Fadmin%2F"
    assert "_auth_user_id" not in client.session
    admin = client.get("/admin/")
    assert admin.status_code == 302 and admin["Location"].startswith("/admin/login/")
    assert me(client) == {"authenticated": False, "username": None, "two_factor_verified": False}
    # The second factor leads back to the admin.
    code = totp_code(secret, clock.now)
    done = client.post("/accounts/2fa/verify/?next=/admin/", {"method": "totp", "code": code, "next": "/admin/"})
    assert done.status_code == 302 and done["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200


def test_a_login_call_that_skipped_two_factor_is_anonymous(client, clock):
    """Django's own login form (an admin site left unsecured, a site's LoginView) cannot bypass 2FA."""
    staff = UserFactory(is_staff=True, is_superuser=True)
    enrol_totp(staff)
    client.force_login(staff)  # what any login() call outside the 2FA-aware flows leaves behind
    assert client.session["_auth_user_id"] == str(staff.pk)
    admin = client.get("/admin/")
    assert admin.status_code == 302 and admin["Location"].startswith("/admin/login/")
    assert me(client) == {"authenticated": False, "username": None, "two_factor_verified": False}


def test_any_login_call_without_two_factor_is_anonymous(client, totp_user, clock):
    user, _ = totp_user
    client.force_login(user)
    assert me(client)["authenticated"] is False
    assert client.get("/api/auth/2fa/").status_code == 401


def test_verified_session_is_authenticated(client, totp_user, clock):
    user, _ = totp_user
    login_verified(client, user)
    assert me(client) == {"authenticated": True, "username": user.username, "two_factor_verified": True}


def test_user_without_two_factor_is_authenticated_but_not_verified(client, user, clock):
    client.force_login(user)
    assert me(client) == {"authenticated": True, "username": user.username, "two_factor_verified": False}


def test_cached_state_costs_no_extra_query(client, user, clock):
    client.post("/api/auth/login/", {"username": user.username, "password": PASSWORD}, content_type="application/json")
    me(client)
    with CaptureQueriesContext(connection) as ctx:
        me(client)
    tables = " ".join(q["sql"] for q in ctx.captured_queries)
    assert "usertwofactor" not in tables.lower()
    assert len(ctx.captured_queries) == 2  # the session and the user, as without the middleware


def test_enabling_two_factor_later_forces_verification(client, user, clock, settings):
    client.force_login(user)
    assert me(client)["authenticated"] is True
    enrol_totp(user)  # from another session, say
    assert me(client)["authenticated"] is True  # within TWO_FACTOR_STATE_MAX_AGE the cached state holds
    clock.advance(61)
    assert me(client)["authenticated"] is False


def test_max_age_zero_rechecks_every_request(client, user, clock, settings):
    settings.EPHEMERAL_AUTH_TWO_FACTOR_STATE_MAX_AGE = 0
    client.force_login(user)
    assert me(client)["authenticated"] is True
    enrol_totp(user)
    assert me(client)["authenticated"] is False


def test_replacing_the_authenticator_ends_other_verified_sessions(user, clock):
    old = enrol_totp(user)
    phone, laptop = Client(), Client()
    login_verified(phone, user)
    login_verified(laptop, user)
    setup = phone.post("/api/auth/2fa/totp/setup/", {"code": totp_code(old, clock.now)},
                       content_type="application/json").json()
    clock.advance(30)
    confirmed = phone.post("/api/auth/2fa/totp/confirm/", {"code": totp_code(setup["secret"], clock.now)},
                           content_type="application/json")
    assert confirmed.status_code == 200
    clock.advance(61)
    assert me(phone)["two_factor_verified"] is True  # the session that enrolled it stays verified
    assert me(laptop)["authenticated"] is False
    assert totp.pending_setup(user) is None


def test_mark_of_another_user_does_not_count(client, clock):
    first = UserFactory()
    enrol_totp(first)
    second = UserFactory()
    enrol_totp(second)
    login_verified(client, first)
    session = client.session
    mark = session["_ephemeral_auth_2fa"]
    client.force_login(second)  # a different user: Django flushes the session
    session = client.session
    session["_ephemeral_auth_2fa"] = mark  # a stale mark of the first user
    session.save()
    assert me(client)["authenticated"] is False


# REQUIRE_2FA_FOR_STAFF


@pytest.fixture
def staff_client(client, clock, settings):
    settings.EPHEMERAL_AUTH_REQUIRE_2FA_FOR_STAFF = True
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    return client


def test_staff_without_two_factor_are_sent_to_enrolment(staff_client):
    response = staff_client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/totp/setup/?next=%2Fadmin%2F"


def test_staff_json_requests_get_403(staff_client):
    response = staff_client.get("/", HTTP_ACCEPT="application/json")
    assert response.status_code == 403
    assert response.json()["error"] == "two_factor_enrolment_required"


def test_staff_can_reach_the_enrolment_pages(staff_client):
    assert staff_client.get("/accounts/2fa/totp/setup/").status_code == 200
    assert staff_client.get("/api/auth/me/").status_code == 200
    assert staff_client.post("/api/auth/2fa/totp/setup/", content_type="application/json").status_code == 200


def test_staff_with_two_factor_and_other_users_pass(client, clock, settings):
    settings.EPHEMERAL_AUTH_REQUIRE_2FA_FOR_STAFF = True
    staff = UserFactory(is_staff=True, is_superuser=True)
    enrol_totp(staff)
    login_verified(client, staff)
    assert client.get("/admin/").status_code == 200
    plain = Client()
    plain.force_login(UserFactory())
    assert plain.get("/").status_code == 200


# Fail closed when the database is down (the e2e outage test proves it under gunicorn).


def test_a_database_error_while_reading_the_session_is_a_503_not_a_500(client, user, monkeypatch):
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import OperationalError

    client.force_login(user)

    def down(self, *args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(SessionStore, "load", down)
    response = client.get("/api/auth/me/")
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    assert "Traceback" not in response.content.decode()
    page = client.get("/accounts/login/")
    assert page.status_code == 503 and b"temporarily unavailable" in page.content
