"""A password-reset mail survives ``kill -9`` of the web server: it waits in a task queue.

The example project runs under gunicorn with tests/settings_tasks.py: Django's
tasks framework on django-tasks-db's database backend, mail written as files,
EPHEMERAL_AUTH_PASSWORD_RESET_RUNNER left at its default (so the automatic
choice, ``run_as_task``, is under test). The web request only enqueues a row
(email and link template, no token); every gunicorn process is then killed
with SIGKILL; a task worker started afterwards (``manage.py db_worker``)
issues the link and sends the mail, and the link works. With the default
in-process thread pool a job still queued at the kill would be lost.

Run: ``bash .ci/e2e-setup.sh && pytest -m e2e tests/e2e/test_durable_mail.py``
(PostgreSQL; needs django-tasks-db, and django-tasks on Django < 6).
"""

from __future__ import annotations

import email
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.e2e.servers import (
    ROOT,
    USER_PASSWORD,
    Gunicorn,
    JsonClient,
    example_env,
    free_port,
    fresh_postgres_database,
    manage_shell,
)

pytest.importorskip("django_tasks_db", reason="needs django-tasks-db (the database task backend)")

pytestmark = pytest.mark.e2e

USER = "durable-mail"
ADDRESS = "durable-mail@example.com"
UNKNOWN = "nobody-durable@example.com"
NEW_PASSWORD = "a durable new passphrase 42"
TASK_PATH = "ephemeral_auth.tasks.send_password_reset"

QUEUE = """
import json
from django_tasks_db.models import DBTaskResult
from ephemeral_auth.models import EphemeralToken
print(json.dumps({
    "tasks": [
        {"task_path": r.task_path, "status": r.status, "args_kwargs": r.args_kwargs}
        for r in DBTaskResult.objects.order_by("enqueued_at")
    ],
    "reset_tokens": EphemeralToken.objects.filter(token_type="password_reset").count(),
}))
"""


@pytest.fixture(scope="module")
def mail_dir(tmp_path_factory: Any) -> Path:
    return Path(tmp_path_factory.mktemp("durable_mail"))


@pytest.fixture(scope="module")
def server(mail_dir: Path, tmp_path_factory: Any) -> Iterator[Gunicorn]:
    """The example project with tests.settings_tasks under gunicorn -w 2, on a fresh PostgreSQL database."""
    database_url = fresh_postgres_database(os.environ.get("EA_E2E_DURABLE_MAIL_DATABASE", "ea_durable_mail_e2e"))
    env = example_env(database_url, DJANGO_SETTINGS_MODULE="tests.settings_tasks", EMAIL_FILE_PATH=str(mail_dir))
    server = Gunicorn(env, port=free_port(), logs=Path(tmp_path_factory.mktemp("gunicorn_durable_mail")), workers=2)
    server.migrate()
    manage_shell(
        env,
        "from django.contrib.auth import get_user_model\n"
        f"get_user_model().objects.create_user({USER!r}, email={ADDRESS!r}, password={USER_PASSWORD!r})",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def queue(server: Gunicorn) -> dict[str, Any]:
    return dict(json.loads(manage_shell(server.env, QUEUE)))


def sent_messages(mail_dir: Path) -> list[Message]:
    """The messages the file backend wrote (one file per connection, messages separated by a line of dashes)."""
    messages = []
    for path in sorted(mail_dir.glob("*.log")):
        for chunk in re.split(rb"\n-{79}\n", path.read_bytes()):
            if chunk.strip():
                messages.append(email.message_from_bytes(chunk.strip() + b"\n"))
    return messages


def plain_text(message: Message) -> str:
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            return payload.decode(part.get_content_charset() or "utf-8")
    raise AssertionError(message.as_string()[:500])


def test_reset_mail_is_sent_by_the_task_worker_after_kill_9(server: Gunicorn, mail_dir: Path) -> None:
    client = JsonClient(server.base_url)
    for address in (ADDRESS, UNKNOWN):
        answer = client.post("/api/auth/password-reset/", {"email": address})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"status": "sent"}

    killed = server.kill9()
    print(f"killed gunicorn {killed} (master first)")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.base_url}/api/auth/csrf/", timeout=5)

    # The web workers sent nothing and issued no token: two queued tasks, email and link template only.
    assert sent_messages(mail_dir) == []
    state = queue(server)
    assert state["reset_tokens"] == 0, state
    assert [(t["task_path"], t["status"]) for t in state["tasks"]] == [(TASK_PATH, "READY")] * 2, state
    for stored, address in zip(state["tasks"], (ADDRESS, UNKNOWN), strict=True):
        assert stored["args_kwargs"]["args"] == []
        kwargs = stored["args_kwargs"]["kwargs"]
        assert kwargs["email"] == address
        assert kwargs["link"].endswith("/accounts/password-reset/confirm/#token={token}"), kwargs

    # The task worker, after the crash: runs what is queued, then exits.
    worker = subprocess.run(
        [sys.executable, "manage.py", "db_worker", "--batch", "--no-startup-delay"],
        cwd=ROOT, env=server.env, timeout=120, capture_output=True, text=True,
    )
    assert worker.returncode == 0, worker.stdout + worker.stderr

    state = queue(server)
    assert [t["status"] for t in state["tasks"]] == ["SUCCESSFUL"] * 2, state
    assert state["reset_tokens"] == 1, state
    # One mail, to the account: the unknown address got nothing.
    [message] = sent_messages(mail_dir)
    assert message["To"] == ADDRESS
    match = re.search(r"#token=([A-Za-z0-9_-]+)", plain_text(message))
    assert match, plain_text(message)
    token = match.group(1)
    assert token not in json.dumps(state["tasks"])

    # The link works on the restarted server.
    server.start()
    client = JsonClient(server.base_url)
    done = client.post("/api/auth/password-reset/confirm/", {"token": token, "new_password": NEW_PASSWORD})
    assert done.status_code == 200, done.text
    assert done.json() == {"status": "ok"}
    login = client.post("/api/auth/login/", {"username": USER, "password": NEW_PASSWORD})
    assert login.status_code == 200, login.text
    assert login.json()["status"] == "authenticated"
