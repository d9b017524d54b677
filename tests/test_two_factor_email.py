"""Email codes: enrolment (enable / confirm / disable) and the login code, at the service level."""

from __future__ import annotations

import re

import pytest
from django.core import mail

from ephemeral_auth.exceptions import (
    InvalidCode,
    InvalidCredentials,
    InvalidToken,
    NotEnrolled,
    RateLimited,
    ServiceUnavailable,
)
from ephemeral_auth.models import EphemeralToken, EventType, TokenType, UserTwoFactor
from ephemeral_auth.services import email_otp, login, ratelimit, recovery, tokens
from ephemeral_auth.services.two_factor import Proof
from tests.factories import UserFactory, enable_email_codes, enrol_totp, use_mail_backend

pytestmark = pytest.mark.django_db


def last_code():
    return re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)


def test_enable_sends_a_code_and_stores_only_its_digest(user, now):
    issued = email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    assert issued.token.token_type == TokenType.EMAIL_OTP_SETUP
    assert mail.outbox[-1].to == [user.email]
    assert "code" in mail.outbox[-1].subject.lower()
    code = last_code()
    row = EphemeralToken.objects.get()
    assert code not in row.code_hash and len(row.code_hash) == 64
    assert ratelimit.count(EventType.EMAIL_SEND, ratelimit.account_key(user.pk), now=now) == 1


def test_enable_needs_an_address(now):
    user = UserFactory(email="")
    with pytest.raises(NotEnrolled):
        email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    assert not mail.outbox and not EphemeralToken.objects.exists()


def test_enable_replaces_the_previous_setup(user, now):
    first = email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    first_code = last_code()
    email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    with pytest.raises(InvalidToken):
        email_otp.confirm(user, first.raw, first_code, proof=Proof.trusted_caller(), now=now)


def test_enable_is_rate_limited(user, now):
    for _ in range(3):
        email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    with pytest.raises(RateLimited):
        email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    assert len(mail.outbox) == 3


def test_failed_send_leaves_nothing_behind(user, now, settings):
    use_mail_backend(settings, "tests.test_api_two_factor.BrokenBackend")
    with pytest.raises(ServiceUnavailable):
        email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    assert not EphemeralToken.objects.exists()
    assert ratelimit.count(EventType.EMAIL_SEND, ratelimit.account_key(user.pk), now=now) == 0


def test_confirm_is_bound_to_the_address(user, now):
    issued = email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    code = last_code()
    user.email = "new@example.com"
    user.save()
    with pytest.raises(InvalidCode):
        email_otp.confirm(user, issued.raw, code, proof=Proof.trusted_caller(), now=now)


def test_confirm_burns_the_setup_after_max_attempts(user, now, settings):
    settings.EPHEMERAL_AUTH_EMAIL_CODE_MAX_ATTEMPTS = 2
    issued = email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    code = last_code()
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(2):
        with pytest.raises(InvalidCode):
            email_otp.confirm(user, issued.raw, wrong, proof=Proof.trusted_caller(), now=now)
    with pytest.raises(InvalidToken):
        email_otp.confirm(user, issued.raw, code, proof=Proof.trusted_caller(), now=now)


def test_confirm_turns_codes_on_and_gives_recovery_codes_once(user, now):
    issued = email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    codes = email_otp.confirm(user, issued.raw, last_code(), proof=Proof.trusted_caller(), now=now)
    assert len(codes) == 10
    row = UserTwoFactor.objects.get(user=user)
    assert row.email_enabled and row.email_confirmed_at == now
    assert login.enabled_methods(user) == ["email", "recovery"]
    # A user who already has recovery codes keeps them.
    email_otp.disable(user, "correct horse battery staple", proof=Proof.trusted_caller(), now=now)
    recovery.generate(user)
    issued = email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    assert email_otp.confirm(user, issued.raw, last_code(), proof=Proof.trusted_caller(), now=now) == []


def test_disable_checks_the_password(user, now):
    enable_email_codes(user)
    with pytest.raises(InvalidCredentials):
        email_otp.disable(user, "wrong", proof=Proof.trusted_caller(), now=now)
    with pytest.raises(NotEnrolled):
        email_otp.disable(UserFactory(), "x", proof=Proof.trusted_caller(), now=now)
    email_otp.disable(user, "correct horse battery staple", proof=Proof.trusted_caller(), now=now)
    assert not UserTwoFactor.objects.get(user=user).email_enabled


def test_disable_without_a_usable_password_needs_only_the_session(now):
    user = UserFactory()
    user.set_unusable_password()
    user.save()
    enable_email_codes(user)
    email_otp.disable(user, "", proof=Proof.trusted_caller(), now=now)
    assert not UserTwoFactor.objects.get(user=user).email_enabled


def test_disable_keeps_recovery_codes_while_totp_remains(user, now):
    enrol_totp(user)
    enable_email_codes(user)
    recovery.generate(user)
    email_otp.disable(user, "correct horse battery staple", proof=Proof.trusted_caller(), now=now)
    assert recovery.remaining(user) == 10


def test_login_code_is_scoped_to_its_pending_login(user, now):
    enable_email_codes(user)
    first = tokens.issue_pre_auth(user, challenge="one", methods=["email"], now=now)
    second = tokens.issue_pre_auth(user, challenge="two", methods=["email"], now=now)
    email_otp.send_login_code(login.peek_pending(first.raw, challenge="one", now=now), now=now)
    code = last_code()
    pending = login.peek_pending(second.raw, challenge="two", now=now)
    with pytest.raises(InvalidCode):
        email_otp.check_login_code(pending, code, now=now)
