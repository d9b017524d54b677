"""ephemeral_auth.http: the one JSON-or-page rule, fail-closed handling, cookie names, and the old import paths."""

from __future__ import annotations

import logging

import pytest
from django.contrib.auth.models import AnonymousUser
from django.db import DatabaseError
from django.test import RequestFactory

from ephemeral_auth import backends, decorators, http, middleware
from ephemeral_auth.exceptions import InvalidToken, ServiceUnavailable
from ephemeral_auth.oidc import browser
from ephemeral_auth.views import downloads, json, responses

HTML_NAVIGATION = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"

# (Content-Type of the body, Accept) -> JSON?
CASES = [
    ("", "", False),
    ("", "*/*", False),
    ("", HTML_NAVIGATION, False),
    ("", "application/json", True),
    ("", "application/json, text/plain, */*", True),
    ("", "application/json, text/html", False),
    ("application/json", "", True),
    ("application/json", HTML_NAVIGATION, True),
    ("application/x-www-form-urlencoded", "application/json", True),
    ("application/x-www-form-urlencoded", "", False),
]


def _request(content_type: str, accept: str, path: str = "/nowhere/"):
    extra = {"HTTP_ACCEPT": accept} if accept else {}
    if content_type:
        body = "{}" if "json" in content_type else ""
        return RequestFactory().post(path, data=body, content_type=content_type, **extra)
    return RequestFactory().get(path, **extra)


def _is_json(response) -> bool:
    return response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(("content_type", "accept", "expected"), CASES)
def test_the_rule(content_type, accept, expected):
    assert http.wants_json(_request(content_type, accept)) is expected


@pytest.mark.parametrize(("content_type", "accept", "expected"), CASES)
def test_every_answer_that_can_be_either_follows_the_rule(content_type, accept, expected):
    request = _request(content_type, accept)
    assert _is_json(json.csrf_failure(request)) is expected
    assert _is_json(http.service_unavailable(request)) is expected
    assert _is_json(downloads.method_not_allowed(request)) is expected
    request.user = AnonymousUser()
    request.two_factor_verified = False
    assert _is_json(decorators.two_factor_refusal(request)) is expected
    assert _is_json(decorators.reauthentication_refusal(request)) is expected


def test_the_api_always_gets_json_when_unavailable():
    response = http.service_unavailable(RequestFactory().get("/api/auth/me/", HTTP_ACCEPT=HTML_NAVIGATION))
    assert response.status_code == 503 and _is_json(response)


def test_fail_closed_turns_a_database_error_into_service_unavailable(caplog):
    log = logging.getLogger("ephemeral_auth.test_http")
    with caplog.at_level(logging.ERROR, logger=log.name), pytest.raises(ServiceUnavailable) as raised:
        with http.fail_closed(log, "in a test"):
            raise DatabaseError("connection lost")
    assert raised.value.code == "service_unavailable"
    assert isinstance(raised.value.__cause__, DatabaseError)
    [record] = [r for r in caplog.records if r.name == log.name]
    assert record.getMessage() == "database error in a test" and record.exc_info is not None


def test_fail_closed_lets_other_errors_through():
    with pytest.raises(InvalidToken), http.fail_closed(logging.getLogger("x"), "in a test"):
        raise InvalidToken()


def test_best_effort_skips_the_extra(caplog):
    log = logging.getLogger("ephemeral_auth.test_http")
    done = []
    with caplog.at_level(logging.ERROR, logger=log.name):
        with http.best_effort(log, "count"):
            raise DatabaseError("connection lost")
        done.append(True)
    assert done == [True]
    assert "could not count" in caplog.text


def test_cookie_names(settings):
    plain, secure = RequestFactory().get("/"), RequestFactory().get("/", secure=True)
    assert http.device_cookie_name(None) == "ephemeral_auth_device"
    assert http.device_cookie_name(secure) == "__Host-ephemeral_auth_device"
    assert http.challenge_cookie_name(plain) == "ephemeral_auth_challenge"
    assert http.pending_cookie_name(secure) == "__Host-ephemeral_auth_pending"
    assert http.binding_cookie_name(secure, "s").startswith("__Host-ephemeral_auth_oidc_")
    assert http.exchange_cookie_name(plain, "t").startswith("ephemeral_auth_oidc_x")
    assert http.password_reset_cookie_name() == "ephemeral_auth_reset"
    settings.EPHEMERAL_AUTH_DEVICE_COOKIE_NAME = "dev"
    assert http.device_cookie_name(secure) == "__Host-dev"


def test_the_old_places_still_export_the_names():
    assert json.error is http.error and json.error_response is http.error_response
    assert json.STATUS_BY_CODE is http.STATUS_BY_CODE
    assert downloads.wants_json is http.wants_json
    assert middleware.service_unavailable is http.service_unavailable
    for name in ("error_message", "error_status", "wait_message", "submitted_form", "html_error_response",
                 "challenge_cookie_name", "pending_cookie_name"):
        assert getattr(responses, name) is getattr(http, name), name
    assert backends.device_cookie_name is http.device_cookie_name
    assert browser.binding_cookie_name is http.binding_cookie_name
    assert browser.exchange_cookie_name is http.exchange_cookie_name


@pytest.fixture
def failing_login():
    """Make login() fail with a database error (as a dropped connection would)."""
    from django.contrib.auth.signals import user_logged_in

    def fail(**kwargs):
        raise DatabaseError("connection lost (test)")

    user_logged_in.connect(fail, dispatch_uid="test-http-failing-login")
    yield
    user_logged_in.disconnect(dispatch_uid="test-http-failing-login")


@pytest.mark.django_db
def test_the_login_page_fails_closed_with_its_form(client, user, failing_login):
    from tests.factories import PASSWORD

    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 503
    assert "temporarily unavailable" in response.content.decode()
    assert response.context["error_code"] == "service_unavailable"
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_the_verify_page_fails_closed_with_a_plain_page(client, totp_user, clock, failing_login):
    from tests.factories import PASSWORD, totp_code

    user, secret = totp_user
    step = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert step.status_code == 302 and "/2fa/verify/" in step["Location"]
    response = client.post(step["Location"], {"method": "totp", "code": totp_code(secret, clock.now)})
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html") and "<form" not in response.content.decode()
    assert "temporarily unavailable" in response.content.decode()
    assert "_auth_user_id" not in client.session
