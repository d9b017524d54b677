"""Settings of bench/alternatives_peers.py: ephemeral_auth and its peers installed side by side.

Same conditions for every side (bench/peers/settings_base.py: the same
database, the MD5 hasher); on top of it:

* mozilla-django-oidc's views with PKCE on (ours always stores a verifier),
  against a provider whose endpoints are given explicitly (no discovery, no
  network); it is also ephemeral_auth's provider ``default``;
* django-axes with its default database handler, 10 failures per 15 minutes,
  locking by username *or* IP (ephemeral_auth's two buckets of the password step);
* django-allauth's ``login_failed`` rate limit with the same two limits;
* caches on Redis (127.0.0.1:6379, database 5, a private key prefix) that count
  their operations, plus a counting LocMem cache for the reference line.
"""

import os
from datetime import timedelta

from bench.peers.settings_base import *  # noqa: F403
from bench.peers.settings_base import BASE_APPS, BASE_MIDDLEWARE

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5")
KEY_PREFIX = "ea_altpeers"

INSTALLED_APPS = [*BASE_APPS, "ephemeral_auth", "axes", "allauth", "allauth.account", "mozilla_django_oidc"]
MIDDLEWARE = [*BASE_MIDDLEWARE, "allauth.account.middleware.AccountMiddleware"]
ROOT_URLCONF = "bench.alt.urls"
# The benchmark calls each system's bookkeeping itself; the race switches the
# backends per system (AxesStandaloneBackend first for axes).
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
PASSWORD_HASHERS = ["bench.alt.hashers.CountingMD5PasswordHasher"]

_REDIS = {
    "BACKEND": "bench.alt.counting.CountingRedisCache",
    "LOCATION": REDIS_URL,
    "KEY_PREFIX": KEY_PREFIX,
}
CACHES = {
    "default": _REDIS,
    "sessions": {**_REDIS, "KEY_PREFIX": KEY_PREFIX + "_sessions"},
}
LOCMEM_CACHES = {"default": {"BACKEND": "bench.alt.counting.CountingLocMemCache", "LOCATION": "ea-altpeers"}}
SESSION_CACHE_ALIAS = "sessions"  # used by the cache-session variant only; SESSION_ENGINE stays db

# mozilla-django-oidc (and ephemeral_auth's provider "default", built from these).
OIDC_RP_CLIENT_ID = "bench-client"
OIDC_RP_CLIENT_SECRET = "bench-client-secret"
OIDC_RP_SIGN_ALGO = "HS256"
OIDC_OP_ISSUER = "https://idp.example.com"
OIDC_OP_AUTHORIZATION_ENDPOINT = "https://idp.example.com/authorize"
OIDC_OP_TOKEN_ENDPOINT = "https://idp.example.com/token"
OIDC_OP_USER_ENDPOINT = "https://idp.example.com/userinfo"
OIDC_OP_JWKS_ENDPOINT = "https://idp.example.com/jwks"
OIDC_USE_PKCE = True
LOGIN_REDIRECT_URL_FAILURE = "/failed/"

# django-axes: the database handler (its default), as close to our password step as it gets.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_FAILURE_LIMIT = 10
AXES_COOLOFF_TIME = timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_VERBOSE = False
# Off by default: its receivers would also run on the OIDC callbacks. The axes cases switch it on.
AXES_ENABLED = False

# django-allauth: its login_failed limit with ephemeral_auth's two limits (per IP, per account).
ACCOUNT_RATE_LIMITS = {"login_failed": "20/15m/ip,10/15m/key"}
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_EMAIL_VERIFICATION = "none"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": True,
    "loggers": {name: {"level": "CRITICAL"} for name in ("ephemeral_auth", "axes", "allauth", "mozilla_django_oidc")},
}
