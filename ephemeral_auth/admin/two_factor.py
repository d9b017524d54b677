"""The two-factor pages: each user's second factors (never a secret), reset through the two-factor service."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import BooleanField, Count, ExpressionWrapper, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..exceptions import EphemeralAuthError
from ..models import RecoveryCode, UserTwoFactor
from .base import ReadOnlyAdmin, has_model_perm

__all__ = ["RecoveryCodeAdmin", "TOTPFilter", "UserTwoFactorAdmin"]


def _totp_enabled() -> Q:
    return ~Q(totp_secret="") & Q(totp_confirmed_at__isnull=False)


class TOTPFilter(admin.SimpleListFilter):
    title = _("TOTP enabled")
    parameter_name = "totp"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(_totp_enabled())
        if self.value() == "no":
            return queryset.exclude(_totp_enabled())
        return queryset


@admin.register(UserTwoFactor)
class UserTwoFactorAdmin(ReadOnlyAdmin):
    list_display = ("user", "totp_enabled", "email_enabled", "recovery_codes_left", "updated_at")
    list_filter = (TOTPFilter, "email_enabled")
    list_select_related = ("user",)
    search_fields = ()
    fields = (
        "user",
        "totp_enabled",
        "totp_confirmed_at",
        "totp_pending",
        "email_enabled",
        "email_confirmed_at",
        "recovery_codes_left",
        "updated_at",
    )
    readonly_fields = fields
    actions = ("reset_selected",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[UserTwoFactor]:
        codes = (
            RecoveryCode._default_manager.filter(user=OuterRef("user"))
            .order_by()
            .values("user")
            .annotate(n=Count("pk"))
            .values("n")
        )
        # The encrypted secrets are never loaded: the flags come from the database.
        return (
            super()
            .get_queryset(request)
            .defer("totp_secret", "totp_pending_secret")
            .annotate(
                totp_on=ExpressionWrapper(_totp_enabled(), output_field=BooleanField()),
                totp_pending_on=ExpressionWrapper(~Q(totp_pending_secret=""), output_field=BooleanField()),
                recovery_codes=Coalesce(Subquery(codes, output_field=IntegerField()), 0),
            )
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Deleting the row alone would leave recovery codes and pending logins
        # behind; "Reset two-factor authentication" removes all of it.
        return False

    def has_reset_permission(self, request: HttpRequest) -> bool:
        return has_model_perm(request, UserTwoFactor, "change") or has_model_perm(request, UserTwoFactor, "delete")

    @admin.display(boolean=True, description=_("TOTP enabled"), ordering="totp_on")
    def totp_enabled(self, obj: Any) -> bool:
        return bool(obj.totp_on)

    @admin.display(boolean=True, description=_("new authenticator pending"))
    def totp_pending(self, obj: Any) -> bool:
        return bool(obj.totp_pending_on)

    @admin.display(description=_("recovery codes left"), ordering="recovery_codes")
    def recovery_codes_left(self, obj: Any) -> int:
        return int(obj.recovery_codes)

    @admin.action(description=_("Reset two-factor authentication"), permissions=["reset"])
    def reset_selected(self, request: HttpRequest, queryset: QuerySet[UserTwoFactor]) -> HttpResponse | None:
        try:
            # Imported here: the two-factor service is optional for this page.
            from ..services.two_factor import reset_two_factor
        except ImportError:
            self.message_user(request, _("Resetting two-factor authentication is not available."), messages.ERROR)
            return None
        rows = list(queryset.select_related("user"))
        if request.POST.get("post") != "yes":
            # Destructive and security-relevant: confirm first, like delete_selected.
            context = {
                **self.admin_site.each_context(request),
                "opts": self.model._meta,
                "title": _("Reset two-factor authentication"),
                "rows": rows,
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
            }
            request.current_app = self.admin_site.name
            return TemplateResponse(
                request, "admin/ephemeral_auth/usertwofactor/reset_confirmation.html", context
            )
        done = 0
        for row in rows:
            try:
                reset_two_factor(row.user)
            except EphemeralAuthError as exc:
                self.message_user(request, f"{row.user}: {exc.message}", messages.ERROR)
                continue
            self.log_change(request, row, _("Reset two-factor authentication."))
            done += 1
        self.message_user(
            request,
            ngettext(
                "Reset two-factor authentication of %(count)d user.",
                "Reset two-factor authentication of %(count)d users.",
                done,
            )
            % {"count": done},
            messages.SUCCESS,
        )
        return None


@admin.register(RecoveryCode)
class RecoveryCodeAdmin(ReadOnlyAdmin):
    """How many codes a user has left, and since when; never the digests."""

    list_display = ("user", "created_at")
    list_select_related = ("user",)
    search_fields = ()
    date_hierarchy = "created_at"
    ordering = ("-id",)
    fields = ("user", "created_at")
    readonly_fields = fields

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
