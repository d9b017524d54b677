"""PostgreSQL failover under load: Patroni + etcd, HAProxy routing to the leader, ``kill -9`` of the leader.

The module starts everything itself (``.ci/cluster/patroni.sh``, gunicorn) and tears it down:

* a primary and a standby under Patroni (etcd as its DCS), HAProxy on 127.0.0.1:5440 sending
  connections to the member whose REST API answers ``GET /primary`` with 200;
* the example project under gunicorn on ``DATABASE_URL`` = HAProxy, migrated first;
* a load generator (a child process, three threads) issuing and consuming one-time tokens
  and recording rate-limit admissions through the services, logging every acknowledged
  operation; and an HTTP prober asking gunicorn for password resets (a rate-limit admission
  per fresh client IP) and redeeming pre-issued one-time download links.

Then the leader's postmaster and its Patroni are killed with ``kill -9`` in one go.

* Synchronous replication (``synchronous_mode`` + ``synchronous_mode_strict``): no consumed
  token comes back, no acknowledged issue or admission is lost; while there is no leader every
  request answers 503 ``service_unavailable`` (never 500) and gunicorn, never restarted, works
  again after the failover. With two members and strict mode the new leader accepts writes only
  once a standby is back: the test restarts the killed member (what a supervisor would do), and
  the write stall that costs is reported.
* Asynchronous replication: the hazard, made deterministic. The leader's WAL senders are
  stopped (``hold-standby``), tokens are consumed on the leader (acknowledged), the leader is
  killed and Patroni promotes the standby (``maximum_lag_on_failover`` 1 GiB allows it): the
  consumed tokens are live again, counted, over the services and over HTTP.

Run: ``pytest -m cluster tests/cluster/test_patroni.py -rA`` (nothing to start beforehand;
PostgreSQL 15, patroni, etcd-server and haproxy are installed by the script when missing).
The figures are printed (``-rA`` shows them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.patroni_support import (
    DATABASE_URL,
    ROOT,
    LoadGenerator,
    Prober,
    leader_promoted,
    live_links,
    patroni,
    read_records,
    support,
    support_env,
    wait_until,
)
from tests.e2e.servers import Gunicorn, example_env, free_port

pytestmark = pytest.mark.cluster

CLUSTER_ROOT = Path(os.environ.get("EPHEMERAL_CLUSTER_DIR", "/tmp/ephemeral-cluster")) / "patroni"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: Any) -> Iterator[None]:
    """A fresh Patroni cluster in sync mode; stopped, its logs kept, and deleted at the end."""
    patroni("destroy", timeout=120)
    try:
        patroni("start", "sync")
        yield
    finally:
        try:
            patroni("status", timeout=30)
            patroni("stop", timeout=120)
        finally:
            kept = Path(tmp_path_factory.mktemp("patroni_logs"))
            for log in [*CLUSTER_ROOT.glob("pg*/patroni.log"), *CLUSTER_ROOT.glob("*.log")]:
                shutil.copy(log, kept / f"{log.parent.name}-{log.name}")
            print(f"cluster logs kept in {kept}")
            patroni("destroy", timeout=120)


@pytest.fixture(scope="module")
def app(cluster: None, tmp_path_factory: Any) -> Iterator[Gunicorn]:
    """gunicorn -w 4 on the example project, through HAProxy; the project migrated first."""
    logs = Path(tmp_path_factory.mktemp("gunicorn_patroni"))
    # The library logs every fail-closed database error with its traceback: not in the test output.
    env = example_env(DATABASE_URL, TRUSTED_PROXIES="127.0.0.1", EPHEMERAL_AUTH_LOG_LEVEL="CRITICAL")
    server = Gunicorn(env, port=free_port(), logs=logs)
    server.migrate()
    support("setup")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def ops_between(records: list[dict[str, Any]], start: float, end: float = float("inf")) -> dict[str, int]:
    counts = {"issue": 0, "consume": 0, "admit": 0, "error": 0}
    for record in records:
        if start <= record["t"] < end:
            counts[record["kind"]] += 1
    return counts


def longest_gap(records: list[dict[str, Any]], after: float) -> float:
    """The longest time without an acknowledged operation, from ``after`` on (the stall seen by the load)."""
    times = sorted(r["t"] for r in records if r["kind"] != "error" and r["t"] >= after)
    return max((b - a for a, b in zip([after, *times], times, strict=False)), default=0.0)


def check(tmp_path: Path, logs: list[Path], reset_ips: list[str]) -> dict[str, Any]:
    ips = tmp_path / "reset_ips.json"
    ips.write_text(json.dumps(reset_ips))
    output = support("check", *map(str, logs), "--reset-ips", str(ips))
    return dict(json.loads(output))


def report(title: str, lines: list[str]) -> None:
    print("\n".join([f"==== {title}", *(f"  {line}" for line in lines)]), flush=True)


def http_lines(prober: Prober, killed_at: float) -> tuple[list[str], float]:
    """What gunicorn's clients saw; returns the lines and the seconds from the first failure to the first success."""
    outage = prober.outage(after=killed_at)
    assert outage is not None, f"no failed request and success after it through gunicorn: {prober.statuses()}"
    unavailable = outage.first_success - outage.first_failure
    slowest = max((a.ended - a.started for a in prober.answers if a.status == 200), default=0.0)
    lines = [
        f"HTTP answers: {prober.statuses()}",
        f"HTTP: first failure {outage.first_failure - killed_at:+.1f} s after the kill, last "
        f"{outage.last_failure - killed_at:+.1f} s, first success {outage.first_success - killed_at:+.1f} s: "
        f"{unavailable:.1f} s from the first failure to the first success "
        f"(503s during {outage.last_failure - outage.first_failure:.1f} s, {outage.failures} requests failed closed); "
        f"slowest successful request {slowest:.1f} s",
    ]
    return lines, unavailable


def same_gunicorn(app: Gunicorn, pids: list[int]) -> None:
    """Nobody restarted gunicorn, nor did gunicorn replace a worker (a timeout would)."""
    assert app.starts == 1 and app.process is not None and app.process.poll() is None
    assert sorted(app.pids()) == sorted(pids), "gunicorn replaced workers during the failover"


def database_check() -> str:
    """``manage.py check --database default`` through HAProxy (ephemeral_auth/checks_database.py)."""
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--database", "default"],
        cwd=ROOT, env=support_env(), timeout=120, capture_output=True, text=True, check=False,
    )
    return done.stdout + done.stderr


def test_sync_failover_loses_nothing(app: Gunicorn, tmp_path: Path) -> None:
    patroni("start", "sync")  # already running in sync mode: checks it is ready
    assert "ephemeral_auth.W10" not in database_check()  # synchronous: nothing to warn about
    links = json.loads(support("links", "--count", "1000"))
    pids = app.pids()
    prober = Prober(app.base_url, links, ip_prefix="10.201")
    load = LoadGenerator(tmp_path / "load-sync.jsonl", tag="sync")
    started = time.time()
    try:
        prober.start()
        wait_until(
            lambda: load.acknowledged_since(started) >= 60 and prober.successes_since(started) >= 10,
            seconds=60, what="load before the kill",
        )
        old = patroni("leader").split()[0]
        killed_at = time.time()
        patroni("kill-leader")
        new, promoted_at = leader_promoted(old)
        # Strict synchronous mode with the only standby promoted: the new leader's commits wait for a
        # standby. The killed member restarts (as its supervisor would) and rejoins by pg_rewind.
        patroni("rejoin")
        rejoined_at = time.time()
        wait_until(
            lambda: load.acknowledged_since(rejoined_at) >= 60 and prober.successes_since(rejoined_at) >= 10,
            seconds=90, what="load after the failover",
        )
    finally:
        try:
            prober.stop()
        finally:
            load_output = load.stop()
    records = load.records()
    figures = check(tmp_path, [load.log], prober.acknowledged("reset"))
    load_figures = figures["load-sync.jsonl"]
    redeemed = prober.acknowledged("redeem")
    resurrected_links = live_links(app.base_url, redeemed)
    unused = prober.links[:100]
    lost_links = sorted(set(unused) - set(live_links(app.base_url, unused)))
    lines, unavailable = http_lines(prober, killed_at)
    report("Patroni failover, synchronous replication (synchronous_mode_strict)", [
        f"killed leader {old} (postmaster + Patroni, kill -9); {new} promoted after {promoted_at - killed_at:.1f} s; "
        f"{old} rejoined as the synchronous standby after {rejoined_at - killed_at:.1f} s",
        f"load ops acknowledged (error: outcome unknown) before the kill {ops_between(records, 0, killed_at)}, "
        f"after {ops_between(records, killed_at)}",
        f"load: {load_figures}",
        f"load: longest time without an acknowledged operation {longest_gap(records, started):.1f} s",
        f"resurrected tokens {load_figures['resurrected']}, lost issues {load_figures['lost_issues']}, "
        f"lost admissions {load_figures['lost_admissions']}",
        f"HTTP: {len(redeemed)} links redeemed (200), {len(resurrected_links)} live again; "
        f"{len(unused) - len(lost_links)}/{len(unused)} unused links still live; "
        f"{figures['http_admissions']['acknowledged']} reset admissions acknowledged, "
        f"{figures['http_admissions']['lost']} lost",
        *lines,
        f"load generator: {load_output.strip()}",
    ])
    assert prober.unexpected() == [], "requests that neither succeeded nor failed closed with 503"
    same_gunicorn(app, pids)
    assert unavailable > 0
    assert load_figures["resurrected"] == 0
    assert load_figures["lost_issues"] == 0
    assert load_figures["lost_admissions"] == 0
    assert resurrected_links == []
    assert lost_links == []
    assert figures["http_admissions"]["lost"] == 0


def test_async_failover_resurrects_consumed_tokens(app: Gunicorn, tmp_path: Path) -> None:
    patroni("start", "async")  # the running cluster switches to asynchronous replication
    wait_until(lambda: "ephemeral_auth.W103" in database_check(), seconds=30, what="check --database warns (W103)")
    links = json.loads(support("links", "--count", "1000"))
    batch = tmp_path / "batch-async.jsonl"
    # Deterministic part: 20 tokens and 20 admissions, on the standby before the hold.
    support("batch-issue", "--log", str(batch), "--tag", "before-hold", "--count", "20")
    pids = app.pids()
    prober = Prober(app.base_url, links, ip_prefix="10.202")
    load = LoadGenerator(tmp_path / "load-async.jsonl", tag="async")
    started = time.time()
    try:
        prober.start()
        wait_until(
            lambda: load.acknowledged_since(started) >= 60 and prober.successes_since(started) >= 10,
            seconds=60, what="load before the hold",
        )
        replicated_mark = time.time()
        patroni("wait-replicated")  # everything acknowledged before replicated_mark is on the standby
        patroni("hold-standby")  # from here on, nothing the leader writes reaches the standby
        held_at = time.time()
        # The 20 tokens consumed, 20 more issued and 20 more admissions, all acknowledged by the leader.
        support("batch-held", "--log", str(batch), "--tag", "held", "--count", "20")
        wait_until(
            lambda: len(prober.acknowledged("redeem", between=(held_at, float("inf")))) >= 5,
            seconds=60, what="links redeemed during the hold",
        )
        old = patroni("leader").split()[0]
        killed_at = time.time()
        patroni("kill-leader")  # also SIGKILLs the held WAL senders: what they hold never leaves
        new, promoted_at = leader_promoted(old)
        wait_until(
            lambda: load.acknowledged_since(promoted_at) >= 60 and prober.successes_since(promoted_at) >= 10,
            seconds=90, what="load after the failover",
        )
    finally:
        try:
            prober.stop()
        finally:
            load_output = load.stop()
    records = load.records()
    reset_ips = prober.acknowledged("reset")
    figures = check(tmp_path, [batch, load.log], reset_ips)
    batch_figures, load_figures = figures["batch-async.jsonl"], figures["load-async.jsonl"]
    batch_records = read_records([batch])
    held_consumes = sum(1 for r in batch_records if r["tag"] == "held" and r["kind"] == "consume")
    redeemed_held = prober.acknowledged("redeem", between=(held_at, killed_at))
    redeemed_before = prober.acknowledged("redeem", between=(0, replicated_mark))
    resurrected_held = live_links(app.base_url, redeemed_held)
    resurrected_before = live_links(app.base_url, redeemed_before)
    held_resets = prober.acknowledged("reset", between=(held_at, killed_at))
    lost_ips = figures["http_admissions"]["lost_ips"]
    lines, _ = http_lines(prober, killed_at)
    report("Patroni failover, asynchronous replication, standby held (WAL senders stopped)", [
        f"held the standby for {killed_at - held_at:.1f} s; killed leader {old}; {new} promoted after "
        f"{promoted_at - killed_at:.1f} s (maximum_lag_on_failover 1 GiB)",
        f"deterministic batch: {held_consumes} tokens consumed during the hold -> {batch_figures['resurrected']} "
        f"resurrected; {batch_figures['lost_issues']} of 20 issues and {batch_figures['lost_admissions']} "
        f"of 40 admissions lost ({batch_figures})",
        f"load ops acknowledged (error: outcome unknown) before the hold {ops_between(records, 0, held_at)}, "
        f"during the hold {ops_between(records, held_at, killed_at)}, after the kill {ops_between(records, killed_at)}",
        f"load: resurrected tokens {load_figures['resurrected']}, lost issues {load_figures['lost_issues']}, "
        f"lost admissions {load_figures['lost_admissions']} ({load_figures})",
        f"HTTP: links redeemed during the hold {len(redeemed_held)} -> live again {len(resurrected_held)}; "
        f"redeemed before the hold (replicated) {len(redeemed_before)} -> live again {len(resurrected_before)}; "
        f"reset admissions acknowledged {len(reset_ips)} ({len(held_resets)} during the hold), lost "
        f"{figures['http_admissions']['lost']} ({len(set(lost_ips) & set(held_resets))} of them during the hold)",
        *lines,
        f"load generator: {load_output.strip()}",
    ])
    assert prober.unexpected() == [], "requests that neither succeeded nor failed closed with 503"
    same_gunicorn(app, pids)
    # The hazard, shown: what the old leader acknowledged while the standby was held is gone.
    assert held_consumes == 20
    assert batch_figures["resurrected"] >= 1
    assert len(resurrected_held) >= 1
    # What was on the standby before the hold survives.
    assert resurrected_before == []
    replicated_resets = set(prober.acknowledged("reset", between=(0, replicated_mark)))
    assert replicated_resets.isdisjoint(lost_ips)
