"""A one-shot loopback HTTP listener for the CLI's browser sign-in (RFC 8252, section 7.3).

::

    async with LoopbackReceiver(port=0) as receiver:
        redirect_uri = receiver.redirect_uri          # http://localhost:<port>/
        ...send the person to the provider...
        params = await receiver.wait(timeout=300)     # {"code": …, "state": …} or error

It listens on 127.0.0.1 (and ::1 where available) only, answers the one request that carries
``code``/``error`` with a short page, and 404 to anything else (favicon requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

__all__ = ["LoopbackReceiver"]

_PAGE = (
    "<!doctype html><html><head><meta charset='utf-8'><title>postroom</title></head>"
    "<body style='font-family: system-ui, sans-serif'><h1>{}</h1><p>{}</p></body></html>"
)


class LoopbackReceiver:
    def __init__(self, *, port: int = 0, host_name: str = "localhost") -> None:
        self.port = port
        self.host_name = host_name
        self._server: asyncio.Server | None = None
        self._result: asyncio.Future[dict[str, str]] | None = None

    @property
    def redirect_uri(self) -> str:
        return f"http://{self.host_name}:{self.port}/"

    async def __aenter__(self) -> LoopbackReceiver:
        self._result = asyncio.get_running_loop().create_future()
        try:
            self._server = await asyncio.start_server(self._handle, ["127.0.0.1", "::1"], self.port)
        except OSError:  # no IPv6 loopback here
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if len({s.getsockname()[1] for s in self._server.sockets}) > 1:
            # port 0 gave IPv4 and IPv6 different ports: keep IPv4 only
            self._server.close()
            self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def wait(self, *, timeout: float) -> dict[str, str]:
        """The redirect's query parameters (``code``, ``state``, or ``error``…)."""
        assert self._result is not None
        return await asyncio.wait_for(asyncio.shield(self._result), timeout)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            parts = line.decode("latin-1").split()
            query = urlsplit(parts[1]).query if len(parts) >= 2 else ""
            params = {k: v[0] for k, v in parse_qs(query).items()}
            if parts[:1] != ["GET"] or not ({"code", "error"} & params.keys()):
                await self._answer(writer, 404, "Not found", "")
                return
            if params.get("error"):
                title, text = "Sign-in failed", params.get("error_description") or params["error"]
            else:
                title, text = "Signed in", "You can close this window and return to the terminal."
            await self._answer(writer, 200, title, text)
            if self._result is not None and not self._result.done():
                self._result.set_result(params)
        except (OSError, TimeoutError, UnicodeError):
            pass
        finally:
            writer.close()

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, status: int, title: str, text: str) -> None:
        body = _PAGE.format(html.escape(title), html.escape(text)).encode()
        reason = "OK" if status == 200 else "Not Found"
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()
