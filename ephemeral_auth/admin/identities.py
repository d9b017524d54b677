"""The OIDC identities page: which provider subject is linked to which local user."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ..models import OIDCIdentity
from ..services import oidc_accounts
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

    def delete_model(self, request: HttpRequest, obj: OIDCIdentity) -> None:
        """The delete page unlinks through the service (one DELETE)."""
        oidc_accounts.unlink_identities([obj.pk], using=obj._state.db)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        oidc_accounts.unlink_identities(queryset.values_list("pk", flat=True), using=queryset.db)
