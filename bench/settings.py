"""Benchmark settings: the example project's, plus an optional second database.

``EA_BENCH_SMALL_URL`` adds the alias ``small``. The check benchmark fills the
default database with the large event table and ``small`` with the small one,
then switches ``EPHEMERAL_AUTH_DATABASE`` between them run by run (through
ephemeral_auth's own router), so both sizes are timed alternately under the
same machine noise instead of minutes apart.
"""

import os

from example_project.settings import *  # noqa: F403
from example_project.settings import DATABASES, env

if os.environ.get("EA_BENCH_SMALL_URL"):
    DATABASES["small"] = env.db_url_config(os.environ["EA_BENCH_SMALL_URL"])
    DATABASES["small"]["OPTIONS"] = dict(DATABASES["default"].get("OPTIONS", {}))
    DATABASE_ROUTERS = ["ephemeral_auth.routers.EphemeralAuthRouter"]
