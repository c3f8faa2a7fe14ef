"""Outgoing messages: validated strictly, then composed once into the bytes that are sent (pure).

Python's email package lets some header injections through (an encoded newline in a
subject becomes a real header, CVE-2024-6923) and ``parseaddr`` silently rewrites odd
addresses (CVE-2023-27043). Here every header value and address is checked *before* the
email package sees it, and the composed bytes are checked again: CRLF only, no bare CR
or LF. Dot-stuffing and the single end-of-data marker are the SMTP client's job.
"""

from __future__ import annotations

import base64
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from enum import StrEnum
from functools import lru_cache
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from postroom.addresses import check_single_line, parse_mailbox
from postroom.notify.mime import (
    Part,
    address_header,
    content_type_reason,
    encode_header,
    longest_word_reason,
    render,
)
from postroom.notify.plaintext import html_to_text
from postroom.profiles.schemas import SenderSettings
from postroom.smtp.i18n import ascii_domain

__all__ = [
    "Attachment",
    "Composed",
    "OutgoingMessage",
    "Priority",
    "compose",
    "parse_mailbox",
]

MAX_BODY_BYTES = 25 * 1024 * 1024
_HEADER_NAME = re.compile(r"^[!-9;-~]{1,76}$")  # RFC 5322 ftext
_RESERVED_HEADERS = frozenset(
    h.lower()
    for h in (
        "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "Reply-To", "Sender",
        "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
        "Content-Disposition", "Importance", "X-Priority",
    )
)  # fmt: skip
# Trace and authentication headers record what mail servers saw and checked (RFC 5321
# section 4.4, RFC 5322 section 3.6.6, RFC 8601, RFC 6376, RFC 8617). A sender who sets them
# can make a message look relayed, resent or authenticated by someone else, and filters
# downstream may believe them.
_SERVER_HEADERS = frozenset(
    (
        "return-path", "received", "received-spf", "authentication-results",
        "dkim-signature", "arc-seal", "arc-message-signature", "arc-authentication-results",
    )
)  # fmt: skip
_SERVER_HEADER_PREFIXES = ("resent-",)


_RANKS = {"high": 10, "normal": 0, "low": -10}


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        return _RANKS[self.value]


def _mailboxes(v: Any) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list):
        raise ValueError("must be an address or a list of addresses")
    for item in v:
        if not isinstance(item, str):
            raise ValueError("must be an address or a list of addresses")
        parse_mailbox(item)
    return list(v)


Mailboxes = Annotated[list[str], BeforeValidator(_mailboxes)]


def _b64(v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, str):
        try:
            return base64.b64decode(v, validate=True)
        except ValueError:
            raise ValueError("must be base64-encoded") from None
    raise ValueError("must be bytes or base64 text")


class Attachment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255)
    content_type: str = "application/octet-stream"
    content: Annotated[bytes, BeforeValidator(_b64)]

    @field_validator("content_type")
    @classmethod
    def _content_type(cls, v: str) -> str:
        reason = content_type_reason(v)
        if reason:
            raise ValueError(reason)
        return v

    @field_validator("filename")
    @classmethod
    def _name(cls, v: str) -> str:
        if check_single_line(v) or "/" in v or "\\" in v:
            raise ValueError("must be a plain file name on one line")
        if v != v.strip():
            # mail readers strip them (Python's email package does), so they would be lost
            raise ValueError("must not begin or end with spaces")
        return v


def _utf8_size(text: str | None) -> int:
    """Bytes of ``text`` in UTF-8, without encoding it when it is ASCII (told at once)."""
    if text is None:
        return 0
    return len(text) if text.isascii() else len(text.encode())


class OutgoingMessage(BaseModel):
    """What a process asks postroom to send."""

    model_config = ConfigDict(extra="forbid")

    to: Mailboxes = Field(default_factory=list)
    cc: Mailboxes = Field(default_factory=list)
    bcc: Mailboxes = Field(default_factory=list)
    subject: str = Field(default="", max_length=998)
    text: str | None = None
    html: str | None = None
    reply_to: str | None = None
    headers: dict[str, str] = Field(default_factory=dict, max_length=50)
    attachments: list[Attachment] = Field(default_factory=list, max_length=100)
    priority: Priority = Priority.NORMAL

    @field_validator("subject")
    @classmethod
    def _subject(cls, v: str) -> str:
        reason = check_single_line(v)
        if reason:
            raise ValueError(reason)
        return v

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, v: str | None) -> str | None:
        if v:
            parse_mailbox(v)
        return v or None

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not _HEADER_NAME.match(name):
                raise ValueError(f"'{name}' is not a valid header name")
            lower = name.lower()
            if lower in _SERVER_HEADERS or lower.startswith(_SERVER_HEADER_PREFIXES):
                raise ValueError(
                    f"'{name}' is a trace or authentication header, which only mail servers "
                    "add (Received, Return-Path, Resent-*, Authentication-Results, "
                    "DKIM-Signature, ARC-*); remove it"
                )
            if lower in _RESERVED_HEADERS:
                raise ValueError(f"'{name}' is set by postroom; use the message's own field")
            reason = check_single_line(value) or longest_word_reason(name, value)
            if reason:
                raise ValueError(f"{name} {reason}")
        return v

    @model_validator(mode="after")
    def _complete(self) -> OutgoingMessage:
        if not (self.to or self.cc or self.bcc):
            raise ValueError("to: needs at least one recipient (to, cc or bcc)")
        if self.text is None and self.html is None:
            raise ValueError("text: give a text or an html body (or both)")
        size = _utf8_size(self.text) + _utf8_size(self.html)
        size += sum(len(a.content) for a in self.attachments)
        if size > MAX_BODY_BYTES:
            raise ValueError(f"text: the message is larger than {MAX_BODY_BYTES // 2**20} MiB")
        for body in (self.text, self.html):
            if body is not None and "\x00" in body:
                raise ValueError("text: must not contain NUL characters")
        return self


@dataclass(slots=True)
class Composed:
    raw: bytes
    message_id: str
    envelope_from: str
    recipients: list[str]


_date_cache: tuple[int, str] = (0, "")


def _date(now: datetime | None) -> str:
    """The Date header's value; formatted once per second (it showed up in profiles)."""
    global _date_cache
    if now is not None:
        return format_datetime(now)
    second = int(time.time())
    if _date_cache[0] != second:
        _date_cache = (second, format_datetime(datetime.fromtimestamp(second, UTC)))
    return _date_cache[1]


@lru_cache(maxsize=64)
def _from_header(name: str, address: str) -> str:
    """The From header of a profile's sender: the same for every message it sends."""
    return address_header("From", [(name, address)])


_HTML_ELEMENT = re.compile(r"<html[\s>]", re.IGNORECASE)
_BODY_ELEMENT = re.compile(r"<body[\s>]", re.IGNORECASE)
#: HTML read for the generated text part; the rest is pointed to (≈ 0.7 µs a character)
MAX_HTML_FOR_TEXT = 2 * 1024 * 1024


def html_document(html: str) -> str:
    """``html`` as a complete document: a fragment (no ``<html>`` element) gets the
    doctype, ``<html>``, a ``<head>`` declaring UTF-8 and, when it has none, ``<body>``.
    Filters score bare fragments as spam; a document is left as it is."""
    if _HTML_ELEMENT.search(html):
        return html
    head = '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>'
    if _BODY_ELEMENT.search(html):
        return f"{head}{html}</html>"
    return f"{head}<body>{html}</body></html>"


_CACHED_HTML_CHARS = 64 * 1024  # larger bodies are converted each time, not kept


def bodies(text: str | None, html: str | None) -> tuple[str | None, str | None]:
    """The text and HTML parts to send. HTML alone goes out as multipart/alternative with
    a text part made from it (mail readers that show text, screen readers and spam filters
    read that part), and a fragment becomes a complete document."""
    if html is None:
        return text, None
    if len(html) <= _CACHED_HTML_CHARS and len(text or "") <= _CACHED_HTML_CHARS:
        return _bodies(text, html)
    return _bodies.__wrapped__(text, html)


@lru_cache(maxsize=64)
def _bodies(text: str | None, html: str) -> tuple[str | None, str]:
    """:func:`bodies`, cached: notifications from one template often share their bodies
    word for word, and converting HTML costs more than the rest of composing."""
    if text is None:
        text = html_to_text(html[:MAX_HTML_FOR_TEXT])
        if len(html) > MAX_HTML_FOR_TEXT:
            text += "\n[…] The rest of this message is in its HTML version.\n"
    return text, html_document(html)


def compose(
    message: OutgoingMessage, *, sender: SenderSettings, now: datetime | None = None
) -> Composed:
    """The message as bytes with CRLF line endings, its Message-ID, envelope sender and recipients."""
    # a non-ASCII domain as its IDNA A-label, in the headers and the envelope alike
    from_address = ascii_domain(sender.from_address)
    local, domain = from_address.rsplit("@", 1)
    message_id = make_msgid(domain=domain)
    headers = [_from_header(sender.from_name or "", from_address)]
    if message.to:
        headers.append(address_header("To", [parse_mailbox(a) for a in message.to]))
    if message.cc:
        headers.append(address_header("Cc", [parse_mailbox(a) for a in message.cc]))
    headers += [
        encode_header("Subject", message.subject),
        f"Date: {_date(now)}",
        f"Message-ID: {message_id}",
    ]
    reply_to = message.reply_to or sender.reply_to
    if reply_to:
        headers.append(address_header("Reply-To", [parse_mailbox(reply_to)]))
    if message.priority is Priority.HIGH:
        headers += ["Importance: high", "X-Priority: 1"]
    elif message.priority is Priority.LOW:
        headers += ["Importance: low", "X-Priority: 5"]
    headers += [encode_header(name, value) for name, value in message.headers.items()]
    # render makes every line end CRLF, and checks that no bare CR or LF is left
    text, html = bodies(message.text, message.html)
    raw = render(
        headers,
        text,
        html,
        [Part(a.content, a.content_type, a.filename) for a in message.attachments],
    )
    recipients = [parse_mailbox(a)[1] for a in (*message.to, *message.cc, *message.bcc)]
    return Composed(
        raw=raw,
        message_id=message_id,
        envelope_from=from_address,
        recipients=list(dict.fromkeys(recipients)),
    )
