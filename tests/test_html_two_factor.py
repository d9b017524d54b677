"""The HTML two-factor pages: the verify step and self-service enrolment."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from ephemeral_auth.models import EphemeralToken, UserTwoFactor
from ephemeral_auth.services import recovery
from tests.factories import PASSWORD, UserFactory, enable_email_codes, enrol_totp, login_verified, totp_code

pytestmark = pytest.mark.django_db


def password_step(client, user, next_url="/"):
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD, "next": next_url})
    assert response.status_code == 302 and response["Location"].startswith("/accounts/2fa/verify/")
    return response["Location"]


def test_verify_page_lists_the_methods(client, user, clock):
    enrol_totp(user)
    enable_email_codes(user)
    recovery.generate(user)
    page = client.get(password_step(client, user)).content.decode()
    for method in ("totp", "email", "recovery"):
        assert f'value="{method}"' in page
    assert 'value="send_email"' in page


def test_totp_through_the_pages(client, user, clock):
    secret = enrol_totp(user)
    verify_url = password_step(client, user, "/files/")
    response = client.post(verify_url, {"method": "totp", "code": totp_code(secret, clock.now), "next": "/files/"})
    assert response.status_code == 302 and response["Location"] == "/files/"
    assert client.session["_auth_user_id"] == str(user.pk)
    assert response.cookies["ephemeral_auth_pending"]["max-age"] == 0
    assert response.cookies["ephemeral_auth_challenge"]["max-age"] == 0
    assert client.get("/api/auth/me/").json()["two_factor_verified"] is True


def test_wrong_code_stays_on_the_page(client, user, clock):
    secret = enrol_totp(user)
    verify_url = password_step(client, user)
    good = totp_code(secret, clock.now)
    response = client.post(verify_url, {"method": "totp", "code": "000000" if good != "000000" else "111111"})
    assert response.status_code == 400
    assert b"The code is invalid or has expired." in response.content
    assert client.post(verify_url, {"method": "totp", "code": good}).status_code == 302


def test_email_code_through_the_pages(client, user, clock):
    enable_email_codes(user)
    verify_url = password_step(client, user)
    sent = client.post(verify_url, {"action": "send_email"})
    assert sent.status_code == 200 and b"We sent a code" in sent.content
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    assert client.post(verify_url, {"method": "email", "code": code}).status_code == 302


def test_verify_page_without_a_pending_login_goes_back_to_login(client):
    response = client.get("/accounts/2fa/verify/?next=/files/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=%2Ffiles%2F"


def test_verify_page_in_another_browser_fails(user, clock):
    enrol_totp(user)
    first = Client()
    password_step(first, user)
    thief = Client()
    thief.cookies["ephemeral_auth_pending"] = first.cookies["ephemeral_auth_pending"].value
    assert thief.get("/accounts/2fa/verify/").status_code == 302  # no challenge cookie
    assert EphemeralToken.objects.count() == 1


def test_verify_page_rate_limit_is_429(client, user, clock):
    secret = enrol_totp(user)
    verify_url = password_step(client, user)
    good = totp_code(secret, clock.now)
    for _ in range(5):
        client.post(verify_url, {"method": "totp", "code": "000000" if good != "000000" else "111111"})
    response = client.post(verify_url, {"method": "totp", "code": good})
    assert response.status_code == 429 and "Retry-After" in response


def test_enrol_totp_through_the_pages(client, user, clock):
    client.force_login(user)
    start = client.get("/accounts/2fa/totp/setup/")
    assert start.status_code == 200 and b'value="start"' in start.content
    assert client.post("/accounts/2fa/totp/setup/", {"action": "start"}).status_code == 302
    page = client.get("/accounts/2fa/totp/setup/").content.decode()
    assert "<svg" in page
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    done = client.post("/accounts/2fa/totp/setup/", {"action": "confirm", "code": totp_code(secret, clock.now)})
    assert done.status_code == 200
    codes = re.findall(r"<code>([A-Z0-9]{5}-[A-Z0-9]{5})</code>", done.content.decode())
    assert len(codes) == 10
    assert UserTwoFactor.objects.get(user=user).totp_enabled
    overview = client.get("/accounts/2fa/")  # this session enrolled it: still signed in
    assert overview.status_code == 200 and b"10 codes left" in overview.content


def test_replacing_needs_a_code_on_the_page(client, user, clock):
    secret = enrol_totp(user)
    login_verified(client, user)
    refused = client.post("/accounts/2fa/totp/setup/", {"action": "start"})
    assert refused.status_code == 400
    ok = client.post("/accounts/2fa/totp/setup/", {"action": "start", "code": totp_code(secret, clock.now)})
    assert ok.status_code == 302


def test_account_pages_need_login(client):
    for url in ("/accounts/2fa/", "/accounts/2fa/totp/setup/", "/accounts/2fa/recovery-codes/",
                "/accounts/2fa/email/enable/", "/accounts/2fa/totp/disable/", "/accounts/2fa/email/disable/"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=")


def test_disable_totp_page(client, user, clock):
    secret = enrol_totp(user)
    login_verified(client, user)
    assert client.post("/accounts/2fa/totp/disable/", {"code": "1"}).status_code == 400
    response = client.post("/accounts/2fa/totp/disable/", {"code": totp_code(secret, clock.now)})
    assert response.status_code == 302 and response["Location"] == "/accounts/2fa/"
    assert not UserTwoFactor.objects.get(user=user).totp_enabled


def test_recovery_codes_page(client, user, clock):
    secret = enrol_totp(user)
    recovery.generate(user)
    login_verified(client, user)
    assert b"10 codes left" in client.get("/accounts/2fa/recovery-codes/").content
    response = client.post("/accounts/2fa/recovery-codes/", {"code": totp_code(secret, clock.now)})
    assert len(re.findall(r"<code>[A-Z0-9]{5}-[A-Z0-9]{5}</code>", response.content.decode())) == 10


def test_email_enrolment_pages(client, user, clock):
    client.force_login(user)
    assert user.email.encode() in client.get("/accounts/2fa/email/enable/").content
    confirm = client.post("/accounts/2fa/email/enable/")
    assert confirm.status_code == 200
    setup_token = re.search(r'name="setup_token" value="([^"]+)"', confirm.content.decode()).group(1)
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    done = client.post("/accounts/2fa/email/confirm/", {"setup_token": setup_token, "code": code})
    assert done.status_code == 200 and b"<code>" in done.content  # first factor: recovery codes
    assert UserTwoFactor.objects.get(user=user).email_enabled
    disable = client.post("/accounts/2fa/email/disable/", {"password": PASSWORD})
    assert disable.status_code == 302
    assert not UserTwoFactor.objects.get(user=user).email_enabled


def test_email_enable_without_address(client):
    user = UserFactory(email="")
    client.force_login(user)
    assert b"Add an email address" in client.get("/accounts/2fa/email/enable/").content
    assert client.post("/accounts/2fa/email/enable/").status_code == 400
