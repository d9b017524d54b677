"""Trusted browsers ("trust this browser"): the service, the JSON and HTML flows, revocation, statements."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core import mail
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from ephemeral_auth import crypto
from ephemeral_auth.auth import login as login_service
from ephemeral_auth.exceptions import InvalidInput
from ephemeral_auth.models import EphemeralToken, TokenType, UserTwoFactor
from ephemeral_auth.services import email_otp, recovery, totp, trusted_browsers, two_factor
from ephemeral_auth.services.factors import load_state
from ephemeral_auth.services.proof import Proof
from tests.factories import PASSWORD, UserFactory, enrol_totp, login_verified, totp_code

pytestmark = pytest.mark.django_db

COOKIE = "ephemeral_auth_trusted"
SECURE_COOKIE = "__Host-ephemeral_auth_trusted"
DATA_VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE")


@pytest.fixture
def trusting(settings):
    settings.EPHEMERAL_AUTH_TRUSTED_BROWSER_DAYS = 30
    return settings


def post(client, url, body=None, **extra):
    return client.post(url, body or {}, content_type="application/json", **extra)


def start(client, user, **extra):
    return post(client, "/api/auth/login/", {"username": user.username, "password": PASSWORD}, **extra)


def trust_login(client, user, secret, clock, *, trust=True, **extra):
    """A whole TOTP login through the JSON API, asking to trust the browser."""
    body = start(client, user, **extra).json()
    assert body["status"] == "2fa_required", body
    clock.advance(30)  # a fresh TOTP step for every login of a test
    data = {"pre_auth_token": body["pre_auth_token"], "method": "totp", "code": totp_code(secret, clock.now)}
    if trust is not None:
        data["trust_browser"] = trust
    response = post(client, "/api/auth/2fa/verify/", data, **extra)
    assert response.status_code == 200, response.content
    return response


def data_statements(captured):
    return [q["sql"] for q in captured if q["sql"].lstrip().split(" ", 1)[0].upper() in DATA_VERBS]


def trusted_rows(user=None):
    rows = EphemeralToken.objects.filter(token_type=TokenType.TRUSTED_BROWSER)
    return rows.filter(user_id=user.pk) if user is not None else rows


# The service.


def test_off_by_default_issues_and_honours_nothing(totp_user, frozen):
    user, _secret = totp_user
    state = load_state(user)
    assert not trusted_browsers.enabled()
    assert trusted_browsers.issue(user, fingerprint=state.fingerprint) is None
    raw = tokens_raw(user, state.fingerprint, frozen)
    with CaptureQueriesContext(connection) as ctx:
        assert not trusted_browsers.check(raw, user, fingerprint=state.fingerprint)
        assert trusted_browsers.revoke_all(user) == 0
    assert ctx.captured_queries == []


def tokens_raw(user, fingerprint, now, days=30):
    from ephemeral_auth.services import tokens

    return tokens.issue_token(
        TokenType.TRUSTED_BROWSER, user=user, code_hash=trusted_browsers.binding(user, fingerprint),
        ttl=timedelta(days=days), now=now,
    ).raw


@pytest.mark.parametrize("days", [0, None, False])
def test_zero_none_and_false_mean_off(settings, days):
    settings.EPHEMERAL_AUTH_TRUSTED_BROWSER_DAYS = days
    assert trusted_browsers.lifetime() is None


def test_issue_stores_only_the_digest_and_the_fingerprint(trusting, totp_user, frozen):
    user, _secret = totp_user
    state = load_state(user)
    issued = trusted_browsers.issue(user, fingerprint=state.fingerprint, now=frozen)
    row = EphemeralToken.objects.get()
    assert row.token == crypto.digest_token(issued.raw) and issued.raw not in row.token
    assert row.code_hash == trusted_browsers.binding(user, state.fingerprint)  # fingerprint and password
    assert row.user_id == user.pk and row.token_type == TokenType.TRUSTED_BROWSER
    assert row.expires_at == frozen + timedelta(days=30)
    assert issued.expires_in == 30 * 86400


def test_check_peeks_and_binds_user_fingerprint_and_expiry(trusting, totp_user, other_user, clock):
    user, _secret = totp_user
    fingerprint = load_state(user).fingerprint
    raw = trusted_browsers.issue(user, fingerprint=fingerprint).raw
    assert trusted_browsers.check(raw, user, fingerprint=fingerprint)
    assert trusted_browsers.check(raw, user, fingerprint=fingerprint)  # reusable: peeked, not consumed
    assert trusted_rows(user).count() == 1
    assert not trusted_browsers.check(raw, other_user, fingerprint=fingerprint)
    assert not trusted_browsers.check(raw, user, fingerprint="another-configuration")
    assert not trusted_browsers.check(raw + "x", user, fingerprint=fingerprint)
    clock.advance(30 * 86400)
    assert not trusted_browsers.check(raw, user, fingerprint=fingerprint)


@pytest.mark.parametrize("raw", ["", None, 12, "x" * 10_000, "nul\x00byte", "\ud800", ["a"]])
def test_check_refuses_malformed_values_without_a_query(trusting, totp_user, raw):
    user, _secret = totp_user
    with CaptureQueriesContext(connection) as ctx:
        assert not trusted_browsers.check(raw, user, fingerprint="f" * 20)
    assert ctx.captured_queries == []


def test_list_shows_own_live_current_rows_and_this_browser(trusting, totp_user, other_user, clock):
    user, _secret = totp_user
    fingerprint = load_state(user).fingerprint
    old = trusted_browsers.issue(user, fingerprint=fingerprint)
    clock.advance(60)
    mine = trusted_browsers.issue(user, fingerprint=fingerprint)
    tokens_raw(user, "an-earlier-configuration", clock.now)  # voided by a 2FA change: not listed
    tokens_raw(user, fingerprint, clock.now - timedelta(days=31))  # expired
    enrol_totp(other_user)
    trusted_browsers.issue(other_user, fingerprint=load_state(other_user).fingerprint)
    listed = trusted_browsers.list_for(user, current=mine.raw)
    assert [(item.id, item.this_browser) for item in listed] == [(mine.token.pk, True), (old.token.pk, False)]
    as_json = listed[0].as_dict()
    assert set(as_json) == {"id", "created_at", "expires_at", "this_browser"}
    assert mine.raw not in str(as_json) and mine.token.token not in str(as_json)
    assert [item.this_browser for item in trusted_browsers.list_for(user, current="x" * 5000)] == [False, False]


def test_revoke_one_all_and_never_another_users(trusting, totp_user, other_user):
    user, _secret = totp_user
    fingerprint = load_state(user).fingerprint
    first = trusted_browsers.issue(user, fingerprint=fingerprint)
    trusted_browsers.issue(user, fingerprint=fingerprint)
    theirs = trusted_browsers.issue(other_user, fingerprint="their-fingerprint")
    assert trusted_browsers.revoke(user, token_id=theirs.token.pk) == 0
    assert trusted_browsers.revoke(user, token_id=str(first.token.pk)) == 1
    assert trusted_browsers.revoke(user, token_id=first.token.pk) == 0
    assert trusted_browsers.revoke(user) == 1
    assert list(trusted_rows()) == [theirs.token]


@pytest.mark.parametrize("bad", [True, "abc", -1, 0, 2**70, "1" * 30, 1.5, [], {}, "１"])
def test_revoke_refuses_ids_that_cannot_be_one(trusting, user, bad):
    with pytest.raises(InvalidInput):
        trusted_browsers.revoke(user, token_id=bad)


# The JSON flow.


def test_trust_then_logout_then_login_skips_the_second_factor(trusting, totp_user, clock):
    user, secret = totp_user
    client = Client()
    response = trust_login(client, user, secret, clock)
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain HTTP
    assert int(cookie["max-age"]) == 30 * 86400
    [row] = trusted_rows(user)
    assert row.token == crypto.digest_token(cookie.value)
    post(client, "/api/auth/logout/")
    again = start(client, user)
    assert again.json() == {
        "status": "authenticated",
        "user": {"authenticated": True, "username": user.username, "two_factor_verified": True},
    }
    assert client.get("/api/auth/me/").json()["two_factor_verified"] is True
    assert trusted_rows(user).count() == 1  # peeked, still there
    assert not EphemeralToken.objects.filter(token_type=TokenType.PRE_AUTH).exists()
    # A wrong password stays a wrong password.
    wrong = post(client, "/api/auth/login/", {"username": user.username, "password": "nope"})
    assert wrong.status_code == 401


def test_https_cookie_is_host_prefixed_and_secure(trusting, totp_user, clock):
    user, secret = totp_user
    client = Client()
    response = trust_login(client, user, secret, clock, secure=True)
    cookie = response.cookies[SECURE_COOKIE]
    assert cookie["secure"] and cookie["httponly"] and COOKIE not in response.cookies
    post(client, "/api/auth/logout/", secure=True)
    assert start(client, user, secure=True).json()["status"] == "authenticated"
    # Over plain HTTP the __Host- cookie is not the one read.
    client.cookies[COOKIE] = ""
    post(client, "/api/auth/logout/")
    assert start(client, user).json()["status"] == "2fa_required"


def test_without_trust_browser_no_cookie(trusting, totp_user, clock):
    user, secret = totp_user
    for trust in (None, False):
        response = trust_login(Client(), user, secret, clock, trust=trust)
        assert COOKIE not in response.cookies
    assert not trusted_rows().exists()


def test_another_users_cookie_is_ignored(trusting, totp_user, clock):
    user, secret = totp_user
    other = UserFactory()
    enrol_totp(other)
    client = Client()
    trust_login(client, user, secret, clock)
    post(client, "/api/auth/logout/")
    assert start(client, other).json()["status"] == "2fa_required"
    # and the other user's completed login does not spend or replace anything of the first user's
    assert trusted_rows(user).count() == 1


def test_expired_trust_is_ignored(trusting, totp_user, clock):
    user, secret = totp_user
    client = Client()
    trust_login(client, user, secret, clock)
    post(client, "/api/auth/logout/")
    clock.advance(30 * 86400 + 1)
    assert start(client, user).json()["status"] == "2fa_required"


def test_a_huge_or_garbage_cookie_is_ignored(trusting, totp_user, clock):
    user, _secret = totp_user
    for value in ("x" * 4000, "not-a-token", "%00%ff"):
        client = Client()
        client.cookies[COOKIE] = value
        response = start(client, user)
        assert response.status_code == 200 and response.json()["status"] == "2fa_required"


def test_trust_browser_must_be_a_boolean_when_on(trusting, totp_user, clock):
    user, secret = totp_user
    client = Client()
    body = start(client, user).json()
    for bad in ("yes", 1, None, [], {"a": 1}):
        response = post(client, "/api/auth/2fa/verify/", {
            "pre_auth_token": body["pre_auth_token"], "method": "totp", "code": totp_code(secret, clock.now),
            "trust_browser": bad,
        })
        assert response.status_code == 400 and response.json()["error"] == "invalid_input"
    assert not trusted_rows().exists() and "_auth_user_id" not in client.session


def test_a_configuration_change_voids_the_trust_even_if_its_row_stays(trusting, totp_user, clock):
    user, secret = totp_user
    client = Client()
    trust_login(client, user, secret, clock)
    clock.advance(5)
    UserTwoFactor.objects.filter(pk=user.pk).update(changed_at=clock.now)  # a change that deleted no row
    post(client, "/api/auth/logout/")
    assert trusted_rows(user).count() == 1
    assert start(client, user).json()["status"] == "2fa_required"
    assert client.get("/api/auth/me/").json()["authenticated"] is False


def test_setting_off_ignores_the_field_and_the_cookie(settings, totp_user, clock):
    user, secret = totp_user
    client = Client()
    response = trust_login(client, user, secret, clock, trust="not even a boolean")
    assert COOKIE not in response.cookies and not trusted_rows().exists()
    # A trust issued while it was on is not honoured while it is off.
    settings.EPHEMERAL_AUTH_TRUSTED_BROWSER_DAYS = 30
    response = trust_login(client, user, secret, clock)
    settings.EPHEMERAL_AUTH_TRUSTED_BROWSER_DAYS = 0
    post(client, "/api/auth/logout/")
    assert start(client, user).json()["status"] == "2fa_required"
    assert client.get("/api/auth/2fa/trusted-browsers/").status_code == 401


def test_a_2fa_change_revokes(trusting, totp_user, clock):
    user, secret = totp_user
    client = Client()
    trust_login(client, user, secret, clock)
    codes = recovery.generate(user)
    clock.advance(30)
    recovery.regenerate(user, codes[0], proof=Proof.trusted_caller())
    assert not trusted_rows(user).exists()
    post(client, "/api/auth/logout/")
    assert start(client, user).json()["status"] == "2fa_required"


@pytest.mark.parametrize("change", ["totp_disable", "email_enable_confirm", "email_disable", "reset", "new_totp"])
def test_every_2fa_change_revokes(trusting, totp_user, clock, change, mailoutbox):
    user, secret = totp_user
    client = Client()
    trust_login(client, user, secret, clock)
    clock.advance(30)
    proof = Proof.trusted_caller()
    if change == "totp_disable":
        email_otp_on(user)
        totp.disable(user, totp_code(secret, clock.now), proof=proof)
    elif change == "email_enable_confirm":
        issued = email_otp.enable(user, proof=proof, now=clock.now)
        code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
        email_otp.confirm(user, issued.raw, code, proof=proof, now=clock.now)
    elif change == "email_disable":
        email_otp_on(user)
        trusted_browsers.issue(user, fingerprint=load_state(user).fingerprint)
        email_otp.disable(user, PASSWORD, proof=proof)
    elif change == "reset":
        two_factor.reset_two_factor(user)
    elif change == "new_totp":
        totp.setup(user, proof=proof, code=totp_code(secret, clock.now))
        pending = UserTwoFactor.objects.get(pk=user.pk).totp_pending_secret
        new_secret = crypto.decrypt(pending)
        clock.advance(30)
        totp.confirm(user, totp_code(new_secret, clock.now), proof=proof)
        secret = new_secret
    assert not trusted_rows(user).exists()
    # Whatever is left in the table, the browser is not trusted under the new configuration.
    post(client, "/api/auth/logout/")
    answer = start(client, user).json()
    assert answer["status"] in ("2fa_required", "authenticated")
    if load_state(user).methods():
        assert answer["status"] == "2fa_required"


def email_otp_on(user):
    UserTwoFactor.objects.filter(pk=user.pk).update(email_enabled=True, email_confirmed_at=UserTwoFactor.objects.get(
        pk=user.pk).totp_confirmed_at)


def test_a_password_change_revokes(trusting, totp_user, clock):
    user, secret = totp_user
    client = Client()
    trust_login(client, user, secret, clock)
    user.set_password("a new password 123")
    user.save()
    assert not trusted_rows(user).exists()


def test_a_password_changed_without_signals_voids_the_trust(trusting, totp_user, clock, django_user_model):
    # QuerySet.update sends no post_save, so no row is deleted: the binding to the password voids it.
    from django.contrib.auth.hashers import make_password

    user, secret = totp_user
    client = Client()
    trust_login(client, user, secret, clock)
    assert start(client, user).json()["status"] == "authenticated"  # trusted: the key is skipped
    post(client, "/api/auth/logout/")
    django_user_model.objects.filter(pk=user.pk).update(password=make_password(PASSWORD))  # new salt, same text
    assert trusted_rows(user).exists()
    assert start(client, user).json()["status"] == "2fa_required"  # the old trust matches nothing
    assert trusted_browsers.list_for(django_user_model.objects.get(pk=user.pk)) == []


def test_list_and_revoke_through_the_api(trusting, totp_user, clock):
    user, secret = totp_user
    elsewhere = Client()
    trust_login(elsewhere, user, secret, clock)
    client = Client()
    trust_login(client, user, secret, clock)
    listed = client.get("/api/auth/2fa/trusted-browsers/").json()
    assert listed["enabled"] is True
    items = listed["trusted_browsers"]
    assert [item["this_browser"] for item in items] == [True, False]
    assert all(set(item) == {"id", "created_at", "expires_at", "this_browser"} for item in items)
    revoked = post(client, "/api/auth/2fa/trusted-browsers/revoke/", {"id": items[1]["id"]})
    assert revoked.json() == {"status": "ok", "revoked": 1}
    post(elsewhere, "/api/auth/logout/")
    assert start(elsewhere, user).json()["status"] == "2fa_required"
    everything = post(client, "/api/auth/2fa/trusted-browsers/revoke/", {"all": True})
    assert everything.json() == {"status": "ok", "revoked": 1}
    assert everything.cookies[COOKIE]["max-age"] == 0
    assert not trusted_rows().exists()


@pytest.mark.parametrize("body", [{}, {"id": "abc"}, {"id": True}, {"id": [1]}, {"id": 2**80}, {"all": "yes"},
                                  {"all": False}, {"id": None}])
def test_revoke_refuses_bad_input(trusting, user, body):
    client = Client()
    client.force_login(user)
    response = post(client, "/api/auth/2fa/trusted-browsers/revoke/", body)
    assert response.status_code == 400 and response.json()["error"] == "invalid_input"


def test_list_and_revoke_need_a_session(trusting):
    client = Client()
    assert client.get("/api/auth/2fa/trusted-browsers/").status_code == 401
    assert post(client, "/api/auth/2fa/trusted-browsers/revoke/", {"all": True}).status_code == 401
    assert post(client, "/api/auth/2fa/trusted-browsers/").status_code == 405


# Statements.


@pytest.fixture
def db_sessions(settings):
    """As tests/test_api_two_factor.py's statement budget: database sessions, no cache."""
    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}


def test_statement_counts(trusting, settings, db_sessions, totp_user, clock):
    user, secret = totp_user
    settings.EPHEMERAL_AUTH_TRUSTED_BROWSER_DAYS = 0
    with CaptureQueriesContext(connection) as off:
        start(Client(), user)
    settings.EPHEMERAL_AUTH_TRUSTED_BROWSER_DAYS = 30
    with CaptureQueriesContext(connection) as on_no_cookie:
        start(Client(), user)
    # Without the cookie the login step is what it was: 6 (docs/two-factor.md, "Statements per request").
    assert len(data_statements(on_no_cookie.captured_queries)) == len(data_statements(off.captured_queries)) == 6
    client = Client()
    trust_login(client, user, secret, clock)
    post(client, "/api/auth/logout/")
    with CaptureQueriesContext(connection) as trusted:
        assert start(client, user).json()["status"] == "authenticated"
    plain = UserFactory()
    with CaptureQueriesContext(connection) as no_2fa:
        assert start(Client(), plain).json()["status"] == "authenticated"
    # A trusted login costs what a login without 2FA costs (9), plus the one SELECT of the trust.
    assert len(data_statements(no_2fa.captured_queries)) == 9
    assert len(data_statements(trusted.captured_queries)) == 10
    [lookup] = [sql for sql in data_statements(trusted.captured_queries)
                if "auth_ephemeral_tokens" in sql and sql.startswith("SELECT")]
    assert "trusted_browser" in lookup or "%s" in lookup or "?" in lookup


def test_verify_with_trust_costs_one_insert(trusting, db_sessions, totp_user, clock):
    user, secret = totp_user
    counts = {}
    for trust in (False, True):
        client = Client()
        body = start(client, user).json()
        clock.advance(30)
        data = {"pre_auth_token": body["pre_auth_token"], "method": "totp", "code": totp_code(secret, clock.now),
                "trust_browser": trust}
        with CaptureQueriesContext(connection) as ctx:
            assert post(client, "/api/auth/2fa/verify/", data).status_code == 200
        counts[trust] = data_statements(ctx.captured_queries)

    def token_inserts(statements):
        return [sql for sql in statements if sql.startswith("INSERT") and "auth_ephemeral_tokens" in sql]

    assert len(counts[False]) == 9 and len(counts[True]) == 10
    assert len(token_inserts(counts[True])) == len(token_inserts(counts[False])) + 1 == 1


# Every first factor through begin_login: OIDC too.


def test_begin_login_honours_the_trust_for_any_first_factor(trusting, totp_user, clock):
    user, _secret = totp_user
    raw = trusted_browsers.issue(user, fingerprint=load_state(user).fingerprint).raw
    request = RequestFactory().get("/oidc/callback/")
    request.session = SessionStore()
    request.COOKIES[COOKIE] = raw
    step = login_service.begin_login_atomically(request, user, backend="django.contrib.auth.backends.ModelBackend")
    assert step.status == "authenticated"
    request2 = RequestFactory().get("/oidc/callback/")
    request2.session = SessionStore()
    step2 = login_service.begin_login_atomically(request2, user, backend="django.contrib.auth.backends.ModelBackend")
    assert step2.status == "2fa_required"


# HTML.


def test_html_verify_offers_trust_only_when_on(settings, totp_user, clock):
    user, _secret = totp_user
    client = Client()
    verify_url = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})["Location"]
    assert 'name="trust_browser"' not in client.get(verify_url).content.decode()
    settings.EPHEMERAL_AUTH_TRUSTED_BROWSER_DAYS = 30
    page = client.get(verify_url).content.decode()
    assert 'name="trust_browser"' in page and "Trust this browser for 30 days" in page


def test_html_trust_login_skips_the_verify_page_then_revoke(trusting, totp_user, clock):
    user, secret = totp_user
    client = Client()
    verify_url = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})["Location"]
    clock.advance(30)
    response = client.post(verify_url, {"method": "totp", "code": totp_code(secret, clock.now),
                                        "trust_browser": "on", "next": "/"})
    assert response.status_code == 302
    assert response.cookies[COOKIE]["httponly"]
    overview = client.get("/accounts/2fa/").content.decode()
    assert "Trusted browsers" in overview and "this browser" in overview
    client.post("/accounts/logout/")
    again = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD, "next": "/files/"})
    assert again.status_code == 302 and again["Location"] == "/files/"
    assert client.get("/api/auth/me/").json()["two_factor_verified"] is True
    [row] = trusted_rows(user)
    done = client.post("/accounts/2fa/trusted-browsers/revoke/", {"id": str(row.pk)})
    assert done.status_code == 302 and done["Location"] == "/accounts/2fa/"
    assert not trusted_rows(user).exists()
    assert "No browser is trusted" in client.get("/accounts/2fa/").content.decode()


def test_html_revoke_refuses_bad_ids_and_anonymous(trusting, totp_user):
    user, _secret = totp_user
    anonymous = Client()
    assert anonymous.post("/accounts/2fa/trusted-browsers/revoke/", {"id": "1"}).status_code == 302  # to login
    client = Client()
    login_verified(client, user)
    assert client.post("/accounts/2fa/trusted-browsers/revoke/", {"id": "x" * 5000}).status_code == 400
    assert client.get("/accounts/2fa/trusted-browsers/revoke/").status_code == 405
    assert client.post("/accounts/2fa/trusted-browsers/revoke/", {"all": "1"}).status_code == 302


def test_overview_has_no_section_when_off(totp_user):
    user, _secret = totp_user
    client = Client()
    login_verified(client, user)
    assert "Trusted browsers" not in client.get("/accounts/2fa/").content.decode()


# The setting.


@pytest.mark.parametrize("days", ["30", -1, True, float("nan"), float("inf"), 10**6, [30]])
def test_a_wrong_setting_is_a_system_check_error_and_leaves_the_feature_off(settings, days):
    from ephemeral_auth.checks import check_settings

    settings.EPHEMERAL_AUTH_TRUSTED_BROWSER_DAYS = days
    assert "ephemeral_auth.E025" in [error.id for error in check_settings()]
    assert trusted_browsers.lifetime() is None


@pytest.mark.parametrize("days", [None, 0, 1, 30, 0.5])
def test_right_settings_pass_the_check(settings, days):
    from ephemeral_auth.checks import check_settings

    settings.EPHEMERAL_AUTH_TRUSTED_BROWSER_DAYS = days
    assert "ephemeral_auth.E025" not in [error.id for error in check_settings()]
