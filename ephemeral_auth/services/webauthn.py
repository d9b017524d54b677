"""WebAuthn security keys and passkeys: registration and authentication ceremonies.

The library is Yubico's ``fido2`` (2.x), not Duo's ``webauthn``: it is
maintained by Yubico, a FIDO Alliance member that ships authenticators, and
models the whole CTAP2/WebAuthn data model (authenticator data and its flags,
attested credential data, COSE keys of every registered algorithm, the JSON
forms of the options and answers) rather than a set of helper functions; and
django-allauth's MFA uses it, so a site moving between the two keeps the same
verification code. fido2's ``Fido2Server`` checks each answer (type, origin,
challenge, relying party id hash, user presence and verification flags,
signature); this module adds what a server must keep: the challenges, the
credentials, the signature counter and the backup flags.

Security reasoning:

* **A challenge is a single-use row of the token table.** The WebAuthn
  challenge *is* the raw token (32 random bytes; the row stores only the
  digest of its base64url form), bound to the browser's challenge cookie
  (``browser_challenge``, digest in ``challenge_id``) and to the user when
  known. At completion the challenge is read from the client's
  clientDataJSON and the row is consumed by the token service's one
  conditional ``DELETE`` (digest, type, cookie, user, not expired) **before**
  the signature is checked: a replayed or raced answer finds no row, an
  answer from another browser matches nothing and consumes nothing.
* **The signature counter** follows WebAuthn: when the stored or the new
  counter is non-zero, the new one must be greater, else the assertion is
  refused as a possible clone (:class:`CredentialCloned`, logged as a
  warning). The new counter, the backup state and the time of use are
  written by one ``UPDATE`` conditional on the counter that was checked, so
  two assertions of one credential cannot both pass the check with the same
  old value.
* **Passkey sign-in** (``EPHEMERAL_AUTH_PASSKEY_LOGIN``) requires user
  verification, and finds the user from the credential; the userHandle the
  authenticator returns must be the one stored with the credential.
* Every failure is an ``ephemeral_auth.exceptions`` error: InvalidInput for a
  malformed answer (``webauthn_data``), InvalidToken for an unknown, expired,
  used or other-browser challenge, InvalidCode for an answer that does not
  verify.

Plain values only: the relying party and the origins come from settings
(``EPHEMERAL_AUTH_WEBAUTHN_RP_ID``, ``_RP_NAME``, ``_ORIGINS``); the web
edge passes the cookie value and the parsed JSON. Changing a user's
credentials is a second-factor change: the caller checks the fresh proof
first (``two_factor.require_fresh_proof``) and records it after
(``two_factor.note_change``), as for the other factors.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext
from fido2 import cbor
from fido2.cose import CoseKey, UnsupportedKey
from fido2.server import Fido2Server
from fido2.webauthn import (
    Aaguid,
    AttestedCredentialData,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    PublicKeyCredentialType,
    PublicKeyCredentialUserEntity,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from .. import clock, conf
from ..exceptions import CredentialCloned, InvalidCode, InvalidInput, MethodNotEnabled, NotEnrolled
from ..models import TokenType, WebAuthnCredential
from . import tokens
from .webauthn_credentials import (
    alias,
    clean_name,
    credential_key,
    has_credentials,
    list_credentials,
    remove_credential,
    rename_credential,
    server,
    user_handle,
)
from .webauthn_data import b64decode, parse_authentication, parse_registration

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "MAX_CREDENTIALS",
    "PASSKEY",
    "SECOND_FACTOR",
    "begin_authentication",
    "begin_registration",
    "complete_authentication",
    "complete_registration",
    "has_credentials",
    "list_credentials",
    "remove_credential",
    "rename_credential",
    "user_handle",
]

logger = logging.getLogger("ephemeral_auth.webauthn")

SECOND_FACTOR = "second_factor"
PASSKEY = "passkey"
PURPOSES = (SECOND_FACTOR, PASSKEY)
# Credentials one user may register (each registration adds a row).
MAX_CREDENTIALS = 20

_TOKEN_TYPE = {SECOND_FACTOR: TokenType.WEBAUTHN_LOGIN, PASSKEY: TokenType.PASSKEY_LOGIN}


def _timeout_ms(token_type: str) -> int:
    return int(conf.token_ttl(token_type).total_seconds() * 1000)


def _options_json(options: Any) -> dict[str, Any]:
    """fido2's options as plain JSON values (PublicKeyCredential*OptionsJSON)."""
    return json.loads(json.dumps(dict(options.public_key)))  # type: ignore[no-any-return]


def _descriptors(rows: list[tuple[Any, str]]) -> list[PublicKeyCredentialDescriptor]:
    known = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            type=PublicKeyCredentialType.PUBLIC_KEY,
            id=bytes(credential_id),
            transports=[AuthenticatorTransport(t) for t in transports.split(",") if t in known] or None,
        )
        for credential_id, transports in rows
    ]


def _saved(user: AbstractBaseUser | None) -> AbstractBaseUser:
    if user is None or getattr(user, "pk", None) is None:
        raise InvalidInput("user must be a saved user", field="user")
    return user


# Registration.


def begin_registration(
    user: AbstractBaseUser, *, browser_challenge: str, passkey: bool = False, now: datetime | None = None
) -> dict[str, Any]:
    """Start registering a credential for ``user``; return PublicKeyCredentialCreationOptionsJSON.

    ``passkey=True`` asks for a discoverable credential with user verification
    (needs ``EPHEMERAL_AUTH_PASSKEY_LOGIN``); otherwise a security key used as
    a second factor. The user's registered credentials are excluded. Two
    statements: the user's credentials, the challenge's INSERT.
    """
    user = _saved(user)
    if passkey and not conf.get("PASSKEY_LOGIN"):
        raise MethodNotEnabled()
    rp = server()
    rows = list(
        WebAuthnCredential.objects.using(alias())
        .filter(user_id=user.pk)
        .values_list("credential_id", "transports")[: MAX_CREDENTIALS + 1]
    )
    if len(rows) >= MAX_CREDENTIALS:
        raise InvalidInput(
            gettext("You have registered the most security keys allowed: remove one first."), field="credential"
        )
    issued = tokens.issue_token(
        TokenType.WEBAUTHN_REGISTER,
        user=user,
        challenge_id=browser_challenge,
        mode=PASSKEY if passkey else SECOND_FACTOR,
        now=now,
    )
    requirement = UserVerificationRequirement.REQUIRED if passkey else UserVerificationRequirement.DISCOURAGED
    rp.timeout = _timeout_ms(TokenType.WEBAUTHN_REGISTER)  # type: ignore[assignment]
    username = user.get_username()
    full_name = getattr(user, "get_full_name", lambda: "")() or username
    options, _state = rp.register_begin(
        PublicKeyCredentialUserEntity(name=username, id=user_handle(user), display_name=full_name),
        _descriptors(rows),  # type: ignore[arg-type]
        resident_key_requirement=ResidentKeyRequirement.REQUIRED if passkey else ResidentKeyRequirement.DISCOURAGED,
        user_verification=requirement,
        challenge=_challenge_bytes(issued.raw),
        extensions={"credProps": True},
    )
    return _options_json(options)


def _challenge_bytes(raw: str) -> bytes:
    return b64decode(raw, field="challenge", max_bytes=64)


def _verification_failed(reason: str, exc: BaseException | None = None) -> InvalidCode:
    logger.debug("refused a WebAuthn answer: %s%s", reason, f" ({exc})" if exc else "")
    return InvalidCode(gettext("The security key could not be verified."))


def complete_registration(
    user: AbstractBaseUser,
    response: Any,
    *,
    browser_challenge: str,
    name: str,
    now: datetime | None = None,
) -> WebAuthnCredential:
    """Finish a registration begun by :func:`begin_registration`; return the new credential.

    ``response`` is RegistrationResponseJSON (a mapping or its text). The
    challenge row is consumed first (InvalidToken when unknown, expired, used,
    of another browser or user), then fido2 verifies the answer
    (InvalidCode). A credential registered already is an InvalidInput. Two
    statements: the challenge's DELETE, the credential's INSERT.
    """
    user = _saved(user)
    name = clean_name(name)
    parsed = parse_registration(response)
    rp = server()
    now = now or clock.now()
    token = tokens.consume_token(
        parsed.client.challenge, TokenType.WEBAUTHN_REGISTER, challenge_id=browser_challenge, user=user, now=now
    )
    passkey = token.mode == PASSKEY
    state = {
        "challenge": parsed.client.challenge,
        "user_verification": (
            UserVerificationRequirement.REQUIRED if passkey else UserVerificationRequirement.DISCOURAGED
        ),
    }
    if parsed.client.data.cross_origin:
        raise _verification_failed("cross-origin")
    try:
        auth_data = rp.register_complete(state, parsed.fido2)
    except (ValueError, TypeError, KeyError) as exc:
        raise _verification_failed("registration", exc) from None
    credential = auth_data.credential_data
    if credential is None:  # pragma: no cover - webauthn_data requires it
        raise _verification_failed("no credential data")
    public_key = credential.public_key
    if isinstance(public_key, UnsupportedKey) or public_key.get(3) not in CoseKey.supported_algorithms():
        raise _verification_failed("unsupported algorithm")
    if passkey and parsed.resident_key is False:
        raise _verification_failed("not a discoverable credential")
    if auth_data.is_backed_up() and not auth_data.is_backup_eligible():
        raise _verification_failed("backed up but not backup eligible")
    row = WebAuthnCredential(
        user=user,  # type: ignore[misc]
        credential_id=bytes(credential.credential_id),
        credential_key=credential_key(credential.credential_id),
        public_key=parsed.public_key,
        user_handle=user_handle(user),
        sign_count=auth_data.counter,
        aaguid=str(credential.aaguid) if credential.aaguid else "",
        transports=",".join(parsed.transports),
        backup_eligible=auth_data.is_backup_eligible(),
        backup_state=auth_data.is_backed_up(),
        discoverable=parsed.resident_key if parsed.resident_key is not None else (True if passkey else None),
        user_verified_at_registration=auth_data.is_user_verified(),
        name=name,
        created_at=now,
    )
    using = alias()
    try:
        # A savepoint inside a caller's transaction, so that a duplicate leaves it usable.
        with transaction.atomic(using=using):
            row.save(force_insert=True, using=using)
    except IntegrityError:
        raise InvalidInput(gettext("This security key is already registered."), field="credential") from None
    logger.info("registered WebAuthn credential #%s for user #%s", row.pk, user.pk)
    return row


# Authentication.


def begin_authentication(
    user: AbstractBaseUser | None,
    *,
    browser_challenge: str,
    purpose: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Start an authentication; return PublicKeyCredentialRequestOptionsJSON.

    ``purpose="second_factor"``: the second step of ``user``'s pending login,
    with their credentials allowed (NotEnrolled when they have none): two
    statements. ``purpose="passkey"`` (``EPHEMERAL_AUTH_PASSKEY_LOGIN``):
    passwordless, user verification required; ``user=None`` lets the
    authenticator offer its discoverable credentials (one INSERT), a known
    user narrows them to theirs.
    """
    purpose = _purpose(purpose, user)
    rp = server()
    token_type = _TOKEN_TYPE[purpose]
    descriptors: list[PublicKeyCredentialDescriptor] = []
    if user is not None:
        user = _saved(user)
        rows = list(
            WebAuthnCredential.objects.using(alias())
            .filter(user_id=user.pk)
            .values_list("credential_id", "transports")[: MAX_CREDENTIALS * 2]
        )
        if not rows:
            raise NotEnrolled()
        descriptors = _descriptors(rows)
    issued = tokens.issue_token(token_type, user=user, challenge_id=browser_challenge, now=now)
    rp.timeout = _timeout_ms(token_type)  # type: ignore[assignment]
    options, _state = rp.authenticate_begin(
        descriptors or None,  # type: ignore[arg-type]
        user_verification=(
            UserVerificationRequirement.REQUIRED if purpose == PASSKEY else UserVerificationRequirement.DISCOURAGED
        ),
        challenge=_challenge_bytes(issued.raw),
    )
    return _options_json(options)


def _purpose(purpose: Any, user: AbstractBaseUser | None) -> str:
    if purpose not in PURPOSES:
        raise InvalidInput("purpose must be 'second_factor' or 'passkey'", field="purpose")
    if purpose == PASSKEY and not conf.get("PASSKEY_LOGIN"):
        raise MethodNotEnabled()
    if purpose == SECOND_FACTOR and user is None:
        raise InvalidInput("a second factor needs the user of the pending login", field="user")
    return str(purpose)


def complete_authentication(
    response: Any,
    *,
    browser_challenge: str,
    user: AbstractBaseUser | None = None,
    purpose: str | None = None,
    now: datetime | None = None,
) -> tuple[AbstractBaseUser, WebAuthnCredential]:
    """Finish an authentication; return the user and the credential that signed.

    ``purpose`` defaults to ``"second_factor"`` with a user, ``"passkey"``
    without. The challenge row is consumed first (InvalidToken), then the
    credential is found (its user's, or any for a passkey), fido2 checks the
    signature and flags (InvalidCode), the counter is checked
    (CredentialCloned) and written. Three statements: the challenge's DELETE,
    the credential's SELECT (with its user, for a passkey), the UPDATE.
    """
    purpose = _purpose(purpose if purpose is not None else (SECOND_FACTOR if user else PASSKEY), user)
    if user is not None:
        user = _saved(user)
    parsed = parse_authentication(response)
    rp = server()
    now = now or clock.now()
    token = tokens.consume_token(
        parsed.client.challenge, _TOKEN_TYPE[purpose], challenge_id=browser_challenge, user=user, now=now
    )
    owner_pk = user.pk if user is not None else token.user_id
    queryset = WebAuthnCredential.objects.using(alias()).filter(credential_key=credential_key(parsed.credential_id))
    if owner_pk is not None:
        queryset = queryset.filter(user_id=owner_pk)
    if user is None:
        # With the user's 2FA row: the passkey login marks the session without another read.
        queryset = queryset.select_related("user", "user__two_factor")
    rows = list(queryset[:1])
    if not rows or bytes(rows[0].credential_id) != parsed.credential_id:
        raise _verification_failed("unknown credential")
    credential = rows[0]
    if user is not None:
        credential.user = user  # type: ignore[assignment]
    owner = credential.user
    if not getattr(owner, "is_active", True):
        raise _verification_failed("inactive user")
    stored_handle = bytes(credential.user_handle)
    if parsed.user_handle is not None and parsed.user_handle != stored_handle:
        raise _verification_failed("user handle mismatch")
    if parsed.user_handle is None and purpose == PASSKEY and user is None:
        raise _verification_failed("no user handle in a discoverable sign-in")
    _verify_assertion(rp, parsed, credential, passkey=purpose == PASSKEY)
    _record_use(credential, parsed.authenticator_data, now=now)
    return owner, credential


def _verify_assertion(rp: Fido2Server, parsed: Any, credential: WebAuthnCredential, *, passkey: bool) -> None:
    if parsed.client.data.cross_origin:
        raise _verification_failed("cross-origin")
    try:
        public_key = CoseKey.parse(cbor.decode(bytes(credential.public_key)))  # type: ignore[arg-type]
        attested = AttestedCredentialData.create(
            Aaguid.parse(credential.aaguid) if credential.aaguid else Aaguid.NONE,
            bytes(credential.credential_id),
            public_key,
        )
        rp.authenticate_complete(
            {
                "challenge": parsed.client.challenge,
                "user_verification": (
                    UserVerificationRequirement.REQUIRED if passkey else UserVerificationRequirement.DISCOURAGED
                ),
            },
            [attested],
            parsed.fido2,
        )
    except (ValueError, TypeError, KeyError, NotImplementedError) as exc:
        raise _verification_failed("assertion", exc) from None
    auth_data = parsed.authenticator_data
    if auth_data.is_backup_eligible() != credential.backup_eligible:
        raise _verification_failed("backup eligibility changed")
    if auth_data.is_backed_up() and not auth_data.is_backup_eligible():
        raise _verification_failed("backed up but not backup eligible")


def _record_use(credential: WebAuthnCredential, auth_data: Any, *, now: datetime) -> None:
    """Check the signature counter and write it with the backup state, in one conditional UPDATE."""
    stored, new = int(credential.sign_count), int(auth_data.counter)
    if (stored or new) and new <= stored:
        logger.warning(
            "WebAuthn credential #%s of user #%s: signature counter %s after %s, refused as a possible clone",
            credential.pk,
            credential.user_id,
            new,
            stored,
        )
        raise CredentialCloned()
    updated = (
        WebAuthnCredential.objects.using(alias())
        .filter(pk=credential.pk, sign_count=stored)
        .update(sign_count=new, backup_state=auth_data.is_backed_up(), last_used_at=now)
    )
    if updated != 1:
        # Another assertion of this credential (or its removal) came first.
        raise _verification_failed("counter changed meanwhile")
    credential.sign_count, credential.backup_state, credential.last_used_at = new, auth_data.is_backed_up(), now
