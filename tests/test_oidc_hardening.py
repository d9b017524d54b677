"""OIDC hardening (issue "OIDC and reset hardening"): linking, identities, amr, against the stand-in provider.

The stand-in (tests/oidc_standin_provider.py) is used here because each case
needs a claim the test chooses (a look-alike email, a ``sub`` that differs
from a linked one only by case, an ``amr``); tests/e2e/test_oidc_e2e.py
repeats the look-alike and mix-up cases against the real npm provider.
Run on every backend: a look-alike address is equal to the real one under
PostgreSQL's ``UPPER`` (dotless "ı") or MariaDB's default collation ("ä"),
so these tests fail there on a lookup that trusts the database.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY, get_user_model

from ephemeral_auth.models import OIDCIdentity
from ephemeral_auth.services import oidc as oidc_service
from tests.factories import UserFactory
from tests.test_oidc import error_code, sign_in

pytestmark = pytest.mark.django_db


def providers(settings, standin, **options):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"standin": standin.provider_settings(**options)}


# 1. Linking by email is exact and opt-in.


@pytest.mark.parametrize("lookalike", ["victim@gmaıl.com", "victim@gmäil.com", "VICTIM@GMAİL.COM"])
def test_a_lookalike_email_never_links_to_the_victim(client, oidc_standin, settings, lookalike):
    victim = UserFactory(email="victim@gmail.com", is_superuser=True, is_staff=True)
    providers(settings, oidc_standin, link_by_verified_email=True, link_staff_by_verified_email=True)
    oidc_standin.account.update(sub="attacker", email=lookalike, email_verified=True)
    sign_in(client, oidc_standin)
    assert client.session.get(SESSION_KEY) != str(victim.pk)
    assert not OIDCIdentity.objects.filter(user=victim).exists()


def test_the_real_address_links_when_the_provider_opts_in(client, oidc_standin, settings):
    owner = UserFactory(email="Owner@Example.com")
    providers(settings, oidc_standin, link_by_verified_email=True)
    oidc_standin.account.update(sub="owner-sub", email="owner@example.com")
    sign_in(client, oidc_standin)
    assert client.session[SESSION_KEY] == str(owner.pk)


@pytest.mark.parametrize("flag", ["is_staff", "is_superuser"])
def test_staff_accounts_are_never_linked_by_email_without_a_separate_opt_in(client, oidc_standin, settings, flag):
    admin = UserFactory(email="admin@example.com", **{flag: True})
    providers(settings, oidc_standin, link_by_verified_email=True)
    oidc_standin.account.update(sub="admin-sub", email="admin@example.com")
    assert error_code(sign_in(client, oidc_standin)) == "account_exists"
    assert not OIDCIdentity.objects.exists() and SESSION_KEY not in client.session
    providers(settings, oidc_standin, link_by_verified_email=True, link_staff_by_verified_email=True)
    sign_in(client, oidc_standin)
    assert client.session[SESSION_KEY] == str(admin.pk)


# 3. Identities are (issuer, sub), compared byte for byte.


@pytest.mark.parametrize("other", ["ALICE", "alice ", "álice", "alice\u200b"])
def test_another_subject_never_signs_in_as_the_linked_user(client, oidc_standin, other):
    linked = UserFactory(email="linked@example.com")
    OIDCIdentity.objects.create(
        user=linked, provider="standin", issuer=oidc_standin.issuer, subject="alice"
    )
    oidc_standin.account.update(sub=other, email="someone-else@example.com")
    sign_in(client, oidc_standin)
    assert client.session.get(SESSION_KEY) != str(linked.pk)
    # A separate account for the separate identity.
    assert OIDCIdentity.objects.count() == 2
    assert get_user_model().objects.count() == 2


def test_the_linked_subject_signs_in(client, oidc_standin):
    linked = UserFactory(email="linked@example.com")
    OIDCIdentity.objects.create(user=linked, provider="standin", issuer=oidc_standin.issuer, subject="alice")
    oidc_standin.account.update(sub="alice", email="linked@example.com")
    sign_in(client, oidc_standin)
    assert client.session[SESSION_KEY] == str(linked.pk)


def test_a_link_from_before_the_issuer_was_known_is_carried_over(client, oidc_standin):
    """Migration 0005 keys old links by (provider, sub); the next sign-in rewrites them to (issuer, sub)."""
    linked = UserFactory(email="linked@example.com")
    row = OIDCIdentity.objects.create(user=linked, provider="standin", subject="alice")
    assert row.subject_key == oidc_service.legacy_identity_key("standin", "alice") and row.issuer == ""
    oidc_standin.account.update(sub="alice", email="linked@example.com")
    sign_in(client, oidc_standin)
    assert client.session[SESSION_KEY] == str(linked.pk)
    row.refresh_from_db()
    assert row.issuer == oidc_standin.issuer.rstrip("/")
    assert row.subject_key == oidc_service.identity_key(oidc_standin.issuer, "alice")


def test_the_subject_key_is_exact():
    assert oidc_service.identity_key("https://idp.example", "alice") != oidc_service.identity_key(
        "https://idp.example", "ALICE"
    )
    assert oidc_service.identity_key("https://idp.example/", "alice") == oidc_service.identity_key(
        "https://idp.example", "alice"
    )
    assert oidc_service.identity_key("https://a.example", "x") != oidc_service.identity_key("https://b.example", "x")


# 9. trust_amr counts only multi-factor values.


@pytest.mark.parametrize("amr", [["otp"], ["hwk"], ["pwd", "otp"], ["sms"], ["face"]])
def test_a_single_method_in_amr_is_not_multi_factor(amr, oidc_standin):
    from ephemeral_auth.oidc import providers as registry

    provider = registry.Provider(slug="p", name="P", client_id="c", issuer="https://i", trust_amr=True)
    assert oidc_service.asserted_mfa(provider, {"amr": amr}) is False
    assert oidc_service.asserted_mfa(provider, {"amr": [*amr, "mfa"]}) is True


# 2. No mix-up: each provider its own callback; the iss parameter when announced.


def two_providers(settings, standin, **second):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": standin.provider_settings(),
        "other": standin.provider_settings(name="Other", **second),
    }


def test_a_response_for_one_provider_at_anothers_callback_is_refused(client, oidc_standin, settings):
    """Provider "other" answers a request that was "standin"'s: the state's provider is not the URL's."""
    from urllib.parse import urlencode

    from ephemeral_auth.models import EphemeralToken
    from tests.test_oidc import authorize, query

    two_providers(settings, oidc_standin)
    location = authorize(client, provider="standin")
    callback = oidc_standin.approve(location)
    params = query(callback)
    hijacked = client.get(f"/api/auth/oidc/other/callback/?{urlencode(params)}")
    assert error_code(hijacked) == "provider_mismatch"
    assert SESSION_KEY not in client.session
    assert not EphemeralToken.objects.exists()  # the state is spent: it cannot be tried again elsewhere
    assert params["code"] in oidc_standin.codes  # the code went to no token endpoint


def test_the_shared_callback_takes_only_providers_registered_with_it(client, oidc_standin, settings):
    from urllib.parse import urlencode

    from tests.test_oidc import authorize, query

    two_providers(settings, oidc_standin, shared_callback=True)
    # "standin" uses its own callback: a response at the shared one is a mix-up.
    location = authorize(client, provider="standin")
    params = query(oidc_standin.approve(location))
    assert error_code(client.get(f"/api/auth/oidc/callback/?{urlencode(params)}")) == "provider_mismatch"
    # "other" was registered with the shared callback (compatibility): it is sent, and accepted, there.
    location = authorize(client, provider="other")
    assert query(location)["redirect_uri"] == "http://testserver/api/auth/oidc/callback/"
    done = client.get(oidc_standin.approve(location))
    assert done.status_code == 302 and "oidc_error" not in done["Location"]
    assert SESSION_KEY in client.session


def test_a_provider_that_announces_the_iss_parameter_must_send_it(client, oidc_standin, monkeypatch):
    from django.core.cache import caches

    from tests.test_oidc import authorize

    document = oidc_standin.discovery()
    monkeypatch.setattr(
        oidc_standin, "discovery", lambda: {**document, "authorization_response_iss_parameter_supported": True}
    )
    caches["default"].clear()
    without = client.get(oidc_standin.approve(authorize(client)))
    assert error_code(without) == "iss_mismatch" and SESSION_KEY not in client.session
    wrong = client.get(oidc_standin.approve(authorize(client), iss="https://other-idp.example"))
    assert error_code(wrong) == "iss_mismatch"
    right = client.get(oidc_standin.approve(authorize(client), iss=oidc_standin.issuer))
    assert right.status_code == 302 and "oidc_error" not in right["Location"]


# 4. A bounded authorize/.


def test_authorize_is_capped_per_address(oidc_standin, settings):
    from django.test import Client

    from ephemeral_auth import conf
    from ephemeral_auth.models import EphemeralToken, TokenType

    cap = conf.rate_limit("oidc_authorize").limit
    assert cap <= 20
    attacker = Client(REMOTE_ADDR="203.0.113.5")
    answers = [attacker.get("/api/auth/oidc/standin/authorize/").status_code for _ in range(cap + 5)]
    assert answers == [302] * cap + [429] * 5
    refused = attacker.get("/api/auth/oidc/standin/authorize/")
    assert int(refused["Retry-After"]) > 0
    assert EphemeralToken.objects.filter(token_type=TokenType.OIDC_STATE).count() == cap
    # Another address is not affected.
    assert Client(REMOTE_ADDR="198.51.100.5").get("/api/auth/oidc/standin/authorize/").status_code == 302


def test_a_long_next_is_not_stored(client, oidc_standin):
    from ephemeral_auth.models import EphemeralToken
    from tests.test_oidc import authorize

    authorize(client, next="/" + "a" * 600)
    authorize(client, next="/" + "b" * 400)
    assert sorted(len(v) for v in EphemeralToken.objects.values_list("next_url", flat=True)) == [0, 401]


# Look-alike accounts made on purpose cannot hide the real one.


def _dotless_variants(local="victim", domain="gmail.com"):
    """Addresses that PostgreSQL's UPPER (and MariaDB's default collation) equate with the real one."""
    import itertools

    address = f"{local}@{domain}"
    spots = [i for i, c in enumerate(address) if c == "i"]
    for chosen in itertools.product((False, True), repeat=len(spots)):
        if any(chosen):
            yield "".join("ı" if i in spots and chosen[spots.index(i)] else c for i, c in enumerate(address))


def test_lookalike_accounts_do_not_hide_the_real_one(client, oidc_standin, settings):
    from ephemeral_auth.services import lockout

    for n, lookalike in enumerate(_dotless_variants()):
        UserFactory(username=f"decoy{n}", email=lookalike)
    victim = UserFactory(username="victim", email="victim@gmail.com")
    victim.save()  # the real row is the one touched last
    providers(settings, oidc_standin, link_by_verified_email=True)
    oidc_standin.account.update(sub="victim-sub", email="victim@gmail.com")
    sign_in(client, oidc_standin)
    assert client.session[SESSION_KEY] == str(victim.pk)
    assert lockout.resolve("victim@gmail.com").pk == victim.pk


def test_too_many_accounts_sharing_an_address_refuse_rather_than_guess(client, oidc_standin, settings):
    from ephemeral_auth.services.oidc import MAX_EMAIL_CANDIDATES

    for n in range(MAX_EMAIL_CANDIDATES + 1):
        spelled = "".join(c.upper() if (n >> i) & 1 else c for i, c in enumerate("crowded"))
        UserFactory(username=f"crowd{n}", email=f"{spelled}@example.com")
    providers(settings, oidc_standin, link_by_verified_email=True)
    oidc_standin.account.update(sub="crowd-sub", email="crowded@example.com")
    assert error_code(sign_in(client, oidc_standin)) == "account_conflict"
    assert SESSION_KEY not in client.session
