"""Servers for settings detection tests: DNS (tests.harness.dnsserver) and HTTP autoconfig.

Every test domain resolves to 127.0.0.1 or 127.0.0.2 through the DNS server; the HTTP
server listens on both addresses, on one port, and answers by Host header and path.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.harness.dnsserver import DnsServer, closed_port, dns_server

AUTOCONFIG = """<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="{domain}">
    <domain>{domain}</domain>
    <incomingServer type="pop3">
      <hostname>pop.{domain}</hostname><port>995</port><socketType>SSL</socketType>
      <username>%EMAILADDRESS%</username><authentication>password-cleartext</authentication>
    </incomingServer>
    <incomingServer type="imap">
      <hostname>imap.{domain}</hostname><port>993</port><socketType>SSL</socketType>
      <username>{username}</username><authentication>password-cleartext</authentication>
    </incomingServer>
    <outgoingServer type="smtp">
      <hostname>smtp.%EMAILDOMAIN%</hostname><port>587</port><socketType>STARTTLS</socketType>
      <username>{username}</username><authentication>password-cleartext</authentication>
    </outgoingServer>
  </emailProvider>
</clientConfig>
"""

WITH_ENTITIES = """<?xml version="1.0"?>
<!DOCTYPE clientConfig [<!ENTITY a "smtp.evil.test">]>
<clientConfig version="1.1"><emailProvider id="x">
<outgoingServer type="smtp"><hostname>&a;</hostname><port>587</port>
<socketType>STARTTLS</socketType></outgoingServer></emailProvider></clientConfig>
"""

#: (Host, path) → document
DOCUMENTS: dict[tuple[str, str], str] = {
    ("autoconfig.auto.test", "/mail/config-v1.1.xml"): AUTOCONFIG.format(
        domain="auto.test", username="%EMAILADDRESS%"
    ),
    ("wellknown.test", "/.well-known/autoconfig/mail/config-v1.1.xml"): AUTOCONFIG.format(
        domain="wellknown.test", username="%EMAILLOCALPART%"
    ),
    ("autoconfig.blocked.test", "/mail/config-v1.1.xml"): AUTOCONFIG.format(
        domain="blocked.test", username="%EMAILADDRESS%"
    ),
    ("autoconfig.entity.test", "/mail/config-v1.1.xml"): WITH_ENTITIES,
}

ZONE: dict[tuple[str, str], list[str]] = {
    ("autoconfig.auto.test", "A"): ["127.0.0.1"],
    ("wellknown.test", "A"): ["127.0.0.1"],
    # the policy of the blocking test denies 127.0.0.2; the HTTP server listens there too
    ("autoconfig.blocked.test", "A"): ["127.0.0.2"],
    ("autoconfig.entity.test", "A"): ["127.0.0.1"],
    # RFC 6186: two submission records (priority decides), IMAPS, and IMAP marked "no service"
    ("_submission._tcp.srv.test", "SRV"): [
        "10 1 587 backup.srv.test.",
        "0 5 587 mail.srv.test.",
    ],
    ("_imaps._tcp.srv.test", "SRV"): ["0 1 993 imap.srv.test."],
    ("_imap._tcp.srv.test", "SRV"): ["0 0 0 ."],
    # a custom domain at Google Workspace; the MX hosts are only names, never connected to
    ("mx.test", "MX"): ["20 alt1.aspmx.l.google.com.", "5 inbound.mx.test."],
    ("nothing.test", "TXT"): ['"v=spf1 -all"'],
}


@dataclass
class Seen:
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (address, host, path)


class _Handler(BaseHTTPRequestHandler):
    seen: Seen

    def do_GET(self) -> None:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].lower()
        path = self.path.split("?", 1)[0]
        self.seen.requests.append((self.connection.getsockname()[0], host, self.path))
        document = DOCUMENTS.get((host, path))
        if document is None:
            self.send_error(404)
            return
        body = document.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class DetectionServers:
    dns: DnsServer
    http_port: int
    https_port: int
    seen: Seen

    def settings(self) -> dict[str, object]:
        return {
            "dns_servers": self.dns.spec,
            "detect_http_port": self.http_port,
            "detect_https_port": self.https_port,
            "detect_timeout_s": 2.0,
        }

    def env(self) -> dict[str, str]:
        return {f"POSTROOM_{k.upper()}": str(v) for k, v in self.settings().items()}


@contextmanager
def detection_servers() -> Iterator[DetectionServers]:
    seen = Seen()
    handler = type("Handler", (_Handler,), {"seen": seen})
    servers: list[ThreadingHTTPServer] = []
    for _ in range(10):
        first = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        try:
            second = ThreadingHTTPServer(("127.0.0.2", first.server_address[1]), handler)
        except OSError:
            first.server_close()
            continue
        servers = [first, second]
        break
    assert servers, "no free port on both 127.0.0.1 and 127.0.0.2"
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        for s in servers
    ]
    for t in threads:
        t.start()
    holder, https_port = closed_port()
    try:
        with dns_server(ZONE) as dns:
            yield DetectionServers(dns, servers[0].server_address[1], https_port, seen)
    finally:
        holder.close()
        for s in servers:
            s.shutdown()
            s.server_close()


def silent_udp_port() -> tuple[socket.socket, int]:
    """A UDP port that swallows queries: a resolver that never answers."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    return sock, sock.getsockname()[1]
