"""Webhook subscribers: signed POSTs to a local HTTP server, retries, processed only after."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from postroom import Postroom
from postroom.errors import ValidationError
from postroom.inbound.schemas import InboundStatus
from postroom.inbound.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from postroom.inbound.webhooks import WebhookTarget, post_webhook
from postroom.net.policy import NetPolicy
from tests.harness.certs import HarnessCerts
from tests.harness.mailservers import MailServers
from tests.integration.test_inbound_support import (
    append,
    imap_client,
    inbound,
    message,
    new_mailbox,
    receiving_profile,
    running,
    wait_until,
)


@dataclass
class Hook:
    """What the local webhook endpoint received; it answers 500 until ``accept`` is set."""

    port: int = 0
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    accept: threading.Event = field(default_factory=threading.Event)


@contextmanager
def hook_server() -> Iterator[Hook]:
    hook = Hook()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            hook.requests.append((self.path, dict(self.headers.items()), body))
            code = 200 if hook.accept.is_set() else 500
            self.send_response(code)
            self.end_headers()
            self.wfile.write(b"ok" if code == 200 else b"database is down")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(2)


def flags_of(servers: MailServers, user: str, pw: str) -> list[bytes]:
    with imap_client(servers, user, pw) as c:
        c.select_folder("INBOX")
        return [f for flags in c.get_flags(c.search("ALL")).values() for f in flags]


@pytest.mark.mailservers
async def test_webhook_is_signed_retried_after_500_and_processed_only_after_success(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    name = receiving_profile(sqlite_app, mail_servers, user, pw)
    service = inbound(sqlite_app)
    with hook_server() as hook:
        created = service.webhooks.add(
            f"http://127.0.0.1:{hook.port}/hooks/mail?k=1", name="ops", profile=name
        )
        async with running(service):
            await asyncio.to_thread(
                append, mail_servers, user, pw, "INBOX", message(user, "Deploy done").as_bytes()
            )
            # The hook sees the POST before postroom records the attempt: wait for the record.
            await wait_until(
                lambda: [r for r in service.list(profile=name) if r.attempts >= 1],
                what="the first attempt to be recorded",
            )
            assert hook.requests
            (row,) = service.list(profile=name)
            assert row.status is InboundStatus.RECEIVED and row.attempts >= 1
            assert "HTTP 500" in str(row.last_error) and "database is down" in str(row.last_error)
            assert b"\\Seen" not in await asyncio.to_thread(flags_of, mail_servers, user, pw)
            hook.accept.set()
            await wait_until(lambda: service.list(profile=name, status="processed"), what="retry")
        assert b"\\Seen" in await asyncio.to_thread(flags_of, mail_servers, user, pw)
    assert len(hook.requests) >= 2
    for path, headers, body in hook.requests:
        assert path == "/hooks/mail?k=1"
        assert headers["Host"] == f"127.0.0.1:{hook.port}"
        assert headers["X-Postroom-Event"] == "inbound.message"
        assert verify(created.secret, headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
        assert not verify("whsec_wrong", headers[TIMESTAMP_HEADER], body, headers[SIGNATURE_HEADER])
    payload = json.loads(hook.requests[-1][2])
    assert payload["subject"] == "Deploy done" and payload["profile"] == name
    log = service.deliveries(row.id)
    assert [(d["ok"], d["status_code"]) for d in log][0] == (False, 500)
    assert (log[-1]["ok"], log[-1]["status_code"], log[-1]["attempt"]) == (True, 200, len(log))
    assert [w.name for w in service.webhooks.list()] == ["ops"]
    service.webhooks.remove("ops")
    assert service.webhooks.list() == []


async def test_webhook_to_a_blocked_address_is_refused_by_the_policy() -> None:
    target = WebhookTarget(1, "meta", "http://169.254.169.254/latest", "whsec_0123456789abcdef")
    result = await post_webhook(target, b"{}", policy=NetPolicy(), timeout=2)
    assert not result.ok and "network policy" in str(result.error)


async def test_webhook_redirects_are_not_followed() -> None:
    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            self.send_response(307)
            self.send_header("Location", "http://169.254.169.254/")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        target = WebhookTarget(1, "r", f"http://localhost:{server.server_address[1]}/", "s" * 20)
        result = await post_webhook(target, b"{}", policy=NetPolicy(), timeout=2)
    finally:
        server.shutdown()
        server.server_close()
    assert not result.ok and result.status_code == 307


def test_webhook_urls_are_checked_when_added(sqlite_app: Postroom) -> None:
    service = inbound(sqlite_app)
    for url, words in [
        ("ftp://example.com/x", "https://"),
        ("https://user:pw@example.com/", "user name"),
        ("http://169.254.169.254/latest/meta-data", "network policy"),
        ("https://", "must name a host"),
    ]:
        with pytest.raises(ValidationError) as caught:
            service.webhooks.add(url)
        assert words in caught.value.errors[0].message, url
    created = service.webhooks.add("https://hooks.example.com/mail")
    assert created.name == "hooks.example.com" and created.secret.startswith("whsec_")
    assert "secret" not in service.webhooks.list()[0].model_dump()


async def test_https_webhook_goes_to_the_checked_address_but_verifies_the_name(
    harness_certs: HarnessCerts, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}
    resolved: list[str] = []

    async def fake_resolve(host: str, port: int, **_: Any) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]  # mail.example.net "resolves" to loopback here

    def trusting_harness_ca(*, verify: bool, ca_bundle: str | None) -> ssl.SSLContext:
        assert verify and ca_bundle is None
        return ssl.create_default_context(cafile=harness_certs.ca_pem)

    monkeypatch.setattr("postroom.inbound.webhooks.resolve", fake_resolve)
    monkeypatch.setattr("postroom.inbound.webhooks.make_context", trusting_harness_ca)

    class Ok(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
            pass

        def do_POST(self) -> None:  # noqa: N802 - stdlib name
            seen["host"] = self.headers["Host"]
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(204)
            self.end_headers()

    async def post(cert: str, key: str) -> tuple[bool, str | None]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        context.sni_callback = lambda _sock, name, _ctx: seen.__setitem__("sni", name)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            port = server.server_address[1]
            target = WebhookTarget(1, "tls", f"https://mail.example.net:{port}/hook", "s" * 20)
            result = await post_webhook(target, b"{}", policy=NetPolicy(), timeout=3)
        finally:
            server.shutdown()
            server.server_close()
        return result.ok, result.error

    # a certificate for mail.example.net only: valid because the name, not the IP, is checked
    ok, error = await post(harness_certs.wrong_host.cert, harness_certs.wrong_host.key)
    assert ok, error
    assert seen["sni"] == "mail.example.net" and seen["host"].startswith("mail.example.net:")
    assert resolved == ["mail.example.net"]
    # a certificate for localhost/127.0.0.1 only: refused although the IP matches
    ok, error = await post(harness_certs.valid.cert, harness_certs.valid.key)
    assert not ok and "certificate" in str(error).lower()
