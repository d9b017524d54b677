"""Test settings: the example project's, with a fast hasher and test-only knobs.

DATABASE_URL selects the backend (SQLite by default; postgres://, mysql://).
"""

import copy

import django

from example_project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Mail stays in memory (django.core.mail.outbox). Django 6.1 deprecates EMAIL_BACKEND for
# MAILERS, and the example project's settings define whichever one this Django wants.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
else:
    EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SECRET_KEY = "tests-secret-key-that-is-long-enough-for-hmac-0123456789abcdef"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
LOGGING = {"version": 1, "disable_existing_loggers": False}
# WebAuthn off unless a test turns it on (tests/webauthn_support.py: the relying_party fixture).
EPHEMERAL_AUTH_WEBAUTHN_RP_ID = ""
EPHEMERAL_AUTH_WEBAUTHN_ORIGINS = []
EPHEMERAL_AUTH_PASSKEY_LOGIN = False

# A second database for tests/test_routing.py: the tables EPHEMERAL_AUTH_DATABASE
# routes live there while those tests turn the setting on (override_settings).
# EPHEMERAL_AUTH_DATABASE stays unset here, so the router has no opinion in every
# other test. Same backend as "default", its own database name.
_ephemeral = copy.deepcopy({key: value for key, value in DATABASES["default"].items() if key != "TEST"})  # noqa: F405
if _ephemeral["ENGINE"] == "django.db.backends.sqlite3":
    # pytest-django makes this an in-memory test database of its own.
    _ephemeral["NAME"] = str(BASE_DIR / "example-ephemeral.sqlite3")  # noqa: F405
else:
    _ephemeral["NAME"] = f"{_ephemeral['NAME']}_ephemeral"
DATABASES["ephemeral"] = _ephemeral  # noqa: F405
DATABASE_ROUTERS = ["ephemeral_auth.routers.EphemeralAuthRouter"]
