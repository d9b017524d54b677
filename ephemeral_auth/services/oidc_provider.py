"""An OpenID provider as the sign-in policy sees it: a plain, frozen description.

The registry that builds these from settings, and reaches the provider over
the network (discovery, endpoints), is ``ephemeral_auth.oidc.providers``,
which re-exports :class:`Provider`. It lives here, below the OIDC
integration, so that ``services.oidc`` (flows, user resolution) can take one
without importing the integration above it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["DEFAULT_CLAIMS", "Provider"]

# Claims read by default; a provider's "claims" mapping overrides single entries.
DEFAULT_CLAIMS: dict[str, str] = {
    "email": "email",
    "email_verified": "email_verified",
    "username": "preferred_username",
    "first_name": "given_name",
    "last_name": "family_name",
}


@dataclass(frozen=True)
class Provider:
    """One configured OpenID provider (a client registration at it)."""

    slug: str
    name: str
    client_id: str
    client_secret: str = field(default="", repr=False)
    discovery_url: str = ""
    issuer: str = ""
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    jwks_uri: str = ""
    userinfo_endpoint: str = ""
    scopes: str = "openid email profile"
    sign_algo: str = "RS256"
    idp_sign_key: str | None = field(default=None, repr=False)
    token_auth_method: str = "client_secret_post"
    claims: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_CLAIMS))
    create_users: bool = True
    # Linking a first sign-in to an existing account by its (verified) email: opt-in.
    link_by_verified_email: bool = False
    # ... and to a staff or superuser account: a second, separate opt-in.
    link_staff_by_verified_email: bool = False
    # The redirect_uri: this provider's own callback (oidc/<slug>/callback/, the default),
    # or the shared oidc/callback/ of registrations made before 0.2 (compatibility).
    shared_callback: bool = False
    assume_email_verified: bool = False
    trust_amr: bool = False
    mfa_amr_values: frozenset[str] | None = None
    use_userinfo: bool = True
    sync_user_fields: bool = False
    extra_params: Mapping[str, str] = field(default_factory=dict)
    pkce_verifier_length: int = 64

    def claim(self, name: str) -> str:
        """Return the claim that holds ``name`` (email, email_verified, username, ...)."""
        return self.claims.get(name, DEFAULT_CLAIMS.get(name, name))
