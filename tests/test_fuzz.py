"""Fuzz every endpoint of docs/openapi.json through Django's test Client (hypothesis).

Each example builds a client in one session state (anonymous, logged in,
logged in with 2FA passed, pending 2FA after a real password step) and sends
one request: the described method or a wrong one, a body derived from the
operation's schema (right and wrong types, oversize and NUL-laden strings,
lone surrogates, nested objects), random JSON, raw bytes, oversize bodies,
and assorted content types, cookies and headers. It asserts:

* no 5xx, ever;
* every 4xx of a JSON endpoint is ``{"error": code, ...}`` with the status
  STATUS_BY_CODE gives that code;
* a rejected request (4xx) adds no row to any of our tables, to the users or
  to the sessions; only the counted failures of ALLOWED_EVENT_WRITES may add
  rate-limit events (the failed attempt is the thing being counted).

The default run is small (FUZZ_EXAMPLES, 300 requests); CI's ``fuzz`` stage
sets EPHEMERAL_AUTH_FUZZ_EXAMPLES=10000 and prints the status distribution.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ephemeral_auth.models import (
    EphemeralToken,
    OIDCIdentity,
    RateLimitEvent,
    RecoveryCode,
    UserTwoFactor,
    WebAuthnCredential,
)
from ephemeral_auth.views.json import MAX_BODY_BYTES, STATUS_BY_CODE
from tests.factories import PASSWORD, UserFactory, enable_email_codes, enrol_totp, login_verified

pytestmark = pytest.mark.django_db

FUZZ_EXAMPLES = int(os.environ.get("EPHEMERAL_AUTH_FUZZ_EXAMPLES", "300"))
SPEC = json.loads((Path(__file__).resolve().parent.parent / "docs" / "openapi.json").read_text(encoding="utf-8"))
PREFIX = SPEC["servers"][0]["url"]
# authorize/ and callback/ are browser navigations (302 or Django's plain pages), not JSON.
NAVIGATIONS = {"/oidc/callback/", "/oidc/{provider}/authorize/", "/oidc/{provider}/callback/"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
TABLES = {
    "EphemeralToken": EphemeralToken,
    "RateLimitEvent": RateLimitEvent,
    "UserTwoFactor": UserTwoFactor,
    "RecoveryCode": RecoveryCode,
    "OIDCIdentity": OIDCIdentity,
    "WebAuthnCredential": WebAuthnCredential,
    "User": get_user_model(),
    "Session": Session,
}
# The rejections that legitimately write rate-limit events: a failed attempt
# that is counted against a budget (that is what stops guessing). Everything
# else that is refused (bad input, wrong method, unknown token, 429 itself)
# must write nothing at all.
ALLOWED_EVENT_WRITES = {
    ("/login/", "invalid_credentials"),  # login_user_ip + login_ip + login_attempt (the account's ceiling)
    ("/2fa/verify/", "invalid_code"),  # 2fa_attempt
    ("/2fa/totp/setup/", "invalid_code"),  # replacing an authenticator: 2fa_attempt
    ("/2fa/totp/confirm/", "invalid_code"),
    ("/2fa/totp/disable/", "invalid_code"),
    ("/2fa/recovery-codes/", "invalid_code"),
    ("/2fa/email/confirm/", "invalid_code"),
    ("/2fa/email/disable/", "invalid_credentials"),
    # A wrong password given as the fresh proof of a change (2FA off): 2fa_attempt.
    ("/2fa/totp/setup/", "invalid_credentials"),
    ("/2fa/totp/confirm/", "invalid_credentials"),
    ("/2fa/email/enable/", "invalid_credentials"),
    ("/2fa/email/confirm/", "invalid_credentials"),
    # reauthenticate/: a wrong password goes through GuardBackend (login buckets), a wrong code spends 2fa_attempt.
    ("/reauthenticate/", "invalid_credentials"),
    ("/reauthenticate/", "invalid_code"),
    # WebAuthn: a failed assertion of a login spends 2fa_attempt; a refused passkey answer is
    # counted for the address (login_ip) and the account from it (login_user_ip).
    ("/2fa/verify/", "credential_cloned"),
    ("/2fa/webauthn/verify/", "invalid_code"),
    ("/2fa/webauthn/verify/", "credential_cloned"),
    ("/2fa/webauthn/register/options/", "invalid_credentials"),
    ("/2fa/webauthn/register/", "invalid_credentials"),
    ("/passkey/login/", "invalid_code"),
    ("/passkey/login/", "credential_cloned"),
}

OPERATIONS = sorted(
    (path, method.upper(), operation)
    for path, item in SPEC["paths"].items()
    for method, operation in item.items()
)


def body_schema(operation):
    return operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})


# --- strategies (built once: they are drawn from 10,000 times) ---

# A placeholder drawn for a field whose real value only the run knows (the
# pending login's token, the users' names, the password); see World.value().
KNOWN = "\x00known\x00"
KNOWN_FIELDS = {"username", "password", "email", "method", "pre_auth_token"}

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Any code point, lone surrogates included (json.dumps escapes them as \udXXX).
any_text = st.text(st.characters(codec=None, categories=None), max_size=40)
nasty_text = st.sampled_from(
    ["", " ", "\x00", "a\x00b", "\ud800", "\udfff", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "e\u0301", "\u202e", "' OR 1=1 --", "%00", "../../etc",
     "<script>", "null", "[]", "{}", "000000", "123456", "totp", "email", "recovery"]
)


plain_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF, categories=["L", "N", "P", "S", "Zs"]),
                     min_size=1, max_size=40)
digits = st.text("0123456789", min_size=6, max_size=8)


def field_values(name, schema):
    """Strategies for property ``name``: (plausible text, wrong type / oversize / nasty)."""
    max_length = schema.get("maxLength", 64)
    # A field with an enum (2FA "method") gets its values, not free text.
    plausible = [plain_text] * (0 if "enum" in schema else 4)
    if name == "code":
        plausible += [digits] * 3
    if "enum" in schema:
        plausible += [st.sampled_from(schema["enum"])] * 2
    if name in KNOWN_FIELDS:
        plausible += [st.just(KNOWN)] * 6
    wrong = [
        any_text,
        nasty_text,
        st.integers(min_value=max_length + 1, max_value=max(max_length * 4, 20_000)).map(lambda n: "x" * n),
        json_values,
        st.lists(st.text(max_size=5), max_size=3),
        st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    ]
    return st.one_of(plausible), st.one_of(wrong)


FIELD_STRATEGIES = {
    (path, method): {name: field_values(name, prop) for name, prop in body_schema(op).get("properties", {}).items()}
    for path, method, op in OPERATIONS
}
extra_fields = st.dictionaries(any_text, json_values, min_size=1, max_size=3)


def schema_body(draw, rnd, path, method):
    """A JSON object shaped after the operation's body: fields plausible, wrong, missing, or extra."""
    body = {}
    for name, (plausible, wrong) in FIELD_STRATEGIES[(path, method)].items():
        roll = rnd.random()
        if roll < 0.05:
            continue  # missing
        # Mostly plausible: a request must get past the input checks to reach the services.
        body[name] = draw(plausible if roll < 0.8 else wrong)
    if rnd.random() < 0.1:
        body.update(draw(extra_fields))
    return body


def deep(depth):
    return b"[" * depth + b"]" * depth  # nested past json's recursion limit


other_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
    st.just(b""),
    st.integers(0, 5000).map(lambda n: json.dumps({"username": "x" * (MAX_BODY_BYTES + n)}).encode()),
    st.integers(10, 8000).map(deep),
)
odd_content_types = st.sampled_from(
    ["application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded",
     "multipart/form-data; boundary=xyz", "", "application/JSON", "application/json-patch+json", "text/html\x00"]
)
cookie_text = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters=';,"\\'), max_size=60)
bad_lengths = st.sampled_from(["abc", "-1", "99999999999", "0"])
junk_cookies = st.dictionaries(
    st.sampled_from(["ephemeral_auth_challenge", "ephemeral_auth_oidc", "sessionid", "csrftoken"]), cookie_text,
    min_size=1, max_size=2,
)
forwarded_for = st.sampled_from(["203.0.113.9", "::1", "garbage", "1.2.3.4, 5.6.7.8"]) | any_text
providers = st.sampled_from(["standin", "nope", "a" * 200, "-", "_x_"])
query_params = st.dictionaries(st.sampled_from(["next", "mode", "state", "code", "error", "x"]), any_text, max_size=3)


@st.composite
def fuzz_request(draw):
    # Hypothesis favours the ends of every range it draws from, which would make "one time in
    # ten" choices far more common; a seeded Random (drawn by hypothesis, so a failure replays)
    # keeps the proportions: most requests are well-formed enough to reach the services.
    rnd = draw(st.randoms(use_true_random=True))
    path, described, _operation = OPERATIONS[rnd.randrange(len(OPERATIONS))]
    method = described
    if rnd.random() < 0.08:
        method = draw(st.sampled_from(METHODS))
    url = PREFIX + path.replace("{provider}", draw(providers))
    if rnd.random() < 0.3:
        params = draw(query_params)
        url += "?" + urlencode({k: v.encode("utf-8", "surrogatepass") for k, v in params.items()})
    body = draw(other_bodies) if rnd.random() < 0.1 else schema_body(draw, rnd, path, described)
    return {
        "path": path,
        "method": method,
        "url": url,
        # Half the time, the state in which the endpoint does something (its token, its session).
        "state": PREFERRED_STATE.get(path, "anonymous") if rnd.random() < 0.5 else STATES[rnd.randrange(len(STATES))],
        "body": body,
        "content_type": draw(odd_content_types) if rnd.random() < 0.08 else "application/json",
        "cookies": draw(junk_cookies) if rnd.random() < 0.1 else {},
        "forwarded_for": draw(forwarded_for) if rnd.random() < 0.3 else None,
        "content_length": draw(bad_lengths) if rnd.random() < 0.03 else None,
    }


# --- the world: users and session states ---

STATES = ("anonymous", "logged_in", "verified_2fa", "pending_2fa")
PREFERRED_STATE = {
    "/2fa/verify/": "pending_2fa",
    "/2fa/email/send/": "pending_2fa",
    "/2fa/webauthn/options/": "pending_2fa",
    "/2fa/webauthn/verify/": "pending_2fa",
    **{path: "verified_2fa" for path, _method, operation in OPERATIONS if operation.get("security")},
}
# A session state is rebuilt after this much app-clock time (a pending login lives 300 s).
STATE_MAX_AGE = timedelta(seconds=240)


class World:
    """The users the fuzzer logs in as, their sessions, and the statistics of the run."""

    def __init__(self, clock):
        self.clock = clock
        self.plain = UserFactory()
        self.two_factor = UserFactory()
        self.secret = enrol_totp(self.two_factor)
        enable_email_codes(self.two_factor)
        self.pending_token = ""
        self.sessions = {}  # state -> (cookies, built at)
        self.statuses = Counter()
        self.errors = Counter()  # "path code" of the rejections
        self.counted_failures = Counter()  # rejections that wrote rate-limit events (ALLOWED_EVENT_WRITES)
        self.requests = 0
        self.setup_requests = 0

    def value(self, name, rng):
        """The real value for a KNOWN placeholder of field ``name``."""
        known = {
            "username": [self.plain.username, self.two_factor.username, self.two_factor.email],
            "password": [PASSWORD],
            "email": [self.plain.email, "nobody@example.com"],
            "method": ["totp", "webauthn", "email", "recovery"],
            "pre_auth_token": [self.pending_token or "none"],
        }[name]
        return known[rng % len(known)]

    def encode(self, body):
        if isinstance(body, bytes):
            return body
        return json.dumps({k: self.value(k, len(self.pending_token) + i) if v == KNOWN else v
                           for i, (k, v) in enumerate(body.items())}).encode()

    def client(self, state):
        """A fresh client holding the cookies of ``state``'s session (built again when stale)."""
        client = Client()
        if state == "anonymous":
            return client
        cookies, built_at = self.sessions.get(state, (None, None))
        if cookies is None or self.clock.now - built_at > STATE_MAX_AGE:
            cookies = self._build(state)
            self.sessions[state] = (cookies, self.clock.now)
        for name, value in cookies.items():
            client.cookies[name] = value
        return client

    def _build(self, state):
        client = Client()
        if state == "logged_in":
            client.force_login(self.plain)
        elif state == "verified_2fa":
            login_verified(client, self.two_factor)
        elif state == "pending_2fa":
            response = client.post(
                f"{PREFIX}/login/",
                {"username": self.two_factor.username, "password": PASSWORD},
                content_type="application/json",
            )
            self.setup_requests += 1
            if response.status_code == 200 and response.json().get("status") == "2fa_required":
                self.pending_token = response.json()["pre_auth_token"]
        return {name: morsel.value for name, morsel in client.cookies.items()}

    def after(self, request, response):
        """Forget the sessions a successful change may have ended, and undo the changes to the users."""
        if response.status_code >= 400 or request["method"] in ("GET", "HEAD", "OPTIONS"):
            return
        self.sessions.clear()
        # A right password on email/disable/ turns email codes off: turn them on again.
        enable_email_codes(self.two_factor)


def row_counts():
    """Count the rows of every table in one statement (it runs twice per request)."""
    from django.db import connection

    quote = connection.ops.quote_name
    selects = ", ".join(f"(SELECT COUNT(*) FROM {quote(model._meta.db_table)})" for model in TABLES.values())
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {selects}")
        return dict(zip(TABLES, cursor.fetchone(), strict=True))


def send(world, client, request):
    extra = {}
    if request["forwarded_for"] is not None:
        extra["HTTP_X_FORWARDED_FOR"] = request["forwarded_for"].encode("utf-8", "surrogatepass").decode("latin-1")
    if request["content_length"] is not None:
        extra["CONTENT_LENGTH"] = request["content_length"]
    for name, value in request["cookies"].items():
        client.cookies[name] = value
    return client.generic(
        request["method"], request["url"], data=world.encode(request["body"]), content_type=request["content_type"],
        **extra,
    )


def check(world, request, response, before, after):
    status = response.status_code
    where = f"{request['method']} {request['url'][:120]} ({request['state']}) -> {status}"
    assert status < 500, f"{where}: {response.content[:500]!r}"
    if status < 400:
        return
    if request["path"] in NAVIGATIONS and not response.get("Content-Type", "").startswith("application/json"):
        code = None  # Django's own 404/405 page of a browser navigation
    elif request["method"] == "HEAD":
        # A HEAD answer has no body (the server drops it); its headers still say JSON.
        assert response["Content-Type"] == "application/json", where
        code = "method_not_allowed" if status == 405 else None
    else:
        body = json.loads(response.content)
        assert isinstance(body, dict) and "error" in body, f"{where}: {body!r}"
        code = body["error"]
        assert STATUS_BY_CODE.get(code) == status, f"{where}: code {code!r} has status {STATUS_BY_CODE.get(code)}"
    world.errors[f"{request['path']} {code}"] += 1
    grown = {name for name in TABLES if after[name] > before[name]}
    if (request["path"], code) in ALLOWED_EVENT_WRITES and "RateLimitEvent" in grown:
        grown.discard("RateLimitEvent")
        world.counted_failures[f"{request['path']} {code}"] += 1
    assert not grown, f"{where} {code}: a rejected request wrote rows: {grown} ({before} -> {after})"


@pytest.fixture
def fuzz_settings(settings, reset_jobs):
    # X-Forwarded-For is parsed only for trusted proxies; the test client is 127.0.0.1.
    settings.EPHEMERAL_AUTH_TRUSTED_PROXIES = ["127.0.0.0/8", "::1/128"]
    # WebAuthn and passkey sign-in on: their endpoints reach the services.
    settings.EPHEMERAL_AUTH_WEBAUTHN_RP_ID = "testserver"
    settings.EPHEMERAL_AUTH_WEBAUTHN_ORIGINS = ["http://testserver"]
    settings.EPHEMERAL_AUTH_PASSKEY_LOGIN = True
    # Small budgets and short windows: the run reaches the 429s and sees the windows drain.
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {
        "login_attempt": (3, 300),
        "login_ip": (6, 300),
        "2fa_attempt": (3, 300),
        "email_send": (2, 300),
        "password_reset_send": (2, 300),
        "password_reset_ip": (4, 300),
    }
    return settings


def run_fuzz(world, examples):
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(request=fuzz_request())
    def one_request(request):
        world.clock.advance(15)
        client = world.client(request["state"])
        before = row_counts()
        response = send(world, client, request)
        after = row_counts()
        world.requests += 1
        world.statuses[response.status_code] += 1
        check(world, request, response, before, after)
        world.after(request, response)

    one_request()


def test_fuzz_every_endpoint(fuzz_settings, clock, capsys):
    world = World(clock)
    started = time.monotonic()
    run_fuzz(world, FUZZ_EXAMPLES)
    took = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nfuzz: {world.requests} requests (+{world.setup_requests} login steps for pending-2FA sessions) "
            f"in {took:.1f}s; status codes: {dict(sorted(world.statuses.items()))}; "
            f"counted failures that wrote rate-limit events: {dict(sorted(world.counted_failures.items()))}"
        )
        if os.environ.get("EPHEMERAL_AUTH_FUZZ_VERBOSE"):
            for key, count in sorted(world.errors.items()):
                print(f"fuzz:   {count:6d}  {key}")
    # The run really covered the API: successes, client errors and rate limits.
    assert world.requests >= FUZZ_EXAMPLES * 0.9
    assert world.statuses[200] and world.statuses[400] and world.statuses[405]


def test_the_oracle_refuses_what_it_must(db, clock):
    """check() fails on a 5xx, on a wrongly coded 4xx, and on a rejection that writes (except counted failures)."""
    from django.http import HttpResponse, JsonResponse

    world = World(clock)
    rows = dict.fromkeys(TABLES, 3)
    plus = lambda name: {**rows, name: 4}  # noqa: E731
    login = {"path": "/login/", "method": "POST", "url": "/api/auth/login/", "state": "anonymous"}
    wrong_password = JsonResponse({"error": "invalid_credentials", "message": ""}, status=401)

    check(world, login, wrong_password, rows, plus("RateLimitEvent"))  # the counted failure
    with pytest.raises(AssertionError, match="wrote rows"):
        check(world, login, wrong_password, rows, plus("EphemeralToken"))
    with pytest.raises(AssertionError, match="wrote rows"):
        check(world, login, JsonResponse({"error": "invalid_input", "message": ""}, status=400), rows,
              plus("RateLimitEvent"))
    with pytest.raises(AssertionError, match="has status"):
        check(world, login, JsonResponse({"error": "invalid_input", "message": ""}, status=401), rows, rows)
    with pytest.raises(AssertionError):
        check(world, login, HttpResponse("Server Error", status=500), rows, rows)
