"""Two-factor verification under real concurrency (PostgreSQL and MariaDB).

Every racer is a separate process posting to ``2fa/verify/`` through the
whole Django stack (middleware, view, service) against the committed test
database; a barrier releases them together in each trial.

* the same TOTP code presented with different pending logins: one login;
* the same recovery code presented with different pending logins: one login;
* the same pending login presented with different valid codes: one login;
* parallel wrong guesses never exceed the user's 2FA budget.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.sessions.models import Session

from ephemeral_auth.models import EventType, RateLimitEvent, RecoveryCode
from ephemeral_auth.services import recovery, tokens
from tests.factories import UserFactory, enrol_totp, totp_code
from tests.race import run_racers

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]

RACERS = 6
TRIALS = 12
GENEROUS = {"2fa_attempt": (1000, 900)}


def verify_trials(sync: Any, attempts: list[tuple[str, str, str, str]], limits: dict[str, Any] | None) -> list[int]:
    """Child: one verify per trial (pre_auth token, challenge, method, code), all racers at once."""
    from django.conf import settings
    from django.test import Client

    if limits is not None:
        settings.EPHEMERAL_AUTH_RATE_LIMITS = limits
    statuses = []
    for raw, challenge, method, code in attempts:
        client = Client()
        client.cookies["ephemeral_auth_challenge"] = challenge
        sync()
        response = client.post(
            "/api/auth/2fa/verify/",
            {"pre_auth_token": raw, "method": method, "code": code},
            content_type="application/json",
        )
        statuses.append(response.status_code)
    return statuses


def pending(user, method: str, n: int) -> list[tuple[str, str]]:
    """Issue ``n`` pending logins of ``user`` (each its own browser challenge)."""
    issued = []
    for i in range(n):
        challenge = f"challenge-{user.pk}-{i}"
        issued.append((tokens.issue_pre_auth(user, challenge=challenge, methods=[method, "recovery"]).raw, challenge))
    return issued


def successes_per_trial(results: list[list[int]]) -> list[int]:
    return [sum(1 for racer in results if racer[trial] == 200) for trial in range(TRIALS)]


def test_same_totp_code_logs_in_once():
    users = [UserFactory() for _ in range(TRIALS)]
    secrets = [enrol_totp(user) for user in users]
    logins = [pending(user, "totp", RACERS) for user in users]
    from ephemeral_auth import clock

    codes = [totp_code(secret, clock.now()) for secret in secrets]
    args = [([(*logins[t][r], "totp", codes[t]) for t in range(TRIALS)], GENEROUS) for r in range(RACERS)]

    results = run_racers("tests.test_race_two_factor:verify_trials", args)

    assert successes_per_trial(results) == [1] * TRIALS, results
    assert all(status in (200, 401) for racer in results for status in racer)
    assert Session.objects.count() == TRIALS


def test_same_recovery_code_logs_in_once():
    users = [UserFactory() for _ in range(TRIALS)]
    for user in users:
        enrol_totp(user)
    codes = [recovery.generate(user)[0] for user in users]
    logins = [pending(user, "totp", RACERS) for user in users]
    args = [([(*logins[t][r], "recovery", codes[t]) for t in range(TRIALS)], GENEROUS) for r in range(RACERS)]

    results = run_racers("tests.test_race_two_factor:verify_trials", args)

    assert successes_per_trial(results) == [1] * TRIALS, results
    assert RecoveryCode.objects.count() == TRIALS * 9


def test_same_pending_login_logs_in_once():
    users = [UserFactory() for _ in range(TRIALS)]
    for user in users:
        enrol_totp(user)
    codes = [recovery.generate(user)[:RACERS] for user in users]
    logins = [pending(user, "totp", 1)[0] for user in users]
    # Every racer of a trial holds the same pending login and a different valid recovery code.
    args = [([(*logins[t], "recovery", codes[t][r]) for t in range(TRIALS)], GENEROUS) for r in range(RACERS)]

    results = run_racers("tests.test_race_two_factor:verify_trials", args)

    assert successes_per_trial(results) == [1] * TRIALS, results
    assert Session.objects.count() == TRIALS
    # The losers' codes were checked (and used up) inside the transaction that
    # lost the token: rolled back with it, so each user keeps 9 of 10 codes.
    assert RecoveryCode.objects.count() == TRIALS * 9


def test_parallel_wrong_guesses_stay_within_the_budget():
    limit = 3
    users = [UserFactory() for _ in range(TRIALS)]
    for user in users:
        enrol_totp(user)
    logins = [pending(user, "totp", RACERS) for user in users]
    args = [
        ([(*logins[t][r], "recovery", "AAAAA-BBBBB") for t in range(TRIALS)], {"2fa_attempt": (limit, 900)})
        for r in range(RACERS)
    ]

    results = run_racers("tests.test_race_two_factor:verify_trials", args)

    for trial in range(TRIALS):
        checked = sum(1 for racer in results if racer[trial] == 401)  # codes actually looked at
        assert checked <= limit, results
        assert all(racer[trial] in (401, 429) for racer in results)
    per_user = RateLimitEvent.objects.filter(event_type=EventType.TWO_FA_ATTEMPT).values_list("key", flat=True)
    assert max(list(per_user).count(user.username) for user in users) <= limit


# A verification and a password reset of the same user at the same moment.


def verify_holding_the_token(sync: Any, raw: str, challenge: str, code: str) -> int:
    """Child: verify, pausing right after the token is consumed (its row and the user's are locked) for the reset."""
    import time

    from django.test import Client

    from ephemeral_auth.signals import token_consumed

    def pause(**kwargs: Any) -> None:
        sync()  # the reset starts now, while this transaction holds its locks
        time.sleep(1.0)

    token_consumed.connect(pause, dispatch_uid="race-pause", weak=False)
    client = Client()
    client.cookies["ephemeral_auth_challenge"] = challenge
    response = client.post(
        "/api/auth/2fa/verify/",
        {"pre_auth_token": raw, "method": "totp", "code": code},
        content_type="application/json",
    )
    return response.status_code


def reset_password(sync: Any, raw: str) -> str:
    """Child: confirm a reset link once the verification holds its locks; return "ok" or the error."""
    from ephemeral_auth.services import passwords

    sync()
    try:
        passwords.confirm_reset(raw, "a new and long passphrase 42")
    except Exception as exc:
        return f"{exc.__class__.__name__}: {exc}"
    return "ok"


def verify_or_reset(sync: Any, role: str, *args: str) -> Any:
    """Child: one of the two roles below (run_racers runs one target)."""
    return verify_holding_the_token(sync, *args) if role == "verify" else reset_password(sync, *args)


def test_a_verification_and_a_password_reset_at_once_do_not_deadlock():
    """Both take the user row before the user's tokens, so one waits for the other; neither is aborted.

    With the token consumed before login() (the order of an earlier version),
    the verification held the pre_auth row and wanted the user row while the
    reset held the user row and wanted to revoke the pre_auth row: the
    database aborted one of them (503), or, with the token table on its own
    database, both waited forever.
    """
    from ephemeral_auth import clock as app_clock

    user = UserFactory()
    secret = enrol_totp(user)
    raw, challenge = pending(user, "totp", 1)[0]
    reset = tokens.issue_password_reset(user).raw

    results = run_racers(
        "tests.test_race_two_factor:verify_or_reset",
        [("verify", raw, challenge, totp_code(secret, app_clock.now())), ("reset", reset)],
    )
    assert results == [200, "ok"], results
