"""The ``one_time_link`` decorator over HTTP: direct and scanner-safe modes, HEAD, sessions, failures."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.signals import user_logged_in
from django.contrib.sessions.models import Session
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError
from django.http import Http404, HttpResponse
from django.template import engines
from django.template.response import TemplateResponse
from django.test import Client
from django.urls import path
from django.views.decorators.http import require_GET

from ephemeral_auth import clock
from ephemeral_auth.decorators import RedeemedLink, one_time_link
from ephemeral_auth.models import EphemeralToken
from ephemeral_auth.services import downloads
from ephemeral_auth.views.downloads import issue_download_link

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

SEEN: list[dict] = []


def _serve(request, pk):
    SEEN.append(
        {
            "user": request.user.get_username() if request.user.is_authenticated else None,
            "method": request.method,
            "link": getattr(request, "one_time_link", None),
            "session_key": request.session.session_key,
        }
    )
    if int(pk) == 404:
        raise Http404("gone")
    return HttpResponse(f"{request.user.get_username()}:{pk}", content_type="text/plain")


@one_time_link("file:{pk}", url_name="direct")
@require_GET
def direct(request, pk):
    return _serve(request, pk)


@one_time_link("file:{pk}", url_name="safe", scanner_safe=True)
def safe(request, pk):
    return _serve(request, pk)


@one_time_link("file:{pk}", url_name="configured")
def configured(request, pk):
    return _serve(request, pk)


@one_time_link(lambda request, name: f"doc:{name}", url_name="named")
def named(request, name):
    template = engines["django"].from_string("doc {{ name }} for {{ request.user.get_username }}")
    return TemplateResponse(request, template, {"name": name})


@one_time_link("file:{pk}", allow_session=False, param="dl")
def tokens_only(request, pk):
    return _serve(request, pk)


urlpatterns = [
    path("direct/<int:pk>/", direct, name="direct"),
    path("safe/<int:pk>/", safe, name="safe"),
    path("configured/<int:pk>/", configured, name="configured"),
    path("named/<str:name>/", named, name="named"),
    path("tokens-only/<int:pk>/", tokens_only, name="tokens_only"),
]


@pytest.fixture(autouse=True)
def _clear_seen():
    SEEN.clear()


@pytest.fixture
def app():
    """A desktop app: no cookies, no session, CSRF enforced like a real request."""
    return Client(enforce_csrf_checks=True)


def link_for(user, name="direct", pk=1, **options):
    return issue_download_link(user, f"file:{pk}", url_name=name, kwargs={"pk": pk}, **options)


def assert_private(response):
    assert "no-store" in response["Cache-Control"]
    assert response["Referrer-Policy"] == "no-referrer"
    if response.content and response["Content-Type"].startswith("text/html"):  # a page at a tokenised URL
        assert b'<meta name="referrer" content="no-referrer">' in response.content
        assert b"same-origin" not in response.content


def assert_refused(response, status=403):
    assert response.status_code == status
    assert response["X-Error-Code"] == "invalid_token"
    assert b'data-error="invalid_token"' in response.content
    assert_private(response)


# Direct mode.


def test_a_client_without_cookies_redeems_once_as_the_issuing_user(app, user):
    logins = []
    user_logged_in.connect(lambda **kw: logins.append(kw), weak=False, dispatch_uid="t-logins")
    try:
        link = link_for(user)
        response = app.get(link.url)
    finally:
        user_logged_in.disconnect(dispatch_uid="t-logins")
    assert response.status_code == 200
    assert response.content == f"{user.username}:1".encode()
    assert_private(response)
    assert SEEN == [{"user": user.username, "method": "GET", "link": RedeemedLink("file:1"), "session_key": None}]
    # No session, no login, no cookie.
    assert not Session.objects.exists()
    assert not response.cookies
    assert logins == []
    user.refresh_from_db()
    assert user.last_login is None
    assert_refused(app.get(link.url))


def test_json_clients_get_a_json_error(app, user):
    link = link_for(user)
    app.get(link.url)
    response = app.get(link.url, HTTP_ACCEPT="application/json")
    assert response.status_code == 403
    assert response.json()["error"] == "invalid_token"
    assert_private(response)


def test_another_resource_consumes_nothing(app, user):
    link = link_for(user, pk=1)
    assert_refused(app.get(f"/direct/2/?token={link.raw}"))
    assert_refused(app.get(f"/safe/1/?token={link.raw}".replace("/safe/1/", "/direct/10/")))
    assert app.get(link.url).status_code == 200


def test_a_resource_differing_only_in_case_or_spaces_consumes_nothing(app, user):
    # MariaDB's default collation calls "doc:report" and "doc:REPORT " equal; the link must not.
    link = issue_download_link(user, "doc:report", url_name="named", kwargs={"name": "report"})
    for other in ("REPORT", "Report", "report%20", "report%20%20"):
        assert_refused(app.get(f"/named/{other}/?token={link.raw}"))
    assert app.get(link.url).content == f"doc report for {user.username}".encode()


def test_an_expired_link_is_refused(app, user, monkeypatch, now):
    link = link_for(user, now=now)
    monkeypatch.setattr(clock, "now", lambda: now + timedelta(minutes=5))
    assert_refused(app.get(link.url))


def test_head_never_consumes(app, user):
    link = link_for(user)
    for _ in range(3):
        response = app.head(link.url)
        assert response.status_code == 200
        assert response.content == b""
        assert_private(response)
    assert SEEN == []  # the view did not run
    assert app.get(link.url).status_code == 200
    response = app.head(link.url)
    assert response.status_code == 403
    assert response.content == b""


def test_post_redeems_too_without_a_csrf_cookie(app, user):
    link = link_for(user)
    response = app.post(link.url)  # token in the query string
    assert response.status_code == 200
    # The view was written for GET (require_GET) and saw a GET.
    assert SEEN[0]["method"] == "GET"


@pytest.mark.parametrize("method", ["put", "patch", "delete", "options"])
def test_other_methods_with_a_token_are_405_and_consume_nothing(app, user, method):
    link = link_for(user)
    response = getattr(app, method)(link.url)
    assert response.status_code == 405
    assert response["Allow"] == "GET, HEAD, POST"
    assert app.get(link.url).status_code == 200


def test_the_view_may_still_say_404_after_redemption(app, user):
    link = link_for(user, pk=404)
    assert app.get(link.url).status_code == 404
    assert_refused(app.get(link.url))


def test_a_template_response_is_rendered_as_the_links_user(app, user):
    link = issue_download_link(user, "doc:report", url_name="named", kwargs={"name": "report"})
    response = app.get(link.url)
    assert response.content == f"doc report for {user.username}".encode()


# Scanner-safe mode.


def test_scanner_safe_get_shows_a_confirm_page_and_post_redeems(app, user):
    link = link_for(user, name="safe")
    for _ in range(3):  # a mail scanner fetching the link burns nothing
        page = app.get(link.url)
        assert page.status_code == 200
        assert_private(page)
        body = page.content.decode()
        assert 'method="post" action="/safe/1/"' in body
        assert f'name="token" value="{link.raw}"' in body
        assert "csrfmiddlewaretoken" not in body
        assert not page.cookies  # neither a session nor a CSRF cookie is needed
    assert SEEN == []
    response = app.post("/safe/1/", {"token": link.raw})
    assert response.status_code == 200
    assert response.content == f"{user.username}:1".encode()
    assert_refused(app.post("/safe/1/", {"token": link.raw}))
    assert_refused(app.get(link.url))


def test_scanner_safe_get_of_an_invalid_link_is_refused(app, user):
    assert_refused(app.get("/safe/1/?token=" + "x" * 43))


def test_the_setting_switches_scanner_safe_mode(app, user, settings):
    settings.EPHEMERAL_AUTH_DOWNLOAD_SCANNER_SAFE = True
    link = link_for(user, name="configured")
    assert b"<form" in app.get(link.url).content
    assert SEEN == []
    # The view that pinned scanner_safe=False is not affected.
    direct_link = link_for(user)
    assert app.get(direct_link.url).status_code == 200


def test_scanner_safe_head_never_consumes(app, user):
    link = link_for(user, name="safe")
    assert app.head(link.url).status_code == 200
    assert app.post("/safe/1/", {"token": link.raw}).status_code == 200


# Sessions.


def test_a_logged_in_browser_opens_another_users_link_as_that_user_for_one_request(user, other_user):
    browser = Client()
    browser.force_login(other_user)
    link = link_for(user)
    assert browser.get(link.url).content == f"{user.username}:1".encode()
    # The browser's own session is untouched and still its own.
    assert browser.get("/direct/1/").content == f"{other_user.username}:1".encode()
    assert Session.objects.count() == 1


def test_without_a_token_a_logged_in_user_is_served_by_session(user):
    browser = Client()
    browser.force_login(user)
    response = browser.get("/direct/3/")
    assert response.status_code == 200
    assert SEEN[0]["link"] is None


def test_without_a_token_csrf_still_applies(user):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    assert browser.post("/configured/3/").status_code == 403
    assert SEEN == []


def test_without_a_token_anonymous_clients_go_to_login(app):
    response = app.get("/direct/1/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/direct/1/"
    response = app.get("/direct/1/", HTTP_ACCEPT="application/json")
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"
    assert app.post("/direct/1/").status_code == 401


def test_allow_session_false_requires_a_token(user):
    browser = Client()
    browser.force_login(user)
    assert browser.get("/tokens-only/1/").status_code == 302
    link = issue_download_link(user, "file:1", url_name="tokens_only", kwargs={"pk": 1}, param="dl")
    assert browser.get(link.url).status_code == 200


# Issuing through the view.


def test_issue_link_on_the_view(user, rf):
    request = rf.get("/", HTTP_HOST="localhost")
    request.user = user
    link = direct.issue_link(request, pk=7)
    assert link.url == f"http://localhost/direct/7/?token={link.raw}"
    assert link.resource == "file:7"
    assert named.issue_link(user, name="x", absolute=False).url.startswith("/named/x/?token=")
    with pytest.raises(ImproperlyConfigured):
        tokens_only.issue_link(user, pk=1)


# Bad input.


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("token=", id="empty"),
        pytest.param("token=%00", id="nul"),
        pytest.param("token=RAW%00", id="raw-nul"),
        pytest.param("token=" + "x" * 100_000, id="100kb"),
        pytest.param("token=t%C3%B8ken-%F0%9F%99%82", id="unicode"),
        pytest.param("token=%FF%FE", id="bad-utf8"),
        pytest.param("token=RAW&token=other", id="two-tokens"),
    ],
)
def test_bad_tokens_are_refused_and_consume_nothing(app, user, query):
    link = link_for(user)
    response = app.get("/direct/1/?" + query.replace("RAW", link.raw))
    assert_refused(response)
    assert app.get(link.url).status_code == 200


def test_an_unnameable_resource_is_refused(app, user):
    link = issue_download_link(user, "doc:x", url_name="named", kwargs={"name": "x"})
    assert_refused(app.get(f"/named/{'n' * 300}/?token={link.raw}"))
    assert EphemeralToken.objects.count() == 1


def test_the_same_token_twice_is_fine(app, user):
    link = link_for(user)
    assert app.get(f"{link.url}&token={link.raw}").status_code == 200


def test_a_database_failure_is_503_not_500(app, user, monkeypatch):
    link = link_for(user)

    def down(*args, **kwargs):
        raise OperationalError("database is down")

    monkeypatch.setattr(downloads, "redeem_download", down)
    response = app.get(link.url, HTTP_ACCEPT="application/json")
    assert response.status_code == 503
    assert response.json()["error"] == "service_unavailable"
    page = app.get(link.url)
    assert page.status_code == 503
    assert page["X-Error-Code"] == "service_unavailable"
