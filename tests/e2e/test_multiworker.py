"""Every flow over real HTTP against ``gunicorn -w 4``, on PostgreSQL and on MariaDB, across workers.

The example project is served by ``gunicorn -w 4 --no-control-socket`` on the
``rp_port`` registered at the real OpenID provider (conftest.py), once per
backend, on a fresh private database. Its emails go to files
(``filebased.EmailBackend``), which the test reads for the login codes and the
reset links (never printing them).

**Every step lands on another worker than the step before it.** Gunicorn's
sync workers close each connection after one request, but a worker that has
just answered accepts the next queued connection at once, so a fast client
often stays on one worker. The test therefore keeps the worker that answered
a flow's previous step busy while it sends the next one: it opens idle
connections until that worker has accepted one (found in ``/proc``: the
server side's socket inode among the worker's file descriptors), sends the
step (another, free worker answers it) and then closes the idle connection
(gunicorn drops a client that leaves without a request, no log line). This is
what a loaded server does anyway. Nothing but the database and the client's
cookies can carry a flow from one step to the next.

Each request carries a header ``X-E2E-Step: <marker>`` naming its step; the
access log is written as ``<worker PID> <marker> <method> <path> <status>``
(``%(p)s``, ``%({x-e2e-step}i)s``; no query string, so no token reaches the
log). The test reads each step's worker PID back from that log, asserts that
consecutive steps of every run were answered by different workers, and
prints the table ``flow, run -> step@PID`` (``pytest -s`` or ``-rA``).

Flows, each run several times with its own users:

1. password login without 2FA, ``me/``, logout;
2. password, then a TOTP code (and a replayed code refused);
3. password, then an emailed code (send, a wrong code, the right one);
4. password, then a recovery code (spent: refused the second time);
5. TOTP enrolment through the JSON API (setup, confirm), then a login with it;
6. OIDC sign-in in session mode and in SPA mode (fragment token, ``oidc/exchange/``);
7. password reset: request, email, confirm; the new password works, the old
   one and a replayed link do not, and a session opened before ends;
8. one-time download link: issue, HEAD (not consumed), redeem, redeem again refused;
9. lockout: wrong passwords, each answered by another worker than the one
   before, reach the account's limit exactly: the N+1th is ``429 rate_limited``;
10. admin brute force: the admin's login form (``/admin/login/``, through
    ``ephemeral_auth.admin.secure_admin_login``) with its CSRF token, wrong
    passwords of a staff user from one address, each on another worker:
    ``400`` up to the (account, address) limit, then ``429`` with
    ``Retry-After``, the right password too, and ``/admin/`` stays closed;
    another staff user from the same address still gets in.

Every client sends its own ``X-Forwarded-For`` (``TRUSTED_PROXIES=127.0.0.1``),
so each flow has its own per-IP rate-limit bucket and only the lockout flows
fill one.

Run: ``bash .ci/e2e-setup.sh && pytest -m e2e tests/e2e/test_multiworker.py -s``.
MariaDB comes from ``EA_E2E_MARIADB_URL`` or ``CI_MARIADB_URL`` (default
``mysql://root:@127.0.0.1:3306/``); the database name from
``EA_E2E_MULTIWORKER_DATABASE`` (default ``ea_multiworker_e2e``).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pyotp
import pytest
import requests

from tests.e2e.servers import (
    SETUP_USERS,
    USER_PASSWORD,
    Gunicorn,
    Mailbox,
    Provider,
    authenticated,
    example_env,
    fresh_mariadb_database,
    fresh_postgres_database,
    manage_shell,
    parse_forms,
    provider_login,
    refused,
)

pytestmark = pytest.mark.e2e

RUNS = 3  # each flow, with its own users
STEP_HEADER = "X-E2E-Step"
ACCESS_LOG_FORMAT = "%(p)s %({x-e2e-step}i)s %(m)s %(U)s %(s)s"
LOG_LINE = re.compile(r"^<(\d+)> (\S+) (\S+) (\S+) (\d{3})$")

BACKENDS: dict[str, Callable[[str], str]] = {
    "postgresql": fresh_postgres_database,
    "mariadb": fresh_mariadb_database,
}

# Each flow's clients come from their own address (TEST-NET-2), through the trusted local "proxy".
FLOW_IPS = {
    flow: f"198.51.100.{n}"
    for n, flow in enumerate(
        [
            "password", "totp", "email", "recovery", "enrol", "oidc-session", "oidc-spa", "reset", "download",
            "lockout", "admin-lockout",
        ],
        start=1,
    )
}

# Users, created by one `manage.py shell` per backend (one password hash for all: hashing is slow).
USERS = {
    "plain": [f"mw-plain-{n}" for n in range(RUNS)],
    "totp": [f"mw-totp-{n}" for n in range(RUNS)],
    "email": [f"mw-email-{n}" for n in range(RUNS)],
    "recovery": [f"mw-recovery-{n}" for n in range(RUNS)],
    "enrol": [f"mw-enrol-{n}" for n in range(RUNS)],
    "reset": [f"mw-reset-{n}" for n in range(RUNS)],
    "files": [f"mw-files-{n}" for n in range(RUNS)],
    "lockout": ["mw-lockout", "mw-lockout-neighbour"],
    "staff": ["mw-admin", "mw-admin-neighbour"],  # staff users, for the admin's login
}



# The record of which worker answered which step.


@dataclass
class Step:
    flow: str
    run: int
    name: str
    marker: str
    method: str
    status: int = 0  # as the client saw it
    pid: int | None = None  # from gunicorn's access log


class Site:
    """The example project under gunicorn -w 4 on one backend: its users, mailbox and the step record."""

    def __init__(self, backend: str, server: Gunicorn, mailbox: Mailbox, setup: dict[str, Any]) -> None:
        self.backend = backend
        self.server = server
        self.base_url = server.base_url
        self.mailbox = mailbox
        self.totp_secrets: dict[str, str] = setup["totp"]
        self.recovery_codes: dict[str, list[str]] = setup["recovery"]
        self.login_attempt_limit = int(setup["login_attempt_limit"])
        # event type -> (limit, window in seconds) of the password buckets, as the server reads them.
        self.limits: dict[str, tuple[int, float]] = {k: (int(v[0]), float(v[1])) for k, v in setup["limits"].items()}
        self.workers = server.pids()[1:]
        self.steps: list[Step] = []
        self.last_step: dict[tuple[str, int], Step] = {}
        self._markers = itertools.count(1)

    def mark(self, flow: str, run: int, name: str, method: str) -> Step:
        step = Step(flow, run, name, f"s{next(self._markers):04d}", method)
        self.steps.append(step)
        return step

    def access_log(self) -> dict[str, tuple[int, str, int]]:
        """marker -> (worker PID, method, status) of every request that carried a marker."""
        logged: dict[str, tuple[int, str, int]] = {}
        for line in self.server.access_log.read_text().splitlines():
            match = LOG_LINE.match(line)
            if match and match.group(2) != "-":
                assert match.group(2) not in logged, f"marker {match.group(2)} logged twice"
                logged[match.group(2)] = (int(match.group(1)), match.group(3), int(match.group(5)))
        return logged

    def pid_of(self, step: Step, *, seconds: float = 10) -> int:
        """The worker that answered ``step`` (waits for its access log line)."""
        deadline = time.monotonic() + seconds
        while (logged := self.access_log().get(step.marker)) is None:
            assert time.monotonic() < deadline, f"{step} is not in the access log"
            time.sleep(0.005)
        return logged[0]

    def connection_owner(self, connection: socket.socket, *, seconds: float = 10) -> int:
        """The worker that accepted ``connection`` (from /proc: the server side's socket inode, then the fds)."""
        client_port = connection.getsockname()[1]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            inode = 0
            for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if (
                    int(local.rsplit(":", 1)[1], 16) == self.server.port
                    and int(remote.rsplit(":", 1)[1], 16) == client_port
                ):
                    inode = int(fields[9])  # 0 while the connection waits in the accept queue
            if inode:
                for pid in self.workers:
                    for fd in Path(f"/proc/{pid}/fd").iterdir():
                        try:
                            if os.readlink(fd) == f"socket:[{inode}]":
                                return pid
                        except OSError:
                            continue
            time.sleep(0.002)
        raise AssertionError(f"no worker accepted the connection from port {client_port}")

    def hold(self, pid: int) -> socket.socket:
        """Keep worker ``pid`` busy: an open connection it accepted and is waiting on for a request.

        Idle connections are opened until ``pid`` accepts one (each idle worker
        takes one, so at most one per worker); the others are closed at once.
        Closing the returned connection frees the worker (gunicorn ignores a
        client that leaves without a request: no access log line).
        """
        held: list[socket.socket] = []
        try:
            for _ in self.workers:
                connection = socket.create_connection(("127.0.0.1", self.server.port), timeout=10)
                held.append(connection)
                if self.connection_owner(connection) == pid:
                    held.remove(connection)
                    return connection
            raise AssertionError(f"worker {pid} accepted none of {len(held)} connections")
        finally:
            for other in held:
                other.close()

    def resolve(self, flow: str, *, seconds: float = 10) -> list[Step]:
        """Fill in the worker PID of each step of ``flow`` from the access log; return those steps."""
        steps = [s for s in self.steps if s.flow == flow]
        assert steps, f"flow {flow} made no request"
        deadline = time.monotonic() + seconds
        while True:  # gunicorn writes the access log line after answering
            logged = self.access_log()
            missing = [s.marker for s in steps if s.marker not in logged]
            if not missing or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert not missing, f"steps missing from the access log: {missing}"
        for step in steps:
            pid, method, status = logged[step.marker]
            assert (method, status) == (step.method, step.status), (step, logged[step.marker])
            step.pid = pid
        return steps

    def check_flow(self, flow: str) -> None:
        """Every step of ``flow`` was answered by one of our workers, each by another worker than the step before."""
        steps = self.resolve(flow)
        pids = {s.pid for s in steps}
        assert pids <= set(self.workers), f"answered by unknown processes: {pids - set(self.workers)}"
        assert len(pids) >= 2, f"every step of {flow} was answered by worker {pids}"
        for run in {s.run for s in steps}:
            taken = [(s.name, s.pid) for s in steps if s.run == run]
            assert all(a[1] != b[1] for a, b in itertools.pairwise(taken)), f"{flow} run {run}: {taken}"


class Client:
    """One browser or app with its own cookies and address; every request is a marked step of ``flow``."""

    def __init__(self, site: Site, flow: str, run: int) -> None:
        self.site = site
        self.flow = flow
        self.run = run
        self.http = requests.Session()
        self.ip = FLOW_IPS[flow]

    def send(
        self, name: str, method: str, url: str, *, body: dict[str, str] | None = None, accept_json: bool = False,
        form: dict[str, str] | None = None,
    ) -> requests.Response:
        """Send one marked step: ``body`` as JSON (the API), or ``form`` url-encoded (an HTML form, its own token)."""
        previous = self.site.last_step.get((self.flow, self.run))
        step = self.site.mark(self.flow, self.run, name, method)
        self.site.last_step[(self.flow, self.run)] = step
        if url.startswith("/"):
            url = self.site.base_url + url
        headers = {STEP_HEADER: step.marker, "X-Forwarded-For": self.ip}
        if accept_json:
            headers["Accept"] = "application/json"
        if method == "POST" and form is None:
            # What a SPA does: send the CSRF cookie's current value (login rotates it).
            headers.update({"X-CSRFToken": self.http.cookies.get("csrftoken") or "", "Referer": self.site.base_url})
        # The worker that answered the flow's previous step is kept busy: this step goes to another one.
        held = self.site.hold(self.site.pid_of(previous)) if previous is not None else None
        try:
            response = self.http.request(
                method, url, json=body, data=form, headers=headers, allow_redirects=False, timeout=20
            )
        finally:
            if held is not None:
                held.close()
        step.status = response.status_code
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

    def login(self, username: str, password: str = USER_PASSWORD, name: str = "login") -> requests.Response:
        return self.post(name, "/api/auth/login/", {"username": username, "password": password})

    def pending(self, username: str, name: str = "login") -> dict[str, Any]:
        """Password step of a 2FA user: return the ``2fa_required`` answer."""
        response = self.login(username, name=name)
        assert response.status_code == 200, response.text
        answer = dict(response.json())
        assert answer["status"] == "2fa_required" and "user" not in answer, answer.get("status")
        assert self.http.cookies.get("ephemeral_auth_challenge")
        return answer

    def verify(self, pending: dict[str, Any], method: str, code: str, name: str = "verify") -> requests.Response:
        body = {"pre_auth_token": pending["pre_auth_token"], "method": method, "code": code}
        return self.post(name, "/api/auth/2fa/verify/", body)


# The served example project, once per backend.


@pytest.fixture(scope="module", params=list(BACKENDS))
def site(request: Any, provider: Provider, rp_port: int, tmp_path_factory: Any) -> Iterator[Site]:
    backend = request.param
    started = time.monotonic()
    database_url = BACKENDS[backend](os.environ.get("EA_E2E_MULTIWORKER_DATABASE", "ea_multiworker_e2e"))
    logs = Path(tmp_path_factory.mktemp(f"gunicorn_multiworker_{backend}"))
    outbox = logs / "emails"
    outbox.mkdir()
    env = example_env(
        database_url,
        OIDC_PROVIDERS=json.dumps({"idp": provider.settings()}),
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(outbox),
        TRUSTED_PROXIES="127.0.0.1",
    )
    server = Gunicorn(env, port=rp_port, logs=logs, access_log_format=ACCESS_LOG_FORMAT)
    server.migrate()
    setup_env = {**env, "MW_USERS": json.dumps(USERS), "MW_PASSWORD": USER_PASSWORD}
    setup = json.loads(manage_shell(setup_env, SETUP_USERS).strip().splitlines()[-1])
    server.start()
    try:
        print(f"\n[{backend}] migrated, users created, gunicorn up in {time.monotonic() - started:.1f} s")
        yield Site(backend, server, Mailbox(outbox), setup)
    finally:
        server.stop()
        print(f"\n[{backend}] module wall time {time.monotonic() - started:.1f} s")


# 1. Password login without 2FA, me, logout.


def test_password_login_me_logout(site: Site) -> None:
    for run, username in enumerate(USERS["plain"]):
        client = Client(site, "password", run)
        client.csrf()
        authenticated(client.login(username), username, two_factor=False)
        assert client.me() == {"authenticated": True, "username": username, "two_factor_verified": False}
        logout = client.post("logout", "/api/auth/logout/")
        assert logout.status_code == 200, logout.text
        assert logout.json() == {"authenticated": False, "username": None, "two_factor_verified": False}
        assert client.me("me after logout")["authenticated"] is False
    site.check_flow("password")


# 2. Password, then TOTP.


def test_password_then_totp(site: Site) -> None:
    for run, username in enumerate(USERS["totp"]):
        client = Client(site, "totp", run)
        client.csrf()
        pending = client.pending(username)
        assert "totp" in pending["methods"]
        assert client.me("me while pending")["authenticated"] is False  # the first factor earns no session
        code = pyotp.TOTP(site.totp_secrets[username]).now()
        authenticated(client.verify(pending, "totp", code), username, two_factor=True)
        assert client.me()["two_factor_verified"] is True
        assert not client.http.cookies.get("ephemeral_auth_challenge")
        if run == 0:
            # The same code again, in another browser: accepted once only, whichever worker asks.
            other = Client(site, "totp", run)
            other.csrf()
            again = other.pending(username, name="login (replay)")
            refused(other.verify(again, "totp", code, name="verify (replayed code)"), 401, "invalid_code")
    site.check_flow("totp")


# 3. Password, then an emailed code.


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
    site.check_flow("email")


# 4. Password, then a recovery code.


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
        # A spent code is refused on the next login; another code still works.
        other = Client(site, "recovery", run)
        other.csrf()
        again = other.pending(username, name="login (second)")
        refused(other.verify(again, "recovery", codes[0], name="verify (spent code)"), 401, "invalid_code")
        authenticated(
            other.verify(again, "recovery", codes[1].lower(), name="verify (next code)"), username, two_factor=True
        )
    site.check_flow("recovery")


# 5. TOTP enrolment through the JSON API, then a login with it.


def test_totp_enrolment_then_login(site: Site) -> None:
    for run, username in enumerate(USERS["enrol"]):
        client = Client(site, "enrol", run)
        client.csrf()
        authenticated(client.login(username), username, two_factor=False)
        before = client.get("2fa status", "/api/auth/2fa/")
        assert before.status_code == 200 and before.json()["totp"] is False, before.text
        setup = client.post("totp setup", "/api/auth/2fa/totp/setup/")
        assert setup.status_code == 200, setup.text
        secret = setup.json()["secret"]
        assert setup.json()["provisioning_uri"].startswith("otpauth://totp/")
        pending_status = client.get("2fa status (pending)", "/api/auth/2fa/").json()
        assert pending_status["totp_pending"] is True and pending_status["totp"] is False
        authenticator = pyotp.TOTP(secret)
        now = int(time.time())
        confirmed_step = now // authenticator.interval
        confirm = client.post("totp confirm", "/api/auth/2fa/totp/confirm/", {"code": authenticator.at(now)})
        assert confirm.status_code == 200, confirm.text
        assert len(confirm.json()["recovery_codes"]) == 10
        assert client.me("me (re-marked)")["two_factor_verified"] is True
        assert client.post("logout", "/api/auth/logout/").status_code == 200

        browser = Client(site, "enrol", run)
        browser.csrf()
        pending = browser.pending(username, name="login (enrolled)")
        assert "totp" in pending["methods"] and "recovery" in pending["methods"]
        # The confirming code's step is spent: use the next one (inside the +1 step tolerance) if still in it.
        step = max(int(time.time()) // authenticator.interval, confirmed_step + 1)
        code = authenticator.at(step * authenticator.interval)
        authenticated(browser.verify(pending, "totp", code), username, two_factor=True)
    site.check_flow("enrol")


# 6. OIDC: session mode and SPA mode.


def test_oidc_session_mode(site: Site, provider: Provider) -> None:
    for run in range(RUNS):
        login = f"mw-oidc-{run}"
        browser = Client(site, "oidc-session", run)
        start = browser.get("authorize", f"/api/auth/oidc/idp/authorize/?next=/%3Fmw%3D{run}")
        assert start.status_code == 302 and start.headers["Location"].startswith(provider.issuer), start.text[:300]
        callback = provider_login(browser.http, start.headers["Location"], login=login, stop_at=site.base_url)
        answer = browser.get("callback", callback)
        assert answer.status_code == 302 and answer.headers["Location"] == f"/?mw={run}", answer.text[:300]
        me = browser.me()
        assert me["authenticated"] is True and me["username"].startswith(login)
    site.check_flow("oidc-session")


def test_oidc_spa_mode(site: Site, provider: Provider) -> None:
    for run in range(RUNS):
        login = f"mw-spa-{run}"
        browser = Client(site, "oidc-spa", run)
        browser.csrf()
        start = browser.get("authorize", "/api/auth/oidc/idp/authorize/?mode=spa&next=/spa/")
        assert start.status_code == 302 and start.headers["Location"].startswith(provider.issuer), start.text[:300]
        callback = provider_login(browser.http, start.headers["Location"], login=login, stop_at=site.base_url)
        answer = browser.get("callback", callback)
        assert answer.status_code == 302 and answer.headers["Location"].startswith("/spa/#oidc_token="), answer.text
        assert browser.me("me before exchange")["authenticated"] is False  # SPA mode: no session yet
        page = browser.get("spa page", "/spa/")
        assert page.status_code == 200
        token = parse_qs(urlsplit(answer.headers["Location"]).fragment)["oidc_token"][0]
        exchange = browser.post("exchange", "/api/auth/oidc/exchange/", {"oidc_token": token})
        assert exchange.status_code == 200, exchange.text
        assert exchange.json()["status"] == "authenticated" and exchange.json()["user"]["username"].startswith(login)
        assert browser.me()["authenticated"] is True
        refused(
            browser.post("exchange (replay)", "/api/auth/oidc/exchange/", {"oidc_token": token}), 401, "invalid_token"
        )
    site.check_flow("oidc-spa")


# 7. Password reset.


def test_password_reset(site: Site) -> None:
    for run, username in enumerate(USERS["reset"]):
        address = f"{username}@example.com"
        new_password = f"Reset-{run}-{site.backend}-horse-battery"
        earlier = Client(site, "reset", run)  # a session opened before the reset
        earlier.csrf()
        authenticated(earlier.login(username, name="login (before reset)"), username, two_factor=False)

        client = Client(site, "reset", run)
        client.csrf()
        asked = client.post("reset request", "/api/auth/password-reset/", {"email": address})
        assert asked.status_code == 200 and asked.json() == {"status": "sent"}, asked.text
        token = site.mailbox.wait_for(address, r"/accounts/password-reset/confirm/#token=([A-Za-z0-9_-]+)")
        weak = client.post(
            "reset confirm (weak)", "/api/auth/password-reset/confirm/", {"token": token, "new_password": "12345"}
        )
        refused(weak, 400, "invalid_password")  # the token stays usable
        done = client.post(
            "reset confirm", "/api/auth/password-reset/confirm/", {"token": token, "new_password": new_password}
        )
        assert done.status_code == 200 and done.json() == {"status": "ok"}, done.text
        replay = client.post(
            "reset confirm (replay)",
            "/api/auth/password-reset/confirm/",
            {"token": token, "new_password": new_password + "-again"},
        )
        refused(replay, 401, "invalid_token")

        assert earlier.me("me (session from before)")["authenticated"] is False
        refused(client.login(username, name="login (old password)"), 401, "invalid_credentials")
        authenticated(client.login(username, new_password, name="login (new password)"), username, two_factor=False)
        assert client.me()["authenticated"] is True
    site.check_flow("reset")


# 8. One-time download link.


def test_one_time_download_link(site: Site) -> None:
    for run, username in enumerate(USERS["files"]):
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
        assert f"served to {username}".encode() in served.content or f"for_{username}".encode() in served.content
        assert "attachment" in served.headers["Content-Disposition"]
        assert "sessionid" not in app.http.cookies  # one request as the user, no session
        again = app.get("redeem again", url, accept_json=True)
        refused(again, 403, "invalid_token")
        assert again.headers["X-Error-Code"] == "invalid_token"
        assert app.send("HEAD (spent)", "HEAD", url).status_code == 403
    site.check_flow("download")


# 9. Lockout across workers.


def test_lockout_across_workers(site: Site) -> None:
    username, neighbour = USERS["lockout"]
    # One address guessing one account meets the primary lock (account, address) first.
    limit = site.limits["login_user_ip"][0]
    assert limit < site.limits["login_ip"][0] and limit < site.limits["login_attempt"][0]
    client = Client(site, "lockout", 0)
    client.csrf()
    for n in range(1, limit + 1):
        refused(client.login(username, f"wrong-{n}", name=f"wrong {n}"), 401, "invalid_credentials")
    for n in range(limit + 1, limit + 4):
        response = client.login(username, f"wrong-{n}", name=f"wrong {n}")
        refused(response, 429, "rate_limited")
        assert int(response.headers["Retry-After"]) > 0 and response.json()["retry_after"] > 0
    refused(client.login(username, name="right password (locked)"), 429, "rate_limited")
    # This account from this address is locked, not the address: another account from it is checked.
    refused(client.login(neighbour, "wrong-neighbour", name="neighbour wrong"), 401, "invalid_credentials")
    authenticated(client.login(neighbour, name="neighbour right"), neighbour, two_factor=False)
    steps = site.resolve("lockout")
    failures = [s for s in steps if s.name.startswith("wrong ")]
    counted = {s.pid for s in failures[:limit]}
    print(
        f"\n[{site.backend}] the {limit} counted failures were answered by {len(counted)} workers; "
        f"429 from {sorted({s.pid for s in failures[limit:]})}"
    )
    site.check_flow("lockout")


# 10. The admin's login (secure_admin_login): a brute force stopped at the limit, across workers.


class AdminBrowser:
    """A browser on the admin's HTML login form: it posts the form's own fields (CSRF token, ``next``)."""

    def __init__(self, site: Site, run: int) -> None:
        self.client = Client(site, "admin-lockout", run)
        self.fields: dict[str, str] = {}

    def login_page(self, name: str = "login page") -> requests.Response:
        response = self.client.get(name, "/admin/login/?next=/admin/")
        assert response.status_code == 200, response.text[:300]
        self.read_form(response)
        return response

    def read_form(self, response: requests.Response) -> None:
        """Keep the fields of the page's login form (a fresh masked CSRF token on every render)."""
        forms = [f for f in parse_forms(response.text).forms if "csrfmiddlewaretoken" in f["fields"]]
        assert len(forms) == 1, f"{len(forms)} login forms on the page"
        assert forms[0]["method"].lower() == "post" and set(forms[0]["fields"]) >= {"username", "password", "next"}
        self.fields = dict(forms[0]["fields"])

    def submit(self, name: str, username: str, password: str) -> requests.Response:
        assert self.fields, "no login form read yet"
        form = {**self.fields, "username": username, "password": password}
        response = self.client.send(name, "POST", "/admin/login/?next=/admin/", form=form)
        if response.status_code in (400, 429):
            assert 'class="errornote"' in response.text, response.text[:500]  # the admin's own error note
            self.read_form(response)  # the page answers with the form again
        return response

    def admin_index(self, name: str) -> requests.Response:
        return self.client.get(name, "/admin/")


def test_admin_brute_force_stopped_at_the_limit(site: Site) -> None:
    """Wrong passwords on /admin/login/ from one address: 400 up to the limit, then 429; a neighbour still in."""
    username, neighbour = USERS["staff"]
    limit, window = site.limits["login_user_ip"]  # the primary lock: this account from this address
    ip_limit, _ = site.limits["login_ip"]
    refused_after = 3  # wrong passwords sent past the limit
    # Every attempt of this flow comes from one address: the limit's failures and the neighbour's one
    # wrong password fill the address's own bucket (refused attempts count nowhere) only part way.
    assert limit + 1 < ip_limit, (limit, ip_limit)
    assert limit < site.limits["login_attempt"][0]

    attacker = AdminBrowser(site, 0)
    closed = attacker.admin_index("admin (anonymous)")
    assert closed.status_code == 302 and urlsplit(closed.headers["Location"]).path == "/admin/login/"
    attacker.login_page()
    assert attacker.fields["next"] == "/admin/"
    for n in range(1, limit + 1):
        response = attacker.submit(f"wrong {n}", username, f"wrong-{n}")
        assert response.status_code == 400, (n, response.status_code, response.text[:300])
        assert "Retry-After" not in response.headers
    for n in range(limit + 1, limit + 1 + refused_after):
        response = attacker.submit(f"wrong {n}", username, f"wrong-{n}")
        assert response.status_code == 429, (n, response.status_code, response.text[:300])
        assert 0 < int(response.headers["Retry-After"]) <= window
    # The right password is not even checked while the bucket is full: no session, no admin.
    right = attacker.submit("right password (locked)", username, USER_PASSWORD)
    assert right.status_code == 429 and 0 < int(right.headers["Retry-After"]) <= window, right.status_code
    assert "Location" not in right.headers and "sessionid" not in attacker.client.http.cookies
    still_closed = attacker.admin_index("admin (after the right password)")
    assert still_closed.status_code == 302, still_closed.status_code
    assert urlsplit(still_closed.headers["Location"]).path == "/admin/login/"

    # The lock is per (account, address): another staff user from the same address is checked and gets in.
    colleague = AdminBrowser(site, 1)
    assert colleague.client.ip == attacker.client.ip
    colleague.login_page()
    wrong = colleague.submit("neighbour wrong", neighbour, "wrong-neighbour")
    assert wrong.status_code == 400, (wrong.status_code, wrong.text[:300])
    done = colleague.submit("neighbour right", neighbour, USER_PASSWORD)
    assert done.status_code == 302 and done.headers["Location"] == "/admin/", (done.status_code, done.text[:300])
    index = colleague.admin_index("admin (neighbour)")
    assert index.status_code == 200 and "Site administration" in index.text, index.status_code

    steps = site.resolve("admin-lockout")
    attempts = [s for s in steps if s.run == 0 and s.method == "POST"]
    lines = [
        f"\n[{site.backend}] admin brute force from {attacker.client.ip}: {len(attempts)} POSTs to /admin/login/ "
        f"(limit {limit}) answered by {len({s.pid for s in attempts})} workers"
    ]
    lines += [f"  {s.name:<34} {s.status}  worker {s.pid}" for s in steps]
    print("\n".join(lines))
    site.check_flow("admin-lockout")  # consecutive steps of each browser: each on another worker


# The table, and what holds across the module.


def test_worker_table(site: Site) -> None:
    """Print flow, run -> step@PID; no worker died or answered 5xx; gunicorn logged no error."""
    if not site.steps:
        pytest.skip("no flow ran on this backend")
    flows = list(dict.fromkeys(s.flow for s in site.steps))
    for flow in flows:
        site.resolve(flow)
    pids = Counter(s.pid for s in site.steps)
    lines = [f"\n[{site.backend}] {len(site.steps)} steps; requests per worker PID: {dict(sorted(pids.items()))}"]
    for flow in flows:
        for run in sorted({s.run for s in site.steps if s.flow == flow}):
            steps = [s for s in site.steps if s.flow == flow and s.run == run]
            cells = "  ".join(f"{s.name}@{s.pid}" for s in steps)
            lines.append(f"  {flow:<12} run {run}  [{len({s.pid for s in steps})} workers]  {cells}")
    print("\n".join(lines))

    assert set(pids) <= set(site.workers), "a request was answered by a process that is not an original worker"
    assert sorted(site.server.pids()[1:]) == sorted(site.workers), "a worker died or was replaced"
    logged = site.server.access_log.read_text().splitlines()
    server_errors = [line for line in logged if (m := LOG_LINE.match(line)) and m.group(5).startswith("5")]
    assert not server_errors, server_errors
    problems = [
        line
        for line in site.server.error_log.read_text().splitlines()
        if any(word in line for word in ("[ERROR]", "[CRITICAL]", "Traceback", "WORKER TIMEOUT"))
    ]
    assert not problems, problems
