"""Measure the bytes per row of ephemeral_auth's tables and derive the sizing figures.

    .venv/bin/python bench/sizing.py                       # postgres, mariadb, sqlite
    .venv/bin/python bench/sizing.py --backend postgres --rows 20000

For each backend, in a private database (``ea_sizing``, recreated by each
run), one kind of row at a time: empty the table, write ``--rows`` rows of
that kind, then read the table's size, with every index:

* PostgreSQL: ``VACUUM ANALYZE``, then ``pg_total_relation_size`` of the table
  and of each index (heap, TOAST, free-space and visibility maps included).
* MariaDB (InnoDB): ``ANALYZE TABLE``, then the pages in use of each index,
  the clustered one included (``mysql.innodb_index_stats``,
  ``n_leaf_pages``). ``data_length + index_length`` (pages reserved) is kept
  beside it: InnoDB reserves whole 1 MB extents, so at this size the
  reserved figure moves in steps of about 20 bytes per row.
* SQLite: the ``dbstat`` virtual table (pages of the table's b-tree and of
  each index's).

Bytes per row = (size with the rows - size of the empty table) / rows.

How the rows are written: the first ``--sample`` rows of each kind go
through the services that write them in production (``tokens.issue_*``,
``oidc.authorization.begin_authorization``, ``views.downloads.issue_download_link``,
``ratelimit.attempt``, ``totp.confirm`` and ``recovery.generate``). The rest
are copies of those rows made with one ``executemany`` per 5,000 rows, with
fresh values wherever a column is indexed or unique (the token digest, the
user, the times, the key, the resource); other columns keep the service's
values, whose size does not depend on their content. Row i belongs to a
random user, so the indexes grow by random inserts as in production, not by
appending. Sizes are as inserted, not compacted. Service calls commit in
batches of 1,000, which changes no column's content.

Then, from those figures and the defaults of ``ephemeral_auth/conf.py``, it
derives what docs/deployment.md ("Sizing") states: rows and bytes each flow
leaves behind and for how long, the steady state of a worked example
(Little's law: rows alive = arrival rate x lifetime), and the worst case
under attack. Writes bench/results/sizing.json and prints the tables.

Each backend runs in a child process of its own (one Django setup per
database), which drops its database when done (``--keep`` keeps it). The
three backends take about 3 minutes on a busy 2-core machine. Nothing
secret is printed: raw tokens and codes stay in memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import json
import math
import os
import random
import secrets
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "sizing.json"
BACKENDS = ["postgres", "mariadb", "sqlite"]
URLS = {
    "postgres": "postgres://ephemeral:ephemeral@127.0.0.1:5432/ea_sizing",
    "mariadb": "mysql://root:@127.0.0.1:3306/ea_sizing",
    "sqlite": "sqlite:////tmp/ea_sizing.sqlite3",
}
BATCH = 1000

# The kinds of rows measured. Token kinds are named by their token_type;
# event kinds by bucket and the shape of their key.
TOKEN_KINDS = ["pre_auth", "oidc_state", "oidc_exchange", "password_reset", "email_otp_setup", "slicer_download"]
EVENT_KINDS = [
    "login_attempt:username",
    "login_ip:ipv4",
    "login_ip:ipv6",
    "2fa_attempt:username",
    "email_send:username",
    "password_reset_send:email",
    "password_reset_ip:ipv4",
]

# Assumptions of the flow model (minutes): how long a row lives when its flow
# completes. Documented in docs/deployment.md with the results.
PURGE_INTERVAL = 10.0  # the cron line: */10
TIME_TO_TYPE_CODE = 0.5  # a pre_auth token between password and code
TIME_AT_PROVIDER = 0.5  # an oidc_state token between authorize and callback
TIME_TO_EXCHANGE = 0.05  # an oidc_exchange token between callback and the SPA's redeem
TIME_TO_OPEN_RESET = 10.0  # a reset link between email and click
TIME_TO_OPEN_DOWNLOAD = 0.5  # a download link between issue and redeem


# ---------------------------------------------------------------------------
# Child: one backend.


def _prepare(backend: str, url: str, *, create: bool = True) -> None:
    """Drop the private database ``url`` names (only that one) and, with ``create``, create it empty."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if backend == "sqlite":
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{parts.path}{suffix}").unlink(missing_ok=True)
    elif backend == "postgres":
        import psycopg
        from psycopg import sql

        maintenance = urlunsplit(parts._replace(path="/postgres"))
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            if create:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    else:
        import pymysql

        conn = pymysql.connect(
            host=parts.hostname,
            port=parts.port or 3306,
            user=parts.username or "root",
            password=parts.password or "",
            autocommit=True,
        )
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
                if create:
                    cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()


def _measure(model: Any) -> dict[str, Any]:
    """Return the table's size in bytes: ``table`` (data), ``indexes`` {name: bytes}, ``total``."""
    from django.db import connection

    table = model._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f'VACUUM ANALYZE "{table}"')
            cursor.execute("SELECT pg_total_relation_size(%s::regclass)", [table])
            total = int(cursor.fetchone()[0])
            cursor.execute(
                "SELECT i.relname, pg_total_relation_size(i.oid) FROM pg_index x "
                "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s::regclass",
                [table],
            )
            indexes = {name: int(size) for name, size in cursor.fetchall()}
            return {"table": total - sum(indexes.values()), "indexes": indexes, "total": total}
        if connection.vendor == "mysql":
            cursor.execute(f"ANALYZE TABLE `{table}`")
            cursor.fetchall()
            cursor.execute(
                "SELECT data_length, index_length FROM information_schema.TABLES "
                "WHERE table_schema = DATABASE() AND table_name = %s",
                [table],
            )
            data, index = (int(v) for v in cursor.fetchone())
            cursor.execute("SELECT @@innodb_page_size")
            page = int(cursor.fetchone()[0])
            cursor.execute(
                "SELECT index_name, stat_name, stat_value FROM mysql.innodb_index_stats "
                "WHERE database_name = DATABASE() AND table_name = %s AND stat_name IN ('size', 'n_leaf_pages')",
                [table],
            )
            stats: dict[str, dict[str, int]] = {}
            for name, stat, value in cursor.fetchall():
                stats.setdefault(name, {})[stat] = int(value) * page
            indexes = {name: s["size"] for name, s in stats.items() if name != "PRIMARY"}
            return {
                "table": data,
                "indexes": indexes,
                "total": data + index,
                # Pages holding rows (leaf pages), without the reserved but unused ones.
                "leaf": {name: s.get("n_leaf_pages", 0) for name, s in stats.items()},
            }
        cursor.execute(
            "SELECT name, SUM(pgsize) FROM dbstat WHERE name = %s OR name IN "
            "(SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = %s) GROUP BY name",
            [table, table],
        )
        sizes = {name: int(size) for name, size in cursor.fetchall()}
        data = sizes.pop(table, 0)
        return {"table": data, "indexes": sizes, "total": data + sum(sizes.values())}


def _empty(model: Any) -> None:
    from django.db import connection

    table = connection.ops.quote_name(model._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "sqlite":
            cursor.execute(f"DELETE FROM {table}")
        else:
            cursor.execute(f"TRUNCATE TABLE {table}")


def _per_row(before: dict[str, Any], after: dict[str, Any], rows: int) -> dict[str, Any]:
    """Bytes per row: the growth of each part of the table divided by the rows written.

    InnoDB reserves space in extents of 1 MB once an index outgrows 32 pages,
    so at 50,000 rows its reserved size (``data_length`` + ``index_length``)
    moves in steps of about 20 bytes per row. There the figure used is the
    pages in use (leaf pages), and the reserved one is kept beside it.
    """
    if "leaf" in after:
        grown = {name: after["leaf"][name] - before["leaf"].get(name, 0) for name in after["leaf"]}
        table = grown.pop("PRIMARY", 0)
        reserved = after["total"] - before["total"]
    else:
        grown = {name: size - before["indexes"].get(name, 0) for name, size in after["indexes"].items()}
        table = after["table"] - before["table"]
        reserved = None
    indexes = {name: round(size / rows, 1) for name, size in grown.items()}
    out: dict[str, Any] = {
        "rows": rows,
        "bytes_per_row": round((table + sum(grown.values())) / rows, 1),
        "table_bytes_per_row": round(table / rows, 1),
        "index_bytes_per_row": round(sum(grown.values()) / rows, 1),
        "indexes": indexes,
    }
    if reserved is not None:
        out["reserved_bytes_per_row"] = round(reserved / rows, 1)
    return out


def _ipv4(rng: random.Random) -> str:
    while True:
        address = ipaddress.IPv4Address(rng.getrandbits(32))
        if address.is_global:
            return str(address)


def _ipv6(rng: random.Random) -> str:
    # A client address in 2000::/3 with random interface bits (privacy addresses).
    return str(ipaddress.IPv6Address((0x2 << 125) | rng.getrandbits(125)))


def run_child(backend: str, url: str, rows: int, sample: int, enrolled: int, enrolled_sample: int) -> dict[str, Any]:
    started = time.monotonic()
    _prepare(backend, url)
    sys.path.insert(0, str(ROOT))
    from bench.env import setup_django

    setup_django(url)

    import pyotp
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.test.utils import override_settings

    from ephemeral_auth import clock, crypto
    from ephemeral_auth.models import EphemeralToken, EventType, RateLimitEvent, RecoveryCode, UserTwoFactor
    from ephemeral_auth.oidc.authorization import begin_authorization
    from ephemeral_auth.oidc.providers import get_provider
    from ephemeral_auth.services import email_otp, ratelimit, recovery, tokens, totp
    from ephemeral_auth.services import oidc as oidc_service
    from ephemeral_auth.services.two_factor import Proof
    from ephemeral_auth.views.downloads import issue_download_link

    user_model = get_user_model()
    password = make_password("correct horse battery staple")  # one hash, shared: the user table is not measured
    for start in range(0, rows, 5000):
        user_model.objects.bulk_create(
            [
                user_model(username=f"user{i:06d}", email=f"user{i:06d}@example.com", password=password)
                for i in range(start, min(rows, start + 5000))
            ]
        )
    # Production issues tokens and counts events for users in no particular
    # order: row i belongs to a random user, so the indexes on the user and
    # on the key grow by random inserts (page splits), not by appending.
    users = list(user_model.objects.only("pk", "username", "email", "is_active").order_by("pk"))
    random.Random(7).shuffle(users)

    provider_config = {
        "keycloak": {
            "issuer": "https://sso.example.com/realms/main",
            "authorization_endpoint": "https://sso.example.com/realms/main/protocol/openid-connect/auth",
            "token_endpoint": "https://sso.example.com/realms/main/protocol/openid-connect/token",
            "jwks_uri": "https://sso.example.com/realms/main/protocol/openid-connect/certs",
            "client_id": "mysite",
            "client_secret": "not-a-real-secret",
        }
    }
    redirect_uri = "https://www.example.com/api/auth/oidc/callback/"

    def resource(i: int) -> str:
        return f"file:{100000 + i}"

    def issue(kind: str, i: int) -> None:
        """Write row ``i`` of a token kind through the service that writes it in production."""
        user = users[i]
        if kind == "pre_auth":
            # What begin_login writes for a user with TOTP and recovery codes.
            tokens.issue_pre_auth(user, challenge=crypto.new_token(), methods=["totp", "recovery"])
        elif kind == "oidc_state":
            begin_authorization(
                get_provider("keycloak"),
                redirect_uri=redirect_uri,
                mode="session",
                next_url="/dashboard/",
                binding=oidc_service.new_binding(),
            )
        elif kind == "oidc_exchange":
            oidc_service.issue_exchange(user, provider="keycloak", binding=oidc_service.new_binding())
        elif kind == "password_reset":
            tokens.issue_password_reset(user)
        elif kind == "email_otp_setup":
            code = crypto.random_digits(email_otp.CODE_LENGTH)
            tokens.issue_email_otp_setup(user, code_hash=email_otp._setup_digest(user, user.email, code))
        elif kind == "slicer_download":
            issue_download_link(user, resource(i), url=f"/downloads/{100000 + i}/")
        else:
            raise ValueError(kind)

    token_columns = [f.column for f in EphemeralToken._meta.concrete_fields if f.column != "id"]
    token_attnames = [f.attname for f in EphemeralToken._meta.concrete_fields if f.column != "id"]
    at = connection.ops.adapt_datetimefield_value

    def copy_token(row: Any, i: int) -> tuple[Any, ...]:
        """Row ``i`` as a copy of a service-written row: fresh values in the indexed columns.

        The token digest gets a fresh random 64-hex value (what a SHA-256 hex
        digest looks like), the user, the times and the resource are row i's.
        The other columns keep the written row's values: for texts this short
        no backend compresses, so their size does not depend on the values.
        """
        now = clock.now()
        values = {name: getattr(row, name) for name in token_attnames}
        values["token"] = secrets.token_hex(32)
        if values["user_id"] is not None:
            values["user_id"] = users[i].pk
        if values["resource"]:
            values["resource"] = resource(i)
        values["expires_at"] = at(now + (row.expires_at - row.created_at))
        values["created_at"] = at(now)
        return tuple(values[name] for name in token_attnames)

    rng = random.Random(20250601)

    def key(kind: str, i: int) -> str:
        shape = kind.split(":")[1]
        if shape == "username":
            return ratelimit.subject_key(users[i].username)
        if shape == "email":
            return ratelimit.subject_key(users[i].email)
        return ratelimit.ip_key(_ipv4(rng) if shape == "ipv4" else _ipv6(rng))

    def record(kind: str, i: int) -> None:
        ratelimit.attempt(EventType(kind.split(":")[0]), key(kind, i))

    def through_services(call: Any, kind: str, n: int) -> None:
        for start in range(0, n, BATCH):
            with transaction.atomic():
                for i in range(start, min(n, start + BATCH)):
                    call(kind, i)

    def copies(model: Any, columns: list[str], make: Any, start: int, stop: int) -> None:
        """INSERT the rows ``make(i)`` for i in [start, stop) (one executemany per 5,000 rows)."""
        qn = connection.ops.quote_name
        sql = (
            f"INSERT INTO {qn(model._meta.db_table)} ({', '.join(qn(c) for c in columns)}) "
            f"VALUES ({', '.join(['%s'] * len(columns))})"
        )
        for first in range(start, stop, 5000):
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.executemany(sql, [make(i) for i in range(first, min(stop, first + 5000))])

    kinds: dict[str, Any] = {}
    seconds: dict[str, float] = {}
    with override_settings(EPHEMERAL_AUTH_OIDC_PROVIDERS=provider_config):
        for kind in TOKEN_KINDS:
            t0 = time.monotonic()
            _empty(EphemeralToken)
            before = _measure(EphemeralToken)
            through_services(issue, kind, sample)
            written = list(EphemeralToken.objects.filter(token_type=kind).order_by("pk"))
            copies(EphemeralToken, token_columns, lambda i, w=written: copy_token(w[i % len(w)], i), sample, rows)
            assert EphemeralToken.objects.filter(token_type=kind).count() == rows
            kinds[f"token:{kind}"] = _per_row(before, _measure(EphemeralToken), rows)
            seconds[f"token:{kind}"] = round(time.monotonic() - t0, 1)
        _empty(EphemeralToken)

    for kind in EVENT_KINDS:
        t0 = time.monotonic()
        _empty(RateLimitEvent)
        before = _measure(RateLimitEvent)
        through_services(record, kind, sample)
        bucket = kind.split(":")[0]
        copies(
            RateLimitEvent,
            ["key", "event_type", "occurred_at"],
            lambda i, k=kind, b=bucket: (key(k, i), b, at(clock.now())),
            sample,
            rows,
        )
        assert RateLimitEvent.objects.count() == rows
        kinds[f"event:{kind}"] = _per_row(before, _measure(RateLimitEvent), rows)
        seconds[f"event:{kind}"] = round(time.monotonic() - t0, 1)
    _empty(RateLimitEvent)

    # Enrolled users: the TOTP enrolment as the services write it (the row
    # totp.setup writes, then totp.confirm with a current code, which activates
    # the secret and generates the recovery codes), then copies of that state.
    t0 = time.monotonic()
    before_2fa = _measure(UserTwoFactor)
    before_codes = _measure(RecoveryCode)
    for start in range(0, enrolled_sample, BATCH):
        with transaction.atomic():
            for user in users[start : min(enrolled_sample, start + BATCH)]:
                secret = totp.new_secret()
                UserTwoFactor.objects.update_or_create(
                    user_id=user.pk, defaults={"totp_pending_secret": crypto.encrypt(secret)}
                )
                totp.confirm(user, pyotp.TOTP(secret).now(), proof=Proof.trusted_caller())
    codes_per_user = RecoveryCode.objects.count() / enrolled_sample
    count = int(codes_per_user)
    enrolled_at = at(clock.now())

    def copy_two_factor(i: int) -> tuple[Any, ...]:
        # What totp.confirm leaves: the active secret, encrypted, and the step it accepted.
        return (
            users[i].pk,
            crypto.encrypt(totp.new_secret()),
            "",
            enrolled_at,
            totp.step_at(clock.now()),
            False,
            None,
            enrolled_at,
        )

    def copy_code(n: int) -> tuple[Any, ...]:
        # recovery.generate's rows: the keyed digest of a fresh code, scoped to the user.
        user = users[enrolled_sample + n // count]
        return (user.pk, recovery._digest(user.pk, crypto.random_code(recovery.CODE_LENGTH)), enrolled_at)

    two_factor_columns = [
        "user_id",
        "totp_secret",
        "totp_pending_secret",
        "totp_confirmed_at",
        "totp_last_step",
        "email_enabled",
        "email_confirmed_at",
        "updated_at",
    ]
    copies(UserTwoFactor, two_factor_columns, copy_two_factor, enrolled_sample, enrolled)
    copies(RecoveryCode, ["user_id", "code_hash", "created_at"], copy_code, 0, (enrolled - enrolled_sample) * count)
    assert UserTwoFactor.objects.count() == enrolled
    kinds["2fa:usertwofactor"] = _per_row(before_2fa, _measure(UserTwoFactor), enrolled)
    kinds["2fa:recoverycode"] = _per_row(before_codes, _measure(RecoveryCode), RecoveryCode.objects.count())
    seconds["2fa"] = round(time.monotonic() - t0, 1)

    with connection.cursor() as cursor:
        cursor.execute("SELECT sqlite_version()" if backend == "sqlite" else "SELECT version()")
        version = str(cursor.fetchone()[0])
    return {
        "version": version,
        "rows_per_kind": rows,
        "through_services_per_kind": sample,
        "enrolled_users": enrolled,
        "enrolled_through_services": enrolled_sample,
        "recovery_codes_per_user": codes_per_user,
        "kinds": kinds,
        "seconds": seconds,
        "total_seconds": round(time.monotonic() - started, 1),
    }


# ---------------------------------------------------------------------------
# Parent: the model.


def _defaults() -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    from ephemeral_auth.conf import DEFAULT_RATE_LIMITS, DEFAULT_TOKEN_TTLS, DEFAULTS

    return {
        "token_ttl_minutes": {k: v / 60 for k, v in DEFAULT_TOKEN_TTLS.items()},
        "rate_limits": {k: {"limit": lim, "window_minutes": w / 60} for k, (lim, w) in DEFAULT_RATE_LIMITS.items()},
        "longest_window_minutes": max(w for _, w in DEFAULT_RATE_LIMITS.values()) / 60,
        "recovery_code_count": DEFAULTS["RECOVERY_CODE_COUNT"],
        "purge_interval_minutes": PURGE_INTERVAL,
    }


def flows(defaults: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Rows each flow leaves behind: (kind, count, average minutes alive, longest minutes alive)."""
    ttl = defaults["token_ttl_minutes"]
    purge = defaults["purge_interval_minutes"]
    kept = defaults["longest_window_minutes"]  # the purge keeps events for the longest window

    def event(kind: str, count: int = 1) -> dict[str, Any]:
        # Deleted by the first purge after it is `kept` minutes old.
        return {"kind": f"event:{kind}", "rows": count, "avg_minutes": kept + purge / 2, "max_minutes": kept + purge}

    def used(kind: str, minutes: float) -> dict[str, Any]:
        # Deleted by the request that uses it.
        return {"kind": f"token:{kind}", "rows": 1, "avg_minutes": minutes, "max_minutes": minutes}

    def unused(kind: str) -> dict[str, Any]:
        # Expires after its lifetime, deleted by the next purge.
        t = ttl[kind]
        return {"kind": f"token:{kind}", "rows": 1, "avg_minutes": t + purge / 2, "max_minutes": t + purge}

    return {
        "password login, no 2FA": [],
        "password + TOTP login": [used("pre_auth", TIME_TO_TYPE_CODE), event("2fa_attempt:username")],
        "password + emailed code login": [
            used("pre_auth", 2.0),
            event("email_send:username"),
            event("2fa_attempt:username"),
        ],
        "wrong password": [event("login_attempt:username"), event("login_ip:ipv4")],
        "wrong TOTP code": [event("2fa_attempt:username")],
        "login abandoned at the 2FA step": [unused("pre_auth")],
        "OIDC login (session)": [used("oidc_state", TIME_AT_PROVIDER)],
        "OIDC login (SPA)": [used("oidc_state", TIME_AT_PROVIDER), used("oidc_exchange", TIME_TO_EXCHANGE)],
        "OIDC flow abandoned": [unused("oidc_state")],
        "password reset, link used": [
            event("password_reset_send:email"),
            event("password_reset_ip:ipv4"),
            used("password_reset", TIME_TO_OPEN_RESET),
        ],
        "password reset, link not used": [
            event("password_reset_send:email"),
            event("password_reset_ip:ipv4"),
            unused("password_reset"),
        ],
        "download link, used": [used("slicer_download", TIME_TO_OPEN_DOWNLOAD)],
        "download link, not used": [unused("slicer_download")],
    }


# The worked example: flows per hour.
EXAMPLE_PER_HOUR = {
    "password + TOTP login": 10_000,
    "login abandoned at the 2FA step": 500,
    "wrong password": 500,
    "wrong TOTP code": 200,
    "OIDC login (session)": 2_000,
    "OIDC flow abandoned": 100,
    "password reset, link used": 500 / 24,
    "password reset, link not used": 500 / 24,
    "download link, used": 4_500,
    "download link, not used": 500,
}


def _bytes(backend: dict[str, Any], kind: str) -> float:
    return float(backend["kinds"][kind]["bytes_per_row"])


def model(defaults: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    table = flows(defaults)
    per_flow = {}
    for name, items in table.items():
        entry: dict[str, Any] = {
            "rows": sum(i["rows"] for i in items),
            "row_minutes": round(sum(i["rows"] * i["avg_minutes"] for i in items), 2),
            "items": items,
            "bytes": {b: round(sum(i["rows"] * _bytes(r, i["kind"]) for i in items)) for b, r in results.items()},
        }
        per_flow[name] = entry

    # Little's law per kind of row: alive = rate (per minute) x minutes alive.
    avg_rows: dict[str, float] = {}
    peak_rows: dict[str, float] = {}
    for name, per_hour in EXAMPLE_PER_HOUR.items():
        for item in table[name]:
            per_minute = per_hour / 60 * item["rows"]
            avg_rows[item["kind"]] = avg_rows.get(item["kind"], 0) + per_minute * item["avg_minutes"]
            peak_rows[item["kind"]] = peak_rows.get(item["kind"], 0) + per_minute * item["max_minutes"]
    example = {
        "per_hour": EXAMPLE_PER_HOUR,
        "rows_alive_avg": {k: round(v) for k, v in avg_rows.items()},
        "rows_alive_peak": {k: round(v) for k, v in peak_rows.items()},
        "tokens_avg": round(sum(v for k, v in avg_rows.items() if k.startswith("token:"))),
        "events_avg": round(sum(v for k, v in avg_rows.items() if k.startswith("event:"))),
        "tokens_peak": round(sum(v for k, v in peak_rows.items() if k.startswith("token:"))),
        "events_peak": round(sum(v for k, v in peak_rows.items() if k.startswith("event:"))),
        "bytes_avg": {b: round(sum(v * _bytes(r, k) for k, v in avg_rows.items())) for b, r in results.items()},
        "bytes_peak": {b: round(sum(v * _bytes(r, k) for k, v in peak_rows.items())) for b, r in results.items()},
    }

    # Under attack: per key, and per request when the keys are sprayed.
    purge = defaults["purge_interval_minutes"]
    kept = defaults["longest_window_minutes"]
    retention = kept + purge
    key_shape = {
        "login_attempt": "username",
        "2fa_attempt": "username",
        "email_send": "username",
        "password_reset_send": "email",
        "login_ip": "ipv4",
        "password_reset_ip": "ipv4",
    }
    per_key = {}
    for bucket, lim in defaults["rate_limits"].items():
        # At most `limit` events in any window; the purge keeps them up to `retention` minutes.
        most = lim["limit"] * math.ceil(retention / lim["window_minutes"])
        per_key[bucket] = {
            "limit": lim["limit"],
            "window_minutes": lim["window_minutes"],
            "rows_per_window": lim["limit"],
            "max_rows_alive": most,
            "max_bytes_alive": {
                b: round(most * _bytes(r, f"event:{bucket}:{key_shape[bucket]}")) for b, r in results.items()
            },
        }
    per_address = {
        # An admitted password attempt writes a login_attempt and a login_ip row;
        # with made-up usernames the IP's limit is the only bound per address.
        "password step": 2 * defaults["rate_limits"]["login_ip"]["limit"],
        # An admitted reset request writes a password_reset_ip and a password_reset_send row.
        "password reset": 2 * defaults["rate_limits"]["password_reset_ip"]["limit"],
    }
    # A botnet of 10,000 IPv4 addresses spraying the password step with made-up
    # usernames: each address is admitted `limit` times per window, each
    # admission keeps two rows for up to `retention` minutes.
    login_ip = defaults["rate_limits"]["login_ip"]
    botnet_rows = 10_000 * per_address["password step"] * math.ceil(retention / login_ip["window_minutes"])
    botnet = {
        "addresses": 10_000,
        "max_rows_alive": botnet_rows,
        "max_bytes_alive": {
            b: round(botnet_rows / 2 * (_bytes(r, "event:login_attempt:username") + _bytes(r, "event:login_ip:ipv4")))
            for b, r in results.items()
        },
    }
    per_request = {
        "password step": {
            "rows": 2,
            "kind": ["event:login_attempt:username", "event:login_ip:ipv4"],
            "minutes": retention,
        },
        "password reset": {
            "rows": 2,
            "kind": ["event:password_reset_send:email", "event:password_reset_ip:ipv4"],
            "minutes": retention,
        },
        "OIDC authorize": {
            "rows": 1,
            "kind": ["token:oidc_state"],
            "minutes": defaults["token_ttl_minutes"]["oidc_state"] + purge,
        },
    }
    spray = {}
    for name, spec in per_request.items():
        bytes_per_request = {b: sum(_bytes(r, k) for k in spec["kind"]) for b, r in results.items()}
        rows_at_100 = 100 * 60 * spec["minutes"] * spec["rows"]
        spray[name] = {
            "rows_per_request": spec["rows"],
            "minutes_kept_at_most": spec["minutes"],
            "rows_alive_at_100_per_s": round(rows_at_100),
            "bytes_alive_at_100_per_s": {
                b: round(rows_at_100 / spec["rows"] * v) for b, v in bytes_per_request.items()
            },
        }
    # The purge interval P: an event lives kept + P/2 minutes on average, kept + P at most.
    cadence = {
        f"{p:g}": {
            "event_avg_minutes": kept + p / 2,
            "event_max_minutes": kept + p,
            "example_events_peak": round(example["events_peak"] / (kept + purge) * (kept + p)),
            "sprayed_password_rows_at_100_per_s": round(2 * 100 * 60 * (kept + p)),
        }
        for p in (5, 10, 30, 60)
    }
    attack = {
        "retention_minutes": retention,
        "per_key": per_key,
        "rows_per_address_per_window": per_address,
        "botnet_password_step": botnet,
        "spray": spray,
        "purge_interval": cadence,
    }
    return {"flows": per_flow, "example": example, "attack": attack}


# ---------------------------------------------------------------------------
# Printing.


def _mb(value: float) -> str:
    return f"{value / 1e6:.1f} MB" if value >= 1e5 else f"{value / 1e3:.0f} kB"


def report(data: dict[str, Any]) -> None:
    backends = list(data["backends"])
    print(
        f"\nBytes per row: total (table + indexes), as inserted, {data['rows_per_kind']:,} rows per kind"
        " (MariaDB: pages in use)"
    )
    print(f"{'kind':34}" + "".join(f"{b:>22}" for b in backends))
    kinds = list(next(iter(data["backends"].values()))["kinds"])
    for kind in kinds:
        cells = []
        for b in backends:
            k = data["backends"][b]["kinds"][kind]
            cells.append(f"{k['bytes_per_row']:>8.0f} ({k['table_bytes_per_row']:.0f}+{k['index_bytes_per_row']:.0f})")
        print(f"{kind:34}" + "".join(f"{c:>22}" for c in cells))
    m = data["model"]
    purge = data["defaults"]["purge_interval_minutes"]
    print(f"\nPer flow (purge every {purge:.0f} min): rows written, row-minutes, bytes")
    for name, f in m["flows"].items():
        print(
            f"  {name:34} {f['rows']:>2} rows {f['row_minutes']:>7.1f} row-min  "
            + "  ".join(f"{b} {f['bytes'][b]:>5} B" for b in backends)
        )
    ex = m["example"]
    print("\nWorked example (per hour: " + ", ".join(f"{k} {v:,.0f}" for k, v in ex["per_hour"].items()) + ")")
    print(f"  tokens alive: {ex['tokens_avg']:,} average, {ex['tokens_peak']:,} peak")
    print(f"  events alive: {ex['events_avg']:,} average, {ex['events_peak']:,} peak")
    for b in backends:
        print(f"  {b}: {_mb(ex['bytes_avg'][b])} average, {_mb(ex['bytes_peak'][b])} peak")
    at = m["attack"]
    print(f"\nUnder attack (events kept up to {at['retention_minutes']:.0f} min)")
    for bucket, p in at["per_key"].items():
        print(
            f"  one {bucket} key: {p['rows_per_window']} rows per {p['window_minutes']:.0f} min, at most "
            f"{p['max_rows_alive']} alive (" + ", ".join(f"{b} {p['max_bytes_alive'][b]:,} B" for b in backends) + ")"
        )
    bot = at["botnet_password_step"]
    print(
        f"  {bot['addresses']:,} IPv4 addresses spraying the password step: at most {bot['max_rows_alive']:,} rows ("
        + ", ".join(f"{b} {_mb(bot['max_bytes_alive'][b])}" for b in backends)
        + ")"
    )
    for p, c in at["purge_interval"].items():
        print(
            f"  purge every {p:>2} min: an event lives {c['event_avg_minutes']:g} min on average, "
            f"{c['event_max_minutes']:g} at most; sprayed password steps at 100/s: "
            f"{c['sprayed_password_rows_at_100_per_s']:,} rows alive at most"
        )
    for name, s in at["spray"].items():
        print(
            f"  sprayed {name}: {s['rows_per_request']} rows per admitted request, at 100/s "
            f"{s['rows_alive_at_100_per_s']:,} rows alive ("
            + ", ".join(f"{b} {_mb(s['bytes_alive_at_100_per_s'][b])}" for b in backends)
            + ")"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", action="append", choices=BACKENDS, help="repeatable; default: all three")
    parser.add_argument("--rows", type=int, default=50_000, help="rows per kind (default 50,000)")
    parser.add_argument(
        "--sample",
        type=int,
        default=500,
        help="rows per kind written through the services; the rest are copies (default 500)",
    )
    parser.add_argument("--enrolled", type=int, default=5_000, help="users enrolled in TOTP (default 5,000)")
    parser.add_argument(
        "--enrolled-sample", type=int, default=200, help="of which enrolled through the services (default 200)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the ea_sizing databases for inspection")
    for backend in BACKENDS:
        parser.add_argument(f"--{backend}-url", default=URLS[backend], help=f"default {URLS[backend]}")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 1 <= args.sample <= args.rows or not 1 <= args.enrolled_sample <= args.enrolled <= args.rows:
        parser.error("need 1 <= --sample <= --rows and 1 <= --enrolled-sample <= --enrolled <= --rows")

    if args.child:
        url = getattr(args, f"{args.child}_url")
        print(json.dumps(run_child(args.child, url, args.rows, args.sample, args.enrolled, args.enrolled_sample)))
        return

    results: dict[str, Any] = {}
    for backend in args.backend or BACKENDS:
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            backend,
            "--rows",
            str(args.rows),
            "--sample",
            str(args.sample),
            "--enrolled",
            str(args.enrolled),
            "--enrolled-sample",
            str(args.enrolled_sample),
            f"--{backend}-url",
            getattr(args, f"{backend}_url"),
        ]
        out = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, check=False, env=dict(os.environ, PYTHONPATH=str(ROOT))
        )
        if out.returncode != 0:
            raise SystemExit(f"{backend} failed:\n{out.stderr[-4000:]}")
        results[backend] = json.loads(out.stdout.strip().splitlines()[-1])
        if not args.keep:
            _prepare(backend, getattr(args, f"{backend}_url"), create=False)
        print(f"{backend}: {results[backend]['total_seconds']} s", file=sys.stderr)
    defaults = _defaults()
    data = {
        "script": "bench/sizing.py",
        "date": dt.date.today().isoformat(),
        "rows_per_kind": args.rows,
        "through_services_per_kind": args.sample,
        "enrolled_users": args.enrolled,
        "enrolled_through_services": args.enrolled_sample,
        "defaults": defaults,
        "assumptions_minutes": {
            "time_to_type_code": TIME_TO_TYPE_CODE,
            "time_at_provider": TIME_AT_PROVIDER,
            "time_to_exchange": TIME_TO_EXCHANGE,
            "time_to_open_reset": TIME_TO_OPEN_RESET,
            "time_to_open_download": TIME_TO_OPEN_DOWNLOAD,
        },
        "backends": results,
        "model": model(defaults, results),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, indent=2) + "\n")
    report(data)
    print(f"\nwritten: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
