"""Open a TCP connection to an address the policy checked, and sniff what a port speaks.

Errors (``ConnectFailed.code``): ``connect_refused``, ``connect_timeout``,
``network_unreachable``. Resolution and policy errors come from :mod:`postroom.net.resolve`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
from dataclasses import dataclass

__all__ = ["ConnectFailed", "Sniffed", "connect_first", "sniff"]

_UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL, errno.ENETDOWN}


class ConnectFailed(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


async def _connect_one(address: str, port: int, timeout: float | None) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.sock_connect(sock, (address, port)), timeout)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_first(
    addresses: list[str], port: int, *, timeout: float | None
) -> tuple[socket.socket, str]:
    """Connect to the first address that accepts; returns the socket and that address."""
    last: ConnectFailed | None = None
    for address in addresses:
        shown = f"[{address}]" if ":" in address else address
        try:
            return await _connect_one(address, port, timeout), address
        except TimeoutError:
            last = ConnectFailed(
                "connect_timeout", f"No answer from {shown} port {port} within {timeout:g} s."
            )
        except ConnectionRefusedError:
            last = ConnectFailed(
                "connect_refused", f"{shown} refused the connection on port {port}."
            )
        except OSError as exc:
            if exc.errno in _UNREACHABLE:
                last = ConnectFailed(
                    "network_unreachable", f"{shown} is unreachable from here ({exc.strerror})."
                )
            else:
                last = ConnectFailed(
                    "connect_refused", f"Connecting to {shown} port {port} failed ({exc.strerror})."
                )
    assert last is not None, "connect_first needs at least one address"
    raise last


@dataclass(frozen=True)
class Sniffed:
    """What a port answered: ``smtp``, ``imap``, ``tls``, ``http``, ``silent``, ``closed``, ``other``."""

    kind: str
    first_line: str


def _classify(data: bytes) -> Sniffed:
    line = data.split(b"\n", 1)[0][:120].decode("ascii", "replace").strip()
    printable = "".join(c if c.isprintable() else "?" for c in line)
    if not data:
        return Sniffed("closed", "")
    if data[:1] in (b"\x15", b"\x16") and data[1:2] == b"\x03":
        return Sniffed("tls", "(TLS record)")
    if data.startswith(b"HTTP/") or data.lstrip()[:14].lower() in (b"<!doctype html", b"<html>"):
        return Sniffed("http", printable)
    if data[:3].isdigit():
        return Sniffed("smtp", printable)
    if data.startswith(b"* "):
        return Sniffed("imap", printable)
    return Sniffed("other", printable)


async def _speaks_tls(address: str, port: int, wait: float) -> bool:
    import ssl

    ctx = ssl.create_default_context()
    # only asking "is this TLS?": no certificate is trusted or used for anything here
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(address, port, ssl=ctx, ssl_handshake_timeout=wait), wait
        )
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


async def sniff(address: str, port: int, *, probe_line: bytes, wait: float = 1.5) -> Sniffed:
    """See what a port speaks, on fresh connections: what it says unasked; else whether it
    completes a TLS handshake; else what it answers to ``probe_line``. Reads at most 512 bytes.

    Only an address that was checked (an IP literal) is sniffed; anything else (a
    connection through a proxy) is "closed": a second, direct connection would bypass it."""
    try:
        ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return Sniffed("closed", "")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), wait)
    except (OSError, TimeoutError):
        return Sniffed("closed", "")
    try:
        data = await asyncio.wait_for(reader.read(512), wait)
        return _classify(data)
    except TimeoutError:
        pass
    except OSError:
        return Sniffed("closed", "")
    finally:
        writer.close()
    if await _speaks_tls(address, port, wait):
        return Sniffed("tls", "(TLS handshake)")
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), wait)
    except (OSError, TimeoutError):
        return Sniffed("closed", "")
    try:
        writer.write(probe_line)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(512), wait)
    except (OSError, TimeoutError):
        return Sniffed("silent", "")
    finally:
        writer.close()
    return _classify(data) if data else Sniffed("closed", "")
