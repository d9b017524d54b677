"""Signal receivers connected when the app is ready (see apps.py)."""

from __future__ import annotations

# --- Password reset (docs/password-reset.md): a change of the password, the email address or
# is_active revokes reset links.
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.signals import user_logged_in
from django.db.backends.signals import connection_created
from django.db.models.signals import post_save, pre_delete, pre_save
from django.dispatch import receiver

from . import clock
from .auth.session import AUTHENTICATED_AT_KEY
from .backends import GUARD_BACKEND, INNER_BACKEND_ATTRIBUTE, REMEMBER_DEVICE_ATTRIBUTE
from .services import engine
from .services.two_factor import check_email_change


@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="ephemeral_auth.note_password_change")
def note_password_change(
    sender: Any, instance: Any, raw: bool = False, using: str = "default", update_fields: Any = None, **kwargs: Any
) -> None:
    """Remember whether this User save writes a new password hash, email address or is_active."""
    from .services.passwords import note_password_change

    note_password_change(instance, using=using, update_fields=update_fields, raw=raw)


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="ephemeral_auth.revoke_reset_links")
def revoke_reset_links(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Revoke the user's password-reset links once a new password, email address or is_active is saved."""
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


# --- Every login (docs/security.md): the sign-in time, the real backend, the device cookie.
@receiver(user_logged_in, dispatch_uid="ephemeral_auth.remember_login")
def remember_login(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    """Note a completed login on the session and the request, whatever view called login().

    * the session's sign-in time (a fresh proof for 2FA changes while 2FA is
      off, ``two_factor.require_fresh_proof``);
    * the backend that really accepted the user, instead of GuardBackend,
      which only guards: the session then loads its user as without the guard;
    * the browser gets the device cookie for this account on the way out
      (``middleware.set_device_cookie``).
    """
    if request is None:
        return
    session = getattr(request, "session", None)
    if session is not None:
        session[AUTHENTICATED_AT_KEY] = int(clock.now().timestamp())
        inner = getattr(user, INNER_BACKEND_ATTRIBUTE, None)
        if inner and session.get(BACKEND_SESSION_KEY) == GUARD_BACKEND:
            session[BACKEND_SESSION_KEY] = inner
    setattr(request, REMEMBER_DEVICE_ATTRIBUTE, user.pk)


# --- Email-only 2FA fails closed (docs/two-factor.md): the address cannot be removed.
@receiver(pre_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="ephemeral_auth.keep_two_factor_address")
def keep_two_factor_address(
    sender: Any, instance: Any, raw: bool = False, using: str = "default", update_fields: Any = None, **kwargs: Any
) -> None:
    """Refuse a save that empties the address of a user whose only second factor is email codes.

    Raises ``EmailRequiredForTwoFactor`` (a ValidationError). Forms and the
    admin refuse it earlier, as a field error (``forms.TwoFactorEmailGuardMixin``).
    """
    if raw or instance.pk is None:
        return
    check_email_change(instance, using=using, update_fields=update_fields)


# --- Clusters (docs/clusters.md): recognise a Galera node when a connection is made.
connection_created.connect(engine.note_connection, dispatch_uid="ephemeral_auth.note_connection")
