"""``manage.py ephemeral_auth_unlock``: clear a username's, email's or IP's rate-limit events.

Thin: keys are found and cleared by :mod:`ephemeral_auth.services.lockout` and
:mod:`ephemeral_auth.services.ratelimit`, exactly as the flows record them: a
username unlocks its account (keyed by primary key: its ceiling, its
(account, address) pairs, its 2FA and email-send budgets) and the name as
typed; an address unlocks itself and every (account, address) pair of it.

Keys and usernames are user-chosen (an anonymous client types the name a key
holds): everything printed from them, or from the arguments, goes through
:func:`ephemeral_auth.text.printable`, so an escape sequence cannot drive the
operator's terminal.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from ...exceptions import InvalidInput
from ...models import EventType
from ...services import lockout, ratelimit
from ...text import printable

__all__ = ["BUCKETS", "Command"]

# Which buckets each kind of subject has (docs/security.md, "The lock model").
BUCKETS: dict[str, tuple[str, ...]] = {
    "username": (EventType.LOGIN_ATTEMPT, EventType.LOGIN_USER_IP, EventType.TWO_FA_ATTEMPT, EventType.EMAIL_SEND),
    "email": (EventType.PASSWORD_RESET_SEND,),
    "ip": (EventType.LOGIN_IP, EventType.LOGIN_USER_IP, EventType.PASSWORD_RESET_IP, EventType.OIDC_AUTHORIZE),
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
            help="Username to unlock (the account's buckets, and failures typed under that name; case and "
            "surrounding spaces do not matter for the latter). For an identifier that matches no account, give "
            "what was typed. Repeatable.",
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
            raise CommandError(f"unlock failed: {exc.__class__.__name__}: {printable(exc)}") from exc

    def _key(self, kind: str, value: str) -> str:
        try:
            if kind == "ip":
                return ratelimit.ip_key(value)
            if kind == "username":
                lockout.name_key(value)  # validates; the account is found by its exact username
                return value.strip()
            return ratelimit.subject_key(value)
        except InvalidInput as exc:
            raise CommandError(f"--{kind} '{printable(value)}': {printable(exc.message)}") from exc

    def _clear(self, kind: str, key: str) -> None:
        if kind == "username":
            found = lockout.unlock_username(key)
        elif kind == "ip":
            found = lockout.unlock_address(key)
        else:
            found = {event_type: ratelimit.clear(event_type, key) for event_type in BUCKETS[kind]}
        counts = {event_type: found.get(event_type, 0) for event_type in BUCKETS[kind]}
        if self.verbosity < 1:
            return
        if not any(counts.values()):
            self.stdout.write(f"{kind} {printable(key)}: nothing to clear.")
            return
        detail = ", ".join(f"{count} {event_type}" for event_type, count in counts.items() if count)
        self.stdout.write(f"Unlocked {kind} {printable(key)}: cleared {detail} events.")

    def _list(self) -> None:
        locked = ratelimit.locked_out()
        if not locked:
            self.stdout.write("Nobody is locked out.")
            return
        self.stdout.write(f"{len(locked)} locked out:")
        who = lockout.describe_keys([subject.key for subject in locked])
        keys = {subject.key: printable(subject.key) for subject in locked}
        width = max(len(key) for key in keys.values())  # aligned as shown, escapes included
        for subject in locked:
            self.stdout.write(
                f"  {printable(subject.event_type):<20} {keys[subject.key]:<{width}}  "
                f"{subject.count} events, retry after {subject.retry_after} s  "
                f"({printable(who.get(subject.key, ''))})"
            )
