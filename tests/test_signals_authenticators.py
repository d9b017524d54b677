"""authenticator_added / authenticator_removed / recovery_codes_generated: once per committed change, no secrets."""

from __future__ import annotations

import logging
import re

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test import RequestFactory
from django.test.utils import CaptureQueriesContext

from ephemeral_auth import signals
from ephemeral_auth.exceptions import InvalidCode, InvalidCredentials
from ephemeral_auth.models import RecoveryCode, UserTwoFactor
from ephemeral_auth.services import email_otp, recovery, totp, two_factor
from ephemeral_auth.services.two_factor import Proof
from tests.factories import PASSWORD, enable_email_codes, enrol_totp, totp_code

pytestmark = pytest.mark.django_db

KEYS = {
    "authenticator_added": {"signal", "sender", "user", "method", "replaced", "request"},
    "authenticator_removed": {"signal", "sender", "user", "method", "request"},
    "recovery_codes_generated": {"signal", "sender", "user", "count", "method", "request"},
}


class Recorder:
    """Collects every send of the three signals as (name, kwargs)."""

    def __init__(self):
        self.calls = []

    def receiver_for(self, name):
        def receive(**kwargs):
            self.calls.append((name, kwargs))

        return receive

    def names(self):
        return [name for name, _ in self.calls]

    def only(self, name):
        (kwargs,) = [kwargs for called, kwargs in self.calls if called == name]
        return kwargs

    def assert_carries_nothing_secret(self, *secrets):
        for name, kwargs in self.calls:
            assert set(kwargs) == KEYS[name]
            shown = repr({key: value for key, value in kwargs.items() if key not in ("signal", "sender", "user")})
            for secret in secrets:
                assert secret.replace("-", "") not in shown.replace("-", "")


@pytest.fixture
def received():
    recorder = Recorder()
    receivers = []
    for name in KEYS:
        receiver = recorder.receiver_for(name)
        receivers.append((getattr(signals, name), receiver))
        getattr(signals, name).connect(receiver, weak=False)
    yield recorder
    for signal, receiver in receivers:
        signal.disconnect(receiver)


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run the on_commit callbacks the block registered, as a real commit would."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def request_():
    return RequestFactory().post("/accounts/2fa/")


def last_mailed_code():
    return re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)


# TOTP.


def test_confirming_an_authenticator_sends_added_then_recovery_codes(user, now, received, committed, request_):
    setup = totp.setup(user, proof=Proof.trusted_caller(), now=now)
    code = totp_code(setup.secret, now)
    with committed():
        codes = totp.confirm(user, code, proof=Proof.trusted_caller(), now=now, request=request_)
    assert received.names() == ["authenticator_added", "recovery_codes_generated"]
    added = received.only("authenticator_added")
    assert added["sender"] is UserTwoFactor
    assert (added["user"], added["method"], added["replaced"], added["request"]) == (user, "totp", False, request_)
    generated = received.only("recovery_codes_generated")
    assert generated["sender"] is RecoveryCode
    assert (generated["user"], generated["count"], generated["request"]) == (user, len(codes), request_)
    assert generated["method"] == "totp"  # made with the factor: not a regeneration
    received.assert_carries_nothing_secret(setup.secret, code, *codes)


def test_replacing_the_authenticator_is_one_added_signal(user, now, received, committed):
    old_secret = enrol_totp(user)
    setup = totp.setup(user, code=totp_code(old_secret, now), proof=Proof.trusted_caller(), now=now)
    with committed():
        totp.confirm(user, totp_code(setup.secret, now, offset=1), proof=Proof.trusted_caller(), now=now)
    assert received.names() == ["authenticator_added", "recovery_codes_generated"]
    added = received.only("authenticator_added")
    assert (added["method"], added["replaced"], added["request"]) == ("totp", True, None)
    received.assert_carries_nothing_secret(old_secret, setup.secret)


def test_a_failed_confirmation_sends_nothing(user, now, received, committed):
    setup = totp.setup(user, proof=Proof.trusted_caller(), now=now)
    good = totp_code(setup.secret, now)
    with committed(), pytest.raises(InvalidCode):
        totp.confirm(user, "000000" if good != "000000" else "111111", proof=Proof.trusted_caller(), now=now)
    assert received.calls == []


def test_removing_the_authenticator_sends_removed_once(user, now, received, committed, request_):
    secret = enrol_totp(user)
    with committed(), pytest.raises(InvalidCode):
        totp.disable(user, "000000" if totp_code(secret, now) != "000000" else "111111",
                     proof=Proof.trusted_caller(), now=now)
    assert received.calls == []
    code = totp_code(secret, now)
    with committed():
        totp.disable(user, code, proof=Proof.trusted_caller(), now=now, request=request_)
    assert received.names() == ["authenticator_removed"]
    removed = received.only("authenticator_removed")
    assert removed["sender"] is UserTwoFactor
    assert (removed["user"], removed["method"], removed["request"]) == (user, "totp", request_)
    received.assert_carries_nothing_secret(secret, code)


def test_a_rolled_back_change_sends_nothing(user, now, received, committed):
    secret = enrol_totp(user)
    with committed() as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            totp.disable(user, totp_code(secret, now), proof=Proof.trusted_caller(), now=now)
            raise RuntimeError("rolled back")
    assert callbacks == [] and received.calls == []
    assert UserTwoFactor.objects.get(pk=user.pk).totp_enabled


def test_nothing_is_sent_before_the_commit(user, now, received, committed):
    secret = enrol_totp(user)
    with committed():
        with transaction.atomic():
            totp.disable(user, totp_code(secret, now), proof=Proof.trusted_caller(), now=now)
            assert received.calls == []
    assert received.names() == ["authenticator_removed"]


# Email codes.


def test_email_codes_confirm_and_disable(user, now, received, committed, request_):
    issued = email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    code = last_mailed_code()
    with committed():
        codes = email_otp.confirm(user, issued.raw, code, proof=Proof.trusted_caller(), now=now, request=request_)
    assert received.names() == ["authenticator_added", "recovery_codes_generated"]
    added = received.only("authenticator_added")
    assert (added["user"], added["method"], added["replaced"], added["request"]) == (user, "email", False, request_)
    assert received.only("recovery_codes_generated")["count"] == len(codes) == 10
    assert received.only("recovery_codes_generated")["method"] == "email"
    received.assert_carries_nothing_secret(code, issued.raw, *codes)

    received.calls.clear()
    with committed(), pytest.raises(InvalidCredentials):
        email_otp.disable(user, "wrong", proof=Proof.trusted_caller(), now=now)
    assert received.calls == []
    with committed():
        email_otp.disable(user, PASSWORD, proof=Proof.trusted_caller(), now=now, request=request_)
    assert received.names() == ["authenticator_removed"]
    removed = received.only("authenticator_removed")
    assert (removed["user"], removed["method"], removed["request"]) == (user, "email", request_)
    received.assert_carries_nothing_secret(PASSWORD)


def test_email_confirm_keeping_recovery_codes_sends_added_only(user, now, received, committed):
    recovery.generate(user)
    issued = email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    with committed():
        assert email_otp.confirm(user, issued.raw, last_mailed_code(), proof=Proof.trusted_caller(), now=now) == []
    assert received.names() == ["authenticator_added"]


def test_a_wrong_email_code_sends_nothing(user, now, received, committed):
    issued = email_otp.enable(user, proof=Proof.trusted_caller(), now=now)
    good = last_mailed_code()
    with committed(), pytest.raises(InvalidCode):
        email_otp.confirm(user, issued.raw, "000000" if good != "000000" else "111111",
                          proof=Proof.trusted_caller(), now=now)
    assert received.calls == []


# Recovery codes.


def test_regenerating_recovery_codes_sends_the_count_only(user, now, received, committed, request_):
    secret = enrol_totp(user)
    with committed(), pytest.raises(InvalidCode):
        recovery.regenerate(user, "ABCDE-FGHJK", proof=Proof.trusted_caller(), now=now)
    assert received.calls == []
    code = totp_code(secret, now)
    with committed():
        codes = recovery.regenerate(user, code, proof=Proof.trusted_caller(), now=now, request=request_)
    assert received.names() == ["recovery_codes_generated"]
    generated = received.only("recovery_codes_generated")
    assert (generated["user"], generated["count"], generated["request"]) == (user, 10, request_)
    assert generated["method"] is None  # the user asked for them
    received.assert_carries_nothing_secret(secret, code, *codes)


def test_generate_sends_once(user, received, committed):
    with committed():
        codes = recovery.generate(user)
    assert received.names() == ["recovery_codes_generated"]
    received.assert_carries_nothing_secret(*codes)


# The admin reset.


def _two_factor_selects(queries):
    table = UserTwoFactor._meta.db_table
    return [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT") and table in q["sql"]]


def test_reset_sends_removed_for_each_method(user, received, committed):
    enrol_totp(user)
    enable_email_codes(user)
    with committed():
        two_factor.reset_two_factor(user)
    assert received.names() == ["authenticator_removed", "authenticator_removed"]
    assert [kwargs["method"] for _, kwargs in received.calls] == ["totp", "email"]
    assert all(kwargs["request"] is None and kwargs["user"] == user for _, kwargs in received.calls)


def test_reset_of_a_user_without_two_factor_sends_nothing(user, received, committed):
    with committed():
        two_factor.reset_two_factor(user)
    assert received.calls == []


def test_reset_reads_the_database_not_a_stale_cached_row(user, received, committed):
    """``user.two_factor`` cached before email codes were turned on must not hide the email method."""
    enrol_totp(user)
    assert UserTwoFactor.objects.select_related("user").get(pk=user.pk).user.two_factor.email_enabled is False
    stale_user = UserTwoFactor.objects.select_related("user").get(pk=user.pk).user
    enable_email_codes(user)
    with committed():
        two_factor.reset_two_factor(stale_user)
    assert [kwargs["method"] for _, kwargs in received.calls] == ["totp", "email"]


def test_reset_without_receivers_costs_no_query(user, committed):
    enrol_totp(user)
    with committed(), CaptureQueriesContext(connection) as ctx:
        two_factor.reset_two_factor(user)
    assert _two_factor_selects(ctx.captured_queries) == []


# Cost and robustness.


def _statements(run):
    with CaptureQueriesContext(connection) as ctx:
        run()
    return len(ctx.captured_queries)


def test_signals_cost_no_query(now, received, committed):
    from tests.factories import UserFactory

    def disable_for(user):
        secret = enrol_totp(user)
        return lambda: totp.disable(user, totp_code(secret, now), proof=Proof.trusted_caller(), now=now)

    with committed():
        with_receivers = _statements(disable_for(UserFactory()))
    for signal, receivers in ((s, list(s.receivers)) for s in (signals.authenticator_removed,)):
        signal.receivers.clear()
        signal.sender_receivers_cache.clear()
        try:
            with committed():
                without_receivers = _statements(disable_for(UserFactory()))
        finally:
            signal.receivers[:] = receivers
            signal.sender_receivers_cache.clear()
    assert with_receivers == without_receivers


def test_a_failing_receiver_does_not_undo_the_change(user, now, committed, caplog):
    def broken(**kwargs):
        raise RuntimeError("receiver bug")

    signals.authenticator_removed.connect(broken, weak=False)
    try:
        secret = enrol_totp(user)
        with committed(), caplog.at_level(logging.ERROR):
            totp.disable(user, totp_code(secret, now), proof=Proof.trusted_caller(), now=now)
    finally:
        signals.authenticator_removed.disconnect(broken)
    assert not UserTwoFactor.objects.get(pk=user.pk).totp_enabled
    assert "receiver bug" in caplog.text
