"""Outbound network policy: which resolved addresses and ports postroom may connect to.

Pure: no sockets, no DNS, no clock. The I/O side lives in :mod:`postroom.net.resolve`.

Administrators choose the SMTP, IMAP and OAuth2 servers postroom talks to, so a hostile or
mistaken host name must not reach services that only the machine itself should reach, above
all cloud metadata services. The rules:

- A **default deny list**: link-local and cloud metadata addresses (169.254.0.0/16,
  fe80::/10, fd00:ec2::254, 100.100.100.200, ...), unspecified, multicast,
  reserved/broadcast and deprecated IPv6 site-local ranges. Loopback and private ranges
  are allowed by default: mail servers live on private networks and tests run on loopback.
- ``POSTROOM_NET_DENY`` adds CIDRs to the deny list; ``POSTROOM_NET_ALLOW`` carves CIDRs out
  of it (default entries included). An allow entry always wins over a deny entry.
- ``POSTROOM_NET_PORTS`` restricts the ports; empty means any port.
- ``POSTROOM_NET_PROFILE=hardened`` (for installations where admins are not fully trusted,
  or the test endpoint is exposed): the default deny list plus loopback, private (RFC 1918,
  unique local IPv6), shared/CGNAT (100.64.0.0/10), benchmarking and documentation ranges,
  and, unless ``POSTROOM_NET_PORTS`` says otherwise, only the mail ports 25, 465, 587, 143,
  993 and 443 (OAuth2 token endpoints and the Graph/Gmail APIs). ``POSTROOM_NET_ALLOW``
  still carves out a private relay the installation really uses.
- IPv6 forms that carry an IPv4 address (IPv4-mapped, IPv4-compatible, IPv4-translated,
  NAT64, 6to4, Teredo) are unwrapped and the IPv4 address is judged as well: the address is
  denied if the outer or any embedded address is denied, and an allow entry only helps the
  address it covers.

Usage::

    policy = NetPolicy.from_strings(deny="10.0.0.0/8", ports="25,465,587,993")
    match check(policy, "169.254.169.254", 80):
        case Allowed(address):
            ...  # connect to exactly this address
        case Denied(address, reason):
            ...  # reason is a sentence for people
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from typing import TypeAlias

from postroom.net.proxy_spec import ProxySpec

__all__ = [
    "HARDENED_PORTS",
    "NET_PROFILES",
    "Allowed",
    "Decision",
    "Denied",
    "NetPolicy",
    "Network",
    "check",
    "check_all",
]

Network: TypeAlias = IPv4Network | IPv6Network
_Address: TypeAlias = IPv4Address | IPv6Address

_ENV_DENY = "POSTROOM_NET_DENY"
_ENV_ALLOW = "POSTROOM_NET_ALLOW"
_ENV_PORTS = "POSTROOM_NET_PORTS"
_ENV_PROFILE = "POSTROOM_NET_PROFILE"

#: The settings profiles of the policy: ``default`` and ``hardened``.
NET_PROFILES = ("default", "hardened")
#: The ports the hardened profile allows when POSTROOM_NET_PORTS is not set: SMTP (25, 465,
#: 587), IMAP (143, 993) and HTTPS (443) for OAuth2 token calls and the API transports.
HARDENED_PORTS = frozenset({25, 465, 587, 143, 993, 443})

# Interface names and numeric zone indexes; anything else (spaces, newlines, '/') has no
# business in an address we hand to connect().
_ZONE_ID = re.compile(r"[0-9A-Za-z_.\-]{1,64}")


@dataclass(frozen=True)
class _Rule:
    network: Network
    what: str


def _rule(cidr: str, what: str) -> _Rule:
    return _Rule(ip_network(cidr), what)


_DEFAULT_DENY: tuple[_Rule, ...] = (
    # Specific metadata endpoints first only for readability; the most specific match names
    # the reason whatever the order.
    _rule("169.254.169.254/32", "the cloud metadata service address (AWS, Google, Azure, ...)"),
    _rule("fd00:ec2::254/128", "the AWS IPv6 cloud metadata service address"),
    _rule("100.100.100.200/32", "the Alibaba Cloud metadata service address"),
    _rule("192.0.0.192/32", "the Oracle Cloud Classic metadata service address"),
    # Azure's WireServer hands out VM configuration and certificates to anything on the VM.
    _rule("168.63.129.16/32", "the Azure platform (WireServer) address"),
    _rule("169.254.0.0/16", "a link-local address (cloud metadata services live there)"),
    _rule("fe80::/10", "a link-local address"),
    # Linux connects 0.0.0.0 to the local host.
    _rule("0.0.0.0/8", "an unspecified ('this network') address"),
    _rule("::/128", "the unspecified address"),
    _rule("224.0.0.0/4", "a multicast address"),
    _rule("ff00::/8", "a multicast address"),
    _rule("240.0.0.0/4", "a reserved address"),
    _rule("255.255.255.255/32", "the broadcast address"),
    _rule("fec0::/10", "a deprecated IPv6 site-local address"),
)

# What the hardened profile denies on top of the defaults: everything that is not the
# public internet, where a mail provider lives.
_HARDENED_DENY: tuple[_Rule, ...] = (
    _rule("127.0.0.0/8", "a loopback address (this machine)"),
    _rule("::1/128", "the loopback address (this machine)"),
    _rule("10.0.0.0/8", "a private address (RFC 1918)"),
    _rule("172.16.0.0/12", "a private address (RFC 1918)"),
    _rule("192.168.0.0/16", "a private address (RFC 1918)"),
    _rule("fc00::/7", "a unique local (private) IPv6 address"),
    _rule("100.64.0.0/10", "a shared address of carrier-grade NAT (RFC 6598)"),
    _rule("192.0.0.0/24", "an IETF protocol assignment address"),
    _rule("198.18.0.0/15", "a benchmarking address (RFC 2544)"),
    _rule("192.0.2.0/24", "a documentation address"),
    _rule("198.51.100.0/24", "a documentation address"),
    _rule("203.0.113.0/24", "a documentation address"),
    _rule("2001:db8::/32", "a documentation address"),
)
_HARDENED_DENY = tuple(
    _Rule(r.network, f"{r.what}, which the hardened settings ({_ENV_PROFILE}=hardened) deny")
    for r in _HARDENED_DENY
)


@dataclass(frozen=True)
class NetPolicy:
    """Operator settings of the outbound network policy.

    ``deny`` adds CIDRs to the default deny list; ``allow`` carves CIDRs out of both (allow
    wins); ``ports`` lists the allowed ports, empty meaning any. ``NetPolicy()`` is the
    default policy; ``profile="hardened"`` adds the hardened deny list (see the module
    docstring; its ports come from :meth:`from_strings`).

    Raises:
        ValueError: a port outside 1..65535.
        TypeError: a ``deny`` or ``allow`` entry that is not an IPv4/IPv6 network.
    """

    deny: tuple[Network, ...] = ()
    allow: tuple[Network, ...] = ()
    ports: frozenset[int] = field(default_factory=frozenset)
    profile: str = "default"
    #: the proxy SMTP, IMAP and OAuth2 token connections go through (POSTROOM_PROXY); the
    #: policy still judges the proxy's address and a target given as an address
    proxy: ProxySpec | None = None

    def __post_init__(self) -> None:
        if self.profile not in NET_PROFILES:
            raise ValueError(f"NetPolicy.profile must be one of {NET_PROFILES}: {self.profile!r}")
        for name, networks in (("deny", self.deny), ("allow", self.allow)):
            for network in networks:
                if not isinstance(network, IPv4Network | IPv6Network):
                    raise TypeError(f"NetPolicy.{name} entries must be networks: {network!r}")
        for port in self.ports:
            if not _is_port(port):
                raise ValueError(f"NetPolicy.ports: {port!r} is not a port number (1-65535)")

    @classmethod
    def from_strings(
        cls, deny: str = "", allow: str = "", ports: str = "", profile: str = "default"
    ) -> NetPolicy:
        """Build a policy from the comma-separated values of the environment variables
        ``POSTROOM_NET_DENY``, ``POSTROOM_NET_ALLOW`` and ``POSTROOM_NET_PORTS``, and
        ``POSTROOM_NET_PROFILE`` (``default`` or ``hardened``; hardened with no ports
        given allows :data:`HARDENED_PORTS`).

        Items are stripped; empty items are ignored. A bare address means a single host.

        Raises:
            ValueError: an item is not a CIDR / port, or an unknown profile; the message
                names the variable and item.
        """
        if profile not in NET_PROFILES:
            raise ValueError(f"{_ENV_PROFILE}: {profile!r} is not one of {', '.join(NET_PROFILES)}")
        parsed_ports = _parse_ports(ports)
        if profile == "hardened" and not parsed_ports:
            parsed_ports = HARDENED_PORTS
        return cls(
            deny=_parse_networks(_ENV_DENY, deny),
            allow=_parse_networks(_ENV_ALLOW, allow),
            ports=parsed_ports,
            profile=profile,
        )

    @property
    def hardened(self) -> bool:
        return self.profile == "hardened"


@dataclass(frozen=True)
class Allowed:
    """The connection may go ahead; connect to exactly ``address``."""

    address: str


@dataclass(frozen=True)
class Denied:
    """The connection is blocked; ``reason`` is a sentence for people."""

    address: str
    reason: str


Decision: TypeAlias = Allowed | Denied


def check(policy: NetPolicy, address: str, port: int) -> Decision:
    """Judge one resolved IP address (IPv4 or IPv6, optionally with a ``%zone``) and port.

    ``Allowed.address`` is the canonical form of ``address`` (zone kept, as a link-local
    address needs it to connect). The address is judged before the port.

    Raises:
        ValueError: ``address`` is not an IP address (host names are resolved first, see
            :func:`postroom.net.resolve.resolve`), its zone id is malformed, or ``port``
            is outside 1..65535.
    """
    if not _is_port(port):
        raise ValueError(f"port must be between 1 and 65535, got {port!r}")
    parsed = _parse_address(address)
    shown = str(parsed)
    reason = _address_denial(policy, parsed)
    if reason is not None:
        return Denied(shown, reason)
    if policy.ports and port not in policy.ports:
        allowed = ", ".join(str(p) for p in sorted(policy.ports))
        return Denied(
            shown,
            f"Port {port} is not among the allowed ports ({allowed}); outbound connections "
            f"to {shown} on it are blocked by postroom's network policy. An operator can "
            f"allow it by adding it to {_ENV_PORTS}.",
        )
    return Allowed(shown)


def check_all(policy: NetPolicy, addresses: Sequence[str], port: int) -> list[Decision]:
    """:func:`check` each address, in order. Raises as :func:`check` does."""
    return [check(policy, address, port) for address in addresses]


def _is_port(port: object) -> bool:
    # bool is an int, but True is no port.
    return isinstance(port, int) and not isinstance(port, bool) and 1 <= port <= 65535


def _parse_address(address: str) -> _Address:
    if not isinstance(address, str):
        raise ValueError(f"{address!r} is not an IP address")
    _, sep, zone = address.partition("%")
    if sep and not _ZONE_ID.fullmatch(zone):
        raise ValueError(f"{address!r} has a malformed zone id")
    try:
        return ip_address(address)
    except ValueError:
        raise ValueError(f"{address!r} is not an IP address") from None


def _address_denial(policy: NetPolicy, parsed: _Address) -> str | None:
    shown = str(parsed)
    # The zone only says which interface to use; the rules are about the address itself.
    bare: _Address = IPv6Address(int(parsed)) if isinstance(parsed, IPv6Address) else parsed
    verdict = _judge(policy, bare)
    if verdict is not None:
        return f"{shown} is {verdict.what}; {_BLOCKED} {_hint('it', verdict)}"
    if isinstance(bare, IPv6Address):
        for inner, form in _embedded_ipv4(bare):
            verdict = _judge(policy, inner)
            if verdict is not None:
                return (
                    f"{shown} embeds {inner} ({form}), and {inner} is {verdict.what}; "
                    f"{_BLOCKED} {_hint(str(inner), verdict)}"
                )
    return None


_BLOCKED = "outbound connections to it are blocked by postroom's network policy."


@dataclass(frozen=True)
class _Verdict:
    what: str
    operator_network: Network | None  # None: a default rule denied it


def _judge(policy: NetPolicy, address: _Address) -> _Verdict | None:
    if any(address in network for network in policy.allow):
        return None
    # The most specific match names the reason: 169.254.169.254 is "the metadata service
    # address", not merely "link-local".
    best: tuple[int, _Verdict] | None = None
    rules = _DEFAULT_DENY + _HARDENED_DENY if policy.hardened else _DEFAULT_DENY
    for rule in rules:
        if address in rule.network and (best is None or rule.network.prefixlen > best[0]):
            best = (rule.network.prefixlen, _Verdict(rule.what, None))
    for network in policy.deny:
        if address in network and (best is None or network.prefixlen > best[0]):
            best = (network.prefixlen, _Verdict(f"in {network}, which {_ENV_DENY} denies", network))
    return None if best is None else best[1]


def _hint(subject: str, verdict: _Verdict) -> str:
    if verdict.operator_network is None:
        return f"An operator can allow {subject} with {_ENV_ALLOW}."
    return (
        f"An operator can allow {subject} with {_ENV_ALLOW} "
        f"or remove {verdict.operator_network} from {_ENV_DENY}."
    )


def _bits(value: int, start: int, stop: int) -> int:
    """Bits ``start``..``stop - 1`` of a 128-bit value, numbered from the most significant."""
    return (value >> (128 - stop)) & ((1 << (stop - start)) - 1)


_NAT64_WELL_KNOWN = 0x0064_FF9B_0000_0000_0000_0000  # 64:ff9b::/96, the upper 96 bits
_NAT64_LOCAL = 0x0064_FF9B_0001  # 64:ff9b:1::/48, the upper 48 bits (RFC 8215)
_SIIT_TRANSLATED = 0xFFFF_0000  # ::ffff:0:0/96, the upper 96 bits (RFC 2765)


def _embedded_ipv4(address: IPv6Address) -> list[tuple[IPv4Address, str]]:
    """IPv4 addresses a translator, tunnel or dual-stack socket would derive from ``address``."""
    n = int(address)
    upper96, low32 = n >> 32, n & 0xFFFF_FFFF
    found: list[tuple[IPv4Address, str]] = []
    if upper96 == 0xFFFF:
        found.append((IPv4Address(low32), "IPv4-mapped"))
    elif upper96 == _SIIT_TRANSLATED:
        found.append((IPv4Address(low32), "IPv4-translated"))
    elif upper96 == 0 and n > 1:  # :: and ::1 are themselves, not IPv4-compatible
        found.append((IPv4Address(low32), "IPv4-compatible"))
    elif upper96 == _NAT64_WELL_KNOWN:
        found.append((IPv4Address(low32), "NAT64"))
    elif n >> 80 == _NAT64_LOCAL:
        found.extend((IPv4Address(v4), "NAT64") for v4 in _rfc6052_candidates(n))
    elif n >> 112 == 0x2002:
        found.append((IPv4Address(_bits(n, 16, 48)), "6to4"))
    elif n >> 96 == 0x2001_0000:
        found.append((IPv4Address(_bits(n, 32, 64)), "Teredo server"))
        # Teredo stores the client address inverted so NATs leave it alone.
        found.append((IPv4Address(~n & 0xFFFF_FFFF), "Teredo client"))
    return found


def _rfc6052_candidates(n: int) -> list[int]:
    """IPv4 addresses embedded under 64:ff9b:1::/48 for each prefix length it may use.

    The operator picks the prefix length (48, 56, 64 or 96) and the address does not say
    which, so every layout is decoded. Layouts other than /96 are only taken when their
    must-be-zero bits (the "u" octet, bits 64-71, and the suffix) are zero; otherwise
    ordinary /96 addresses would decode to garbage like 0.0.x.x and be denied. Likewise a
    /48 or /56 address decodes as /96 to 0.0.0.0, which no translator is asked for, so that
    reading is dropped. Not covered: a translator with a prefix shorter than /96 that ignores
    non-zero suffix bits.
    """
    low32 = _bits(n, 96, 128)
    candidates: list[int] = []
    if _bits(n, 64, 72) == 0:
        if _bits(n, 88, 128) == 0:
            candidates.append(_bits(n, 48, 64) << 16 | _bits(n, 72, 88))
        if low32 == 0:
            candidates.append(_bits(n, 56, 64) << 24 | _bits(n, 72, 96))
        if _bits(n, 104, 128) == 0:
            candidates.append(_bits(n, 72, 104))
    if low32 != 0 or not candidates:
        candidates.append(low32)
    return candidates


def _parse_networks(variable: str, value: str) -> tuple[Network, ...]:
    networks: list[Network] = []
    for item in _items(value):
        if "%" in item:
            raise ValueError(f"{variable}: {item!r} has a zone id; CIDRs take none")
        try:
            networks.append(ip_network(item))
        except ValueError:
            try:
                loose = ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{variable}: {item!r} is not a valid CIDR") from None
            raise ValueError(
                f"{variable}: {item!r} has host bits set; did you mean '{loose}'?"
            ) from None
    return tuple(networks)


def _parse_ports(value: str) -> frozenset[int]:
    ports: set[int] = set()
    for item in _items(value):
        # isdigit() alone accepts non-ASCII digits and int() accepts "+25" and "2_5".
        port = int(item) if item.isascii() and item.isdigit() else 0
        if not _is_port(port):
            raise ValueError(f"{_ENV_PORTS}: {item!r} is not a port number (1-65535)")
        ports.add(port)
    return frozenset(ports)


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]
