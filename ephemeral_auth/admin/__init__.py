"""Admin pages for ephemeral_auth's tables: inspect, revoke, unlock, reset.

Security reasoning:

* Nothing secret is shown. Token digests, browser-challenge digests, OIDC
  nonces, PKCE verifiers, code digests, recovery-code digests and encrypted
  TOTP secrets are in no list column, no change view, no search field; the
  2FA list never even loads the encrypted secrets (they are deferred and the
  "enabled" flags are computed by the database). ``__str__`` of every model
  shows a type and a primary key only, so delete pages and the admin log
  are safe too.
* The rows are written by the services only: there is no "add" and no
  "change". What an administrator may do is what the services offer: revoke
  tokens, clear a subject's rate-limit events (unlock), reset a user's 2FA.
  Each of these is recorded in the admin log (``LogEntry``).
* The unlock form of the "Locked out now" page is a POST through
  ``admin_view`` (staff only, CSRF-protected) and checks the change or
  delete permission on rate-limit events itself.

The pages, one module each: ``tokens``, ``ratelimit`` (with "Locked out
now"), ``two_factor`` (2FA state and recovery codes), ``webauthn`` (security
keys and passkeys, no key material), ``identities`` (OIDC links); ``base``
holds what they share and ``login`` the admin's login.
Importing this package registers every ModelAdmin with ``admin.site``.
"""

from __future__ import annotations

from .base import SECRET_FIELDS, ReadOnlyAdmin
from .identities import OIDCIdentityAdmin
from .login import AdminLoginView, secure_admin_login
from .ratelimit import OccurredFilter, RateLimitEventAdmin
from .tokens import EphemeralTokenAdmin, TokenStateFilter
from .two_factor import RecoveryCodeAdmin, TOTPFilter, UserTwoFactorAdmin
from .webauthn import WebAuthnCredentialAdmin

__all__ = [
    "SECRET_FIELDS",
    "AdminLoginView",
    "EphemeralTokenAdmin",
    "OIDCIdentityAdmin",
    "OccurredFilter",
    "RateLimitEventAdmin",
    "ReadOnlyAdmin",
    "RecoveryCodeAdmin",
    "TOTPFilter",
    "TokenStateFilter",
    "UserTwoFactorAdmin",
    "WebAuthnCredentialAdmin",
    "secure_admin_login",
]
