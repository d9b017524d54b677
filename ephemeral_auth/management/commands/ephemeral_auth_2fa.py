"""``manage.py ephemeral_auth_2fa``: show or reset a user's second factors (``status``, ``disable``).

Thin: the state is read by :func:`ephemeral_auth.services.two_factor.load_state`
and removed by :func:`ephemeral_auth.services.two_factor.reset_two_factor`,
the function behind the admin's "Reset two-factor authentication" action.
Removing the configuration changes the user's 2FA fingerprint, so the
middleware ends the sessions that passed the second factor under the old one.

Nothing secret is printed: no TOTP secret, no code, no digest; only flags,
times and counts. Usernames are user-chosen, so everything printed from them
(or from the arguments) goes through :func:`ephemeral_auth.text.printable`.
A user is named by their username: exactly, else the one account whose
username matches ignoring case (as ``ephemeral_auth_unlock --username``).
"""

from __future__ import annotations

import logging
import sys
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, router, transaction
from django.utils import timezone

from ... import conf
from ...models import UserTwoFactor
from ...services import lockout, ratelimit, recovery
from ...services import two_factor as two_factor_service
from ...services.inputs import is_plain_text
from ...text import printable

__all__ = ["Command", "find_user", "stdin_is_terminal"]

logger = logging.getLogger("ephemeral_auth.two_factor")

MAX_USERNAME_LENGTH = 4096


def stdin_is_terminal() -> bool:
    """Return whether the confirmation can be asked (standard input is a terminal)."""
    stdin = sys.stdin
    try:
        return bool(stdin is not None and stdin.isatty())
    except (AttributeError, OSError, ValueError):
        return False


def find_user(username: str) -> Any:
    """Return the account named ``username``, or raise CommandError saying why there is none.

    The exact username first; otherwise the one account whose username matches
    ignoring case (two such accounts: none, give the exact name).
    """
    if not is_plain_text(username, max_length=MAX_USERNAME_LENGTH):
        raise CommandError(f"'{printable(username)}': not a valid username.")
    model = get_user_model()
    field = model.USERNAME_FIELD
    manager = model._default_manager
    found = list(manager.filter(**{field: username})[:1])
    if not found:
        found = list(manager.filter(**{f"{field}__iexact": username})[:2])
        if len(found) > 1:
            raise CommandError(
                f"'{printable(username)}': several accounts match ignoring case; give the exact username."
            )
    if not found:
        raise CommandError(f"'{printable(username)}': no such user.")
    return found[0]


def when(value: datetime | None, *, none: str = "never") -> str:
    """Format a stored time for the operator (UTC, to the second)."""
    if value is None:
        return none
    if timezone.is_naive(value):
        return value.replace(microsecond=0).isoformat(sep=" ")
    return value.astimezone(dt_timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def yes_no(value: bool) -> str:
    return "yes" if value else "no"


class Command(BaseCommand):
    help = (
        "Show a user's second factors (status USER...) or remove all of them (disable USER), "
        "like the admin's \"Reset two-factor authentication\". Never prints secrets or codes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", metavar="{status,disable}", required=True)
        status = actions.add_parser(
            "status",
            help="Show whether 2FA is on, its methods, recovery codes left, and whether the account is locked out.",
            description="Show the two-factor settings of each user: methods, times, recovery codes left, "
            "and whether the account is locked out now. An unknown user is reported on stderr and makes "
            "the command exit with status 1, after the others are shown.",
        )
        status.add_argument("usernames", nargs="+", metavar="USER", help="Username (repeat for several users).")
        disable = actions.add_parser(
            "disable",
            help="Remove every second factor of a user and end their 2FA sessions.",
            description="Remove the user's authenticator (confirmed and pending), email codes and recovery "
            "codes, revoke their pending 2FA logins and enrolments, and end the sessions that passed the "
            "second factor. Asks you to type the username unless --yes is given; without a terminal "
            "and without --yes it refuses.",
        )
        disable.add_argument("username", metavar="USER", help="Username of the account.")
        disable.add_argument(
            "--yes", "-y", "--no-input", "--noinput",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options.get("verbosity", 1))
        action = options.get("action")
        try:
            if action == "status":
                self._status(list(options["usernames"]))
            elif action == "disable":
                self._disable(str(options["username"]), interactive=bool(options.get("interactive", True)))
            else:  # call_command() without a subcommand
                raise CommandError("Give a subcommand: status USER... or disable USER.")
        except DatabaseError as exc:
            raise CommandError(f"{action} failed: {exc.__class__.__name__}: {printable(exc)}") from exc

    # status

    def _status(self, usernames: list[str]) -> None:
        users: list[tuple[str, Any]] = []
        missing = 0
        for username in usernames:
            try:
                users.append((username, find_user(username)))
            except CommandError as exc:
                users.append((username, exc))
                missing += 1
        found = [user for _name, user in users if not isinstance(user, CommandError)]
        locks = self._locks(found)
        first = True
        for _name, user in users:
            if isinstance(user, CommandError):
                self.stderr.write(f"error: {exc_text(user)}")
                continue
            if not first:
                self.stdout.write("")
            first = False
            self._print_status(user, locks.get(ratelimit.account_key(user.pk), []))
        if missing:
            raise CommandError(f"{missing} of {len(usernames)} users not found.")

    def _locks(self, users: list[Any]) -> dict[str, list[str]]:
        """Return, per account key, a line for each of its buckets that refuses now (one query for all)."""
        if not users:
            return {}
        wanted = {ratelimit.account_key(user.pk) for user in users}
        locked = [
            subject for subject in ratelimit.locked_out()
            if subject.key.split(lockout.PAIR_SEPARATOR, 1)[0] in wanted
        ]
        labels = lockout.describe_keys([subject.key for subject in locked])
        found: dict[str, list[str]] = {}
        for subject in locked:
            owner = subject.key.split(lockout.PAIR_SEPARATOR, 1)[0]
            found.setdefault(owner, []).append(
                f"{printable(subject.event_type)}: {subject.count} events, retry after {subject.retry_after} s "
                f"({printable(labels.get(subject.key, ''))})"
            )
        return found

    def _print_status(self, user: Any, locks: list[str]) -> None:
        state = two_factor_service.load_state(user)
        row: UserTwoFactor | None = state.row
        codes = recovery.remaining(user)
        write = self.stdout.write
        write(f"{printable(user.get_username())} (user #{printable(user.pk)})")
        write(f"  two-factor authentication: {'on' if state.enabled else 'off'}")
        if state.totp:
            confirmed = row.totp_confirmed_at if row is not None else None
            write(f"  authenticator app (TOTP): on, confirmed {when(confirmed, none='at an unknown time')}")
        else:
            write("  authenticator app (TOTP): off")
        if row is not None and row.totp_pending_secret:
            write("  new authenticator pending: yes (set up, not confirmed)")
        if state.email:
            address = "address usable" if state.email_usable else "NO ADDRESS: email codes cannot be sent"
            since = when(row.email_confirmed_at if row is not None else None, none="at an unknown time")
            write(f"  email codes: on, confirmed {since}, {address}")
        else:
            write("  email codes: off")
        usable = "" if state.enabled or not codes else " (not usable while 2FA is off)"
        write(f"  recovery codes: {codes} unused{usable}")
        methods = state.methods()
        write(f"  methods a login may use: {', '.join(methods) if methods else 'none'}")
        write(f"  last verified: {when(row.last_verified_at if row is not None else None)}")
        write(f"  configuration changed: {when(row.changed_at if row is not None else None, none='not recorded')}")
        if locks:
            write(f"  locked out: yes, {len(locks)} bucket{'s' if len(locks) != 1 else ''}")
            for line in locks:
                write(f"    {line}")
        elif not conf.get("RATE_LIMITING_ENABLED"):
            write("  locked out: no (rate limiting is off)")
        else:
            write("  locked out: no")

    # disable

    def _disable(self, username: str, *, interactive: bool) -> None:
        user = find_user(username)
        name = user.get_username()
        shown = printable(name)
        before = two_factor_service.status(user)
        if interactive:
            if not stdin_is_terminal():
                raise CommandError(
                    "Standard input is not a terminal: cannot ask for confirmation. "
                    "Pass --yes to disable two-factor authentication without asking. Nothing changed."
                )
            self.stdout.write(
                f"This removes every second factor of {shown} (user #{printable(user.pk)}) and ends "
                "their sessions that passed the second factor."
            )
            self.stdout.flush()
            try:
                typed = input("Type the username to confirm: ")
            except (EOFError, KeyboardInterrupt):
                raise CommandError("Not confirmed. Nothing changed.") from None
            if typed != name:
                raise CommandError("The username typed does not match. Nothing changed.")
        alias = router.db_for_write(UserTwoFactor)
        with transaction.atomic(using=alias):
            two_factor_service.reset_two_factor(user)
        removed = []
        if before["totp"]:
            removed.append("authenticator app (TOTP)")
        if before["totp_pending"]:
            removed.append("pending authenticator")
        if before["email"]:
            removed.append("email codes")
        if before["recovery_codes_remaining"]:
            removed.append(f"{before['recovery_codes_remaining']} recovery codes")
        logger.info(
            "ephemeral_auth_2fa disable: two-factor authentication reset for user #%s (removed: %s)",
            user.pk, ", ".join(removed) or "nothing",
        )
        if self.verbosity < 1:
            return
        if removed:
            self.stdout.write(f"Disabled two-factor authentication of {shown}: removed {', '.join(removed)}.")
        else:
            self.stdout.write(f"{shown} had no second factor; pending 2FA logins and enrolments were revoked.")


def exc_text(exc: CommandError) -> str:
    return str(exc.args[0]) if exc.args else str(exc)
