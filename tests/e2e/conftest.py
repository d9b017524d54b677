"""Session-wide fixtures of the end-to-end suite: the real OpenID provider and the relying party's port."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.servers import (
    CLIENT,
    SECOND_CLIENT,
    SHARED_CLIENT,
    Provider,
    callback_url,
    free_port,
    start_provider,
    stop,
)

# The in-process relying party (Django's test client) answers as http://testserver.
TESTSERVER = "http://testserver"


@pytest.fixture(scope="session")
def rp_port() -> int:
    """The port the example project's gunicorn listens on (its callbacks are registered at the provider).

    The gunicorn fixtures of test_oidc_e2e.py, test_oidc_hostile.py, test_restart.py and
    test_multiworker.py are module-scoped and take turns on this port.
    """
    return free_port()


@pytest.fixture(scope="session")
def provider(rp_port: int, tmp_path_factory: Any) -> Iterator[Provider]:
    """Start the real OpenID provider once for the session.

    Each client is registered with the per-provider callback of the slug the
    tests configure it as (CLIENT: "idp", SECOND_CLIENT: "idp2"), on the
    in-process relying party and on gunicorn's port. The shared callback
    (``oidc/callback/``) is registered for SHARED_CLIENT only, the client of
    the ``shared_callback`` test.
    """
    rp = f"http://localhost:{rp_port}"
    clients = [
        {**CLIENT, "redirect_uris": [callback_url(TESTSERVER, "idp"), callback_url(rp, "idp")]},
        {**SECOND_CLIENT, "redirect_uris": [callback_url(TESTSERVER, "idp2"), callback_url(rp, "idp2")]},
        {**SHARED_CLIENT, "redirect_uris": [callback_url(TESTSERVER)]},
    ]
    log = tmp_path_factory.mktemp("oidc_provider") / "provider.log"
    process, running = start_provider(clients, log=log)
    try:
        yield running
    finally:
        stop(process)
