"""The policy action webhooks are judged by (pure: no sockets, no DNS)."""

from __future__ import annotations

import pytest

from postroom.actions.webhooks import webhook_policy
from postroom.inbound.webhooks import check_url
from postroom.net.policy import Allowed, Denied, NetPolicy, check


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.0.9",
        "::1",
        "10.0.0.1",
        "172.16.5.4",
        "172.31.255.254",
        "192.168.1.10",
        "100.64.0.1",  # carrier-grade NAT: neither private nor global to ipaddress
        "fd12:3456::1",
        "::ffff:10.0.0.1",  # IPv4-mapped
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:c0a8:0101::1",  # 6to4 of 192.168.1.1
        "169.254.169.254",  # the default deny list still applies
    ],
)
def test_internal_addresses_are_denied_to_action_webhooks(address: str) -> None:
    assert isinstance(check(webhook_policy(NetPolicy()), address, 443), Denied)
    # the same address stays usable for mail servers (the base policy) unless it is
    # metadata or link-local
    if address != "169.254.169.254":
        assert isinstance(check(NetPolicy(), address, 443), Allowed)


def test_public_addresses_are_allowed() -> None:
    policy = webhook_policy(NetPolicy())
    for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "172.32.0.1"):
        assert isinstance(check(policy, address, 443), Allowed), address


def test_the_operator_carves_ranges_out_but_never_past_the_base_policy() -> None:
    base = NetPolicy.from_strings(deny="127.0.0.2/32", ports="443,8443")
    policy = webhook_policy(base, "127.0.0.0/8, 10.1.0.0/16")
    assert isinstance(check(policy, "127.0.0.1", 443), Allowed)
    assert isinstance(check(policy, "10.1.2.3", 8443), Allowed)
    assert isinstance(check(policy, "10.2.0.1", 443), Denied)  # outside the carve-out
    assert isinstance(check(policy, "127.0.0.2", 443), Denied)  # the base policy denies it
    assert isinstance(check(policy, "127.0.0.1", 80), Denied)  # ports still apply
    assert isinstance(check(policy, "::1", 443), Denied)  # IPv6 loopback not carved out
    wider = webhook_policy(NetPolicy(), "0.0.0.0/0")  # a supernet allows every IPv4 range
    assert isinstance(check(wider, "192.168.0.1", 443), Allowed)
    assert isinstance(check(wider, "169.254.169.254", 443), Denied)


def test_a_bad_allow_entry_names_the_variable() -> None:
    with pytest.raises(ValueError, match="POSTROOM_ACTION_WEBHOOK_ALLOW: 'intranet'"):
        webhook_policy(NetPolicy(), "10.0.0.0/8,intranet")


def test_ip_literals_in_urls_are_judged_without_resolving() -> None:
    from postroom.errors import ValidationError

    policy = webhook_policy(NetPolicy())
    for url in ("http://10.0.0.5/hook", "https://[fd00::1]/", "http://169.254.169.254/latest"):
        with pytest.raises(ValidationError) as caught:
            check_url(url, policy)
        assert "network policy" in caught.value.errors[0].message, url
