"""Test settings: the example project's, with a fast hasher and test-only knobs.

DATABASE_URL selects the backend (SQLite by default; postgres://, mysql://).
"""

from example_project.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
SECRET_KEY = "tests-secret-key-that-is-long-enough-for-hmac-0123456789abcdef"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
LOGGING = {"version": 1, "disable_existing_loggers": False}
