"""The HTML pages' WebAuthn parts: stable ids for the script (and the browser tests), no inline script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.test import Client

from ephemeral_auth.models import WebAuthnCredential
from tests.factories import PASSWORD, login_verified
from tests.test_webauthn_login_web import enrol_key
from tests.webauthn_support import relying_party  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db

SCRIPT = Path(__file__).resolve().parent.parent / "ephemeral_auth" / "static" / "ephemeral_auth" / "webauthn.js"


def no_inline_script(html):
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all("src=" in attrs and not body.strip() for attrs, body in scripts), scripts
    assert not re.search(r"\son[a-z]+=", html)


def test_the_script_ships_with_the_package():
    text = SCRIPT.read_text(encoding="utf-8")
    for needed in ("parseCreationOptionsFromJSON", "parseRequestOptionsFromJSON", "toJSON", "webauthn-register",
                   "webauthn-verify", "passkey-login", "webauthn-message"):
        assert needed in text


@pytest.mark.usefixtures("relying_party")
def test_login_page_offers_a_passkey_when_on(client, settings):
    page = client.get("/accounts/login/?next=/somewhere/").content.decode()
    assert 'id="passkey-login"' in page and 'data-next="/somewhere/"' in page
    assert 'data-options-url="/accounts/passkey/options/"' in page
    no_inline_script(page)
    settings.EPHEMERAL_AUTH_PASSKEY_LOGIN = False
    assert 'id="passkey-login"' not in client.get("/accounts/login/").content.decode()


def test_nothing_of_webauthn_without_a_relying_party(client, user):
    assert "webauthn" not in client.get("/accounts/login/").content.decode()
    login_verified(client, user)
    assert 'id="webauthn"' not in client.get("/accounts/2fa/").content.decode()


@pytest.mark.usefixtures("relying_party")
def test_settings_page_lists_the_keys_with_their_buttons(client, user):
    _, done = enrol_key(user, name="Green key")
    login_verified(client, user)
    page = client.get("/accounts/2fa/").content.decode()
    for needed in ('id="webauthn-register"', 'id="webauthn-name"', 'id="webauthn-passkey"', 'id="webauthn-message"',
                   f'data-credential-id="{done.credential.pk}"', 'class="webauthn-rename"', 'class="webauthn-remove"',
                   "Green key", 'data-register-options-url="/accounts/2fa/webauthn/register/options/"'):
        assert needed in page, needed
    no_inline_script(page)


@pytest.mark.usefixtures("relying_party")
def test_verify_page_offers_the_key_and_keeps_codes_for_the_form(user):
    enrol_key(user)
    client = Client()
    response = client.post("/accounts/login/?next=/after/", {"username": user.get_username(), "password": PASSWORD})
    assert response.status_code == 302
    page = client.get(response["Location"]).content.decode()
    assert 'id="webauthn-verify"' in page and 'data-next="/after/"' in page
    assert 'value="webauthn"' not in page  # the key is its own button, not a code method
    assert 'value="recovery"' in page
    no_inline_script(page)


@pytest.mark.usefixtures("relying_party")
def test_html_flow_json_endpoints_sit_beside_the_pages(user):
    client = login_verified(Client(), user)
    response = client.post("/accounts/2fa/webauthn/register/options/", {}, content_type="application/json")
    assert response.status_code == 200 and "publicKey" in response.json()
    assert not WebAuthnCredential.objects.exists()
