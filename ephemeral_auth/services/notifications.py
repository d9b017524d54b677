"""Security notices: a short mail telling the user that their account's security changed.

``EPHEMERAL_AUTH_SECURITY_NOTIFICATIONS`` (default False) turns them on. The
wiring (``receivers.py``) calls :func:`notify` from the signals, once the
change is committed:

* ``authenticator_added``: a second factor confirmed, or the authenticator
  app replaced (signal ``authenticator_added``);
* ``authenticator_removed``: a factor turned off by the user, or the admin's
  2FA reset (``authenticator_removed``);
* ``recovery_codes_generated``: new recovery codes the user asked for
  (``recovery_codes_generated`` without ``method``; codes made with a
  factor's confirmation belong to that change's "added" notice: one mail);
* ``password_reset``: the password set through a reset link
  (``password_reset_completed``).

Security reasoning:

* **Nothing that grants access.** A notice says what happened, when, from
  which address if known, and what to do if it was not the user. Its
  context holds no token, code, secret or link; the job receives plain
  text (user id, event, time, address, method, language) and reads the
  user again, so a task queue never stores anything usable.
* **Never fails the change.** The change is committed when the notice is
  written. Handing it to the runner, rendering and sending are each
  guarded: a failure is logged (``ephemeral_auth.notifications``, never the
  body) and the user's action stands.
* **Not in the response time.** The notice is a job of ``services/jobs.py``
  (``EPHEMERAL_AUTH_NOTIFICATION_RUNNER``; None: a task when the site's task
  backend queues, else the in-process pool), like the reset mail.
* **To the account's current address,** read when the job runs. A user
  without an address gets nothing.

The templates are ``ephemeral_auth/notifications/<event>_subject.txt``,
``<event>.txt`` and ``<event>.html`` (optional); a site overrides them, and
may send a notice of its own with :func:`notify` and its own templates
(event names: lowercase letters, digits, underscores).
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import TYPE_CHECKING

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _

from .. import clock, conf
from . import jobs, mail
from .factors import user_email

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = ["EVENTS", "deliver_notice", "enabled", "notify", "templates"]

logger = logging.getLogger("ephemeral_auth.notifications")

EVENTS = ("authenticator_added", "authenticator_removed", "recovery_codes_generated", "password_reset")
TEMPLATE_DIR = "ephemeral_auth/notifications"
_EVENT_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")

# The second factors by the name the signals give them.
METHOD_LABELS = {
    "totp": _("authenticator app"),
    "email": _("codes by email"),
    "webauthn": _("security key or passkey"),
    "recovery": _("recovery codes"),
}


def enabled() -> bool:
    """Whether security notices are on (``EPHEMERAL_AUTH_SECURITY_NOTIFICATIONS``)."""
    return bool(conf.get("SECURITY_NOTIFICATIONS"))


def templates(event: str) -> mail.MailTemplates:
    """The templates of ``event``'s notice (the HTML body is optional)."""
    return mail.MailTemplates(
        subject=f"{TEMPLATE_DIR}/{event}_subject.txt",
        text=f"{TEMPLATE_DIR}/{event}.txt",
        html=f"{TEMPLATE_DIR}/{event}.html",
    )


def notify(
    user: AbstractBaseUser, event: str, *, ip: str = "", method: str = "", replaced: bool = False,
    language: str | None = None, at: datetime | None = None,
) -> bool:
    """Hand ``event``'s notice for ``user`` to the notification runner; return whether it was.

    Does nothing when notices are off and for a user without an address
    (read from ``user``; the job reads it again). A runner that
    fails is logged, not raised (ValueError only for a malformed ``event``).
    ``ip`` is the client's address ("" if unknown), ``language`` the one to
    write in (None: whatever is active where the job runs; a thread or task
    worker has ``LANGUAGE_CODE``), ``at`` the time of the change (default now).
    """
    if not enabled():
        return False
    if not _EVENT_NAME.fullmatch(event):
        raise ValueError(f"not an event name: {event!r}")
    if not user_email(user):
        logger.info("security notice %s not sent: user #%s has no email address", event, user.pk)
        return False
    job_kwargs = {
        "user_id": str(user.pk),
        "event": event,
        "at": (at or clock.now()).isoformat(),
        "ip": ip,
        "method": method,
        "replaced": "1" if replaced else "",
        "language": language or "",
    }
    try:
        jobs.runner("NOTIFICATION_RUNNER")(deliver_notice, **job_kwargs)
    except Exception:
        logger.exception("security notice %s for user #%s could not be queued", event, user.pk)
        return False
    return True


def deliver_notice(
    *, user_id: str, event: str, at: str, ip: str = "", method: str = "", replaced: str = "", language: str = ""
) -> int:
    """Mail ``event``'s notice to the user's current address; return 1 if sent, else 0 (the job).

    Never raises: a missing user or address sends nothing, a failure of the
    templates or the mail backend is logged without the message.
    """
    try:
        user = get_user_model()._default_manager.filter(pk=user_id).first()
        address = user_email(user) if user is not None else ""
        if not address:
            logger.info("security notice %s not sent: user #%s has no email address", event, user_id)
            return 0
        context = {
            "user": user,
            "event": event,
            "method": method,
            "method_label": METHOD_LABELS.get(method, method),
            "replaced": bool(replaced),
            "ip": ip,
            "when": datetime.fromisoformat(at),
        }
        mail.send(templates(event), context, to=[address], language=language or None)
    except Exception:
        # Never the message: the templates are the site's, and so is what they show.
        logger.exception("security notice %s to user #%s could not be sent", event, user_id)
        return 0
    logger.info("security notice %s sent to user #%s", event, user_id)
    return 1
