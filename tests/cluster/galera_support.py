"""The three-node Galera cluster of tests/cluster/test_galera.py: lifecycle, a database, racers spread over the nodes.

``.ci/cluster/galera.sh`` starts the nodes (SQL on 127.0.0.1:3311..3313). A racer
is a separate process (``spawn``) with its own Django set up against *one* node;
racers are released together by a barrier before every step, so their statements
collide on different nodes, where Galera decides at certification.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.race import collect

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / ".ci" / "cluster" / "galera.sh"
NODES = (1, 2, 3)
BARRIER_TIMEOUT = 120.0
RUN_TIMEOUT = 900.0

# Server settings a racer's session may run with (docs/clusters.md): the defaults, and the documented ones.
VARIANTS: dict[str, str] = {
    "default": "",
    # What docs/clusters.md recommends for the site's own reads: causal reads across nodes.
    "documented": "SET SESSION wsrep_sync_wait=1",
    # Hostile: no autocommit retry, so every certification conflict reaches the application.
    "no-retry": "SET SESSION wsrep_retry_autocommit=0",
}


def port(node: int) -> int:
    return 3310 + node


def url(node: int, database: str) -> str:
    return f"mysql://ephemeral:ephemeral@127.0.0.1:{port(node)}/{database}"


def galera(*args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"galera.sh {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def running_nodes() -> list[int]:
    up = []
    for line in galera("status").splitlines():
        if "Synced" in line:
            up.append(int(line.split()[1].rstrip(":")))
    return up


@contextmanager
def cluster() -> Iterator[None]:
    """Make sure three Synced nodes run; stop them afterwards if this started them."""
    started = running_nodes() != list(NODES)
    if started:
        print(galera("start"))
    try:
        yield
    finally:
        if started:
            galera("stop")


def sql(node: int, statement: str, database: str = "") -> list[tuple[Any, ...]]:
    import pymysql

    connection = pymysql.connect(
        host="127.0.0.1", port=port(node), user="ephemeral", password="ephemeral", database=database or None,
        autocommit=True,
    )
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement)
            return list(cursor.fetchall())
    finally:
        connection.close()


def fresh_database(name: str) -> str:
    """Create database ``name`` anew through node 1 and migrate it; return its name."""
    sql(1, f"DROP DATABASE IF EXISTS {name}")
    sql(1, f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "DATABASE_URL": url(1, name)}
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=600
    )
    return name


class Racer:
    """What a racer's target gets: its index and node, a barrier, and mailboxes to pass values from racer 0."""

    def __init__(self, index: int, node: int, count: int, barrier: Any, mailboxes: Sequence[Any]) -> None:
        self.index, self.node, self.count = index, node, count
        self._barrier, self._mailboxes = barrier, mailboxes

    def sync(self) -> None:
        self._barrier.wait(BARRIER_TIMEOUT)

    def publish(self, value: Any) -> None:
        """Racer 0: hand ``value`` to every other racer."""
        for mailbox in self._mailboxes[1:]:
            mailbox.put(value)

    def receive(self) -> Any:
        return self._mailboxes[self.index].get(timeout=BARRIER_TIMEOUT)

    def catch_up(self) -> None:
        """Wait until this node has applied everything committed anywhere (what racer 0 just created)."""
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SET STATEMENT wsrep_sync_wait=1 FOR SELECT 1")


def _child(
    index: int, node: int, count: int, database: str, variant: str, target: str, args: tuple[Any, ...],
    barrier: Any, mailboxes: Sequence[Any], results: Any,
) -> None:
    try:
        os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
        os.environ["DATABASE_URL"] = url(node, database)
        import django

        django.setup()
        from django.conf import settings
        from django.db import connection

        if VARIANTS[variant]:
            settings.DATABASES["default"].setdefault("OPTIONS", {})["init_command"] = VARIANTS[variant]
        connection.close()
        connection.ensure_connection()
        module_name, _, function_name = target.partition(":")
        function = getattr(importlib.import_module(module_name), function_name)
        value = function(Racer(index, node, count, barrier, mailboxes), *args)
        connection.close()
        results.put((index, True, value))
    except BaseException:
        barrier.abort()
        results.put((index, False, traceback.format_exc()))


def run_on_nodes(
    target: str, *, database: str, variant: str = "default", per_node: int = 1, args: tuple[Any, ...] = ()
) -> list[Any]:
    """Run ``target(racer, *args)`` in ``per_node`` processes on each node at once; return their results."""
    nodes = [node for _ in range(per_node) for node in NODES]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(nodes))
    mailboxes = [context.Queue() for _ in nodes]
    results = context.Queue()
    processes = [
        context.Process(
            target=_child,
            args=(i, node, len(nodes), database, variant, target, args, barrier, mailboxes, results),
            daemon=True,
        )
        for i, node in enumerate(nodes)
    ]
    names = [f"racer {i} (node {node})" for i, node in enumerate(nodes)]
    return collect(processes, results, timeout=RUN_TIMEOUT, names=names)
