"""The client address every route sees: the socket's, or a trusted proxy's word for it.

An ASGI middleware, so the web UI, the REST API and the throttles of both read one
``request.client``. `postroom serve` turns uvicorn's own proxy-header handling off (it
trusts 127.0.0.1 by default, which lets any local client pick its address); this one
trusts only ``POSTROOM_TRUSTED_PROXIES``. See postroom.net.forwarded.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from postroom.net.forwarded import Networks, client_address, forwarded_proto

__all__ = ["TrustedProxyHeaders"]


class TrustedProxyHeaders:
    def __init__(self, app: ASGIApp, *, trusted: Networks) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.trusted and scope["type"] in ("http", "websocket") and scope.get("client"):
            peer, port = scope["client"]
            headers: list[tuple[bytes, bytes]] = scope["headers"]
            forwarded = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"]
            protos = [v.decode("latin-1") for k, v in headers if k == b"x-forwarded-proto"]
            client = client_address(peer, forwarded, self.trusted)
            proto = forwarded_proto(peer, protos, self.trusted)
            if client != peer or proto:
                scope = dict(scope)
                scope["client"] = (client, port)
                if proto:
                    ws = scope["type"] == "websocket"
                    scope["scheme"] = {"http": "ws", "https": "wss"}[proto] if ws else proto
        await self.app(scope, receive, send)
