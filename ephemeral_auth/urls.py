"""The HTML pages. Mount them with ``path("accounts/", include(...))``."""

from .views import api_webauthn, downloads, html_account, html_passwords, html_two_factor

app_name = "ephemeral_auth"

urlpatterns = [
    *html_account.urlpatterns,
    *html_two_factor.urlpatterns,
    # The JSON endpoints the pages' script (webauthn.js) calls, beside the pages.
    *api_webauthn.patterns(),
    *html_passwords.urlpatterns,
    *downloads.urlpatterns,
]
