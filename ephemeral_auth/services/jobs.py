"""The one job runner: how work leaves the request (inline, on a thread pool, or as a queued task).

A *job* is a module-level callable taking keyword arguments of plain text
(the password-reset job ``passwords.deliver_password_reset`` and the
security notice ``notifications.deliver_notice``). A *runner* runs a job: :func:`run_inline` in the caller,
:func:`run_in_thread` on a small per-process pool, :func:`run_as_task` as a
task of Django's tasks framework. :func:`runner` picks one from a setting
(a dotted path or a callable; None: a task when the site's task backend
queues, else the pool).

Why the tasks themselves are not here. A queued task is named by its
import path (``ephemeral_auth.tasks.send_password_reset``: a database queue
stores it, a worker imports it), and defining a task resolves its backend,
so ``ephemeral_auth.tasks`` is imported on first use, never while the apps
load. That module belongs to the wiring layer, above the services, and a
service may not import it. So this module knows no tasks framework: the
wiring hands it a *task queue* (``apps.py`` calls :func:`connect_tasks` with
a function that imports ``ephemeral_auth.tasks`` when first asked), and the
runners ask that queue whether a backend queues and which task runs a job.
The services import nothing above them, and ``tasks.py`` imports the jobs it
runs: no cycle. Until something is connected (Django not set up), there is
no task queue: the pool, and ``run_as_task`` refuses.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any, Protocol

from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.utils.module_loading import import_string

from .. import conf

__all__ = ["TaskQueue", "connect_tasks", "run_as_task", "run_in_thread", "run_inline", "runner"]

# The reset job's failures keep the logger and the message that sites already
# filter on (the notice job logs its own failures and never raises).
logger = logging.getLogger("ephemeral_auth.passwords")


class TaskQueue(Protocol):
    """What the runners need of the tasks framework integration (``ephemeral_auth.tasks``)."""

    # django.tasks, the django-tasks backport, or None when neither is installed.
    framework: ModuleType | None

    def backend_is_queued(self, alias: str | None = None) -> bool:
        """Whether the task backend runs tasks outside the request."""
        ...

    def task_for(self, job: Callable[..., Any]) -> Any:
        """Return the task that runs ``job``; raise LookupError for a job that has none."""
        ...


_task_queue: Callable[[], TaskQueue] | None = None


def connect_tasks(source: Callable[[], TaskQueue] | None) -> None:
    """Give the runners their task queue: ``source()`` returns it when first needed (None: none)."""
    global _task_queue
    _task_queue = source


def _tasks() -> TaskQueue | None:
    return _task_queue() if _task_queue is not None else None


def runner(setting: str) -> Callable[..., None]:
    """Return the runner that ``EPHEMERAL_AUTH_<setting>`` chooses.

    None (the default): :func:`run_as_task` when a task backend that queues
    is configured, else :func:`run_in_thread`. A dotted path or a callable:
    that runner. Raises ImproperlyConfigured for anything not callable.
    """
    path = conf.get(setting)
    if path is None:
        # Automatic: a durable queue when the site has configured one, else the thread pool.
        queue = _tasks()
        return run_as_task if queue is not None and queue.backend_is_queued() else run_in_thread
    chosen = import_string(path) if isinstance(path, str) else path
    if not callable(chosen):
        raise ImproperlyConfigured(f"EPHEMERAL_AUTH_{setting} must name a callable.")
    return chosen  # type: ignore[no-any-return]


def run_as_task(job: Callable[..., None], /, **kwargs: str) -> None:
    """Enqueue the job as a task of Django's tasks framework (``ephemeral_auth.tasks``).

    The request only writes the task (email and link template: no token
    exists yet); a task worker runs it. With a persistent backend (a
    database or Redis queue) a job survives a restart of the web workers.
    The task goes to the default backend (``TASKS["default"]``). Raises
    ImproperlyConfigured without django.tasks (Django 6+) or django-tasks,
    and LookupError for a job that has no task.
    """
    queue = _tasks()
    if queue is None or queue.framework is None:
        raise ImproperlyConfigured(
            "run_as_task needs Django's tasks framework: Django 6.0+, or the django-tasks package before."
        )
    queue.task_for(job).enqueue(**kwargs)


def run_inline(job: Callable[..., None], /, **kwargs: str) -> None:
    """Run the job now, in the request (tests, management commands; not for production)."""
    job(**kwargs)


_pool_lock = threading.Lock()
_pool: tuple[int, ThreadPoolExecutor] | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        # A pool created before a fork (gunicorn --preload) has no threads in
        # the child: one pool per process.
        if _pool is None or _pool[0] != os.getpid():
            _pool = (os.getpid(), ThreadPoolExecutor(max_workers=2, thread_name_prefix="ephemeral_auth-reset"))
        return _pool[1]


def _run_and_close(job: Callable[..., None], kwargs: dict[str, str]) -> None:
    try:
        job(**kwargs)
    except Exception:
        # The job logs its own failures; this is the last resort (no token here).
        logger.exception("password reset job failed")
    finally:
        # Connections are per thread: close the ones this worker opened.
        connections.close_all()


def run_in_thread(job: Callable[..., None], /, **kwargs: str) -> None:
    """Run the job on a small per-process thread pool, after the answer is on its way.

    The request returns as soon as the job is queued, so neither the database
    writes nor the mail server's latency show in the response time. The queue
    is in the process's memory: jobs not yet run are lost when the process
    ends (a restart, a deploy, ``kill -9``); :func:`run_as_task` is durable.
    """
    _executor().submit(_run_and_close, job, kwargs)
