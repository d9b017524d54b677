"""ephemeral_auth's background work as tasks of Django's tasks framework.

``django.tasks`` (Django 6.0 and later) or, before, the ``django-tasks``
backport (``django_tasks``). Neither is required: with neither installed
this module still imports, :data:`framework` is None and there is no task;
the password-reset runner then stays the in-process thread pool
(docs/password-reset.md, "Sending outside the request").

The reset task, :data:`send_password_reset`, receives what the in-process job
receives: the email address as typed and the link *template* with its
``{token}`` placeholder. No token exists when it is enqueued: looking the
user up, issuing the token and sending the mail all happen when a worker
runs the task, so a task backend that stores its arguments (a database
queue, Redis) never holds a usable link, and the request does the same work
for known and unknown addresses. The notice task,
:data:`send_security_notice`, receives the user's id, the event, its time,
the client address and the language (``services.notifications``): nothing
that grants access.

A task is defined when this module is imported, and the frameworks resolve
the task's backend then: import it lazily, not from an ``AppConfig.ready``.
The runners of ``services/jobs.py`` reach this module through
:func:`ephemeral_auth.services.jobs.connect_tasks`, which ``apps.py`` calls
with a function that imports it on first use (a service may not import this
wiring module; this module imports the jobs it runs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .services import notifications, passwords

__all__ = ["backend_is_queued", "framework", "send_password_reset", "send_security_notice", "task_for"]


def _load_framework() -> ModuleType | None:
    for name in ("django.tasks", "django_tasks"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


# django.tasks when this Django has it (6.0+), else the backport, else None.
framework: ModuleType | None = _load_framework()

if framework is not None:

    @framework.task()
    def send_password_reset(email: str, link: str) -> None:
        """Issue and mail a reset link for every eligible account of ``email`` (see deliver_password_reset).

        Returns nothing: the number of links sent would tell whoever reads the
        task results whether the address has an account.
        """
        passwords.deliver_password_reset(email=email, link=link)

    @framework.task()
    def send_security_notice(
        user_id: str, event: str, at: str, ip: str = "", method: str = "", replaced: str = "", language: str = ""
    ) -> None:
        """Mail a security notice (see notifications.deliver_notice): plain text in, nothing secret stored."""
        notifications.deliver_notice(
            user_id=user_id, event=event, at=at, ip=ip, method=method, replaced=replaced, language=language
        )

else:
    # No framework: no task (the runners fall back to the thread pool).
    send_password_reset = None
    send_security_notice = None


def backend_is_queued(alias: str | None = None) -> bool:
    """Whether the task backend ``alias`` (default: the framework's default) runs tasks outside the request.

    False without a framework and for the immediate backends (Django's
    default when ``TASKS`` is not set), which run a task in the caller: the
    password-reset job would then run in the request and its timing would
    tell known addresses from unknown ones. Any other backend counts,
    including the dummy one (stores tasks and never runs them: for tests).
    """
    if framework is None:
        return False
    backend = framework.task_backends[alias or framework.DEFAULT_TASK_BACKEND_ALIAS]
    immediate = importlib.import_module(f"{framework.__name__}.backends.immediate").ImmediateBackend
    return not isinstance(backend, immediate)


def task_for(job: Callable[..., Any]) -> Any:
    """Return the task that runs ``job``; raise LookupError for a job that has none."""
    if send_password_reset is not None and job is passwords.deliver_password_reset:
        return send_password_reset
    if send_security_notice is not None and job is notifications.deliver_notice:
        return send_security_notice
    raise LookupError(f"ephemeral_auth has no task for {getattr(job, '__qualname__', job)!r}")
