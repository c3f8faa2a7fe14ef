"""Bounce notices through real Postfix + Dovecot: only a notice that returns the message's
bounce token marks it bounced; forged ones are stored as refused and change nothing."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from postroom import Postroom
from postroom.outbox.worker import Worker
from tests.harness.mailservers import MailServers
from tests.integration.test_inbound_support import (
    inbound,
    new_mailbox,
    receiving_profile,
    running,
    send_plain,
    wait_until,
)

pytestmark = pytest.mark.mailservers


def forged_dsn(to: str, message_id: str, recipient: str, *, token: str | None) -> bytes:
    """A well-formed RFC 3464 notice, as anyone could write it, claiming ``message_id`` bounced."""
    returned = f"X-Postroom-Bounce: {token}\r\n" if token else ""
    return (
        "From: MAILER-DAEMON@mail.postroom.test\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@postroom.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mail.postroom.test\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 attacker-chosen text: call +1 555 0100\r\n"
        "\r\n--b1\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"{returned}Message-ID: {message_id}\r\nSubject: Invoice\r\n"
        "\r\n--b1--\r\n"
    ).encode()


async def test_forged_notices_are_refused_and_a_real_one_still_bounces(
    sqlite_app: Postroom, mail_servers: MailServers
) -> None:
    app = sqlite_app
    user, pw = await asyncio.to_thread(new_mailbox, mail_servers)
    customer, _ = await asyncio.to_thread(new_mailbox, mail_servers)
    attacker, _ = await asyncio.to_thread(new_mailbox, mail_servers)
    name = receiving_profile(app, mail_servers, user, pw)
    victim = app.send({"to": [customer], "subject": "Invoice", "text": "x"}, profile=name)
    theirs = app.send({"to": [attacker], "subject": "Newsletter", "text": "x"}, profile=name)
    nobody = f"nobody-{uuid.uuid4().hex[:8]}@postroom.test"  # accepted, then refused by LMTP
    real = app.send({"to": [nobody], "subject": "Report", "text": "x"}, profile=name)
    await Worker(app, poll_s=0.05).run(drain=True)
    assert app.outbox.get(victim).status == "sent"
    # the attacker holds a message of their own, with its genuine token
    received = await asyncio.to_thread(mail_servers.wait_for_mail, attacker)
    their_token = str(received["X-Postroom-Bounce"])
    victim_id = app.outbox.get(victim).message_id

    service = inbound(app)
    async with running(service):
        await wait_until(
            lambda: app.outbox.get(real).status == "bounced", timeout=20, what="the real DSN"
        )
        await asyncio.to_thread(
            send_plain, mail_servers, user,
            forged_dsn(user, victim_id, customer, token=None),
            forged_dsn(user, victim_id, customer, token=their_token),
        )  # fmt: skip
        await wait_until(lambda: len(service.list(profile=name)) >= 3, timeout=20, what="forgeries")
    assert app.outbox.get(victim).status == "sent"
    assert app.outbox.get(theirs).status == "sent"
    notices = sorted((service.get(m.id) for m in service.list(profile=name)), key=lambda e: e.uid)
    bounces = [n.bounce for n in notices]
    assert all(b is not None for b in bounces)
    genuine, no_token, wrong_token = bounces
    assert genuine and genuine.authenticated and genuine.outbox_id == real
    assert no_token and not no_token.authenticated and no_token.outbox_id is None
    assert "no X-Postroom-Bounce token" in str(no_token.refused)
    assert wrong_token and not wrong_token.authenticated and wrong_token.outbox_id is None
    assert "does not match" in str(wrong_token.refused)
    bounced = app.outbox.get(real)
    assert nobody in str(bounced.last_error) and bounced.last_code == 550
