"""Exceptions raised by the services, each with a stable ``code``.

Views map ``code`` to an HTTP status and a message (``views.errors``). The
message of an exception never contains a raw token, code, secret or password:
callers may log ``str(exc)`` safely.
"""

from __future__ import annotations

from django.core.exceptions import BadRequest, PermissionDenied
from django.utils.translation import gettext_lazy as _

__all__ = [
    "EphemeralAuthError",
    "InvalidCode",
    "InvalidCredentials",
    "InvalidInput",
    "InvalidToken",
    "MethodNotEnabled",
    "NotEnrolled",
    "RateLimited",
    "ServiceUnavailable",
]


class EphemeralAuthError(Exception):
    """Base class: every failure of a service has a stable ``code``."""

    code: str = "error"
    default_message = _("The request could not be completed.")

    def __init__(self, message: str | None = None) -> None:
        self.message = str(message if message is not None else self.default_message)
        super().__init__(self.message)


class InvalidInput(EphemeralAuthError, BadRequest, ValueError):
    """Input of the wrong type, size or shape (NUL bytes, oversize, unknown type)."""

    code = "invalid_input"
    default_message = _("The request is malformed.")

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class InvalidToken(EphemeralAuthError, PermissionDenied):
    """The token is unknown, expired, already used, or bound to something else.

    One generic failure on purpose: telling "expired" from "wrong browser"
    would help an attacker probe the binding.
    """

    code = "invalid_token"
    default_message = _("The link or token is invalid or has expired.")


class InvalidCode(EphemeralAuthError, PermissionDenied):
    """A one-time code (TOTP, email, recovery) did not verify."""

    code = "invalid_code"
    default_message = _("The code is invalid or has expired.")


class InvalidCredentials(EphemeralAuthError, PermissionDenied):
    """Username and password did not authenticate."""

    code = "invalid_credentials"
    default_message = _("Incorrect username or password.")


class MethodNotEnabled(EphemeralAuthError, PermissionDenied):
    """The second-factor method is not one this login may use."""

    code = "method_not_enabled"
    default_message = _("This verification method is not available.")


class NotEnrolled(EphemeralAuthError, BadRequest):
    """The operation needs an enrolment (TOTP, email codes) the user lacks."""

    code = "not_enrolled"
    default_message = _("Two-factor authentication is not set up for this method.")


class RateLimited(EphemeralAuthError, PermissionDenied):
    """Too many events of one type for one key inside the window."""

    code = "rate_limited"
    default_message = _("Too many attempts. Please try again later.")

    def __init__(
        self, message: str | None = None, *, retry_after: int, event_type: str = ""
    ) -> None:
        self.retry_after = max(1, int(retry_after))
        self.event_type = event_type
        super().__init__(message)


class ServiceUnavailable(EphemeralAuthError):
    """The database (or another dependency) failed: fail closed."""

    code = "service_unavailable"
    default_message = _("The service is temporarily unavailable.")


class InvalidPassword(EphemeralAuthError, BadRequest):
    """A new password failed the project's AUTH_PASSWORD_VALIDATORS.

    ``messages`` holds the validators' messages (they describe the rules, never
    the password itself).
    """

    code = "invalid_password"
    default_message = _("The password does not meet the requirements.")

    def __init__(self, message: str | None = None, *, messages: list[str] | None = None) -> None:
        self.messages = list(messages or [])
        super().__init__(message)


__all__ += ["InvalidPassword"]


class OIDCError(EphemeralAuthError):
    """An OpenID Connect sign-in step failed; ``code`` names the step (docs/oidc.md).

    Deliberately not a PermissionDenied: django.contrib.auth.authenticate()
    swallows PermissionDenied raised by a backend, and the code would be lost.
    """

    code = "oidc_error"
    default_message = _("Sign-in with the identity provider failed.")

    def __init__(self, code: str, message: str | None = None) -> None:
        self.code = code
        super().__init__(message)


__all__ += ["OIDCError"]


class ReauthenticationRequired(EphemeralAuthError, PermissionDenied):
    """A sensitive change needs a fresh proof the session cannot show (docs/two-factor.md, "Fresh proof").

    With 2FA on: a session verified against the current configuration. With
    2FA off: a sign-in (or the password) within ``REAUTHENTICATION_WINDOW``.
    """

    code = "reauthentication_required"
    default_message = _("For your security, confirm it is you: sign in again, then retry.")


class TwoFactorUnavailable(EphemeralAuthError, PermissionDenied):
    """The user has 2FA but no method a login can use (email codes without an address, nothing else)."""

    code = "two_factor_unavailable"
    default_message = _(
        "Your account's second factor cannot be used: sign-in codes are sent by email, but the account "
        "has no email address. Use a recovery code or ask an administrator for help."
    )


__all__ += ["ReauthenticationRequired", "TwoFactorUnavailable"]


class CredentialCloned(InvalidCode):
    """A WebAuthn assertion's signature counter did not increase: the authenticator may have been cloned.

    The assertion is refused (WebAuthn, "signature counter"); the credential
    stays registered, and a warning is logged for the operators.
    """

    code = "credential_cloned"
    default_message = _(
        "This security key reported an unexpected signature counter and was refused. "
        "It may have been copied: use another sign-in method and remove the key from your account."
    )


__all__ += ["CredentialCloned"]
