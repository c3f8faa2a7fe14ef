"""The IMAP diagnosis against the real Dovecot of the harness, and in-process faulty servers."""

from __future__ import annotations

import smtplib
import time
import tracemalloc
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from postroom.diagnostics.imap_probe import probe_imap
from postroom.diagnostics.steps import Diagnosis
from postroom.imap.client import ImapSession
from postroom.net.policy import NetPolicy
from postroom.profiles.schemas import ImapSettings
from tests.integration.fake_servers import (
    HUGE_LITERAL,
    closed_port,
    endless_line_server,
    full_backlog,
    http_server,
    scripted_imap,
    silent_server,
)

OPEN = NetPolicy()
USER = "alice@postroom.test"
PASSWORD = "alice-secret-1"
IMPLICIT_STEPS = ["resolve", "connect", "tls", "capability", "auth", "select"]
STARTTLS_STEPS = [
    "resolve",
    "connect",
    "greeting",
    "starttls",
    "tls",
    "capability",
    "auth",
    "select",
]


def settings(port: int, *, host: str = "127.0.0.1", **imap: Any) -> ImapSettings:
    values: dict[str, Any] = {
        "host": host,
        "port": port,
        "security": "none",
        "auth": "basic",
        "username": USER,
        "password": PASSWORD,
        "connect_timeout_s": 5,
        **imap,
    }
    return ImapSettings.model_validate(values)


async def probe(s: ImapSettings, *, policy: NetPolicy = OPEN, cap_s: float = 30.0) -> Diagnosis:
    return await probe_imap(s, policy=policy, cap_s=cap_s)


def code(d: Diagnosis) -> str | None:
    return d.error.code if d.error else None


def names(d: Diagnosis) -> list[str]:
    return [s.name for s in d.steps]


def assert_no_secret(d: Diagnosis, secret: str) -> None:
    assert secret not in d.model_dump_json()


# -- the real Dovecot ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca_bundle(mail_servers: Any) -> str:
    return Path(mail_servers.ca_pem).read_text()


@pytest.fixture
def imaps(mail_servers: Any, ca_bundle: str) -> ImapSettings:
    """Implicit TLS to Dovecot, by host name (the certificate names localhost)."""
    return settings(
        mail_servers.ports["imaps"], host="localhost", security="tls", ca_bundle=ca_bundle
    )


@pytest.fixture
def imap_starttls(mail_servers: Any, ca_bundle: str) -> ImapSettings:
    return settings(
        mail_servers.ports["imap"], host="localhost", security="starttls", ca_bundle=ca_bundle
    )


@pytest.mark.mailservers
async def test_implicit_tls_with_ca_bundle_passes_every_step(imaps: ImapSettings) -> None:
    d = await probe(imaps)
    assert d.ok, d.error
    assert d.kind == "imap"
    assert names(d) == IMPLICIT_STEPS
    steps = {s.name: s.detail for s in d.steps}
    assert "127.0.0.1" in steps["connect"]  # connected to the checked address...
    assert "certificate for localhost" in steps["tls"]  # ...verified against the name
    assert "Dovecot" in steps["tls"]
    assert "IMAP4REV1" in steps["capability"]
    assert steps["auth"] == f"signed in as {USER} (LOGIN)"
    assert steps["select"].startswith("INBOX: ")
    assert_no_secret(d, PASSWORD)


@pytest.mark.mailservers
async def test_starttls_with_ca_bundle_passes_every_step(imap_starttls: ImapSettings) -> None:
    d = await probe(imap_starttls)
    assert d.ok, d.error
    assert names(d) == STARTTLS_STEPS
    steps = {s.name: s.detail for s in d.steps}
    assert "Dovecot" in steps["greeting"]
    assert steps["tls"].startswith("TLSv1.")
    assert "STARTTLS" not in steps["capability"]  # asked again over TLS
    assert_no_secret(d, PASSWORD)


@pytest.mark.mailservers
async def test_wrong_password_reports_auth_failed(imaps: ImapSettings) -> None:
    wrong = "not-the-password-42"
    d = await probe(imaps.model_copy(update={"password": wrong}))
    assert code(d) == "auth_failed"
    assert names(d)[-1] == "auth"
    assert USER in d.error.message  # type: ignore[union-attr]
    assert_no_secret(d, wrong)


@pytest.mark.mailservers
async def test_missing_folder_reports_imap_folder_missing_with_existing_folders(
    imaps: ImapSettings,
) -> None:
    d = await probe(imaps.model_copy(update={"folder": "No-Such-Folder"}))
    assert code(d) == "imap_folder_missing"
    assert "No-Such-Folder" in d.error.message  # type: ignore[union-attr]
    assert d.steps[-1].name == "select"
    assert d.steps[-1].detail.startswith("existing folders: INBOX, ")


@pytest.mark.mailservers
async def test_certificate_of_private_ca_without_ca_bundle_is_untrusted(
    imaps: ImapSettings,
) -> None:
    d = await probe(imaps.model_copy(update={"ca_bundle": None}))
    assert code(d) == "tls_certificate_untrusted"
    assert names(d)[-1] == "tls"
    assert "CA bundle" in d.error.hint  # type: ignore[union-attr]


@pytest.mark.mailservers
async def test_starttls_certificate_without_ca_bundle_is_untrusted_before_login(
    imap_starttls: ImapSettings,
) -> None:
    d = await probe(imap_starttls.model_copy(update={"ca_bundle": None}))
    assert code(d) == "tls_certificate_untrusted"
    assert names(d) == ["resolve", "connect", "greeting", "starttls", "tls"]


@pytest.mark.mailservers
async def test_implicit_tls_on_the_starttls_port_reports_wrong_mode(
    mail_servers: Any, imaps: ImapSettings
) -> None:
    d = await probe(imaps.model_copy(update={"port": mail_servers.ports["imap"]}))
    assert code(d) == "tls_wrong_mode"
    assert names(d)[-1] == "tls"
    assert "set security to 'starttls'" in d.error.hint  # type: ignore[union-attr]


@pytest.mark.mailservers
async def test_starttls_on_the_implicit_tls_port_reports_wrong_mode(
    mail_servers: Any, imap_starttls: ImapSettings
) -> None:
    started = time.monotonic()
    d = await probe(imap_starttls.model_copy(update={"port": mail_servers.ports["imaps"]}))
    assert code(d) == "tls_wrong_mode"
    assert names(d)[-1] == "greeting"
    assert "set security to 'tls'" in d.error.hint  # type: ignore[union-attr]
    assert time.monotonic() - started < 5  # told by sniffing, not by waiting out the timeout


@pytest.mark.mailservers
async def test_session_finds_a_delivered_message_by_header(
    mail_servers: Any, imaps: ImapSettings
) -> None:
    token = uuid.uuid4().hex
    msg = EmailMessage()
    msg["From"] = "qa@postroom.test"
    msg["To"] = USER
    msg["Subject"] = "round trip"
    msg["X-Postroom-Test"] = token
    msg.set_content("hello")
    with smtplib.SMTP(mail_servers.host, mail_servers.ports["plain"], timeout=10) as smtp:
        smtp.send_message(msg)
    mail_servers.wait_for_mail(USER, lambda m: m["X-Postroom-Test"] == token)

    session = await ImapSession.open(imaps, policy=OPEN, timeout=5)
    try:
        await session.login()
        assert await session.select("INBOX") >= 1
        found = await session.search_header("X-Postroom-Test", token)
        assert len(found) == 1
        assert await session.search_header("X-Postroom-Test", uuid.uuid4().hex) == []
    finally:
        await session.logout()


# -- before any IMAP is spoken ---------------------------------------------------------------


async def test_closed_port_reports_connect_refused() -> None:
    with closed_port() as port:
        d = await probe(settings(port))
    assert code(d) == "connect_refused"
    assert names(d) == ["resolve", "connect"]


async def test_invalid_host_reports_dns_not_found() -> None:
    d = await probe(settings(993, host="no-such-host.invalid"))
    assert code(d) == "dns_not_found"
    assert names(d) == ["resolve"]


async def test_denied_address_reports_blocked_by_policy_without_connecting() -> None:
    with silent_server() as port:
        d = await probe(settings(port), policy=NetPolicy.from_strings(deny="127.0.0.0/8"))
    assert code(d) == "blocked_by_policy"
    assert names(d) == ["resolve"]
    assert "127.0.0.0/8" in d.steps[0].detail


async def test_full_accept_queue_reports_connect_timeout() -> None:
    with full_backlog() as port:
        started = time.monotonic()
        d = await probe(settings(port, connect_timeout_s=1))
    assert code(d) == "connect_timeout"
    assert names(d)[-1] == "connect"
    assert time.monotonic() - started < 3


# -- servers that misbehave ------------------------------------------------------------------


async def test_silent_server_reports_greeting_timeout() -> None:
    with silent_server() as port:
        d = await probe(settings(port, connect_timeout_s=1))
    assert code(d) == "greeting_timeout"
    assert names(d)[-1] == "greeting"


async def test_silent_server_with_implicit_tls_reports_greeting_timeout() -> None:
    with silent_server() as port:
        d = await probe(settings(port, security="tls", connect_timeout_s=1))
    assert code(d) == "greeting_timeout"
    assert names(d)[-1] == "tls"


async def test_stalled_server_without_timeout_is_stopped_by_the_cap() -> None:
    with silent_server() as port:
        started = time.monotonic()
        d = await probe(settings(port, connect_timeout_s=None), cap_s=2)
        elapsed = time.monotonic() - started
    assert code(d) == "greeting_timeout"
    assert names(d)[-1] == "greeting"
    assert "ran out of time" in d.error.message  # type: ignore[union-attr]
    assert elapsed < 3


async def test_stall_during_login_is_stopped_by_the_cap_as_test_timeout() -> None:
    # LOGIN gets no answer at all: only the cap ends the wait.
    with scripted_imap(replies={"LOGIN": b""}) as srv:
        started = time.monotonic()
        d = await probe(settings(srv.port, connect_timeout_s=None), cap_s=1.5)
        elapsed = time.monotonic() - started
    assert code(d) == "test_timeout"
    assert names(d)[-1] == "auth"
    assert elapsed < 2.5


async def test_http_server_reports_protocol_error() -> None:
    with http_server() as port:
        d = await probe(settings(port, security="starttls"))
    assert code(d) == "protocol_error"
    assert "web server" in d.error.message  # type: ignore[union-attr]


async def test_implicit_tls_to_http_server_reports_protocol_error() -> None:
    with http_server() as port:
        d = await probe(settings(port, security="tls"))
    assert code(d) == "protocol_error"
    assert names(d)[-1] == "tls"


async def test_endless_line_reports_protocol_error_quickly_with_bounded_memory() -> None:
    with endless_line_server() as port:
        tracemalloc.start()
        try:
            started = time.monotonic()
            d = await probe(settings(port))
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert code(d) == "protocol_error"
    assert "longer than 1 MiB" in d.error.message  # type: ignore[union-attr]
    assert elapsed < 5
    assert peak < 16 * 1024 * 1024


async def test_endless_stream_of_short_lines_reports_protocol_error_with_bounded_memory() -> None:
    with endless_line_server(prefix=b"* OK ready\r\n", repeat=b"* OK xy\r\n") as port:
        tracemalloc.start()
        try:
            started = time.monotonic()
            d = await probe(settings(port))
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert code(d) == "protocol_error"
    assert "answer to one command exceeded" in d.error.message  # type: ignore[union-attr]
    assert elapsed < 10
    assert peak < 16 * 1024 * 1024


async def test_huge_literal_reports_protocol_error_without_reading_it() -> None:
    with scripted_imap(replies={"CAPABILITY": HUGE_LITERAL}) as srv:
        tracemalloc.start()
        try:
            started = time.monotonic()
            d = await probe(settings(srv.port))
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert code(d) == "protocol_error"
    assert "9999999999 bytes" in d.error.message  # type: ignore[union-attr]
    assert names(d)[-1] == "greeting"
    assert elapsed < 5
    assert peak < 16 * 1024 * 1024


async def test_missing_starttls_never_falls_back_to_plaintext() -> None:
    with scripted_imap(capabilities="IMAP4rev1 AUTH=PLAIN") as srv:
        d = await probe(settings(srv.port, security="starttls"))
        commands = srv.commands
    assert code(d) == "starttls_not_offered"
    assert names(d)[-1] == "starttls"
    assert "LOGIN" not in commands and "AUTHENTICATE" not in commands


async def test_login_disabled_without_tls_reports_auth_not_offered_and_sends_no_password() -> None:
    with scripted_imap(capabilities="IMAP4rev1 LOGINDISABLED AUTH=PLAIN") as srv:
        d = await probe(settings(srv.port, security="none"))
        received = b"".join(srv.received)
    assert code(d) == "auth_not_offered"
    assert names(d)[-1] == "auth"
    assert PASSWORD.encode() not in received


async def test_oauth2_without_a_configuration_fails_in_the_oauth2_step() -> None:
    with scripted_imap() as srv:
        d = await probe(settings(srv.port, auth="oauth2", oauth2_config="corp"))
    assert code(d) == "oauth2_token_failed"
    assert names(d)[-1] == "oauth2"


async def test_smtp_server_on_the_imap_port_reports_protocol_error() -> None:
    with scripted_imap(greeting=b"220 mail.example.com ESMTP\r\n") as srv:
        d = await probe(settings(srv.port))
    assert code(d) == "protocol_error"
    assert "SMTP server" in d.error.message  # type: ignore[union-attr]


async def test_preauthenticated_server_with_auth_none_passes() -> None:
    with scripted_imap(
        greeting=b"* PREAUTH [CAPABILITY IMAP4rev1] welcome back\r\n",
        replies={"EXAMINE": b"* 3 EXISTS\r\n{tag} OK [READ-ONLY] done\r\n"},
    ) as srv:
        d = await probe(settings(srv.port, auth="none", username=None, password=None))
    assert d.ok, d.error
    assert names(d) == ["resolve", "connect", "greeting", "capability", "select"]
    assert d.steps[-1].detail == "INBOX: 3 messages"


async def test_auth_none_on_a_server_that_requires_login_reports_auth_failed() -> None:
    with scripted_imap() as srv:
        d = await probe(settings(srv.port, auth="none", username=None, password=None))
    assert code(d) == "auth_failed"
    assert names(d)[-1] == "select"
    assert "auth is 'none'" in d.error.message  # type: ignore[union-attr]


async def test_preauth_greeting_cannot_be_secured_with_starttls() -> None:
    with scripted_imap(
        greeting=b"* PREAUTH [CAPABILITY IMAP4rev1 STARTTLS] welcome back\r\n"
    ) as srv:
        d = await probe(settings(srv.port, security="starttls"))
        commands = srv.commands
    assert code(d) == "starttls_not_offered"
    assert "PREAUTH" in d.error.message  # type: ignore[union-attr]
    assert "STARTTLS" not in commands
