"""DNS queries (SRV, MX, A/AAAA) with dnspython, against the system's or configured resolvers.

``POSTROOM_DNS_SERVERS`` (comma-separated ``address`` or ``address:port``, IPv6 as
``[address]:port``) points detection at specific resolvers; empty uses /etc/resolv.conf.
The resolvers are the operator's infrastructure, like the database: the network policy
judges the addresses the answers lead to, not the resolver itself.

dnspython is imported when a query runs, so the rest of postroom does not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any

__all__ = ["DnsFailed", "DnsServer", "parse_dns_servers", "query"]


@dataclass(frozen=True)
class DnsServer:
    address: str
    port: int = 53


class DnsFailed(Exception):
    """The resolver gave no usable answer (timeout, SERVFAIL, refused) — not "no such name"."""


def parse_dns_servers(text: str) -> list[DnsServer]:
    """``"127.0.0.1:5353, [::1]:53, 10.0.0.2"`` → servers. Raises ValueError naming the bad entry."""
    servers: list[DnsServer] = []
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        host, port = entry, 53
        if entry.startswith("["):
            inner, _, rest = entry[1:].partition("]")
            host = inner
            if rest:
                if not rest.startswith(":") or not rest[1:].isdigit():
                    raise ValueError(f"DNS server {entry!r}: write [address]:port")
                port = int(rest[1:])
        elif entry.count(":") == 1:
            host, _, port_text = entry.partition(":")
            if not port_text.isdigit():
                raise ValueError(f"DNS server {entry!r}: the port is not a number")
            port = int(port_text)
        try:
            ip_address(host)
        except ValueError:
            raise ValueError(f"DNS server {entry!r} is not an IP address") from None
        if not 1 <= port <= 65535:
            raise ValueError(f"DNS server {entry!r}: the port must be between 1 and 65535")
        servers.append(DnsServer(host, port))
    return servers


async def query(name: str, rdtype: str, *, servers: list[DnsServer], timeout: float) -> list[Any]:
    """The answer's records for ``name``/``rdtype``; empty for no such name or no such record.

    Raises DnsFailed when no resolver answered within ``timeout`` seconds or all failed.
    """
    import dns.asyncresolver
    import dns.exception
    import dns.nameserver
    import dns.resolver

    resolver = dns.asyncresolver.Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(s.address, s.port) for s in servers]
    resolver.lifetime = timeout
    resolver.timeout = timeout
    try:
        answer = await resolver.resolve(name, rdtype, search=False, raise_on_no_answer=False)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.Timeout:
        raise DnsFailed(f"no DNS answer for {name} ({rdtype}) within {timeout:g} s") from None
    except dns.resolver.NoNameservers:
        raise DnsFailed(f"every DNS server failed to answer for {name} ({rdtype})") from None
    except dns.exception.DNSException as exc:
        raise DnsFailed(f"DNS lookup of {name} ({rdtype}) failed: {type(exc).__name__}") from None
    return list(answer.rrset or [])
