"""The tokens page: inspect outstanding tokens (never a digest), revoke them through the token service."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import router
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import clock
from ..models import EphemeralToken
from ..services import tokens
from .base import ReadOnlyAdmin, log_deletions

__all__ = ["EphemeralTokenAdmin", "TokenStateFilter"]


class TokenStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("live", _("Live")), ("expired", _("Expired"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = clock.now()
        if self.value() == "live":
            return queryset.filter(expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        return queryset


@admin.register(EphemeralToken)
class EphemeralTokenAdmin(ReadOnlyAdmin):
    list_display = ("id", "token_type", "user", "provider", "resource", "expires_at", "created_at", "expired")
    list_filter = ("token_type", TokenStateFilter, ("user", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("user",)
    # The user's name and email are added by get_search_fields.
    search_fields = ("provider", "resource")
    date_hierarchy = "created_at"
    # The primary key grows with created_at and is indexed; created_at is not.
    ordering = ("-id",)
    # Skip the unfiltered COUNT(*) of a table that may hold a million expired rows.
    show_full_result_count = False
    # Everything a support person needs, and no secret: the digest, the
    # challenge digest, the nonce, the PKCE verifier and the code digest are
    # left out (see SECRET_FIELDS).
    fields = (
        "id",
        "token_type",
        "user",
        "provider",
        "resource",
        "methods",
        "mode",
        "next_url",
        "attempts",
        "expires_at",
        "created_at",
        "expired",
    )
    readonly_fields = fields
    actions = ("revoke_selected",)

    # With EPHEMERAL_AUTH_DATABASE on another database than the users, nothing may
    # join the token table with the user table: no select_related, no search on
    # the user's name, no "related only" filter (each would be a cross-database
    # query). The page then shows the user by one lookup per row on their database.
    def _routed_apart(self) -> bool:
        return router.db_for_read(EphemeralToken) != router.db_for_read(get_user_model())

    def get_list_select_related(self, request: HttpRequest) -> Any:
        # (), not False: since Django 6.1 False means "join the foreign keys in list_display".
        return () if self._routed_apart() else super().get_list_select_related(request)

    def get_list_filter(self, request: HttpRequest) -> Any:
        if self._routed_apart():
            return ("token_type", TokenStateFilter)
        return super().get_list_filter(request)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        if self._routed_apart():
            return list(self.search_fields)
        return super().get_search_fields(request)

    @admin.display(boolean=True, description=_("expired"))
    def expired(self, obj: EphemeralToken) -> bool:
        return obj.is_expired(clock.now())

    def delete_model(self, request: HttpRequest, obj: EphemeralToken) -> None:
        """The delete page revokes through the token service too (one DELETE)."""
        tokens.revoke_by_pk([obj.pk], using=obj._state.db)

    @admin.action(description=_("Revoke selected tokens"), permissions=["delete"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[EphemeralToken]) -> None:
        selected = list(queryset.order_by())
        log_deletions(self, request, selected)
        # A token consumed meanwhile is simply not counted.
        deleted = tokens.revoke_by_pk([token.pk for token in selected], using=queryset.db)
        self.message_user(
            request,
            ngettext("Revoked %(count)d token.", "Revoked %(count)d tokens.", deleted) % {"count": deleted},
            messages.SUCCESS,
        )
