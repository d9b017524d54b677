from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/auth/", include("ephemeral_auth.api_urls")),
    path("accounts/", include("ephemeral_auth.urls")),
    path("", include("example_project.demo.urls")),
]
