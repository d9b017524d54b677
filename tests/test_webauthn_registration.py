"""WebAuthn registration and credential management through the services, verified by fido2.

The software authenticator (tests/webauthn_authenticator.py) builds real
attestation objects; the challenge is a single-use row of the token table.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from ephemeral_auth.exceptions import InvalidCode, InvalidInput, InvalidToken, MethodNotEnabled
from ephemeral_auth.models import EphemeralToken, TokenType, WebAuthnCredential
from ephemeral_auth.services import webauthn
from tests.webauthn_authenticator import BS, UP, UV, SoftAuthenticator, b64, unb64
from tests.webauthn_support import BROWSER, count, register, relying_party, tokens_of  # noqa: F401 - relying_party: the fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("relying_party")]


# Registration.


def test_registration_options_and_the_stored_credential(user):
    options = webauthn.begin_registration(user, browser_challenge=BROWSER)

    assert options["rp"] == {"name": "Example", "id": "example.com"}
    assert unb64(options["user"]["id"]) == webauthn.user_handle(user)
    assert options["user"]["name"] == user.get_username()
    assert len(unb64(options["challenge"])) == 32
    assert options["authenticatorSelection"]["residentKey"] == "discouraged"
    assert options["authenticatorSelection"]["userVerification"] == "discouraged"
    assert options["attestation"] == "none"
    assert options["timeout"] == 300_000
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]
    assert options["excludeCredentials"] == []
    # The challenge is a token row: only its digest is stored, bound to the browser and the user.
    row = EphemeralToken.objects.get(token_type=TokenType.WEBAUTHN_REGISTER)
    assert row.user_id == user.pk and row.mode == "second_factor"
    assert options["challenge"] not in (row.token, row.challenge_id)

    authenticator = SoftAuthenticator(counter=7, backup_eligible=True, backed_up=True, resident_key=None)
    credential = webauthn.complete_registration(
        user, authenticator.create(options), browser_challenge=BROWSER, name="  Blue   key "
    )

    credential.refresh_from_db()
    assert bytes(credential.credential_id) == authenticator.credential_id
    assert credential.credential_key == webauthn.credential_key(authenticator.credential_id)
    assert credential.user_id == user.pk
    assert credential.name == "Blue key"
    assert credential.sign_count == 7
    assert credential.aaguid == "00010203-0405-0607-0809-0a0b0c0d0e0f"
    assert credential.transport_list == ["nfc", "usb"]
    assert (credential.backup_eligible, credential.backup_state) == (True, True)
    assert credential.discoverable is None  # the client did not say (no credProps)
    assert credential.user_verified_at_registration is True
    assert bytes(credential.user_handle) == webauthn.user_handle(user)
    assert credential.last_used_at is None
    assert tokens_of(TokenType.WEBAUTHN_REGISTER) == 0


def test_registered_credentials_are_excluded_and_listed(user):
    first, _ = register(user)
    options = webauthn.begin_registration(user, browser_challenge=BROWSER)
    assert options["excludeCredentials"] == [
        {"type": "public-key", "id": b64(first.credential_id), "transports": ["nfc", "usb"]}
    ]
    second = SoftAuthenticator(transports=["internal", "bogus"])
    webauthn.complete_registration(user, second.create(options), browser_challenge=BROWSER, name="Laptop")
    assert [c.name for c in webauthn.list_credentials(user)] == ["My key", "Laptop"]
    assert webauthn.list_credentials(user)[1].transports == "internal"
    assert webauthn.has_credentials(user)


def test_a_credential_is_registered_once(user, other_user):
    authenticator, _ = register(user)
    with pytest.raises(InvalidInput):
        register(user, authenticator)
    with pytest.raises(InvalidInput):
        register(other_user, authenticator)
    assert WebAuthnCredential.objects.count() == 1


def test_passkey_registration_requires_the_setting_resident_key_and_user_verification(user, settings):
    settings.EPHEMERAL_AUTH_PASSKEY_LOGIN = False
    with pytest.raises(MethodNotEnabled):
        webauthn.begin_registration(user, browser_challenge=BROWSER, passkey=True)
    settings.EPHEMERAL_AUTH_PASSKEY_LOGIN = True

    options = webauthn.begin_registration(user, browser_challenge=BROWSER, passkey=True)
    assert options["authenticatorSelection"] == {
        "residentKey": "required",
        "userVerification": "required",
        "requireResidentKey": True,
    }
    assert options["extensions"] == {"credProps": True}
    with pytest.raises(InvalidCode):
        webauthn.complete_registration(
            user, SoftAuthenticator(user_verified=False).create(options), browser_challenge=BROWSER, name="k"
        )
    options = webauthn.begin_registration(user, browser_challenge=BROWSER, passkey=True)
    with pytest.raises(InvalidCode):
        webauthn.complete_registration(
            user, SoftAuthenticator(resident_key=False).create(options), browser_challenge=BROWSER, name="k"
        )
    _, credential = register(user, SoftAuthenticator(resident_key=None), passkey=True)
    assert credential.discoverable is True
    # A second-factor key needs no user verification.
    _, key = register(user, SoftAuthenticator(user_verified=False))
    assert key.user_verified_at_registration is False


@pytest.mark.parametrize(
    "spoil",
    [
        {"origin": "https://evil.example"},
        {"origin": "http://example.com"},
        {"rp_id": "evil.example"},
        {"type_": "webauthn.get"},
        {"flags": UV | 0x40},  # user presence missing
        {"flags": UP | UV | BS | 0x40},  # backed up but not backup eligible
        {"cose_key": {1: 2, 3: -999, -1: 1, -2: b"x" * 32, -3: b"y" * 32}},  # an algorithm nobody offered
        {"client_extra": {"crossOrigin": True}},
    ],
)
def test_registration_answers_that_do_not_verify(user, spoil):
    options = webauthn.begin_registration(user, browser_challenge=BROWSER)
    with pytest.raises(InvalidCode):
        webauthn.complete_registration(
            user, SoftAuthenticator().create(options, **spoil), browser_challenge=BROWSER, name="k"
        )
    assert not WebAuthnCredential.objects.exists()
    assert tokens_of(TokenType.WEBAUTHN_REGISTER) == 0  # consumed first: no second try with it


def test_registration_challenge_is_bound_to_browser_user_and_lifetime(user, other_user, clock):
    options = webauthn.begin_registration(user, browser_challenge=BROWSER)
    answer = SoftAuthenticator().create(options)
    for presented_user, browser in [(user, "another-browser"), (other_user, BROWSER), (user, BROWSER.upper())]:
        with pytest.raises(InvalidToken):
            webauthn.complete_registration(presented_user, answer, browser_challenge=browser, name="k")
    assert tokens_of(TokenType.WEBAUTHN_REGISTER) == 1  # nothing consumed
    clock.advance(5 * 60)
    with pytest.raises(InvalidToken):
        webauthn.complete_registration(user, answer, browser_challenge=BROWSER, name="k")


def test_a_challenge_the_server_never_issued_is_refused(user):
    webauthn.begin_registration(user, browser_challenge=BROWSER)
    answer = SoftAuthenticator().create({"user": {"id": b64(b"u")}, "challenge": b64(b"\x01" * 32)})
    with pytest.raises(InvalidToken):
        webauthn.complete_registration(user, answer, browser_challenge=BROWSER, name="k")


def test_the_relying_party_must_be_configured(user, settings):
    settings.EPHEMERAL_AUTH_WEBAUTHN_RP_ID = ""
    with pytest.raises(ImproperlyConfigured):
        webauthn.begin_registration(user, browser_challenge=BROWSER)
    settings.EPHEMERAL_AUTH_WEBAUTHN_RP_ID = "example.com"
    settings.EPHEMERAL_AUTH_WEBAUTHN_ORIGINS = "https://example.com"
    with pytest.raises(ImproperlyConfigured):
        webauthn.begin_registration(user, browser_challenge=BROWSER)


def test_without_configured_origins_fido2s_rule_applies(user, settings):
    settings.EPHEMERAL_AUTH_WEBAUTHN_ORIGINS = []
    _, credential = register(user, SoftAuthenticator(origin="https://login.example.com"))
    assert credential.pk
    with pytest.raises(InvalidCode):
        register(user, SoftAuthenticator(origin="http://example.com"))


def test_a_user_may_register_a_bounded_number_of_credentials(user, monkeypatch):
    monkeypatch.setattr(webauthn, "MAX_CREDENTIALS", 2)
    register(user)
    register(user)
    with pytest.raises(InvalidInput):
        webauthn.begin_registration(user, browser_challenge=BROWSER)



# Managing credentials.


def test_rename_and_remove_only_ones_own_credentials(user, other_user):
    _, credential = register(user)
    _, foreign = register(other_user)
    webauthn.rename_credential(user, credential.pk, name="Yubikey 5")
    credential.refresh_from_db()
    assert credential.name == "Yubikey 5"
    for bad in ["", "   ", "x" * 65, "a\x00b", "tab\tbell\x07", "zero\u200bwidth", None, 5, "\ud800"]:
        with pytest.raises(InvalidInput):
            webauthn.rename_credential(user, credential.pk, name=bad)  # type: ignore[arg-type]
    for not_mine in [foreign.pk, 0, -1, True, "1", None, 2**70]:
        with pytest.raises(InvalidInput):
            webauthn.rename_credential(user, not_mine, name="mine")
        with pytest.raises(InvalidInput):
            webauthn.remove_credential(user, not_mine)
    webauthn.remove_credential(user, credential.pk)
    assert not webauthn.has_credentials(user)
    assert webauthn.has_credentials(other_user)


def test_deleting_a_user_deletes_their_credentials_and_challenges(user):
    register(user)
    webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
    user.delete()
    assert not WebAuthnCredential.objects.exists()
    assert not EphemeralToken.objects.exists()


def test_the_admin_string_shows_no_key_material(user):
    _, credential = register(user)
    assert str(credential) == f"WebAuthn credential #{credential.pk} of user #{user.pk}"


def test_statement_counts_of_managing_credentials(user):
    _, credential = register(user)
    for call, expected in [
        (lambda: webauthn.list_credentials(user), ["SELECT"]),
        (lambda: webauthn.has_credentials(user), ["SELECT"]),
        (lambda: webauthn.rename_credential(user, credential.pk, name="New"), ["UPDATE"]),
        (lambda: webauthn.remove_credential(user, credential.pk), ["DELETE"]),
    ]:
        _, sql = count(call)
        assert [s.split()[0] for s in sql] == expected, sql
