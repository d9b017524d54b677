"""System checks for the EPHEMERAL_AUTH_* settings and the app's wiring (ids listed in docs/settings.md).

* ``check_settings`` (tag ``ephemeral_auth``): the EPHEMERAL_AUTH_* values.
* ``check_wiring`` (tag ``ephemeral_auth``): MIDDLEWARE and AUTHENTICATION_BACKENDS.
* ``check_urls`` (tags ``urls`` and ``ephemeral_auth``): what the URLconf mounts.
* ``check_deployment`` (tags ``security`` and ``ephemeral_auth``, ``check --deploy`` only).
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.urls import NoReverseMatch, Resolver404, get_resolver, resolve, reverse
from django.utils.module_loading import import_string

from . import conf

__all__ = ["check_deployment", "check_settings", "check_urls", "check_wiring"]

TWO_FACTOR_MIDDLEWARE = "ephemeral_auth.middleware.TwoFactorMiddleware"
AUTHENTICATION_MIDDLEWARE = "django.contrib.auth.middleware.AuthenticationMiddleware"
GUARD_BACKEND = "ephemeral_auth.backends.GuardBackend"
# Set by ephemeral_auth.admin.secure_admin_login on the login view it gives an AdminSite.
ADMIN_LOGIN_SECURED_ATTRIBUTE = "ephemeral_auth_secured"


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@register("ephemeral_auth")
def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    errors: list[Any] = []
    ttls = conf.get("TOKEN_TTLS")
    if not isinstance(ttls, dict):
        errors.append(Error("EPHEMERAL_AUTH_TOKEN_TTLS must be a dict.", id="ephemeral_auth.E001"))
    else:
        for name, seconds in ttls.items():
            if name not in conf.DEFAULT_TOKEN_TTLS:
                errors.append(Error(f"EPHEMERAL_AUTH_TOKEN_TTLS: unknown token type {name!r}.",
                                    id="ephemeral_auth.E002"))
            elif not _positive_int(seconds):
                errors.append(Error(f"EPHEMERAL_AUTH_TOKEN_TTLS[{name!r}] must be a positive int (seconds).",
                                    id="ephemeral_auth.E003"))
    limits = conf.get("RATE_LIMITS")
    if not isinstance(limits, dict):
        errors.append(Error("EPHEMERAL_AUTH_RATE_LIMITS must be a dict.", id="ephemeral_auth.E004"))
    else:
        for name, value in limits.items():
            if name not in conf.DEFAULT_RATE_LIMITS:
                errors.append(Error(f"EPHEMERAL_AUTH_RATE_LIMITS: unknown event type {name!r}.",
                                    id="ephemeral_auth.E005"))
            elif not (
                isinstance(value, (tuple, list)) and len(value) == 2
                and _positive_int(value[0]) and _positive_int(value[1])
            ):
                errors.append(Error(
                    f"EPHEMERAL_AUTH_RATE_LIMITS[{name!r}] must be (limit, window_seconds), both positive ints.",
                    id="ephemeral_auth.E006"))
    try:
        from . import crypto

        crypto._fernet_keys()
    except Exception as exc:  # ImproperlyConfigured and friends
        errors.append(Error(str(exc), id="ephemeral_auth.E007"))
    for proxy in conf.get("TRUSTED_PROXIES") or []:
        try:
            ipaddress.ip_network(str(proxy), strict=False)
        except ValueError:
            errors.append(Error(f"EPHEMERAL_AUTH_TRUSTED_PROXIES: {proxy!r} is not an address or network.",
                                id="ephemeral_auth.E008"))
    alias = conf.get("DATABASE")
    if alias and alias not in settings.DATABASES:
        errors.append(Error(f"EPHEMERAL_AUTH_DATABASE {alias!r} is not in DATABASES.", id="ephemeral_auth.E009"))
    if alias and "ephemeral_auth.routers.EphemeralAuthRouter" not in getattr(settings, "DATABASE_ROUTERS", []):
        errors.append(Warning(
            "EPHEMERAL_AUTH_DATABASE is set but EphemeralAuthRouter is not in DATABASE_ROUTERS.",
            id="ephemeral_auth.W001"))
    for name in ("EMAIL_CODE_MAX_ATTEMPTS", "EMAIL_CODE_TTL", "TOTP_DIGITS", "TOTP_PERIOD",
                 "RECOVERY_CODE_COUNT", "PURGE_BATCH_SIZE"):
        if not _positive_int(conf.get(name)):
            errors.append(Error(f"EPHEMERAL_AUTH_{name} must be a positive int.", id="ephemeral_auth.E010"))
    for name in ("DEVICE_COOKIE_AGE", "REAUTHENTICATION_WINDOW"):
        value = conf.get(name)
        if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            errors.append(Error(
                f"EPHEMERAL_AUTH_{name} must be an int of seconds, 0 or more.",
                hint="0 turns the device cookie off (DEVICE_COOKIE_AGE), or asks for the password for "
                     "every 2FA change while 2FA is off (REAUTHENTICATION_WINDOW).",
                id="ephemeral_auth.E021"))
    timeout = conf.get("OIDC_DISCOVERY_TIMEOUT")
    if not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and 0 < timeout < math.inf):
        errors.append(Error(
            "EPHEMERAL_AUTH_OIDC_DISCOVERY_TIMEOUT must be a number of seconds above 0.",
            hint="A few seconds: an anonymous GET of authorize/ waits for the discovery fetch (default 5).",
            id="ephemeral_auth.E023"))
    failure_ttl = conf.get("OIDC_FAILURE_CACHE_TTL")
    numeric = isinstance(failure_ttl, (int, float)) and not isinstance(failure_ttl, bool)
    if not (numeric and 0 <= failure_ttl < math.inf):
        errors.append(Error(
            "EPHEMERAL_AUTH_OIDC_FAILURE_CACHE_TTL must be a number of seconds, 0 or more.",
            hint="How long a failed discovery or JWKS fetch is remembered (default 30; 0 turns it off).",
            id="ephemeral_auth.E023"))
    tolerance = conf.get("TOTP_TOLERANCE")
    if not (isinstance(tolerance, int) and 0 <= tolerance <= 10):
        errors.append(Error("EPHEMERAL_AUTH_TOTP_TOLERANCE must be an int from 0 to 10.", id="ephemeral_auth.E011"))
    prefix = conf.get("IPV6_PREFIX")
    if not (isinstance(prefix, int) and not isinstance(prefix, bool) and 1 <= prefix <= 128):
        errors.append(Error("EPHEMERAL_AUTH_IPV6_PREFIX must be an int from 1 to 128.", id="ephemeral_auth.E013"))
    if not settings.USE_TZ:
        errors.append(Error("ephemeral_auth needs USE_TZ = True (expiry compares aware datetimes).",
                            id="ephemeral_auth.E012"))
    for alias_name, db in settings.DATABASES.items():
        if db.get("ATOMIC_REQUESTS"):
            errors.append(Warning(
                f"DATABASES[{alias_name!r}]['ATOMIC_REQUESTS'] is on: ephemeral_auth's views opt out "
                "(rate-limit events must commit on their own), but your views that call the "
                "rate-limit service inside a transaction weaken its concurrency guarantee.",
                id="ephemeral_auth.W002"))
    errors.extend(_check_oidc_backend())
    errors.extend(_check_webauthn())
    return errors


def _check_webauthn() -> list[Any]:
    """E025: passkey sign-in needs a relying party id; E026: the WebAuthn settings' types."""
    rp_id, origins = conf.get("WEBAUTHN_RP_ID"), conf.get("WEBAUTHN_ORIGINS")
    found = []
    if not isinstance(rp_id, str) or (isinstance(origins, str) or not all(isinstance(o, str) for o in origins or [])):
        found.append(Error("EPHEMERAL_AUTH_WEBAUTHN_RP_ID must be text and EPHEMERAL_AUTH_WEBAUTHN_ORIGINS a list of "
                           "origins.", id="ephemeral_auth.E026"))
    elif conf.get("PASSKEY_LOGIN") and not rp_id:
        found.append(Error(
            "EPHEMERAL_AUTH_PASSKEY_LOGIN is on but EPHEMERAL_AUTH_WEBAUTHN_RP_ID is empty: passkey sign-in "
            "answers method_not_enabled.",
            hint='Set EPHEMERAL_AUTH_WEBAUTHN_RP_ID to the site\'s domain (e.g. "example.com"; "localhost" in '
                 "development) and EPHEMERAL_AUTH_WEBAUTHN_ORIGINS to its origins.",
            id="ephemeral_auth.E025"))
    return found


def _oidc_configured() -> bool:
    """Return whether any OIDC provider is configured (ours, or mozilla-django-oidc's settings)."""
    return bool(conf.get("OIDC_PROVIDERS") or getattr(settings, "OIDC_RP_CLIENT_ID", None))


def _oidc_backend_listed() -> bool:
    """Return whether AUTHENTICATION_BACKENDS names one of ephemeral_auth's OIDC modules."""
    return any(
        isinstance(path, str) and path.startswith("ephemeral_auth.oidc.")
        for path in getattr(settings, "AUTHENTICATION_BACKENDS", [])
    )


def _check_oidc_backend() -> list[Any]:
    """E024: OIDC is configured without its libraries. W003: no OIDCBackend can authenticate its users."""
    if not _oidc_configured() and not _oidc_backend_listed():
        return []
    from .oidc import EXTRA_INSTALL, missing_libraries

    missing = missing_libraries()
    if missing:
        return [Error(
            f"OIDC sign-in is configured (a provider, or ephemeral_auth's OIDCBackend in AUTHENTICATION_BACKENDS) "
            f"but {', '.join(missing)} cannot be imported: every OIDC sign-in would fail.",
            hint=f'Install the oidc extra: {EXTRA_INSTALL}, or remove the OIDC settings.',
            id="ephemeral_auth.E024")]
    if not _oidc_configured():
        return []
    from .oidc.backend import OIDCBackend

    for path in getattr(settings, "AUTHENTICATION_BACKENDS", []):
        try:
            backend = import_string(path)
        except ImportError:
            continue
        if isinstance(backend, type) and issubclass(backend, OIDCBackend):
            return []
    return [Warning(
        "OIDC providers are configured but no ephemeral_auth.oidc.backend.OIDCBackend (or subclass) "
        "is in AUTHENTICATION_BACKENDS: every sign-in would fail with provider_misconfigured.",
        id="ephemeral_auth.W003")]


# MIDDLEWARE and AUTHENTICATION_BACKENDS (E014-E017).


def _first_subclass(paths: Any, base: type) -> int | None:
    """Return the index of the first dotted path in ``paths`` naming ``base`` or a subclass, else None."""
    for index, path in enumerate(paths or ()):
        try:
            candidate = import_string(path)
        except Exception:  # noqa: S112 - Django reports an entry that does not import
            continue
        if isinstance(candidate, type) and issubclass(candidate, base):
            return index
    return None


@register("ephemeral_auth")
def check_wiring(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    """E014-E017: the middleware and the backend that make the second factor and the rate limits hold."""
    return [*_check_middleware(), *_check_guard_backend()]


def _check_middleware() -> list[Any]:
    from django.contrib.auth.middleware import AuthenticationMiddleware

    from .middleware import TwoFactorMiddleware

    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    two_factor = _first_subclass(middleware, TwoFactorMiddleware)
    if two_factor is None:
        return [Error(
            f"{TWO_FACTOR_MIDDLEWARE} is not in MIDDLEWARE: a session that skipped the second factor "
            "counts as signed in, so a user with TOTP reaches /admin/ (or any login_required page) "
            "with the password alone.",
            hint=f'Add "{TWO_FACTOR_MIDDLEWARE}" to MIDDLEWARE, on the line right after '
                 f'"{AUTHENTICATION_MIDDLEWARE}".',
            id="ephemeral_auth.E014")]
    authentication = _first_subclass(middleware, AuthenticationMiddleware)
    if authentication is None:
        return [Error(
            f"{TWO_FACTOR_MIDDLEWARE} is in MIDDLEWARE but {AUTHENTICATION_MIDDLEWARE} is not: "
            "nothing sets request.user for it to hide, so the second factor is not enforced.",
            hint=f'Add "{AUTHENTICATION_MIDDLEWARE}" to MIDDLEWARE, on the line right before '
                 f'"{middleware[two_factor]}".',
            id="ephemeral_auth.E015")]
    if authentication > two_factor:
        return [Error(
            f"{middleware[two_factor]!r} comes before {middleware[authentication]!r} in MIDDLEWARE: "
            "AuthenticationMiddleware then sets request.user again after the two-factor middleware hid "
            "it, so a session that skipped the second factor counts as signed in.",
            hint=f'Move "{middleware[two_factor]}" below "{middleware[authentication]}" in MIDDLEWARE.',
            id="ephemeral_auth.E015")]
    return []


def _check_guard_backend() -> list[Any]:
    from .backends import GuardBackend

    backends = list(getattr(settings, "AUTHENTICATION_BACKENDS", None) or [])
    guard = _first_subclass(backends, GuardBackend)
    if guard is None:
        return [Error(
            f"{GUARD_BACKEND} is not in AUTHENTICATION_BACKENDS: passwords checked through authenticate() "
            "outside ephemeral_auth's own login (Django's admin login, LoginView, DRF, your forms) are not "
            "counted in its rate limits.",
            hint=f'Add "{GUARD_BACKEND}" as the first entry of AUTHENTICATION_BACKENDS.',
            id="ephemeral_auth.E016")]
    if guard > 0:
        before = ", ".join(repr(path) for path in backends[:guard])
        return [Error(
            f"{backends[guard]!r} is in AUTHENTICATION_BACKENDS but not first: {before} check passwords "
            "before it, unguarded (e.g. the admin login), and a password one of them accepts never reaches it.",
            hint=f'Move "{backends[guard]}" to the top of AUTHENTICATION_BACKENDS: it runs the backends '
                 "listed after it itself.",
            id="ephemeral_auth.E017")]
    return []


# The URLconf (W004, E018-E020).


def _reverses(viewname: Any, args: Sequence[Any] = ()) -> bool:
    try:
        reverse(viewname, args=args)
    except NoReverseMatch:
        return False
    return True


@register(Tags.urls, "ephemeral_auth")
def check_urls(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    """W004, E018-E020: the admin's login, and the pages and endpoints the app's links point to."""
    if not getattr(settings, "ROOT_URLCONF", None):
        return []
    try:
        get_resolver().url_patterns  # noqa: B018 - imports the URLconf
    except Exception:
        return []  # Django's own urls checks report a URLconf that does not load
    return [*_check_admin_login(), *_check_secured_admin_pages(), *_check_password_reset_page(), *_check_oidc_urls()]


def _check_admin_login() -> list[Any]:
    """W004: an AdminSite is mounted and its login page is Django's own, not the 2FA-aware one."""
    if not apps.is_installed("django.contrib.admin"):
        return []
    from django.contrib import admin
    from django.contrib.admin.sites import AdminSite, all_sites

    messages: list[Any] = []
    for site in sorted(all_sites, key=lambda candidate: candidate.name):
        try:
            url = reverse(f"{site.name}:login")
            match = resolve(url)
        except (NoReverseMatch, Resolver404):
            continue  # not mounted
        owner = getattr(match.func, "__self__", None)
        # != rather than "is not": a login bound to the admin.site LazyObject is admin.site's.
        if match.namespaces[-1:] != [site.name] or (isinstance(owner, AdminSite) and owner != site):
            # Another instance answers this name: the "admin" application namespace falls
            # back to any mounted admin, and unmounted namesakes may exist.
            continue
        if getattr(match.func, ADMIN_LOGIN_SECURED_ATTRIBUTE, False):
            continue
        # admin.site is a LazyObject: its == compares the wrapped instance.
        site_expression = "admin.site" if admin.site == site else f"<your AdminSite named {site.name!r}>"
        if getattr(site.login, ADMIN_LOGIN_SECURED_ATTRIBUTE, False):
            messages.append(Warning(
                f"The admin site {site.name!r} was given the 2FA-aware login after its URLs were built: "
                f"{url} still serves Django's own login, which checks the password alone.",
                hint=f"In urls.py, call secure_admin_login({site_expression}) above urlpatterns, before "
                     f"path(..., {site_expression}.urls) reads the site's URLs.",
                id="ephemeral_auth.W004"))
        else:
            messages.append(Warning(
                f"The admin site {site.name!r} is mounted ({url}) with Django's own login, not "
                "ephemeral_auth's 2FA-aware one: it checks the password outside ephemeral_auth's login step, "
                "and a user with two-factor authentication gets no second-factor page there.",
                hint="In urls.py, before the admin is mounted: from ephemeral_auth.admin import "
                     f"secure_admin_login; secure_admin_login({site_expression}) — then "
                     f"path(\"admin/\", {site_expression}.urls).",
                id="ephemeral_auth.W004"))
    return messages


def _check_secured_admin_pages() -> list[Any]:
    """E022: an admin login was secured, but the second-factor page it sends 2FA users to is not mounted."""
    if not apps.is_installed("django.contrib.admin"):
        return []
    from django.contrib.admin.sites import all_sites

    secured = [
        site for site in all_sites
        if getattr(site.login, ADMIN_LOGIN_SECURED_ATTRIBUTE, False) and _reverses(f"{site.name}:login")
    ]
    if not secured or _reverses("ephemeral_auth:two_factor_verify"):
        return []
    return [Error(
        "secure_admin_login() sends staff users with two-factor authentication to the second-factor page "
        "(ephemeral_auth:two_factor_verify), which is not mounted: their admin login would fail.",
        hint='In urls.py add path("accounts/", include("ephemeral_auth.urls")).',
        id="ephemeral_auth.E022")]


def _check_password_reset_page() -> list[Any]:
    """E018: the API sends reset links to a confirm page that is not mounted."""
    if conf.get("PASSWORD_RESET_URL"):
        return []
    if not _reverses("ephemeral_auth_api:password_reset") or _reverses("ephemeral_auth:password_reset_confirm"):
        return []
    return [Error(
        "The JSON API (ephemeral_auth.api_urls) is mounted but the HTML page its password-reset links point "
        "to (ephemeral_auth:password_reset_confirm) is not, and EPHEMERAL_AUTH_PASSWORD_RESET_URL is empty: "
        "every password-reset request would answer 500.",
        hint='In urls.py add path("accounts/", include("ephemeral_auth.urls")), or set '
             "EPHEMERAL_AUTH_PASSWORD_RESET_URL to the page of yours that takes the token "
             '(e.g. "https://app.example.com/reset-password").',
        id="ephemeral_auth.E018")]


def _check_oidc_urls() -> list[Any]:
    """E019: the HTML pages are mounted without the API's OIDC endpoints. E020: the callback does not resolve."""
    if not _oidc_configured():
        return []
    api_mounted = _reverses("ephemeral_auth_api:oidc_authorize", args=["provider"]) and _reverses(
        "ephemeral_auth_api:oidc_callback")
    if _reverses("ephemeral_auth:login") and not api_mounted:
        return [Error(
            "OIDC providers are configured and the HTML pages (ephemeral_auth.urls) are mounted, but the JSON "
            "API's OIDC endpoints (ephemeral_auth_api:oidc_authorize, ephemeral_auth_api:oidc_callback) are "
            "not: the login page shows no OIDC buttons and no sign-in can complete.",
            hint='In urls.py add path("api/auth/", include("ephemeral_auth.api_urls")).',
            id="ephemeral_auth.E019")]
    callback = conf.get("OIDC_CALLBACK_URL")
    if not _reverses(callback):
        return [Error(
            f"EPHEMERAL_AUTH_OIDC_CALLBACK_URL {callback!r} is not a URL name of this project: sign-ins "
            "through providers with shared_callback (the OIDC_* provider among them) would fail with "
            "provider_misconfigured (no redirect_uri can be built).",
            hint='Mount the JSON API (path("api/auth/", include("ephemeral_auth.api_urls"))) and leave '
                 'EPHEMERAL_AUTH_OIDC_CALLBACK_URL at its default "ephemeral_auth_api:oidc_callback", or set '
                 "it to the URL name (not a path) of your own callback view.",
            id="ephemeral_auth.E020")]
    return []


# Deployment (W005-W007): manage.py check --deploy.


@register(Tags.security, "ephemeral_auth", deploy=True)
def check_deployment(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[Any]:
    """W005-W007: settings that weaken the app's cookies and reset links in production."""
    messages: list[Any] = []
    if conf.get("TRUSTED_PROXIES") and not getattr(settings, "SECURE_PROXY_SSL_HEADER", None):
        messages.append(Warning(
            "EPHEMERAL_AUTH_TRUSTED_PROXIES is set but SECURE_PROXY_SSL_HEADER is not: behind a TLS-terminating "
            "proxy request.is_secure() is False, so the challenge, pending-login, OIDC, password-reset and "
            "device cookies are neither Secure nor __Host- prefixed, and password-reset links are built as "
            "http://.",
            hint='Set SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") (the header your proxy sets; '
                 "it must overwrite any value the client sends).",
            id="ephemeral_auth.W005"))
    if not getattr(settings, "SESSION_COOKIE_SECURE", False):
        messages.append(Warning(
            "SESSION_COOKIE_SECURE is False: the session cookie, which carries the two-factor-verified mark, "
            "is also sent over plain HTTP, where it can be read and replayed without either factor.",
            hint="Set SESSION_COOKIE_SECURE = True (and serve the site over HTTPS only).",
            id="ephemeral_auth.W006"))
    if not getattr(settings, "CSRF_USE_SESSIONS", False) and not getattr(settings, "CSRF_COOKIE_SECURE", False):
        messages.append(Warning(
            "CSRF_COOKIE_SECURE is False: the CSRF cookie is also sent over plain HTTP, where it can be read "
            "and used to forge the login, two-factor and password forms.",
            hint="Set CSRF_COOKIE_SECURE = True (and serve the site over HTTPS only).",
            id="ephemeral_auth.W006"))
    if "*" in (getattr(settings, "ALLOWED_HOSTS", None) or []) and not conf.get("PASSWORD_RESET_URL"):
        messages.append(Warning(
            'ALLOWED_HOSTS contains "*" and EPHEMERAL_AUTH_PASSWORD_RESET_URL is empty: password-reset links '
            "are built from the request's Host header, so a request with a forged Host sends the victim a "
            "link (and its token) to the attacker's host.",
            hint='List your hosts in ALLOWED_HOSTS instead of "*" (e.g. ["www.example.com"]), or set '
                 "EPHEMERAL_AUTH_PASSWORD_RESET_URL to your public confirm page "
                 '(e.g. "https://www.example.com/accounts/password-reset/confirm/").',
            id="ephemeral_auth.W007"))
    return messages
