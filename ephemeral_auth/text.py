"""Text shown to an operator: user-chosen characters must not drive the terminal.

Rate-limit keys hold what anonymous clients typed as a username, and
usernames are chosen by users. Printed as they are, an ANSI escape sequence
in one of them can clear the operator's screen and fake the output, a
carriage return can overwrite a line, and a RIGHT-TO-LEFT OVERRIDE can
reorder it. :func:`printable` escapes every such character.
"""

from __future__ import annotations

from typing import Any

__all__ = ["printable"]


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: Any) -> str:
    r"""Return ``str(value)`` with every non-printable character escaped as ``\xNN``, ``\uNNNN`` or ``\UNNNNNNNN``.

    Non-printable is ``str.isprintable()`` false: C0 and C1 controls (ESC,
    CR, LF, TAB, ...), DEL, line and paragraph separators, format characters
    (bidi overrides, zero-width spaces), spaces other than the ASCII space,
    unassigned code points and lone surrogates. Everything else, non-ASCII
    letters included ("straße", "José"), is left as it is; so is a
    backslash, so an escaped form and the same text typed literally look
    alike.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escape(char) for char in text)
