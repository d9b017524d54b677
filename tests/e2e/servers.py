"""Real servers for the end-to-end suite: the OpenID provider, gunicorn, a cuttable TCP proxy.

Shared by tests/e2e/test_oidc_e2e.py, test_oidc_hostile.py, test_restart.py, test_outage.py and test_multiworker.py
(the session-wide fixtures built on them live in tests/e2e/conftest.py).
Every wait has a deadline, so a server that does not come up fails the test
instead of hanging the suite.
"""

from __future__ import annotations

import email
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from email.message import Message
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit, urlunsplit

import pytest
import requests

__all__ = [
    "ACCESS_LOG_FORMAT",
    "CLIENT",
    "CREATE_TOTP_USER",
    "PROVIDER_DIR",
    "ROOT",
    "SECOND_CLIENT",
    "SETUP_USERS",
    "SHARED_CLIENT",
    "TESTSERVER_CALLBACK",
    "USER_PASSWORD",
    "Forms",
    "Gunicorn",
    "JsonClient",
    "Mailbox",
    "Provider",
    "TcpProxy",
    "authenticated",
    "binding_cookie_name",
    "callback_url",
    "children",
    "create_totp_user",
    "example_env",
    "exchange_cookie_name",
    "free_port",
    "fresh_mariadb_database",
    "fresh_postgres_database",
    "manage_shell",
    "mariadb_admin_url",
    "parse_forms",
    "postgres_admin_url",
    "provider_login",
    "refused",
    "start_provider",
    "stop",
    "wait_for_http",
]

ROOT = Path(__file__).resolve().parents[2]
PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"

CLIENT = {"client_id": "ea-e2e", "client_secret": "ea-e2e-secret-0123456789"}
SECOND_CLIENT = {"client_id": "ea-e2e-second", "client_secret": "ea-e2e-second-secret-0123456789"}
# Registered with the shared (pre-0.2) callback only: for the providers with "shared_callback": true.
SHARED_CLIENT = {"client_id": "ea-e2e-shared", "client_secret": "ea-e2e-shared-secret-0123456789"}
# The shared callback of the in-process relying party (Django's test client).
TESTSERVER_CALLBACK = "http://testserver/api/auth/oidc/callback/"


def callback_url(base_url: str, provider: str | None = None) -> str:
    """The redirect_uri the relying party at ``base_url`` sends: ``provider``'s own, or the shared one (None)."""
    if provider is None:
        return f"{base_url}/api/auth/oidc/callback/"
    return f"{base_url}/api/auth/oidc/{provider}/callback/"


# The relying party's cookies, named as docs/oidc.md says (computed here, not imported from the app).


def binding_cookie_name(state: str, *, secure: bool = False) -> str:
    """The binding cookie of the flow whose state this is: ``ephemeral_auth_oidc_<16 hex of sha256(state)>``."""
    name = "ephemeral_auth_oidc_" + hashlib.sha256(state.encode()).hexdigest()[:16]
    return f"__Host-{name}" if secure else name


def exchange_cookie_name(token: str, *, secure: bool = False) -> str:
    """The cookie binding an SPA exchange token: ``ephemeral_auth_oidc_x<15 hex of sha256(token)>``."""
    name = "ephemeral_auth_oidc_x" + hashlib.sha256(token.encode()).hexdigest()[:15]
    return f"__Host-{name}" if secure else name


def free_port() -> int:
    """Return a loopback port that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, *, process: subprocess.Popen | None = None, seconds: float = 30) -> None:
    """Wait until ``url`` answers anything; fail after ``seconds`` or when ``process`` exits."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            requests.get(url, timeout=10, allow_redirects=False)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {seconds} s")


def stop(process: subprocess.Popen) -> None:
    """Stop ``process`` politely, then by force."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# The real OpenID provider (started by the ``provider`` fixture of conftest.py).


class Provider:
    """The running oidc-provider: its issuer and clients; ``log``: its stdout and stderr."""

    def __init__(self, issuer: str, log: Path | None = None) -> None:
        self.issuer = issuer
        self.log = log

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def settings(self, client: dict[str, str] = CLIENT, **overrides: Any) -> dict[str, Any]:
        return {"name": "Test IdP", "discovery_url": self.discovery_url, **client, **overrides}

    def logged_requests(self, endpoint: str) -> list[str]:
        """The lines ``request <endpoint> <status> client_id=...`` (started with OIDC_LOG_REQUESTS=1)."""
        assert self.log is not None
        prefix = f"request {endpoint} "
        return [line for line in self.log.read_text().splitlines() if line.startswith(prefix)]


def start_provider(clients: list[dict[str, Any]], *, log: Path) -> tuple[subprocess.Popen, Provider]:
    """Start provider.mjs on a free loopback port with ``clients`` (request log on); wait until it listens.

    The caller stops the process (:func:`stop`).
    """
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test provider is not installed: run `npm ci` in tests/e2e/oidc_provider (.ci/e2e-setup.sh)")
    port = free_port()
    env = {**os.environ, "OIDC_PORT": str(port), "OIDC_CLIENTS": json.dumps(clients), "OIDC_LOG_REQUESTS": "1"}
    with log.open("w") as output:
        process = subprocess.Popen([node, "provider.mjs"], cwd=PROVIDER_DIR, env=env, stdout=output, stderr=output)
    deadline = time.monotonic() + 30
    while "listening" not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"the OpenID provider did not start:\n{log.read_text()}")
        time.sleep(0.05)
    return process, Provider(f"http://127.0.0.1:{port}", log)


class Forms(HTMLParser):
    """Collect the forms of a page: action, method and input values (buttons ignored)."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "form":
            action, method = attributes.get("action", ""), attributes.get("method", "get")
            self.forms.append({"action": action, "method": method, "fields": {}})
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value", "")
        elif tag == "a":
            self._href = attributes.get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None and data.strip():
            self.links.append((data.strip(), self._href))

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._href = None


def parse_forms(html: str) -> Forms:
    parser = Forms()
    parser.feed(html)
    return parser


def provider_login(
    session: requests.Session, authorization_url: str, *, login: str, stop_at: str, cancel: bool = False
) -> str:
    """Drive the provider from the authorization URL to its redirect back; return that URL.

    Fills the dev login form with ``login`` (any password) and accepts the
    consent form; ``cancel`` clicks "[ Cancel ]" on the login page instead.
    Stops (without following) at the first redirect to ``stop_at``.
    """
    url = authorization_url
    method, data = "GET", None
    for _ in range(12):
        response = session.request(method, url, data=data, allow_redirects=False, timeout=10)
        if response.is_redirect:
            url = urljoin(url, response.headers["Location"])
            method, data = "GET", None
            if url.startswith(stop_at):
                return url
            continue
        assert response.status_code == 200, (response.status_code, response.text[:500])
        page = parse_forms(response.text)
        if cancel:
            href = dict(page.links)["[ Cancel ]"]
            url, method, data = urljoin(url, href), "GET", None
            continue
        form = page.forms[0]
        fields = dict(form["fields"])
        if fields.get("prompt") == "login":
            fields.update({"login": login, "password": "any password"})
        url, method, data = urljoin(url, form["action"]), form["method"].upper(), fields
    raise AssertionError("the provider did not redirect back")


# PostgreSQL.


def postgres_admin_url() -> str:
    return os.environ.get("EA_E2E_POSTGRES_URL", "postgres://ephemeral:ephemeral@127.0.0.1:5432/postgres")


def fresh_postgres_database(name: str) -> str:
    """Create an empty database ``name`` owned by the test role; return its DATABASE_URL."""
    import psycopg

    admin = postgres_admin_url()
    try:
        connection = psycopg.connect(admin.replace("postgres://", "postgresql://"), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is needed for the gunicorn tests ({exc}); run bash .ci/services.sh")
    with connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return admin.rsplit("/", 1)[0] + f"/{name}"


# MariaDB.


def mariadb_admin_url() -> str:
    """The MariaDB server of the suite: EA_E2E_MARIADB_URL, else CI's CI_MARIADB_URL, else root on loopback."""
    return (
        os.environ.get("EA_E2E_MARIADB_URL")
        or os.environ.get("CI_MARIADB_URL")
        or "mysql://root:@127.0.0.1:3306/ephemeral_auth"
    )


def fresh_mariadb_database(name: str) -> str:
    """Create an empty utf8mb4 database ``name`` on MariaDB; return its DATABASE_URL (PyMySQL in the project)."""
    import pymysql

    admin = mariadb_admin_url()
    parts = urlsplit(admin)
    try:
        connection = pymysql.connect(
            host=parts.hostname or "127.0.0.1", port=parts.port or 3306, user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""), connect_timeout=5, autocommit=True,
        )
    except pymysql.MySQLError as exc:
        pytest.fail(f"MariaDB is needed for the gunicorn tests ({exc}); run bash .ci/services.sh")
    with connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    return urlunsplit(parts._replace(path=f"/{name}", query="", fragment=""))


# gunicorn.


def example_env(database_url: str, **extra: str) -> dict[str, str]:
    """Return the environment of the example project on ``database_url`` (DEBUG off, quiet logs)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DATABASE_URL": database_url,
        "DEBUG": "False",
        "ALLOWED_HOSTS": "localhost,127.0.0.1",
        "EPHEMERAL_AUTH_LOG_LEVEL": "WARNING",
        **extra,
    }
    env.pop("DATABASE_URL_TEST", None)
    return env


def manage_shell(env: dict[str, str], code: str) -> str:
    """Run ``code`` in ``manage.py shell`` of the example project; return what it printed."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-v", "0", "-c", code],
        cwd=ROOT, env=env, check=True, timeout=120, capture_output=True, text=True,
    )
    return done.stdout


def children(pid: int) -> list[int]:
    """Return the PIDs whose parent is ``pid`` (from /proc: no psutil needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Field 4 (ppid) follows the parenthesised command name, which may contain spaces.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


ACCESS_LOG_FORMAT = '%(p)s "%(r)s" %(s)s'


class Gunicorn:
    """The example project under ``gunicorn -w <workers> --no-control-socket`` on one fixed port.

    Each request is a line of ``logs/access.log`` in ``access_log_format``
    (gunicorn's atoms: ``%(p)s`` is ``<worker PID>``, ``%({header}i)s`` a request header).
    """

    def __init__(
        self, env: dict[str, str], *, port: int, logs: Path, workers: int = 4,
        access_log_format: str = ACCESS_LOG_FORMAT,
    ) -> None:
        self.env = env
        self.port = port
        self.logs = logs
        self.workers = workers
        self.access_log_format = access_log_format
        self.base_url = f"http://localhost:{port}"
        self.process: subprocess.Popen | None = None
        self.starts = 0

    @property
    def error_log(self) -> Path:
        return self.logs / "error.log"

    @property
    def access_log(self) -> Path:
        return self.logs / "access.log"

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT, env=self.env, check=True, timeout=300,
        )

    def start(self, *, seconds: float = 60) -> None:
        """Start gunicorn and wait (at most ``seconds``) until every worker is up and it answers."""
        self.starts += 1
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "example_project.wsgi:application",
                "-w", str(self.workers), "--no-control-socket", "-b", f"127.0.0.1:{self.port}",
                "--access-logfile", str(self.access_log), "--access-logformat", self.access_log_format,
                "--error-logfile", str(self.error_log),
            ],
            cwd=ROOT, env=self.env,
        )
        deadline = time.monotonic() + seconds
        while len(children(self.process.pid)) < self.workers:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start its workers:\n{self.error_log.read_text()[-3000:]}")
            time.sleep(0.1)
        left = max(1.0, deadline - time.monotonic())
        wait_for_http(f"{self.base_url}/api/auth/csrf/", process=self.process, seconds=left)

    def pids(self) -> list[int]:
        """Return the master's PID followed by its workers'."""
        assert self.process is not None
        return [self.process.pid, *children(self.process.pid)]

    def kill9(self) -> list[int]:
        """SIGKILL the master and every worker at once (a crash: nothing runs any cleanup)."""
        assert self.process is not None
        pids = self.pids()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=15)
        deadline = time.monotonic() + 15
        # Workers are reparented when the master dies; wait until none of them is left.
        while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in pids[1:]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn workers survived SIGKILL: {pids}")
            time.sleep(0.05)
        return pids

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


def _state(pid: int) -> str:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "zombie"  # gone
    return next((line for line in status.splitlines() if line.startswith("State:")), "").lower()


# Users and a JSON API client.


USER_PASSWORD = "e2e-User-Password-0123"

CREATE_TOTP_USER = """
from datetime import timedelta
import pyotp
from django.contrib.auth import get_user_model
from ephemeral_auth.services.two_factor import Proof
from ephemeral_auth import clock
from ephemeral_auth.services import totp
user = get_user_model().objects.create_user({username!r}, email={username!r} + "@example.com", password={password!r})
# Enrolled five minutes ago, so the current code is not the (spent) enrolment code.
earlier = clock.now() - timedelta(minutes=5)
setup = totp.setup(user, proof=Proof.trusted_caller(), now=earlier)
totp.confirm(user, pyotp.TOTP(setup.secret).at(earlier), proof=Proof.trusted_caller(), now=earlier)
print(setup.secret)
"""


def create_totp_user(env: dict[str, str], username: str) -> str:
    """Create ``username`` with a confirmed authenticator in the served database; return its secret."""
    return manage_shell(env, CREATE_TOTP_USER.format(username=username, password=USER_PASSWORD)).strip()


class JsonClient:
    """A JSON API client with its own cookies (CSRF token fetched once)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.http = requests.Session()
        self.csrf = self.http.get(f"{base_url}/api/auth/csrf/", timeout=10).json()["csrf_token"]

    def post(self, path: str, body: dict[str, Any]) -> requests.Response:
        return self.http.post(
            f"{self.base_url}{path}", json=body, headers={"X-CSRFToken": self.csrf, "Referer": self.base_url},
            timeout=10,
        )

    def me(self) -> dict[str, Any]:
        return dict(self.http.get(f"{self.base_url}/api/auth/me/", timeout=10).json())


# A TCP proxy whose link can be cut: a database outage that disturbs no other database user.


class TcpProxy:
    """Forward ``127.0.0.1:<port>`` to ``target``; :meth:`cut` drops every link, :meth:`restore` heals it.

    While cut, established connections are closed (the server "went away" mid
    session) and new ones are accepted and closed at once (the server refuses),
    so the client fails fast instead of waiting for a connect timeout.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._cut = False
        self._closed = False
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                if self._cut or self._closed:
                    client.close()
                    continue
                self.connections += 1
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        with self._lock:
            self._open.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def cut(self) -> None:
        """Cut the link: drop every open connection and refuse new ones."""
        with self._lock:
            self._cut = True
            victims = list(self._open)
        for sock in victims:
            self._drop(sock)

    def restore(self) -> None:
        """Let connections through again."""
        with self._lock:
            self._cut = False

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()


# Shared by tests/e2e/test_multiworker.py and tests/cluster/test_hosts.py: the flows' users, mail and answers.

SETUP_USERS = """
import json, os
from datetime import timedelta
import pyotp
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from ephemeral_auth.services.two_factor import Proof
from ephemeral_auth import clock, conf
from ephemeral_auth.models import UserTwoFactor
from ephemeral_auth.services import totp

users = json.loads(os.environ["MW_USERS"])
hashed = make_password(os.environ["MW_PASSWORD"])
# Enrolled five minutes ago, so the current TOTP code is not the (spent) enrolment code.
earlier = clock.now() - timedelta(minutes=5)
out = {
    "totp": {}, "recovery": {}, "login_attempt_limit": conf.rate_limit("login_attempt").limit,
    "limits": {
        name: [conf.rate_limit(name).limit, conf.rate_limit(name).window.total_seconds()]
        for name in ("login_user_ip", "login_ip", "login_attempt")
    },
}
for kind, names in users.items():
    for name in names:
        user = get_user_model().objects.create(
            username=name, email=name + "@example.com", password=hashed, is_staff=kind == "staff"
        )
        if kind in ("totp", "recovery"):
            setup = totp.setup(user, proof=Proof.trusted_caller(), now=earlier)
            trusted = Proof.trusted_caller()
            out["recovery"][name] = totp.confirm(user, pyotp.TOTP(setup.secret).at(earlier), proof=trusted, now=earlier)
            out["totp"][name] = setup.secret
        elif kind == "email":
            UserTwoFactor.objects.create(user_id=user.pk, email_enabled=True, email_confirmed_at=earlier)
print(json.dumps(out))
"""


class Mailbox:
    """The example project's sent emails (``filebased.EmailBackend``: one file per connection)."""

    SEPARATOR = "\n" + "-" * 79 + "\n"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def messages(self, address: str) -> list[Message]:
        found = []
        for path in sorted(self.directory.glob("*.log")):
            for chunk in path.read_text(encoding="utf-8").split(self.SEPARATOR):
                if chunk.strip():
                    message = email.message_from_string(chunk)
                    if message["To"] == address:
                        found.append(message)
        return found

    @staticmethod
    def text(message: Message) -> str:
        for part in message.walk():
            if part.get_content_type() == "text/plain":
                payload = part.get_payload(decode=True)
                assert isinstance(payload, bytes)
                return payload.decode(part.get_content_charset() or "utf-8")
        raise AssertionError("no text/plain part")

    def wait_for(self, address: str, pattern: str, *, seconds: float = 20) -> str:
        """Wait for the one email to ``address``; return the group 1 of ``pattern`` in its text (never printed)."""
        deadline = time.monotonic() + seconds
        while True:
            messages = self.messages(address)
            if messages or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(messages) == 1, f"{len(messages)} emails to {address}"
        match = re.search(pattern, self.text(messages[0]))
        assert match, f"the email to {address} does not match {pattern}"
        return match.group(1)


def authenticated(response: requests.Response, username: str, *, two_factor: bool) -> None:
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "authenticated", answer.get("status")
    assert answer["user"] == {"authenticated": True, "username": username, "two_factor_verified": two_factor}


def refused(response: requests.Response, status: int, error: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.json()["error"] == error, response.text[:300]
