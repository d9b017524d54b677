"""The ephemeral_auth_2fa management command: status USER... and disable USER."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from ephemeral_auth import clock as app_clock
from ephemeral_auth.management.commands import ephemeral_auth_2fa
from ephemeral_auth.models import EphemeralToken, EventType, RecoveryCode, TokenType, UserTwoFactor
from ephemeral_auth.services import ratelimit, recovery, tokens
from tests.factories import UserFactory, enable_email_codes, enrol_totp

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("ephemeral_auth_2fa", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(*args: str) -> tuple[str, str, CommandError]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as info:
        call_command("ephemeral_auth_2fa", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), info.value


@pytest.fixture
def full_user(db):
    """A user with an authenticator, email codes and recovery codes: (user, secret, codes)."""
    user = UserFactory(username="alice")
    secret = enrol_totp(user)
    enable_email_codes(user)
    codes = recovery.generate(user)
    return user, secret, codes


def factor_rows(user) -> tuple[int, int]:
    return UserTwoFactor.objects.filter(pk=user.pk).count(), RecoveryCode.objects.filter(user_id=user.pk).count()


# status


def test_status_of_a_user_without_two_factor(user):
    out, err = run("status", user.get_username())
    assert out.splitlines()[0] == f"{user.get_username()} (user #{user.pk})"
    assert "  two-factor authentication: off\n" in out
    assert "  authenticator app (TOTP): off\n" in out
    assert "  email codes: off\n" in out
    assert "  recovery codes: 0 unused\n" in out
    assert "  methods a login may use: none\n" in out
    assert "  last verified: never\n" in out
    assert "  locked out: no\n" in out
    assert err == ""


def test_status_with_totp_shows_confirmation_time(now):
    user = UserFactory()
    enrol_totp(user, confirmed_at=now)
    out, _err = run("status", user.get_username())
    assert "  two-factor authentication: on\n" in out
    assert f"  authenticator app (TOTP): on, confirmed {now:%Y-%m-%d %H:%M:%S} UTC\n" in out
    assert "  email codes: off\n" in out
    assert "  methods a login may use: totp\n" in out


def test_status_with_email_codes_but_no_address_says_so():
    user = UserFactory(email="")
    enable_email_codes(user)
    out, _err = run("status", user.get_username())
    assert "  two-factor authentication: on\n" in out
    assert "NO ADDRESS: email codes cannot be sent" in out
    assert "  methods a login may use: none\n" in out


def test_status_with_email_codes_and_an_address():
    user = UserFactory()
    enable_email_codes(user)
    out, _err = run("status", user.get_username())
    assert ", address usable\n" in out
    assert "  methods a login may use: email\n" in out


def test_status_with_recovery_codes_and_no_secret_in_the_output(full_user):
    user, secret, codes = full_user
    out, err = run("status", "alice")
    assert f"  recovery codes: {len(codes)} unused\n" in out
    assert "  methods a login may use: totp, email, recovery\n" in out
    printed = out + err
    row = UserTwoFactor.objects.get(pk=user.pk)
    assert secret not in printed
    assert row.totp_secret not in printed
    for code in codes:
        assert code not in printed
        assert code.replace("-", "") not in printed
    for digest in RecoveryCode.objects.filter(user_id=user.pk).values_list("code_hash", flat=True):
        assert digest not in printed


def test_status_shows_a_lockout_of_the_account(full_user, now, monkeypatch):
    user, _secret, _codes = full_user
    monkeypatch.setattr(app_clock, "now", lambda: now)
    for _ in range(10):
        ratelimit.attempt(EventType.LOGIN_USER_IP, f"u:{user.pk}|203.0.113.7", now=now)
    out, _err = run("status", "alice")
    assert "  locked out: yes, 1 bucket\n" in out
    assert "login_user_ip: 10 events, retry after" in out
    assert f"(alice (user #{user.pk}) from 203.0.113.7)" in out


def test_status_finds_a_username_ignoring_case(full_user):
    out, _err = run("status", "ALICE")
    assert out.startswith("alice (user #")


def test_unknown_user_exits_1_after_reporting_the_others(full_user, other_user):
    out, err, exc = run_failing("status", "alice", "nobody", other_user.get_username())
    assert out.startswith("alice (user #")
    assert f"\n{other_user.get_username()} (user #{other_user.pk})\n" in out
    assert "error: 'nobody': no such user." in err
    assert exc.returncode == 1
    assert "1 of 3 users not found" in str(exc)


def test_control_characters_in_a_username_are_escaped():
    name = "\x1b[2Jeve\u202e\r"
    user = UserFactory(username=name, email="eve@example.com")
    enable_email_codes(user)
    out, _err = run("status", name)
    assert "\x1b" not in out and "\u202e" not in out and "\r" not in out
    assert out.splitlines()[0] == f"\\x1b[2Jeve\\u202e\\x0d (user #{user.pk})"
    _out, err, _exc = run_failing("status", "\x1b[Hghost")
    assert "\x1b" not in err
    assert "'\\x1b[Hghost': no such user." in err


# disable


def test_disable_with_yes_removes_every_factor(full_user):
    user, _secret, codes = full_user
    UserTwoFactor.objects.filter(pk=user.pk).update(totp_pending_secret="pending-encrypted")
    tokens.issue_pre_auth(user, challenge="c" * 32, methods=["totp"])
    kept = tokens.issue_password_reset(user).token.pk
    out, _err = run("disable", "alice", "--yes")
    assert out == (
        f"Disabled two-factor authentication of alice: removed authenticator app (TOTP), pending authenticator, "
        f"email codes, {len(codes)} recovery codes.\n"
    )
    assert factor_rows(user) == (0, 0)
    assert not EphemeralToken.objects.filter(user_id=user.pk, token_type=TokenType.PRE_AUTH).exists()
    assert EphemeralToken.objects.filter(pk=kept).exists()
    status, _err = run("status", "alice")
    assert "  two-factor authentication: off\n" in status


def test_disable_logs_the_reset(full_user, caplog):
    user, _secret, _codes = full_user
    with caplog.at_level("INFO", logger="ephemeral_auth.two_factor"):
        run("disable", "alice", "--no-input")
    assert any(
        record.name == "ephemeral_auth.two_factor" and f"user #{user.pk}" in record.getMessage()
        and "ephemeral_auth_2fa" in record.getMessage()
        for record in caplog.records
    )


def test_disable_of_a_user_without_two_factor(user):
    out, _err = run("disable", user.get_username(), "-y")
    assert "had no second factor" in out


def test_disable_without_yes_and_without_a_terminal_refuses(full_user, monkeypatch):
    user, _secret, codes = full_user
    monkeypatch.setattr(ephemeral_auth_2fa, "stdin_is_terminal", lambda: False)

    def no_input(prompt=""):
        raise AssertionError("must not ask without a terminal")

    monkeypatch.setattr("builtins.input", no_input)
    _out, _err, exc = run_failing("disable", "alice")
    assert "not a terminal" in str(exc) and "--yes" in str(exc)
    assert factor_rows(user) == (1, len(codes))


def test_disable_with_stdin_redirected_refuses(full_user, monkeypatch):
    user, _secret, codes = full_user
    monkeypatch.setattr("sys.stdin", StringIO("alice\n"))
    _out, _err, exc = run_failing("disable", "alice")
    assert "Nothing changed" in str(exc)
    assert factor_rows(user) == (1, len(codes))


def test_interactive_confirmation_with_the_wrong_name_refuses(full_user, monkeypatch):
    user, _secret, codes = full_user
    prompts = []
    monkeypatch.setattr(ephemeral_auth_2fa, "stdin_is_terminal", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": prompts.append(prompt) or "ALICE")
    _out, _err, exc = run_failing("disable", "alice")
    assert prompts == ["Type the username to confirm: "]
    assert "does not match" in str(exc)
    assert factor_rows(user) == (1, len(codes))


def test_interactive_confirmation_end_of_input_refuses(full_user, monkeypatch):
    user, _secret, codes = full_user
    monkeypatch.setattr(ephemeral_auth_2fa, "stdin_is_terminal", lambda: True)

    def eof(prompt=""):
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    run_failing("disable", "alice")
    assert factor_rows(user) == (1, len(codes))


def test_interactive_confirmation_with_the_right_name_disables(full_user, monkeypatch):
    user, _secret, _codes = full_user
    monkeypatch.setattr(ephemeral_auth_2fa, "stdin_is_terminal", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": "alice")
    out, _err = run("disable", "alice")
    assert "removes every second factor of alice" in out
    assert "Disabled two-factor authentication of alice" in out
    assert factor_rows(user) == (0, 0)


def test_disable_of_an_unknown_user_fails(db):
    _out, _err, exc = run_failing("disable", "nobody", "--yes")
    assert "'nobody': no such user." in str(exc)


def test_disable_ends_sessions_verified_under_the_old_configuration(full_user):
    """The fingerprint a verified session holds is no longer the user's after the reset."""
    from ephemeral_auth.services import two_factor

    user, _secret, _codes = full_user
    before = two_factor.load_state(user).fingerprint
    run("disable", "alice", "--yes")
    after = two_factor.load_state(user)
    assert not after.enabled
    assert after.fingerprint != before


def test_other_users_are_untouched(full_user):
    other = UserFactory()
    enrol_totp(other)
    recovery.generate(other)
    run("disable", "alice", "--yes")
    assert UserTwoFactor.objects.filter(pk=other.pk).exists()
    assert RecoveryCode.objects.filter(user_id=other.pk).exists()
