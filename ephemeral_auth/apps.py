from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EphemeralAuthConfig(AppConfig):
    name = "ephemeral_auth"
    verbose_name = _("Ephemeral authentication")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, checks_database, receivers  # noqa: F401  (registers checks and receivers)
