"""Strict reading of what a browser sends back from a WebAuthn ceremony.

The answer of ``navigator.credentials.create()`` / ``get()`` arrives as the
JSON of ``PublicKeyCredential.toJSON()`` (RegistrationResponseJSON,
AuthenticationResponseJSON): base64url strings inside a small object. It is
request data, so everything is checked here before fido2 or the database see
it, and every problem is an :class:`InvalidInput` (a 400, never a 500):

* the JSON must be an object of a bounded size; a string is parsed here;
* every binary field must be *canonical* unpadded base64url of a bounded
  length (Python's decoder would silently skip stray characters, so two
  different strings could name the same bytes);
* clientDataJSON must be a JSON object whose ``type``, ``challenge`` and
  ``origin`` are strings; the challenge must be canonical base64url: it is
  the raw token that names the challenge row;
* the attestation object and the authenticator data are parsed by fido2
  here, inside a guard (CBOR of any shape is refused, not raised).

The result is fido2's own typed objects, which ``Fido2Server`` accepts as is.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.utils.translation import gettext
from fido2 import cbor
from fido2.webauthn import (
    AttestationObject,
    AuthenticationResponse,
    AuthenticatorAssertionResponse,
    AuthenticatorAttestationResponse,
    AuthenticatorData,
    CollectedClientData,
    RegistrationResponse,
)

from ..exceptions import InvalidInput

__all__ = [
    "MAX_RESPONSE_CHARS",
    "ParsedAuthentication",
    "ParsedRegistration",
    "b64decode",
    "b64encode",
    "parse_authentication",
    "parse_registration",
]

# A whole answer: an attestation with a certificate chain fits in a few KiB.
MAX_RESPONSE_CHARS = 64 * 1024
MAX_CREDENTIAL_ID = 1023  # WebAuthn: credential ids are at most 1023 bytes
MAX_CLIENT_DATA = 4096
MAX_ATTESTATION_OBJECT = 32 * 1024
MAX_AUTHENTICATOR_DATA = 4096
MAX_SIGNATURE = 8192  # room for post-quantum (ML-DSA) signatures
MAX_USER_HANDLE = 64
MAX_CHALLENGE_CHARS = 128
KNOWN_TRANSPORTS = frozenset({"usb", "nfc", "ble", "hybrid", "internal", "smart-card"})

_B64URL = re.compile(r"[A-Za-z0-9_-]*")


def _malformed(field: str) -> InvalidInput:
    return InvalidInput(gettext("The security key's answer is malformed."), field=field)


def b64encode(data: bytes) -> str:
    """Unpadded base64url, as WebAuthn's JSON uses."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(value: Any, *, field: str, max_bytes: int, allow_empty: bool = False) -> bytes:
    """Decode canonical unpadded base64url of at most ``max_bytes`` bytes, else InvalidInput."""
    if (
        not isinstance(value, str)
        or len(value) > (max_bytes * 4 + 2) // 3
        or not _B64URL.fullmatch(value)
        or len(value) % 4 == 1
        or (not value and not allow_empty)
    ):
        raise _malformed(field)
    try:
        data = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise _malformed(field) from None
    if b64encode(data) != value:  # non-zero padding bits: another spelling of these bytes
        raise _malformed(field)
    return data


def _load(response: Any) -> Mapping[str, Any]:
    if isinstance(response, (bytes, bytearray)):
        try:
            response = bytes(response).decode("utf-8")
        except UnicodeDecodeError:
            raise _malformed("credential") from None
    if isinstance(response, str):
        if len(response) > MAX_RESPONSE_CHARS:
            raise _malformed("credential")
        try:
            response = json.loads(response)
        except (ValueError, RecursionError):
            raise _malformed("credential") from None
    if not isinstance(response, Mapping):
        raise _malformed("credential")
    if response.get("type", "public-key") != "public-key":
        raise _malformed("type")
    inner = response.get("response")
    if not isinstance(inner, Mapping):
        raise _malformed("response")
    return response


def _raw_id(response: Mapping[str, Any]) -> bytes:
    raw_id = b64decode(response.get("rawId"), field="rawId", max_bytes=MAX_CREDENTIAL_ID)
    if "id" in response and response["id"] != response["rawId"]:
        raise _malformed("id")
    return raw_id


@dataclass(frozen=True)
class ClientData:
    """clientDataJSON, checked: ``challenge`` is the raw token of the challenge row."""

    data: CollectedClientData
    challenge: str


def _client_data(inner: Mapping[str, Any]) -> ClientData:
    raw = b64decode(inner.get("clientDataJSON"), field="clientDataJSON", max_bytes=MAX_CLIENT_DATA)
    try:
        parsed = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        raise _malformed("clientDataJSON") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(parsed.get(name), str) for name in ("type", "challenge", "origin")
    ):
        raise _malformed("clientDataJSON")
    if not isinstance(parsed.get("crossOrigin", False), bool):
        raise _malformed("clientDataJSON")
    challenge = parsed["challenge"]
    b64decode(challenge, field="clientDataJSON", max_bytes=MAX_CHALLENGE_CHARS)
    try:
        data = CollectedClientData(raw)
    except Exception:  # any parse failure of client data is malformed input
        raise _malformed("clientDataJSON") from None
    return ClientData(data=data, challenge=challenge)


@dataclass(frozen=True)
class ParsedRegistration:
    """A registration answer, parsed: fido2's object plus what the JSON adds."""

    fido2: RegistrationResponse
    client: ClientData
    credential_id: bytes
    public_key: bytes
    transports: tuple[str, ...]
    # clientExtensionResults.credProps.rk: True/False when the client said, else None.
    resident_key: bool | None


def parse_registration(response: Any) -> ParsedRegistration:
    """Parse RegistrationResponseJSON (a mapping or its JSON text); InvalidInput if malformed."""
    outer = _load(response)
    inner = outer["response"]
    raw_id = _raw_id(outer)
    client = _client_data(inner)
    blob = b64decode(inner.get("attestationObject"), field="attestationObject", max_bytes=MAX_ATTESTATION_OBJECT)
    try:
        attestation = AttestationObject(blob)
        credential = attestation.auth_data.credential_data
        public_key_alg = credential.public_key.get(3) if credential is not None else None
        # The COSE key as it will be stored: fido2 must be able to write back what it read.
        public_key = cbor.encode(dict(credential.public_key)) if credential is not None else b""
    except Exception:  # CBOR of any shape: malformed input, not a 500
        raise _malformed("attestationObject") from None
    if credential is None or credential.credential_id != raw_id or not isinstance(public_key_alg, int):
        raise _malformed("attestationObject")
    transports_value = inner.get("transports", [])
    if not isinstance(transports_value, list) or len(transports_value) > 16:
        raise _malformed("transports")
    transports = tuple(
        sorted({t for t in transports_value if isinstance(t, str) and t in KNOWN_TRANSPORTS})
    )
    extensions = outer.get("clientExtensionResults") or {}
    if not isinstance(extensions, Mapping):
        raise _malformed("clientExtensionResults")
    cred_props = extensions.get("credProps") or {}
    resident_key = cred_props.get("rk") if isinstance(cred_props, Mapping) else None
    if resident_key is not None and not isinstance(resident_key, bool):
        raise _malformed("clientExtensionResults")
    try:
        fido2 = RegistrationResponse(
            raw_id=raw_id,
            response=AuthenticatorAttestationResponse(client_data=client.data, attestation_object=attestation),
        )
    except Exception:  # fido2 parsing: any failure is malformed input
        raise _malformed("credential") from None
    return ParsedRegistration(
        fido2=fido2,
        client=client,
        credential_id=raw_id,
        public_key=public_key,
        transports=transports,
        resident_key=resident_key,
    )


@dataclass(frozen=True)
class ParsedAuthentication:
    """An authentication answer, parsed."""

    fido2: AuthenticationResponse
    client: ClientData
    credential_id: bytes
    authenticator_data: AuthenticatorData
    user_handle: bytes | None


def parse_authentication(response: Any) -> ParsedAuthentication:
    """Parse AuthenticationResponseJSON (a mapping or its JSON text); InvalidInput if malformed."""
    outer = _load(response)
    inner = outer["response"]
    raw_id = _raw_id(outer)
    client = _client_data(inner)
    blob = b64decode(
        inner.get("authenticatorData"), field="authenticatorData", max_bytes=MAX_AUTHENTICATOR_DATA
    )
    try:
        auth_data = AuthenticatorData(blob)
    except Exception:  # any parse failure is malformed input
        raise _malformed("authenticatorData") from None
    signature = b64decode(inner.get("signature"), field="signature", max_bytes=MAX_SIGNATURE)
    handle_value = inner.get("userHandle")
    user_handle = (
        None
        if handle_value in (None, "")
        else b64decode(handle_value, field="userHandle", max_bytes=MAX_USER_HANDLE)
    )
    try:
        fido2 = AuthenticationResponse(
            raw_id=raw_id,
            response=AuthenticatorAssertionResponse(
                client_data=client.data,
                authenticator_data=auth_data,
                signature=signature,
                user_handle=user_handle,
            ),
        )
    except Exception:  # fido2 parsing: any failure is malformed input
        raise _malformed("credential") from None
    return ParsedAuthentication(
        fido2=fido2,
        client=client,
        credential_id=raw_id,
        authenticator_data=auth_data,
        user_handle=user_handle,
    )
