"""The demo's mailbox: sent mail printed in the terminal and kept as files for /dev/mail/.

``DemoMailBackend`` is the example project's EMAIL_BACKEND while DEBUG is on
(example_project/settings.py). Each message is printed like Django's console
backend does, and written as one ``.eml`` file into ``settings.DEMO_MAIL_DIR``;
``recent()`` reads them back, newest first, for the page ``/dev/mail/``.
Development only: the files hold password-reset links and sign-in codes.
"""

from __future__ import annotations

import email
import email.policy
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail.backends.console import EmailBackend as ConsoleBackend

__all__ = ["DemoMailBackend", "SentMail", "mail_dir", "recent"]

SUFFIX = ".eml"


def mail_dir() -> Path:
    """The directory the demo's mail is kept in."""
    return Path(getattr(settings, "DEMO_MAIL_DIR", Path(settings.BASE_DIR) / "sent_emails" / "demo"))


class DemoMailBackend(ConsoleBackend):
    """Print each message in the terminal (console backend) and keep a copy as a file."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        sent = super().send_messages(email_messages)
        if not email_messages:
            return sent
        directory = mail_dir()
        directory.mkdir(parents=True, exist_ok=True)
        for message in email_messages:
            # A sortable name: the nanosecond clock first, then a random part.
            name = f"{time.time_ns():020d}-{uuid.uuid4().hex}{SUFFIX}"
            part = directory / f"{name}.part"
            part.write_bytes(message.message().as_bytes())
            part.replace(directory / name)  # the page never reads a half-written file
        return sent


@dataclass(frozen=True)
class SentMail:
    """One kept message, as the page shows it."""

    name: str
    subject: str
    sender: str
    recipients: str
    date: str
    body: str


def _text_body(message: Any) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        return str(part.get_content())
    except (LookupError, UnicodeDecodeError):
        return part.get_payload(decode=True).decode("utf-8", "replace")


def recent(limit: int = 50) -> list[SentMail]:
    """The last ``limit`` kept messages, newest first."""
    directory = mail_dir()
    if not directory.is_dir():
        return []
    files = sorted(directory.glob(f"*{SUFFIX}"), key=lambda path: path.name, reverse=True)[:limit]
    result = []
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError:  # removed meanwhile
            continue
        message = email.message_from_bytes(raw, policy=email.policy.default)
        result.append(
            SentMail(
                name=path.name,
                subject=str(message.get("Subject", "")),
                sender=str(message.get("From", "")),
                recipients=", ".join(str(message.get(header, "")) for header in ("To", "Cc") if message.get(header)),
                date=str(message.get("Date", "")),
                body=_text_body(message),
            )
        )
    return result
