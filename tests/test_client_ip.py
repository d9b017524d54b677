"""Client IP resolution: X-Forwarded-For is believed only from trusted proxies, right to left."""

from __future__ import annotations

import pytest
from django.test import RequestFactory

from ephemeral_auth.client_ip import client_ip

PROXY = "10.0.0.5"


def ip(remote: str | None, forwarded: str | None = None) -> str:
    meta = {}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    request = RequestFactory().get("/", **meta)
    if remote is None:
        del request.META["REMOTE_ADDR"]
    else:
        request.META["REMOTE_ADDR"] = remote
    return client_ip(request)


@pytest.fixture
def behind_proxy(settings):
    settings.EPHEMERAL_AUTH_TRUSTED_PROXIES = ["10.0.0.0/8", "::1"]


def test_without_trusted_proxies_the_header_is_ignored(settings):
    settings.EPHEMERAL_AUTH_TRUSTED_PROXIES = []
    assert ip("203.0.113.7", "198.51.100.1") == "203.0.113.7"


def test_a_spoofed_header_from_an_untrusted_peer_is_ignored(behind_proxy):
    # The peer is not one of our proxies: whatever it claims is its own text.
    assert ip("203.0.113.7", "10.0.0.1, 198.51.100.1") == "203.0.113.7"


def test_the_address_the_trusted_proxy_appended_is_the_client(behind_proxy):
    assert ip(PROXY, "198.51.100.1") == "198.51.100.1"


def test_the_header_is_read_right_to_left(behind_proxy):
    # The client wrote "1.2.3.4" itself; our proxy appended the real peer.
    assert ip(PROXY, "1.2.3.4, 198.51.100.1") == "198.51.100.1"


def test_a_chain_of_trusted_proxies_is_skipped(behind_proxy):
    assert ip(PROXY, "1.2.3.4, 198.51.100.1, 10.1.2.3, 10.9.9.9") == "198.51.100.1"


def test_only_trusted_proxies_in_the_header_gives_the_peer(behind_proxy):
    assert ip(PROXY, "10.1.2.3, 10.9.9.9") == PROXY


def test_an_empty_header_gives_the_peer(behind_proxy):
    assert ip(PROXY, "") == PROXY
    assert ip(PROXY) == PROXY


def test_a_single_trusted_address_and_a_network_both_work(settings):
    settings.EPHEMERAL_AUTH_TRUSTED_PROXIES = ["192.0.2.10", "172.16.0.0/12"]
    assert ip("192.0.2.10", "198.51.100.1") == "198.51.100.1"
    assert ip("172.20.1.1", "198.51.100.2") == "198.51.100.2"
    assert ip("192.0.2.11", "198.51.100.1") == "192.0.2.11"


def test_the_setting_is_read_at_call_time(settings):
    settings.EPHEMERAL_AUTH_TRUSTED_PROXIES = []
    assert ip(PROXY, "198.51.100.1") == PROXY
    settings.EPHEMERAL_AUTH_TRUSTED_PROXIES = [PROXY]
    assert ip(PROXY, "198.51.100.1") == "198.51.100.1"


@pytest.mark.parametrize(
    ("forwarded", "expected"),
    [
        ("2001:db8::1", "2001:db8::1"),
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),  # one subject, one key
        ("[2001:db8::1]:443", "2001:db8::1"),
        ("::ffff:198.51.100.1", "198.51.100.1"),  # IPv4-mapped is the IPv4 client
        ("198.51.100.1:51234", "198.51.100.1"),
        ("  198.51.100.1  ", "198.51.100.1"),
    ],
)
def test_forms_of_an_address_are_normalised(behind_proxy, forwarded, expected):
    assert ip("::1", forwarded) == expected


def test_an_ipv6_peer_without_proxies(settings):
    settings.EPHEMERAL_AUTH_TRUSTED_PROXIES = []
    assert ip("2001:DB8::0:1") == "2001:db8::1"
    assert ip("::ffff:203.0.113.9") == "203.0.113.9"


@pytest.mark.parametrize(
    "forwarded",
    ["garbage", "1.2.3.4.5", "unknown", "2001:db8::zz", ",,,", "\x00", "198.51.100.1 198.51.100.2", "[::1"],
)
def test_garbage_right_of_the_trusted_part_falls_back_to_the_peer(behind_proxy, forwarded):
    # Unparsable where our proxy should have written: believe nothing.
    assert ip(PROXY, forwarded) == PROXY


def test_garbage_left_of_the_client_is_never_reached(behind_proxy):
    assert ip(PROXY, "garbage, <script>, 198.51.100.1") == "198.51.100.1"


@pytest.mark.parametrize("remote", ["", "not-an-ip", None])
def test_an_unusable_peer_address_gives_a_fixed_key(settings, remote):
    settings.EPHEMERAL_AUTH_TRUSTED_PROXIES = []
    assert ip(remote, "198.51.100.1") == "0.0.0.0"


# A regression test: the header used to be cut to its first 4096 characters,
# keeping the part the client wrote and dropping what our proxy appended.
def test_a_huge_header_cannot_push_out_what_the_proxy_appended(behind_proxy):
    # An attacker pads the header so that the cut falls right after an address
    # of their choice; our proxy appends the real one at the end. The key must
    # stay the real address, or the attacker picks their own rate-limit bucket.
    filler = "198.18.0.1, " * 340
    chosen = "6.6.6.6"
    padding = "x" * (4096 - len(filler) - len(chosen) - 2)
    forwarded = f"{padding}, {filler}{chosen}, 203.0.113.50"
    assert forwarded.index(", 203.0.113.50") == 4096
    assert ip(PROXY, forwarded) == "203.0.113.50"
