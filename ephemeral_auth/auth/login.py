"""Logging in: the password step, the hand-off to the second factor, and verification.

The orchestration over ``django.contrib.auth`` (``authenticate()``,
``login()``, the session); the services it calls take plain values (the
client address, the device cookie's value). Moved here from
``ephemeral_auth.services.login`` (the old names still work, with a
DeprecationWarning, until 0.3).

The contract shared with the OIDC flow (docs/two-factor.md, "Python API"):
``begin_login(request, user, backend=...)`` takes a user some backend already
authenticated and either logs them in (no 2FA) or issues a ``pre_auth`` token
bound to a fresh browser challenge and to the methods the user has enabled.

The login sits above the factors: :func:`verify_login` reads the submitted
code once (``services.factors.read_code``: its shape, then the factor's own
format) and then speaks to the method's factor only through the
``services.factors.Factor`` interface (``check_login_code``,
``login_binding``), found in the registry the wiring fills.

Security reasoning:

* Pending state never lives in the Django session: a ``pre_auth`` row holds
  it, bound to an HttpOnly cookie (``challenge``) and to the allowed methods.
  Nothing in the session says "password OK", so session fixation, a favicon
  request or a second tab cannot advance or lose a pending login.
* Password attempts are recorded *first*, per subject (one normalised key
  per user, whatever identifier was typed) and per client IP, in one
  conditional INSERT, and confirmed by a recount before ``authenticate()``
  runs: of any parallel burst at most ``limit`` passwords per bucket are
  ever checked, the rest get RateLimited without a hash (fixing a weakness of the original application).
  A failure keeps its two rows; a success withdraws exactly those two rows,
  never another account's or the IP's failures (fixing a weakness of the original application).
* At verification the attempt is recorded *before* the code is checked, so
  parallel guesses cannot exceed the per-user budget (fixing a weakness of the original application); a
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth import login as django_login
from django.contrib.auth.models import AnonymousUser
from django.utils.translation import gettext

from .. import clock, crypto
from ..backends import (
    ATTEMPT_ATTRIBUTE,
    GUARD_BACKEND,
    INNER_BACKEND_ATTRIBUTE,
    REMEMBER_DEVICE_ATTRIBUTE,
    read_device_cookie,
)
from ..client_ip import client_ip
from ..exceptions import (
    InvalidCode,
    InvalidCredentials,
    InvalidInput,
    InvalidToken,
    MethodNotEnabled,
    RateLimited,
    TwoFactorUnavailable,
)
from ..models import EphemeralToken, RateLimitEvent, RecoveryCode, TokenType, UserTwoFactor
from ..services import email_otp, engine, factors, lockout, tokens
from ..services.budget import count_attempt, note_failure
from ..services.factors import TwoFactorState, load_state
from ..services.inputs import clean_text
from ..services.pending import (
    MAX_CODE_LENGTH,
    MAX_IDENTIFIER_LENGTH,
    MAX_PASSWORD_LENGTH,
    MAX_TOKEN_LENGTH,
    LoginStep,
    PendingLogin,
    enabled_methods,
    peek_pending,
    writes_together,
)
from ..signals import two_factor_failed, two_factor_verified
from .session import mark_session

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser
    from django.http import HttpRequest

__all__ = [
    "MAX_CODE_LENGTH",
    "MAX_IDENTIFIER_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "MAX_TOKEN_LENGTH",
    "LoginStep",
    "PendingLogin",
    "begin_login",
    "begin_login_atomically",
    "enabled_methods",
    "password_login",
    "peek_pending",
    "send_login_email",
    "verify_login",
]

logger = logging.getLogger("ephemeral_auth.login")

MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def begin_login(
    request: HttpRequest,
    user: AbstractBaseUser,
    *,
    backend: str,
    skip_two_factor: bool = False,
    methods: list[str] | None = None,
    state: TwoFactorState | None = None,
    now: datetime | None = None,
) -> LoginStep:
    """Log ``user`` in, or start the second-factor step if they have 2FA.

    ``user`` was authenticated by ``backend`` already. With
    ``skip_two_factor=True`` (an identity provider asserted multi-factor
    authentication) the session is logged in and marked as 2FA-verified.
    ``state`` may pass the user's 2FA state when the caller read it already
    (``methods`` is the older form of the same, kept for callers of 0.1).
    Raises InvalidCredentials for an inactive user, TwoFactorUnavailable when
    2FA is on but no method can be used (fail closed).
    """
    if not getattr(user, "is_active", True):
        raise InvalidCredentials()
    now = now or clock.now()
    if skip_two_factor:
        state = load_state(user)
        django_login(request, user, backend=backend)  # type: ignore[arg-type]
        mark_session(request, user, state, verified=True, now=now)
        return LoginStep(status="authenticated", user=user)
    if state is None:
        state = load_state(user)
    if methods is None:
        methods = state.methods()
    if not methods:
        if state.enabled:
            raise TwoFactorUnavailable()
        django_login(request, user, backend=backend)  # type: ignore[arg-type]
        mark_session(request, user, state, verified=False, now=now)
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


def _state_of(account: lockout.Account | None, user: AbstractBaseUser) -> TwoFactorState | None:
    """The 2FA state read with the account before the password check, if it is this user's."""
    if account is None or account.pk != user.pk:
        return None
    return account.state


def password_login(
    request: HttpRequest,
    *,
    username: Any,
    password: Any,
    allowed: Callable[[AbstractBaseUser], bool] | None = None,
    now: datetime | None = None,
) -> LoginStep:
    """Authenticate a username (or email) and password, then :func:`begin_login`.

    The attempt is recorded first in the account's, the address's and the
    (account, address) buckets (``services.lockout``), then
    ``authenticate()`` checks the password. ``allowed`` may refuse an
    authenticated user (the admin login admits staff only); such a refusal
    is answered and counted like a wrong password. Raises InvalidInput for
    malformed values (nothing is recorded), RateLimited when a bucket is
    full (the password is then not checked at all), InvalidCredentials,
    TwoFactorUnavailable (2FA on, no usable method).
    """
    identifier = clean_text(username, field="username", max_length=MAX_IDENTIFIER_LENGTH)
    if not identifier.strip():
        raise InvalidInput(gettext("This field is required: %(name)s.") % {"name": "username"}, field="username")
    password = clean_text(password, field="password", max_length=MAX_PASSWORD_LENGTH)
    now = now or clock.now()
    ip = client_ip(request)
    device = read_device_cookie(request)
    attempt = lockout.begin(identifier, ip=ip, device_cookie=device, now=now)

    # This attempt is counted in its buckets already: a failure keeps the rows.
    # Django's ModelBackend hashes the password for unknown users too, so the
    # answer takes as long whether or not the account exists. GuardBackend,
    # when configured, sees that the attempt is recorded and only asks the
    # other backends.
    setattr(request, ATTEMPT_ATTRIBUTE, attempt)
    try:
        user = authenticate(request, username=identifier, password=password)
    finally:
        delattr(request, ATTEMPT_ATTRIBUTE)
    if user is None or (allowed is not None and not allowed(user)):
        attempt.signal_failure(request)
        raise InvalidCredentials()
    if attempt.account is None or attempt.account.pk != user.pk:
        # authenticate() accepted an identifier that the lookup did not tie to
        # this account (a custom backend's alias). The attempt was enforced and
        # recorded under the typed key; the account's own buckets must admit
        # the login too, so a variant of the identifier cannot open a locked
        # account. Not a failure either way: our rows are withdrawn.
        try:
            lockout.check_account(user.pk, ip=ip, device_cookie=device, now=now)
        except RateLimited:
            attempt.succeeded()
            raise
    state = _state_of(attempt.account, user) or load_state(user)
    if state.enabled and not state.methods():
        # 2FA on, nothing a login can use: fail closed, with a clear message.
        # The password was right, so this is no failure.
        attempt.succeeded()
        raise TwoFactorUnavailable()
    # A success is no failure: withdraw exactly this attempt's rows. Earlier
    # failures of this account and every failure of this address stay counted
    # (fixing a weakness of the original application). The withdrawal and what the success writes (the
    # pre_auth token, or the session) commit together.
    backend = getattr(user, INNER_BACKEND_ATTRIBUTE, None) or getattr(user, "backend", None) or MODEL_BACKEND
    if backend == GUARD_BACKEND:
        backend = _backend_for(user)
    with _login_unit(request, RateLimitEvent, EphemeralToken, get_user_model()) as unit:
        attempt.succeeded()
        unit.logging_in = True
        return begin_login(request, user, backend=backend, state=state, now=now)


# The second-factor step.


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
        # On a Galera cluster the COMMIT decides a race; losing it is losing the token.
        with engine.conflict_as(InvalidToken), writes_together(*models):
            yield unit
    except BaseException:
        # The login did not happen: no device cookie for it either (receivers.remember_login).
        request.__dict__.pop(REMEMBER_DEVICE_ATTRIBUTE, None)
        if unit.logging_in:
            if hasattr(request, "session"):
                session_engine = import_module(settings.SESSION_ENGINE)
                request.session = session_engine.SessionStore()
            request.user = AnonymousUser()
            for key in ("CSRF_COOKIE", "CSRF_COOKIE_NEEDS_UPDATE"):
                request.META.pop(key, None)
            request.META.update(csrf)
        raise



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
    # The code's one check (text, size, then the factor's own format), before anything is read.
    factor, cleaned = factors.read_code(method, code)
    now = now or clock.now()
    pending = peek_pending(pre_auth_token, challenge=challenge, now=now)
    user = pending.user
    if method not in pending.methods:
        raise MethodNotEnabled()
    try:
        if cleaned is None:
            # Cannot be right: refused without spending the user's budget.
            raise InvalidCode()
        # Committed on its own, before the code is checked; a factor whose answers cannot be
        # guessed (WebAuthn) has its failures counted after the check instead.
        counted_on_failure = bool(getattr(factor, "COUNTED_ON_FAILURE", False))
        if not counted_on_failure:
            count_attempt(user, pending.state, now=now)
        wrong: InvalidCode | None = None
        # One transaction: using up the code (the TOTP step, the recovery
        # code), consuming the pre_auth token and creating the session. A
        # lost race for the token (InvalidToken) or a database error undoes
        # all of it, so the code is not spent by a login that did not happen.
        # A wrong code is caught inside, so its bookkeeping (an emailed
        # code's attempt count) commits.
        with _login_unit(request, EphemeralToken, UserTwoFactor, RecoveryCode, get_user_model()) as unit:
            try:
                factor.check_login_code(pending, cleaned, now=now, request=request)
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
                binding = factor.login_binding(pending, cleaned)
                tokens.consume_token(pre_auth_token, TokenType.PRE_AUTH, challenge_id=challenge, now=now, **binding)
        if wrong is not None:
            if counted_on_failure:
                count_attempt(user, pending.state, now=now)
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
    now = now or clock.now()
    pending = peek_pending(pre_auth_token, challenge=challenge, now=now)
    email_otp.send_login_code(pending, request=request, now=now)


def _backend_for(user: AbstractBaseUser) -> str:
    """Return the backend the verified session is logged in with.

    The pending login does not remember which backend checked the first
    factor; Django's ModelBackend is used when configured (it loads any
    user by primary key), else the first configured backend other than
    GuardBackend (which only guards).
    """
    backends = list(getattr(settings, "AUTHENTICATION_BACKENDS", [MODEL_BACKEND]))
    if MODEL_BACKEND in backends:
        return MODEL_BACKEND
    others = [path for path in backends if path != GUARD_BACKEND]
    return others[0] if others else backends[0]
