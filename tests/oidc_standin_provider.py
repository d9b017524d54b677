"""A provider STAND-IN for the unit/HTTP tests of OIDC sign-in (no tests in this module).

The real end-to-end path is tested against a real OpenID provider (npm
oidc-provider) in tests/e2e/test_oidc_e2e.py. This stand-in exists for the
cases a real provider will not produce on demand: an ID token signed with the
wrong key, for another audience or issuer, already expired, with a wrong
nonce; a token endpoint that errors or drops the connection; a userinfo
answer for another subject. It is a real HTTP server on loopback (discovery,
JWKS, token and userinfo endpoints over HTTP, so the backend's network code
runs for real); only the front-channel login is skipped: :meth:`approve`
turns our authorization redirect into the provider's callback redirect.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["StandIn"]

_DELETE = object()


class StandIn:
    """A minimal OpenID provider whose answers a test can bend."""

    client_id = "standin-client"
    client_secret = "standin-secret"

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "standin-key-1"
        self.codes: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []
        self.reset()
        handler = _handler_for(self)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def reset(self) -> None:
        """Forget every bent answer (between tests)."""
        self.account: dict[str, Any] = {"sub": "alice-sub", "email": "alice@example.com", "email_verified": True}
        self.id_token_overrides: dict[str, Any] = {}
        self.userinfo_overrides: dict[str, Any] = {}
        self.token_status = 200
        self.token_error = "invalid_grant"
        self.drop_token_connection = False
        self.sign_with_other_key = False
        self.omit_id_token = False
        self.requests.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # Configuration helpers.

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def provider_settings(self, **overrides: Any) -> dict[str, Any]:
        """Return an EPHEMERAL_AUTH_OIDC_PROVIDERS entry for this stand-in."""
        return {
            "name": "Stand-in",
            "discovery_url": self.discovery_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "scopes": "openid email profile",
            **overrides,
        }

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "response_types_supported": ["code"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
        }

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [{**public, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    # The front channel, without a login page.

    def approve(self, authorization_url: str, *, state: str | None = None, **extra: str) -> str:
        """Return the callback path+query the provider would redirect the browser to."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        assert query["response_type"] == "code"
        assert query["client_id"] == self.client_id
        assert query["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(24)
        self.codes[code] = {
            "nonce": query.get("nonce"),
            "challenge": query["code_challenge"],
            "redirect_uri": query["redirect_uri"],
            "account": dict(self.account),
        }
        redirect = urlsplit(query["redirect_uri"])
        params = {"code": code, "state": query["state"] if state is None else state, **extra}
        return f"{redirect.path}?{urlencode(params)}"

    def refuse(self, authorization_url: str, error: str = "access_denied") -> str:
        """Return the callback path+query of a refused authorization (?error=)."""
        query = {k: v[0] for k, v in parse_qs(urlsplit(authorization_url).query).items()}
        redirect = urlsplit(query["redirect_uri"])
        return f"{redirect.path}?{urlencode({'error': error, 'state': query['state']})}"

    # The back channel.

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if self.token_status != 200:
            return self.token_status, {"error": self.token_error}
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return 401, {"error": "invalid_client"}
        grant = self.codes.pop(form.get("code", ""), None)
        if grant is None or form.get("redirect_uri") != grant["redirect_uri"]:
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if challenge != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "nonce": grant["nonce"],
            **grant["account"],
        }
        for name, value in self.id_token_overrides.items():
            if value is _DELETE:
                claims.pop(name, None)
            else:
                claims[name] = value
        signer = self.other_key if self.sign_with_other_key else self.key
        id_token = jwt.encode(claims, signer, algorithm="RS256", headers={"kid": self.kid})
        body: dict[str, Any] = {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer", "expires_in": 300}
        if not self.omit_id_token:
            body["id_token"] = id_token
        self.last_account = grant["account"]
        return 200, body

    def userinfo(self) -> dict[str, Any]:
        return {**getattr(self, "last_account", self.account), **self.userinfo_overrides}


StandIn.DELETE = _DELETE  # type: ignore[attr-defined]


def _handler_for(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            standin.requests.append(("GET", path))
            if path == "/.well-known/openid-configuration":
                self._send(200, standin.discovery())
            elif path == "/jwks":
                self._send(200, standin.jwks())
            elif path == "/userinfo":
                self._send(200, standin.userinfo())
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            standin.requests.append(("POST", path))
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if path != "/token":
                self._send(404, {"error": "not_found"})
                return
            if standin.drop_token_connection:
                # Close without an answer: the client sees a connection error.
                self.close_connection = True
                self.connection.shutdown(2)
                return
            status, body = standin.token(form)
            self._send(status, body)

    return Handler
