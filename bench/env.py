"""Create the private benchmark database and set Django up against it.

The benchmark never touches the example project's own database nor a test
database of another run: SQLite goes to a file under /tmp, PostgreSQL to a
database named ``ea_bench`` (both overridable on the command line).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "DEFAULT_POSTGRES_URL",
    "DEFAULT_SQLITE_PATH",
    "REPO",
    "database_url",
    "prepare_database",
    "setup_django",
]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_PATH = "/tmp/ea_bench.sqlite3"
DEFAULT_POSTGRES_URL = "postgres://ephemeral:ephemeral@127.0.0.1:5432/ea_bench"


def database_url(backend: str, *, sqlite_path: str, postgres_url: str, suffix: str = "") -> str:
    """Return the DATABASE_URL of the benchmark database of ``backend`` (``suffix`` names a sibling)."""
    if backend == "sqlite":
        path = Path(sqlite_path)
        return f"sqlite:///{path.with_name(path.stem + suffix + path.suffix)}"
    if backend == "postgres":
        parts = urlsplit(postgres_url)
        return urlunsplit(parts._replace(path=parts.path + suffix))
    raise ValueError(f"unknown backend {backend!r}")


def prepare_database(backend: str, url: str) -> None:
    """Start from an empty SQLite file; create the PostgreSQL database if missing."""
    if backend == "sqlite":
        path = Path(urlsplit(url).path)
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    try:
        with psycopg.connect(maintenance, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
            if not exists:
                # The role owns the database it creates, so migrate may create
                # tables in its public schema (PostgreSQL 15 rule).
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        sys.exit(
            f"cannot prepare {name!r} on PostgreSQL ({exc}).\n"
            f"Create it with: createdb -h 127.0.0.1 -U postgres -O {parts.username} {name}"
        )


def setup_django(url: str, *, small_url: str | None = None, migrate: bool = True) -> None:
    """Configure the example project's settings for ``url`` (and ``small_url``), run migrate."""
    os.environ["DATABASE_URL"] = url
    if small_url:
        os.environ["EA_BENCH_SMALL_URL"] = small_url
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings" if small_url else "example_project.settings"
    os.environ["DEBUG"] = "False"
    # A refused attempt logs one INFO line; 10^5 of them would drown the report.
    os.environ["EPHEMERAL_AUTH_LOG_LEVEL"] = "WARNING"
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django
    from django.core.management import call_command

    django.setup()
    if migrate:
        call_command("migrate", verbosity=0, interactive=False)
        if small_url:
            call_command("migrate", verbosity=0, interactive=False, database="small")
