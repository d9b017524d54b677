"""The client's IP address, believing X-Forwarded-For only from trusted proxies.

A raw X-Forwarded-For is written by the client and proves nothing. When
REMOTE_ADDR is one of ``EPHEMERAL_AUTH_TRUSTED_PROXIES``, the header is read
right to left, skipping trusted proxies; the first untrusted address is the
client. Anything unparsable falls back to REMOTE_ADDR.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.http import HttpRequest

from . import conf

__all__ = ["client_ip"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=32)
def _networks(proxies: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(p, strict=False) for p in proxies)


def _parse(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [v6]:port
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # v4:port
        value = value.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


def client_ip(request: HttpRequest) -> str:
    """Return the client's address as text ("0.0.0.0" if nothing usable)."""
    remote = _parse(request.META.get("REMOTE_ADDR", "") or "")
    if remote is None:
        return "0.0.0.0"  # noqa: S104 - a key, not a bind address
    trusted = _networks(tuple(str(p) for p in conf.get("TRUSTED_PROXIES") or ()))
    if not trusted or not any(remote in net for net in trusted):
        return remote.compressed
    # Keep the right end: the entries our proxies appended are there; a client
    # can pad the left end at will.
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")[-4096:]
    for part in reversed(forwarded.split(",")):
        address = _parse(part)
        if address is None:
            break
        if not any(address in net for net in trusted):
            return address.compressed
    return remote.compressed
