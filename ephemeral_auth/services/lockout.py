"""Password attempts: which buckets pay for one, and the lock model (docs/security.md, "The lock model").

Every password check made through ``django.contrib.auth.authenticate()`` is
recorded here *before* the password is hashed (by the login step, or by
``ephemeral_auth.backends.GuardBackend`` for every other caller: the admin
login, Django's ``LoginView``, DRF, a site's own views). One attempt pays
for three buckets at once, in one conditional INSERT:

============================  ==========================  =====================
bucket (event type)           key                         default
============================  ==========================  =====================
``login_user_ip``             ``u:<pk>|<ip>``             10 / 15 min: the primary lock
``login_ip``                  ``<ip>``                    20 / 15 min
``login_attempt``             ``u:<pk>``                  100 / 15 min: the ceiling
``login_device`` (instead)    ``d:<browser id>``          10 / 15 min
============================  ==========================  =====================

* **Keyed by the account, not by its name.** The typed identifier is resolved
  to the account (exact username, else the one account with that address)
  before anything is recorded, and the account's buckets are keyed by its
  primary key: two accounts never share a bucket, whatever their names
  casefold to ("straße" and "strasse"). An identifier that names no account
  is keyed by its casefolded text (``n:<name>``), with the same statements,
  so the answers for known and unknown accounts stay identical.
* **The attacker cannot lock the owner out.** Failures from one address fill
  only that address's pair bucket: 30 failures from 30 addresses leave the
  owner's own address untouched. The ceiling bounds guessing from many
  addresses: however many addresses an attacker holds, no more than the
  ceiling's limit of passwords are checked per window.
* **The owner's way in while the ceiling holds**: a browser that completed a
  login for this account within ``DEVICE_COOKIE_AGE`` carries a signed cookie
  naming the account (no database row). Its attempts are counted in its own
  ``login_device`` bucket *instead of* the ceiling, so they are checked while
  the ceiling refuses everybody else (OWASP's "device cookies"). A user on a
  new browser resets the password: the reset page marks that browser.
  The cookie's value is read and written by ``services.devices``.

Plain values in: the client address (``ip=``) and the device cookie's value
(``device_cookie=``); ``PasswordAttempt.signal_failure(request)`` only hands
``request`` on, untouched, to ``user_locked_out``'s receivers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import FieldDoesNotExist
from django.db import router
from django.db.models import BooleanField, Exists, ExpressionWrapper, F, OuterRef, Q, Value
from django.utils import timezone

from .. import clock
from ..models import EventType, RateLimitEvent, RecoveryCode, UserTwoFactor
from ..signals import user_locked_out
from . import ratelimit
from .devices import remember_device, trusted_device  # the device cookie's 0.1 place: re-exported
from .factors import TwoFactorState, fingerprint, webauthn_flag
from .inputs import fold

__all__ = [
    "Account",
    "PasswordAttempt",
    "account_key",
    "begin",
    "buckets",
    "check_account",
    "name_key",
    "pair_key",
    "remember_device",
    "resolve",
    "trusted_device",
]

ACCOUNT_PREFIX = "u:"
NAME_PREFIX = "n:"
HASHED_NAME_PREFIX = "n#"
DEVICE_PREFIX = "d:"
PAIR_SEPARATOR = "|"
# Room for "|" and the longest IP key inside the 254-character key column.
MAX_SUBJECT_LENGTH = 200
# Rows read to resolve an identifier: username matches first, then every account whose
# address the database equates with it (re-checked in Python). Look-alike accounts made on
# purpose cannot push the real one out of a small window; past the bound nobody is named.
MAX_CANDIDATES = 20


account_key = ratelimit.account_key


def name_key(identifier: Any) -> str:
    """Return the key of an identifier that names no account: ``n:`` and its casefolded text.

    "Ghost", " ghost " and "GHOST" share one key. A long identifier is keyed by
    its digest, so a key always fits the column next to an address.
    """
    folded = ratelimit.subject_key(identifier)
    key = NAME_PREFIX + folded
    if len(key) > MAX_SUBJECT_LENGTH:
        key = HASHED_NAME_PREFIX + hashlib.sha256(folded.encode()).hexdigest()
    return key


def pair_key(subject: str, ip: str) -> str:
    """Return the key of one subject guessed from one address (``u:<pk>|<ip>``)."""
    return f"{subject}{PAIR_SEPARATOR}{ip}"


def _device_key(device_id: str) -> str:
    return DEVICE_PREFIX + device_id


def buckets(subject: str, ip: str, *, device: str | None = None) -> list[tuple[str, str]]:
    """Return the ``(event_type, key)`` buckets one password attempt pays for."""
    found = [(EventType.LOGIN_USER_IP.value, pair_key(subject, ip)), (EventType.LOGIN_IP.value, ip)]
    if device:
        found.append((EventType.LOGIN_DEVICE.value, _device_key(device)))
    else:
        found.append((EventType.LOGIN_ATTEMPT.value, subject))
    return found


# Which account an identifier names.


@dataclass(frozen=True)
class Account:
    """The account a typed identifier names, with its second factors, read before any password check.

    ``state`` is the user's 2FA state read in the same SELECT (which factors
    count is ``services.factors``' one rule); ``two_factor``, ``methods``,
    ``email``, ``email_usable`` and ``fingerprint`` are read from it.
    """

    pk: Any
    username: str
    state: TwoFactorState

    @property
    def key(self) -> str:
        return account_key(self.pk)

    @property
    def two_factor(self) -> bool:
        return self.state.enabled

    @property
    def methods(self) -> tuple[str, ...]:
        """The methods a login may use."""
        return tuple(self.state.methods())

    @property
    def email(self) -> bool:
        return self.state.email

    @property
    def email_usable(self) -> bool:
        return self.state.email_usable

    @property
    def fingerprint(self) -> str:
        return self.state.fingerprint


def _email_field(model: Any) -> str:
    return str(model.get_email_field_name()) if hasattr(model, "get_email_field_name") else "email"


def _has_field(model: Any, name: str) -> bool:
    try:
        model._meta.get_field(name)
    except FieldDoesNotExist:
        return False
    return True


def may_be_email(identifier: str) -> bool:
    """Return whether the identifier may name an account by its email address (not its username)."""
    model = get_user_model()
    email_field = _email_field(model)
    return "@" in identifier and email_field != model.USERNAME_FIELD and _has_field(model, email_field)


def _candidates(identifier: str) -> Any:
    """The users an identifier may name (username, or email address), with their 2FA enrolments. One SELECT."""
    model = get_user_model()
    username_field = model.USERNAME_FIELD
    email_field = _email_field(model)
    by_name = Q(**{username_field: identifier})
    condition = by_name
    if may_be_email(identifier):
        condition |= Q(**{f"{email_field}__iexact": identifier})
    rows = UserTwoFactor.objects.filter(user_id=OuterRef("pk"))
    return (
        model._default_manager.filter(condition)
        .annotate(
            _ea_pk=F("pk"),
            _ea_name=F(username_field),
            _ea_named=ExpressionWrapper(by_name, output_field=BooleanField()),
            _ea_totp=Exists(rows.filter(totp_confirmed_at__isnull=False).exclude(totp_secret="")),
            _ea_email=Exists(rows.filter(email_enabled=True)),
            _ea_codes=Exists(RecoveryCode.objects.filter(user_id=OuterRef("pk"))),
            _ea_address=F(email_field) if _has_field(model, email_field) else Value(""),
            _ea_totp_at=F("two_factor__totp_confirmed_at"),
            _ea_email_at=F("two_factor__email_confirmed_at"),
            _ea_changed_at=F("two_factor__changed_at"),
            _ea_webauthn=webauthn_flag("pk"),
        )
        .order_by("-_ea_named", "pk")
        .values_list(
            "_ea_pk", "_ea_name", "_ea_named", "_ea_totp", "_ea_email", "_ea_codes", "_ea_address",
            "_ea_totp_at", "_ea_email_at", "_ea_changed_at", "_ea_webauthn",
        )[:MAX_CANDIDATES]
    )


def _pick(rows: list[Any], identifier: str) -> Account | None:
    """Return the account the identifier names, or None (no match, or several).

    A username match is the database's own: the column's collation decides
    (it may equate "ALICE" or "álice" with "alice" on MariaDB), exactly as
    the password backend will when it looks the user up, so every spelling
    it accepts pays into the same account's buckets; the exact username wins
    over the others. An address is compared once more in Python under
    :func:`fold` (NFKC, casefold): a collation that upper-cases a dotless "ı"
    to "I" must not tie a look-alike address to somebody else's account.
    """
    named = [row for row in rows if row[2]]
    exact = [row for row in named if row[1] == identifier]
    if exact:
        matches = exact[:1]
    elif named:
        matches = named
    else:
        if len(rows) >= MAX_CANDIDATES:
            return None
        folded = fold(identifier)
        matches = [row for row in rows if isinstance(row[6], str) and row[6] and fold(row[6]) == folded]
    if len(matches) != 1:
        return None
    pk, name, _named, totp, email, codes, address, totp_at, email_at, changed_at, webauthn = matches[0]
    pk = get_user_model()._meta.pk.to_python(pk)  # type: ignore[union-attr]
    state = TwoFactorState(
        user_id=pk,
        totp=bool(totp),
        email=bool(email),
        has_recovery_codes=bool(codes),
        fingerprint=fingerprint(
            pk, totp=bool(totp), totp_at=_aware(totp_at), email=bool(email), email_at=_aware(email_at),
            changed_at=_aware(changed_at),
        ),
        email_usable=bool(address),
        webauthn=bool(webauthn),
    )
    return Account(pk=pk, username=str(name), state=state)


def _aware(value: Any) -> Any:
    """A datetime read through values_list, as the model field would give it (aware, on every backend)."""
    if value is None or not isinstance(value, datetime):
        return value
    if timezone.is_naive(value):
        return timezone.make_aware(value, dt_timezone.utc)
    return value


def resolve(identifier: str) -> Account | None:
    """Return the account ``identifier`` names (one SELECT, for known and unknown identifiers alike)."""
    return _pick(list(_candidates(identifier)), identifier)


# The attempt.


@dataclass
class PasswordAttempt:
    """One password attempt, recorded in its buckets and admitted: check the password, then settle.

    A failure keeps the rows (:meth:`failed` names the buckets it filled); a
    success withdraws exactly them (:meth:`succeeded`).
    """

    provisional: ratelimit.Provisional
    account: Account | None

    def failed(self) -> list[ratelimit.Bucket]:
        """Return the buckets this failure filled (for ``user_locked_out``); the rows stay."""
        return [
            bucket
            for bucket, seen in zip(self.provisional.buckets, self.provisional.counts, strict=True)
            if seen == bucket.limit
        ]

    def signal_failure(self, request: Any) -> None:
        """A wrong password: the rows stay; send ``user_locked_out`` for each bucket it filled."""
        for bucket in self.failed():
            user_locked_out.send(sender=RateLimitEvent, event_type=bucket.event_type, key=bucket.key, request=request)

    def succeeded(self) -> None:
        """A right password is no failure: withdraw exactly this attempt's rows (one DELETE)."""
        self.provisional.withdraw()


def begin(identifier: str | None, *, ip: str, device_cookie: Any = "", now: datetime | None = None) -> PasswordAttempt:
    """Resolve the account, record the attempt in its buckets, and confirm; or raise RateLimited.

    Three statements, known account or not: the SELECT that resolves the
    identifier, the conditional INSERT of every bucket's row, the SELECT that
    recounts them. Record first, then confirm, then (only then) may the
    caller check the password: of any burst at most ``limit`` attempts per
    bucket get past here inside a window, whatever the concurrency
    (``services/ratelimit.py``). A refused attempt withdraws its rows, so it
    counts nowhere. ``identifier`` None (a credential without a name): only
    the address's bucket pays. Raises InvalidInput for a malformed
    identifier or address (nothing is recorded).
    """
    now = now or clock.now()
    ip = ratelimit.ip_key(ip)
    account: Account | None = None
    device: str | None = None
    if identifier is None:
        chosen = [(EventType.LOGIN_IP.value, ip)]
    else:
        typed = name_key(identifier)  # validates the identifier before any statement
        account = resolve(identifier)
        subject = account.key if account is not None else typed
        if account is not None:
            device = trusted_device(device_cookie, account.pk, now=now)
        chosen = buckets(subject, ip, device=device)
    provisional = ratelimit.record_first(chosen, now=now)
    provisional.confirm()
    return PasswordAttempt(provisional=provisional, account=account)


def check_account(pk: Any, *, ip: str, device_cookie: Any = "", now: datetime | None = None) -> None:
    """Raise RateLimited if the account's own buckets refuse a login from ``ip`` now (records nothing).

    For a backend that accepted an identifier the lookup did not tie to the
    account (an alias, a looser collation): the attempt was recorded under
    the typed key, and the account itself must admit the login too, so a
    variant of the name cannot open a locked account.
    """
    now = now or clock.now()
    ip = ratelimit.ip_key(ip)
    device = trusted_device(device_cookie, pk, now=now)
    for event_type, key in buckets(account_key(pk), ip, device=device):
        if event_type != EventType.LOGIN_IP:
            ratelimit.check(event_type, key, now=now)


# Unlocking and describing (the admin's "Locked out now" page, ``ephemeral_auth_unlock``).


def _clear(event_types: tuple[str, ...], condition: Q) -> dict[str, int]:
    alias = router.db_for_write(RateLimitEvent)
    cleared: dict[str, int] = {}
    for event_type in event_types:
        queryset = RateLimitEvent.objects.using(alias).filter(condition, event_type=event_type)
        cleared[event_type] = int(queryset._raw_delete(alias))
    return cleared


def _merge(*parts: dict[str, int]) -> dict[str, int]:
    merged: dict[str, int] = {}
    for part in parts:
        for event_type, count in part.items():
            merged[event_type] = merged.get(event_type, 0) + count
    return merged


def unlock_username(username: str) -> dict[str, int]:
    """Clear every bucket of the account named ``username`` and of the name itself; return counts per type.

    The account (exact username): its ceiling, its (account, address) pairs,
    its 2FA and email-send budgets. The name (what was typed, casefolded):
    failures typed under a name that is no account's.
    """
    model = get_user_model()
    field = model.USERNAME_FIELD
    pks = list(model._default_manager.filter(**{field: username}).values_list("pk", flat=True)[:1])
    if not pks:  # an administrator's spelling: the one account whose username matches but for case
        pks = list(model._default_manager.filter(**{f"{field}__iexact": username}).values_list("pk", flat=True)[:2])
    pk = pks[0] if len(pks) == 1 else None
    parts = []
    if pk is not None:
        key = account_key(pk)
        parts.append(_clear(
            (EventType.LOGIN_ATTEMPT, EventType.TWO_FA_ATTEMPT, EventType.EMAIL_SEND), Q(key=key)
        ))
        parts.append(_clear((EventType.LOGIN_USER_IP,), Q(key__startswith=key + PAIR_SEPARATOR)))
    name = name_key(username)
    parts.append(_clear((EventType.LOGIN_ATTEMPT,), Q(key=name)))
    parts.append(_clear((EventType.LOGIN_USER_IP,), Q(key__startswith=name + PAIR_SEPARATOR)))
    return _merge(*parts)


def unlock_address(ip: str) -> dict[str, int]:
    """Clear every bucket of a client address (its key: ``ratelimit.ip_key``): its own, and its pairs."""
    return _merge(
        _clear((EventType.LOGIN_IP, EventType.PASSWORD_RESET_IP, EventType.OIDC_AUTHORIZE), Q(key=ip)),
        _clear((EventType.LOGIN_USER_IP,), Q(key__endswith=PAIR_SEPARATOR + ip)),
    )


def describe_keys(keys: list[str]) -> dict[str, str]:
    """Return a readable label per key: account keys get the username (one SELECT for all of them)."""
    model = get_user_model()
    pks: dict[str, str] = {}
    for key in keys:
        subject = key.split(PAIR_SEPARATOR, 1)[0]
        if subject.startswith(ACCOUNT_PREFIX):
            pks[subject] = subject[len(ACCOUNT_PREFIX):]
    names: dict[str, str] = {}
    if pks:
        rows = model._default_manager.filter(pk__in=list(pks.values())).values_list("pk", model.USERNAME_FIELD)
        names = {str(pk): str(name) for pk, name in rows}
    labels: dict[str, str] = {}
    for key in keys:
        subject, _sep, ip = key.partition(PAIR_SEPARATOR)
        if subject.startswith(ACCOUNT_PREFIX):
            pk = subject[len(ACCOUNT_PREFIX):]
            who = f"{names[pk]} (user #{pk})" if pk in names else f"deleted user #{pk}"
        elif subject.startswith(NAME_PREFIX):
            who = f"{subject[len(NAME_PREFIX):]} (no such account)"
        elif subject.startswith(HASHED_NAME_PREFIX):
            who = "a long name (no such account)"
        elif subject.startswith(DEVICE_PREFIX):
            who = "a known browser"
        else:
            who = subject
        labels[key] = f"{who} from {ip}" if ip else who
    return labels
