"""The demo: `python3 dev.py demo` keeps its data, checks its port first, and lists sent mail."""

from __future__ import annotations

import importlib.util
import io
import socket
import sys
from pathlib import Path

import django
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from ephemeral_auth.models import RecoveryCode, UserTwoFactor
from example_project.demo.management.commands.demo_setup import DEMO_USERS, TWO_FACTOR_DEMO

ROOT = Path(__file__).resolve().parent.parent
DEMO_USERNAMES = [spec.username for spec in (*DEMO_USERS, TWO_FACTOR_DEMO)]
DEMO_MAIL_BACKEND = "example_project.demo.mail.DemoMailBackend"


def use_demo_mail(settings, directory: Path | None = None) -> None:
    """Make the demo's mail backend the project's (MAILERS from Django 6.1 on)."""
    if django.VERSION >= (6, 1):
        settings.MAILERS = {"default": {"BACKEND": DEMO_MAIL_BACKEND}}
    else:
        settings.EMAIL_BACKEND = DEMO_MAIL_BACKEND
    if directory is not None:
        settings.DEMO_MAIL_DIR = directory


def load_dev():
    """dev.py is a script beside the project, not a package: load it as a module."""
    spec = importlib.util.spec_from_file_location("ephemeral_auth_dev_script", ROOT / "dev.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and annotations look the module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def dev(monkeypatch):
    """dev.py, with every step that would install, migrate or serve replaced by a failure."""
    module = load_dev()
    monkeypatch.chdir(ROOT)

    def forbidden(*args, **kwargs):
        raise AssertionError(f"dev.py went on to set up or run something: {args}")

    monkeypatch.setattr(module, "ensure_installed", forbidden)
    monkeypatch.setattr(module, "run", forbidden)
    monkeypatch.setattr(module.os, "execve", forbidden)
    return module


def demo_state() -> dict:
    """Everything demo_setup may change: the users' rows, their 2FA rows and recovery codes."""
    users = get_user_model().objects.filter(username__in=DEMO_USERNAMES).order_by("username")
    return {
        "users": list(users.values_list("username", "password", "email", "is_active", "is_staff", "is_superuser")),
        "two_factor": list(
            UserTwoFactor.objects.order_by("pk").values_list("user_id", "totp_secret", "totp_confirmed_at")
        ),
        "recovery": sorted(RecoveryCode.objects.values_list("user_id", "code_hash")),
    }


def setup_demo(*args: str) -> str:
    out = io.StringIO()
    call_command("demo_setup", "--force", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_a_second_run_keeps_passwords_and_recovery_codes(settings):
    use_demo_mail(settings)
    first = setup_demo()
    assert "recovery codes: " in first
    created = demo_state()
    assert [row[0] for row in created["users"]] == sorted(DEMO_USERNAMES)
    assert len(created["recovery"]) == 10

    # A password changed in the demo (say by a reset) survives the next start.
    demo = get_user_model().objects.get(username="demo")
    demo.set_password("changed during the demo 42")
    demo.save()
    changed = demo_state()

    second = setup_demo()
    assert demo_state() == changed
    assert "10 unused" in second  # the codes are not printed again: they are kept
    assert "username: demo " in second and "(changed in the demo; --reset restores it)" in second
    for spec in (*DEMO_USERS, TWO_FACTOR_DEMO):
        assert spec.email in second  # the reset form asks for it
    assert "Mail (password-reset links, sign-in codes) is not delivered" in second and "/dev/mail/" in second


@pytest.mark.django_db
def test_reset_restores_passwords_and_makes_new_recovery_codes():
    setup_demo()
    demo = get_user_model().objects.get(username="demo")
    demo.set_password("changed during the demo 42")
    demo.save()
    before = demo_state()

    output = setup_demo("--reset")
    after = demo_state()
    assert after["recovery"] != before["recovery"]
    assert len(after["recovery"]) == 10
    demo.refresh_from_db()
    assert demo.check_password("demo-user-password")
    assert "password: demo-user-password" in output


def test_demo_help_exits_0_without_touching_anything(dev, capsys, django_db_blocker):
    with django_db_blocker.block():  # any database query fails the test
        assert dev.main(["demo", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--reset" in out
    assert "0.0.0.0:8080" in out  # the address argument is documented


def test_a_busy_port_gives_a_hint_without_touching_anything(dev, capsys, django_db_blocker):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]

        hint = dev.address_problem(f"127.0.0.1:{port}")
        assert hint is not None and hint.startswith(f"port {port} is busy: python3 dev.py demo 127.0.0.1:")
        suggested = int(hint.rsplit(":", 1)[1])
        assert suggested != port and dev.address_problem(f"127.0.0.1:{suggested}") is None

        with django_db_blocker.block():
            assert dev.main(["demo", f"127.0.0.1:{port}"]) == 1
            assert dev.main(["demo", str(port)]) == 1  # a bare port means 127.0.0.1
    assert f"port {port} is busy" in capsys.readouterr().out


def test_a_free_port_and_bad_addresses(dev):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert dev.address_problem(f"127.0.0.1:{port}") is None
    assert dev.split_address("8001") == ("127.0.0.1", 8001)
    assert dev.split_address("0:8080") == ("0.0.0.0", 8080)
    assert dev.split_address("[::1]:8000") == ("[::1]", 8000)
    for bad in ("--help", "127.0.0.1:", "host:99999", "a b"):
        assert dev.split_address(bad) is None
    assert "not an address" in dev.address_problem("127.0.0.1:")
    assert dev.main(["demo", "--no-such-option"]) == 2


# --- the mail page -----------------------------------------------------------------------------


@pytest.fixture
def demo_mail(settings, tmp_path, reset_mail_inline):
    """The demo's mail backend, writing into a temporary directory."""
    use_demo_mail(settings, tmp_path / "mail")
    return settings.DEMO_MAIL_DIR


@pytest.mark.django_db
def test_the_mail_page_is_404_with_debug_off(settings, demo_mail, client):
    settings.DEBUG = False
    assert client.get("/dev/mail/").status_code == 404
    assert b"/dev/mail/" not in client.get("/").content


@pytest.mark.django_db
def test_the_mail_page_is_404_for_other_machines(settings, demo_mail):
    settings.DEBUG = True
    assert Client(REMOTE_ADDR="192.0.2.7").get("/dev/mail/").status_code == 404


@pytest.mark.django_db
def test_the_mail_page_lists_a_sent_reset_mail_newest_first(settings, demo_mail, user, capsys):
    settings.DEBUG = True
    client = Client()  # REMOTE_ADDR 127.0.0.1
    assert b"No mail sent yet" in client.get("/dev/mail/").content
    assert b'href="/dev/mail/"' in client.get("/").content

    assert client.post("/accounts/password-reset/", {"email": user.email}).status_code == 302
    other = get_user_model().objects.create_user("second", "second@example.com", "irrelevant-password-1")
    assert client.post("/accounts/password-reset/", {"email": other.email}).status_code == 302

    response = client.get("/dev/mail/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert page.index("second@example.com") < page.index(user.email)  # newest first
    assert page.count("/accounts/password-reset/confirm/#token=") >= 2
    assert "/accounts/password-reset/confirm/#token=" in capsys.readouterr().out  # still in the terminal
    assert len(list(demo_mail.glob("*.eml"))) == 2
