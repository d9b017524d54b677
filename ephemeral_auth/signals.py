"""Signals sent by the services. Receivers never get a raw token or code.

* ``token_issued(sender=EphemeralToken, token)``
* ``token_consumed(sender=EphemeralToken, token)``: ``token`` is the deleted row.
* ``rate_limited(sender=RateLimitEvent, event_type, key, retry_after)``
* ``two_factor_verified(sender=UserTwoFactor, user, method, request)``
* ``two_factor_failed(sender=UserTwoFactor, user, method, request)``
* ``user_locked_out(sender=RateLimitEvent, event_type, key, request)``: sent
  by the flows when a login or 2FA bucket first refuses a subject.
* ``authenticator_added(sender=UserTwoFactor, user, method, replaced, request)``:
  a second factor was confirmed (``method``: ``"totp"`` or ``"email"``).
  Replacing the authenticator app sends this signal alone, with
  ``replaced=True`` (the user never was without it), not a removal first.
* ``authenticator_removed(sender=UserTwoFactor, user, method, request)``: the
  user turned a method off, or an admin reset the user's 2FA (one signal per
  method the user had, ``request`` None).
* ``recovery_codes_generated(sender=RecoveryCode, user, count, method, request)``:
  the user's recovery codes were replaced by ``count`` new ones (never the
  codes). ``method`` is the second factor whose confirmation made them
  (``"totp"``, ``"email"``; its ``authenticator_added`` came first), None when
  the user asked for new codes.
* ``password_reset_completed(sender=<user model>, user, request)``: the user
  set a new password through a reset link (``services.passwords.confirm_reset``);
  never the token nor the password.

These four signals are sent once the change is committed
(``transaction.on_commit``, robust: a failing receiver is logged, the change
stands): a receiver never sees a change that was rolled back. ``request`` is
None when the service was called without one.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.dispatch import Signal

__all__ = [
    "authenticator_added",
    "authenticator_removed",
    "password_reset_completed",
    "rate_limited",
    "recovery_codes_generated",
    "send_on_commit",
    "token_consumed",
    "token_issued",
    "two_factor_failed",
    "two_factor_verified",
    "user_locked_out",
]

token_issued = Signal()
token_consumed = Signal()
rate_limited = Signal()
two_factor_verified = Signal()
two_factor_failed = Signal()
user_locked_out = Signal()
authenticator_added = Signal()
authenticator_removed = Signal()
recovery_codes_generated = Signal()
password_reset_completed = Signal()


def send_on_commit(signal: Signal, *, sender: Any, using: str | None, **kwargs: Any) -> None:
    """Send ``signal`` once the transaction of database ``using`` commits (at once outside one).

    Costs no query. A receiver's exception is logged by Django, not raised:
    the change it reports is committed already.
    """

    def send() -> None:
        signal.send(sender=sender, **kwargs)

    # A function, not a functools.partial: Django names it (__qualname__) when logging a receiver's error.
    transaction.on_commit(send, using=using, robust=True)
