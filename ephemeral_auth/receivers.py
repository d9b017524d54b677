"""Signal receivers connected when the app is ready (see apps.py)."""

from __future__ import annotations

# --- Password reset (docs/password-reset.md): any password change revokes reset links.
from typing import Any

from django.conf import settings
from django.db.models.signals import post_save, pre_delete, pre_save
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


# --- Database routing (docs/deployment.md): deleting a user deletes their tokens.
@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="ephemeral_auth.delete_user_tokens")
def delete_user_tokens(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Delete the user's ephemeral tokens on the token table's database."""
    # EphemeralToken.user is DO_NOTHING without a database constraint, because the
    # token table may live on EPHEMERAL_AUTH_DATABASE; this is its CASCADE. It runs
    # before the user row goes, inside the deletion's transaction when both share a
    # database; on a routed one a failed user deletion leaves the user without
    # tokens, which is harmless (they are all short-lived and re-issuable).
    from .services.tokens import revoke_tokens

    if instance.pk is not None:
        revoke_tokens(user=instance)
