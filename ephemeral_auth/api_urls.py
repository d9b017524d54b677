"""The JSON API (docs/http-api.md). Mount it with ``path("api/auth/", include(...))``."""

from .views import api_account, api_oidc, api_passwords, api_two_factor, api_webauthn

app_name = "ephemeral_auth_api"

urlpatterns = [
    *api_account.urlpatterns,
    *api_two_factor.urlpatterns,
    *api_webauthn.urlpatterns,
    *api_oidc.urlpatterns,
    *api_passwords.urlpatterns,
]
