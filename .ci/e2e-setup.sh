#!/usr/bin/env bash
# Prepare the end-to-end suite (pytest -m e2e tests/e2e): real servers and a real browser.
# Idempotent: every step checks before it installs, so a second run is quick.
# Run from anywhere; needs root (or sudo) only when Chromium is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "e2e-setup: $*"; }

# --- The project's virtualenv (created by the README command when missing).
if [ ! -x .venv/bin/python ]; then
  say "no .venv yet: python3 dev.py setup"
  python3 dev.py setup
fi
PYTHON=.venv/bin/python

# --- Browser: Debian's chromium and its driver. Never `playwright install`:
# it downloads a browser build, which this network does not serve.
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  say "installing chromium and chromium-driver (apt-get)"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
else
  say "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
fi

# --- Barcode decoder: zbarimg (Debian's zbar-tools) reads the TOTP QR code off
# browser screenshots (tests/e2e/test_browser_qr.py).
if ! command -v zbarimg >/dev/null 2>&1; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  say "installing zbar-tools (apt-get)"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq zbar-tools >/dev/null
else
  say "zbarimg present: $(command -v zbarimg)"
fi

# --- Playwright (the Python driver only), into .venv, from the e2e extra of pyproject.toml.
if "$PYTHON" -c "import playwright.sync_api" 2>/dev/null; then
  say "playwright present in .venv"
else
  say "installing playwright into .venv (pip install -e .[e2e])"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check -e ".[e2e]"
fi

# --- The real OpenID provider (npm oidc-provider, pinned by package-lock.json).
PROVIDER=tests/e2e/oidc_provider
if [ -f "$PROVIDER/package.json" ]; then
  # npm ci wipes node_modules: skip it while the lock file is the one installed,
  # so that a provider another shell is running keeps its files.
  lock_digest=$(sha256sum "$PROVIDER/package-lock.json" 2>/dev/null | cut -d' ' -f1 || true)
  stamp="$PROVIDER/node_modules/.ephemeral-auth-lock"
  if [ -n "$lock_digest" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$lock_digest" ]; then
    say "npm packages of $PROVIDER up to date"
  else
    say "npm ci in $PROVIDER"
    (cd "$PROVIDER" && npm ci --no-audit --no-fund --loglevel=error)
    if [ -n "$lock_digest" ]; then echo "$lock_digest" >"$stamp"; fi
  fi
fi

say "ready"
