"""The authorization request: a flow stored by ``services.oidc``, sent to the provider's endpoint.

Here, above the services, because it needs the provider's endpoints (which
may mean fetching its discovery document) and mozilla-django-oidc's PKCE
helper; the flow itself (the state, the nonce, the PKCE verifier, the per-
address bound) is ``services.oidc``'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from urllib.parse import urlencode

from ..services import oidc as oidc_service
from ..services.oidc import Authorization
from . import providers
from .providers import Provider

__all__ = ["Authorization", "begin_authorization"]

# Authorization parameters an extra_params setting may not override.
_RESERVED_PARAMS = frozenset(
    {"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"}
)


def begin_authorization(
    provider: Provider,
    *,
    redirect_uri: str,
    mode: str,
    next_url: str,
    binding: str,
    ip: str = "0.0.0.0",  # noqa: S104 - a key, not a bind address
    extra_params: Mapping[str, str] | None = None,
    now: datetime | None = None,
) -> Authorization:
    """Store a new flow (state, nonce, PKCE verifier, mode, next) and return the provider URL.

    Bounded per client address (``oidc_authorize``, 20 per state lifetime by
    default): the flow is counted first, in the conditional-INSERT style of
    every limit, so one address never holds more than that many live
    ``oidc_state`` rows; beyond it RateLimited (the view answers 429). Then
    the provider's discovery document may be fetched (cached), then the row
    is written. Three statements: the count's INSERT and recount, the state's
    INSERT. Raises OIDCError, RateLimited.
    """
    # Here, not at the top: mozilla-django-oidc comes with the oidc extra (see ephemeral_auth.oidc).
    from mozilla_django_oidc.utils import generate_code_challenge

    oidc_service.admit_flow(mode=mode, binding=binding, ip=ip, now=now)
    where = providers.endpoints(provider)
    flow = oidc_service.store_flow(provider, mode=mode, next_url=next_url, binding=binding, now=now)
    params = {key: value for key, value in (extra_params or {}).items() if key not in _RESERVED_PARAMS}
    params.update(
        {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "scope": provider.scopes,
            # The raw state exists only here and in the browser; the database holds its digest.
            "state": flow.state,
            "nonce": flow.nonce,
            "code_challenge": generate_code_challenge(flow.code_verifier, "S256"),
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in where.authorization_endpoint else "?"
    return Authorization(
        url=f"{where.authorization_endpoint}{separator}{urlencode(params)}",
        binding=binding,
        max_age=flow.expires_in,
        state=flow.state,
    )
