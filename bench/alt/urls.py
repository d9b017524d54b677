from django.urls import include, path

urlpatterns = [
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("api/auth/", include("ephemeral_auth.api_urls")),
]
