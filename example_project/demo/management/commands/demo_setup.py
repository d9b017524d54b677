"""Create the example project's demo users when missing, and print how to sign in.

Keeps what exists: a second run changes nothing, so passwords changed in the
demo (a password reset, say) and the recovery codes of ``demo2fa`` survive a
restart. ``--reset`` starts over: every demo user gets back its demo password
and flags, and ``demo2fa`` its authenticator and ten new recovery codes.

It refuses to run with DEBUG off (unless --force), because it creates a
superuser with a published password.

Extending it (e.g. to add a demo account): add a step to ``Command.steps``
that takes the users (by username) and returns lines to print.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

__all__ = ["DEMO_USERS", "TWO_FACTOR_DEMO", "TWO_FACTOR_DEMO_SECRET", "Command", "DemoUser", "where_mail_goes"]


@dataclass(frozen=True)
class DemoUser:
    """A demo account: its username, password and flags."""

    username: str
    password: str
    email: str
    is_staff: bool
    is_superuser: bool
    role: str


# Published on purpose: the demo runs on 127.0.0.1 only, with DEBUG on.
DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("admin", "admin-demo-password", "admin@example.com", True, True, "superuser, for /admin/"),
    DemoUser("demo", "demo-user-password", "demo@example.com", False, False, "ordinary user"),
)

# A third account with an authenticator app, so the 2FA flow can be tried at once: its TOTP
# secret is published below (add it to any authenticator app, or compute a code with
# pyotp). Its recovery codes are printed when they are made (first run, or --reset).
TWO_FACTOR_DEMO = DemoUser(
    "demo2fa", "demo2fa-user-password", "demo2fa@example.com", False, False, "ordinary user with 2FA (TOTP)"
)
# Published on purpose, like the passwords above.
TWO_FACTOR_DEMO_SECRET = "DEMOTOTPSECRETDEMOTOTPSECRET2345"


def where_mail_goes() -> str:
    """Where the demo's mail ends up, as the end of a sentence starting with "Mail "."""
    # Django >= 6.1 names the backend in MAILERS (example_project/settings.py).
    mailers = getattr(settings, "MAILERS", None)
    backend = mailers.get("default", {}).get("BACKEND", "") if mailers else settings.EMAIL_BACKEND
    if backend == "example_project.demo.mail.DemoMailBackend":
        return "is not delivered: it is printed in the terminal of the server and listed at /dev/mail/"
    if backend == "django.core.mail.backends.console.EmailBackend":
        return "is not delivered: it is printed in the terminal of the server"
    if backend == "django.core.mail.backends.filebased.EmailBackend":
        return "is not delivered: it is written as files (EMAIL_FILE_PATH)"
    return f"goes through {backend}"


Step = Callable[[dict[str, AbstractBaseUser]], list[str]]


class Command(BaseCommand):
    help = (
        "Create the demo users 'admin', 'demo' and 'demo2fa' when missing and print how to sign in "
        "(--reset: back to the demo passwords and new recovery codes)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--reset",
            action="store_true",
            help="Start over: demo passwords and flags again, new recovery codes for demo2fa.",
        )
        parser.add_argument(
            "--force", action="store_true", help="Run even with DEBUG off (never on a reachable server)."
        )

    @property
    def steps(self) -> list[Step]:
        """Extra set-up steps run after the users exist (override or append to extend)."""
        return [self._two_factor_step]

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options["verbosity"])
        self.reset = bool(options["reset"])
        if not settings.DEBUG and not options["force"]:
            raise CommandError("demo_setup creates users with published passwords: it needs DEBUG on (or --force).")
        with transaction.atomic():
            users = {spec.username: self._ensure(spec) for spec in DEMO_USERS}
            extra = [line for step in self.steps for line in step(users)]
        self.stdout.write(self.style.SUCCESS("Demo users (sign in at /accounts/login/; admin also at /admin/):"))
        for spec in DEMO_USERS:
            self.stdout.write(f"  {self._describe(spec, users[spec.username])}")
        for line in extra:
            self.stdout.write(f"  {line}")
        self.stdout.write(f"  Mail (password-reset links, sign-in codes) {where_mail_goes()}.")
        if not self.reset:
            self.stdout.write(
                "  Next runs keep these users as they are (passwords, recovery codes); "
                "--reset restores the demo passwords and makes new recovery codes."
            )

    def _ensure(self, spec: DemoUser) -> AbstractBaseUser:
        """Create the user when missing; with --reset, also give an existing one its demo password and flags."""
        model = get_user_model()
        user = model._default_manager.filter(**{model.USERNAME_FIELD: spec.username}).first()
        created = user is None
        if created:
            user = model(**{model.USERNAME_FIELD: spec.username})
        elif not self.reset:
            user._demo_created = False  # type: ignore[union-attr]
            return user  # type: ignore[return-value]
        user.set_password(spec.password)  # type: ignore[union-attr]
        user.email = spec.email  # type: ignore[union-attr]
        user.is_active = True  # type: ignore[union-attr]
        user.is_staff = spec.is_staff  # type: ignore[union-attr]
        user.is_superuser = spec.is_superuser  # type: ignore[union-attr]
        user.save()  # type: ignore[union-attr]
        user._demo_created = created  # type: ignore[union-attr]
        if self.verbosity >= 1:
            self.stdout.write(f"{'created' if created else 'reset'} user {spec.username!r}")
        return user  # type: ignore[return-value]

    def _describe(self, spec: DemoUser, user: AbstractBaseUser) -> str:
        """One line: username, password (or that it was changed), email, role."""
        if check_password(spec.password, user.password):  # no side effect (no rehash, no save)
            password = spec.password
        else:
            password = "(changed in the demo; --reset restores it)"
        email = getattr(user, "email", "") or "(none)"
        inactive = "" if user.is_active else " [inactive]"
        return f"username: {spec.username:<8} password: {password:<22} email: {email:<20} ({spec.role}){inactive}"

    def _two_factor_step(self, users: dict[str, AbstractBaseUser]) -> list[str]:
        """``demo2fa``: a confirmed authenticator and recovery codes, made when the user is made (or --reset)."""
        from django.utils import timezone

        from ephemeral_auth import crypto
        from ephemeral_auth.models import UserTwoFactor
        from ephemeral_auth.services import recovery, totp, two_factor

        user = self._ensure(TWO_FACTOR_DEMO)
        users[TWO_FACTOR_DEMO.username] = user
        lines = [self._describe(TWO_FACTOR_DEMO, user)]
        if user._demo_created or self.reset:  # type: ignore[attr-defined]
            two_factor.reset_two_factor(user)
            UserTwoFactor.objects.create(
                user=user, totp_secret=crypto.encrypt(TWO_FACTOR_DEMO_SECRET), totp_confirmed_at=timezone.now()
            )
            codes = recovery.generate(user)
            codes_line = f"recovery codes: {' '.join(codes)} (each works once)"
        else:
            codes_line = (
                f"recovery codes: {recovery.remaining(user)} unused, printed when they were made "
                "(new ones: the recovery codes page once signed in, or --reset)"
            )
        row = UserTwoFactor.objects.filter(user=user, totp_confirmed_at__isnull=False).first()
        if row is None or crypto.decrypt(row.totp_secret) != TWO_FACTOR_DEMO_SECRET:
            return [*lines, "  authenticator: changed or removed in the demo (--reset restores the one below)"]
        lines += [
            f"  TOTP secret: {TWO_FACTOR_DEMO_SECRET}",
            f"  otpauth URI: {totp.provisioning_uri(user, TWO_FACTOR_DEMO_SECRET)}",
            f"  current code: python -c \"import pyotp; print(pyotp.TOTP('{TWO_FACTOR_DEMO_SECRET}').now())\"",
            f"  {codes_line}",
        ]
        return lines
