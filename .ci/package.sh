#!/usr/bin/env bash
# The wheel and sdist as a user gets them (CI stage "package").
#
#   1. python -m build (sdist, then the wheel built from that sdist) and twine check --strict;
#   2. a clean venv with the wheel WITHOUT the oidc extra: django-admin startproject,
#      ephemeral_auth wired in as docs/installation.md says, migrate, check, a password
#      sign-in through the test client (me/ says authenticated), and E024 when the OIDC
#      backend is configured without the extra;
#   3. the oidc extra installed: check passes with the OIDC backend configured.
#
# Everything happens in a temporary directory (removed at the end; KEEP=1 keeps it).
# build and twine go into a throwaway venv there, never into .venv. pip uses the
# machine's package index. Exit code: 0 only if every step passed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
START=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ephemeral-auth-package.XXXXXX")
cleanup() {
  if [ "${KEEP:-0}" = 1 ]; then echo "package: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

step() { echo "package: [$(( $(date +%s) - START ))s] $*"; }
fail() { echo "package: FAILED: $*" >&2; exit 1; }
PIP_QUIET=(--quiet --disable-pip-version-check)

step "tools venv (build, twine) in $WORK/tools"
"$PYTHON" -m venv "$WORK/tools"
"$WORK/tools/bin/python" -m pip install "${PIP_QUIET[@]}" build twine 2> >(grep -v "^WARNING: Location" >&2)

step "python -m build (sdist, then the wheel from the sdist)"
"$WORK/tools/bin/python" -m build --outdir "$WORK/dist" "$ROOT" > "$WORK/build.log" 2>&1 \
  || { tail -n 40 "$WORK/build.log"; fail "python -m build"; }
SDIST=$(ls "$WORK"/dist/*.tar.gz)
WHEEL=$(ls "$WORK"/dist/*.whl)
step "built $(basename "$SDIST") and $(basename "$WHEEL")"

step "twine check --strict"
"$WORK/tools/bin/twine" check --strict "$WORK"/dist/*

step "contents: LICENSE and openapi.json in the wheel; no tests in the sdist"
# Listings go to files first: "producer | grep -q" fails under pipefail when grep exits early (SIGPIPE).
unzip -l "$WHEEL" >"$WORK/wheel.txt"
unzip -p "$WHEEL" '*.dist-info/METADATA' >"$WORK/METADATA"
tar tzf "$SDIST" >"$WORK/sdist.txt"
grep -q "dist-info/licenses/LICENSE" "$WORK/wheel.txt" || fail "no LICENSE in the wheel"
grep -q "ephemeral_auth/openapi.json" "$WORK/wheel.txt" || fail "no ephemeral_auth/openapi.json in the wheel"
grep -q "^License-Expression: BSD-3-Clause" "$WORK/METADATA" || fail "no License-Expression"
if grep -q "/tests/" "$WORK/sdist.txt"; then fail "the sdist ships tests/ (see MANIFEST.in)"; fi

step "clean venv, the wheel without the oidc extra"
SITE_VENV="$WORK/venv"
"$PYTHON" -m venv "$SITE_VENV"
PY="$SITE_VENV/bin/python"
"$PY" -m pip install "${PIP_QUIET[@]}" "$WHEEL" 2> >(grep -v "^WARNING: Location" >&2)
"$PY" - <<'EOF' || fail "an OIDC library came with the core install"
import importlib.util
present = [name for name in ("mozilla_django_oidc", "jwt", "requests") if importlib.util.find_spec(name)]
assert not present, present
print("package: mozilla_django_oidc, jwt, requests: not installed (as expected)")
EOF

step "django-admin startproject mysite ('site' is a module of Python's own)"
mkdir "$WORK/project"
cd "$WORK/project"
"$SITE_VENV/bin/django-admin" startproject mysite .

# The minimum of docs/installation.md: the app, the middleware, GuardBackend first, the URLs.
cat >> mysite/settings.py <<'EOF'

# ephemeral_auth (docs/installation.md)
import os  # noqa: E402

INSTALLED_APPS += ["ephemeral_auth"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "ephemeral_auth.middleware.TwoFactorMiddleware",
)
AUTHENTICATION_BACKENDS = [
    "ephemeral_auth.backends.GuardBackend",
    "django.contrib.auth.backends.ModelBackend",
]
if os.environ.get("WITH_OIDC") == "1":
    AUTHENTICATION_BACKENDS.append("ephemeral_auth.oidc.backend.OIDCBackend")
LOGIN_URL = "/accounts/login/"
CSRF_FAILURE_VIEW = "ephemeral_auth.views.json.csrf_failure"
EOF
cat > mysite/urls.py <<'EOF'
from django.contrib import admin
from django.urls import include, path

from ephemeral_auth.admin import secure_admin_login

secure_admin_login(admin.site)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/", include("ephemeral_auth.api_urls")),
    path("accounts/", include("ephemeral_auth.urls")),
]
EOF

step "manage.py migrate"
"$PY" manage.py migrate --verbosity 0
step "manage.py check --fail-level WARNING"
"$PY" manage.py check --fail-level WARNING

step "sign in through the test client (JSON login, then me/)"
cat > smoke.py <<'EOF'
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import setup_test_environment  # noqa: E402

setup_test_environment()  # ALLOWED_HOSTS gets "testserver", mail goes to memory
get_user_model().objects.create_user("alice", "alice@example.com", "correct horse battery staple")
client = Client()
assert client.get("/accounts/login/").status_code == 200, "the HTML login page"
assert client.get("/api/auth/me/").json()["authenticated"] is False
response = client.post(
    "/api/auth/login/",
    {"username": "alice", "password": "correct horse battery staple"},
    content_type="application/json",
)
assert response.status_code == 200, (response.status_code, response.content)
me = client.get("/api/auth/me/").json()
assert me["authenticated"] is True and me["username"] == "alice", me
wrong = Client().post("/api/auth/login/", {"username": "alice", "password": "wrong"}, content_type="application/json")
assert wrong.status_code == 401, (wrong.status_code, wrong.content)
assert Client().get("/api/auth/oidc/providers/").json() == []
print(f"package: login 200, me/ {me}, a wrong password 401")
EOF
"$PY" smoke.py

step "WITH_OIDC=1 (OIDCBackend configured) without the extra: check must fail with E024"
if WITH_OIDC=1 "$PY" manage.py check > "$WORK/e024.log" 2>&1; then
  cat "$WORK/e024.log"; fail "check passed without the OIDC libraries"
fi
grep -q "ephemeral_auth.E024" "$WORK/e024.log" || { cat "$WORK/e024.log"; fail "no E024"; }
grep -q 'pip install "django-ephemeral-auth\[oidc\]"' "$WORK/e024.log" || { cat "$WORK/e024.log"; fail "E024 names no extra"; }
grep "E024" "$WORK/e024.log" | sed 's/^/package:   /'

step "pip install the wheel with [oidc]"
"$PY" -m pip install "${PIP_QUIET[@]}" "$WHEEL[oidc]" 2> >(grep -v "^WARNING: Location" >&2)
"$PY" -m pip list --disable-pip-version-check 2>/dev/null | grep -iE "^(mozilla-django-oidc|PyJWT|requests) " \
  | sed 's/^/package:   /'
step "WITH_OIDC=1 manage.py check --fail-level WARNING"
WITH_OIDC=1 "$PY" manage.py check --fail-level WARNING
"$PY" -c "import os; os.environ['DJANGO_SETTINGS_MODULE'] = 'mysite.settings'; import django; django.setup(); \
import ephemeral_auth.oidc.backend, ephemeral_auth.oidc.views; print('package: the OIDC backend and views import')"

step "passed in $(( $(date +%s) - START ))s"
