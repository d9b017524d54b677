"""The rate-limit events page and "Locked out now": inspect the buckets, unlock through the rate-limit service."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .. import clock, conf
from ..exceptions import EphemeralAuthError
from ..models import EventType, RateLimitEvent
from ..services import lockout, ratelimit
from ..text import printable
from .base import ReadOnlyAdmin, has_model_perm, log_deletions

__all__ = ["OccurredFilter", "RateLimitEventAdmin"]


class OccurredFilter(admin.SimpleListFilter):
    title = _("occurred")
    parameter_name = "occurred"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [
            ("15m", _("In the last 15 minutes")),
            ("1h", _("In the last hour")),
            ("24h", _("In the last 24 hours")),
            ("stale", _("Outside every window (purgeable)")),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = clock.now()
        recent = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(days=1)}
        value = self.value()
        if value in recent:
            return queryset.filter(occurred_at__gt=now - recent[value])
        if value == "stale":
            return queryset.filter(occurred_at__lte=now - conf.longest_window())
        return queryset


def _subjects(queryset: QuerySet[RateLimitEvent]) -> list[tuple[str, str]]:
    """Return the distinct (event_type, key) pairs of the selected events."""
    return sorted(set(queryset.order_by().values_list("event_type", "key")))


def _events_of(subjects: Iterable[tuple[str, str]], alias: str) -> list[RateLimitEvent]:
    condition = Q()
    for event_type, key in subjects:
        condition |= Q(event_type=event_type, key=key)
    if not condition:
        return []
    return list(RateLimitEvent._default_manager.using(alias).filter(condition))


@admin.register(RateLimitEvent)
class RateLimitEventAdmin(ReadOnlyAdmin):
    list_display = ("event_type", "key", "occurred_at")
    list_filter = ("event_type", OccurredFilter)
    search_fields = ("key",)
    date_hierarchy = "occurred_at"
    ordering = ("-occurred_at",)
    show_full_result_count = False
    fields = ("event_type", "key", "occurred_at")
    readonly_fields = fields
    actions = ("unlock_selected",)

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return list(self.search_fields)  # a key is not a user

    def has_unlock_permission(self, request: HttpRequest) -> bool:
        """Return whether the user may clear events (change or delete permission)."""
        return has_model_perm(request, RateLimitEvent, "change") or has_model_perm(
            request, RateLimitEvent, "delete"
        )

    def _unlock(self, request: HttpRequest, subjects: list[tuple[str, str]], alias: str) -> int:
        log_deletions(self, request, _events_of(subjects, alias))
        return sum(ratelimit.clear(event_type, key) for event_type, key in subjects)

    @admin.action(description=_("Clear the selected subjects' events (unlock)"), permissions=["unlock"])
    def unlock_selected(self, request: HttpRequest, queryset: QuerySet[RateLimitEvent]) -> None:
        subjects = _subjects(queryset)
        cleared = self._unlock(request, subjects, queryset.db)
        self.message_user(
            request,
            ngettext(
                "Unlocked %(subjects)d subject (%(events)d events cleared).",
                "Unlocked %(subjects)d subjects (%(events)d events cleared).",
                len(subjects),
            )
            % {"subjects": len(subjects), "events": cleared},
            messages.SUCCESS,
        )

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        custom = [
            path(
                "locked-out/",
                self.admin_site.admin_view(self.locked_out_view),
                name=f"{opts.app_label}_{opts.model_name}_locked_out",
            ),
        ]
        # Before the defaults: "<path:object_id>/" would swallow "locked-out/".
        return custom + super().get_urls()  # type: ignore[operator]

    def locked_out_view(self, request: HttpRequest) -> HttpResponse:
        """List the subjects over their limit now; POST unlocks one of them."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        opts = self.model._meta
        if request.method == "POST":
            if not self.has_unlock_permission(request):
                raise PermissionDenied
            self._unlock_one(request)
            # Post/redirect/get back to this page, whatever the admin site's name.
            return HttpResponseRedirect(request.path)
        now = clock.now()
        labels = dict(EventType.choices)
        locked = ratelimit.locked_out(now=now)
        who = lockout.describe_keys([subject.key for subject in locked])
        subjects = [
            {
                "event_type": subject.event_type,
                "label": labels.get(subject.event_type, subject.event_type),
                "key": subject.key,
                # Escaped: a bidi override or a zero-width character in a typed name must not
                # reorder or hide what the page says (HTML escaping does not cover those).
                "who": printable(who.get(subject.key, subject.key)),
                "shown_key": printable(subject.key),
                "count": subject.count,
                "limit": conf.rate_limit(subject.event_type).limit,
                "retry_after": subject.retry_after,
                "until": now + timedelta(seconds=subject.retry_after),
            }
            for subject in locked
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": opts,
            "title": _("Locked out now"),
            "subjects": subjects,
            "can_unlock": self.has_unlock_permission(request),
            "rate_limiting_enabled": conf.get("RATE_LIMITING_ENABLED"),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/ephemeral_auth/ratelimitevent/locked_out.html", context)

    def _unlock_one(self, request: HttpRequest) -> None:
        event_type = request.POST.get("event_type", "")
        key = request.POST.get("key", "")
        # An explicit, known type only: clear(None, key) would clear every bucket.
        if event_type not in EventType.values or not key:
            self.message_user(request, _("Nothing to unlock: unknown subject."), messages.ERROR)
            return
        try:
            cleared = self._unlock(request, [(event_type, key)], RateLimitEvent._default_manager.db)
        except EphemeralAuthError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return
        self.message_user(
            request,
            _("Unlocked %(key)s for %(event_type)s (%(events)d events cleared).")
            % {"key": key, "event_type": event_type, "events": cleared},
            messages.SUCCESS,
        )
