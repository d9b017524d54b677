"""The WebAuthn credentials admin: read only, no key material, deletion through the service."""

from __future__ import annotations

import pytest
from django.urls import reverse

from ephemeral_auth.admin import SECRET_FIELDS, WebAuthnCredentialAdmin
from ephemeral_auth.models import RecoveryCode, WebAuthnCredential
from ephemeral_auth.services import factors
from tests.factories import UserFactory
from tests.test_webauthn_login_web import enrol_key
from tests.webauthn_authenticator import b64
from tests.webauthn_support import relying_party  # noqa: F401 - the fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("relying_party")]


def test_admin_declares_no_key_material():
    exposed = set(WebAuthnCredentialAdmin.list_display) | set(WebAuthnCredentialAdmin.fields) | set(
        WebAuthnCredentialAdmin.search_fields
    )
    assert not exposed & SECRET_FIELDS[WebAuthnCredential]


def test_pages_show_no_key_material(admin_client):
    user = UserFactory()
    authenticator, done = enrol_key(user, name="Yellow key")
    row = done.credential
    changelist = admin_client.get(reverse("admin:ephemeral_auth_webauthncredential_changelist"))
    change = admin_client.get(reverse("admin:ephemeral_auth_webauthncredential_change", args=[row.pk]))
    for page in (changelist, change):
        assert page.status_code == 200
        text = page.content.decode()
        assert "Yellow key" in text
        for secret in (b64(authenticator.credential_id), row.credential_key, bytes(row.public_key).hex()):
            assert secret not in text
    add = admin_client.get(reverse("admin:ephemeral_auth_webauthncredential_add"))
    assert add.status_code == 403


def test_delete_goes_through_the_service(admin_client):
    user = UserFactory()
    _, done = enrol_key(user)
    before = factors.load_state(user).fingerprint
    url = reverse("admin:ephemeral_auth_webauthncredential_delete", args=[done.credential.pk])
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not WebAuthnCredential.objects.exists()
    assert factors.load_state(user).fingerprint != before
    assert not RecoveryCode.objects.filter(user=user).exists()


# The system checks of the WebAuthn settings (docs/settings.md).


def _ids(settings):
    from ephemeral_auth.checks import check_settings

    return {e.id for e in check_settings()}


def test_passkey_login_needs_a_relying_party_id(settings):
    settings.EPHEMERAL_AUTH_PASSKEY_LOGIN = True
    settings.EPHEMERAL_AUTH_WEBAUTHN_RP_ID = ""
    assert "ephemeral_auth.E025" in _ids(settings)
    settings.EPHEMERAL_AUTH_WEBAUTHN_RP_ID = "example.com"
    assert not {"ephemeral_auth.E025", "ephemeral_auth.E026"} & _ids(settings)


def test_webauthn_settings_types(settings):
    settings.EPHEMERAL_AUTH_WEBAUTHN_ORIGINS = "https://example.com"
    assert "ephemeral_auth.E026" in _ids(settings)
