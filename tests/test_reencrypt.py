"""Key rotation: ``manage.py ephemeral_auth_reencrypt`` moves TOTP secrets to the newest key."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from ephemeral_auth import crypto
from ephemeral_auth.models import UserTwoFactor
from tests.factories import UserFactory, enrol_totp

pytestmark = pytest.mark.django_db

OLD, NEW, LOST = (Fernet.generate_key().decode() for _ in range(3))


def run(*args: str) -> str:
    out = StringIO()
    call_command("ephemeral_auth_reencrypt", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def enrolled(settings):
    """Two users under the old key: one active authenticator, one active plus a pending replacement."""
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [OLD]
    first, second = UserFactory(), UserFactory()
    secrets = {first.pk: enrol_totp(first), second.pk: enrol_totp(second)}
    pending = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    UserTwoFactor.objects.filter(pk=second.pk).update(totp_pending_secret=crypto.encrypt(pending))
    return secrets, pending


def test_secrets_move_to_the_newest_key_and_the_old_key_can_go(settings, enrolled):
    secrets, pending = enrolled
    stamps = dict(UserTwoFactor.objects.values_list("pk", "updated_at"))
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [NEW, OLD]
    assert "re-encrypted 3 secret(s); 0 already" in run()

    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [NEW]  # the old key is gone: everything still decrypts
    for row in UserTwoFactor.objects.all():
        assert crypto.decrypt(row.totp_secret) == secrets[row.pk]
        if row.totp_pending_secret:
            assert crypto.decrypt(row.totp_pending_secret) == pending
    assert dict(UserTwoFactor.objects.values_list("pk", "updated_at")) == stamps  # nobody's 2FA state changed
    assert "re-encrypted 0 secret(s); 3 already under the newest key" in run()


def test_dry_run_writes_nothing(settings, enrolled):
    before = list(UserTwoFactor.objects.values_list("totp_secret", "totp_pending_secret"))
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [NEW, OLD]
    assert "would re-encrypt 3 secret(s)" in run("--dry-run")
    assert list(UserTwoFactor.objects.values_list("totp_secret", "totp_pending_secret")) == before


def test_a_secret_no_key_decrypts_is_reported_by_user_id_only(settings, enrolled):
    secrets, _ = enrolled
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [LOST]
    orphan = UserFactory()
    orphan_secret = enrol_totp(orphan)
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [NEW, OLD]  # LOST is not configured any more
    with pytest.raises(CommandError) as info:
        run()
    message = str(info.value)
    assert f"#{orphan.pk}" in message and "1 secret(s)" in message
    assert orphan_secret not in message and all(secret not in message for secret in secrets.values())
    # The others were re-encrypted all the same.
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [NEW]
    for pk, secret in secrets.items():
        assert crypto.decrypt(UserTwoFactor.objects.get(pk=pk).totp_secret) == secret


def test_bad_batch_size_is_refused():
    with pytest.raises(CommandError):
        run("--batch-size", "0")


def test_a_user_whose_two_secrets_are_lost_is_listed_once(settings):
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [LOST]
    user = UserFactory()
    enrol_totp(user)
    UserTwoFactor.objects.filter(pk=user.pk).update(totp_pending_secret=crypto.encrypt("JBSWY3DPEHPK3PXP"))
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [NEW]
    with pytest.raises(CommandError) as info:
        run()
    assert "1 secret(s)" in str(info.value) and str(info.value).count(f"#{user.pk}") == 1


def test_a_secret_replaced_meanwhile_is_left_alone(settings, enrolled, monkeypatch):
    """Re-enrolment between the read and the UPDATE: the conditional UPDATE matches nothing."""
    secrets, _ = enrolled
    first = next(iter(secrets))
    settings.EPHEMERAL_AUTH_ENCRYPTION_KEYS = [NEW, OLD]
    replacement = crypto.encrypt("KRSXG5CTMVRXEZLU")  # written under NEW by the "user"
    rotate = crypto.rotate

    def rotate_while_the_user_re_enrols(token: str) -> str:
        fresh = rotate(token)
        UserTwoFactor.objects.filter(pk=first, totp_secret=token).update(totp_secret=replacement)
        return fresh

    monkeypatch.setattr(crypto, "rotate", rotate_while_the_user_re_enrols)
    output = run()
    assert "1 changed meanwhile (left alone)" in output
    assert UserTwoFactor.objects.get(pk=first).totp_secret == replacement
