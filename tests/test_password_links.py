"""The reset link template, built from the request at the web edge (ephemeral_auth.views.passwords).

Moved from tests/test_passwords.py with link_template itself (it left services.passwords).
"""

from __future__ import annotations

import pytest

from ephemeral_auth.services import passwords as passwords_service
from ephemeral_auth.views import passwords

pytestmark = pytest.mark.django_db


def test_default_link_is_the_confirm_page_with_a_fragment(rf):
    request = rf.get("/", HTTP_HOST="testserver")
    assert passwords.link_template(request) == "http://testserver/accounts/password-reset/confirm/#token={token}"


@pytest.mark.parametrize(
    ("configured", "expected"),
    [
        ("https://spa.example.com/reset", "https://spa.example.com/reset#token={token}"),
        ("https://spa.example.com/reset?t={token}", "https://spa.example.com/reset?t={token}"),
    ],
)
def test_configured_link(rf, settings, configured, expected):
    settings.EPHEMERAL_AUTH_PASSWORD_RESET_URL = configured
    assert passwords.link_template(rf.get("/")) == expected


def test_the_old_link_template_name_still_works_and_warns(rf):
    with pytest.warns(DeprecationWarning, match="ephemeral_auth.views.passwords.link_template"):
        old = passwords_service.link_template
    assert old is passwords.link_template
    assert old(rf.get("/", HTTP_HOST="testserver")).endswith("#token={token}")
