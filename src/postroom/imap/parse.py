"""Inbound messages: bytes in, a typed message or a rejection with a reason out (pure).

Python's email parser recurses per nesting level and builds every part in memory: a
66 KiB message with 1,000 nested multiparts raises RecursionError, 100k tiny parts take
over a second and 60 MiB. So the raw bytes are scanned first — size, header count,
multipart nesting and part count — and only a message within every limit is parsed.
"""

from __future__ import annotations

import email
import email.policy
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime

from pydantic import BaseModel, Field

from postroom.addresses import parse_mailbox

__all__ = ["Attachment", "InboundMessage", "Limits", "Rejected", "parse_inbound"]

_BOUNDARY = re.compile(rb'boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^;\s\r\n]{1,200}))', re.I)
_HEADER_LINE = re.compile(rb"^[!-9;-~]+:", re.M)


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 25 * 1024 * 1024
    max_headers: int = 500
    max_depth: int = 20
    max_parts: int = 500
    max_attachment_bytes: int = 5 * 1024 * 1024  # larger attachments keep metadata only
    max_seconds: float = 5.0


class Attachment(BaseModel):
    filename: str | None
    content_type: str
    size: int
    content: bytes | None = Field(default=None, exclude=True)
    stored: bool = False


class InboundMessage(BaseModel):
    message_id: str | None
    subject: str
    from_address: str | None
    to: list[str]
    cc: list[str]
    date: datetime | None
    in_reply_to: str | None
    references: list[str]
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    attachments: list[Attachment]
    size: int


@dataclass(frozen=True)
class Rejected:
    """The message broke a limit (or could not be parsed); ``reason`` says which."""

    reason: str


def _prescan(raw: bytes, limits: Limits) -> str | None:
    if len(raw) > limits.max_bytes:
        return f"larger than {limits.max_bytes} bytes ({len(raw)})"
    head_end = raw.find(b"\r\n\r\n")
    if head_end < 0:
        head_end = raw.find(b"\n\n")
    head = raw if head_end < 0 else raw[:head_end]
    headers = len(_HEADER_LINE.findall(head))
    if headers > limits.max_headers:
        return f"has {headers} header fields (limit {limits.max_headers})"
    boundaries = {m.group(1) or m.group(2) for m in _BOUNDARY.finditer(raw)}
    if len(boundaries) > limits.max_depth:
        # each nested multipart declares its own boundary: more boundaries than the
        # depth limit means either too deep or too many multiparts to be worth parsing
        return f"has {len(boundaries)} multipart levels or sections (limit {limits.max_depth})"
    parts = 0
    for b in boundaries:
        parts += raw.count(b"\n--" + b)
        if parts > limits.max_parts * 2:
            break
    # every part has one opening delimiter; each multipart also one closing delimiter
    parts -= len(boundaries)
    if parts > limits.max_parts:
        return f"has about {parts} MIME parts (limit {limits.max_parts})"
    return None


def _addresses(msg: Message, name: str) -> list[str]:
    return [addr for _, addr in getaddresses(msg.get_all(name, [])) if addr]


def _ids(value: str | None) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value or "")


def parse_inbound(raw: bytes, *, limits: Limits = Limits()) -> InboundMessage | Rejected:
    """Parse ``raw`` within ``limits``; never raises for bad input."""
    reason = _prescan(raw, limits)
    if reason:
        return Rejected(reason)
    started = time.monotonic()
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(msg, EmailMessage)
        text: str | None = None
        html: str | None = None
        attachments: list[Attachment] = []
        for part in msg.walk():
            if time.monotonic() - started > limits.max_seconds:
                return Rejected(f"took longer than {limits.max_seconds:g} s to parse")
            if part.is_multipart():
                continue
            disposition = part.get_content_disposition()
            ctype = part.get_content_type()
            if disposition != "attachment" and ctype == "text/plain" and text is None:
                text = _text(part)
            elif disposition != "attachment" and ctype == "text/html" and html is None:
                html = _text(part)
            else:
                payload = part.get_payload(decode=True)
                data = payload if isinstance(payload, bytes) else b""
                keep = len(data) <= limits.max_attachment_bytes
                attachments.append(
                    Attachment(
                        filename=part.get_filename(), content_type=ctype, size=len(data),
                        content=data if keep else None, stored=keep,
                    )
                )  # fmt: skip
        date = _date(str(msg.get("Date", "")))
        try:
            # strict: a crafted From must not pass as the recipient it imitates (CVE-2023-27043)
            sender: str | None = parse_mailbox(str(msg.get("From", "")))[1]
        except ValueError:
            sender = None
        return InboundMessage(
            message_id=_first(_ids(str(msg.get("Message-ID", "")))),
            subject=str(msg.get("Subject", "")),
            from_address=sender,
            to=_addresses(msg, "To"),
            cc=_addresses(msg, "Cc"),
            date=date,
            in_reply_to=_first(_ids(str(msg.get("In-Reply-To", "")))),
            references=_ids(str(msg.get("References", ""))),
            headers=[(k, str(v)) for k, v in msg.items()],
            text=text,
            html=html,
            attachments=attachments,
            size=len(raw),
        )
    except (RecursionError, MemoryError):
        return Rejected("is too deeply nested to parse")
    except (ValueError, TypeError, LookupError, AssertionError, IndexError) as exc:
        return Rejected(f"cannot be parsed ({type(exc).__name__})")


def _date(value: str) -> datetime | None:
    """The ``Date:`` in UTC; None when absent or unreadable.

    ``-0000`` (RFC 5322: UTC, the sender's zone unknown; what ``email.utils.formatdate()``
    writes) and dates without a zone (obsolete, still sent) come back naive from the email
    package: both are read as UTC. A date the UTC conversion overflows is unreadable.
    """
    if not value.strip():
        return None
    try:
        date = parsedate_to_datetime(value)
        if date.tzinfo is None:
            date = date.replace(tzinfo=UTC)
        return date.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def _text(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""
