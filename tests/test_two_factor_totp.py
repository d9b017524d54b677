"""The TOTP service: step matching, the replay guard, enrolment and removal."""

from __future__ import annotations

from datetime import timedelta

import pyotp
import pytest
from cryptography.fernet import Fernet

from ephemeral_auth import crypto
from ephemeral_auth.exceptions import InvalidCode, NotEnrolled, ServiceUnavailable
from ephemeral_auth.models import EphemeralToken, UserTwoFactor
from ephemeral_auth.services import tokens, totp
from ephemeral_auth.services.two_factor import Proof
from tests.factories import enrol_totp, totp_code

pytestmark = pytest.mark.django_db

SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("123456", "123456"), (" 123 456 ", "123456"), ("123-456", "123456"), ("12345", None), ("1234567", None),
     ("12345a", None), ("١٢٣٤٥٦", None), (None, None), (123456, None)],
)
def test_normalize(typed, expected):
    assert totp.normalize(typed) == expected


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_matching_step_finds_the_exact_step_within_tolerance(now, offset):
    code = totp_code(SECRET, now, offset=offset)
    assert totp.matching_step(SECRET, code, now=now) == totp.step_at(now) + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_codes_outside_the_tolerance_do_not_match(now, offset):
    code = totp_code(SECRET, now, offset=offset)
    if code in {totp_code(SECRET, now, offset=o) for o in (-1, 0, 1)}:
        pytest.skip("coincidence of codes")
    assert totp.matching_step(SECRET, code, now=now) is None


def test_tolerance_is_configurable(now, settings):
    settings.EPHEMERAL_AUTH_TOTP_TOLERANCE = 0
    assert totp.matching_step(SECRET, totp_code(SECRET, now, offset=1), now=now) is None
    settings.EPHEMERAL_AUTH_TOTP_TOLERANCE = 2
    assert totp.matching_step(SECRET, totp_code(SECRET, now, offset=2), now=now) == totp.step_at(now) + 2


def test_digits_and_period_are_configurable(now, settings):
    settings.EPHEMERAL_AUTH_TOTP_DIGITS = 8
    settings.EPHEMERAL_AUTH_TOTP_PERIOD = 60
    code = pyotp.TOTP(SECRET, digits=8, interval=60).at(now)
    assert totp.normalize(code) == code
    assert totp.matching_step(SECRET, code, now=now) == int(now.timestamp()) // 60


def test_accept_is_once_per_step_and_refuses_older_steps(user, now):
    secret = enrol_totp(user)
    row = UserTwoFactor.objects.get(user=user)
    assert totp.accept(row, totp_code(secret, now), now=now)
    assert not totp.accept(row, totp_code(secret, now), now=now)
    assert not totp.accept(row, totp_code(secret, now, offset=-1), now=now)
    assert totp.accept(row, totp_code(secret, now, offset=1), now=now)
    assert UserTwoFactor.objects.get(user=user).totp_last_step == totp.step_at(now) + 1


def test_plus_one_code_is_not_accepted_again_in_the_next_step(user, now):
    """Seed weakness 1, exactly as the seed got it wrong."""
    secret = enrol_totp(user)
    row = UserTwoFactor.objects.get(user=user)
    ahead = totp_code(secret, now, offset=1)
    assert totp.accept(row, ahead, now=now)
    later = now + timedelta(seconds=30)
    assert totp.matching_step(secret, ahead, now=later) == totp.step_at(later)  # it is "current" now
    assert not totp.accept(row, ahead, now=later)


def test_accept_is_one_update(user, now, django_assert_num_queries):
    secret = enrol_totp(user)
    row = UserTwoFactor.objects.get(user=user)
    with django_assert_num_queries(1):
        assert totp.accept(row, totp_code(secret, now), now=now)


def test_secret_is_encrypted_at_rest_and_keys_rotate(user, now, settings):
    old_key, new_key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [old_key]
    secret = enrol_totp(user)
    row = UserTwoFactor.objects.get(user=user)
    assert secret not in row.totp_secret
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [new_key, old_key]  # rotation: new first, old still decrypts
    assert totp.accept(row, totp_code(secret, now), now=now)


def test_lost_keys_fail_closed(user, now, settings, caplog):
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    secret = enrol_totp(user)
    row = UserTwoFactor.objects.get(user=user)
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(ServiceUnavailable):
        totp.accept(row, totp_code(secret, now), now=now)
    assert "cannot be decrypted" in caplog.text
    assert secret not in caplog.text


def test_setup_then_confirm(user, now):
    setup = totp.setup(user, proof=Proof.trusted_caller(), now=now)
    assert "secret" not in repr(setup) and setup.secret not in repr(setup)
    row = UserTwoFactor.objects.get(user=user)
    assert row.totp_pending_secret and not row.totp_secret
    assert crypto.decrypt(row.totp_pending_secret) == setup.secret
    assert "issuer=ephemeral_auth%20demo" in setup.provisioning_uri
    assert user.username in setup.provisioning_uri
    codes = totp.confirm(user, totp_code(setup.secret, now), proof=Proof.trusted_caller(), now=now)
    assert len(codes) == 10
    row.refresh_from_db()
    assert row.totp_enabled and not row.totp_pending_secret
    assert row.totp_last_step == totp.step_at(now)


def test_confirm_with_a_wrong_code_keeps_the_setup(user, now):
    setup = totp.setup(user, proof=Proof.trusted_caller(), now=now)
    good = totp_code(setup.secret, now)
    with pytest.raises(InvalidCode):
        totp.confirm(user, "000000" if good != "000000" else "111111", proof=Proof.trusted_caller(), now=now)
    assert totp.confirm(user, good, proof=Proof.trusted_caller(), now=now)


def test_restarting_setup_replaces_the_pending_secret(user, now):
    first = totp.setup(user, proof=Proof.trusted_caller(), now=now)
    second = totp.setup(user, proof=Proof.trusted_caller(), now=now)
    assert first.secret != second.secret
    with pytest.raises(InvalidCode):
        totp.confirm(user, totp_code(first.secret, now), proof=Proof.trusted_caller(), now=now)
    assert totp.pending_setup(user).secret == second.secret


def test_confirm_revokes_pending_logins(user, now):
    setup = totp.setup(user, proof=Proof.trusted_caller(), now=now)
    tokens.issue_pre_auth(user, challenge="c", methods=["email"], now=now)
    totp.confirm(user, totp_code(setup.secret, now), proof=Proof.trusted_caller(), now=now)
    assert not EphemeralToken.objects.exists()


def test_replacing_requires_a_current_code(user, now):
    enrol_totp(user)
    with pytest.raises(InvalidCode):
        totp.setup(user, proof=Proof.trusted_caller(), now=now)
    with pytest.raises(InvalidCode):
        totp.setup(user, code="000000", proof=Proof.trusted_caller(), now=now)


def test_disable_requires_enrolment(user, now):
    with pytest.raises(NotEnrolled):
        totp.disable(user, "123456", proof=Proof.trusted_caller(), now=now)


def test_disable_keeps_email_codes_and_recovery_codes(user, now):
    from ephemeral_auth.services import recovery
    from tests.factories import enable_email_codes

    secret = enrol_totp(user)
    enable_email_codes(user)
    recovery.generate(user)
    totp.disable(user, totp_code(secret, now), proof=Proof.trusted_caller(), now=now)
    row = UserTwoFactor.objects.get(user=user)
    assert not row.totp_enabled and row.email_enabled
    assert recovery.remaining(user) == 10


def test_qr_code_is_inline_svg():
    svg = totp.qr_svg("otpauth://totp/x?secret=" + SECRET)
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "<?xml" not in svg and "<script" not in svg
