"""The password-reset service: request, deliver, confirm, and revocation on any password change."""

from __future__ import annotations

import logging
import re
import threading
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import update_last_login
from django.contrib.auth.views import PasswordChangeView
from django.contrib.sessions.models import Session
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import path

from ephemeral_auth.exceptions import InvalidInput, InvalidPassword, InvalidToken, RateLimited
from ephemeral_auth.models import EphemeralToken, EventType, RateLimitEvent, TokenType
from ephemeral_auth.services import passwords, ratelimit, tokens
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

LINK = "https://app.example.com/reset#token={token}"
IP = "203.0.113.7"
ROW_ID = re.compile(r"""([`"]id[`"]\s*(?:<>|!=|=)\s*)\d+""")
NEW_PASSWORD = "a brand new passphrase 42"

# For the PasswordChangeView test (pytest.mark.urls(__name__)).
urlpatterns = [path("password_change/", PasswordChangeView.as_view(success_url="/done/"), name="password_change")]


def token_from(message) -> str:
    match = re.search(r"#token=([A-Za-z0-9_-]+)", message.body)
    assert match, message.body
    return match.group(1)


def live_reset_tokens(user) -> int:
    return EphemeralToken.objects.filter(user=user, token_type=TokenType.PASSWORD_RESET).count()


# Requesting.


def test_known_email_gets_one_link_in_the_fragment(user, reset_mail_inline):
    passwords.request_reset(user.email, ip=IP, link=LINK)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [user.email]
    raw = token_from(message)
    assert f"https://app.example.com/reset#token={raw}" in message.body
    assert raw in message.alternatives[0][0]  # the HTML part carries the same link
    assert tokens.peek_token(raw, TokenType.PASSWORD_RESET).user == user
    # Only the digest is stored.
    assert not EphemeralToken.objects.filter(token=raw).exists()


def test_unknown_email_sends_nothing_but_counts_the_same(user, reset_mail_inline):
    passwords.request_reset("nobody@example.com", ip=IP, link=LINK)
    passwords.request_reset(user.email, ip=IP, link=LINK)
    assert len(mail.outbox) == 1
    assert ratelimit.count(EventType.PASSWORD_RESET_SEND, "nobody@example.com") == 1
    assert ratelimit.count(EventType.PASSWORD_RESET_SEND, user.email) == 1
    assert ratelimit.count(EventType.PASSWORD_RESET_IP, IP) == 2


@pytest.mark.parametrize("known", [True, False], ids=["known", "unknown"])
def test_over_the_email_limit_answers_normally_and_sends_nothing(user, reset_mail_inline, now, known):
    email = user.email if known else "nobody@example.com"
    for i in range(4):
        passwords.request_reset(email, ip=f"198.51.100.{i}", link=LINK, now=now)
    assert len(mail.outbox) == (3 if known else 0)
    # The refused request left no event in the email's bucket.
    assert RateLimitEvent.objects.filter(event_type=EventType.PASSWORD_RESET_SEND).count() == 3


def test_the_email_bucket_ignores_case_and_spaces(user, reset_mail_inline, now):
    for variant in (user.email.upper(), f" {user.email} ", user.email.title()):
        passwords.request_reset(variant, ip=IP, link=LINK, now=now)
    passwords.request_reset(user.email, ip=IP, link=LINK, now=now)
    assert len(mail.outbox) == 3


def test_over_the_ip_limit_is_rate_limited_and_counts_no_email(user, reset_mail_inline, now):
    for i in range(10):
        passwords.request_reset(f"someone{i}@example.com", ip=IP, link=LINK, now=now)
    with pytest.raises(RateLimited) as info:
        passwords.request_reset(user.email, ip=IP, link=LINK, now=now)
    assert info.value.retry_after == 15 * 60
    assert mail.outbox == []
    assert ratelimit.count(EventType.PASSWORD_RESET_SEND, user.email, now=now) == 0
    # Another client is not affected.
    passwords.request_reset(user.email, ip="192.0.2.1", link=LINK, now=now)
    assert len(mail.outbox) == 1


def test_a_new_request_revokes_the_older_link(user, reset_mail_inline):
    passwords.request_reset(user.email, ip=IP, link=LINK)
    passwords.request_reset(user.email, ip=IP, link=LINK)
    first, second = (token_from(m) for m in mail.outbox)
    assert live_reset_tokens(user) == 1
    with pytest.raises(InvalidToken):
        passwords.confirm_reset(first, NEW_PASSWORD)
    passwords.confirm_reset(second, NEW_PASSWORD)


def test_inactive_users_and_unusable_passwords_get_no_link(reset_mail_inline):
    UserFactory(email="off@example.com", is_active=False)
    sso = UserFactory(email="sso@example.com")
    sso.set_unusable_password()
    sso.save()
    passwords.request_reset("off@example.com", ip=IP, link=LINK)
    passwords.request_reset("sso@example.com", ip=IP, link=LINK)
    assert mail.outbox == []
    assert not EphemeralToken.objects.exists()


def test_every_account_of_a_shared_email_gets_its_own_link(reset_mail_inline):
    first = UserFactory(email="shared@example.com")
    second = UserFactory(email="Shared@Example.com")
    passwords.request_reset("SHARED@example.com", ip=IP, link=LINK)
    assert sorted(m.to[0] for m in mail.outbox) == sorted([first.email, second.email])
    assert live_reset_tokens(first) == live_reset_tokens(second) == 1


@pytest.mark.parametrize(
    "email",
    [None, 42, ["a@example.com"], {"e": 1}, "", "   ", "not-an-email", "a@", "nul\x00@example.com",
     "\ud800@example.com", "x" * 100_000, "a" * 250 + "@example.com"],
)
def test_malformed_emails_are_invalid_input_and_write_nothing(reset_mail_inline, email):
    with pytest.raises(InvalidInput) as info:
        passwords.request_reset(email, ip=IP, link=LINK)
    assert info.value.field == "email"
    assert not RateLimitEvent.objects.exists()
    assert mail.outbox == []


def test_a_unicode_domain_is_accepted(reset_mail_inline):
    owner = UserFactory(email="juergen@exämple.com")
    passwords.request_reset("JUERGEN@exämple.COM", ip=IP, link=LINK)
    assert [m.to for m in mail.outbox] == [[owner.email]]


def test_a_non_ascii_local_part_is_refused_like_djangos_email_field(reset_mail_inline):
    # Django's EmailValidator (and so every EmailField) refuses it too.
    with pytest.raises(InvalidInput):
        passwords.request_reset("jürgen@example.com", ip=IP, link=LINK)
    assert not RateLimitEvent.objects.exists()


def test_known_and_unknown_emails_cost_the_same_queries_in_the_request(user, reset_jobs, now):
    """What an observer can time is identical: the account lookup happens in the job."""

    def statements(email):
        with CaptureQueriesContext(connection) as captured:
            passwords.request_reset(email, ip=IP, link=LINK, now=now)
        # Row ids differ from call to call; the statements must not.
        return [ROW_ID.sub(r"\1<id>", q["sql"].replace(email, "<email>")) for q in captured.captured_queries]

    known = statements(user.email)
    unknown = statements("nobody@example.com")
    assert len(known) == len(unknown) == 4  # two rate-limit buckets, two statements each
    assert known == unknown
    assert [kwargs["email"] for _, kwargs in reset_jobs] == [user.email, "nobody@example.com"]
    assert not EphemeralToken.objects.exists()  # nothing issued until a job runs


def test_a_failed_send_revokes_the_link(user, reset_mail_inline, monkeypatch, caplog):
    def broken(self, fail_silently=False):
        raise OSError("SMTP down")

    monkeypatch.setattr(EmailMultiAlternatives, "send", broken)
    with caplog.at_level(logging.ERROR, logger="ephemeral_auth.passwords"):
        passwords.request_reset(user.email, ip=IP, link=LINK)
    assert not EphemeralToken.objects.exists()
    assert "link revoked" in caplog.text


def test_deliver_returns_how_many_links_were_sent(user):
    assert passwords.deliver_password_reset(email=user.email, link=LINK) == 1
    assert passwords.deliver_password_reset(email="nobody@example.com", link=LINK) == 0


@pytest.mark.parametrize("link", ["https://no-placeholder.example/", None, "x\x00{token}"])
def test_a_link_without_placeholder_is_refused(user, reset_mail_inline, link):
    with pytest.raises(InvalidInput):
        passwords.request_reset(user.email, ip=IP, link=link)
    assert mail.outbox == []


# Links and runners.


def test_run_in_thread_runs_off_the_request_thread_and_logs_failures():
    done = threading.Event()
    seen = {}

    def job(**kwargs):
        seen["thread"] = threading.current_thread().name
        seen["kwargs"] = kwargs
        done.set()

    passwords.run_in_thread(job, email="a@example.com", link=LINK)
    assert done.wait(30)
    assert seen["thread"].startswith("ephemeral_auth-reset")
    assert seen["kwargs"] == {"email": "a@example.com", "link": LINK}

    logged = threading.Event()
    records = []

    class Catch(logging.Handler):
        # Other tests' queued jobs may log on the same pool: keep only ours.
        def emit(self, record):
            if record.exc_info and record.exc_info[0] is RuntimeError:
                records.append(record)
                logged.set()

    def broken(**kwargs):
        raise RuntimeError("boom")

    handler = Catch(level=logging.ERROR)
    logger = logging.getLogger("ephemeral_auth.passwords")
    logger.addHandler(handler)
    try:
        passwords.run_in_thread(broken)
        assert logged.wait(30)
    finally:
        logger.removeHandler(handler)
    assert records[0].getMessage() == "password reset job failed"
    assert records[0].exc_info[0] is RuntimeError
    # The pool survives a failed job.
    again = threading.Event()
    passwords.run_in_thread(lambda: again.set())
    assert again.wait(30)


# Confirming.


def issue(user, **kwargs) -> str:
    return tokens.issue_password_reset(user, **kwargs).raw


def test_confirm_sets_the_password_and_uses_the_token_up(user):
    raw = issue(user)
    assert passwords.confirm_reset(raw, NEW_PASSWORD) == user
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert not EphemeralToken.objects.exists()
    with pytest.raises(InvalidToken):
        passwords.confirm_reset(raw, NEW_PASSWORD + "!")
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


def test_confirm_revokes_other_reset_and_pre_auth_tokens_only(user, other_user):
    raw = issue(user)
    issue(user)
    tokens.issue_pre_auth(user, challenge="cookie", methods=["totp"])
    download = tokens.issue_download(user, resource="file:1")
    kept = issue(other_user)
    passwords.confirm_reset(raw, NEW_PASSWORD)
    remaining = set(EphemeralToken.objects.values_list("pk", flat=True))
    assert remaining == {download.token.pk, tokens.peek_token(kept, TokenType.PASSWORD_RESET).pk}


def test_a_weak_password_does_not_burn_the_token(user):
    raw = issue(user)
    for weak in ("123", "qwertyuiop", user.username, "12345678901"):
        with pytest.raises(InvalidPassword) as info:
            passwords.confirm_reset(raw, weak)
        assert info.value.code == "invalid_password"
        assert info.value.messages
        assert weak not in info.value.message
    assert tokens.peek_token(raw, TokenType.PASSWORD_RESET) is not None
    passwords.confirm_reset(raw, NEW_PASSWORD)


def test_an_expired_token_is_refused_without_being_burnt(user, now):
    raw = issue(user, now=now)
    with pytest.raises(InvalidToken):
        passwords.confirm_reset(raw, NEW_PASSWORD, now=now + timedelta(hours=1))
    assert EphemeralToken.objects.count() == 1  # left for the purge
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


def test_a_deactivated_user_cannot_reset(user):
    raw = issue(user)
    user.is_active = False
    user.save()
    with pytest.raises(InvalidToken):
        passwords.confirm_reset(raw, NEW_PASSWORD)
    user.refresh_from_db()
    assert user.check_password(PASSWORD)


@pytest.mark.parametrize("raw", [None, 7, "", "x" * 100_000, "nul\x00", "\ud800", "émoji-🙂", ["t"]])
def test_bad_tokens_are_invalid_token(user, raw):
    issue(user)
    with pytest.raises(InvalidToken):
        passwords.confirm_reset(raw, NEW_PASSWORD)
    assert EphemeralToken.objects.count() == 1


@pytest.mark.parametrize("password", [None, 12345678, ["p"], "", "nul\x00byte pass", "\ud800 long enough", "p" * 5000])
def test_bad_passwords_are_invalid_input_and_keep_the_token(user, password):
    raw = issue(user)
    with pytest.raises(InvalidInput) as info:
        passwords.confirm_reset(raw, password)
    assert info.value.field == "new_password"
    assert tokens.peek_token(raw, TokenType.PASSWORD_RESET) is not None


def test_confirm_query_budget(user, django_assert_max_num_queries):
    raw = issue(user)
    # peek, user, consume, update password, two revocations (+ savepoints on some backends)
    with django_assert_max_num_queries(10):
        passwords.confirm_reset(raw, NEW_PASSWORD)


# Sessions.


def test_a_reset_ends_the_users_other_sessions(user, other_user, client):
    client.force_login(user)
    assert client.get("/files/").status_code == 200
    passwords.confirm_reset(issue(user), NEW_PASSWORD)
    response = client.get("/files/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def _stable_session_hash(monkeypatch):
    model = get_user_model()
    monkeypatch.setattr(model, "get_session_auth_hash", lambda self: "stable")


def test_with_a_password_independent_session_hash_sessions_are_deleted(user, other_user, client, monkeypatch):
    _stable_session_hash(monkeypatch)
    client.force_login(user)
    other = client_for(other_user)
    passwords.confirm_reset(issue(user), NEW_PASSWORD)
    assert [s.get_decoded()["_auth_user_id"] for s in Session.objects.all()] == [str(other_user.pk)]
    assert client.get("/files/").status_code == 302
    assert other.get("/files/").status_code == 200


def test_the_setting_off_leaves_sessions_alone(user, client, monkeypatch, settings):
    settings.EPHEMERAL_AUTH_PASSWORD_RESET_ENDS_SESSIONS = False
    _stable_session_hash(monkeypatch)
    client.force_login(user)
    passwords.confirm_reset(issue(user), NEW_PASSWORD)
    assert Session.objects.count() == 1
    assert client.get("/files/").status_code == 200


def client_for(user):
    from django.test import Client

    other = Client()
    other.force_login(user)
    return other


# Any password change revokes reset links.


def test_set_password_and_save_revokes_links_without_an_extra_select(user, django_assert_num_queries):
    issue(user)
    user.set_password("another fine passphrase")
    with django_assert_num_queries(2):  # the UPDATE and the revocation
        user.save()
    assert live_reset_tokens(user) == 0


def test_a_save_that_keeps_the_password_keeps_links(user, django_assert_num_queries):
    issue(user)
    user.first_name = "Alice"
    with django_assert_num_queries(2):  # the stored hash is read once, then the UPDATE
        user.save()
    with django_assert_num_queries(1):  # update_fields without the password: no extra query
        user.save(update_fields=["first_name"])
    update_last_login(None, user)
    assert live_reset_tokens(user) == 1


@pytest.mark.parametrize("change", ["unusable", "assigned_hash", "update_fields"])
def test_other_ways_of_changing_the_hash_revoke_links(user, change):
    issue(user)
    if change == "unusable":
        user.set_unusable_password()
        user.save()
    elif change == "assigned_hash":
        user.password = make_password("assigned directly")
        user.save()
    else:
        user.password = make_password("assigned directly")
        user.save(update_fields=["password"])
    assert live_reset_tokens(user) == 0


def test_a_new_user_costs_no_extra_query(django_assert_num_queries):
    model = get_user_model()
    with django_assert_num_queries(1):
        model.objects.create(username="fresh", email="fresh@example.com")


def test_the_admin_password_form_revokes_links(user, admin_client):
    issue(user)
    response = admin_client.post(
        f"/admin/auth/user/{user.pk}/password/",
        {"password1": "admin chosen passphrase", "password2": "admin chosen passphrase", "usable_password": "true"},
    )
    assert response.status_code == 302, response.content[:2000]
    user.refresh_from_db()
    assert user.check_password("admin chosen passphrase")
    assert live_reset_tokens(user) == 0


@pytest.mark.urls(__name__)
def test_djangos_password_change_view_revokes_links(user, client):
    issue(user)
    client.force_login(user)
    response = client.post(
        "/password_change/",
        {"old_password": PASSWORD, "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert live_reset_tokens(user) == 0


def test_a_failed_save_does_not_revoke(user, monkeypatch):
    issue(user)
    user.set_password("another fine passphrase")
    user.username = None  # NOT NULL: the UPDATE fails
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        user.save()
    assert live_reset_tokens(user) == 1


def test_a_password_change_also_revokes_pending_two_factor_logins(user, other_user):
    from ephemeral_auth.services import tokens as token_service

    pending = token_service.issue_pre_auth(user, challenge="c", methods=["totp"])
    kept = token_service.issue_pre_auth(other_user, challenge="c", methods=["totp"])
    user.set_password("a brand new passphrase 42")
    user.save()
    assert not EphemeralToken.objects.filter(pk=pending.token.pk).exists()
    assert EphemeralToken.objects.filter(pk=kept.token.pk).exists()
