"""Inbound messages: bytes in, a typed message or a rejection with a reason out (pure).

Python's email parser recurses per nesting level and builds every part in memory: a
66 KiB message with 1,000 nested multiparts raises RecursionError, 100k tiny parts take
seconds and 160 MiB. So the limits are enforced *inside* the parser, as it creates each
part and reads each header block: whatever syntax declares a boundary (``boundary=``,
RFC 2231's ``boundary*0=`` or ``boundary*=``), the parse stops at the first part beyond
``max_parts``, the first level beyond ``max_depth``, the first header block beyond
``max_headers`` fields, or once ``max_seconds`` have passed. Run it where a hard limit can
stop it (time and memory: :mod:`postroom.inbound.parsing` runs it in a child process).
"""

from __future__ import annotations

import email.policy
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.feedparser import BytesFeedParser, FeedParser
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime

from pydantic import BaseModel, Field

from postroom.addresses import parse_mailbox

__all__ = ["Attachment", "InboundMessage", "Limits", "Rejected", "parse_inbound"]

# The bounded parser hooks these (private, stable since Python 3.3) methods of the email
# package's FeedParser; without them no limit would hold, so refuse to run at all.
_HOOKS = ("_new_message", "_pop_message", "_parse_headers")
if not all(callable(getattr(FeedParser, name, None)) for name in _HOOKS):  # pragma: no cover
    raise ImportError(f"email.feedparser.FeedParser lacks {_HOOKS}: cannot bound the parse")


# forwarded messages: stored whole, as one attachment with their headers
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 25 * 1024 * 1024
    max_headers: int = 500  # header fields in one header block (the message's or a part's)
    max_depth: int = 20
    max_parts: int = 500
    max_attachment_bytes: int = 5 * 1024 * 1024  # larger attachments keep metadata only
    max_seconds: float = 5.0
    # memory the parse may take beyond the parser process's own (enforced by that process)
    max_memory_bytes: int = 1024 * 1024 * 1024


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


class _LimitBroken(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _BoundedParser(BytesFeedParser):
    """The email package's parser, stopped at the first part, level or header block over
    the limits (checked where the parser creates them, not by scanning for syntax)."""

    def __init__(self, limits: Limits, deadline: float) -> None:
        super().__init__(policy=email.policy.default)
        self._limits = limits
        self._deadline = deadline
        self._parts = 0
        self._depth = 0

    def _new_message(self) -> None:
        limits = self._limits
        self._parts += 1
        if self._parts > limits.max_parts:
            raise _LimitBroken(
                f"has more than {limits.max_parts} MIME parts (limit {limits.max_parts})"
            )
        if self._depth >= limits.max_depth:
            raise _LimitBroken(
                f"is nested deeper than {limits.max_depth} multipart levels "
                f"(limit {limits.max_depth})"
            )
        if time.monotonic() > self._deadline:
            raise _LimitBroken(f"took longer than {limits.max_seconds:g} s to parse")
        self._depth += 1
        super()._new_message()  # type: ignore[misc]

    def _pop_message(self) -> Message:
        self._depth -= 1
        popped: Message = super()._pop_message()  # type: ignore[misc]
        return popped

    def _parse_headers(self, lines: list[str]) -> None:
        fields = sum(1 for line in lines if line[:1] not in (" ", "\t"))
        if fields > self._limits.max_headers:
            raise _LimitBroken(
                f"has {fields} header fields in one part (limit {self._limits.max_headers})"
            )
        super()._parse_headers(lines)  # type: ignore[misc]


def _addresses(msg: Message, name: str) -> list[str]:
    return [addr for _, addr in getaddresses(msg.get_all(name, [])) if addr]


def _ids(value: str | None) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value or "")


def parse_inbound(raw: bytes, *, limits: Limits = Limits()) -> InboundMessage | Rejected:
    """Parse ``raw`` within ``limits``; never raises for bad input."""
    if len(raw) > limits.max_bytes:
        return Rejected(f"larger than {limits.max_bytes} bytes ({len(raw)})")
    started = time.monotonic()
    try:
        parser = _BoundedParser(limits, started + limits.max_seconds)
        parser.feed(raw)
        msg = parser.close()
        assert isinstance(msg, EmailMessage)
        text: str | None = None
        html: str | None = None
        attachments: list[Attachment] = []
        for part in _leaves(msg):
            if time.monotonic() - started > limits.max_seconds:
                return Rejected(f"took longer than {limits.max_seconds:g} s to parse")
            disposition = part.get_content_disposition()
            ctype = part.get_content_type()
            if ctype in _MESSAGE_TYPES:
                attachments.append(_forwarded(part, ctype, limits))
            elif disposition != "attachment" and ctype == "text/plain" and text is None:
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
    except _LimitBroken as exc:
        return Rejected(exc.reason)
    except RecursionError:
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


def _leaves(msg: EmailMessage) -> Iterator[EmailMessage]:
    """The parts to store, in order: leaf parts, and forwarded messages (message/rfc822)
    as one part each, whose insides belong to the attachment, not to this message."""
    stack: list[EmailMessage] = [msg]
    while stack:
        part = stack.pop()
        if part is not msg and part.get_content_type() in _MESSAGE_TYPES:
            yield part
        elif part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend(reversed([c for c in children if isinstance(c, EmailMessage)]))
        else:
            yield part


def _forwarded(part: EmailMessage, ctype: str, limits: Limits) -> Attachment:
    """A forwarded message as an attachment: the message with its headers (``.eml``)."""
    inner = part.get_payload(0) if part.is_multipart() else None
    if isinstance(inner, EmailMessage):
        try:
            data = inner.as_bytes(policy=inner.policy.clone(linesep="\r\n"))
        except (ValueError, TypeError, LookupError, UnicodeError, IndexError):
            data = inner.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n"))
        subject = str(inner.get("Subject", ""))
    else:  # not parsed as a message (e.g. a transfer encoding RFC 2046 forbids here)
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        subject = ""
    keep = len(data) <= limits.max_attachment_bytes
    return Attachment(
        filename=part.get_filename() or _eml_name(subject), content_type=ctype, size=len(data),
        content=data if keep else None, stored=keep,
    )  # fmt: skip


def _eml_name(subject: str) -> str:
    """A file name for a forwarded message from its subject: no path or control characters."""
    name = " ".join(re.sub(r"[\x00-\x1f\x7f/\\:*?\"<>|]+", " ", subject).split())
    name = name.strip(" .")[:100].strip()
    return f"{name or 'forwarded message'}.eml"


def _text(part: EmailMessage) -> str:
    """A text part's content with ``\\n`` line ends (mail carries CRLF)."""
    try:
        content = part.get_content()
    except (LookupError, ValueError):
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    return content.replace("\r\n", "\n").replace("\r", "\n")
