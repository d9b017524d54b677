"""The JSON two-factor endpoints: verify, email send, status and self-service enrolment."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ephemeral_auth.models import EphemeralToken, EventType, RateLimitEvent, RecoveryCode, TokenType, UserTwoFactor
from ephemeral_auth.services import ratelimit, recovery
from ephemeral_auth.signals import two_factor_failed, two_factor_verified
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

DATA_VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE")


def post(client, url, body=None, **extra):
    return client.post(url, body or {}, content_type="application/json", **extra)


def start_login(client, user):
    response = post(client, "/api/auth/login/", {"username": user.get_username(), "password": PASSWORD})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "2fa_required"
    return body


def verify(client, token, code, method="totp"):
    return post(client, "/api/auth/2fa/verify/", {"pre_auth_token": token, "method": method, "code": code})


def data_statements(captured):
    return [q["sql"] for q in captured if q["sql"].lstrip().split(" ", 1)[0].upper() in DATA_VERBS]


# The whole TOTP login.


def test_totp_login_end_to_end(client, totp_user, clock):
    user, secret = totp_user
    body = start_login(client, user)
    assert body["methods"] == ["totp"]
    assert body["expires_in"] == 300
    assert set(body) == {"status", "pre_auth_token", "methods", "expires_in"}  # no profile before 2FA
    assert "_auth_user_id" not in client.session
    response = verify(client, body["pre_auth_token"], totp_code(secret, clock.now))
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "authenticated",
        "user": {"authenticated": True, "username": user.get_username(), "two_factor_verified": True},
    }
    assert client.session["_auth_user_id"] == str(user.pk)
    assert not EphemeralToken.objects.exists()
    me = client.get("/api/auth/me/").json()
    assert me == {"authenticated": True, "username": user.get_username(), "two_factor_verified": True}


def test_challenge_cookie_attributes_and_clearing(client, totp_user, clock, settings):
    user, secret = totp_user
    response = post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD})
    cookie = response.cookies["ephemeral_auth_challenge"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert int(cookie["max-age"]) == 300
    assert not cookie["secure"]  # plain HTTP
    done = verify(client, response.json()["pre_auth_token"], totp_code(secret, clock.now))
    assert done.status_code == 200
    cleared = done.cookies["ephemeral_auth_challenge"]
    assert cleared.value == "" and int(cleared["max-age"]) == 0


def test_secure_requests_use_a_host_prefixed_secure_cookie(totp_user, clock):
    user, secret = totp_user
    client = Client()
    response = post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD}, secure=True)
    cookie = response.cookies["__Host-ephemeral_auth_challenge"]
    assert cookie["secure"] and cookie["httponly"] and cookie["path"] == "/"
    assert "ephemeral_auth_challenge" not in response.cookies
    # Over plain HTTP the __Host- cookie is not read: the pending login does not verify.
    token = response.json()["pre_auth_token"]
    assert verify(client, token, totp_code(secret, clock.now)).json()["error"] == "invalid_token"
    ok = post(client, "/api/auth/2fa/verify/", {"pre_auth_token": token, "method": "totp",
                                                 "code": totp_code(secret, clock.now)}, secure=True)
    assert ok.status_code == 200


def test_pre_auth_token_is_bound_to_the_browser(totp_user, clock):
    user, secret = totp_user
    body = start_login(Client(), user)
    thief = Client()
    response = verify(thief, body["pre_auth_token"], totp_code(secret, clock.now))
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
    assert EphemeralToken.objects.count() == 1  # nothing consumed


def test_wrong_code_keeps_the_pending_login(client, totp_user, clock):
    user, secret = totp_user
    body = start_login(client, user)
    wrong = verify(client, body["pre_auth_token"], "000000" if totp_code(secret, clock.now) != "000000" else "111111")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_code"
    assert EphemeralToken.objects.count() == 1
    assert ratelimit.count(EventType.TWO_FA_ATTEMPT, ratelimit.account_key(user.pk), now=clock.now) == 1
    assert verify(client, body["pre_auth_token"], totp_code(secret, clock.now)).status_code == 200


def test_a_code_works_once_even_through_the_next_step(client, totp_user, clock):
    """Seed weakness 1: a +1-step code accepted now must not work again in the next step."""
    user, secret = totp_user
    ahead = totp_code(secret, clock.now, offset=1)
    body = start_login(client, user)
    assert verify(client, body["pre_auth_token"], ahead).status_code == 200
    clock.advance(30)  # the code is now the current step's
    second = Client()
    body = start_login(second, user)
    assert verify(second, body["pre_auth_token"], ahead).json()["error"] == "invalid_code"
    # Older steps are refused as well once a later one was accepted.
    assert verify(second, body["pre_auth_token"], totp_code(secret, clock.now, offset=-1)).json()["error"] == (
        "invalid_code"
    )


def test_pending_login_is_single_use(client, totp_user, clock):
    user, secret = totp_user
    body = start_login(client, user)
    assert verify(client, body["pre_auth_token"], totp_code(secret, clock.now)).status_code == 200
    clock.advance(30)
    again = verify(client, body["pre_auth_token"], totp_code(secret, clock.now))
    assert again.status_code == 401 and again.json()["error"] == "invalid_token"


def test_expired_pending_login_is_refused(client, totp_user, clock):
    user, secret = totp_user
    body = start_login(client, user)
    clock.advance(301)
    response = verify(client, body["pre_auth_token"], totp_code(secret, clock.now))
    assert response.json()["error"] == "invalid_token"


def test_two_factor_budget_is_per_user_and_answers_429(client, totp_user, clock):
    user, secret = totp_user
    body = start_login(client, user)
    good = totp_code(secret, clock.now)
    wrong = "123456" if good != "123456" else "654321"
    for _ in range(5):
        assert verify(client, body["pre_auth_token"], wrong).status_code == 401
    limited = verify(client, body["pre_auth_token"], good)
    assert limited.status_code == 429
    assert limited.json()["error"] == "rate_limited"
    assert int(limited["Retry-After"]) == limited.json()["retry_after"] == 15 * 60
    # A new pending login does not reset the budget.
    fresh = Client()
    body = start_login(fresh, user)
    assert verify(fresh, body["pre_auth_token"], good).status_code == 429
    assert RateLimitEvent.objects.filter(event_type=EventType.TWO_FA_ATTEMPT).count() == 5


def test_success_forgives_earlier_failures(client, totp_user, clock):
    user, secret = totp_user
    for _ in range(4):
        body = start_login(client, user)
        verify(client, body["pre_auth_token"], "999999" if totp_code(secret, clock.now) != "999999" else "888888")
    body = start_login(client, user)
    assert verify(client, body["pre_auth_token"], totp_code(secret, clock.now)).status_code == 200
    # Five more logins in the same window: earlier failures and successes do not add up.
    for _ in range(5):
        clock.advance(30)
        other = Client()
        body = start_login(other, user)
        assert verify(other, body["pre_auth_token"], totp_code(secret, clock.now)).status_code == 200


def test_only_enabled_methods_are_accepted(client, totp_user, clock):
    """Seed weakness 2: a TOTP-only user cannot fall back to a mailbox."""
    user, _ = totp_user
    body = start_login(client, user)
    response = verify(client, body["pre_auth_token"], "123456", method="email")
    assert response.status_code == 403 and response.json()["error"] == "method_not_enabled"
    sent = post(client, "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]})
    assert sent.status_code == 403 and sent.json()["error"] == "method_not_enabled"
    assert not mail.outbox
    assert not RateLimitEvent.objects.exists()


def test_signals_on_success_and_failure(client, totp_user, clock):
    user, secret = totp_user
    seen = []

    def verified(sender, user, method, request, **kwargs):
        seen.append(("verified", user.pk, method))

    def failed(sender, user, method, request, **kwargs):
        seen.append(("failed", user.pk, method))

    two_factor_verified.connect(verified)
    two_factor_failed.connect(failed)
    try:
        body = start_login(client, user)
        verify(client, body["pre_auth_token"], "000001" if totp_code(secret, clock.now) != "000001" else "000002")
        verify(client, body["pre_auth_token"], totp_code(secret, clock.now))
    finally:
        two_factor_verified.disconnect(verified)
        two_factor_failed.disconnect(failed)
    assert seen == [("failed", user.pk, "totp"), ("verified", user.pk, "totp")]


# Statement budget (issue 3): DB sessions, no cache.


def test_totp_login_statement_budget(settings, totp_user, clock, django_assert_max_num_queries):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    user, secret = totp_user
    client = Client(REMOTE_ADDR="10.1.2.3")
    with CaptureQueriesContext(connection) as login_step:
        body = start_login(client, user)
    with CaptureQueriesContext(connection) as verify_step:
        assert verify(client, body["pre_auth_token"], totp_code(secret, clock.now)).status_code == 200
    first, second = data_statements(login_step.captured_queries), data_statements(verify_step.captured_queries)
    # login/: the SELECT resolving the account with its 2FA methods (its buckets are keyed by
    # its primary key), the conditional INSERT recording the three buckets *before* the password
    # is checked, one SELECT confirming their counts, authenticate()'s SELECT, the DELETE
    # withdrawing the provisional rows (a success is no failure), the pre_auth INSERT. One more
    # than before the per-(account, address) lock model (docs/two-factor.md, "Statements per
    # request"); django-allauth's same two steps take 15.
    assert len(first) <= 6, first
    assert len(second) <= 9, second
    assert len(first) + len(second) <= 15


def test_login_without_two_factor_statement_budget(settings, user, django_assert_max_num_queries):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    client = Client()
    with CaptureQueriesContext(connection) as ctx:
        response = post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD})
    assert response.json()["status"] == "authenticated"
    # Account, record, confirm, authenticate(), withdraw; login(): 3 for the session, last_login.
    assert len(data_statements(ctx.captured_queries)) <= 9


# Email codes at login.


@pytest.fixture
def email_user(db):
    user = UserFactory()
    enable_email_codes(user)
    return user


def sent_code():
    return re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)


def test_email_code_login(client, email_user, clock):
    body = start_login(client, email_user)
    assert body["methods"] == ["email"]
    response = post(client, "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]})
    assert response.status_code == 200 and response.json() == {"status": "sent"}
    assert mail.outbox[-1].to == [email_user.email]
    code = sent_code()
    token = EphemeralToken.objects.get()
    assert code not in token.code_hash and token.code_hash
    assert verify(client, body["pre_auth_token"], code, method="email").status_code == 200
    assert client.session["_auth_user_id"] == str(email_user.pk)


def test_email_code_is_single_use_and_replaced_by_a_new_send(client, email_user, clock):
    body = start_login(client, email_user)
    post(client, "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]})
    first = sent_code()
    post(client, "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]})
    second = sent_code()
    if first != second:
        assert verify(client, body["pre_auth_token"], first, method="email").json()["error"] == "invalid_code"
    assert verify(client, body["pre_auth_token"], second, method="email").status_code == 200


def test_email_code_burns_after_max_attempts(client, email_user, clock, settings):
    settings.EPHEMERAL_AUTH_EMAIL_CODE_MAX_ATTEMPTS = 3
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"2fa_attempt": (100, 900)}
    body = start_login(client, email_user)
    post(client, "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]})
    code = sent_code()
    wrong = "000000" if code != "000000" else "111111"
    assert verify(client, body["pre_auth_token"], wrong, method="email").json()["error"] == "invalid_code"
    assert verify(client, body["pre_auth_token"], wrong, method="email").json()["error"] == "invalid_code"
    assert verify(client, body["pre_auth_token"], wrong, method="email").json()["error"] == "invalid_code"
    # The third wrong code burnt the pending login: even the right code is refused now.
    assert verify(client, body["pre_auth_token"], code, method="email").json()["error"] == "invalid_token"
    assert not EphemeralToken.objects.exists()


def test_email_sends_are_limited_per_user(client, email_user, clock):
    body = start_login(client, email_user)
    for _ in range(3):
        assert post(client, "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]}).status_code == 200
    limited = post(client, "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]})
    assert limited.status_code == 429 and "Retry-After" in limited
    assert len(mail.outbox) == 3


def test_failed_email_is_not_counted(client, email_user, clock, settings):
    use_mail_backend(settings, "tests.test_api_two_factor.BrokenBackend")
    body = start_login(client, email_user)
    response = post(client, "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]})
    assert response.status_code == 503 and response.json()["error"] == "service_unavailable"
    assert not RateLimitEvent.objects.filter(event_type=EventType.EMAIL_SEND).exists()
    assert EphemeralToken.objects.count() == 1


class BrokenBackend:
    def __init__(self, *args, **kwargs):
        pass

    def send_messages(self, messages):
        raise OSError("mail server down")


def test_email_code_expires_with_its_ttl(client, email_user, clock, settings):
    settings.EPHEMERAL_AUTH_EMAIL_CODE_TTL = 60
    body = start_login(client, email_user)
    post(client, "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]})
    code = sent_code()
    clock.advance(61)
    assert verify(client, body["pre_auth_token"], code, method="email").json()["error"] == "invalid_token"


def test_email_method_needs_an_address(client, clock):
    user = UserFactory(email="")
    enable_email_codes(user)
    response = post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD})
    # Without an address email codes cannot be used (seed weakness 18), but the user has
    # 2FA: the login fails closed with a clear code, never logs in on the password alone.
    assert response.status_code == 403
    assert response.json()["error"] == "two_factor_unavailable"
    assert "_auth_user_id" not in client.session


# Recovery codes at login.


def test_recovery_code_login_is_single_use(client, totp_user, clock):
    user, _ = totp_user
    codes = recovery.generate(user)
    body = start_login(client, user)
    assert body["methods"] == ["totp", "recovery"]
    typed = " " + codes[0].lower().replace("-", " ") + " "
    assert verify(client, body["pre_auth_token"], typed, method="recovery").status_code == 200
    assert RecoveryCode.objects.filter(user=user).count() == 9
    other = Client()
    body = start_login(other, user)
    assert verify(other, body["pre_auth_token"], codes[0], method="recovery").json()["error"] == "invalid_code"


def test_recovery_code_login_says_how_many_codes_remain(client, totp_user, clock, settings):
    user, _ = totp_user
    settings.EPHEMERAL_AUTH_RECOVERY_CODE_COUNT = 4
    codes = recovery.generate(user)
    body = start_login(client, user)
    answer = verify(client, body["pre_auth_token"], codes[0], method="recovery")
    assert answer.status_code == 200
    assert answer.json()["status"] == "authenticated"
    assert answer.json()["recovery_codes_remaining"] == 3
    other = Client()
    body = start_login(other, user)
    assert verify(other, body["pre_auth_token"], codes[1], method="recovery").json()["recovery_codes_remaining"] == 2


def test_a_totp_login_answer_has_no_recovery_count(client, totp_user, clock):
    user, secret = totp_user
    recovery.generate(user)
    body = start_login(client, user)
    answer = verify(client, body["pre_auth_token"], totp_code(secret, clock.now)).json()
    assert answer["status"] == "authenticated" and "recovery_codes_remaining" not in answer


# Self-service: status and enrolment.


@pytest.fixture
def logged_in(client, user, clock):
    return login_verified(client, user)


def test_status_requires_login(client):
    response = client.get("/api/auth/2fa/")
    assert response.status_code == 401 and response.json()["error"] == "not_authenticated"


def test_totp_enrolment(logged_in, user, clock):
    assert logged_in.get("/api/auth/2fa/").json() == {
        "totp": False, "email": False, "email_usable": False, "webauthn": 0, "recovery_codes_remaining": 0,
        "totp_pending": False,
    }
    setup = post(logged_in, "/api/auth/2fa/totp/setup/").json()
    assert set(setup) == {"secret", "provisioning_uri", "qr_svg"}
    assert setup["qr_svg"].startswith("<svg")
    assert setup["provisioning_uri"].startswith("otpauth://totp/")
    row = UserTwoFactor.objects.get(user=user)
    assert setup["secret"] not in row.totp_pending_secret and not row.totp_secret
    code = totp_code(setup["secret"], clock.now)
    confirmed = post(logged_in, "/api/auth/2fa/totp/confirm/", {"code": code})
    assert confirmed.status_code == 200, confirmed.content
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == 10 and all(re.fullmatch(r"[A-Z2-9]{5}-[A-Z2-9]{5}", c) for c in codes)
    status = logged_in.get("/api/auth/2fa/").json()
    assert status == {
        "totp": True, "email": False, "email_usable": False, "webauthn": 0, "recovery_codes_remaining": 10,
        "totp_pending": False,
    }
    # This session enrolled the factor, so it stays verified.
    assert logged_in.get("/api/auth/me/").json()["two_factor_verified"] is True
    # The code typed at setup cannot be replayed at login (Infisical PR #6112).
    other = Client()
    body = start_login(other, user)
    assert verify(other, body["pre_auth_token"], code).json()["error"] == "invalid_code"


def test_replacing_an_authenticator_needs_a_code_and_keeps_the_old_one(client, user, clock):
    old = enrol_totp(user)
    logged_in = login_verified(client, user)
    refused = post(logged_in, "/api/auth/2fa/totp/setup/")
    assert refused.status_code == 401 and refused.json()["error"] == "invalid_code"
    setup = post(logged_in, "/api/auth/2fa/totp/setup/", {"code": totp_code(old, clock.now)})
    assert setup.status_code == 200
    # Not confirmed yet: the old authenticator still logs in (seed weakness 11).
    clock.advance(30)
    other = Client()
    body = start_login(other, user)
    assert verify(other, body["pre_auth_token"], totp_code(old, clock.now)).status_code == 200
    clock.advance(30)
    new = setup.json()["secret"]
    assert post(logged_in, "/api/auth/2fa/totp/confirm/", {"code": totp_code(new, clock.now)}).status_code == 200
    clock.advance(30)
    third = Client()
    body = start_login(third, user)
    assert verify(third, body["pre_auth_token"], totp_code(old, clock.now)).json()["error"] == "invalid_code"
    assert verify(third, body["pre_auth_token"], totp_code(new, clock.now)).status_code == 200


def test_confirm_without_setup_is_not_enrolled(logged_in):
    response = post(logged_in, "/api/auth/2fa/totp/confirm/", {"code": "123456"})
    assert response.status_code == 400 and response.json()["error"] == "not_enrolled"


def test_disable_totp_needs_a_valid_code(client, user, clock):
    secret = enrol_totp(user)
    recovery.generate(user)
    logged_in = login_verified(client, user)
    assert post(logged_in, "/api/auth/2fa/totp/disable/", {"code": "12345"}).json()["error"] == "invalid_code"
    ok = post(logged_in, "/api/auth/2fa/totp/disable/", {"code": totp_code(secret, clock.now)})
    assert ok.status_code == 200 and ok.json() == {"status": "ok"}
    assert logged_in.get("/api/auth/2fa/").json()["totp"] is False
    assert not RecoveryCode.objects.filter(user=user).exists()


def test_disable_totp_with_a_recovery_code(client, user, clock):
    enrol_totp(user)
    codes = recovery.generate(user)
    logged_in = login_verified(client, user)
    assert post(logged_in, "/api/auth/2fa/totp/disable/", {"code": codes[3]}).status_code == 200


def test_regenerate_recovery_codes(client, user, clock):
    secret = enrol_totp(user)
    old = recovery.generate(user)
    logged_in = login_verified(client, user)
    response = post(logged_in, "/api/auth/2fa/recovery-codes/", {"code": totp_code(secret, clock.now)})
    new = response.json()["recovery_codes"]
    assert len(new) == 10 and not set(new) & set(old)
    assert post(logged_in, "/api/auth/2fa/recovery-codes/", {"code": old[0]}).json()["error"] == "invalid_code"


def test_email_enrolment(logged_in, user, clock):
    response = post(logged_in, "/api/auth/2fa/email/enable/")
    assert response.status_code == 200
    setup_token = response.json()["setup_token"]
    code = sent_code()
    assert EphemeralToken.objects.get().token_type == TokenType.EMAIL_OTP_SETUP
    wrong = "000000" if code != "000000" else "111111"
    bad = post(logged_in, "/api/auth/2fa/email/confirm/", {"setup_token": setup_token, "code": wrong})
    assert bad.json()["error"] == "invalid_code"
    ok = post(logged_in, "/api/auth/2fa/email/confirm/", {"setup_token": setup_token, "code": code})
    assert ok.status_code == 200 and ok.json()["status"] == "ok"
    assert len(ok.json()["recovery_codes"]) == 10  # first factor: recovery codes come with it
    assert logged_in.get("/api/auth/2fa/").json()["email"] is True
    again = post(logged_in, "/api/auth/2fa/email/confirm/", {"setup_token": setup_token, "code": code})
    assert again.json()["error"] == "invalid_token"


def test_email_setup_token_is_bound_to_its_user(logged_in, user, other_user, clock):
    setup_token = post(logged_in, "/api/auth/2fa/email/enable/").json()["setup_token"]
    code = sent_code()
    stranger = Client()
    stranger.force_login(other_user)
    response = post(stranger, "/api/auth/2fa/email/confirm/", {"setup_token": setup_token, "code": code})
    assert response.json()["error"] == "invalid_token"
    assert not UserTwoFactor.objects.filter(user=other_user, email_enabled=True).exists()


def test_email_disable_needs_the_password(client, user, clock):
    enable_email_codes(user)
    logged_in = login_verified(client, user)
    assert post(logged_in, "/api/auth/2fa/email/disable/", {"password": "nope"}).json()["error"] == (
        "invalid_credentials"
    )
    assert post(logged_in, "/api/auth/2fa/email/disable/", {"password": PASSWORD}).status_code == 200
    assert UserTwoFactor.objects.get(user=user).email_enabled is False


def test_no_secret_reaches_the_logs(client, user, clock, caplog):
    caplog.set_level("DEBUG")
    logged_in = login_verified(client, user)
    setup = post(logged_in, "/api/auth/2fa/totp/setup/").json()
    enrol_code = totp_code(setup["secret"], clock.now)
    codes = post(logged_in, "/api/auth/2fa/totp/confirm/", {"code": enrol_code}).json()["recovery_codes"]
    clock.advance(30)
    other = Client()
    first = post(other, "/api/auth/login/", {"username": user.username, "password": PASSWORD})
    body = first.json()
    verify(other, body["pre_auth_token"], "000000")
    verify(other, body["pre_auth_token"], codes[0], method="recovery")
    enable_email_codes(user)
    third = Client()
    body3 = start_login(third, user)
    post(third, "/api/auth/2fa/email/send/", {"pre_auth_token": body3["pre_auth_token"]})
    emailed = sent_code()
    verify(third, body3["pre_auth_token"], emailed, method="email")
    secrets = [setup["secret"], codes[0], codes[0].replace("-", ""), body["pre_auth_token"],
               first.cookies["ephemeral_auth_challenge"].value, PASSWORD]
    assert "second factor verified" in caplog.text
    for secret in secrets:
        assert secret not in caplog.text
    for six_digits in (enrol_code, emailed):
        assert not re.search(rf"(?<!\d){six_digits}(?!\d)", caplog.text)
