"""Open a TCP tunnel through a SOCKS5 or HTTP CONNECT proxy; TLS and protocols run on top.

One seam for SMTP, IMAP and HTTPS: the caller gets a plain connected socket to the target,
exactly as from :func:`postroom.net.connect.connect_first`, and speaks TLS (implicit or
after STARTTLS) through it as if directly connected.

The network policy judges the proxy's address (resolved once, here) and the target as given:
the target's name is handed to the proxy, which resolves it (SOCKS5 with a domain name,
``CONNECT host:port``), so only a target given as an IP address can be judged here; the
proxy's own rules decide the rest.

Errors: :class:`ProxyFailed` with ``code`` ``proxy_refused`` (no connection to the proxy,
or the proxy refused to reach the target), ``proxy_auth_failed`` (credentials missing or
wrong), ``proxy_timeout``. Messages never contain the proxy password.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import struct

from postroom.net.connect import ConnectFailed, connect_first
from postroom.net.policy import Allowed, NetPolicy, check
from postroom.net.proxy_spec import ProxySpec
from postroom.net.resolve import BlockedByPolicy, resolve

__all__ = ["ProxyFailed", "ProxySpec", "open_socket", "open_tunnel"]

_MAX_HEAD = 8192
_SOCKS_REPLIES = {
    1: "general failure",
    2: "connection not allowed by the proxy's rules",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused by the target",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class ProxyFailed(ConnectFailed):
    """``code``: proxy_refused | proxy_auth_failed | proxy_timeout."""


async def open_tunnel(
    proxy: ProxySpec, host: str, port: int, *, policy: NetPolicy, timeout: float | None
) -> socket.socket:
    """A socket connected through ``proxy`` to ``host``:``port``, ready for TLS or a protocol.

    Raises BlockedByPolicy (proxy or literal target denied), HostNotFound/ResolveTimeout (the
    proxy's name), ProxyFailed.
    """
    _check_target(policy, host, port)
    addresses = await resolve(proxy.host, proxy.port, policy=policy, timeout=timeout)
    try:
        sock, _ = await connect_first(addresses, proxy.port, timeout=timeout)
    except ConnectFailed as exc:
        code = "proxy_timeout" if exc.code == "connect_timeout" else "proxy_refused"
        raise ProxyFailed(code, f"The {proxy.shown} could not be reached: {exc.message}") from None
    try:
        async with asyncio.timeout(timeout):
            if proxy.type == "socks5":
                await _socks5(sock, proxy, host, port)
            else:
                await _connect(sock, proxy, host, port)
    except TimeoutError:
        sock.close()
        raise ProxyFailed(
            "proxy_timeout", f"The {proxy.shown} did not open the tunnel within {timeout:g} s."
        ) from None
    except ProxyFailed:
        sock.close()
        raise
    except OSError as exc:
        sock.close()
        raise ProxyFailed(
            "proxy_refused", f"The {proxy.shown} closed the connection ({exc.strerror or exc})."
        ) from None
    return sock


def _check_target(policy: NetPolicy, host: str, port: int) -> None:
    try:
        literal = str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        try:
            # 127.1, 0x7f.1, 2130706433: forms a proxy's resolver would turn into an address
            literal = socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return
    decision = check(policy, literal, port)
    if not isinstance(decision, Allowed):
        raise BlockedByPolicy(host, [decision])


async def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise ConnectionResetError("closed by the proxy")
        data += chunk
    return data


async def _socks5(sock: socket.socket, proxy: ProxySpec, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    with_password = proxy.username is not None
    methods = b"\x00\x02" if with_password else b"\x00"
    await loop.sock_sendall(sock, b"\x05" + bytes([len(methods)]) + methods)
    version, method = await _recv_exactly(sock, 2)
    if version != 5:
        raise ProxyFailed("proxy_refused", f"The {proxy.shown} does not speak SOCKS5.")
    if method == 0xFF:
        raise ProxyFailed(
            "proxy_auth_failed",
            f"The {proxy.shown} accepts none of our sign-in methods"
            + (" (it wants a username and password)." if not with_password else "."),
        )
    if method == 0x02:
        if not with_password:
            raise ProxyFailed(
                "proxy_auth_failed", f"The {proxy.shown} wants a username and password."
            )
        user = (proxy.username or "").encode()[:255]
        password = (proxy.password or "").encode()[:255]
        await loop.sock_sendall(
            sock, b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password
        )
        _, status = await _recv_exactly(sock, 2)
        if status != 0:
            raise ProxyFailed(
                "proxy_auth_failed", f"The {proxy.shown} refused the username or password."
            )
    elif method != 0x00:
        raise ProxyFailed("proxy_refused", f"The {proxy.shown} chose an unknown method.")
    target = host.strip("[]")
    try:
        parsed = ipaddress.ip_address(target)
        address = (b"\x01" if parsed.version == 4 else b"\x04") + parsed.packed
    except ValueError:
        name = target.encode("idna")
        address = b"\x03" + bytes([len(name)]) + name
    await loop.sock_sendall(sock, b"\x05\x01\x00" + address + struct.pack("!H", port))
    _, reply, _, kind = await _recv_exactly(sock, 4)
    if reply != 0:
        why = _SOCKS_REPLIES.get(reply, f"error {reply}")
        raise ProxyFailed(
            "proxy_refused", f"The {proxy.shown} could not reach {host}:{port}: {why}."
        )
    # the bound address, read exactly, so nothing of the target's first bytes is consumed
    size = {1: 4, 4: 16}.get(kind)
    if size is None:
        size = (await _recv_exactly(sock, 1))[0]
    await _recv_exactly(sock, size + 2)


async def _connect(sock: socket.socket, proxy: ProxySpec, host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    lines = [f"CONNECT {shown}:{port} HTTP/1.1", f"Host: {shown}:{port}"]
    if proxy.username is not None:
        token = base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {token}")
    await loop.sock_sendall(sock, ("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    # one byte at a time: the target may speak first (an SMTP greeting) right behind the
    # proxy's answer, and those bytes belong to the protocol, not to us
    while not head.endswith(b"\r\n\r\n"):
        if len(head) >= _MAX_HEAD:
            raise ProxyFailed("proxy_refused", f"The {proxy.shown} sent an overlong answer.")
        byte = await loop.sock_recv(sock, 1)
        if not byte:
            raise ProxyFailed("proxy_refused", f"The {proxy.shown} closed the connection.")
        head += byte
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = status_line.split(" ", 2)
    status = parts[1] if len(parts) > 1 else ""
    shown_line = "".join(c if c.isprintable() else "?" for c in status_line)[:200]
    if status == "200":
        return
    # 407 is the standard answer; some proxies (tinyproxy) answer 401 to wrong credentials
    if status in ("407", "401"):
        raise ProxyFailed(
            "proxy_auth_failed",
            f"The {proxy.shown} wants valid credentials ({shown_line})."
            if proxy.username is not None
            else f"The {proxy.shown} wants a username and password ({shown_line}).",
        )
    raise ProxyFailed(
        "proxy_refused", f"The {proxy.shown} refused to reach {host}:{port} ({shown_line})."
    )


async def open_socket(
    host: str, port: int, *, policy: NetPolicy, timeout: float | None
) -> tuple[socket.socket, str]:
    """The one way mail and token connections are opened: directly (resolved once, checked)
    or, when ``policy.proxy`` is set, through that proxy. Returns the socket and what it is
    connected to (an address, or the proxy's description)."""
    if policy.proxy is None:
        addresses = await resolve(host, port, policy=policy, timeout=timeout)
        return await connect_first(addresses, port, timeout=timeout)
    sock = await open_tunnel(policy.proxy, host, port, policy=policy, timeout=timeout)
    return sock, policy.proxy.shown
