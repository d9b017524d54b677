"""Run a function in several real processes at once against the test database.

Race tests prove what the database decides under real concurrency: separate
processes (``spawn``, so no state is shared with pytest), each with its own
connection to the *committed* test database, released together by a barrier
before every step so that their statements really collide.

A target is named ``"module:function"`` and imported in the child only after
``django.setup()``, so test modules may import models at the top. It is called
as ``function(sync, *args)`` where ``sync()`` waits for every racer; what it
returns (picklable) comes back to the parent in racer order. Arguments must be
plain values: pass ``TokenType.X.value``, not the enum member, whose class
cannot be unpickled before Django is set up.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import queue
import time
import traceback
from collections.abc import Sequence
from typing import Any

__all__ = ["collect", "run_racers"]

# Generous: starting Django in 8 processes on 2 busy cores takes a few seconds.
BARRIER_TIMEOUT = 60.0
RUN_TIMEOUT = 300.0


def _child(
    settings_module: str,
    db_name: str,
    target: str,
    barrier: Any,
    args: tuple[Any, ...],
    index: int,
    results: Any,
) -> None:
    try:
        os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
        import django

        django.setup()
        from django.conf import settings
        from django.db import connection

        # The parent runs inside pytest-django's test database; so must we.
        # No connection is open yet, so the new NAME is the one used.
        settings.DATABASES["default"]["NAME"] = db_name
        connection.close()
        connection.ensure_connection()
        module_name, _, function_name = target.partition(":")
        function = getattr(importlib.import_module(module_name), function_name)

        def sync() -> None:
            barrier.wait(BARRIER_TIMEOUT)

        value = function(sync, *args)
        connection.close()
        results.put((index, True, value))
    except BaseException:
        # Let the other racers fail fast instead of waiting out the barrier.
        barrier.abort()
        results.put((index, False, traceback.format_exc()))


def run_racers(target: str, args_per_racer: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run ``target`` once per entry of ``args_per_racer``, all at once; return their results."""
    from django.conf import settings
    from django.db import connection

    db_name = connection.settings_dict["NAME"]
    # Rows the parent created must be visible to the children: the test must
    # use django_db(transaction=True), which commits them.
    assert not connection.in_atomic_block, "race tests need pytest.mark.django_db(transaction=True)"
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(args_per_racer))
    results = context.Queue()
    processes = [
        context.Process(
            target=_child,
            args=(settings.SETTINGS_MODULE, db_name, target, barrier, tuple(args), index, results),
            daemon=True,
        )
        for index, args in enumerate(args_per_racer)
    ]
    return collect(processes, results, timeout=RUN_TIMEOUT)


def collect(processes: Sequence[Any], results: Any, *, timeout: float, names: Sequence[str] = ()) -> list[Any]:
    """Start ``processes``, gather what each puts on ``results`` as (index, ok, value); return the values in order.

    Raises AssertionError with every failure (a racer's traceback, a racer that
    died before reporting, the deadline). Every process is joined or terminated.
    Shared with tests/cluster/galera_support.py (racers spread over Galera nodes).
    """
    for process in processes:
        process.start()
    collected: dict[int, Any] = {}
    failures: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        while len(collected) + len(failures) < len(processes):
            try:
                index, ok, value = results.get(timeout=1)
            except queue.Empty:
                # A child that died before reporting (e.g. while unpickling its
                # arguments) would otherwise leave us waiting for the deadline.
                dead = [
                    i for i, p in enumerate(processes)
                    if p.exitcode not in (None, 0) and i not in collected
                ]
                if dead:
                    failures.append(f"racers {dead} died (see their traceback on stderr)")
                    break
                if time.monotonic() > deadline:
                    failures.append(f"racers did not finish within {timeout}s")
                    break
                continue
            if ok:
                collected[index] = value
            else:
                name = names[index] if index < len(names) else f"racer {index}"
                failures.append(f"{name} failed:\n{value}")
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join()
    if failures:
        raise AssertionError("\n".join(failures))
    return [collected[index] for index in range(len(processes))]
