"""Test settings with a durable task queue: tests/e2e/test_durable_mail.py.

tests.settings plus Django's tasks framework on the database backend of
django-tasks-db (``django_tasks_db.DatabaseBackend``, worker: ``manage.py
db_worker``), and mail kept as files in EMAIL_FILE_PATH (the environment;
default: sent_emails/ of the checkout) so that another process can read what
the task worker sent. With a queued backend configured and
EPHEMERAL_AUTH_PASSWORD_RESET_RUNNER left unset, password-reset mail goes
through ``ephemeral_auth.tasks``.

Needs django-tasks-db (and, on Django < 6, django-tasks): not in the main test
settings, so the suite runs without them.
"""

import os

import django

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks_db"]  # noqa: F405
if django.VERSION < (6, 0):
    # The backport's app: its checks and the signal handlers that reset backends on setting changes.
    INSTALLED_APPS.append("django_tasks")

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

_mail_dir = os.environ.get("EMAIL_FILE_PATH") or str(BASE_DIR / "sent_emails")  # noqa: F405
if django.VERSION >= (6, 1):
    MAILERS = {
        "default": {"BACKEND": "django.core.mail.backends.filebased.EmailBackend", "OPTIONS": {"file_path": _mail_dir}}
    }
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = _mail_dir

# Nothing here sets EPHEMERAL_AUTH_PASSWORD_RESET_RUNNER: the automatic choice is under test.
