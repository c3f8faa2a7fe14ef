"""How `postroom serve` runs uvicorn, and the guard against slow clients it lacks.

uvicorn bounds a request head's *size* (h11: 16 KiB by default) and the *idle* time
between requests (``timeout_keep_alive``), but not the time a client takes to send a head:
a client that connects and trickles one header line every few seconds held a connection
(and a file descriptor) for as long as it liked, and 200 of them stayed open for 30 s and
more. :func:`guarded_h11` is uvicorn's h11 protocol with two additions:

- a **head timeout**: from the moment a connection opens, or its previous response
  finished, the next request head must be complete within ``header_timeout_s``, or the
  connection is closed (trickling does not extend it);
- a **per-address cap** on open connections (trusted proxies exempt: all their clients
  share their address); a connection past it is closed at once.

``limit_concurrency`` (uvicorn's own: 503 past it) bounds all connections together.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from ipaddress import ip_address
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from postroom.app import Postroom
from postroom.net.forwarded import Networks

__all__ = ["guarded_h11", "server_config"]


def _exempt(host: str, trusted: Networks) -> bool:
    try:
        address = ip_address(host)
    except ValueError:
        return False
    return any(address in net for net in trusted)


def guarded_h11(
    *, header_timeout_s: float, max_per_address: int, trusted: Networks = ()
) -> type[asyncio.Protocol]:
    """uvicorn's h11 protocol with a head timeout and a per-address connection cap (0: none).

    The counts are per server (per class made here), kept in this process: they bound
    what one process holds open, which is what they protect.
    """
    open_by_address: Counter[str] = Counter()

    class GuardedH11Protocol(H11Protocol):
        _head_timer: asyncio.TimerHandle | None = None
        _counted: str | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            host = self.client[0] if self.client else None
            if host is not None and max_per_address and not _exempt(host, trusted):
                if open_by_address[host] >= max_per_address:
                    transport.close()
                    return
                open_by_address[host] += 1
                self._counted = host
            self._watch_head()

        def connection_lost(self, exc: Exception | None) -> None:
            self._stop_timer()
            if self._counted is not None:
                open_by_address[self._counted] -= 1
                if open_by_address[self._counted] <= 0:
                    del open_by_address[self._counted]
                self._counted = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._watch_head()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch_head()

        def _waiting_for_head(self) -> bool:
            cycle: Any = self.cycle
            return cycle is None or bool(cycle.response_complete)

        def _watch_head(self) -> None:
            if self.transport.is_closing() or not self._waiting_for_head():
                self._stop_timer()
            elif self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout_s, self._head_too_slow)

        def _stop_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if self._waiting_for_head() and not self.transport.is_closing():
                self.transport.close()

    return GuardedH11Protocol


def server_config(app: Postroom, host: str, port: int) -> uvicorn.Config:
    """The uvicorn configuration of `postroom serve` (settings in docs/configuration.md)."""
    from postroom.api.app import create_app

    settings = app.settings
    return uvicorn.Config(
        create_app(app),
        host=host,
        port=port,
        log_level=settings.log_level,
        access_log=False,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default; the app trusts only
        # POSTROOM_TRUSTED_PROXIES (postroom.api.proxy)
        proxy_headers=False,
        http=guarded_h11(
            header_timeout_s=settings.header_timeout_s,
            max_per_address=settings.max_connections_per_client,
            trusted=app.trusted_proxies,
        ),
        ws="none",  # postroom has no WebSocket routes
        limit_concurrency=settings.max_connections or None,
    )
