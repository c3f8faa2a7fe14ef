"""Which address a request came from, when reverse proxies stand in front (pure).

``X-Forwarded-For`` is a header the client writes: believed from anyone, it lets every
client pick the address that throttles count by. It is read only when the connection
comes from an address the operator listed in ``POSTROOM_TRUSTED_PROXIES`` (empty by
default: no proxy is trusted). Then the list is walked from the right — each proxy appends
the address it saw — skipping trusted proxies; the first other address is the client.
Anything left of it was written by the client and is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network

__all__ = ["Networks", "client_address", "forwarded_proto", "parse_trusted"]

Networks = tuple[IPv4Network | IPv6Network, ...]


def parse_trusted(text: str) -> Networks:
    """``"127.0.0.1, 10.0.0.0/8"`` → networks; raises ValueError naming every bad entry."""
    networks: list[IPv4Network | IPv6Network] = []
    bad: list[str] = []
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ip_network(entry, strict=False))
        except ValueError:
            bad.append(repr(entry[:60]))
    if bad:
        raise ValueError(
            f"POSTROOM_TRUSTED_PROXIES: {', '.join(bad)} is not an IP address or CIDR "
            "(e.g. 127.0.0.1, 10.0.0.0/8, ::1)"
        )
    return tuple(networks)


def _address(text: str) -> IPv4Address | IPv6Address | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[2001:db8::1]:443"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "192.0.2.1:443"
        text = text.split(":", 1)[0]
    try:
        found = ip_address(text)
    except ValueError:
        return None
    if isinstance(found, IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def _trusted(address: IPv4Address | IPv6Address | None, trusted: Networks) -> bool:
    return address is not None and any(address in net for net in trusted)


def client_address(peer: str, forwarded_for: Sequence[str], trusted: Networks) -> str:
    """The client's address: ``peer`` (the socket's) unless ``peer`` is a trusted proxy,
    then the right-most untrusted address of the ``X-Forwarded-For`` header(s)."""
    if not trusted or not _trusted(_address(peer), trusted):
        return peer
    hops = [hop for value in forwarded_for for hop in value.split(",")]
    client = peer
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:  # not written by a proxy: stop at the last address we trust
            break
        client = str(address)
        if not _trusted(address, trusted):
            break
    return client


def forwarded_proto(peer: str, values: Sequence[str], trusted: Networks) -> str | None:
    """``http``/``https`` from the last ``X-Forwarded-Proto`` of a trusted proxy, else None."""
    if not values or not trusted or not _trusted(_address(peer), trusted):
        return None
    last = values[-1].split(",")[-1].strip().lower()
    return last if last in ("http", "https") else None
