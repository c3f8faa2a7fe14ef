"""What is stored is what was sent: forwarded messages, line ends, bytes over TLS
(real Postfix + Dovecot)."""

from __future__ import annotations

import asyncio
import hashlib
from email.message import EmailMessage

import pytest
from sqlalchemy import select

from postroom import Postroom
from postroom.inbound.tables import InboundMessage
from tests.harness.mailservers import MailServers
from tests.integration.test_inbound_support import (
    append,
    inbound,
    message,
    new_mailbox,
    receiving_profile,
    running,
    send_plain,
    wait_until,
)

pytestmark = pytest.mark.mailservers


def forward(to: str) -> tuple[EmailMessage, EmailMessage]:
    original = message("ops@postroom.test", "Invoice 42: overdue", "Please pay by Friday.\n")
    original.replace_header("From", "Carol <carol@postroom.test>")
    original.add_attachment(b"%PDF-1.4 q3", maintype="application", subtype="pdf",
                            filename="invoice-42.pdf")  # fmt: skip
    outer = message(to, "Fwd: Invoice 42: overdue", "See the forwarded message.\nThanks\n")
    outer.add_attachment(original)  # a message/rfc822 part
    return outer, original


async def test_a_forwarded_message_is_one_attachment_with_its_headers(
    app: Postroom, mail_servers: MailServers
) -> None:
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    name = receiving_profile(app, mail_servers, user, pw)
    outer, original = forward(user)
    await asyncio.to_thread(send_plain, mail_servers, user, outer)  # CRLF on the wire
    service = inbound(app)
    async with running(service):
        await wait_until(lambda: service.list(profile=name, status="processed"), what="it")
    (row,) = service.list(profile=name)
    event = service.get(row.id)
    assert event.text == "See the forwarded message.\nThanks\n"  # \n, not \r\n
    (attachment,) = event.attachments  # not the inner text and PDF as loose parts
    assert attachment.content_type == "message/rfc822"
    assert attachment.filename == "Invoice 42 overdue.eml"
    info, content = service.attachment(attachment.id)
    assert content is not None and info.size == len(content)
    assert content.startswith(b"From: Carol <carol@postroom.test>\r\n")
    assert b"\r\nSubject: Invoice 42: overdue\r\n" in content
    assert f"Message-ID: {original['Message-ID']}".encode() in content
    assert b"Please pay by Friday." in content and b'filename="invoice-42.pdf"' in content


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_messages_fetched_over_tls_are_byte_exact(
    sqlite_app: Postroom, mail_servers: MailServers, security: str
) -> None:
    """Dot lines and a final '.' arrive as sent: nothing doubled, nothing added."""
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    port = mail_servers.ports["imaps" if security == "tls" else "imap"]
    name = receiving_profile(sqlite_app, mail_servers, user, pw, security=security, port=port)
    raws = [
        b"From: a@postroom.test\r\nSubject: dots\r\n\r\nline\r\n.\r\n..\r\nend.\r\n.",
        b"From: a@postroom.test\r\nSubject: big\r\n\r\n" + b"x" * 200_000 + b"\r\n.\r\n",
    ]
    await asyncio.to_thread(append, mail_servers, user, pw, "INBOX", *raws)
    service = inbound(sqlite_app)
    async with running(service):
        await wait_until(lambda: len(service.list(profile=name, status="processed")) == 2)
    with sqlite_app.sessions() as s:
        rows = {r.subject: r for r in s.scalars(select(InboundMessage))}
    assert rows["dots"].sha256 == hashlib.sha256(raws[0]).hexdigest()
    assert rows["big"].sha256 == hashlib.sha256(raws[1]).hexdigest()
    assert rows["dots"].text == "line\n.\n..\nend.\n."
    assert str(rows["big"].text).endswith("x\n.\n") and not str(rows["big"].text).endswith("..\n")
