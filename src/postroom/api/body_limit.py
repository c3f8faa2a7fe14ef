"""A cap on request bodies, enforced before the application reads them.

A declared ``Content-Length`` above the cap is refused at once, before a byte of the
body is read; a body without one (chunked) is counted as it streams in and refused as
soon as it passes the cap. Either way the answer is 413 ``payload_too_large`` naming the
limit, and the body never sits whole in memory.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BodyLimit", "too_large_message"]


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 and n % 2**10 == 0 else f"{n:,} bytes"


def too_large_message(limit: int) -> str:
    return (
        f"The request body is larger than the limit of {_size(limit)} "
        "(POSTROOM_MAX_REQUEST_BYTES); send less per request, e.g. smaller batches."
    )


class _TooLarge(HTTPException):
    """Raised from ``receive`` inside the application: its error handlers answer 413."""


class BodyLimit:
    """ASGI middleware: at most ``max_bytes`` of request body per request."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _refuse(send, limit)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(413, too_large_message(limit))
            return message

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except _TooLarge:
            # read outside the application's error handlers (e.g. by a middleware)
            if started:
                raise
            await _refuse(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length itself
    return None


async def _refuse(send: Send, limit: int) -> None:
    body: dict[str, Any] = {
        "error": {"code": "payload_too_large", "message": too_large_message(limit)}
    }
    raw = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(raw)).encode()),
                # the rest of the body is not read: the connection cannot be reused
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": raw})
