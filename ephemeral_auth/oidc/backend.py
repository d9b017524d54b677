"""The authentication backend: mozilla-django-oidc's, fed one provider's settings per flow.

mozilla-django-oidc's ``OIDCAuthenticationBackend`` does the code exchange
(with the PKCE verifier it is given) and verifies the ID token's signature and
expiry. This subclass, through the library's documented hooks only:

* answers ``get_settings`` from the flow's provider, so several providers share
  one backend class (the library reads one global set of OIDC_* settings);
* checks what the library leaves out: ``iss``, ``aud`` (and ``azp``), a required
  ``exp``/``iat``/``sub``, and the ``nonce`` against the one held in the database
  (constant-time, with its own error code);
* caches the JWKS (refetched once on an unknown ``kid``: key rotation);
* resolves users by the (issuer, subject) link first, then by a verified
  email, then by creating an account (``services.oidc``);
* turns every failure into an OIDCError with a stable code.

It only answers ``authenticate(request, oidc_flow=...)``; other credentials
(username/password) fall through to the next backend. The flow comes in
consumed and checked (``services.oidc.consume_state`` is the one check of the
``state``; the view adds the provider and the callback's ``code``): the
backend reads neither parameter from the request again. What it learns (the
verified ID token, a linked user's 2FA state) comes back with the user it
returns, as a frozen :class:`CallbackResult` (:func:`callback_result`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import absolutify, import_from_settings

from .. import conf
from ..exceptions import OIDCError
from ..services import oidc as oidc_service
from . import discovery, providers

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from ..services.factors import TwoFactorState
    from ..services.oidc import CallbackFlow, LinkedUser

__all__ = ["PROVIDER_CALLBACK", "CallbackResult", "OIDCBackend", "backend_path", "callback_result", "callback_uri"]

logger = logging.getLogger("ephemeral_auth.oidc")

# Claims that only the signed ID token may assert; userinfo does not override them.
_ID_TOKEN_ONLY = frozenset({"iss", "sub", "aud", "exp", "iat", "nbf", "nonce", "azp", "amr", "acr", "auth_time", "sid"})
MAX_ID_TOKEN_LENGTH = 16 * 1024

PROVIDER_CALLBACK = "ephemeral_auth_api:oidc_provider_callback"
# The attribute of a returned user that carries its CallbackResult (as Django's user.backend).
_RESULT_ATTRIBUTE = "_ephemeral_auth_oidc_result"


def callback_uri(request: HttpRequest, provider: providers.Provider | None = None) -> str:
    """Return the absolute redirect_uri (the same one the backend sends to the token endpoint).

    Each provider has its own (``oidc/<slug>/callback/``): a response can then
    only come back to the flow of the provider it was sent for. A provider
    with ``shared_callback`` uses ``EPHEMERAL_AUTH_OIDC_CALLBACK_URL``, the
    one callback of registrations made before (compatibility).
    """
    try:
        if provider is not None and not provider.shared_callback:
            return absolutify(request, reverse(PROVIDER_CALLBACK, args=[provider.slug]))
        return absolutify(request, reverse(conf.get("OIDC_CALLBACK_URL")))
    except NoReverseMatch:
        logger.error("the OIDC callback URL cannot be built: mount ephemeral_auth.api_urls")
        raise OIDCError("provider_misconfigured") from None


@dataclass(frozen=True)
class CallbackResult:
    """What the backend learnt in a callback, returned with its user (:func:`callback_result`).

    ``id_claims``: the verified ID token's claims (its ``amr`` may skip the local
    second factor). ``two_factor_state``: an already-linked user's 2FA state,
    read with the link, which saves the login step a SELECT.
    """

    id_claims: Mapping[str, Any] = field(default_factory=dict, repr=False)
    two_factor_state: TwoFactorState | None = None

    @property
    def two_factor_methods(self) -> list[str] | None:
        return self.two_factor_state.methods() if self.two_factor_state is not None else None


def callback_result(user: Any) -> CallbackResult:
    """Return what the backend learnt about the callback that returned ``user`` (empty if it did not)."""
    result = getattr(user, _RESULT_ATTRIBUTE, None)
    return result if isinstance(result, CallbackResult) else CallbackResult()


def backend_path() -> str:
    """Return the configured dotted path of this backend (or of a subclass of it)."""
    from django.utils.module_loading import import_string

    for path in settings.AUTHENTICATION_BACKENDS:
        try:
            backend = import_string(path)
        except ImportError:
            continue
        if isinstance(backend, type) and issubclass(backend, OIDCBackend):
            return path
    return f"{OIDCBackend.__module__}.{OIDCBackend.__qualname__}"


class OIDCBackend(OIDCAuthenticationBackend):
    """mozilla-django-oidc's backend, for ephemeral_auth's database-held flows."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The parent reads its OIDC_* settings here. Ours belong to the provider of a
        # flow, known only in authenticate(); reading them now would also raise
        # ImproperlyConfigured on every request of a project without a default
        # provider (Django instantiates backends for get_user()).
        self.UserModel = get_user_model()
        # Per call (Django makes a backend for each authenticate()): the flow, with the
        # verified ID token's claims once known; the provider's endpoints; the link found.
        self.flow: CallbackFlow | None = None
        self.endpoints: providers.Endpoints | None = None
        self._linked: LinkedUser | None = None

    # Settings: one provider per flow.

    def get_settings(self, attr: str, *args: Any) -> Any:  # type: ignore[override]
        """Answer mozilla-django-oidc's OIDC_* settings from the flow's provider."""
        if self.flow is None or self.flow.provider is None or self.endpoints is None:
            return import_from_settings(attr, *args)
        provider, where = self.flow.provider, self.endpoints
        per_provider: dict[str, Any] = {
            "OIDC_RP_CLIENT_ID": provider.client_id,
            "OIDC_RP_CLIENT_SECRET": provider.client_secret,
            "OIDC_RP_SIGN_ALGO": provider.sign_algo,
            "OIDC_RP_IDP_SIGN_KEY": provider.idp_sign_key,
            "OIDC_RP_SCOPES": provider.scopes,
            "OIDC_OP_TOKEN_ENDPOINT": where.token_endpoint,
            "OIDC_OP_USER_ENDPOINT": where.userinfo_endpoint or None,
            "OIDC_OP_JWKS_ENDPOINT": where.jwks_uri or None,
            "OIDC_CREATE_USER": provider.create_users,
            "OIDC_TOKEN_USE_BASIC_AUTH": provider.token_auth_method == "client_secret_basic",
            "OIDC_AUTHENTICATION_CALLBACK_URL": conf.get("OIDC_CALLBACK_URL"),
            "OIDC_TIMEOUT": conf.get("OIDC_HTTP_TIMEOUT"),
            # The nonce is checked in verify_token() against the database-held one,
            # in constant time and with its own error code.
            "OIDC_USE_NONCE": False,
        }
        if attr in per_provider:
            return per_provider[attr]
        return import_from_settings(attr, *args)

    # Entry point.

    def authenticate(  # type: ignore[override]
        self, request: HttpRequest | None, oidc_flow: CallbackFlow | None = None, **kwargs: Any
    ) -> AbstractBaseUser | None:
        """Exchange the flow's code and return the user; raise OIDCError on failure.

        mozilla-django-oidc's steps (token, ID token, stored tokens, user) and
        hooks, fed from the consumed flow rather than from the request's
        ``state`` and ``code``. The user carries a :class:`CallbackResult`.
        """
        if oidc_flow is None or request is None or oidc_flow.provider is None or not oidc_flow.code:
            return None
        self.request = request
        self.flow = oidc_flow
        self.endpoints = providers.endpoints(oidc_flow.provider)
        # Now that get_settings() answers for this provider, let the parent read them.
        super().__init__()
        user = self._sign_in(request, oidc_flow)
        if user is None:
            # No account matches and creation is off (or the library's hooks refused).
            raise OIDCError("account_not_found")
        if not self.user_can_authenticate(user):
            raise OIDCError("account_inactive")
        assert self.flow is not None
        result = CallbackResult(
            id_claims=self.flow.id_claims,
            two_factor_state=self._linked.state if self._linked is not None else None,
        )
        setattr(user, _RESULT_ATTRIBUTE, result)
        return user

    def _sign_in(self, request: HttpRequest, flow: CallbackFlow) -> AbstractBaseUser | None:
        """The code exchange of mozilla-django-oidc's authenticate(), with this flow's code and verifier.

        The redirect_uri is the one the authorization request carried: this
        provider's own callback (mozilla-django-oidc builds the one global URL).
        """
        assert flow.provider is not None
        token_info = self.get_token(
            {
                "client_id": self.OIDC_RP_CLIENT_ID,
                "client_secret": self.OIDC_RP_CLIENT_SECRET,
                "grant_type": "authorization_code",
                "code": flow.code,
                "redirect_uri": callback_uri(request, flow.provider),
                "code_verifier": flow.code_verifier,
            }
        )
        id_token = token_info.get("id_token")
        access_token = token_info.get("access_token")
        payload = self.verify_token(id_token, nonce=flow.nonce)
        if not payload:
            return None
        # The hooks below (filter_users_by_claims, update_user, ...) may read self.flow.id_claims.
        self.flow = replace(flow, id_claims=payload)
        self.store_tokens(access_token, id_token)
        try:
            return self.get_or_create_user(access_token, id_token, payload)  # type: ignore[no-any-return]
        except SuspiciousOperation as exc:
            logger.warning("failed to get or create user: %s", exc)
            return None

    def get_user(self, user_id: Any) -> AbstractBaseUser | None:
        """Return the session's user, refusing inactive ones (the parent does not)."""
        return ModelBackend.get_user(self, user_id)

    # Token endpoint.

    def get_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Exchange the code (with the PKCE verifier) at the token endpoint."""
        try:
            answer = super().get_token(payload)
        except requests.HTTPError as exc:
            logger.warning(
                "OIDC %s token endpoint refused the code: HTTP %s %s",
                self._slug(),
                getattr(exc.response, "status_code", "?"),
                _provider_error(exc.response),
            )
            raise OIDCError("token_error") from None
        except requests.RequestException as exc:
            logger.warning("OIDC %s token endpoint unreachable: %s", self._slug(), type(exc).__name__)
            raise OIDCError("network_error") from None
        except ValueError:
            raise OIDCError("token_error") from None
        if not isinstance(answer, dict):
            raise OIDCError("token_error")
        return answer

    # ID token.

    def retrieve_matching_jwk(self, token: str) -> Any:
        """Return the provider key that signed ``token``, from the cached JWKS."""
        header = jwt.get_unverified_header(token)
        kid, alg = header.get("kid"), header.get("alg")
        for refresh in (False, True):
            key_set = discovery.jwks(self.OIDC_OP_JWKS_ENDPOINT, refresh=refresh)
            for key in key_set["keys"]:
                if not isinstance(key, dict):
                    continue
                if import_from_settings("OIDC_VERIFY_KID", True) and key.get("kid") != kid:
                    continue
                if "alg" in key and key["alg"] != alg:
                    continue
                if key.get("use", "sig") != "sig":
                    continue
                return jwt.PyJWK(key)
        raise SuspiciousOperation("no key of the provider's JWKS matches the ID token")

    def verify_token(self, token: Any, **kwargs: Any) -> dict[str, Any]:
        """Verify signature and expiry (parent), then iss, aud, azp, nonce and required claims."""
        is_id_token = "nonce" in kwargs
        if not isinstance(token, str) or not token or len(token) > MAX_ID_TOKEN_LENGTH:
            raise OIDCError("id_token_invalid")
        try:
            payload = super().verify_token(token, **kwargs)
        except jwt.ExpiredSignatureError:
            raise OIDCError("id_token_expired") from None
        except OIDCError:
            raise
        except (SuspiciousOperation, jwt.PyJWTError, KeyError, TypeError, ValueError) as exc:
            logger.warning("OIDC %s ID token refused: %s", self._slug(), type(exc).__name__)
            raise OIDCError("id_token_invalid") from None
        if not isinstance(payload, dict):
            raise OIDCError("id_token_invalid")
        if is_id_token:
            self._check_id_token_claims(payload)
        return payload

    def _check_id_token_claims(self, payload: dict[str, Any]) -> None:
        assert self.flow is not None and self.flow.provider is not None and self.endpoints is not None
        client_id = self.flow.provider.client_id
        for name in ("iss", "sub", "aud", "exp", "iat"):
            if name not in payload:
                raise OIDCError("id_token_invalid")
        if not _same_issuer(payload["iss"], self.endpoints.issuer):
            raise OIDCError("iss_mismatch")
        audience = payload["aud"]
        audiences = audience if isinstance(audience, list) else [audience]
        if client_id not in audiences:
            raise OIDCError("aud_mismatch")
        # OpenID Connect Core 3.1.3.7: with several audiences, azp must be us.
        azp = payload.get("azp")
        if (len(audiences) > 1 or azp is not None) and azp != client_id:
            raise OIDCError("aud_mismatch")
        if not oidc_service.nonce_matches(self.flow, payload.get("nonce")):
            raise OIDCError("nonce_mismatch")

    # Claims and users.

    def get_userinfo(self, access_token: Any, id_token: Any, payload: dict[str, Any]) -> dict[str, Any]:
        """Return the ID token's claims, completed by the userinfo endpoint when there is one."""
        claims = dict(payload)
        if self.OIDC_OP_USER_ENDPOINT and isinstance(access_token, str) and access_token:
            try:
                info = super().get_userinfo(access_token, id_token, payload)
            except OIDCError:
                raise
            except requests.HTTPError:
                raise OIDCError("userinfo_error") from None
            except requests.RequestException:
                raise OIDCError("network_error") from None
            except ValueError:
                raise OIDCError("userinfo_error") from None
            # OpenID Connect Core 5.3.4: the userinfo sub must be the ID token's.
            if not isinstance(info, dict) or info.get("sub") != payload.get("sub"):
                raise OIDCError("userinfo_error")
            claims.update({key: value for key, value in info.items() if key not in _ID_TOKEN_ONLY})
        return claims

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        """Require a usable subject (raises OIDCError, so the code is not lost)."""
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject or len(subject) > 255 or "\x00" in subject:
            raise OIDCError("missing_claims")
        return True

    def filter_users_by_claims(self, claims: dict[str, Any]) -> list[AbstractBaseUser]:  # type: ignore[override]
        """Return the user linked to (issuer, sub), else the account a verified email links to (if allowed)."""
        provider = self._provider()
        self._linked = oidc_service.find_linked_user(provider, claims["sub"], issuer=str(claims["iss"]))
        if self._linked is not None:
            return [self._linked.user]
        return oidc_service.users_to_link(provider, claims)

    def update_user(self, user: AbstractBaseUser, claims: dict[str, Any]) -> AbstractBaseUser:
        """Link a first sign-in to the matched account; optionally copy profile claims."""
        provider = self._provider()
        if not self.user_can_authenticate(user):
            raise OIDCError("account_inactive")
        if self._linked is None:
            oidc_service.link_identity(user, provider, claims)
        if provider.sync_user_fields:
            oidc_service.sync_user(user, provider, claims)
        return user

    def create_user(self, claims: dict[str, Any]) -> AbstractBaseUser:
        """Create the account of a first sign-in (the provider's create_users is on)."""
        return oidc_service.create_user(self._provider(), claims)

    def store_tokens(self, access_token: Any, id_token: Any) -> None:
        """Keep OIDC_STORE_ACCESS_TOKEN / OIDC_STORE_ID_TOKEN for session-mode flows only."""
        if self.flow is not None and self.flow.mode == "session":
            super().store_tokens(access_token, id_token)

    def _provider(self) -> providers.Provider:
        assert self.flow is not None and self.flow.provider is not None
        return self.flow.provider

    def _slug(self) -> str:
        return self.flow.provider_slug if self.flow is not None else "?"


def _same_issuer(presented: Any, expected: str) -> bool:
    """Compare issuers exactly, tolerating only a trailing slash (seen in the wild)."""
    return isinstance(presented, str) and (presented == expected or presented.rstrip("/") == expected.rstrip("/"))


def _provider_error(response: Any) -> str:
    """Return the provider's OAuth error code for the log (never the body: it may echo input)."""
    try:
        body = response.json()
    except (AttributeError, ValueError):
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    return code[:64] if isinstance(code, str) and code.isprintable() else ""
