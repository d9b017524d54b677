"""The example project's home page, and the demo's mailbox page (development only)."""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache

from . import mail


def home(request: HttpRequest) -> HttpResponse:
    """Show who is signed in and link the sign-in, two-factor and sign-out pages."""
    return render(request, "demo/home.html", {"demo_users": True, "dev_mail": mail_page_allowed(request)})


def mail_page_allowed(request: HttpRequest) -> bool:
    """The mailbox page exists only with DEBUG on, and only for requests from this machine."""
    if not settings.DEBUG:
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


@never_cache
def sent_mail(request: HttpRequest) -> HttpResponse:
    """List the mail the demo sent (password-reset links, sign-in codes), newest first."""
    if not mail_page_allowed(request):
        raise Http404
    response = render(request, "demo/mail.html", {"messages_sent": mail.recent(), "mail_dir": mail.mail_dir()})
    # The page holds live reset links: never let it leave in a Referer header.
    response["Referrer-Policy"] = "no-referrer"
    return response
