"""WebAuthn under real concurrency: one challenge, many processes, exactly one success.

PostgreSQL and MariaDB only (skipped on SQLite by conftest). Each trial
releases every racer at once with a barrier; the database alone decides:
the challenge row is consumed by one conditional DELETE, and the counter is
written by one UPDATE conditional on the counter each racer checked.
"""

from __future__ import annotations

from typing import Any

import pytest

from ephemeral_auth.exceptions import InvalidCode, InvalidToken
from ephemeral_auth.models import EphemeralToken, WebAuthnCredential
from ephemeral_auth.services import webauthn
from tests.race import run_racers
from tests.webauthn_authenticator import SoftAuthenticator

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]

RACERS = 6
TRIALS = 10
BROWSER = "the-browser"
RP = {
    "EPHEMERAL_AUTH_WEBAUTHN_RP_ID": "example.com",
    "EPHEMERAL_AUTH_WEBAUTHN_ORIGINS": ["https://example.com"],
    "EPHEMERAL_AUTH_PASSKEY_LOGIN": True,
}


@pytest.fixture(autouse=True)
def relying_party(monkeypatch):
    # Not pytest-django's ``settings``: its override hides SETTINGS_MODULE, which the racers need.
    from django.conf import settings

    for name, value in RP.items():
        monkeypatch.setattr(settings, name, value, raising=False)


def _configure() -> None:
    from django.conf import settings

    for name, value in RP.items():
        setattr(settings, name, value)


def authenticate_trials(
    sync: Any, answers: list[dict[str, Any]], browsers: list[str], user_pk: int | None
) -> list[str]:
    """Child: complete one authentication per trial, all racers at once; return each outcome."""
    from django.contrib.auth import get_user_model

    _configure()
    user = get_user_model().objects.get(pk=user_pk) if user_pk is not None else None
    outcomes = []
    for answer, browser in zip(answers, browsers, strict=True):
        sync()
        try:
            webauthn.complete_authentication(answer, browser_challenge=browser, user=user)
        except InvalidToken:
            outcomes.append("invalid_token")
        except InvalidCode as exc:  # CredentialCloned is one too
            outcomes.append(exc.code)
        else:
            outcomes.append("ok")
    return outcomes


def register_trials(sync: Any, answers: list[dict[str, Any]], user_pk: int) -> list[str]:
    """Child: complete one registration per trial, all racers at once."""
    from django.contrib.auth import get_user_model

    from ephemeral_auth.exceptions import InvalidInput

    _configure()
    user = get_user_model().objects.get(pk=user_pk)
    outcomes = []
    for answer in answers:
        sync()
        try:
            webauthn.complete_registration(user, answer, browser_challenge=BROWSER, name="raced")
        except (InvalidToken, InvalidInput) as exc:
            outcomes.append(exc.code)
        else:
            outcomes.append("ok")
    return outcomes


def per_trial(results: list[list[str]]) -> list[list[str]]:
    return [[racer[trial] for racer in results] for trial in range(len(results[0]))]


def register(user, authenticator, *, passkey=False):
    options = webauthn.begin_registration(user, browser_challenge=BROWSER, passkey=passkey)
    return webauthn.complete_registration(user, authenticator.create(options), browser_challenge=BROWSER, name="k")


@pytest.mark.parametrize("purpose", ["second_factor", "passkey"])
def test_one_assertion_raced_by_several_processes_succeeds_once(user, purpose):
    authenticator = SoftAuthenticator()
    credential = register(user, authenticator, passkey=purpose == "passkey")
    answers = []
    for _ in range(TRIALS):
        options = webauthn.begin_authentication(
            user if purpose == "second_factor" else None, browser_challenge=BROWSER, purpose=purpose
        )
        answers.append(authenticator.get(options))
    user_pk = user.pk if purpose == "second_factor" else None
    args = [(answers, [BROWSER] * TRIALS, user_pk) for _ in range(RACERS)]

    results = run_racers("tests.test_race_webauthn:authenticate_trials", args)

    for outcomes in per_trial(results):
        assert sorted(outcomes) == ["invalid_token"] * (RACERS - 1) + ["ok"], outcomes
    assert not EphemeralToken.objects.exists()
    credential.refresh_from_db()
    assert credential.sign_count == TRIALS


def test_a_racer_from_another_browser_never_wins_and_consumes_nothing(user):
    authenticator = SoftAuthenticator()
    register(user, authenticator)
    answers = []
    for _ in range(TRIALS):
        options = webauthn.begin_authentication(user, browser_challenge=BROWSER, purpose="second_factor")
        answers.append(authenticator.get(options))
    # Half the racers present the challenge from another browser; in the last trials only they race.
    only_wrong = 3
    args = []
    for racer in range(RACERS):
        honest = racer % 2 == 0
        browsers = [BROWSER if honest and t < TRIALS - only_wrong else "another-browser" for t in range(TRIALS)]
        args.append((answers, browsers, user.pk))

    results = run_racers("tests.test_race_webauthn:authenticate_trials", args)

    trials = per_trial(results)
    for outcomes in trials[: TRIALS - only_wrong]:
        assert outcomes.count("ok") == 1, outcomes
        assert all(o == "invalid_token" for racer, o in enumerate(outcomes) if racer % 2), outcomes
    for outcomes in trials[TRIALS - only_wrong :]:
        assert outcomes == ["invalid_token"] * RACERS
    # The challenges raced only from the other browser are intact and still usable.
    assert EphemeralToken.objects.count() == only_wrong
    for answer in answers[TRIALS - only_wrong :]:
        webauthn.complete_authentication(answer, browser_challenge=BROWSER, user=user)


def test_cloned_credentials_racing_with_the_same_counter_succeed_once(user):
    # Every racer is a copy of one authenticator presenting the same next counter, each with its own
    # challenge: the counter check and the conditional UPDATE let exactly one through per trial.
    authenticator = SoftAuthenticator(counter=5)
    credential = register(user, authenticator)
    browsers = [f"browser-{racer}" for racer in range(RACERS)]
    args: list[tuple[Any, ...]] = [([], [], user.pk) for _ in range(RACERS)]
    for trial in range(TRIALS):
        for racer in range(RACERS):
            options = webauthn.begin_authentication(user, browser_challenge=browsers[racer], purpose="second_factor")
            args[racer][0].append(authenticator.get(options, counter=6 + trial))
            args[racer][1].append(browsers[racer])

    results = run_racers("tests.test_race_webauthn:authenticate_trials", args)

    for outcomes in per_trial(results):
        assert outcomes.count("ok") == 1, outcomes
        assert set(outcomes) <= {"ok", "invalid_code", "credential_cloned"}, outcomes
    credential.refresh_from_db()
    assert credential.sign_count == 5 + TRIALS


def test_one_registration_raced_by_several_processes_registers_once(user):
    answers = []
    for _ in range(TRIALS):
        options = webauthn.begin_registration(user, browser_challenge=BROWSER)
        answers.append(SoftAuthenticator().create(options))
    args = [(answers, user.pk) for _ in range(RACERS)]

    results = run_racers("tests.test_race_webauthn:register_trials", args)

    for outcomes in per_trial(results):
        assert sorted(outcomes) == ["invalid_token"] * (RACERS - 1) + ["ok"], outcomes
    assert WebAuthnCredential.objects.filter(user=user).count() == TRIALS
