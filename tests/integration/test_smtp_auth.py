"""One login per password: another mechanism only after the server said the mechanism
itself is unusable (scripted in-process servers; the real servers are in
test_smtp_interop.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator

import aiosmtplib
import pytest

from postroom.smtp.auth import LoginRefused, login


class Scripted:
    def __init__(self, auth_replies: dict[str, bytes]) -> None:
        self.auth_replies = auth_replies
        self.tried: list[str] = []
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        try:
            while line := await asyncio.wait_for(reader.readline(), 5):
                words = line.decode().split()
                verb = words[0].upper() if words else ""
                if verb == "EHLO":
                    writer.write(
                        b"250-scripted\r\n250 AUTH "
                        + " ".join(self.auth_replies).encode()
                        + b"\r\n"
                    )
                elif verb == "AUTH":
                    mech = words[1].upper()
                    self.tried.append(mech)
                    if mech == "LOGIN" and self.auth_replies[mech].startswith(b"235"):
                        writer.write(b"334 " + base64.b64encode(b"Password:") + b"\r\n")
                        await reader.readline()
                    writer.write(self.auth_replies[mech] + b"\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    break
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def scripted_server(auth_replies: dict[str, bytes]) -> AsyncIterator[Scripted]:
    script = Scripted(auth_replies)
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    script.port = server.sockets[0].getsockname()[1]
    async with server:
        yield script


async def _client(port: int) -> aiosmtplib.SMTP:
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=5)
    await client.connect()
    await client.ehlo()
    return client


async def test_504_moves_on_to_the_next_mechanism() -> None:
    replies = {"PLAIN": b"504 5.5.4 Unrecognized authentication type", "LOGIN": b"235 2.7.0 ok"}
    async with scripted_server(replies) as scripted:
        await _check_fallback(scripted)


async def _check_fallback(scripted: Scripted) -> None:
    client = await _client(scripted.port)
    mechanism, reply = await login(client, "alice", "pw", encrypted=True)
    assert (mechanism, reply.code) == ("login", 235)
    assert scripted.tried == ["PLAIN", "LOGIN"]
    client.close()


async def test_a_refused_password_is_not_tried_again() -> None:
    replies = {"PLAIN": b"535 5.7.8 authentication failed", "LOGIN": b"235 2.7.0 ok"}
    async with scripted_server(replies) as scripted:
        await _check_refused(scripted)


async def _check_refused(scripted: Scripted) -> None:
    client = await _client(scripted.port)
    with pytest.raises(LoginRefused) as info:
        await login(client, "alice", "pw", encrypted=True)
    assert (info.value.code, info.value.mechanism) == (535, "plain")
    assert scripted.tried == ["PLAIN"]
    client.close()
