"""Headless Chromium through the example project: password, TOTP enrolment, TOTP login; the admin's 2FA login.

The browser is Debian's chromium driven by Playwright's sync API against
pytest-django's ``live_server`` (the example project's URLs and templates).
The server runs in this process, so the frozen app clock of the ``clock``
fixture is the server's clock too: the test moves to the next TOTP step
instead of sleeping.

The admin test goes through ``/admin/login/``, which the example project's
urls.py hands to ``ephemeral_auth.admin.AdminLoginView``
(``secure_admin_login``): a staff user with an authenticator continues to the
second-factor page and only then reaches the admin.

Run: ``bash .ci/e2e-setup.sh && pytest -m e2e tests/e2e/test_browser_two_factor.py``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest

from tests.factories import PASSWORD, UserFactory

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def page(monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    # Playwright's sync API runs an event loop in this thread; the ORM calls of
    # the test itself are still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(15_000)
        yield page
        context.close()
        browser.close()


@pytest.fixture
def person(transactional_db):
    """The account of the test, created before Playwright starts.

    ORM calls made while Playwright's sync API runs happen in another context
    and open a connection nobody closes (PostgreSQL then cannot drop the test
    database): the test body therefore makes none.
    """
    return UserFactory()


@pytest.fixture
def staff_with_totp(transactional_db, clock):
    """A staff user with a confirmed authenticator: (user, base32 secret); made before Playwright starts.

    Enrolled through the services five minutes before the frozen clock (as
    tests/e2e/servers.py's ``create_totp_user`` does in a served database),
    so the current code is not the spent enrolment code.
    """
    from ephemeral_auth.services import totp
    from ephemeral_auth.services.two_factor import Proof

    user = UserFactory(is_staff=True)
    earlier = clock.now - timedelta(minutes=5)
    setup = totp.setup(user, proof=Proof.trusted_caller(), now=earlier)
    totp.confirm(user, pyotp.TOTP(setup.secret).at(earlier), proof=Proof.trusted_caller(), now=earlier)
    return user, setup.secret


def sign_in(page, base, username):
    page.goto(base + "/")
    page.click("#link-login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")


def test_password_then_totp_enrolment_then_totp_login(person, live_server, clock, page):
    user = person
    base = live_server.url

    # 1. Password only: no 2FA yet, signed in straight away.
    sign_in(page, base, user.username)
    page.wait_for_url(base + "/")
    assert "Signed in as" in page.inner_text("#status")

    # 2. Enrol an authenticator with the secret shown on the page (no QR scanning).
    page.click("#link-totp")
    page.click("button[value=start]")
    assert page.locator(".qr svg").count() == 1
    secret = page.inner_text("#totp-secret").strip()
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    totp = pyotp.TOTP(secret)

    # 2a. A wrong code: the page says so, in words the user sees, and keeps the same secret.
    page.fill("input[name=code]", "000000" if totp.at(clock.now) != "000000" else "111111")
    page.click("button[value=confirm]")
    message = page.get_by_text("The code is invalid or has expired.")
    message.wait_for(state="visible")
    assert message.is_visible()
    assert page.locator("form .errorlist").inner_text().strip() == "The code is invalid or has expired."
    assert page.inner_text("#totp-secret").strip() == secret

    # 2b. The right code.
    page.fill("input[name=code]", totp.at(clock.now))
    page.click("button[value=confirm]")
    codes = page.locator("#recovery-codes li").all_inner_texts()
    assert len(codes) == 10
    page.click("#recovery-codes-done")

    # 3. Sign out (a POST from the confirmation page).
    page.goto(base + "/")
    page.click("#link-logout")
    page.click("main button[type=submit]")
    page.wait_for_url(base + "/")
    assert "Not signed in" in page.inner_text("#status")

    # 4. Sign in again: the password step continues to the code step.
    sign_in(page, base, user.username)
    page.wait_for_url(re.compile(r".*/accounts/2fa/verify/.*"))
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["ephemeral_auth_challenge"]["httpOnly"] and cookies["ephemeral_auth_pending"]["httpOnly"]
    clock.advance(30)  # the enrolment code was used up; the next step's code is fresh
    page.check("input[name=method][value=totp]")
    page.fill("input[name=code]", totp.at(clock.now))
    page.click("button[value=verify]")
    page.wait_for_url(base + "/")
    assert "passed two-factor authentication" in page.inner_text("#status")
    remaining = {c["name"] for c in page.context.cookies()}
    assert "ephemeral_auth_challenge" not in remaining and "ephemeral_auth_pending" not in remaining


def on_admin_login(page, base):
    """The admin's login form is shown, asking to come back to /admin/ (not the admin itself)."""
    page.wait_for_url(re.compile(re.escape(base) + r"/admin/login/\?next=/admin/$"))
    assert page.locator("#login-form").is_visible()
    assert page.locator("#site-name").count() == 1  # the admin's look
    assert "Site administration" not in page.content()


def test_admin_login_with_totp_reaches_the_admin_index(staff_with_totp, live_server, clock, page):
    user, secret = staff_with_totp
    base = live_server.url

    # 1. The admin sends an anonymous visitor to its login page.
    page.goto(base + "/admin/")
    on_admin_login(page, base)

    # 2. Username and password on the admin's form: the second-factor page follows, not the admin.
    page.fill("#login-form input[name=username]", user.username)
    page.fill("#login-form input[name=password]", PASSWORD)
    page.click("#login-form input[type=submit]")
    page.wait_for_url(re.compile(r".*/accounts/2fa/verify/\?.*"))
    verify_url = page.url
    assert parse_qs(urlsplit(verify_url).query)["next"] == ["/admin/"]
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["ephemeral_auth_challenge"]["httpOnly"] and cookies["ephemeral_auth_pending"]["httpOnly"]

    # 3. Before the code, the password alone does not open the admin.
    page.goto(base + "/admin/")
    on_admin_login(page, base)

    # 4. Back to the code page: the current code ends on the admin index.
    page.goto(verify_url)
    page.check("input[name=method][value=totp]")
    page.fill("input[name=code]", pyotp.TOTP(secret).at(clock.now))
    page.click("button[value=verify]")
    page.wait_for_url(base + "/admin/")
    assert urlsplit(page.url).path == "/admin/"
    assert page.locator("#content h1").inner_text() == "Site administration"
    assert page.locator("#user-tools strong").text_content() == user.username  # "Welcome, <name>"
    remaining = {c["name"] for c in page.context.cookies()}
    assert "ephemeral_auth_challenge" not in remaining and "ephemeral_auth_pending" not in remaining
