"""In-process SMTP servers (aiosmtpd) for the fault cases real servers can't be made to show."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Recorded:
    logins: list[str] = field(default_factory=list)
    messages: list[bytes] = field(default_factory=list)


class Handler:
    """Accepts everything unless told otherwise; records what arrives."""

    def __init__(self, recorded: Recorded, *, data_reply: str | None = None, stall_s: float = 0):
        self.recorded = recorded
        self.data_reply = data_reply
        self.stall_s = stall_s

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        if self.data_reply:
            return self.data_reply
        self.recorded.messages.append(bytes(envelope.original_content or b""))
        return "250 2.0.0 Ok: queued"


class _Authenticator:
    def __init__(self, recorded: Recorded, password: str) -> None:
        self.recorded = recorded
        self.password = password

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if isinstance(data, LoginPassword):
            login = data.login.decode()
            self.recorded.logins.append(login)
            return AuthResult(success=data.password.decode() == self.password)
        return AuthResult(success=False)


class _GssapiOnly(SMTP):
    async def auth_GSSAPI(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        return AuthResult(success=False, handled=False)


class _Controller(Controller):
    def __init__(
        self,
        *args: Any,
        smtp_class: type[SMTP] = SMTP,
        implicit_tls: ssl.SSLContext | None = None,
        **kw: Any,
    ):
        self._smtp_class = smtp_class
        super().__init__(*args, ssl_context=implicit_tls, **kw)

    def factory(self) -> SMTP:
        return self._smtp_class(self.handler, **self.SMTP_kwargs)

    def _trigger_server(self) -> None:
        # aiosmtpd's readiness probe speaks plaintext; with implicit TLS it must speak TLS
        if self.ssl_context is None:
            super()._trigger_server()
            return
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection((self.hostname, self.port), timeout=5) as raw:
            with ctx.wrap_socket(raw) as tls:
                tls.recv(1024)


@dataclass
class FakeSmtp:
    port: int
    recorded: Recorded
    ca_pem: str


@contextmanager
def fake_smtp(
    ca: trustme.CA,
    *,
    starttls: bool = True,
    implicit_tls: bool = False,
    password: str | None = None,
    gssapi_only: bool = False,
    data_reply: str | None = None,
    stall_s: float = 0,
) -> Iterator[FakeSmtp]:
    """An aiosmtpd server on a free loopback port, configured for one fault."""
    recorded = Recorded()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    kwargs: dict[str, Any] = {}
    if starttls and not implicit_tls:
        kwargs["tls_context"] = server_ctx
    if password is not None or gssapi_only:
        kwargs["authenticator"] = _Authenticator(recorded, password or "")
        kwargs["auth_require_tls"] = False
    if gssapi_only:
        kwargs["auth_exclude_mechanism"] = ["LOGIN", "PLAIN"]
    port = free_port()
    controller = _Controller(
        Handler(recorded, data_reply=data_reply, stall_s=stall_s),
        hostname="127.0.0.1",
        port=port,
        smtp_class=_GssapiOnly if gssapi_only else SMTP,
        implicit_tls=server_ctx if implicit_tls else None,
        server_hostname="localhost",
        **kwargs,
    )
    controller.start()
    try:
        yield FakeSmtp(port=port, recorded=recorded, ca_pem=ca.cert_pem.bytes().decode())
    finally:
        controller.stop()


@contextmanager
def silent_server() -> Iterator[int]:
    """Accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        t.join(2)
        for c in held:
            c.close()
        listener.close()


@contextmanager
def http_server() -> Iterator[int]:
    """A real HTTP server (http.server) on a free loopback port."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200)
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def full_backlog() -> Iterator[int]:
    """A listener whose accept queue is full: Linux drops further SYNs, so connect times out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        fillers.append(s)
    try:
        yield port
    finally:
        for s in fillers:
            s.close()
        listener.close()


def closed_port() -> int:
    return free_port()


@dataclass
class RawSink:
    """A minimal SMTP server that keeps the DATA section exactly as it crossed the wire."""

    port: int
    data: list[bytes]
    envelopes: list[tuple[str, list[str]]]
    #: DATA is answered only while this is set (clear it to stall after the data arrived)
    gate: threading.Event = field(default_factory=threading.Event)
    #: set each time a DATA section has fully arrived / has been answered with 250
    received: threading.Event = field(default_factory=threading.Event)
    accepted: list[bytes] = field(default_factory=list)
    #: the body of DATA is read only while this is set (clear it to stall mid-DATA)
    body_gate: threading.Event = field(default_factory=threading.Event)
    data_started: threading.Event = field(default_factory=threading.Event)
    #: the gate holds only DATA sections numbered this or higher (1-based)
    hold_from: int = 1


@contextmanager
def raw_sink(
    *,
    rcpt_reply: dict[str, str] | None = None,
    data_reply: str = "250 2.0.0 queued",
    pipelining: bool = False,
    rcvbuf: int | None = None,
) -> Iterator[RawSink]:
    """Recipients named in ``rcpt_reply`` get that reply (e.g. ``{"later@x.test": "451 …"}``)."""
    replies = rcpt_reply or {}
    sink = RawSink(port=0, data=[], envelopes=[])
    stopping = threading.Event()
    sink.gate.set()
    sink.body_gate.set()
    loop = asyncio.new_event_loop()
    started = threading.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 rawsink ESMTP\r\n")
        sender, rcpts = "", []
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                cmd = line.decode("ascii", "replace").strip()
                verb = cmd.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    extra = b"250-PIPELINING\r\n" if pipelining else b""
                    writer.write(
                        b"250-rawsink\r\n" + extra + b"250-8BITMIME\r\n250 SIZE 52428800\r\n"
                    )
                elif verb == "MAIL":
                    sender, rcpts = cmd.split(":", 1)[1].split()[0].strip("<>"), []
                    writer.write(b"250 2.1.0 ok\r\n")
                elif verb == "RCPT":
                    addr = cmd.split(":", 1)[1].strip().strip("<>")
                    reply = replies.get(addr, "250 2.1.5 ok")
                    if reply == "STALL":  # a server that hangs on this recipient
                        while not stopping.is_set():
                            await asyncio.sleep(0.05)
                        return
                    if reply.startswith("2"):
                        rcpts.append(addr)
                    writer.write(reply.encode() + b"\r\n")
                elif verb == "DATA":
                    writer.write(b"354 go ahead\r\n")
                    await writer.drain()
                    sink.data_started.set()
                    while not sink.body_gate.is_set():
                        await asyncio.sleep(0.01)
                    lines = []
                    while True:
                        body_line = await reader.readline()
                        if not body_line:
                            return
                        if body_line == b".\r\n":
                            break
                        lines.append(body_line)
                    buf = b"".join(lines) + b".\r\n"
                    sink.data.append(buf)
                    sink.envelopes.append((sender, rcpts))
                    sink.received.set()
                    while len(sink.data) >= sink.hold_from and not sink.gate.is_set():
                        await asyncio.sleep(0.01)
                    writer.write(data_reply.encode() + b"\r\n")
                    await writer.drain()
                    if data_reply.startswith("2"):
                        sink.accepted.append(buf)
                elif verb == "RSET":
                    sender, rcpts = "", []
                    writer.write(b"250 ok\r\n")
                elif verb == "QUIT":
                    writer.write(b"221 bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(b"250 ok\r\n")
                await writer.drain()
        finally:
            writer.close()

    def run() -> None:
        asyncio.set_event_loop(loop)
        listener = socket.socket()
        if rcvbuf is not None:
            # a fixed receive buffer turns off autotuning (up to 32 MB here), so a client
            # that dies mid-DATA really leaves the body unfinished
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        listener.bind(("127.0.0.1", 0))
        # the default 64 KiB limit also pauses reading: a stalled handler really stalls
        server = loop.run_until_complete(asyncio.start_server(handle, sock=listener))
        sink.port = server.sockets[0].getsockname()[1]
        started.set()
        loop.run_forever()
        server.close()
        # handlers still waiting on a client that keeps its connection open (a pooled
        # connection of a worker that outlives the sink) end here, not at garbage
        # collection inside some later test
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(server.wait_closed())
        loop.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    started.wait(5)
    try:
        yield sink
    finally:
        stopping.set()
        sink.gate.set()
        sink.body_gate.set()
        time.sleep(0.1)  # let stalled handlers see it and return
        loop.call_soon_threadsafe(loop.stop)
        t.join(5)
