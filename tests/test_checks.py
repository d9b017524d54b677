"""System checks: each documented id fires on the bad setting it guards, and only then."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.contrib.admin import AdminSite
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.core.checks import Error, Tags, Warning, run_checks
from django.core.checks.registry import registry
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from ephemeral_auth.backends import GuardBackend
from ephemeral_auth.checks import check_deployment, check_settings, check_urls, check_wiring
from ephemeral_auth.middleware import TwoFactorMiddleware
from tests import urlconfs_checks

ROUTER = "ephemeral_auth.routers.EphemeralAuthRouter"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
TWO_FACTOR = "ephemeral_auth.middleware.TwoFactorMiddleware"
GUARD = "ephemeral_auth.backends.GuardBackend"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
OIDC_BACKEND = "ephemeral_auth.oidc.backend.OIDCBackend"
PROVIDERS = {"corp": {"discovery_url": "https://id.example.com/.well-known/openid-configuration",
                      "client_id": "x", "client_secret": "y"}}


def ids(messages) -> list[str]:
    return [m.id for m in messages]


@pytest.fixture
def wired(settings):
    """A project wired the way the docs say, independent of example_project's current state."""
    settings.MIDDLEWARE = [
        "django.middleware.security.SecurityMiddleware",
        SESSIONS,
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        AUTH,
        TWO_FACTOR,
        "django.contrib.messages.middleware.MessageMiddleware",
    ]
    settings.AUTHENTICATION_BACKENDS = [GUARD, MODEL_BACKEND, OIDC_BACKEND]
    settings.ROOT_URLCONF = urlconfs_checks.FULL
    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {}
    settings.EPHEMERAL_AUTH_PASSWORD_RESET_URL = ""
    return settings


def test_the_test_settings_pass_every_check():
    assert check_settings() == []


def test_the_check_is_registered_with_django(wired):
    assert check_settings in registry.registered_checks
    assert ids(run_checks(tags=["ephemeral_auth"])) == []


def test_example_project_passes_its_own_checks():
    # Default test settings (example_project's), nothing overridden; warnings fail too (W004).
    call_command("check", fail_level="WARNING", stdout=StringIO())


BAD_SETTINGS = [
    # (setting name without prefix, bad value, expected id)
    ("TOKEN_TTLS", [("pre_auth", 60)], "ephemeral_auth.E001"),
    ("TOKEN_TTLS", {"magic_link": 60}, "ephemeral_auth.E002"),
    ("TOKEN_TTLS", {"pre_auth": 0}, "ephemeral_auth.E003"),
    ("TOKEN_TTLS", {"pre_auth": -5}, "ephemeral_auth.E003"),
    ("TOKEN_TTLS", {"pre_auth": "300"}, "ephemeral_auth.E003"),
    ("TOKEN_TTLS", {"pre_auth": True}, "ephemeral_auth.E003"),
    ("RATE_LIMITS", "10/15m", "ephemeral_auth.E004"),
    ("RATE_LIMITS", {"login": (10, 900)}, "ephemeral_auth.E005"),
    ("RATE_LIMITS", {"login_attempt": 10}, "ephemeral_auth.E006"),
    ("RATE_LIMITS", {"login_attempt": (10,)}, "ephemeral_auth.E006"),
    ("RATE_LIMITS", {"login_attempt": (0, 900)}, "ephemeral_auth.E006"),
    ("RATE_LIMITS", {"login_attempt": (10, "900")}, "ephemeral_auth.E006"),
    ("ENCRYPTION_KEYS", ["not-a-fernet-key"], "ephemeral_auth.E007"),
    ("TRUSTED_PROXIES", ["10.0.0.0/8", "proxy.internal"], "ephemeral_auth.E008"),
    ("TRUSTED_PROXIES", ["300.1.2.3"], "ephemeral_auth.E008"),
    ("EMAIL_CODE_MAX_ATTEMPTS", 0, "ephemeral_auth.E010"),
    ("EMAIL_CODE_TTL", -1, "ephemeral_auth.E010"),
    ("TOTP_DIGITS", "6", "ephemeral_auth.E010"),
    ("TOTP_PERIOD", 30.0, "ephemeral_auth.E010"),
    ("RECOVERY_CODE_COUNT", None, "ephemeral_auth.E010"),
    ("PURGE_BATCH_SIZE", False, "ephemeral_auth.E010"),
    ("TOTP_TOLERANCE", -1, "ephemeral_auth.E011"),
    ("TOTP_TOLERANCE", 11, "ephemeral_auth.E011"),
    ("TOTP_TOLERANCE", "1", "ephemeral_auth.E011"),
    ("IPV6_PREFIX", 0, "ephemeral_auth.E013"),
    ("IPV6_PREFIX", 129, "ephemeral_auth.E013"),
    ("IPV6_PREFIX", "64", "ephemeral_auth.E013"),
    ("IPV6_PREFIX", True, "ephemeral_auth.E013"),
]


@pytest.mark.parametrize(("name", "value", "check_id"), BAD_SETTINGS, ids=lambda v: str(v)[:40])
def test_a_bad_setting_fires_its_check(settings, name, value, check_id):
    setattr(settings, f"EPHEMERAL_AUTH_{name}", value)
    messages = check_settings()
    assert ids(messages) == [check_id]
    assert all(isinstance(m, Error) for m in messages)
    assert f"EPHEMERAL_AUTH_{name}" in messages[0].msg


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TOKEN_TTLS", {"pre_auth": 60, "password_reset": 30 * 60}),
        ("RATE_LIMITS", {"login_attempt": (5, 600), "login_ip": [50, 3600]}),
        ("ENCRYPTION_KEYS", [Fernet.generate_key().decode(), Fernet.generate_key()]),
        ("TRUSTED_PROXIES", ["10.0.0.0/8", "192.0.2.1", "2001:db8::/32", "::1"]),
        ("TOTP_TOLERANCE", 0),
        ("PURGE_BATCH_SIZE", 1),
    ],
)
def test_a_good_setting_passes(settings, name, value):
    setattr(settings, f"EPHEMERAL_AUTH_{name}", value)
    assert check_settings() == []


def test_keys_derived_from_secret_key_fallbacks_pass(settings):
    # Keys derived from SECRET_KEY and its fallbacks are always usable.
    settings.SECRET_KEY_FALLBACKS = ["an-older-secret-key-still-accepted-for-decryption"]
    assert check_settings() == []


def test_an_unknown_database_alias_is_an_error(settings):
    settings.DATABASE_ROUTERS = [ROUTER]
    settings.EPHEMERAL_AUTH_DATABASE = "no-such-alias"
    assert ids(check_settings()) == ["ephemeral_auth.E009"]


def test_a_database_alias_without_the_router_warns(settings):
    settings.DATABASE_ROUTERS = []  # tests/settings.py lists the router
    settings.EPHEMERAL_AUTH_DATABASE = "default"
    messages = check_settings()
    assert ids(messages) == ["ephemeral_auth.W001"]
    assert isinstance(messages[0], Warning)

    settings.DATABASE_ROUTERS = [ROUTER]
    assert check_settings() == []


def test_use_tz_off_is_an_error(settings):
    settings.USE_TZ = False
    assert ids(check_settings()) == ["ephemeral_auth.E012"]


def test_atomic_requests_warns(monkeypatch):
    # Swapped on the settings object only: override_settings(DATABASES=...)
    # warns, and the live connections must keep their own settings.
    databases = {alias: dict(db) for alias, db in django_settings.DATABASES.items()}
    databases["default"]["ATOMIC_REQUESTS"] = True
    monkeypatch.setattr(django_settings, "DATABASES", databases)
    messages = check_settings()
    assert ids(messages) == ["ephemeral_auth.W002"]
    assert isinstance(messages[0], Warning)


def test_several_problems_are_all_reported(settings):
    settings.EPHEMERAL_AUTH_TOKEN_TTLS = {"pre_auth": 0, "unknown": 5}
    settings.EPHEMERAL_AUTH_TOTP_TOLERANCE = 99
    assert sorted(ids(check_settings())) == [
        "ephemeral_auth.E002",
        "ephemeral_auth.E003",
        "ephemeral_auth.E011",
    ]


def test_manage_py_check_fails_on_a_bad_setting(settings):
    settings.EPHEMERAL_AUTH_RATE_LIMITS = {"login_attempt": (0, 900)}
    with pytest.raises(SystemCheckError, match=r"ephemeral_auth\.E006"):
        call_command("check")


def test_w003_oidc_providers_without_the_backend(settings):
    from ephemeral_auth.checks import check_settings

    settings.EPHEMERAL_AUTH_OIDC_PROVIDERS = {"corp": {"discovery_url": "https://id.example.com/.well-known/openid-configuration",
                                                       "client_id": "x", "client_secret": "y"}}
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
    assert "ephemeral_auth.W003" in {e.id for e in check_settings()}
    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend", "ephemeral_auth.oidc.backend.OIDCBackend"]
    assert "ephemeral_auth.W003" not in {e.id for e in check_settings()}


# E014-E017: MIDDLEWARE and AUTHENTICATION_BACKENDS.


class CustomAuthenticationMiddleware(AuthenticationMiddleware):
    pass


class CustomTwoFactorMiddleware(TwoFactorMiddleware):
    pass


class CustomGuardBackend(GuardBackend):
    pass


def test_the_wiring_check_is_registered(wired):
    assert check_wiring in registry.get_checks()
    assert check_wiring() == []
    wired.MIDDLEWARE = [SESSIONS, AUTH]
    assert ids(run_checks(tags=["ephemeral_auth"])) == ["ephemeral_auth.E014"]


@pytest.mark.parametrize(
    ("middleware", "check_id"),
    [
        ([SESSIONS, AUTH], "ephemeral_auth.E014"),
        ([], "ephemeral_auth.E014"),
        ([SESSIONS, "django.contrib.auth.middleware.LoginRequiredMiddleware"], "ephemeral_auth.E014"),
        ([SESSIONS, TWO_FACTOR, AUTH], "ephemeral_auth.E015"),
        ([SESSIONS, TWO_FACTOR], "ephemeral_auth.E015"),
        ([SESSIONS, "tests.test_checks.CustomTwoFactorMiddleware", AUTH], "ephemeral_auth.E015"),
        ([SESSIONS, TWO_FACTOR, "tests.test_checks.CustomAuthenticationMiddleware"], "ephemeral_auth.E015"),
    ],
)
def test_missing_or_misplaced_two_factor_middleware_is_an_error(wired, middleware, check_id):
    wired.MIDDLEWARE = middleware
    messages = check_wiring()
    assert ids(messages) == [check_id]
    assert isinstance(messages[0], Error)
    assert TWO_FACTOR in messages[0].hint or "TwoFactorMiddleware" in messages[0].hint
    assert AUTH in messages[0].hint or "AuthenticationMiddleware" in messages[0].hint


@pytest.mark.parametrize(
    "middleware",
    [
        [SESSIONS, AUTH, TWO_FACTOR],
        [SESSIONS, AUTH, "django.middleware.csrf.CsrfViewMiddleware", TWO_FACTOR],
        [SESSIONS, "tests.test_checks.CustomAuthenticationMiddleware", "tests.test_checks.CustomTwoFactorMiddleware"],
        # An entry that does not import is Django's to report, not a crash here.
        ["no.such.Middleware", SESSIONS, AUTH, TWO_FACTOR, "nodots"],
    ],
)
def test_two_factor_middleware_after_authentication_passes(wired, middleware):
    wired.MIDDLEWARE = middleware
    assert check_wiring() == []


def test_the_middleware_hint_says_where_it_goes(wired):
    wired.MIDDLEWARE = [SESSIONS, AUTH]
    (message,) = check_wiring()
    assert message.hint == f'Add "{TWO_FACTOR}" to MIDDLEWARE, on the line right after "{AUTH}".'
    wired.MIDDLEWARE = [SESSIONS, TWO_FACTOR, AUTH]
    (message,) = check_wiring()
    assert message.hint == f'Move "{TWO_FACTOR}" below "{AUTH}" in MIDDLEWARE.'


@pytest.mark.parametrize(
    ("backends", "check_id"),
    [
        ([MODEL_BACKEND], "ephemeral_auth.E016"),
        ([MODEL_BACKEND, OIDC_BACKEND], "ephemeral_auth.E016"),
        ([], "ephemeral_auth.E016"),
        ([MODEL_BACKEND, GUARD], "ephemeral_auth.E017"),
        ([OIDC_BACKEND, MODEL_BACKEND, "tests.test_checks.CustomGuardBackend"], "ephemeral_auth.E017"),
    ],
)
def test_missing_or_late_guard_backend_is_an_error(wired, backends, check_id):
    wired.AUTHENTICATION_BACKENDS = backends
    messages = check_wiring()
    assert ids(messages) == [check_id]
    assert isinstance(messages[0], Error)
    assert "first" in messages[0].hint or "top" in messages[0].hint


def test_the_late_guard_backend_names_the_backends_before_it(wired):
    wired.AUTHENTICATION_BACKENDS = [MODEL_BACKEND, GUARD, OIDC_BACKEND]
    (message,) = check_wiring()
    assert MODEL_BACKEND in message.msg
    assert OIDC_BACKEND not in message.msg
    assert message.hint.startswith(f'Move "{GUARD}" to the top of AUTHENTICATION_BACKENDS')


@pytest.mark.parametrize(
    "backends",
    [
        [GUARD],
        [GUARD, MODEL_BACKEND, OIDC_BACKEND],
        ["tests.test_checks.CustomGuardBackend", MODEL_BACKEND],
    ],
)
def test_guard_backend_first_passes(wired, backends):
    wired.AUTHENTICATION_BACKENDS = backends
    assert check_wiring() == []


def test_manage_py_check_fails_without_the_guard_backend(wired):
    wired.AUTHENTICATION_BACKENDS = [MODEL_BACKEND]
    with pytest.raises(SystemCheckError, match=r"ephemeral_auth\.E016"):
        call_command("check")


# W004, E018-E020: the URLconf.


def test_the_url_check_is_registered_under_both_tags(wired):
    wired.ROOT_URLCONF = urlconfs_checks.PLAIN_ADMIN
    assert check_urls in registry.get_checks()
    assert "ephemeral_auth.W004" in ids(run_checks(tags=[Tags.urls]))
    assert "ephemeral_auth.W004" in ids(run_checks(tags=["ephemeral_auth"]))


def test_a_fully_mounted_project_passes(wired):
    assert check_urls() == []
    wired.EPHEMERAL_AUTH_OIDC_PROVIDERS = PROVIDERS
    assert check_urls() == []


def test_an_admin_with_djangos_own_login_warns(wired):
    wired.ROOT_URLCONF = urlconfs_checks.PLAIN_ADMIN
    messages = check_urls()
    # Once, for the mounted site: admin.site (unmounted) is not reported through the
    # "admin" application namespace, which falls back to any mounted admin.
    assert ids(messages) == ["ephemeral_auth.W004"]
    assert isinstance(messages[0], Warning)
    assert "checks_plain_admin" in messages[0].msg
    assert "/admin/login/" in messages[0].msg
    assert "from ephemeral_auth.admin import secure_admin_login" in messages[0].hint
    assert "secure_admin_login(<your AdminSite named 'checks_plain_admin'>)" in messages[0].hint


def test_an_admin_with_a_login_of_its_own_warns_once(wired):
    wired.ROOT_URLCONF = urlconfs_checks.CUSTOM_ADMIN
    messages = check_urls()
    # reverse("admin:login") reaches this site too (application namespace fallback), and
    # its login is no method of a site: admin.site is still not the one mounted.
    assert ids(messages) == ["ephemeral_auth.W004"]
    assert "checks_custom_admin" in messages[0].msg


def test_the_default_admin_site_is_named_admin_site_in_the_hint(wired, monkeypatch):
    from types import ModuleType

    from django.contrib import admin
    from django.contrib.admin.sites import AdminSite as DjangoAdminSite
    from django.urls import path

    # Django's own login on admin.site, whatever another test's URLconf did to it.
    monkeypatch.setattr(admin.site, "login", DjangoAdminSite.login.__get__(admin.site))
    urlconf = ModuleType("default_admin_urls")
    urlconf.urlpatterns = [path("admin/", admin.site.urls)]
    wired.ROOT_URLCONF = urlconf
    messages = check_urls()
    assert ids(messages) == ["ephemeral_auth.W004"]
    assert "'admin'" in messages[0].msg
    assert messages[0].hint == (
        "In urls.py, before the admin is mounted: from ephemeral_auth.admin import secure_admin_login; "
        'secure_admin_login(admin.site) — then path("admin/", admin.site.urls).'
    )


def test_an_admin_secured_after_its_urls_were_built_warns(wired):
    wired.ROOT_URLCONF = urlconfs_checks.LATE_ADMIN
    # site.login is the secured view, but the URL still serves Django's own.
    assert getattr(urlconfs_checks.late_site.login, "ephemeral_auth_secured", False)
    messages = check_urls()
    assert ids(messages) == ["ephemeral_auth.W004"]
    assert "checks_late_admin" in messages[0].msg
    assert "after its URLs were built" in messages[0].msg
    assert "above urlpatterns" in messages[0].hint


def test_an_unmounted_namesake_of_a_secured_site_is_not_reported(wired):
    namesake = AdminSite(name="checks_secured_admin")  # Django's own login, never mounted
    assert check_urls() == []
    del namesake


def test_an_unmounted_admin_is_not_reported(wired):
    wired.ROOT_URLCONF = urlconfs_checks.API_ONLY
    wired.EPHEMERAL_AUTH_PASSWORD_RESET_URL = "https://app.example.com/reset"
    assert check_urls() == []


def test_the_api_without_the_reset_confirm_page_is_an_error(wired):
    wired.ROOT_URLCONF = urlconfs_checks.API_ONLY
    messages = check_urls()
    assert ids(messages) == ["ephemeral_auth.E018"]
    assert isinstance(messages[0], Error)
    assert 'path("accounts/", include("ephemeral_auth.urls"))' in messages[0].hint
    assert "EPHEMERAL_AUTH_PASSWORD_RESET_URL" in messages[0].hint


def test_the_api_with_a_reset_url_of_its_own_passes(wired):
    wired.ROOT_URLCONF = urlconfs_checks.API_ONLY
    wired.EPHEMERAL_AUTH_PASSWORD_RESET_URL = "https://app.example.com/reset-password"
    assert check_urls() == []


def test_no_api_means_no_reset_error(wired):
    wired.ROOT_URLCONF = urlconfs_checks.HTML_ONLY
    assert check_urls() == []
    wired.ROOT_URLCONF = urlconfs_checks.NOTHING
    assert check_urls() == []


@pytest.mark.parametrize("provider_setting", ["EPHEMERAL_AUTH_OIDC_PROVIDERS", "OIDC_RP_CLIENT_ID"])
def test_html_pages_without_the_oidc_endpoints_are_an_error(wired, provider_setting):
    wired.ROOT_URLCONF = urlconfs_checks.HTML_ONLY
    setattr(wired, provider_setting, PROVIDERS if provider_setting.startswith("EPHEMERAL") else "client-id")
    messages = check_urls()
    assert ids(messages) == ["ephemeral_auth.E019"]
    assert isinstance(messages[0], Error)
    assert messages[0].hint == 'In urls.py add path("api/auth/", include("ephemeral_auth.api_urls")).'


def test_html_pages_without_the_api_and_without_oidc_pass(wired):
    wired.ROOT_URLCONF = urlconfs_checks.HTML_ONLY
    assert check_urls() == []


@pytest.mark.parametrize(
    ("urlconf", "callback"),
    [
        # A path is not a URL name: the callback view reverses the setting.
        ("FULL", "/api/auth/oidc/callback/"),
        ("FULL", "no_such_namespace:oidc_callback"),
        ("FULL", ""),
        # Neither the pages nor the API: nothing to build the redirect_uri from.
        ("NOTHING", "ephemeral_auth_api:oidc_callback"),
    ],
)
def test_an_oidc_callback_that_does_not_resolve_is_an_error(wired, urlconf, callback):
    wired.ROOT_URLCONF = getattr(urlconfs_checks, urlconf)
    wired.EPHEMERAL_AUTH_OIDC_PROVIDERS = PROVIDERS
    wired.EPHEMERAL_AUTH_OIDC_CALLBACK_URL = callback
    messages = check_urls()
    assert ids(messages) == ["ephemeral_auth.E020"]
    assert isinstance(messages[0], Error)
    assert "EPHEMERAL_AUTH_OIDC_CALLBACK_URL" in messages[0].msg
    assert 'include("ephemeral_auth.api_urls")' in messages[0].hint


def test_an_oidc_callback_name_of_its_own_passes(wired):
    wired.EPHEMERAL_AUTH_OIDC_PROVIDERS = PROVIDERS
    wired.EPHEMERAL_AUTH_OIDC_CALLBACK_URL = "ephemeral_auth:login"  # any name that reverses
    assert check_urls() == []


def test_without_oidc_an_unresolvable_callback_is_not_reported(wired):
    wired.ROOT_URLCONF = urlconfs_checks.NOTHING
    wired.EPHEMERAL_AUTH_OIDC_CALLBACK_URL = "/not/a/name/"
    assert check_urls() == []


# W005-W007: manage.py check --deploy.


@pytest.fixture
def deployed(wired):
    wired.SESSION_COOKIE_SECURE = True
    wired.CSRF_COOKIE_SECURE = True
    wired.CSRF_USE_SESSIONS = False
    wired.ALLOWED_HOSTS = ["www.example.com"]
    wired.EPHEMERAL_AUTH_TRUSTED_PROXIES = []
    wired.SECURE_PROXY_SSL_HEADER = None
    return wired


def test_a_secure_deployment_passes(deployed):
    assert check_deployment() == []
    deployed.EPHEMERAL_AUTH_TRUSTED_PROXIES = ["10.0.0.0/8"]
    deployed.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert check_deployment() == []


def test_the_deployment_check_runs_only_with_deploy(deployed):
    deployed.SESSION_COOKIE_SECURE = False
    assert check_deployment in registry.get_checks(include_deployment_checks=True)
    assert check_deployment not in registry.get_checks(include_deployment_checks=False)
    assert ids(run_checks(tags=["ephemeral_auth"])) == []
    assert ids(run_checks(tags=["ephemeral_auth"], include_deployment_checks=True)) == ["ephemeral_auth.W006"]
    assert "ephemeral_auth.W006" in ids(run_checks(tags=[Tags.security], include_deployment_checks=True))


def test_trusted_proxies_without_the_proxy_ssl_header_warns(deployed):
    deployed.EPHEMERAL_AUTH_TRUSTED_PROXIES = ["10.0.0.0/8"]
    messages = check_deployment()
    assert ids(messages) == ["ephemeral_auth.W005"]
    assert isinstance(messages[0], Warning)
    assert "SECURE_PROXY_SSL_HEADER" in messages[0].msg
    assert messages[0].hint.startswith('Set SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")')


@pytest.mark.parametrize("name", ["SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"])
def test_insecure_cookies_warn(deployed, name):
    setattr(deployed, name, False)
    messages = check_deployment()
    assert ids(messages) == ["ephemeral_auth.W006"]
    assert isinstance(messages[0], Warning)
    assert messages[0].msg.startswith(f"{name} is False")
    assert messages[0].hint.startswith(f"Set {name} = True")


def test_both_insecure_cookies_warn_once_each(deployed):
    deployed.SESSION_COOKIE_SECURE = False
    deployed.CSRF_COOKIE_SECURE = False
    assert ids(check_deployment()) == ["ephemeral_auth.W006", "ephemeral_auth.W006"]


def test_no_csrf_cookie_no_csrf_warning(deployed):
    deployed.CSRF_COOKIE_SECURE = False
    deployed.CSRF_USE_SESSIONS = True
    assert check_deployment() == []


def test_any_host_with_reset_links_from_the_host_header_warns(deployed):
    deployed.ALLOWED_HOSTS = ["www.example.com", "*"]
    messages = check_deployment()
    assert ids(messages) == ["ephemeral_auth.W007"]
    assert isinstance(messages[0], Warning)
    assert "ALLOWED_HOSTS" in messages[0].hint
    assert "EPHEMERAL_AUTH_PASSWORD_RESET_URL" in messages[0].hint

    deployed.EPHEMERAL_AUTH_PASSWORD_RESET_URL = "https://www.example.com/accounts/password-reset/confirm/"
    assert check_deployment() == []


def test_manage_py_check_deploy_reports_the_warnings(deployed):
    deployed.EPHEMERAL_AUTH_TRUSTED_PROXIES = ["10.0.0.0/8"]
    deployed.ALLOWED_HOSTS = ["*"]
    with pytest.raises(SystemCheckError) as excinfo:
        call_command("check", "--deploy", "--fail-level", "WARNING", "--tag", "ephemeral_auth")
    assert "ephemeral_auth.W005" in str(excinfo.value)
    assert "ephemeral_auth.W007" in str(excinfo.value)


def test_a_secured_admin_without_the_second_factor_page_is_an_error(wired):
    wired.ROOT_URLCONF = urlconfs_checks.SECURED_ADMIN_WITHOUT_PAGES
    wired.EPHEMERAL_AUTH_PASSWORD_RESET_URL = "https://app.example.com/reset"
    messages = check_urls()
    assert ids(messages) == ["ephemeral_auth.E022"]
    assert 'include("ephemeral_auth.urls")' in messages[0].hint
    wired.ROOT_URLCONF = urlconfs_checks.FULL
    assert check_urls() == []


@pytest.mark.parametrize("name", ["DEVICE_COOKIE_AGE", "REAUTHENTICATION_WINDOW"])
@pytest.mark.parametrize("value", [-1, "300", None, 1.5, True])
def test_device_cookie_age_and_reauthentication_window_must_be_seconds(settings, name, value):
    setattr(settings, f"EPHEMERAL_AUTH_{name}", value)
    assert ids(check_settings()) == ["ephemeral_auth.E021"]
    setattr(settings, f"EPHEMERAL_AUTH_{name}", 0)
    assert check_settings() == []


@pytest.mark.parametrize(("name", "value"), [
    ("OIDC_DISCOVERY_TIMEOUT", 0), ("OIDC_DISCOVERY_TIMEOUT", "5"), ("OIDC_DISCOVERY_TIMEOUT", None),
    ("OIDC_FAILURE_CACHE_TTL", -1), ("OIDC_FAILURE_CACHE_TTL", "30"), ("OIDC_FAILURE_CACHE_TTL", True),
])
def test_oidc_fetch_timeouts_must_be_seconds(settings, name, value):
    setattr(settings, f"EPHEMERAL_AUTH_{name}", value)
    assert ids(check_settings()) == ["ephemeral_auth.E023"]
