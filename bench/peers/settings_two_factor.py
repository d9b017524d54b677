from bench.peers.settings_base import *  # noqa: F403

INSTALLED_APPS = [  # noqa: F405
    *BASE_APPS,
    "django_otp",
    "django_otp.plugins.otp_static",
    "django_otp.plugins.otp_totp",
    "two_factor",
]
MIDDLEWARE = [*BASE_MIDDLEWARE, "django_otp.middleware.OTPMiddleware"]  # noqa: F405
ROOT_URLCONF = "bench.peers.urls_two_factor"
LOGIN_URL = "two_factor:login"
