"""Validation of values handed to the services.

Services are called with request data; anything that is not a plain string of
a sane size is refused with :class:`InvalidInput` before it reaches the
database (PostgreSQL rejects NUL bytes with a 500-causing DataError, MySQL
truncates or errors on oversize values).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from django.utils.translation import gettext

from ..exceptions import InvalidInput

__all__ = ["clean_text", "fold", "is_plain_text"]


def fold(value: str) -> str:
    """The one normalisation of names and addresses compared in Python: NFKC, then casefold.

    Used wherever the database found candidates with its own, looser or
    stricter, collation (login identifiers, OIDC email linking, password
    reset), so every backend decides the same way.
    """
    return unicodedata.normalize("NFKC", value).casefold()


def is_plain_text(value: Any, *, max_length: int) -> bool:
    """Return whether ``value`` is a str without NUL bytes or lone surrogates."""
    if not isinstance(value, str) or len(value) > max_length or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def clean_text(value: Any, *, field: str, max_length: int, allow_empty: bool = False) -> str:
    """Return ``value`` if it is acceptable text, else raise InvalidInput."""
    if not is_plain_text(value, max_length=max_length) or (not value and not allow_empty):
        raise InvalidInput(
            gettext("%(name)s must be text of at most %(n)s characters.") % {"name": field, "n": max_length},
            field=field,
        )
    return str(value)
