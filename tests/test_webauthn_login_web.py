"""WebAuthn through HTTP: the security-key login step, and passkey sign-in, driven by the software authenticator.

Statement budgets (DB sessions, no cache): the security-key step is no
dearer than the TOTP step measured in the same test; passkey sign-in
(options + login) is at most 10 data statements.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from ephemeral_auth.models import EventType, RateLimitEvent, TokenType, UserTwoFactor, WebAuthnCredential
from ephemeral_auth.services import factors, webauthn_factor
from ephemeral_auth.services.proof import Proof
from tests.factories import PASSWORD, UserFactory, enrol_totp, totp_code
from tests.webauthn_authenticator import SoftAuthenticator
from tests.webauthn_support import relying_party, tokens_of  # noqa: F401 - relying_party: the fixture

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("relying_party")]

DATA_VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE")
COOKIE = "ephemeral_auth_webauthn"


def post(client, url, body=None):
    return client.post(url, body or {}, content_type="application/json")


def data_statements(captured):
    return [q["sql"] for q in captured if q["sql"].lstrip().split(" ", 1)[0].upper() in DATA_VERBS]


def enrol_key(user, authenticator=None, *, passkey=False, name="My key"):
    """Register a credential through the factor module (a trusted proof), as the endpoints do."""
    authenticator = authenticator or SoftAuthenticator()
    options = webauthn_factor.begin_registration(
        user, proof=Proof.trusted_caller(), browser_challenge="enrol", passkey=passkey
    )
    done = webauthn_factor.complete_registration(
        user, authenticator.create(options), proof=Proof.trusted_caller(), browser_challenge="enrol", name=name
    )
    return authenticator, done


def start_login(client, user):
    response = post(client, "/api/auth/login/", {"username": user.get_username(), "password": PASSWORD})
    assert response.status_code == 200, response.content
    return response.json()


def key_step(client, token, authenticator, **get):
    options = post(client, "/api/auth/2fa/webauthn/options/", {"pre_auth_token": token})
    assert options.status_code == 200, options.content
    answer = authenticator.get(options.json()["publicKey"], **get)
    return post(client, "/api/auth/2fa/verify/", {"pre_auth_token": token, "method": "webauthn", "credential": answer})


# The factor's state.


def test_a_key_is_a_second_factor_and_changes_the_fingerprint(user):
    before = factors.load_state(user)
    assert not before.enabled
    _, done = enrol_key(user)
    state = factors.load_state(user)
    assert state.enabled and state.webauthn and state.methods() == ["webauthn", "recovery"]
    assert done.recovery_codes  # the first factor comes with recovery codes
    assert state.fingerprint != before.fingerprint
    webauthn_factor.remove(user, done.credential.pk, proof=Proof.trusted_caller())
    after = factors.load_state(user)
    assert not after.enabled and after.fingerprint != state.fingerprint
    assert not after.has_recovery_codes  # the last factor took them along


def test_reset_two_factor_deletes_the_keys(user):
    from ephemeral_auth.services import two_factor

    enrol_key(user)
    assert two_factor.status(user)["webauthn"] == 1
    two_factor.reset_two_factor(user)
    assert not WebAuthnCredential.objects.filter(user=user).exists()
    assert not factors.load_state(user).enabled


# The login's second step.


def test_security_key_login(client, user):
    authenticator, _ = enrol_key(user)
    body = start_login(client, user)
    assert body["status"] == "2fa_required" and body["methods"] == ["webauthn", "recovery"]
    response = key_step(client, body["pre_auth_token"], authenticator)
    assert response.status_code == 200, response.content
    assert response.json()["user"]["two_factor_verified"] is True
    assert client.session["_auth_user_id"] == str(user.pk)
    assert tokens_of(TokenType.PRE_AUTH) == 0 and tokens_of(TokenType.WEBAUTHN_LOGIN) == 0


def test_the_dedicated_verify_endpoint_reads_the_pending_cookie_of_the_html_flow(client, user):
    authenticator, _ = enrol_key(user)
    response = client.post("/accounts/login/", {"username": user.get_username(), "password": PASSWORD})
    assert response.status_code == 302
    options = post(client, "/accounts/2fa/webauthn/options/")
    assert options.status_code == 200, options.content
    answer = authenticator.get(options.json()["publicKey"])
    done = post(client, "/accounts/2fa/webauthn/verify/", {"credential": answer})
    assert done.status_code == 200, done.content
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_wrong_signature_counts_against_the_budget_and_keeps_the_login(client, user, settings):
    from cryptography.hazmat.primitives.asymmetric import ec

    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"2fa_attempt": (2, 900)}
    authenticator, _ = enrol_key(user)
    body = start_login(client, user)
    stranger = ec.generate_private_key(ec.SECP256R1())
    first = key_step(client, body["pre_auth_token"], authenticator, sign_with=stranger)
    assert first.status_code == 401 and first.json()["error"] == "invalid_code"
    assert RateLimitEvent.objects.filter(event_type=EventType.TWO_FA_ATTEMPT).count() == 1
    second = key_step(client, body["pre_auth_token"], authenticator, sign_with=stranger)
    assert second.status_code == 401
    third = key_step(client, body["pre_auth_token"], authenticator, sign_with=stranger)
    assert third.status_code == 429 and third.json()["error"] == "rate_limited"
    # The owner's key still gets in: a valid signature cannot be guessed, the budget guards codes.
    assert key_step(client, body["pre_auth_token"], authenticator).status_code == 200


def test_a_replayed_assertion_is_refused(client, user):
    authenticator, _ = enrol_key(user)
    body = start_login(client, user)
    options = post(client, "/api/auth/2fa/webauthn/options/", {"pre_auth_token": body["pre_auth_token"]})
    answer = authenticator.get(options.json()["publicKey"])
    token = body["pre_auth_token"]
    verify = {"pre_auth_token": token, "method": "webauthn", "credential": answer}
    assert post(client, "/api/auth/2fa/verify/", verify).status_code == 200
    client.logout()
    again = post(client, "/api/auth/2fa/verify/", verify)
    assert again.status_code == 401 and again.json()["error"] == "invalid_token"


def test_another_browsers_challenge_is_refused(user):
    authenticator, _ = enrol_key(user)
    mine, theirs = Client(), Client()
    body = start_login(mine, user)
    options = post(mine, "/api/auth/2fa/webauthn/options/", {"pre_auth_token": body["pre_auth_token"]})
    answer = authenticator.get(options.json()["publicKey"])
    # Another browser with the token but not the challenge cookie gets nowhere.
    stolen = post(theirs, "/api/auth/2fa/verify/", {"pre_auth_token": body["pre_auth_token"], "method": "webauthn",
                                                    "credential": answer})
    assert stolen.status_code == 401 and stolen.json()["error"] == "invalid_token"
    # A second pending login of the same user in another browser cannot use this browser's challenge.
    other = start_login(theirs, user)
    crossed = post(theirs, "/api/auth/2fa/verify/", {"pre_auth_token": other["pre_auth_token"],
                                                     "method": "webauthn", "credential": answer})
    assert crossed.status_code == 401 and crossed.json()["error"] == "invalid_token"
    assert tokens_of(TokenType.WEBAUTHN_LOGIN) == 1


def test_options_for_a_login_that_may_not_use_a_key(client):
    totp_user = UserFactory()
    enrol_totp(totp_user)
    body = start_login(client, totp_user)
    response = post(client, "/api/auth/2fa/webauthn/options/", {"pre_auth_token": body["pre_auth_token"]})
    assert response.status_code == 403 and response.json()["error"] == "method_not_enabled"


def test_security_key_step_costs_no_more_than_the_totp_step(settings, clock, user):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    totp_user = UserFactory()
    secret = enrol_totp(totp_user)
    client = Client()
    body = start_login(client, totp_user)
    with CaptureQueriesContext(connection) as totp_step:
        response = post(client, "/api/auth/2fa/verify/", {"pre_auth_token": body["pre_auth_token"], "method": "totp",
                                                         "code": totp_code(secret, clock.now)})
        assert response.status_code == 200
    authenticator, _ = enrol_key(user)
    client = Client()
    body = start_login(client, user)
    options = post(client, "/api/auth/2fa/webauthn/options/", {"pre_auth_token": body["pre_auth_token"]})
    answer = authenticator.get(options.json()["publicKey"])
    with CaptureQueriesContext(connection) as key_step_queries:
        response = post(client, "/api/auth/2fa/verify/", {"pre_auth_token": body["pre_auth_token"],
                                                         "method": "webauthn", "credential": answer})
        assert response.status_code == 200
    totp_count = len(data_statements(totp_step.captured_queries))
    key = data_statements(key_step_queries.captured_queries)
    # pre_auth SELECT; challenge DELETE, credential SELECT, counter UPDATE; login(): session SELECT,
    # INSERT, last_login; the pre_auth DELETE; the session's save. No budget statement on success.
    assert len(key) <= totp_count, (key, totp_count)


# Passkey sign-in.


@pytest.fixture
def passkey_user(user):
    authenticator, _ = enrol_key(user, SoftAuthenticator(user_verified=True), passkey=True)
    return user, authenticator


def passkey_sign_in(client, authenticator, **get):
    options = post(client, "/api/auth/passkey/options/")
    assert options.status_code == 200, options.content
    assert COOKIE in options.cookies and options.cookies[COOKIE]["httponly"]
    answer = authenticator.get(options.json()["publicKey"], **get)
    return post(client, "/api/auth/passkey/login/", {"credential": answer})


def test_passkey_sign_in(client, passkey_user):
    user, authenticator = passkey_user
    response = passkey_sign_in(client, authenticator)
    assert response.status_code == 200, response.content
    assert response.json()["user"]["two_factor_verified"] is True
    assert client.session["_auth_user_id"] == str(user.pk)
    assert response.cookies[COOKIE].value == ""  # deleted
    assert client.get("/api/auth/me/").json()["two_factor_verified"] is True


def test_passkey_sign_in_off(client, passkey_user, settings):
    settings.EPHEMERAL_AUTH_PASSKEY_LOGIN = False
    response = post(client, "/api/auth/passkey/options/")
    assert response.status_code == 403 and response.json()["error"] == "method_not_enabled"
    response = post(client, "/api/auth/passkey/login/", {"credential": {}})
    assert response.status_code == 403 and response.json()["error"] == "method_not_enabled"
    assert not RateLimitEvent.objects.exists()


def test_passkey_sign_in_needs_user_verification(client, passkey_user):
    _, authenticator = passkey_user
    response = passkey_sign_in(client, authenticator, user_verified=False)
    assert response.status_code == 401 and response.json()["error"] == "invalid_code"
    assert "_auth_user_id" not in client.session
    # Counted for the address and for the account from this address (never the account's ceiling).
    kinds = set(RateLimitEvent.objects.values_list("event_type", flat=True))
    assert kinds == {EventType.PASSKEY_OPTIONS, EventType.LOGIN_IP, EventType.LOGIN_USER_IP}


def test_passkey_sign_in_of_an_inactive_user_is_refused(client, passkey_user):
    user, authenticator = passkey_user
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    response = passkey_sign_in(client, authenticator)
    assert response.status_code == 401
    assert "_auth_user_id" not in client.session


def test_passkey_options_are_rate_limited_per_address(client, passkey_user, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"passkey_options": (2, 300)}
    assert post(client, "/api/auth/passkey/options/").status_code == 200
    assert post(client, "/api/auth/passkey/options/").status_code == 200
    refused = post(client, "/api/auth/passkey/options/")
    assert refused.status_code == 429 and refused.json()["error"] == "rate_limited"
    assert tokens_of(TokenType.PASSKEY_LOGIN) == 2
    # Another address is not affected.
    assert post(Client(REMOTE_ADDR="203.0.113.7"), "/api/auth/passkey/options/").status_code == 200


def test_passkey_replay_and_another_browser_are_refused(passkey_user):
    _, authenticator = passkey_user
    mine, theirs = Client(), Client()
    options = post(mine, "/api/auth/passkey/options/")
    answer = authenticator.get(options.json()["publicKey"])
    stolen = post(theirs, "/api/auth/passkey/login/", {"credential": answer})
    assert stolen.status_code == 401 and stolen.json()["error"] == "invalid_token"
    assert post(mine, "/api/auth/passkey/login/", {"credential": answer}).status_code == 200
    mine.logout()
    mine.cookies[COOKIE] = options.cookies[COOKIE].value
    replay = post(mine, "/api/auth/passkey/login/", {"credential": answer})
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_token"


def test_passkey_sign_in_statement_budget(settings, passkey_user):
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    _, authenticator = passkey_user
    client = Client()
    with CaptureQueriesContext(connection) as captured:
        response = passkey_sign_in(client, authenticator)
        assert response.status_code == 200
    found = data_statements(captured.captured_queries)
    # options: the address's passkey_options INSERT and recount, the challenge INSERT; login: the
    # challenge DELETE, the credential SELECT (with its user and 2FA row), the counter UPDATE;
    # login(): the session SELECT and INSERT, last_login, the session's save. Nothing excluded.
    assert len(found) <= 10, found
    assert UserTwoFactor.objects.exists()


def test_a_key_beside_email_codes_lets_the_address_go(user):
    from ephemeral_auth.services import two_factor
    from tests.factories import enable_email_codes

    enable_email_codes(user)
    assert two_factor.email_removal_refused(user, "")
    enrol_key(user)
    assert not two_factor.email_removal_refused(user, "")
