from bench.peers.settings_allauth_webauthn import *  # noqa: F403
from bench.peers.settings_allauth_webauthn import INSTALLED_APPS

# allauth's JSON API (allauth.headless, "browser" client: session cookie), beside its HTML views.
INSTALLED_APPS = [*INSTALLED_APPS, "allauth.headless"]
ROOT_URLCONF = "bench.peers.urls_allauth_headless"
