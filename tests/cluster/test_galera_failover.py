"""``kill -9`` of one Galera node in the middle of flows, behind HAProxy (issue 12, "Clusters").

The module starts what it needs and tears it down (the three nodes are started only when they
are not all running and Synced; tests/cluster/galera_support.py):

* a fresh database ``ephemeral_galera_failover``, migrated through node 1;
* HAProxy (TCP mode, ``balance roundrobin``) on a free port in front of the three nodes. Its
  health check is Galera's ``clustercheck`` (galera_failover_support.ClusterCheck): an HTTP check
  per node, 200 only while the node answers and is ``Synced``; ``inter 500ms fall 2 rise 2``.
  A dead node is out within about a second (its check connection is refused); unlike a plain TCP
  check or ``option mysql-check``, which pass as soon as the port accepts a login, it also keeps
  a node out while it is a Joiner (state transfer) or Donor, and brings the rejoined node back
  only once it is Synced. ``retries 3`` + ``option redispatch 1``: a connection the dead node
  refuses before the check has marked it down goes to another node;
* the example project under gunicorn (3 workers) with ``DATABASE_URL`` = HAProxy: Django's
  ``CONN_MAX_AGE=0`` opens a connection per request, so requests are spread over the nodes;
* five client threads: two run whole password-reset flows (request, the link from the
  ``filebased`` outbox, confirm, replay of the same token), one password logins (login, ``me``,
  logout), two redeem pre-issued one-time download links (and ask for a reset of an unknown
  address: a rate-limit admission) (tests/cluster/patroni_support.Prober).

After about 5 s of load node 2 is killed (``galera.sh kill 2``: ``kill -9``); the load goes on
for at least 10 s, until every flow has gone through again; node 2 is restarted (``rejoin 2``,
``wait-size 3``); the load goes on for at least 5 s, until node 2 has taken connections again
and every flow has gone through again. Then a race check on the three nodes (the token race of
tests/cluster/test_galera.py, 100 trials): exactly one winner per trial.

Asserted: no 5xx other than 503, no request without an answer; every 503 is the app's
``service_unavailable``; gunicorn is neither restarted nor does it replace a worker; every flow
succeeds after the kill and after the rejoin; no reset token nor download link was used twice
(a replay, a second redemption after the run, a HEAD that finds a redeemed link live).

Run: ``pytest -m cluster tests/cluster/test_galera_failover.py -rA -p no:cacheprovider``.
Nothing else may use the cluster meanwhile (the kill would break its races).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster import galera_failover_support as failover
from tests.cluster import galera_support as galera
from tests.cluster.patroni_support import Answer, Prober, link_url, live_links, wait_until
from tests.cluster.test_galera import _judge
from tests.cluster.test_patroni import report, same_gunicorn
from tests.e2e.servers import USER_PASSWORD, Gunicorn, example_env, free_port, manage_shell

pytestmark = pytest.mark.cluster

DATABASE = "ephemeral_galera_failover"
KILLED = 2
RESET_USERS = 300
LINKS = 1200
TAG = f"gf{os.getpid()}"
LOGIN_USERS = [f"{TAG}-login-{i}" for i in range(2)]

SEED = """
from argparse import Namespace
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from tests.cluster import patroni_support

User = get_user_model()
for name in {login!r}:
    User.objects.create_user(name, email=name + "@example.com", password={password!r})
hashed = make_password("unused-Password-0123")  # one hash: a usable password for every reset user
names = {reset!r}
User.objects.bulk_create([User(username=n, email=n + "@example.com", password=hashed) for n in names])
patroni_support.command_setup(Namespace())
patroni_support.command_links(Namespace(count={links}))
"""


@dataclass
class Site:
    server: Gunicorn
    haproxy: failover.HAProxy
    mailbox: failover.Mailbox
    links: list[str]
    reset_addresses: list[str]
    app_log: Path


@pytest.fixture(scope="module")
def database() -> Iterator[str]:
    with galera.cluster():
        yield galera.fresh_database(DATABASE)


@pytest.fixture()
def site(database: str, tmp_path: Path) -> Iterator[Site]:
    """HAProxy (clustercheck) in front of the nodes, gunicorn -w 3 behind it; users and links seeded."""
    checks = failover.ClusterCheck()
    haproxy = failover.HAProxy(tmp_path, free_port(), checks)
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    app_log = tmp_path / "app-errors.log"
    env = example_env(
        f"mysql://ephemeral:ephemeral@127.0.0.1:{haproxy.port}/{database}",
        TRUSTED_PROXIES="127.0.0.1",
        EPHEMERAL_AUTH_LOG_LEVEL="ERROR",
        EMAIL_BACKEND="django.core.mail.backends.filebased.EmailBackend",
        EMAIL_FILE_PATH=str(outbox),
        GUNICORN_CMD_ARGS="--config python:tests.cluster.galera_failover_support",
        **{failover.APP_LOG_ENV: str(app_log)},
    )
    server = Gunicorn(env, port=free_port(), logs=tmp_path, workers=3)
    reset_names = [f"{TAG}-reset-{i}" for i in range(RESET_USERS)]
    try:
        seeded = manage_shell(
            example_env(galera.url(1, database)),
            SEED.format(login=LOGIN_USERS, password=USER_PASSWORD, reset=reset_names, links=LINKS),
        )
        links = json.loads(seeded.strip().splitlines()[-1])
        haproxy.start()
        wait_until(
            lambda: all(haproxy.status(f"n{n}") == "UP" for n in galera.NODES), seconds=15,
            what="HAProxy to see the three nodes UP",
        )
        server.start()
        yield Site(server, haproxy, failover.Mailbox(outbox), links, [f"{n}@example.com" for n in reset_names], app_log)
    finally:
        try:
            server.stop()
        finally:
            try:
                haproxy.stop()
            finally:
                checks.close()


def ensure_three_synced() -> None:
    """Whatever happened: node KILLED runs again and the cluster has three Synced nodes."""
    if galera.running_nodes() != list(galera.NODES):
        for node in galera.NODES:
            if "down" in galera.galera("status").splitlines()[node - 1]:
                galera.galera("rejoin", str(node), timeout=120)
        galera.galera("wait-size", "3", timeout=150)


def successes(answers: list[Answer], kind: str, after: float) -> int:
    return sum(1 for a in answers if a.kind == kind and a.status == 200 and a.started > after)


def test_kill_one_node_during_flows(site: Site) -> None:
    base = site.server.base_url
    half = len(site.links) // 2
    resets = len(site.reset_addresses) // 2
    redeemers = [
        Prober(base, site.links[:half], ip_prefix="10.211"),
        Prober(base, site.links[half:], ip_prefix="10.212"),
    ]
    flows = [
        failover.FlowProber(base, mode="reset", ip_prefix="10.213", mailbox=site.mailbox,
                            addresses=site.reset_addresses[:resets]),
        failover.FlowProber(base, mode="reset", ip_prefix="10.214", mailbox=site.mailbox,
                            addresses=site.reset_addresses[resets:]),
        failover.FlowProber(base, mode="login", ip_prefix="10.215", usernames=LOGIN_USERS, password=USER_PASSWORD),
    ]
    probers: list[Prober] = [*redeemers, *flows]

    def answers() -> list[Answer]:
        return [a for prober in probers for a in list(prober.answers)]

    def flows_since(moment: float, count: int) -> bool:
        done = Counter(mode for flow in flows for mode, t in list(flow.completed) if t > moment)
        redeemed = successes(answers(), "redeem", moment)
        return done["reset"] >= count and done["login"] >= count and redeemed >= 5 * count

    pids = site.server.pids()
    haproxy = site.haproxy
    name = f"n{KILLED}"
    killed_at = down_at = rejoin_at = node_up_at = synced_at = up_at = float("nan")
    sessions: dict[str, dict[str, int]] = {}
    transfer: list[str] = []
    test_started = time.time()
    try:
        with failover.running(probers):
            started_at = time.time()
            wait_until(
                lambda: time.time() - started_at >= 5 and flows_since(started_at, 2), seconds=40,
                what="every flow going through before the kill",
            )
            sessions["before the kill"] = haproxy.sessions()
            killed_at = time.time()
            galera.galera("kill", str(KILLED), timeout=30)
            wait_until(lambda: haproxy.changed_to(name, "DOWN", killed_at) is not None, seconds=15,
                       what=f"HAProxy to mark {name} DOWN")
            down_at = haproxy.changed_to(name, "DOWN", killed_at) or down_at
            wait_until(
                lambda: time.time() - killed_at >= 10 and flows_since(down_at, 2), seconds=60,
                what="every flow going through again with node 2 dead",
            )
            sessions["node 2 dead"] = haproxy.sessions()
            log_offset = failover.node_log_size(KILLED)
            rejoin_at = time.time()
            galera.galera("rejoin", str(KILLED), timeout=120)
            node_up_at = time.time()  # mariadbd answers on its socket
            galera.galera("wait-size", "3", timeout=150)
            synced_at = time.time()
            transfer = failover.state_transfer(KILLED, log_offset)
            wait_until(lambda: haproxy.changed_to(name, "UP", rejoin_at) is not None, seconds=15,
                       what=f"HAProxy to mark {name} UP again")
            up_at = haproxy.changed_to(name, "UP", rejoin_at) or up_at
            back = sessions["node 2 dead"][name]
            wait_until(
                lambda: time.time() - synced_at >= 5 and flows_since(up_at, 2) and haproxy.sessions()[name] > back + 10,
                seconds=60, what="every flow going through after the rejoin, node 2 serving again",
            )
            sessions["after the rejoin"] = haproxy.sessions()
        ended_at = time.time()
    finally:
        ensure_three_synced()

    every = answers()
    # Single use, after the run: every redeemed link is spent for HEAD (peek) and for GET (redeem).
    redeemed = [raw for prober in redeemers for raw in prober.acknowledged("redeem")]
    live_again = live_links(base, redeemed)
    checker = failover.FlowProber(base, mode="reset", ip_prefix="10.216")
    second_redemptions = [
        raw for raw in redeemed if checker.http.get(link_url(base, raw), timeout=30).status_code == 200
    ]
    confirms = Counter(a.subject for a in every if a.kind in ("reset-confirm", "reset-replay") and a.status == 200)
    reused_tokens = [token for token, wins in confirms.items() if wins > 1]
    replays_accepted = sum(1 for a in every if a.kind == "reset-replay" and a.status == 200)

    # The race check, with node 2 back.
    race_started = time.time()
    trials = 100
    results = galera.run_on_nodes(
        "tests.cluster.test_galera:race", database=DATABASE, variant="default", args=("token", f"{TAG}-after", trials)
    )
    race_seconds = time.time() - race_started

    # Refusals a flow may meet: a replay (the token is spent), and a confirm of a token that is not
    # (yet) visible on the node the request reached. After an earlier 503 for the same token its outcome
    # was unknown (it may have committed before its node died); otherwise the node had not applied the
    # issuing write yet (wsrep_sync_wait=0, check ephemeral_auth.W101), or the token is lost: asked again now.
    def refusal(answer: Answer) -> bool:
        return answer.kind in ("reset-confirm", "reset-replay") and answer.code == "invalid_token"

    failed = [a for a in every if a.status not in (200, 503) and not refusal(a)]
    unknown = {a.subject for a in every if a.kind == "reset-confirm" and a.status == 503}
    fresh_refused = {a.subject for a in every if a.kind == "reset-confirm" and refusal(a) and a.subject not in unknown}
    lost_tokens = [
        token for token in fresh_refused
        if checker._post("reset-later", token, "/api/auth/password-reset/confirm/", {
            "token": token, "new_password": "Failover-later-Zebra-0123!"}).status != 200
    ]
    closed = [a for a in every if a.status == 503]
    errors_log = site.app_log.read_text() if site.app_log.exists() else ""
    error_kinds = Counter(
        line.split(":", 1)[0].rsplit(".", 1)[-1] + ": " + line.split(":", 1)[1].strip()[:70]
        for line in errors_log.splitlines()
        if line.startswith("django.db.utils.")  # the exception the app met (its cause, PyMySQL's, comes first)
    )
    first_503 = min((a.started for a in closed), default=float("nan")) - killed_at
    last_503 = max((a.ended for a in closed), default=float("nan")) - killed_at
    stall = failover.longest_without_success(every, killed_at, ended_at)

    def delta(a: str, b: str) -> dict[str, int]:
        return {n: sessions[b][n] - sessions[a].get(n, 0) for n in sessions[b]}

    before = failover.phase_counts(every, 0, killed_at)
    during = failover.phase_counts(every, killed_at, synced_at)
    after = failover.phase_counts(every, synced_at, float("inf"))
    report("Galera: kill -9 of node 2 during flows, HAProxy (clustercheck) in front, gunicorn -w 3", [
        f"answers before the kill: {before}",
        f"answers from the kill to Synced again: {during}",
        f"answers after: {after}",
        f"HAProxy connections per node: before the kill {sessions.get('before the kill')}, "
        f"while node 2 was dead {delta('before the kill', 'node 2 dead') if 'node 2 dead' in sessions else '?'}, "
        f"after the rejoin {delta('node 2 dead', 'after the rejoin') if 'after the rejoin' in sessions else '?'}",
        f"HAProxy marked {name} DOWN {down_at - killed_at:.2f} s after the kill; "
        f"rejoin: mariadbd up {node_up_at - rejoin_at:.1f} s after the restart, Synced (wait-size 3) after "
        f"{synced_at - rejoin_at:.1f} s, UP in HAProxy after {up_at - rejoin_at:.1f} s",
        f"HAProxy state changes from the kill on (s after the kill): "
        f"{[(round(t - killed_at, 2), server, status) for t, server, status in haproxy.changes if t >= killed_at]}",
        f"state transfer (node 2's log): {transfer[:6]}",
        f"503s: {len(closed)}, first {first_503:+.2f} s after the kill, last {last_503:+.2f} s; "
        f"their requests covered {failover.merged_seconds([(a.started, a.ended) for a in closed]):.2f} s; "
        f"longest time without any 200 after the kill {stall:.2f} s; "
        f"slowest request {max((a.ended - a.started for a in every), default=0):.2f} s",
        f"database errors behind the 503s (app log): {dict(error_kinds.most_common(6))}",
        f"flows completed: {Counter(mode for f in flows for mode, _ in f.completed)}; links redeemed {len(redeemed)}; "
        f"reset emails missing (request answered, job failed) {sum(len(f.no_email) for f in flows)}; "
        f"me anonymous after login {sum(f.anonymous_me for f in flows)}",
        f"fresh reset links refused by the first confirm {len(fresh_refused)} "
        f"(accepted when asked again after the run: {len(fresh_refused) - len(lost_tokens)}, lost {len(lost_tokens)})",
        f"single use: reset tokens with two 200s {len(reused_tokens)}, replays accepted {replays_accepted}; "
        f"redeemed links live again (HEAD) {len(live_again)}, redeemed twice {len(second_redemptions)}",
        f"race after the rejoin: {trials} token trials x 3 nodes in {race_seconds:.1f} s",
        f"whole test {time.time() - test_started:.1f} s of load and checks",
    ])
    _judge("token", "default", results, trials)

    server_errors = [a for a in every if a.status >= 500 and a.status != 503]
    assert not server_errors, (server_errors[:5], _internal_errors(errors_log))
    assert not [a for a in every if a.status == 0], "requests without an HTTP answer"
    assert not [a for a in closed if a.code != "service_unavailable"], "a 503 that is not the app's"
    assert not failed, f"answers that are neither a success, a 503 nor an expected refusal: {failed[:10]}"
    same_gunicorn(site.server, pids)
    assert not reused_tokens and replays_accepted == 0
    assert live_again == [] and second_redemptions == []
    assert lost_tokens == [], "reset links mailed, never used, refused after the run"


def _internal_errors(log: str) -> str:
    """The tracebacks of the 500s in the app log (Django's ``Internal Server Error`` records)."""
    chunks = log.split("\n20")
    return "\n".join(chunk for chunk in chunks if "Internal Server Error" in chunk)[:6000]
