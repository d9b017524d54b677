"""A crash between two steps of a flow: ``kill -9`` every gunicorn process, start again, finish the flow.

Every piece of a pending flow lives in the database (the pre-auth token and
the OIDC state are EphemeralToken rows) or in the client (the pre-auth token,
the challenge and binding cookies): no worker memory, no cache. So a flow
started before a crash of the whole server (master and workers, SIGKILL: no
cleanup runs) finishes after the restart. The example project runs under
``gunicorn -w 4 --no-control-socket`` on PostgreSQL, on the ``rp_port``
registered at the real OpenID provider.

Run: ``bash .ci/e2e-setup.sh && pytest -m e2e tests/e2e/test_restart.py``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyotp
import pytest
import requests

from tests.e2e.servers import (
    USER_PASSWORD,
    Gunicorn,
    JsonClient,
    Provider,
    create_totp_user,
    example_env,
    fresh_postgres_database,
    provider_login,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(provider: Provider, rp_port: int, tmp_path_factory: Any) -> Iterator[Gunicorn]:
    """The example project under gunicorn -w 4 on a fresh PostgreSQL database, on the registered port."""
    database_url = fresh_postgres_database(os.environ.get("EA_E2E_RESTART_DATABASE", "ea_restart_e2e"))
    env = example_env(database_url, OIDC_PROVIDERS=json.dumps({"idp": provider.settings()}))
    server = Gunicorn(env, port=rp_port, logs=Path(tmp_path_factory.mktemp("gunicorn_restart")))
    server.migrate()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def crash_and_restart(server: Gunicorn) -> None:
    before = server.pids()
    killed = server.kill9()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.base_url}/api/auth/csrf/", timeout=5)
    server.start()
    after = server.pids()
    assert not set(before) & set(after), (before, after)
    print(f"killed {killed} (master first); restarted as {after}")


def test_two_factor_login_survives_kill_9(server: Gunicorn) -> None:
    secret = create_totp_user(server.env, "restart-totp")
    client = JsonClient(server.base_url)
    step = client.post("/api/auth/login/", {"username": "restart-totp", "password": USER_PASSWORD})
    assert step.status_code == 200, step.text
    assert step.json()["status"] == "2fa_required"
    pre_auth = step.json()["pre_auth_token"]
    challenge = client.http.cookies.get("ephemeral_auth_challenge")
    assert challenge, client.http.cookies

    crash_and_restart(server)

    code = pyotp.TOTP(secret).now()
    done = client.post("/api/auth/2fa/verify/", {"pre_auth_token": pre_auth, "method": "totp", "code": code})
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "authenticated"
    assert done.json()["user"]["username"] == "restart-totp"
    me = client.me()
    assert me["authenticated"] is True and me["username"] == "restart-totp"
    # The pre-auth token was spent by the verification: a replay after the restart is refused.
    replay = JsonClient(server.base_url)
    replay.http.cookies.set("ephemeral_auth_challenge", challenge)
    again = replay.post("/api/auth/2fa/verify/", {"pre_auth_token": pre_auth, "method": "totp", "code": code})
    assert again.status_code == 401 and again.json()["error"] == "invalid_token", again.text


def test_oidc_flow_survives_kill_9(server: Gunicorn, provider: Provider) -> None:
    browser = requests.Session()
    start = browser.get(
        f"{server.base_url}/api/auth/oidc/idp/authorize/", params={"next": "/?restarted=1"},
        allow_redirects=False, timeout=10,
    )
    assert start.status_code == 302, start.text[:300]
    assert start.headers["Location"].startswith(provider.issuer)

    crash_and_restart(server)  # the state row was written before the crash

    callback = provider_login(browser, start.headers["Location"], login="restart-oidc", stop_at=server.base_url)
    answer = browser.get(callback, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text[:300]
    assert answer.headers["Location"] == "/?restarted=1"
    me = browser.get(f"{server.base_url}/api/auth/me/", timeout=10).json()
    assert me["authenticated"] is True and me["username"].startswith("restart-oidc")
