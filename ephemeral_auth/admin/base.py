"""What every admin page of ephemeral_auth shares: no add, no change, no secret column, the admin log."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_permission_codename, get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.http import HttpRequest

from ..models import EphemeralToken, RecoveryCode, UserTwoFactor, WebAuthnCredential

__all__ = ["SECRET_FIELDS", "ReadOnlyAdmin", "has_model_perm", "log_deletions", "user_search_fields"]

# Columns that must never reach an admin page (tests assert it).
SECRET_FIELDS: dict[type, frozenset[str]] = {
    EphemeralToken: frozenset({"token", "challenge_id", "nonce", "code_verifier", "code_hash"}),
    UserTwoFactor: frozenset({"totp_secret", "totp_pending_secret"}),
    RecoveryCode: frozenset({"code_hash"}),
    # Not secret, but key material and identifiers an admin has no use for.
    WebAuthnCredential: frozenset({"credential_id", "credential_key", "public_key", "user_handle"}),
}


def user_search_fields(prefix: str = "user__") -> list[str]:
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


def has_model_perm(request: HttpRequest, model: type, action: str) -> bool:
    """Return whether the user holds ``<app>.<action>_<model>`` (the admins below deny change to everyone)."""
    opts = model._meta  # type: ignore[attr-defined]
    return bool(request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}"))


def log_deletions(model_admin: admin.ModelAdmin[Any], request: HttpRequest, objects: Sequence[Any]) -> None:
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
        return [*self.search_fields, *user_search_fields()]
