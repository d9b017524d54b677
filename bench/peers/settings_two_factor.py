from bench.peers.settings_base import *  # noqa: F403
from bench.peers.settings_base import BASE_APPS, BASE_MIDDLEWARE

INSTALLED_APPS = [
    *BASE_APPS,
    "django_otp",
    "django_otp.plugins.otp_static",
    "django_otp.plugins.otp_totp",
    "two_factor",
]
MIDDLEWARE = [*BASE_MIDDLEWARE, "django_otp.middleware.OTPMiddleware"]
ROOT_URLCONF = "bench.peers.urls_two_factor"
LOGIN_URL = "two_factor:login"
