"""The example project's home page: links to every account page of ephemeral_auth."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def home(request: HttpRequest) -> HttpResponse:
    """Show who is signed in and link the sign-in, two-factor and sign-out pages."""
    return render(request, "demo/home.html", {"demo_users": True})
