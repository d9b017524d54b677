"""Password reset: request a link, confirm it, and revoke links when the account changes.

Security reasoning:

* **No account enumeration.** :func:`request_reset` does the same work in the
  request whatever the email: validate the syntax, count the request against
  the client IP and against the email (both buckets are counted for known and
  unknown emails alike), then hand the email address to a job that runs
  *outside* the request. Looking the user up, writing the token and talking
  to the mail server all happen in that job, so neither the answer nor its
  timing depends on whether an account exists.
* **Limits that do not leak.** Over the per-email limit the request is
  answered exactly like any other and simply sends nothing: a 429 there would
  be the same for known and unknown emails, but it would tell an attacker that
  *somebody* asked for this address recently. The per-IP limit does answer 429
  (it depends only on what the requester itself did).
* **Latest link wins.** Issuing a link revokes the user's older reset links
  under a lock on the user row, so of two requests only the newest link works.
* **Confirm is atomic.** The token is peeked at (no side effect), the new
  password validated against the user (a weak password does not burn the
  link), then the token is consumed by one conditional DELETE with the expiry
  in its WHERE clause, in the same transaction that writes the new hash: of
  two racing confirmations exactly one changes the password.
* **Any password change revokes links**, and so does a change of the email
  address or of ``is_active`` (a deactivated user's links stay dead after a
  reactivation): see :func:`note_password_change` and
  :func:`revoke_after_password_change`, connected in ``receivers.py``.
  ``QuerySet.update()`` and raw SQL send no signal and revoke nothing.

The job runs through ``services/jobs.py`` (the runners are re-exported here:
``EPHEMERAL_AUTH_PASSWORD_RESET_RUNNER`` names them by this module). The link
template comes from the web edge (``views/passwords.link_template`` reads the
request); ``link_template`` here is a deprecated alias until 0.3.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import FieldDoesNotExist, ValidationError
from django.core.validators import validate_email
from django.db import DatabaseError, router, transaction
from django.utils.module_loading import import_string

from .. import clock, conf
from ..exceptions import InvalidInput, InvalidPassword, InvalidToken, RateLimited
from ..models import EphemeralToken, EventType, TokenType
from ..signals import password_reset_completed, send_on_commit
from . import engine, jobs, mail, ratelimit, tokens
from .inputs import clean_text, fold

# The runners live in services/jobs.py; EPHEMERAL_AUTH_PASSWORD_RESET_RUNNER names them here too.
from .jobs import run_as_task, run_in_thread, run_inline

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

__all__ = [
    "MAX_EMAIL_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "confirm_reset",
    "deliver_password_reset",
    "eligible_users",
    "normalise_email",
    "note_password_change",
    "request_reset",
    "reset_link_lifetime",
    "revoke_after_password_change",
    "run_as_task",
    "run_in_thread",
    "run_inline",
]

logger = logging.getLogger("ephemeral_auth.passwords")

MAX_EMAIL_LENGTH = 254
# Hashers cope with long input, but nobody types more; refuse megabyte "passwords".
MAX_PASSWORD_LENGTH = 4096
TOKEN_PLACEHOLDER = conf.TOKEN_PLACEHOLDER

_TEMPLATES = mail.MailTemplates(
    subject="ephemeral_auth/password_reset/email_subject.txt",
    text="ephemeral_auth/password_reset/email_body.txt",
    html="ephemeral_auth/password_reset/email_body.html",
)


# Requesting a link.


def normalise_email(value: Any) -> str:
    """Return the email as typed if it is a syntactically valid address, else raise InvalidInput.

    Only the syntax is judged, so the answer is the same for every address.
    """
    email = clean_text(value, field="email", max_length=MAX_EMAIL_LENGTH).strip()
    try:
        validate_email(email)
    except ValidationError as exc:
        raise InvalidInput("email: not a valid email address", field="email") from exc
    return email


def reset_link_lifetime() -> timedelta:
    """Return how long a reset link stays usable (``EPHEMERAL_AUTH_TOKEN_TTL`` of ``password_reset``)."""
    return conf.token_ttl(TokenType.PASSWORD_RESET)


def request_reset(email: Any, *, ip: str, link: str, now: datetime | None = None) -> None:
    """Count a reset request and, within the limits, send a link in the background.

    Identical in the request for known and unknown emails (see the module
    docstring). Raises InvalidInput for a malformed email or link template,
    and RateLimited when the client IP is over ``password_reset_ip``; over the
    per-email limit it returns normally and sends nothing.
    """
    email = normalise_email(email)
    link = clean_text(link, field="link", max_length=2048)
    if TOKEN_PLACEHOLDER not in link:
        raise InvalidInput("link: needs a {token} placeholder", field="link")
    ip_key = ratelimit.ip_key(ip)
    now = now or clock.now()
    # The IP bucket first: a refused requester must not fill an email's bucket.
    ratelimit.attempt(EventType.PASSWORD_RESET_IP, ip_key, now=now)
    try:
        ratelimit.attempt(EventType.PASSWORD_RESET_SEND, ratelimit.subject_key(email), now=now)
    except RateLimited:
        # Silently send nothing: the answer must not tell that this address
        # was asked for recently (see module docstring).
        logger.info("password reset not sent: per-email limit reached")
        return
    # Everything that depends on whether the account exists happens in the job.
    _runner()(deliver_password_reset, email=email, link=link)


def _runner() -> Callable[..., None]:
    """Return the runner EPHEMERAL_AUTH_PASSWORD_RESET_RUNNER chooses (services/jobs.py)."""
    return jobs.runner("PASSWORD_RESET_RUNNER")


def eligible_users(email: str) -> list[AbstractBaseUser]:
    """Return the active users with a usable password whose email is ``email``.

    Users without a usable password (single sign-on only) get no link: a
    reset would add password login to an account that never had one.
    """
    user_model = get_user_model()
    field = user_model.get_email_field_name()
    folded = fold(email)
    candidates = user_model._default_manager.filter(**{f"{field}__iexact": email, "is_active": True})
    # iexact is collation-dependent; compare once more the Unicode way (as Django does).
    return [u for u in candidates if u.has_usable_password() and fold(getattr(u, field) or "") == folded]


def deliver_password_reset(*, email: str, link: str) -> int:
    """Issue a fresh link for every eligible account of ``email`` and mail it; return how many.

    Runs outside the request (see the runners). A link whose email could not
    be sent is revoked at once, so no usable token is left behind.
    """
    sent = 0
    for user in eligible_users(email):
        try:
            issued = _issue_revoking_older(user)
        except DatabaseError as exc:
            if not engine.is_conflict(exc):
                raise
            # A parallel request for the same account, on another node, won: its link is the one mailed.
            logger.info("password reset for user #%s: a parallel request issued the link", user.pk)
            continue
        try:
            _send(user, link.replace(TOKEN_PLACEHOLDER, issued.raw))
        except Exception:
            tokens.revoke_tokens(user=user, token_type=TokenType.PASSWORD_RESET)
            logger.exception("password reset email to user #%s failed; link revoked", user.pk)
            continue
        sent += 1
        logger.info("password reset link sent to user #%s", user.pk)
    return sent


def _issue_revoking_older(user: AbstractBaseUser) -> tokens.IssuedToken:
    user_alias = router.db_for_write(type(user))
    token_alias = router.db_for_write(EphemeralToken)
    with transaction.atomic(using=user_alias), transaction.atomic(using=token_alias):
        # Serialise requests of one user: of two at the same instant, the one
        # that commits last revokes the other's link ("latest wins").
        engine.lock_rows(type(user)._default_manager.using(user_alias).filter(pk=user.pk))
        # SQLite has no row locks and serialises writers anyway; there a read
        # first would make the DELETE upgrade a read transaction to a write
        # one, which fails at once with "database is locked" when another
        # worker is writing (the busy timeout does not apply to an upgrade).
        # Starting with the DELETE waits for the lock like any write.
        tokens.revoke_tokens(user=user, token_type=TokenType.PASSWORD_RESET)
        return tokens.issue_password_reset(user)


def _send(user: AbstractBaseUser, url: str) -> None:
    field = type(user).get_email_field_name()
    context = {
        "user": user,
        "reset_url": url,
        "expires_in_minutes": int(reset_link_lifetime().total_seconds() // 60),
    }
    mail.send(_TEMPLATES, context, to=[getattr(user, field)], html_required=True)


# Confirming.


def confirm_reset(
    raw: Any, new_password: Any, *, now: datetime | None = None, request: Any = None
) -> AbstractBaseUser:
    """Set a new password with a reset token; return the user.

    Raises InvalidInput for a password that is not text of a sane size,
    InvalidToken for an unknown, expired or used token (or an inactive user),
    and InvalidPassword when the validators refuse the password, in which case
    the token stays usable. Sends ``password_reset_completed`` once committed
    (``request`` is handed to its receivers, untouched).
    """
    password = clean_text(new_password, field="new_password", max_length=MAX_PASSWORD_LENGTH)
    now = now or clock.now()
    # Peek: nothing is used up until the password is known to be acceptable.
    peeked = tokens.peek_token(raw, TokenType.PASSWORD_RESET, now=now)
    user = peeked.user if peeked is not None else None
    if user is None or not user.is_active:
        raise InvalidToken()
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise InvalidPassword(messages=[str(m) for m in exc.messages]) from exc

    old_session_hash = _session_hash(user)
    # Hash outside the transaction: the slow part must not hold the row lock.
    user.set_password(password)
    user_alias = router.db_for_write(type(user))
    token_alias = router.db_for_write(EphemeralToken)
    with (
        engine.conflict_as(InvalidToken),
        transaction.atomic(using=user_alias),
        transaction.atomic(using=token_alias),
    ):
        # The decision: one conditional DELETE (type, digest, expiry, user).
        tokens.consume_token(raw, TokenType.PASSWORD_RESET, user=user, now=now)
        user.save(update_fields=["password"])
        # The link did its job; no other reset link nor a pending 2FA login
        # started with the old password may outlive it.
        tokens.revoke_tokens(
            user=user, token_types=[TokenType.PASSWORD_RESET, TokenType.PRE_AUTH, TokenType.TRUSTED_BROWSER]
        )
        send_on_commit(password_reset_completed, sender=type(user), using=user_alias, user=user, request=request)
    if conf.get("PASSWORD_RESET_ENDS_SESSIONS"):
        _end_other_sessions(user, old_session_hash, now=now)
    logger.info("password reset completed for user #%s", user.pk)
    return user


def _session_hash(user: AbstractBaseUser) -> str | None:
    get_hash = getattr(user, "get_session_auth_hash", None)
    return get_hash() if callable(get_hash) else None


def _end_other_sessions(user: AbstractBaseUser, old_hash: str | None, *, now: datetime) -> int:
    """Make sure no session logged in before the reset stays logged in; return sessions deleted.

    Django stores an HMAC of the password hash in every session
    (``get_session_auth_hash``) and flushes a session whose value no longer
    matches on its next request. A new password therefore ends every other
    session, with any session engine and without scanning the session table.
    Only if a custom user model keeps that hash stable across password changes
    are the user's sessions deleted from a database-backed session store
    (a scan of live sessions: acceptable as the exceptional path).
    """
    new_hash = _session_hash(user)
    if old_hash is not None and new_hash is not None and new_hash != old_hash:
        return 0
    session_engine = settings.SESSION_ENGINE
    if session_engine not in ("django.contrib.sessions.backends.db", "django.contrib.sessions.backends.cached_db"):
        logger.warning(
            "user #%s: the session auth hash did not change with the password and %s cannot be "
            "scanned; other sessions were not ended",
            user.pk,
            session_engine,
        )
        return 0
    from django.contrib.sessions.models import Session

    store_class = import_string(f"{session_engine}.SessionStore")
    ended = 0
    for session in Session.objects.filter(expire_date__gt=now).iterator():
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            store_class(session.session_key).delete()
            ended += 1
    logger.info("ended %s sessions of user #%s by scanning the session table", ended, user.pk)
    return ended


# Password, email and active-flag changes anywhere (admin, set_password + save,
# Django's views, a profile form).

_CHANGED_FLAG = "_ephemeral_auth_password_changed"
_ACCOUNT_CHANGED_FLAG = "_ephemeral_auth_reset_basis_changed"


def _watched_fields(model: Any) -> list[Any]:
    """The password, email and ``is_active`` fields of the user model (those that are database columns)."""
    email = model.get_email_field_name() if hasattr(model, "get_email_field_name") else "email"
    found: list[Any] = []
    for name in ("password", email, "is_active"):
        try:
            field = model._meta.get_field(name)
        except FieldDoesNotExist:
            continue  # e.g. AbstractBaseUser's is_active is a class attribute, not a column
        if getattr(field, "concrete", False) and not field.many_to_many and field not in found:
            found.append(field)
    return found


def note_password_change(instance: Any, *, using: str, update_fields: Any = None, raw: bool = False) -> None:
    """Remember on ``instance`` what this save changes that reset links depend on (pre_save).

    Two things are noted: whether the save writes a different password hash
    (reset links and pending 2FA logins die), and whether it changes the
    email address (``get_email_field_name()``) or the ``is_active`` flag, in
    either direction (reset links die, as Django's own reset tokens do on an
    email change; links of a deactivated user stay dead once reactivated).

    Free when ``update_fields`` leaves all three fields out, and when
    ``set_password`` was called (Django keeps the raw password in
    ``_password`` until the save: the links die anyway, nothing else need be
    compared); otherwise one SELECT of the stored values of the fields this
    save writes, on User saves only. A hash upgrade at login also counts as a
    password change, as it does for Django's own reset tokens.
    """
    setattr(instance, _CHANGED_FLAG, False)
    setattr(instance, _ACCOUNT_CHANGED_FLAG, False)
    if raw or instance.pk is None:
        return
    fields = [
        field
        for field in _watched_fields(type(instance))
        if (update_fields is None or field.name in update_fields)
        and field.attname in instance.__dict__  # deferred: this save cannot change it
    ]
    if not fields:
        return
    if any(field.name == "password" for field in fields) and getattr(instance, "_password", None) is not None:
        setattr(instance, _CHANGED_FLAG, True)
        return
    stored = (
        type(instance)._base_manager.using(using)
        .filter(pk=instance.pk)
        .values_list(*(field.name for field in fields))
        .first()
    )
    if stored is None:
        return
    for field, old in zip(fields, stored, strict=True):
        new = getattr(instance, field.attname)
        if field.name == "password":
            if old != new:
                setattr(instance, _CHANGED_FLAG, True)
        elif field.name == "is_active":
            if bool(old) != bool(new):
                setattr(instance, _ACCOUNT_CHANGED_FLAG, True)
        elif (old or "") != (new or ""):  # the email; None and "" are both "no address"
            setattr(instance, _ACCOUNT_CHANGED_FLAG, True)


def revoke_after_password_change(instance: Any) -> int:
    """Revoke what the save just written made stale (post_save); return how many tokens.

    A new password: the user's reset links, pending 2FA logins (a pending
    login (pre_auth) proved the *old* password: once it changed, that proof is
    void, a weakness of the original application) and trusted browsers. A new email address or a changed ``is_active``:
    the user's reset links.
    """
    password_changed = getattr(instance, _CHANGED_FLAG, False)
    account_changed = getattr(instance, _ACCOUNT_CHANGED_FLAG, False)
    setattr(instance, _CHANGED_FLAG, False)
    setattr(instance, _ACCOUNT_CHANGED_FLAG, False)
    if password_changed:
        revoked = tokens.revoke_tokens(
            user=instance, token_types=[TokenType.PASSWORD_RESET, TokenType.PRE_AUTH, TokenType.TRUSTED_BROWSER]
        )
        if revoked:
            logger.info("password of user #%s changed: %s reset links / pending logins revoked", instance.pk, revoked)
        return revoked
    if account_changed:
        revoked = tokens.revoke_tokens(user=instance, token_type=TokenType.PASSWORD_RESET)
        if revoked:
            logger.info("email or active flag of user #%s changed: %s reset links revoked", instance.pk, revoked)
        return revoked
    return 0


def __getattr__(name: str) -> Any:
    """The names that left this module, for one more release (with a DeprecationWarning)."""
    if name == "link_template":
        # It reads the request: it moved to the web edge.
        from ..views import passwords as web_passwords

        warnings.warn(
            "ephemeral_auth.services.passwords.link_template moved to "
            "ephemeral_auth.views.passwords.link_template; the old name goes in 0.3",
            DeprecationWarning,
            stacklevel=2,
        )
        return web_passwords.link_template
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
