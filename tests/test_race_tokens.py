"""Single use under real concurrency: of N processes consuming one token, exactly one wins.

PostgreSQL and MariaDB only (skipped on SQLite by conftest). Each trial
releases every racer at once with a barrier; the database alone decides.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ephemeral_auth import clock
from ephemeral_auth.exceptions import InvalidToken
from ephemeral_auth.models import EphemeralToken, TokenType
from ephemeral_auth.services import tokens
from tests.race import run_racers

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]

RACERS = 8
TRIALS = 30


def consume_trials(
    sync: Any, raws: list[str], token_type: str, bindings: list[dict[str, str]], fallback: bool
) -> list[bool]:
    """Child: consume one token per trial, all racers at once; return which trials this racer won."""
    if fallback:
        # The portable path for backends without DELETE ... RETURNING:
        # SELECT, then a DELETE whose row count decides.
        tokens._supports_delete_returning = lambda connection: False  # type: ignore[assignment]
    won = []
    for raw, binding in zip(raws, bindings, strict=True):
        sync()
        try:
            tokens.consume_token(raw, token_type, **binding)
        except InvalidToken:
            won.append(False)
        else:
            won.append(True)
    return won


def winners_per_trial(results: list[list[bool]]) -> list[list[int]]:
    return [[racer for racer, won in enumerate(results) if won[trial]] for trial in range(len(results[0]))]


@pytest.mark.parametrize("fallback", [False, True], ids=["delete-returning", "select-then-delete"])
def test_exactly_one_of_eight_racers_consumes_a_token(user, fallback):
    raws = [tokens.issue_password_reset(user).raw for _ in range(TRIALS)]
    args = [(raws, TokenType.PASSWORD_RESET.value, [{}] * TRIALS, fallback) for _ in range(RACERS)]

    results = run_racers("tests.test_race_tokens:consume_trials", args)

    winners = winners_per_trial(results)
    assert [len(w) for w in winners] == [1] * TRIALS, f"winners per trial: {winners}"
    assert not EphemeralToken.objects.exists()


# (binding field, the right value, wrong values). The wrong ones include what
# a case-, accent- or pad-insensitive collation (MariaDB's default) would call
# equal: a binding is exact, byte for byte.
BINDINGS = {
    TokenType.PRE_AUTH: (
        "challenge_id",
        "the-browser-cookie",
        ["another-browser-cookie", "THE-BROWSER-COOKIE", "the-browser-cookie ", "the-browser-cookie\t"],
    ),
    TokenType.SLICER_DOWNLOAD: ("resource", "file:1", ["file:2", "FILE:1", "file:1 ", "fïle:1"]),
}


def issue_bound(token_type: str, user, value: str) -> str:
    if token_type == TokenType.PRE_AUTH:
        return tokens.issue_pre_auth(user, challenge=value, methods=["totp"]).raw
    return tokens.issue_download(user, resource=value).raw


@pytest.mark.parametrize(
    ("token_type", "fallback"),
    [(TokenType.PRE_AUTH, False), (TokenType.SLICER_DOWNLOAD, False), (TokenType.SLICER_DOWNLOAD, True)],
    ids=["pre_auth", "slicer_download", "slicer_download-select-then-delete"],
)
def test_a_racer_with_the_wrong_binding_never_wins(user, token_type, fallback):
    field, right, wrongs = BINDINGS[token_type]
    raws = [issue_bound(token_type, user, right) for _ in range(TRIALS)]
    # Half the racers present the right binding, half another browser/resource.
    # In the last trials only the wrong ones race: nothing may be consumed.
    only_wrong = 5
    args = []
    for racer in range(RACERS):
        honest = racer % 2 == 0
        bindings = [
            {field: right if honest and trial < TRIALS - only_wrong else wrongs[(racer + trial) % len(wrongs)]}
            for trial in range(TRIALS)
        ]
        args.append((raws, str(token_type), bindings, fallback))

    results = run_racers("tests.test_race_tokens:consume_trials", args)

    winners = winners_per_trial(results)
    contested = winners[: TRIALS - only_wrong]
    assert [len(w) for w in contested] == [1] * len(contested), f"winners per trial: {winners}"
    assert all(racer % 2 == 0 for w in contested for racer in w), f"a wrong binding won: {winners}"
    assert winners[TRIALS - only_wrong :] == [[]] * only_wrong
    # The tokens raced only with the wrong binding are intact and still usable.
    assert EphemeralToken.objects.count() == only_wrong
    for raw in raws[TRIALS - only_wrong :]:
        assert tokens.consume_token(raw, token_type, **{field: right})


def test_an_expired_token_is_never_consumed_under_a_race(user):
    # Issued long ago: expired for every racer, whatever they present.
    issued_at = clock.now() - timedelta(days=1)
    raws = [tokens.issue_password_reset(user, now=issued_at).raw for _ in range(5)]
    args = [(raws, TokenType.PASSWORD_RESET.value, [{}] * len(raws), False) for _ in range(RACERS)]

    results = run_racers("tests.test_race_tokens:consume_trials", args)

    assert winners_per_trial(results) == [[]] * len(raws)
    assert EphemeralToken.objects.count() == len(raws)  # left for the purge
