"""POST reauthenticate/ with a security key: options bound to this browser, the answer as ``credential``."""

from __future__ import annotations

import pytest
from django.test import Client

from ephemeral_auth.auth.session import AUTHENTICATED_AT_KEY
from ephemeral_auth.models import EventType, RateLimitEvent, TokenType
from ephemeral_auth.services import ratelimit, webauthn_factor
from ephemeral_auth.services.budget import two_factor_key
from ephemeral_auth.services.proof import Proof
from tests.factories import UserFactory, login_verified
from tests.webauthn_authenticator import SoftAuthenticator
from tests.webauthn_support import relying_party, tokens_of  # noqa: F401 - relying_party: the fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("relying_party")]

OPTIONS = "/api/auth/reauthenticate/webauthn/options/"
URL = "/api/auth/reauthenticate/"


def post(client, url, body=None):
    return client.post(url, body or {}, content_type="application/json")


@pytest.fixture
def keyed(clock):
    user = UserFactory()
    authenticator = SoftAuthenticator()
    options = webauthn_factor.begin_registration(user, proof=Proof.trusted_caller(), browser_challenge="enrol")
    webauthn_factor.complete_registration(
        user, authenticator.create(options), proof=Proof.trusted_caller(), browser_challenge="enrol", name="Key"
    )
    return user, authenticator


def answer_of(client, authenticator, **get):
    options = post(client, OPTIONS)
    assert options.status_code == 200, options.content
    return authenticator.get(options.json()["publicKey"], **get)


def test_a_key_renews_the_proof(client, clock, keyed):
    user, authenticator = keyed
    login_verified(client, user)
    clock.advance(3600)
    answer = answer_of(client, authenticator)
    response = post(client, URL, {"method": "webauthn", "credential": answer})
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"
    assert client.session[AUTHENTICATED_AT_KEY] == int(clock.now.timestamp())
    assert tokens_of(TokenType.WEBAUTHN_LOGIN) == 0  # the challenge is used up
    # The same answer again: its challenge is gone.
    again = post(client, URL, {"method": "webauthn", "credential": answer})
    assert again.status_code == 401 and again.json()["error"] == "invalid_token"


def test_a_wrong_signature_is_refused_and_spends_the_budget(client, clock, keyed):
    user, authenticator = keyed
    login_verified(client, user)
    clock.advance(3600)
    forged = answer_of(client, authenticator, sign_with=SoftAuthenticator().key)
    response = post(client, URL, {"method": "webauthn", "credential": forged})
    assert response.status_code == 401 and response.json()["error"] == "invalid_code"
    assert ratelimit.count(EventType.TWO_FA_ATTEMPT, two_factor_key(user), now=clock.now) == 1
    assert AUTHENTICATED_AT_KEY not in client.session or client.session[AUTHENTICATED_AT_KEY] < clock.now.timestamp()


def test_another_browsers_options_are_refused(client, clock, keyed):
    user, authenticator = keyed
    other = Client()
    login_verified(other, user)
    answer = answer_of(other, authenticator)  # the challenge is bound to the other browser's cookie
    login_verified(client, user)
    response = post(client, URL, {"method": "webauthn", "credential": answer})
    assert response.status_code == 401 and response.json()["error"] == "invalid_token"
    assert tokens_of(TokenType.WEBAUTHN_LOGIN) == 1  # nothing consumed: the other browser may still use it


def test_a_user_without_a_key_is_refused(client, clock):
    login_verified(client, UserFactory())
    response = post(client, URL, {"method": "webauthn", "credential": {"id": "x"}})
    assert response.status_code == 403 and response.json()["error"] == "method_not_enabled"
    options = post(client, OPTIONS)
    assert options.status_code == 400 and options.json()["error"] == "not_enrolled"
    assert not RateLimitEvent.objects.exists()


@pytest.mark.parametrize("credential", [None, "", "{", 7, [], {"id": 1}, {"response": "x" * 10}])
def test_malformed_answers_are_invalid_input(client, clock, keyed, credential):
    user, _ = keyed
    login_verified(client, user)
    response = post(client, URL, {"method": "webauthn", "credential": credential})
    assert response.status_code == 400 and response.json()["error"] == "invalid_input"


def test_anonymous_options_are_refused(client):
    response = post(client, OPTIONS)
    assert response.status_code in (401, 403)
