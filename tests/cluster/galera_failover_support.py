"""Helpers of tests/cluster/test_galera_failover.py: HAProxy with a Galera health check, the flows, a mailbox.

* :class:`ClusterCheck`: one small HTTP server per node, what Galera's ``clustercheck`` does:
  200 while the node answers and is ``Synced`` (``wsrep_local_state_comment``, ``wsrep_ready``),
  503 otherwise (down, Joiner, Joined, Donor/Desynced). HAProxy asks it (``option httpchk``,
  ``check port``).
* :class:`HAProxy`: ``/usr/sbin/haproxy -db`` by PID, TCP mode, ``balance roundrobin`` over the
  three nodes; :meth:`HAProxy.servers` reads the stats socket; a monitor thread notes every
  change of a server's state, with its time.
* :class:`FlowProber`: a :class:`tests.cluster.patroni_support.Prober` that runs whole flows over
  HTTP: password reset (request, the email, confirm, replay) or password login (login, ``me``,
  logout). The plain ``Prober`` (reset admission + one-time link redeemed) runs beside it.
* :class:`Mailbox`: the reset links the example project writes (``filebased.EmailBackend``).

This module is also gunicorn's config module (``GUNICORN_CMD_ARGS=--config
python:tests.cluster.galera_failover_support``): :func:`post_worker_init` sends Django's request
errors (a 500's traceback, a 503's line) and the library's fail-closed database errors to the
file ``EA_FAILOVER_APP_LOG``. Gunicorn takes every module-level name that is one of its settings,
so nothing else here is named like one; only the standard library is imported at module level.
"""

from __future__ import annotations

import email
import http.server
import itertools
import os
import re
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.cluster import galera_support as galera
from tests.cluster.patroni_support import Answer, Prober

HAPROXY = "/usr/sbin/haproxy"
APP_LOG_ENV = "EA_FAILOVER_APP_LOG"
NODE_LOG = Path(os.environ.get("EPHEMERAL_CLUSTER_DIR", "/tmp/ephemeral-cluster")) / "galera" / "n{node}" / "error.log"


# --- gunicorn's hook (in every worker, after the app is loaded).


def post_worker_init(worker: Any) -> None:
    """Log Django's request errors and the library's database errors (tracebacks) to ``EA_FAILOVER_APP_LOG``."""
    import logging

    path = os.environ.get(APP_LOG_ENV)
    if not path:
        return
    handler = logging.FileHandler(path)
    handler.setLevel(logging.ERROR)
    handler.setFormatter(logging.Formatter("%(asctime)s pid=%(process)d %(name)s %(levelname)s %(message)s"))
    logging.getLogger("django.request").addHandler(handler)
    library = logging.getLogger("ephemeral_auth")
    for old in list(library.handlers):  # the console: the test output stays readable
        library.removeHandler(old)
    library.addHandler(handler)
    library.setLevel(logging.ERROR)
    library.propagate = False


# --- The health check.


def node_state(node: int) -> str:
    """``Synced``, another wsrep state, or ``down: <error>`` (one connection, 1 s deadlines)."""
    import pymysql

    try:
        connection = pymysql.connect(
            host="127.0.0.1", port=galera.port(node), user="ephemeral", password="ephemeral",
            connect_timeout=1, read_timeout=1, write_timeout=1,
        )
    except pymysql.MySQLError as exc:
        return f"down: {exc.args[0] if exc.args else exc}"
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT VARIABLE_NAME, VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS "
                "WHERE VARIABLE_NAME IN ('WSREP_LOCAL_STATE_COMMENT', 'WSREP_READY')"
            )
            status = {str(name).upper(): str(value) for name, value in cursor.fetchall()}
    except pymysql.MySQLError as exc:
        return f"down: {exc.args[0] if exc.args else exc}"
    finally:
        connection.close()
    state = status.get("WSREP_LOCAL_STATE_COMMENT", "?")
    if state == "Synced" and status.get("WSREP_READY") != "ON":
        return "Synced, not ready"
    return state


class ClusterCheck:
    """Per node an HTTP server on a free loopback port: 200 iff the node is Synced and ready."""

    def __init__(self, nodes: tuple[int, ...] = galera.NODES) -> None:
        self.servers: dict[int, http.server.ThreadingHTTPServer] = {}
        for node in nodes:
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _check_handler(node))
            server.daemon_threads = True
            self.servers[node] = server
            threading.Thread(target=server.serve_forever, name=f"clustercheck-{node}", daemon=True).start()

    def port(self, node: int) -> int:
        return int(self.servers[node].server_address[1])

    def close(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


def _check_handler(node: int) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state = node_state(node)
            body = f"node {node}: {state}\n".encode()
            try:
                self.send_response(200 if state == "Synced" else 503)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
            except OSError:
                pass  # HAProxy reads the status line and resets the connection

        do_OPTIONS = do_GET

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


# --- HAProxy.


def haproxy_config(port: int, socket_path: Path, checks: ClusterCheck) -> str:
    servers = "\n".join(
        f"    server n{node} 127.0.0.1:{galera.port(node)} check port {checks.port(node)}" for node in galera.NODES
    )
    return f"""global
    maxconn 2000
    stats socket {socket_path} mode 600 level admin

defaults
    mode tcp
    # A connection refused by a dead node (before the check marks it down) goes to another node.
    retries 3
    option redispatch 1
    timeout connect 1s
    timeout client 120s
    timeout server 120s
    timeout check 1s

listen galera
    bind 127.0.0.1:{port}
    balance roundrobin
    # clustercheck: 200 only from a node that answers and is Synced (not down, Joiner, Joined, Donor).
    option httpchk GET /
    http-check expect status 200
    default-server inter 500ms fall 2 rise 2
{servers}
"""


class HAProxy:
    """HAProxy in the foreground (``-db``), by PID; its stats socket polled by a monitor thread."""

    def __init__(self, directory: Path, port: int, checks: ClusterCheck) -> None:
        self.directory = directory
        self.port = port
        self.socket_path = directory / "haproxy.sock"
        self.config = directory / "haproxy.cfg"
        self.log = directory / "haproxy.log"
        self.config.write_text(haproxy_config(port, self.socket_path, checks))
        self.process: subprocess.Popen[bytes] | None = None
        self.changes: list[tuple[float, str, str]] = []  # (time.time(), server, new status)
        self._last: dict[str, str] = {}
        self._stop = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="haproxy-monitor", daemon=True)

    def start(self, *, seconds: float = 15) -> None:
        subprocess.run([HAPROXY, "-c", "-q", "-f", str(self.config)], check=True, timeout=30)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [HAPROXY, "-db", "-f", str(self.config)], stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"HAProxy exited ({self.process.returncode}):\n{self.log.read_text()}")
            try:
                self.servers()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"HAProxy did not open its stats socket:\n{self.log.read_text()}") from None
                time.sleep(0.1)
        self._monitor.start()

    def stop(self) -> None:
        self._stop.set()
        if self._monitor.ident is not None:
            self._monitor.join(timeout=5)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(self.socket_path))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """``show stat`` of the three servers: {"n1": {"status": "UP", "stot": "12", ...}, ...}."""
        lines = [line for line in self.command("show stat").splitlines() if line.strip()]
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:]]
        return {row["svname"]: row for row in rows if row["pxname"] == "galera" and row["svname"].startswith("n")}

    def sessions(self) -> dict[str, int]:
        """Connections HAProxy sent to each node so far."""
        return {name: int(row["stot"] or 0) for name, row in self.servers().items()}

    def status(self, server: str) -> str:
        return self._last.get(server, "")

    def changed_to(self, server: str, status: str, after: float) -> float | None:
        """When ``server`` first became ``status`` after ``after``, if it did."""
        return next((t for t, s, new in self.changes if s == server and new == status and t >= after), None)

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            try:
                servers = self.servers()
            except OSError:
                continue
            now = time.time()
            for name, row in servers.items():
                if self._last.get(name) != row["status"]:
                    self._last[name] = row["status"]
                    self.changes.append((now, name, row["status"]))


# --- The outbox of the example project (filebased.EmailBackend).


class Mailbox:
    """The reset tokens mailed to each address, read as the files grow (threads share one)."""

    SEPARATOR = "\n" + "-" * 79 + "\n"
    TOKEN = re.compile(r"#token=([A-Za-z0-9_-]+)")

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._sizes: dict[Path, int] = {}
        self._tokens: dict[str, list[str]] = {}

    def _scan(self) -> None:
        for path in sorted(self.directory.glob("*.log")):
            size = path.stat().st_size
            if self._sizes.get(path) == size:
                continue
            self._sizes[path] = size
            for chunk in path.read_text(encoding="utf-8", errors="replace").split(self.SEPARATOR):
                if not chunk.strip():
                    continue
                message = email.message_from_string(chunk)
                for part in message.walk():
                    if part.get_content_type() != "text/plain":
                        continue
                    payload = part.get_payload(decode=True)
                    text = payload.decode(part.get_content_charset() or "utf-8") if isinstance(payload, bytes) else ""
                    match = self.TOKEN.search(text)
                    if match:
                        found = self._tokens.setdefault(str(message["To"]), [])
                        if match.group(1) not in found:
                            found.append(match.group(1))

    def tokens(self, address: str) -> list[str]:
        with self._lock:
            self._scan()
            return list(self._tokens.get(address, []))

    def wait_token(self, address: str, *, seconds: float, stop: threading.Event) -> str | None:
        """The first token mailed to ``address`` within ``seconds`` (None: no email, e.g. its job failed)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not stop.is_set():
            found = self.tokens(address)
            if found:
                return found[0]
            stop.wait(0.05)
        found = self.tokens(address)
        return found[0] if found else None


# --- The flows over HTTP.


def _remembering_session() -> Any:
    """A requests.Session that keeps its last response (Prober._request records the Answer only)."""
    import requests

    class Remembering(requests.Session):
        last: Any = None

        def request(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            self.last = None
            self.last = super().request(*args, **kwargs)
            return self.last

    return Remembering()


class FlowProber(Prober):
    """Whole flows in a thread, every request an :class:`Answer` (``kind``: the step).

    ``mode="reset"``: ``reset-request`` (a known address with a usable password, fresh client IP),
    the link from the mailbox, ``reset-confirm`` (retried while it answers 503: its outcome is
    unknown), then ``reset-replay`` of the same token. The subject of a confirm or replay is the
    raw token: a token with two 200s is single use broken. Each address is used once.

    ``mode="login"``: ``login`` (password, no 2FA), ``me`` (must be authenticated), ``logout``,
    in a browser session that lives for the whole run.
    """

    def __init__(
        self, base_url: str, *, mode: str, ip_prefix: str, mailbox: Mailbox | None = None,
        addresses: list[str] | None = None, usernames: list[str] | None = None, password: str = "",
        pause: float = 0.05,
    ) -> None:
        super().__init__(base_url, [], ip_prefix=ip_prefix, pause=pause)
        self.mode = mode
        self.mailbox = mailbox
        self.addresses = list(addresses or [])
        self.usernames = list(usernames or [])
        self.password = password
        self.http = _remembering_session()
        self.csrf = self.http.get(f"{base_url}/api/auth/csrf/", timeout=10).json()["csrf_token"]
        self.no_email: list[tuple[str, float]] = []  # (address, answered at): 200 but no link arrived
        self.completed: list[tuple[str, float]] = []  # (mode, time.time()) of every flow that went through
        self.anonymous_me = 0  # ``me`` answered 200 but not authenticated (the session not yet on that node)

    def _ip(self) -> str:
        self._n += 1
        return f"{self.ip_prefix}.{self._n // 250}.{self._n % 250 + 1}"

    def _post(self, kind: str, subject: str, path: str, body: dict[str, Any]) -> Answer:
        csrf = self.http.cookies.get("csrftoken") or self.csrf
        return self._request(
            kind, subject, "POST", f"{self.base_url}{path}", json=body,
            headers={"X-CSRFToken": csrf, "Referer": self.base_url, "X-Forwarded-For": self._ip()},
        )

    def reset_flow(self) -> None:
        if not self.addresses:
            self._stop.set()
            return
        address = self.addresses.pop(0)
        asked = self._post("reset-request", address, "/api/auth/password-reset/", {"email": address})
        if asked.status != 200:
            return
        assert self.mailbox is not None
        token = self.mailbox.wait_token(address, seconds=15, stop=self._stop)
        if token is None:
            if not self._stop.is_set():
                self.no_email.append((address, asked.ended))
            return
        body = {"token": token, "new_password": f"Failover-{secrets.token_hex(6)}-Zebra!"}
        deadline = time.monotonic() + 20
        while True:
            confirmed = self._post("reset-confirm", token, "/api/auth/password-reset/confirm/", body)
            if confirmed.status not in (0, 503) or time.monotonic() > deadline or self._stop.is_set():
                break
            self._stop.wait(0.25)
        replay = self._post("reset-replay", token, "/api/auth/password-reset/confirm/", body)
        if confirmed.status == 200 and replay.code == "invalid_token":
            self.completed.append(("reset", replay.ended))

    def login_flow(self) -> None:
        username = self.usernames[self._n % len(self.usernames)]
        logged_in = self._post("login", username, "/api/auth/login/", {"username": username, "password": self.password})
        if logged_in.status != 200:
            return
        me = self._request("me", username, "GET", f"{self.base_url}/api/auth/me/")
        if me.status == 200 and not self.http.last.json().get("authenticated"):
            self.anonymous_me += 1
        out = self._post("logout", username, "/api/auth/logout/", {})
        if me.status == 200 and out.status == 200:
            self.completed.append(("login", out.ended))

    def _run(self) -> None:
        flow = self.reset_flow if self.mode == "reset" else self.login_flow
        while not self._stop.is_set():
            flow()
            self._stop.wait(self.pause)

    def completed_since(self, moment: float) -> int:
        return sum(1 for _, t in list(self.completed) if t > moment)


@contextmanager
def running(probers: list[Prober]) -> Iterator[None]:
    """Start every prober; stop them all at the end, even when one fails to stop."""
    try:
        for prober in probers:
            prober.start()
        yield
    finally:
        errors = []
        for prober in probers:
            try:
                prober.stop()
            except RuntimeError as exc:
                errors.append(str(exc))
        if errors:
            raise RuntimeError("; ".join(errors))


# --- Reading the answers.


def phase_counts(answers: list[Answer], start: float, end: float) -> dict[str, int]:
    counts: dict[str, int] = {}
    for answer in answers:
        if start <= answer.started < end:
            label = f"{answer.kind} {answer.status}{' ' + answer.code if answer.code else ''}"
            counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))


def merged_seconds(spans: list[tuple[float, float]]) -> float:
    """The length of the union of the intervals."""
    total, current = 0.0, None
    for start, end in sorted(spans):
        if current is None or start > current[1]:
            if current is not None:
                total += current[1] - current[0]
            current = [start, end]
        else:
            current[1] = max(current[1], end)
    if current is not None:
        total += current[1] - current[0]
    return total


def longest_without_success(answers: list[Answer], start: float, end: float) -> float:
    """The longest time between ``start`` and ``end`` in which no request was answered 200."""
    times = sorted(a.ended for a in answers if a.status == 200 and start <= a.ended <= end)
    edges = [start, *times, end]
    return max(b - a for a, b in itertools.pairwise(edges))


def state_transfer(node: int, offset: int) -> list[str]:
    """The lines of node ``node``'s error log written after ``offset`` that tell how it rejoined (IST or SST)."""
    path = Path(str(NODE_LOG).format(node=node))
    with path.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    wanted = re.compile(r"IST received|Receiving IST|SST received|SST succeeded|State transfer required|"
                        r"wsrep_sst_rsync|Prepared SST request|Recovered position|Shifting JOINED -> SYNCED")
    return [line.strip()[:200] for line in text.splitlines() if wanted.search(line)]


def node_log_size(node: int) -> int:
    path = Path(str(NODE_LOG).format(node=node))
    return path.stat().st_size if path.exists() else 0
