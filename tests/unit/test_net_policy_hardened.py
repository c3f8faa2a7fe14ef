"""The hardened settings of the network policy, judged by the pure policy check only (no
address here is ever handed to anything that connects)."""

from __future__ import annotations

import pytest

from postroom.net.policy import HARDENED_PORTS, Allowed, Denied, NetPolicy, check

HARDENED = NetPolicy.from_strings(profile="hardened")
DEFAULT = NetPolicy.from_strings()

# Every address form a hostile host name could resolve to, that is not the public internet.
NOT_PUBLIC = [
    "127.0.0.1",
    "127.8.9.10",
    "::1",
    "10.0.0.1",
    "172.16.5.4",
    "172.31.255.255",
    "192.168.1.1",
    "100.64.0.1",  # CGNAT, neither private nor global to ipaddress
    "100.127.255.254",
    "fc00::1",
    "fd12:3456::1",
    "::ffff:10.0.0.1",  # IPv4-mapped
    "::ffff:127.0.0.1",
    "::10.0.0.1",  # IPv4-compatible
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::6440:1",  # NAT64 of 100.64.0.1
    "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    "198.18.0.1",
    "192.0.2.10",
    "2001:db8::1",
    "169.254.169.254",  # still denied, as by default
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_hardened_denies_every_non_public_form(address: str) -> None:
    decision = check(HARDENED, address, 587)
    assert isinstance(decision, Denied), decision
    assert "POSTROOM_NET_ALLOW" in decision.reason


@pytest.mark.parametrize("address", ["127.0.0.1", "10.0.0.1", "100.64.0.1", "fd12::1"])
def test_the_default_profile_allows_loopback_and_private(address: str) -> None:
    assert isinstance(check(DEFAULT, address, 587), Allowed)


def test_hardened_reasons_name_the_setting() -> None:
    decision = check(HARDENED, "10.1.2.3", 25)
    assert isinstance(decision, Denied)
    assert "POSTROOM_NET_PROFILE=hardened" in decision.reason and "private" in decision.reason
    cgnat = check(HARDENED, "100.64.0.1", 25)
    assert isinstance(cgnat, Denied) and "carrier-grade NAT" in cgnat.reason


@pytest.mark.parametrize("address", ["8.8.8.8", "2a00:1450:4001:80b::201a", "203.0.114.1"])
def test_hardened_allows_public_addresses_on_mail_ports(address: str) -> None:
    for port in sorted(HARDENED_PORTS):
        assert isinstance(check(HARDENED, address, port), Allowed), (address, port)


@pytest.mark.parametrize("port", [22, 80, 110, 3306, 5432, 6379, 8080, 11211])
def test_hardened_allows_only_mail_ports(port: int) -> None:
    decision = check(HARDENED, "8.8.8.8", port)
    assert isinstance(decision, Denied) and "POSTROOM_NET_PORTS" in decision.reason


def test_hardened_ports_and_carve_outs_follow_the_operator() -> None:
    policy = NetPolicy.from_strings(allow="10.0.0.5/32", ports="2525", profile="hardened")
    assert isinstance(check(policy, "10.0.0.5", 2525), Allowed)  # the relay they use
    assert isinstance(check(policy, "10.0.0.6", 2525), Denied)
    assert isinstance(check(policy, "8.8.8.8", 587), Denied)  # ports replaced, not added


def test_unknown_profile_is_refused_naming_the_variable() -> None:
    with pytest.raises(ValueError, match="POSTROOM_NET_PROFILE"):
        NetPolicy.from_strings(profile="paranoid")
