"""Settings of the example project, from the environment (django-environ).

DATABASE_URL defaults to a SQLite file beside the project; set it to
postgres://... or mysql://... to run on PostgreSQL or MariaDB.
"""

from __future__ import annotations

from pathlib import Path

import django
import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env(
    DEBUG=(bool, False),
    ALLOWED_HOSTS=(list, ["127.0.0.1", "localhost"]),
    SECRET_KEY=(str, "example-project-insecure-secret-key-change-me-0123456789"),
    DATABASE_URL=(str, f"sqlite:///{BASE_DIR / 'example.sqlite3'}"),
    EMAIL_BACKEND=(str, "django.core.mail.backends.console.EmailBackend"),
    EMAIL_FILE_PATH=(str, str(BASE_DIR / "sent_emails")),
    TRUSTED_PROXIES=(list, []),
    SECURE_COOKIES=(bool, False),
    WEBAUTHN_RP_ID=(str, "localhost"),
    WEBAUTHN_ORIGINS=(list, ["http://localhost:8000"]),
    PASSKEY_LOGIN=(bool, True),
)
environ.Env.read_env(BASE_DIR / ".env")

DEBUG = env("DEBUG")
SECRET_KEY = env("SECRET_KEY")
ALLOWED_HOSTS = env("ALLOWED_HOSTS")

# An empty DATABASE_URL means the default, like an unset one.
DATABASES = {"default": env.db_url_config(env.str("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'example.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.mysql":
    # PyMySQL is pure Python: no C client library to install.
    import pymysql

    pymysql.install_as_MySQLdb()
    DATABASES["default"].setdefault("OPTIONS", {}).update({"charset": "utf8mb4"})
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers wait for each other instead of failing with "database is locked":
    # a busy timeout, and transactions that take the write lock when they begin
    # (a transaction that reads first and writes later cannot wait for the lock
    # when another worker holds it; Django >= 5.1).
    DATABASES["default"].setdefault("OPTIONS", {}).update({"timeout": 20})
    if django.VERSION >= (5, 1):
        DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "ephemeral_auth",
    "example_project.demo",
    "example_project.files",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language from the django_language cookie (the switcher in the page header) or Accept-Language.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After AuthenticationMiddleware: hides users whose session skipped their second factor.
    "ephemeral_auth.middleware.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "example_project" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
# ephemeral_auth ships these catalogs (ephemeral_auth/locale/); Django's own cover the admin.
LANGUAGES = [
    ("en", "English"),
    ("de", "Deutsch"),
    ("es", "Español"),
    ("fr", "Français"),
    ("it", "Italiano"),
    ("nl", "Nederlands"),
    ("pt-br", "Português (Brasil)"),
]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

DEFAULT_FROM_EMAIL = "ephemeral-auth-demo@localhost"

# The demo (DEBUG on, EMAIL_BACKEND not set in the environment or .env): sent mail is
# printed in the terminal and also kept as files in DEMO_MAIL_DIR, which the page
# /dev/mail/ lists, newest first (example_project/demo/mail.py; DEBUG and localhost only).
DEMO_MAIL_DIR = BASE_DIR / "sent_emails" / "demo"
_email_backend = env("EMAIL_BACKEND")
if DEBUG and "EMAIL_BACKEND" not in env.ENVIRON:
    _email_backend = "example_project.demo.mail.DemoMailBackend"

# The environment keeps naming the backend EMAIL_BACKEND (and the file backend's directory
# EMAIL_FILE_PATH) on every Django. Django 6.1 deprecates those settings in favour of
# MAILERS (and refuses both at once), so there the same choice is the "default" mailer.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": _email_backend}}
    if _email_backend == "django.core.mail.backends.filebased.EmailBackend":
        MAILERS["default"]["OPTIONS"] = {"file_path": env("EMAIL_FILE_PATH")}
else:
    EMAIL_BACKEND = _email_backend
    EMAIL_FILE_PATH = env("EMAIL_FILE_PATH")

# JSON clients get {"error": "csrf_failed"} instead of Django's HTML 403 page.
CSRF_FAILURE_VIEW = "ephemeral_auth.views.json.csrf_failure"

SESSION_COOKIE_SECURE = env("SECURE_COOKIES")
CSRF_COOKIE_SECURE = env("SECURE_COOKIES")

EPHEMERAL_AUTH_TRUSTED_PROXIES = env("TRUSTED_PROXIES")
EPHEMERAL_AUTH_TOTP_ISSUER = "ephemeral_auth demo"

# Security keys and passkeys (docs/two-factor.md, "Security keys and passkeys"). Browsers offer
# WebAuthn only in a secure context: HTTPS, or http://localhost. 127.0.0.1 is not a valid relying
# party id (an IP address never is), so open the demo at http://localhost:8000/, not 127.0.0.1.
# Another port or host: WEBAUTHN_ORIGINS=http://localhost:8001 (and WEBAUTHN_RP_ID=your.domain).
EPHEMERAL_AUTH_WEBAUTHN_RP_ID = env("WEBAUTHN_RP_ID")
EPHEMERAL_AUTH_WEBAUTHN_RP_NAME = "ephemeral_auth demo"
EPHEMERAL_AUTH_WEBAUTHN_ORIGINS = env("WEBAUTHN_ORIGINS")
# Passwordless sign-in with a passkey (the "Sign in with a passkey" button on the login page).
EPHEMERAL_AUTH_PASSKEY_LOGIN = env("PASSKEY_LOGIN")

# OIDC sign-in (docs/oidc.md), all from the environment:
#   OIDC_PROVIDERS           JSON {slug: {name, discovery_url, client_id, client_secret, ...}}
#   OIDC_RP_CLIENT_ID, OIDC_RP_CLIENT_SECRET, OIDC_OP_DISCOVERY_URL (or OIDC_OP_ISSUER +
#   OIDC_OP_AUTHORIZATION_ENDPOINT + OIDC_OP_TOKEN_ENDPOINT + OIDC_OP_JWKS_ENDPOINT ...), OIDC_RP_SIGN_ALGO,
#   OIDC_RP_SCOPES           mozilla-django-oidc's settings: the provider "default"
#   OIDC_REDIRECT_ALLOWED_HOSTS  hosts an SPA next= may point to (comma-separated)
#   SESSION_COOKIE_SAMESITE  Lax (default) or Strict: OIDC sign-in works with both
AUTHENTICATION_BACKENDS = [
    # First: every password check made through authenticate() (the admin, any form) is
    # recorded in ephemeral_auth's buckets before it is made (docs/security.md).
    "ephemeral_auth.backends.GuardBackend",
    "django.contrib.auth.backends.ModelBackend",
    "ephemeral_auth.oidc.backend.OIDCBackend",
]
EPHEMERAL_AUTH_OIDC_PROVIDERS = env.json("OIDC_PROVIDERS", default={})
EPHEMERAL_AUTH_OIDC_REDIRECT_ALLOWED_HOSTS = env.list("OIDC_REDIRECT_ALLOWED_HOSTS", default=[])
for _name in (
    "OIDC_RP_CLIENT_ID",
    "OIDC_RP_CLIENT_SECRET",
    "OIDC_RP_SIGN_ALGO",
    "OIDC_RP_SCOPES",
    "OIDC_RP_PROVIDER_NAME",
    "OIDC_OP_DISCOVERY_URL",
    "OIDC_OP_ISSUER",
    "OIDC_OP_AUTHORIZATION_ENDPOINT",
    "OIDC_OP_TOKEN_ENDPOINT",
    "OIDC_OP_USER_ENDPOINT",
    "OIDC_OP_JWKS_ENDPOINT",
):
    if env.str(_name, default=""):
        globals()[_name] = env.str(_name)
SESSION_COOKIE_SAMESITE = env.str("SESSION_COOKIE_SAMESITE", default="Lax")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"ephemeral_auth": {"handlers": ["console"], "level": env("EPHEMERAL_AUTH_LOG_LEVEL", default="INFO")}},
}
