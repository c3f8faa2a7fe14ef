"""HTTPS to token endpoints through the network policy.

:class:`PolicyTransport` is httpx's own transport whose connections go through
:func:`postroom.net.resolve.resolve`: the host is resolved once, every address is checked,
and the TCP connection is opened to a checked address, while TLS (SNI and certificate
verification) still uses the host name. No proxy from the environment (HTTPS_PROXY) is used;
only the operator's POSTROOM_PROXY (``policy.proxy``), through :mod:`postroom.net.proxy`.

:func:`post_form` sends one form POST and returns ``(status, body)``; it maps every network
failure to :class:`EndpointUnreachable` here, at one boundary.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import anyio.abc
import httpcore
import httpx
from httpcore._backends.anyio import AnyIOStream

from postroom.net.connect import ConnectFailed
from postroom.net.http_connect import connect_first_tcp
from postroom.net.policy import NetPolicy
from postroom.net.proxy import open_tunnel
from postroom.net.proxy_spec import ProxySpec
from postroom.net.resolve import BlockedByPolicy, HostNotFound, ResolveTimeout, resolve

__all__ = ["EndpointUnreachable", "PolicyTransport", "post_form"]

#: Below the refresh lease (see tokens.py): a live lease holder never outlasts its lease.
HTTP_TIMEOUT_S = 20.0
_MAX_BODY = 1 << 20


class EndpointUnreachable(Exception):
    """No answer from the endpoint. ``transient`` is false when only a change of settings
    helps (blocked by the network policy, a certificate problem)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.message = message
        self.transient = transient


class _PolicyBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: NetPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._policy.proxy is not None:
            return await self._tunnel(self._policy.proxy, host, port, timeout)
        addresses = await resolve(host, port, policy=self._policy, timeout=timeout)
        return await connect_first_tcp(
            self._inner,
            addresses,
            port,
            timeout=timeout,
            local_address=local_address,
            socket_options=socket_options,
        )

    async def _tunnel(
        self, proxy: ProxySpec, host: str, port: int, timeout: float | None
    ) -> httpcore.AsyncNetworkStream:
        try:
            sock = await open_tunnel(proxy, host, port, policy=self._policy, timeout=timeout)
        except ConnectFailed as exc:
            raise httpcore.ConnectError(exc.message) from None
        # httpcore's AnyIO stream over our tunnel: TLS (SNI, verification) still on `host`
        stream = await anyio.abc.SocketStream.from_socket(sock)
        return AnyIOStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("postroom does not connect to UNIX sockets here")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PolicyTransport(httpx.AsyncHTTPTransport):
    """httpx's transport, connecting only to addresses ``policy`` allows."""

    def __init__(self, policy: NetPolicy, *, ssl_context: ssl.SSLContext | None = None) -> None:
        context = ssl_context or ssl.create_default_context()
        super().__init__(verify=context, trust_env=False)
        # httpx takes no network backend; its pool is rebuilt with ours (same parameters
        # otherwise), so httpx's request mapping and error mapping stay in use.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=context, network_backend=_PolicyBackend(policy), max_keepalive_connections=0
        )


async def post_form(
    url: str,
    form: dict[str, str],
    *,
    policy: NetPolicy,
    ssl_context: ssl.SSLContext | None = None,
    timeout: float = HTTP_TIMEOUT_S,
) -> tuple[int, bytes]:
    """POST ``form`` to ``url``; returns the status and at most 1 MiB of the body.

    Raises :class:`EndpointUnreachable`. The form (client secret, codes, refresh token)
    appears in no message.
    """
    transport = PolicyTransport(policy, ssl_context=ssl_context)
    host = httpx.URL(url).host
    try:
        async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
            async with client.stream(
                "POST", url, data=form, headers={"Accept": "application/json"}
            ) as response:
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > _MAX_BODY:
                        raise EndpointUnreachable(
                            f"{host} sent an answer larger than 1 MiB.", transient=True
                        )
                return response.status_code, body
    except BlockedByPolicy as exc:
        reasons = " ".join(d.reason for d in exc.denied)
        raise EndpointUnreachable(
            f"{host} is blocked by postroom's network policy. {reasons}", transient=False
        ) from None
    except (HostNotFound, ResolveTimeout) as exc:
        raise EndpointUnreachable(f"{host} could not be resolved: {exc}", transient=True) from None
    except httpx.TimeoutException:
        raise EndpointUnreachable(
            f"{host} did not answer within {timeout:g} s.", transient=True
        ) from None
    except httpx.ConnectError as exc:
        if isinstance(exc.__cause__, ssl.SSLCertVerificationError) or "CERTIFICATE" in str(exc):
            raise EndpointUnreachable(
                f"TLS with {host} failed: {exc}. Check the URL and the machine's CA store.",
                transient=False,
            ) from None
        raise EndpointUnreachable(f"Cannot connect to {host}: {exc}", transient=True) from None
    except httpx.HTTPError as exc:
        raise EndpointUnreachable(
            f"The connection to {host} failed: {type(exc).__name__}", transient=True
        ) from None
