"""WebAuthn credentials: the relying party of the settings, and a user's keys (list, rename, remove).

The ceremonies that add and use credentials are in ``services.webauthn``,
which re-exports the functions of this module; see its docstring for the
choice of fido2 and the security reasoning.
"""

from __future__ import annotations

import hashlib
import logging
import unicodedata
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db import router
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity

from .. import conf
from ..exceptions import InvalidInput
from ..models import WebAuthnCredential
from .inputs import clean_text

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "MAX_NAME_LENGTH",
    "clean_name",
    "credential_key",
    "has_credentials",
    "list_credentials",
    "remove_credential",
    "rename_credential",
    "server",
    "user_handle",
]

logger = logging.getLogger("ephemeral_auth.webauthn")

MAX_NAME_LENGTH = 64


def alias() -> str:
    """The database of the credentials (beside the user table, like the other 2FA tables)."""
    return router.db_for_write(WebAuthnCredential)


def server() -> Fido2Server:
    """The relying party of the settings, read at call time."""
    rp_id = conf.get("WEBAUTHN_RP_ID")
    if not isinstance(rp_id, str) or not rp_id:
        raise ImproperlyConfigured("EPHEMERAL_AUTH_WEBAUTHN_RP_ID must be set to use WebAuthn.")
    origins = conf.get("WEBAUTHN_ORIGINS") or []
    if isinstance(origins, str) or not all(isinstance(o, str) for o in origins):
        raise ImproperlyConfigured("EPHEMERAL_AUTH_WEBAUTHN_ORIGINS must be a list of origins.")
    allowed = frozenset(origins)
    rp = PublicKeyCredentialRpEntity(name=conf.get("WEBAUTHN_RP_NAME") or rp_id, id=rp_id)
    # Exact origins when configured; else fido2's rule (https, the rp id or a subdomain of it).
    return Fido2Server(rp, attestation="none", verify_origin=(allowed.__contains__ if allowed else None))  # type: ignore[arg-type]


def user_handle(user: AbstractBaseUser) -> bytes:
    """The WebAuthn user.id of ``user``: 32 bytes keyed from SECRET_KEY, not the primary key itself.

    Stored with every credential, so a later change of SECRET_KEY does not
    break the check of existing passkeys.
    """
    return salted_hmac("ephemeral_auth.webauthn.user_handle", str(user.pk), algorithm="sha256").digest()


def credential_key(credential_id: bytes) -> str:
    """The unique lookup key of a credential id (hex SHA-256)."""
    return hashlib.sha256(credential_id).hexdigest()


def clean_name(name: Any) -> str:
    """A credential's name: plain text, no control characters, 1..64 characters after trimming."""
    text = clean_text(name, field="name", max_length=MAX_NAME_LENGTH * 4)
    text = " ".join(text.split())
    if not text or len(text) > MAX_NAME_LENGTH or any(unicodedata.category(c) in ("Cc", "Cf") for c in text):
        raise InvalidInput(
            gettext("Give the security key a name of 1 to %(n)s characters.") % {"n": MAX_NAME_LENGTH},
            field="name",
        )
    return text


# Managing a user's credentials.


def list_credentials(user: AbstractBaseUser) -> list[WebAuthnCredential]:
    """The user's credentials, oldest first. One SELECT."""
    return list(WebAuthnCredential.objects.using(alias()).filter(user_id=user.pk).order_by("created_at", "pk"))


def has_credentials(user: AbstractBaseUser) -> bool:
    """Whether the user has a WebAuthn credential. One SELECT."""
    return WebAuthnCredential.objects.using(alias()).filter(user_id=user.pk).exists()


def _pk(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**63:
        raise InvalidInput("credential must be a credential's id", field="credential")
    return value


def rename_credential(user: AbstractBaseUser, credential: Any, *, name: str) -> None:
    """Rename one of the user's credentials (by primary key). InvalidInput if it is not theirs. One UPDATE."""
    pk, name = _pk(credential), clean_name(name)
    updated = WebAuthnCredential.objects.using(alias()).filter(pk=pk, user_id=user.pk).update(name=name)
    if updated != 1:
        raise InvalidInput(gettext("No such security key."), field="credential")


def remove_credential(user: AbstractBaseUser, credential: Any) -> None:
    """Remove one of the user's credentials (by primary key). InvalidInput if it is not theirs. One DELETE."""
    pk = _pk(credential)
    deleted, _ = WebAuthnCredential.objects.using(alias()).filter(pk=pk, user_id=user.pk).delete()
    if not deleted:
        raise InvalidInput(gettext("No such security key."), field="credential")
    logger.info("removed WebAuthn credential #%s of user #%s", pk, user.pk)
