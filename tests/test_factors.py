"""services.factors: the one definition of a user's second factors, the factor registry, and the 0.1 names."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import RequestFactory

from ephemeral_auth.auth import login
from ephemeral_auth.auth import session as auth_session
from ephemeral_auth.models import UserTwoFactor
from ephemeral_auth.services import email_otp, factors, lockout, recovery, totp
from ephemeral_auth.services import login as old_login
from ephemeral_auth.services import two_factor as old_two_factor
from tests.factories import PASSWORD, enrol_totp

pytestmark = pytest.mark.django_db


def recovery_codes_only(user, now):
    """A user whose only enrolment left is a set of recovery codes (both factors were removed)."""
    UserTwoFactor.objects.create(user=user, changed_at=now)
    return recovery.generate(user, now=now)


def test_recovery_codes_alone_are_not_a_second_factor(user, now):
    recovery_codes_only(user, now)
    state = factors.load_state(user)
    assert state.has_recovery_codes
    assert state.enrolled == [] and not state.enabled and state.methods() == []
    account = lockout.resolve(user.username)
    assert account is not None and not account.two_factor and account.methods == ()


def test_a_user_with_recovery_codes_alone_logs_in_without_a_second_step(user, now):
    recovery_codes_only(user, now)
    request = RequestFactory().post("/login/", REMOTE_ADDR="192.0.2.10")
    request.session = SessionStore()
    step = login.password_login(request, username=user.username, password=PASSWORD, now=now)
    assert step.status == "authenticated" and step.methods == []
    assert request.session[auth_session.SESSION_KEY]["e"] is False


def test_recovery_codes_count_beside_another_factor(user, now):
    enrol_totp(user)
    recovery.generate(user, now=now)
    assert factors.load_state(user).methods() == ["totp", "recovery"]
    assert lockout.resolve(user.username).methods == ("totp", "recovery")


def test_the_wiring_registers_one_module_per_factor():
    assert factors.get("totp") is totp
    assert factors.get("email") is email_otp
    assert factors.get("recovery") is recovery
    with pytest.raises(LookupError):
        factors.get("passkey")
    with pytest.raises(ValueError, match="unknown second-factor method"):
        factors.register("sms", totp)


def test_services_login_keeps_its_moved_names_with_a_warning():
    with pytest.warns(DeprecationWarning, match=r"services\.login\.begin_login moved to ephemeral_auth\.auth\.login"):
        assert old_login.begin_login is login.begin_login
    with pytest.warns(DeprecationWarning):
        assert old_login.password_login is login.password_login
    # Plain values stay in the services: no warning.
    assert old_login.peek_pending is login.peek_pending and old_login.LoginStep is login.LoginStep
    with pytest.raises(AttributeError):
        old_login.no_such_name  # noqa: B018


def test_services_two_factor_keeps_its_moved_names_with_a_warning():
    with pytest.warns(DeprecationWarning, match=r"two_factor\.session_proof moved to ephemeral_auth\.auth\.session"):
        assert old_two_factor.session_proof is auth_session.session_proof
    with pytest.warns(DeprecationWarning):
        assert old_two_factor.SESSION_KEY == auth_session.SESSION_KEY
    assert old_two_factor.load_state is factors.load_state and old_two_factor.TwoFactorState is factors.TwoFactorState
    with pytest.raises(AttributeError):
        old_two_factor.no_such_name  # noqa: B018
