"""Single use and rate limits on a three-node MariaDB Galera cluster (CI stage ``cluster``).

Racers are processes spread over the three nodes (tests/cluster/galera_support.py);
in every trial they present the same thing at once, each to its own node:

* a token consumed by the service (``consume_token``),
* a TOTP code and a recovery code, each with one pending login per racer,
  through the whole stack (``POST /api/auth/2fa/verify/``),
* a one-time download link (``redeem_download``),
* a password-reset link (``POST /api/auth/password-reset/confirm/``).

Exactly one racer wins each trial; the others get the app's normal refusal
(``invalid_token``, ``invalid_code``), never a database error nor a 5xx; then
every racer presents it again and is refused (a retry is never a second
success). Bursts against a rate limit admit at most the limit and leave exactly
one row per admission. Each runs with Galera's defaults, with the settings
docs/clusters.md recommends, and with the autocommit retry switched off (every
certification conflict then reaches the application).

Before the fix, the first trial set had 185 of 200 trials with several winners:
``DELETE ... RETURNING`` answers before Galera certifies (services/engine/).
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from tests.cluster import galera_support as galera

pytestmark = pytest.mark.cluster

TRIALS = int(os.environ.get("EPHEMERAL_GALERA_TRIALS", "1000"))
HOSTILE_TRIALS = max(1, TRIALS // 4)
BATCH = 50
GENEROUS = {"2fa_attempt": (10**6, 3600)}
TAG = f"g{os.getpid()}"
KINDS = ("token", "totp", "recovery", "download", "reset")


@pytest.fixture(scope="module")
def database() -> Any:
    with galera.cluster():
        yield galera.fresh_database("ephemeral_galera")


# --- Racer side (runs in the child processes).


def _refusal(exc: BaseException) -> str:
    from ephemeral_auth.exceptions import EphemeralAuthError

    if isinstance(exc, EphemeralAuthError):
        return f"refused:{exc.code}"
    return f"ERROR:{type(exc).__module__}.{type(exc).__name__}:{str(exc)[:120]}"


def _http(response: Any) -> str:
    if response.status_code == 200:
        return "win"
    try:
        code = response.json().get("error")
    except ValueError:
        code = None
    if response.status_code >= 500 or not code:
        return f"ERROR:http {response.status_code}:{response.content[:120]!r}"
    return f"refused:{code}"


def _service(call: Any) -> str:
    try:
        call()
    except Exception as exc:
        return _refusal(exc)
    return "win"


class _Clock:
    """A clock the racer moves per trial: each TOTP trial needs a step of its own."""

    def __init__(self) -> None:
        from ephemeral_auth import clock

        self.real = clock.now
        self.moment: Any = None
        clock.now = self.now  # type: ignore[assignment]

    def now(self) -> Any:
        return self.moment or self.real()


def race(racer: Any, kind: str, tag: str, trials: int) -> list[tuple[str, str]]:
    """Child: ``trials`` trials of ``kind``; return (first answer, answer to the retry) per trial."""
    from django.conf import settings

    settings.EPHEMERAL_AUTH_RATE_LIMITS = GENEROUS
    make, present = KIND_SETUP[kind](racer, tag)
    outcomes: list[tuple[str, str]] = []
    done = 0
    while done < trials:
        n = min(BATCH, trials - done)
        if racer.index == 0:
            items = make(done, n)
            racer.publish(items)
        else:
            items = racer.receive()
        racer.catch_up()  # racer 0 wrote on its node: make sure every node has it before racing
        firsts = []
        for item in items:
            racer.sync()
            firsts.append(present(item))
        racer.sync()
        # Then everybody presents every item of the batch again: never a second success.
        outcomes += [(first, present(item)) for first, item in zip(firsts, items, strict=True)]
        done += n
    return outcomes


def _user(name: str, **fields: Any) -> Any:
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=name, defaults={"email": f"{name}@example.com", **fields})
    return user


def _setup_token(racer: Any, tag: str) -> tuple[Any, Any]:
    from ephemeral_auth.models import TokenType
    from ephemeral_auth.services import tokens

    user = _user(f"{tag}-token") if racer.index == 0 else None

    def make(start: int, n: int) -> list[tuple[str, str]]:
        items = []
        for i in range(start, start + n):
            challenge = f"{tag}-challenge-{i}"
            items.append((tokens.issue_pre_auth(user, challenge=challenge, methods=["totp"]).raw, challenge))
        return items

    def present(item: tuple[str, str]) -> str:
        raw, challenge = item
        return _service(lambda: tokens.consume_token(raw, TokenType.PRE_AUTH, challenge_id=challenge))

    return make, present


def _verify(item: dict[str, Any], racer: Any, clock: _Clock | None = None) -> str:
    from django.test import Client

    raw, challenge = item["pending"][racer.index]
    if clock is not None:
        clock.moment = item["now"]
    client = Client()
    client.cookies["ephemeral_auth_challenge"] = challenge
    response = client.post(
        "/api/auth/2fa/verify/",
        {"pre_auth_token": raw, "method": item["method"], "code": item["code"]},
        content_type="application/json",
    )
    return _http(response)


def _setup_totp(racer: Any, tag: str) -> tuple[Any, Any]:
    from datetime import datetime, timezone

    from ephemeral_auth.services import tokens
    from tests.factories import enrol_totp, totp_code

    clock = _Clock()
    # Trial i happens at its own TOTP step, far from any other: one user, a fresh code every trial.
    base = datetime(2030, 1, 1, tzinfo=timezone.utc) + timedelta(days=hash(tag) % 1000)
    state: dict[str, Any] = {}
    if racer.index == 0:
        state["user"] = _user(f"{tag}-totp")
        state["secret"] = enrol_totp(state["user"])

    def make(start: int, n: int) -> list[dict[str, Any]]:
        items = []
        for i in range(start, start + n):
            now = base + timedelta(seconds=90 * i)
            pending = []
            for r in range(racer.count):
                challenge = f"{tag}-totp-{i}-{r}"
                raw = tokens.issue_pre_auth(state["user"], challenge=challenge, methods=["totp"], now=now).raw
                pending.append((raw, challenge))
            code = totp_code(state["secret"], now)
            items.append({"pending": pending, "method": "totp", "code": code, "now": now})
        return items

    return make, lambda item: _verify(item, racer, clock)


def _setup_recovery(racer: Any, tag: str) -> tuple[Any, Any]:
    from ephemeral_auth import crypto
    from ephemeral_auth.models import RecoveryCode
    from ephemeral_auth.services import recovery, tokens
    from tests.factories import enrol_totp

    state: dict[str, Any] = {}
    if racer.index == 0:
        state["user"] = _user(f"{tag}-recovery")
        enrol_totp(state["user"])

    def make(start: int, n: int) -> list[dict[str, Any]]:
        user = state["user"]
        items, rows = [], []
        for i in range(start, start + n):
            code = crypto.random_code(recovery.CODE_LENGTH)
            rows.append(RecoveryCode(user=user, code_hash=recovery._digest(user.pk, code)))
            pending = []
            for r in range(racer.count):
                challenge = f"{tag}-recovery-{i}-{r}"
                pending.append((tokens.issue_pre_auth(user, challenge=challenge, methods=["recovery"]).raw, challenge))
            items.append({"pending": pending, "method": "recovery", "code": code})
        RecoveryCode.objects.bulk_create(rows)
        return items

    return make, lambda item: _verify(item, racer)


def _setup_download(racer: Any, tag: str) -> tuple[Any, Any]:
    from ephemeral_auth.services import downloads, tokens

    user = _user(f"{tag}-download") if racer.index == 0 else None

    def make(start: int, n: int) -> list[tuple[str, str]]:
        return [
            (tokens.issue_download(user, resource=f"file-{tag}-{i}").raw, f"file-{tag}-{i}")
            for i in range(start, start + n)
        ]

    def present(item: tuple[str, str]) -> str:
        raw, resource = item
        return _service(lambda: downloads.redeem_download(raw, resource))

    return make, present


def _setup_reset(racer: Any, tag: str) -> tuple[Any, Any]:
    from django.contrib.auth import get_user_model
    from django.test import Client

    from ephemeral_auth.services import tokens

    def make(start: int, n: int) -> list[str]:
        model = get_user_model()
        names = [f"{tag}-reset-{i}" for i in range(start, start + n)]
        model.objects.bulk_create([model(username=name, email=f"{name}@example.com") for name in names])
        users = model.objects.filter(username__in=names).order_by("username")
        return [tokens.issue_password_reset(user).raw for user in users]

    def present(raw: str) -> str:
        response = Client().post(
            "/api/auth/password-reset/confirm/",
            {"token": raw, "new_password": "Galera-correct-horse-battery-staple"},
            content_type="application/json",
        )
        return _http(response)

    return make, present


KIND_SETUP = {
    "token": _setup_token,
    "totp": _setup_totp,
    "recovery": _setup_recovery,
    "download": _setup_download,
    "reset": _setup_reset,
}


def burst(racer: Any, tag: str, trials: int, limit: int) -> list[Any]:
    """Child: per trial every racer attempts once against a fresh key; racer 0 then counts the rows."""
    from django.db import connection

    from ephemeral_auth.exceptions import RateLimited
    from ephemeral_auth.models import RateLimitEvent
    from ephemeral_auth.services import ratelimit

    admitted: list[Any] = []
    for trial in range(trials):
        key = f"{tag}-burst-{trial}"
        racer.sync()
        try:
            ratelimit.attempt("login_ip", key, limit=limit, window=timedelta(minutes=10))
            admitted.append(True)
        except RateLimited:
            admitted.append(False)
        except Exception as exc:
            admitted.append(_refusal(exc))
    racer.sync()
    racer.catch_up()
    if racer.index != 0:
        return admitted
    del connection  # counted through the ORM, after the causal catch-up above
    keys = [f"{tag}-burst-{trial}" for trial in range(trials)]
    rows = Counter(RateLimitEvent.objects.filter(key__in=keys).values_list("key", flat=True))
    return [admitted, [rows.get(key, 0) for key in keys]]


# --- Test side.


def _judge(kind: str, variant: str, results: list[list[tuple[str, str]]], trials: int) -> None:
    winners: Counter[int] = Counter()
    answers: Counter[str] = Counter()
    bad: list[str] = []
    for trial in range(trials):
        firsts = [racer[trial][0] for racer in results]
        agains = [racer[trial][1] for racer in results]
        answers.update(firsts + agains)
        wins = [i for i, answer in enumerate(firsts) if answer == "win"]
        winners[len(wins)] += 1
        if len(wins) == 1:
            winners_node = galera.NODES[wins[0] % len(galera.NODES)]
            answers[f"won on node {winners_node}"] += 1
        errors = [a for a in firsts + agains if a.startswith("ERROR")]
        if len(wins) != 1 or "win" in agains or errors:
            bad.append(f"trial {trial}: first {firsts}, again {agains}")
    print(
        f"galera {kind} [{variant}]: {trials} trials x {len(results)} racers on nodes {galera.NODES}; "
        f"winners per trial {dict(sorted(winners.items()))}; answers {dict(sorted(answers.items()))}"
    )
    assert not bad, f"{len(bad)} of {trials} trials broke single use:\n" + "\n".join(bad[:10])


@pytest.mark.parametrize("variant", ["default", "documented"])
@pytest.mark.parametrize("kind", KINDS)
def test_exactly_one_winner_per_trial(database: str, kind: str, variant: str) -> None:
    results = galera.run_on_nodes(
        "tests.cluster.test_galera:race", database=database, variant=variant, args=(kind, f"{TAG}-{variant}", TRIALS)
    )
    _judge(kind, variant, results, TRIALS)


@pytest.mark.parametrize("kind", KINDS)
def test_conflicts_that_reach_the_app_are_lost_races(database: str, kind: str) -> None:
    """Without Galera's autocommit retry every certification conflict reaches the app: still one winner, 4xx."""
    results = galera.run_on_nodes(
        "tests.cluster.test_galera:race",
        database=database,
        variant="no-retry",
        args=(kind, f"{TAG}-nr", HOSTILE_TRIALS),
    )
    _judge(kind, "no-retry", results, HOSTILE_TRIALS)


@pytest.mark.parametrize("variant", ["default", "no-retry"])
def test_bursts_never_pass_the_limit(database: str, variant: str) -> None:
    limit, trials = 3, max(1, TRIALS // 5)
    results = galera.run_on_nodes(
        "tests.cluster.test_galera:burst", database=database, variant=variant, per_node=2,
        args=(f"{TAG}-burst-{variant}", trials, limit),
    )
    counts_by_trial = results[0][1]
    per_racer = [results[0][0], *results[1:]]
    over, extra_rows, errors, admitted_total = [], [], [], Counter()
    for trial in range(trials):
        answers = [racer[trial] for racer in per_racer]
        errors += [a for a in answers if isinstance(a, str)]
        admitted = sum(1 for a in answers if a is True)
        admitted_total[admitted] += 1
        if admitted > limit:
            over.append((trial, admitted))
        if counts_by_trial[trial] != admitted:
            extra_rows.append((trial, admitted, counts_by_trial[trial]))
    print(
        f"galera burst [{variant}]: {trials} trials x {len(per_racer)} racers (2 per node), limit {limit}; "
        f"admitted per trial {dict(sorted(admitted_total.items()))}"
    )
    assert not errors, errors[:5]
    assert not over, f"more than {limit} admitted: {over[:10]}"
    assert not extra_rows, f"rows differ from admissions (trial, admitted, rows): {extra_rows[:10]}"


def check_ids(racer: Any) -> list[str]:
    """Child: the ids ``manage.py check --database default`` reports on this node."""
    from ephemeral_auth import checks_database

    return sorted(message.id for message in checks_database.check_database(databases=["default"]))


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("default", ["ephemeral_auth.W101"]),
        ("documented", []),
        ("no-retry", ["ephemeral_auth.W101", "ephemeral_auth.W102"]),
    ],
)
def test_check_database_tells_what_a_node_runs_with(database: str, variant: str, expected: list[str]) -> None:
    results = galera.run_on_nodes("tests.cluster.test_galera:check_ids", database=database, variant=variant)
    assert results == [expected] * len(galera.NODES)


def test_reads_trail_other_nodes_without_causal_reads(database: str) -> None:
    """The measurement behind W101: a row committed on node 1, read at once on node 2."""
    import pymysql

    def connect(node: int) -> Any:
        return pymysql.connect(
            host="127.0.0.1", port=galera.port(node), user="ephemeral", password="ephemeral", database=database,
            autocommit=True,
        )

    writer, reader = connect(1), connect(2)
    stale: dict[int, int] = {}
    trials = 2000
    try:
        with writer.cursor() as w, reader.cursor() as r:
            w.execute("CREATE TABLE IF NOT EXISTS ea_stale_probe (id INT PRIMARY KEY)")
            w.execute("DELETE FROM ea_stale_probe")
            for sync_wait in (0, 1):
                r.execute(f"SET SESSION wsrep_sync_wait={sync_wait}")
                stale[sync_wait] = 0
                for i in range(trials):
                    row_id = sync_wait * 10**6 + i
                    w.execute("INSERT INTO ea_stale_probe VALUES (%s)", (row_id,))
                    r.execute("SELECT COUNT(*) FROM ea_stale_probe WHERE id = %s", (row_id,))
                    stale[sync_wait] += r.fetchone()[0] == 0
            w.execute("DROP TABLE ea_stale_probe")
    finally:
        writer.close()
        reader.close()
    print(f"galera stale reads, node 1 -> node 2 at once, {trials} each: wsrep_sync_wait=0: {stale[0]}, =1: {stale[1]}")
    assert stale[1] == 0
