"""HTTP answers shared by the views: their 0.1 place, re-exported from where they live now.

The login half (the pending-login cookies, ``login_step_json``,
``login_step_redirect``, ``user_payload``) lives in
:mod:`ephemeral_auth.auth.responses`, the session's proof (``session_proof``,
``save_proof``, ``remark_session``) in :mod:`ephemeral_auth.auth.session`,
and the error half (``error_message``, ``error_status``, ``wait_message``,
``submitted_form``, ``html_error_response``) and the cookie names in
:mod:`ephemeral_auth.http`. Import them from there in new code.
"""

from __future__ import annotations

from ..auth.responses import (
    clear_login_cookies,
    login_step_json,
    login_step_redirect,
    read_challenge,
    read_pending_token,
    set_login_cookies,
    user_payload,
)
from ..auth.session import remark_session, save_proof, session_proof
from ..http import (
    challenge_cookie_name,
    error_message,
    error_status,
    html_error_response,
    pending_cookie_name,
    submitted_form,
    wait_message,
)

__all__ = [
    "challenge_cookie_name",
    "clear_login_cookies",
    "error_message",
    "error_status",
    "html_error_response",
    "login_step_json",
    "login_step_redirect",
    "pending_cookie_name",
    "read_challenge",
    "read_pending_token",
    "remark_session",
    "save_proof",
    "session_proof",
    "set_login_cookies",
    "submitted_form",
    "user_payload",
    "wait_message",
]
