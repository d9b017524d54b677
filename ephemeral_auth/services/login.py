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
* Password attempts are recorded *first*, per subject (one normalised key
  per user, whatever identifier was typed) and per client IP, in one
  conditional INSERT, and confirmed by a recount before ``authenticate()``
  runs: of any parallel burst at most ``limit`` passwords per bucket are
  ever checked, the rest get RateLimited without a hash (seed weakness 3).
  A failure keeps its two rows; a success withdraws exactly those two rows,
  never another account's or the IP's failures (seed weakness 4).
* At verification the attempt is recorded *before* the code is checked, so
  parallel guesses cannot exceed the per-user budget (seed weakness 3); a
  wrong code leaves the ``pre_auth`` token usable; success consumes it in one
  statement whose WHERE clause holds the browser challenge, so of parallel
  presentations exactly one logs in.
* Commits: a rate-limit event is committed on its own (its confirming recount
  must see every racer's row), but what follows a decision is one
  transaction per database: the withdrawn failure rows with the new
  ``pre_auth`` token (or the new session), and at verification the used-up
  code, the consumed token and the new session. If any of it fails (a lost
  race for the token, a database error), none of it happened: the code is
  not spent and the pending login can be retried.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth import login as django_login
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import FieldDoesNotExist
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.db.models import Exists, F, OuterRef, Q, Value
from django.utils.translation import gettext

from .. import clock, crypto
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


def begin_login_atomically(request: HttpRequest, user: AbstractBaseUser, **kwargs: Any) -> LoginStep:
    """:func:`begin_login` as one transaction: if it fails, nothing is written and the request stays anonymous.

    For callers that reach the login step on their own (the OIDC callback):
    without it, a database error inside ``login()`` (the session INSERT, the
    ``last_login`` UPDATE) would leave a logged-in session in memory for
    SessionMiddleware to save on the caller's error page.
    """
    with _login_unit(request, EphemeralToken, get_user_model()) as unit:
        unit.logging_in = True
        return begin_login(request, user, **kwargs)


# The password step.


@dataclass(frozen=True)
class _Candidate:
    """The account a typed identifier names, as read before authenticate()."""

    pk: Any
    subject: str | None
    methods: list[str]


@dataclass(frozen=True)
class _Attempt:
    """A password attempt recorded in both buckets and admitted, with the account it most likely names."""

    provisional: ratelimit.Provisional
    subject: str
    candidate: _Candidate | None


def _candidates(identifier: str) -> Any:
    """Return the users an identifier names (by username, or by email address), with their 2FA methods."""
    model = get_user_model()
    username_field = model.USERNAME_FIELD
    condition = Q(**{username_field: identifier})
    email_field = _email_field(model)
    if _may_be_email(identifier):
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


def _email_field(model: Any) -> str:
    return str(model.get_email_field_name()) if hasattr(model, "get_email_field_name") else "email"


def _may_be_email(identifier: str) -> bool:
    """Return whether the identifier may name an account by its email address (not its username)."""
    model = get_user_model()
    email_field = _email_field(model)
    return "@" in identifier and email_field != model.USERNAME_FIELD and _has_field(model, email_field)


def _has_field(model: Any, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def _subject_of(name: Any) -> str | None:
    """Return the subject key of a username, or None if it cannot be one (empty, too long)."""
    try:
        return ratelimit.subject_key(str(name))
    except InvalidInput:
        return None


def _pick(rows: list[Any], identifier: str) -> _Candidate | None:
    """Return the account the identifier names: an exact username wins; several email matches name nobody."""
    exact = [row for row in rows if row[1] == identifier]
    row = exact[0] if exact else (rows[0] if len(rows) == 1 else None)
    if row is None:
        return None
    pk, name, totp, email, codes, address = row
    methods = [m for m, on in (("totp", totp), ("email", email and address)) if on]
    if methods and codes:
        methods.append("recovery")
    return _Candidate(pk=get_user_model()._meta.pk.to_python(pk), subject=_subject_of(name), methods=methods)


def _compiled(queryset: Any, alias: str) -> tuple[str, tuple[Any, ...]]:
    sql, params = queryset.query.get_compiler(using=alias).as_sql()
    return sql, tuple(params)


def _record_attempt(identifier: str, ip: str, *, now: datetime) -> _Attempt:
    """Record the attempt against the account and the IP, confirm it, and find the account; or raise RateLimited.

    Record first, then confirm, then (only then) may the caller check the
    password: of any burst at most ``limit`` attempts per bucket get past
    here inside a window, whatever the concurrency (seed weakness 3; the
    argument is in ``services/ratelimit.py``). A refused attempt withdraws its
    rows before RateLimited is raised, so it counts nowhere.

    Statements: the conditional INSERT of both rows, then one SELECT that
    confirms both counts *and* reads the account with its 2FA methods (one
    row even for an unknown identifier, so known and unknown accounts cost
    the same). An identifier that may be an email address is resolved first
    (one SELECT more, for known and unknown addresses alike): its failures
    must be recorded in the account's bucket, which is keyed by username.
    """
    model = get_user_model()
    user_alias = router.db_for_read(model)
    typed = ratelimit.subject_key(identifier)
    candidates = _candidates(identifier)
    if _may_be_email(identifier):
        candidate = _pick(list(candidates.using(user_alias)), identifier)
        subject = (candidate.subject if candidate is not None else None) or typed
        provisional = ratelimit.record_first(
            [(EventType.LOGIN_ATTEMPT, subject), (EventType.LOGIN_IP, ip)], now=now
        )
        provisional.confirm()
        return _Attempt(provisional=provisional, subject=subject, candidate=candidate)

    # A username: "Alice", " alice " and "ALICE" share one key without a lookup.
    provisional = ratelimit.record_first([(EventType.LOGIN_ATTEMPT, typed), (EventType.LOGIN_IP, ip)], now=now)
    columns, params = provisional.confirm_sql()
    if not columns or provisional.alias != user_alias or not _same_database(model, RateLimitEvent):
        # Rate limiting is off, or the event table lives on its own database
        # (EPHEMERAL_AUTH_DATABASE): no join.
        provisional.confirm()
        found = _pick(list(candidates.using(user_alias)), identifier)
        return _Attempt(provisional=provisional, subject=typed, candidate=found)
    cand_sql, cand_params = _compiled(candidates.using(user_alias), user_alias)
    # SELECT (confirmations), cand.* FROM (SELECT 1) seed LEFT JOIN (candidates) cand ON 1 = 1:
    # always at least one row, whose first columns confirm the recorded events.
    sql = (
        f"SELECT {', '.join(columns)}, ea_c.* FROM (SELECT 1 AS one) AS ea_seed "  # noqa: S608 - ORM-compiled, values bound
        f"LEFT JOIN ({cand_sql}) AS ea_c ON 1 = 1"
    )
    with connections[user_alias].cursor() as cursor:
        cursor.execute(sql, (*params, *cand_params))
        rows = cursor.fetchall()
    width = len(columns)
    provisional.settle(rows[0][:width])
    found = _pick([row[width:] for row in rows if row[width] is not None], identifier)
    return _Attempt(provisional=provisional, subject=typed, candidate=found)


def _note_lockouts(provisional: ratelimit.Provisional, request: HttpRequest) -> None:
    """Send ``user_locked_out`` for each bucket this failure filled."""
    for bucket, seen in zip(provisional.buckets, provisional.counts, strict=True):
        if seen == bucket.limit:
            user_locked_out.send(sender=RateLimitEvent, event_type=bucket.event_type, key=bucket.key, request=request)


def password_login(
    request: HttpRequest,
    *,
    username: Any,
    password: Any,
    now: datetime | None = None,
) -> LoginStep:
    """Authenticate a username (or email) and password, then :func:`begin_login`.

    Raises InvalidInput for malformed values (nothing is recorded),
    RateLimited when the account's or the IP's failure budget is spent (the
    password is then not checked at all), InvalidCredentials otherwise.
    """
    identifier = clean_text(username, field="username", max_length=MAX_IDENTIFIER_LENGTH)
    if not identifier.strip():
        raise InvalidInput(gettext("This field is required: %(name)s.") % {"name": "username"}, field="username")
    password = clean_text(password, field="password", max_length=MAX_PASSWORD_LENGTH)
    now = now or clock.now()
    ip = ratelimit.ip_key(client_ip(request))
    attempt = _record_attempt(identifier, ip, now=now)

    # This attempt is counted in both buckets already: a failure keeps the
    # rows. Django's ModelBackend hashes the password for unknown users too,
    # so the answer takes as long whether or not the account exists.
    user = authenticate(request, username=identifier, password=password)
    if user is None:
        _note_lockouts(attempt.provisional, request)
        raise InvalidCredentials()
    canonical = _subject_of(user.get_username())
    if canonical is not None and canonical != attempt.subject:
        # authenticate() accepted an identifier that the lookup above did not
        # tie to this account (a custom backend, a database collation that
        # equates more than casefolding does). The attempt was enforced and
        # recorded under the typed key; the account's own bucket must admit
        # the login too, so a variant of the identifier cannot open a locked
        # account. Not a failure either way: our rows are withdrawn.
        try:
            ratelimit.check(EventType.LOGIN_ATTEMPT, canonical, now=now)
        except RateLimited:
            attempt.provisional.withdraw()
            raise
    # A success is no failure: withdraw exactly the two rows this attempt
    # recorded. Earlier failures of this account and every failure of this IP
    # stay counted (seed weakness 4: owning one account must not reset them).
    # The withdrawal and what the success writes (the pre_auth token, or the
    # session) commit together.
    candidate = attempt.candidate
    methods = candidate.methods if candidate is not None and candidate.pk == user.pk else None
    backend = getattr(user, "backend", None) or MODEL_BACKEND
    with _login_unit(request, RateLimitEvent, EphemeralToken, get_user_model()) as unit:
        attempt.provisional.withdraw()
        unit.logging_in = True
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


def writes_together(*models: Any) -> ExitStack:
    """Return a context manager: one transaction on each database these models are written to.

    Usually that is one database, hence one commit for several statements.
    Never wrap a rate-limit *attempt* in it: the recount that confirms an
    attempt must see every racer's committed row (services/ratelimit.py).
    """
    with ExitStack() as stack:
        # If entering a later alias's transaction fails, the earlier ones are
        # exited on the way out instead of being left open.
        for alias in sorted({router.db_for_write(model) or DEFAULT_DB_ALIAS for model in models}):
            stack.enter_context(transaction.atomic(using=alias))
        return stack.pop_all()


@dataclass
class _Unit:
    """Set ``logging_in`` just before calling login() inside a :func:`_login_unit`."""

    logging_in: bool = False


@contextmanager
def _login_unit(request: HttpRequest, *models: Any) -> Iterator[_Unit]:
    """:func:`writes_together`; if it fails after login() was called, also forget that login.

    login() changes ``request.session``, ``request.user`` and the CSRF token
    in memory before the transaction commits. When the transaction is rolled
    back (a database error: the view answers 503; a lost race for the token:
    401), SessionMiddleware would still save that session, logged in, while
    nothing of the login was committed. A fresh, empty session object is
    never saved, and the CSRF token is put back: the request ends as it came,
    anonymous, and the form can be sent again.
    """
    unit = _Unit()
    csrf: dict[str, Any] = {
        key: request.META[key] for key in ("CSRF_COOKIE", "CSRF_COOKIE_NEEDS_UPDATE") if key in request.META
    }
    try:
        with writes_together(*models):
            yield unit
    except BaseException:
        if unit.logging_in:
            if hasattr(request, "session"):
                engine = import_module(settings.SESSION_ENGINE)
                request.session = engine.SessionStore()
            request.user = AnonymousUser()
            for key in ("CSRF_COOKIE", "CSRF_COOKIE_NEEDS_UPDATE"):
                request.META.pop(key, None)
            request.META.update(csrf)
        raise


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
        token = tokens.peek_token(
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
    clean_text(code, field="code", max_length=MAX_CODE_LENGTH)
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
        count_attempt(user, pending.state, now=now)  # committed on its own, before the code is checked
        wrong: InvalidCode | None = None
        # One transaction: using up the code (the TOTP step, the recovery
        # code), consuming the pre_auth token and creating the session. A
        # lost race for the token (InvalidToken) or a database error undoes
        # all of it, so the code is not spent by a login that did not happen.
        # A wrong code is caught inside, so its bookkeeping (an emailed
        # code's attempt count) commits.
        with _login_unit(request, EphemeralToken, UserTwoFactor, RecoveryCode, get_user_model()) as unit:
            try:
                module.check_login_code(pending, cleaned, now=now, request=request)
            except InvalidCode as exc:
                wrong = exc
            else:
                # Lock order: the 2FA row (the code check above), then the user
                # row (login()'s last_login UPDATE), then the token. A password
                # reset or change takes the user row, then revokes the user's
                # tokens: the same order, so the two wait for each other
                # instead of deadlocking (also across two databases, where no
                # deadlock detector could see the cycle).
                unit.logging_in = True
                django_login(request, user, backend=_backend_for(user))  # type: ignore[arg-type]
                binding = {"code_hash": module.login_code_hash(pending, cleaned)} if method == "email" else {}
                tokens.consume_token(pre_auth_token, TokenType.PRE_AUTH, challenge_id=challenge, now=now, **binding)
        if wrong is not None:
            note_failure(user, pending.state, now=now, request=request)
            raise wrong
    except (InvalidCode, InvalidToken):
        two_factor_failed.send(sender=UserTwoFactor, user=user, method=method, request=request)
        raise
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
