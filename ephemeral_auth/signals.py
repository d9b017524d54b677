"""Signals sent by the services. Receivers never get a raw token or code.

* ``token_issued(sender=EphemeralToken, token)``
* ``token_consumed(sender=EphemeralToken, token)``: ``token`` is the deleted row.
* ``rate_limited(sender=RateLimitEvent, event_type, key, retry_after)``
* ``two_factor_verified(sender=UserTwoFactor, user, method, request)``
* ``two_factor_failed(sender=UserTwoFactor, user, method, request)``
* ``user_locked_out(sender=RateLimitEvent, event_type, key, request)``: sent
  by the flows when a login or 2FA bucket first refuses a subject.
"""

from __future__ import annotations

from django.dispatch import Signal

__all__ = [
    "rate_limited",
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
