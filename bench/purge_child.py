"""The purging process: set Django up, purge once, print one JSON line.

It runs in its own process so that its peak resident set size (VmHWM) is the
purge's alone, not the benchmark's, and it imports only what a cron run of
``purge_ephemeral_auth`` would.
"""

from __future__ import annotations

import json
import time
from datetime import datetime

__all__ = ["purge_child"]


def purge_child(url: str, now_iso: str, batch_size: int | None, implementation: str = "service") -> None:
    """Purge the database at ``url`` as of ``now_iso``; print time, counts and peak RSS as JSON.

    ``implementation``: "service" (ephemeral_auth's purge_expired), or one of
    the alternatives "orm_pk_in" and "single_delete" (bench/alternatives.py).
    """
    from bench.env import setup_django
    from bench.timing import vm_hwm_kb

    setup_django(url, migrate=False)
    from django.db import connection

    from bench import alternatives
    from ephemeral_auth import conf
    from ephemeral_auth.services import cleanup

    now = datetime.fromisoformat(now_iso)
    batch_size = batch_size or int(conf.get("PURGE_BATCH_SIZE"))
    connection.ensure_connection()
    baseline = vm_hwm_kb()
    started = time.perf_counter()
    if implementation == "service":
        deleted = cleanup.purge_expired(now=now, batch_size=batch_size).total
    elif implementation == "orm_pk_in":
        deleted = alternatives.orm_pk_in_purge(now, batch_size)
    else:
        deleted = alternatives.single_delete_purge(now)
    seconds = time.perf_counter() - started
    figures = {
        "implementation": implementation,
        "seconds": round(seconds, 2),
        "peak_rss_kb": vm_hwm_kb(),
        "baseline_rss_kb": baseline,
        "deleted": deleted,
        "batch_size": batch_size if implementation != "single_delete" else None,
    }
    print(json.dumps(figures))
