"""The floor plan of ephemeral_auth/ (docs/architecture.md) that import contracts cannot express.

The layers and the absence of import cycles are import-linter contracts
(pyproject.toml, run by CI's lint stage). These tests pin the rest: the
module size limit, and that services never read a request (they may hand
an opaque ``request`` on to signal receivers, nothing more).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ephemeral_auth"
MAX_LINES = 450

# Imports that mean HTTP or Django's login: the web edge and the auth layer own them. (The
# session *table* is data: ending a user's sessions after a password reset is a service.)
HTTP_MODULES = ("django.http", "django.shortcuts", "django.middleware", "django.contrib.sessions.middleware")
AUTH_FUNCTIONS = {"login", "logout", "authenticate", "update_session_auth_hash"}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_no_module_is_over_the_size_limit() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in _modules() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, f"modules over {MAX_LINES} lines: split them by concern (docs/architecture.md)"


def _service_modules() -> list[Path]:
    return sorted((PACKAGE / "services").rglob("*.py"))


@pytest.mark.parametrize("path", _service_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_services_know_nothing_of_http(path: Path) -> None:
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith(HTTP_MODULES):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            if node.module == "django.contrib.auth":
                names = {alias.name for alias in node.names} & AUTH_FUNCTIONS
                if names:
                    found.append(f"line {node.lineno}: from django.contrib.auth import {', '.join(sorted(names))}")
        elif isinstance(node, ast.Import):
            found += [f"line {node.lineno}: import {a.name}" for a in node.names if a.name.startswith(HTTP_MODULES)]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "request":
            # Reading request.session, request.META, request.COOKIES...: the edge's job.
            found.append(f"line {node.lineno}: request.{node.attr}")
    assert found == [], "a service reaches into HTTP (move it to ephemeral_auth.auth or the web edge)"
