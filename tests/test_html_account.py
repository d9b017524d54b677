"""The HTML login and logout pages, and the example project's home page."""

from __future__ import annotations

import pytest
from django.test import Client

from ephemeral_auth.exceptions import RateLimited
from ephemeral_auth.views.responses import error_message, wait_message
from tests.factories import PASSWORD, UserFactory, enrol_totp, shown_errors

pytestmark = pytest.mark.django_db




def test_login_page_renders(client):
    response = client.get("/accounts/login/?next=/files/")
    assert response.status_code == 200
    assert b'name="username"' in response.content and b'name="password"' in response.content
    assert b'value="/files/"' in response.content
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_login_without_two_factor_redirects_to_next(client, user):
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD, "next": "/files/"})
    assert response.status_code == 302 and response["Location"] == "/files/"
    assert client.session["_auth_user_id"] == str(user.pk)


def test_login_refuses_offsite_next(client, user):
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD,
                                                "next": "https://evil.example/"})
    assert response["Location"] == "/"


def test_login_with_two_factor_continues_to_the_verify_page(client, user):
    enrol_totp(user)
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD, "next": "/files/"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/verify/?next=%2Ffiles%2F"
    for name in ("ephemeral_auth_challenge", "ephemeral_auth_pending"):
        cookie = response.cookies[name]
        assert cookie["httponly"] and cookie["samesite"] == "Lax" and int(cookie["max-age"]) == 300
    assert "_auth_user_id" not in client.session
    assert "pre_auth" not in response["Location"]  # the token never travels in the URL


def test_wrong_password_shows_the_error(client, user):
    response = client.post("/accounts/login/", {"username": user.username, "password": "nope"})
    assert response.status_code == 400
    assert shown_errors(response) == ["Incorrect username or password."]


def test_rate_limited_login_page_answers_429(client, user, clock):
    for _ in range(10):
        client.post("/accounts/login/", {"username": user.username, "password": "nope"})
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 429 and response["Retry-After"] == "900"
    assert shown_errors(response) == ["Too many attempts. Try again in 15 minutes."]


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (1, "Try again in 1 second."),
        (45, "Try again in 45 seconds."),
        (119, "Try again in 119 seconds."),
        (120, "Try again in 2 minutes."),
        (121, "Try again in 3 minutes."),
        (900, "Try again in 15 minutes."),
    ],
)
def test_the_wait_is_said_in_seconds_or_whole_minutes(seconds, text):
    assert wait_message(seconds) == text


def test_a_rate_limit_message_replaces_try_again_later_by_the_wait():
    assert error_message(RateLimited(retry_after=60)) == "Too many attempts. Try again in 60 seconds."
    assert error_message(RateLimited("Slow down.", retry_after=600)) == "Slow down. Try again in 10 minutes."


@pytest.mark.parametrize(
    "data", [{}, {"username": "a\x00b", "password": "x"}, {"username": "x" * 300, "password": "y"}]
)
def test_malformed_login_form(client, data):
    response = client.post("/accounts/login/", data)
    assert response.status_code == 400
    assert shown_errors(response)  # every refusal says why


def test_an_empty_login_form_names_the_missing_fields(client):
    response = client.post("/accounts/login/", {"username": "", "password": ""})
    assert shown_errors(response) == ["This field is required.", "This field is required."]


def test_login_page_needs_csrf():
    client = Client(enforce_csrf_checks=True)
    assert client.post("/accounts/login/", {"username": "x", "password": "y"}).status_code == 403


def test_logout_asks_then_logs_out(client, user):
    client.force_login(user)
    page = client.get("/accounts/logout/")
    assert page.status_code == 200 and b"<form" in page.content
    assert client.session["_auth_user_id"]  # GET does not log out
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/"
    assert "_auth_user_id" not in client.session


def test_home_page_links_every_account_page(client, user):
    anonymous = client.get("/")
    assert b"/accounts/login/" in anonymous.content
    client.force_login(user)
    page = client.get("/").content.decode()
    for url in ("/accounts/2fa/", "/accounts/2fa/totp/setup/", "/accounts/2fa/email/enable/",
                "/accounts/2fa/recovery-codes/", "/accounts/logout/"):
        assert url in page


def test_templates_are_overridable(client, settings, tmp_path):
    (tmp_path / "ephemeral_auth").mkdir()
    (tmp_path / "ephemeral_auth" / "login.html").write_text("custom login {{ form.username }}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path, *settings.TEMPLATES[0]["DIRS"]]}]
    assert client.get("/accounts/login/").content.startswith(b"custom login")


def test_inactive_user(client):
    user = UserFactory(is_active=False)
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 400
    assert shown_errors(response) == ["Incorrect username or password."]
