"""Helpers shared by the inbound tests (no tests here): mailboxes, profiles, sending, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

from postroom import Postroom
from postroom.inbound.runner import InboundRunner
from postroom.inbound.schemas import InboundConfig
from postroom.inbound.service import Inbound
from tests.harness.mailservers import MailServers

#: Short intervals so that the tests take seconds, not minutes.
FAST = InboundConfig(
    idle_renew_s=5.0,
    lease_s=3.0,
    rescan_s=0.3,
    backoff_initial_s=0.2,
    backoff_max_s=1.0,
    retry_initial_s=0.3,
    retry_max_s=1.0,
    webhook_timeout_s=3.0,
)


def inbound(app: Postroom, config: InboundConfig = FAST) -> Inbound:
    """The service as app.py wires it (built here so the tests do not depend on it)."""
    return Inbound(app.sessions, app.box, app.policy, config=config)


def new_mailbox(servers: MailServers) -> tuple[str, str]:
    """A fresh mailbox user of its own, so tests never see each other's mail."""
    user = f"in-{uuid.uuid4().hex[:10]}@postroom.test"
    password = f"pw-{uuid.uuid4().hex[:12]}"
    servers.add_user(user, password)
    return user, password


def receiving_profile(
    app: Postroom, servers: MailServers, user: str, password: str, **imap: Any
) -> str:
    """A profile that sends as ``user`` (submission) and receives ``user``'s mail (IMAPS)."""
    ca = Path(servers.ca_pem).read_text()
    name = f"Inbox {user.split('@')[0]}"
    app.profiles.create(
        {
            "name": name,
            "smtp": {"host": servers.host, "port": servers.ports["submission"],
                     "security": "starttls", "ca_bundle": ca, "auth": "basic",
                     "username": user, "password": password, "connect_timeout_s": 5,
                     "send_timeout_s": 10},
            "sender": {"from_address": user},
            "imap": {"host": servers.host, "port": servers.ports["imaps"], "security": "tls",
                     "ca_bundle": ca, "auth": "basic", "username": user, "password": password,
                     "connect_timeout_s": 5, **imap},
        }
    )  # fmt: skip
    return name


def message(to: str, subject: str, text: str = "hello", **headers: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@postroom.test"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = f"<{uuid.uuid4().hex}@postroom.test>"
    for key, value in headers.items():
        msg[key.replace("_", "-")] = value
    msg.set_content(text)
    return msg


def send_plain(servers: MailServers, to: str, *messages: EmailMessage | bytes) -> None:
    """Deliver through Postfix's plain port (no auth; accepts mail for postroom.test)."""
    with smtplib.SMTP(servers.host, servers.ports["plain"], timeout=10) as smtp:
        for m in messages:
            if isinstance(m, bytes):
                smtp.sendmail("sender@postroom.test", [to], m)
            else:
                smtp.send_message(m)


def imap_client(servers: MailServers, user: str, password: str) -> IMAPClient:
    """A plain IMAPClient session for checking what the server holds (flags, folders)."""
    context = ssl.create_default_context(cafile=servers.ca_pem)
    client = IMAPClient(servers.host, port=servers.ports["imaps"], ssl_context=context)
    client.login(user, password)
    return client


def append(servers: MailServers, user: str, password: str, folder: str, *raws: bytes) -> None:
    with imap_client(servers, user, password) as c:
        for raw in raws:
            c.append(folder, raw)


async def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll ``predicate`` (run on a thread: it may use the database) until it is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def running(service: Inbound, *, name: str | None = None) -> AsyncIterator[InboundRunner]:
    """A runner for every receiving profile, stopped (cleanly) at the end of the block."""
    runner = service.runner(name=name)
    task = asyncio.create_task(runner.run())
    try:
        yield runner
    finally:
        runner.stop()
        await asyncio.wait_for(task, 20)
