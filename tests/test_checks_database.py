"""``manage.py check --database`` (ephemeral_auth/checks_database.py): quiet on one server, the fix on a cluster.

The live answers of a Galera node and of a replicated PostgreSQL primary are
checked in tests/cluster/; here the real single server of the run must give no
message, and each message is pinned on the rows a server would answer.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
from django.core.management import call_command

from ephemeral_auth import checks_database

pytestmark = pytest.mark.django_db


def test_a_single_server_is_quiet() -> None:
    assert checks_database.check_database(databases=["default"]) == []
    out = io.StringIO()
    call_command("check", "--database", "default", stdout=out)
    assert "ephemeral_auth" not in out.getvalue()


def test_without_database_argument_nothing_is_read(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        assert checks_database.check_database(databases=None) == []


class FakeCursor:
    """Answers the check's queries from a table of (query fragment, rows)."""

    def __init__(self, answers: dict[str, list[tuple[Any, ...]]]) -> None:
        self.answers, self.rows = answers, []

    def execute(self, sql: str, params: Any = None) -> None:
        for fragment, rows in self.answers.items():
            if fragment in sql:
                self.rows = list(rows)
                return
        raise AssertionError(f"unexpected query {sql}")

    def fetchone(self) -> Any:
        return self.rows[0] if self.rows else None

    def fetchall(self) -> list[Any]:
        return self.rows


def galera(sync_wait: str = "0", retry: str = "1", binlog: str = "ROW", status: str = "Primary") -> FakeCursor:
    return FakeCursor({
        "wsrep_on": [("wsrep_on", "ON")],
        "SESSION_VARIABLES": [("WSREP_SYNC_WAIT", sync_wait), ("WSREP_RETRY_AUTOCOMMIT", retry),
                              ("BINLOG_FORMAT", binlog)],
        "GLOBAL_STATUS": [("WSREP_CLUSTER_STATUS", status), ("WSREP_READY", "ON"), ("WSREP_CLUSTER_SIZE", "3")],
    })


def ids(messages: list[Any]) -> list[str]:
    return sorted(message.id for message in messages)


def test_galera_messages() -> None:
    assert ids(checks_database._galera("default", galera())) == ["ephemeral_auth.W101"]
    assert ids(checks_database._galera("default", galera(sync_wait="1"))) == []
    assert ids(checks_database._galera("default", galera(sync_wait="3", retry="0"))) == ["ephemeral_auth.W102"]
    assert ids(checks_database._galera("default", galera(sync_wait="1", binlog="MIXED"))) == ["ephemeral_auth.E102"]
    assert ids(checks_database._galera("default", galera(sync_wait="1", status="non-Primary"))) == [
        "ephemeral_auth.E101"
    ]
    off = FakeCursor({"wsrep_on": [("wsrep_on", "OFF")]})
    assert checks_database._galera("default", off) == []


def postgres(recovery: bool = False, commit: str = "on", names: str = "", standbys: Any = ()) -> FakeCursor:
    return FakeCursor({
        "pg_is_in_recovery": [(recovery, commit, names)],
        "pg_stat_replication": list(standbys),
    })


def test_postgres_messages() -> None:
    assert checks_database._postgres("default", postgres()) == []
    assert ids(checks_database._postgres("default", postgres(recovery=True))) == ["ephemeral_auth.E103"]
    assert ids(checks_database._postgres("default", postgres(standbys=[("node2", "async")]))) == [
        "ephemeral_auth.W103"
    ]
    synchronous = postgres(names="node2", standbys=[("node2", "sync")])
    assert checks_database._postgres("default", synchronous) == []
    local = postgres(commit="local", names="node2", standbys=[("node2", "sync")])
    assert ids(checks_database._postgres("default", local)) == ["ephemeral_auth.W103"]
    hidden = postgres(standbys=[("node2", None)])
    assert ids(checks_database._postgres("default", hidden)) == ["ephemeral_auth.W104"]
    message = checks_database._postgres("default", postgres(standbys=[("node2", "async")]))[0]
    assert "synchronous_mode" in message.hint and "node2" in message.msg
