"""Every login path under real concurrency (PostgreSQL and MariaDB): record first, everywhere.

* ``authenticate()`` from anywhere (here: 16 processes calling it directly,
  as Django's admin form, ``LoginView`` or DRF would): ``GuardBackend``
  records each attempt before any password is checked, so of a parallel
  burst at most the (account, address) limit of passwords are checked.
* Email codes: the probe sent 36 login-code emails in seconds from parallel
  logins against a limit of 3 per 10 minutes, because the send was checked,
  sent, then recorded. Recorded first, 20 parallel sends mail at most 3.
"""

from __future__ import annotations

from typing import Any

import pytest

from ephemeral_auth.models import EventType, RateLimitEvent
from ephemeral_auth.services import lockout, ratelimit
from tests.factories import PASSWORD, UserFactory, enable_email_codes
from tests.race import run_racers

pytestmark = [pytest.mark.race, pytest.mark.django_db(transaction=True)]

RACERS = 16
LIMIT = 5


def authenticate_burst(
    sync: Any, username: str, ip: str, limits: dict[str, Any], trials: int
) -> list[tuple[bool, int]]:
    """Child: per trial, one ``authenticate()`` with a wrong password; return (refused, passwords checked)."""
    from django.conf import settings
    from django.contrib.auth import authenticate
    from django.contrib.auth.hashers import MD5PasswordHasher
    from django.test import RequestFactory

    settings.EPHEMERAL_AUTH_RATE_LIMITS = limits
    checked: list[int] = []
    verify = MD5PasswordHasher.verify

    def counting_verify(self: Any, *args: Any) -> Any:
        checked.append(1)
        return verify(self, *args)

    MD5PasswordHasher.verify = counting_verify  # type: ignore[method-assign]
    outcomes = []
    for _ in range(trials):
        request = RequestFactory().post("/admin/login/", REMOTE_ADDR=ip)
        before = len(checked)
        sync()
        user = authenticate(request, username=username, password="wrong")
        assert user is None
        refused = getattr(request, "_ephemeral_auth_refusal", None) is not None
        outcomes.append((refused, len(checked) - before))
    return outcomes


def test_authenticate_from_anywhere_checks_at_most_the_limit():
    victim = UserFactory()
    limits = {"login_user_ip": (LIMIT, 900), "login_ip": (1000, 900), "login_attempt": (1000, 900)}
    results = run_racers(
        "tests.test_race_login_paths:authenticate_burst", [(victim.username, "203.0.113.7", limits, 1)] * RACERS
    )
    outcomes = [racer[0] for racer in results]
    checked = sum(count for _refused, count in outcomes)
    refused = sum(1 for was_refused, _count in outcomes if was_refused)
    assert checked <= LIMIT, outcomes
    assert checked + refused == RACERS, outcomes  # each was either checked once or refused unchecked
    key = lockout.pair_key(ratelimit.account_key(victim.pk), "203.0.113.7")
    assert RateLimitEvent.objects.filter(event_type=EventType.LOGIN_USER_IP, key=key).count() == checked


def send_burst(sync: Any, username: str, ip: str) -> tuple[int, int]:
    """Child: log in (password step), then, all racers at once, ask for the login code by email."""
    from django.core import mail
    from django.test import Client

    client = Client(REMOTE_ADDR=ip)
    body = client.post(
        "/api/auth/login/", {"username": username, "password": PASSWORD}, content_type="application/json"
    ).json()
    assert body["status"] == "2fa_required", body
    sync()
    response = client.post(
        "/api/auth/2fa/email/send/", {"pre_auth_token": body["pre_auth_token"]}, content_type="application/json"
    )
    return response.status_code, len(getattr(mail, "outbox", []))


def test_parallel_logins_mail_at_most_the_send_limit():
    user = UserFactory()
    enable_email_codes(user)
    results = run_racers(
        "tests.test_race_login_paths:send_burst", [(user.username, f"198.51.100.{n + 1}") for n in range(20)]
    )
    statuses = [status for status, _sent in results]
    sent = sum(count for _status, count in results)
    assert set(statuses) <= {200, 429}, statuses
    assert sent == statuses.count(200) <= 3, results
    assert sent >= 1  # the database let some through: it decides, it does not refuse everybody
    rows = RateLimitEvent.objects.filter(event_type=EventType.EMAIL_SEND, key=ratelimit.account_key(user.pk)).count()
    assert rows == sent
