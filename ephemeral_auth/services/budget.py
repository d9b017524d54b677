"""The per-user second-factor failure budget (``two_fa_attempt``), shared by every factor.

* An attempt is recorded *before* its code is checked (:func:`count_attempt`),
  so parallel guesses cannot exceed the budget (fixing a weakness of the
  original application).
* The budget counts failures since the last real second-factor success
  (``UserTwoFactor.last_verified_at``), which nothing else writes.

``request`` arguments here are only handed on to signal receivers, untouched.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from .. import conf
from ..exceptions import RateLimited
from ..models import EventType, RateLimitEvent, UserTwoFactor
from ..signals import user_locked_out
from . import ratelimit

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from .factors import TwoFactorState

__all__ = ["count_attempt", "forgive_failures", "note_failure", "two_factor_key"]


def two_factor_key(user: AbstractBaseUser) -> str:
    """Return the rate-limit key of a user's 2FA and email-send buckets (``u:<pk>``: never shared by two accounts)."""
    return ratelimit.account_key(user.pk)


def _window(state: TwoFactorState, now: datetime) -> timedelta:
    """Return the 2FA window of this user: it restarts at their last second-factor success.

    Only a real success writes ``UserTwoFactor.last_verified_at`` (the
    UPDATE that records an accepted TOTP step, a used recovery code, an
    emailed code that logged in); no other save can reset the budget. A stamp
    in the future (a host with a fast clock) is ignored: the full window then
    applies, which errs on the safe side.
    """
    window = conf.rate_limit(EventType.TWO_FA_ATTEMPT).window
    stamp = state.row.last_verified_at if state.row is not None else None
    if stamp is not None and now - window < stamp < now:
        return now - stamp
    return window


def count_attempt(user: AbstractBaseUser, state: TwoFactorState, *, now: datetime) -> None:
    """Record one second-factor attempt of ``user`` before its code is checked.

    Recording first bounds parallel guesses: of N simultaneous attempts at
    most the remaining budget is admitted. Raises RateLimited (with the
    Retry-After of the full window) when the budget is spent.
    """
    window = _window(state, now)
    try:
        ratelimit.attempt(EventType.TWO_FA_ATTEMPT, two_factor_key(user), window=window, now=now)
    except RateLimited as exc:
        full = conf.rate_limit(EventType.TWO_FA_ATTEMPT).window
        extra = math.ceil((full - window).total_seconds())
        raise RateLimited(retry_after=exc.retry_after + extra, event_type=EventType.TWO_FA_ATTEMPT) from None


def note_failure(user: AbstractBaseUser, state: TwoFactorState, *, now: datetime, request: Any = None) -> None:
    """Send ``user_locked_out`` when this failure used up the user's 2FA budget."""
    if not conf.get("RATE_LIMITING_ENABLED"):
        return
    key = two_factor_key(user)
    limit = conf.rate_limit(EventType.TWO_FA_ATTEMPT).limit
    if ratelimit.count(EventType.TWO_FA_ATTEMPT, key, window=_window(state, now), now=now) >= limit:
        user_locked_out.send(
            sender=RateLimitEvent, event_type=EventType.TWO_FA_ATTEMPT, key=key, request=request
        )


def forgive_failures(user: AbstractBaseUser, *, now: datetime) -> None:
    """Restart the user's 2FA window after a real second-factor success that did not stamp it already."""
    UserTwoFactor.objects.filter(pk=user.pk).update(last_verified_at=now)
