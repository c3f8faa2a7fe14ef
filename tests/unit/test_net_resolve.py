"""Resolution through the policy.

Only loopback and numeric names and a ``.invalid`` name are resolved here, and nothing
connects anywhere. Cases that need other answers replace the loop's getaddrinfo.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from postroom.net.policy import Denied, NetPolicy
from postroom.net.resolve import BlockedByPolicy, HostNotFound, ResolveTimeout, resolve

DEFAULT = NetPolicy()
NO_LOOPBACK = NetPolicy.from_strings(deny="127.0.0.0/8,::1")
NUMERIC_LOOPBACK = ["127.0.0.1", "2130706433", "0x7f.1", "127.1", "0177.0.0.1", "0x7f000001"]

_Info = tuple[int, int, int, str, tuple[Any, ...]]


def _v4(address: str) -> _Info:
    return (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, 25))


def _v6(address: str, scope_id: int = 0) -> _Info:
    return (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, 25, 0, scope_id))


def _answer_with(monkeypatch: pytest.MonkeyPatch, answers: list[_Info]) -> None:
    """Make the running loop's getaddrinfo return ``answers``; call from inside the test."""

    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[_Info]:
        assert kwargs["type"] == socket.SOCK_STREAM
        return answers

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)


async def test_localhost_resolves_to_loopback() -> None:
    addresses = await resolve("localhost", 25, policy=DEFAULT, timeout=5)
    assert "127.0.0.1" in addresses or "::1" in addresses
    assert set(addresses) <= {"127.0.0.1", "::1"}


@pytest.mark.parametrize("host", NUMERIC_LOOPBACK)
async def test_numeric_forms_resolve_to_127_0_0_1(host: str) -> None:
    assert await resolve(host, 25, policy=DEFAULT, timeout=5) == ["127.0.0.1"]


@pytest.mark.parametrize("host", [*NUMERIC_LOOPBACK, "localhost", "::1"])
async def test_numeric_forms_are_judged_by_the_address_they_resolve_to(host: str) -> None:
    with pytest.raises(BlockedByPolicy) as excinfo:
        await resolve(host, 25, policy=NO_LOOPBACK, timeout=5)
    assert excinfo.value.host == host
    assert [d.address for d in excinfo.value.denied] in (["127.0.0.1"], ["::1"])
    assert "POSTROOM_NET_DENY" in excinfo.value.denied[0].reason


async def test_ipv6_loopback_literal_resolves_to_itself() -> None:
    assert await resolve("::1", 993, policy=DEFAULT, timeout=5) == ["::1"]


@pytest.mark.parametrize(
    "host", ["169.254.169.254", "0xa9fea9fe", "2852039166", "::ffff:169.254.169.254"]
)
async def test_numeric_metadata_address_is_blocked(host: str) -> None:
    # Numeric hosts are converted locally by getaddrinfo: no DNS query, no traffic.
    with pytest.raises(BlockedByPolicy) as excinfo:
        await resolve(host, 80, policy=DEFAULT, timeout=5)
    (denied,) = excinfo.value.denied
    assert "metadata" in denied.reason
    assert "169.254.169.254" in str(excinfo.value)


async def test_numeric_unspecified_address_is_blocked() -> None:
    with pytest.raises(BlockedByPolicy):
        await resolve("0", 25, policy=DEFAULT, timeout=5)


async def test_port_outside_the_list_is_blocked() -> None:
    policy = NetPolicy.from_strings(ports="25,587")
    with pytest.raises(BlockedByPolicy) as excinfo:
        await resolve("127.0.0.1", 8080, policy=policy, timeout=5)
    assert "POSTROOM_NET_PORTS" in excinfo.value.denied[0].reason
    assert await resolve("127.0.0.1", 587, policy=policy, timeout=5) == ["127.0.0.1"]


async def test_scoped_link_local_literal_is_blocked_by_default() -> None:
    _, name = socket.if_nameindex()[0]
    with pytest.raises(BlockedByPolicy) as excinfo:
        await resolve(f"fe80::1%{name}", 25, policy=DEFAULT, timeout=5)
    assert "link-local" in excinfo.value.denied[0].reason


async def test_allowed_scoped_link_local_keeps_its_zone_index() -> None:
    index, name = socket.if_nameindex()[0]
    policy = NetPolicy.from_strings(allow="fe80::/10")
    addresses = await resolve(f"fe80::1%{name}", 25, policy=policy, timeout=5)
    assert addresses == [f"fe80::1%{index}"]


async def test_invalid_tld_is_host_not_found() -> None:
    # RFC 6761: .invalid never resolves; here the resolver says so at once.
    with pytest.raises(HostNotFound) as excinfo:
        await resolve("postroom-test.invalid", 25, policy=DEFAULT, timeout=5)
    assert excinfo.value.host == "postroom-test.invalid"
    assert not excinfo.value.temporary
    assert isinstance(excinfo.value.__cause__, socket.gaierror)
    assert "'postroom-test.invalid'" in str(excinfo.value)


@pytest.mark.parametrize(
    "host",
    ["", " ", "local host", "localhost ", "\tlocalhost", "localhost\r\n", "local\nhost",
     "local\x00host", "local\x7fhost", "local\u2028host"],
)  # fmt: skip
async def test_malformed_host_is_a_value_error(host: str) -> None:
    with pytest.raises(ValueError):
        await resolve(host, 25, policy=DEFAULT, timeout=5)


@pytest.mark.parametrize("host", ["a" * 64 + ".invalid", "x..invalid"])
async def test_host_with_an_impossible_label_is_a_value_error(host: str) -> None:
    with pytest.raises(ValueError, match="is not a valid host name"):
        await resolve(host, 25, policy=DEFAULT, timeout=5)


@pytest.mark.parametrize("port", [0, 65536, -1])
async def test_port_outside_range_is_a_value_error(port: int) -> None:
    with pytest.raises(ValueError, match="port must be between 1 and 65535"):
        await resolve("127.0.0.1", port, policy=DEFAULT, timeout=5)


async def test_only_allowed_addresses_are_returned_in_resolver_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = [
        _v4("169.254.169.254"),
        _v4("10.0.0.2"),
        _v6("fe80::1", 3),
        _v6("2001:db8::25"),
        _v4("10.0.0.1"),
        _v4("10.0.0.2"),
    ]
    _answer_with(monkeypatch, answers)
    addresses = await resolve("mail.example", 25, policy=DEFAULT, timeout=5)
    assert addresses == ["10.0.0.2", "2001:db8::25", "10.0.0.1"]


async def test_blocked_lists_every_denied_address(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [_v4("169.254.169.254"), _v6("fd00:ec2::254"), _v6("fe80::1", 2)]
    _answer_with(monkeypatch, answers)
    with pytest.raises(BlockedByPolicy) as excinfo:
        await resolve("metadata.example", 80, policy=DEFAULT, timeout=5)
    assert [d.address for d in excinfo.value.denied] == [
        "169.254.169.254",
        "fd00:ec2::254",
        "fe80::1%2",
    ]
    assert all(isinstance(d, Denied) for d in excinfo.value.denied)
    assert str(excinfo.value).startswith("'metadata.example' resolved only to blocked addresses.")


async def test_empty_answer_is_host_not_found(monkeypatch: pytest.MonkeyPatch) -> None:
    _answer_with(monkeypatch, [])
    with pytest.raises(HostNotFound, match="no IPv4 or IPv6 address"):
        await resolve("empty.example", 25, policy=DEFAULT, timeout=5)


async def test_temporary_resolver_failure_is_marked_temporary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[_Info]:
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    with pytest.raises(HostNotFound) as excinfo:
        await resolve("mail.example", 25, policy=DEFAULT, timeout=5)
    assert excinfo.value.temporary
    assert excinfo.value.detail == "Temporary failure in name resolution"


async def test_slow_resolver_raises_resolve_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    async def getaddrinfo(host: str, port: int, **kwargs: Any) -> list[_Info]:
        await asyncio.sleep(10)
        return []

    monkeypatch.setattr(asyncio.get_running_loop(), "getaddrinfo", getaddrinfo)
    with pytest.raises(ResolveTimeout) as excinfo:
        await resolve("slow.example", 25, policy=DEFAULT, timeout=0.01)
    assert isinstance(excinfo.value, TimeoutError)
    assert excinfo.value.host == "slow.example"
    assert excinfo.value.timeout == 0.01


async def test_no_timeout_waits_for_the_resolver() -> None:
    assert await resolve("127.0.0.1", 25, policy=DEFAULT, timeout=None) == ["127.0.0.1"]
