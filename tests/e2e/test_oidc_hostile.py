"""Hostile input from real OpenID providers: a look-alike email, and a mix-up between two providers.

The example project runs under ``gunicorn -w 2`` on a fresh PostgreSQL
database, on the ``rp_port`` registered at the session's provider
(conftest.py), with three providers (``OIDC_PROVIDERS``):

* ``idp``: the session's real provider (client CLIENT), linking by verified
  email switched on, staff accounts included (``link_by_verified_email``,
  ``link_staff_by_verified_email``);
* ``idp2``: the same provider through SECOND_CLIENT, default settings
  (linking by email off);
* ``evil``: a second instance of provider.mjs on another port, with its own
  client registration; in the mix-up it plays the hostile provider.

Each client is registered at its provider with the RP's per-provider
callback only (``/api/auth/oidc/<slug>/callback/``). Both provider instances
log each authorization and token request (``OIDC_LOG_REQUESTS=1``), which is
how the tests see what reached which provider.

Run: ``bash .ci/e2e-setup.sh && pytest -m e2e tests/e2e/test_oidc_hostile.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.e2e.servers import (
    CLIENT,
    SECOND_CLIENT,
    Gunicorn,
    Provider,
    binding_cookie_name,
    callback_url,
    example_env,
    fresh_postgres_database,
    manage_shell,
    provider_login,
    start_provider,
    stop,
)

pytestmark = pytest.mark.e2e

EVIL_CLIENT = {"client_id": "ea-e2e-evil", "client_secret": "ea-e2e-evil-secret-0123456789"}
VICTIM = "victim"
VICTIM_EMAIL = "victim@gmail.com"
# A dotless "ı" (U+0131): PostgreSQL's UPPER() makes it "I", so email__iexact finds the victim's row.
LOOK_ALIKE = "victim@gma\u0131l.com"

CREATE_VICTIM = f"""
from django.contrib.auth import get_user_model
user = get_user_model().objects.create_superuser({VICTIM!r}, email={VICTIM_EMAIL!r}, password=None)
print(user.pk)
"""

IDENTITIES = """
import json
from ephemeral_auth.models import OIDCIdentity
rows = OIDCIdentity.objects.order_by("pk").values_list("provider", "subject", "user__username", "user__email")
print(json.dumps([list(row) for row in rows]))
"""


@dataclass
class Site:
    server: Gunicorn
    base_url: str
    evil: Provider


def q(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@pytest.fixture(scope="module")
def evil(rp_port: int, tmp_path_factory: Any) -> Iterator[Provider]:
    """A second provider.mjs: the RP's client there is registered with the RP's evil callback only."""
    client = {**EVIL_CLIENT, "redirect_uris": [callback_url(f"http://localhost:{rp_port}", "evil")]}
    process, running = start_provider([client], log=tmp_path_factory.mktemp("oidc_evil") / "provider.log")
    try:
        yield running
    finally:
        stop(process)


@pytest.fixture(scope="module")
def site(provider: Provider, evil: Provider, rp_port: int, tmp_path_factory: Any) -> Iterator[Site]:
    database_url = fresh_postgres_database(os.environ.get("EA_E2E_HOSTILE_DATABASE", "ea_oidc_hostile_e2e"))
    providers = {
        "idp": provider.settings(link_by_verified_email=True, link_staff_by_verified_email=True),
        "idp2": provider.settings(SECOND_CLIENT, name="Second IdP"),
        "evil": evil.settings(EVIL_CLIENT, name="Evil IdP"),
    }
    env = example_env(database_url, OIDC_PROVIDERS=json.dumps(providers))
    server = Gunicorn(env, port=rp_port, logs=Path(tmp_path_factory.mktemp("gunicorn_hostile")), workers=2)
    server.migrate()
    manage_shell(env, CREATE_VICTIM)
    server.start()
    try:
        yield Site(server, server.base_url, evil)
    finally:
        server.stop()


def authorize(site: Site, browser: requests.Session, slug: str) -> str:
    """Start a flow for ``slug`` at the RP; check its per-provider redirect_uri; return the provider URL."""
    start = browser.get(f"{site.base_url}/api/auth/oidc/{slug}/authorize/", allow_redirects=False, timeout=10)
    assert start.status_code == 302, start.text[:300]
    location = start.headers["Location"]
    assert q(location)["redirect_uri"] == callback_url(site.base_url, slug), location
    assert binding_cookie_name(q(location)["state"]) in browser.cookies, browser.cookies
    return location


def sign_in(site: Site, slug: str, login: str) -> tuple[requests.Session, requests.Response]:
    """A fresh browser signs in at ``slug`` as ``login``; return it and the callback's answer."""
    browser = requests.Session()
    location = authorize(site, browser, slug)
    callback = provider_login(browser, location, login=login, stop_at=site.base_url)
    assert callback.startswith(callback_url(site.base_url, slug) + "?"), callback
    return browser, browser.get(callback, allow_redirects=False, timeout=10)


def me(site: Site, browser: requests.Session) -> dict[str, Any]:
    return dict(browser.get(f"{site.base_url}/api/auth/me/", timeout=10).json())


def oidc_error(response: requests.Response) -> str | None:
    assert response.status_code == 302, (response.status_code, response.text[:300])
    return q(response.headers["Location"]).get("oidc_error")


def test_look_alike_email_never_signs_in_as_the_victim(site: Site) -> None:
    # The provider vouches (email_verified) for victim@gmaıl.com. PostgreSQL's email__iexact finds
    # the superuser victim@gmail.com; the RP's NFKC+casefold re-check must drop it: a new account.
    browser, answer = sign_in(site, "idp", LOOK_ALIKE)
    assert answer.status_code == 302, answer.text[:300]
    shown = me(site, browser)
    assert shown["username"] != VICTIM, shown
    assert oidc_error(answer) is None and answer.headers["Location"] == "/", answer.headers["Location"]
    assert shown["authenticated"] is True and shown["username"].startswith(VICTIM), shown  # victim<digits>

    # The victim's exact address at a provider with linking off (the default): refused, not linked,
    # and no second account for the address either.
    browser, answer = sign_in(site, "idp2", VICTIM_EMAIL)
    assert oidc_error(answer) == "account_exists"
    assert me(site, browser)["authenticated"] is False

    # Control: the exact address at "idp" (both opt-ins on) does link the victim, so the refusal of
    # the look-alike above came from the look-alike check, not from this configuration.
    browser, answer = sign_in(site, "idp", VICTIM_EMAIL)
    assert answer.status_code == 302 and oidc_error(answer) is None, answer.headers["Location"]
    assert me(site, browser)["username"] == VICTIM

    identities = json.loads(manage_shell(site.server.env, IDENTITIES).strip().splitlines()[-1])
    assert identities == [
        ["idp", LOOK_ALIKE, shown["username"], LOOK_ALIKE],
        ["idp", VICTIM_EMAIL, VICTIM, VICTIM_EMAIL],
    ], identities


def test_mix_up_through_a_hostile_provider_is_refused(site: Site, provider: Provider) -> None:
    """The hostile provider sends the victim's browser to the honest one with the RP's flow; the RP refuses.

    1. The victim starts a sign-in with "evil" at the RP: 302 to evil's authorization endpoint, state S.
    2. Evil (this test, acting as its authorization endpoint) does not authenticate: it sends the
       browser to the honest provider's authorization endpoint with the RP's client_id there, the
       redirect_uri registered there for the RP (.../oidc/idp/callback/), and S, the nonce and the
       PKCE code_challenge of step 1.
    3. The victim signs in at the honest provider, which redirects to .../oidc/idp/callback/?code&state=S&iss.
    4. Were that accepted as the "evil" flow of S, the RP would send the victim's code (and PKCE
       verifier) to evil's token endpoint. The RP must refuse, send the code nowhere, sign nobody in.
    """
    honest_tokens = len(provider.logged_requests("token"))
    victim = requests.Session()
    evil_url = authorize(site, victim, "evil")  # checks redirect_uri = .../oidc/evil/callback/
    assert evil_url.startswith(f"{site.evil.issuer}/"), evil_url
    flow = q(evil_url)
    assert flow["client_id"] == EVIL_CLIENT["client_id"]

    honest = requests.get(provider.discovery_url, timeout=10).json()
    assert honest["authorization_response_iss_parameter_supported"] is True  # RFC 9207: iss in responses
    kept = ("response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method")
    params = {
        **{key: flow[key] for key in kept},
        "client_id": CLIENT["client_id"],
        "redirect_uri": callback_url(site.base_url, "idp"),
    }
    rewritten = f"{honest['authorization_endpoint']}?{urlencode(params)}"
    callback = provider_login(victim, rewritten, login="mixup-victim", stop_at=site.base_url)
    back = q(callback)
    assert callback.startswith(callback_url(site.base_url, "idp") + "?"), callback
    assert back["state"] == flow["state"] and back["code"] and back["iss"] == provider.issuer, back
    # The honest provider saw the RP's client with the RP's idp callback (per-provider redirect_uri).
    assert provider.logged_requests("authorization")[-1].endswith(
        f"client_id={CLIENT['client_id']} redirect_uri={callback_url(site.base_url, 'idp')}"
    ), provider.logged_requests("authorization")[-1:]

    binding = binding_cookie_name(flow["state"])
    binding_value = victim.cookies[binding]
    answer = victim.get(callback, allow_redirects=False, timeout=10)
    # provider_mismatch: the callback view checks first that the state's provider ("evil") is the
    # provider of the callback URL ("idp"), and only then the RFC 9207 iss, which would be refused
    # as well (iss_mismatch: the honest issuer is not evil's). Both checks come before any network call.
    assert oidc_error(answer) == "provider_mismatch"
    assert me(site, victim)["authenticated"] is False
    assert binding not in victim.cookies  # deleted with the refusal
    # The state is spent: the same response at evil's own callback, with the flow's binding cookie
    # presented again, is refused too.
    victim.cookies.set(binding, binding_value)
    again = victim.get(
        callback_url(site.base_url, "evil") + "?" + urlsplit(callback).query, allow_redirects=False, timeout=10
    )
    assert oidc_error(again) == "invalid_state"
    assert me(site, victim)["authenticated"] is False
    # The code went to no token endpoint: not evil's, not the honest one's.
    assert site.evil.logged_requests("token") == []
    assert len(provider.logged_requests("token")) == honest_tokens

    # Control: an honest sign-in with "evil" does reach evil's token endpoint (the log counts),
    # and evil saw the RP's evil callback as redirect_uri.
    browser, answer = sign_in(site, "evil", "evil-user")
    assert answer.status_code == 302 and oidc_error(answer) is None, answer.headers["Location"]
    assert me(site, browser)["username"] == "evil-user"
    assert site.evil.logged_requests("token") == [f"request token 200 client_id={EVIL_CLIENT['client_id']}"]
    assert site.evil.logged_requests("authorization")[-1].endswith(
        f"client_id={EVIL_CLIENT['client_id']} redirect_uri={callback_url(site.base_url, 'evil')}"
    ), site.evil.logged_requests("authorization")
