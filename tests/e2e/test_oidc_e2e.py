"""OIDC sign-in end to end against a REAL OpenID provider on loopback.

The provider is npm ``oidc-provider`` 8.x (tests/e2e/oidc_provider/provider.mjs,
installed by ``npm ci`` from the pinned package-lock.json; .ci/e2e-setup.sh
does it). It is started once per session on a free loopback port; its dev login
and consent forms are driven with ``requests`` and ``html.parser``.

Three relying-party set-ups:

* the Django test client (in-process, any database backend) for the probes:
  happy paths in session and SPA mode, replayed and expired state, a callback
  in another browser, a nonce mismatch, two tabs, the statement budget, the
  shared (compatibility) callback and a response at another provider's
  callback, ...;
* the example project under ``gunicorn -w 4 --no-control-socket`` on
  PostgreSQL, driven over HTTP (gunicorn's access log records the worker PID of
  each request);
* headless Chromium (Playwright) clicking the example project's
  "Sign in with ..." button, with SameSite=Strict session cookies and the
  provider on another site (127.0.0.1 vs localhost).

Each flow's redirect_uri is its provider's own callback (``/api/auth/oidc/<slug>/callback/``),
registered at the provider for that slug's client only (conftest.py). authorize/ is capped at
20 flows per client address per 10 minutes: the gunicorn site below starts 12 from 127.0.0.1.
The hostile-provider tests (look-alike email, mix-up) are in test_oidc_hostile.py.

Run: ``bash .ci/e2e-setup.sh && DATABASE_URL=... pytest -m e2e tests/e2e``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest
import requests

from tests.e2e.servers import (  # noqa: F401 - shared helpers, moved out of this module
    CLIENT,
    PROVIDER_DIR,
    ROOT,
    SECOND_CLIENT,
    SHARED_CLIENT,
    TESTSERVER_CALLBACK,
    Forms,
    Provider,
    binding_cookie_name,
    callback_url,
    free_port,
    parse_forms,
    provider_login,
    stop,
    wait_for_http,
)
from tests.e2e.servers import fresh_postgres_database as _fresh_postgres_database
from tests.e2e.servers import postgres_admin_url as _postgres_admin_url  # noqa: F401

pytestmark = pytest.mark.e2e

# The real provider and the relying party's port: the session fixtures ``provider``
# and ``rp_port`` of tests/e2e/conftest.py.


def q(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def frag(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).fragment).items()}


def replace_param(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


# The in-process relying party (Django test client).


@pytest.fixture
def idp(provider: Provider, settings: Any) -> Provider:
    """Configure the real provider as "idp" (and its second client as "idp2") in this process."""
    from django.core.cache import caches

    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "idp": provider.settings(),
        "idp2": provider.settings(SECOND_CLIENT, name="Second IdP"),
    }
    caches["default"].clear()
    return provider


TESTSERVER = "http://testserver"


class Browser:
    """One browser: a Django test client for our site, a requests session for the provider."""

    def __init__(self) -> None:
        from django.test import Client

        self.client = Client()
        self.idp = requests.Session()

    def start(self, provider: str = "idp", *, redirect_uri: str | None = None, **params: str) -> str:
        """Start a flow; check its redirect_uri (``provider``'s own callback unless given) and binding cookie."""
        response = self.client.get(f"/api/auth/oidc/{provider}/authorize/", params)
        assert response.status_code == 302, response
        location = response["Location"]
        assert q(location)["redirect_uri"] == (redirect_uri or callback_url(TESTSERVER, provider)), location
        # One fresh cookie per flow, named after its state.
        cookie = response.cookies[binding_cookie_name(q(location)["state"])]
        assert cookie.value and cookie["httponly"] and cookie["samesite"] == "Lax", cookie
        return location

    def at_provider(self, authorization_url: str, *, login: str = "alice", cancel: bool = False) -> str:
        back = provider_login(self.idp, authorization_url, login=login, stop_at="http://testserver/", cancel=cancel)
        parts = urlsplit(back)
        return f"{parts.path}?{parts.query}"

    def callback(self, callback: str) -> Any:
        return self.client.get(callback)

    def sign_in(self, provider: str = "idp", *, login: str = "alice", **params: str) -> Any:
        return self.callback(self.at_provider(self.start(provider, **params), login=login))

    def session_user(self) -> str | None:
        from django.contrib.auth import SESSION_KEY

        return self.client.session.get(SESSION_KEY)


@pytest.fixture
def browser() -> Browser:
    return Browser()


def oidc_error(response: Any) -> str | None:
    assert response.status_code == 302, response
    return q(response["Location"]).get("oidc_error") or frag(response["Location"]).get("oidc_error")


@pytest.mark.django_db
def test_session_mode_happy_path_creates_then_reuses_the_account(browser: Browser, idp: Provider) -> None:
    from ephemeral_auth.models import EphemeralToken, OIDCIdentity

    response = browser.sign_in(login="alice", next="/after/")
    assert response.status_code == 302 and response["Location"] == "/after/"
    identity = OIDCIdentity.objects.get(provider="idp", subject="alice")
    assert browser.session_user() == str(identity.user.pk)
    assert identity.user.email == "alice@example.com"
    assert not EphemeralToken.objects.exists()

    again = Browser()
    assert again.sign_in(login="alice")["Location"] == "/"
    assert again.session_user() == str(identity.user.pk)
    assert OIDCIdentity.objects.count() == 1


@pytest.mark.django_db
def test_verified_email_links_an_existing_account(browser: Browser, idp: Provider, settings: Any) -> None:
    from tests.factories import UserFactory

    user = UserFactory(username="carol-local", email="carol@example.com")
    # Linking by email is opt-in: by default the address in use is refused, not linked.
    assert oidc_error(browser.sign_in(login="carol")) == "account_exists"
    assert browser.session_user() is None

    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"idp": idp.settings(link_by_verified_email=True)}
    linking = Browser()
    linking.sign_in(login="carol")
    assert linking.session_user() == str(user.pk)


@pytest.mark.django_db
def test_unverified_email_does_not_link(browser: Browser, idp: Provider) -> None:
    from tests.factories import UserFactory

    UserFactory(email="unverified-dave@example.com")
    assert oidc_error(browser.sign_in(login="unverified-dave")) == "email_not_verified"
    assert browser.session_user() is None


@pytest.mark.django_db
def test_spa_mode_happy_path(browser: Browser, idp: Provider) -> None:
    from ephemeral_auth.models import EphemeralToken, TokenType

    response = browser.sign_in(login="erin", mode="spa", next="/spa/")
    target = response["Location"]
    assert target.startswith("/spa/#oidc_token=")
    assert browser.session_user() is None
    assert EphemeralToken.objects.filter(token_type=TokenType.OIDC_EXCHANGE).count() == 1
    token = browser.client.get("/api/auth/csrf/").json()["csrf_token"]
    answer = browser.client.post(
        "/api/auth/oidc/exchange/", {"oidc_token": frag(target)["oidc_token"]},
        content_type="application/json", HTTP_X_CSRFTOKEN=token,
    )
    assert answer.status_code == 200
    assert answer.json()["status"] == "authenticated" and answer.json()["user"]["username"] == "erin"
    assert browser.session_user() is not None
    replay = browser.client.post(
        "/api/auth/oidc/exchange/", {"oidc_token": frag(target)["oidc_token"]},
        content_type="application/json", HTTP_X_CSRFTOKEN=token,
    )
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_token"


@pytest.mark.django_db
def test_replayed_state_is_refused(browser: Browser, idp: Provider) -> None:
    callback = browser.at_provider(browser.start(), login="frank")
    assert browser.callback(callback)["Location"] == "/"
    browser.client.logout()
    assert oidc_error(browser.callback(callback)) == "invalid_state"
    assert browser.session_user() is None


@pytest.mark.django_db
def test_expired_state_is_refused(browser: Browser, idp: Provider, settings: Any, monkeypatch: Any) -> None:
    from ephemeral_auth import clock

    settings.EPHEMERAL_AUTH_TOKEN_TTLS = {"oidc_state": 30}
    callback = browser.at_provider(browser.start(), login="grace")
    later = clock.now() + timedelta(seconds=31)
    monkeypatch.setattr(clock, "now", lambda: later)
    assert oidc_error(browser.callback(callback)) == "invalid_state"
    assert browser.session_user() is None


@pytest.mark.django_db
def test_callback_in_another_browser_logs_nobody_in(browser: Browser, idp: Provider) -> None:
    from ephemeral_auth.models import EphemeralToken

    # Login CSRF: the attacker completes their own login and sends the callback URL to a victim.
    attacker_callback = browser.at_provider(browser.start(), login="mallory")
    victim = Browser()
    assert oidc_error(victim.callback(attacker_callback)) == "invalid_state"
    assert victim.session_user() is None
    # Nothing was consumed: the state still belongs to the attacker's browser only.
    assert EphemeralToken.objects.count() == 1


@pytest.mark.django_db
def test_nonce_mismatch(browser: Browser, idp: Provider) -> None:
    """The authorization request's nonce is tampered with on its way to the provider.

    The provider signs whatever nonce it was sent into the ID token; the callback
    compares it with the nonce stored for the state and refuses.
    """
    from ephemeral_auth.models import EphemeralToken

    tampered = replace_param(browser.start(), nonce="attacker-chosen-nonce")
    response = browser.callback(browser.at_provider(tampered, login="heidi"))
    assert oidc_error(response) == "nonce_mismatch"
    assert browser.session_user() is None
    assert not EphemeralToken.objects.exists()


@pytest.mark.django_db
def test_provider_error_consumes_the_state(browser: Browser, idp: Provider) -> None:
    from ephemeral_auth.models import EphemeralToken

    callback = browser.at_provider(browser.start(), cancel=True)
    assert q(callback)["error"] == "access_denied"
    assert oidc_error(browser.callback(callback)) == "provider_error"
    assert not EphemeralToken.objects.exists()


@pytest.mark.django_db
def test_two_tabs_complete_with_their_own_next(browser: Browser, idp: Provider, settings: Any) -> None:
    # Both tabs sign in as the provider's one session account (ivan@example.com) through two clients:
    # the second to finish links to the account the first created, by its verified email (opt-in).
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "idp": idp.settings(link_by_verified_email=True),
        "idp2": idp.settings(SECOND_CLIENT, name="Second IdP"),
    }
    first = browser.start(next="/first/")
    second = browser.start("idp2", next="/second/")
    # The second tab finishes first; the first tab's flow is untouched by it.
    second_callback = browser.at_provider(second, login="ivan")
    first_callback = browser.at_provider(first, login="ivan")
    assert browser.callback(second_callback)["Location"] == "/second/"
    assert browser.callback(first_callback)["Location"] == "/first/"


@pytest.mark.django_db
def test_statement_budget_with_the_real_provider(browser: Browser, idp: Provider, settings: Any) -> None:
    """authorize + callback, linked user without 2FA, DB sessions: at most 9 data statements.

    7 before the per-address cap on authorize/ (oidc_authorize); its conditional INSERT and
    recount add 2 (as tests/test_oidc.py::test_linked_identity_statement_budget says).
    """
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.SESSION_ENGINE = "django.contrib.sessions.backends.db"
    browser.sign_in(login="judy")  # links the identity, warms the discovery/JWKS cache
    again = Browser()
    with CaptureQueriesContext(connection) as captured:
        authorization_url = again.start(next="/after/")
        callback = again.at_provider(authorization_url, login="judy")
        response = again.callback(callback)
    assert response["Location"] == "/after/" and again.session_user()
    verbs = ("SELECT", "INSERT", "UPDATE", "DELETE")
    statements = [x["sql"] for x in captured.captured_queries if x["sql"].lstrip().upper().startswith(verbs)]
    assert len(statements) <= 9, "\n".join(statements)


@pytest.mark.django_db
def test_asserted_mfa_skips_local_2fa_only_when_trusted(browser: Browser, idp: Provider, settings: Any) -> None:
    import pyotp

    from ephemeral_auth import clock
    from ephemeral_auth.models import OIDCIdentity
    from ephemeral_auth.services import totp
    from ephemeral_auth.services.two_factor import Proof
    from tests.factories import UserFactory

    users = {}
    for login in ("mfa-kim", "otp-kim"):
        users[login] = UserFactory(username=login, email=f"{login}@example.com")
        OIDCIdentity.objects.create(user=users[login], provider="idp", subject=login)
        earlier = clock.now() - timedelta(minutes=5)
        setup = totp.setup(users[login], proof=Proof.trusted_caller(), now=earlier)
        totp.confirm(users[login], pyotp.TOTP(setup.secret).at(earlier), proof=Proof.trusted_caller(), now=earlier)

    # Not trusted: the provider's amr (pwd, otp, mfa) does not replace local 2FA.
    response = browser.sign_in(login="mfa-kim", next="/after/")
    assert "/2fa/" in response["Location"] and browser.session_user() is None

    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"idp": idp.settings(trust_amr=True)}
    trusted = Browser()
    assert trusted.sign_in(login="mfa-kim", next="/after/")["Location"] == "/after/"
    assert trusted.session_user() == str(users["mfa-kim"].pk)
    assert trusted.client.get("/api/auth/me/").json()["two_factor_verified"] is True

    # Trusted, but amr (pwd, otp) names one method, not several factors (RFC 8176 "mfa" is absent):
    # the local second factor is still asked for.
    single = Browser()
    response = single.sign_in(login="otp-kim", next="/after/")
    assert "/2fa/" in response["Location"] and single.session_user() is None
    assert single.client.get("/api/auth/me/").json()["authenticated"] is False


@pytest.mark.django_db
def test_shared_callback_and_provider_mismatch(browser: Browser, idp: Provider, settings: Any) -> None:
    """Per-provider callbacks: a response is only taken at the callback of the provider its flow was sent to.

    "legacy" keeps the shared oidc/callback/ (``shared_callback``; its client is registered with that URL
    only). A response for "idp" delivered to the shared URL or to idp2's callback is refused with
    provider_mismatch, and its state is spent: the right URL no longer takes it either.
    """
    from ephemeral_auth.models import EphemeralToken

    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "idp": idp.settings(),
        "idp2": idp.settings(SECOND_CLIENT, name="Second IdP"),
        "legacy": idp.settings(SHARED_CLIENT, name="Legacy IdP", shared_callback=True),
    }
    legacy = browser.at_provider(browser.start("legacy", redirect_uri=TESTSERVER_CALLBACK, next="/legacy/"))
    assert legacy.startswith("/api/auth/oidc/callback/?")
    assert browser.callback(legacy)["Location"] == "/legacy/" and browser.session_user() is not None

    for wrong in ("/api/auth/oidc/callback/", "/api/auth/oidc/idp2/callback/"):
        other = Browser()
        answer = other.at_provider(other.start("idp"), login="mixed-up")
        path, query = answer.split("?", 1)
        assert path == "/api/auth/oidc/idp/callback/"
        assert oidc_error(other.callback(f"{wrong}?{query}")) == "provider_mismatch"
        assert other.session_user() is None
        assert oidc_error(other.callback(answer)) == "invalid_state"
        assert other.session_user() is None
    assert not EphemeralToken.objects.exists()


# The example project under gunicorn -w 4 on PostgreSQL.


class Site:
    """The example project served by gunicorn."""

    def __init__(self, base_url: str, access_log: Path) -> None:
        self.base_url = base_url
        self.access_log = access_log

    def worker_pids(self, path_prefix: str) -> list[str]:
        """Return the worker PID of each logged request whose path starts with ``path_prefix``."""
        pids = []
        for line in self.access_log.read_text().splitlines():
            match = re.match(r'^<?(\d+)>? "GET (\S+)', line)
            if match and match.group(2).startswith(path_prefix):
                pids.append(match.group(1))
        return pids


@pytest.fixture(scope="module")
def site(provider: Provider, rp_port: int, tmp_path_factory: Any) -> Iterator[Site]:
    """Migrate a fresh PostgreSQL database and serve the example project with gunicorn -w 4."""
    database_url = _fresh_postgres_database(os.environ.get("EA_E2E_GUNICORN_DATABASE", "ea_oidc_e2e"))
    logs = tmp_path_factory.mktemp("gunicorn")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DATABASE_URL": database_url,
        "DEBUG": "False",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "SESSION_COOKIE_SAMESITE": "Strict",
        "OIDC_PROVIDERS": json.dumps(
            {
                "idp": provider.settings(trust_amr=True),
                "idp2": provider.settings(SECOND_CLIENT, name="Second IdP"),
            }
        ),
        "EPHEMERAL_AUTH_LOG_LEVEL": "WARNING",
    }
    env.pop("DATABASE_URL_TEST", None)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True, timeout=300
    )
    access_log = logs / "access.log"
    server = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", "example_project.wsgi:application",
            "-w", "4", "--no-control-socket", "-b", f"127.0.0.1:{rp_port}",
            "--access-logfile", str(access_log), "--access-logformat", '%(p)s "%(r)s" %(s)s',
            "--error-logfile", str(logs / "error.log"),
        ],
        cwd=ROOT, env=env,
    )
    base_url = f"http://localhost:{rp_port}"
    try:
        wait_for_http(f"{base_url}/", process=server, seconds=60)
        yield Site(base_url, access_log)
    finally:
        stop(server)


def _browse_sign_in(site: Site, login: str, *, next_url: str) -> tuple[requests.Session, requests.Response]:
    """Sign in over HTTP like a browser would; return the session and the callback's answer."""
    session = requests.Session()
    start = session.get(
        f"{site.base_url}/api/auth/oidc/idp/authorize/", params={"next": next_url}, allow_redirects=False, timeout=10
    )
    assert start.status_code == 302, start.text[:300]
    callback = provider_login(session, start.headers["Location"], login=login, stop_at=site.base_url)
    return session, session.get(callback, allow_redirects=False, timeout=10)


def _continue_url(response: requests.Response) -> str:
    """The callback's way on: a redirect, or (SameSite=Strict) the continue page's refresh target."""
    if response.is_redirect:
        return response.headers["Location"]
    assert response.status_code == 200, response.text[:300]
    match = re.search(r'http-equiv="refresh" content="0;url=([^"]+)"', response.text)
    assert match, response.text[:300]
    return match.group(1)


def test_gunicorn_four_workers_on_postgresql(site: Site) -> None:
    """Flows started on one worker finish on another; every one of them signs in."""
    flows = 8
    for n in range(flows):
        session, response = _browse_sign_in(site, f"worker-user-{n % 3}", next_url=f"/?flow={n}")
        assert _continue_url(response) == f"/?flow={n}"
        me = session.get(f"{site.base_url}/api/auth/me/", timeout=10).json()
        assert me["authenticated"] is True and me["username"].startswith(f"worker-user-{n % 3}")
    time.sleep(0.5)  # gunicorn writes its access log after answering
    authorize_pids = site.worker_pids("/api/auth/oidc/idp/authorize/")
    callback_pids = site.worker_pids("/api/auth/oidc/idp/callback/")
    assert len(authorize_pids) >= flows and len(callback_pids) >= flows
    pairs = list(zip(authorize_pids[-flows:], callback_pids[-flows:], strict=True))
    assert len(set(authorize_pids) | set(callback_pids)) >= 2, pairs
    assert any(a != c for a, c in pairs), f"every flow stayed on one worker: {pairs}"
    print(f"authorize -> callback worker PIDs: {pairs}")


def test_gunicorn_two_tabs_and_a_foreign_callback(site: Site) -> None:
    session = requests.Session()
    urls = []
    for next_url in ("/?tab=1", "/?tab=2"):
        authorize_url = f"{site.base_url}/api/auth/oidc/idp/authorize/"
        start = session.get(authorize_url, params={"next": next_url}, allow_redirects=False, timeout=10)
        urls.append(start.headers["Location"])
    second = provider_login(session, urls[1], login="tabby", stop_at=site.base_url)
    first = provider_login(session, urls[0], login="tabby", stop_at=site.base_url)
    # Another browser presenting this browser's callback: nothing happens to anyone.
    stranger = requests.Session()
    refused = stranger.get(second, allow_redirects=False, timeout=10)
    assert q(refused.headers["Location"])["oidc_error"] == "invalid_state"
    assert stranger.get(f"{site.base_url}/api/auth/me/", timeout=10).json()["authenticated"] is False
    assert _continue_url(session.get(second, allow_redirects=False, timeout=10)) == "/?tab=2"
    assert _continue_url(session.get(first, allow_redirects=False, timeout=10)) == "/?tab=1"


# Headless Chromium through the "Sign in with ..." button.


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("headless Chromium is needed: apt-get install -y chromium (.ci/e2e-setup.sh)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            headless=True,
            args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
            ],
        )
        try:
            yield browser
        finally:
            browser.close()


def _provider_forms(page: Any, login: str) -> None:
    page.wait_for_selector("input[name=login]")
    page.fill("input[name=login]", login)
    page.fill("input[name=password]", "any password")
    page.click("button[type=submit]")
    page.wait_for_selector("input[name=prompt][value=consent]", state="attached")
    page.click("button[type=submit]")


def test_chromium_signs_in_through_the_button(site: Site, chromium: Any) -> None:
    """A real browser, SameSite=Strict session cookie, provider on another site (127.0.0.1 vs localhost)."""
    context = chromium.new_context()
    page = context.new_page()
    try:
        page.goto(f"{site.base_url}/")
        page.click("a.oidc-button[data-provider=idp]")
        page.wait_for_selector("input[name=login]")
        # At the provider: the flow's own binding cookie, named after its state (HTTP: no __Host- prefix).
        bindings = [c for c in context.cookies(site.base_url) if c["name"].startswith("ephemeral_auth_oidc")]
        assert len(bindings) == 1 and re.fullmatch(r"ephemeral_auth_oidc_[0-9a-f]{16}", bindings[0]["name"])
        assert bindings[0]["httpOnly"] and bindings[0]["sameSite"] == "Lax", bindings
        _provider_forms(page, "chromium-user")
        page.wait_for_url(f"{site.base_url}/", timeout=15000)
        page.wait_for_selector("text=chromium-user")
        me = json.loads(page.goto(f"{site.base_url}/api/auth/me/").text())
        assert me["authenticated"] is True and me["username"] == "chromium-user"
        session_cookie = next(c for c in context.cookies() if c["name"] == "sessionid")
        assert session_cookie["sameSite"] == "Strict" and session_cookie["httpOnly"]
        # The state is spent: the callback deleted the flow's binding cookie.
        assert not [c for c in context.cookies() if c["name"].startswith("ephemeral_auth_oidc")], context.cookies()
    finally:
        context.close()


def test_chromium_spa_page_redeems_the_exchange(site: Site, chromium: Any) -> None:
    context = chromium.new_context()
    page = context.new_page()
    try:
        page.goto(f"{site.base_url}/spa/")
        page.click("a.oidc-button[data-provider=idp2]")
        _provider_forms(page, "spa-user")
        page.wait_for_selector("text=Signed in.", timeout=15000)
        assert "oidc_token" not in page.url  # the page took the token out of the address bar
        answer = json.loads(page.text_content("#answer"))
        assert answer["status"] == "authenticated" and answer["user"]["username"] == "spa-user"
    finally:
        context.close()
