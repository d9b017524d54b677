"""HTML password reset pages: request, sent, confirm (fragment and cookie), complete."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from ephemeral_auth.models import EphemeralToken, RateLimitEvent, TokenType
from ephemeral_auth.services import tokens
from tests.factories import PASSWORD, shown_errors

pytestmark = pytest.mark.django_db

REQUEST_URL = "/accounts/password-reset/"
SENT_URL = "/accounts/password-reset/sent/"
CONFIRM_URL = "/accounts/password-reset/confirm/"
COMPLETE_URL = "/accounts/password-reset/complete/"
NEW_PASSWORD = "a brand new passphrase 42"
BOTH = {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}


@pytest.fixture(autouse=True)
def _inline(reset_mail_inline):
    """Mail is sent synchronously so each test can read mail.outbox."""


def browser(ip: str = "192.0.2.1") -> Client:
    """A client with CSRF enforced that has loaded the form (and got its CSRF cookie)."""
    client = Client(enforce_csrf_checks=True, REMOTE_ADDR=ip)
    assert client.get(REQUEST_URL).status_code == 200
    return client


def submit(client: Client, url: str, data: dict):
    return client.post(url, {**data, "csrfmiddlewaretoken": client.cookies["csrftoken"].value})


def snapshot(response) -> tuple:
    cookies = {
        name: (dict(morsel.items()), None if name == "csrftoken" else morsel.value)
        for name, morsel in response.cookies.items()
    }
    # Expires is "now" by the wall clock (never-cache); it carries no account information.
    assert "Expires" in response.headers
    headers = sorted((k, "<now>" if k == "Expires" else v) for k, v in response.headers.items())
    # A form's CSRF token (the example's language switcher is on every page) is per browser, like its cookie.
    token = rb'name="csrfmiddlewaretoken" value="[^"]+"'
    content = re.sub(token, b'name="csrfmiddlewaretoken" value=""', response.content)
    return response.status_code, headers, cookies, content




def visible_inputs(response) -> list[str]:
    """Every ``<input>`` of the page a user can see: not type=hidden, not inside a hidden row."""
    page = re.sub(r"<p[^>]*\bhidden\b[^>]*>.*?</p>", "", response.content.decode(), flags=re.S)
    return [tag for tag in re.findall(r"<input\b[^>]*>", page) if 'type="hidden"' not in tag]


def assert_token_not_shown(response, raw):
    """The raw token is in no visible input."""
    assert not [tag for tag in visible_inputs(response) if raw in tag]


def assert_token_kept_hidden(response, raw):
    """The posted token comes back in a hidden input only: no visible "Reset code" field at all."""
    assert_token_not_shown(response, raw)
    assert not [tag for tag in visible_inputs(response) if 'name="token"' in tag]
    assert b"Reset code" not in response.content
    assert f'<input type="hidden" name="token" value="{raw}"' in response.content.decode()


def assert_private(response):
    # same-origin, not no-referrer: with no-referrer browsers send "Origin: null" on the
    # forms' POSTs and Django's CSRF check fails; no page URL here ever holds a token.
    assert response["Referrer-Policy"] == "same-origin"
    assert "no-store" in response["Cache-Control"]


@pytest.mark.parametrize("url", [REQUEST_URL, SENT_URL, CONFIRM_URL, COMPLETE_URL])
def test_pages_render_privately(client, url):
    response = client.get(url)
    assert response.status_code == 200
    assert_private(response)
    assert b"/accounts/login/" in response.content or url == CONFIRM_URL


def test_request_redirects_to_the_sent_page_and_mails_a_fragment_link(user):
    client = browser()
    response = submit(client, REQUEST_URL, {"email": user.email})
    assert response.status_code == 302
    assert response["Location"] == SENT_URL
    assert_private(response)
    (message,) = mail.outbox
    assert re.search(r"http://testserver/accounts/password-reset/confirm/#token=[\w-]{43}\b", message.body)
    assert b"60 minutes" in client.get(SENT_URL).content


def test_known_and_unknown_emails_get_identical_answers_before_and_after_the_email_limit(user, frozen):
    known, unknown = browser("192.0.2.1"), browser("192.0.2.2")
    for attempt in range(5):
        a = submit(known, REQUEST_URL, {"email": user.email})
        b = submit(unknown, REQUEST_URL, {"email": "nobody@example.com"})
        assert snapshot(a) == snapshot(b), f"attempt {attempt + 1}"
        assert a.status_code == 302
    assert snapshot(known.get(SENT_URL)) == snapshot(unknown.get(SENT_URL))
    assert len(mail.outbox) == 3


def test_the_ip_limit_is_a_429_page_alike_for_known_and_unknown(user, frozen):
    known, unknown = browser("192.0.2.1"), browser("192.0.2.2")
    for i in range(10):
        submit(known, REQUEST_URL, {"email": f"filler{i}@example.com"})
        submit(unknown, REQUEST_URL, {"email": f"filler{i}@example.org"})
    a = submit(known, REQUEST_URL, {"email": user.email})
    b = submit(unknown, REQUEST_URL, {"email": "nobody@example.com"})
    assert a.status_code == 429
    assert a["Retry-After"] == str(15 * 60)
    assert shown_errors(a) == ["Too many requests. Try again in 15 minutes."]
    assert snapshot(a) == snapshot(b)
    assert mail.outbox == []


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="missing"),
        pytest.param({"email": ""}, id="empty"),
        pytest.param({"email": "not-an-email"}, id="not-email"),
        pytest.param({"email": "nul\x00@example.com"}, id="nul"),
        pytest.param({"email": "a" * 100_000}, id="100kb"),
        pytest.param({"email": "ü@example.com"}, id="unicode-local-part"),
    ],
)
def test_bad_input_on_the_request_page_is_400_and_writes_nothing(data):
    response = submit(browser(), REQUEST_URL, data)
    assert response.status_code == 400
    assert b'class="errorlist' in response.content
    assert shown_errors(response)  # the page says why
    assert not RateLimitEvent.objects.exists()
    assert mail.outbox == []


def test_a_browser_posting_with_its_origin_passes_csrf(user, settings):
    """Browsers send Origin on POST; under Referrer-Policy: no-referrer it would be "null"."""
    client = browser()
    token = client.cookies["csrftoken"].value
    response = client.post(REQUEST_URL, {"email": user.email, "csrfmiddlewaretoken": token},
                           HTTP_ORIGIN="http://testserver")
    assert response.status_code == 302
    refused = client.post(REQUEST_URL, {"email": user.email, "csrfmiddlewaretoken": token}, HTTP_ORIGIN="null")
    assert refused.status_code == 403


def test_the_request_page_names_a_bad_address(user):
    assert shown_errors(submit(browser(), REQUEST_URL, {"email": "not-an-email"})) == ["Enter a valid email address."]
    assert shown_errors(submit(browser(), REQUEST_URL, {"email": ""})) == ["This field is required."]


def test_csrf_is_enforced_on_the_form(user):
    client = Client(enforce_csrf_checks=True)
    assert client.post(REQUEST_URL, {"email": user.email}).status_code == 403
    assert not RateLimitEvent.objects.exists()


# Confirm.


@pytest.fixture
def raw(user):
    return tokens.issue_password_reset(user).raw


def test_the_confirm_page_reads_the_token_from_the_fragment(client):
    response = client.get(CONFIRM_URL)
    body = response.content.decode()
    assert 'name="token"' in body
    assert "location.hash" in body and "replaceState" in body


def test_confirm_with_the_token_field(user, raw):
    client = browser()
    response = submit(client, CONFIRM_URL, {"token": raw, **BOTH})
    assert response.status_code == 302
    assert response["Location"] == COMPLETE_URL
    assert_private(response)
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert not EphemeralToken.objects.exists()
    assert client.login(username=user.username, password=NEW_PASSWORD)


def test_a_token_in_the_query_is_moved_into_a_cookie_and_out_of_the_url(user, raw):
    client = browser()
    response = client.get(f"{CONFIRM_URL}?token={raw}")
    assert response.status_code == 302
    assert response["Location"] == CONFIRM_URL  # no token in the URL the page is shown at
    assert response["Referrer-Policy"] == "no-referrer"  # the redirected request sends no Referer
    assert "no-store" in response["Cache-Control"]
    cookie = response.cookies["ephemeral_auth_reset"]
    assert cookie.value == raw
    assert cookie["httponly"] and cookie["path"] == CONFIRM_URL and cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == 3600

    page = client.get(CONFIRM_URL)
    assert raw not in page.content.decode()
    assert '<p id="ea-token-row" hidden>' in page.content.decode()  # the cookie holds it

    done = submit(client, CONFIRM_URL, BOTH)
    assert done.status_code == 302 and done["Location"] == COMPLETE_URL
    assert done.cookies["ephemeral_auth_reset"].value == ""  # deleted
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_a_fresh_link_wins_over_a_dead_cookie(user, raw):
    client = browser()
    client.get(f"{CONFIRM_URL}?token={'x' * 43}")  # a dead token lands in the cookie
    failed = submit(client, CONFIRM_URL, BOTH)
    assert failed.status_code == 400
    assert b'data-error="invalid_token"' in failed.content
    assert failed.cookies["ephemeral_auth_reset"].value == ""  # dropped
    assert b'<p id="ea-token-row">' in failed.content  # the field is offered again
    client.get(f"{CONFIRM_URL}?token={'y' * 43}")
    # The fragment's token (filled into the form by the page) wins over the cookie's.
    done = submit(client, CONFIRM_URL, {"token": raw, **BOTH})
    assert done.status_code == 302
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_an_oversized_query_token_sets_no_cookie(client):
    response = client.get(f"{CONFIRM_URL}?token={'x' * 5000}")
    assert response.status_code == 302
    assert "ephemeral_auth_reset" not in response.cookies


def test_the_whole_flow_from_the_email(user):
    client = browser()
    submit(client, REQUEST_URL, {"email": user.email})
    raw = re.search(r"#token=([\w-]+)", mail.outbox[0].body).group(1)
    # The browser never sends the fragment; the page's script posts the token.
    page = client.get(CONFIRM_URL)
    assert page.status_code == 200
    submit(client, CONFIRM_URL, {"token": raw, **BOTH})
    assert client.login(username=user.username, password=NEW_PASSWORD)
    assert not client.login(username=user.username, password=PASSWORD)


def test_mismatched_passwords_keep_the_token(user, raw):
    response = submit(browser(), CONFIRM_URL, {"token": raw, "new_password1": NEW_PASSWORD, "new_password2": "other"})
    assert response.status_code == 400
    assert shown_errors(response) == ["The two passwords do not match."]
    assert tokens.peek_token(raw, TokenType.PASSWORD_RESET) is not None
    assert_token_kept_hidden(response, raw)


def test_a_weak_password_shows_the_validators_and_keeps_the_token(user, raw):
    response = submit(browser(), CONFIRM_URL, {"token": raw, "new_password1": "123", "new_password2": "123"})
    assert response.status_code == 400
    assert b"too short" in response.content
    errors = shown_errors(response)
    assert errors and all(text for text in errors)
    assert any("too short" in text for text in errors)
    assert tokens.peek_token(raw, TokenType.PASSWORD_RESET) is not None
    # The token rides along in a hidden input, never in a visible "Reset code" field.
    assert_token_kept_hidden(response, raw)


def test_after_a_weak_password_the_hidden_token_still_sets_the_password(user, raw):
    client = browser()
    weak = submit(client, CONFIRM_URL, {"token": raw, "new_password1": "123", "new_password2": "123"})
    kept = re.search(r'<input type="hidden" name="token" value="([^"]+)"', weak.content.decode()).group(1)
    done = submit(client, CONFIRM_URL, {"token": kept, **BOTH})
    assert done.status_code == 302 and done["Location"] == COMPLETE_URL
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_a_weak_password_with_the_token_in_the_cookie_shows_no_token(user, raw):
    client = browser()
    client.get(f"{CONFIRM_URL}?token={raw}")
    response = submit(client, CONFIRM_URL, {"new_password1": "123", "new_password2": "123"})
    assert response.status_code == 400
    assert raw not in response.content.decode()
    assert_token_not_shown(response, raw)


def test_an_invalid_token_shows_the_invalid_link_message(user):
    response = submit(browser(), CONFIRM_URL, {"token": "x" * 43, **BOTH})
    assert response.status_code == 400
    assert b'data-error="invalid_token"' in response.content
    assert shown_errors(response) == ["This link is invalid, has expired or was already used. Ask for a new link."]
    assert "x" * 43 not in response.content.decode()  # the dead token is not offered back
    assert REQUEST_URL.encode() in response.content


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({}, id="missing"),
        pytest.param({"token": "RAW"}, id="no-passwords"),
        pytest.param(BOTH, id="no-token"),
        pytest.param({"token": "RAW\x00", **BOTH}, id="nul-token"),
        pytest.param({"token": "x" * 100_000, **BOTH}, id="100kb"),
        pytest.param({"token": "RAW", "new_password1": "n\x00 long enough", "new_password2": "n\x00 long enough"},
                     id="nul-password"),
        pytest.param({"token": "tøken-🙂", **BOTH}, id="unicode"),
    ],
)
def test_bad_input_on_the_confirm_page_is_400_and_changes_nothing(user, raw, data):
    data = {k: v.replace("RAW", raw) for k, v in data.items()}
    response = submit(browser(), CONFIRM_URL, data)
    assert response.status_code == 400
    assert shown_errors(response)  # every refusal says why
    assert_token_not_shown(response, raw)
    assert tokens.peek_token(raw, TokenType.PASSWORD_RESET) is not None
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_a_database_failure_is_a_503_page(user, monkeypatch):
    from django.db import OperationalError

    from ephemeral_auth.services import ratelimit

    def down(*args, **kwargs):
        raise OperationalError("database is down")

    client = browser()
    monkeypatch.setattr(ratelimit, "attempt", down)
    response = submit(client, REQUEST_URL, {"email": user.email})
    assert response.status_code == 503
    assert_private(response)
