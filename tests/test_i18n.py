"""Translations (ephemeral_auth/locale/): every catalog loads, pages and API messages follow the user's language.

``bash .ci/i18n.sh check`` (CI lint stage) proves every marked string is translated in
every catalog and every catalog is compiled; here, that Django finds and uses them.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import translation

pytestmark = pytest.mark.django_db

LANGUAGES = ["de", "es", "fr", "it", "nl", "pt-br"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_catalog_is_found_and_compiled(language: str) -> None:
    with translation.override(language):
        assert translation.gettext("Expired") != "Expired"
        one = translation.ngettext("Try again in %(count)d second.", "Try again in %(count)d seconds.", 1)
        many = translation.ngettext("Try again in %(count)d second.", "Try again in %(count)d seconds.", 5)
        assert one != "Try again in %(count)d second."
        assert "%(count)d" in one and "%(count)d" in many


@pytest.mark.parametrize(("language", "words"), [("de", "Anmelden"), ("fr", "Se connecter"), ("nl", "Aanmelden")])
def test_the_login_page_speaks_the_browser_language(language: str, words: str) -> None:
    page = Client().get("/accounts/login/", HTTP_ACCEPT_LANGUAGE=language)
    assert page.status_code == 200
    body = page.content.decode()
    assert words in body
    assert f'<html lang="{language}"' in body


def test_api_errors_keep_their_code_and_translate_their_message(user) -> None:
    def wrong_password(**headers: str) -> dict:
        answer = Client(**headers).post(
            "/api/auth/login/", {"username": user.get_username(), "password": "wrong"}, content_type="application/json"
        )
        assert answer.status_code == 401
        return answer.json()

    english, german = wrong_password(), wrong_password(HTTP_ACCEPT_LANGUAGE="de")
    assert english["error"] == german["error"] == "invalid_credentials"
    assert german["message"] != english["message"]


def test_the_language_switcher_sets_the_cookie() -> None:
    client = Client()
    answer = client.post("/i18n/setlang/", {"language": "it", "next": "/accounts/login/"})
    assert answer.status_code == 302
    page = client.get("/accounts/login/")
    assert '<html lang="it"' in page.content.decode()
