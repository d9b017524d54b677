from django.urls import path

from . import views

app_name = "demo"

urlpatterns = [
    path("", views.home, name="home"),
    # The mail the demo sent: with DEBUG on and for localhost only (404 otherwise).
    path("dev/mail/", views.sent_mail, name="sent_mail"),
]
