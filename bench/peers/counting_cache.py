"""A LocMem cache that counts every operation, to show who leans on the cache."""

from __future__ import annotations

from collections import Counter

from django.core.cache.backends.locmem import LocMemCache

OPS: Counter[str] = Counter()

_COUNTED = (
    "add", "get", "set", "touch", "delete", "has_key", "incr", "decr",
    "get_many", "set_many", "delete_many", "get_or_set", "clear",
)


class CountingLocMemCache(LocMemCache):
    pass


def _wrap(name: str):  # type: ignore[no-untyped-def]
    original = getattr(LocMemCache, name)

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        OPS[name] += 1
        return original(self, *args, **kwargs)

    counted.__name__ = name
    return counted


for _name in _COUNTED:
    setattr(CountingLocMemCache, _name, _wrap(_name))
