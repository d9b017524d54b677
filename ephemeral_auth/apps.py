from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EphemeralAuthConfig(AppConfig):
    name = "ephemeral_auth"
    verbose_name = _("Ephemeral authentication")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, checks_database, receivers  # noqa: F401  (registers checks and receivers)
        from .services import email_otp, factors, recovery, totp

        # The second factors, each one module with one interface (services.factors.Factor): the
        # login step and the management code check find them here, without importing them.
        factors.register("totp", totp)
        factors.register("email", email_otp)
        factors.register("recovery", recovery)
