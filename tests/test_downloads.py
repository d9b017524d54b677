"""The download-link service: issue, peek, redeem, and what bad input does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import AnonymousUser

from ephemeral_auth.exceptions import InvalidInput, InvalidToken
from ephemeral_auth.models import EphemeralToken, TokenType
from ephemeral_auth.services import downloads
from ephemeral_auth.views.downloads import issue_download_link

pytestmark = pytest.mark.django_db


@pytest.fixture
def request_of(rf):
    def make(user):
        request = rf.get("/files/", HTTP_HOST="localhost")
        request.user = user
        return request

    return make


def test_issue_from_a_request_gives_an_absolute_link(user, request_of, now):
    link = issue_download_link(request_of(user), "file:1", url="/files/1/download/", now=now)
    assert link.url == f"http://localhost/files/1/download/?token={link.raw}"
    assert link.resource == "file:1"
    assert link.expires_in == 300
    assert link.expires_at == now + timedelta(minutes=5)
    assert link.raw not in repr(link)
    row = EphemeralToken.objects.get()
    assert (row.token_type, row.user, row.resource) == (TokenType.SLICER_DOWNLOAD, user, "file:1")
    assert row.token != link.raw


def test_issue_for_a_user_with_a_url_name_gives_a_path(user):
    link = issue_download_link(
        user, "file:2", url_name="files:download", kwargs={"pk": 2}, param="dl", ttl=timedelta(seconds=30)
    )
    assert link.url == f"/files/2/download/?dl={link.raw}"
    assert link.expires_in == 30


def test_issue_keeps_an_existing_query(user):
    link = issue_download_link(user, "r", url="/x/?a=1&b=2#frag", absolute=False)
    assert link.url == f"/x/?a=1&b=2&token={link.raw}#frag"


@pytest.mark.parametrize("who", ["anonymous", "inactive", "unsaved", "none"])
def test_only_an_authenticated_active_user_issues_links(user, request_of, who, django_user_model):
    if who == "anonymous":
        issuer = request_of(AnonymousUser())
    elif who == "inactive":
        user.is_active = False
        issuer = user
    elif who == "unsaved":
        issuer = django_user_model(username="ghost")
    else:
        issuer = None
    with pytest.raises(InvalidInput):
        issue_download_link(issuer, "file:1", url="/f/")
    assert not EphemeralToken.objects.exists()


@pytest.mark.parametrize("resource", ["", None, 7, "r" * 256, "nul\x00", "\ud800"])
def test_bad_resources_are_invalid_input_and_write_nothing(user, resource):
    with pytest.raises(InvalidInput):
        issue_download_link(user, resource, url="/f/")
    assert not EphemeralToken.objects.exists()


def test_a_url_or_url_name_is_required(user):
    with pytest.raises(InvalidInput):
        issue_download_link(user, "file:1")
    assert not EphemeralToken.objects.exists()


def test_redeem_once(user, django_assert_num_queries):
    link = issue_download_link(user, "file:1", url="/f/")
    with django_assert_num_queries(2):  # the conditional DELETE (resource compared byte for byte), the user
        assert downloads.redeem_download(link.raw, "file:1") == user
    with pytest.raises(InvalidToken):
        downloads.redeem_download(link.raw, "file:1")


def test_another_resource_consumes_nothing(user):
    link = issue_download_link(user, "file:1", url="/f/")
    # Case and trailing spaces matter, also under MariaDB's case-insensitive collation.
    for other in ("file:2", "file:10", "FILE:1", "File:1", "file:1 ", "file:1  ", "fïle:1", ""):
        with pytest.raises(InvalidToken):
            downloads.redeem_download(link.raw, other)
        assert downloads.peek_download(link.raw, other) is None
    assert downloads.redeem_download(link.raw, "file:1") == user


def test_peek_has_no_side_effect(user):
    link = issue_download_link(user, "file:1", url="/f/")
    for _ in range(3):
        assert downloads.peek_download(link.raw, "file:1").user == user
    assert downloads.redeem_download(link.raw, "file:1") == user
    assert downloads.peek_download(link.raw, "file:1") is None


def test_an_expired_link_opens_nothing(user, now):
    link = issue_download_link(user, "file:1", url="/f/", now=now)
    later = now + timedelta(minutes=5)
    assert downloads.peek_download(link.raw, "file:1", now=later) is None
    with pytest.raises(InvalidToken):
        downloads.redeem_download(link.raw, "file:1", now=later)
    assert EphemeralToken.objects.count() == 1  # left for the purge


def test_a_deactivated_users_link_opens_nothing(user):
    link = issue_download_link(user, "file:1", url="/f/")
    user.is_active = False
    user.save()
    assert downloads.peek_download(link.raw, "file:1") is None
    with pytest.raises(InvalidToken):
        downloads.redeem_download(link.raw, "file:1")


def test_a_link_of_another_type_is_not_a_download_link(user):
    from ephemeral_auth.services import tokens

    raw = tokens.issue_password_reset(user).raw
    with pytest.raises(InvalidToken):
        downloads.redeem_download(raw, "file:1")
    assert EphemeralToken.objects.count() == 1


@pytest.mark.parametrize("raw", [None, 42, b"bytes", ["list"], "", "x" * 100_000, "nul\x00", "\ud800", "émoji-🙂"])
@pytest.mark.parametrize("resource", ["file:1", None, 3, "r" * 300])
def test_bad_input_is_invalid_token_and_consumes_nothing(user, raw, resource):
    issue_download_link(user, "file:1", url="/f/")
    with pytest.raises(InvalidToken):
        downloads.redeem_download(raw, resource)
    assert downloads.peek_download(raw, resource) is None
    assert EphemeralToken.objects.count() == 1


def test_add_token():
    assert downloads.add_token("/a/", "T") == "/a/?token=T"
    assert downloads.add_token("https://h/a/?x=1", "T", param="k") == "https://h/a/?x=1&k=T"


def test_issue_download_link_under_its_old_name_still_works_and_warns(user):
    with pytest.warns(DeprecationWarning, match="ephemeral_auth.views.downloads.issue_download_link"):
        old = downloads.issue_download_link
    assert old is issue_download_link
    assert old(user, "file:9", url="/f/9/", absolute=False).url.startswith("/f/9/?token=")
