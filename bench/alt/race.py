"""A parallel burst of wrong passwords against one account: how many passwords does each limiter let through?

Each trial gives a fresh account a limit of 10 failures (every system is
configured so) and starts W processes at once (a barrier), each sending A
wrong passwords from its own IP (so no per-IP limit binds), through each
system's real entry point:

* ephemeral_auth: ``services.login.password_login`` (record first, confirm, then the hash);
* django-axes: ``django.contrib.auth.authenticate`` with ``AxesStandaloneBackend``
  first (check, hash, then the ``user_login_failed`` receiver records);
* django-allauth: its adapter's ``authenticate`` (``pre_authenticate`` consumes
  the login_failed limit under a cache lock, then the hash), on Redis and on LocMem.

The counting hasher (bench/alt/hashers.py) counts the passwords each process
actually checked. PostgreSQL only: SQLite serialises writers, there is no race
to show. With the fast MD5 hasher the window between a check and its record is
as narrow as it gets; a production hasher (PBKDF2, hundreds of milliseconds)
widens it for every check-then-record limiter.
"""

from __future__ import annotations

import itertools
import multiprocessing
import statistics
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.core.cache import close_caches
from django.core.exceptions import ValidationError
from django.db import connections
from django.test import override_settings

from .cases import FACTORY
from .hashers import CHECKED

__all__ = ["SYSTEMS", "race"]

OURS = "ephemeral_auth"
AXES = "django-axes (database handler)"
ALLAUTH_REDIS = "django-allauth, cache on Redis"
ALLAUTH_LOCMEM = "django-allauth, LocMem cache (per process)"
SYSTEMS = [OURS, AXES, ALLAUTH_REDIS, ALLAUTH_LOCMEM]
LIMIT = 10
_serial = itertools.count(1)


def _request(username: str, ip: str) -> Any:
    return FACTORY.post("/accounts/login/", {"username": username, "password": "wrong"}, REMOTE_ADDR=ip)


def _ours(username: str, ip: str) -> None:
    from ephemeral_auth.exceptions import InvalidCredentials, RateLimited
    from ephemeral_auth.services import login

    try:
        login.password_login(_request(username, ip), username=username, password="wrong")
    except (InvalidCredentials, RateLimited):
        pass


def _axes(username: str, ip: str) -> None:
    authenticate(_request(username, ip), username=username, password="wrong")


def _allauth(username: str, ip: str) -> None:
    from allauth.account.adapter import get_adapter

    request = _request(username, ip)
    try:
        get_adapter(request).authenticate(request, username=username, password="wrong")
    except ValidationError:
        pass


def _context(system: str) -> AbstractContextManager[Any]:
    if system == AXES:
        backends = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
        return override_settings(AXES_ENABLED=True, AUTHENTICATION_BACKENDS=backends)
    if system == ALLAUTH_LOCMEM:
        return override_settings(CACHES=settings.LOCMEM_CACHES)
    return override_settings()


ATTEMPT: dict[str, Callable[[str, str], None]] = {
    OURS: _ours, AXES: _axes, ALLAUTH_REDIS: _allauth, ALLAUTH_LOCMEM: _allauth,
}


def _worker(system: str, username: str, ip: str, attempts: int, barrier: Any, queue: Any) -> None:
    outcomes: Counter[str] = Counter()
    CHECKED["count"] = 0
    try:
        with _context(system):
            barrier.wait(timeout=60)
            for _ in range(attempts):
                before = CHECKED["count"]
                ATTEMPT[system](username, ip)
                outcomes["password checked" if CHECKED["count"] > before else "refused"] += 1
    except Exception as exc:  # reported, not hidden: the parent prints it
        outcomes[f"error {type(exc).__name__}: {exc}"[:200]] += 1
    finally:
        connections.close_all()
    queue.put({"checked": CHECKED["count"], "outcomes": dict(outcomes)})


def _recorded(system: str, username: str) -> int | None:
    """Return the failures the system holds for the account after the burst (None where it cannot be read)."""
    if system == OURS:
        from ephemeral_auth.models import EventType
        from ephemeral_auth.services import ratelimit

        return ratelimit.count(EventType.LOGIN_ATTEMPT, ratelimit.subject_key(username))
    if system == AXES:
        from axes.models import AccessAttempt
        from django.db.models import Sum

        total = AccessAttempt.objects.filter(username=username).aggregate(total=Sum("failures_since_start"))
        return int(total["total"] or 0)
    return None


def _trial(system: str, trial: int, workers: int, attempts: int) -> dict[str, Any]:
    username = f"racer{next(_serial)}"
    get_user_model()._default_manager.create_user(username=username, password="the-right-password")
    connections.close_all()
    close_caches()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(workers)
    queue = context.Queue()
    processes = [
        context.Process(
            target=_worker, args=(system, username, f"10.251.{trial % 250}.{i + 1}", attempts, barrier, queue)
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    reports = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    outcomes: Counter[str] = Counter()
    for report in reports:
        outcomes.update(report["outcomes"])
    return {
        "passwords_checked": sum(r["checked"] for r in reports),
        "outcomes": dict(outcomes),
        "failures_recorded": _recorded(system, username),
    }


def race(*, trials: int, workers: int, attempts: int, log: Callable[[str], None]) -> dict[str, Any]:
    """Run ``trials`` bursts per system, systems alternating; return the passwords checked per burst."""
    results: dict[str, list[dict[str, Any]]] = {system: [] for system in SYSTEMS}
    for trial in range(trials):
        shift = trial % len(SYSTEMS)
        for system in SYSTEMS[shift:] + SYSTEMS[:shift]:
            results[system].append(_trial(system, trial, workers, attempts))
        log(f"  race trial {trial + 1}/{trials} done")
    summary = {}
    for system, runs in results.items():
        checked = [r["passwords_checked"] for r in runs]
        summary[system] = {
            "passwords_checked": {"median": statistics.median(checked), "min": min(checked), "max": max(checked),
                                  "runs": checked},
            "failures_recorded": [r["failures_recorded"] for r in runs],
            "outcomes": [r["outcomes"] for r in runs],
        }
    return {"limit": LIMIT, "workers": workers, "attempts_per_worker": attempts, "trials": trials, "systems": summary}
