"""The WebAuthn credentials page: a user's security keys and passkeys, without their key material.

Shown: the user, the name, the AAGUID (the authenticator's model), the
transports, the flags (passkey, backup eligible, backed up, user verified at
registration), the signature counter and the dates. Never the credential id,
its digest, the public key or the user handle (``base.SECRET_FIELDS``).
Deleting one removes it through the service (``webauthn_factor``): the
user's 2FA configuration changes (their sessions end), their pending logins
are revoked, ``authenticator_removed`` is sent, and the recovery codes go
with the last factor.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from ..models import WebAuthnCredential
from ..services import webauthn_factor
from .base import ReadOnlyAdmin

__all__ = ["WebAuthnCredentialAdmin"]


@admin.register(WebAuthnCredential)
class WebAuthnCredentialAdmin(ReadOnlyAdmin):
    """Registered security keys and passkeys; deleting one removes it for the user."""

    list_display = (
        "name", "user", "discoverable", "backup_eligible", "backup_state", "sign_count", "created_at", "last_used_at",
    )
    list_filter = ("discoverable", "backup_eligible", "backup_state")
    list_select_related = ("user",)
    search_fields = ("name", "aaguid")
    ordering = ("-id",)
    fields = (
        "user", "name", "aaguid", "transports", "discoverable", "backup_eligible", "backup_state",
        "user_verified_at_registration", "sign_count", "created_at", "last_used_at",
    )
    readonly_fields = fields
    actions = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The key material is never even loaded.
        return super().get_queryset(request).defer("credential_id", "public_key", "user_handle")

    def delete_model(self, request: HttpRequest, obj: WebAuthnCredential) -> None:
        """The delete page removes the credential through the service."""
        webauthn_factor.remove_by_admin(obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        for obj in queryset.select_related("user"):
            webauthn_factor.remove_by_admin(obj)
