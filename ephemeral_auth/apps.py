from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from .services.jobs import TaskQueue


def _task_queue() -> TaskQueue:
    """ephemeral_auth.tasks, imported on first use: defining its task resolves the task backend (see tasks.py)."""
    from . import tasks

    return tasks


class EphemeralAuthConfig(AppConfig):
    name = "ephemeral_auth"
    verbose_name = _("Ephemeral authentication")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, checks_database, receivers  # noqa: F401  (registers checks and receivers)
        from .services import email_otp, factors, jobs, recovery, totp, webauthn_factor

        # The second factors, each one module with one interface (services.factors.Factor): the
        # login step and the management code check find them here, without importing them.
        factors.register("totp", totp)
        factors.register("webauthn", webauthn_factor)
        factors.register("email", email_otp)
        factors.register("recovery", recovery)

        # The job runners' task queue (services/jobs.py: a service may not import the tasks).
        jobs.connect_tasks(_task_queue)
