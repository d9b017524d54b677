"""The token service: issue, peek, consume, revoke, and what bad input does."""

from __future__ import annotations

from datetime import timedelta

import pytest

from ephemeral_auth import crypto
from ephemeral_auth.exceptions import InvalidInput, InvalidToken
from ephemeral_auth.models import EphemeralToken, TokenType
from ephemeral_auth.services import tokens

pytestmark = pytest.mark.django_db


def test_issue_stores_only_the_digest(user, now):
    issued = tokens.issue_password_reset(user, now=now)
    row = EphemeralToken.objects.get()
    assert row.token == crypto.digest_token(issued.raw)
    assert issued.raw not in {row.token, str(row), repr(issued)}
    assert row.expires_at == now + timedelta(hours=1)
    assert row.user == user


def test_issue_is_one_statement(user, now, django_assert_num_queries):
    with django_assert_num_queries(1):
        tokens.issue_password_reset(user, now=now)


def test_consume_is_one_statement_and_single_use(user, now, django_assert_num_queries, backend):
    issued = tokens.issue_password_reset(user, now=now)
    with django_assert_num_queries(1):
        got = tokens.consume_token(issued.raw, TokenType.PASSWORD_RESET, now=now)
    assert got.user_id == user.pk
    assert got.token_type == TokenType.PASSWORD_RESET
    assert got.expires_at == issued.token.expires_at
    with pytest.raises(InvalidToken):
        tokens.consume_token(issued.raw, TokenType.PASSWORD_RESET, now=now)
    assert not EphemeralToken.objects.exists()


def test_expired_token_is_refused_and_kept_for_the_purge(user, now):
    issued = tokens.issue_password_reset(user, now=now)
    later = now + timedelta(hours=1)
    with pytest.raises(InvalidToken):
        tokens.consume_token(issued.raw, TokenType.PASSWORD_RESET, now=later)
    assert tokens.peek_token(issued.raw, TokenType.PASSWORD_RESET, now=later) is None
    assert EphemeralToken.objects.count() == 1


def test_cross_purpose_presentation_consumes_nothing(user, now):
    issued = tokens.issue_password_reset(user, now=now)
    with pytest.raises(InvalidToken):
        tokens.consume_token(issued.raw, TokenType.OIDC_EXCHANGE, now=now)
    assert tokens.consume_token(issued.raw, TokenType.PASSWORD_RESET, now=now)


def test_pre_auth_requires_the_browser_challenge(user, now):
    issued = tokens.issue_pre_auth(user, challenge="cookie-value", methods=["totp"], now=now)
    assert issued.token.challenge_id == crypto.digest_token("cookie-value")
    for challenge in (None, "", "other-cookie"):
        assert tokens.peek_token(issued.raw, TokenType.PRE_AUTH, challenge_id=challenge, now=now) is None
        with pytest.raises(InvalidToken):
            tokens.consume_token(issued.raw, TokenType.PRE_AUTH, challenge_id=challenge, now=now)
    peeked = tokens.peek_token(issued.raw, TokenType.PRE_AUTH, challenge_id="cookie-value", now=now)
    assert peeked is not None and peeked.method_list == ["totp"]
    assert tokens.consume_token(issued.raw, TokenType.PRE_AUTH, challenge_id="cookie-value", now=now)


def test_download_link_at_another_resource_consumes_nothing(user, now):
    issued = tokens.issue_download(user, resource="file:1", now=now)
    with pytest.raises(InvalidToken):
        tokens.consume_token(issued.raw, TokenType.SLICER_DOWNLOAD, resource="file:2", now=now)
    with pytest.raises(InvalidToken):
        tokens.consume_token(issued.raw, TokenType.SLICER_DOWNLOAD, now=now)
    assert tokens.consume_token(issued.raw, TokenType.SLICER_DOWNLOAD, resource="file:1", now=now).user_id == user.pk


def test_user_binding(user, other_user, now):
    issued = tokens.issue_email_otp_setup(user, code_hash="a" * 64, now=now)
    with pytest.raises(InvalidToken):
        tokens.consume_token(issued.raw, TokenType.EMAIL_OTP_SETUP, user=other_user, now=now)
    assert tokens.consume_token(issued.raw, TokenType.EMAIL_OTP_SETUP, user=user, now=now)


def test_code_hash_is_part_of_the_condition(user, now):
    issued = tokens.issue_email_otp_setup(user, code_hash="a" * 64, now=now)
    with pytest.raises(InvalidToken):
        tokens.consume_token(issued.raw, TokenType.EMAIL_OTP_SETUP, code_hash="b" * 64, now=now)
    assert tokens.consume_token(issued.raw, TokenType.EMAIL_OTP_SETUP, code_hash="a" * 64, now=now)


@pytest.mark.parametrize(
    "raw",
    [None, 42, b"bytes", ["list"], {"a": 1}, "", "x" * 100_000, "nul\x00byte", "\ud800", "émoji-🙂"],
)
def test_bad_raw_tokens_are_invalid_token_and_write_nothing(user, now, raw):
    issued = tokens.issue_password_reset(user, now=now)
    with pytest.raises(InvalidToken):
        tokens.consume_token(raw, TokenType.PASSWORD_RESET, now=now)
    assert tokens.peek_token(raw, TokenType.PASSWORD_RESET, now=now) is None
    assert EphemeralToken.objects.get().token == issued.token.token


@pytest.mark.parametrize("token_type", ["nope", None, 3, "PRE_AUTH", "pre_auth\x00"])
def test_unknown_token_type_is_invalid_input(user, now, token_type):
    with pytest.raises(InvalidInput):
        tokens.issue_token(token_type, user=user, now=now)
    with pytest.raises(InvalidInput):
        tokens.consume_token("x" * 43, token_type, now=now)
    assert not EphemeralToken.objects.exists()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"resource": "r" * 256},
        {"resource": "nul\x00"},
        {"resource": 7},
        {"resource": ""},
    ],
)
def test_bad_fields_are_invalid_input_and_write_nothing(user, now, kwargs):
    with pytest.raises(InvalidInput):
        tokens.issue_token(TokenType.SLICER_DOWNLOAD, user=user, now=now, **kwargs)
    assert not EphemeralToken.objects.exists()


def test_required_fields_per_type(user, now):
    with pytest.raises(InvalidInput):
        tokens.issue_token(TokenType.PRE_AUTH, user=user, methods="totp", now=now)  # no challenge
    with pytest.raises(InvalidInput):
        tokens.issue_token(TokenType.PASSWORD_RESET, now=now)  # no user
    with pytest.raises(InvalidInput):
        tokens.issue_token(TokenType.PASSWORD_RESET, user=user, resource="x", now=now)  # not its field
    assert not EphemeralToken.objects.exists()


def test_revoke(user, other_user, now):
    tokens.issue_password_reset(user, now=now)
    tokens.issue_password_reset(user, now=now)
    kept = tokens.issue_password_reset(other_user, now=now)
    download = tokens.issue_download(user, resource="f", now=now)
    assert tokens.revoke_tokens(user=user, token_type=TokenType.PASSWORD_RESET) == 2
    assert set(EphemeralToken.objects.values_list("pk", flat=True)) == {kept.token.pk, download.token.pk}
    with pytest.raises(InvalidInput):
        tokens.revoke_tokens()


def test_wrong_code_budget_burns_the_token(user, now):
    issued = tokens.issue_pre_auth(user, challenge="c", methods=["email"], now=now)
    results = [tokens.register_wrong_code(issued.token, max_attempts=3) for _ in range(3)]
    assert results == [True, True, False]
    assert not EphemeralToken.objects.exists()


def test_deleting_the_user_deletes_their_tokens(user, now):
    tokens.issue_password_reset(user, now=now)
    user.delete()
    assert not EphemeralToken.objects.exists()


def test_no_raw_token_or_digest_in_logs_or_signals(user, now, caplog):
    from ephemeral_auth.signals import token_consumed, token_issued

    seen = []

    def receiver(sender, token, **kwargs):
        seen.append(repr(vars(token)))

    token_issued.connect(receiver)
    token_consumed.connect(receiver)
    try:
        with caplog.at_level("DEBUG", logger="ephemeral_auth"):
            issued = tokens.issue_pre_auth(user, challenge="cookie-secret", methods=["totp"], now=now)
            with pytest.raises(InvalidToken):
                tokens.consume_token(issued.raw, TokenType.PRE_AUTH, challenge_id="wrong", now=now)
            tokens.consume_token(issued.raw, TokenType.PRE_AUTH, challenge_id="cookie-secret", now=now)
    finally:
        token_issued.disconnect(receiver)
        token_consumed.disconnect(receiver)
    assert len(seen) == 2
    logged = caplog.text
    assert "consumed pre_auth token" in logged
    for secret in (issued.raw, "cookie-secret", issued.token.token):
        assert secret not in logged
        assert not any(secret in s for s in seen if secret != issued.token.token)
