"""STARTTLS response injection (CVE-2011-0411 class) is discarded (issue 15 item 10).

A server (or a man in the middle) sends extra bytes right behind its "220 Ready to start
TLS" / "OK Begin TLS", in the same packet. A client that keeps what it had buffered
before the handshake would later read those plaintext bytes as if the server had said
them over TLS. Postroom's SMTP client (the worker's delivery path and the connection
test) and its IMAP client must drop them: here the injected bytes would fail the
session (a 554 reply to EHLO, an IMAP BYE), so a session that works proves they were
discarded.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
import trustme

from postroom import Postroom
from postroom.diagnostics.imap_probe import probe_imap
from postroom.imap.client import ImapSession
from postroom.net.policy import NetPolicy
from postroom.outbox.worker import Worker
from postroom.profiles.schemas import ImapSettings
from tests.integration.fake_servers import TcpServer

SMTP_INJECTED = b"554 5.7.0 injected before TLS\r\n"
IMAP_INJECTED = b"* CAPABILITY IMAP4rev1 XINJECTED\r\n* BYE [ALERT] injected before TLS\r\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@dataclass
class Injector:
    port: int = 0
    #: commands received after the TLS handshake, and message data received
    after_tls: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)
    handshakes: int = 0


class _Line:
    """Reads lines from a socket without reading past them (nothing stays buffered here
    when the socket changes hands to TLS)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def readline(self) -> bytes:
        line = b""
        while not line.endswith(b"\n") and len(line) < 65536:
            byte = self.sock.recv(1)
            if not byte:
                break
            line += byte
        return line


@contextmanager
def injecting_smtp(ca: trustme.CA) -> Iterator[Injector]:
    """An SMTP server that sends :data:`SMTP_INJECTED` in the same packet as its 220 to
    STARTTLS, then speaks TLS and accepts mail."""
    state = Injector()
    context = _server_context(ca)

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        sock: socket.socket = conn
        tls = False
        sock.sendall(b"220 inject.test ESMTP\r\n")
        while not stop.is_set():
            line = _Line(sock).readline()
            if not line:
                return
            verb = line.split(b" ", 1)[0].strip().upper().decode("ascii", "replace")
            if tls:
                state.after_tls.append(verb)
            if verb in ("EHLO", "HELO"):
                if tls:
                    sock.sendall(b"250-inject.test\r\n250-SIZE 10000000\r\n250 8BITMIME\r\n")
                else:
                    sock.sendall(b"250-inject.test\r\n250-STARTTLS\r\n250 8BITMIME\r\n")
            elif verb == "STARTTLS" and not tls:
                # one write: the injection travels in the same segment as the 220
                sock.sendall(b"220 2.0.0 Ready to start TLS\r\n" + SMTP_INJECTED)
                sock = context.wrap_socket(sock, server_side=True)
                state.handshakes += 1
                tls = True
            elif verb == "DATA":
                sock.sendall(b"354 go ahead\r\n")
                data = b""
                reader = _Line(sock)
                while (chunk := reader.readline()) not in (b".\r\n", b""):
                    data += chunk
                state.messages.append(data)
                sock.sendall(b"250 2.0.0 queued\r\n")
            elif verb == "QUIT":
                sock.sendall(b"221 bye\r\n")
                return
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                sock.sendall(b"250 2.0.0 ok\r\n")
            else:
                sock.sendall(b"502 5.5.2 not here\r\n")

    with TcpServer(serve) as server:
        state.port = server.port
        yield state


@contextmanager
def injecting_imap(ca: trustme.CA) -> Iterator[Injector]:
    """An IMAP server that sends :data:`IMAP_INJECTED` in the same packet as its OK to
    STARTTLS, then speaks TLS and lets the user in."""
    state = Injector()
    context = _server_context(ca)

    def serve(conn: socket.socket, stop: threading.Event) -> None:
        sock: socket.socket = conn
        tls = False
        sock.sendall(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] inject.test ready\r\n")
        while not stop.is_set():
            line = _Line(sock).readline()
            if not line:
                return
            parts = line.split()
            tag = parts[0] if parts else b"*"
            command = parts[1].decode("ascii", "replace").upper() if len(parts) > 1 else ""
            if tls:
                state.after_tls.append(command)
            if command == "CAPABILITY":
                caps = b"IMAP4rev1 AUTH=PLAIN" if tls else b"IMAP4rev1 STARTTLS LOGINDISABLED"
                sock.sendall(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK done\r\n")
            elif command == "STARTTLS" and not tls:
                sock.sendall(tag + b" OK Begin TLS negotiation now\r\n" + IMAP_INJECTED)
                sock = context.wrap_socket(sock, server_side=True)
                state.handshakes += 1
                tls = True
            elif command == "LOGIN" and tls:
                sock.sendall(tag + b" OK logged in\r\n")
            elif command in ("SELECT", "EXAMINE") and tls:
                sock.sendall(
                    b"* FLAGS (\\Seen)\r\n* 3 EXISTS\r\n* 0 RECENT\r\n"
                    b"* OK [UIDVALIDITY 7] ok\r\n* OK [UIDNEXT 4] ok\r\n"
                    + tag + b" OK [READ-ONLY] done\r\n"
                )  # fmt: skip
            elif command == "NOOP":
                sock.sendall(tag + b" OK done\r\n")
            elif command == "LOGOUT":
                sock.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
                return
            else:
                sock.sendall(tag + b" BAD not here\r\n")

    with TcpServer(serve) as server:
        state.port = server.port
        yield state


def test_the_servers_really_inject(ca: trustme.CA) -> None:
    """A client reading greedily gets the injected bytes in the same read as the answer
    to STARTTLS: the tests below exercise the client's discarding, not luck."""
    with injecting_smtp(ca) as smtp, injecting_imap(ca) as imap:
        for port, first, end, command, expect in (
            (smtp.port, b"EHLO x\r\n", b"250 8BITMIME\r\n", b"STARTTLS\r\n", SMTP_INJECTED),
            (imap.port, b"a1 CAPABILITY\r\n", b"a1 OK done\r\n", b"a2 STARTTLS\r\n",
             IMAP_INJECTED),
        ):  # fmt: skip
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                answer = b""
                sock.sendall(first)
                while not answer.endswith(end):
                    more = sock.recv(4096)
                    assert more, answer
                    answer += more
                sock.sendall(command)
                got = sock.recv(65536)
                assert got.endswith(expect), got


def _profile(app: Postroom, port: int, ca: trustme.CA) -> None:
    app.profiles.create(
        {"name": "inject", "smtp": {"host": "127.0.0.1", "port": port, "security": "starttls",
                                    "ca_bundle": ca.cert_pem.bytes().decode(),
                                    "connect_timeout_s": 5, "send_timeout_s": 5},
         "sender": {"from_address": "robot@postroom.test"}}
    )  # fmt: skip


def test_smtp_delivery_discards_bytes_injected_before_tls(
    sqlite_app: Postroom, ca: trustme.CA
) -> None:
    with injecting_smtp(ca) as server:
        _profile(sqlite_app, server.port, ca)
        id = sqlite_app.send(
            {"to": ["bob@postroom.test"], "subject": "hello", "text": "x"}, profile="inject"
        )
        asyncio.run(Worker(sqlite_app, poll_s=0.05).run(drain=True))
        message = sqlite_app.outbox.get(id)
    assert message.status == "sent", message.last_error
    assert "injected" not in message.model_dump_json()
    assert server.handshakes == 1 and len(server.messages) == 1
    assert server.after_tls[0] == "EHLO"  # asked again over TLS, answered over TLS


def test_smtp_connection_test_discards_bytes_injected_before_tls(
    sqlite_app: Postroom, ca: trustme.CA
) -> None:
    with injecting_smtp(ca) as server:
        _profile(sqlite_app, server.port, ca)
        diagnosis = sqlite_app.test_profile("inject", send_to="bob@postroom.test")
    assert diagnosis.ok, diagnosis.model_dump_json()
    assert "injected" not in diagnosis.model_dump_json()
    assert server.handshakes == 1 and len(server.messages) == 1


def _imap_settings(port: int, ca: trustme.CA) -> ImapSettings:
    return ImapSettings.model_validate(
        {"host": "127.0.0.1", "port": port, "security": "starttls", "auth": "basic",
         "username": "alice@postroom.test", "password": "alice-secret-1",
         "ca_bundle": ca.cert_pem.bytes().decode(), "connect_timeout_s": 5}
    )  # fmt: skip


async def test_imap_session_discards_bytes_injected_before_tls(ca: trustme.CA) -> None:
    with injecting_imap(ca) as server:
        session = await ImapSession.open(
            _imap_settings(server.port, ca), policy=NetPolicy(), timeout=5
        )
        try:
            assert "XINJECTED" not in session.capabilities
            assert "AUTH=PLAIN" in session.capabilities  # learnt again over TLS
            await session.login()
            assert await session.select("INBOX") == 3
        finally:
            await session.logout()
    assert server.handshakes == 1
    assert server.after_tls[:2] == ["CAPABILITY", "LOGIN"]


async def test_imap_connection_test_discards_bytes_injected_before_tls(ca: trustme.CA) -> None:
    with injecting_imap(ca) as server:
        diagnosis = await probe_imap(_imap_settings(server.port, ca), policy=NetPolicy(), cap_s=20)
    assert diagnosis.ok, diagnosis.model_dump_json()
    assert "injected" not in diagnosis.model_dump_json().lower()
    assert [s.name for s in diagnosis.steps][-3:] == ["capability", "auth", "select"]
