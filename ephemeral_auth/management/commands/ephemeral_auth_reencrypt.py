"""``manage.py ephemeral_auth_reencrypt``: re-encrypt TOTP secrets with the newest key after a rotation.

Thin: the policy (skip what is current, conditional UPDATE, report what no
key decrypts) is :func:`ephemeral_auth.services.totp.reencrypt_secrets`.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from ...services import totp
from ...text import printable


class Command(BaseCommand):
    help = (
        "Re-encrypt every TOTP secret with the newest key of EPHEMERAL_AUTH_ENCRYPTION_KEYS (or of "
        "SECRET_KEY). Run it after putting a new key first, before removing the old one."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be re-encrypted; write nothing.")
        parser.add_argument("--batch-size", type=int, default=500, help="Rows read per round trip (default 500).")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1")
        try:
            result = totp.reencrypt_secrets(dry_run=options["dry_run"], batch_size=options["batch_size"])
        except DatabaseError as exc:
            raise CommandError(f"re-encryption failed: {exc.__class__.__name__}: {printable(exc)}") from exc
        verb = "would re-encrypt" if options["dry_run"] else "re-encrypted"
        if int(options["verbosity"]) >= 1:
            self.stdout.write(
                f"{verb} {result.rotated} secret(s); {result.current} already under the newest key; "
                f"{result.changed_meanwhile} changed meanwhile (left alone)."
            )
        if result.undecryptable:
            ids = ", ".join(f"#{printable(pk)}" for pk in result.undecryptable)
            raise CommandError(
                f"{len(result.undecryptable)} secret(s) no configured key decrypts (users {ids}): keep the old key "
                "configured, or reset those users' 2FA (docs/operations.md)."
            )
