"""Admin pages for ephemeral_auth's tables: inspect, revoke, unlock, reset.

Security reasoning:

* Nothing secret is shown. Token digests, browser-challenge digests, OIDC
  nonces, PKCE verifiers, code digests, recovery-code digests and encrypted
  TOTP secrets are in no list column, no change view, no search field; the
  2FA list never even loads the encrypted secrets (they are deferred and the
  "enabled" flags are computed by the database). ``__str__`` of every model
  shows a type and a primary key only, so delete pages and the admin log
  are safe too.
* The rows are written by the services only: there is no "add" and no
  "change". What an administrator may do is what the services offer: revoke
  tokens, clear a subject's rate-limit events (unlock), reset a user's 2FA.
  Each of these is recorded in the admin log (``LogEntry``).
* The unlock form of the "Locked out now" page is a POST through
  ``admin_view`` (staff only, CSRF-protected) and checks the change or
  delete permission on rate-limit events itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth import get_permission_codename, get_user_model
from django.core.exceptions import FieldDoesNotExist, PermissionDenied
from django.db import router, transaction
from django.db.models import BooleanField, Count, ExpressionWrapper, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import clock, conf
from .exceptions import EphemeralAuthError
from .models import EphemeralToken, EventType, OIDCIdentity, RateLimitEvent, RecoveryCode, UserTwoFactor
from .services import lockout, ratelimit
from .text import printable
from .views.html_account import LoginView, safe_next_url

__all__ = [
    "AdminLoginView",
    "EphemeralTokenAdmin",
    "OIDCIdentityAdmin",
    "RateLimitEventAdmin",
    "RecoveryCodeAdmin",
    "UserTwoFactorAdmin",
    "secure_admin_login",
]

# Columns that must never reach an admin page (tests assert it).
SECRET_FIELDS: dict[type, frozenset[str]] = {
    EphemeralToken: frozenset({"token", "challenge_id", "nonce", "code_verifier", "code_hash"}),
    UserTwoFactor: frozenset({"totp_secret", "totp_pending_secret"}),
    RecoveryCode: frozenset({"code_hash"}),
}


def _user_search_fields(prefix: str = "user__") -> list[str]:
    """Return lookups for the user's login name and email, whatever the user model."""
    user_model = get_user_model()
    names = [user_model.USERNAME_FIELD]
    email = user_model.get_email_field_name()
    try:
        user_model._meta.get_field(email)
    except FieldDoesNotExist:
        pass
    else:
        if email not in names:
            names.append(email)
    return [prefix + name for name in names]


def _has_model_perm(request: HttpRequest, model: type, action: str) -> bool:
    """Return whether the user holds ``<app>.<action>_<model>`` (the admins below deny change to everyone)."""
    opts = model._meta  # type: ignore[attr-defined]
    return bool(request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}"))


def _log_deletions(model_admin: admin.ModelAdmin[Any], request: HttpRequest, objects: Sequence[Any]) -> None:
    """Record in the admin log that ``objects`` are about to be deleted."""
    if not objects:
        return
    if hasattr(model_admin, "log_deletions"):  # Django >= 5.1: one bulk INSERT
        model_admin.log_deletions(request, objects)  # type: ignore[arg-type]
    else:  # pragma: no cover - Django 4.2
        for obj in objects:
            model_admin.log_deletion(request, obj, str(obj))  # type: ignore[attr-defined]


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """No add, no change: the services write these rows; the admin inspects them."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> dict[str, Any]:
        # Django 6.1 passes action_location (an admin.ActionLocation) and deprecates overrides
        # without that parameter; older Djangos call get_actions(request) and know no such argument.
        if action_location is None:
            actions = super().get_actions(request)
        else:
            actions = super().get_actions(request, action_location=action_location)  # type: ignore[call-arg]
        # The purpose-built actions below replace the generic bulk delete.
        actions.pop("delete_selected", None)
        return actions

    def get_search_fields(self, request: HttpRequest) -> list[str]:
        return [*self.search_fields, *_user_search_fields()]


# Tokens.


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

    @admin.action(description=_("Revoke selected tokens"), permissions=["delete"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[EphemeralToken]) -> None:
        selected = list(queryset.order_by())
        _log_deletions(self, request, selected)
        # A token consumed meanwhile is simply not counted.
        deleted, _by_model = EphemeralToken._default_manager.using(queryset.db).filter(
            pk__in=[token.pk for token in selected]
        ).delete()
        self.message_user(
            request,
            ngettext("Revoked %(count)d token.", "Revoked %(count)d tokens.", deleted) % {"count": deleted},
            messages.SUCCESS,
        )


# Rate-limit events.


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
        return _has_model_perm(request, RateLimitEvent, "change") or _has_model_perm(
            request, RateLimitEvent, "delete"
        )

    def _unlock(self, request: HttpRequest, subjects: list[tuple[str, str]], alias: str) -> int:
        _log_deletions(self, request, _events_of(subjects, alias))
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


# Two-factor state.


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
        return _has_model_perm(request, UserTwoFactor, "change") or _has_model_perm(request, UserTwoFactor, "delete")

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
            from .services.two_factor import reset_two_factor
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


# The admin's login, through the 2FA-aware login (docs/installation.md, "The Django admin").


class AdminLoginView(LoginView):
    """The admin site's login page on ephemeral_auth's login step.

    The admin's look (``admin/login.html``), but the password goes through
    ``auth.login.password_login``: counted in the same buckets as every
    other login (429 with ``Retry-After`` when a bucket is full), only staff
    admitted (anybody else reads as a wrong password, as with Django's own
    form), and a user with 2FA continues to the second-factor page, then
    back to the admin, instead of the silent loop Django's form would give
    (the middleware hides a session that skipped the second factor).
    """

    template_name = "admin/login.html"
    admin_site: admin.AdminSite | None = None

    def _site(self) -> admin.AdminSite:
        return self.admin_site or admin.site

    def get_next_url(self) -> str:
        request = self.request  # type: ignore[attr-defined]
        value = request.POST.get(self.redirect_field_name) or request.GET.get(self.redirect_field_name)
        index = reverse("admin:index", current_app=self._site().name)
        return safe_next_url(request, value, default=index)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        request = self.request  # type: ignore[attr-defined]
        context = {
            **self._site().each_context(request),
            "title": _("Log in"),
            "subtitle": None,
            "app_path": request.get_full_path(),
            "username": request.user.get_username(),
        }
        context.update(super().get_context_data(**kwargs))
        return context

    def allowed_user(self, user: Any) -> bool:
        return bool(user.is_active and user.is_staff)

    def get(self, request: HttpRequest) -> HttpResponse:
        if self._site().has_permission(request):
            # Already signed in as staff (with the second factor): on to the admin.
            return HttpResponseRedirect(self.get_next_url())
        return super().get(request)


def secure_admin_login(site: admin.AdminSite | None = None) -> admin.AdminSite:
    """Make ``site``'s login (default: ``admin.site``) the 2FA-aware :class:`AdminLoginView`; return the site.

    Call it in urls.py before mounting the site::

        from ephemeral_auth.admin import secure_admin_login
        secure_admin_login(admin.site)
        urlpatterns = [path("admin/", admin.site.urls), ...]

    It also makes the site's user change form refuse to remove the address
    of a user whose only second factor is email codes. System check
    ``ephemeral_auth.W004`` warns about an admin mounted without it.
    """
    site = site if site is not None else admin.site
    view = transaction.non_atomic_requests(AdminLoginView.as_view(admin_site=site))
    view.ephemeral_auth_secured = True  # type: ignore[attr-defined]
    site.login = view  # type: ignore[method-assign,assignment]
    _guard_user_change_form(site)
    return site


def _guard_user_change_form(site: admin.AdminSite) -> None:
    """Give the site's user admin a change form that refuses to remove an email-only 2FA address."""
    from .forms import TwoFactorEmailGuardMixin

    model_admin = site._registry.get(get_user_model())
    if model_admin is None:
        return
    base = model_admin.form
    if issubclass(base, TwoFactorEmailGuardMixin):
        return
    model_admin.form = type(f"TwoFactorGuarded{base.__name__}", (TwoFactorEmailGuardMixin, base), {})
