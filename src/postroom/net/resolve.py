"""Resolve a host name once and keep only the addresses the network policy allows.

The caller connects to the returned addresses, never to the host name again: resolving twice
would let DNS answer differently the second time (DNS rebinding) and defeat the check.

Errors, all raised by :func:`resolve`::

    ValueError                 bad host string (empty, whitespace, control characters) or port
    HostNotFound(Exception)    getaddrinfo failed (no such name, no address, DNS unavailable)
    BlockedByPolicy(Exception) the name resolved, but the policy denied every address
    ResolveTimeout(TimeoutError)  resolution took longer than ``timeout``

They are mapped to postroom's own error tree at one boundary, not here.
"""

from __future__ import annotations

import asyncio
import socket

from postroom.net.policy import Allowed, Denied, NetPolicy, check

__all__ = ["BlockedByPolicy", "HostNotFound", "ResolveTimeout", "resolve"]

# getaddrinfo errors that say "try again later" rather than "no such host".
_TEMPORARY_GAI_ERRORS = frozenset({socket.EAI_AGAIN})


class HostNotFound(Exception):
    """``host`` could not be resolved.

    ``temporary`` is true when the resolver, not the name, failed (``EAI_AGAIN``): a retry
    may succeed.
    """

    def __init__(self, host: str, detail: str, *, temporary: bool = False) -> None:
        self.host = host
        self.detail = detail
        self.temporary = temporary
        super().__init__(f"Could not resolve {host!r}: {detail}. Check the host name.")


class BlockedByPolicy(Exception):
    """Every address ``host`` resolved to was denied; ``denied`` says why, per address."""

    def __init__(self, host: str, denied: list[Denied]) -> None:
        self.host = host
        self.denied = denied
        reasons = " ".join(d.reason for d in denied)
        super().__init__(f"{host!r} resolved only to blocked addresses. {reasons}")


class ResolveTimeout(TimeoutError):
    """Resolving ``host`` took longer than ``timeout`` seconds."""

    def __init__(self, host: str, timeout: float) -> None:
        self.host = host
        self.timeout = timeout
        super().__init__(f"Resolving {host!r} took longer than {timeout:g} s.")


async def resolve(host: str, port: int, *, policy: NetPolicy, timeout: float | None) -> list[str]:
    """Resolve ``host`` once and return the addresses ``policy`` allows, in resolver order.

    Numeric forms are resolved like names, and the result is judged: ``2130706433``,
    ``0x7f.1``, ``127.1`` and ``0177.0.0.1`` all become ``127.0.0.1``. When some addresses
    are allowed and some denied, only the allowed ones are returned. Link-local IPv6 results
    keep their zone as ``%<index>`` so they can be connected to.

    ``timeout`` is in seconds; ``None`` waits as long as the system resolver does.

    Raises:
        ValueError: ``host`` is empty or contains whitespace or control characters, or it is
            not a valid IDNA name; ``port`` is outside 1..65535.
        HostNotFound: getaddrinfo failed or returned nothing.
        BlockedByPolicy: no address was allowed.
        ResolveTimeout: resolution took longer than ``timeout``.
    """
    _validate_host(host)
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be between 1 and 65535, got {port!r}")
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(timeout):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        # timeout is not None here: asyncio.timeout(None) never fires.
        raise ResolveTimeout(host, timeout or 0.0) from None
    except socket.gaierror as exc:
        raise HostNotFound(
            host, exc.strerror or str(exc), temporary=exc.errno in _TEMPORARY_GAI_ERRORS
        ) from exc
    except UnicodeError as exc:
        # The idna codec rejects labels that are empty or longer than 63 characters.
        raise ValueError(f"{host!r} is not a valid host name: {exc}") from None

    addresses: list[str] = []
    for family, _type, _proto, _canonname, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = str(sockaddr[0])
        # getaddrinfo drops the zone from an IPv6 address string and reports it as scope_id;
        # a link-local address cannot be connected to without it.
        if len(sockaddr) == 4 and sockaddr[3]:
            address = f"{address}%{sockaddr[3]}"
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise HostNotFound(host, "no IPv4 or IPv6 address")

    allowed: list[str] = []
    denied: list[Denied] = []
    for address in addresses:
        decision = check(policy, address, port)
        if isinstance(decision, Allowed):
            allowed.append(decision.address)
        else:
            denied.append(decision)
    if not allowed:
        raise BlockedByPolicy(host, denied)
    return allowed


def _validate_host(host: str) -> None:
    if not isinstance(host, str) or not host:
        raise ValueError("host must be a non-empty string")
    # CR/LF/NUL could smuggle into logs or protocol lines; whitespace is never in a name.
    if any(ch.isspace() or not ch.isprintable() for ch in host):
        raise ValueError(f"host {host!r} contains whitespace or control characters")
