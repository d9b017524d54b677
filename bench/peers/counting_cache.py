"""Caches that count every operation, to show who leans on the cache (LocMem and Redis)."""

from __future__ import annotations

from collections import Counter

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

OPS: Counter[str] = Counter()

_COUNTED = (
    "add", "get", "set", "touch", "delete", "has_key", "incr", "decr",
    "get_many", "set_many", "delete_many", "get_or_set", "clear",
)


class CountingLocMemCache(LocMemCache):
    pass


class CountingRedisCache(RedisCache):
    """Django's Redis cache (a shared cache, as several workers need), counted the same way."""


def _wrap(base: type, name: str):  # type: ignore[no-untyped-def]
    original = getattr(base, name)

    def counted(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        OPS[name] += 1
        return original(self, *args, **kwargs)

    counted.__name__ = name
    return counted


for _cls, _base in ((CountingLocMemCache, LocMemCache), (CountingRedisCache, RedisCache)):
    for _name in _COUNTED:
        setattr(_cls, _name, _wrap(_base, _name))
