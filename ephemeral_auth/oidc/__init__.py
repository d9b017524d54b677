"""OpenID Connect sign-in on top of mozilla-django-oidc, with flow state in the database.

* :mod:`.providers` — the provider registry (EPHEMERAL_AUTH_OIDC_PROVIDERS and
  mozilla-django-oidc's OIDC_* settings as the provider ``default``).
* :mod:`.discovery` — discovery documents and JWKS, fetched and cached.
* :mod:`.authorization` — the authorization request (a flow stored by the services, sent to the provider).
* :mod:`.backend` — the authentication backend (a mozilla-django-oidc subclass).
* :mod:`.views` — the authorize and callback views (mozilla-django-oidc subclasses).

Policy (state, binding, user resolution, exchange) lives below, in
``ephemeral_auth.services.oidc``, which takes a provider as a plain
``services.oidc_provider.Provider`` and never imports this package (but for a
deprecated alias, ``services.oidc.begin_authorization``). See docs/oidc.md.

The libraries come with the ``oidc`` extra (``pip install "django-ephemeral-auth[oidc]"``);
system check ephemeral_auth.E024 names it when a provider is configured without them.
"""

from __future__ import annotations

import importlib

__all__ = ["EXTRA_INSTALL", "LIBRARIES", "missing_libraries"]

# The libraries OIDC sign-in needs, installed by the ``oidc`` extra: (module, distribution).
# Only oidc.backend and oidc.views import them at module level (oidc.discovery and
# oidc.authorization when they fetch or start a flow), and those two are imported only when
# OIDC is used (a request to oidc/..., an OIDCBackend in AUTHENTICATION_BACKENDS), so
# the app imports, migrates and serves password sign-in and 2FA without them.
LIBRARIES = (("mozilla_django_oidc", "mozilla-django-oidc"), ("jwt", "PyJWT"), ("requests", "requests"))
EXTRA_INSTALL = 'pip install "django-ephemeral-auth[oidc]"'


def missing_libraries() -> list[str]:
    """Return the distributions of the OIDC libraries that do not import (empty when OIDC can work)."""
    missing = []
    for module, distribution in LIBRARIES:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(distribution)
    return missing
