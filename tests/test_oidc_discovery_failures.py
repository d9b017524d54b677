"""Failed discovery and JWKS fetches are remembered briefly (EPHEMERAL_AUTH_OIDC_FAILURE_CACHE_TTL).

A provider that hangs must not hold a worker for the whole timeout on every
anonymous GET of authorize/ (or every callback, for the JWKS): after one failed
fetch, fetches of that URL fail at once, with the same code, until the interval
ends. Fetches give up after EPHEMERAL_AUTH_OIDC_DISCOVERY_TIMEOUT.

The provider here is :class:`Stub`, a loopback TCP server that counts the
connections it accepts and either never sends a byte or answers with canned
bytes. No assertion is about wall-clock time: the tests count connections, and
move the cache's clock instead of sleeping.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
import types
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.core.cache import caches
from django.urls import reverse

from ephemeral_auth.exceptions import OIDCError
from ephemeral_auth.models import EphemeralToken, TokenType
from ephemeral_auth.oidc import discovery

TIMEOUT = 0.5
FAILURE_TTL = 30  # the default


class Stub:
    """A loopback TCP server that counts accepted connections.

    ``reply`` None: it accepts and never sends a byte (a hanging provider).
    ``reply`` bytes: it reads the request and answers them.
    """

    def __init__(self) -> None:
        self.reply: bytes | None = None
        self.accepted = 0
        self._held: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.05)
        self.base = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def accepts(self, at_least: int = 0) -> int:
        """Return the connections accepted so far (first waiting, briefly, for ``at_least``).

        The kernel completes a connection before accept() returns it; the wait only
        lets the accepting thread catch up. It is synchronisation, not a timing check.
        """
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            with self._lock:
                if self.accepted >= at_least:
                    return self.accepted
            time.sleep(0.005)
        with self._lock:
            return self.accepted

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self._held.append(conn)
            if self.reply is not None:
                worker = threading.Thread(target=self._answer, args=(conn, self.reply), daemon=True)
                self._threads.append(worker)
                worker.start()

    def _answer(self, conn: socket.socket, reply: bytes) -> None:
        try:
            conn.settimeout(2)
            request = b""
            while b"\r\n\r\n" not in request:
                data = conn.recv(4096)
                if not data:
                    return
                request += data
            conn.sendall(reply)
            conn.shutdown(socket.SHUT_WR)  # "Connection: close": the end of an answer without a length
        except OSError:
            return  # the client gave up and closed the connection

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        for worker in self._threads:
            worker.join(5)
        for conn in self._held:
            conn.close()


def http_answer(status: int = 200, body: bytes | str | dict | list = b"") -> bytes:
    if isinstance(body, dict | list):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    head = (
        f"HTTP/1.1 {status} Stub\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def discovery_of(stub: Stub) -> dict[str, str]:
    return {
        "issuer": stub.base,
        "authorization_endpoint": stub.url("/authorize"),
        "token_endpoint": stub.url("/token"),
        "jwks_uri": stub.url("/jwks"),
    }


@pytest.fixture
def stub():
    server = Stub()
    yield server
    server.close()


@pytest.fixture
def fast(settings):
    """A short discovery timeout, a cold cache before and after.

    The per-address cap on authorize/ (oidc_authorize, 20 per 10 minutes) is raised:
    these tests send more than 20 requests from one address on purpose.
    """
    settings.EPHEMERAL_AUTH_OIDC_DISCOVERY_TIMEOUT = TIMEOUT
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"oidc_authorize": (1000, 10 * 60)}
    caches["default"].clear()
    yield settings
    caches["default"].clear()


@pytest.fixture
def cache_clock(monkeypatch):
    """Move the default cache's clock forward instead of sleeping (LocMemCache reads time.time())."""
    from django.core.cache.backends import base, locmem

    if not isinstance(caches["default"], locmem.LocMemCache):
        pytest.skip("the cache clock is LocMemCache's")
    real = time.time
    clock = types.SimpleNamespace(offset=0.0)
    clock.time = lambda: real() + clock.offset

    def advance(seconds: float) -> None:
        clock.offset += seconds

    clock.advance = advance
    monkeypatch.setattr(base, "time", clock)
    monkeypatch.setattr(locmem, "time", clock)
    return clock


def authorize(client, provider="standin"):
    return client.get(reverse("ephemeral_auth_api:oidc_authorize", args=[provider]))


def error_code(response) -> str | None:
    assert response.status_code == 302, response
    return {k: v[0] for k, v in parse_qs(urlsplit(response["Location"]).query).items()}.get("oidc_error")


def sign_in(client, standin):
    response = authorize(client)
    assert response.status_code == 302 and response["Location"].startswith(standin.issuer), response
    return client.get(standin.approve(response["Location"]))


# Discovery at authorize.


@pytest.mark.django_db
def test_a_hanging_discovery_is_waited_for_once_per_interval(client, oidc_standin, stub, fast, cache_clock):
    fast.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(discovery_url=stub.url("/.well-known/openid-configuration"))
    }
    # The first request waits out the timeout (the stub accepted, and never answered).
    assert error_code(authorize(client)) == "network_error"
    assert stub.accepts(1) == 1
    # The next ones fail at once, with the same code: no connection at all.
    for _ in range(20):
        assert error_code(authorize(client)) == "network_error"
    cache_clock.advance(FAILURE_TTL - 1)
    assert error_code(authorize(client)) == "network_error"
    assert stub.accepts() == 1
    assert not EphemeralToken.objects.filter(token_type=TokenType.OIDC_STATE).exists()
    # The interval is over: one new try, which fails again and is remembered again.
    cache_clock.advance(2)
    assert error_code(authorize(client)) == "network_error"
    assert stub.accepts(2) == 2
    assert error_code(authorize(client)) == "network_error"
    assert stub.accepts() == 2


@pytest.mark.django_db
def test_a_provider_that_answers_again_works_after_the_interval(client, oidc_standin, stub, fast, cache_clock):
    fast.EPHEMERAL_AUTH_OIDC_PROVIDERS = {
        "standin": oidc_standin.provider_settings(
            discovery_url=stub.url("/.well-known/openid-configuration"), issuer=stub.base
        )
    }
    assert error_code(authorize(client)) == "network_error"
    stub.reply = http_answer(body=discovery_of(stub))
    # Still inside the interval: the provider is not asked.
    assert error_code(authorize(client)) == "network_error"
    assert stub.accepts(1) == 1
    cache_clock.advance(FAILURE_TTL + 1)
    response = authorize(client)
    assert response.status_code == 302 and response["Location"].startswith(stub.url("/authorize?"))
    assert stub.accepts(2) == 2
    # A success is cached for OIDC_DISCOVERY_CACHE_TTL, as before.
    cache_clock.advance(3600 - 5)
    assert authorize(client)["Location"].startswith(stub.url("/authorize?"))
    assert stub.accepts() == 2
    cache_clock.advance(10)
    assert authorize(client)["Location"].startswith(stub.url("/authorize?"))
    assert stub.accepts(3) == 3


@pytest.mark.django_db
def test_an_invalid_discovery_document_is_remembered_then_the_provider_works(
    client, oidc_standin, fast, cache_clock, monkeypatch
):
    with monkeypatch.context() as patch:
        # The stand-in answers 200 with a JSON list: not a discovery document.
        patch.setattr(oidc_standin, "discovery", lambda: ["not", "a", "document"])
        for _ in range(21):
            assert error_code(authorize(client)) == "discovery_failed"
    assert oidc_standin.requests.count(("GET", "/.well-known/openid-configuration")) == 1
    # Fixed, but the failure is still remembered.
    assert error_code(authorize(client)) == "discovery_failed"
    cache_clock.advance(FAILURE_TTL + 1)
    response = sign_in(client, oidc_standin)
    assert response.status_code == 302 and response["Location"] == "/"
    assert oidc_standin.requests.count(("GET", "/.well-known/openid-configuration")) == 2


# JWKS at the callback.


@pytest.mark.django_db
def test_a_hanging_jwks_is_waited_for_once_per_interval_at_the_callback(client, oidc_standin, stub, fast, cache_clock):
    fast.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"standin": oidc_standin.provider_settings(jwks_uri=stub.url("/jwks"))}
    assert error_code(sign_in(client, oidc_standin)) == "network_error"
    assert stub.accepts(1) == 1
    for _ in range(20):
        assert error_code(sign_in(client, oidc_standin)) == "network_error"
    assert stub.accepts() == 1
    # Every callback did reach the ID token check (after the token endpoint).
    assert oidc_standin.requests.count(("POST", "/token")) == 21
    cache_clock.advance(FAILURE_TTL + 1)
    assert error_code(sign_in(client, oidc_standin)) == "network_error"
    assert stub.accepts(2) == 2


def test_a_refresh_does_not_bypass_a_remembered_jwks_failure(stub, fast):
    url = stub.url("/jwks")
    for refresh in (False, True, True, False, True):
        with pytest.raises(OIDCError) as raised:
            discovery.jwks(url, refresh=refresh)
        assert raised.value.code == "network_error"
    assert stub.accepts(1) == 1


def test_a_failed_key_rotation_refetch_is_remembered(stub, fast, cache_clock):
    """A JWKS in the cache, an unknown kid, a refetch that hangs: one wait per interval."""
    url = stub.url("/jwks")
    stub.reply = http_answer(body={"keys": []})
    assert discovery.jwks(url) == {"keys": []}
    stub.reply = None
    cache_clock.advance(FAILURE_TTL + 1)
    for _ in range(20):
        # What retrieve_matching_jwk does on an unknown kid: the cached set, then a refresh.
        assert discovery.jwks(url) == {"keys": []}
        with pytest.raises(OIDCError) as raised:
            discovery.jwks(url, refresh=True)
        assert raised.value.code == "network_error"
    assert stub.accepts(2) == 2


@pytest.mark.django_db
def test_an_unknown_kid_refetches_the_jwks_at_most_once_per_interval(client, oidc_standin, fast, cache_clock):
    assert sign_in(client, oidc_standin)["Location"] == "/"
    client.logout()
    # A key rotation: one refetch, and the sign-in works.
    oidc_standin.kid = "standin-key-2"
    assert sign_in(client, oidc_standin)["Location"] == "/"
    client.logout()
    assert oidc_standin.requests.count(("GET", "/jwks")) == 2
    # ID tokens naming yet another kid, within the interval: no refetch.
    oidc_standin.kid = "standin-key-3"
    for _ in range(10):
        assert error_code(sign_in(client, oidc_standin)) == "id_token_invalid"
    assert oidc_standin.requests.count(("GET", "/jwks")) == 2
    cache_clock.advance(FAILURE_TTL + 1)
    assert sign_in(client, oidc_standin)["Location"] == "/"
    assert oidc_standin.requests.count(("GET", "/jwks")) == 3


# What counts as a failure.


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (None, "network_error"),
        (http_answer(500, {"error": "oops"}), "discovery_failed"),
        (http_answer(200, "<html>not json</html>"), "discovery_failed"),
        (http_answer(200, ["a", "list"]), "discovery_failed"),
        (http_answer(200, {"no": "keys"}), "discovery_failed"),
    ],
    ids=["hang", "http-500", "not-json", "not-an-object", "no-keys"],
)
def test_every_kind_of_jwks_failure_is_remembered_with_its_code(stub, fast, reply, code):
    stub.reply = reply
    for _ in range(5):
        with pytest.raises(OIDCError) as raised:
            discovery.jwks(stub.url("/jwks"))
        assert raised.value.code == code
    assert stub.accepts(1) == 1


def test_a_refused_connection_is_remembered(fast, stub):
    url = stub.url("/.well-known/openid-configuration")
    stub.close()  # nothing listens on the port any more
    for _ in range(2):
        with pytest.raises(OIDCError) as raised:
            discovery.discovery_document(url)
        assert raised.value.code == "network_error"
    assert stub.accepts() == 0


def test_failures_are_kept_per_url(stub, fast):
    with pytest.raises(OIDCError):
        discovery.jwks(stub.url("/jwks"))
    stub.reply = http_answer(body={"keys": []})
    assert discovery.jwks(stub.url("/other-jwks")) == {"keys": []}
    assert stub.accepts(2) == 2


def test_a_ttl_of_zero_turns_the_failure_cache_off(stub, fast):
    fast.EPHEMERAL_AUTH_OIDC_FAILURE_CACHE_TTL = 0
    for _ in range(2):
        with pytest.raises(OIDCError):
            discovery.discovery_document(stub.url("/.well-known/openid-configuration"))
    assert stub.accepts(2) == 2


def test_failures_live_in_the_configured_cache(stub, fast):
    fast.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "default"},
        "oidc": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "oidc-failures"},
    }
    fast.EPHEMERAL_AUTH_OIDC_CACHE_ALIAS = "oidc"
    try:
        with pytest.raises(OIDCError):
            discovery.jwks(stub.url("/jwks"))
        caches["default"].clear()  # not where the failure is
        with pytest.raises(OIDCError):
            discovery.jwks(stub.url("/jwks"))
        assert stub.accepts(1) == 1
        caches["oidc"].clear()
        with pytest.raises(OIDCError):
            discovery.jwks(stub.url("/jwks"))
        assert stub.accepts(2) == 2
    finally:
        caches["oidc"].clear()


# The discovery timeout.


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "until-close"])
def test_an_oversized_answer_is_refused(stub, fast, declared):
    answer = http_answer(body={"keys": [], "padding": "x" * 2 * discovery.MAX_DOCUMENT_BYTES})
    if not declared:
        head, body = answer.split(b"\r\n\r\n", 1)
        head = b"\r\n".join(line for line in head.split(b"\r\n") if not line.startswith(b"Content-Length"))
        answer = head + b"\r\n\r\n" + body
    stub.reply = answer
    with pytest.raises(OIDCError) as raised:
        discovery.jwks(stub.url("/jwks"))
    assert raised.value.code == "discovery_failed"


@pytest.fixture
def timeouts(monkeypatch):
    """Record the timeout of every requests.get."""
    seen = []
    real = requests.get

    def get(*args, **kwargs):
        seen.append(kwargs.get("timeout"))
        return real(*args, **kwargs)

    monkeypatch.setattr(requests, "get", get)
    return seen


def test_discovery_and_jwks_use_their_own_timeout(oidc_standin, settings, timeouts):
    settings.EPHEMERAL_AUTH_OIDC_HTTP_TIMEOUT = 30
    discovery.discovery_document(oidc_standin.discovery_url)
    settings.EPHEMERAL_AUTH_OIDC_DISCOVERY_TIMEOUT = 2.5
    discovery.jwks(f"{oidc_standin.issuer}/jwks")
    assert timeouts == [5, 2.5]


def test_defaults():
    assert discovery.discovery_timeout() == 5
    assert discovery.failure_cache_ttl() == 30


@pytest.mark.parametrize("value", ["fast", None, True, -1, 0, float("nan"), [1]])
def test_an_invalid_timeout_means_the_default_and_is_logged_once(settings, caplog, monkeypatch, value):
    monkeypatch.setattr(discovery, "_reported", set())
    settings.EPHEMERAL_AUTH_OIDC_DISCOVERY_TIMEOUT = value
    with caplog.at_level(logging.ERROR, logger="ephemeral_auth.oidc"):
        assert discovery.discovery_timeout() == 5
        assert discovery.discovery_timeout() == 5
    assert [r.getMessage() for r in caplog.records if "OIDC_DISCOVERY_TIMEOUT" in r.getMessage()] == [
        "EPHEMERAL_AUTH_OIDC_DISCOVERY_TIMEOUT must be a number of seconds (more than 0); using the default, 5"
    ]


@pytest.mark.parametrize("value", ["30", None, False, -1, float("inf")])
def test_an_invalid_failure_ttl_means_the_default_and_is_logged_once(settings, caplog, monkeypatch, value):
    monkeypatch.setattr(discovery, "_reported", set())
    settings.EPHEMERAL_AUTH_OIDC_FAILURE_CACHE_TTL = value
    with caplog.at_level(logging.ERROR, logger="ephemeral_auth.oidc"):
        assert discovery.failure_cache_ttl() == 30
        assert discovery.failure_cache_ttl() == 30
    assert len([r for r in caplog.records if "OIDC_FAILURE_CACHE_TTL" in r.getMessage()]) == 1


@pytest.mark.parametrize(("value", "seconds"), [(0, 0), (1, 1), (0.2, 1), (45, 45)])
def test_failure_ttl_values(settings, value, seconds):
    settings.EPHEMERAL_AUTH_OIDC_FAILURE_CACHE_TTL = value
    assert discovery.failure_cache_ttl() == seconds


def test_an_invalid_timeout_setting_still_fails_fast(stub, fast, monkeypatch):
    """A typo in the timeout falls back to the default, not to no timeout (nor a crash)."""
    monkeypatch.setattr(discovery, "_reported", set())
    fast.EPHEMERAL_AUTH_OIDC_DISCOVERY_TIMEOUT = "0.5"
    fast.EPHEMERAL_AUTH_OIDC_FAILURE_CACHE_TTL = "thirty"
    stub.reply = http_answer(body={"keys": []})
    assert discovery.jwks(stub.url("/jwks")) == {"keys": []}
