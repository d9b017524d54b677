"""WebAuthn ceremonies through the services, verified by fido2, driven by a software authenticator.

Every answer is built from real bytes (tests/webauthn_authenticator.py): a
P-256 key, authenticator data with flags and counter, ES256 signatures. The
challenge is a single-use row of the token table, consumed before fido2
checks the signature.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ephemeral_auth.exceptions import (
    CredentialCloned,
    InvalidCode,
    InvalidInput,
    InvalidToken,
    MethodNotEnabled,
    NotEnrolled,
)
from ephemeral_auth.models import EphemeralToken, TokenType, WebAuthnCredential
from ephemeral_auth.services import webauthn
from tests.factories import UserFactory
from tests.webauthn_authenticator import SoftAuthenticator, b64
from tests.webauthn_support import BROWSER, count, register, relying_party, tokens_of  # noqa: F401 - relying_party: the fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("relying_party")]


# Authentication: a second factor.


def test_second_factor_success_updates_counter_backup_state_and_last_use(user, clock, now):
    authenticator, credential = register(user, SoftAuthenticator(counter=10, backup_eligible=True))
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    assert options["allowCredentials"] == [
        {"type": "public-key", "id": b64(authenticator.credential_id), "transports": ["nfc", "usb"]}
    ]
    assert options["userVerification"] == "discouraged"
    assert options["rpId"] == "example.com"
    row = EphemeralToken.objects.get(token_type=TokenType.WEBAUTHN_LOGIN)
    assert row.user_id == user.pk

    authenticator.backed_up = True
    clock.advance(30)
    answer = authenticator.get(options, user_verified=False)
    signed_by, used = webauthn.complete_authentication(answer, browser_challenge=BROWSER, user=user)

    assert signed_by == user and used.pk == credential.pk
    credential.refresh_from_db()
    assert credential.sign_count == 11
    assert credential.backup_state is True
    assert credential.last_used_at == now + timedelta(seconds=30)
    assert tokens_of(TokenType.WEBAUTHN_LOGIN) == 0


def test_a_replayed_assertion_is_refused(user):
    authenticator, credential = register(user)
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    answer = authenticator.get(options)
    webauthn.complete_authentication(answer, browser_challenge=BROWSER, user=user)
    with pytest.raises(InvalidToken):
        webauthn.complete_authentication(answer, browser_challenge=BROWSER, user=user)
    credential.refresh_from_db()
    assert credential.sign_count == 1


def test_a_challenge_from_another_browser_is_refused_and_consumes_nothing(user):
    authenticator, _ = register(user)
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    answer = authenticator.get(options)
    for browser in ["another-browser", BROWSER + " ", "", None, 42, "x" * 5000, "a\x00b"]:
        with pytest.raises(InvalidToken):
            webauthn.complete_authentication(answer, browser_challenge=browser, user=user)  # type: ignore[arg-type]
    assert tokens_of(TokenType.WEBAUTHN_LOGIN) == 1
    # The rightful browser still completes.
    assert webauthn.complete_authentication(answer, browser_challenge=BROWSER, user=user)[0] == user


def test_an_expired_challenge_is_refused(user, clock):
    authenticator, _ = register(user)
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    clock.advance(5 * 60)
    with pytest.raises(InvalidToken):
        webauthn.complete_authentication(authenticator.get(options), browser_challenge=BROWSER, user=user)


def test_the_challenge_is_bound_to_the_user_and_the_key_to_its_owner(user, other_user):
    authenticator, _ = register(user)
    stranger, _ = register(other_user)
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    # Another user's key answering this user's challenge: consumed, then refused.
    with pytest.raises(InvalidCode):
        webauthn.complete_authentication(stranger.get(options), browser_challenge=BROWSER, user=user)
    # This user's challenge presented for the other user: no row matches.
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    with pytest.raises(InvalidToken):
        webauthn.complete_authentication(authenticator.get(options), browser_challenge=BROWSER, user=other_user)


def test_begin_needs_a_registered_credential_and_a_known_purpose(user):
    with pytest.raises(NotEnrolled):
        webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    with pytest.raises(InvalidInput):
        webauthn.begin_authentication(None, browser_challenge=BROWSER, purpose="second_factor")
    for purpose in ["login", None, 1, ["passkey"]]:
        with pytest.raises(InvalidInput):
            webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose=purpose)  # type: ignore[arg-type]
    assert not EphemeralToken.objects.exists()


@pytest.mark.parametrize(
    "spoil",
    [
        {"origin": "https://evil.example"},
        {"origin": "https://example.com.evil.example"},
        {"rp_id": "evil.example"},
        {"type_": "webauthn.create"},
        {"flags": 0},  # user presence missing
        {"client_extra": {"crossOrigin": True}},
        {"sign_with": "another key"},
        {"client_extra": {"extra": "signed over other client data"}, "resign": False},
    ],
)
def test_assertions_that_do_not_verify(user, spoil):
    from cryptography.hazmat.primitives.asymmetric import ec

    authenticator, credential = register(user)
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    spoil = dict(spoil)
    if spoil.get("sign_with"):
        spoil["sign_with"] = ec.generate_private_key(ec.SECP256R1())
    if spoil.pop("resign", True) is False:
        answer = authenticator.get(options)
        honest = authenticator.get(options, counter=authenticator.counter, client_extra=spoil["client_extra"])
        answer["response"]["clientDataJSON"] = honest["response"]["clientDataJSON"]  # not what was signed
    else:
        answer = authenticator.get(options, **spoil)
    with pytest.raises(InvalidCode):
        webauthn.complete_authentication(answer, browser_challenge=BROWSER, user=user)
    credential.refresh_from_db()
    assert credential.sign_count == 0 and credential.last_used_at is None
    assert tokens_of(TokenType.WEBAUTHN_LOGIN) == 0


def test_backup_eligibility_may_not_change(user):
    authenticator, _ = register(user, SoftAuthenticator(backup_eligible=False))
    authenticator.backup_eligible = True
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    with pytest.raises(InvalidCode):
        webauthn.complete_authentication(authenticator.get(options), browser_challenge=BROWSER, user=user)


# The signature counter.


def authenticate(user, authenticator, **get):
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    return webauthn.complete_authentication(authenticator.get(options, **get), browser_challenge=BROWSER, user=user)


@pytest.mark.parametrize(("stored", "presented"), [(5, 5), (5, 4), (5, 0), (0, 0)])
def test_a_counter_that_does_not_increase_is_refused_as_a_clone(user, caplog, stored, presented):
    authenticator, credential = register(user, SoftAuthenticator(counter=stored))
    if stored == presented == 0:
        # An authenticator without a counter: zero stays acceptable, every time.
        for _ in range(3):
            authenticate(user, authenticator, counter=0)
        return
    with caplog.at_level(logging.WARNING, logger="ephemeral_auth.webauthn"):
        with pytest.raises(CredentialCloned) as refused:
            authenticate(user, authenticator, counter=presented)
    assert refused.value.code == "credential_cloned"
    assert isinstance(refused.value, InvalidCode)
    assert "possible clone" in caplog.text
    credential.refresh_from_db()
    assert credential.sign_count == stored and credential.last_used_at is None


def test_a_counter_that_starts_from_zero_then_increases(user):
    authenticator, credential = register(user, SoftAuthenticator(counter=0))
    authenticate(user, authenticator, counter=3)
    authenticate(user, authenticator, counter=100)
    credential.refresh_from_db()
    assert credential.sign_count == 100
    with pytest.raises(CredentialCloned):
        authenticate(user, authenticator, counter=0)


def test_the_counter_update_is_conditional_on_the_counter_checked(user, monkeypatch):
    authenticator, _ = register(user)
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    answer = authenticator.get(options)
    # Another assertion of this credential lands between our SELECT and our UPDATE.
    from ephemeral_auth.services import webauthn as module

    real = module._record_use

    def racing(credential_row, auth_data, *, now):
        WebAuthnCredential.objects.filter(pk=credential_row.pk).update(sign_count=1)
        return real(credential_row, auth_data, now=now)

    monkeypatch.setattr(module, "_record_use", racing)
    with pytest.raises(InvalidCode):
        webauthn.complete_authentication(answer, browser_challenge=BROWSER, user=user)


# Passkey sign-in.


def test_passkey_sign_in_finds_the_user_from_the_credential(user, other_user):
    authenticator, credential = register(user, passkey=True)
    register(other_user, passkey=True)
    options = webauthn.begin_authentication(None, browser_challenge=BROWSER, purpose="passkey")
    assert options["userVerification"] == "required"
    assert "allowCredentials" not in options
    row = EphemeralToken.objects.get(token_type=TokenType.PASSKEY_LOGIN)
    assert row.user_id is None

    signed_by, used = webauthn.complete_authentication(authenticator.get(options), browser_challenge=BROWSER)
    assert signed_by == user and used.pk == credential.pk


def test_passkey_sign_in_for_a_known_user_narrows_the_credentials(user):
    authenticator, _ = register(user, passkey=True)
    options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="passkey")
    assert [c["id"] for c in options["allowCredentials"]] == [b64(authenticator.credential_id)]
    signed_by, _ = webauthn.complete_authentication(
        authenticator.get(options, user_handle=None), browser_challenge=BROWSER, user=user, purpose="passkey"
    )
    assert signed_by == user


@pytest.mark.parametrize(
    "spoil",
    [
        {"user_verified": False},
        {"user_handle": None},  # a discoverable sign-in must name its user
        {"user_handle": b"someone else"},
    ],
)
def test_passkey_sign_in_refusals(user, spoil):
    authenticator, _ = register(user, passkey=True)
    options = webauthn.begin_authentication(None, browser_challenge=BROWSER, purpose="passkey")
    with pytest.raises(InvalidCode):
        webauthn.complete_authentication(authenticator.get(options, **spoil), browser_challenge=BROWSER)


def test_passkey_sign_in_refuses_an_inactive_user():
    user = UserFactory(is_active=False)
    authenticator, _ = register(user, passkey=True)
    options = webauthn.begin_authentication(None, browser_challenge=BROWSER, purpose="passkey")
    with pytest.raises(InvalidCode):
        webauthn.complete_authentication(authenticator.get(options), browser_challenge=BROWSER)


def test_passkey_sign_in_needs_the_setting(user, settings):
    authenticator, _ = register(user, passkey=True)
    options = webauthn.begin_authentication(None, browser_challenge=BROWSER, purpose="passkey")
    settings.EPHEMERAL_AUTH_PASSKEY_LOGIN = False
    with pytest.raises(MethodNotEnabled):
        webauthn.begin_authentication(None, browser_challenge=BROWSER, purpose="passkey")
    with pytest.raises(MethodNotEnabled):
        webauthn.complete_authentication(authenticator.get(options), browser_challenge=BROWSER)
    assert tokens_of(TokenType.PASSKEY_LOGIN) == 1


def test_a_challenge_serves_only_its_own_ceremony(user):
    authenticator, _ = register(user, passkey=True)
    passkey_options = webauthn.begin_authentication(None, browser_challenge=BROWSER, purpose="passkey")
    with pytest.raises(InvalidToken):
        webauthn.complete_authentication(authenticator.get(passkey_options), browser_challenge=BROWSER, user=user)
    second_options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    with pytest.raises(InvalidToken):
        webauthn.complete_authentication(authenticator.get(second_options), browser_challenge=BROWSER)
    registration_options = webauthn.begin_registration(user, browser_challenge=BROWSER)
    with pytest.raises(InvalidToken):
        webauthn.complete_authentication(authenticator.get(registration_options), browser_challenge=BROWSER)
    assert EphemeralToken.objects.count() == 3


# Statements.


def test_statement_counts(user):
    authenticator = SoftAuthenticator()
    options, begin = count(lambda: webauthn.begin_registration(user, browser_challenge=BROWSER, passkey=True))
    answer = authenticator.create(options)
    _, complete = count(lambda: webauthn.complete_registration(user, answer, browser_challenge=BROWSER, name="k"))
    assert (len(begin), len(complete)) == (2, 2), (begin, complete)
    assert complete[0].startswith("DELETE") and "RETURNING" in complete[0]
    assert complete[1].startswith("INSERT")

    options, begin = count(
        lambda: webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    )
    answer = authenticator.get(options)
    _, complete = count(lambda: webauthn.complete_authentication(answer, browser_challenge=BROWSER, user=user))
    assert (len(begin), len(complete)) == (2, 3), (begin, complete)

    options, begin = count(lambda: webauthn.begin_authentication(None, browser_challenge=BROWSER, purpose="passkey"))
    answer = authenticator.get(options)
    _, complete = count(lambda: webauthn.complete_authentication(answer, browser_challenge=BROWSER))
    assert (len(begin), len(complete)) == (1, 3), (begin, complete)
    assert [s.split()[0] for s in complete] == ["DELETE", "SELECT", "UPDATE"]
    assert "JOIN" in complete[1]  # the user comes with the credential

    # A malformed answer costs nothing.
    with CaptureQueriesContext(connection) as malformed, pytest.raises(InvalidInput):
        webauthn.complete_authentication({}, browser_challenge=BROWSER)
    assert malformed.captured_queries == []


