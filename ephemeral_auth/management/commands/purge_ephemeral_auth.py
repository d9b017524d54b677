"""``manage.py purge_ephemeral_auth``: delete expired tokens and stale rate-limit events.

Thin on purpose: the policy (what is expired, batching, overlap safety) is in
:func:`ephemeral_auth.services.cleanup.purge_expired`. Run it from cron, for
example every 10 minutes (docs/operations.md).
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from ...services import cleanup
from ...text import printable

__all__ = ["Command"]


def positive_int(value: str) -> int:
    """Parse a batch size: an integer of at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got '{printable(value)}'") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


class Command(BaseCommand):
    help = (
        "Delete expired ephemeral tokens and the rate-limit events no window counts any more. "
        "Safe to run while another purge is running."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted; delete nothing.",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=None,
            metavar="N",
            help="Rows deleted per statement (default: EPHEMERAL_AUTH_PURGE_BATCH_SIZE, 5000).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = int(options["verbosity"])
        dry_run = bool(options["dry_run"])
        batch_size = options["batch_size"]
        # call_command(batch_size=...) skips the argparse type check: repeat it.
        if batch_size is not None:
            try:
                batch_size = positive_int(str(batch_size))
            except argparse.ArgumentTypeError as exc:
                raise CommandError(f"--batch-size: {exc}") from None

        def progress(label: str, deleted: int) -> None:
            self.stdout.write(f"  {printable(label)}: {deleted} deleted so far")

        try:
            result = cleanup.purge_expired(
                batch_size=batch_size,
                dry_run=dry_run,
                progress=progress if verbosity >= 2 else None,
            )
        except DatabaseError as exc:
            # Batches already deleted stay deleted; the next run continues.
            raise CommandError(f"purge failed: {exc.__class__.__name__}: {printable(exc)}") from exc

        if verbosity < 1:
            return
        verb = "Would delete" if dry_run else "Deleted"
        self.stdout.write(
            f"{verb} {sum(result.tokens.values())} expired tokens and {result.events} stale rate-limit events."
        )
        for token_type, count in result.tokens.items():
            self.stdout.write(f"  {printable(token_type)}: {count}")
        self.stdout.write(f"  rate-limit events: {result.events}")
