"""The HTML two-factor pages: the verify step and self-service enrolment."""

from __future__ import annotations

import html
import re

import pytest
from django.core import mail
from django.test import Client

from ephemeral_auth.models import EphemeralToken, RecoveryCode, UserTwoFactor
from ephemeral_auth.services import recovery
from tests.factories import (
    PASSWORD,
    UserFactory,
    enable_email_codes,
    enrol_totp,
    login_verified,
    shown_errors,
    totp_code,
)

pytestmark = pytest.mark.django_db




def shown_messages(response) -> list[str]:
    """The texts of the messages framework a page shows (``<ul class="messages">``)."""
    page = response.content.decode()
    return [html.unescape(re.sub(r"<[^>]+>", "", m)).strip() for m in re.findall(r'<li[^>]*>(.*?)</li>', "".join(
        re.findall(r'<ul class="messages">(.*?)</ul>', page, re.S)), re.S)]


def wrong(code):
    return "000000" if code != "000000" else "111111"


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
    assert shown_errors(response) == ["The code is invalid or has expired."]
    assert client.post(verify_url, {"method": "totp", "code": good}).status_code == 302


def test_an_empty_code_on_the_verify_page_says_so(client, user, clock):
    enrol_totp(user)
    response = client.post(password_step(client, user), {"method": "totp", "code": ""})
    assert response.status_code == 400
    assert shown_errors(response) == ["This field is required."]


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
    minutes = -(-int(response["Retry-After"]) // 60)
    assert shown_errors(response) == [f"Too many attempts. Try again in {minutes} minutes."]


def test_the_verify_page_says_how_long_to_wait_for_another_email(client, user, clock):
    enable_email_codes(user)
    verify_url = password_step(client, user)
    answers = [client.post(verify_url, {"action": "send_email"}) for _ in range(6)]
    refused = answers[-1]
    assert refused.status_code == 429
    minutes = -(-int(refused["Retry-After"]) // 60)
    assert shown_errors(refused) == [f"Too many attempts. Try again in {minutes} minutes."]


def sign_in_with_a_recovery_code(client, user, code):
    verify_url = password_step(client, user, "/")
    response = client.post(verify_url, {"method": "recovery", "code": code}, follow=True)
    assert response.redirect_chain[0] == ("/", 302)
    return response


def test_a_recovery_code_login_says_how_many_codes_are_left(client, user, clock):
    enrol_totp(user)
    codes = recovery.generate(user)
    page = sign_in_with_a_recovery_code(client, user, codes[0])
    assert shown_messages(page) == ["You used a recovery code; 9 codes are left."]
    assert client.get("/").status_code == 200 and shown_messages(client.get("/")) == []  # said once


def test_a_recovery_code_login_warns_when_few_are_left(client, user, clock, settings):
    settings.EPHEMERAL_AUTH_RECOVERY_CODE_COUNT = 4
    enrol_totp(user)
    codes = recovery.generate(user)
    page = sign_in_with_a_recovery_code(client, user, codes[0])
    assert shown_messages(page) == [
        "You used a recovery code; 3 codes are left. Get new recovery codes soon, in your two-factor settings."
    ]
    assert RecoveryCode.objects.filter(user=user).count() == 3


def test_a_totp_login_says_nothing_about_recovery_codes(client, user, clock):
    secret = enrol_totp(user)
    recovery.generate(user)
    verify_url = password_step(client, user, "/")
    page = client.post(verify_url, {"method": "totp", "code": totp_code(secret, clock.now)}, follow=True)
    assert page.redirect_chain and shown_messages(page) == []


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


def test_a_wrong_enrolment_code_is_shown_on_the_page(client, user, clock):
    client.force_login(user)
    client.post("/accounts/2fa/totp/setup/", {"action": "start"})
    page = client.get("/accounts/2fa/totp/setup/").content.decode()
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    code = wrong(totp_code(secret, clock.now))
    response = client.post("/accounts/2fa/totp/setup/", {"action": "confirm", "code": code})
    assert response.status_code == 400
    assert shown_errors(response) == ["The code is invalid or has expired."]
    assert 'value="confirm"' in response.content.decode()  # still the confirm form, with the secret
    assert secret in response.content.decode()
    empty = client.post("/accounts/2fa/totp/setup/", {"action": "confirm", "code": ""})
    assert empty.status_code == 400 and shown_errors(empty) == ["This field is required."]
    assert not UserTwoFactor.objects.get(user=user).totp_enabled


def test_the_enrolment_page_says_how_long_to_wait(client, user, clock):
    client.force_login(user)
    client.post("/accounts/2fa/totp/setup/", {"action": "start"})
    page = client.get("/accounts/2fa/totp/setup/").content.decode()
    code = wrong(totp_code(re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1), clock.now))
    answers = [client.post("/accounts/2fa/totp/setup/", {"action": "confirm", "code": code}) for _ in range(12)]
    refused = [a for a in answers if a.status_code == 429]
    assert refused, [a.status_code for a in answers]
    minutes = -(-int(refused[0]["Retry-After"]) // 60)
    assert shown_errors(refused[0]) == [f"Too many attempts. Try again in {minutes} minutes."]


def test_replacing_needs_a_code_on_the_page(client, user, clock):
    secret = enrol_totp(user)
    login_verified(client, user)
    refused = client.post("/accounts/2fa/totp/setup/", {"action": "start"})
    assert refused.status_code == 400
    assert shown_errors(refused) == ["Enter a code from your current authenticator (or a recovery code) to replace it."]
    code = wrong(totp_code(secret, clock.now))
    wrong_code = client.post("/accounts/2fa/totp/setup/", {"action": "start", "code": code})
    assert wrong_code.status_code == 400
    assert shown_errors(wrong_code) == ["The code is invalid or has expired."]
    assert 'value="start"' in wrong_code.content.decode()  # the replace form again
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
    refused = client.post("/accounts/2fa/totp/disable/", {"code": "1"})
    assert refused.status_code == 400 and shown_errors(refused) == ["The code is invalid or has expired."]
    empty = client.post("/accounts/2fa/totp/disable/", {"code": ""})
    assert empty.status_code == 400 and shown_errors(empty) == ["This field is required."]
    response = client.post("/accounts/2fa/totp/disable/", {"code": totp_code(secret, clock.now)})
    assert response.status_code == 302 and response["Location"] == "/accounts/2fa/"
    assert not UserTwoFactor.objects.get(user=user).totp_enabled


def test_recovery_codes_page(client, user, clock):
    secret = enrol_totp(user)
    recovery.generate(user)
    login_verified(client, user)
    assert b"10 codes left" in client.get("/accounts/2fa/recovery-codes/").content
    refused = client.post("/accounts/2fa/recovery-codes/", {"code": "nope"})
    assert refused.status_code == 400 and shown_errors(refused) == ["The code is invalid or has expired."]
    response = client.post("/accounts/2fa/recovery-codes/", {"code": totp_code(secret, clock.now)})
    assert len(re.findall(r"<code>[A-Z0-9]{5}-[A-Z0-9]{5}</code>", response.content.decode())) == 10


def test_email_enrolment_pages(client, user, clock):
    client.force_login(user)
    assert user.email.encode() in client.get("/accounts/2fa/email/enable/").content
    confirm = client.post("/accounts/2fa/email/enable/")
    assert confirm.status_code == 200
    setup_token = re.search(r'name="setup_token" value="([^"]+)"', confirm.content.decode()).group(1)
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    refused = client.post("/accounts/2fa/email/confirm/", {"setup_token": setup_token, "code": wrong(code)})
    assert refused.status_code == 400 and shown_errors(refused) == ["The code is invalid or has expired."]
    assert f'value="{setup_token}"' in refused.content.decode()  # the hidden setup token, to try again
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
    refused = client.post("/accounts/2fa/email/enable/")
    assert refused.status_code == 400 and len(shown_errors(refused)) == 1


def test_the_email_pages_say_what_went_wrong(client, user, clock):
    client.force_login(user)
    not_on = client.post("/accounts/2fa/email/disable/", {"password": PASSWORD})
    assert not_on.status_code == 400
    assert shown_errors(not_on) == ["Two-factor authentication is not set up for this method."]
    answers = [client.post("/accounts/2fa/email/enable/") for _ in range(6)]
    assert answers[-1].status_code == 429
    minutes = -(-int(answers[-1]["Retry-After"]) // 60)
    assert shown_errors(answers[-1]) == [f"Too many attempts. Try again in {minutes} minutes."]
    bad_token = client.post("/accounts/2fa/email/confirm/", {"setup_token": "x" * 43, "code": "123456"})
    assert bad_token.status_code == 400 and shown_errors(bad_token) == ["The link or token is invalid or has expired."]


def test_email_disable_with_a_wrong_password_says_so(client, user, clock):
    enable_email_codes(user)
    login_verified(client, user)
    refused = client.post("/accounts/2fa/email/disable/", {"password": "not the password"})
    assert refused.status_code == 400 and len(shown_errors(refused)) == 1
    assert UserTwoFactor.objects.get(user=user).email_enabled
