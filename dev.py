#!/usr/bin/env python3
"""Set up and run ephemeral_auth's example project or test suite (standard library only).

    python3 dev.py demo [ADDRESS]    venv, install, migrate, demo users, serve on 127.0.0.1:8000
    python3 dev.py test [ARGS...]    venv, install, run pytest (SQLite unless DATABASE_URL is set)
    python3 dev.py setup             venv and install only

The virtualenv lives in .venv beside this file. The project is installed with
``pip install -e .[dev]``; the install is skipped while pyproject.toml is
unchanged since the last one (a stamp file in .venv records its digest).
Both honour DATABASE_URL (SQLite when unset). Works with any python3 >= 3.10
and needs nothing but the standard library.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".ephemeral-auth-install"
PYPROJECT = ROOT / "pyproject.toml"
DEMO_ADDRESS = "127.0.0.1:8000"
MIN_PYTHON = (3, 10)
# pytest's exit code when it collected no test: not a failure for us (empty e2e stage, -k filters).
PYTEST_NO_TESTS = 5


def say(message: str) -> None:
    """Print one step of what dev.py does."""
    print(f"dev.py: {message}", flush=True)


def venv_python() -> Path:
    """Return the virtualenv's interpreter (POSIX or Windows layout)."""
    posix = VENV / "bin" / "python"
    return posix if posix.exists() or os.name != "nt" else VENV / "Scripts" / "python.exe"


def run(args: Sequence[str | os.PathLike[str]], *, env: dict[str, str] | None = None, check: bool = True) -> int:
    """Run a command in the project directory, echoing it first."""
    shown = " ".join(str(a) for a in args)
    say(f"$ {shown}")
    completed = subprocess.run([str(a) for a in args], cwd=ROOT, env=env, check=False)  # noqa: S603
    if check and completed.returncode != 0:
        say(f"command failed with exit code {completed.returncode}: {shown}")
        sys.exit(completed.returncode)
    return completed.returncode


def has_pip(python: Path) -> bool:
    return subprocess.run(  # noqa: S603
        [str(python), "-m", "pip", "--version"], capture_output=True, check=False
    ).returncode == 0


def ensure_venv() -> Path:
    """Create .venv (with pip) unless it already works; return its interpreter."""
    python = venv_python()
    if python.exists() and has_pip(python):
        return python
    if python.exists():
        # A half-made venv (e.g. created where ensurepip is missing): start again.
        say(f"{VENV} has no pip; recreating it")
        shutil.rmtree(VENV)
    say(f"creating the virtualenv {VENV} with {sys.executable} (Python {sys.version.split()[0]})")
    try:
        venv.EnvBuilder(with_pip=True, upgrade_deps=False).create(VENV)
    except (subprocess.CalledProcessError, OSError) as exc:
        say(f"could not create the virtualenv: {exc}")
        say("on Debian/Ubuntu install the venv module first: apt-get install python3-venv")
        shutil.rmtree(VENV, ignore_errors=True)
        sys.exit(1)
    python = venv_python()
    if not has_pip(python):
        say("the new virtualenv has no pip; on Debian/Ubuntu: apt-get install python3-venv")
        sys.exit(1)
    return python


def install_digest(python: Path) -> str:
    """Digest of what the install depends on: pyproject.toml and the interpreter."""
    digest = hashlib.sha256(PYPROJECT.read_bytes())
    digest.update(str(python.resolve()).encode())
    return digest.hexdigest()


def ensure_installed() -> Path:
    """Create the venv and install the project with its dev extra, unless already current."""
    python = ensure_venv()
    wanted = install_digest(python)
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        say("pyproject.toml unchanged since the last install: skipping pip install")
        return python
    say("installing the project and its dev dependencies (pip install -e .[dev])")
    run([python, "-m", "pip", "install", "--disable-pip-version-check", "-e", ".[dev]"])
    # Written only after a successful install, so a failed one is retried next time.
    STAMP.write_text(wanted + "\n")
    return python


def masked(url: str) -> str:
    """Return a database URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def base_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    url = env.get("DATABASE_URL", "")
    if url:
        say(f"database: DATABASE_URL={masked(url)}")
    return env


def cmd_setup(args: Sequence[str]) -> int:
    """Create the venv and install the project."""
    ensure_installed()
    say("ready: the virtualenv is .venv (activate it with: source .venv/bin/activate)")
    return 0


def cmd_demo(args: Sequence[str]) -> int:
    """Migrate the example project, create the demo users and serve it."""
    python = ensure_installed()
    env = base_env()
    env["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    # The demo runs with DEBUG on (static files of the admin, readable errors);
    # demo_setup refuses to create its known-password users otherwise.
    env["DEBUG"] = "true"
    if not env.get("DATABASE_URL"):
        say(f"database: SQLite file {ROOT / 'example.sqlite3'}")
    say("applying migrations")
    run([python, "manage.py", "migrate", "--noinput"], env=env)
    say("creating or updating the demo users")
    run([python, "manage.py", "demo_setup"], env=env)
    address = args[0] if args else DEMO_ADDRESS
    say(f"serving the example project on http://{address}/ (admin: http://{address}/admin/); Ctrl-C stops it")
    command = [str(python), "manage.py", "runserver", address]
    if os.name == "posix":
        # Become the server: Ctrl-C and kill reach runserver itself, and no
        # orphaned server keeps the port when this process is stopped.
        say(f"$ {' '.join(command)}")
        sys.stdout.flush()
        os.execve(command[0], command, env)  # noqa: S606
    try:
        return run(command, env=env, check=False)
    except KeyboardInterrupt:
        say("stopped")
        return 0


def cmd_test(args: Sequence[str]) -> int:
    """Run pytest in the venv, passing ``args`` through."""
    python = ensure_installed()
    env = base_env()
    env.pop("DJANGO_SETTINGS_MODULE", None)  # pyproject.toml names tests.settings
    if not env.get("DATABASE_URL"):
        say("database: SQLite (pytest-django creates an in-memory test database)")
    say("running the test suite")
    code = run([python, "-m", "pytest", *args], env=env, check=False)
    if code == PYTEST_NO_TESTS:
        say("pytest collected no test (exit code 5): treated as success")
        return 0
    if code != 0:
        say(f"tests failed (pytest exit code {code})")
    return code


COMMANDS = {"demo": cmd_demo, "test": cmd_test, "setup": cmd_setup}


def main(argv: Sequence[str]) -> int:
    if sys.version_info < MIN_PYTHON:
        say(f"Python {'.'.join(map(str, MIN_PYTHON))} or newer is needed, this is {sys.version.split()[0]}")
        return 1
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 2
    os.chdir(ROOT)
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
