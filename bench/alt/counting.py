"""Caches that count their operations (Redis and LocMem), to show who leans on the cache."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

OPS: Counter[str] = Counter()

_COUNTED = (
    "add", "get", "set", "touch", "delete", "has_key", "incr", "decr",
    "get_many", "set_many", "delete_many", "clear",
)


def _wrap(base: type, name: str) -> Any:
    original = getattr(base, name)

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        OPS[name] += 1
        return original(self, *args, **kwargs)

    counted.__name__ = name
    return counted


class CountingRedisCache(RedisCache):
    pass


class CountingLocMemCache(LocMemCache):
    pass


for _cls, _base in ((CountingRedisCache, RedisCache), (CountingLocMemCache, LocMemCache)):
    for _name in _COUNTED:
        setattr(_cls, _name, _wrap(_base, _name))
