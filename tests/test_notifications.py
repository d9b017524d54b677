"""Security notices (services/notifications.py, receivers.py): one mail per committed change, nothing secret."""

from __future__ import annotations

import logging
import re

import pytest
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.test import Client, RequestFactory

from ephemeral_auth import signals, tasks
from ephemeral_auth.exceptions import InvalidPassword
from ephemeral_auth.models import UserTwoFactor
from ephemeral_auth.services import email_otp, notifications, passwords, recovery, tokens, totp, two_factor
from ephemeral_auth.services.two_factor import Proof
from tests.factories import PASSWORD, UserFactory, enable_email_codes, enrol_totp, totp_code

pytestmark = pytest.mark.django_db

IP = "203.0.113.7"
NEW_PASSWORD = "a brand new passphrase 42"
SUBJECT = "Security notice"
AT = "2026-11-26T12:00:00+00:00"


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run the on_commit callbacks the block registered, as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def notices_on(settings):
    """Notices on, the job run inline (so mail.outbox holds them right after the commit)."""
    settings.EPHEMERAL_AUTH_SECURITY_NOTIFICATIONS = True
    settings.EPHEMERAL_AUTH_NOTIFICATION_RUNNER = "ephemeral_auth.services.passwords.run_inline"
    mail.outbox.clear()


@pytest.fixture
def request_():
    return RequestFactory().post("/accounts/2fa/", REMOTE_ADDR=IP)


def notices():
    return [message for message in mail.outbox if message.subject.startswith(SUBJECT)]


def the_notice():
    (message,) = notices()
    return message


def texts(message):
    """The text body and the HTML alternative, the two parts a reader sees."""
    return [message.body, *(content for content, _ in message.alternatives)]


def assert_shows_nothing_secret(message, *secrets):
    for text in texts(message):
        flat = text.replace("-", "").replace(" ", "")
        for secret in secrets:
            assert secret.replace("-", "").replace(" ", "") not in flat
        # No link at all: a notice grants nothing.
        assert "http://" not in text and "https://" not in text


def last_code():
    return re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)


def confirm_totp(user, now, request=None):
    setup = totp.setup(user, proof=Proof.trusted_caller(), now=now)
    code = totp_code(setup.secret, now)
    codes = totp.confirm(user, code, proof=Proof.trusted_caller(), now=now, request=request)
    return setup.secret, code, codes


# Off (the default): no mail, and no receiver of ours on the signals.


def test_off_by_default_nothing_is_sent_and_nothing_listens(user, now, committed, request_):
    assert notifications.enabled() is False
    for signal in (signals.authenticator_added, signals.authenticator_removed,
                   signals.recovery_codes_generated, signals.password_reset_completed):
        assert not [key for key, *_ in signal.receivers if str(key[0]).startswith("ephemeral_auth.notice_")]
    mail.outbox.clear()
    with committed():
        secret, _, _ = confirm_totp(user, now, request_)
    with committed():
        recovery.regenerate(user, totp_code(secret, now, offset=1), proof=Proof.trusted_caller(), now=now)
    with committed():
        two_factor.reset_two_factor(user)
    with committed():
        passwords.confirm_reset(tokens.issue_password_reset(user).raw, NEW_PASSWORD, request=request_)
    assert mail.outbox == []


def test_turning_it_on_and_off_connects_and_disconnects(settings, user, now, committed):
    settings.EPHEMERAL_AUTH_SECURITY_NOTIFICATIONS = True
    settings.EPHEMERAL_AUTH_NOTIFICATION_RUNNER = "ephemeral_auth.services.passwords.run_inline"
    assert signals.password_reset_completed.has_listeners()
    settings.EPHEMERAL_AUTH_SECURITY_NOTIFICATIONS = False
    with committed():
        passwords.confirm_reset(tokens.issue_password_reset(user).raw, NEW_PASSWORD)
    assert notices() == []


# On: each event is one mail to the user's address.


def test_a_new_authenticator_is_one_notice_without_the_secret_or_codes(user, now, notices_on, committed, request_):
    with committed():
        secret, code, codes = confirm_totp(user, now, request_)
    message = the_notice()  # the recovery codes made with it are part of this change
    assert len(mail.outbox) == 1
    assert message.to == [user.email]
    assert message.subject == "Security notice: a second factor was added"
    assert "A second factor was added to your account: authenticator app." in message.body
    assert f"From IP address: {IP}" in message.body
    assert "If it was not you" in message.body
    assert message.alternatives and message.alternatives[0][1] == "text/html"
    assert IP in message.alternatives[0][0]
    assert_shows_nothing_secret(message, secret, code, *codes)


def test_replacing_the_authenticator_says_replaced(user, now, notices_on, committed):
    old = enrol_totp(user)
    setup = totp.setup(user, code=totp_code(old, now), proof=Proof.trusted_caller(), now=now)
    with committed():
        codes = totp.confirm(user, totp_code(setup.secret, now, offset=1), proof=Proof.trusted_caller(), now=now)
    message = the_notice()
    assert message.subject == "Security notice: a second factor was replaced"
    assert "replaced by a new one: authenticator app" in message.body
    assert "From IP address" not in message.body  # no request, no address
    assert_shows_nothing_secret(message, old, setup.secret, *codes)


def test_removing_the_authenticator_is_one_notice(user, now, notices_on, committed, request_):
    secret = enrol_totp(user)
    code = totp_code(secret, now)
    with committed():
        totp.disable(user, code, proof=Proof.trusted_caller(), now=now, request=request_)
    message = the_notice()
    assert message.subject == "Security notice: a second factor was removed"
    assert "removed from your account: authenticator app" in message.body
    assert_shows_nothing_secret(message, secret, code)


def test_email_codes_on_and_off(user, now, notices_on, committed, request_):
    issued = email_otp.enable(user, proof=Proof.trusted_caller(), now=now, request=request_)
    code = last_code()
    with committed():
        codes = email_otp.confirm(user, issued.raw, code, proof=Proof.trusted_caller(), now=now, request=request_)
    message = the_notice()
    assert "added to your account: codes by email" in message.body
    assert_shows_nothing_secret(message, issued.raw, code, *codes)
    mail.outbox.clear()
    with committed():
        email_otp.disable(user, PASSWORD, proof=Proof.trusted_caller(), now=now, request=request_)
    assert "removed from your account: codes by email" in the_notice().body
    assert_shows_nothing_secret(the_notice(), PASSWORD)


def test_new_recovery_codes_are_one_notice_without_the_codes(user, now, notices_on, committed, request_):
    secret = enrol_totp(user)
    code = totp_code(secret, now)
    with committed():
        codes = recovery.regenerate(user, code, proof=Proof.trusted_caller(), now=now, request=request_)
    message = the_notice()
    assert message.subject == "Security notice: new recovery codes"
    assert "the previous ones no longer work" in message.body
    assert_shows_nothing_secret(message, secret, code, *codes)


def test_the_admin_reset_tells_each_method_removed(user, now, notices_on, committed):
    enrol_totp(user)
    enable_email_codes(user)
    with committed():
        two_factor.reset_two_factor(user)
    bodies = [message.body for message in notices()]
    assert len(bodies) == 2
    assert "authenticator app" in bodies[0] and "codes by email" in bodies[1]


def test_a_reset_password_is_one_notice_without_the_token_or_password(user, notices_on, committed, request_):
    raw = tokens.issue_password_reset(user).raw
    with committed():
        passwords.confirm_reset(raw, NEW_PASSWORD, request=request_)
    message = the_notice()
    assert message.to == [user.email]
    assert message.subject == "Security notice: your password was reset"
    assert "reset with a link sent to this address" in message.body
    assert f"From IP address: {IP}" in message.body
    assert_shows_nothing_secret(message, raw, NEW_PASSWORD)


def test_the_reset_endpoint_hands_its_request_on(user, notices_on, committed):
    raw = tokens.issue_password_reset(user).raw
    with committed():
        answer = Client(REMOTE_ADDR="198.51.100.4").post(
            "/api/auth/password-reset/confirm/", {"token": raw, "new_password": NEW_PASSWORD},
            content_type="application/json",
        )
    assert answer.status_code == 200
    assert "From IP address: 198.51.100.4" in the_notice().body
    assert_shows_nothing_secret(the_notice(), raw, NEW_PASSWORD)


def test_a_refused_reset_sends_nothing(user, notices_on, committed):
    raw = tokens.issue_password_reset(user).raw
    with committed(), pytest.raises(InvalidPassword):
        passwords.confirm_reset(raw, "1", request=None)
    assert notices() == []


# Never for a change that did not happen.


def test_a_rolled_back_change_sends_nothing(user, now, notices_on, committed):
    secret = enrol_totp(user)
    with committed(), pytest.raises(RuntimeError), transaction.atomic():
        totp.disable(user, totp_code(secret, now), proof=Proof.trusted_caller(), now=now)
        raise RuntimeError("rolled back")
    assert UserTwoFactor.objects.get(pk=user.pk).totp_enabled
    raw = tokens.issue_password_reset(user).raw
    with committed(), pytest.raises(RuntimeError), transaction.atomic():
        passwords.confirm_reset(raw, NEW_PASSWORD)
        raise RuntimeError("rolled back")
    assert notices() == []


# Who gets one.


def test_a_user_without_an_address_gets_none(now, notices_on, committed, caplog):
    user = UserFactory(email="")
    secret = enrol_totp(user)
    with caplog.at_level(logging.INFO, logger="ephemeral_auth.notifications"), committed():
        recovery.regenerate(user, totp_code(secret, now), proof=Proof.trusted_caller(), now=now)
    assert mail.outbox == []
    assert "has no email address" in caplog.text


def test_the_job_reads_the_current_address(user, notices_on):
    assert notifications.deliver_notice(user_id=str(user.pk), event="password_reset", at=AT) == 1
    assert the_notice().to == [user.email]
    type(user).objects.filter(pk=user.pk).update(email="")
    assert notifications.deliver_notice(user_id=str(user.pk), event="password_reset", at=AT) == 0
    assert notifications.deliver_notice(user_id="999999", event="password_reset", at=AT) == 0
    assert len(notices()) == 1


# Failures are logged, the change stands.


def test_a_failing_mail_backend_does_not_undo_the_change(user, now, notices_on, committed, caplog, monkeypatch):
    def broken(self, fail_silently=False):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr(EmailMultiAlternatives, "send", broken)
    secret = enrol_totp(user)
    code = totp_code(secret, now)
    with caplog.at_level(logging.ERROR, logger="ephemeral_auth.notifications"), committed():
        totp.disable(user, code, proof=Proof.trusted_caller(), now=now)
    assert not UserTwoFactor.objects.get(pk=user.pk).totp_enabled
    assert "security notice authenticator_removed to user" in caplog.text
    assert "smtp down" in caplog.text
    assert code not in caplog.text and secret not in caplog.text


def test_a_failing_runner_does_not_undo_the_change(settings, user, notices_on, committed, caplog):
    def broken_runner(job, **kwargs):
        raise RuntimeError("queue down")

    settings.EPHEMERAL_AUTH_NOTIFICATION_RUNNER = broken_runner
    raw = tokens.issue_password_reset(user).raw
    with caplog.at_level(logging.ERROR, logger="ephemeral_auth.notifications"), committed():
        passwords.confirm_reset(raw, NEW_PASSWORD)
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)
    assert "could not be queued" in caplog.text


def test_a_broken_template_is_logged_not_raised(user, notices_on, caplog, settings, tmp_path):
    (tmp_path / "ephemeral_auth" / "notifications").mkdir(parents=True)
    (tmp_path / "ephemeral_auth" / "notifications" / "password_reset.txt").write_text("{% if %}")
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [tmp_path]}]
    with caplog.at_level(logging.ERROR, logger="ephemeral_auth.notifications"):
        sent = notifications.deliver_notice(user_id=str(user.pk), event="password_reset", at=AT)
    assert sent == 0 and notices() == []
    assert "could not be sent" in caplog.text


# The job's arguments: plain text, what a task queue may store.


def test_the_runner_gets_plain_text_and_nothing_secret(settings, user, now, notices_on, committed, request_):
    queued = []
    settings.EPHEMERAL_AUTH_NOTIFICATION_RUNNER = lambda job, **kwargs: queued.append((job, kwargs))
    with committed():
        secret, code, codes = confirm_totp(user, now, request_)
    ((job, kwargs),) = queued
    assert job is notifications.deliver_notice
    assert all(isinstance(value, str) for value in kwargs.values())
    assert kwargs["user_id"] == str(user.pk) and kwargs["event"] == "authenticator_added"
    assert kwargs["ip"] == IP and kwargs["method"] == "totp" and kwargs["replaced"] == ""
    shown = repr(kwargs)
    assert not any(s in shown for s in (secret, code, *codes))
    assert mail.outbox == []


@pytest.mark.skipif(tasks.framework is None, reason="needs Django 6+ (django.tasks) or the django-tasks backport")
def test_with_a_queued_task_backend_the_notice_is_a_task(settings, user, notices_on, committed, request_):
    import importlib
    import json

    from tests.test_mail_tasks import backend_path

    if tasks.framework.__name__ == "django_tasks":
        importlib.import_module("django_tasks.signals")  # resets the backends on a change of TASKS
    settings.TASKS = {"default": {"BACKEND": backend_path("dummy")}}
    del settings.EPHEMERAL_AUTH_NOTIFICATION_RUNNER  # the default: a task when the backend queues
    backend = tasks.framework.task_backends["default"]
    backend.clear()
    assert tasks.task_for(notifications.deliver_notice) is tasks.send_security_notice
    raw = tokens.issue_password_reset(user).raw
    with committed():
        passwords.confirm_reset(raw, NEW_PASSWORD, request=request_)
    (result,) = [r for r in backend.results if r.task is tasks.send_security_notice]
    stored = json.dumps([result.args, result.kwargs])  # what a database queue keeps
    assert raw not in stored and NEW_PASSWORD not in stored and IP in stored
    assert mail.outbox == []
    result.task.call(*result.args, **result.kwargs)  # what a worker does
    assert the_notice().subject == "Security notice: your password was reset"
    backend.clear()


def test_the_language_noted_at_the_change_is_the_mails(user, notices_on, settings):
    settings.EPHEMERAL_AUTH_NOTIFICATION_RUNNER = "ephemeral_auth.services.passwords.run_inline"
    notifications.deliver_notice(
        user_id=str(user.pk), event="password_reset", at=AT, language="de"
    )
    # The date is written the German way, and so is the subject (the catalogs translate it).
    (message,) = mail.outbox
    assert message.subject.startswith("Sicherheitshinweis")
    assert "26. November 2026" in message.body


def test_an_event_name_is_checked(user, notices_on):
    with pytest.raises(ValueError):
        notifications.notify(user, "../password_reset")


# The one mail module (services/mail.py): what the code and reset mails relied on before it.


def test_mail_renders_in_the_active_language_unless_told(settings):
    from django.utils import translation

    from ephemeral_auth.services import mail as mail_module

    code_mail = mail_module.MailTemplates(
        subject="ephemeral_auth/emails/two_factor_code_subject.txt", text="ephemeral_auth/emails/two_factor_code.txt"
    )
    context = {"code": "123456", "purpose": "login", "minutes": 10}
    with translation.override("en"):
        english = mail_module.render(code_mail, context, to=["a@example.com"]).subject
    with translation.override("de"):
        german = mail_module.render(code_mail, context, to=["a@example.com"]).subject
    assert english == "Your sign-in code" and german != english
    with translation.override("en"):
        assert mail_module.render(code_mail, context, to=["a@example.com"], language="de").subject == german
        assert translation.get_language() == "en"  # the override ends with the rendering


def test_mail_html_is_optional_unless_required():
    from django.template import TemplateDoesNotExist

    from ephemeral_auth.services import mail as mail_module

    templates = mail_module.MailTemplates(
        subject="ephemeral_auth/emails/two_factor_code_subject.txt",
        text="ephemeral_auth/emails/two_factor_code.txt",
        html="ephemeral_auth/emails/no_such_template.html",
    )
    context = {"code": "123456", "purpose": "login", "minutes": 10}
    message = mail_module.render(templates, context, to=["a@example.com"])
    assert message.alternatives == [] and "123456" in message.body and "\n" not in message.subject
    with pytest.raises(TemplateDoesNotExist):
        mail_module.render(templates, context, to=["a@example.com"], html_required=True)
