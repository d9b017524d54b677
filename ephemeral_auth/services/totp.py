"""TOTP (RFC 6238) with pyotp: enrolment, verification and the replay guard.

Security reasoning:

* Secrets are encrypted at rest (``crypto.encrypt``, Fernet with rotation).
* A code is accepted at most once across its whole acceptance window (fixing
  a weakness of the original application). We find the exact time step the
  code belongs to, trying every
  offset in ``-TOTP_TOLERANCE..+TOTP_TOLERANCE`` with a constant-time compare,
  and accept it only through one conditional UPDATE:
  ``SET totp_last_step = s WHERE pk = u AND (totp_last_step < s OR IS NULL)``.
  The database decides: of parallel requests with the same code exactly one
  updates the row, and a code of step ``s`` can never be used again, nor can
  any code of an earlier step, including through the ``+1`` window.
* The enrolment code is recorded the same way, so the code typed at setup
  cannot be replayed at login.
* Re-enrolment writes a *pending* secret; the active one keeps working until
  the new authenticator is confirmed (fixing a weakness of the original application). Replacing an active
  authenticator requires a current code.

One module, one interface: ``normalize``, ``check_login_code``,
``login_binding`` and ``accept_user_code`` make it a
``services.factors.Factor`` (registered as "totp" by the wiring). No HTTP:
``request`` arguments are only handed on, untouched, to signal receivers.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyotp
from django.db import DatabaseError, router
from django.db.models import Q
from django.utils.translation import gettext

from .. import clock, conf, crypto
from ..exceptions import InvalidCode, NotEnrolled, ServiceUnavailable
from ..models import TokenType, UserTwoFactor
from ..signals import authenticator_added, authenticator_removed, send_on_commit
from . import engine, recovery, tokens
from .budget import count_attempt, note_failure
from .factors import clean_code
from .proof import Proof, check_user_code, require_fresh_proof

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

    from .factors import PendingLogin, TwoFactorState

__all__ = [
    "TotpSetup",
    "accept",
    "accept_user_code",
    "check_login_code",
    "confirm",
    "disable",
    "login_binding",
    "matching_step",
    "new_secret",
    "normalize",
    "pending_setup",
    "provisioning_uri",
    "qr_svg",
    "reencrypt_secrets",
    "setup",
    "step_at",
]

logger = logging.getLogger("ephemeral_auth.totp")


def _totp(secret: str) -> pyotp.TOTP:
    try:
        return pyotp.TOTP(secret, digits=int(conf.get("TOTP_DIGITS")), interval=int(conf.get("TOTP_PERIOD")))
    except (ValueError, TypeError):
        # Not base32 or too short for pyotp (e.g. an imported 80-bit secret): fail closed.
        logger.error("a stored TOTP secret is unusable (not base32 or shorter than 112 bits)")
        raise ServiceUnavailable() from None


def new_secret() -> str:
    """Return a fresh base32 secret (160 bits, what authenticator apps expect)."""
    return pyotp.random_base32()


def normalize(code: Any) -> str | None:
    """Return the code as ASCII digits of the configured length, or None.

    Spaces and hyphens are dropped ("123 456"); anything else (letters,
    non-ASCII digits such as "١٢٣") makes the code malformed.
    """
    if not isinstance(code, str):
        return None
    cleaned = code.strip().replace(" ", "").replace("-", "")
    digits = int(conf.get("TOTP_DIGITS"))
    if len(cleaned) != digits or not cleaned.isascii() or not cleaned.isdigit():
        return None
    return cleaned


def step_at(now: datetime) -> int:
    """Return the TOTP time step (counter) of an instant."""
    return int(now.timestamp()) // int(conf.get("TOTP_PERIOD"))


def matching_step(secret: str, code: str, *, now: datetime) -> int | None:
    """Return the time step within the tolerance whose code is ``code``, or None.

    Every candidate step is computed and compared in constant time, so the
    answer's timing does not tell which offset matched. If two steps share the
    code (a one-in-a-million coincidence) the later one is taken: the replay
    guard then refuses more, never less.
    """
    totp = _totp(secret)
    current = step_at(now)
    tolerance = int(conf.get("TOTP_TOLERANCE"))
    found: int | None = None
    for offset in range(-tolerance, tolerance + 1):
        step = current + offset
        if step < 0:
            continue
        if hmac.compare_digest(totp.generate_otp(step).encode(), code.encode()):
            found = step
    return found


def _secret(encrypted: str) -> str:
    try:
        return crypto.decrypt(encrypted)
    except crypto.DecryptionFailed:
        # Keys were lost or rotated away: fail closed, loudly for the operator.
        logger.error("a TOTP secret cannot be decrypted: check EPHEMERAL_AUTH_ENCRYPTION_KEYS")
        raise ServiceUnavailable() from None


def _record_step(row: UserTwoFactor, step: int, *, now: datetime) -> bool:
    """Accept ``step`` for ``row`` only if it is later than every accepted step. One UPDATE.

    The same statement stamps ``last_verified_at``, the real success that
    restarts the user's 2FA failure window (see budget._window).
    """
    try:
        updated = (
            UserTwoFactor.objects.filter(pk=row.pk)
            .filter(Q(totp_last_step__lt=step) | Q(totp_last_step__isnull=True))
            .update(totp_last_step=step, last_verified_at=now)
        )
    except DatabaseError as exc:
        if not engine.is_conflict(exc):
            raise
        # Another node's write to this row won (a Galera certification conflict):
        # the step is not ours. update() has marked an enclosing transaction for rollback.
        return False
    return updated == 1


def accept(row: UserTwoFactor, code: str, *, now: datetime) -> bool:
    """Return whether ``code`` is a fresh, valid code of the active authenticator (and use it up)."""
    if not row.totp_enabled:
        return False
    step = matching_step(_secret(row.totp_secret), code, now=now)
    if step is None:
        return False
    if not _record_step(row, step, now=now):
        logger.info("refused a replayed TOTP code for user #%s", row.pk)
        return False
    return True


# The factor's interface (services.factors.Factor), registered as "totp" by the wiring.


def check_login_code(pending: PendingLogin, code: str, *, now: datetime, request: Any = None) -> None:
    """Verify the TOTP code of a pending login; raise InvalidCode. The attempt was counted already."""
    row = pending.state.row
    if row is None or not accept(row, code, now=now):
        raise InvalidCode()


def login_binding(pending: PendingLogin, code: str) -> dict[str, Any]:
    """Nothing more to find on the ``pre_auth`` row: the accepted step is recorded on the 2FA row."""
    return {}


def accept_user_code(user: AbstractBaseUser, state: TwoFactorState, code: str, *, now: datetime) -> bool:
    """A current code of the active authenticator proves a logged-in user's presence (used up like at login)."""
    return state.row is not None and accept(state.row, code, now=now)


# Enrolment.


@dataclass(frozen=True)
class TotpSetup:
    """A new authenticator waiting for confirmation: show it once."""

    secret: str = field(repr=False)
    provisioning_uri: str = field(repr=False)
    qr_svg: str = field(repr=False)


def provisioning_uri(user: AbstractBaseUser, secret: str) -> str:
    """Return the otpauth:// URI an authenticator app reads from the QR code."""
    issuer = str(conf.get("TOTP_ISSUER") or "") or None
    return _totp(secret).provisioning_uri(name=user.get_username(), issuer_name=issuer)


# The QR code's natural size: pixels per module (the SVG scales to any size a page gives it).
_QR_MODULE_PX = 5
# The light margin around the symbol that ISO/IEC 18004 requires for QR codes: 4 modules.
_QR_QUIET_ZONE = 4


def _qr_dark_runs(rows: Any) -> str:
    """Return SVG path data drawing each horizontal run of dark modules as one unit-high rectangle."""
    parts: list[str] = []
    for y, row in enumerate(rows):
        start: int | None = None
        for x, dark in enumerate([*row, 0]):  # the trailing light module closes a run at the edge
            if dark and start is None:
                start = x
            elif not dark and start is not None:
                parts.append(f"M{start} {y}h{x - start}v1h-{x - start}z")
                start = None
    return "".join(parts)


def qr_svg(data: str) -> str:
    """Render ``data`` as an inline SVG QR code (server side, no JavaScript, no image request).

    One coordinate unit is one module: the ``viewBox`` spans the symbol and its
    4-module quiet zone, so the code scales to whatever size CSS gives it
    (``width``/``height`` are only its natural size, 5 px a module) and never
    gets cropped. The quiet zone is painted white, so the code also scans on a
    dark page, and ``shape-rendering="crispEdges"`` keeps module edges sharp.
    """
    import segno

    qr = segno.make(data, error="m", micro=False)
    size = int(qr.symbol_size(scale=1, border=_QR_QUIET_ZONE)[0])
    natural = size * _QR_MODULE_PX
    path = _qr_dark_runs(qr.matrix_iter(scale=1, border=_QR_QUIET_ZONE))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{natural}" '
        f'height="{natural}" shape-rendering="crispEdges">'
        f'<rect width="{size}" height="{size}" fill="#fff"/><path fill="#000" d="{path}"/></svg>'
    )


def setup(
    user: AbstractBaseUser, *, proof: Proof, code: Any = None, password: Any = None, now: datetime | None = None,
    request: Any = None,
) -> TotpSetup:
    """Start (or restart) enrolling an authenticator; the active one keeps working.

    Needs a fresh proof (``proof.require_fresh_proof``; ``password``
    serves it while 2FA is off). Replacing an active authenticator also needs
    a current code (TOTP or recovery). Raises ReauthenticationRequired,
    InvalidCode / RateLimited / InvalidInput.
    """
    now = now or clock.now()
    state = require_fresh_proof(user, proof, password=password, now=now, request=request)
    if state.totp:
        if code in (None, ""):
            raise InvalidCode(_code_required_message())
        check_user_code(user, code, now=now, request=request, state=state)
    secret = new_secret()
    # A restarted setup replaces the previous pending secret (its QR code stops working).
    # Not a change of the active configuration: nobody's session changes.
    UserTwoFactor.objects.update_or_create(user_id=user.pk, defaults={"totp_pending_secret": crypto.encrypt(secret)})
    uri = provisioning_uri(user, secret)
    return TotpSetup(secret=secret, provisioning_uri=uri, qr_svg=qr_svg(uri))


def _code_required_message() -> str:
    return gettext("Enter a code from your current authenticator (or a recovery code) to replace it.")


def confirm(
    user: AbstractBaseUser, code: Any, *, proof: Proof, password: Any = None, now: datetime | None = None,
    request: Any = None,
) -> list[str]:
    """Confirm the pending authenticator with one of its codes; return fresh recovery codes.

    Needs a fresh proof, like :func:`setup`. The new secret becomes active in
    one conditional UPDATE (a parallel confirm or a restarted setup makes it
    match nothing) that also stamps the change (the user's other sessions
    end), and the step of the confirming code is recorded so it cannot be
    replayed at login. Raises ReauthenticationRequired, NotEnrolled (no setup
    started), InvalidCode, RateLimited.
    """
    clean_code(code)
    now = now or clock.now()
    state = require_fresh_proof(user, proof, password=password, now=now, request=request)
    row = state.row
    if row is None or not row.totp_pending_secret:
        raise NotEnrolled()
    cleaned = normalize(code)
    if cleaned is None:
        raise InvalidCode()
    count_attempt(user, state, now=now)
    secret = _secret(row.totp_pending_secret)
    step = matching_step(secret, cleaned, now=now)
    if step is None:
        note_failure(user, state, now=now, request=request)
        raise InvalidCode()
    activated = UserTwoFactor.objects.filter(pk=row.pk, totp_pending_secret=row.totp_pending_secret).update(
        totp_secret=crypto.encrypt(secret),
        totp_pending_secret="",
        totp_confirmed_at=now,
        # A new secret has its own history: its confirming step is the first accepted.
        totp_last_step=step,
        changed_at=now,
        updated_at=now,
    )
    if activated != 1:
        raise InvalidCode()
    # A replaced authenticator is one "added" signal (replaced=True): the user was never without one.
    send_on_commit(
        authenticator_added, sender=UserTwoFactor, using=router.db_for_write(UserTwoFactor),
        user=user, method="totp", replaced=bool(state.totp), request=request,
    )
    # Logins pending against the old configuration must start again; browsers trusted under it are not.
    tokens.revoke_tokens(user=user, token_types=[TokenType.PRE_AUTH, TokenType.TRUSTED_BROWSER])
    logger.info("TOTP authenticator confirmed for user #%s", user.pk)
    return recovery.generate(user, request=request, method="totp")


def disable(
    user: AbstractBaseUser, code: Any, *, proof: Proof, now: datetime | None = None, request: Any = None
) -> None:
    """Remove the authenticator after checking a current code (TOTP or recovery).

    Needs a session verified against the current configuration. Without any
    method left, the recovery codes go too. Raises ReauthenticationRequired,
    NotEnrolled, InvalidCode, RateLimited.
    """
    now = now or clock.now()
    state = require_fresh_proof(user, proof, now=now, request=request)
    if not state.totp:
        raise NotEnrolled()
    check_user_code(user, code, now=now, request=request, state=state)
    UserTwoFactor.objects.filter(pk=user.pk).update(
        totp_secret="", totp_pending_secret="", totp_confirmed_at=None, changed_at=now, updated_at=now
    )
    send_on_commit(
        authenticator_removed, sender=UserTwoFactor, using=router.db_for_write(UserTwoFactor),
        user=user, method="totp", request=request,
    )
    if not state.email:
        recovery.delete_all(user)
    tokens.revoke_tokens(user=user, token_types=[TokenType.PRE_AUTH, TokenType.TRUSTED_BROWSER])
    logger.info("TOTP authenticator removed for user #%s", user.pk)


def pending_setup(user: AbstractBaseUser) -> TotpSetup | None:
    """Return the enrolment waiting for confirmation, to show it again (None if there is none)."""
    row = UserTwoFactor.objects.filter(pk=user.pk).first()
    if row is None or not row.totp_pending_secret:
        return None
    secret = _secret(row.totp_pending_secret)
    uri = provisioning_uri(user, secret)
    return TotpSetup(secret=secret, provisioning_uri=uri, qr_svg=qr_svg(uri))


# Key rotation.


@dataclass
class Reencryption:
    """What :func:`reencrypt_secrets` did: counts of secrets, and the users whose secret no key decrypts."""

    rotated: int = 0
    current: int = 0
    changed_meanwhile: int = 0
    undecryptable: list[Any] = field(default_factory=list)


def reencrypt_secrets(*, dry_run: bool = False, batch_size: int = 500) -> Reencryption:
    """Re-encrypt every TOTP secret (active and pending) that the newest key does not decrypt.

    For key rotation (docs/operations.md): the newest key of
    ``EPHEMERAL_AUTH_ENCRYPTION_KEYS`` (or the key derived from ``SECRET_KEY``)
    encrypts, the others still decrypt. Each secret is replaced by a
    conditional UPDATE that only matches the value read, so a secret
    re-enrolled meanwhile is left alone (counted in ``changed_meanwhile``);
    ``updated_at`` is not touched, so nobody's 2FA state changes. Safe to
    run again: secrets already under the newest key are skipped. Secrets no
    configured key decrypts are reported by user id, never printed.
    """
    result = Reencryption()
    rows = (
        UserTwoFactor.objects.exclude(totp_secret="", totp_pending_secret="")
        .order_by("pk")
        .values_list("pk", "totp_secret", "totp_pending_secret")
    )
    for pk, *values in rows.iterator(chunk_size=batch_size):
        for column, value in zip(("totp_secret", "totp_pending_secret"), values, strict=True):
            if not value:
                continue
            if crypto.is_current(value):
                result.current += 1
                continue
            try:
                fresh = crypto.rotate(value)
            except crypto.DecryptionFailed:
                if pk not in result.undecryptable:  # active and pending secret: one user, listed once
                    result.undecryptable.append(pk)
                continue
            if dry_run:
                result.rotated += 1
                continue
            updated = UserTwoFactor.objects.filter(pk=pk, **{column: value}).update(**{column: fresh})
            if updated:
                result.rotated += 1
            else:
                result.changed_meanwhile += 1
    return result
