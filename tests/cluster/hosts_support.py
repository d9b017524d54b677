"""Several app hosts on one machine (tests/cluster/test_hosts.py): namespaces, forwarders, gunicorn, HAProxy.

The network is ``.ci/cluster/hosts.sh`` (bridge ``ea-br0`` at 10.77.0.1 in the root namespace; app hosts
``ea-h1`` .. ``ea-h3`` at 10.77.0.11 .. 13; the clients' namespace ``ea-client`` at 10.77.0.100 and .101).
What runs in the root namespace on 127.0.0.1 (PostgreSQL, the Galera nodes, the OpenID provider) is not
reachable from a namespace, so :class:`Forwarder` (socat) relays it: on 10.77.0.1 in the root namespace,
and on 127.0.0.1 inside a namespace when the address must stay the same everywhere (the provider's
issuer is ``http://127.0.0.1:<port>``). socat logs every connection it accepts with the peer's address:
which host talked to which database node is read from there, not assumed.

The test process itself stays in the root namespace; :func:`client_session` returns a ``requests``
session whose sockets are created inside ``ea-client`` (``setns(2)`` on the calling thread for the
duration of each request), so HAProxy sees the client's own address.

Every helper process is started here and stopped by its PID (socat and HAProxy in a session of their
own, stopped with their process group; gunicorn like tests/e2e/servers.py does).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from tests.e2e.servers import ROOT, Gunicorn, wait_for_http

HOSTS_SH = ROOT / ".ci" / "cluster" / "hosts.sh"
GALERA_SH = ROOT / ".ci" / "cluster" / "galera.sh"

NET = os.environ.get("EA_HOSTS_NET", "10.77.0")
BRIDGE_IP = f"{NET}.1"  # HAProxy's address, as the app hosts see it: the only trusted proxy
APP_HOSTS = {f"ea-h{n}": f"{NET}.{10 + n}" for n in (1, 2, 3)}  # namespace (= HAProxy server name) -> address
APP_PORT = 8000
CLIENT_NS = "ea-client"
CLIENT_IP = f"{NET}.100"  # the client's real address (its namespace's primary address)
SECOND_CLIENT_IP = f"{NET}.101"  # another real client, same namespace
GALERA_PORTS = {1: 3311, 2: 3312, 3: 3313}


def hosts_sh(*args: str) -> str:
    done = subprocess.run(
        ["bash", str(HOSTS_SH), *args], cwd=ROOT, check=True, timeout=300, capture_output=True, text=True
    )
    return done.stdout


def free_port_on(address: str) -> int:
    """A TCP port free on ``address`` right now (in the root namespace)."""
    with socket.socket() as sock:
        sock.bind((address, 0))
        return int(sock.getsockname()[1])


# Entering a network namespace from Python (per thread: setns(2) with CLONE_NEWNET).

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """Run the block with this thread in network namespace ``name``: sockets created there stay there."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)


class NetnsAdapter(HTTPAdapter):
    """Open every connection inside a namespace, optionally from one of its addresses."""

    def __init__(self, namespace: str, source: str | None = None, **kwargs: Any) -> None:
        self.namespace = namespace
        self.source = source
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self.source:
            kwargs["source_address"] = (self.source, 0)
        super().init_poolmanager(*args, **kwargs)

    def send(self, request: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        with netns(self.namespace):
            return super().send(request, **kwargs)


def client_session(source: str | None = None) -> requests.Session:
    """A browser in ``ea-client``: from CLIENT_IP, or from ``source`` (another of its addresses)."""
    session = requests.Session()
    adapter = NetnsAdapter(CLIENT_NS, source)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# Processes in a session of their own, stopped with their whole group (socat forks one child per connection).


def stop_group(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with contextlib.suppress(ProcessLookupError):  # children left behind by the leader
        os.killpg(process.pid, signal.SIGKILL)


def in_namespace(namespace: str | None, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *command] if namespace else command


ACCEPTED = re.compile(r"accepting connection from AF=2 ([\d.]+):\d+ on AF=2 ([\d.]+):(\d+)")


class Forwarder:
    """``socat`` from ``listen`` (in ``namespace``, or the root namespace) to ``target``; logs each peer."""

    def __init__(
        self, listen: tuple[str, int], target: tuple[str, int], *, log: Path, namespace: str | None = None
    ) -> None:
        self.listen = listen
        self.target = target
        self.log = log
        self.namespace = namespace
        self.process: subprocess.Popen | None = None

    def __repr__(self) -> str:
        where = self.namespace or "root"
        return f"Forwarder({where} {self.listen[0]}:{self.listen[1]} -> {self.target[0]}:{self.target[1]})"

    def start(self, *, seconds: float = 10) -> Forwarder:
        command = in_namespace(self.namespace, [
            "socat", "-d", "-d", f"TCP-LISTEN:{self.listen[1]},bind={self.listen[0]},reuseaddr,fork",
            f"TCP:{self.target[0]}:{self.target[1]}",
        ])
        with self.log.open("w") as output:
            self.process = subprocess.Popen(
                command, stdout=output, stderr=output, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + seconds
        while " listening on " not in self.log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self!r} did not start:\n{self.log.read_text()[-2000:]}")
            time.sleep(0.02)
        return self

    def peers(self) -> list[str]:
        """The source address of every connection accepted so far, in order."""
        return [m.group(1) for m in ACCEPTED.finditer(self.log.read_text())]

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)


# The example project under gunicorn inside an app host's namespace.


class HostGunicorn(Gunicorn):
    """tests/e2e/servers.py's Gunicorn, started by ``ip netns exec <namespace>`` on the host's own address.

    ``ip netns exec`` execs gunicorn (same PID), so the worker bookkeeping of the base class holds.
    """

    def __init__(self, env: dict[str, str], *, namespace: str, address: str, logs: Path, **kwargs: Any) -> None:
        super().__init__(env, port=APP_PORT, logs=logs, **kwargs)
        self.namespace = namespace
        self.address = address
        self.base_url = f"http://{address}:{APP_PORT}"

    def launch(self) -> None:
        """Start gunicorn without waiting (:meth:`wait_ready` waits): the hosts boot side by side."""
        self.starts += 1
        self.process = subprocess.Popen(
            in_namespace(self.namespace, [
                sys.executable, "-m", "gunicorn", "example_project.wsgi:application",
                "-w", str(self.workers), "--no-control-socket", "-b", f"{self.address}:{self.port}",
                "--access-logfile", str(self.access_log), "--access-logformat", self.access_log_format,
                "--error-logfile", str(self.error_log),
            ]),
            cwd=ROOT, env=self.env,
        )

    def wait_ready(self, *, seconds: float = 90) -> None:
        assert self.process is not None
        deadline = time.monotonic() + seconds
        while len(self.pids()) - 1 < self.workers:
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.error_log.read_text()[-3000:] if self.error_log.exists() else ""
                raise RuntimeError(f"gunicorn in {self.namespace} did not start its workers:\n{log}")
            time.sleep(0.1)
        left = max(1.0, deadline - time.monotonic())
        wait_for_http(f"{self.base_url}/api/auth/csrf/", process=self.process, seconds=left)

    def start(self, *, seconds: float = 90) -> None:
        self.launch()
        self.wait_ready(seconds=seconds)

    def shell(self, code: str) -> str:
        """Run ``code`` in ``manage.py shell`` inside this host's namespace, with this host's environment."""
        done = subprocess.run(
            in_namespace(self.namespace, [sys.executable, "manage.py", "shell", "-v", "0", "-c", code]),
            cwd=ROOT, env=self.env, timeout=120, capture_output=True, text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py shell in {self.namespace} failed:\n{done.stderr[-3000:]}")
        return done.stdout


# HAProxy in the root namespace, in front of the hosts.

STEP_HEADER = "X-EA-Step"
SERVED_BY = "X-Served-By"


class HAProxy:
    """``haproxy -db`` on ``BRIDGE_IP:port``: round robin over the hosts, ``option forwardfor``, health checks.

    Each response names the server that answered (``X-Served-By``); its log has one line per request:
    ``<client address> <step marker> <method> <server> <status> "<X-Forwarded-For the client sent>"``
    (no URL: no token reaches a log).
    """

    def __init__(self, *, port: int, servers: dict[str, str], workdir: Path) -> None:
        self.port = port
        self.servers = servers  # server name -> address (APP_PORT)
        self.workdir = workdir
        self.config = workdir / "haproxy.cfg"
        self.log = workdir / "haproxy.log"
        self.socket = workdir / "haproxy.sock"
        self.process: subprocess.Popen | None = None
        self.base_url = f"http://{BRIDGE_IP}:{port}"

    def render(self) -> str:
        servers = "\n".join(
            f"    server {name} {address}:{APP_PORT} check inter 1s fall 2 rise 1"
            for name, address in self.servers.items()
        )
        return f"""\
global
    log stdout format raw local0 info
    stats socket {self.socket} mode 600 level operator
    maxconn 1024

defaults
    mode http
    log global
    option forwardfor
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 10s

frontend web
    bind {BRIDGE_IP}:{self.port}
    http-request capture req.hdr({STEP_HEADER}) len 16
    http-request capture req.fhdr(X-Forwarded-For) len 100
    log-format "%ci %[capture.req.hdr(0)] %HM %s %ST \\"%[capture.req.hdr(1)]\\""
    default_backend hosts

backend hosts
    balance roundrobin
    option httpchk
    http-check send meth GET uri /api/auth/csrf/ ver HTTP/1.1 hdr Host {BRIDGE_IP}
    http-check expect status 200
    http-response set-header {SERVED_BY} %[srv_name]
{servers}
"""

    def start(self, *, seconds: float = 30) -> None:
        self.config.write_text(self.render())
        subprocess.run(["/usr/sbin/haproxy", "-c", "-q", "-f", str(self.config)], check=True, timeout=30)
        with self.log.open("w") as output:
            self.process = subprocess.Popen(
                ["/usr/sbin/haproxy", "-db", "-f", str(self.config)],
                stdout=output, stderr=output, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + seconds
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited:\n{self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                if set(self.states().values()) == {"UP"} and len(self.states()) == len(self.servers):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"haproxy: servers not UP in {seconds} s: {self.states()}")
            time.sleep(0.2)

    def states(self) -> dict[str, str]:
        """Server name -> health state (UP, DOWN, ...), from the stats socket."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.socket))
            sock.sendall(b"show stat\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        states = {}
        for line in data.decode().splitlines():
            fields = line.split(",")
            if len(fields) > 17 and fields[0] == "hosts" and fields[1] in self.servers:
                states[fields[1]] = fields[17]
        return states

    def entries(self) -> list[tuple[str, str, str, str, int, str]]:
        """(client address, marker, method, server, status, X-Forwarded-For as sent) per logged request.

        HAProxy logs an absent header as "-": read as "" (no client of the test sends "-").
        """
        found = []
        for line in self.log.read_text().splitlines():
            head, _, sent = line.partition(' "')
            fields = head.split()
            if len(fields) == 5 and fields[4].isdigit() and line.endswith('"'):
                sent = sent[:-1]
                found.append((fields[0], fields[1], fields[2], fields[3], int(fields[4]), "" if sent == "-" else sent))
        return found

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)


# The Galera cluster of .ci/cluster/galera.sh.


def galera(*args: str) -> str:
    done = subprocess.run(
        ["bash", str(GALERA_SH), *args], cwd=ROOT, check=True, timeout=600, capture_output=True, text=True
    )
    return done.stdout


def galera_synced_nodes() -> int:
    """How many nodes ``galera.sh status`` shows Synced in a primary component of 3."""
    status = galera("status")
    return sum(1 for line in status.splitlines() if "state Synced size 3" in line)


def galera_running_nodes() -> int:
    return sum(1 for line in galera("status").splitlines() if " pid " in line)


def fresh_galera_database(name: str) -> str:
    """Create an empty utf8mb4 database ``name`` on the cluster (through node 1); return node 1's URL."""
    import pymysql

    connection = pymysql.connect(
        host="127.0.0.1", port=GALERA_PORTS[1], user="ephemeral", password="ephemeral", connect_timeout=5,
        autocommit=True,
    )
    with connection, connection.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    return f"mysql://ephemeral:ephemeral@127.0.0.1:{GALERA_PORTS[1]}/{name}"
