"""Password-reset mail through Django's tasks framework (ephemeral_auth.tasks, passwords.run_as_task).

The tasks framework is django.tasks on Django 6+, the django-tasks backport before; tests that
need it skip without it. The durable queue itself (a database backend, a worker that outlives
``kill -9`` of the web server) is shown in tests/e2e/test_durable_mail.py.
"""

from __future__ import annotations

import importlib
import json
import re

import pytest
from django.conf import global_settings
from django.core import mail
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from ephemeral_auth import tasks
from ephemeral_auth.models import EphemeralToken, TokenType
from ephemeral_auth.services import passwords
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

LINK = "https://app.example.com/reset#token={token}"
IP = "203.0.113.7"
NEW_PASSWORD = "a brand new passphrase 42"

needs_tasks = pytest.mark.skipif(
    tasks.framework is None, reason="needs Django 6+ (django.tasks) or the django-tasks backport"
)

if tasks.framework is not None and tasks.framework.__name__ == "django_tasks":
    # The backport resets its backends on a change of TASKS from a receiver in this module,
    # which its AppConfig imports; tests.settings does not install that app.
    importlib.import_module("django_tasks.signals")


def backend_path(name: str) -> str:
    assert tasks.framework is not None
    module, cls = {"dummy": ("dummy", "DummyBackend"), "immediate": ("immediate", "ImmediateBackend")}[name]
    return f"{tasks.framework.__name__}.backends.{module}.{cls}"


@pytest.fixture
def dummy_backend(settings):
    """TASKS with the dummy backend (stores tasks, runs none); the runner setting left at its default."""
    settings.TASKS = {"default": {"BACKEND": backend_path("dummy")}}
    if hasattr(settings, "EPHEMERAL_AUTH_PASSWORD_RESET_RUNNER"):
        del settings.EPHEMERAL_AUTH_PASSWORD_RESET_RUNNER
    assert tasks.framework is not None
    backend = tasks.framework.task_backends["default"]
    backend.clear()
    yield backend
    backend.clear()


def enqueued(backend) -> list:
    return [result for result in backend.results if result.task is tasks.send_password_reset]


def run(result) -> None:
    """What a task worker does with a stored task: call it with its stored (JSON) arguments."""
    result.task.call(*result.args, **result.kwargs)


# Which runner.


def test_without_a_tasks_framework_the_default_is_the_thread_pool(settings, monkeypatch):
    monkeypatch.setattr(tasks, "framework", None)
    assert tasks.backend_is_queued() is False
    assert passwords._runner() is passwords.run_in_thread
    with pytest.raises(ImproperlyConfigured, match="tasks framework"):
        passwords.run_as_task(passwords.deliver_password_reset, email="a@example.com", link=LINK)


def test_the_app_imports_without_a_tasks_framework(monkeypatch):
    real_import = importlib.import_module

    def no_tasks(name, *args, **kwargs):
        if name in ("django.tasks", "django_tasks"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", no_tasks)
    assert tasks._load_framework() is None


@needs_tasks
def test_without_tasks_setting_the_default_is_the_thread_pool(settings):
    # Django's default (and the backport's) is the immediate backend: it would run the job in the request.
    if hasattr(global_settings, "TASKS"):
        settings.TASKS = global_settings.TASKS  # Django 6: TASKS always has a value
    elif hasattr(settings, "TASKS"):
        del settings.TASKS
    assert tasks.backend_is_queued() is False
    assert passwords._runner() is passwords.run_in_thread


@needs_tasks
def test_an_immediate_backend_keeps_the_thread_pool(settings):
    settings.TASKS = {"default": {"BACKEND": backend_path("immediate")}}
    assert tasks.backend_is_queued() is False
    assert passwords._runner() is passwords.run_in_thread


@needs_tasks
def test_a_queued_backend_selects_run_as_task(dummy_backend):
    assert tasks.backend_is_queued() is True
    assert passwords._runner() is passwords.run_as_task


@needs_tasks
def test_an_explicit_runner_wins_over_the_backend(dummy_backend, settings):
    settings.EPHEMERAL_AUTH_PASSWORD_RESET_RUNNER = "ephemeral_auth.services.passwords.run_in_thread"
    assert passwords._runner() is passwords.run_in_thread


@needs_tasks
def test_run_as_task_refuses_a_job_without_a_task(dummy_backend):
    with pytest.raises(LookupError):
        passwords.run_as_task(lambda **kwargs: None, email="a@example.com", link=LINK)
    assert dummy_backend.results == []


# What the task receives.


@needs_tasks
def test_the_request_only_enqueues_email_and_link_template(dummy_backend):
    user = UserFactory(email="alice@example.com")
    passwords.request_reset("alice@example.com", ip=IP, link=LINK)

    [result] = enqueued(dummy_backend)
    assert result.args == []
    assert result.kwargs == {"email": "alice@example.com", "link": LINK}
    # JSON as stored by a persistent backend; the placeholder, no token: none exists yet.
    assert json.loads(json.dumps(result.kwargs)) == result.kwargs
    assert "{token}" in result.kwargs["link"]
    assert not EphemeralToken.objects.filter(user=user, token_type=TokenType.PASSWORD_RESET).exists()
    assert mail.outbox == []


@needs_tasks
def test_known_and_unknown_addresses_enqueue_the_same(dummy_backend):
    UserFactory(email="known@example.com")
    passwords.request_reset("known@example.com", ip=IP, link=LINK)
    passwords.request_reset("nobody@example.com", ip=IP, link=LINK)
    known, unknown = enqueued(dummy_backend)
    assert known.task is unknown.task
    assert sorted(known.kwargs) == sorted(unknown.kwargs) == ["email", "link"]
    assert unknown.kwargs == {"email": "nobody@example.com", "link": LINK}


@needs_tasks
def test_over_the_per_email_limit_nothing_is_enqueued(dummy_backend, settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"password_reset_send": (1, 900)}
    passwords.request_reset("alice@example.com", ip=IP, link=LINK)
    passwords.request_reset("alice@example.com", ip=IP, link=LINK)
    assert len(enqueued(dummy_backend)) == 1


@needs_tasks
def test_the_api_enqueues_and_answers_sent(dummy_backend):
    UserFactory(email="api@example.com")
    client = Client()
    response = client.post("/api/auth/password-reset/", {"email": "api@example.com"}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "sent"}
    [result] = enqueued(dummy_backend)
    assert result.kwargs["email"] == "api@example.com"
    assert result.kwargs["link"].endswith("#token={token}")
    assert mail.outbox == []


# What the task does.


@needs_tasks
def test_the_task_delivers_like_deliver_password_reset(dummy_backend):
    user = UserFactory(email="alice@example.com")
    passwords.request_reset("alice@example.com", ip=IP, link=LINK)
    [result] = enqueued(dummy_backend)

    run(result)

    [message] = mail.outbox
    assert message.to == ["alice@example.com"]
    raw = re.search(r"#token=([A-Za-z0-9_-]+)", message.body).group(1)
    assert raw not in json.dumps(result.kwargs)
    assert passwords.confirm_reset(raw, NEW_PASSWORD) == user
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)


@needs_tasks
def test_the_task_for_an_unknown_address_sends_nothing(dummy_backend):
    passwords.request_reset("nobody@example.com", ip=IP, link=LINK)
    [result] = enqueued(dummy_backend)
    run(result)
    assert mail.outbox == []
    assert not EphemeralToken.objects.filter(token_type=TokenType.PASSWORD_RESET).exists()


@needs_tasks
def test_the_task_returns_nothing_that_tells_accounts_apart(dummy_backend):
    UserFactory(email="alice@example.com")
    assert tasks.send_password_reset.call(email="alice@example.com", link=LINK) is None
    assert tasks.send_password_reset.call(email="nobody@example.com", link=LINK) is None
    assert len(mail.outbox) == 1


@needs_tasks
def test_the_task_is_importable_by_its_queue_name():
    from django.utils.module_loading import import_string

    assert tasks.send_password_reset.module_path == "ephemeral_auth.tasks.send_password_reset"
    assert import_string(tasks.send_password_reset.module_path) is tasks.send_password_reset
