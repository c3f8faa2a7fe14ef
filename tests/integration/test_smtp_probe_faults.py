"""The SMTP diagnosis against real sockets that fail in each way a person can meet."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import pytest
import trustme

from postroom.diagnostics.smtp_probe import probe_smtp
from postroom.diagnostics.steps import Diagnosis
from postroom.net.policy import NetPolicy
from postroom.profiles.schemas import parse_spec
from tests.integration.smtp_fakes import (
    closed_port,
    fake_smtp,
    full_backlog,
    http_server,
    silent_server,
)

OPEN = NetPolicy()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def spec(port: int, *, host: str = "127.0.0.1", **smtp: Any):  # type: ignore[no-untyped-def]
    return parse_spec(
        {
            "name": "probe",
            "smtp": {
                "host": host,
                "port": port,
                "connect_timeout_s": 2,
                "send_timeout_s": 2,
                **smtp,
            },
            "sender": {"from_address": "qa@postroom.test", "from_name": "QA"},
        }
    )


async def run(s: Any, *, policy: NetPolicy = OPEN, **kw: Any) -> Diagnosis:
    d, _ = await probe_smtp(s, policy=policy, **kw)
    return d


def code(d: Diagnosis) -> str | None:
    return d.error.code if d.error else None


async def test_closed_port_reports_connect_refused() -> None:
    d = await run(spec(closed_port(), security="none"))
    assert code(d) == "connect_refused"
    assert [s.name for s in d.steps] == ["resolve", "connect"]
    assert "running" in d.error.hint  # type: ignore[union-attr]


async def test_invalid_name_reports_dns_not_found() -> None:
    d = await run(spec(25, host="no-such-host.invalid"))
    assert code(d) == "dns_not_found"
    assert "spelling" in d.error.hint  # type: ignore[union-attr]


async def test_denied_address_reports_blocked_by_policy() -> None:
    d = await run(spec(25, host="2130706433"), policy=NetPolicy.from_strings(deny="127.0.0.0/8"))
    assert code(d) == "blocked_by_policy"
    assert "POSTROOM_NET_ALLOW" in d.error.hint  # type: ignore[union-attr]


async def test_denied_port_reports_blocked_by_policy() -> None:
    d = await run(spec(2525), policy=NetPolicy.from_strings(ports="587,465"))
    assert code(d) == "blocked_by_policy"


async def test_full_accept_queue_reports_connect_timeout() -> None:
    with full_backlog() as port:
        started = time.monotonic()
        d = await run(spec(port, connect_timeout_s=1))
    assert code(d) == "connect_timeout"
    assert time.monotonic() - started < 5


def test_no_route_reports_network_unreachable() -> None:
    """In a fresh network namespace even loopback is down: the kernel says unreachable."""
    script = (
        "import asyncio, json\n"
        "from postroom.diagnostics.smtp_probe import probe_smtp\n"
        "from postroom.net.policy import NetPolicy\n"
        "from postroom.profiles.schemas import parse_spec\n"
        "s = parse_spec({'name': 'x', 'smtp': {'host': '127.0.0.1', 'port': 25},"
        " 'sender': {'from_address': 'a@postroom.test'}})\n"
        "d, _ = asyncio.run(probe_smtp(s, policy=NetPolicy()))\n"
        "print(json.dumps(d.model_dump(mode='json')))\n"
    )
    r = subprocess.run(
        ["unshare", "--net", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if r.returncode != 0 and "Operation not permitted" in r.stderr:
        pytest.fail("unshare --net needs root (CI runs as root): " + r.stderr)
    d = json.loads(r.stdout)
    assert d["error"]["code"] == "network_unreachable"


async def test_silent_server_reports_greeting_timeout() -> None:
    with silent_server() as port:
        d = await run(spec(port, connect_timeout_s=1))
    assert code(d) == "greeting_timeout"
    assert [s.name for s in d.steps][-1] == "greeting"


async def test_http_server_reports_protocol_error() -> None:
    with http_server() as port:
        d = await run(spec(port, connect_timeout_s=1))
    assert code(d) == "protocol_error"
    assert "web server" in d.error.message  # type: ignore[union-attr]


async def test_implicit_tls_against_plaintext_port_reports_wrong_mode(ca: trustme.CA) -> None:
    with fake_smtp(ca) as srv:
        d = await run(spec(srv.port, security="tls", ca_bundle=srv.ca_pem))
    assert code(d) == "tls_wrong_mode"
    assert "starttls" in d.error.hint  # type: ignore[union-attr]


async def test_starttls_against_implicit_tls_port_reports_wrong_mode(ca: trustme.CA) -> None:
    with fake_smtp(ca, implicit_tls=True) as srv:
        d = await run(
            spec(srv.port, security="starttls", ca_bundle=srv.ca_pem, connect_timeout_s=1)
        )
    assert code(d) == "tls_wrong_mode"
    assert "set security to 'tls'" in d.error.hint  # type: ignore[union-attr]


async def test_no_starttls_offered_never_falls_back(ca: trustme.CA) -> None:
    with fake_smtp(ca, starttls=False, password="pw") as srv:
        d = await run(
            spec(srv.port, security="starttls", auth="basic", username="u", password="pw")
        )
        assert code(d) == "starttls_not_offered"
        assert srv.recorded.logins == []  # the password never crossed in plaintext


async def test_server_without_auth_reports_auth_not_offered(ca: trustme.CA) -> None:
    with fake_smtp(ca, starttls=False) as srv:
        d = await run(spec(srv.port, security="none", auth="basic", username="u", password="pw"))
    assert code(d) == "auth_not_offered"


async def test_unusable_mechanisms_report_auth_mechanism_unsupported(ca: trustme.CA) -> None:
    with fake_smtp(ca, starttls=False, gssapi_only=True) as srv:
        d = await run(spec(srv.port, security="none", auth="basic", username="u", password="pw"))
    assert code(d) == "auth_mechanism_unsupported"
    assert "GSSAPI" in d.error.message  # type: ignore[union-attr]


async def test_auth_domain_is_sent_as_domain_backslash_user(ca: trustme.CA) -> None:
    with fake_smtp(ca, password="pw") as srv:
        d = await run(
            spec(srv.port, ca_bundle=srv.ca_pem, auth="basic", username="alice",
                 auth_domain="CORP", password="pw")
        )  # fmt: skip
        assert d.ok, d
        assert srv.recorded.logins[-1] == "CORP\\alice"
    assert [s.name for s in d.steps] == [
        "resolve",
        "connect",
        "greeting",
        "ehlo",
        "starttls",
        "tls",
        "auth",
    ]


async def test_stall_after_data_reports_send_timeout(ca: trustme.CA) -> None:
    with fake_smtp(ca, stall_s=5) as srv:
        started = time.monotonic()
        d = await run(
            spec(srv.port, ca_bundle=srv.ca_pem, send_timeout_s=1), send_to="bob@postroom.test"
        )
        elapsed = time.monotonic() - started
    assert code(d) == "send_timeout"
    assert elapsed < 4


async def test_stall_with_no_timeout_is_capped(ca: trustme.CA) -> None:
    with fake_smtp(ca, stall_s=6) as srv:
        started = time.monotonic()
        d, _ = await probe_smtp(
            spec(srv.port, ca_bundle=srv.ca_pem, send_timeout_s=None),
            policy=OPEN, send_to="bob@postroom.test", cap_s=2,
        )  # fmt: skip
        elapsed = time.monotonic() - started
    assert code(d) == "send_timeout"
    assert elapsed < 4


async def test_refused_content_reports_message_rejected(ca: trustme.CA) -> None:
    with fake_smtp(ca, data_reply="554 5.6.0 Content rejected by policy") as srv:
        d = await run(spec(srv.port, ca_bundle=srv.ca_pem), send_to="bob@postroom.test")
    assert code(d) == "message_rejected"
    assert "554" in d.error.message  # type: ignore[union-attr]


async def test_test_message_is_marked_auto_generated(ca: trustme.CA) -> None:
    with fake_smtp(ca) as srv:
        d = await run(spec(srv.port, ca_bundle=srv.ca_pem), send_to="bob@postroom.test")
        assert d.ok
        raw = srv.recorded.messages[-1]
    assert b"Auto-Submitted: auto-generated" in raw
    assert b"X-Auto-Response-Suppress: All" in raw
    assert b"X-Postroom-Test: " in raw


async def test_untrusted_certificate_without_ca_bundle(ca: trustme.CA) -> None:
    with fake_smtp(ca) as srv:
        d = await run(spec(srv.port))
    assert code(d) == "tls_certificate_untrusted"
    assert d.steps[-1].name == "tls"
    assert "CA bundle" in d.error.hint  # type: ignore[union-attr]


async def test_endless_greeting_is_bounded_and_reports_protocol_error() -> None:
    """A server that never ends its greeting cannot make the probe read without limit."""
    import asyncio

    sent = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        try:
            while sent < 64 * 1024 * 1024:
                writer.write(b"220-" + b"x" * 1000 + b"\r\n")
                sent += 1006
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        d = await run(spec(port, security="none", connect_timeout_s=5))
    finally:
        server.close()
    assert code(d) == "protocol_error"
    assert sent < 8 * 1024 * 1024  # the client stopped reading long before the server stopped


async def test_ssh_banner_reports_protocol_error() -> None:
    import asyncio

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n")
        await writer.drain()
        await asyncio.sleep(2)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        d = await run(spec(server.sockets[0].getsockname()[1], security="none"))
    finally:
        server.close()
    assert code(d) == "protocol_error" and "SSH" in d.error.message  # type: ignore[union-attr]


async def test_server_offering_only_old_tls_reports_handshake_failed(ca: trustme.CA) -> None:
    """A server stuck on TLS 1.1 or older: postroom requires TLS 1.2+, the handshake fails."""
    import socket
    import ssl
    import threading
    import warnings

    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(server_ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # that is the point of this server
        server_ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        conn, _ = listener.accept()
        try:
            server_ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            pass
        finally:
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        d = await run(
            spec(listener.getsockname()[1], security="tls", ca_bundle=ca.cert_pem.bytes().decode())
        )
    finally:
        t.join(5)
        listener.close()
    assert code(d) == "tls_handshake_failed"
    assert "port" in d.error.hint and "TLS 1.2" in d.error.hint  # type: ignore[union-attr]
