"""``manage.py ephemeral_auth_unlock``: clear a username's, email's or IP's rate-limit events.

Thin: keys are normalised and cleared by :mod:`ephemeral_auth.services.ratelimit`,
exactly as the flows record them, so "Alice" unlocks the bucket of "alice".
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from ...exceptions import InvalidInput
from ...models import EventType
from ...services import ratelimit

__all__ = ["BUCKETS", "Command"]

# Which buckets each kind of subject has (DESIGN.md section 4).
BUCKETS: dict[str, tuple[str, ...]] = {
    "username": (EventType.LOGIN_ATTEMPT, EventType.TWO_FA_ATTEMPT, EventType.EMAIL_SEND),
    "email": (EventType.PASSWORD_RESET_SEND,),
    "ip": (EventType.LOGIN_IP, EventType.PASSWORD_RESET_IP),
}


class Command(BaseCommand):
    verbosity = 1
    help = (
        "Unlock a username (failed logins, 2FA attempts, email-code sends), an email "
        "(password-reset requests) or a client IP (failed logins, password-reset requests); "
        "--list shows who is locked out now."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--username",
            action="append",
            default=[],
            metavar="U",
            help="Username to unlock; case and surrounding spaces do not matter. For failures typed with an "
            "identifier that matches no account, give what was typed. Repeatable.",
        )
        parser.add_argument("--email", action="append", default=[], metavar="E",
                            help="Email address whose password-reset requests to clear. Repeatable.")
        parser.add_argument("--ip", action="append", default=[], metavar="A",
                            help="Client IP address (IPv4 or IPv6) to unlock. Repeatable.")
        parser.add_argument("--list", action="store_true", help="List the subjects locked out now.")

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options["verbosity"])
        subjects = [("username", value) for value in options["username"]]
        subjects += [("email", value) for value in options["email"]]
        subjects += [("ip", value) for value in options["ip"]]
        if not subjects and not options["list"]:
            raise CommandError("Give --username, --email, --ip or --list.")
        try:
            # Normalise everything first: a typo refuses the whole run, clears nothing.
            keyed = [(kind, self._key(kind, value)) for kind, value in subjects]
            for kind, key in keyed:
                self._clear(kind, key)
            if options["list"]:
                self._list()
        except DatabaseError as exc:
            raise CommandError(f"unlock failed: {exc.__class__.__name__}: {exc}") from exc

    def _key(self, kind: str, value: str) -> str:
        try:
            return ratelimit.ip_key(value) if kind == "ip" else ratelimit.subject_key(value)
        except InvalidInput as exc:
            raise CommandError(f"--{kind} {value!r}: {exc.message}") from exc

    def _clear(self, kind: str, key: str) -> None:
        counts = {event_type: ratelimit.clear(event_type, key) for event_type in BUCKETS[kind]}
        if self.verbosity < 1:
            return
        if not any(counts.values()):
            self.stdout.write(f"{kind} {key}: nothing to clear.")
            return
        detail = ", ".join(f"{count} {event_type}" for event_type, count in counts.items())
        self.stdout.write(f"Unlocked {kind} {key}: cleared {detail} events.")

    def _list(self) -> None:
        locked = ratelimit.locked_out()
        if not locked:
            self.stdout.write("Nobody is locked out.")
            return
        self.stdout.write(f"{len(locked)} locked out:")
        width = max(len(subject.key) for subject in locked)
        for subject in locked:
            self.stdout.write(
                f"  {subject.event_type:<20} {subject.key:<{width}}  "
                f"{subject.count} events, retry after {subject.retry_after} s"
            )
