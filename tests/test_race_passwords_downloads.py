"""Password-reset links and download links under real concurrency (PostgreSQL and MariaDB).

Eight processes, released together by a barrier before every trial, go
through the real HTTP endpoints (Django's test client in each process, each
with its own database connection). The database alone decides who wins.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from ephemeral_auth.models import EphemeralToken, TokenType
from ephemeral_auth.services import tokens
from ephemeral_auth.views.downloads import issue_download_link
from tests.factories import UserFactory
from tests.race import run_racers

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]

RACERS = 8
TRIALS = 15
LINK = "https://app.example.com/reset#token={token}"


def racer_password(racer: int, trial: int) -> str:
    return f"racer {racer} chose passphrase {trial}"


def confirm_trials(sync: Any, racer: int, raws: list[str]) -> list[int]:
    """Child: POST every trial's token to the JSON confirm endpoint at once; return the statuses."""
    from django.test import Client

    client = Client()
    statuses = []
    for trial, raw in enumerate(raws):
        sync()
        response = client.post(
            "/api/auth/password-reset/confirm/",
            json.dumps({"token": raw, "new_password": racer_password(racer, trial)}),
            content_type="application/json",
        )
        statuses.append(response.status_code)
    return statuses


def download_trials(sync: Any, racer: int, urls: list[str]) -> list[int]:
    """Child: open every trial's link at once; odd racers present it at another file."""
    from django.test import Client

    client = Client()
    statuses = []
    for url in urls:
        if racer % 2:
            url = url.replace("/files/1/", "/files/2/")
        sync()
        statuses.append(client.get(url).status_code)
    return statuses


def deliver_trials(sync: Any, emails: list[str]) -> list[int]:
    """Child: run the reset job for the same address in every racer at once."""
    from ephemeral_auth.services import passwords

    sent = []
    for email in emails:
        sync()
        sent.append(passwords.deliver_password_reset(email=email, link=LINK))
    return sent


def winners(results: list[list[int]], trial: int, status: int = 200) -> list[int]:
    return [racer for racer, statuses in enumerate(results) if statuses[trial] == status]


def test_exactly_one_of_eight_confirmations_sets_the_password():
    users = [UserFactory() for _ in range(TRIALS)]  # confirm revokes the user's other links
    raws = [tokens.issue_password_reset(user).raw for user in users]

    results = run_racers(
        "tests.test_race_passwords_downloads:confirm_trials", [(racer, raws) for racer in range(RACERS)]
    )

    for trial, user in enumerate(users):
        won = winners(results, trial)
        assert len(won) == 1, f"trial {trial}: winners {won}, statuses {[r[trial] for r in results]}"
        losers = {results[racer][trial] for racer in range(RACERS) if racer not in won}
        assert losers == {401}  # invalid_token, never a 500
        user.refresh_from_db()
        assert user.check_password(racer_password(won[0], trial))
    assert not EphemeralToken.objects.filter(token_type=TokenType.PASSWORD_RESET).exists()


def test_exactly_one_of_eight_downloads_and_never_at_another_file(user):
    urls = [issue_download_link(user, "file:1", url_name="files:download", kwargs={"pk": 1}).url
            for _ in range(TRIALS)]

    results = run_racers(
        "tests.test_race_passwords_downloads:download_trials", [(racer, urls) for racer in range(RACERS)]
    )

    for trial in range(TRIALS):
        won = winners(results, trial)
        assert len(won) == 1, f"trial {trial}: winners {won}"
        assert won[0] % 2 == 0, "a link presented at another file must never be redeemed"
        assert {r[trial] for r in results} == {200, 403}
    assert not EphemeralToken.objects.exists()


def test_parallel_reset_requests_leave_exactly_one_live_link():
    users = [UserFactory() for _ in range(TRIALS)]
    emails = [user.email for user in users]

    results = run_racers("tests.test_race_passwords_downloads:deliver_trials", [(emails,) for _ in range(RACERS)])

    assert all(sent == [1] * TRIALS for sent in results)
    for user in users:
        live = EphemeralToken.objects.filter(user=user, token_type=TokenType.PASSWORD_RESET).count()
        assert live == 1, f"user {user.pk}: {live} live reset links (latest must win)"
