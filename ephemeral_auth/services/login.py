"""Compatibility: the names of the login step, documented here in 0.1 (docs/services.md).

The plain values stay in the services: ``LoginStep``, ``PendingLogin``,
``peek_pending``, ``enabled_methods`` and the ``MAX_*`` limits live in
:mod:`ephemeral_auth.services.pending` (and :mod:`~ephemeral_auth.services.factors`)
and are re-exported here. The orchestration that reads a request and calls
``authenticate()`` / ``login()`` moved up to :mod:`ephemeral_auth.auth.login`;
its old names here still work, with a DeprecationWarning, until 0.3.
"""

from __future__ import annotations

import warnings
from typing import Any

from .pending import (
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

__all__ = [
    "MAX_CODE_LENGTH",
    "MAX_IDENTIFIER_LENGTH",
    "MAX_PASSWORD_LENGTH",
    "MAX_TOKEN_LENGTH",
    "LoginStep",
    "PendingLogin",
    "enabled_methods",
    "peek_pending",
    "writes_together",
]

# Names that moved up to ephemeral_auth.auth.login.
MOVED_TO_AUTH_LOGIN = frozenset(
    {"MODEL_BACKEND", "begin_login", "begin_login_atomically", "password_login", "send_login_email", "verify_login"}
)


def __getattr__(name: str) -> Any:
    if name not in MOVED_TO_AUTH_LOGIN:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ..auth import login

    warnings.warn(
        f"ephemeral_auth.services.login.{name} moved to ephemeral_auth.auth.login.{name}; the old name goes in 0.3",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(login, name)
