"""The password step under real concurrency (PostgreSQL and MariaDB): record first, then check.

Every racer is a separate process posting to ``login/`` through the whole
Django stack (middleware, view, service) against the committed test
database; a barrier releases them together in each trial. In each child,
Django's ModelBackend and the password hasher are wrapped with counters, so
the test sees how many passwords were really checked, not only the answers.

* 16 parallel guesses at one account with a budget of 5: at most 5 password
  checks, every other answer a 429 with Retry-After and no hash; the bucket
  holds one row per checked failure and nothing else;
* the same from one IP with 16 different usernames (known and unknown);
* a right password racing wrong ones withdraws only its own rows (once it is
  done its place is free again: at most 5 *wrong* passwords are checked);
* a bucket with 4 failures already admits at most 1 more.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory, override_settings

from ephemeral_auth.auth import login
from ephemeral_auth.exceptions import InvalidCredentials, RateLimited
from ephemeral_auth.models import EventType, RateLimitEvent
from ephemeral_auth.services import lockout, ratelimit
from tests.factories import PASSWORD, UserFactory
from tests.race import run_racers

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]

RACERS = 16
LIMIT = 5
GENEROUS = 1000


Outcome = tuple[int, int, int, bool]


def login_burst(sync: Any, attempts: list[tuple[str, str, str]], limits: dict[str, Any]) -> list[Outcome]:
    """Child: one POST login/ per trial (username, password, IP), all racers at once.

    Returns, per trial: the status, how many times ModelBackend.authenticate
    ran, how many password hashes were computed, and whether a Retry-After
    header came with the answer.
    """
    from django.conf import settings
    from django.contrib.auth.backends import ModelBackend
    from django.contrib.auth.hashers import MD5PasswordHasher
    from django.test import Client

    settings.EPHEMERAL_AUTH_RATE_LIMITS = limits
    checks: list[str] = []
    hashes: list[int] = []
    authenticate, encode = ModelBackend.authenticate, MD5PasswordHasher.encode

    def counting_authenticate(self: Any, request: Any, username: Any = None, password: Any = None, **kw: Any) -> Any:
        checks.append(username)
        return authenticate(self, request, username=username, password=password, **kw)

    def counting_encode(self: Any, *args: Any) -> Any:
        # Checking a real account's password (verify -> encode) and the dummy
        # hash ModelBackend computes for an unknown username both come here.
        hashes.append(1)
        return encode(self, *args)

    ModelBackend.authenticate = counting_authenticate  # type: ignore[method-assign]
    MD5PasswordHasher.encode = counting_encode  # type: ignore[method-assign]
    outcomes = []
    for username, password, ip in attempts:
        client = Client(REMOTE_ADDR=ip)
        checked, hashed = len(checks), len(hashes)
        sync()
        response = client.post(
            "/api/auth/login/", {"username": username, "password": password}, content_type="application/json"
        )
        outcomes.append(
            (response.status_code, len(checks) - checked, len(hashes) - hashed, response.has_header("Retry-After"))
        )
    return outcomes


def trial(results: list[list[Outcome]], t: int) -> tuple[list[int], int, int]:
    """Return the statuses of trial ``t``, and its password checks and hashes over all racers."""
    outcomes = [racer[t] for racer in results]
    for status, checks, hashes, retry_after in outcomes:
        assert status in (200, 401, 429), outcomes
        # A 429 checked no password and says when to come back; a 401/200 checked exactly one.
        assert (checks, hashes, retry_after) == ((0, 0, True) if status == 429 else (1, 1, False)), outcomes
    return [o[0] for o in outcomes], sum(o[1] for o in outcomes), sum(o[2] for o in outcomes)


def fail_until_refused(username: str, ip: str, limits: dict[str, Any]) -> int:
    """Spend what is left of a budget, one wrong password at a time; return how many were checked."""
    checked = 0
    # Not the `settings` fixture: run_racers needs the real settings module name.
    with override_settings(EPHEMERAL_AUTH_RATE_LIMITS=limits):
        while True:
            request = RequestFactory().post("/login/", REMOTE_ADDR=ip)
            try:
                login.password_login(request, username=username, password="wrong")
            except InvalidCredentials:
                checked += 1
            except RateLimited:
                return checked


def rows(event_type: str, keys: list[str]) -> int:
    return RateLimitEvent.objects.filter(event_type=event_type, key__in=keys).count()


def test_bursts_check_at_most_the_limit_per_account_and_per_ip():
    """One set of racers (starting 16 processes dominates the cost), five trials.

    Trials 0-2 aim at one account each from 16 IPs (budget 5 per account):
    all wrong; racer 0 with the right password; 4 failures already. Trials
    3-4 come from one IP each with 16 usernames, half of them unknown (budget
    5 per IP).
    """
    limits = {"login_attempt": (LIMIT, 900), "login_ip": (LIMIT, 900), "login_user_ip": (LIMIT, 900)}
    victims = [UserFactory() for _ in range(3)]
    keys = [ratelimit.account_key(victim.pk) for victim in victims]
    for _ in range(LIMIT - 1):
        ratelimit.attempt(EventType.LOGIN_ATTEMPT, keys[2])
    prefilled = [0, 0, LIMIT - 1]
    victim_ips = [[f"10.{t}.0.{r + 1}" for r in range(RACERS)] for t in range(3)]
    # Half the usernames exist (a real hash check), half do not (ModelBackend's dummy hash).
    sprayed = [[UserFactory().username if r % 2 else f"ghost-{t}-{r}" for r in range(RACERS)] for t in range(2)]
    spray_ips = ["198.51.100.1", "198.51.100.2"]
    args = [
        (
            [(victims[t].username, PASSWORD if (t, r) == (1, 0) else "wrong", victim_ips[t][r]) for t in range(3)]
            + [(sprayed[t][r], "wrong", spray_ips[t]) for t in range(2)],
            limits,
        )
        for r in range(RACERS)
    ]

    results = run_racers("tests.test_race_login:login_burst", args)

    for t, victim in enumerate(victims):
        statuses, checks, hashes = trial(results, t)
        budget = LIMIT - prefilled[t]
        failures, successes = statuses.count(401), statuses.count(200)
        assert failures <= budget, (t, statuses)
        # A success withdraws its rows when it is done, freeing its place for a
        # later request: wrong passwords stay within the budget, not successes.
        assert checks == hashes == failures + successes, (t, statuses)
        assert successes == (1 if t == 1 and statuses[0] == 200 else 0)
        # One row per checked wrong password, none for a refusal or for the success.
        assert rows(EventType.LOGIN_ATTEMPT, [keys[t]]) == prefilled[t] + failures
        assert rows(EventType.LOGIN_IP, victim_ips[t]) == failures
        assert rows(EventType.LOGIN_USER_IP, [lockout.pair_key(keys[t], ip) for ip in victim_ips[t]]) == failures
        # Refusals under contention may leave budget unused; it is still there.
        assert failures + fail_until_refused(victim.username, f"10.9.9.{t}", limits) == budget
        assert rows(EventType.LOGIN_ATTEMPT, [keys[t]]) == LIMIT

    for t, ip in enumerate(spray_ips):
        statuses, checks, hashes = trial(results, 3 + t)
        failures = statuses.count(401)
        assert checks == hashes == failures <= LIMIT, (ip, statuses)
        assert rows(EventType.LOGIN_IP, [ip]) == failures
        subjects = [(lockout.resolve(n) or lockout.name_key(n)) for n in sprayed[t]]
        keys_t = [s if isinstance(s, str) else s.key for s in subjects]
        assert rows(EventType.LOGIN_ATTEMPT, keys_t) == failures
        assert failures + fail_until_refused(f"top-up-{t}", ip, limits) == LIMIT
