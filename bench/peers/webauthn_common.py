"""What both sides of bench/peers/webauthn_flow.py share: the subject of one login, the counting rules."""

from __future__ import annotations

import json
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

from tests.webauthn_authenticator import SoftAuthenticator

PASSWORD = "bench-password-1"
DATA_VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE")
RP_ID = "testserver"
ORIGIN = "http://testserver"

__all__ = [
    "DATA_VERBS", "ORIGIN", "PASSWORD", "RP_ID", "SoftAuthenticator", "Subject", "authenticator", "json_script",
    "write_commits",
]


@dataclass
class Subject:
    """One user and what they log in with."""

    username: str
    key: SoftAuthenticator | None = None
    totp_secret: str = ""


def authenticator(*, passkey: bool) -> SoftAuthenticator:
    """A passkey (discoverable, user verification) or a security key (touch only, not discoverable)."""
    return SoftAuthenticator(
        rp_id=RP_ID, origin=ORIGIN, user_verified=passkey, resident_key=passkey, transports=["usb"] if not passkey
        else ["internal", "hybrid"],
    )


def write_commits(verbs: list[str]) -> int:
    """Count the commits that carry writes: each BEGIN...COMMIT with a write, each write in autocommit."""
    commits, in_transaction, dirty = 0, False, False
    for verb in verbs:
        if verb == "BEGIN":
            in_transaction, dirty = True, False
        elif verb in ("COMMIT", "ROLLBACK"):
            commits += int(verb == "COMMIT" and dirty)
            in_transaction = False
        elif verb in ("INSERT", "UPDATE", "DELETE"):
            if in_transaction:
                dirty = True
            else:
                commits += 1
    return commits


class _JsonScript(HTMLParser):
    def __init__(self, element_id: str) -> None:
        super().__init__()
        self.element_id, self.inside, self.text = element_id, False, ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.inside = tag == "script" and dict(attrs).get("id") == self.element_id

    def handle_endtag(self, tag: str) -> None:
        self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.text += data


def json_script(html: str, element_id: str) -> Any:
    """The JSON of ``{{ value|json_script:element_id }}`` in a page, read as a browser's script would."""
    parser = _JsonScript(element_id)
    parser.feed(html)
    if not parser.text:
        raise AssertionError(f"no <script id={element_id!r}> in the page")
    return json.loads(parser.text)
