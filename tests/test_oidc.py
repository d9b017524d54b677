"""OIDC sign-in through the HTTP views, against the provider STAND-IN (tests/oidc_standin_provider.py).

The stand-in is used here for speed and for the cases a real provider will not
produce (bad signatures, foreign audiences, token endpoint failures...). The
same flows against a real OpenID provider are in tests/e2e/test_oidc_e2e.py.
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from ephemeral_auth import clock, crypto
from ephemeral_auth.models import EphemeralToken, OIDCIdentity, TokenType
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

COOKIE = "ephemeral_auth_oidc"


def flow_cookie(client, state):
    """The binding cookie of the flow whose state this is (one fresh cookie per flow)."""
    return client.cookies[f"{COOKIE}_{crypto.digest_token(state)[:16]}"]


def authorize(client, provider="standin", **params):
    """Start a flow; return the provider URL the browser is sent to."""
    response = client.get(reverse("ephemeral_auth_api:oidc_authorize", args=[provider]), params)
    assert response.status_code == 302, response
    return response["Location"]


def sign_in(client, standin, *, provider="standin", **params):
    """Run a whole flow through the stand-in; return the callback's response."""
    location = authorize(client, provider, **params)
    return client.get(standin.approve(location))


def query(url):
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def fragment(url):
    return {k: v[0] for k, v in parse_qs(urlsplit(url).fragment).items()}


def error_code(response):
    assert response.status_code == 302
    return query(response["Location"]).get("oidc_error") or fragment(response["Location"]).get("oidc_error")


def data_statements(queries):
    verbs = ("SELECT", "INSERT", "UPDATE", "DELETE")
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith(verbs)]


@pytest.fixture
def linked_user(oidc_standin):
    user = UserFactory(email="alice@example.com")
    OIDCIdentity.objects.create(user=user, provider="standin", subject=oidc_standin.account["sub"])
    return user


# Authorize.


def test_authorize_redirects_with_state_nonce_and_pkce(client, oidc_standin):
    location = authorize(client, next="/after/")
    params = query(location)
    assert location.startswith(f"{oidc_standin.issuer}/authorize?")
    assert params["client_id"] == oidc_standin.client_id
    # The provider's own callback: a response can only come back to its own flows.
    assert params["redirect_uri"] == "http://testserver/api/auth/oidc/standin/callback/"
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["scope"] == "openid email profile"
    row = EphemeralToken.objects.get(token_type=TokenType.OIDC_STATE)
    # The database has the digest of the state, never the state itself.
    assert row.token == crypto.digest_token(params["state"]) and params["state"] != row.token
    assert row.nonce == params["nonce"] and row.next_url == "/after/" and row.mode == "session"
    assert 43 <= len(row.code_verifier) <= 128
    cookie = flow_cookie(client, params["state"])
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["max-age"] == 600
    assert row.challenge_id == crypto.digest_token(cookie.value)


def test_authorize_ignores_an_open_redirect(client, oidc_standin):
    authorize(client, next="https://evil.example/phish")
    authorize(client, next="//evil.example/")
    assert set(EphemeralToken.objects.values_list("next_url", flat=True)) == {""}


def test_authorize_allows_a_configured_spa_host(client, oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_REDIRECT_ALLOWED_HOSTS = ["app.example.com"]
    authorize(client, next="http://app.example.com/spa/", mode="spa")
    assert EphemeralToken.objects.get().next_url == "http://app.example.com/spa/"


def test_every_flow_gets_a_fresh_binding_of_its_own(client, oidc_standin):
    first_state = query(authorize(client))["state"]
    second_state = query(authorize(client))["state"]
    first, second = flow_cookie(client, first_state).value, flow_cookie(client, second_state).value
    assert first != second  # two tabs: neither overwrites the other's cookie
    for state, value in ((first_state, first), (second_state, second)):
        row = EphemeralToken.objects.get(token=crypto.digest_token(state))
        assert row.challenge_id == crypto.digest_token(value)


def test_a_planted_binding_cookie_is_never_adopted(client, oidc_standin):
    """Login CSRF: a sibling subdomain plants a binding value it knows; the next flow must not use it."""
    planted = "p" * 43
    client.cookies[COOKIE] = planted
    for name in [f"{COOKIE}_{'0' * 16}"]:
        client.cookies[name] = planted
    state = query(authorize(client))["state"]
    assert flow_cookie(client, state).value != planted
    assert not EphemeralToken.objects.filter(challenge_id=crypto.digest_token(planted)).exists()


@pytest.mark.parametrize(
    ("provider", "params", "code"),
    [
        ("nope", {}, "unknown_provider"),
        ("standin", {"mode": "popup"}, "invalid_request"),
    ],
)
def test_authorize_refusals_redirect_with_a_code(client, oidc_standin, provider, params, code):
    response = client.get(reverse("ephemeral_auth_api:oidc_authorize", args=[provider]), params)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?")
    assert query(response["Location"])["oidc_error"] == code
    assert not EphemeralToken.objects.exists()


def test_authorize_when_discovery_is_unreachable(client, oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(discovery_url="http://127.0.0.1:9/.well-known/openid-configuration")
    }
    response = client.get(reverse("ephemeral_auth_api:oidc_authorize", args=["standin"]))
    assert error_code(response) == "network_error"
    assert not EphemeralToken.objects.exists()


def test_plain_http_endpoints_are_refused_off_loopback(client, oidc_standin, settings):
    settings.DEBUG = False
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(
            discovery_url="",
            issuer="http://idp.example.com",
            authorization_endpoint="http://idp.example.com/authorize",
            token_endpoint="https://idp.example.com/token",
            jwks_uri="https://idp.example.com/jwks",
        )
    }
    response = client.get(reverse("ephemeral_auth_api:oidc_authorize", args=["standin"]))
    assert error_code(response) == "provider_misconfigured"


def test_discovery_is_cached(client, oidc_standin):
    sign_in(client, oidc_standin)
    sign_in(client, oidc_standin)
    assert oidc_standin.requests.count(("GET", "/.well-known/openid-configuration")) == 1
    assert oidc_standin.requests.count(("GET", "/jwks")) == 1
    assert oidc_standin.requests.count(("POST", "/token")) == 2


# Session mode.


def test_session_mode_creates_links_and_logs_in(client, oidc_standin):
    response = sign_in(client, oidc_standin, next="/after/")
    assert response.status_code == 302 and response["Location"] == "/after/"
    identity = OIDCIdentity.objects.get(provider="standin", subject="alice-sub")
    assert client.session[SESSION_KEY] == str(identity.user.pk)
    assert identity.user.email == "alice@example.com" and not identity.user.has_usable_password()
    assert not EphemeralToken.objects.filter(token_type=TokenType.OIDC_STATE).exists()


def test_session_mode_without_next_goes_to_login_redirect_url(client, oidc_standin, settings):
    settings.LOGIN_REDIRECT_URL = "/home/"
    assert sign_in(client, oidc_standin)["Location"] == "/home/"


def test_linked_identity_statement_budget(client, oidc_standin, linked_user, settings):
    """authorize + callback for a linked user without 2FA: at most 9 data statements (DB sessions).

    7 before the per-address cap on authorize/; the cap's conditional INSERT and recount add 2.
    """
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    client.get(reverse("ephemeral_auth_api:oidc_providers"))  # warm imports, no DB
    sign_in(client, oidc_standin)  # warm the discovery and JWKS caches
    client.logout()
    client.cookies.pop(settings.SESSION_COOKIE_NAME, None)
    with CaptureQueriesContext(connection) as captured:
        response = sign_in(client, oidc_standin, next="/after/")
    assert response["Location"] == "/after/"
    assert client.session[SESSION_KEY] == str(linked_user.pk)
    statements = data_statements(captured.captured_queries)
    assert len(statements) <= 9, "\n".join(statements)


@pytest.fixture
def linking(settings, oidc_standin):
    """The stand-in with linking by verified email turned on (it is off by default)."""
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"standin": oidc_standin.provider_settings(link_by_verified_email=True)}


def test_existing_account_is_not_linked_by_email_by_default(client, oidc_standin):
    UserFactory(email="alice@example.com")
    assert error_code(sign_in(client, oidc_standin)) == "account_exists"
    assert not OIDCIdentity.objects.exists() and SESSION_KEY not in client.session


def test_existing_account_is_linked_by_verified_email(client, oidc_standin, linking):
    user = UserFactory(email="Alice@Example.com")
    sign_in(client, oidc_standin)
    assert client.session[SESSION_KEY] == str(user.pk)
    assert OIDCIdentity.objects.get().user == user


def test_unverified_email_never_links(client, oidc_standin):
    UserFactory(email="alice@example.com")
    oidc_standin.account["email_verified"] = False
    assert error_code(sign_in(client, oidc_standin)) == "email_not_verified"
    assert not OIDCIdentity.objects.exists() and SESSION_KEY not in client.session


def test_unverified_email_creates_an_account_without_the_email(client, oidc_standin):
    oidc_standin.account["email_verified"] = False
    sign_in(client, oidc_standin)
    assert OIDCIdentity.objects.get().user.email == ""


def test_entra_style_provider_without_email_verified(client, oidc_standin, settings):
    user = UserFactory(email="alice@example.com")
    del oidc_standin.account["email_verified"]
    assert error_code(sign_in(client, oidc_standin)) == "email_not_verified"
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(assume_email_verified=True, link_by_verified_email=True)
    }
    sign_in(client, oidc_standin)
    assert client.session[SESSION_KEY] == str(user.pk)


def test_linking_by_email_can_be_turned_off(client, oidc_standin, settings):
    UserFactory(email="alice@example.com")
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"standin": oidc_standin.provider_settings(link_by_verified_email=False)}
    assert error_code(sign_in(client, oidc_standin)) == "account_exists"


def test_an_account_linked_to_another_subject_is_not_relinked(client, oidc_standin, linking):
    user = UserFactory(email="alice@example.com")
    OIDCIdentity.objects.create(user=user, provider="standin", subject="someone-else")
    assert error_code(sign_in(client, oidc_standin)) == "account_conflict"


def test_no_account_and_creation_off(client, oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"standin": oidc_standin.provider_settings(create_users=False)}
    assert error_code(sign_in(client, oidc_standin)) == "account_not_found"
    assert not get_user_model().objects.exists()


def test_inactive_user_is_refused(client, oidc_standin, linked_user):
    linked_user.is_active = False
    linked_user.save()
    assert error_code(sign_in(client, oidc_standin)) == "account_inactive"
    assert SESSION_KEY not in client.session


def test_new_username_avoids_collisions(client, oidc_standin):
    UserFactory(username="alice", email="other@example.com")
    oidc_standin.account["preferred_username"] = "alice"
    sign_in(client, oidc_standin)
    user = OIDCIdentity.objects.get().user
    assert user.username.startswith("alice") and user.username != "alice"


def test_failure_keeps_the_flow_next_for_a_retry(client, oidc_standin):
    oidc_standin.token_status = 400
    response = sign_in(client, oidc_standin, next="/after/")
    assert query(response["Location"]) == {"oidc_error": "token_error", "next": "/after/"}


def test_strict_session_cookie_continues_through_a_same_site_page(client, oidc_standin, settings):
    settings.SESSION_COOKIE_SAMESITE = "Strict"
    response = sign_in(client, oidc_standin, next="/after/")
    assert response.status_code == 200
    assert b'http-equiv="refresh" content="0;url=/after/"' in response.content
    assert settings.SESSION_COOKIE_NAME in response.cookies
    assert client.session[SESSION_KEY]


# Callback: the state.


def test_replayed_state_is_refused(client, oidc_standin):
    location = authorize(client)
    callback = oidc_standin.approve(location)
    assert client.get(callback)["Location"] == "/"
    client.logout()
    assert error_code(client.get(callback)) == "invalid_state"


def test_expired_state_is_refused(client, oidc_standin, monkeypatch):
    location = authorize(client)
    later = clock.now() + timedelta(minutes=10, seconds=1)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert error_code(client.get(oidc_standin.approve(location))) == "invalid_state"
    assert SESSION_KEY not in client.session


def test_state_ttl_is_configurable(client, oidc_standin, settings):
    settings.EPHEMERAL_AUTH_TOKEN_TTLS = {"oidc_state": 60}
    state = query(authorize(client))["state"]
    assert flow_cookie(client, state)["max-age"] == 60


def test_callback_in_another_browser_consumes_nothing(client, oidc_standin, django_user_model):
    from django.test import Client

    location = authorize(client)
    callback = oidc_standin.approve(location)
    other_browser = Client()
    assert error_code(other_browser.get(callback)) == "invalid_state"
    assert SESSION_KEY not in other_browser.session
    # Nothing burnt: the browser that started the flow can still finish it.
    assert EphemeralToken.objects.filter(token_type=TokenType.OIDC_STATE).count() == 1
    assert client.get(callback)["Location"] == "/"
    assert client.session[SESSION_KEY]


def test_callback_with_another_browsers_cookie_is_refused(client, oidc_standin):
    from django.test import Client

    callback = oidc_standin.approve(authorize(client))
    other_browser = Client()
    authorize(other_browser)  # has a binding cookie, but for its own flows
    assert error_code(other_browser.get(callback)) == "invalid_state"
    assert SESSION_KEY not in other_browser.session


def test_provider_error_consumes_the_state(client, oidc_standin):
    location = authorize(client)
    response = client.get(oidc_standin.refuse(location))
    assert error_code(response) == "provider_error"
    assert not EphemeralToken.objects.exists()
    assert oidc_standin.requests.count(("POST", "/token")) == 0


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({}, "invalid_request"),
        ({"state": "x" * 513, "code": "c"}, "invalid_request"),
        ({"state": "not-a-known-state", "code": "c"}, "invalid_state"),
        ({"state": "nul\x00byte", "code": "c"}, "invalid_request"),
    ],
)
def test_bad_callback_parameters(client, oidc_standin, params, code):
    authorize(client)
    assert error_code(client.get(reverse("ephemeral_auth_api:oidc_callback"), params)) == code
    assert oidc_standin.requests.count(("POST", "/token")) == 0


@pytest.mark.parametrize("code", ["", "c" * 2049])
def test_missing_or_oversized_code_consumes_the_state(client, oidc_standin, code):
    state = query(authorize(client))["state"]
    callback = reverse("ephemeral_auth_api:oidc_provider_callback", args=["standin"])
    response = client.get(callback, {"state": state, "code": code})
    assert error_code(response) == "invalid_request"
    assert not EphemeralToken.objects.exists()


def test_issuer_parameter_mix_up_is_refused(client, oidc_standin):
    location = authorize(client)
    response = client.get(oidc_standin.approve(location, iss="https://other-idp.example"))
    assert error_code(response) == "iss_mismatch"
    assert not EphemeralToken.objects.exists()


# Callback: the provider's answers (stand-in only: a real provider does not misbehave on demand).


@pytest.mark.parametrize(
    ("bend", "code"),
    [
        (lambda s: setattr(s, "token_status", 400), "token_error"),
        (lambda s: setattr(s, "token_status", 500), "token_error"),
        (lambda s: setattr(s, "drop_token_connection", True), "network_error"),
        (lambda s: setattr(s, "omit_id_token", True), "id_token_invalid"),
        (lambda s: setattr(s, "sign_with_other_key", True), "id_token_invalid"),
        (lambda s: s.id_token_overrides.update(exp=1_000_000), "id_token_expired"),
        (lambda s: s.id_token_overrides.update(iss="https://other-idp.example"), "iss_mismatch"),
        (lambda s: s.id_token_overrides.update(aud="another-client"), "aud_mismatch"),
        (lambda s: s.id_token_overrides.update(aud=["standin-client", "x"], azp="x"), "aud_mismatch"),
        (lambda s: s.id_token_overrides.update(nonce="not-the-nonce"), "nonce_mismatch"),
        (lambda s: s.id_token_overrides.update(nonce=s.DELETE), "nonce_mismatch"),
        (lambda s: s.id_token_overrides.update(iat=s.DELETE), "id_token_invalid"),
        (lambda s: s.userinfo_overrides.update(sub="someone-else"), "userinfo_error"),
        (lambda s: s.account.update(sub=""), "missing_claims"),
    ],
)
def test_provider_misbehaviour_ends_in_a_code(client, oidc_standin, bend, code):
    bend(oidc_standin)
    response = sign_in(client, oidc_standin)
    assert error_code(response) == code
    assert SESSION_KEY not in client.session
    assert not EphemeralToken.objects.exists()
    assert not OIDCIdentity.objects.exists()


def test_unknown_provider_at_callback(client, oidc_standin, settings):
    location = authorize(client)
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {}
    assert error_code(client.get(oidc_standin.approve(location))) == "unknown_provider"
    assert not EphemeralToken.objects.exists()


# Parallel flows.


def test_two_tabs_each_keep_their_next(client, oidc_standin):
    first = authorize(client, next="/first/")
    second = authorize(client, next="/second/")
    assert client.get(oidc_standin.approve(second))["Location"] == "/second/"
    assert client.get(oidc_standin.approve(first))["Location"] == "/first/"


def test_no_session_is_needed_at_the_callback(client, oidc_standin, settings):
    location = authorize(client, next="/after/")
    client.cookies.pop(settings.SESSION_COOKIE_NAME, None)  # what SameSite=Strict does cross-site
    assert client.get(oidc_standin.approve(location))["Location"] == "/after/"


# SPA mode.


def test_spa_mode_puts_an_exchange_token_in_the_fragment(client, oidc_standin):
    response = sign_in(client, oidc_standin, mode="spa", next="/spa/")
    assert response.status_code == 302
    target = urlsplit(response["Location"])
    assert target.path == "/spa/" and target.query == ""
    raw = fragment(response["Location"])["oidc_token"]
    row = EphemeralToken.objects.get(token_type=TokenType.OIDC_EXCHANGE)
    assert row.token == crypto.digest_token(raw) and row.provider == "standin"
    assert response["Referrer-Policy"] == "no-referrer"
    # The callback itself logs nobody in: the SPA does, by redeeming the token.
    assert SESSION_KEY not in client.session


def test_spa_mode_errors_go_to_the_spa(client, oidc_standin):
    location = authorize(client, mode="spa", next="/spa/")
    response = client.get(oidc_standin.refuse(location))
    assert response["Location"] == "/spa/#oidc_error=provider_error"


def test_spa_mode_without_next_uses_the_spa_url(client, oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_SPA_URL = "/app/"
    response = sign_in(client, oidc_standin, mode="spa")
    assert response["Location"].startswith("/app/#oidc_token=")


# Providers.


def test_provider_list(client, oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(),
        "second": oidc_standin.provider_settings(name="Second"),
    }
    response = client.get(reverse("ephemeral_auth_api:oidc_providers"))
    assert response.json() == [
        {"id": "standin", "name": "Stand-in", "authorize_url": "/api/auth/oidc/standin/authorize/"},
        {"id": "second", "name": "Second", "authorize_url": "/api/auth/oidc/second/authorize/"},
    ]


def test_an_identity_is_its_issuer_and_subject_whatever_the_configuration(client, oidc_standin, settings):
    """Two configurations (client registrations) at one issuer: one person, one identity, one account."""
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(),
        "second": oidc_standin.provider_settings(name="Second"),
    }
    sign_in(client, oidc_standin, provider="standin")
    first = client.session[SESSION_KEY]
    client.logout()
    sign_in(client, oidc_standin, provider="second")
    assert client.session[SESSION_KEY] == first
    identity = OIDCIdentity.objects.get()
    assert (identity.provider, identity.issuer) == ("standin", oidc_standin.issuer.rstrip("/"))


def test_mozilla_settings_are_the_default_provider(client, oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {}
    settings.OIDC_RP_CLIENT_ID = oidc_standin.client_id
    settings.OIDC_RP_CLIENT_SECRET = oidc_standin.client_secret
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.OIDC_OP_ISSUER = oidc_standin.issuer
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = f"{oidc_standin.issuer}/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = f"{oidc_standin.issuer}/token"
    settings.OIDC_OP_JWKS_ENDPOINT = f"{oidc_standin.issuer}/jwks"
    settings.OIDC_OP_USER_ENDPOINT = f"{oidc_standin.issuer}/userinfo"
    response = sign_in(client, oidc_standin, provider="default", next="/after/")
    assert response["Location"] == "/after/"
    assert OIDCIdentity.objects.get().provider == "default"
    assert ("GET", "/.well-known/openid-configuration") not in oidc_standin.requests


def test_extra_params_cannot_override_the_flow(client, oidc_standin, settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(extra_params={"prompt": "select_account", "state": "fixed"})
    }
    params = query(authorize(client))
    assert params["prompt"] == "select_account" and params["state"] != "fixed"


# The database fails: fail closed, with a code.


def test_database_failure_at_authorize(client, oidc_standin, monkeypatch):
    from django.db import OperationalError

    from ephemeral_auth.services import tokens

    def broken(**kwargs):
        raise OperationalError("database is down")

    monkeypatch.setattr(tokens, "issue_oidc_state", broken)
    response = client.get(reverse("ephemeral_auth_api:oidc_authorize", args=["standin"]))
    assert error_code(response) == "service_unavailable"


def test_database_failure_at_callback(client, oidc_standin, monkeypatch):
    from django.db import OperationalError

    from ephemeral_auth.services import tokens

    location = authorize(client)

    def broken(*args, **kwargs):
        raise OperationalError("database is down")

    monkeypatch.setattr(tokens, "consume_token", broken)
    assert error_code(client.get(oidc_standin.approve(location))) == "service_unavailable"
    assert SESSION_KEY not in client.session
    assert oidc_standin.requests.count(("POST", "/token")) == 0


def test_a_database_error_inside_login_logs_nobody_in(client, oidc_standin):
    """The callback's login step is one transaction: its failure leaves no logged-in session behind."""
    from django.contrib.auth.signals import user_logged_in
    from django.db import DatabaseError

    def fail(**kwargs):
        raise DatabaseError("connection lost (test)")

    user_logged_in.connect(fail, dispatch_uid="test-oidc-failing-login")
    try:
        response = sign_in(client, oidc_standin, next="/after/")
    finally:
        user_logged_in.disconnect(dispatch_uid="test-oidc-failing-login")
    assert error_code(response) == "service_unavailable"
    assert SESSION_KEY not in client.session


def test_begin_authorization_under_its_old_name_still_works_and_warns():
    """services.oidc.begin_authorization moved up to oidc.authorization (it needs discovery): a deprecated alias."""
    from ephemeral_auth.oidc import authorization
    from ephemeral_auth.services import oidc as oidc_service

    with pytest.warns(DeprecationWarning, match=r"ephemeral_auth\.oidc\.authorization\.begin_authorization"):
        old = oidc_service.begin_authorization
    assert old is authorization.begin_authorization
