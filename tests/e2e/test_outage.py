"""PostgreSQL goes away in the middle of a flow: every auth endpoint fails closed, then recovers by itself.

The example project runs under ``gunicorn -w 4 --no-control-socket`` and
reaches PostgreSQL through :class:`~tests.e2e.servers.TcpProxy`, a loopback
proxy in this process. Cutting the proxy is the outage: open connections are
dropped and new ones refused, while PostgreSQL itself (and every other
database on it) keeps running.

While cut, each auth endpoint answers 503: JSON ``{"error":
"service_unavailable"}`` or a plain HTML page, never a 500 page, never a
traceback, never a session. When the link is restored, the very next request
works without restarting gunicorn, with both connection policies of
docs/deployment.md: a connection per request (``CONN_MAX_AGE=0``, Django's
default) and persistent connections with health checks
(``CONN_MAX_AGE=60``, ``CONN_HEALTH_CHECKS=True``).

Run: ``bash .ci/e2e-setup.sh && pytest -m e2e tests/e2e/test_outage.py``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import pyotp
import pytest
import requests

from tests.e2e.servers import (
    CREATE_TOTP_USER,
    USER_PASSWORD,
    Gunicorn,
    JsonClient,
    Provider,
    TcpProxy,
    binding_cookie_name,
    example_env,
    exchange_cookie_name,
    free_port,
    fresh_postgres_database,
    manage_shell,
)

pytestmark = pytest.mark.e2e

CREATE_PLAIN_USER = f"""
from django.contrib.auth import get_user_model
get_user_model().objects.create_user("outage-plain", email="outage-plain@example.com", password={USER_PASSWORD!r})
"""

POLICIES = {
    "per-request": "",
    "persistent": "?conn_max_age=60&conn_health_checks=True",
}


class Outage:
    """The served example project and the proxy between it and PostgreSQL."""

    def __init__(self, server: Gunicorn, proxy: TcpProxy) -> None:
        self.server = server
        self.proxy = proxy
        self.base_url = server.base_url


@pytest.fixture(scope="module", params=list(POLICIES))
def outage(request: Any, provider: Provider, tmp_path_factory: Any) -> Iterator[Outage]:
    """Gunicorn -w 4 whose only way to PostgreSQL is a cuttable proxy."""
    policy = request.param
    name = os.environ.get("EA_E2E_OUTAGE_DATABASE", "ea_outage_e2e") + "_" + policy.replace("-", "_")
    direct = fresh_postgres_database(name)
    parts = urlsplit(direct)
    proxy = TcpProxy((parts.hostname or "127.0.0.1", parts.port or 5432))
    proxied = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"))
    logs = Path(tmp_path_factory.mktemp(f"gunicorn_outage_{policy}"))
    env = example_env(proxied + POLICIES[policy], OIDC_PROVIDERS=json.dumps({"idp": provider.settings()}))
    server = Gunicorn(env, port=free_port(), logs=logs)
    Gunicorn(example_env(direct), port=server.port, logs=logs).migrate()
    server.start()
    try:
        yield Outage(server, proxy)
    finally:
        server.stop()
        proxy.close()


def assert_fails_closed(response: requests.Response, *, html: bool = False) -> None:
    """503 with the stable code (JSON) or a plain page (HTML); no traceback, no session."""
    request = response.request
    assert response.status_code == 503, (request.method, request.url, response.status_code, response.text[:500])
    assert "Traceback" not in response.text and "psycopg" not in response.text.lower()
    assert "sessionid" not in response.cookies
    if html:
        assert response.headers["Content-Type"].startswith("text/html"), response.headers
    else:
        assert response.json()["error"] == "service_unavailable", response.text


def cookies_set(response: requests.Response) -> dict[str, str]:
    """The cookies ``response`` sets with a value (a deletion, ``name=""; Max-Age=0``, is left out)."""
    found = {}
    for header in response.raw.headers.getlist("Set-Cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        found.update({name: morsel.value for name, morsel in parsed.items() if morsel.value})
    return found


def html_login_form(base_url: str) -> tuple[requests.Session, str]:
    """Open the HTML login page (no database needed); return the browser and its CSRF token."""
    browser = requests.Session()
    page = browser.get(f"{base_url}/accounts/login/", timeout=10)
    assert page.status_code == 200, page.text[:300]
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    return browser, token.group(1)


def test_every_auth_endpoint_fails_closed_then_recovers(outage: Outage) -> None:
    base = outage.base_url
    # One shell for all users: each manage.py start costs a second or two.
    setup = (
        CREATE_TOTP_USER.format(username="outage-totp", password=USER_PASSWORD)
        + CREATE_TOTP_USER.format(username="outage-html", password=USER_PASSWORD)
        + CREATE_PLAIN_USER
    )
    secret, html_secret = manage_shell(outage.server.env, setup).split()

    # Before the outage: a signed-in session, and a login waiting for its second factor.
    signed_in = JsonClient(base)
    first = signed_in.post("/api/auth/login/", {"username": "outage-plain", "password": USER_PASSWORD})
    assert first.status_code == 200 and first.json()["status"] == "authenticated", first.text
    pending = JsonClient(base)
    step = pending.post("/api/auth/login/", {"username": "outage-totp", "password": USER_PASSWORD})
    assert step.status_code == 200 and step.json()["status"] == "2fa_required", step.text
    pre_auth = step.json()["pre_auth_token"]
    stranger = JsonClient(base)
    # An SPA back from the provider: a well-formed exchange token and the cookie binding it to this
    # browser; and a flow's callback with its own binding cookie.
    spa = JsonClient(base)
    spa.http.cookies.set(exchange_cookie_name("x" * 43), "b" * 43)
    spa.http.cookies.set(binding_cookie_name("s" * 43), "c" * 43)
    browser, form_token = html_login_form(base)
    html_pending, html_verify_token = html_login_form(base)
    to_verify = html_pending.post(
        f"{base}/accounts/login/",
        data={"csrfmiddlewaretoken": html_verify_token, "username": "outage-html", "password": USER_PASSWORD},
        allow_redirects=False, timeout=10,
    )
    assert to_verify.status_code == 302 and "/2fa/verify/" in to_verify.headers["Location"], to_verify.text[:300]
    verify_url = f"{base}{to_verify.headers['Location']}"
    assert html_pending.get(verify_url, timeout=10).status_code == 200

    assert outage.proxy.connections > 0  # gunicorn reaches PostgreSQL through the proxy only
    outage.proxy.cut()
    try:
        code = pyotp.TOTP(secret).now()
        calls = {
            "login/": (stranger, {"username": "outage-totp", "password": USER_PASSWORD}),
            "2fa/verify/": (pending, {"pre_auth_token": pre_auth, "method": "totp", "code": code}),
            "2fa/email/send/": (pending, {"pre_auth_token": pre_auth}),
            "password-reset/": (stranger, {"email": "outage-totp@example.com"}),
            "password-reset/confirm/": (stranger, {"token": "x" * 43, "new_password": "A-new-Password-0123"}),
            "oidc/exchange/": (spa, {"oidc_token": "x" * 43}),
        }
        for path, (client, body) in calls.items():
            assert_fails_closed(client.post(f"/api/auth/{path}", body))
        # A session must be read to answer me/: 503. Without a session cookie nothing is
        # read and the honest answer, "not signed in", needs no database.
        assert_fails_closed(signed_in.http.get(f"{base}/api/auth/me/", timeout=10))
        for client in (stranger, pending):
            assert "sessionid" not in client.http.cookies
            assert client.me() == {"authenticated": False, "username": None, "two_factor_verified": False}
        # authorize/ and callback/ are browser navigations: like every OIDC failure (docs/oidc.md)
        # they redirect to the failure URL with the stable code instead of leaving the browser
        # on a bare 503; nobody is sent to the provider, no flow cookie, no session.
        start = stranger.http.get(f"{base}/api/auth/oidc/idp/authorize/", allow_redirects=False, timeout=10)
        callback = spa.http.get(
            f"{base}/api/auth/oidc/idp/callback/", params={"state": "s" * 43, "code": "c" * 20},
            allow_redirects=False, timeout=10,
        )
        for answer in (start, callback):
            assert answer.status_code == 302, (answer.url, answer.status_code, answer.text[:300])
            location = urlsplit(answer.headers["Location"])
            assert location.netloc in ("", urlsplit(base).netloc), location
            assert parse_qs(location.query)["oidc_error"] == ["service_unavailable"], location
            given = [name for name in cookies_set(answer) if name == "sessionid" or "ephemeral_auth_oidc" in name]
            assert not given, answer.headers.get("Set-Cookie")
        html = browser.post(
            f"{base}/accounts/login/",
            data={"csrfmiddlewaretoken": form_token, "username": "outage-totp", "password": USER_PASSWORD},
            headers={"Referer": f"{base}/accounts/login/"}, allow_redirects=False, timeout=10,
        )
        assert_fails_closed(html, html=True)
        assert "temporarily unavailable" in html.text
        html_code = pyotp.TOTP(html_secret).now()
        verify_form = {"csrfmiddlewaretoken": html_verify_token, "method": "totp", "code": html_code}
        html_verified = html_pending.post(verify_url, data=verify_form, allow_redirects=False, timeout=10)
        assert_fails_closed(html_verified, html=True)
    finally:
        outage.proxy.restore()

    # Restored: the very next request of each client works, on a gunicorn nobody restarted.
    assert stranger.me()["authenticated"] is False
    done = pending.post("/api/auth/2fa/verify/", {"pre_auth_token": pre_auth, "method": "totp", "code": code})
    assert done.status_code == 200 and done.json()["status"] == "authenticated", done.text
    assert pending.me()["username"] == "outage-totp"
    again = browser.post(
        f"{base}/accounts/login/",
        data={"csrfmiddlewaretoken": form_token, "username": "outage-totp", "password": USER_PASSWORD},
        headers={"Referer": f"{base}/accounts/login/"}, allow_redirects=False, timeout=10,
    )
    assert again.status_code == 302 and "/2fa/" in again.headers["Location"], again.text[:300]
    html_verified = html_pending.post(verify_url, data=verify_form, allow_redirects=False, timeout=10)
    assert html_verified.status_code == 302 and html_verified.headers["Location"] == "/", html_verified.text[:300]
    assert html_pending.get(f"{base}/api/auth/me/", timeout=10).json()["username"] == "outage-html"
    assert signed_in.me()["username"] == "outage-plain"  # the session outlived the outage
