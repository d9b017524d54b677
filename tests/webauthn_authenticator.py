"""A software WebAuthn authenticator for tests: real bytes, real ES256 signatures.

It plays the browser and the authenticator together: from the options JSON
a service returned it builds the answer a browser's
``PublicKeyCredential.toJSON()`` would send, with

* clientDataJSON naming the type, the challenge and the origin;
* authenticator data: SHA-256 of the rp id, the flags byte (UP, UV, BE, BS,
  AT), the big-endian signature counter and, at registration, the attested
  credential data (AAGUID, credential id, COSE public key);
* an attestation object of format "none";
* an assertion signature: ECDSA P-256 / SHA-256 over
  ``authenticatorData || SHA-256(clientDataJSON)``, DER-encoded.

CBOR is encoded by the small encoder below, not by fido2: the library under
test must read what an independent writer wrote. Every field can be spoiled
through keyword arguments, for the negative tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import struct
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["SoftAuthenticator", "b64", "cbor_encode", "unb64"]

UP, UV, BE, BS, AT = 0x01, 0x04, 0x08, 0x10, 0x40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for extra, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if value < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | extra]) + struct.pack(fmt, value)
    raise ValueError(value)


def cbor_encode(value: Any) -> bytes:
    """Canonical CBOR (RFC 8949, core deterministic) of ints, bytes, text, lists and maps."""
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return _head(0, value) if value >= 0 else _head(1, -1 - value)
    if isinstance(value, bytes):
        return _head(2, len(value)) + value
    if isinstance(value, str):
        data = value.encode("utf-8")
        return _head(3, len(data)) + data
    if isinstance(value, list):
        return _head(4, len(value)) + b"".join(cbor_encode(v) for v in value)
    if isinstance(value, dict):
        items = sorted((cbor_encode(k), cbor_encode(v)) for k, v in value.items())
        items.sort(key=lambda kv: (len(kv[0]), kv[0]))
        return _head(5, len(items)) + b"".join(k + v for k, v in items)
    raise TypeError(type(value))


class SoftAuthenticator:
    """One credential (an EC P-256 key) on a software authenticator."""

    def __init__(
        self,
        *,
        rp_id: str = "example.com",
        origin: str = "https://example.com",
        aaguid: bytes = bytes(range(16)),
        counter: int = 0,
        counter_step: int = 1,
        user_verified: bool = True,
        backup_eligible: bool = False,
        backed_up: bool = False,
        resident_key: bool | None = True,
        credential_id: bytes | None = None,
        transports: list[str] | None = None,
    ) -> None:
        self.rp_id = rp_id
        self.origin = origin
        self.aaguid = aaguid
        self.counter = counter
        self.counter_step = counter_step
        self.user_verified = user_verified
        self.backup_eligible = backup_eligible
        self.backed_up = backed_up
        self.resident_key = resident_key
        self.credential_id = credential_id if credential_id is not None else os.urandom(32)
        self.transports = ["usb", "nfc"] if transports is None else transports
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.user_handle: bytes | None = None

    def cose_key(self) -> dict[int, Any]:
        numbers = self.key.public_key().public_numbers()
        return {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}

    def _flags(self, *, attested: bool, user_verified: bool | None, extra: int = 0) -> int:
        flags = UP | (AT if attested else 0)
        if self.user_verified if user_verified is None else user_verified:
            flags |= UV
        if self.backup_eligible:
            flags |= BE
        if self.backed_up:
            flags |= BS
        return flags | extra

    def client_data(self, type_: str, challenge: str, origin: str | None = None, **extra: Any) -> bytes:
        body = {"type": type_, "challenge": challenge, "origin": origin or self.origin, "crossOrigin": False}
        body.update(extra)
        return json.dumps(body, separators=(",", ":")).encode()

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        type_: str = "webauthn.create",
        user_verified: bool | None = None,
        flags: int | None = None,
        cose_key: dict[int, Any] | None = None,
        client_extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The RegistrationResponseJSON for ``options`` (PublicKeyCredentialCreationOptionsJSON)."""
        self.user_handle = unb64(options["user"]["id"])
        client_data = self.client_data(type_, challenge or options["challenge"], origin, **(client_extra or {}))
        public_key = cbor_encode(cose_key if cose_key is not None else self.cose_key())
        attested = self.aaguid + struct.pack(">H", len(self.credential_id)) + self.credential_id + public_key
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode()).digest()
            + bytes([flags if flags is not None else self._flags(attested=True, user_verified=user_verified)])
            + struct.pack(">I", self.counter)
            + attested
        )
        attestation = cbor_encode({"fmt": "none", "attStmt": {}, "authData": auth_data})
        extensions = {} if self.resident_key is None else {"credProps": {"rk": self.resident_key}}
        return {
            "id": b64(self.credential_id),
            "rawId": b64(self.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "cross-platform",
            "response": {
                "clientDataJSON": b64(client_data),
                "attestationObject": b64(attestation),
                "transports": list(self.transports),
            },
            "clientExtensionResults": extensions,
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str | None = None,
        rp_id: str | None = None,
        challenge: str | None = None,
        type_: str = "webauthn.get",
        user_verified: bool | None = None,
        counter: int | None = None,
        flags: int | None = None,
        user_handle: bytes | bool | None = True,
        sign_with: ec.EllipticCurvePrivateKey | None = None,
        client_extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The AuthenticationResponseJSON for ``options``; the counter moves on by ``counter_step``.

        ``user_handle=True`` sends the handle stored at registration,
        ``None`` omits it, bytes send those.
        """
        if counter is None:
            self.counter += self.counter_step
            counter = self.counter
        client_data = self.client_data(type_, challenge or options["challenge"], origin, **(client_extra or {}))
        auth_data = (
            hashlib.sha256((rp_id or self.rp_id).encode()).digest()
            + bytes([flags if flags is not None else self._flags(attested=False, user_verified=user_verified)])
            + struct.pack(">I", counter)
        )
        signature = (sign_with or self.key).sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        handle = self.user_handle if user_handle is True else user_handle
        return {
            "id": b64(self.credential_id),
            "rawId": b64(self.credential_id),
            "type": "public-key",
            "authenticatorAttachment": "cross-platform",
            "response": {
                "clientDataJSON": b64(client_data),
                "authenticatorData": b64(auth_data),
                "signature": b64(signature),
                "userHandle": b64(handle) if isinstance(handle, bytes) else None,
            },
            "clientExtensionResults": {},
        }
