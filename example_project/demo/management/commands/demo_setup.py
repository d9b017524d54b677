"""Create or update the example project's demo users and print their credentials.

Idempotent: running it again resets the two users to the known passwords and
flags below. It refuses to run with DEBUG off (unless --force), because it
creates a superuser with a published password.

Extending it (e.g. to enrol the demo user in 2FA): add a step to
``Command.steps`` that takes the created users and returns lines to print.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

__all__ = ["DEMO_USERS", "Command", "DemoUser"]


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

Step = Callable[[dict[str, AbstractBaseUser]], list[str]]


class Command(BaseCommand):
    help = "Create or update the demo users 'admin' and 'demo' and print their credentials."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="Run even with DEBUG off (never on a reachable server)."
        )

    @property
    def steps(self) -> list[Step]:
        """Extra set-up steps run after the users exist (override or append to extend)."""
        return []

    def handle(self, *args: Any, **options: Any) -> None:
        self.verbosity = int(options["verbosity"])
        if not settings.DEBUG and not options["force"]:
            raise CommandError("demo_setup creates users with published passwords: it needs DEBUG on (or --force).")
        with transaction.atomic():
            users = {spec.username: self._upsert(spec) for spec in DEMO_USERS}
            extra = [line for step in self.steps for line in step(users)]
        self.stdout.write(self.style.SUCCESS("Demo users ready (log in at /admin/ or /accounts/login/):"))
        for spec in DEMO_USERS:
            self.stdout.write(f"  username: {spec.username:<6} password: {spec.password:<20} ({spec.role})")
        for line in extra:
            self.stdout.write(f"  {line}")

    def _upsert(self, spec: DemoUser) -> AbstractBaseUser:
        """Create the user, or reset an existing one to the demo password and flags."""
        model = get_user_model()
        user, created = model._default_manager.get_or_create(
            **{model.USERNAME_FIELD: spec.username}, defaults={"email": spec.email}
        )
        user.set_password(spec.password)
        user.email = spec.email  # type: ignore[attr-defined]
        user.is_active = True
        user.is_staff = spec.is_staff  # type: ignore[attr-defined]
        user.is_superuser = spec.is_superuser  # type: ignore[attr-defined]
        user.save()
        if self.verbosity >= 1:
            self.stdout.write(f"{'created' if created else 'updated'} user {spec.username!r}")
        return user


# --- Two-factor demo account (appended by the two-factor login; docs/two-factor.md) ---------
# A third account with an authenticator app, so the 2FA flow can be tried at once: its TOTP
# secret is published below (add it to any authenticator app, or compute a code with
# pyotp), and fresh recovery codes are printed on every run. The accounts above keep working
# with their password only.

TWO_FACTOR_DEMO = DemoUser(
    "demo2fa", "demo2fa-user-password", "demo2fa@example.com", False, False, "ordinary user with 2FA (TOTP)"
)
# Published on purpose, like the passwords above.
TWO_FACTOR_DEMO_SECRET = "DEMOTOTPSECRETDEMOTOTPSECRET2345"


def _two_factor_demo_step(self: Command, users: dict[str, AbstractBaseUser]) -> list[str]:
    """Create (or reset) ``demo2fa`` with a confirmed authenticator and new recovery codes."""
    from django.utils import timezone

    from ephemeral_auth import crypto
    from ephemeral_auth.models import UserTwoFactor
    from ephemeral_auth.services import recovery, totp, two_factor

    user = self._upsert(TWO_FACTOR_DEMO)
    two_factor.reset_two_factor(user)
    UserTwoFactor.objects.create(
        user=user, totp_secret=crypto.encrypt(TWO_FACTOR_DEMO_SECRET), totp_confirmed_at=timezone.now()
    )
    codes = recovery.generate(user)
    return [
        f"username: {TWO_FACTOR_DEMO.username} password: {TWO_FACTOR_DEMO.password} ({TWO_FACTOR_DEMO.role})",
        f"  TOTP secret: {TWO_FACTOR_DEMO_SECRET}",
        f"  otpauth URI: {totp.provisioning_uri(user, TWO_FACTOR_DEMO_SECRET)}",
        f"  current code: python -c \"import pyotp; print(pyotp.TOTP('{TWO_FACTOR_DEMO_SECRET}').now())\"",
        f"  recovery codes: {' '.join(codes)}",
    ]


_steps_before_two_factor = Command.steps
Command.steps = property(  # type: ignore[assignment, method-assign]
    lambda self: [*_steps_before_two_factor.fget(self), lambda users: _two_factor_demo_step(self, users)]  # type: ignore[attr-defined]
)
