"""What a user gets from the wheel: the core without the ``oidc`` extra, E024, the shipped OpenAPI file.

The OIDC libraries (mozilla-django-oidc, PyJWT, requests) come with the ``oidc`` extra.
Their absence is simulated by ``sys.modules[name] = None`` (``import name`` then raises
ImportError): in this process for the system check, and in a fresh interpreter for
"the app imports, migrates and serves password sign-in and 2FA without them" (this
process has imported them already). .ci/package.sh does the same from a real wheel
installed without the extra.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ephemeral_auth import checks
from ephemeral_auth.oidc import EXTRA_INSTALL, LIBRARIES, missing_libraries

ROOT = Path(__file__).resolve().parent.parent
OIDC_MODULES = [module for module, _ in LIBRARIES]
PROVIDERS = {
    "corp": {
        "name": "Corp",
        "client_id": "client",
        "client_secret": "secret",
        "issuer": "https://idp.example.com",
        "authorization_endpoint": "https://idp.example.com/authorize",
        "token_endpoint": "https://idp.example.com/token",
        "jwks_uri": "https://idp.example.com/jwks",
    }
}
WITHOUT_OIDC_BACKEND = ["ephemeral_auth.backends.GuardBackend", "django.contrib.auth.backends.ModelBackend"]


def ids(messages):
    return [message.id for message in messages]


@pytest.fixture
def no_oidc_libraries(monkeypatch):
    """Make mozilla_django_oidc, jwt and requests unimportable, as without the oidc extra."""
    for module in OIDC_MODULES:
        monkeypatch.setitem(sys.modules, module, None)


def test_the_extra_is_the_distribution_name_of_pyproject():
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'name = "django-ephemeral-auth"' in text
    assert EXTRA_INSTALL == 'pip install "django-ephemeral-auth[oidc]"'
    assert "\noidc = [" in text


def test_all_libraries_present_no_e024(settings):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = PROVIDERS
    assert missing_libraries() == []
    assert "ephemeral_auth.E024" not in ids(checks.check_settings())


@pytest.mark.parametrize("module", OIDC_MODULES)
def test_a_provider_without_the_libraries_is_e024(settings, monkeypatch, module):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = PROVIDERS
    monkeypatch.setitem(sys.modules, module, None)
    errors = [message for message in checks.check_settings() if message.id == "ephemeral_auth.E024"]
    assert len(errors) == 1
    distribution = dict(LIBRARIES)[module]
    assert distribution in errors[0].msg
    assert 'pip install "django-ephemeral-auth[oidc]"' in errors[0].hint
    # The W003 check would import the backend: it is not reached.
    assert "ephemeral_auth.W003" not in ids(checks.check_settings())


def test_mozilla_settings_without_the_libraries_is_e024(settings, no_oidc_libraries):
    settings.AUTHENTICATION_BACKENDS = WITHOUT_OIDC_BACKEND
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {}
    settings.OIDC_RP_CLIENT_ID = "client"
    (error,) = [message for message in checks.check_settings() if message.id == "ephemeral_auth.E024"]
    assert "mozilla-django-oidc, PyJWT, requests" in error.msg


def test_the_oidc_backend_listed_without_the_libraries_is_e024(settings, no_oidc_libraries):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {}
    settings.AUTHENTICATION_BACKENDS = [*WITHOUT_OIDC_BACKEND, "ephemeral_auth.oidc.backend.OIDCBackend"]
    assert "ephemeral_auth.E024" in ids(checks.check_settings())


def test_no_oidc_configured_without_the_libraries_is_fine(settings, no_oidc_libraries):
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {}
    settings.AUTHENTICATION_BACKENDS = WITHOUT_OIDC_BACKEND
    found = ids(checks.check_settings())
    assert "ephemeral_auth.E024" not in found and "ephemeral_auth.W003" not in found


def test_the_shipped_openapi_file_and_its_docs_copy_are_equal():
    shipped = ROOT / "ephemeral_auth" / "openapi.json"
    assert json.loads(shipped.read_text(encoding="utf-8"))["openapi"].startswith("3.")
    assert (ROOT / "docs" / "openapi.json").read_bytes() == shipped.read_bytes(), (
        "docs/openapi.json is a copy of ephemeral_auth/openapi.json: cp ephemeral_auth/openapi.json docs/"
    )
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"openapi.json"' in pyproject  # in [tool.setuptools.package-data]


# A project of its own (not the example project, which lists the OIDC backend), run in a
# fresh interpreter with the OIDC libraries unimportable.
SETTINGS = """
SECRET_KEY = "packaging-test-secret-key-0123456789abcdef-0123456789abcdef"
DEBUG = False
ALLOWED_HOSTS = ["testserver"]
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "ephemeral_auth",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "ephemeral_auth.middleware.TwoFactorMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
AUTHENTICATION_BACKENDS = ["ephemeral_auth.backends.GuardBackend", "django.contrib.auth.backends.ModelBackend"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DB_PATH}}
ROOT_URLCONF = "pkg_urls"
LOGIN_URL = "/accounts/login/"
STATIC_URL = "/static/"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates", "DIRS": [], "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request", "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
"""

URLS = """
from django.contrib import admin
from django.urls import include, path

from ephemeral_auth.admin import secure_admin_login

secure_admin_login(admin.site)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/", include("ephemeral_auth.api_urls")),
    path("accounts/", include("ephemeral_auth.urls")),
]
"""

SCRIPT = """
import importlib, pkgutil, sys

for name in ("mozilla_django_oidc", "jwt", "requests"):
    sys.modules[name] = None

import django
from django.core.management import call_command

django.setup()
call_command("migrate", verbosity=0)
call_command("check", fail_level="WARNING")

import ephemeral_auth
skipped = {"ephemeral_auth.oidc.backend", "ephemeral_auth.oidc.views"}
for module in pkgutil.walk_packages(ephemeral_auth.__path__, "ephemeral_auth."):
    if module.name not in skipped and ".migrations." not in module.name:
        importlib.import_module(module.name)

import pyotp
from django.contrib.auth import get_user_model
from django.test import Client

get_user_model().objects.create_user("alice", "alice@example.com", "correct horse battery")
client = Client()
assert client.get("/accounts/login/").status_code == 200
login = client.post("/api/auth/login/", {"username": "alice", "password": "correct horse battery"},
                    content_type="application/json")
assert login.status_code == 200, login.content
assert client.get("/api/auth/me/").json()["authenticated"] is True

# 2FA: enrol an authenticator, sign in again, pass the second factor.
setup = client.post("/api/auth/2fa/totp/setup/", {"password": "correct horse battery"},
                    content_type="application/json")
assert setup.status_code == 200, setup.content
totp = pyotp.TOTP(setup.json()["secret"])
step = totp.timecode(__import__("datetime").datetime.now())
confirm = client.post("/api/auth/2fa/totp/confirm/", {"code": totp.generate_otp(step)},
                      content_type="application/json")
assert confirm.status_code == 200, confirm.content
client.post("/api/auth/logout/", content_type="application/json")
second = Client()
login = second.post("/api/auth/login/", {"username": "alice", "password": "correct horse battery"},
                    content_type="application/json")
assert login.status_code == 200 and "pre_auth_token" in login.json(), login.content
assert second.get("/api/auth/me/").json()["authenticated"] is False
verify = second.post("/api/auth/2fa/verify/", {"pre_auth_token": login.json()["pre_auth_token"], "method": "totp",
                     "code": totp.generate_otp(step + 1)}, content_type="application/json")
assert verify.status_code == 200, verify.content
assert second.get("/api/auth/me/").json()["authenticated"] is True

# OIDC endpoints answer without the libraries: an empty list, a 404 for a flow.
assert second.get("/api/auth/oidc/providers/").json() == []
assert second.get("/api/auth/oidc/corp/authorize/").status_code == 404
assert not any(sys.modules.get(name) for name in ("mozilla_django_oidc", "jwt", "requests"))
print("core-without-oidc: ok")
"""


def test_the_core_works_without_the_oidc_libraries(tmp_path):
    (tmp_path / "pkg_settings.py").write_text(
        f"DB_PATH = {str(tmp_path / 'db.sqlite3')!r}\n" + textwrap.dedent(SETTINGS), encoding="utf-8"
    )
    (tmp_path / "pkg_urls.py").write_text(textwrap.dedent(URLS), encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{tmp_path}:{ROOT}",
        "DJANGO_SETTINGS_MODULE": "pkg_settings",
        "PYTHONWARNINGS": "error::DeprecationWarning:ephemeral_auth",
    }
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "core-without-oidc: ok" in result.stdout
