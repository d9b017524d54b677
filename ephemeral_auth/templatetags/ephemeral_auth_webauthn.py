"""Template tags for the WebAuthn parts of the pages: ``{% load ephemeral_auth_webauthn %}``.

``webauthn_enabled`` / ``passkey_login_enabled`` say whether to show the
security-key and passkey buttons (a relying party id is set; passkey sign-in
is on); ``webauthn_credentials`` lists a user's keys for the settings page.
The buttons are driven by ``static/ephemeral_auth/webauthn.js`` (no inline
script: the pages work under a strict Content-Security-Policy).
"""

from __future__ import annotations

from typing import Any

from django import template

from .. import conf
from ..services import webauthn

__all__ = ["passkey_login_enabled", "webauthn_credentials", "webauthn_enabled"]

register = template.Library()


@register.simple_tag
def webauthn_enabled() -> bool:
    """Whether WebAuthn is configured (``EPHEMERAL_AUTH_WEBAUTHN_RP_ID``)."""
    return bool(conf.get("WEBAUTHN_RP_ID"))


@register.simple_tag
def passkey_login_enabled() -> bool:
    """Whether passkey sign-in is on (``EPHEMERAL_AUTH_PASSKEY_LOGIN`` with a relying party id)."""
    return bool(conf.get("PASSKEY_LOGIN") and conf.get("WEBAUTHN_RP_ID"))


@register.simple_tag
def webauthn_credentials(user: Any) -> list[Any]:
    """The user's security keys and passkeys, oldest first ([] for an anonymous user)."""
    if not getattr(user, "is_authenticated", False):
        return []
    return webauthn.list_credentials(user)
