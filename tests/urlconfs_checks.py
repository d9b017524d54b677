"""Small URLconfs for tests/test_checks.py.

Each is a module object: ``settings.ROOT_URLCONF = urlconfs_checks.API_ONLY``
(Django accepts a module as well as its dotted path). The admin sites are
module globals, so they stay in ``django.contrib.admin.sites.all_sites`` (a
WeakSet) while the tests run; their names are unique, so no other URLconf
mounts them.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from django.contrib.admin import AdminSite
from django.http import HttpResponse
from django.urls import include, path


def secured_login(request: Any, extra_context: Any = None) -> HttpResponse:
    """Stands in for the view ephemeral_auth.admin.secure_admin_login gives a site."""
    return HttpResponse("2FA-aware admin login")


secured_login.ephemeral_auth_secured = True  # type: ignore[attr-defined]

def custom_login(request: Any, extra_context: Any = None) -> HttpResponse:
    """A project's own admin login that is not ephemeral_auth's."""
    return HttpResponse("custom admin login")


# Django's own login: nothing done to it.
plain_site = AdminSite(name="checks_plain_admin")

# Secured the right way: the login is replaced before the site's URLs are built.
secured_site = AdminSite(name="checks_secured_admin")
secured_site.login = secured_login  # type: ignore[method-assign,assignment]

# A login of the project's own (a function, not a method of the site), not 2FA-aware.
custom_site = AdminSite(name="checks_custom_admin")
custom_site.login = custom_login  # type: ignore[method-assign,assignment]

# Secured too late: its URLs (built here) still point at Django's own login.
late_site = AdminSite(name="checks_late_admin")
late_site_urls = late_site.urls
late_site.login = secured_login  # type: ignore[method-assign,assignment]


def _html() -> Any:
    return path("accounts/", include("ephemeral_auth.urls"))


def _api() -> Any:
    return path("api/auth/", include("ephemeral_auth.api_urls"))


def _urlconf(name: str, *patterns: Any) -> ModuleType:
    module = ModuleType(f"{__name__}.{name}")
    module.urlpatterns = list(patterns)  # type: ignore[attr-defined]
    return module


# Everything mounted the way the docs say: no check fires.
FULL = _urlconf("FULL", path("admin/", secured_site.urls), _api(), _html())
PLAIN_ADMIN = _urlconf("PLAIN_ADMIN", path("admin/", plain_site.urls), _api(), _html())
CUSTOM_ADMIN = _urlconf("CUSTOM_ADMIN", path("admin/", custom_site.urls), _api(), _html())
LATE_ADMIN = _urlconf("LATE_ADMIN", path("admin/", late_site_urls), _api(), _html())
API_ONLY = _urlconf("API_ONLY", _api())
SECURED_ADMIN_WITHOUT_PAGES = _urlconf("SECURED_ADMIN_WITHOUT_PAGES", path("admin/", secured_site.urls), _api())
HTML_ONLY = _urlconf("HTML_ONLY", _html())
NOTHING = _urlconf("NOTHING")
