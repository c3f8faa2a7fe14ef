"""SMTP behaviour that differs between real servers (issue 17), checked on each of them:
Postfix 3.7 (+ Dovecot SASL) and Exim 4.96, both from Debian (docs/interop.md)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from postroom import Postroom
from postroom.diagnostics.smtp_probe import probe_smtp
from postroom.diagnostics.steps import Diagnosis
from postroom.net.policy import NetPolicy
from postroom.outbox.worker import Worker
from postroom.profiles.schemas import parse_spec
from tests.harness.exim import EximServer
from tests.harness.mailservers import MailServers
from tests.integration.smtp_fakes import raw_sink

ALICE, ALICE_PW = "alice@postroom.test", "alice-secret-1"
BOB = "bob@postroom.test"
UTF8_MAILBOX = "用户@postroom.test"


@dataclass
class Server:
    """One real SMTP server of the harness, as the tests see it."""

    name: str
    host: str
    ports: dict[str, int]
    ca_pem: str
    failed_logins: Callable[[str], int]
    wait_for_mail: Callable[..., EmailMessage]
    #: a mailbox reached only with SMTPUTF8
    utf8_mailbox: str


def _postfix_failed_logins(log: Path) -> Callable[[str], int]:
    # Dovecot (Postfix's SASL) logs each refused password once, naming the user
    def count(user: str) -> int:
        text = log.read_text(errors="replace") if log.exists() else ""
        return len(re.findall(rf"\({re.escape(user)},[^)]*\): Password mismatch", text))

    return count


def postfix(m: MailServers) -> Server:
    return Server(
        "postfix", m.host, m.ports, m.ca_pem, _postfix_failed_logins(m.dovecot_log),
        m.wait_for_mail, UTF8_MAILBOX,
    )  # fmt: skip


def exim_server(e: EximServer) -> Server:
    return Server("exim", e.host, e.ports, e.ca_pem, e.failed_logins, e.wait_for_mail, UTF8_MAILBOX)


@pytest.fixture(params=["postfix", "exim"])
def server(request: pytest.FixtureRequest) -> Server:
    if request.param == "postfix":
        return postfix(request.getfixturevalue("mail_servers"))
    return exim_server(request.getfixturevalue("exim"))


def profile(server: Server, **smtp: Any) -> dict[str, Any]:
    return {
        "name": f"QA {server.name}",
        "smtp": {
            "host": server.host, "port": server.ports["submission"], "security": "starttls",
            "ca_bundle": Path(server.ca_pem).read_text(), "auth": "basic", "username": ALICE,
            "password": ALICE_PW, "connect_timeout_s": 5, "send_timeout_s": 10, **smtp,
        },
        "sender": {"from_address": ALICE, "from_name": "QA"},
    }  # fmt: skip


async def probe(data: dict[str, Any], **kw: Any) -> Diagnosis:
    d, _ = await probe_smtp(parse_spec(data), policy=NetPolicy(), **kw)
    return d


# -- item 5: one wrong password is one failed login ------------------------------------------


async def test_wrong_password_is_one_failed_login_in_the_connection_test(server: Server) -> None:
    before = server.failed_logins(ALICE)
    d = await probe(profile(server, password="wrong-password"))
    assert d.error is not None and d.error.code == "auth_failed"
    # the server's own log: exactly one refused login for this test
    await asyncio.sleep(0.2)  # the log line is written after the reply
    assert server.failed_logins(ALICE) - before == 1
    assert "AUTH PLAIN" in d.error.message and "AUTH PLAIN" in d.steps[-1].detail
    assert "wrong-password" not in d.model_dump_json()


def test_wrong_password_is_one_failed_login_in_delivery(
    sqlite_app: Postroom, server: Server
) -> None:
    sqlite_app.profiles.create(profile(server, password="wrong-password"))
    before = server.failed_logins(ALICE)
    id = sqlite_app.send({"to": [BOB], "subject": "x", "text": "y"}, profile=f"QA {server.name}")
    asyncio.run(Worker(sqlite_app, poll_s=0.05).run(drain=True))
    m = sqlite_app.outbox.get(id)
    assert m.status == "retrying" and "535" in (m.last_error or ""), m.last_error
    assert server.failed_logins(ALICE) - before == 1
    assert "AUTH PLAIN" in (m.last_error or "")


async def test_successful_login_names_the_mechanism(server: Server) -> None:
    d = await probe(profile(server))
    assert d.ok, d.error
    assert "with AUTH PLAIN" in d.steps[-1].detail


# -- item 4: diagnoses name the real cause ----------------------------------------------------


async def test_foreign_sender_refused_at_rcpt_is_sender_rejected(
    mail_servers: MailServers,
) -> None:
    """Postfix (smtpd_delay_reject = yes, its default) refuses a sender the signed-in user
    does not own in its reply to RCPT TO, not to MAIL FROM."""
    data = profile(postfix(mail_servers), port=mail_servers.ports["submission_owned"])
    data["sender"]["from_address"] = BOB
    d = await probe(data, send_to=ALICE)
    assert d.error is not None and d.error.code == "sender_rejected", d.error
    assert "553 5.7.1" in d.error.message and "not owned by user" in d.error.message
    assert BOB in d.error.message and "From address" in d.error.hint


async def test_exim_refuses_the_sender_at_mail_from(exim: EximServer) -> None:
    data = profile(exim_server(exim))
    data["sender"]["from_address"] = exim.blocked_sender
    d = await probe(data, send_to=BOB)
    assert d.error is not None and d.error.code == "sender_rejected", d.error


@pytest.mark.parametrize("security", ["starttls", "none"])
async def test_relay_refused_to_a_client_that_did_not_sign_in_hints_to_sign_in(
    mail_servers: MailServers, security: str
) -> None:
    port = "submission" if security == "starttls" else "plain"
    data = profile(postfix(mail_servers), port=mail_servers.ports[port], security=security)
    data["smtp"]["auth"] = "none"
    d = await probe(data, send_to="someone@example.com")
    assert d.error is not None and d.error.code == "recipient_rejected", d.error
    assert "did not sign in" in d.error.message
    assert "Set auth to 'basic'" in d.error.hint, (d.error.message, d.error.hint)


async def test_exim_authentication_required_hints_to_sign_in(exim: EximServer) -> None:
    data = profile(exim_server(exim), auth="none")
    d = await probe(data, send_to=BOB)
    assert d.error is not None and d.error.code == "recipient_rejected", d.error
    assert "Set auth to 'basic'" in d.error.hint


async def test_signed_in_recipient_refusal_keeps_the_recipient_hint(
    mail_servers: MailServers,
) -> None:
    d = await probe(profile(postfix(mail_servers)), send_to=mail_servers.rejected_recipient)
    assert d.error is not None and d.error.code == "recipient_rejected"
    assert "Check the address" in d.error.hint


async def test_starttls_on_the_implicit_tls_port_is_wrong_mode_within_seconds(
    server: Server,
) -> None:
    """With the default timeouts (30 s connect): the port waits silently for a ClientHello."""
    data = profile(server, port=server.ports["submissions"])
    for key in ("connect_timeout_s", "send_timeout_s"):
        del data["smtp"][key]
    started = time.monotonic()
    d = await probe(data)
    elapsed = time.monotonic() - started
    assert d.error is not None and d.error.code == "tls_wrong_mode", d.error
    assert elapsed < 8, elapsed  # was the whole 30 s connect timeout
    assert d.steps[-1].name == "greeting" and "TLS handshake" in d.steps[-1].detail
    assert "set security to 'tls'" in d.error.hint


def test_delivery_names_a_foreign_sender_refused_at_rcpt(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    data = profile(postfix(mail_servers), port=mail_servers.ports["submission_owned"])
    data["sender"]["from_address"] = BOB
    sqlite_app.profiles.create(data)
    id = sqlite_app.send({"to": [ALICE], "subject": "x", "text": "y"}, profile="QA postfix")
    asyncio.run(Worker(sqlite_app, poll_s=0.05).run(drain=True))
    m = sqlite_app.outbox.get(id)
    assert m.status == "failed", m.last_error
    assert (m.last_error or "").startswith("sender refused"), m.last_error


# -- item 6: size before bytes -----------------------------------------------------------------


def _deliver(app: Postroom, profile_name: str, message: dict[str, Any]) -> Any:
    id = app.send(message, profile=profile_name)
    asyncio.run(Worker(app, poll_s=0.05).run(drain=True))
    return app.outbox.get(id)


# both delivery paths: pipelined, and one command at a time (a server without PIPELINING)
PATHS = pytest.mark.parametrize("port", ["submission", "submission_nopipe"])


@PATHS
def test_size_is_declared_on_mail_from(sqlite_app: Postroom, exim: EximServer, port: str) -> None:
    sqlite_app.profiles.create(profile(exim_server(exim), port=exim.ports[port]))
    subject = f"sized {uuid.uuid4().hex[:8]}"
    m = _deliver(sqlite_app, "QA exim", {"to": [BOB], "subject": subject, "text": "x" * 5000})
    assert m.status == "sent", m.last_error
    declared = [line for line in exim.mail_from_lines() if line.startswith(f"MAIL FROM <{ALICE}>")]
    sizes = [int(line.split("SIZE=")[1].split()[0]) for line in declared]
    assert sizes and sizes[-1] > 5000, declared  # -1 when SIZE= is not declared


@PATHS
def test_message_over_the_servers_limit_fails_before_its_bytes_are_sent(
    sqlite_app: Postroom, exim: EximServer, port: str
) -> None:
    """Exim advertises SIZE 2097152 here; without SIZE= on MAIL FROM it answered 552 only
    after the whole body had crossed the wire."""
    sqlite_app.profiles.create(profile(exim_server(exim), port=exim.ports[port]))
    before = exim.log_text()
    big = "0123456789abcdef\n" * (3 * 1024 * 1024 // 17)  # ~3 MiB of text
    m = _deliver(sqlite_app, "QA exim", {"to": [BOB], "subject": "too big", "text": big})
    assert m.status == "failed", m.last_error
    assert "2,097,152" in (m.last_error or "") and "not sent" in (m.last_error or ""), m.last_error
    after = exim.log_text()[len(before) :]
    assert "552" not in after and "message too big" not in after.lower(), after


async def test_ehlo_step_shows_the_servers_size_limit(server: Server) -> None:
    d = await probe(profile(server))
    assert d.ok, d.error
    tls = next(s for s in d.steps if s.name == "tls")
    assert "SIZE " in tls.detail and "MiB" in tls.detail, tls.detail


# -- item 3: internationalized mail (SMTPUTF8, IDNA) -----------------------------------------


def test_utf8_recipient_and_sender_reach_the_mailbox(sqlite_app: Postroom, server: Server) -> None:
    """Raw UTF-8 in the envelope and the headers, with SMTPUTF8 (Postfix and Exim offer it)."""
    _utf8_roundtrip(sqlite_app, server, profile(server))


def test_utf8_mail_without_pipelining(sqlite_app: Postroom, exim: EximServer) -> None:
    """The one-command-at-a-time path (aiosmtplib) asks for SMTPUTF8 too."""
    server = exim_server(exim)
    _utf8_roundtrip(sqlite_app, server, profile(server, port=exim.ports["submission_nopipe"]))
    assert "SMTPUTF8=yes" in exim.mail_from_lines()[-1], exim.mail_from_lines()[-1]


def _utf8_roundtrip(sqlite_app: Postroom, server: Server, data: dict[str, Any]) -> None:
    data["sender"]["from_address"] = server.utf8_mailbox
    sqlite_app.profiles.create(data)
    subject = f"Grüße {uuid.uuid4().hex[:8]}"
    m = _deliver(
        sqlite_app,
        f"QA {server.name}",
        {"to": [f"用户 <{server.utf8_mailbox}>"], "subject": subject, "text": "你好"},
    )
    assert m.status == "sent", m.last_error
    got = server.wait_for_mail(server.utf8_mailbox, lambda msg: msg["Subject"] == subject)
    assert server.utf8_mailbox in str(got["From"]) and server.utf8_mailbox in str(got["To"])
    assert got["Return-Path"] == f"<{server.utf8_mailbox}>"
    assert got.get_content().strip() == "你好"


async def test_connection_test_sends_to_a_utf8_mailbox(server: Server) -> None:
    d, token = await probe_smtp(
        parse_spec(profile(server)), policy=NetPolicy(), send_to=server.utf8_mailbox
    )
    assert d.ok, d.error
    got = await asyncio.to_thread(
        server.wait_for_mail,
        server.utf8_mailbox,
        lambda msg: msg.get("X-Postroom-Test") == token,
    )
    assert server.utf8_mailbox in str(got["To"])


@pytest.mark.parametrize("pipelining", [True, False])
def test_a_server_without_smtputf8_fails_the_message_with_a_reason(
    sqlite_app: Postroom, pipelining: bool
) -> None:
    """Nothing is sent (an in-process server that offers no SMTPUTF8, both delivery paths);
    the ASCII message in the same batch still goes."""
    with raw_sink(pipelining=pipelining) as sink:
        sqlite_app.profiles.create(
            {
                "name": "no-utf8",
                "smtp": {"host": "127.0.0.1", "port": sink.port, "security": "none",
                         "auth": "none", "connect_timeout_s": 5, "send_timeout_s": 5},
                "sender": {"from_address": ALICE},
            }
        )  # fmt: skip
        utf8 = sqlite_app.send(
            {"to": ["用户@postroom.test"], "subject": "u", "text": "t"}, profile="no-utf8"
        )
        ascii_ = sqlite_app.send({"to": [BOB], "subject": "a", "text": "t"}, profile="no-utf8")
        asyncio.run(Worker(sqlite_app, poll_s=0.05).run(drain=True))
        m = sqlite_app.outbox.get(utf8)
        assert m.status == "failed" and "SMTPUTF8" in (m.last_error or ""), m.last_error
        assert sqlite_app.outbox.get(ascii_).status == "sent"
        assert [e[1] for e in sink.envelopes] == [[BOB]]


def test_non_ascii_domains_travel_as_idna(sqlite_app: Postroom) -> None:
    """No SMTPUTF8 needed for them: envelope and headers carry the A-label."""
    with raw_sink(pipelining=True) as sink:
        sqlite_app.profiles.create(
            {
                "name": "idna",
                "smtp": {"host": "127.0.0.1", "port": sink.port, "security": "none",
                         "auth": "none", "connect_timeout_s": 5, "send_timeout_s": 5},
                "sender": {"from_address": "qa@bücher.test"},
            }
        )  # fmt: skip
        id = sqlite_app.send(
            {"to": ["Bob <bob@exämple.test>"], "subject": "s", "text": "t"}, profile="idna"
        )
        asyncio.run(Worker(sqlite_app, poll_s=0.05).run(drain=True))
        assert sqlite_app.outbox.get(id).status == "sent"
        assert sink.envelopes == [("qa@xn--bcher-kva.test", ["bob@xn--exmple-cua.test"])]
        head = sink.data[0].split(b"\r\n\r\n")[0]
        assert b"To: Bob <bob@xn--exmple-cua.test>" in head and head.isascii()


async def test_connection_test_to_a_utf8_mailbox_on_a_server_without_smtputf8() -> None:
    with raw_sink() as sink:
        data = {
            "name": "no-utf8",
            "smtp": {"host": "127.0.0.1", "port": sink.port, "security": "none", "auth": "none",
                     "connect_timeout_s": 5, "send_timeout_s": 5},
            "sender": {"from_address": ALICE},
        }  # fmt: skip
        d = await probe(data, send_to="用户@postroom.test")
        assert d.error is not None and d.error.code == "recipient_rejected", d.error
        assert "SMTPUTF8" in d.error.message and d.steps[-1].name == "send"
        assert sink.envelopes == []
