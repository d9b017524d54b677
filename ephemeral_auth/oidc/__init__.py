"""OpenID Connect sign-in on top of mozilla-django-oidc, with flow state in the database.

* :mod:`.providers` — the provider registry (EPHEMERAL_AUTH_OIDC_PROVIDERS and
  mozilla-django-oidc's OIDC_* settings as the provider ``default``).
* :mod:`.discovery` — discovery documents and JWKS, fetched and cached.
* :mod:`.backend` — the authentication backend (a mozilla-django-oidc subclass).
* :mod:`.views` — the authorize and callback views (mozilla-django-oidc subclasses).

Policy (state, binding, user resolution, exchange) lives in
``ephemeral_auth.services.oidc``. See docs/oidc.md.
"""
