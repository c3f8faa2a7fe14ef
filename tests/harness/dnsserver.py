"""A small authoritative DNS server on loopback (UDP and TCP), for settings detection tests.

Real DNS on the wire, answered from a dict of records; names it does not know get NXDOMAIN,
names it knows without the asked type get an empty answer (NOERROR). Every name in a test
zone resolves to 127.0.0.x, so whatever detection connects to stays on loopback.
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

#: (name, type) → record texts, e.g. ("_imaps._tcp.x.test", "SRV"): ["0 1 993 imap.x.test."]
Zone = dict[tuple[str, str], list[str]]


class _Answers:
    def __init__(self, zone: Zone) -> None:
        self.zone = {(n.rstrip(".").lower(), t.upper()): v for (n, t), v in zone.items()}
        self.names = {n for n, _ in self.zone}
        self.queries: list[tuple[str, str]] = []

    def answer(self, wire: bytes) -> bytes:
        request = dns.message.from_wire(wire)
        response = dns.message.make_response(request)
        response.flags |= dns.flags.AA
        question = request.question[0]
        name = question.name.to_text().rstrip(".").lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        self.queries.append((name, rdtype))
        texts = self.zone.get((name, rdtype))
        if texts:
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, dns.rdataclass.IN, rdtype, texts)
            )
        elif name not in self.names:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()


class DnsServer:
    def __init__(self, zone: Zone) -> None:
        self.answers = _Answers(zone)
        answers = self.answers

        class Udp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                sock.sendto(answers.answer(data), self.client_address)

        class Tcp(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                head = self.request.recv(2)
                if len(head) < 2:
                    return
                (size,) = struct.unpack("!H", head)
                data = b""
                while len(data) < size:
                    chunk = self.request.recv(size - len(data))
                    if not chunk:
                        return
                    data += chunk
                out = answers.answer(data)
                self.request.sendall(struct.pack("!H", len(out)) + out)

        self.udp = socketserver.ThreadingUDPServer(("127.0.0.1", 0), Udp)
        port = self.udp.server_address[1]
        try:
            self.tcp = socketserver.ThreadingTCPServer(("127.0.0.1", port), Tcp)
        except OSError:
            self.udp.server_close()
            raise
        self.port = port
        self.threads = [
            threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            for s in (self.udp, self.tcp)
        ]

    @property
    def spec(self) -> str:
        """The value for POSTROOM_DNS_SERVERS."""
        return f"127.0.0.1:{self.port}"


@contextmanager
def dns_server(zone: Zone) -> Iterator[DnsServer]:
    """A running server for ``zone``; retries a few ports when TCP's is taken."""
    server = None
    for _ in range(10):
        try:
            server = DnsServer(zone)
            break
        except OSError:
            continue
    assert server is not None, "no free UDP+TCP port pair on 127.0.0.1"
    for thread in server.threads:
        thread.start()
    try:
        yield server
    finally:
        for s in (server.udp, server.tcp):
            s.shutdown()
            s.server_close()


def closed_port() -> tuple[socket.socket, int]:
    """A loopback port bound but not listening: connecting is refused at once.

    Keep the socket open while the port is in use, so nothing else takes it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]
