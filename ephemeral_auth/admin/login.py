"""The admin's login through the 2FA-aware login step, and :func:`secure_admin_login` that installs it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from ..views.html_account import LoginView, safe_next_url

__all__ = ["AdminLoginView", "secure_admin_login"]


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
    from ..forms import TwoFactorEmailGuardMixin

    model_admin = site._registry.get(get_user_model())
    if model_admin is None:
        return
    base = model_admin.form
    if issubclass(base, TwoFactorEmailGuardMixin):
        return
    model_admin.form = type(f"TwoFactorGuarded{base.__name__}", (TwoFactorEmailGuardMixin, base), {})
