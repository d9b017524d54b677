"""services/engine/: what counts as a lost race, and what changes only on a Galera node.

The behaviour on a real Galera cluster is proved in tests/cluster/test_galera.py;
here, the classification of errors and that one server keeps its single statements.
"""

from __future__ import annotations

import pytest
from django.db import DatabaseError, IntegrityError, OperationalError, connection, transaction

from ephemeral_auth.exceptions import InvalidToken
from ephemeral_auth.services import engine


class DriverError(Exception):
    """A driver exception as Django wraps it (``__cause__``)."""

    def __init__(self, *args: object, sqlstate: str | None = None) -> None:
        super().__init__(*args)
        self.sqlstate = sqlstate


def wrapped(cause: Exception, kind: type[DatabaseError] = OperationalError) -> DatabaseError:
    exc = kind(*cause.args)
    exc.__cause__ = cause
    return exc


@pytest.mark.parametrize(
    ("error", "conflict"),
    [
        (wrapped(DriverError(1213, "Deadlock found when trying to get lock; try restarting transaction")), True),
        (wrapped(DriverError(1205, "Lock wait timeout exceeded")), False),
        (wrapped(DriverError(2013, "Lost connection to server during query")), False),
        (wrapped(DriverError("could not serialize access", sqlstate="40001")), True),
        (wrapped(DriverError("deadlock detected", sqlstate="40P01")), True),
        (wrapped(DriverError("duplicate key", sqlstate="23505"), IntegrityError), False),
        (ValueError(1213), False),
    ],
)
def test_what_is_a_lost_race(error: Exception, conflict: bool) -> None:
    assert engine.is_conflict(error) is conflict


def test_conflict_as_turns_a_lost_race_into_the_refusal() -> None:
    with pytest.raises(InvalidToken), engine.conflict_as(InvalidToken):
        raise wrapped(DriverError(1213, "Deadlock found"))
    with pytest.raises(OperationalError), engine.conflict_as(InvalidToken):
        raise wrapped(DriverError(2013, "Lost connection"))


@pytest.mark.django_db
def test_a_conflict_inside_a_transaction_dooms_it() -> None:
    with transaction.atomic():
        with pytest.raises(InvalidToken), engine.conflict_as(InvalidToken, using="default"):
            raise wrapped(DriverError(1213, "Deadlock found"))
        assert transaction.get_rollback()
        transaction.set_rollback(False)  # let the test's own transaction end normally


@pytest.mark.django_db
def test_one_server_is_not_galera() -> None:
    assert engine.is_galera(connection) is False
    sql = "SELECT 1"
    assert engine.causal(connection, sql) == sql


class FakeMySQLConnection:
    """Just enough of a MySQL-family connection wrapper for ``note_connection``."""

    vendor = "mysql"

    def __init__(self, port: str, wsrep_on: str) -> None:
        self.settings_dict = {"HOST": "db.example", "PORT": port}
        self.wsrep_on, self.queries = wsrep_on, 0

    def cursor(self) -> FakeMySQLConnection:
        return self

    def __enter__(self) -> FakeMySQLConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def execute(self, sql: str) -> None:
        assert "wsrep_on" in sql
        self.queries += 1

    def fetchone(self) -> tuple[str, str]:
        return ("wsrep_on", self.wsrep_on)


def test_a_server_is_asked_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "_servers", {})
    first, second = FakeMySQLConnection("3311", "ON"), FakeMySQLConnection("3311", "ON")
    other = FakeMySQLConnection("3306", "OFF")
    for fake in (first, second, other):
        engine.note_connection(connection=fake)
    assert (first.queries, second.queries, other.queries) == (1, 0, 1)
    assert first._ephemeral_auth_galera and second._ephemeral_auth_galera  # type: ignore[attr-defined]
    assert other._ephemeral_auth_galera is False  # type: ignore[attr-defined]
