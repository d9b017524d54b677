from bench.peers.settings_base import *  # noqa: F403

INSTALLED_APPS = [*BASE_APPS, "allauth", "allauth.account", "allauth.mfa"]  # noqa: F405
MIDDLEWARE = [*BASE_MIDDLEWARE, "allauth.account.middleware.AccountMiddleware"]  # noqa: F405
AUTHENTICATION_BACKENDS = ["allauth.account.auth_backends.AuthenticationBackend"]
ROOT_URLCONF = "bench.peers.urls_allauth"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_EMAIL_VERIFICATION = "none"
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_TOLERANCE = 1  # the same +-1 step as the other two sides
