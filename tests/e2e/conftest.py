"""Session-wide fixtures of the end-to-end suite: the real OpenID provider and the relying party's port."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.servers import CLIENT, PROVIDER_DIR, SECOND_CLIENT, TESTSERVER_CALLBACK, Provider, free_port, stop


@pytest.fixture(scope="session")
def rp_port() -> int:
    """The port the example project's gunicorn listens on (its callback is registered at the provider).

    The gunicorn fixtures of test_oidc_e2e.py and test_restart.py are module-scoped
    and take turns on this port.
    """
    return free_port()


@pytest.fixture(scope="session")
def provider(rp_port: int, tmp_path_factory: Any) -> Iterator[Provider]:
    """Start the real OpenID provider once for the session."""
    node = shutil.which("node")
    if node is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("the test provider is not installed: run `npm ci` in tests/e2e/oidc_provider (.ci/e2e-setup.sh)")
    port = free_port()
    callbacks = [TESTSERVER_CALLBACK, f"http://localhost:{rp_port}/api/auth/oidc/callback/"]
    clients = [{**CLIENT, "redirect_uris": callbacks}, {**SECOND_CLIENT, "redirect_uris": callbacks}]
    env = {**os.environ, "OIDC_PORT": str(port), "OIDC_CLIENTS": json.dumps(clients)}
    log = tmp_path_factory.mktemp("oidc_provider") / "provider.log"
    with log.open("w") as output:
        process = subprocess.Popen([node, "provider.mjs"], cwd=PROVIDER_DIR, env=env, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + 30
        while "listening" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the OpenID provider did not start:\n{log.read_text()}")
            time.sleep(0.05)
        yield Provider(f"http://127.0.0.1:{port}")
    finally:
        stop(process)
