"""Several app hosts behind HAProxy: every flow with consecutive steps on different hosts (issue 12, "Clusters").

Three network namespaces (``ea-h1`` .. ``ea-h3``, ``.ci/cluster/hosts.sh``) each run the example project
under ``gunicorn -w 2`` on their own address. HAProxy, in the root namespace on the bridge address
10.77.0.1, balances round robin over them with health checks and ``option forwardfor``; the app trusts
only HAProxy (``TRUSTED_PROXIES=10.77.0.1``). The test's clients live in a namespace of their own
(``ea-client``, 10.77.0.100 and .101), so HAProxy sees their real address. Emails go to one directory
shared by the hosts (``filebased.EmailBackend``). The real OpenID provider (npm oidc-provider) runs in the
root namespace; socat forwarders make its issuer ``http://127.0.0.1:<port>`` the same address for the
browser and for each host's back channel.

Twice, as two module parameters:

* ``postgresql``: every host on one fresh PostgreSQL database (through a forwarder on 10.77.0.1);
* ``galera``: host *i* on Galera node *i* (``.ci/cluster/galera.sh``; a forwarder per node), a fresh
  database ``ephemeral_hosts``. Started here when the cluster is down (and stopped at the end).

**Which host answered each step is read, not assumed**, three times: HAProxy's ``X-Served-By`` response
header, HAProxy's log (client address, step marker, server) and the access log of the gunicorn in that
host's namespace (which logs the step marker, the peer address and the ``X-Forwarded-For`` it got). The
three must agree; consecutive steps of every flow run must be on different hosts; each flow prints
``step@host``. Which database node each host used is read from the forwarders' logs (every connection
with its source address) and from a ``manage.py shell`` run inside each namespace.

Flows, each run three times with its own users (each run starts at another point of the round robin):
password + TOTP (a replayed code refused), password + emailed code, password + recovery code, OIDC sign-in
(session and SPA mode), password reset, one-time download link; then, once, the per-address limit with a
forged ``X-Forwarded-For`` (see its docstring). Users come from tests/e2e/test_multiworker.py's SETUP_USERS.

Run (as root): ``pytest -m cluster tests/cluster/test_hosts.py -rA -p no:cacheprovider``. Needs
PostgreSQL with the role ``ephemeral`` (``bash .ci/services.sh``), socat, haproxy, node; the fixtures
run ``.ci/cluster/hosts.sh up`` (which installs what is missing) and ``down`` at the end.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests

from tests.cluster.hosts_support import (
    APP_HOSTS,
    BRIDGE_IP,
    CLIENT_IP,
    CLIENT_NS,
    GALERA_PORTS,
    SECOND_CLIENT_IP,
    SERVED_BY,
    STEP_HEADER,
    Forwarder,
    HAProxy,
    HostGunicorn,
    client_session,
    free_port_on,
    fresh_galera_database,
    galera,
    galera_running_nodes,
    galera_synced_nodes,
    hosts_sh,
)
from tests.e2e.servers import (
    CLIENT,
    ROOT,
    SETUP_USERS,
    USER_PASSWORD,
    Mailbox,
    Provider,
    authenticated,
    callback_url,
    example_env,
    fresh_postgres_database,
    manage_shell,
    provider_login,
    refused,
    start_provider,
    stop,
)

pytestmark = pytest.mark.cluster

VARIANTS = ["postgresql", "galera"]
DATABASE = "ephemeral_hosts"
WORKERS = 2  # gunicorn workers per host
# The app's access log: <peer> <step marker> <method> <path> <status> "<X-Forwarded-For>" (no query string);
# the header as the app reads it (the WSGI environ: gunicorn joins repeated header lines with ",").
ACCESS_LOG_FORMAT = '%(h)s %({x-ea-step}i)s %(m)s %(U)s %(s)s "%({http_x_forwarded_for}e)s"'
FORGED = "203.0.113.7"  # TEST-NET-3: what the forger claims to be
DEFAULT = object()  # Client.send: the client's own forged header

RUNS = 3  # each flow, with its own users: each run starts at another point of the round robin
USERS = {
    **{kind: [f"hosts-{kind}-{run}" for run in range(RUNS)] for kind in ("totp", "email", "recovery", "reset")},
    "plain": [f"hosts-download-{run}" for run in range(RUNS)],
    # The per-address limit: the account guessed first, the accounts that fill the address's bucket,
    # and an account nobody guessed (its right password is refused while the address is locked).
    "limit": ["hosts-limit-target", "hosts-limit-spare-1", "hosts-limit-spare-2", "hosts-limit-neighbour"],
}

# What the test reads back from the database (root namespace, node 1 on Galera: causal reads there).
BUCKETS = """
import json
from django.contrib.auth import get_user_model
from django.db import connection
from ephemeral_auth.models import RateLimitEvent
from ephemeral_auth.services import ratelimit
if connection.vendor == "mysql":
    with connection.cursor() as cursor:
        cursor.execute("SET SESSION wsrep_sync_wait = 1")
events = {}
for event_type, key in RateLimitEvent.objects.filter(event_type__startswith="login_").values_list("event_type", "key"):
    events.setdefault(event_type, {}).setdefault(key, 0)
    events[event_type][key] += 1
addresses = %(addresses)r
print(json.dumps({
    "events": events,
    "count": {f"{t} {a}": ratelimit.count(t, a) for t in ("login_ip",) for a in addresses},
    "locked": [[s.event_type, s.key] for s in ratelimit.locked_out()],
    "pks": {u.username: u.pk for u in get_user_model().objects.filter(username__startswith="hosts-limit-")},
}))
"""

IDENTITY = """
from django.db import connection
with connection.cursor() as cursor:
    if connection.vendor == "mysql":
        cursor.execute("SELECT @@wsrep_node_name, @@port, DATABASE()")
    else:
        cursor.execute("SELECT 'postgresql', current_setting('port'), current_database()")
    print(*cursor.fetchone())
"""


# The record of which host answered which step.


@dataclass
class Step:
    flow: str
    run: int
    name: str
    marker: str
    method: str
    source: str = CLIENT_IP  # the client's real address
    status: int = 0  # as the client saw it
    host: str | None = None  # X-Served-By, HAProxy's answer
    sent: str | None = None  # the X-Forwarded-For the client wrote itself, if any
    forwarded: str = ""  # the X-Forwarded-For the app got (its access log)


class Site:
    """One variant: three hosts, HAProxy, the shared mailbox, the users, and the record of steps."""

    def __init__(
        self, variant: str, *, hosts: dict[str, HostGunicorn], proxy: HAProxy, mailbox: Mailbox,
        setup: dict[str, Any], root_env: dict[str, str], databases: dict[str, Forwarder],
    ) -> None:
        self.variant = variant
        self.hosts = hosts
        self.proxy = proxy
        self.base_url = proxy.base_url
        self.mailbox = mailbox
        self.root_env = root_env
        self.databases = databases  # forwarder per host name (the same one thrice on PostgreSQL)
        self.totp_secrets: dict[str, str] = setup["totp"]
        self.recovery_codes: dict[str, list[str]] = setup["recovery"]
        self.limits: dict[str, tuple[int, float]] = {k: (int(v[0]), float(v[1])) for k, v in setup["limits"].items()}
        self.workers = {name: server.pids()[1:] for name, server in hosts.items()}
        self.steps: list[Step] = []
        self._markers = itertools.count(1)

    def mark(self, flow: str, run: int, name: str, method: str, source: str) -> Step:
        step = Step(flow, run, name, f"{self.variant[0]}{next(self._markers):04d}", method, source)
        self.steps.append(step)
        return step

    def shell(self, code: str) -> str:
        return manage_shell(self.root_env, code)

    def app_log(self) -> dict[str, tuple[str, str, str, int, str]]:
        """marker -> (host, peer address, method, status, X-Forwarded-For) from every host's access log."""
        logged: dict[str, tuple[str, str, str, int, str]] = {}
        for name, server in self.hosts.items():
            if not server.access_log.exists():
                continue
            for line in server.access_log.read_text().splitlines():
                head, _, forwarded = line.partition(' "')
                fields = head.split()
                if len(fields) != 5 or fields[1] == "-":
                    continue
                assert fields[1] not in logged, f"marker {fields[1]} logged by {logged[fields[1]][0]} and {name}"
                logged[fields[1]] = (name, fields[0], fields[2], int(fields[4]), forwarded.rstrip('"'))
        return logged

    def resolve(self, flow: str, *, seconds: float = 10) -> list[Step]:
        """Check each step of ``flow`` against HAProxy's log and the answering host's access log."""
        steps = [s for s in self.steps if s.flow == flow]
        assert steps, f"flow {flow} made no request"
        deadline = time.monotonic() + seconds
        while True:  # gunicorn and HAProxy write their line after answering
            app = self.app_log()
            proxy = {entry[1]: entry for entry in self.proxy.entries()}
            missing = [s.marker for s in steps if s.marker not in app or s.marker not in proxy]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not missing, f"steps missing from the logs: {missing}"
        for step in steps:
            host, peer, method, status, forwarded = app[step.marker]
            client, _, proxy_method, server, proxy_status, sent = proxy[step.marker]
            # The host that logged the step is the one HAProxy names, in its log and in the response.
            assert step.host == server == host, (step, server, host)
            assert (method, status) == (proxy_method, proxy_status) == (step.method, step.status), step
            # The host's peer is HAProxy; HAProxy's peer is the client's real address, which it appended to
            # what the client sent (if anything), and the app got both.
            assert peer == BRIDGE_IP, (step, peer)
            assert client == step.source, (step, client)
            assert sent == (step.sent or ""), (step, sent)
            assert forwarded == (f"{step.sent},{client}" if step.sent else client), (step, forwarded, client)
            step.forwarded = forwarded
        return steps

    def check_flow(self, flow: str) -> None:
        """Every run of ``flow``: consecutive steps on different hosts, from the real client; print the steps."""
        steps = self.resolve(flow)
        lines = []
        for run in sorted({s.run for s in steps}):
            taken = [s for s in steps if s.run == run]
            lines.append(
                f"[{self.variant}] {flow} run {run} ({len(taken)} steps, {len({s.host for s in taken})} hosts): "
                + " -> ".join(f"{s.name}@{s.host}" for s in taken)
            )
        print("\n" + "\n".join(lines))
        for run in {s.run for s in steps}:
            taken = [(s.name, s.host) for s in steps if s.run == run]
            assert all(a[1] != b[1] for a, b in itertools.pairwise(taken)), f"{flow} run {run}: {taken}"
            if len(taken) >= 3:
                assert {h for _, h in taken} == set(APP_HOSTS), f"{flow} run {run} did not use every host: {taken}"

    def buckets(self, *addresses: str) -> dict[str, Any]:
        return dict(json.loads(self.shell(BUCKETS % {"addresses": list(addresses)}).strip().splitlines()[-1]))


class Client:
    """A browser (or app) in ``ea-client``; every request is a marked step of ``flow``.

    ``forged``: an ``X-Forwarded-For`` the client writes itself (HAProxy appends the real address).
    """

    def __init__(self, site: Site, flow: str, run: int, *, source: str | None = None, forged: str | None = None):
        self.site = site
        self.flow = flow
        self.run = run
        self.forged = forged
        self.source = source or CLIENT_IP
        self.http = client_session(source)

    def send(
        self, name: str, method: str, url: str, *, body: dict[str, str] | None = None, accept_json: bool = False,
        forged: object = DEFAULT,
    ) -> requests.Response:
        step = self.site.mark(self.flow, self.run, name, method, self.source)
        if url.startswith("/"):
            url = self.site.base_url + url
        headers = {STEP_HEADER: step.marker}
        header = self.forged if forged is DEFAULT else forged
        if header:
            step.sent = headers["X-Forwarded-For"] = str(header)
        if accept_json:
            headers["Accept"] = "application/json"
        if method == "POST":
            headers.update({"X-CSRFToken": self.http.cookies.get("csrftoken") or "", "Referer": self.site.base_url})
        response = self.http.request(method, url, json=body, headers=headers, allow_redirects=False, timeout=30)
        step.status = response.status_code
        step.host = response.headers.get(SERVED_BY)
        return response

    def get(self, name: str, url: str, **kwargs: Any) -> requests.Response:
        return self.send(name, "GET", url, **kwargs)

    def post(self, name: str, url: str, body: dict[str, str] | None = None, **kwargs: Any) -> requests.Response:
        return self.send(name, "POST", url, body={} if body is None else body, **kwargs)

    def csrf(self) -> None:
        assert self.get("csrf", "/api/auth/csrf/").status_code == 200

    def me(self, name: str = "me") -> dict[str, Any]:
        response = self.get(name, "/api/auth/me/")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def login(
        self, username: str, password: str = USER_PASSWORD, name: str = "login", **kwargs: Any
    ) -> requests.Response:
        return self.post(name, "/api/auth/login/", {"username": username, "password": password}, **kwargs)

    def pending(self, username: str, name: str = "login") -> dict[str, Any]:
        response = self.login(username, name=name)
        assert response.status_code == 200, response.text
        answer = dict(response.json())
        assert answer["status"] == "2fa_required", answer.get("status")
        return answer

    def verify(self, pending: dict[str, Any], method: str, code: str, name: str = "verify") -> requests.Response:
        body = {"pre_auth_token": pending["pre_auth_token"], "method": method, "code": code}
        return self.post(name, "/api/auth/2fa/verify/", body)


# Fixtures: the network, the provider, then per variant the databases, hosts and HAProxy.


@pytest.fixture(scope="module")
def network() -> Iterator[None]:
    try:
        hosts_sh("up")
        yield
    finally:
        print("\n" + hosts_sh("down").strip())


@pytest.fixture(scope="module")
def proxy_port(network: None) -> int:
    return free_port_on(BRIDGE_IP)


@pytest.fixture(scope="module")
def provider(network: None, proxy_port: int, tmp_path_factory: Any) -> Iterator[Provider]:
    """The real OpenID provider on the root namespace's 127.0.0.1, at the same address in every namespace."""
    base = f"http://{BRIDGE_IP}:{proxy_port}"
    workdir = Path(tmp_path_factory.mktemp("hosts_provider"))
    process, running = start_provider(
        [{**CLIENT, "redirect_uris": [callback_url(base, "idp")]}], log=workdir / "provider.log"
    )
    port = int(urlsplit(running.issuer).port or 0)
    forwarders = [Forwarder((BRIDGE_IP, port), ("127.0.0.1", port), log=workdir / "fwd-root.log")]
    forwarders += [
        Forwarder(("127.0.0.1", port), (BRIDGE_IP, port), log=workdir / f"fwd-{ns}.log", namespace=ns)
        for ns in [*APP_HOSTS, CLIENT_NS]
    ]
    try:
        for forwarder in forwarders:
            forwarder.start()
        yield running
    finally:
        for forwarder in forwarders:
            forwarder.stop()
        stop(process)


@pytest.fixture(scope="module")
def galera_cluster() -> Iterator[None]:
    """The three Galera nodes: used as they are when Synced; else started here, and stopped if none ran."""
    if galera_synced_nodes() == 3:
        yield
        return
    started_all = galera_running_nodes() == 0
    galera("start")
    try:
        yield
    finally:
        if started_all:
            galera("stop")


@pytest.fixture(scope="module", params=VARIANTS)
def site(request: Any, network: None, provider: Provider, proxy_port: int, tmp_path_factory: Any) -> Iterator[Site]:
    variant = request.param
    started = time.monotonic()
    workdir = Path(tmp_path_factory.mktemp(f"hosts_{variant}"))
    outbox = workdir / "emails"
    outbox.mkdir()
    settings = {
        "OIDC_PROVIDERS": json.dumps({"idp": provider.settings()}),
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(outbox),
        "TRUSTED_PROXIES": BRIDGE_IP,
        "ALLOWED_HOSTS": ",".join([BRIDGE_IP, *APP_HOSTS.values(), "localhost", "127.0.0.1"]),
    }
    with contextlib.ExitStack() as cleanup:
        # The database: the root namespace reaches it on 127.0.0.1, host i through forwarder i on 10.77.0.1.
        forwarders: dict[str, Forwarder] = {}
        if variant == "postgresql":
            root_url = fresh_postgres_database(DATABASE)
            server = (urlsplit(root_url).hostname or "127.0.0.1", urlsplit(root_url).port or 5432)
            shared = Forwarder((BRIDGE_IP, free_port_on(BRIDGE_IP)), server, log=workdir / "fwd-pg.log")
            cleanup.callback(shared.stop)
            shared.start()
            forwarders = dict.fromkeys(APP_HOSTS, shared)
        else:
            request.getfixturevalue("galera_cluster")
            root_url = fresh_galera_database(DATABASE)
            for n, name in enumerate(APP_HOSTS, start=1):
                node = Forwarder(
                    (BRIDGE_IP, free_port_on(BRIDGE_IP)), ("127.0.0.1", GALERA_PORTS[n]), log=workdir / f"fwd-n{n}.log"
                )
                cleanup.callback(node.stop)
                forwarders[name] = node.start()
        root_env = example_env(root_url, **settings)
        setup_env = {**root_env, "MW_USERS": json.dumps(USERS), "MW_PASSWORD": USER_PASSWORD}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=root_env, check=True,
            timeout=300,
        )
        setup = json.loads(manage_shell(setup_env, SETUP_USERS).strip().splitlines()[-1])

        hosts: dict[str, HostGunicorn] = {}
        for name, address in APP_HOSTS.items():
            forwarder = forwarders[name]
            # The same database, at this host's forwarder (on Galera: to node i, not node 1 as root_url).
            host, port = urlsplit(root_url).hostname, urlsplit(root_url).port
            host_url = root_url.replace(f"@{host}:{port}/", f"@{BRIDGE_IP}:{forwarder.listen[1]}/", 1)
            assert host_url != root_url, root_url
            logs = workdir / name
            logs.mkdir()
            hosts[name] = HostGunicorn(
                example_env(host_url, **settings), namespace=name, address=address, logs=logs, workers=WORKERS,
                access_log_format=ACCESS_LOG_FORMAT,
            )
        for server in hosts.values():
            cleanup.callback(server.stop)
            server.launch()
        for server in hosts.values():
            server.wait_ready()

        proxy = HAProxy(port=proxy_port, servers=dict(APP_HOSTS), workdir=workdir)
        cleanup.callback(proxy.stop)
        proxy.start()
        print(f"\n[{variant}] database, 3 hosts and HAProxy up in {time.monotonic() - started:.1f} s ({workdir})")
        yield Site(
            variant, hosts=hosts, proxy=proxy, mailbox=Mailbox(outbox), setup=setup, root_env=root_env,
            databases=forwarders,
        )
    print(f"\n[{variant}] module wall time {time.monotonic() - started:.1f} s")


# 0. The layout: round robin over three hosts, each on its own database endpoint.


def test_round_robin_and_database_per_host(site: Site) -> None:
    """Six requests land on ea-h1, ea-h2, ea-h3 in turn; each host reports the database node it uses."""
    client = Client(site, "layout", 0)
    for n in range(6):
        assert client.get(f"csrf {n}", "/api/auth/csrf/").status_code == 200
    steps = site.resolve("layout")
    hosts = [s.host for s in steps]
    assert set(hosts) == set(APP_HOSTS) and all(a != b for a, b in itertools.pairwise(hosts)), hosts
    assert hosts[:3] == hosts[3:], f"not round robin: {hosts}"
    site.check_flow("layout")

    identities = {name: server.shell(IDENTITY).split() for name, server in site.hosts.items()}
    lines = [f"[{site.variant}] HAProxy {site.base_url} (trusted proxy {BRIDGE_IP}) -> hosts:"]
    for name, server in site.hosts.items():
        forwarder = site.databases[name]
        lines.append(
            f"  {name} {server.address}:{server.port} workers {site.workers[name]}  database via "
            f"{forwarder.listen[0]}:{forwarder.listen[1]} -> {forwarder.target[0]}:{forwarder.target[1]}: "
            + " ".join(identities[name])
        )
    print("\n" + "\n".join(lines))
    assert {identity[2] for identity in identities.values()} == {DATABASE}
    if site.variant == "galera":
        # Host i talks to node i (its own wsrep_node_name and port).
        assert {name: identity[:2] for name, identity in identities.items()} == {
            name: [f"n{n}", str(GALERA_PORTS[n])] for n, name in enumerate(APP_HOSTS, start=1)
        }


# 1. Password, then TOTP.


def test_password_then_totp(site: Site) -> None:
    for run, username in enumerate(USERS["totp"]):
        client = Client(site, "totp", run)
        client.csrf()
        pending = client.pending(username)
        assert "totp" in pending["methods"]
        assert client.me("me while pending")["authenticated"] is False
        code = pyotp.TOTP(site.totp_secrets[username]).now()
        authenticated(client.verify(pending, "totp", code), username, two_factor=True)
        assert client.me()["two_factor_verified"] is True
        # The same code in another browser: accepted once only, whichever host asks.
        other = Client(site, "totp", run)
        other.csrf()
        again = other.pending(username, name="login (replay)")
        refused(other.verify(again, "totp", code, name="verify (replayed code)"), 401, "invalid_code")
        logout = client.post("logout", "/api/auth/logout/")
        assert logout.status_code == 200 and logout.json()["authenticated"] is False, logout.text
        assert client.me("me after logout")["authenticated"] is False
    site.check_flow("totp")


# 2. Password, then an emailed code.


def test_password_then_email_code(site: Site) -> None:
    for run, username in enumerate(USERS["email"]):
        client = Client(site, "email", run)
        client.csrf()
        pending = client.pending(username)
        assert pending["methods"] == ["email"]
        sent = client.post("email send", "/api/auth/2fa/email/send/", {"pre_auth_token": pending["pre_auth_token"]})
        assert sent.status_code == 200 and sent.json() == {"status": "sent"}, sent.text
        code = site.mailbox.wait_for(f"{username}@example.com", r"(?m)^\s+(\d{6})\s*$")
        wrong = f"{(int(code) + 1) % 1_000_000:06d}"
        refused(client.verify(pending, "email", wrong, name="verify (wrong code)"), 401, "invalid_code")
        authenticated(client.verify(pending, "email", code), username, two_factor=True)
        assert client.me()["two_factor_verified"] is True
        refused(client.verify(pending, "email", code, name="verify (replay)"), 401, "invalid_token")
    site.check_flow("email")


# 3. Password, then a recovery code.


def test_password_then_recovery_code(site: Site) -> None:
    for run, username in enumerate(USERS["recovery"]):
        codes = site.recovery_codes[username]
        client = Client(site, "recovery", run)
        client.csrf()
        pending = client.pending(username)
        assert "recovery" in pending["methods"]
        authenticated(client.verify(pending, "recovery", codes[0]), username, two_factor=True)
        status = client.get("2fa status", "/api/auth/2fa/")
        assert status.status_code == 200 and status.json()["recovery_codes_remaining"] == len(codes) - 1
        other = Client(site, "recovery", run)
        other.csrf()
        again = other.pending(username, name="login (second)")
        refused(other.verify(again, "recovery", codes[0], name="verify (spent code)"), 401, "invalid_code")
        authenticated(
            other.verify(again, "recovery", codes[1], name="verify (next code)"), username, two_factor=True
        )
    site.check_flow("recovery")


# 4. OIDC against the real provider: session mode and SPA mode.


def test_oidc_session_mode(site: Site, provider: Provider) -> None:
    for run in range(RUNS):
        login = f"hosts-oidc-{site.variant}-{run}"
        browser = Client(site, "oidc-session", run)
        start = browser.get("authorize", f"/api/auth/oidc/idp/authorize/?next=/%3Fhosts%3D{run}")
        assert start.status_code == 302 and start.headers["Location"].startswith(provider.issuer), start.text[:300]
        callback = provider_login(browser.http, start.headers["Location"], login=login, stop_at=site.base_url)
        answer = browser.get("callback", callback)
        assert answer.status_code == 302 and answer.headers["Location"] == f"/?hosts={run}", answer.text[:300]
        me = browser.me()
        assert me["authenticated"] is True and me["username"].startswith(login)
        replay = browser.get("callback (replay)", callback)  # the state was consumed: refused on any host
        assert replay.status_code == 302 and "oidc_error=invalid_state" in replay.headers["Location"], replay.headers
        assert browser.me("me after replay")["authenticated"] is True  # and the session is untouched
    site.check_flow("oidc-session")


def test_oidc_spa_mode(site: Site, provider: Provider) -> None:
    for run in range(RUNS):
        login = f"hosts-spa-{site.variant}-{run}"
        browser = Client(site, "oidc-spa", run)
        browser.csrf()
        start = browser.get("authorize", "/api/auth/oidc/idp/authorize/?mode=spa&next=/spa/")
        assert start.status_code == 302 and start.headers["Location"].startswith(provider.issuer), start.text[:300]
        callback = provider_login(browser.http, start.headers["Location"], login=login, stop_at=site.base_url)
        answer = browser.get("callback", callback)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/spa/#oidc_token="), answer.text
        assert browser.me("me before exchange")["authenticated"] is False
        token = parse_qs(urlsplit(answer.headers["Location"]).fragment)["oidc_token"][0]
        exchange = browser.post("exchange", "/api/auth/oidc/exchange/", {"oidc_token": token})
        assert exchange.status_code == 200 and exchange.json()["status"] == "authenticated", exchange.text
        assert browser.me()["authenticated"] is True
        replay = browser.post("exchange (replay)", "/api/auth/oidc/exchange/", {"oidc_token": token})
        refused(replay, 401, "invalid_token")
    site.check_flow("oidc-spa")


# 5. Password reset.


def test_password_reset(site: Site) -> None:
    for run, username in enumerate(USERS["reset"]):
        address = f"{username}@example.com"
        new_password = f"Reset-{site.variant}-{run}-hosts-horse-battery"
        earlier = Client(site, "reset", run)  # a session opened before the reset
        earlier.csrf()
        authenticated(earlier.login(username, name="login (before reset)"), username, two_factor=False)
        client = Client(site, "reset", run)
        client.csrf()
        asked = client.post("reset request", "/api/auth/password-reset/", {"email": address})
        assert asked.status_code == 200 and asked.json() == {"status": "sent"}, asked.text
        token = site.mailbox.wait_for(address, r"/accounts/password-reset/confirm/#token=([A-Za-z0-9_-]+)")
        done = client.post(
            "reset confirm", "/api/auth/password-reset/confirm/", {"token": token, "new_password": new_password}
        )
        assert done.status_code == 200 and done.json() == {"status": "ok"}, done.text
        replay = client.post(
            "reset confirm (replay)", "/api/auth/password-reset/confirm/",
            {"token": token, "new_password": new_password + "-again"},
        )
        refused(replay, 401, "invalid_token")
        assert earlier.me("me (session from before)")["authenticated"] is False
        refused(client.login(username, name="login (old password)"), 401, "invalid_credentials")
        authenticated(client.login(username, new_password, name="login (new password)"), username, two_factor=False)
        assert client.me()["authenticated"] is True
    site.check_flow("reset")


# 6. One-time download link.


def test_one_time_download_link(site: Site) -> None:
    for run, username in enumerate(USERS["plain"]):
        pk = run % 3 + 1
        owner = Client(site, "download", run)
        owner.csrf()
        authenticated(owner.login(username), username, two_factor=False)
        issued = owner.post("issue link", f"/files/{pk}/link/", accept_json=True)
        assert issued.status_code == 200, issued.text[:300]
        url = issued.json()["url"]
        assert urlsplit(url).path == f"/files/{pk}/download/"
        app = Client(site, "download", run)  # no cookies: a desktop app, curl
        probe = app.send("HEAD (not consumed)", "HEAD", url)
        assert probe.status_code == 200 and probe.content == b""
        served = app.get("redeem", url)
        assert served.status_code == 200, served.text[:300]
        assert "attachment" in served.headers["Content-Disposition"]
        assert username.encode() in served.content  # the file names who it was served to
        refused(app.get("redeem again", url, accept_json=True), 403, "invalid_token")
        assert owner.me("me (owner)")["username"] == username  # the link is spent, the owner's session is not
    site.check_flow("download")


# 7. Per-address limits count the real client, not what it writes in X-Forwarded-For.


def _only_real(events: dict[str, dict[str, int]], real: str) -> None:
    """Every login_* bucket that names an address names ``real``; none names a forged one."""
    for event_type, keys in events.items():
        for key in keys:
            if event_type == "login_ip":
                assert key == real, (event_type, key)
            elif event_type == "login_user_ip":
                assert key.rsplit("|", 1)[1] == real, (event_type, key)


def test_per_address_limit_counts_the_real_client(site: Site) -> None:
    """A client forging ``X-Forwarded-For`` fills its own address's buckets, and only those.

    From 10.77.0.100, every request with ``X-Forwarded-For: 203.0.113.7`` (or another forged value):
    ``login_user_ip`` failures against one account, then ``login_ip`` failures against others. Each
    bucket fills under the real address (database rows, ``ratelimit.count``, ``locked_out()``); the
    forged addresses' buckets stay empty; past each limit the answer is 429 whatever the client writes in
    the header, on every host. The second real client 10.77.0.101, whose address the forger wrote in its
    header, logs in: the lock cannot be redirected onto it.
    """
    real, other = CLIENT_IP, SECOND_CLIENT_IP
    pair_limit, ip_limit = site.limits["login_user_ip"][0], site.limits["login_ip"][0]
    target, *spares, neighbour = USERS["limit"]
    assert 0 < ip_limit - pair_limit <= pair_limit * len(spares), (pair_limit, ip_limit)
    # Start from an empty address bucket (the reset flow's "old password" counted one failure).
    site.shell(f"from ephemeral_auth.services import lockout; lockout.unlock_address({real!r})")
    try:
        attacker = Client(site, "limit", 0, forged=FORGED)
        attacker.csrf()
        for n in range(1, pair_limit + 1):
            refused(attacker.login(target, f"wrong-{n}", name=f"wrong {n}"), 401, "invalid_credentials")
        # The (account, address) lock falls on the real address: no header gets the forger out of it.
        for n, header in enumerate(["203.0.113.8", other, f"198.51.100.1, {FORGED}", None], start=1):
            response = attacker.login(target, f"wrong-x{n}", name=f"locked {n}", forged=header)
            refused(response, 429, "rate_limited")
            assert int(response.headers["Retry-After"]) > 0
        state = site.buckets(real, FORGED)
        pks = state["pks"]
        assert state["events"]["login_user_ip"] == {f"u:{pks[target]}|{real}": pair_limit}, state["events"]
        assert state["events"]["login_ip"] == {real: pair_limit}, state["events"]
        assert state["count"] == {f"login_ip {real}": pair_limit, f"login_ip {FORGED}": 0}

        # Now the address bucket: other accounts, another forged address on every attempt.
        for i, n in enumerate(range(pair_limit + 1, ip_limit + 1)):
            account = spares[i // pair_limit]
            response = attacker.login(account, f"wrong-{n}", name=f"wrong {n}", forged=f"203.0.113.{n}")
            refused(response, 401, "invalid_credentials")
        # The address is locked: an account nobody guessed, with its right password, whatever the header.
        for n, header in enumerate([FORGED, other, "127.0.0.1", None], start=1):
            response = attacker.login(neighbour, name=f"right password {n}", forged=header)
            refused(response, 429, "rate_limited")
            assert int(response.headers["Retry-After"]) > 0
        state = site.buckets(real, FORGED, other)
        _only_real(state["events"], real)
        assert state["events"]["login_ip"] == {real: ip_limit}
        assert state["count"] == {f"login_ip {real}": ip_limit, f"login_ip {FORGED}": 0, f"login_ip {other}": 0}
        locked = {tuple(entry) for entry in state["locked"]}
        assert ("login_ip", real) in locked and ("login_user_ip", f"u:{pks[target]}|{real}") in locked, locked
        assert not [entry for entry in locked if "203.0.113." in entry[1] or other in entry[1]], locked

        # The forger wrote the other client's address: that client is not locked out.
        victim = Client(site, "limit-victim", 0, source=other)
        victim.csrf()
        authenticated(victim.login(neighbour), neighbour, two_factor=False)
    finally:
        site.shell(f"from ephemeral_auth.services import lockout; lockout.unlock_address({real!r})")

    steps = site.resolve("limit")
    # The app got each forged header with the real address appended (and nothing else when none was sent).
    assert next(s for s in steps if s.name == "wrong 1").forwarded == f"{FORGED},{real}"
    assert next(s for s in steps if s.name == "locked 2").forwarded == f"{other},{real}"
    assert next(s for s in steps if s.name == "locked 4").forwarded == real
    counted = [s for s in steps if s.name.startswith("wrong ")]
    blocked = [s for s in steps if s.status == 429]
    print(
        f"\n[{site.variant}] locked out: {sorted(locked)}\n"
        f"[{site.variant}] {len(counted)} counted failures from {real} (forged X-Forwarded-For) answered by "
        f"{dict(sorted(Counter(s.host for s in counted).items()))}; 429 from {sorted({s.host for s in blocked})}"
    )
    assert {s.host for s in counted} == {s.host for s in blocked} == set(APP_HOSTS)
    assert {s.source for s in site.resolve("limit-victim")} == {other}  # as HAProxy saw it (resolve checks)
    site.check_flow("limit")
    site.check_flow("limit-victim")


# The table, and what holds across the module.


def test_host_table(site: Site) -> None:
    """Print flow -> step@host; every host served; the database endpoints; no 5xx, no error in any log."""
    flows = list(dict.fromkeys(s.flow for s in site.steps))
    for flow in flows:
        site.resolve(flow)
    served = Counter(s.host for s in site.steps)
    lines = [f"[{site.variant}] {len(site.steps)} steps; requests per host: {dict(sorted(served.items()))}"]
    for flow in flows:
        for run in sorted({s.run for s in site.steps if s.flow == flow}):
            steps = [s for s in site.steps if s.flow == flow and s.run == run]
            lines.append(f"  {flow:<13} run {run}  {' -> '.join(f'{s.name}@{s.host}' for s in steps)}")
    # Which database endpoint each host used: the forwarders' logs name each connection's source.
    by_forwarder: dict[int, Forwarder] = {id(f): f for f in site.databases.values()}
    for forwarder in by_forwarder.values():
        peers = Counter(forwarder.peers())
        lines.append(
            f"  database {forwarder.target[0]}:{forwarder.target[1]} (via :{forwarder.listen[1]}) connections "
            f"from {dict(sorted(peers.items()))}"
        )
    print("\n" + "\n".join(lines))

    assert set(served) == set(APP_HOSTS)
    if site.variant == "galera":
        for name, forwarder in site.databases.items():
            peers = set(forwarder.peers())
            assert peers == {APP_HOSTS[name]}, f"node behind {forwarder!r} was used by {peers}, not only {name}"
    else:
        (forwarder,) = by_forwarder.values()
        assert set(forwarder.peers()) == set(APP_HOSTS.values())
    assert set(site.proxy.states().values()) == {"UP"}, site.proxy.states()
    for name, server in site.hosts.items():
        assert sorted(server.pids()[1:]) == sorted(site.workers[name]), f"a worker of {name} died"
        errors = [
            line for line in server.access_log.read_text().splitlines() if line.split(" ")[4:5] and
            line.split(" ")[4].startswith("5")
        ]
        assert not errors, (name, errors)
        problems = [
            line for line in server.error_log.read_text().splitlines()
            if any(word in line for word in ("[ERROR]", "[CRITICAL]", "Traceback", "WORKER TIMEOUT"))
        ]
        assert not problems, (name, problems)
