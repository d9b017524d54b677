"""Management commands print user-chosen and database-held text with control characters escaped.

A rate-limit key holds what an anonymous client typed as a username; a
username with an ANSI escape sequence must not clear the operator's screen or
fake the output of ``ephemeral_auth_unlock --list``.
"""

from __future__ import annotations

import pytest
from django.core.management import CommandError
from django.db import DatabaseError

from ephemeral_auth.models import EventType
from ephemeral_auth.services import cleanup, ratelimit, totp
from tests.factories import UserFactory
from tests.test_commands import fill, run

pytestmark = pytest.mark.django_db

FAKE = "\x1b[2J\x1b[HNobody is locked out."
FAKE_ESCAPED = "\\x1b[2J\\x1b[HNobody is locked out."


# The helper.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\x1b[31m", "\\x1b[31m"),
        ("tab\there", "tab\\x09here"),
        ("line\nbreak\r", "line\\x0abreak\\x0d"),
        ("nul\x00", "nul\\x00"),
        ("del\x7f", "del\\x7f"),
        ("csi\x9b2J", "csi\\x9b2J"),  # C1 control: a one-byte CSI on some terminals
        ("nbsp\xa0", "nbsp\\xa0"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("evil\u202egnp.exe", "evil\\u202egnp.exe"),  # RIGHT-TO-LEFT OVERRIDE
        ("zw\u200bsp\ufeff", "zw\\u200bsp\\ufeff"),
        ("tag\U000e0041", "tag\\U000e0041"),
        ("lone\ud800", "lone\\ud800"),
    ],
)
def test_printable_escapes_what_is_not_printable(value, expected):
    from ephemeral_auth.text import printable

    assert printable(value) == expected


@pytest.mark.parametrize(
    "value", ["", "alice", "straße", "José", "Ἀθῆναι", "日本語", "emoji 🙂", "a b", "back\\slash", "u:42|10.0.0.1"]
)
def test_printable_leaves_ordinary_text_alone(value):
    from ephemeral_auth.text import printable

    assert printable(value) == value


def test_printable_takes_any_value():
    from ephemeral_auth.text import printable

    assert printable(42) == "42"
    assert printable(DatabaseError("bad \x1b")) == "bad \\x1b"


# ephemeral_auth_unlock --list.


def test_list_escapes_a_locked_out_users_username(frozen):
    user = UserFactory(username=FAKE)
    key = ratelimit.account_key(user.pk)
    fill(EventType.TWO_FA_ATTEMPT, key, 5, frozen)
    out = run("ephemeral_auth_unlock", "--list")
    assert "\x1b" not in out
    assert out.startswith("1 locked out:\n")
    assert f"({FAKE_ESCAPED} (user #{user.pk}))" in out


@pytest.mark.parametrize(
    ("event_type", "limit", "key", "shown_key", "who"),
    [
        (EventType.LOGIN_ATTEMPT, 100, "n:\x1b]0;owned\x07ghost", "n:\\x1b]0;owned\\x07ghost",
         "\\x1b]0;owned\\x07ghost (no such account)"),
        (EventType.LOGIN_USER_IP, 10, "n:\u202eecila|10.0.0.1", "n:\\u202eecila|10.0.0.1",
         "\\u202eecila (no such account) from 10.0.0.1"),
    ],
)
def test_list_escapes_identifiers_typed_at_login(frozen, event_type, limit, key, shown_key, who):
    fill(event_type, key, limit, frozen)
    out = run("ephemeral_auth_unlock", "--list")
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    (line,) = out.splitlines()[1:]
    assert line.startswith(f"  {event_type:<20} {shown_key}  {limit} events, retry after ")
    assert line.endswith(f"({who})")


def test_list_columns_line_up_on_the_escaped_keys(frozen):
    fill(EventType.LOGIN_ATTEMPT, "n:\x1b\x1b\x1b", 100, frozen)
    fill(EventType.LOGIN_ATTEMPT, "n:abcdefghij", 100, frozen)
    lines = run("ephemeral_auth_unlock", "--list").splitlines()[1:]
    assert [line.index(" 100 events") for line in lines] == [lines[0].index(" 100 events")] * 2


# ephemeral_auth_unlock: echoes of the command's own arguments.


def test_username_argument_is_echoed_escaped(frozen):
    out = run("ephemeral_auth_unlock", "--username", "bob\x1b[2J\u202e")
    assert out == "username bob\\x1b[2J\\u202e: nothing to clear.\n"


def test_unlocking_a_user_with_an_escape_sequence_in_the_name_is_echoed_escaped(frozen):
    user = UserFactory(username=FAKE)
    fill(EventType.TWO_FA_ATTEMPT, ratelimit.account_key(user.pk), 5, frozen)
    out = run("ephemeral_auth_unlock", "--username", FAKE)
    assert out == f"Unlocked username {FAKE_ESCAPED}: cleared 5 2fa_attempt events.\n"


def test_email_argument_is_echoed_escaped(frozen):
    out = run("ephemeral_auth_unlock", "--email", "a\x1b[2J@example.com")
    assert out == "email a\\x1b[2j@example.com: nothing to clear.\n"  # casefolded, as the key is


@pytest.mark.parametrize(("option", "value"), [("--ip", "10.0.0.1\x1b[2J"), ("--username", "x\x00\x1b[2J")])
def test_a_refused_argument_is_echoed_escaped_in_the_error(frozen, option, value):
    with pytest.raises(CommandError) as info:
        run("ephemeral_auth_unlock", option, value)
    assert "\x1b" not in str(info.value) and "\x00" not in str(info.value)
    assert "\\x1b[2J" in str(info.value)


# Database errors can quote stored values: escaped in all three commands.


def _broken(*args, **kwargs):
    raise DatabaseError("value \x1b[2J\x1b[Hdone. is invalid")


@pytest.mark.parametrize(
    ("target", "name", "command"),
    [
        (ratelimit, "locked_out", ("ephemeral_auth_unlock", "--list")),
        (cleanup, "purge_expired", ("purge_ephemeral_auth",)),
        (totp, "reencrypt_secrets", ("ephemeral_auth_reencrypt",)),
    ],
)
def test_database_errors_are_escaped(monkeypatch, target, name, command):
    monkeypatch.setattr(target, name, _broken)
    with pytest.raises(CommandError) as info:
        run(*command)
    assert "\x1b" not in str(info.value)
    assert "value \\x1b[2J\\x1b[Hdone. is invalid" in str(info.value)


def test_purge_batch_size_is_echoed_escaped():
    with pytest.raises(CommandError) as info:
        run("purge_ephemeral_auth", batch_size="7\x1b[2J")
    assert "\x1b" not in str(info.value)
    assert "7\\x1b[2J" in str(info.value)


def test_reencrypt_escapes_the_ids_it_reports(monkeypatch):
    # A custom user model may have text primary keys.
    monkeypatch.setattr(totp, "reencrypt_secrets", lambda **kwargs: totp.Reencryption(undecryptable=["a\x1b[2J", 7]))
    with pytest.raises(CommandError) as info:
        run("ephemeral_auth_reencrypt")
    assert "\x1b" not in str(info.value)
    assert "(users #a\\x1b[2J, #7)" in str(info.value)
