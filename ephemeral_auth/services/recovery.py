"""Recovery codes: shown once, stored as keyed digests, one row each, single use.

Security reasoning:

* A code is 10 characters from an alphabet without look-alikes (about 50
  bits), shown as ``XXXXX-XXXXX``. Only ``crypto.code_digest`` of it, scoped
  to the user, is stored: a database copy does not reveal codes, and the
  digest is keyed, so it cannot be brute-forced offline either.
* Using a code is one conditional DELETE whose row count decides (fixing a
  weakness of the original application): of parallel requests presenting the
  same code exactly one deletes the row and succeeds.
* Lookup is by digest (an index search), not a loop over hashes, so there is
  no timing signal about which code matched.

One module, one interface: ``normalize``, ``check_login_code``,
``login_binding`` and ``accept_user_code`` make it a
``services.factors.Factor`` (registered as "recovery" by the wiring).
Recovery codes count only beside another factor (``services.factors``). No
HTTP: ``request`` arguments are only handed on, untouched, to signal receivers.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError, transaction

from .. import clock, conf, crypto
from ..exceptions import InvalidCode, NotEnrolled
from ..models import RecoveryCode
from ..signals import recovery_codes_generated, send_on_commit
from . import engine
from .budget import forgive_failures
from .proof import Proof, check_user_code, note_change, require_fresh_proof

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from .factors import PendingLogin, TwoFactorState

__all__ = [
    "CODE_LENGTH",
    "accept_user_code",
    "check_login_code",
    "delete_all",
    "format_code",
    "generate",
    "login_binding",
    "normalize",
    "regenerate",
    "remaining",
    "use",
]

logger = logging.getLogger("ephemeral_auth.recovery")

CODE_LENGTH = 10
GROUP = 5


def format_code(code: str) -> str:
    """Return a code as people read it: ``ABCDE-FGHJK``."""
    return "-".join(code[i : i + GROUP] for i in range(0, len(code), GROUP))


def normalize(code: Any) -> str | None:
    """Return the code without separators, upper-cased, or None if it cannot be one."""
    if not isinstance(code, str):
        return None
    cleaned = code.strip().upper().replace("-", "").replace(" ", "")
    if len(cleaned) != CODE_LENGTH or any(c not in crypto.CODE_ALPHABET for c in cleaned):
        return None
    return cleaned


def _digest(user_id: Any, code: str) -> str:
    return crypto.code_digest(code, scope=f"recovery:{user_id}")


def generate(
    user: AbstractBaseUser, *, now: datetime | None = None, request: Any = None, method: str | None = None
) -> list[str]:
    """Replace the user's recovery codes with fresh ones; return them (formatted) to show once.

    Sends ``recovery_codes_generated`` (the count, never the codes) once
    committed; ``method`` names the second factor whose confirmation makes
    them (None: the user asked for new codes), handed on to the signal.
    """
    now = now or clock.now()
    count = int(conf.get("RECOVERY_CODE_COUNT"))
    codes: set[str] = set()
    while len(codes) < count:
        codes.add(crypto.random_code(CODE_LENGTH))
    alias = RecoveryCode.objects.db
    with transaction.atomic(using=alias):
        RecoveryCode.objects.filter(user_id=user.pk).delete()
        RecoveryCode.objects.bulk_create(
            [RecoveryCode(user_id=user.pk, code_hash=_digest(user.pk, code), created_at=now) for code in codes]
        )
        send_on_commit(
            recovery_codes_generated, sender=RecoveryCode, using=alias, user=user, count=len(codes),
            method=method, request=request,
        )
    logger.info("new recovery codes for user #%s", user.pk)
    return [format_code(code) for code in sorted(codes)]


def regenerate(
    user: AbstractBaseUser, code: Any, *, proof: Proof, now: datetime | None = None, request: Any = None
) -> list[str]:
    """Check a current code (TOTP or recovery), then replace the recovery codes.

    Needs a session verified against the current configuration; a change of
    the configuration (the user's other sessions end). Raises
    ReauthenticationRequired, NotEnrolled when the user has no second factor,
    InvalidCode, RateLimited, InvalidInput.
    """
    now = now or clock.now()
    state = require_fresh_proof(user, proof, now=now, request=request)
    if not state.enabled:
        raise NotEnrolled()
    check_user_code(user, code, now=now, request=request, state=state)
    codes = generate(user, now=now, request=request)
    note_change(user, now=now)
    return codes


def use(user_id: Any, code: str) -> bool:
    """Use up one recovery code (already normalised); return whether it existed. One DELETE.

    The digest is matched under SECRET_KEY and every SECRET_KEY_FALLBACKS
    entry, so rotating SECRET_KEY does not invalidate codes handed out before.
    """
    digests = crypto.code_digests(code, scope=f"recovery:{user_id}")
    try:
        deleted, _ = RecoveryCode.objects.filter(user_id=user_id, code_hash__in=digests).delete()
    except DatabaseError as exc:
        if not engine.is_conflict(exc):
            raise
        # Another node used this code at the same moment and won (a Galera
        # certification conflict). delete() has marked an enclosing transaction for rollback.
        return False
    if deleted:
        logger.info("recovery code used by user #%s", user_id)
    return deleted == 1


def remaining(user: AbstractBaseUser) -> int:
    """Return how many unused recovery codes the user has."""
    return RecoveryCode.objects.filter(user_id=user.pk).count()


def delete_all(user: AbstractBaseUser) -> int:
    """Delete every recovery code of the user; return how many."""
    deleted, _ = RecoveryCode.objects.filter(user_id=user.pk).delete()
    return int(deleted)


# The factor's interface (services.factors.Factor), registered as "recovery" by the wiring. Recovery
# codes are a way in beside another factor, never a second factor alone (services.factors.TwoFactorState).


def check_login_code(pending: PendingLogin, code: str, *, now: datetime, request: Any = None) -> None:
    """Use a recovery code for a pending login; raise InvalidCode. The attempt was counted already."""
    if not use(pending.user.pk, code):
        raise InvalidCode()
    forgive_failures(pending.user, now=now)


def login_binding(pending: PendingLogin, code: str) -> dict[str, Any]:
    """Nothing more to find on the ``pre_auth`` row: the code's row is deleted."""
    return {}


def accept_user_code(user: AbstractBaseUser, state: TwoFactorState, code: str, *, now: datetime) -> bool:
    """Use up a recovery code of a logged-in user as proof of presence (a real second-factor success)."""
    if not use(user.pk, code):
        return False
    forgive_failures(user, now=now)
    return True
