"""The real Exim + Cyrus IMAP harness works with ordinary clients (smtplib, imaplib),
and postroom's connection test passes every step against it."""

from __future__ import annotations

import asyncio
import imaplib
import smtplib
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from postroom import Postroom
from postroom.diagnostics.imap_probe import probe_imap
from postroom.diagnostics.smtp_probe import probe_smtp
from postroom.net.policy import NetPolicy
from postroom.profiles.schemas import parse_spec
from tests.harness.cyrus import CyrusServer
from tests.harness.exim import EximServer

pytestmark = pytest.mark.exim

ALICE, ALICE_PW = "alice@postroom.test", "alice-secret-1"
BOB, BOB_PW = "bob@postroom.test", "bob-secret-2"


def exim_profile(exim: EximServer, cyrus: CyrusServer, **smtp: Any) -> dict[str, Any]:
    ca = Path(exim.ca_pem).read_text()
    return {
        "name": "Exim",
        "smtp": {
            "host": exim.host, "port": exim.ports["submission"], "security": "starttls",
            "ca_bundle": ca, "auth": "basic", "username": ALICE, "password": ALICE_PW,
            "connect_timeout_s": 5, "send_timeout_s": 10, **smtp,
        },
        "sender": {"from_address": ALICE, "from_name": "QA"},
        "imap": {
            "host": cyrus.host, "port": cyrus.ports["imaps"], "security": "tls",
            "ca_bundle": ca, "auth": "basic", "username": BOB, "password": BOB_PW,
        },
    }  # fmt: skip


def test_exim_delivers_into_cyrus_read_over_imap(exim: EximServer, cyrus: CyrusServer) -> None:
    token = uuid.uuid4().hex
    ctx = exim.certs.client_context()
    with smtplib.SMTP(exim.host, exim.ports["submission"], timeout=10) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth"), "AUTH must not be offered before STARTTLS"
        smtp.starttls(context=ctx)
        smtp.ehlo()
        assert smtp.has_extn("smtputf8") and smtp.has_extn("size")
        smtp.login(ALICE, ALICE_PW)
        smtp.sendmail(ALICE, [BOB], f"Subject: harness {token}\r\n\r\nhello\r\n".encode())
    with imaplib.IMAP4_SSL(cyrus.host, cyrus.ports["imaps"], ssl_context=ctx) as imap:
        imap.login(BOB, BOB_PW)
        deadline = time.monotonic() + 10
        while True:
            imap.select("INBOX")
            _, data = imap.search(None, "SUBJECT", f'"{token}"')
            if data[0] or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert data[0], exim.log_tail()


def test_exim_logs_each_failed_login(exim: EximServer) -> None:
    before = exim.failed_logins(BOB)
    with smtplib.SMTP_SSL(
        exim.host, exim.ports["submissions"], context=exim.certs.client_context(), timeout=10
    ) as smtp:
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError):
            smtp.auth("PLAIN", lambda challenge=None: f"\0{BOB}\0wrong")
    assert exim.failed_logins(BOB) == before + 1


async def test_connection_tests_pass_on_exim_and_cyrus(
    exim: EximServer, cyrus: CyrusServer
) -> None:
    spec = parse_spec(exim_profile(exim, cyrus))
    d, _ = await probe_smtp(spec, policy=NetPolicy())
    assert d.ok, d.error
    assert "SMTPUTF8" in d.steps[-2].detail  # the EHLO after STARTTLS
    assert spec.imap is not None
    d = await probe_imap(spec.imap, policy=NetPolicy())
    assert d.ok, d.error


def test_roundtrip_through_exim_and_cyrus(
    sqlite_app: Postroom, exim: EximServer, cyrus: CyrusServer
) -> None:
    sqlite_app.profiles.create(exim_profile(exim, cyrus))
    d = sqlite_app.test_profile("Exim", send_to=BOB, roundtrip=True)
    assert d.ok, d.error
    assert d.steps[-1].name == "roundtrip" and "arrived after" in d.steps[-1].detail


async def test_new_mail_arrives_through_idle_on_cyrus(
    sqlite_app: Postroom, exim: EximServer, cyrus: CyrusServer
) -> None:
    """postroom's inbound listener on Cyrus (with idled: Cyrus reports new mail during IDLE
    at once; without it, only about every 60 s)."""
    from postroom.inbound.schemas import InboundEvent, ListenerState
    from tests.integration.test_inbound_support import inbound, message, running, wait_until

    user, password = f"in-{uuid.uuid4().hex[:10]}@postroom.test", uuid.uuid4().hex
    await asyncio.to_thread(cyrus.add_user, user, password)
    data = exim_profile(exim, cyrus)
    data["name"] = "Cyrus inbox"
    data["imap"] |= {"username": user, "password": password, "connect_timeout_s": 5}
    sqlite_app.profiles.create(data)
    service = inbound(sqlite_app)
    events: list[InboundEvent] = []
    service.subscribe("Cyrus inbox", events.append)
    async with running(service):
        await wait_until(
            lambda: service.health("Cyrus inbox")[0].state is ListenerState.IDLE, what="IDLE"
        )
        sent = time.monotonic()
        raw = message(user, "Build 4711 failed").as_bytes()
        await asyncio.to_thread(cyrus.deliver, user, raw)
        await wait_until(lambda: events, timeout=10, what="the message")
        elapsed = time.monotonic() - sent
    assert events[0].subject == "Build 4711 failed"
    assert elapsed < 3, elapsed
