"""Headless Chromium with the DevTools virtual authenticator: security keys and passkeys through the example project.

Each browser context gets a CDP session and a virtual CTAP2 authenticator
(``WebAuthn.addVirtualAuthenticator``: internal transport, resident keys,
user verification, presence simulated), so ``navigator.credentials`` runs
for real: the page's script (``ephemeral_auth/static/ephemeral_auth/webauthn.js``)
asks the app's JSON endpoints for options, the browser signs with the virtual
authenticator, the app verifies with fido2.

WebAuthn needs a secure context, and ``http://localhost`` is one: the relying
party id is "localhost" (pytest-django's ``live_server`` listens as
``http://localhost:<port>``; 127.0.0.1 could not be an RP id) and the one
allowed origin is the live server's URL (settings overridden per test; the
server runs in this process).

What is checked:

* registration from the 2FA settings page (a fresh password sign-in is the
  fresh proof), then a password login continuing to the second-factor page,
  where the security key finishes it; the authenticator's signature counter
  moved (``WebAuthn.getCredentials``) and the app recorded the use;
* passkey sign-in from the login page (``EPHEMERAL_AUTH_PASSKEY_LOGIN``):
  no password typed, signed in as the passkey's owner, 2FA-verified;
* the settings page: the same authenticator twice is refused
  (excludeCredentials), a key renamed and removed;
* a passkey sign-in without user verification is refused: by the browser
  when the options require it (as the app's do), and by the app when a
  tampered page asked for none (the answer lacks the UV flag: 401
  ``invalid_code``, shown by the page);
* a replayed assertion (the JSON the page POSTed, same body, same cookies),
  of the security-key step and of a passkey sign-in, answers 401
  ``invalid_token`` and signs nobody in; posted inside a new pending login of
  the same browser it is refused too, and that login still completes;
* an assertion made for a challenge of browser A, posted with browser B's
  cookies, answers 401 ``invalid_token`` (and A can still use it: the
  refusal was the browser binding, not a broken answer).

As in test_browser_two_factor.py, the test body makes no ORM call while
Playwright runs (the accounts are made before it starts).

Run: ``bash .ci/e2e-setup.sh && pytest -m e2e tests/e2e/test_browser_webauthn.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.test_browser_two_factor import CHROMIUM, CHROMIUM_ARGS
from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

# A platform authenticator that keeps discoverable credentials and verifies its user (CTAP2).
VIRTUAL_AUTHENTICATOR = {
    "protocol": "ctap2",
    "transport": "internal",
    "hasResidentKey": True,
    "hasUserVerification": True,
    "isUserVerified": True,
    "automaticPresenceSimulation": True,
}

OVERVIEW = "/accounts/2fa/"
LOGIN = "/accounts/login/"
VERIFY = re.compile(r".*/accounts/2fa/verify/.*")
KEY_VERIFY = "**/accounts/2fa/webauthn/verify/"
PASSKEY_LOGIN = "**/accounts/passkey/login/"
PASSKEY_OPTIONS = "**/accounts/passkey/options/"
SIGNED_IN = "Signed in as"
VERIFIED = "This session passed two-factor authentication."


@dataclass
class Browser:
    """One browser context (its own cookie jar) with its page and its virtual authenticator."""

    base: str
    page: Any
    cdp: Any
    authenticator_id: str

    @property
    def context(self) -> Any:
        return self.page.context

    def credentials(self) -> list[dict[str, Any]]:
        answer = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator_id})
        return list(answer["credentials"])

    def set_user_verified(self, verified: bool) -> None:
        self.cdp.send(
            "WebAuthn.setUserVerified", {"authenticatorId": self.authenticator_id, "isUserVerified": verified}
        )

    def cookie(self, name: str) -> str:
        return next(c["value"] for c in self.context.cookies(self.base) if c["name"] == name)

    def status(self) -> str:
        self.page.goto(self.base + "/")
        return str(self.page.inner_text("#status"))

    def me(self) -> dict[str, Any]:
        """``/api/auth/me/`` with this context's cookies."""
        return dict(self.context.request.get(self.base + "/api/auth/me/").json())

    def post_json(self, path_or_url: str, body: Any) -> Any:
        """POST JSON with this context's cookies and its CSRF token (as the page's script does)."""
        url = path_or_url if path_or_url.startswith("http") else self.base + path_or_url
        return self.context.request.post(
            url,
            data=json.dumps(body),
            headers={"Content-Type": "application/json", "X-CSRFToken": self.cookie("csrftoken")},
        )


@dataclass
class Browsers:
    """Chromium, and a factory of independent contexts, each with its own authenticator."""

    playwright: Any
    chromium: Any
    base: str
    opened: list[Any] = field(default_factory=list)

    def new(self) -> Browser:
        context = self.chromium.new_context()
        self.opened.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        cdp = context.new_cdp_session(page)
        cdp.send("WebAuthn.enable")
        added = cdp.send("WebAuthn.addVirtualAuthenticator", {"options": VIRTUAL_AUTHENTICATOR})
        return Browser(self.base, page, cdp, added["authenticatorId"])


@pytest.fixture
def relying_party(settings, live_server) -> str:
    """WebAuthn on, for the live server's origin (http://localhost:<port>); passkey sign-in on."""
    base = live_server.url
    parts = urlsplit(base)
    assert parts.hostname == "localhost", f"WebAuthn needs the live server on localhost, not {base}"
    settings.EPHEMERAL_AUTH_WEBAUTHN_RP_ID = "localhost"
    settings.EPHEMERAL_AUTH_WEBAUTHN_RP_NAME = "ephemeral_auth e2e"
    settings.EPHEMERAL_AUTH_WEBAUTHN_ORIGINS = [f"{parts.scheme}://{parts.netloc}"]
    settings.EPHEMERAL_AUTH_PASSKEY_LOGIN = True
    return base


@pytest.fixture
def browsers(relying_party, monkeypatch) -> Iterator[Browsers]:
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread (see test_browser_two_factor.py).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        running = Browsers(playwright, chromium, relying_party)
        try:
            yield running
        finally:
            for context in running.opened:
                context.close()
            chromium.close()


@pytest.fixture
def person(transactional_db):
    """The account of the test, created before Playwright starts (no 2FA yet)."""
    return UserFactory()


# The steps.


def password_sign_in(browser: Browser, username: str) -> None:
    page = browser.page
    page.goto(browser.base + LOGIN)
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main form button[type=submit]")


def sign_out(browser: Browser) -> None:
    page = browser.page
    page.goto(browser.base + "/")
    page.click("#link-logout")
    page.click("main button[type=submit]")
    page.wait_for_url(browser.base + "/")
    assert "Not signed in" in page.inner_text("#status")


def register_key(browser: Browser, username: str, *, name: str, passkey: bool) -> dict[str, Any]:
    """Sign in with the password, add a key on the 2FA settings page, sign out; return the authenticator's credential.

    The account has no second factor yet: the fresh password sign-in is the
    proof the registration needs, and the first factor comes with recovery codes.
    """
    page = browser.page
    password_sign_in(browser, username)
    page.wait_for_url(browser.base + "/")
    page.goto(browser.base + OVERVIEW)
    page.fill("#webauthn-name", name)
    if passkey:
        page.check("#webauthn-passkey")
    page.click("#webauthn-register")
    codes = page.locator("#webauthn-recovery-codes")
    codes.wait_for(state="visible")
    assert len(codes.locator("pre").inner_text().split()) == 10
    page.goto(browser.base + OVERVIEW)
    assert page.locator("#webauthn-keys li[data-credential-id] .webauthn-rename-name").input_value() == name
    (credential,) = browser.credentials()
    assert credential["isResidentCredential"] is passkey
    sign_out(browser)
    return credential


def wait_until_signed_in(browser: Browser, username: str) -> None:
    browser.page.wait_for_url(browser.base + "/")
    status = browser.page.inner_text("#status")
    assert f"{SIGNED_IN} {username}." in status and VERIFIED in status, status


def key_login_up_to_the_key(browser: Browser, username: str) -> None:
    """Password first: the login continues to the second-factor page, which offers the key."""
    password_sign_in(browser, username)
    browser.page.wait_for_url(VERIFY)
    assert browser.page.locator("#webauthn-verify").is_visible()


def assert_error_shown(browser: Browser) -> str:
    message = browser.page.locator("#webauthn-message")
    message.wait_for(state="visible")
    text = str(message.inner_text()).strip()
    assert text
    return text


def captured(request: Any) -> dict[str, Any]:
    """What the page sent: URL, body, and the headers that authenticate it (cookies and CSRF token)."""
    headers = request.all_headers()
    return {
        "url": request.url,
        "body": request.post_data,
        "headers": {
            "content-type": "application/json",
            "cookie": headers["cookie"],
            "x-csrftoken": headers["x-csrftoken"],
        },
    }


def replay(browsers: Browsers, sent: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """POST the same body with the same cookies from a fresh client; return the answer and who it is then."""
    client = browsers.playwright.request.new_context()
    try:
        answer = client.post(sent["url"], data=sent["body"], headers=sent["headers"])
        body = {"status": answer.status, **answer.json()}
        # The cookies the replay left (none for a refusal), then who that client is.
        me = client.get(browsers.base + "/api/auth/me/").json()
    finally:
        client.dispose()
    return body, me


# The tests.


def test_register_a_security_key_then_it_finishes_the_password_login(person, browsers):
    browser = browsers.new()
    registered = register_key(browser, person.username, name="Desk key", passkey=False)

    key_login_up_to_the_key(browser, person.username)
    browser.page.click("#webauthn-verify")
    wait_until_signed_in(browser, person.username)
    assert browser.me()["two_factor_verified"] is True
    remaining = {c["name"] for c in browser.context.cookies()}
    assert "ephemeral_auth_challenge" not in remaining and "ephemeral_auth_pending" not in remaining

    (used,) = browser.credentials()
    assert used["credentialId"] == registered["credentialId"]
    assert used["signCount"] > registered["signCount"]
    # The app recorded the use: its list of keys and the settings page say so.
    (listed,) = browser.context.request.get(browser.base + "/accounts/2fa/webauthn/").json()["credentials"]
    assert listed["name"] == "Desk key" and listed["passkey"] is False and listed["last_used_at"]
    browser.page.goto(browser.base + OVERVIEW)
    assert "last used" in browser.page.locator("#webauthn-keys li[data-credential-id]").inner_text()


def test_keys_are_managed_on_the_settings_page(person, browsers):
    """The same authenticator twice is refused by the browser (excludeCredentials); rename; remove."""
    browser = browsers.new()
    page = browser.page
    password_sign_in(browser, person.username)
    page.wait_for_url(browser.base + "/")
    page.goto(browser.base + OVERVIEW)
    assert page.locator("#webauthn-none").is_visible()
    page.fill("#webauthn-name", "Desk key")
    page.click("#webauthn-register")
    page.locator("#webauthn-recovery-codes").wait_for(state="visible")

    # The authenticator holds a credential the app lists in excludeCredentials: nothing new is made.
    page.goto(browser.base + OVERVIEW)
    page.click("#webauthn-register")
    assert assert_error_shown(browser) == "This security key is already registered."
    assert len(browser.credentials()) == 1
    assert page.locator("#webauthn-keys li[data-credential-id]").count() == 1

    # Rename (the page reloads with the new name), then remove.
    item = page.locator("#webauthn-keys li[data-credential-id]")
    item.locator(".webauthn-rename-name").fill("Office key")
    with page.expect_navigation():
        item.locator(".webauthn-rename").click()
    assert item.locator(".webauthn-rename-name").input_value() == "Office key"
    with page.expect_navigation():
        item.locator(".webauthn-remove").click()
    assert page.locator("#webauthn-none").is_visible()
    assert browser.context.request.get(browser.base + "/accounts/2fa/webauthn/").json()["credentials"] == []

    # No second factor left: the password alone signs in again.
    sign_out(browser)
    password_sign_in(browser, person.username)
    page.wait_for_url(browser.base + "/")
    assert f"{SIGNED_IN} {person.username}." in page.inner_text("#status")


def test_passkey_sign_in_from_the_login_page(person, browsers):
    browser = browsers.new()
    registered = register_key(browser, person.username, name="Laptop passkey", passkey=True)
    assert registered["isResidentCredential"] and registered["userHandle"]

    page = browser.page
    page.goto(f"{browser.base}{LOGIN}?next={OVERVIEW}")
    with page.expect_request(PASSKEY_LOGIN) as sent:
        page.click("#passkey-login")
    page.wait_for_url(browser.base + OVERVIEW)  # the login's "next", a page that needs the session
    assert page.locator("#webauthn-register").is_visible()
    page.goto(browser.base + "/")
    wait_until_signed_in(browser, person.username)
    # No password typed: the answer is all the page sent.
    body = json.loads(sent.value.post_data)
    assert set(body) == {"credential"}
    assert PASSWORD not in sent.value.post_data
    me = browser.me()
    assert me["authenticated"] and me["two_factor_verified"] and me["username"] == person.username
    (used,) = browser.credentials()
    assert used["signCount"] > registered["signCount"]


def test_passkey_sign_in_without_user_verification_is_refused(person, browsers):
    browser = browsers.new()
    register_key(browser, person.username, name="Passkey", passkey=True)
    browser.set_user_verified(False)
    posted: list[str] = []
    browser.page.on("request", lambda request: posted.append(request.url) if request.method == "POST" else None)

    # The options require user verification: the authenticator cannot give it, the browser refuses.
    page = browser.page
    page.goto(browser.base + LOGIN)
    page.click("#passkey-login")
    assert assert_error_shown(browser) == "The security key did not answer (cancelled or timed out)."
    assert page.url.startswith(browser.base + LOGIN)
    assert [urlsplit(url).path for url in posted] == ["/accounts/passkey/options/"]  # no answer was sent
    assert browser.me()["authenticated"] is False
    assert "Not signed in" in browser.status()


def test_a_passkey_answer_without_user_verification_is_refused_by_the_server(person, browsers):
    """Options tampered with ("discouraged") get an answer without the UV flag: the app refuses it."""
    browser = browsers.new()
    registered = register_key(browser, person.username, name="Passkey", passkey=True)
    browser.set_user_verified(False)

    def discouraged(route: Any) -> None:
        response = route.fetch()
        options = response.json()
        assert options["publicKey"]["userVerification"] == "required"
        options["publicKey"]["userVerification"] = "discouraged"
        route.fulfill(response=response, json=options)

    page = browser.page
    page.route(PASSKEY_OPTIONS, discouraged)
    page.goto(browser.base + LOGIN)
    with page.expect_response(PASSKEY_LOGIN) as answered:
        page.click("#passkey-login")
    refused = answered.value
    assert refused.status == 401 and refused.json()["error"] == "invalid_code", refused.text()
    assert assert_error_shown(browser) == refused.json()["message"]
    assert page.url.startswith(browser.base + LOGIN)
    assert browser.me()["authenticated"] is False
    assert "Not signed in" in browser.status()
    (signed,) = browser.credentials()
    assert signed["signCount"] > registered["signCount"]  # the authenticator did sign

    # The genuine options, the user verified: the same passkey signs in.
    page.unroute(PASSKEY_OPTIONS)
    browser.set_user_verified(True)
    page.goto(browser.base + LOGIN)
    page.click("#passkey-login")
    wait_until_signed_in(browser, person.username)


def test_a_replayed_security_key_assertion_is_refused(person, browsers):
    browser = browsers.new()
    register_key(browser, person.username, name="Desk key", passkey=False)

    key_login_up_to_the_key(browser, person.username)
    with browser.page.expect_request(KEY_VERIFY) as request:
        browser.page.click("#webauthn-verify")
    wait_until_signed_in(browser, person.username)
    sent = captured(request.value)
    assert "ephemeral_auth_pending=" in sent["headers"]["cookie"]

    # The same body with the same cookies (the pending login's and the challenge's): refused.
    answer, me = replay(browsers, sent)
    assert answer["status"] == 401 and answer["error"] == "invalid_token", answer
    assert me["authenticated"] is False

    # The same assertion inside a new pending login of this browser: its challenge was used up.
    sign_out(browser)
    key_login_up_to_the_key(browser, person.username)
    again = browser.post_json(sent["url"], json.loads(sent["body"]))
    assert again.status == 401 and again.json()["error"] == "invalid_token", again.text()
    assert browser.me()["authenticated"] is False
    # The new login itself is intact: the key finishes it.
    browser.page.click("#webauthn-verify")
    wait_until_signed_in(browser, person.username)


def test_a_replayed_passkey_assertion_is_refused(person, browsers):
    browser = browsers.new()
    register_key(browser, person.username, name="Passkey", passkey=True)

    page = browser.page
    page.goto(browser.base + LOGIN)
    with page.expect_request(PASSKEY_LOGIN) as request:
        page.click("#passkey-login")
    wait_until_signed_in(browser, person.username)
    sent = captured(request.value)
    assert "ephemeral_auth_webauthn=" in sent["headers"]["cookie"]

    answer, me = replay(browsers, sent)
    assert answer["status"] == 401 and answer["error"] == "invalid_token", answer
    assert me["authenticated"] is False


def hold_back(browser: Browser, pattern: str) -> dict[str, Any]:
    """Let the page make its assertion but keep it from the server; return what it would have sent.

    The route answers for the server (a refusal, so the page stays put), so the
    challenge of this browser is issued and not consumed.
    """
    held: dict[str, Any] = {}

    def keep(route: Any) -> None:
        held.update(captured(route.request))
        route.fulfill(
            status=400,
            content_type="application/json",
            body=json.dumps({"error": "held_back", "message": "Held back by the test."}),
        )

    browser.page.route(pattern, keep)
    return held


def test_an_assertion_for_another_browsers_challenge_is_refused(person, browsers):
    a = browsers.new()
    register_key(a, person.username, name="Desk key", passkey=False)

    # Browser A: password, then the key answers A's challenge; the answer is held back.
    key_login_up_to_the_key(a, person.username)
    held = hold_back(a, KEY_VERIFY)
    a.page.click("#webauthn-verify")
    assert assert_error_shown(a) == "Held back by the test."
    body = json.loads(held["body"])

    # Browser B: the same account's password (B's own pending login and challenge cookie), then A's answer.
    b = browsers.new()
    key_login_up_to_the_key(b, person.username)
    stolen = b.post_json(held["url"], body)
    assert stolen.status == 401 and stolen.json()["error"] == "invalid_token", stolen.text()
    assert b.me()["authenticated"] is False

    # A's answer, with A's cookies, is still good: B's refusal consumed nothing.
    a.page.unroute(KEY_VERIFY)
    mine = a.post_json(held["url"], body)
    assert mine.status == 200 and mine.json()["status"] == "authenticated", mine.text()
    assert a.me()["two_factor_verified"] is True
    assert b.me()["authenticated"] is False


def test_a_passkey_assertion_for_another_browsers_challenge_is_refused(person, browsers):
    a = browsers.new()
    register_key(a, person.username, name="Passkey", passkey=True)

    a.page.goto(a.base + LOGIN)
    held = hold_back(a, PASSKEY_LOGIN)
    a.page.click("#passkey-login")
    assert assert_error_shown(a) == "Held back by the test."
    body = json.loads(held["body"])

    # Browser B opens the login page (its own CSRF cookie, no WebAuthn cookie) and posts A's answer.
    b = browsers.new()
    b.page.goto(b.base + LOGIN)
    stolen = b.post_json(held["url"], body)
    assert stolen.status == 401 and stolen.json()["error"] == "invalid_token", stolen.text()
    assert b.me()["authenticated"] is False

    a.page.unroute(PASSKEY_LOGIN)
    mine = a.post_json(held["url"], body)
    assert mine.status == 200 and mine.json()["status"] == "authenticated", mine.text()
    assert a.me()["username"] == person.username
