"""Settings shared by the systems compared in bench/two_factor_peers.py and bench/webauthn_peers.py.

Same conditions on every side: database-backed sessions, the same fast
password hasher, the same database backend, a counting in-process cache.
"""

import os

SECRET_KEY = "bench-secret-key-0123456789-0123456789-0123456789"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
SESSION_ENGINE = "django.contrib.sessions.backends.db"
# BENCH_CACHE=redis (the default): Django's Redis cache on this machine, the
# shared cache a multi-worker site needs for cache-based rate limits to hold
# across workers. BENCH_CACHE=locmem: a per-process cache, a reference line only
# (each worker would count attempts on its own).
if os.environ.get("BENCH_CACHE", "redis") == "redis":
    CACHES = {
        "default": {
            "BACKEND": "bench.peers.counting_cache.CountingRedisCache",
            "LOCATION": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/7"),
            "KEY_PREFIX": f"bench-peers-{os.getpid()}",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "bench.peers.counting_cache.CountingLocMemCache"}}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

_url = os.environ.get("BENCH_DATABASE_URL", "")
if _url.startswith("postgres"):
    import environ

    DATABASES = {"default": environ.Env.db_url_config(_url)}
else:
    DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["BENCH_SQLITE_PATH"]}}

BASE_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]
BASE_MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
LOGGING = {"version": 1, "disable_existing_loggers": True}
