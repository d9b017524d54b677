"""The OIDC identities page: which provider subject is linked to which local user."""

from __future__ import annotations

from django.contrib import admin

from ..models import OIDCIdentity
from .base import ReadOnlyAdmin

__all__ = ["OIDCIdentityAdmin"]


@admin.register(OIDCIdentity)
class OIDCIdentityAdmin(ReadOnlyAdmin):
    """Links between a provider's subject and a local user; deleting one unlinks it."""

    list_display = ("provider", "issuer", "subject", "user", "email", "created_at", "last_login_at")
    list_filter = ("provider",)
    list_select_related = ("user",)
    search_fields = ("provider", "issuer", "subject", "email")
    ordering = ("-id",)
    fields = list_display
    readonly_fields = fields
    actions = ()
