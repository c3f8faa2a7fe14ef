"""Which X-Forwarded-For entries are believed (pure: no sockets)."""

from __future__ import annotations

import pytest

from postroom.net.forwarded import client_address, forwarded_proto, parse_trusted

PROXIES = parse_trusted("127.0.0.1, 10.0.0.0/8, ::1")


def test_nothing_is_trusted_by_default() -> None:
    assert parse_trusted("") == ()
    assert client_address("127.0.0.1", ["203.0.113.9"], ()) == "127.0.0.1"
    assert forwarded_proto("127.0.0.1", ["https"], ()) is None


def test_an_untrusted_peer_cannot_choose_its_address() -> None:
    assert client_address("192.0.2.7", ["203.0.113.9"], PROXIES) == "192.0.2.7"
    assert forwarded_proto("192.0.2.7", ["https"], PROXIES) is None


def test_the_rightmost_untrusted_hop_is_the_client() -> None:
    # the client wrote "1.2.3.4"; the first proxy appended the address it saw
    assert client_address("127.0.0.1", ["1.2.3.4, 203.0.113.9"], PROXIES) == "203.0.113.9"
    assert client_address("127.0.0.1", ["1.2.3.4, 203.0.113.9, 10.1.2.3"], PROXIES) == (
        "203.0.113.9"
    )
    assert client_address("127.0.0.1", ["1.2.3.4", "203.0.113.9"], PROXIES) == "203.0.113.9"
    assert client_address("::1", ["[2001:db8::5]:443"], PROXIES) == "2001:db8::5"
    assert client_address("::ffff:127.0.0.1", ["192.0.2.1:80"], PROXIES) == "192.0.2.1"


def test_garbage_stops_the_walk_at_the_last_trusted_hop() -> None:
    assert client_address("127.0.0.1", ["203.0.113.9, unknown"], PROXIES) == "127.0.0.1"
    assert client_address("127.0.0.1", ["x, 10.0.0.5"], PROXIES) == "10.0.0.5"
    assert client_address("127.0.0.1", [], PROXIES) == "127.0.0.1"


def test_forwarded_proto_from_a_trusted_proxy() -> None:
    assert forwarded_proto("10.9.9.9", ["http, https"], PROXIES) == "https"
    assert forwarded_proto("10.9.9.9", ["gopher"], PROXIES) is None


def test_bad_entries_are_named() -> None:
    with pytest.raises(ValueError, match=r"'proxy\.local'.*'10\.0\.0\.0/99'"):
        parse_trusted("127.0.0.1, proxy.local, 10.0.0.0/99")
