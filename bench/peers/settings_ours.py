from bench.peers.settings_base import *  # noqa: F403

INSTALLED_APPS = [*BASE_APPS, "ephemeral_auth"]  # noqa: F405
MIDDLEWARE = [*BASE_MIDDLEWARE, "ephemeral_auth.middleware.TwoFactorMiddleware"]  # noqa: F405
ROOT_URLCONF = "bench.peers.urls_ours"
