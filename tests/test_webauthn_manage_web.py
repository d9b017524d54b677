"""Managing security keys and passkeys through HTTP: register, list, rename, remove, each behind a fresh proof."""

from __future__ import annotations

import pytest
from django.test import Client

from ephemeral_auth.models import RecoveryCode, TokenType, WebAuthnCredential
from ephemeral_auth.services import factors
from ephemeral_auth.signals import authenticator_added, authenticator_removed
from tests.factories import PASSWORD, UserFactory, enrol_totp, login_verified
from tests.test_webauthn_login_web import enrol_key, post, start_login
from tests.webauthn_authenticator import SoftAuthenticator
from tests.webauthn_support import relying_party, tokens_of  # noqa: F401 - relying_party: the fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("relying_party")]

COOKIE = "ephemeral_auth_webauthn"


def register(client, authenticator=None, *, name="Blue key", passkey=False, password=None):
    authenticator = authenticator or SoftAuthenticator()
    body = {"passkey": passkey}
    if password:
        body["password"] = password
    options = post(client, "/api/auth/2fa/webauthn/register/options/", body)
    if options.status_code != 200:
        return authenticator, options
    assert options.cookies[COOKIE]["httponly"]
    answer = authenticator.create(options.json()["publicKey"])
    done = {"credential": answer, "name": name, **({"password": password} if password else {})}
    return authenticator, post(client, "/api/auth/2fa/webauthn/register/", done)


@pytest.fixture
def signals_seen():
    seen = []

    def added(sender, user, method, **kwargs):
        seen.append(("added", method))

    def removed(sender, user, method, **kwargs):
        seen.append(("removed", method))

    authenticator_added.connect(added)
    authenticator_removed.connect(removed)
    yield seen
    authenticator_added.disconnect(added)
    authenticator_removed.disconnect(removed)


def test_first_key_of_a_fresh_sign_in_comes_with_recovery_codes(
    client, user, signals_seen, django_capture_on_commit_callbacks
):
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        _, response = register(client)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["credential"]["name"] == "Blue key" and body["credential"]["transports"] == ["nfc", "usb"]
    assert len(body["recovery_codes"]) == RecoveryCode.objects.filter(user=user).count() > 0
    assert response.cookies[COOKIE].value == ""
    assert signals_seen == [("added", "webauthn")]
    # This session enrolled the factor: it stays, verified.
    me = client.get("/api/auth/me/").json()
    assert me["authenticated"] and me["two_factor_verified"]
    listed = client.get("/api/auth/2fa/webauthn/").json()["credentials"]
    assert [c["name"] for c in listed] == ["Blue key"]
    assert "public_key" not in listed[0] and "credential_id" not in listed[0]


def test_registration_needs_a_fresh_proof(client, user, clock):
    client.force_login(user)
    clock.advance(3600)  # the sign-in is older than the reauthentication window, 2FA off
    _, refused = register(client)
    assert refused.status_code == 403 and refused.json()["error"] == "reauthentication_required"
    _, wrong = register(client, password="wrong")
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_credentials"
    _, done = register(client, password=PASSWORD)
    assert done.status_code == 200, done.content


def test_with_two_factor_on_an_unverified_session_cannot_add_a_key(user):
    enrol_totp(user)
    client = Client()
    client.force_login(user)
    _, refused = register(client)
    # The middleware hides a session that has not passed the second factor (401); the proof would refuse it (403).
    assert refused.status_code in (401, 403)
    assert not WebAuthnCredential.objects.exists()


def test_a_second_factor_added_to_totp_keeps_the_recovery_codes_and_revokes_pending_logins(user):
    enrol_totp(user)
    pending = start_login(Client(), user)
    assert pending["status"] == "2fa_required"
    client = login_verified(Client(), user)
    _, response = register(client)
    assert response.status_code == 200 and "recovery_codes" not in response.json()
    assert tokens_of(TokenType.PRE_AUTH) == 0
    assert factors.load_state(user).methods() == ["totp", "webauthn"]


def test_registration_cookie_of_another_browser_is_refused(user):
    mine = login_verified(Client(), user)
    theirs = login_verified(Client(), user)
    options = post(mine, "/api/auth/2fa/webauthn/register/options/")
    answer = SoftAuthenticator().create(options.json()["publicKey"])
    response = post(theirs, "/api/auth/2fa/webauthn/register/", {"credential": answer, "name": "Key"})
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"


def test_rename_and_remove(user, signals_seen, django_capture_on_commit_callbacks):
    _, done = enrol_key(user, name="Old")
    other = UserFactory()
    _, theirs = enrol_key(other, name="Theirs")
    client = login_verified(Client(), user)
    pk = done.credential.pk
    renamed = post(client, "/api/auth/2fa/webauthn/rename/", {"id": pk, "name": "  New   name "})
    assert renamed.status_code == 200
    assert WebAuthnCredential.objects.get(pk=pk).name == "New name"
    foreign = post(client, "/api/auth/2fa/webauthn/rename/", {"id": theirs.credential.pk, "name": "Mine"})
    assert foreign.status_code == 400 and foreign.json()["error"] == "invalid_input"
    bad_name = post(client, "/api/auth/2fa/webauthn/rename/", {"id": pk, "name": "a\u200bb" * 40})
    assert bad_name.status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        removed = post(client, "/api/auth/2fa/webauthn/remove/", {"id": pk})
    assert removed.status_code == 200
    assert not WebAuthnCredential.objects.filter(pk=pk).exists()
    assert WebAuthnCredential.objects.filter(pk=theirs.credential.pk).exists()
    assert signals_seen == [("removed", "webauthn")]
    assert not RecoveryCode.objects.filter(user=user).exists()  # the last factor took them along


def test_rename_and_remove_need_a_verified_session(user):
    _, done = enrol_key(user)
    client = Client()
    client.force_login(user)  # signed in, but the second factor not passed
    for url, body in (("/api/auth/2fa/webauthn/rename/", {"id": done.credential.pk, "name": "X"}),
                      ("/api/auth/2fa/webauthn/remove/", {"id": done.credential.pk})):
        response = post(client, url, body)
        assert response.status_code in (401, 403)
    assert WebAuthnCredential.objects.filter(pk=done.credential.pk, name="My key").exists()


def test_another_session_ends_when_a_key_is_added(user, settings):
    settings.EPHEMERAL_AUTH_TWO_FACTOR_STATE_MAX_AGE = 0
    enrol_totp(user)
    old = login_verified(Client(), user)
    mine = login_verified(Client(), user)
    _, response = register(mine)
    assert response.status_code == 200
    assert mine.get("/api/auth/me/").json()["authenticated"] is True
    assert old.get("/api/auth/me/").json()["authenticated"] is False


def test_anonymous_management_is_refused(client):
    for url in ("/api/auth/2fa/webauthn/register/options/", "/api/auth/2fa/webauthn/register/",
                "/api/auth/2fa/webauthn/rename/", "/api/auth/2fa/webauthn/remove/"):
        response = post(client, url, {})
        assert response.status_code == 401 and response.json()["error"] == "not_authenticated"


def test_webauthn_without_a_relying_party_is_not_enabled(user, settings):
    settings.EPHEMERAL_AUTH_WEBAUTHN_RP_ID = ""
    client = login_verified(Client(), user)
    response = post(client, "/api/auth/2fa/webauthn/register/options/")
    assert response.status_code == 403 and response.json()["error"] == "method_not_enabled"


def test_reauthenticate_does_not_take_a_key(user):
    enrol_key(user)
    client = login_verified(Client(), user)
    response = post(client, "/api/auth/reauthenticate/", {"method": "webauthn", "code": "x"})
    assert response.status_code == 403 and response.json()["error"] == "method_not_enabled"


def test_command_disable_removes_the_keys(user):
    from django.core.management import call_command

    enrol_key(user)
    call_command("ephemeral_auth_2fa", "disable", user.get_username(), "--yes")
    assert not WebAuthnCredential.objects.filter(user=user).exists()
