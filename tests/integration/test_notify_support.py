"""Helpers shared by the notification tests (no tests here): services, sink profiles, draining."""

from __future__ import annotations

import asyncio
import email
from email import policy as email_policy
from email.message import EmailMessage
from typing import Any, cast

from postroom import Postroom
from postroom.notify.events import Notifier
from postroom.notify.templates import Templates
from postroom.outbox.worker import Worker

PUBLIC_URL = "https://postroom.test"


def notifier(app: Postroom, public_url: str | None = PUBLIC_URL) -> Notifier:
    """The services as app.py wires them (built here so the tests do not depend on it)."""
    return Notifier(app.sessions, app.outbox, Templates(app.sessions), public_url=public_url)


def sink_profile(app: Postroom, port: int, name: str, sender: str) -> None:
    app.profiles.create(
        {
            "name": name,
            "smtp": {"host": "127.0.0.1", "port": port, "security": "none", "auth": "none",
                     "connect_timeout_s": 3, "send_timeout_s": 3},
            "sender": {"from_address": sender, "from_name": name},
        }
    )  # fmt: skip


def drain(app: Postroom) -> Worker:
    w = Worker(app, poll_s=0.05)
    asyncio.run(asyncio.wait_for(w.run(drain=True), 60))
    return w


def parse(raw: bytes) -> EmailMessage:
    body = raw[: -len(b".\r\n")] if raw.endswith(b"\r\n.\r\n") else raw
    body = body.replace(b"\r\n..", b"\r\n.")  # undo dot-stuffing
    message = email.message_from_bytes(body, policy=email_policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> tuple[str, str]:
    """(html, text) of a received message."""
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    return str(cast(Any, html).get_content()), str(cast(Any, text).get_content())
