"""WebAuthn security keys and passkeys as a second factor, and the management of a user's credentials.

The ceremonies themselves (challenges as single-use token rows, fido2's
verification, the signature counter) are ``services.webauthn``; this module
makes them a ``services.factors.Factor`` (registered as "webauthn" by the
wiring) and wraps every change of a user's credentials in the rules of the
other 2FA changes:

* **Fresh proof** (``proof.require_fresh_proof``) before the registration
  options, the registration itself, a rename and a removal: with 2FA on, a
  session verified under the current configuration; with 2FA off, a recent
  sign-in or the password.
* A credential added or removed is a change of the configuration:
  ``proof.note_change`` stamps it (the fingerprint changes: the user's other
  sessions end), the pending logins (``pre_auth``) are revoked, and
  ``authenticator_added`` / ``authenticator_removed`` are sent once
  committed, with method "webauthn". The first factor of an account comes
  with recovery codes (as email codes do: only when the user has none); the
  last factor removed takes the recovery codes with it (as for TOTP).
* **At login** the assertion is checked against a challenge bound to the
  pending login's own browser challenge (``PendingLogin.challenge``), so an
  answer from another browser finds no challenge. A failed assertion counts
  against the user's ``2fa_attempt`` budget (``COUNTED_ON_FAILURE``: after
  the check, not before it; a signature cannot be guessed, and a valid key
  is then never refused because someone else spent the budget with wrong
  codes). A success does not restart the budget's window.
* A WebAuthn assertion is never accepted as a typed code
  (``accept_user_code`` is False): ``reauthenticate/`` takes a password or a
  TOTP/recovery code.

No HTTP: the browser's challenge cookie arrives as a plain value.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import router

from .. import clock
from ..exceptions import MethodNotEnabled
from ..models import EphemeralToken, RecoveryCode, TokenType, UserTwoFactor, WebAuthnCredential
from ..signals import authenticator_added, authenticator_removed, send_on_commit
from . import recovery, tokens, webauthn
from .factors import TwoFactorState
from .pending import writes_together
from .proof import Proof, note_change, require_fresh_proof
from .webauthn_data import parse_authentication

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from .factors import PendingLogin

__all__ = [
    "COUNTED_ON_FAILURE",
    "Registered",
    "accept_user_code",
    "begin_login",
    "begin_registration",
    "check_login_code",
    "complete_registration",
    "describe",
    "login_binding",
    "normalize",
    "read_answer",
    "remove",
    "remove_by_admin",
    "rename",
]

logger = logging.getLogger("ephemeral_auth.webauthn")

COUNTED_ON_FAILURE = True


# The factor's interface (services.factors.Factor), registered as "webauthn" by the wiring.


def read_answer(code: Any) -> str:
    """Read an AuthenticationResponseJSON (object or text); InvalidInput if malformed; canonical JSON text."""
    if isinstance(code, str):
        parse_authentication(code)
        return code
    parse_authentication(code)
    return json.dumps(code, separators=(",", ":"))


def normalize(code: Any) -> str | None:
    """A WebAuthn answer is never a typed code (``read_answer`` reads it at login)."""
    return None


def begin_login(pending: PendingLogin, *, now: datetime | None = None) -> dict[str, Any]:
    """Return the request options of a pending login's WebAuthn step (MethodNotEnabled if it may not use it).

    The challenge is bound to the pending login's browser challenge and to
    its user. Two statements: the user's credentials, the challenge's INSERT.
    """
    if "webauthn" not in pending.methods:
        raise MethodNotEnabled()
    return webauthn.begin_authentication(
        pending.user, browser_challenge=pending.challenge, purpose=webauthn.SECOND_FACTOR, now=now
    )


def check_login_code(pending: PendingLogin, code: str, *, now: datetime, request: Any = None) -> None:
    """Verify the assertion of a pending login; raise InvalidCode (CredentialCloned is one).

    Three statements: the challenge's DELETE, the credential's SELECT, the
    counter's UPDATE. An unknown, used or other-browser challenge is an
    InvalidToken (nothing was consumed).
    """
    webauthn.complete_authentication(
        code, browser_challenge=pending.challenge, user=pending.user, purpose=webauthn.SECOND_FACTOR, now=now
    )


def login_binding(pending: PendingLogin, code: str) -> dict[str, Any]:
    """Nothing more on the ``pre_auth`` row: the challenge row was consumed by the check."""
    return {}


def accept_user_code(user: AbstractBaseUser, state: TwoFactorState, code: str, *, now: datetime) -> bool:
    """Never: a typed code is no WebAuthn assertion."""
    return False


# Managing the credentials.


@dataclass(frozen=True)
class Registered:
    """A credential just registered, and the recovery codes made with it (shown once; [] if none)."""

    credential: WebAuthnCredential
    recovery_codes: list[str]


def describe(credential: WebAuthnCredential) -> dict[str, Any]:
    """What a user is shown of one of their credentials (nothing of the key material)."""
    return {
        "id": credential.pk,
        "name": credential.name,
        "passkey": bool(credential.discoverable),
        "backup_eligible": credential.backup_eligible,
        "backed_up": credential.backup_state,
        "transports": credential.transport_list,
        "created_at": credential.created_at.isoformat(),
        "last_used_at": credential.last_used_at.isoformat() if credential.last_used_at else None,
    }


def begin_registration(
    user: AbstractBaseUser, *, proof: Proof, browser_challenge: str, passkey: bool = False, password: Any = None,
    now: datetime | None = None, request: Any = None,
) -> dict[str, Any]:
    """Check the fresh proof, then start a registration (``webauthn.begin_registration``'s options)."""
    now = now or clock.now()
    require_fresh_proof(user, proof, password=password, now=now, request=request)
    return webauthn.begin_registration(user, browser_challenge=browser_challenge, passkey=passkey, now=now)


def complete_registration(
    user: AbstractBaseUser, response: Any, *, proof: Proof, browser_challenge: str, name: Any,
    password: Any = None, now: datetime | None = None, request: Any = None,
) -> Registered:
    """Check the fresh proof, register the credential and record the change.

    Raises ReauthenticationRequired, InvalidInput (a malformed answer, a bad
    name, a key registered already), InvalidToken (no such challenge for
    this browser), InvalidCode (the answer does not verify).
    """
    now = now or clock.now()
    state = require_fresh_proof(user, proof, password=password, now=now, request=request)
    codes: list[str] = []
    with writes_together(WebAuthnCredential, UserTwoFactor, RecoveryCode, EphemeralToken):
        credential = webauthn.complete_registration(
            user, response, browser_challenge=browser_challenge, name=name, now=now
        )
        note_change(user, now=now)
        send_on_commit(
            authenticator_added, sender=UserTwoFactor, using=router.db_for_write(UserTwoFactor),
            user=user, method="webauthn", replaced=False, request=request,
        )
        tokens.revoke_tokens(user=user, token_type=TokenType.PRE_AUTH)
        if not state.enabled and not recovery.remaining(user):
            codes = recovery.generate(user, now=now, request=request)
    logger.info("WebAuthn credential #%s added for user #%s", credential.pk, user.pk)
    return Registered(credential=credential, recovery_codes=codes)


def rename(
    user: AbstractBaseUser, credential: Any, *, name: Any, proof: Proof, now: datetime | None = None,
    request: Any = None,
) -> None:
    """Rename one of the user's credentials (fresh proof; not a change of the configuration)."""
    require_fresh_proof(user, proof, now=now, request=request)
    webauthn.rename_credential(user, credential, name=name)


def remove(
    user: AbstractBaseUser, credential: Any, *, proof: Proof, now: datetime | None = None, request: Any = None
) -> None:
    """Remove one of the user's credentials (fresh proof) and record the change.

    Without any factor left, the recovery codes go too. Raises
    ReauthenticationRequired, InvalidInput (not one of theirs).
    """
    now = now or clock.now()
    state = require_fresh_proof(user, proof, now=now, request=request)
    with writes_together(WebAuthnCredential, UserTwoFactor, RecoveryCode, EphemeralToken):
        webauthn.remove_credential(user, credential)
        note_change(user, now=now)
        send_on_commit(
            authenticator_removed, sender=UserTwoFactor, using=router.db_for_write(UserTwoFactor),
            user=user, method="webauthn", request=request,
        )
        if not state.totp and not state.email and not webauthn.has_credentials(user):
            recovery.delete_all(user)
        tokens.revoke_tokens(user=user, token_type=TokenType.PRE_AUTH)


def remove_by_admin(credential: WebAuthnCredential) -> None:
    """Delete a credential from the admin: the same bookkeeping as :func:`remove`, without a proof."""
    user = credential.user
    remove(user, credential.pk, proof=Proof.trusted_caller())

