"""Template tags for OIDC sign-in buttons: ``{% load ephemeral_auth_oidc %}``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django import template
from django.urls import NoReverseMatch, reverse

from ..oidc import errors, providers
from ..oidc.browser import safe_next_url

__all__ = ["oidc_error_message", "oidc_providers"]

register = template.Library()


@register.simple_tag(takes_context=True)
def oidc_providers(context: dict[str, Any], next_url: str = "", mode: str = "session") -> list[dict[str, str]]:
    """Return ``[{slug, name, url}]`` for every configured provider.

    ``url`` starts a flow that returns to ``next_url``, else to the page's own
    ``?next=`` (if safe), else to the page itself.
    """
    request = context.get("request")
    target = next_url
    if request is not None and not target:
        target = safe_next_url(request, request.GET.get("next")) or request.path
    result = []
    for provider in providers.all_providers():
        try:
            url = reverse("ephemeral_auth_api:oidc_authorize", args=[provider.slug])
        except NoReverseMatch:
            return []
        query = {"next": target} if target else {}
        if mode != "session":
            query["mode"] = mode
        result.append(
            {"slug": provider.slug, "name": provider.name, "url": f"{url}?{urlencode(query)}" if query else url}
        )
    return result


@register.simple_tag(takes_context=True)
def oidc_error_message(context: dict[str, Any]) -> str:
    """Return the message for the page's ``?oidc_error=`` code ("" if none)."""
    request = context.get("request")
    if request is None:
        return ""
    return errors.message_for(request.GET.get("oidc_error"))
