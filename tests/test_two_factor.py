"""The 2FA state, its fingerprint, the per-user budget, and the admin's reset."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ephemeral_auth.exceptions import InvalidCode, InvalidInput, RateLimited
from ephemeral_auth.models import EphemeralToken, EventType, RecoveryCode, TokenType, UserTwoFactor
from ephemeral_auth.services import ratelimit, recovery, tokens, totp, two_factor
from ephemeral_auth.services.two_factor import Proof
from ephemeral_auth.signals import user_locked_out
from tests.factories import UserFactory, enable_email_codes, enrol_totp, totp_code

pytestmark = pytest.mark.django_db


def test_state_of_a_user_without_two_factor(user, django_assert_num_queries):
    with django_assert_num_queries(1):
        state = two_factor.load_state(user)
    assert not state.enabled and state.methods() == [] and state.fingerprint == ""


def test_state_reads_everything_in_one_statement(user, django_assert_num_queries):
    enrol_totp(user)
    enable_email_codes(user)
    recovery.generate(user)
    with django_assert_num_queries(1):
        state = two_factor.load_state(user.pk)  # by pk: the user row is joined for the address
    assert state.methods() == ["totp", "email", "recovery"]


def test_recovery_codes_alone_are_not_a_factor(user):
    recovery.generate(user)
    assert two_factor.load_state(user).methods() == []


def test_fingerprint_changes_with_the_configuration(user, now):
    before = two_factor.load_state(user).fingerprint
    secret = enrol_totp(user, confirmed_at=now)
    with_totp = two_factor.load_state(user).fingerprint
    assert with_totp and with_totp != before
    # A successful login (new accepted step, new stamp) does not change it...
    totp.accept(UserTwoFactor.objects.get(user=user), totp_code(secret, now), now=now)
    assert two_factor.load_state(user).fingerprint == with_totp
    # ...re-enrolling does.
    enrol_totp(user, confirmed_at=now + timedelta(minutes=1))
    assert two_factor.load_state(user).fingerprint != with_totp


def test_fingerprint_survives_key_rotation(user, now, settings):
    from cryptography.fernet import Fernet

    from ephemeral_auth import crypto

    enrol_totp(user)
    before = two_factor.load_state(user).fingerprint
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *crypto._fernet_keys()]
    row = UserTwoFactor.objects.get(user=user)
    UserTwoFactor.objects.filter(pk=row.pk).update(totp_secret=crypto.rotate(row.totp_secret))
    assert two_factor.load_state(user).fingerprint == before


def test_reset_two_factor_removes_everything(user, other_user, now):
    enrol_totp(user)
    enable_email_codes(user)
    recovery.generate(user)
    UserTwoFactor.objects.filter(user=user).update(totp_pending_secret="x")
    tokens.issue_pre_auth(user, challenge="c", methods=["totp"], now=now)
    tokens.issue_email_otp_setup(user, code_hash="0" * 64, now=now)
    tokens.issue_password_reset(user, now=now)
    enrol_totp(other_user)
    two_factor.reset_two_factor(user)
    assert not UserTwoFactor.objects.filter(user=user).exists()
    assert not RecoveryCode.objects.filter(user=user).exists()
    assert list(EphemeralToken.objects.values_list("token_type", flat=True)) == [TokenType.PASSWORD_RESET]
    assert UserTwoFactor.objects.filter(user=other_user).exists()
    assert two_factor.load_state(user).methods() == []


def test_check_user_code_accepts_totp_or_recovery(user, now):
    secret = enrol_totp(user)
    codes = recovery.generate(user)
    assert two_factor.check_user_code(user, totp_code(secret, now), now=now) == "totp"
    assert two_factor.check_user_code(user, codes[0], now=now) == "recovery"
    with pytest.raises(InvalidCode):
        two_factor.check_user_code(user, codes[0], now=now)
    with pytest.raises(InvalidCode):
        two_factor.check_user_code(user, "not a code", now=now)
    with pytest.raises(InvalidInput):
        two_factor.check_user_code(user, "x" * 100, now=now)


def test_malformed_codes_do_not_spend_the_budget(user, now):
    enrol_totp(user)
    for _ in range(20):
        with pytest.raises(InvalidCode):
            two_factor.check_user_code(user, "abc", now=now)
    assert ratelimit.count(EventType.TWO_FA_ATTEMPT, ratelimit.account_key(user.pk), now=now) == 0


def test_budget_counts_every_checked_code_and_signals_the_lockout(user, now):
    enrol_totp(user)
    seen = []

    def receiver(sender, event_type, key, request, **kwargs):
        seen.append((event_type, key))

    user_locked_out.connect(receiver)
    try:
        for _ in range(5):
            with pytest.raises(InvalidCode):
                two_factor.check_user_code(user, "ABCDE-FGHJK", now=now)
        with pytest.raises(RateLimited) as info:
            two_factor.check_user_code(user, "ABCDE-FGHJK", now=now)
    finally:
        user_locked_out.disconnect(receiver)
    assert info.value.retry_after == 15 * 60
    assert seen == [(EventType.TWO_FA_ATTEMPT, ratelimit.account_key(user.pk))]


def test_window_restarts_at_the_last_success(user, now):
    secret = enrol_totp(user)
    for i in range(4):
        with pytest.raises(InvalidCode):
            two_factor.check_user_code(user, "ABCDE-FGHJK", now=now + timedelta(seconds=i))
    ok_at = now + timedelta(seconds=10)
    assert two_factor.check_user_code(user, totp_code(secret, ok_at), now=ok_at) == "totp"
    # Five fresh failures are allowed again after the success; the sixth is refused.
    for i in range(5):
        with pytest.raises(InvalidCode):
            two_factor.check_user_code(user, "ABCDE-FGHJK", now=ok_at + timedelta(seconds=1 + i))
    with pytest.raises(RateLimited) as info:
        two_factor.check_user_code(user, "ABCDE-FGHJK", now=ok_at + timedelta(seconds=20))
    # Retry-After is that of the full window, from the oldest counted failure.
    assert info.value.retry_after == 15 * 60 - 19


def test_a_success_stamp_from_the_future_is_ignored(user, now):
    enrol_totp(user)
    UserTwoFactor.objects.filter(user=user).update(updated_at=now + timedelta(minutes=5))
    for _ in range(5):
        with pytest.raises(InvalidCode):
            two_factor.check_user_code(user, "ABCDE-FGHJK", now=now)
    with pytest.raises(RateLimited):
        two_factor.check_user_code(user, "ABCDE-FGHJK", now=now)


def test_status(user, now):
    assert two_factor.status(user) == {"totp": False, "email": False, "email_usable": False, "webauthn": 0,
                                       "recovery_codes_remaining": 0, "totp_pending": False}
    enrol_totp(user)
    recovery.generate(user)
    totp.setup(user, code=recovery.generate(user)[0], proof=Proof.trusted_caller(), now=now)
    assert two_factor.status(user) == {"totp": True, "email": False, "email_usable": False, "webauthn": 0,
                                       "recovery_codes_remaining": 9, "totp_pending": True}


def test_email_codes_without_address_fail_closed(now):
    user = UserFactory(email="")
    enable_email_codes(user)
    state = two_factor.load_state(user)
    # Still 2FA (the middleware hides unverified sessions), but no method a login can use.
    assert state.enabled and state.fingerprint != ""
    assert state.methods() == []
    assert two_factor.status(user)["email"] is True
    assert two_factor.status(user)["email_usable"] is False


def test_demo_setup_leaves_a_ready_two_factor_account(now):
    import io

    import pyotp
    from django.core.management import call_command

    from ephemeral_auth.services import login as login_service

    out = io.StringIO()
    call_command("demo_setup", "--force", stdout=out)
    text = out.getvalue()
    assert "demo2fa" in text and "TOTP secret: DEMOTOTPSECRETDEMOTOTPSECRET2345" in text
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="demo2fa")
    assert login_service.enabled_methods(user) == ["totp", "recovery"]
    row = UserTwoFactor.objects.get(user=user)
    assert totp.accept(row, pyotp.TOTP("DEMOTOTPSECRETDEMOTOTPSECRET2345").at(now), now=now)
    call_command("demo_setup", "--force", stdout=io.StringIO())  # idempotent
    assert recovery.remaining(user) == 10
