"""Signal receivers connected when the app is ready (see apps.py)."""

from __future__ import annotations

# --- Password reset (docs/password-reset.md): any password change revokes reset links.
from typing import Any

from django.conf import settings
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="ephemeral_auth.note_password_change")
def note_password_change(
    sender: Any, instance: Any, raw: bool = False, using: str = "default", update_fields: Any = None, **kwargs: Any
) -> None:
    """Remember whether this User save writes a new password hash."""
    from .services.passwords import note_password_change

    note_password_change(instance, using=using, update_fields=update_fields, raw=raw)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="ephemeral_auth.revoke_reset_links")
def revoke_reset_links(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Revoke the user's password-reset links once a new password is saved."""
    from .services.passwords import revoke_after_password_change

    revoke_after_password_change(instance)
