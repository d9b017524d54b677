from django.urls import path

from . import views

app_name = "files"

urlpatterns = [
    path("", views.index, name="index"),
    path("<int:pk>/link/", views.issue_link, name="issue_link"),
    path("<int:pk>/download/", views.download, name="download"),
]
