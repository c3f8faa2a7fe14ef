"""In-process servers on loopback for the faults real mail servers can't be made to show.

Each is a context manager yielding a port on 127.0.0.1 (or a :class:`ScriptedImap`). They run
in threads with blocking sockets, so they work whatever event loop a test uses, and they
stop (closing every connection they accepted) when the ``with`` block ends.

- :func:`silent_server`: accepts and never says a word.
- :func:`endless_line_server`: sends one line that never ends.
- :func:`scripted_imap`: a tiny IMAP server that answers from a script and records what it
  was sent; :data:`HUGE_LITERAL` makes it announce a 9,999,999,999-byte literal.
- :func:`http_server`: a real ``http.server``.
- :func:`full_backlog`: a listener whose accept queue is full, so a new connect times out.
- :func:`closed_port`: a port nothing listens on (connect is refused).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "HUGE_LITERAL",
    "LOOPBACK",
    "ScriptedImap",
    "TcpServer",
    "closed_port",
    "endless_line_server",
    "full_backlog",
    "http_server",
    "scripted_imap",
    "silent_server",
]

LOOPBACK = "127.0.0.1"

Handler = Callable[[socket.socket, threading.Event], None]


class TcpServer:
    """Accepts on a free loopback port; each connection runs ``handler(conn, stop)`` in a thread.

    ``stop`` is set when the server closes; handlers that wait should wait on it.
    """

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOOPBACK, 0))
        self._listener.listen(16)
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> TcpServer:
        self._acceptor.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.stop.set()
        self._acceptor.join(2)
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(2)
        for conn in self._conns:
            conn.close()
        self._listener.close()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self._conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        # The client hanging up mid-conversation is normal here, not a test failure.
        with contextlib.suppress(OSError):
            self.handler(conn, self.stop)


@contextlib.contextmanager
def silent_server() -> Iterator[int]:
    """Accepts connections and never says a word (nor reads)."""

    def hold(conn: socket.socket, stop: threading.Event) -> None:
        stop.wait()

    with TcpServer(hold) as server:
        yield server.port


@contextlib.contextmanager
def endless_line_server(prefix: bytes = b"* OK ", repeat: bytes = b"A") -> Iterator[int]:
    """Sends ``prefix``, then ``repeat`` over and over until the client hangs up.

    By default that is one line that never ends; with ``repeat=b"* OK x\\r\\n"`` it is an
    endless stream of short lines.
    """
    chunk = repeat * (65536 // len(repeat))

    def flood(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(prefix)
        while not stop.is_set():
            conn.sendall(chunk)

    with TcpServer(flood) as server:
        yield server.port


#: Announces a literal of 9,999,999,999 bytes in the answer to CAPABILITY, then sends nothing.
HUGE_LITERAL = b"* CAPABILITY {9999999999}\r\n"


@dataclass
class ScriptedImap:
    """A minimal IMAP server: greets, answers commands from ``replies``, records commands.

    ``replies`` maps an upper-case command name to the bytes sent back, where ``{tag}`` is
    replaced by the command's tag. Unscripted: CAPABILITY lists ``capabilities``, LOGOUT says
    BYE, LOGIN and AUTHENTICATE are refused, anything else is BAD.
    """

    port: int = 0
    greeting: bytes = b"* OK fake IMAP ready\r\n"
    capabilities: str = "IMAP4rev1"
    replies: dict[str, bytes] = field(default_factory=dict)
    received: list[bytes] = field(default_factory=list)

    @property
    def commands(self) -> list[str]:
        """The command names received, e.g. ``["CAPABILITY", "LOGOUT"]``."""
        names = []
        for line in self.received:
            parts = line.split()
            names.append(parts[1].decode("ascii", "replace").upper() if len(parts) > 1 else "")
        return names

    def answer(self, tag: bytes, command: str) -> bytes:
        if command in self.replies:
            return self.replies[command].replace(b"{tag}", tag)
        if command == "CAPABILITY":
            return b"* CAPABILITY %s\r\n%s OK done\r\n" % (self.capabilities.encode(), tag)
        if command == "LOGOUT":
            return b"* BYE bye\r\n%s OK done\r\n" % tag
        if command in ("LOGIN", "AUTHENTICATE"):
            return b"%s NO [AUTHENTICATIONFAILED] no\r\n" % tag
        return b"%s BAD unknown command\r\n" % tag

    def serve(self, conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(self.greeting)
        reader = conn.makefile("rb")
        while not stop.is_set():
            line = reader.readline(65536)
            if not line:
                return
            self.received.append(line)
            parts = line.split()
            tag = parts[0] if parts else b"*"
            command = parts[1].decode("ascii", "replace").upper() if len(parts) > 1 else ""
            conn.sendall(self.answer(tag, command))
            if command == "LOGOUT":
                return


@contextlib.contextmanager
def scripted_imap(**script: Any) -> Iterator[ScriptedImap]:
    """A :class:`ScriptedImap` listening on a free loopback port (keywords: its fields)."""
    imap = ScriptedImap(**script)
    with TcpServer(imap.serve) as server:
        imap.port = server.port
        yield imap


@contextlib.contextmanager
def http_server() -> Iterator[int]:
    """A real HTTP server (``http.server``) on a free loopback port."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def do_GET(self) -> None:  # noqa: N802 - stdlib name
            self.send_response(200)
            self.end_headers()

    server = ThreadingHTTPServer((LOOPBACK, 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(2)


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A listener that never accepts, with its accept queue full.

    With ``listen(0)`` Linux queues one connection; once the queue is full it drops further
    SYNs (``tcp_abort_on_overflow`` is 0), so the next connect waits until it times out.
    """
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind((LOOPBACK, 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            fillers.append(filler)
            filler.settimeout(0.2)
            try:
                filler.connect((LOOPBACK, port))
            except TimeoutError:
                break  # the queue is full: this SYN was dropped
        else:
            raise RuntimeError("could not fill the accept queue of a listen(0) socket")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port that refuses connections: bound (so nothing else takes it) but not listening."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()
