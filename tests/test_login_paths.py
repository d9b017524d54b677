"""Every login path guarded (issue "Every login path guarded"): each finding of the probe, as a test.

The probe went through HTTP, as an attacker and as a new user would: these
tests do the same wherever they can, against the example project's URLconf
(which mounts ``admin.site`` through ``secure_admin_login`` and puts
``GuardBackend`` first), plus a few URLs of Django's own views mounted below.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.contrib.auth import authenticate
from django.contrib.auth import views as auth_views
from django.core import mail
from django.core.exceptions import ValidationError
from django.test import Client, RequestFactory, override_settings
from django.urls import include, path

from ephemeral_auth import conf
from ephemeral_auth.auth import login
from ephemeral_auth.exceptions import InvalidCredentials, RateLimited
from ephemeral_auth.models import EventType, RateLimitEvent, UserTwoFactor
from ephemeral_auth.services import lockout, ratelimit, tokens, two_factor
from tests.factories import (
    PASSWORD,
    UserFactory,
    enable_email_codes,
    enrol_totp,
    login_verified,
    totp_code,
    use_mail_backend,
)

pytestmark = pytest.mark.django_db

# Django's own views, as a site mounts them: an admin site nobody secured, and LoginView.
plain_admin = admin.AdminSite(name="plainadmin")
urlpatterns = [
    path("plain-admin/", plain_admin.urls),
    path("django-login/", auth_views.LoginView.as_view(template_name="admin/login.html"), name="django_login"),
    path("", include("example_project.urls")),
]
DJANGO_VIEWS = override_settings(ROOT_URLCONF="tests.test_login_paths")


def api_login(username, password, ip="192.0.2.1", client=None):
    client = client or Client()
    return client.post(
        "/api/auth/login/", {"username": username, "password": password},
        content_type="application/json", REMOTE_ADDR=ip,
    )


def post_json(client, url, data=None):
    return client.post(url, data or {}, content_type="application/json")


# 1. Django's admin login is limited, and leads a 2FA user to the second factor.


def test_admin_login_brute_force_is_stopped_at_the_limit(client, hashes):
    staff = UserFactory(is_staff=True, is_superuser=True)
    hashes.clear()
    answers = [
        client.post("/admin/login/", {"username": staff.username, "password": f"guess {n}"}).status_code
        for n in range(30)
    ]
    assert answers == [400] * 10 + [429] * 20
    checked = hashes.count("verify")
    hashes.clear()
    right = client.post("/admin/login/", {"username": staff.username, "password": PASSWORD})
    assert right.status_code == 429 and int(right["Retry-After"]) > 0
    assert hashes == []  # not even looked at
    assert checked == 10
    assert client.get("/admin/").status_code == 302
    # The app's own login counts the same attempts: it refuses too, from the same address.
    assert api_login(staff.username, PASSWORD, ip="127.0.0.1").status_code == 429


def test_admin_login_takes_a_two_factor_user_to_the_second_factor_and_back(client, clock):
    staff = UserFactory(is_staff=True, is_superuser=True)
    secret = enrol_totp(staff)
    step = client.post("/admin/login/?next=/admin/auth/user/", {"username": staff.username, "password": PASSWORD})
    assert step.status_code == 302 and step["Location"].startswith("/accounts/2fa/verify/")
    done = client.post(step["Location"], {"method": "totp", "code": totp_code(secret, clock.now)})
    assert done.status_code == 302 and done["Location"] == "/admin/auth/user/"
    assert client.get("/admin/auth/user/").status_code == 200


def test_admin_login_answers_a_wrong_password_and_a_non_staff_account_alike(client):
    member = UserFactory()
    staff = UserFactory(is_staff=True)
    not_staff = client.post("/admin/login/", {"username": member.username, "password": PASSWORD})
    wrong = client.post("/admin/login/", {"username": staff.username, "password": "wrong"})
    assert not_staff.status_code == wrong.status_code == 400
    assert "_auth_user_id" not in client.session
    # And it counted: a non-staff account's right password is no oracle either.
    assert ratelimit.count(EventType.LOGIN_USER_IP, lockout.pair_key(lockout.account_key(member.pk), "127.0.0.1")) == 1


@DJANGO_VIEWS
def test_an_unsecured_admin_site_and_djangos_login_view_count_in_the_same_buckets(hashes):
    """GuardBackend: every password check made through authenticate() is recorded first."""
    staff = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    hashes.clear()
    for n in range(5):
        client.post("/plain-admin/login/", {"username": staff.username, "password": f"guess {n}"})
    for n in range(5):
        client.post("/django-login/", {"username": staff.username, "password": f"guess {n}"})
    assert hashes.count("verify") == 10
    hashes.clear()
    key = lockout.pair_key(lockout.account_key(staff.pk), "127.0.0.1")
    assert ratelimit.count(EventType.LOGIN_USER_IP, key) == 10
    # The eleventh, even with the right password, is refused without a hash, on every path.
    for url in ("/plain-admin/login/", "/django-login/"):
        refused = client.post(url, {"username": staff.username, "password": PASSWORD})
        assert refused.status_code == 200 and "_auth_user_id" not in client.session
    assert hashes == []
    assert api_login(staff.username, PASSWORD, ip="127.0.0.1").status_code == 429


def test_authenticate_from_anywhere_is_recorded_first_and_a_success_leaves_nothing(user, hashes):
    request = RequestFactory().post("/anything/", REMOTE_ADDR="198.51.100.7")
    assert authenticate(request, username=user.username, password="wrong") is None
    assert RateLimitEvent.objects.count() == 3  # the pair, the address, the account
    found = authenticate(request, username=user.username, password=PASSWORD)
    assert found == user
    assert RateLimitEvent.objects.count() == 3  # the success withdrew exactly its own rows
    # Credentials without a password are not a password check: untouched.
    assert authenticate(request, token="whatever") is None
    assert RateLimitEvent.objects.count() == 3


@DJANGO_VIEWS
def test_a_session_made_through_the_guard_loads_through_the_backend_that_accepted_it():
    staff = UserFactory(is_staff=True)
    client = Client()
    done = client.post("/plain-admin/login/", {"username": staff.username, "password": PASSWORD})
    assert done.status_code == 302
    # authenticate() named GuardBackend (it returned the user); the session names ModelBackend.
    assert client.session["_auth_user_backend"] == "django.contrib.auth.backends.ModelBackend"
    assert client.get("/plain-admin/").status_code == 200


# 2. Lockouts the attacker cannot turn on the owner.


def test_thirty_failures_from_thirty_addresses_leave_the_owners_login_working(user):
    for n in range(30):
        assert api_login(user.username, "wrong", ip=f"203.0.113.{n}").status_code == 401
    assert api_login(user.username, PASSWORD, ip="198.51.100.1").json()["status"] == "authenticated"


def test_an_attacker_with_a_thousand_addresses_gets_no_more_checks_than_the_ceiling(user, hashes, now):
    ceiling = conf.rate_limit(EventType.LOGIN_ATTEMPT).limit
    assert ceiling >= 10 * conf.rate_limit(EventType.LOGIN_USER_IP).limit
    factory = RequestFactory()
    hashes.clear()
    refused = 0
    for n in range(1000):
        request = factory.post("/", REMOTE_ADDR=f"10.{n // 250}.{n % 250}.1")
        request.session = {}
        try:
            login.password_login(request, username=user.username, password=f"guess {n}", now=now)
        except RateLimited:
            refused += 1
        except InvalidCredentials:
            pass
    assert hashes.count("verify") == ceiling  # passwords checked
    assert refused == 1000 - ceiling
    assert ratelimit.count(EventType.LOGIN_ATTEMPT, lockout.account_key(user.pk), now=now) == ceiling


def test_the_owners_browser_gets_in_while_the_ceiling_holds(user, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (5, 900)}
    owner = Client()
    assert api_login(user.username, PASSWORD, ip="198.51.100.1", client=owner).status_code == 200
    assert conf.get("DEVICE_COOKIE_NAME") in owner.cookies
    post_json(owner, "/api/auth/logout/")
    for n in range(5):
        api_login(user.username, "wrong", ip=f"203.0.113.{n}")
    # A new browser is refused by the full ceiling, even from a clean address ...
    assert api_login(user.username, PASSWORD, ip="198.51.100.2").status_code == 429
    # ... the owner's browser is not: its attempts count in its own bucket.
    assert api_login(user.username, PASSWORD, ip="198.51.100.2", client=owner).status_code == 200


def test_a_stolen_device_cookie_is_held_to_its_own_bucket(user, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (5, 900)}
    owner = Client()
    api_login(user.username, PASSWORD, ip="198.51.100.1", client=owner)
    cookie = owner.cookies[conf.get("DEVICE_COOKIE_NAME")].value
    thief = Client()
    thief.cookies[conf.get("DEVICE_COOKIE_NAME")] = cookie
    answers = [api_login(user.username, "wrong", ip=f"203.0.113.{n}", client=thief).status_code for n in range(12)]
    assert answers == [401] * 10 + [429] * 2  # login_device: 10 per window, whatever the addresses
    # A forged cookie is no cookie.
    forger = Client()
    forger.cookies[conf.get("DEVICE_COOKIE_NAME")] = cookie[:-2] + "xx"
    assert lockout.trusted_device(forger.cookies[conf.get("DEVICE_COOKIE_NAME")].value, user.pk) is None


def test_a_password_reset_marks_the_browser_so_the_owner_gets_in_past_the_ceiling(user, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (5, 900)}
    for n in range(5):
        api_login(user.username, "wrong", ip=f"203.0.113.{n}")
    browser = Client()
    assert api_login(user.username, PASSWORD, ip="198.51.100.3", client=browser).status_code == 429
    raw = tokens.issue_password_reset(user).raw
    new = "a brand new passphrase 42"
    done = post_json(browser, "/api/auth/password-reset/confirm/", {"token": raw, "new_password": new})
    assert done.status_code == 200
    assert api_login(user.username, new, ip="198.51.100.3", client=browser).status_code == 200


def test_accounts_whose_names_casefold_alike_do_not_share_buckets(settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_user_ip": (3, 900)}
    strasse = UserFactory(username="strasse")
    UserFactory(username="straße")
    for _ in range(3):
        api_login("straße", "wrong")
    assert api_login("straße", PASSWORD).status_code == 429
    assert api_login(strasse.username, PASSWORD).status_code == 200


def test_known_and_unknown_accounts_are_answered_alike_at_the_limit():
    known = UserFactory(username="known-one")
    for name in (known.username, "unknown-one"):
        answers = [api_login(name, "wrong", ip="192.0.2.40").status_code for _ in range(11)]
        assert answers == [401] * 10 + [429]
        RateLimitEvent.objects.all().delete()


# 3. 2FA changes need a fresh proof; a change ends the user's other sessions.


def test_a_session_that_never_passed_two_factor_cannot_enrol_its_own_authenticator(user, clock):
    """The probe: inside the middleware's cache window, setup + confirm laundered the session verified."""
    stale = Client()
    stale.force_login(user)
    assert stale.get("/api/auth/me/").json()["authenticated"] is True  # cached: no 2FA yet
    enable_email_codes(user)  # the owner turns email codes on, from another session
    setup = post_json(stale, "/api/auth/2fa/totp/setup/")
    assert setup.status_code == 403 and setup.json()["error"] == "reauthentication_required"
    assert not UserTwoFactor.objects.get(pk=user.pk).totp_pending_secret
    confirm = post_json(stale, "/api/auth/2fa/totp/confirm/", {"code": "123456"})
    assert confirm.status_code == 403
    assert stale.get("/api/auth/me/").json().get("two_factor_verified") is not True


def test_a_session_verified_against_a_replaced_authenticator_cannot_turn_email_codes_off(clock):
    user = UserFactory()
    user.set_unusable_password()
    user.save()
    enrol_totp(user)
    enable_email_codes(user)
    stale = login_verified(Client(), user)
    assert stale.get("/api/auth/me/").json()["two_factor_verified"] is True
    enrol_totp(user, confirmed_at=clock.now + timedelta(seconds=1))  # replaced elsewhere
    UserTwoFactor.objects.filter(pk=user.pk).update(changed_at=clock.now + timedelta(seconds=1))
    off = post_json(stale, "/api/auth/2fa/email/disable/")
    assert off.status_code == 403 and off.json()["error"] == "reauthentication_required"
    assert UserTwoFactor.objects.get(pk=user.pk).email_enabled


def test_without_two_factor_a_change_needs_a_recent_sign_in_or_the_password(user, clock):
    client = Client()
    assert api_login(user.username, PASSWORD, client=client).status_code == 200
    assert post_json(client, "/api/auth/2fa/totp/setup/").status_code == 200  # signed in just now
    clock.advance(conf.get("REAUTHENTICATION_WINDOW") + 1)
    stale = post_json(client, "/api/auth/2fa/totp/setup/")
    assert stale.status_code == 403 and stale.json()["error"] == "reauthentication_required"
    wrong = post_json(client, "/api/auth/2fa/totp/setup/", {"password": "wrong"})
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials"
    setup = post_json(client, "/api/auth/2fa/totp/setup/", {"password": PASSWORD})
    assert setup.status_code == 200
    secret = setup.json()["secret"]
    # The password renewed the proof: the confirm a minute later needs nothing more.
    clock.advance(60)
    confirmed = post_json(client, "/api/auth/2fa/totp/confirm/", {"code": totp_code(secret, clock.now)})
    assert confirmed.status_code == 200, confirmed.content


def test_the_html_pages_send_a_stale_session_to_sign_in_again(user, clock):
    client = Client()
    client.force_login(user)
    clock.advance(conf.get("REAUTHENTICATION_WINDOW") + 1)
    response = client.post("/accounts/2fa/totp/setup/", {"action": "start"})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=%2Faccounts%2F2fa%2Ftotp%2Fsetup%2F"


def test_a_change_ends_the_users_other_sessions(clock, settings):
    settings.EPHEMERAL_AUTH_TWO_FACTOR_STATE_MAX_AGE = 0
    user = UserFactory()
    secret = enrol_totp(user)
    from ephemeral_auth.services import recovery

    recovery.generate(user)
    mine, other = login_verified(Client(), user), login_verified(Client(), user)
    assert other.get("/api/auth/me/").json()["authenticated"] is True
    clock.advance(30)
    fresh = post_json(mine, "/api/auth/2fa/recovery-codes/", {"code": totp_code(secret, clock.now)})
    assert fresh.status_code == 200, fresh.content
    assert mine.get("/api/auth/me/").json() == {
        "authenticated": True, "username": user.username, "two_factor_verified": True,
    }
    assert other.get("/api/auth/me/").json()["authenticated"] is False
    assert "_auth_user_id" not in other.session  # logged out, not merely hidden


def test_the_two_factor_budget_is_not_reset_by_other_saves(user, hashes, clock):
    """The probe: starting TOTP setup rewrote updated_at, which reset the budget: 20 password guesses a second."""
    enable_email_codes(user)
    client = login_verified(Client(), user)
    checked = 0
    for n in range(20):
        clock.advance(1)
        # Any save in between (starting TOTP setup was one): the row's updated_at moves on.
        UserTwoFactor.objects.filter(pk=user.pk).update(updated_at=clock.now - timedelta(milliseconds=500))
        hashes.clear()
        response = post_json(client, "/api/auth/2fa/email/disable/", {"password": f"guess {n}"})
        checked += "verify" in hashes
        assert response.status_code in (401, 429)
    assert checked == conf.rate_limit(EventType.TWO_FA_ATTEMPT).limit


def test_only_a_real_second_factor_success_restarts_the_budget(user, clock):
    secret = enrol_totp(user)
    state = two_factor.load_state(user)
    for _ in range(4):
        two_factor.count_attempt(user, state, now=clock.now)
    clock.advance(31)
    assert two_factor.check_user_code(user, totp_code(secret, clock.now), now=clock.now) == "totp"
    row = UserTwoFactor.objects.get(pk=user.pk)
    assert row.last_verified_at == clock.now
    # After the success the window restarts: five more attempts are allowed.
    state = two_factor.load_state(user)
    for _ in range(4):
        two_factor.count_attempt(user, state, now=clock.now + timedelta(seconds=1))


# 4. The email-send limit records first.


class FailingMail:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise OSError("mail server down")


def test_email_sends_are_recorded_before_sending_and_withdrawn_when_the_mail_fails(user, clock, settings):
    enable_email_codes(user)
    client = Client()
    body = api_login(user.username, PASSWORD, client=client).json()
    use_mail_backend(settings, "tests.test_login_paths.FailingMail")
    failed = post_json(client, "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]})
    assert failed.status_code == 503
    assert ratelimit.count(EventType.EMAIL_SEND, ratelimit.account_key(user.pk), now=clock.now) == 0
    use_mail_backend(settings, "django.core.mail.backends.locmem.EmailBackend")
    limit = conf.rate_limit(EventType.EMAIL_SEND).limit
    answers = [
        post_json(client, "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]}).status_code
        for _ in range(limit + 2)
    ]
    assert answers == [200] * limit + [429, 429]
    assert len(mail.outbox) == limit


# 6. Email-only 2FA fails closed.


@pytest.fixture
def email_only(db):
    user = UserFactory()
    enable_email_codes(user)
    return user


def test_the_address_of_email_only_two_factor_cannot_be_removed(email_only):
    email_only.email = ""
    with pytest.raises(ValidationError) as info:
        email_only.save()
    assert info.value.code == "two_factor_email_required"
    email_only.refresh_from_db()
    assert email_only.email
    # With another factor it can.
    enrol_totp(email_only)
    email_only.email = ""
    email_only.save()


def test_the_admin_user_form_refuses_it_with_a_message(email_only, admin_client):
    url = f"/admin/auth/user/{email_only.pk}/change/"
    form = admin_client.get(url).context["adminform"].form
    data = {name: form[name].value() for name in form.fields if form[name].value() is not None}
    data.update({"email": "", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"})
    data.pop("password", None)
    data.pop("last_login", None)
    data = {k: v for k, v in data.items() if not isinstance(v, list)}
    response = admin_client.post(url, data)
    assert response.status_code == 200
    assert "only second factor" in response.content.decode()
    email_only.refresh_from_db()
    assert email_only.email


def test_an_address_that_vanished_another_way_fails_closed(email_only):
    type(email_only).objects.filter(pk=email_only.pk).update(email="")
    client = Client()
    response = api_login(email_only.username, PASSWORD, client=client)
    assert response.status_code == 403 and response.json()["error"] == "two_factor_unavailable"
    assert "_auth_user_id" not in client.session
    page = client.post("/accounts/login/", {"username": email_only.username, "password": PASSWORD})
    assert page.status_code == 403 and "no email address" in page.content.decode()
    # A session made without the second factor stays hidden.
    client.force_login(email_only)
    assert client.get("/api/auth/me/").json()["authenticated"] is False
