"""Logging in: the password step, the hand-off to the second factor, and verification.

The contract shared with the OIDC flow (docs/two-factor.md, "Python API"):
``begin_login(request, user, backend=...)`` takes a user some backend already
authenticated and either logs them in (no 2FA) or issues a ``pre_auth`` token
bound to a fresh browser challenge and to the methods the user has enabled.

Security reasoning:

* Pending state never lives in the Django session: a ``pre_auth`` row holds
  it, bound to an HttpOnly cookie (``challenge``) and to the allowed methods.
  Nothing in the session says "password OK", so session fixation, a favicon
  request or a second tab cannot advance or lose a pending login.
* Password failures are counted per subject (one normalised key per user,
  whatever identifier was typed) and per client IP, both checked before
  ``authenticate()`` runs; a success clears only that user's bucket, never
  the IP's (seed weakness 4).
* At verification the attempt is recorded *before* the code is checked, so
  parallel guesses cannot exceed the per-user budget (seed weakness 3); a
  wrong code leaves the ``pre_auth`` token usable; success consumes it in one
  statement whose WHERE clause holds the browser challenge, so of parallel
  presentations exactly one logs in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth import login as django_login
from django.core.exceptions import FieldDoesNotExist
from django.db import connections, router
from django.db.models import Exists, F, OuterRef, Q, Value
from django.utils.translation import gettext

from .. import clock, conf, crypto
from ..client_ip import client_ip
from ..exceptions import (
    InvalidCode,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
    MethodNotEnabled,
    RateLimited,
)
from ..models import EphemeralToken, EventType, RateLimitEvent, RecoveryCode, TokenType, UserTwoFactor
from ..signals import two_factor_failed, two_factor_verified, user_locked_out
from . import ratelimit, tokens
from .inputs import clean_text, is_plain_text
from .two_factor import (
    METHODS,
    TwoFactorState,
    count_attempt,
    empty_state,
    load_state,
    mark_session,
    note_failure,
    state_from_row,
    user_email,
)

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

    from .tokens import IssuedToken

__all__ = [
    "MAX_CODE_LENGTH",
    "MAX_IDENTIFIER_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "MAX_TOKEN_LENGTH",
    "LoginStep",
    "PendingLogin",
    "begin_login",
    "enabled_methods",
    "password_login",
    "peek_pending",
    "send_login_email",
    "verify_login",
]

logger = logging.getLogger("ephemeral_auth.login")

MAX_IDENTIFIER_LENGTH = 254
# Long enough for any passphrase, short enough that hashing it is cheap.
MAX_PASSWORD_LENGTH = 4096
MAX_TOKEN_LENGTH = 512
MAX_CODE_LENGTH = 64


@dataclass(frozen=True)
class LoginStep:
    """The outcome of a first factor: logged in, or a second factor is needed."""

    status: str  # "authenticated" or "2fa_required"
    user: AbstractBaseUser
    pre_auth: IssuedToken | None = None
    challenge: str | None = field(default=None, repr=False)
    methods: list[str] = field(default_factory=list)

    @property
    def authenticated(self) -> bool:
        return self.status == "authenticated"


def enabled_methods(user: AbstractBaseUser) -> list[str]:
    """Return the second-factor methods ``user`` may log in with (empty: no 2FA)."""
    return load_state(user).methods(user)


def begin_login(
    request: HttpRequest,
    user: AbstractBaseUser,
    *,
    backend: str,
    skip_two_factor: bool = False,
    methods: list[str] | None = None,
    now: datetime | None = None,
) -> LoginStep:
    """Log ``user`` in, or start the second-factor step if they have 2FA.

    ``user`` was authenticated by ``backend`` already. With
    ``skip_two_factor=True`` (an identity provider asserted multi-factor
    authentication) the session is logged in and marked as 2FA-verified.
    ``methods`` may pass the user's enabled methods when the caller read them
    already. Raises InvalidCredentials for an inactive user.
    """
    if not getattr(user, "is_active", True):
        raise InvalidCredentials()
    now = now or clock.now()
    if skip_two_factor:
        state = load_state(user)
        django_login(request, user, backend=backend)  # type: ignore[arg-type]
        mark_session(request, user, state, verified=True, now=now)
        return LoginStep(status="authenticated", user=user)
    if methods is None:
        methods = load_state(user).methods()
    if not methods:
        django_login(request, user, backend=backend)  # type: ignore[arg-type]
        mark_session(request, user, empty_state(user.pk), verified=False, now=now)
        return LoginStep(status="authenticated", user=user)
    challenge = crypto.new_token()
    issued = tokens.issue_pre_auth(user, challenge=challenge, methods=methods, now=now)
    logger.debug("second factor required for user #%s", user.pk)
    return LoginStep(status="2fa_required", user=user, pre_auth=issued, challenge=challenge, methods=list(methods))


# The password step.


@dataclass(frozen=True)
class _Snapshot:
    """What the password step reads before authenticate(), in one statement when it can.

    The failure counts of the subject and of the IP, and the user the typed
    identifier most likely names, with the second-factor methods they have,
    which the step needs right after a successful authenticate().
    """

    subject: str
    ip: str
    subject_count: int
    ip_count: int
    candidate_id: Any = None
    candidate_methods: list[str] | None = None


def _candidates(identifier: str) -> Any:
    """Return the users an identifier names (by username, or by email address), with their 2FA methods."""
    model = get_user_model()
    username_field = model.USERNAME_FIELD
    condition = Q(**{username_field: identifier})
    email_field = model.get_email_field_name() if hasattr(model, "get_email_field_name") else "email"
    if "@" in identifier and email_field != username_field and _has_field(model, email_field):
        condition |= Q(**{f"{email_field}__iexact": identifier})
    rows = UserTwoFactor.objects.filter(user_id=OuterRef("pk"))
    return (
        model._default_manager.filter(condition)
        .annotate(
            _ea_pk=F("pk"),
            _ea_name=F(username_field),
            _ea_totp=Exists(rows.filter(totp_confirmed_at__isnull=False).exclude(totp_secret="")),
            _ea_email=Exists(rows.filter(email_enabled=True)),
            _ea_codes=Exists(RecoveryCode.objects.filter(user_id=OuterRef("pk"))),
            _ea_address=F(email_field) if _has_field(model, email_field) else Value(""),
        )
        .values_list("_ea_pk", "_ea_name", "_ea_totp", "_ea_email", "_ea_codes", "_ea_address")[:2]
    )


def _has_field(model: Any, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def _window_query(event_type: str, key: str, *, now: datetime) -> Any:
    """Return the events of ``key`` that count against it now, at most ``limit`` of them."""
    configured = conf.rate_limit(event_type)
    return (
        RateLimitEvent.objects.using(router.db_for_read(RateLimitEvent))
        .filter(event_type=event_type, key=key, occurred_at__gt=now - configured.window)
        .values("pk")[: max(1, configured.limit)]
    )


def _compiled(queryset: Any, alias: str) -> tuple[str, tuple[Any, ...]]:
    sql, params = queryset.query.get_compiler(using=alias).as_sql()
    return sql, tuple(params)


def _read_snapshot(identifier: str, typed_key: str, ip: str, *, now: datetime) -> tuple[int, int, list[Any]]:
    """Return (subject count, IP count, candidate rows) in one SELECT when the tables share a database.

    The statement is ``SELECT (count), (count), cand.* FROM (SELECT 1) seed
    LEFT JOIN (candidates) cand ON 1 = 1``: always one row even for an
    unknown identifier, so known and unknown accounts cost the same.
    """
    counting = bool(conf.get("RATE_LIMITING_ENABLED"))
    user_alias = router.db_for_read(get_user_model())
    event_alias = router.db_for_read(RateLimitEvent)
    candidates = _candidates(identifier)
    if not counting:
        return 0, 0, list(candidates.using(user_alias))
    subject_q = _window_query(EventType.LOGIN_ATTEMPT, typed_key, now=now)
    ip_q = _window_query(EventType.LOGIN_IP, ip, now=now)
    if not _same_database(get_user_model(), RateLimitEvent):
        # The event table lives on its own database (EPHEMERAL_AUTH_DATABASE): no join.
        return subject_q.count(), ip_q.count(), list(candidates.using(user_alias))
    subject_sql, subject_params = _compiled(subject_q, event_alias)
    ip_sql, ip_params = _compiled(ip_q, event_alias)
    cand_sql, cand_params = _compiled(candidates.using(user_alias), user_alias)
    sql = (
        f"SELECT (SELECT COUNT(*) FROM ({subject_sql}) AS ea_s), (SELECT COUNT(*) FROM ({ip_sql}) AS ea_i), "  # noqa: S608 - ORM-compiled, values bound
        f"ea_c.* FROM (SELECT 1 AS one) AS ea_seed LEFT JOIN ({cand_sql}) AS ea_c ON 1 = 1"
    )
    with connections[user_alias].cursor() as cursor:
        cursor.execute(sql, (*subject_params, *ip_params, *cand_params))
        rows = cursor.fetchall()
    subject_count, ip_count = int(rows[0][0] or 0), int(rows[0][1] or 0)
    found = [row[2:] for row in rows if row[2] is not None]
    return subject_count, ip_count, found


def _snapshot(identifier: str, ip: str, *, now: datetime) -> _Snapshot:
    """Resolve the identifier to one subject key and read both failure counts.

    Typing "alice", "ALICE " or alice's email address counts against the same
    key (seed weakness 5). An exact username match wins over email matches;
    several email matches are ambiguous and keep the typed key.
    """
    model = get_user_model()
    typed_key = ratelimit.subject_key(identifier)
    subject_count, ip_count, rows = _read_snapshot(identifier, typed_key, ip, now=now)
    exact = [row for row in rows if row[1] == identifier]
    row = exact[0] if exact else (rows[0] if len(rows) == 1 else None)
    if row is None:
        return _Snapshot(subject=typed_key, ip=ip, subject_count=subject_count, ip_count=ip_count)
    pk, name, totp, email, codes, address = row
    methods = [m for m, on in (("totp", totp), ("email", email and address)) if on]
    if methods and codes:
        methods.append("recovery")
    subject = ratelimit.subject_key(str(name))
    if subject != typed_key and conf.get("RATE_LIMITING_ENABLED"):
        subject_count = _window_query(EventType.LOGIN_ATTEMPT, subject, now=now).count()
    return _Snapshot(
        subject=subject,
        ip=ip,
        subject_count=subject_count,
        ip_count=ip_count,
        candidate_id=model._meta.pk.to_python(pk),
        candidate_methods=methods,
    )


def _refuse_if_locked(snapshot: _Snapshot, *, now: datetime) -> None:
    """Raise RateLimited (with the right Retry-After) if either bucket is full."""
    for event_type, key, seen in (
        (EventType.LOGIN_IP, snapshot.ip, snapshot.ip_count),
        (EventType.LOGIN_ATTEMPT, snapshot.subject, snapshot.subject_count),
    ):
        if seen >= conf.rate_limit(event_type).limit:
            # ratelimit.check computes Retry-After and sends rate_limited.
            ratelimit.check(event_type, key, now=now)


def _record_failure(snapshot: _Snapshot, request: HttpRequest, *, now: datetime) -> None:
    """Count a failed password against the subject and the IP; raise RateLimited if over."""
    refused: RateLimited | None = None
    for event_type, key, seen in (
        (EventType.LOGIN_ATTEMPT, snapshot.subject, snapshot.subject_count),
        (EventType.LOGIN_IP, snapshot.ip, snapshot.ip_count),
    ):
        try:
            ratelimit.attempt(event_type, key, now=now)
        except RateLimited as exc:
            refused = refused or exc
            continue
        if seen + 1 == conf.rate_limit(event_type).limit:
            # This failure filled the bucket: the subject is locked out from now on.
            user_locked_out.send(sender=RateLimitEvent, event_type=event_type, key=key, request=request)
    if refused is not None:
        raise refused


def password_login(
    request: HttpRequest,
    *,
    username: Any,
    password: Any,
    now: datetime | None = None,
) -> LoginStep:
    """Authenticate a username (or email) and password, then :func:`begin_login`.

    Raises InvalidInput for malformed values (nothing is recorded),
    RateLimited when the subject's or the IP's failure budget is spent
    (checked before the password is), InvalidCredentials otherwise.
    """
    identifier = clean_text(username, field="username", max_length=MAX_IDENTIFIER_LENGTH)
    if not identifier.strip():
        raise InvalidInput(gettext("This field is required: %(name)s.") % {"name": "username"}, field="username")
    password = clean_text(password, field="password", max_length=MAX_PASSWORD_LENGTH)
    now = now or clock.now()
    ip = ratelimit.ip_key(client_ip(request))
    snapshot = _snapshot(identifier, ip, now=now)
    _refuse_if_locked(snapshot, now=now)

    # Django's ModelBackend hashes the password for unknown users too, so the
    # answer takes as long whether or not the account exists.
    user = authenticate(request, username=identifier, password=password)
    if user is None:
        _record_failure(snapshot, request, now=now)
        raise InvalidCredentials()
    canonical = ratelimit.subject_key(user.get_username())
    if canonical != snapshot.subject:
        # Logged in through an identifier we could not resolve (a custom
        # backend): the account's own bucket must allow it too.
        ratelimit.check(EventType.LOGIN_ATTEMPT, canonical, now=now)
    if snapshot.subject_count:
        # Only this account's failures are forgiven; the IP keeps its count.
        ratelimit.clear(EventType.LOGIN_ATTEMPT, canonical)
    methods = snapshot.candidate_methods if snapshot.candidate_id == user.pk else None
    backend = getattr(user, "backend", None) or MODEL_BACKEND
    return begin_login(request, user, backend=backend, methods=methods, now=now)


# The second-factor step.


@dataclass(frozen=True)
class PendingLogin:
    """A live ``pre_auth`` token with its user and the user's 2FA state."""

    token: EphemeralToken
    user: AbstractBaseUser
    state: TwoFactorState

    @property
    def methods(self) -> list[str]:
        return [m for m in self.token.method_list if m in METHODS]


def _same_database(*models: Any) -> bool:
    aliases = {router.db_for_read(model) for model in models}
    if len(aliases) != 1:
        return False
    alias = aliases.pop() or "default"
    return alias in connections


def peek_pending(raw: Any, *, challenge: Any, now: datetime | None = None) -> PendingLogin:
    """Return the pending login of a ``pre_auth`` token presented with its browser challenge.

    Nothing is used up. Raises InvalidToken if the token is unknown, expired,
    bound to another browser, or its user is gone or inactive. One SELECT
    when the token table shares the user's database.
    """
    if not is_plain_text(raw, max_length=MAX_TOKEN_LENGTH) or not raw:
        raise InvalidToken()
    if not is_plain_text(challenge, max_length=1024) or not challenge:
        raise InvalidToken()
    now = now or clock.now()
    model = get_user_model()
    user: Any
    if _same_database(EphemeralToken, model, UserTwoFactor):
        token = tokens.peek_token_related(
            raw, TokenType.PRE_AUTH, challenge_id=challenge, now=now, related=("user", "user__two_factor")
        )
        user = token.user if token is not None else None
    else:
        # The token table lives on its own database (EPHEMERAL_AUTH_DATABASE): no join.
        token = tokens.peek_token(raw, TokenType.PRE_AUTH, challenge_id=challenge, now=now)
        user_id: Any = token.user_id if token is not None else None
        user = model._default_manager.select_related("two_factor").filter(pk=user_id).first() if token else None
    if token is None or user is None or not getattr(user, "is_active", True):
        raise InvalidToken()
    try:
        row = user.two_factor
    except UserTwoFactor.DoesNotExist:
        row = None
    # Which methods this login may use is on the token; the state serves the
    # budget (its success stamp) and the session mark (its fingerprint).
    state = state_from_row(user.pk, row, has_recovery_codes=True, has_email=bool(user_email(user)))
    return PendingLogin(token=token, user=user, state=state)


def _method_module(method: str) -> Any:
    from . import email_otp, recovery, totp

    return {"totp": totp, "email": email_otp, "recovery": recovery}[method]


def verify_login(
    request: HttpRequest,
    *,
    pre_auth_token: Any,
    challenge: Any,
    method: Any,
    code: Any,
    now: datetime | None = None,
) -> AbstractBaseUser:
    """Check a second factor for a pending login and log the user in.

    Raises InvalidInput (a non-text code, an unknown method: nothing is
    recorded), InvalidToken (unknown, expired or other-browser token),
    MethodNotEnabled (a method this login may not use), RateLimited (the
    user's 2FA budget is spent) or InvalidCode. A wrong code leaves the
    pending login usable.
    """
    if not is_plain_text(code, max_length=MAX_CODE_LENGTH) or not code:
        raise InvalidInput(
            gettext("%(name)s must be text of at most %(n)s characters.") % {"name": "code", "n": 64},
            field="code",
        )
    if not is_plain_text(method, max_length=16) or method not in METHODS:
        raise InvalidInput(gettext("method must be one of: totp, email, recovery."), field="method")
    now = now or clock.now()
    pending = peek_pending(pre_auth_token, challenge=challenge, now=now)
    user = pending.user
    if method not in pending.methods:
        raise MethodNotEnabled()
    module = _method_module(method)
    cleaned = module.normalize(code)
    try:
        if cleaned is None:
            # Cannot be right: refused without spending the user's budget.
            raise InvalidCode()
        count_attempt(user, pending.state, now=now)
        try:
            module.check_login_code(pending, cleaned, now=now, request=request)
        except InvalidCode:
            note_failure(user, pending.state, now=now, request=request)
            raise
        binding = {"code_hash": module.login_code_hash(pending, cleaned)} if method == "email" else {}
        tokens.consume_token(pre_auth_token, TokenType.PRE_AUTH, challenge_id=challenge, now=now, **binding)
    except (InvalidCode, InvalidToken):
        two_factor_failed.send(sender=UserTwoFactor, user=user, method=method, request=request)
        raise
    django_login(request, user, backend=_backend_for(user))  # type: ignore[arg-type]
    mark_session(request, user, pending.state, verified=True, now=now)
    two_factor_verified.send(sender=UserTwoFactor, user=user, method=method, request=request)
    logger.info("second factor verified for user #%s (%s)", user.pk, method)
    return user


def send_login_email(
    request: HttpRequest, *, pre_auth_token: Any, challenge: Any, now: datetime | None = None
) -> None:
    """Email a login code for a pending login (see email_otp.send_login_code for what it raises)."""
    from . import email_otp

    now = now or clock.now()
    pending = peek_pending(pre_auth_token, challenge=challenge, now=now)
    email_otp.send_login_code(pending, request=request, now=now)


def _backend_for(user: AbstractBaseUser) -> str:
    """Return the backend the verified session is logged in with.

    The pending login does not remember which backend checked the first
    factor; Django's ModelBackend is used when configured (it loads any
    user by primary key), else the first configured backend.
    """
    from django.conf import settings

    backends = list(getattr(settings, "AUTHENTICATION_BACKENDS", [MODEL_BACKEND]))
    return MODEL_BACKEND if MODEL_BACKEND in backends else backends[0]


MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"
