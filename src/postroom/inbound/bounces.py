"""Recognise bounces and match them to the message that bounced (pure).

Standard delivery status notifications (RFC 3464: multipart/report with
report-type=delivery-status) are read field by field. Common non-standard bounces
(mailer-daemon/postmaster senders, "Undelivered Mail", "Delivery Status Notification")
are recognised by sender and subject, and matched by the original Message-ID quoted in
the body or attachment.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import parseaddr

from postroom.outbox.bounce_tokens import find_tokens

__all__ = ["Bounce", "RecipientStatus", "detect_bounce"]

_MESSAGE_ID_HEADER = re.compile(rb"^Message-ID:\s*(<[^<>\s]+>)", re.I | re.M)
_BOUNCE_SENDER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailerdaemon)@", re.I)
_BOUNCE_SUBJECT = re.compile(
    r"(undeliver|delivery status notification|mail delivery (failed|failure|subsystem)|"
    r"returned mail|failure notice|delivery failure|non-?delivery)",
    re.I,
)


@dataclass(frozen=True)
class RecipientStatus:
    recipient: str
    action: str
    status: str
    diagnostic: str


@dataclass(frozen=True)
class Bounce:
    """A bounce: which message (``original_message_id``), and per-recipient outcomes."""

    original_message_id: str | None
    recipients: list[RecipientStatus] = field(default_factory=list)
    standard: bool = True
    #: bounce tokens found in the returned message or headers (see outbox.bounce_tokens)
    tokens: list[str] = field(default_factory=list)

    @property
    def permanent(self) -> bool:
        return any(
            r.action.lower() == "failed" or r.status.startswith("5") for r in self.recipients
        ) or (not self.recipients)

    @property
    def summary(self) -> str:
        if not self.recipients:
            return "bounced (non-standard notice)"
        r = self.recipients[0]
        return f"{r.recipient}: {r.status} {r.diagnostic}".strip()


def _fields(block: str) -> dict[str, str]:
    out: dict[str, str] = {}
    key = ""
    for line in block.splitlines():
        if line[:1] in (" ", "\t") and key:
            out[key] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            out[key] = value.strip()
    return out


def _strip_type(value: str) -> str:
    # "rfc822; bob@example.org" → "bob@example.org"
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def _delivery_status(part: Message) -> list[RecipientStatus]:
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package splits message/delivery-status
        blocks = [
            "\n".join(f"{k}: {v}" for k, v in p.items()) for p in payload if isinstance(p, Message)
        ]
    else:
        raw = part.get_payload(decode=True)
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(payload)
        blocks = re.split(r"\r?\n\r?\n", text)
    out = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        f = _fields(block)
        recipient = _strip_type(f.get("final-recipient") or f.get("original-recipient") or "")
        if not recipient:
            continue
        out.append(
            RecipientStatus(
                recipient=recipient,
                action=f.get("action", ""),
                status=f.get("status", ""),
                diagnostic=_strip_type(f.get("diagnostic-code", "")),
            )
        )
    return out


def _original_id(msg: Message, raw: bytes) -> str | None:
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            payload = part.get_payload()
            inner = payload[0] if isinstance(payload, list) and payload else None
            if isinstance(inner, Message) and inner.get("Message-ID"):
                return str(inner["Message-ID"]).strip()
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                found = _MESSAGE_ID_HEADER.search(data)
                if found:
                    return found.group(1).decode("ascii", "replace")
    # non-standard bounces quote the original headers in the body: skip the bounce's own
    head_end = raw.find(b"\r\n\r\n")
    found = _MESSAGE_ID_HEADER.search(raw, head_end if head_end > 0 else 0)
    return found.group(1).decode("ascii", "replace") if found else None


def _returned_tokens(raw: bytes) -> list[str]:
    # only what the notice returns counts, never the notice's own header block
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        head_end = raw.find(b"\n\n")
    return find_tokens(raw[head_end:] if head_end > 0 else b"")


def detect_bounce(raw: bytes) -> Bounce | None:
    """A :class:`Bounce` when ``raw`` is a delivery failure notice, else None."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    ctype = msg.get_content_type()
    report_type = str(msg.get_param("report-type", "")).lower()
    if ctype == "multipart/report" and report_type == "delivery-status":
        recipients: list[RecipientStatus] = []
        for part in msg.walk():
            if part.get_content_type() == "message/delivery-status":
                recipients += _delivery_status(part)
        if recipients and all(
            r.action.lower() in ("delivered", "relayed", "expanded") for r in recipients
        ):
            return None  # a success notice, not a bounce
        if recipients and all(r.action.lower() == "delayed" for r in recipients):
            return None  # still trying: not final
        return Bounce(
            _original_id(msg, raw), recipients, standard=True, tokens=_returned_tokens(raw)
        )
    sender = parseaddr(str(msg.get("From", "")))[1]
    if _BOUNCE_SENDER.match(sender) or (
        msg.get("Auto-Submitted", "").lower().startswith("auto-replied")
        and _BOUNCE_SUBJECT.search(str(msg.get("Subject", "")))
    ):
        if _BOUNCE_SUBJECT.search(str(msg.get("Subject", ""))) or _BOUNCE_SENDER.match(sender):
            return Bounce(_original_id(msg, raw), [], standard=False, tokens=_returned_tokens(raw))
    return None
