#!/usr/bin/env python3
"""Set up and run ephemeral_auth's example project or test suite (standard library only).

    python3 dev.py demo [--reset] [ADDRESS]
                                     venv, install, migrate, demo users (created when
                                     missing), serve on ADDRESS (default 127.0.0.1:8000;
                                     e.g. 8001 or 0.0.0.0:8080); dev.py demo --help
    python3 dev.py test [ARGS...]    venv, install, run pytest (SQLite unless DATABASE_URL is set)
    python3 dev.py setup             venv and install only

The virtualenv lives in .venv beside this file. The project is installed with
``pip install -e .[dev]``; the install is skipped while pyproject.toml is
unchanged since the last one (a stamp file in .venv records its digest).
Both honour DATABASE_URL (SQLite when unset). Works with any python3 >= 3.10
and needs nothing but the standard library.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import venv
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
STAMP = VENV / ".ephemeral-auth-install"
PYPROJECT = ROOT / "pyproject.toml"
DEMO_ADDRESS = "127.0.0.1:8000"
# runserver's accepted forms: PORT, IPV4:PORT, [IPV6]:PORT, NAME:PORT.
ADDRESS_RE = re.compile(
    r"^(?:(?P<host>\d{1,3}(?:\.\d{1,3}){3}|\[[a-fA-F0-9:]+\]|[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*):)?(?P<port>\d+)$"
)
# How many ports after a busy one are tried for the hint.
FREE_PORT_SEARCH = 20
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


class DemoArgumentParser(argparse.ArgumentParser):
    """An argparse parser that reports errors by raising, so cmd_demo returns exit codes."""

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise DemoExit(status)


class DemoExit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def demo_parser() -> argparse.ArgumentParser:
    parser = DemoArgumentParser(
        prog="python3 dev.py demo",
        description=(
            "Set up .venv, migrate the example project's database, create the demo users when they "
            "are missing (existing ones are kept as they are), print how to sign in, and serve the "
            "example project with Django's runserver (DEBUG on). Sent mail is printed in the "
            "terminal and listed at /dev/mail/."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="""examples:
  python3 dev.py demo                  serve on http://127.0.0.1:8000/
  python3 dev.py demo 8001             another port (127.0.0.1:8001)
  python3 dev.py demo 0.0.0.0:8080     every interface; for other machines also set
                                       ALLOWED_HOSTS=127.0.0.1,localhost,<this machine's name or IP>
                                       (the demo passwords are public: trusted networks only)
  python3 dev.py demo --reset          demo passwords and new recovery codes again""",
    )
    parser.add_argument(
        "address",
        nargs="?",
        default=DEMO_ADDRESS,
        help=f"where to serve: PORT, HOST:PORT or [IPV6]:PORT (default {DEMO_ADDRESS})",
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="start over: give the demo users their demo passwords again and demo2fa new recovery codes",
    )
    return parser


def split_address(address: str) -> tuple[str, int] | None:
    """Return (host, port) of a runserver address, or None when it is not one."""
    match = ADDRESS_RE.match(address)
    if not match:
        return None
    host = match["host"] or DEMO_ADDRESS.split(":")[0]
    if host == "0":
        host = "0.0.0.0"  # noqa: S104 (runserver's shorthand)
    port = int(match["port"])
    return (host, port) if 0 < port < 65536 else None


def _bind_error(host: str, port: int) -> OSError | None:
    """Try to listen on host:port like runserver would; return the error, None when it can."""
    bare = host.strip("[]")
    try:
        infos = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        return exc
    family, kind, proto, _name, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        if os.name == "posix":
            # As runserver does: a port left in TIME_WAIT is free, a listening one is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
            sock.listen(1)
        except OSError as exc:
            return exc
    return None


def address_problem(address: str) -> str | None:
    """Why the demo cannot serve on ``address`` (one line with a hint), or None when it can.

    Checked before anything is migrated or created, so a busy port changes no data.
    """
    parts = split_address(address)
    if parts is None:
        return f"{address!r} is not an address: give PORT or HOST:PORT, e.g. python3 dev.py demo 127.0.0.1:8001"
    host, port = parts
    error = _bind_error(host, port)
    if error is None:
        return None
    if isinstance(error, socket.gaierror):
        return f"cannot resolve {host!r} ({error}): python3 dev.py demo 127.0.0.1:{port}"
    if error.errno == errno.EADDRINUSE:
        for candidate in range(port + 1, min(port + 1 + FREE_PORT_SEARCH, 65536)):
            if _bind_error(host, candidate) is None:
                return f"port {port} is busy: python3 dev.py demo {host}:{candidate}"
        return f"port {port} is busy (and the next {FREE_PORT_SEARCH} too): python3 dev.py demo {host}:PORT"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to listen on port {port}: python3 dev.py demo {host}:8000"
    return f"cannot listen on {host}:{port} ({error.strerror or error}): python3 dev.py demo {DEMO_ADDRESS}"


def cmd_demo(args: Sequence[str]) -> int:
    """Migrate the example project, create the missing demo users and serve it."""
    try:
        options = demo_parser().parse_args(list(args))
    except DemoExit as exc:  # --help (0) or a usage error (2): nothing done
        return exc.code
    address = options.address
    problem = address_problem(address)
    if problem:
        say(problem)
        return 1
    python = ensure_installed()
    env = base_env()
    env["DJANGO_SETTINGS_MODULE"] = "example_project.settings"
    # The demo runs with DEBUG on (static files of the admin, readable errors, the
    # /dev/mail/ page); demo_setup refuses to create its known-password users otherwise.
    env["DEBUG"] = "true"
    if not env.get("DATABASE_URL"):
        say(f"database: SQLite file {ROOT / 'example.sqlite3'}")
    say("applying migrations")
    run([python, "manage.py", "migrate", "--noinput"], env=env)
    if options.reset:
        say("resetting the demo users (demo passwords, new recovery codes)")
        run([python, "manage.py", "demo_setup", "--reset"], env=env)
    else:
        say("creating the demo users that are missing (existing ones are kept; --reset starts over)")
        run([python, "manage.py", "demo_setup"], env=env)
    host, port = split_address(address) or ("127.0.0.1", 8000)
    # A server on every interface is also reachable on the loopback address (which /dev/mail/ needs).
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '[::]') else host}:{port}/"  # noqa: S104
    mailbox = "" if env.get("EMAIL_BACKEND") else f", sent mail: {url}dev/mail/"
    say(f"serving the example project on {url} (admin: {url}admin/{mailbox}); Ctrl-C stops it")
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
    if argv and argv[0] in ("-h", "--help", "help"):
        print(__doc__)
        return 0
    if not argv or argv[0] not in COMMANDS:
        print(__doc__)
        return 2
    os.chdir(ROOT)
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
