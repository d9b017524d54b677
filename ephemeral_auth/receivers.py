"""Signal receivers connected when the app is ready (see apps.py)."""

from __future__ import annotations

# --- Password reset (docs/password-reset.md): a change of the password, the email address or
# is_active revokes reset links.
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY
from django.contrib.auth.signals import user_logged_in
from django.core.signals import setting_changed
from django.db.backends.signals import connection_created
from django.db.models.signals import post_save, pre_delete, pre_save
from django.dispatch import Signal, receiver
from django.utils import translation

from . import clock, signals
from .auth.session import AUTHENTICATED_AT_KEY
from .backends import GUARD_BACKEND, INNER_BACKEND_ATTRIBUTE, REMEMBER_DEVICE_ATTRIBUTE
from .client_ip import client_ip
from .services import engine, notifications
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


# --- Security notices (docs/two-factor.md, "Security notices"): a mail to the user once a
# change of their second factors or a password reset is committed. Connected only while
# EPHEMERAL_AUTH_SECURITY_NOTIFICATIONS is on: off, the signals have no receiver of ours and
# the services skip what they do only for receivers (the admin reset's SELECT).
def _origin(request: Any) -> dict[str, Any]:
    """The client's address when the change came with a request, and the language active now."""
    ip = client_ip(request) if request is not None and hasattr(request, "META") else ""
    return {"ip": ip, "language": translation.get_language()}


def notice_authenticator_added(sender: Any, user: Any, method: str, replaced: bool = False, request: Any = None,
                               **kwargs: Any) -> None:
    notifications.notify(user, "authenticator_added", method=method, replaced=replaced, **_origin(request))


def notice_authenticator_removed(sender: Any, user: Any, method: str, request: Any = None, **kwargs: Any) -> None:
    notifications.notify(user, "authenticator_removed", method=method, **_origin(request))


def notice_recovery_codes_generated(
    sender: Any, user: Any, method: str | None = None, request: Any = None, **kwargs: Any
) -> None:
    # Codes made with a factor's confirmation (method set) belong to its "added" notice: one mail.
    if method is None:
        notifications.notify(user, "recovery_codes_generated", **_origin(request))


def notice_password_reset(sender: Any, user: Any, request: Any = None, **kwargs: Any) -> None:
    notifications.notify(user, "password_reset", **_origin(request))


_NOTICES: tuple[tuple[Signal, Any], ...] = (
    (signals.authenticator_added, notice_authenticator_added),
    (signals.authenticator_removed, notice_authenticator_removed),
    (signals.recovery_codes_generated, notice_recovery_codes_generated),
    (signals.password_reset_completed, notice_password_reset),
)


def connect_notices() -> None:
    """Connect the notice receivers if SECURITY_NOTIFICATIONS is on, else disconnect them."""
    on = notifications.enabled()
    for signal, handler in _NOTICES:
        uid = f"ephemeral_auth.{handler.__name__}"
        if on:
            signal.connect(handler, dispatch_uid=uid)
        else:
            signal.disconnect(dispatch_uid=uid)


@receiver(setting_changed, dispatch_uid="ephemeral_auth.security_notifications_changed")
def security_notifications_changed(sender: Any, setting: str, **kwargs: Any) -> None:
    """Follow override_settings (tests) of EPHEMERAL_AUTH_SECURITY_NOTIFICATIONS."""
    if setting == "EPHEMERAL_AUTH_SECURITY_NOTIFICATIONS":
        connect_notices()


connect_notices()
