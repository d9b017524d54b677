"""The one clock that decides expiry and rate-limit windows.

ephemeral_auth uses the application server's clock (``django.utils.timezone.now``)
for both writing ``expires_at``/``occurred_at`` and comparing against them.
Hosts must keep their clocks in sync (NTP); a host whose clock runs ``s``
seconds fast sees tokens expire ``s`` seconds early. See docs/services.md ("Clock").

Tests freeze time by passing ``now=`` to a service or by patching :func:`now`.
"""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

__all__ = ["now"]


def now() -> datetime:
    """Return the current time (aware, UTC)."""
    return timezone.now()
