"""Recovery codes: format, storage as digests, single use, regeneration."""

from __future__ import annotations

import re

import pytest

from ephemeral_auth import crypto
from ephemeral_auth.exceptions import InvalidCode, NotEnrolled
from ephemeral_auth.models import RecoveryCode
from ephemeral_auth.services import recovery
from ephemeral_auth.services.two_factor import Proof
from tests.factories import enrol_totp, totp_code

pytestmark = pytest.mark.django_db


def test_codes_are_shown_once_and_stored_as_digests(user):
    codes = recovery.generate(user)
    assert len(codes) == 10 == len(set(codes))
    assert all(re.fullmatch(r"[A-HJ-NP-Z2-9]{5}-[A-HJ-NP-Z2-9]{5}", code) for code in codes)
    stored = set(RecoveryCode.objects.filter(user=user).values_list("code_hash", flat=True))
    assert len(stored) == 10
    for code in codes:
        plain = code.replace("-", "")
        assert plain not in "".join(stored)
        assert crypto.code_digest(plain, scope=f"recovery:{user.pk}") in stored


def test_count_is_configurable(user, settings):
    settings.EPHEMERAL_AUTH_RECOVERY_CODE_COUNT = 4
    assert len(recovery.generate(user)) == 4


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("ABCDE-FGHJK", "ABCDEFGHJK"), (" abcde fghjk ", "ABCDEFGHJK"), ("abcdefghjk", "ABCDEFGHJK"),
     ("ABCDE-FGHJ", None), ("ABCDE-FGHJ0", None), ("ABCDE-FGHJI", None), ("", None), (None, None)],
)
def test_normalize(typed, expected):
    assert recovery.normalize(typed) == expected


def test_each_code_works_once(user):
    code = recovery.generate(user)[0]
    assert recovery.use(user.pk, recovery.normalize(code))
    assert not recovery.use(user.pk, recovery.normalize(code))
    assert recovery.remaining(user) == 9


def test_codes_belong_to_their_user(user, other_user):
    code = recovery.generate(user)[0]
    recovery.generate(other_user)
    assert not recovery.use(other_user.pk, recovery.normalize(code))
    assert recovery.remaining(user) == 10


def test_use_is_one_delete(user, django_assert_num_queries):
    code = recovery.normalize(recovery.generate(user)[0])
    with django_assert_num_queries(1):
        assert recovery.use(user.pk, code)


def test_generate_replaces_old_codes(user):
    old = recovery.generate(user)
    recovery.generate(user)
    assert recovery.remaining(user) == 10
    assert not recovery.use(user.pk, recovery.normalize(old[0]))


def test_regenerate_needs_a_second_factor_and_a_current_code(user, now):
    with pytest.raises(NotEnrolled):
        recovery.regenerate(user, "123456", proof=Proof.trusted_caller(), now=now)
    secret = enrol_totp(user)
    old = recovery.generate(user)
    with pytest.raises(InvalidCode):
        recovery.regenerate(user, "ABCDE-FGHJK", proof=Proof.trusted_caller(), now=now)
    new = recovery.regenerate(user, totp_code(secret, now), proof=Proof.trusted_caller(), now=now)
    assert not set(new) & set(old)
    # A recovery code also proves the factor (and is used up by it).
    newest = recovery.regenerate(user, new[0], proof=Proof.trusted_caller(), now=now)
    assert len(newest) == 10


def test_recovery_codes_survive_a_secret_key_rotation(user, settings):
    from ephemeral_auth.services import recovery

    old_key = settings.SECRET_KEY
    codes = recovery.generate(user)
    settings.SECRET_KEY = "a-brand-new-secret-key-for-rotation-0123456789abcdef"
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert recovery.use(user.pk, recovery.normalize(codes[0]))
    assert not recovery.use(user.pk, recovery.normalize(codes[0]))
    settings.SECRET_KEY_FALLBACKS = []
    assert not recovery.use(user.pk, recovery.normalize(codes[1]))
