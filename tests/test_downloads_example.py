"""The example project's files page: issue one-time links, redeem them from a client without cookies."""

from __future__ import annotations

import re
from html import unescape

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user):
    client = Client()
    client.force_login(user)
    return client


def test_the_files_page_needs_a_login(client):
    response = client.get("/files/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/files/"
    assert client.post("/files/1/link/").status_code == 302


def test_the_files_page_lists_the_demo_files(browser):
    body = browser.get("/files/").content.decode()
    for name in ("benchy.gcode", "notes.txt", "cube.stl"):
        assert name in body
    assert 'action="/files/2/link/"' in body


def test_a_link_from_the_page_downloads_once_without_cookies(browser, user):
    page = browser.post("/files/1/link/")
    assert page.status_code == 200
    assert b'<meta name="referrer" content="same-origin">' in page.content  # forms need an Origin for CSRF
    assert "no-store" in page["Cache-Control"]
    found = re.search(r'value="(http://testserver/files/1/download/\?token=[^"]+)"', page.content.decode())
    url = unescape(found.group(1))

    desktop_app = Client()
    response = desktop_app.get(url)
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="benchy.gcode"'
    assert f"served to {user.username}".encode() in response.content
    assert desktop_app.get(url).status_code == 403


def test_scripts_get_json(browser, user):
    response = browser.post("/files/3/link/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    data = response.json()
    assert data["expires_in"] == 300
    assert data["url"].startswith("http://testserver/files/3/download/?token=")
    # The link opens file 3 only; file 2 consumes nothing.
    app = Client()
    assert app.get(data["url"].replace("/files/3/", "/files/2/")).status_code == 403
    assert app.get(data["url"]).status_code == 200


def test_a_missing_file_gets_no_link(browser):
    assert browser.post("/files/99/link/").status_code == 404


def test_issuing_needs_post(browser):
    assert browser.get("/files/1/link/").status_code == 405


def test_a_logged_in_browser_downloads_without_a_link(browser, user):
    response = browser.get("/files/2/download/")
    assert response.status_code == 200
    assert f"served to {user.username}".encode() in response.content


def test_a_database_error_while_issuing_answers_503(browser, monkeypatch):
    from django.db import OperationalError

    from example_project.files import views

    def unreachable(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(views.download, "issue_link", unreachable)
    page = browser.post("/files/1/link/")
    assert page.status_code == 503
    assert b"closed the connection" not in page.content
    answer = browser.post("/files/1/link/", HTTP_ACCEPT="application/json")
    assert answer.status_code == 503
    assert answer.json()["error"] == "service_unavailable"
