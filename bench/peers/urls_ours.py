from django.urls import include, path

urlpatterns = [path("api/auth/", include("ephemeral_auth.api_urls"))]
