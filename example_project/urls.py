from pathlib import Path

from django.contrib import admin
from django.urls import include, path, re_path
from django.views.static import serve

from ephemeral_auth.admin import secure_admin_login

SPA_ROOT = Path(__file__).resolve().parent / "static_spa"

# The admin's login goes through ephemeral_auth's login step: rate limited, and a user
# with 2FA continues to the second-factor page, then back to the admin (docs/installation.md).
secure_admin_login(admin.site)

urlpatterns = [
    path("admin/", admin.site.urls),
    # set_language: the language switcher in the page header (LocaleMiddleware reads its cookie).
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/auth/", include("ephemeral_auth.api_urls")),
    path("accounts/", include("ephemeral_auth.urls")),
    path("files/", include("example_project.files.urls")),
    # The small static single-page app of the OIDC SPA mode (docs/oidc.md).
    path("spa/", serve, {"path": "index.html", "document_root": SPA_ROOT}, name="spa"),
    re_path(r"^spa/(?P<path>[\w.-]+\.(?:js|css))$", serve, {"document_root": SPA_ROOT}),
    path("", include("example_project.demo.urls")),
]
