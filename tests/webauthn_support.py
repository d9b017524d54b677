"""Shared by the WebAuthn tests: the relying party's settings and a registration helper."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from ephemeral_auth.models import EphemeralToken
from ephemeral_auth.services import webauthn
from tests.webauthn_authenticator import SoftAuthenticator

BROWSER = "the-browser-challenge-cookie"


@pytest.fixture
def relying_party(settings):
    settings.EPHEMERAL_AUTH_WEBAUTHN_RP_ID = "example.com"
    settings.EPHEMERAL_AUTH_WEBAUTHN_RP_NAME = "Example"
    settings.EPHEMERAL_AUTH_WEBAUTHN_ORIGINS = ["https://example.com"]
    settings.EPHEMERAL_AUTH_PASSKEY_LOGIN = True
    return settings


def register(user, authenticator=None, *, passkey=False, name="My key", **create):
    authenticator = authenticator or SoftAuthenticator()
    options = webauthn.begin_registration(user, browser_challenge=BROWSER, passkey=passkey)
    credential = webauthn.complete_registration(
        user, authenticator.create(options, **create), browser_challenge=BROWSER, name=name
    )
    return authenticator, credential


def tokens_of(token_type):
    return EphemeralToken.objects.filter(token_type=token_type).count()


def count(call):
    """The data statements of ``call`` (the test's own transaction adds a SAVEPOINT around the
    credential's INSERT; in autocommit, as the views run, the atomic block adds no statement)."""
    with CaptureQueriesContext(connection) as captured:
        result = call()
    sql = [q["sql"] for q in captured.captured_queries]
    return result, [s for s in sql if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]
